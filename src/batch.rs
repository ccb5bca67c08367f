//! Batch minting: a recipients CSV in, a mail-merge CSV out, streamed in chunks of rows.
//!
//! Input has a header row. A `domain` column makes every row a domain code (an `email` column
//! beside it is then the recipient and passes through); otherwise an `email` column makes every
//! row an email code. Optional per-row columns: `subdomains` (yes/no) and `expires_at`
//! (RFC 3339). Every input column passes through in order, except `expires_at`, which comes
//! back normalized among the added columns `code`, `kind`, `expires_at`.

use std::io::{Read, Write};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::policy::check_audience;
use crate::{Audience, Error, Expiry, KeyRing, Kind, mint};

/// Settings that apply to every row.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Expiry for rows whose `expires_at` is empty or absent.
    pub default_expiry: Option<Expiry>,
    /// The current instant: rows expiring at or before it are refused.
    pub now: OffsetDateTime,
    /// Mint domain codes for public suffixes and free-mail providers too.
    pub allow_public_domains: bool,
}

/// What happened to one data row.
#[derive(Debug)]
pub enum RowEvent<'a> {
    /// A code was minted and the row written.
    Minted,
    /// The row was refused and not written.
    Rejected(Rejection<'a>),
}

/// A refused row: where it was, why, and its fields as read.
#[derive(Debug)]
pub struct Rejection<'a> {
    /// 1-based line of the input where the row starts.
    pub line: u64,
    /// Why, in a sentence fragment such as `invalid email address: it has no `@``.
    pub reason: String,
    /// The input fields, to write to a rejects file.
    pub record: &'a csv::ByteRecord,
    /// The input header row, for the rejects file's own header.
    pub header: &'a csv::ByteRecord,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Data rows read (the header not counted).
    pub rows: u64,
    /// Codes minted and rows written.
    pub minted: u64,
    /// Rows refused.
    pub rejected: u64,
}

/// Where the columns the batch reads sit in the header.
struct Columns {
    audience: usize,
    kind: Kind,
    subdomains: Option<usize>,
    expires_at: Option<usize>,
}

impl Columns {
    fn find(header: &csv::ByteRecord) -> Result<Self, Error> {
        let position = |name: &str| {
            header.iter().position(|field| {
                let field = field.strip_prefix("\u{feff}".as_bytes()).unwrap_or(field);
                field.trim_ascii().eq_ignore_ascii_case(name.as_bytes())
            })
        };
        for added in ["code", "kind"] {
            if position(added).is_some() {
                return Err(Error::Batch {
                    reason: format!(
                        "the input already has a `{added}` column, which the output adds"
                    ),
                });
            }
        }
        let (audience, kind) = match (position("domain"), position("email")) {
            (Some(domain), _) => (domain, Kind::Domain),
            (None, Some(email)) => (email, Kind::Email),
            (None, None) => {
                return Err(Error::Batch {
                    reason: "the header row needs an `email` or a `domain` column".to_owned(),
                });
            }
        };
        Ok(Self {
            audience,
            kind,
            subdomains: position("subdomains"),
            expires_at: position("expires_at"),
        })
    }

    /// Fills `out` with the output row: input fields but `expires_at`, then the added ones.
    fn output_row(&self, record: &csv::ByteRecord, added: [&[u8]; 3], out: &mut csv::ByteRecord) {
        out.clear();
        for (i, field) in record.iter().enumerate() {
            if Some(i) != self.expires_at {
                out.push_field(field);
            }
        }
        for field in added {
            out.push_field(field);
        }
    }
}

/// The last expiry formatted, so rows sharing one (the usual case) format it once.
#[derive(Default)]
struct ExpiryText {
    expiry: Option<Expiry>,
    text: String,
}

impl ExpiryText {
    fn get(&mut self, expiry: Expiry) -> &str {
        if self.expiry != Some(expiry) {
            self.text = expiry.to_string();
            self.expiry = Some(expiry);
        }
        &self.text
    }
}

/// Rows handed to a worker at a time: enough that handing over costs little against minting
/// them, few enough that the chunks in flight stay small.
const CHUNK_ROWS: usize = 256;

