//! SMTP campaigns: the recipients CSV that `batch` reads, the same row minter, one email a
//! row, and a journal that makes a run resumable.
//!
//! A campaign is read twice. [`scan`] first checks every row (address, expiry, template,
//! journal) before any email leaves, and counts; [`deliver`] then reads it again and sends
//! the rows still to send through a pool of connections, paced and retried, journalling each
//! row before and after its message goes to the server. Codes are deterministic (the same
//! key, audience and expiry give the same code), so a resumed run sends the codes the first
//! run would have.

pub mod journal;
pub mod pacing;
pub mod template;
pub mod transport;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{Address, AsyncTransport as _, Message};
use minijinja::value::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc::error::TryRecvError;

pub use journal::{Journal, JournalState, Record, RowStatus};
pub use pacing::{Pacer, Rate};
pub use template::{Columns, Rendered, TemplateSource, Templates, Vars};
pub use transport::{SmtpPassword, SmtpSettings, TlsMode, Transport};

use crate::batch::{Duplicates, MintOptions, ReadOptions, Recipients, RowError, RowMinter};
use crate::{Error, Expiry, KeyRing, Kind};

/// How often the journal is synced to disk during a run. Writes reach the file at once (a
/// killed process loses none); this bounds what a power cut can lose. Not more often: on
/// ext4 a sync holds up the appends made meanwhile, and every 50 ms cost a tenth of the
/// throughput in `benches/send.rs`.
const SYNC_EVERY: Duration = Duration::from_millis(1000);

/// Jobs handed from the reading thread to the senders at a time.
const BATCH_JOBS: usize = 64;

/// Rows deferred in a row, none accepted between, that stop a run: the server refuses the
/// campaign, not a recipient (a lost login, a sending quota, a policy against the sender).
const REFUSED_IN_A_ROW: u64 = 5;

/// How old a message's `Date` may be when it leaves before it is set again.
const DATE_SLACK: Duration = Duration::from_secs(2);

/// How often the run takes the senders' finished jobs to count and report them.
const REPORT_EVERY: Duration = Duration::from_millis(20);

/// Batches read ahead of the senders: enough that they never wait for the reading thread,
/// few enough to bound memory (a job is one message, a few kilobytes).
const BATCHES_AHEAD: usize = 4;

/// Settings of one campaign.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// How rows are minted (the default expiry is the journal's on a resumed run).
    pub mint: MintOptions,
    /// How the recipients file is read.
    pub read: ReadOptions,
    /// The `From` of every message.
    pub from: Mailbox,
    /// Send every message to this mailbox instead of its recipient (a test run).
    pub to_one: Option<Mailbox>,
    /// `sign_up_url` in templates.
    pub sign_up_url: Option<String>,
    /// Messages in flight at once (connections in the pool).
    pub concurrency: usize,
    /// The rate limit; `None` for none.
    pub rate: Option<Rate>,
    /// Leave rows whose outcome the journal does not know unsent, instead of sending again.
    pub skip_uncertain: bool,
    /// Send again rows the server refused for good in an earlier run, though the row has not
    /// changed since.
    pub retry_rejected: bool,
    /// How temporary failures are retried.
    pub retry: Retry,
}

/// Retries of temporary failures (4xx replies, lost connections): `attempts` in all, waiting
/// `first_delay`, then twice as long each time.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// The wait before the second attempt.
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_secs(1),
        }
    }
}

/// What a campaign reads and sends with: the key ring, the templates, the settings, and what
/// the journal says of earlier runs.
#[derive(Debug, Clone, Copy)]
pub struct Campaign<'a> {
    /// The key ring; its signing key mints.
    pub ring: &'a KeyRing,
    /// The message templates.
    pub templates: &'a Templates,
    /// The settings.
    pub options: &'a SendOptions,
    /// The journal as read when the run started (empty for a new campaign).
    pub journal: &'a JournalState,
    /// The journal's path, for messages.
    pub journal_path: &'a Path,
}

/// A row ready to send.
#[derive(Debug)]
pub struct Prepared {
    /// 1-based line of the row.
    pub line: u64,
    /// The row's digest, to notice a changed row under a journal.
    pub row: String,
    /// The recipient as in the row (the envelope goes to `--to-one` if given).
    pub to: Address,
    /// The key that signed the code.
    pub key_id: u8,
    /// The code's expiry.
    pub expiry: Expiry,
    /// The code's fingerprint.
    pub fingerprint: String,
    /// The message.
    pub message: Message,
    /// The row's fields, for a rejects file.
    pub record: csv::ByteRecord,
}

