//! The send journal: an append-only JSON-lines file that makes a campaign resumable.
//!
//! The first line holds the campaign's resolved expiry, so that a resumed run mints codes
//! that expire at the same instant. A row is known by its recipient's address, not by its
//! line: rows may be added, removed or moved between runs without anyone getting a second
//! message, while a row whose other cells changed after its message went is an error. Then,
//! per row, a `handed` record is written before the
//! message goes to the server and a `sent`, `rejected` or `deferred` record when the reply
//! comes. A row whose last record is `handed` has an unknown outcome: at most one per
//! connection, since a record is written (one `write` call, which a killed process does not
//! undo) before each send. A paced run (`--rate`) syncs the file to disk before each send, so
//! that a power cut leaves no more unknown rows than a killed process; a run at full speed
//! syncs it every second; both at the end. A line cut short by a crash is dropped when the
//! journal is opened. The journal never holds a whole code: only its fingerprint.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Error, Expiry};

/// The journal format's version, in its first record. Version 2 numbers rows by the line
/// they are on in the recipients file; version 1 took the csv crate's count, one line too
/// low after a CR LF line end or a blank line, so its rows cannot be matched.
pub const JOURNAL_VERSION: u32 = 2;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Record {
    /// The first line: the campaign.
    Campaign {
        /// [`JOURNAL_VERSION`].
        version: u32,
        /// The resolved default expiry (RFC 3339), when the flags gave one.
        expires_at: Option<String>,
        /// When the first run started (RFC 3339).
        started: String,
    },
    /// The message for a row is being handed to the server.
    Handed {
        /// 1-based line of the row in the recipients file.
        line: u64,
        /// The row's digest: 64 bits of SHA-256 over its fields, in hex.
        row: String,
        /// The envelope recipient.
        to: String,
        /// The id of the key that signed the code.
        key_id: u8,
        /// The code's expiry (RFC 3339).
        expires_at: String,
        /// The code's fingerprint ([`crate::Code::fingerprint`]), never the whole code.
        code: String,
    },
    /// The server accepted the message.
    Sent {
        /// The row's line.
        line: u64,
        /// The row's digest.
        row: String,
        /// The server's reply.
        reply: String,
    },
    /// The server refused the message for good (5xx): the row is in the rejects file.
    Rejected {
        /// The row's line.
        line: u64,
        /// The row's digest.
        row: String,
        /// The server's reply.
        reply: String,
    },
    /// The server refused the message for now (4xx) and retries ran out: not sent.
    Deferred {
        /// The row's line.
        line: u64,
        /// The row's digest.
        row: String,
        /// The server's last reply.
        reply: String,
    },
}

/// What the journal says about one recipient's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRecord {
    /// The row's line when it was last journalled.
    pub line: u64,
    /// The row's digest when it was journalled.
    pub row: String,
    /// The last event.
    pub status: RowStatus,
    /// The recipient, from the `handed` record.
    pub to: String,
    /// The code's fingerprint, from the `handed` record.
    pub code: String,
    /// The server's last reply, if one was recorded.
    pub reply: String,
}

/// A row's last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    /// Handed to the server; no reply recorded.
    Uncertain,
    /// Accepted by the server.
    Sent,
    /// Refused for good.
    Rejected,
    /// Refused for now; not sent.
    Deferred,
}

/// What a journal held when it was opened.
#[derive(Debug, Clone, Default)]
pub struct JournalState {
    /// The campaign's expiry, from the first line.
    pub expires_at: Option<Expiry>,
    /// Whether the journal already existed with records (a resumed run).
    pub resumed: bool,
    /// Rows by recipient ([`recipient_key`]): a row is known by whom it is for, not by its
    /// place, so that rows added, removed or reordered between runs do not send to anyone
    /// twice.
    pub rows: HashMap<String, RowRecord>,
    /// The recipient of the row each line held at its last `handed` record: the results
    /// that follow name the line.
    handed_lines: HashMap<u64, String>,
}

/// How the journal knows a recipient: the address in lower case.
#[must_use]
pub fn recipient_key(address: &str) -> String {
    address.to_lowercase()
}