/// A run of consecutive data rows, read by the calling thread, minted by a worker, and written
/// back in order by the calling thread.
#[derive(Default)]
struct Chunk {
    /// Order of the chunk in the input.
    sequence: usize,
    /// Rows read; only the first `len` are this chunk's (the rest are kept for reuse).
    records: Vec<csv::ByteRecord>,
    len: usize,
    /// The output rows of the minted ones, as CSV.
    output: Vec<u8>,
    /// For each row: minted, or why not.
    results: Vec<Result<(), String>>,
}

impl Chunk {
    /// Reads up to [`CHUNK_ROWS`] records; `false` when the input had none left.
    fn fill<R: Read>(&mut self, reader: &mut csv::Reader<R>) -> Result<bool, csv::Error> {
        self.len = 0;
        while self.len < CHUNK_ROWS {
            if self.records.len() == self.len {
                self.records.push(csv::ByteRecord::new());
            }
            let Some(record) = self.records.get_mut(self.len) else {
                break;
            };
            if !reader.read_byte_record(record)? {
                break;
            }
            self.len += 1;
        }
        Ok(self.len > 0)
    }
}

/// What every minting thread shares.
struct Job<'a> {
    ring: &'a KeyRing,
    columns: &'a Columns,
    header_len: usize,
    options: &'a BatchOptions,
}

/// One thread's minting: the shared job and what the thread reuses from chunk to chunk.
struct Minter<'a> {
    job: &'a Job<'a>,
    expiry_text: ExpiryText,
    out: csv::ByteRecord,
}

impl<'a> Minter<'a> {
    fn new(job: &'a Job<'a>) -> Self {
        Self {
            job,
            expiry_text: ExpiryText::default(),
            out: csv::ByteRecord::new(),
        }
    }

    /// Mints the rows of `chunk` and writes the output rows of those minted to its output.
    fn mint(&mut self, chunk: &mut Chunk) -> Result<(), Error> {
        let job = self.job;
        chunk.results.clear();
        chunk.output.clear();
        let mut writer = csv::Writer::from_writer(&mut chunk.output);
        let records = chunk.records.get(..chunk.len).unwrap_or_default();
        for record in records {
            let minted = if record.len() == job.header_len {
                mint_row(job.ring, job.columns, record, job.options)
            } else {
                // A row with the wrong number of fields is that row's fault, not the file's.
                Err("it has a different number of fields than the header".to_owned())
            };
            let result = match minted {
                Ok((code, kind, expiry)) => {
                    let added = [
                        &code.display_bytes()[..],
                        kind.name().as_bytes(),
                        self.expiry_text.get(expiry).as_bytes(),
                    ];
                    job.columns.output_row(record, added, &mut self.out);
                    writer.write_byte_record(&self.out).map_err(csv_error)?;
                    Ok(())
                }
                Err(reason) => Err(reason),
            };
            chunk.results.push(result);
        }
        writer.flush().map_err(output_error)
    }
}

/// The chunks waiting for a minting thread. Any thread takes the next one.
type Queue = std::sync::Mutex<std::sync::mpsc::Receiver<Chunk>>;

/// A helper thread: mints chunks from `queue` until it is closed.
fn help(job: &Job<'_>, queue: &Queue, done: &std::sync::mpsc::Sender<Result<Chunk, Error>>) {
    let mut minter = Minter::new(job);
    loop {
        // The lock is held only to take the next chunk.
        let next = match queue.lock() {
            Ok(receiver) => receiver.recv().ok(),
            Err(_) => None,
        };
        let Some(mut chunk) = next else {
            return;
        };
        let result = minter.mint(&mut chunk).map(|()| chunk);
        if done.send(result).is_err() {
            return;
        }
    }
}