/// What the scan found for one row.
#[derive(Debug)]
#[non_exhaustive]
pub enum RowOutcome {
    /// To send. `again` when the journal says it was handed to the server with no reply.
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
    /// Handed to the server by an earlier run with no reply recorded, and left alone
    /// (`skip_uncertain`).
    SkippedUncertain {
        /// The row's line.
        line: u64,
        /// The recipient, as journalled.
        to: String,
        /// The code's fingerprint, as journalled.
        code: String,
    },
    /// Refused for good by the server in an earlier run, and unchanged since: left alone
    /// unless `retry_rejected` (a changed row is sent).
    RejectedEarlier {
        /// The row's line.
        line: u64,
        /// The recipient, as journalled.
        to: String,
        /// The server's reply then.
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

/// What happened during [`deliver`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The server accepted a message.
    Sent {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
    },
    /// The server refused a message for good.
    Rejected {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
        /// The server's reply.
        reply: &'a str,
        /// The row's fields.
        record: &'a csv::ByteRecord,
    },
    /// The server refused a message for now (4xx after the retries), or for a reason that
    /// is not the recipient's (a login, policy or server error): not sent; a later run sends
    /// it again.
    Deferred {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
        /// The server's last reply.
        reply: &'a str,
    },
    /// The server could not be reached with retries. `uncertain` when the row's outcome is
    /// unknown: a connection broke while the message may have been on its way.
    GaveUp {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
        /// The last error.
        reply: &'a str,
        /// Whether the server may have taken it.
        uncertain: bool,
    },
}

/// Why a run stopped before the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The shutdown future completed (Ctrl-C).
    Interrupted,
    /// The server could not be reached with retries.
    ServerLost(String),
    /// The server deferred or refused, for reasons not the recipients', this many messages
    /// in a row with none accepted between: it is refusing the campaign (a login, a quota,
    /// a policy). Its last reply.
    ServerRefuses(u64, String),
}

/// Counts of a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages the server accepted.
    pub sent: u64,
    /// Messages refused for good (5xx).
    pub rejected: u64,
    /// Retries made.
    pub retried: u64,
    /// Rows deferred: refused for now, or not for the recipient's sake (sent by a later run).
    pub deferred: u64,
    /// Rows given up after retries, the server out of reach.
    pub gave_up: u64,
    /// Of those, the rows whose outcome is unknown: a connection broke during an attempt.
    pub uncertain: u64,
    /// Rows sent again although an earlier run may have sent them.
    pub resent_uncertain: u64,
    /// Why the run stopped early, if it did.
    pub stopped: Option<Stop>,
}

