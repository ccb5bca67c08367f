//! Preparing a campaign's rows: each row read, minted, rendered and built into a [`Mail`]
//! once, and set against the journal of earlier runs.

use std::sync::atomic::{AtomicU64, Ordering};

use lettre::address::Envelope;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};
use minijinja::value::Value;
use sha2::{Digest as _, Sha256};

use super::journal::{self, RowStatus};
use super::template::{self, Rendered, Vars};
use super::{Campaign, SendOptions};
use crate::batch::{Duplicates, Recipients, RowError, RowMinter};
use crate::{Error, Expiry, Kind};

/// One message, built: the addresses, the rendered subject and bodies, and its Message-ID.
/// What every transport sends; each writes it in its own form (MIME for SMTP and `.eml`
/// files, JSON for Graph).
#[derive(Debug, Clone)]
pub struct Mail {
    /// The `From`.
    pub from: Mailbox,
    /// Where the message goes: the row's recipient, or the `--to-one` mailbox.
    pub to: Mailbox,
    /// The subject (with the real recipient in front on a run to one mailbox).
    pub subject: String,
    /// The text body.
    pub text: String,
    /// The HTML body, if there is an HTML template.
    pub html: Option<String>,
    /// A Message-ID in the sender's domain, the same on every attempt, so that a receiving
    /// server can tell a second attempt of one message from a second message.
    pub message_id: Option<String>,
}

impl Mail {
    /// The message as MIME: headers through the mail library (a cell cannot add a header),
    /// a text body, and with an HTML body both as multipart/alternative; dated now.
    ///
    /// # Errors
    ///
    /// lettre's, when the addresses cannot make an envelope (not seen with parsed ones).
    pub fn to_message(&self) -> Result<Message, lettre::error::Error> {
        // The envelope is the one pair of addresses the headers hold: given, lettre need not
        // parse them back out of the headers it has just encoded.
        let envelope = Envelope::new(Some(self.from.email.clone()), vec![self.to.email.clone()])?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(self.to.clone())
            .subject(self.subject.clone())
            .envelope(envelope);
        // A Message-ID in the sender's domain: some providers mark mail without one as spam.
        builder = builder.message_id(self.message_id.clone());
        match &self.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                self.text.clone(),
                html.clone(),
            )),
            // A MIME part, not a bare body: lettre writes `MIME-Version: 1.0` only for those.
            None => builder.singlepart(SinglePart::plain(self.text.clone())),
        }
    }
}

/// A row ready to send.
#[derive(Debug)]
pub struct Prepared {
    /// 1-based line of the row.
    pub line: u64,
    /// The row's digest, to notice a changed row under a journal.
    pub row: String,
    /// The recipient as in the row (the message goes to `--to-one` if given).
    pub to: Address,
    /// The key that signed the code.
    pub key_id: u8,
    /// The code's expiry.
    pub expiry: Expiry,
    /// The code's fingerprint.
    pub fingerprint: String,
    /// The message.
    pub mail: Mail,
    /// The row's fields, for a rejects file.
    pub record: csv::ByteRecord,
}

/// What preparing found for one row.
#[derive(Debug)]
#[non_exhaustive]
pub enum RowOutcome {
    /// To send. `again` when the journal says it was handed over with no reply.
    Ready {
        /// The message and its facts.
        prepared: Box<Prepared>,
        /// Whether an earlier run may have sent it already.
        again: bool,
    },
    /// The journal says it was sent.
    AlreadySent {
        /// The row's line.
        line: u64,
        /// The recipient, as journalled.
        to: String,
    },
    /// Handed over by an earlier run with no reply recorded, and left alone
    /// (`skip_uncertain`).
    SkippedUncertain {
        /// The row's line.
        line: u64,
        /// The recipient, as journalled.
        to: String,
        /// The code's fingerprint, as journalled.
        code: String,
    },
    /// Refused for good in an earlier run, and unchanged since: left alone unless
    /// `retry_rejected` (a changed row is sent).
    RejectedEarlier {
        /// The row's line.
        line: u64,
        /// The recipient, as journalled.
        to: String,
        /// The reply then.
        reply: String,
        /// The fields.
        record: csv::ByteRecord,
    },
    /// The row is wrong: no code, no message.
    Invalid {
        /// The row's line.
        line: u64,
        /// Why.
        reason: String,
        /// The fields.
        record: csv::ByteRecord,
    },
    /// The recipient was named on an earlier line.
    Duplicate {
        /// The row's line.
        line: u64,
        /// The earlier line.
        first: u64,
        /// The fields.
        record: csv::ByteRecord,
    },
}