/// Reads the recipients CSV from `input` and writes the mail-merge CSV to `output`, calling
/// `on_row` once a data row, in input order. Memory does not grow with the number of rows.
///
/// Rows are minted a chunk at a time on every core: the calling thread reads, writes, and
/// mints whenever the next chunk to write is not ready; one helper thread a further core
/// mints. A bounded number of chunks is in flight, and output keeps the input's order.
///
/// # Errors
///
/// [`Error::Batch`] when the header lacks the needed column or reading or writing fails. A bad
/// row is not an error: it is reported through `on_row` and counted. Rows before a read error
/// are written and reported before the error is returned.
pub fn run<R: Read, W: Write>(
    ring: &KeyRing,
    input: R,
    mut output: W,
    options: &BatchOptions,
    mut on_row: impl FnMut(RowEvent<'_>),
) -> Result<Summary, Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let header = reader.byte_headers().map_err(csv_error)?.clone();
    let columns = Columns::find(&header)?;
    let mut out = csv::ByteRecord::new();
    let added: [&[u8]; 3] = [b"code", b"kind", b"expires_at"];
    columns.output_row(&header, added, &mut out);
    let mut writer = csv::Writer::from_writer(&mut output);
    writer.write_byte_record(&out).map_err(csv_error)?;
    writer.flush().map_err(output_error)?;
    drop(writer);

    let job = Job {
        ring,
        columns: &columns,
        header_len: header.len(),
        options,
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let helpers = cores.saturating_sub(1).max(1);
    let (to_queue, queue) = std::sync::mpsc::channel::<Chunk>();
    let queue = std::sync::Mutex::new(queue);
    let (done_tx, done) = std::sync::mpsc::channel::<Result<Chunk, Error>>();
    let summary = std::thread::scope(|scope| {
        for _ in 0..helpers {
            let (job, queue, done_tx) = (&job, &queue, done_tx.clone());
            scope.spawn(move || help(job, queue, &done_tx));
        }
        drop(done_tx);
        let mut driver = Driver {
            reader: &mut reader,
            output: &mut output,
            header: &header,
            in_flight_limit: 4 * cores,
            helpers,
            to_queue: &to_queue,
            queue: &queue,
            done: &done,
            minter: Minter::new(&job),
        };
        let result = driver.drive(&mut on_row);
        // Closing the queue ends the helpers.
        drop(to_queue);
        result
    })?;
    output.flush().map_err(output_error)?;
    Ok(summary)
}

/// The calling thread's part of [`run`].
struct Driver<'a, R, W> {
    reader: &'a mut csv::Reader<R>,
    output: &'a mut W,
    header: &'a csv::ByteRecord,
    in_flight_limit: usize,
    helpers: usize,
    to_queue: &'a std::sync::mpsc::Sender<Chunk>,
    queue: &'a Queue,
    done: &'a std::sync::mpsc::Receiver<Result<Chunk, Error>>,
    minter: Minter<'a>,
}

impl<R: Read, W: Write> Driver<'_, R, W> {
    /// Keeps up to `in_flight_limit` chunks read ahead, and writes and reports finished chunks
    /// in input order; while the next one to write is not ready, mints a queued one itself.
    fn drive(&mut self, on_row: &mut impl FnMut(RowEvent<'_>)) -> Result<Summary, Error> {
        let mut summary = Summary::default();
        let mut spare: Vec<Chunk> = Vec::new();
        // Finished chunks by sequence, waiting for the earlier ones.
        let mut finished = std::collections::BTreeMap::<usize, Chunk>::new();
        let (mut sent, mut next_to_write) = (0usize, 0usize);
        // `None` while the input has rows left; then `Ok` at its end or the read error.
        let mut ended: Option<Result<(), Error>> = None;
        loop {
            while ended.is_none() && sent - next_to_write < self.in_flight_limit {
                let mut chunk = spare.pop().unwrap_or_default();
                let more = match chunk.fill(self.reader) {
                    Ok(more) => more,
                    Err(err) => {
                        // Rows read before the error still count; the error comes after them.
                        ended = Some(Err(csv_error(err)));
                        chunk.len > 0
                    }
                };
                if !more {
                    ended.get_or_insert(Ok(()));
                    spare.push(chunk);
                    break;
                }
                chunk.sequence = sent;
                sent += 1;
                self.to_queue.send(chunk).map_err(|_| helper_gone())?;
            }
            if next_to_write == sent {
                break;
            }
            while let Ok(chunk) = self.done.try_recv() {
                let chunk = chunk?;
                finished.insert(chunk.sequence, chunk);
            }
            if !finished.contains_key(&next_to_write) {
                // Chunks still queued if every helper is busy with one. Reading comes first,
                // so this thread mints only when the helpers would still find work after.
                let queued = (sent - next_to_write)
                    .saturating_sub(finished.len())
                    .saturating_sub(self.helpers);
                let taken = if queued > self.helpers {
                    self.take_queued()
                } else {
                    None
                };
                let chunk = match taken {
                    Some(mut chunk) => self.minter.mint(&mut chunk).map(|()| chunk),
                    None => self.done.recv().map_err(|_| helper_gone())?,
                }?;
                finished.insert(chunk.sequence, chunk);
            }
            while let Some(chunk) = finished.remove(&next_to_write) {
                write_output(self.output, &chunk.output)?;
                report(&chunk, self.header, &mut summary, on_row);
                next_to_write += 1;
                spare.push(chunk);
            }
        }
        ended.unwrap_or(Ok(())).map(|()| summary)
    }

    /// A queued chunk, if one is waiting and no helper is taking one right now.
    fn take_queued(&self) -> Option<Chunk> {
        self.queue.try_lock().ok()?.try_recv().ok()
    }
}