/// Reads the recipients file and prepares every row: mints, renders, builds the message, and
/// checks it against the journal. Calls `on_row` once a row; `on_row` returning `false`
/// stops the scan.
///
/// # Errors
///
/// [`Error::Batch`], [`Error::NotUtf8`] or [`Error::Io`] as [`crate::batch::run`];
/// [`Error::Template`] at the first row a template fails on; [`Error::Journal`] when a row the
/// journal says was sent (or may have been) has changed.
pub fn scan(
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
    let human = time::macros::format_description!(
        "[day padding:none] [month repr:long] [year], [hour]:[minute] UTC"
    );
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
                match seen.status {
                    RowStatus::Sent => {
                        if on_row(RowOutcome::AlreadySent {
                            line,
                            to: seen.to.clone(),
                        }) {
                            continue;
                        }
                        return Ok(());
                    }
                    RowStatus::Uncertain if options.skip_uncertain => {
                        if on_row(RowOutcome::SkippedUncertain {
                            line,
                            to: seen.to.clone(),
                            code: seen.code.clone(),
                        }) {
                            continue;
                        }
                        return Ok(());
                    }
                    RowStatus::Uncertain => true,
                    // The same row refused for good: sending it again would only be refused
                    // again, and count against the sender with the provider.
                    RowStatus::Rejected if seen.row == row && !options.retry_rejected => {
                        if on_row(RowOutcome::RejectedEarlier {
                            line,
                            to: seen.to.clone(),
                            reply: seen.reply.clone(),
                            record: record.clone(),
                        }) {
                            continue;
                        }
                        return Ok(());
                    }
                    RowStatus::Rejected | RowStatus::Deferred => false,
                }
            }
        };
        // Rows share one expiry as a rule: its two texts are made once.
        let (expires, expires_human) = match &mut expiry_texts {
            Some((expiry, expires, human)) if *expiry == minted.expiry => {
                (expires.clone(), human.clone())
            }
            texts => {
                let expires = journal::rfc3339(minted.expiry);
                let human = minted
                    .expiry
                    .to_datetime()
                    .format(&human)
                    .unwrap_or_else(|_| expires.clone());
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
        let envelope_to = match &options.to_one {
            Some(mailbox) => mailbox.clone(),
            None => Mailbox::new(None, to.clone()),
        };
        let message =
            build_message(&options.from, envelope_to, rendered).map_err(|err| Error::Batch {
                reason: format!("line {line}: cannot build the message: {err}"),
            })?;
        let prepared = Prepared {
            line,
            row,
            to,
            key_id: minted.code.key_id(),
            expiry: minted.expiry,
            fingerprint: minted.code.fingerprint(),
            message,
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

/// The message: headers through the mail library (a cell cannot add a header), a text body,
/// and with an HTML body both as multipart/alternative.
fn build_message(
    from: &Mailbox,
    to: Mailbox,
    rendered: Rendered,
) -> Result<Message, lettre::error::Error> {
    // The envelope is the one pair of addresses the headers hold: given, lettre need not
    // parse them back out of the headers it has just encoded.
    let envelope = Envelope::new(Some(from.email.clone()), vec![to.email.clone()])?;
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject)
        .envelope(envelope);
    // A Message-ID in the sender's domain: some providers mark mail without one as spam.
    builder = builder.message_id(message_id(from.email.domain()));
    match rendered.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(rendered.text, html)),
        // A MIME part, not a bare body: lettre writes `MIME-Version: 1.0` only for those.
        None => builder.singlepart(SinglePart::plain(rendered.text)),
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
fn digest(record: &csv::ByteRecord) -> String {
    let mut hash = Sha256::new();
    for field in record {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    crate::code::hex(hash.finalize().get(..8).unwrap_or_default())
}

/// One message to send.
struct Job {
    prepared: Box<Prepared>,
    envelope: Envelope,
    bytes: Vec<u8>,
    again: bool,
    /// When the message was built, and its `Date` set.
    built: std::time::Instant,
}

impl Job {
    /// Dates the message now if it was built more than `DATE_SLACK` ago: rows are prepared
    /// ahead of a paced or slow run, and a message must not be dated minutes or hours before
    /// it leaves.
    fn date_now(&mut self) {
        if self.built.elapsed() > DATE_SLACK {
            let message = &mut self.prepared.message;
            message
                .headers_mut()
                .set(lettre::message::header::Date::now());
            self.bytes = message.formatted();
        }
    }
}

/// How a job ended.
struct Done {
    job: Job,
    retried: u32,
    result: Result<String, Failure>,
}

enum Failure {
    /// Refused for good, for the recipient's sake: the rejects file.
    Rejected(String),
    /// Refused for now, or not for the recipient's sake: sent by a later run.
    Deferred(String),
    /// The server is out of reach; `uncertain` when the message may have gone (a connection
    /// broke during an attempt, rather than no connection being made).
    GaveUp {
        reply: String,
        uncertain: bool,
    },
    Journal(Error),
}

/// Sends the rows still to send: reads `input` again with [`scan`], and sends each ready row
/// through a pool of connections to the `smtp` server, `options.concurrency` at a time, paced by `options.rate`.
/// Each row is journalled as handed before its message goes, and with the reply after.
/// When `shutdown` completes, no new row is taken; messages in flight finish.
///
/// # Errors
///
/// [`Error::Config`] when the TLS settings are wrong; [`Error::Smtp`] when the server cannot
/// be reached or refuses the login before the first message; as [`scan`]; [`Error::Journal`] when the journal cannot be written. Losing the
/// server during the run is not an error: it ends the run with [`Stop::ServerLost`].
pub fn deliver<R: std::io::Read + Send>(
    campaign: &Campaign<'_>,
    input: R,
    journal: &Arc<Journal>,
    smtp: &SmtpSettings,
    shutdown: impl Future<Output = ()>,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Summary, Error> {
    let options = campaign.options;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| Error::io("starting the runtime", &err))?;
    // The pool starts and stops a task of its own: it is built and dropped in the runtime.
    let _entered = runtime.enter();
    let transport = &smtp.transport()?;
    runtime.block_on(async {
        match tokio::time::timeout(smtp.timeout, transport.test_connection())
            .await
            .unwrap_or(Ok(false))
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Smtp {
                reason: format!(
                    "the server does not answer (no greeting, login or NOOP reply within {} s)",
                    smtp.timeout.as_secs_f64()
                ),
            }),
            Err(err) => {
                let error = describe(&err);
                Err(Error::Smtp {
                    reason: format!("cannot connect and log in: {error}{}", hint(&error)),
                })
            }
        }
    })?;
    // Jobs go over in batches: one wake-up of the reading thread a batch, not a message.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Job>>(BATCHES_AHEAD);
    // Dropping the sender ends the syncing thread at once, not after its next sleep.
    let (finished, syncing) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || -> Result<(), Error> {
            let mut failed = None;
            let mut batch = Vec::with_capacity(BATCH_JOBS);
            let mut open = true;
            scan(campaign, input, |outcome| {
                let RowOutcome::Ready { prepared, again } = outcome else {
                    return true;
                };
                let bytes = prepared.message.formatted();
                let envelope = prepared.message.envelope().clone();
                let job = Job {
                    prepared,
                    envelope,
                    bytes,
                    again,
                    built: std::time::Instant::now(),
                };
                batch.push(job);
                if batch.len() < BATCH_JOBS {
                    return true;
                }
                // The receiver is gone when the run stops early.
                open = tx
                    .blocking_send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(BATCH_JOBS),
                    ))
                    .is_ok();
                open
            })
            .or_else(|err| {
                failed = Some(err);
                Ok::<(), Error>(())
            })?;
            if open && !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            failed.map_or(Ok(()), Err)
        });
        scope.spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                syncing.recv_timeout(SYNC_EVERY)
            {
                // A failing sync shows again at the end, where it is reported.
                let _ = journal.sync();
            }
        });
        // Dropping the receiver at the end unblocks the producer if it waits to hand over a row.
        let result = runtime.block_on(dispatch(
            rx,
            options,
            journal,
            (transport, smtp),
            shutdown,
            &mut on_event,
        ));
        drop(finished);
        let produced = producer.join().unwrap_or_else(|_| {
            Err(Error::Batch {
                reason: "the reading thread failed".to_owned(),
            })
        });
        // Synced however the run ended: what it wrote is the next run's starting point.
        let synced = journal.sync();
        let summary = result?;
        synced?;
        if summary.stopped.is_none() {
            produced?;
        }
        Ok(summary)
    })
}

