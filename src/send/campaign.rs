//! The campaign's rules: resuming (the journal, the expiry a campaign keeps), the check of
//! every row before the first message, the accounting of a run, and how it ended.

use std::collections::HashSet;
use std::path::Path;

use time::OffsetDateTime;

use super::journal::{Journal, JournalState, RowRecord, RowStatus, recipient_key, rfc3339};
use super::prepare::{Prepared, RowOutcome, prepare};
use super::{Campaign, Event, SendOptions, Stop, Summary};
use crate::{Error, Expiry};

/// A relative expiry asked for again that differs from the campaign's by more than this is
/// said: a little later it differs by that little.
const EXPIRY_NOTE_SECONDS: i64 = 24 * 3600;

/// How this run asked for the codes' expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpiryAsked {
    /// Not at all (each row's `expires_at`).
    None,
    /// An instant (`--expires-at`): a resumed campaign with another expiry is refused.
    At,
    /// A duration from now (`--expires-in`, as given): a resumed campaign keeps its own.
    In(String),
}

/// Opens (or creates) the campaign's journal and applies the resume rules: a resumed campaign
/// keeps its codes' expiry, which becomes `options.mint.default_expiry`.
///
/// # Errors
///
/// [`Error::Journal`] as [`Journal::open`]; [`Error::Config`] when an `--expires-at` differs
/// from the resumed campaign's expiry.
pub fn open_journal(
    path: &Path,
    options: &mut SendOptions,
    asked: &ExpiryAsked,
    now: OffsetDateTime,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<(Journal, JournalState), Error> {
    let wanted = options.mint.default_expiry;
    let (journal, state) = Journal::open(path, wanted, now)?;
    if !state.resumed {
        return Ok((journal, state));
    }
    if *asked == ExpiryAsked::At && wanted != state.expires_at {
        return Err(Error::Config {
            reason: format!(
                "--expires-at differs from the campaign's expiry in {} ({}); drop the flag to \
                 resume, or start a new campaign with another --journal",
                path.display(),
                state.expires_at.map_or("none".to_owned(), rfc3339)
            ),
        });
    }
    let apart = match (wanted, state.expires_at) {
        (Some(wanted), Some(kept)) => {
            (i64::from(wanted.unix()) - i64::from(kept.unix())).abs() > EXPIRY_NOTE_SECONDS
        }
        _ => false,
    };
    if let ExpiryAsked::In(asked_in) = asked
        && apart
    {
        on_event(Event::ExpiryKept { asked_in });
    }
    options.mint.default_expiry = state.expires_at;
    on_event(Event::Resuming {
        journal: path,
        expires_at: state.expires_at,
    });
    Ok((journal, state))
}

/// A row to send.
#[derive(Debug)]
pub struct Ready {
    /// The message and its facts.
    pub prepared: Box<Prepared>,
    /// Whether an earlier run may have sent it already (handed over, no reply recorded).
    pub again: bool,
}

/// What the check of every row counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rows this run sends.
    pub ready: u64,
    /// Rows an earlier run sent.
    pub already_sent: u64,
    /// Rows whose outcome an earlier run left unknown (sent again or left alone).
    pub uncertain: u64,
    /// Rows refused for good in an earlier run and left out.
    pub rejected_earlier: u64,
    /// Wrong rows.
    pub invalid: u64,
    /// Rows naming a recipient an earlier line named.
    pub duplicates: u64,
    /// Rows to send left for a later run by the limit.
    pub held: u64,
}

/// The campaign, checked: the rows to send, in file order, and what the others came to.
#[derive(Debug, Default)]
pub struct Checked {
    /// The rows to send.
    pub ready: Vec<Ready>,
    /// The counts.
    pub counts: Counts,
    /// Rows for the rejects file (invalid, duplicate, refused earlier), with the reason.
    pub rejects: Vec<(csv::ByteRecord, String)>,
}