/// Counts a written chunk's rows and calls `on_row` for each, in order.
fn report(
    chunk: &Chunk,
    header: &csv::ByteRecord,
    summary: &mut Summary,
    on_row: &mut impl FnMut(RowEvent<'_>),
) {
    for (record, result) in chunk.records.iter().zip(&chunk.results) {
        summary.rows += 1;
        match result {
            Ok(()) => {
                summary.minted += 1;
                on_row(RowEvent::Minted);
            }
            Err(reason) => {
                summary.rejected += 1;
                on_row(RowEvent::Rejected(Rejection {
                    line: record.position().map_or(0, csv::Position::line),
                    reason: reason.clone(),
                    record,
                    header,
                }));
            }
        }
    }
}

fn write_output<W: Write>(output: &mut W, bytes: &[u8]) -> Result<(), Error> {
    output.write_all(bytes).map_err(output_error)
}

fn output_error(err: std::io::Error) -> Error {
    Error::Batch {
        reason: format!("writing output: {err}"),
    }
}

fn helper_gone() -> Error {
    Error::Batch {
        reason: "a minting thread stopped unexpectedly".to_owned(),
    }
}

/// Mints the code for one row, or says why not.
fn mint_row(
    ring: &KeyRing,
    columns: &Columns,
    record: &csv::ByteRecord,
    options: &BatchOptions,
) -> Result<(crate::Code, Kind, Expiry), String> {
    let field = |index: Option<usize>| -> Result<&str, String> {
        let bytes = index.and_then(|i| record.get(i)).unwrap_or_default();
        std::str::from_utf8(bytes)
            .map(str::trim_ascii)
            .map_err(|_| "a field is not valid UTF-8".to_owned())
    };
    let target = field(Some(columns.audience))?;
    if target.is_empty() {
        let name = if columns.kind == Kind::Email {
            "email"
        } else {
            "domain"
        };
        return Err(format!("the `{name}` field is empty"));
    }
    let kind = match (columns.kind, parse_yes_no(field(columns.subdomains)?)?) {
        (Kind::Domain, true) => Kind::DomainAndSubdomains,
        (Kind::Email, true) => return Err("`subdomains` is set on an email row".to_owned()),
        (kind, _) => kind,
    };
    let audience = Audience::new(kind, target).map_err(|err| err.to_string())?;
    check_audience(&audience, options.allow_public_domains).map_err(|err| err.to_string())?;
    let expires_at = field(columns.expires_at)?;
    let expiry = if expires_at.is_empty() {
        options.default_expiry.ok_or_else(|| {
            "no expiry: fill `expires_at` or give --expires-in or --expires-at".to_owned()
        })?
    } else {
        let at = OffsetDateTime::parse(expires_at, &Rfc3339).map_err(|_| {
            "`expires_at` is not an RFC 3339 date and time such as 2026-12-31T00:00:00Z".to_owned()
        })?;
        Expiry::from_datetime(at).map_err(|err| err.to_string())?
    };
    let expiry = expiry.after(options.now).map_err(|err| err.to_string())?;
    Ok((mint(ring, &audience, expiry), kind, expiry))
}

/// `subdomains` values: empty, no, false, 0, n mean no; yes, true, 1, y, x mean yes.
fn parse_yes_no(text: &str) -> Result<bool, String> {
    const NO: [&str; 5] = ["", "no", "false", "0", "n"];
    const YES: [&str; 5] = ["yes", "true", "1", "y", "x"];
    if NO.iter().any(|no| text.eq_ignore_ascii_case(no)) {
        Ok(false)
    } else if YES.iter().any(|yes| text.eq_ignore_ascii_case(yes)) {
        Ok(true)
    } else {
        Err("`subdomains` must be yes or no".to_owned())
    }
}

fn csv_error(err: csv::Error) -> Error {
    let line = err.position().map(csv::Position::line);
    let reason = match line {
        Some(line) => format!("CSV line {line}: {err}"),
        None => format!("CSV: {err}"),
    };
    Error::Batch { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{UnixTime, verify};

    const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn options() -> BatchOptions {
        BatchOptions {
            default_expiry: Some(Expiry::from_unix(1_893_456_000)),
            now: OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
            allow_public_domains: false,
        }
    }

    /// `rows` recipients over many chunks; every 97th has no `@` and must be rejected.
    fn recipients(rows: usize) -> (String, Vec<usize>) {
        let mut text = String::from("name,email\n");
        let mut bad = Vec::new();
        for i in 0..rows {
            if i % 97 == 5 {
                bad.push(i);
                text.push_str(&format!("P{i},not-an-address-{i}\n"));
            } else {
                text.push_str(&format!("P{i},p{i}@contoso.com\n"));
            }
        }
        (text, bad)
    }

    #[test]
    fn many_chunks_keep_input_order_and_report_rows_in_order() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let rows = CHUNK_ROWS * 9 + 17;
        let (input, bad) = recipients(rows);
        let mut output = Vec::new();
        let mut events = Vec::new();
        let summary = run(&ring, input.as_bytes(), &mut output, &options(), |event| {
            events.push(match event {
                RowEvent::Minted => None,
                RowEvent::Rejected(rejection) => Some((
                    rejection.line,
                    String::from_utf8(rejection.record[1].to_vec()).unwrap(),
                )),
            });
        })
        .unwrap();
        assert_eq!(summary.rows, rows as u64);
        assert_eq!(summary.rejected, bad.len() as u64);
        assert_eq!(summary.minted, (rows - bad.len()) as u64);
        // One event a row, in input order; rejections name their line (the header is line 1).
        assert_eq!(events.len(), rows);
        for (i, event) in events.iter().enumerate() {
            match event {
                Some((line, email)) => {
                    assert!(bad.contains(&i), "row {i} rejected");
                    assert_eq!(*line, i as u64 + 2);
                    assert_eq!(*email, format!("not-an-address-{i}"));
                }
                None => assert!(!bad.contains(&i), "row {i} minted"),
            }
        }
        // The output has the good rows in input order, each with a code for its own address.
        let mut reader = csv::Reader::from_reader(output.as_slice());
        assert_eq!(
            reader.headers().unwrap(),
            vec!["name", "email", "code", "kind", "expires_at"]
        );
        let good = (0..rows).filter(|i| !bad.contains(i));
        let mut count = 0;
        for (record, i) in reader.records().zip(good) {
            let record = record.unwrap();
            assert_eq!(&record[0], format!("P{i}"));
            let outcome = verify(
                &ring,
                &record[2],
                &record[1],
                UnixTime::from_unix(1_790_000_000),
                &crate::VerifyOptions::default(),
            );
            assert!(outcome.is_valid(), "row {i}: {outcome}");
            count += 1;
        }
        assert_eq!(count, rows - bad.len());
    }

    /// Gives `good` bytes, then fails.
    struct FailingAfter<'a> {
        good: &'a [u8],
    }

    impl Read for FailingAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.good.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = self.good.len().min(buf.len()).min(1000);
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good = &self.good[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_comes_after_the_rows_read_before_it() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let rows = CHUNK_ROWS * 5;
        let (input, _) = recipients(rows);
        let input = FailingAfter {
            good: input.as_bytes(),
        };
        let mut output = Vec::new();
        let mut seen = 0u64;
        let result = run(&ring, input, &mut output, &options(), |_| seen += 1);
        let Err(Error::Batch { reason }) = result else {
            panic!("expected an error, got {result:?}");
        };
        assert!(reason.contains("disk on fire"), "{reason}");
        // Every complete row before the failure was reported and the minted ones written.
        assert!(seen >= rows as u64 - 1, "{seen} rows reported");
        let written = csv::Reader::from_reader(output.as_slice())
            .records()
            .count() as u64;
        assert!(
            written > 0 && written <= seen,
            "{written} written, {seen} seen"
        );
    }

    #[test]
    fn no_data_rows_gives_the_header_alone() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let mut output = Vec::new();
        let summary = run(&ring, &b"email,team\n"[..], &mut output, &options(), |_| {}).unwrap();
        assert_eq!(summary, Summary::default());
        assert_eq!(output, b"email,team,code,kind,expires_at\n");
    }
}