/// Runs `options.concurrency` senders, each taking the next job when the pacer allows, and
/// reports what they did, in the order they finish. Like a bare sender loop, a sender goes
/// straight from one message to the next on its connection.
async fn dispatch(
    rx: tokio::sync::mpsc::Receiver<Vec<Job>>,
    options: &SendOptions,
    journal: &Arc<Journal>,
    (transport, smtp): (&Transport, &SmtpSettings),
    shutdown: impl Future<Output = ()>,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<Summary, Error> {
    let shared = Arc::new(Senders {
        jobs: tokio::sync::Mutex::new(Jobs {
            rx,
            batch: std::collections::VecDeque::new(),
            pacer: Pacer::new(options.rate),
        }),
        stopping: AtomicBool::new(false),
        stop: tokio::sync::Notify::new(),
        journal: Arc::clone(journal),
        transport: std::sync::Mutex::new((0, transport.clone())),
        smtp: smtp.clone(),
        retry: options.retry,
        durable: options.rate.is_some(),
        deferred_in_a_row: AtomicU64::new(0),
        refused: std::sync::Mutex::new(None),
    });
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    for _ in 0..options.concurrency.max(1) {
        let (shared, done_tx) = (Arc::clone(&shared), done_tx.clone());
        tokio::spawn(sender(shared, done_tx));
    }
    drop(done_tx);
    let mut summary = Summary::default();
    let mut journal_error = None;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut interrupted = false;
    // Finished jobs are taken as they pile up, every `REPORT_EVERY`, not one wake-up of this
    // thread a message: senders never wait on this loop, and it only counts and reports.
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let done = match done_rx.try_recv() {
            Ok(done) => Some(done),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                tokio::select! {
                    biased;
                    () = &mut shutdown, if !interrupted => {
                        interrupted = true;
                        summary.stopped.get_or_insert(Stop::Interrupted);
                        shared.stop();
                    }
                    _ = tick.tick() => {}
                }
                continue;
            }
        };
        // Every sender has ended: no rows left, or the run stopped.
        let Some(done) = done else { break };
        summary.retried += u64::from(done.retried);
        let prepared = &done.job.prepared;
        let (line, to) = (prepared.line, &prepared.to);
        match &done.result {
            Ok(_) => {
                summary.sent += 1;
                if done.job.again {
                    summary.resent_uncertain += 1;
                }
                on_event(Event::Sent { line, to });
            }
            Err(Failure::Rejected(reply)) => {
                summary.rejected += 1;
                on_event(Event::Rejected {
                    line,
                    to,
                    reply: reply.as_str(),
                    record: &prepared.record,
                });
            }
            Err(Failure::Deferred(reply)) => {
                summary.deferred += 1;
                on_event(Event::Deferred {
                    line,
                    to,
                    reply: reply.as_str(),
                });
            }
            Err(Failure::GaveUp { reply, uncertain }) => {
                summary.gave_up += 1;
                summary.uncertain += u64::from(*uncertain);
                on_event(Event::GaveUp {
                    line,
                    to,
                    reply: reply.as_str(),
                    uncertain: *uncertain,
                });
                summary
                    .stopped
                    .get_or_insert(Stop::ServerLost(reply.clone()));
                shared.stop();
            }
            Err(Failure::Journal(err)) => {
                journal_error.get_or_insert(err.clone());
                shared.stop();
            }
        }
    }
    if let Ok(mut refused) = shared.refused.lock()
        && let Some((rows, reply)) = refused.take()
    {
        summary
            .stopped
            .get_or_insert(Stop::ServerRefuses(rows, reply));
    }
    match journal_error {
        Some(err) => Err(err),
        None => Ok(summary),
    }
}