/// An open journal, locked against other runs.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<Open>,
    /// Records written so far (counted under the `file` lock).
    written: AtomicU64,
    /// A second handle for syncing, and the count of records known to be on disk. Held while
    /// syncing: a writer that comes meanwhile waits, then finds its record on disk already
    /// or syncs once for all who waited (a group commit).
    synced: Mutex<(File, u64)>,
}

/// The journal's file for appending, and the records left for the next write to carry.
#[derive(Debug)]
struct Open {
    file: File,
    /// Whole lines given to [`Journal::write_soon`], not yet in the file.
    waiting: Vec<u8>,
}

/// The state the journal's records describe, and whether its text ends with a whole line.
fn read_records(text: &[u8]) -> Result<(JournalState, bool), String> {
    let mut state = JournalState::default();
    let complete = text.ends_with(b"\n");
    let mut lines = text.split(|&b| b == b'\n').peekable();
    let mut number = 0usize;
    while let Some(line) = lines.next() {
        number += 1;
        let last = lines.peek().is_none();
        if line.is_empty() {
            continue;
        }
        let record: Record = match serde_json::from_slice(line) {
            Ok(record) => record,
            // A crash mid-write leaves a last line without its line break.
            Err(_) if last && !complete => break,
            Err(err) => return Err(format!("line {number} is not a record: {err}")),
        };
        state
            .apply(record)
            .map_err(|reason| format!("line {number}: {reason}"))?;
    }
    if state.rows.is_empty() {
        // Every row is recorded before it is handed to the server: a journal with none
        // comes from runs that sent nothing (bad rows, no server). Nothing binds the
        // campaign yet; it starts over.
        state = JournalState::default();
    }
    Ok((state, complete))
}

