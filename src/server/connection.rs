//! Connection limits that protect the service without locking anyone out, and the drain at
//! shutdown.
//!
//! - A request head must arrive within the header timeout (hyper's own timer, which also runs
//!   while a keep-alive connection waits for its next request).
//! - A keep-alive connection with no request in flight is closed after the idle timeout, and
//!   any connection after its maximum age (the request in flight, if any, is answered first,
//!   with `Connection: close`).
//! - At the connection cap, the connection idle the longest is closed to make room for the
//!   new one; only when every connection is busy does a new one wait, briefly, and is then
//!   closed. A crowd of idle or trickling connections therefore cannot hold fresh clients out.
//! - At shutdown every answer carries `Connection: close`; after a short linger, in which a
//!   request a client already sent is still read and answered, idle connections are closed and
//!   busy ones finish their request.
//!
//! Each limit hit is counted ([`ConnectionStats`]) and logged at most once per interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};

/// Time to send a request head. Identity providers send it at once; slow senders only hold
/// sockets. hyper's timer also runs while a keep-alive connection waits for its next request.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a keep-alive connection may wait with no request in flight. Identity providers reuse
/// a connection within seconds when they reuse it at all.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Age after which a connection is closed once its request in flight is answered: it bounds
/// how long any one client keeps a slot, and spreads load after a scale-out.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Connections served at once. Each costs a task and buffers of a few KiB, so this bounds
/// memory while staying far above what an identity provider sends.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Time given at shutdown to finish the requests received.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection waits for a slot when every connection is busy.
pub const OVERFLOW_WAIT: Duration = Duration::from_millis(250);
/// At shutdown, how long idle connections stay open (answering with `Connection: close`) so
/// that a request already on its way is read and answered rather than cut off.
pub const DRAIN_LINGER: Duration = Duration::from_millis(250);
/// At most one log line per limit per this interval, with the count since the last one.
pub const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The connection limits; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request head.
    pub header_timeout: Duration,
    /// Time a connection may wait with no request in flight.
    pub idle_timeout: Duration,
    /// Age after which a connection is closed.
    pub max_age: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time given at shutdown to finish the requests received.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_age: DEFAULT_MAX_AGE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// A limit that closed or refused a connection.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Limit {
    /// The request head (or the TLS handshake) did not arrive in time.
    HeaderTimeout,
    /// Idle too long.
    IdleTimeout,
    /// Older than the maximum age.
    MaxAge,
    /// Closed while idle to make room for a new connection at the cap.
    Evicted,
    /// A new connection found every slot busy and was closed.
    Overflow,
}

impl Limit {
    const ALL: [Self; 5] = [
        Self::HeaderTimeout,
        Self::IdleTimeout,
        Self::MaxAge,
        Self::Evicted,
        Self::Overflow,
    ];

    /// The label value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header-timeout",
            Self::IdleTimeout => "idle-timeout",
            Self::MaxAge => "max-age",
            Self::Evicted => "evicted",
            Self::Overflow => "overflow",
        }
    }
}

impl EncodeLabelValue for Limit {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.name())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: Limit,
}

/// Counters of the connection handling, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    hits: Family<LimitLabels, Counter>,
    open: Gauge,
    /// Per limit: hits at the last log line, and when it was written (ms since `epoch`).
    logged: [(AtomicU64, AtomicU64); 5],
    epoch: std::sync::OnceLock<Instant>,
    /// Set when the drain starts, for `/readyz`.
    draining: AtomicBool,
}