/// The jobs not yet taken: the rest of the current batch, then the channel.
struct Jobs {
    rx: tokio::sync::mpsc::Receiver<Vec<Job>>,
    batch: std::collections::VecDeque<Job>,
    pacer: Pacer,
}

impl Jobs {
    /// The next job once the pacer allows it; `None` when there are no more. Cancel-safe: a
    /// job taken from the channel stays in the batch until returned.
    async fn next(&mut self) -> Option<Job> {
        self.pacer.wait().await;
        if self.batch.is_empty() {
            self.batch = self.rx.recv().await?.into();
        }
        self.batch.pop_front()
    }
}

/// What the senders share.
struct Senders {
    /// The jobs and the pacer, taken together so that slots go out in order.
    jobs: tokio::sync::Mutex<Jobs>,
    stopping: AtomicBool,
    stop: tokio::sync::Notify,
    journal: Arc<Journal>,
    /// The pooled transport, and how many times it was replaced.
    transport: std::sync::Mutex<(u64, Transport)>,
    /// To build a new transport when one holds a stalled connection.
    smtp: SmtpSettings,
    retry: Retry,
    /// Whether each `handed` record is synced to disk before its message goes (a paced run).
    durable: bool,
    /// Rows deferred since the server last accepted one.
    deferred_in_a_row: AtomicU64,
    /// Set when `REFUSED_IN_A_ROW` rows were deferred in a row: how many, and the last reply.
    refused: std::sync::Mutex<Option<(u64, String)>>,
}

impl Senders {
    /// The transport to send through, and its generation.
    fn transport(&self) -> Option<(u64, Transport)> {
        self.transport.lock().ok().map(|current| current.clone())
    }

    /// Replaces the transport of generation `stalled` (unless another sender has): an attempt
    /// that timed out leaves its connection mid-exchange, and lettre would park it in the
    /// pool for the next message, whose replies it would then mix up. The old pool goes
    /// with the last message still using it.
    fn renew_transport(&self, stalled: u64) {
        if let Ok(mut current) = self.transport.lock()
            && current.0 == stalled
            && let Ok(fresh) = self.smtp.transport()
        {
            *current = (stalled + 1, fresh);
        }
    }