impl Journal {
    /// The state of the journal at `path`, read without changing it or taking its lock: what
    /// a dry run shows.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] when it cannot be read or holds a line that is not a record.
    pub fn peek(path: &Path) -> Result<JournalState, Error> {
        let fail = |reason: String| Error::Journal {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read(path).map_err(|err| fail(format!("cannot read it: {err}")))?;
        Ok(read_records(&text).map_err(fail)?.0)
    }

    /// Opens or creates the journal at `path` (mode 0600; an existing one readable by others
    /// is made 0600), locks it, reads it, and on a new journal, or one that records no row,
    /// writes the campaign line with `expires_at`.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] when it cannot be opened, is locked by another run, or holds a
    /// line that is not a journal record (a last line cut short by a crash is ignored).
    pub fn open(
        path: &Path,
        expires_at: Option<Expiry>,
        now: OffsetDateTime,
    ) -> Result<(Self, JournalState), Error> {
        let fail = |reason: String| Error::Journal {
            path: path.display().to_string(),
            reason,
        };
        let mut file = crate::fsutil::private_options()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|err| fail(format!("cannot open it: {err}")))?;
        {
            use fs4::fs_std::FileExt as _;
            match file.try_lock_exclusive() {
                Ok(true) => {}
                Ok(false) => {
                    return Err(fail(
                        "another `invitegate send` is using it; wait for it to end".to_owned(),
                    ));
                }
                Err(err) => return Err(fail(format!("cannot lock it: {err}"))),
            }
        }
        // The journal names every recipient: one an earlier tool left readable by others is
        // made private, as a new one is.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = file
                .metadata()
                .map_err(|err| fail(format!("cannot read its mode: {err}")))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|err| fail(format!("cannot make it private (mode 0600): {err}")))?;
            }
        }
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|err| fail(format!("cannot read it: {err}")))?;
        let (mut state, complete) = read_records(&text).map_err(fail)?;
        if !complete {
            // Drop the cut line, so that the next record starts a line of its own.
            let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64)
                .map_err(|err| fail(format!("cannot drop its cut last line: {err}")))?;
        }
        let syncing = file
            .try_clone()
            .map_err(|err| fail(format!("cannot open it: {err}")))?;
        let journal = Self {
            path: path.to_owned(),
            file: Mutex::new(Open {
                file,
                waiting: Vec::new(),
            }),
            written: AtomicU64::new(0),
            synced: Mutex::new((syncing, 0)),
        };
        if !state.resumed {
            // New, or only the campaign line of runs that sent nothing: start it over with
            // this run's expiry.
            journal.truncate()?;
        }
        if state.resumed {
            return Ok((journal, state));
        }
        let started = now.format(&Rfc3339).unwrap_or_default();
        journal.write(&Record::Campaign {
            version: JOURNAL_VERSION,
            expires_at: expires_at.map(rfc3339),
            started,
        })?;
        journal.sync()?;
        state.expires_at = expires_at;
        Ok((journal, state))
    }

    fn truncate(&self) -> Result<(), Error> {
        let open = self.file.lock().map_err(|_| self.poisoned())?;
        open.file.set_len(0).map_err(|err| Error::Journal {
            path: self.path.display().to_string(),
            reason: format!("cannot start it over: {err}"),
        })
    }

    /// The journal's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record with a single `write`, so that a killed process leaves either the
    /// whole line or a cut one that [`Journal::open`] ignores. Records left by
    /// [`Journal::write_soon`] go in the same `write`, before it.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] when writing fails.
    pub fn write(&self, record: &Record) -> Result<(), Error> {
        let line = self.line(record)?;
        let mut open = self.file.lock().map_err(|_| self.poisoned())?;
        if open.waiting.is_empty() {
            return self.append(&mut open, &line);
        }
        let mut lines = std::mem::take(&mut open.waiting);
        lines.extend_from_slice(&line);
        self.append(&mut open, &lines)
    }

    /// Leaves `record` for the next write to carry, by any sender, in the same system call as
    /// its own record: in a run that is not paced, the next `handed` record follows within
    /// microseconds, and one `write` for both halves what the journal costs a message. A
    /// [`Journal::sync`] or [`Journal::flush`] writes it too, so it waits a second at most.
    /// A killed process loses it: its row then reads as handed, as it would have if killed
    /// a moment earlier, before the reply.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] when the record cannot be serialized.
    pub fn write_soon(&self, record: &Record) -> Result<(), Error> {
        let line = self.line(record)?;
        let mut open = self.file.lock().map_err(|_| self.poisoned())?;
        open.waiting.extend_from_slice(&line);
        Ok(())
    }

    /// Writes the records left by [`Journal::write_soon`], if any.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] when writing fails.
    pub fn flush(&self) -> Result<(), Error> {
        let mut open = self.file.lock().map_err(|_| self.poisoned())?;
        if open.waiting.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut open.waiting);
        self.append(&mut open, &lines)
    }

    /// `record` as one line of JSON.
    fn line(&self, record: &Record) -> Result<Vec<u8>, Error> {
        let mut line = serde_json::to_vec(record).map_err(|err| Error::Journal {
            path: self.path.display().to_string(),
            reason: err.to_string(),
        })?;
        line.push(b'\n');
        Ok(line)
    }

    /// Appends whole lines with one `write`, counting them as records written.
    fn append(&self, open: &mut Open, lines: &[u8]) -> Result<(), Error> {
        open.file.write_all(lines).map_err(|err| Error::Journal {
            path: self.path.display().to_string(),
            reason: format!("cannot write it: {err}"),
        })?;
        let records = memchr::memchr_iter(b'\n', lines).count() as u64;
        self.written.fetch_add(records, Ordering::AcqRel);
        Ok(())
    }

    /// Syncs to disk every record written before the call (with those left by
    /// [`Journal::write_soon`]), unless a sync since has done so.
    /// A failed sync is reported, and the next call tries again.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] when the sync fails.
    pub fn sync(&self) -> Result<(), Error> {
        self.flush()?;
        let wanted = self.written.load(Ordering::Acquire);
        let mut synced = self.synced.lock().map_err(|_| self.poisoned())?;
        if synced.1 >= wanted {
            return Ok(());
        }
        // Whatever is written by now is covered by this sync, not only what this caller wrote.
        let covered = self.written.load(Ordering::Acquire);
        synced.0.sync_data().map_err(|err| Error::Journal {
            path: self.path.display().to_string(),
            reason: format!("cannot sync it to disk: {err}"),
        })?;
        synced.1 = covered;
        Ok(())
    }

    fn poisoned(&self) -> Error {
        Error::Journal {
            path: self.path.display().to_string(),
            reason: "a writer failed while holding it".to_owned(),
        }
    }
}