impl RowOutcome {
    /// Why a row that is valid is left out of a run, in the words a run and a dry run share;
    /// `None` for a row that is sent or invalid.
    #[must_use]
    pub fn left_out(&self) -> Option<String> {
        Some(match self {
            Self::AlreadySent { line, to } => {
                format!("line {line}: {to} was sent a message by an earlier run; left out")
            }
            Self::SkippedUncertain { line, to, code } => format!(
                "line {line}: {to} (code fingerprint {code}) may have been sent by an earlier \
                 run; left alone (--skip-uncertain)"
            ),
            Self::RejectedEarlier { line, to, .. } => format!(
                "line {line}: {to} was refused by the server in an earlier run; left out (correct \
                 the row, or pass --retry-rejected)"
            ),
            Self::Duplicate { line, first, .. } => {
                format!("line {line}: the same recipient as line {first}; left out")
            }
            Self::Ready { .. } | Self::Invalid { .. } => return None,
        })
    }
}

/// Reads the recipients file and prepares every row: mints, renders, builds the message, and
/// sets it against the journal. Calls `on_row` once a row; `on_row` returning `false` stops.
///
/// # Errors
///
/// [`Error::Batch`], [`Error::NotUtf8`] or [`Error::Io`] as [`crate::batch::run`];
/// [`Error::Template`] at the first row a template fails on; [`Error::Journal`] when a row the
/// journal says was sent (or may have been) has changed.
pub fn prepare(
    campaign: &Campaign<'_>,
    input: impl std::io::Read,
    mut on_row: impl FnMut(RowOutcome) -> bool,
) -> Result<(), Error> {
    let Campaign {
        ring,
        templates,
        options,
        journal,
        journal_path,
    } = *campaign;
    let mut reader = Recipients::open(input, &options.read)?;
    let header = reader.header().clone();
    let columns = reader.columns().clone();
    if columns.kind != Kind::Email && columns.recipient.is_none() {
        return Err(Error::Batch {
            reason: "domain codes need an email column beside `domain` to send them to".to_owned(),
        });
    }
    let names: Vec<std::borrow::Cow<'_, str>> =
        header.iter().map(String::from_utf8_lossy).collect();
    let variables = template::Columns::new(names.iter().map(AsRef::as_ref));
    let minter = RowMinter::new(ring, &columns, &options.mint);
    let mut duplicates = Duplicates::new();
    let mut record = csv::ByteRecord::new();
    let mut expiry_texts: Option<(Expiry, Value, Value)> = None;
    let sign_up_url = Value::from(options.sign_up_url.as_deref().unwrap_or_default());
    while reader.read_row(&mut record)? {
        let line = record.position().map_or(0, csv::Position::line);
        let minted = match minter.mint(&record) {
            Ok(minted) => minted,
            Err(RowError::NotUtf8) => return Err(Error::NotUtf8 { line }),
            Err(RowError::Rejected(reason)) => {
                let record = record.clone();
                if on_row(RowOutcome::Invalid {
                    line,
                    reason,
                    record,
                }) {
                    continue;
                }
                return Ok(());
            }
        };
        if let Some(first) = duplicates.first_seen(minted.recipient, line) {
            let record = record.clone();
            if on_row(RowOutcome::Duplicate {
                line,
                first,
                record,
            }) {
                continue;
            }
            return Ok(());
        }
        let row = digest(&record);
        let field = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .and_then(|b| std::str::from_utf8(b).ok())
                .map_or("", str::trim)
        };
        let to_text = match columns.kind {
            Kind::Email => field(Some(columns.audience)),
            _ => field(columns.recipient),
        };
        let Ok(to) = to_text.parse::<Address>() else {
            let reason = "the recipient's address is not one an SMTP server takes".to_owned();
            if on_row(RowOutcome::Invalid {
                line,
                reason,
                record: record.clone(),
            }) {
                continue;
            }
            return Ok(());
        };
        let again = match journal.rows.get(&journal::recipient_key(to.as_ref())) {
            None => false,
            Some(seen) => {
                let risky = matches!(seen.status, RowStatus::Sent | RowStatus::Uncertain);
                if risky && seen.row != row {
                    let was = if seen.line == line {
                        String::new()
                    } else {
                        format!(", then on line {}", seen.line)
                    };
                    return Err(Error::Journal {
                        path: journal_path.display().to_string(),
                        reason: format!(
                            "the row for {} (line {line}{was}) changed since a message went to \
                             that address; put the row back as it was (rows may be added, \
                             removed or moved: they are known by their address)",
                            seen.to
                        ),
                    });
                }
                let outcome = match seen.status {
                    RowStatus::Sent => Some(RowOutcome::AlreadySent {
                        line,
                        to: seen.to.clone(),
                    }),
                    RowStatus::Uncertain if options.skip_uncertain => {
                        Some(RowOutcome::SkippedUncertain {
                            line,
                            to: seen.to.clone(),
                            code: seen.code.clone(),
                        })
                    }
                    // The same row refused for good: sending it again would only be refused
                    // again, and count against the sender with the provider.
                    RowStatus::Rejected if seen.row == row && !options.retry_rejected => {
                        Some(RowOutcome::RejectedEarlier {
                            line,
                            to: seen.to.clone(),
                            reply: seen.reply.clone(),
                            record: record.clone(),
                        })
                    }
                    RowStatus::Uncertain | RowStatus::Rejected | RowStatus::Deferred => None,
                };
                if let Some(outcome) = outcome {
                    if on_row(outcome) {
                        continue;
                    }
                    return Ok(());
                }
                seen.status == RowStatus::Uncertain
            }
        };
        // Rows share one expiry as a rule: its two texts are made once.
        let (expires, expires_human) = match &mut expiry_texts {
            Some((expiry, expires, human)) if *expiry == minted.expiry => {
                (expires.clone(), human.clone())
            }
            texts => {
                let expires = journal::rfc3339(minted.expiry);
                let human = templates.human_date(i64::from(minted.expiry.unix()));
                let (expires, human) = (
                    template::ExpiryText::value(&expires, &human),
                    Value::from(human),
                );
                *texts = Some((minted.expiry, expires.clone(), human.clone()));
                (expires, human)
            }
        };
        let cells = record
            .iter()
            .map(|cell| std::str::from_utf8(cell).unwrap_or_default());
        let mut vars = Vars::new(&variables, cells);
        vars.set("code", minted.code.to_string());
        vars.set("expires", expires);
        vars.set("expires_human", expires_human);
        vars.set("kind", minted.audience.kind().name());
        vars.set("audience", minted.audience.value());
        vars.set("email", to.to_string());
        vars.set("sign_up_url", sign_up_url.clone());
        // A template may fail for some rows only (`{% if %}`): the row is named too.
        let rendered = templates.render(vars).map_err(|err| match err {
            Error::Template {
                template,
                line: at,
                column,
                reason,
            } => Error::Template {
                template,
                line: at,
                column,
                reason: format!("{reason} (for the row on line {line} of the recipients file)"),
            },
            other => other,
        })?;
        let mail = build(options, &to, rendered);
        let prepared = Prepared {
            line,
            row,
            to,
            key_id: minted.code.key_id(),
            expiry: minted.expiry,
            fingerprint: minted.code.fingerprint(),
            mail,
            record: record.clone(),
        };
        if !on_row(RowOutcome::Ready {
            prepared: Box::new(prepared),
            again,
        }) {
            return Ok(());
        }
    }
    Ok(())
}