    /// No sender takes a new job; those in flight finish without further retries.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
    }

    /// Completes when the run stops (at once if it has).
    async fn stopped(&self) {
        let stopped = self.stop.notified();
        let mut stopped = std::pin::pin!(stopped);
        // Registered before the check, so that a stop between the two is not missed.
        stopped.as_mut().enable();
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        stopped.await;
    }
}

/// One sender: the next job, then its message, until there are none or the run stops.
async fn sender(shared: Arc<Senders>, done: tokio::sync::mpsc::UnboundedSender<Done>) {
    loop {
        let job = {
            let mut jobs = shared.jobs.lock().await;
            // Biased: once the run stops, no sender takes another job.
            tokio::select! {
                biased;
                () = shared.stopped() => return,
                job = jobs.next() => job,
            }
        };
        let Some(job) = job else { return };
        let finished = send_one(job, &shared).await;
        // Losing the server or the journal, or the server refusing the campaign, stops the
        // run at once, not at the next report.
        match &finished.result {
            Ok(_) => shared.deferred_in_a_row.store(0, Ordering::Release),
            Err(Failure::Deferred(reply)) => {
                let rows = shared.deferred_in_a_row.fetch_add(1, Ordering::AcqRel) + 1;
                if rows >= REFUSED_IN_A_ROW {
                    if let Ok(mut refused) = shared.refused.lock() {
                        refused.get_or_insert_with(|| (rows, reply.clone()));
                    }
                    shared.stop();
                }
            }
            Err(Failure::GaveUp { .. } | Failure::Journal(_)) => shared.stop(),
            Err(Failure::Rejected(_)) => {}
        }
        if done.send(finished).is_err() {
            return;
        }
    }
}

/// Whose sake a refusal is for, from its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    /// This recipient's: an unknown, disabled or full mailbox, a bad address.
    Recipient,
    /// The server's or the sender's: a login, a policy, a quota, a protocol or system error.
    /// Every row would meet it.
    Sender,
}

/// Whose sake a permanent (5xx) refusal is for. An enhanced status code (RFC 3463) says it
/// best: class X.1 (addressing) and X.2 (mailbox) concern the recipient, the others (system,
/// network, protocol, content, security: `5.7.8` a login, `5.7.60` not allowed to send as
/// this sender) the sender. Without one, 550 to 553 are the recipient's (RFC 5321: mailbox
/// unavailable, not local, storage exceeded, name not allowed), the others the sender's.
fn blame(code: Option<u16>, text: &str) -> Blame {
    let enhanced = text.split_whitespace().next().and_then(|token| {
        let mut parts = token.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        (parts.next().is_none()
            && matches!(class, "2" | "4" | "5")
            && numeric(subject)
            && numeric(detail))
        .then_some(subject)
    });
    match (enhanced, code) {
        (Some("1" | "2"), _) | (None, Some(550..=553)) => Blame::Recipient,
        _ => Blame::Sender,
    }
}

/// Whether `err` is a connection that was never made (refused, no route): no byte of the
/// message left, unlike a connection that broke.
fn no_connection(err: &lettre::transport::smtp::Error) -> bool {
    use std::io::ErrorKind;
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::AddrNotAvailable
            );
        }
        source = cause.source();
    }
    false
}

/// The reply's code and text (after the code), from lettre's error.
fn reply_of(err: &lettre::transport::smtp::Error) -> (Option<u16>, String) {
    let code = err.status().and_then(|code| code.to_string().parse().ok());
    let text = std::error::Error::source(err).map_or_else(String::new, ToString::to_string);
    (code, text)
}