impl JournalState {
    fn apply(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::Campaign {
                version,
                expires_at,
                ..
            } => {
                if version == 1 {
                    return Err(
                        "journal version 1, written by an earlier invitegate that numbered rows \
                         differently: finish this campaign with that release (this one could \
                         send some rows twice)"
                            .to_owned(),
                    );
                }
                if version != JOURNAL_VERSION {
                    return Err(format!(
                        "journal version {version}; this invitegate reads version {JOURNAL_VERSION}"
                    ));
                }
                self.resumed = true;
                self.expires_at = match expires_at {
                    Some(text) => Some(parse_expiry(&text)?),
                    None => None,
                };
            }
            Record::Handed {
                line,
                row,
                to,
                code,
                ..
            } => {
                let key = recipient_key(&to);
                self.handed_lines.insert(line, key.clone());
                self.rows.insert(
                    key,
                    RowRecord {
                        line,
                        row,
                        status: RowStatus::Uncertain,
                        to,
                        code,
                        reply: String::new(),
                    },
                );
            }
            Record::Sent { line, row, reply } => self.set(line, row, RowStatus::Sent, reply)?,
            Record::Rejected { line, row, reply } => {
                self.set(line, row, RowStatus::Rejected, reply)?;
            }
            Record::Deferred { line, row, reply } => {
                self.set(line, row, RowStatus::Deferred, reply)?;
            }
        }
        if !self.resumed {
            return Err("the first line is not the campaign record".to_owned());
        }
        Ok(())
    }

    /// A result for the row on `line`: it follows that row's `handed` record in the same run.
    fn set(
        &mut self,
        line: u64,
        row: String,
        status: RowStatus,
        reply: String,
    ) -> Result<(), String> {
        let entry = self
            .handed_lines
            .get(&line)
            .and_then(|key| self.rows.get_mut(key))
            .filter(|entry| entry.row == row)
            .ok_or_else(|| format!("a result for line {line} follows no record of handing it"))?;
        entry.status = status;
        entry.reply = reply;
        Ok(())
    }
}

/// An expiry as RFC 3339.
#[must_use]
pub fn rfc3339(expiry: Expiry) -> String {
    expiry.to_datetime().format(&Rfc3339).unwrap_or_default()
}