/// The subject prefix of a test message: whom the real one goes to.
#[must_use]
pub fn test_subject(to: &Address, subject: &str) -> String {
    format!("[test: to {to}] {subject}")
}

/// The message for `to`: to the `--to-one` mailbox instead if one is given, its subject then
/// naming the real recipient.
fn build(options: &SendOptions, to: &Address, rendered: Rendered) -> Mail {
    let (to_mailbox, subject) = match &options.to_one {
        Some(mailbox) => (mailbox.clone(), test_subject(to, &rendered.subject)),
        None => (Mailbox::new(None, to.clone()), rendered.subject),
    };
    Mail {
        from: options.from.clone(),
        to: to_mailbox,
        subject,
        text: rendered.text,
        html: rendered.html,
        message_id: message_id(options.from.email.domain()),
    }
}

/// A Message-ID unique to this message: 128 random bits drawn once a process, and a count of
/// the messages built, in `domain`. One draw a process instead of one a message: the system
/// call cost more than the rest of the header. `None` (lettre makes one) if there is no
/// randomness to be had.
fn message_id(domain: &str) -> Option<String> {
    static PREFIX: std::sync::OnceLock<Option<u128>> = std::sync::OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let prefix = (*PREFIX.get_or_init(|| {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .ok()
            .map(|()| u128::from_be_bytes(random))
    }))?;
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    Some(format!("<{prefix:032x}.{count:x}@{domain}>"))
}

/// A row's digest: the first 64 bits of SHA-256 over its fields, in hex.
pub(crate) fn digest(record: &csv::ByteRecord) -> String {
    let mut hash = Sha256::new();
    for field in record {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    crate::code::hex(hash.finalize().get(..8).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_tell_rows_apart() {
        let a = csv::ByteRecord::from(vec!["a", "bc"]);
        let b = csv::ByteRecord::from(vec!["ab", "c"]);
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(digest(&a), digest(&a.clone()));
        assert_eq!(digest(&a).len(), 16);
    }

    #[test]
    fn a_cell_cannot_add_a_header() {
        let mail = Mail {
            from: "Contoso <invites@contoso.com>".parse().unwrap(),
            to: Mailbox::new(None, "a@contoso.com".parse().unwrap()),
            subject: "Hi\r\nBcc: victim@evil.example".to_owned(),
            text: "body".to_owned(),
            html: Some("<p>body</p>".to_owned()),
            message_id: message_id("contoso.com"),
        };
        let message = mail.to_message().unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("Message-ID: <"), "{text}");
        assert!(text.contains("@contoso.com>"), "{text}");
        assert_eq!(message.envelope().to().len(), 1);
    }

    #[test]
    fn message_ids_are_unique_and_in_the_senders_domain() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| message_id("contoso.com").unwrap())
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let (local, domain) = id.split_once('@').unwrap();
            assert_eq!(domain, "contoso.com>");
            // 128 random bits, then the count.
            assert!(local.starts_with('<') && local.len() > 34, "{id}");
        }
    }
}