async fn send_one(mut job: Job, shared: &Senders) -> Done {
    job.date_now();
    let (journal, retry) = (&shared.journal, shared.retry);
    let prepared = &job.prepared;
    let (line, row) = (prepared.line, prepared.row.clone());
    let handed = Record::Handed {
        line,
        row: row.clone(),
        to: prepared.to.to_string(),
        key_id: prepared.key_id,
        expires_at: journal::rfc3339(prepared.expiry),
        code: prepared.fingerprint.clone(),
    };
    let mut written = journal.write(&handed);
    if written.is_ok() && shared.durable {
        // On disk before the message goes: a power cut then leaves no more unknown rows
        // than a killed process. The sync also covers this sender's previous reply.
        let syncing = Arc::clone(journal);
        written = tokio::task::spawn_blocking(move || syncing.sync())
            .await
            .unwrap_or_else(|_| {
                Err(Error::Journal {
                    path: journal.path().display().to_string(),
                    reason: "its syncing task failed".to_owned(),
                })
            });
    }
    if let Err(err) = written {
        return Done {
            job,
            retried: 0,
            result: Err(Failure::Journal(err)),
        };
    }
    let mut retried = 0;
    let mut delay = retry.first_delay;
    // Whether an attempt broke off where the server may have taken the message.
    let mut may_have_gone = false;
    let failure = loop {
        let Some((generation, transport)) = shared.transport() else {
            break Failure::GaveUp {
                reply: "the transport is unusable".to_owned(),
                uncertain: may_have_gone,
            };
        };
        let attempt = tokio::time::timeout(
            shared.smtp.timeout,
            transport.send_raw(&job.envelope, &job.bytes),
        )
        .await;
        let err = match attempt {
            Ok(Ok(response)) => {
                let mut reply = response.code().to_string();
                for part in response.message() {
                    reply.push(' ');
                    reply.push_str(part);
                }
                let record = Record::Sent {
                    line,
                    row: row.clone(),
                    reply: reply.clone(),
                };
                let result = journal
                    .write(&record)
                    .map(|()| reply)
                    .map_err(Failure::Journal);
                return Done {
                    job,
                    retried,
                    result,
                };
            }
            Ok(Err(err)) => Some(err),
            Err(_) => None,
        };
        let (reply, put_off) = match err {
            Some(err) => {
                let reply = describe(&err);
                if err.is_permanent() {
                    let (code, text) = reply_of(&err);
                    break match blame(code, &text) {
                        Blame::Recipient => Failure::Rejected(reply),
                        Blame::Sender => Failure::Deferred(reply),
                    };
                }
                if err.is_client() {
                    // lettre could not make the exchange (no AUTH mechanism in common, no
                    // SMTPUTF8): no retry mends that, and nothing was sent.
                    break Failure::Deferred(reply);
                }
                // A reply cut short or garbled (`incomplete response`) may follow a message
                // the server took: as a broken connection.
                may_have_gone |= err.is_response() || (!err.is_transient() && !no_connection(&err));
                (reply, err.is_transient())
            }
            None => {
                // A stalled server: the message may have gone before it stopped answering.
                shared.renew_transport(generation);
                may_have_gone = true;
                let waited = shared.smtp.timeout.as_secs_f64();
                (
                    format!("no answer from the server within {waited} s"),
                    false,
                )
            }
        };
        let last = retried + 1 >= retry.attempts;
        if !last && !shared.stopping.load(Ordering::Acquire) {
            retried += 1;
            // A stop ends the wait: the run is stopping, not retrying.
            let waited = tokio::select! {
                biased;
                () = shared.stopped() => false,
                () = tokio::time::sleep(delay) => true,
            };
            delay = delay.saturating_mul(2);
            if waited {
                continue;
            }
        }
        // A 4xx reply means the server did not take it; a broken connection leaves the
        // `handed` record, so a resumed run lists the row.
        break if put_off {
            Failure::Deferred(reply)
        } else {
            Failure::GaveUp {
                reply,
                uncertain: may_have_gone,
            }
        };
    };
    let record = match &failure {
        Failure::Rejected(reply) => Some(Record::Rejected {
            line,
            row,
            reply: reply.clone(),
        }),
        Failure::Deferred(reply) => Some(Record::Deferred {
            line,
            row,
            reply: reply.clone(),
        }),
        // Known not to have gone: deferred, so that `--skip-uncertain` does not leave it.
        Failure::GaveUp {
            reply,
            uncertain: false,
        } => Some(Record::Deferred {
            line,
            row,
            reply: reply.clone(),
        }),
        Failure::GaveUp { .. } | Failure::Journal(_) => None,
    };
    let result = match record.map(|record| journal.write(&record)) {
        Some(Err(err)) => Err(Failure::Journal(err)),
        _ => Err(failure),
    };
    Done {
        job,
        retried,
        result,
    }
}