impl ConnectionStats {
    /// Registers the counters in `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        for limit in Limit::ALL {
            // Made at start so that every limit is exported from the first scrape, at zero.
            let _ = self.hits.get_or_create(&LimitLabels { limit });
        }
        registry.register(
            "connection_limit_hits",
            "Connections closed or refused by a limit (header-timeout, idle-timeout, max-age, \
             evicted, overflow)",
            self.hits.clone(),
        );
        registry.register(
            "open_connections",
            "Connections open now",
            self.open.clone(),
        );
    }

    /// Connections closed or refused by `limit` so far.
    #[must_use]
    pub fn hits(&self, limit: Limit) -> u64 {
        self.hits.get_or_create(&LimitLabels { limit }).get()
    }

    /// Connections open now.
    #[must_use]
    pub fn open(&self) -> i64 {
        self.open.get()
    }

    /// Whether the server is draining after a shutdown signal.
    #[must_use]
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn start_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn hit(&self, limit: Limit) {
        let total = self.hits.get_or_create(&LimitLabels { limit }).inc() + 1;
        let epoch = *self.epoch.get_or_init(Instant::now);
        let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let index = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        let Some((count_at_log, logged_at)) = self.logged.get(index) else {
            return;
        };
        let last = logged_at.load(Ordering::Relaxed);
        let interval = u64::try_from(LIMIT_LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let first = count_at_log.load(Ordering::Relaxed) == 0 && total == 1;
        if (first || now.saturating_sub(last) >= interval)
            && logged_at
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let before = count_at_log.swap(total, Ordering::Relaxed);
            let (hits, every) = (total - before, LIMIT_LOG_INTERVAL.as_secs());
            // Closing idle keep-alive connections is housekeeping that every client meets (a
            // load balancer's pool, the server's own JWKS fetch): not a warning.
            if limit == Limit::IdleTimeout {
                tracing::info!(
                    limit = limit.name(),
                    hits,
                    total,
                    "idle connections closed (counted in /metrics; logged at most every {every}s)"
                );
            } else {
                tracing::warn!(
                    limit = limit.name(),
                    hits,
                    total,
                    "connection limit hit (counted in /metrics; logged at most every {every}s)"
                );
            }
        }
    }
}

/// What the connection task and the request service share about one connection.
#[derive(Debug)]
pub(crate) struct Tracked {
    /// Set once the connection is to close: its next answer carries `Connection: close`, and
    /// it is no candidate for eviction.
    closing: AtomicBool,
    in_flight: AtomicU32,
    /// Milliseconds since the server's start at the last request start or end.
    last_active: AtomicU64,
    evict: Notify,
    /// Where the slot goes when this connection closes after an eviction: straight to the
    /// new connection it made room for, not to whoever waits longest.
    handoff: Mutex<Option<oneshot::Sender<OwnedSemaphorePermit>>>,
}

impl Tracked {
    /// Gives the connection's slot to the connection it was evicted for, if any; else the
    /// slot returns to the pool.
    pub(crate) fn release(&self, permit: OwnedSemaphorePermit) {
        let handoff = self
            .handoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handoff) = handoff {
            // A new connection that gave up waiting drops the receiver: the slot is freed.
            let _ = handoff.send(permit);
        }
    }
}

