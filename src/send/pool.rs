//! The senders: `concurrency` tasks that take the next row when the pacer allows, hand its
//! message to the transport, retry what is worth retrying, and journal the row before and
//! after. The same for every transport: what a reply means is in [`Reply`].

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;

use super::campaign::Ready;
use super::journal::{self, Journal, Record};
use super::pacing::Pacer;
use super::reply::Reply;
use super::transport::Transport;
use super::{Event, SendOptions, Stop, Summary};
use crate::Error;

/// How often the journal is synced to disk during a run. Writes reach the file at once (a
/// killed process loses none); this bounds what a power cut can lose. Not more often: on
/// ext4 a sync holds up the appends made meanwhile, and every 50 ms cost a tenth of the
/// throughput in `benches/send.rs`.
const SYNC_EVERY: Duration = Duration::from_millis(1000);

/// Rows deferred in a row, none accepted between, that stop a run: the provider refuses the
/// campaign, not a recipient (a lost login, a sending quota, a policy against the sender).
const REFUSED_IN_A_ROW: u64 = 5;

/// How often the run takes the senders' finished jobs to count and report them.
const REPORT_EVERY: Duration = Duration::from_millis(20);

/// Waits a provider may ask for on one message before the row is deferred: throttling that
/// lasts this long is not a passing peak.
const MAX_THROTTLED: u32 = 20;

/// The longest wait a provider may ask for before the run stops instead (resumably): a
/// `Retry-After` of hours is a quota, not throttling.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// How a row ended.
struct Done {
    ready: Ready,
    retried: u32,
    throttled: u32,
    result: Result<String, Failure>,
}

enum Failure {
    /// Refused for good, for the recipient's sake: the rejects file.
    Rejected(String),
    /// Refused for now, or not for the recipient's sake: sent by a later run. `counts` when
    /// it counts toward the rows deferred in a row (not when throttled).
    Deferred {
        reply: String,
        counts: bool,
    },
    /// The provider is out of reach; `uncertain` when the message may have gone.
    GaveUp {
        reply: String,
        uncertain: bool,
    },
    /// Nothing of the campaign gets past this: stop at once.
    Fatal(String),
    /// The sending quota is used up: stop cleanly.
    Quota(String),
    Journal(Error),
}

/// Sends `rows` through `transport`, `options.concurrency` at a time, paced by
/// `options.rate`. Each row is journalled as handed before its message goes, and with the
/// reply after. When `shutdown` completes, no new row is taken; messages in flight finish.
/// Call it inside the caller's Tokio runtime (multi-threaded: the journal's syncs block).
///
/// # Errors
///
/// [`Error::Journal`] when the journal cannot be written. Losing the provider, or its refusal
/// of the campaign, is not an error: it ends the run with a [`Stop`].
pub async fn deliver<T: Transport>(
    rows: Vec<Ready>,
    journal: &Arc<Journal>,
    transport: &Arc<T>,
    options: &SendOptions,
    shutdown: impl Future<Output = ()>,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Summary, Error> {
    // Dropping the sender ends the syncing thread at once, not after its next sleep.
    let (finished, syncing) = std::sync::mpsc::channel::<()>();
    let syncer = {
        let journal = Arc::clone(journal);
        std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                syncing.recv_timeout(SYNC_EVERY)
            {
                // A failing sync shows again at the end, where it is reported.
                let _ = journal.sync();
            }
        })
    };
    let result = dispatch(rows, options, journal, transport, shutdown, &mut on_event).await;
    drop(finished);
    let _ = syncer.join();
    // Synced however the run ended: what it wrote is the next run's starting point.
    let synced = journal.sync();
    let summary = result?;
    synced?;
    Ok(summary)
}