/// Prepares every row of `input` once and sets it against the journal, before any message
/// leaves. With `options.limit`, only the first rows still to send are kept.
///
/// # Errors
///
/// As [`prepare`].
pub fn check(
    campaign: &Campaign<'_>,
    input: &[u8],
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Checked, Error> {
    let mut checked = Checked::default();
    let limit = campaign.options.limit.unwrap_or(u64::MAX);
    // The journal's recipients this file still names.
    let mut named = HashSet::new();
    prepare(campaign, input, |outcome| {
        let counts = &mut checked.counts;
        match outcome {
            RowOutcome::Ready { prepared, again } => {
                named.insert(recipient_key(prepared.to.as_ref()));
                if counts.ready >= limit {
                    counts.held += 1;
                    return true;
                }
                counts.ready += 1;
                if again {
                    counts.uncertain += 1;
                    on_event(Event::SendingAgain {
                        line: prepared.line,
                        to: &prepared.to,
                        code: &prepared.fingerprint,
                    });
                }
                checked.ready.push(Ready { prepared, again });
            }
            RowOutcome::Invalid {
                line,
                reason,
                record,
            } => {
                counts.invalid += 1;
                on_event(Event::Invalid {
                    line,
                    reason: &reason,
                });
                checked
                    .rejects
                    .push((record, format!("line {line}: {reason}")));
            }
            other => {
                // Rows already sent are only counted (a resumed run of a large campaign has
                // thousands); each other row left out is said.
                if !matches!(other, RowOutcome::AlreadySent { .. }) {
                    on_event(Event::LeftOut(&other));
                }
                match other {
                    RowOutcome::AlreadySent { to, .. } => {
                        named.insert(recipient_key(&to));
                        counts.already_sent += 1;
                    }
                    RowOutcome::SkippedUncertain { to, .. } => {
                        named.insert(recipient_key(&to));
                        counts.uncertain += 1;
                    }
                    RowOutcome::RejectedEarlier {
                        line,
                        to,
                        reply,
                        record,
                    } => {
                        named.insert(recipient_key(&to));
                        counts.rejected_earlier += 1;
                        checked.rejects.push((
                            record,
                            format!(
                                "line {line}: refused by the server in an earlier run: {reply}"
                            ),
                        ));
                    }
                    RowOutcome::Duplicate {
                        line,
                        first,
                        record,
                    } => {
                        counts.duplicates += 1;
                        checked.rejects.push((
                            record,
                            format!("line {line}: the same recipient as line {first}: left out"),
                        ));
                    }
                    RowOutcome::Ready { .. } | RowOutcome::Invalid { .. } => {}
                }
            }
        }
        true
    })?;
    // Rows are known by their address: a row whose address was changed is a new recipient,
    // and the address it had is no longer in the file. Said, so that an edit is not silent.
    let mut gone: Vec<&RowRecord> = campaign
        .journal
        .rows
        .iter()
        .filter(|(key, seen)| {
            matches!(seen.status, RowStatus::Sent | RowStatus::Uncertain) && !named.contains(*key)
        })
        .map(|(_, seen)| seen)
        .collect();
    gone.sort_by_key(|seen| seen.line);
    for seen in gone {
        on_event(Event::NoLongerInFile {
            to: &seen.to,
            line: seen.line,
        });
    }
    Ok(checked)
}

/// How a run ended, for an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// Every row was sent, by this run or an earlier one (rows held back by a limit aside).
    Done,
    /// Rows were refused, deferred, invalid or duplicate, or the run stopped cleanly with
    /// rows left (a sending quota).
    RowsLeft,
    /// The provider was lost, refuses the campaign, or needs an administrator.
    Failed,
    /// The shutdown future completed.
    Interrupted,
}

impl Ending {
    /// How a run that checked `counts`, then delivered with `summary` (none if there was
    /// nothing to send), ended.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] when a run that was not stopped accounts for fewer rows than it had
    /// to send: the journal holds what happened to them.
    pub fn of(counts: &Counts, summary: Option<&Summary>, journal: &Path) -> Result<Self, Error> {
        Self::of_run(counts, summary, journal, false)
    }

    /// As [`Ending::of`]; with `invalid_set_aside` (`--skip-invalid`), invalid and duplicate
    /// rows were set aside as asked, and a run that sent every other row is
    /// [`Ending::Done`], as `batch --skip-invalid` succeeds once the good rows are written.
    ///
    /// # Errors
    ///
    /// As [`Ending::of`].
    pub fn of_run(
        counts: &Counts,
        summary: Option<&Summary>,
        journal: &Path,
        invalid_set_aside: bool,
    ) -> Result<Self, Error> {
        let set_aside_left = if invalid_set_aside {
            0
        } else {
            counts.invalid + counts.duplicates
        };
        let rows_left = set_aside_left + counts.rejected_earlier > 0;
        let Some(summary) = summary else {
            return Ok(if rows_left {
                Self::RowsLeft
            } else {
                Self::Done
            });
        };
        match &summary.stopped {
            Some(Stop::Interrupted) => return Ok(Self::Interrupted),
            Some(Stop::ServerLost(_) | Stop::ServerRefuses(..) | Stop::Fatal(_)) => {
                return Ok(Self::Failed);
            }
            Some(Stop::Quota(_)) => return Ok(Self::RowsLeft),
            None => {}
        }
        let ended = summary.sent + summary.rejected + summary.deferred + summary.gave_up;
        if ended != counts.ready {
            return Err(Error::Journal {
                path: journal.display().to_string(),
                reason: format!(
                    "{ended} of {} rows to send were accounted for; the journal holds what \
                     happened to each",
                    counts.ready
                ),
            });
        }
        Ok(
            if rows_left || summary.rejected > 0 || summary.deferred > 0 {
                Self::RowsLeft
            } else {
                Self::Done
            },
        )
    }
}

/// A campaign's expiry in words for messages: RFC 3339, or each row's own.
#[must_use]
pub fn expiry_text(expiry: Option<Expiry>) -> String {
    expiry.map_or("each row's expires_at".to_owned(), rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_set_aside_as_asked_leave_a_run_done() {
        let journal = Path::new("campaign.journal");
        let invalid = Counts {
            already_sent: 3,
            invalid: 1,
            duplicates: 1,
            ..Counts::default()
        };
        assert_eq!(Ending::of(&invalid, None, journal), Ok(Ending::RowsLeft));
        assert_eq!(
            Ending::of_run(&invalid, None, journal, true),
            Ok(Ending::Done)
        );
        // A row the server refused is not set aside by --skip-invalid: it was valid.
        let refused = Counts {
            rejected_earlier: 1,
            ..invalid
        };
        assert_eq!(
            Ending::of_run(&refused, None, journal, true),
            Ok(Ending::RowsLeft)
        );
    }
}