/// The open connections, to find the one idle the longest when the cap is reached, and the
/// server-wide state of the drain.
#[derive(Debug)]
pub(crate) struct Registry {
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Tracked>>>,
    emptied: Notify,
    draining: AtomicBool,
    drain_started: Notify,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            emptied: Notify::new(),
            draining: AtomicBool::new(false),
            drain_started: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.started + Duration::from_millis(ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracked>>> {
        // A panic while holding this lock leaves the map usable: take it back.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn register(&self) -> (u64, Arc<Tracked>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            closing: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            last_active: AtomicU64::new(self.now_ms()),
            evict: Notify::new(),
            handoff: Mutex::new(None),
        });
        self.lock().insert(id, Arc::clone(&tracked));
        (id, tracked)
    }

    pub(crate) fn remove(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        if open.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Asks the connection idle the longest to close and hand its slot to `handoff`. Returns
    /// whether there was one.
    pub(crate) fn evict_idlest(&self, handoff: oneshot::Sender<OwnedSemaphorePermit>) -> bool {
        let open = self.lock();
        let idlest = open
            .values()
            .filter(|t| {
                t.in_flight.load(Ordering::Relaxed) == 0 && !t.closing.load(Ordering::Relaxed)
            })
            .min_by_key(|t| t.last_active.load(Ordering::Relaxed));
        idlest.is_some_and(|t| {
            // Chosen once: the next new connection makes room with another one.
            t.closing.store(true, Ordering::Relaxed);
            *t.handoff
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handoff);
            t.evict.notify_one();
            true
        })
    }

    /// Starts the drain: answers carry `Connection: close` from now on.
    pub(crate) fn start_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.drain_started.notify_waiters();
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether an answer on this connection should carry `Connection: close`.
    pub(crate) fn closes_after_answer(&self, tracked: &Tracked) -> bool {
        self.draining() || tracked.closing.load(Ordering::Relaxed)
    }

    /// Completes when no connection is open.
    pub(crate) async fn all_closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.lock().is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// Marks a request's start on a connection.
    pub(crate) fn request_started(&self, tracked: &Tracked) {
        tracked.in_flight.fetch_add(1, Ordering::Relaxed);
        tracked.last_active.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Marks a request's end on a connection.
    pub(crate) fn request_ended(&self, tracked: &Tracked) {
        tracked.last_active.store(self.now_ms(), Ordering::Relaxed);
        tracked.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Drives one connection until it ends, closing it gracefully when a limit or the drain says
/// so. `graceful` asks the connection to finish its request in flight, if any, and close.
///
/// The drain and the maximum age close a connection in two steps: first its answers carry
/// `Connection: close`, then after [`DRAIN_LINGER`] it is closed if still open. A request the
/// client sent just before is thus read and answered, not cut off.
pub(crate) async fn drive<C, E>(
    connection: C,
    graceful: impl Fn(std::pin::Pin<&mut C>),
    tracked: &Tracked,
    registry: &Registry,
    limits: &Limits,
    stats: &ConnectionStats,
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display + IsTimeout,
{
    let mut connection = std::pin::pin!(connection);
    let opened = Instant::now();
    let mut closed = false;
    let mut linger_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let drain_started = registry.drain_started.notified();
        if linger_until.is_none() && registry.draining() {
            tracked.closing.store(true, Ordering::Relaxed);
            linger_until = Some(now + DRAIN_LINGER);
        }
        let idle_at = if tracked.in_flight.load(Ordering::Relaxed) == 0 {
            registry.instant(tracked.last_active.load(Ordering::Relaxed)) + limits.idle_timeout
        } else {
            // Busy: look again later; requests last microseconds.
            now + limits.idle_timeout
        };
        let deadline = linger_until.unwrap_or(idle_at.min(opened + limits.max_age));
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(err) = ended {
                    if err.is_timeout() {
                        stats.hit(Limit::HeaderTimeout);
                    }
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline.into()), if !closed => {
                let now = Instant::now();
                if linger_until.is_some_and(|at| now >= at) {
                    graceful(connection.as_mut());
                    closed = true;
                    continue;
                }
                // Requests may have come and gone while asleep: the idle time is measured now.
                let idle_since = registry.instant(tracked.last_active.load(Ordering::Relaxed));
                let idle = tracked.in_flight.load(Ordering::Relaxed) == 0;
                if idle && now >= idle_since + limits.idle_timeout {
                    stats.hit(Limit::IdleTimeout);
                    graceful(connection.as_mut());
                    closed = true;
                } else if linger_until.is_none() && now >= opened + limits.max_age {
                    stats.hit(Limit::MaxAge);
                    tracked.closing.store(true, Ordering::Relaxed);
                    linger_until = Some(now + DRAIN_LINGER);
                }
            }
            () = tracked.evict.notified(), if !closed => {
                stats.hit(Limit::Evicted);
                graceful(connection.as_mut());
                closed = true;
            }
            () = drain_started, if linger_until.is_none() => {}
        }
    }
}

/// Whether a connection error is hyper's header timeout.
pub(crate) trait IsTimeout {
    /// Whether this error is a timeout.
    fn is_timeout(&self) -> bool;
}

impl IsTimeout for hyper::Error {
    fn is_timeout(&self) -> bool {
        hyper::Error::is_timeout(self)
    }
}

/// The open-connection gauge, kept right whichever way a connection task ends.
pub(crate) struct OpenGuard<'a>(&'a ConnectionStats);

impl<'a> OpenGuard<'a> {
    pub(crate) fn new(stats: &'a ConnectionStats) -> Self {
        stats.open.inc();
        Self(stats)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.dec();
    }
}

/// Records a TLS handshake that did not finish within the header timeout.
pub(crate) fn handshake_timeout(stats: &ConnectionStats) {
    stats.hit(Limit::HeaderTimeout);
}

/// Records an overflow: a new connection closed because every slot stayed busy.
pub(crate) fn overflow(stats: &ConnectionStats) {
    stats.hit(Limit::Overflow);
}