/// What to do about a connection error (as [`describe`] writes it), where the error alone
/// does not say.
fn hint(text: &str) -> &'static str {
    if text.contains("STARTTLS is not supported") {
        " (the server offers no STARTTLS: use smtps:// if it takes TLS from the first byte, \
         usually on port 465; only on a network you trust, ?tls=opportunistic or --smtp-tls \
         none)"
    } else if text.contains("UnknownIssuer") {
        " (the server's certificate is not signed by a CA this machine trusts: give a private \
         CA's certificate with --smtp-ca-file)"
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        " (no TLS from the first byte on this port: for a server that starts in plain text \
         and offers STARTTLS, usually on port 587, use smtp://)"
    } else {
        ""
    }
}

/// An SMTP error in one line, with its causes: the server's reply or the network's error.
fn describe(err: &lettre::transport::smtp::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Writes each ready row's message to `dir` as `LINE-ADDRESS.eml` (a file a mail client
/// opens) and calls `on_row` for every row. Sends nothing and writes no journal.
///
/// # Errors
///
/// As [`scan`]; [`Error::Io`] when a file cannot be written, or already exists.
pub fn dry_run(
    campaign: &Campaign<'_>,
    input: impl std::io::Read,
    dir: &Path,
    mut on_row: impl FnMut(&RowOutcome, Option<&Path>),
) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|err| Error::io("creating the dry-run folder", &err))?;
    let mut failed = None;
    scan(campaign, input, |outcome| {
        let path = match &outcome {
            RowOutcome::Ready { prepared, .. } => {
                let safe: String = prepared
                    .to
                    .to_string()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "@.-_".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let path = dir.join(format!("{:06}-{safe}.eml", prepared.line));
                // A message holds a working code: readable by its owner only.
                let written = crate::fsutil::private_options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .and_then(|mut file| {
                        std::io::Write::write_all(&mut file, &prepared.message.formatted())
                    });
                if let Err(err) = written {
                    failed = Some(Error::io("writing a dry-run message", &err));
                    return false;
                }
                Some(path)
            }
            _ => None,
        };
        on_row(&outcome, path.as_deref());
        true
    })?;
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_blamed_on_the_recipient_only_when_the_reply_says_so() {
        let recipient = [
            (
                550,
                "5.1.1 <a@contoso.com>: Recipient address rejected: User unknown",
            ),
            (
                550,
                "5.2.1 The email account that you tried to reach is disabled",
            ),
            (552, "5.2.2 Mailbox full"),
            (550, "Requested action not taken: mailbox unavailable"),
            (553, "mailbox name not allowed"),
            (554, "5.1.10 RESOLVER.ADR.RecipientNotFound; not found"),
        ];
        for (code, text) in recipient {
            assert_eq!(blame(Some(code), text), Blame::Recipient, "{code} {text}");
        }
        let sender = [
            (
                550,
                "5.7.60 SMTP; Client does not have permissions to send as this sender",
            ),
            (535, "5.7.8 Authentication credentials invalid"),
            (535, "Authentication failed"),
            (554, "Transaction failed"),
            (550, "5.4.1 Relay Access Denied"),
            (552, "5.3.4 Message size exceeds fixed limit"),
            (500, "5.5.1 Command unrecognized"),
        ];
        for (code, text) in sender {
            assert_eq!(blame(Some(code), text), Blame::Sender, "{code} {text}");
        }
        assert_eq!(blame(None, ""), Blame::Sender);
    }

    #[test]
    fn a_refused_connection_is_told_from_a_broken_one() {
        /// The error of connecting to `port` on loopback.
        async fn connecting(port: u16) -> lettre::transport::smtp::Error {
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(port)
                .build::<lettre::Tokio1Executor>()
                .test_connection()
                .await
                .unwrap_err()
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // A port nobody listens on: the connection is refused.
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = closed.local_addr().unwrap().port();
            drop(closed);
            let refused = connecting(port).await;
            assert!(no_connection(&refused), "{refused:?}");
            // A server that accepts and hangs up at once: a connection was made, then broke.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    drop(socket);
                }
            });
            let broken = connecting(port).await;
            assert!(!no_connection(&broken), "{broken:?}");
        });
    }

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
        let from: Mailbox = "Contoso <invites@contoso.com>".parse().unwrap();
        let to = Mailbox::new(None, "a@contoso.com".parse().unwrap());
        let rendered = Rendered {
            subject: "Hi\r\nBcc: victim@evil.example".to_owned(),
            text: "body".to_owned(),
            html: Some("<p>body</p>".to_owned()),
        };
        let message = build_message(&from, to, rendered).unwrap();
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