/// Runs the senders and reports what they did, in the order they finish.
async fn dispatch<T: Transport>(
    rows: Vec<Ready>,
    options: &SendOptions,
    journal: &Arc<Journal>,
    transport: &Arc<T>,
    shutdown: impl Future<Output = ()>,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<Summary, Error> {
    let shared = Arc::new(Senders {
        jobs: tokio::sync::Mutex::new(Jobs {
            rows: rows.into(),
            pacer: Pacer::new(options.rate),
        }),
        stopping: AtomicBool::new(false),
        stop: tokio::sync::Notify::new(),
        journal: Arc::clone(journal),
        transport: Arc::clone(transport),
        retry: options.retry,
        durable: options.rate.is_some(),
        deferred_in_a_row: AtomicU64::new(0),
        refused: std::sync::Mutex::new(None),
        paused_until: std::sync::Mutex::new(None),
        throttled: std::sync::Mutex::new(Vec::new()),
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
    // task a message: senders never wait on this loop, and it only counts and reports.
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let throttled = shared
            .throttled
            .lock()
            .map(|mut waits| std::mem::take(&mut *waits))
            .unwrap_or_default();
        for (line, to, reply, wait) in throttled {
            on_event(Event::Throttled {
                line,
                to: &to,
                reply: &reply,
                wait,
            });
        }
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
        summary.throttled += u64::from(done.throttled);
        let prepared = &done.ready.prepared;
        let (line, to) = (prepared.line, &prepared.to);
        match &done.result {
            Ok(_) => {
                summary.sent += 1;
                if done.ready.again {
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
            Err(Failure::Deferred { reply, .. }) => {
                summary.deferred += 1;
                on_event(Event::Deferred {
                    line,
                    to,
                    reply: reply.as_str(),
                });
            }
            Err(Failure::Fatal(reply)) => {
                summary.deferred += 1;
                summary.stopped.get_or_insert(Stop::Fatal(reply.clone()));
                shared.stop();
            }
            Err(Failure::Quota(reply)) => {
                summary.deferred += 1;
                summary.stopped.get_or_insert(Stop::Quota(reply.clone()));
                shared.stop();
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

/// The rows not yet taken, and the pacer, taken together so that slots go out in order.
struct Jobs {
    rows: VecDeque<Ready>,
    pacer: Pacer,
}

/// What the senders share.
struct Senders<T> {
    jobs: tokio::sync::Mutex<Jobs>,
    stopping: AtomicBool,
    stop: tokio::sync::Notify,
    journal: Arc<Journal>,
    transport: Arc<T>,
    retry: super::Retry,
    /// Whether each `handed` record is synced to disk before its message goes (a paced run).
    durable: bool,
    /// Rows deferred since the provider last accepted one.
    deferred_in_a_row: AtomicU64,
    /// Set when `REFUSED_IN_A_ROW` rows were deferred in a row: how many, and the last reply.
    refused: std::sync::Mutex<Option<(u64, String)>>,
    /// No message starts before this instant: the provider asked to slow down.
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Waits asked for, not yet reported: line, recipient, reply, wait.
    throttled: std::sync::Mutex<Vec<(u64, lettre::Address, String, Duration)>>,
}

impl<T> Senders<T> {
    /// No sender takes a new job; those in flight finish without further retries.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Completes when the run stops (at once if it has).
    async fn stopped(&self) {
        let stopped = self.stop.notified();
        let mut stopped = std::pin::pin!(stopped);
        // Registered before the check, so that a stop between the two is not missed.
        stopped.as_mut().enable();
        if self.stopping() {
            return;
        }
        stopped.await;
    }

    /// Sleeps `wait`, or less if the run stops; whether the whole wait passed.
    async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            biased;
            () = self.stopped() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// Waits out a pause the provider asked for; whether the run goes on.
    async fn pause(&self) -> bool {
        loop {
            let until = self.paused_until.lock().ok().and_then(|until| *until);
            match until {
                Some(until) if until > tokio::time::Instant::now() => {
                    if !self.sleep(until - tokio::time::Instant::now()).await {
                        return false;
                    }
                }
                _ => return !self.stopping(),
            }
        }
    }

    /// Holds every sender back for `wait`.
    fn hold(&self, wait: Duration) {
        if let Ok(mut until) = self.paused_until.lock() {
            let end = tokio::time::Instant::now() + wait;
            if until.is_none_or(|until| until < end) {
                *until = Some(end);
            }
        }
    }
}

/// One sender: the next row, then its message, until there are none or the run stops.
async fn sender<T: Transport>(
    shared: Arc<Senders<T>>,
    done: tokio::sync::mpsc::UnboundedSender<Done>,
) {
    loop {
        let ready = {
            let mut jobs = shared.jobs.lock().await;
            // Biased: once the run stops, no sender takes another job.
            tokio::select! {
                biased;
                () = shared.stopped() => return,
                () = jobs.pacer.wait() => jobs.rows.pop_front(),
            }
        };
        let Some(ready) = ready else { return };
        let finished = send_one(ready, &shared).await;
        // Losing the provider or the journal, or the provider refusing the campaign, stops
        // the run at once, not at the next report.
        match &finished.result {
            Ok(_) => shared.deferred_in_a_row.store(0, Ordering::Release),
            Err(Failure::Deferred {
                reply,
                counts: true,
            }) => {
                let rows = shared.deferred_in_a_row.fetch_add(1, Ordering::AcqRel) + 1;
                if rows >= REFUSED_IN_A_ROW {
                    if let Ok(mut refused) = shared.refused.lock() {
                        refused.get_or_insert_with(|| (rows, reply.clone()));
                    }
                    shared.stop();
                }
            }
            Err(
                Failure::GaveUp { .. }
                | Failure::Journal(_)
                | Failure::Fatal(_)
                | Failure::Quota(_),
            ) => shared.stop(),
            Err(Failure::Rejected(_) | Failure::Deferred { .. }) => {}
        }
        if done.send(finished).is_err() {
            return;
        }
    }
}

async fn send_one<T: Transport>(ready: Ready, shared: &Senders<T>) -> Done {
    let journal = &shared.journal;
    let prepared = &ready.prepared;
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
            ready,
            retried: 0,
            throttled: 0,
            result: Err(Failure::Journal(err)),
        };
    }
    let (mut retried, mut throttled) = (0, 0);
    let mut delay = shared.retry.first_delay;
    // Whether an attempt broke off where the provider may have taken the message.
    let mut may_have_gone = false;
    let failure = loop {
        if !shared.pause().await {
            // Stopped while the provider had the run wait: this message never went.
            break Failure::Deferred {
                reply: "the run stopped while waiting to send".to_owned(),
                counts: false,
            };
        }
        let (reply, temporary) = match shared.transport.send(&prepared.mail).await {
            Reply::Accepted(reply) => {
                let record = Record::Sent {
                    line,
                    row: row.clone(),
                    reply: reply.clone(),
                };
                // Unpaced, the next `handed` record carries it, in one write for both; paced,
                // the next may be seconds away, and it is written now.
                let written = if shared.durable {
                    journal.write(&record)
                } else {
                    journal.write_soon(&record)
                };
                let result = written.map(|()| reply).map_err(Failure::Journal);
                return Done {
                    ready,
                    retried,
                    throttled,
                    result,
                };
            }
            Reply::Rejected(reply) => break Failure::Rejected(reply),
            Reply::Refused(reply) => {
                break Failure::Deferred {
                    reply,
                    counts: true,
                };
            }
            Reply::Fatal(reply) => break Failure::Fatal(reply),
            Reply::Quota(reply) => break Failure::Quota(reply),
            Reply::Throttled { reply, wait } => {
                if wait > MAX_WAIT {
                    break Failure::Quota(format!("{reply} (asked to wait {} s)", wait.as_secs()));
                }
                throttled += 1;
                if throttled > MAX_THROTTLED {
                    break Failure::Deferred {
                        reply,
                        counts: false,
                    };
                }
                shared.hold(wait);
                if let Ok(mut waits) = shared.throttled.lock() {
                    waits.push((line, prepared.to.clone(), reply, wait));
                }
                continue;
            }
            Reply::Retry {
                reply,
                may_have_gone: gone,
                temporary,
            } => {
                may_have_gone |= gone;
                (reply, temporary)
            }
        };
        let last = retried + 1 >= shared.retry.attempts;
        if !last && !shared.stopping() {
            retried += 1;
            // A stop ends the wait: the run is stopping, not retrying.
            let waited = shared.sleep(delay).await;
            delay = delay.saturating_mul(2);
            if waited {
                continue;
            }
        }
        // A 4xx reply means the provider did not take it; a broken connection leaves the
        // `handed` record, so a resumed run lists the row.
        break if temporary {
            Failure::Deferred {
                reply,
                counts: true,
            }
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
        // Known not to have gone: deferred, so that `--skip-uncertain` does not leave it.
        Failure::Deferred { reply, .. }
        | Failure::Fatal(reply)
        | Failure::Quota(reply)
        | Failure::GaveUp {
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
        ready,
        retried,
        throttled,
        result,
    }
}