fn parse_expiry(text: &str) -> Result<Expiry, String> {
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("expires_at {text:?} is not RFC 3339"))?;
    Expiry::from_datetime(at).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed(line: u64) -> Record {
        Record::Handed {
            line,
            row: format!("r{line}"),
            to: format!("p{line}@contoso.com"),
            key_id: 7,
            expires_at: "2030-01-01T00:00:00Z".to_owned(),
            code: "1768902f7e".to_owned(),
        }
    }

    #[test]
    fn a_journal_reopens_with_its_expiry_and_row_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let now = OffsetDateTime::now_utc();
        let expiry = Expiry::from_datetime(time::macros::datetime!(2030-01-01 0:00 UTC)).unwrap();
        let (journal, state) = Journal::open(&path, Some(expiry), now).unwrap();
        assert!(!state.resumed);
        journal.write(&handed(2)).unwrap();
        journal
            .write(&Record::Sent {
                line: 2,
                row: "r2".to_owned(),
                reply: "250 ok".to_owned(),
            })
            .unwrap();
        journal.write(&handed(3)).unwrap();
        journal.sync().unwrap();
        // A second run on the same journal is refused while the first holds it.
        let busy = Journal::open(&path, None, now).unwrap_err().to_string();
        assert!(busy.contains("another `invitegate send`"), "{busy}");
        drop(journal);
        // A cut last line (a crash mid-write) is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"event\":\"sent\",\"li")
            .unwrap();
        let later = Expiry::from_datetime(time::macros::datetime!(2031-01-01 0:00 UTC)).unwrap();
        let (journal, state) = Journal::open(&path, Some(later), now).unwrap();
        assert!(state.resumed);
        assert_eq!(
            state.expires_at,
            Some(expiry),
            "the first run's expiry wins"
        );
        assert_eq!(state.rows["p2@contoso.com"].status, RowStatus::Sent);
        assert_eq!(state.rows["p3@contoso.com"].status, RowStatus::Uncertain);
        assert_eq!(state.rows["p3@contoso.com"].code, "1768902f7e");
        journal.write(&handed(4)).unwrap();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().all(|l| l.starts_with('{')), "{text}");
        let (_, state) = Journal::open(&path, None, now).unwrap();
        assert_eq!(state.rows["p4@contoso.com"].status, RowStatus::Uncertain);
    }

    #[test]
    fn a_record_written_soon_goes_with_the_next_write_or_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let now = OffsetDateTime::now_utc();
        let (journal, _) = Journal::open(&path, None, now).unwrap();
        let sent = |line: u64| Record::Sent {
            line,
            row: format!("r{line}"),
            reply: "202 Accepted".to_owned(),
        };
        let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
        journal.write(&handed(2)).unwrap();
        journal.write_soon(&sent(2)).unwrap();
        assert_eq!(lines(), 2, "not written yet");
        // The next record carries it, before its own line.
        journal.write(&handed(3)).unwrap();
        assert_eq!(lines(), 4);
        journal.write_soon(&sent(3)).unwrap();
        journal.sync().unwrap();
        assert_eq!(lines(), 5, "a sync writes it first");
        journal.flush().unwrap();
        assert_eq!(lines(), 5, "nothing left to flush");
        drop(journal);
        let (_, state) = Journal::open(&path, None, now).unwrap();
        assert_eq!(state.rows["p2@contoso.com"].status, RowStatus::Sent);
        assert_eq!(state.rows["p3@contoso.com"].status, RowStatus::Sent);
    }

    #[test]
    fn a_damaged_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, "{\"event\":\"campaign\",\"version\":2,\"expires_at\":null,\"started\":\"x\"}\nnonsense\n{}\n").unwrap();
        let err = Journal::open(&path, None, OffsetDateTime::now_utc()).unwrap_err();
        assert!(err.to_string().contains("line 2 is not a record"), "{err}");
    }

    #[test]
    fn a_journal_of_runs_that_sent_nothing_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let now = OffsetDateTime::now_utc();
        let first = Expiry::from_datetime(time::macros::datetime!(2030-01-01 0:00 UTC)).unwrap();
        let second = Expiry::from_datetime(time::macros::datetime!(2031-01-01 0:00 UTC)).unwrap();
        drop(Journal::open(&path, Some(first), now).unwrap());
        let (journal, state) = Journal::open(&path, Some(second), now).unwrap();
        assert!(!state.resumed);
        assert_eq!(state.expires_at, Some(second));
        journal.write(&handed(2)).unwrap();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        // Once a row is recorded, the campaign and its expiry hold.
        let (_, state) = Journal::open(&path, Some(first), now).unwrap();
        assert!(state.resumed);
        assert_eq!(state.expires_at, Some(second));
    }

    #[test]
    fn peeking_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let expiry = Expiry::from_datetime(time::macros::datetime!(2030-01-01 0:00 UTC)).unwrap();
        drop(Journal::open(&path, Some(expiry), OffsetDateTime::now_utc()).unwrap());
        let before = std::fs::read(&path).unwrap();
        // A campaign line alone binds nothing: seen as a new campaign, and left as it is.
        assert!(!Journal::peek(&path).unwrap().resumed);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_version_1_journal_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(
            &path,
            "{\"event\":\"campaign\",\"version\":1,\"expires_at\":null,\"started\":\"x\"}\n",
        )
        .unwrap();
        let err = Journal::open(&path, None, OffsetDateTime::now_utc()).unwrap_err();
        assert!(
            err.to_string()
                .contains("finish this campaign with that release"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_journal_readable_by_others_is_made_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let now = time::macros::datetime!(2026-12-06 0:00 UTC);
        let (journal, _) = Journal::open(&path, None, now).unwrap();
        drop(journal);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
