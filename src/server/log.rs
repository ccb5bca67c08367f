//! One structured log line per endpoint request: endpoint, outcome, status, kind, key id, the
//! code's fingerprint and the email's domain (the whole address only with `--log-emails`),
//! each field bounded in length. Never a whole code, a token or a password.
//!
//! Lines go through a batching writer ([`init`]): a request appends what its line says to a
//! shared buffer, and one thread formats and writes the buffer out every
//! [`LOG_FLUSH_INTERVAL`]. No request waits for stderr, none wakes a thread (a queue whose
//! writer thread is woken for every line cost more than formatting the line), and none
//! formats its own line: the request's thread only copies the line's fields, and the log
//! thread writes the very line the subscriber would, with the instant the request was logged.
//! When the writer cannot keep up and the buffer is full, lines are dropped and counted rather
//! than slowing every request down.
//!
//! A refused caller's line names the reason (`denied`), explains it (`why`) and shows what is
//! safe of what was sent (`scheme`, `user`); never a password, a key or a token. Refusals are
//! logged in full only up to a rate per place and reason, then counted into one summary line
//! a window ([`limit`]), so a flood of them cannot fill a disk.

mod format;
pub mod limit;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use warp::http::StatusCode;

use self::format::{LineWriter, Lines};
use self::limit::{Key, Limiter, REFUSAL_WINDOW, Summary};
use super::labels::{EndpointLabel, Outcome, Refusal, RefusalReason as _, RefusedAt};
use crate::code::Code;
use crate::connector::{Answer, clip};

/// Bytes of log lines held before new lines are dropped (and counted). At about 300 bytes a
/// line that is some 14,000 lines: far more than arrive between two flushes at full load.
pub const LOG_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// How often the log thread writes out the buffered lines.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// What the request threads and the log thread share.
#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    dropped: AtomicU64,
    stop: AtomicBool,
    wake: Condvar,
}

/// The lines not yet written, in the order they were logged: text already formatted, and the
/// endpoint request lines the log thread formats.
#[derive(Debug, Default)]
struct Pending {
    text: Vec<u8>,
    /// Each request line, with the length `text` had when it was logged.
    requests: Vec<(usize, Deferred)>,
}

/// What a request line counts for against [`LOG_BUFFER_BYTES`] before it is formatted: about
/// its length once written.
const DEFERRED_LINE_BYTES: usize = 300;

impl Pending {
    fn bytes(&self) -> usize {
        self.text.len() + self.requests.len() * DEFERRED_LINE_BYTES
    }
}

/// An endpoint request line as logged, formatted by the log thread.
#[derive(Debug)]
struct Deferred {
    line: RequestLine,
    status: StatusCode,
    micros: u64,
    /// When it was logged, since the Unix epoch: the line's timestamp.
    at: Duration,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves the lines usable: take them back.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds one line of `bytes` to the pending lines with `add`, or drops and counts it when
    /// the buffer is full.
    fn add(&self, bytes: usize, add: impl FnOnce(&mut Pending)) {
        let mut pending = self.lock();
        if pending.bytes() + bytes > LOG_BUFFER_BYTES {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            add(&mut pending);
        }
    }

    /// Appends one whole line, or drops and counts it when the buffer is full.
    fn append(&self, line: &[u8]) {
        self.add(line.len(), |pending| pending.text.extend_from_slice(line));
    }

    /// Queues one request line for the log thread to format, or drops and counts it when the
    /// buffer is full.
    fn defer(&self, deferred: Deferred) {
        self.add(DEFERRED_LINE_BYTES, |pending| {
            let at = pending.text.len();
            pending.requests.push((at, deferred));
        });
    }
}

/// Where a request thread writes its line: appended to the shared buffer whole, or dropped.
struct LineSink(Arc<Shared>);

impl std::io::Write for LineSink {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The running log writer: keep it for as long as lines are logged; dropping it writes out
/// what is buffered.
#[derive(Debug)]
pub struct Logging {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Logging {
    /// Lines dropped so far because the buffer was full.
    #[must_use]
    pub fn dropped(&self) -> DroppedLines {
        DroppedLines(Some(Arc::clone(&self.shared)))
    }
}

impl Drop for Logging {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A count of log lines dropped, for `/metrics`; zero when logging is not through [`init`].
#[derive(Debug, Clone, Default)]
pub struct DroppedLines(Option<Arc<Shared>>);

impl DroppedLines {
    /// Lines dropped so far.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |shared| shared.dropped.load(Ordering::Relaxed))
    }
}

/// Writes the buffered lines out every [`LOG_FLUSH_INTERVAL`], and once more at the end.
/// Summaries of refusals only counted are written as their windows end.
fn write_out<W: std::io::Write>(shared: &Shared, mut writer: W, json: bool) {
    let mut spare = Pending {
        text: Vec::with_capacity(64 * 1024),
        requests: Vec::new(),
    };
    let mut out = Vec::with_capacity(64 * 1024);
    let mut line = String::new();
    let mut summary = String::new();
    loop {
        for ended in REFUSALS.ended(Instant::now()) {
            if summary_enabled(ended.key.0) {
                format_summary(&ended, json, &mut summary);
                shared.append(summary.as_bytes());
            }
        }
        let stopping = {
            let pending = shared.lock();
            let (mut pending, _) = shared
                .wake
                .wait_timeout(pending, LOG_FLUSH_INTERVAL)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::swap(&mut *pending, &mut spare);
            shared.stop.load(Ordering::Relaxed)
        };
        if spare.bytes() > 0 {
            let mut from = 0;
            for (at, deferred) in spare.requests.drain(..) {
                out.extend_from_slice(spare.text.get(from..at).unwrap_or_default());
                from = at;
                let Deferred {
                    line: request,
                    status,
                    micros,
                    at,
                } = deferred;
                request.format(json, status, micros, at, &mut line);
                out.extend_from_slice(line.as_bytes());
            }
            out.extend_from_slice(spare.text.get(from..).unwrap_or_default());
            spare.text.clear();
            // A log that cannot be written is not a reason to stop serving; the lines are lost.
            let _ = writer.write_all(&out).and_then(|()| writer.flush());
            out.clear();
        }
        if stopping {
            return;
        }
    }
}

/// Installs the process's log subscriber: `filter` (an `EnvFilter` directive such as `info`),
/// text or JSON lines, written to `writer` by a thread of its own (see the module
/// documentation). Returns `None` when a subscriber was already installed (tests).
pub fn init<W>(filter: &str, json: bool, ansi: bool, writer: W) -> Option<Logging>
where
    W: std::io::Write + Send + 'static,
{
    let shared = Arc::new(Shared::default());
    let sink = Arc::clone(&shared);
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(move || LineSink(Arc::clone(&sink)))
        .event_format(Lines { json })
        .try_init();
    if installed.is_err() {
        return None;
    }
    // Request lines skip the subscriber's dispatch and go straight to the same buffer. The
    // filter is fixed from here on, so whether they are written is asked once.
    let _ = DIRECT.set(Direct {
        shared: Arc::clone(&shared),
        json,
        // Asked of the subscriber just installed, as no writer is set yet.
        requests_enabled: enabled(),
    });
    let worker = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("invitegate-log".to_owned())
        .spawn(move || write_out(&worker, writer, json))
        .ok();
    Some(Logging { shared, thread })
}

/// The buffer and format [`init`] installed, for request lines written without the
/// subscriber's dispatch.
static DIRECT: std::sync::OnceLock<Direct> = std::sync::OnceLock::new();

#[derive(Debug)]
struct Direct {
    shared: Arc<Shared>,
    json: bool,
    /// Whether the installed filter lets endpoint request lines through.
    requests_enabled: bool,
}

/// Longest email or domain a log line carries; a longer one is cut and its length noted. A
/// DNS name is at most 253 octets, so this only cuts what no real address has.
pub const MAX_LOGGED_EMAIL: usize = 254;

/// Whether endpoint log lines are written: as [`init`] found, else as the subscriber says.
fn enabled() -> bool {
    match DIRECT.get() {
        Some(direct) => direct.requests_enabled,
        None => tracing::enabled!(target: REQUEST_TARGET, tracing::Level::INFO),
    }
}

/// What one endpoint request came to, filled in as it is answered.
#[derive(Debug, Clone)]
pub struct RequestLine {
    endpoint: EndpointLabel,
    /// What became of the request.
    pub outcome: Outcome,
    /// Why authentication failed, for the log only.
    pub denied: Option<Refusal>,
    code: Option<Code>,
    /// What the log shows of the email; only taken when the line will be written.
    email: Option<String>,
    /// Where the email came from, where a dialect has more than one place for it.
    email_source: Option<&'static str>,
}

impl RequestLine {
    /// A line for a request to `endpoint`.
    #[must_use]
    pub fn new(endpoint: EndpointLabel) -> Self {
        Self {
            endpoint,
            outcome: Outcome::Refused(crate::reason::Reason::BadRequest),
            denied: None,
            code: None,
            email: None,
            email_source: None,
        }
    }

    /// Takes what the log needs from a dialect's answer.
    pub fn record(&mut self, answer: &Answer<'_>, log_emails: bool) {
        self.outcome = answer.refusal.into();
        self.code = answer.code;
        self.email_source = answer.email_source;
        if enabled() {
            self.email = answer
                .email
                .as_deref()
                .map(|email| email_for_log(email, log_emails));
        }
    }

    /// Writes the line.
    ///
    /// With the writer of [`init`] installed, the line is queued as it is, and the log thread
    /// formats it exactly as the subscriber would: the subscriber's dispatch (a visitor call a
    /// field, a writer a line) was half of a line's cost, and the formatting (the code's
    /// fingerprint, the escaping) most of the rest. Otherwise, an event.
    ///
    /// A refused caller's line (and a method not allowed, which comes before authentication)
    /// is written only while its place and reason are under the rate of [`limit`].
    pub fn finish(self, status: StatusCode, elapsed: Duration) {
        if !enabled() || self.limit_key().is_some_and(|key| !admit(key)) {
            return;
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let Some(direct) = DIRECT.get() else {
            tracing::info!(
                target: REQUEST_TARGET,
                endpoint = self.endpoint.name(),
                outcome = self.outcome.name(),
                status = status.as_u16(),
                kind = self.code.map(|c| c.kind().name()),
                key_id = self.code.map(|c| c.key_id()),
                code = self.code.map(|c| c.fingerprint()).as_deref(),
                email = self.email.as_deref(),
                email_source = self.email_source,
                denied = self.denied.map(|refusal| refusal.reason()),
                why = self.denied.map(|refusal| refusal.why()),
                scheme = self.denied.and_then(|refusal| refusal.scheme()),
                user = self.denied.as_ref().and_then(Refusal::user),
                thumbprint = self.denied.as_ref().and_then(Refusal::thumbprint).as_deref(),
                micros,
                "{REQUEST_MESSAGE}"
            );
            return;
        };
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        direct.shared.defer(Deferred {
            line: self,
            status,
            micros,
            at,
        });
    }

    /// The line as the subscriber would write it at `at` (since the Unix epoch), newline
    /// included, into `out` (reused).
    fn format(&self, json: bool, status: StatusCode, micros: u64, at: Duration, out: &mut String) {
        let mut line = LineWriter::start_at(
            json,
            &tracing::Level::INFO,
            REQUEST_TARGET,
            at,
            std::mem::take(out),
        );
        line.plain_field("endpoint", self.endpoint.name());
        line.plain_field("outcome", self.outcome.name());
        line.u64_field("status", u64::from(status.as_u16()));
        if let Some(code) = self.code {
            line.plain_field("kind", code.kind().name());
            line.u64_field("key_id", u64::from(code.key_id()));
            let digits = code.fingerprint_digits();
            line.plain_field("code", std::str::from_utf8(&digits).unwrap_or_default());
        }
        if let Some(email) = &self.email {
            line.str_field("email", email);
        }
        if let Some(source) = self.email_source {
            line.str_field("email_source", source);
        }
        if let Some(refusal) = &self.denied {
            write_refusal(&mut line, refusal);
        }
        line.u64_field("micros", micros);
        line.message(REQUEST_MESSAGE);
        line.end(out);
    }

    /// What the rate of refusal lines is kept by, for a line that counts as a refusal.
    fn limit_key(&self) -> Option<Key> {
        let reason = match (&self.denied, self.outcome) {
            (Some(refusal), _) => refusal.reason(),
            (None, Outcome::MethodNotAllowed) => Outcome::MethodNotAllowed.name(),
            (None, _) => return None,
        };
        Some((self.endpoint.into(), reason))
    }
}

/// The fields of a refusal, in the order of the subscriber's events.
fn write_refusal(line: &mut LineWriter, refusal: &Refusal) {
    line.str_field("denied", refusal.reason());
    line.str_field("why", refusal.why());
    if let Some(scheme) = refusal.scheme() {
        line.str_field("scheme", scheme);
    }
    if let Some(user) = refusal.user() {
        line.str_field("user", user);
    }
    if let Some(thumbprint) = refusal.thumbprint() {
        line.str_field("thumbprint", &thumbprint);
    }
}

/// The refusals of every place and reason, for the whole process.
static REFUSALS: Limiter = Limiter::new();

/// Whether a refusal's line is written in full; writes the summaries of the windows that
/// ended before it.
fn admit(key: Key) -> bool {
    let (in_full, ended) = REFUSALS.admit(key, Instant::now());
    for summary in ended {
        write_summary(&summary);
    }
    in_full
}

/// The refusals whose details a check logs on a line of its own (a bearer token's claims and
/// key id), limited as the request lines are. Their counts are in the request lines' summaries,
/// so this limiter's own summaries are not written.
static DETAILS: Limiter = Limiter::new();

/// Whether a refusal's details line is written: the first [`limit::REFUSALS_IN_FULL`] of each
/// place and reason in each window, so that a flood of bad tokens cannot fill a disk.
pub(crate) fn details_in_full(at: RefusedAt, reason: &'static str) -> bool {
    DETAILS.admit((at, reason), Instant::now()).0
}

/// The target of the lines of refusals at `/metrics`.
const OTHER_TARGET: &str = module_path!();

/// The message of a summary line.
fn summary_message(summary: &Summary) -> String {
    format!(
        "{} more refusals for reason {} within {} s (counted, not logged one by one)",
        summary.more,
        summary.key.1,
        REFUSAL_WINDOW.as_secs()
    )
}

/// Whether the summaries of refusals at `at` are written: at the level and target of the lines
/// they stand for.
fn summary_enabled(at: RefusedAt) -> bool {
    match at {
        RefusedAt::Endpoint(_) => enabled(),
        RefusedAt::Metrics => tracing::enabled!(tracing::Level::WARN),
    }
}

/// Writes one summary line, at the level and target of the lines it stands for.
fn write_summary(summary: &Summary) {
    if !summary_enabled(summary.key.0) {
        return;
    }
    if let Some(direct) = DIRECT.get() {
        let mut line = String::new();
        format_summary(summary, direct.json, &mut line);
        direct.shared.append(line.as_bytes());
        return;
    }
    let ((at, reason), more) = (summary.key, summary.more);
    let seconds = REFUSAL_WINDOW.as_secs();
    let message = summary_message(summary);
    match at {
        RefusedAt::Endpoint(_) => tracing::info!(
            target: REQUEST_TARGET,
            endpoint = at.name(),
            denied = reason,
            more,
            seconds,
            "{message}"
        ),
        RefusedAt::Metrics => tracing::warn!(
            endpoint = at.name(),
            denied = reason,
            more,
            seconds,
            "{message}"
        ),
    }
}

/// A summary line as the subscriber would write it, newline included, into `out` (reused).
fn format_summary(summary: &Summary, json: bool, out: &mut String) {
    let ((at, reason), more) = (summary.key, summary.more);
    let (level, target) = match at {
        RefusedAt::Endpoint(_) => (tracing::Level::INFO, REQUEST_TARGET),
        RefusedAt::Metrics => (tracing::Level::WARN, OTHER_TARGET),
    };
    let mut line = LineWriter::start(json, &level, target, std::mem::take(out));
    line.str_field("endpoint", at.name());
    line.str_field("denied", reason);
    line.u64_field("more", more);
    line.u64_field("seconds", REFUSAL_WINDOW.as_secs());
    line.message(summary_message(summary));
    line.end(out);
}

/// The target of request lines.
const REQUEST_TARGET: &str = "invitegate::connector";
/// The message of request lines.
const REQUEST_MESSAGE: &str = "connector request";

/// Logs a refused request to a path that is not an endpoint (`/metrics`), at the rate of
/// [`limit`].
pub fn denied(path: &str, refusal: &Refusal) {
    if !admit((RefusedAt::Metrics, refusal.reason())) {
        return;
    }
    tracing::warn!(
        path,
        denied = refusal.reason(),
        why = refusal.why(),
        scheme = refusal.scheme(),
        user = refusal.user(),
        thumbprint = refusal.thumbprint().as_deref(),
        "request refused"
    );
}

/// What the log shows of an email address: its lower-cased domain, or with `log_emails` the
/// address; either cut to [`MAX_LOGGED_EMAIL`] bytes with the full length noted.
fn email_for_log(email: &str, log_emails: bool) -> String {
    let shown = if log_emails {
        email.trim()
    } else {
        match email.rsplit_once('@') {
            Some((_, domain)) => domain.trim(),
            None => return "(no domain)".to_owned(),
        }
    };
    let cut = clip(shown, MAX_LOGGED_EMAIL);
    let mut text = if log_emails {
        cut.to_owned()
    } else {
        cut.to_ascii_lowercase()
    };
    if cut.len() < shown.len() {
        text.push_str(&format!("...({} bytes)", shown.len()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::format::tests::{SharedVec, captured};

    /// A request line through the subscriber, as written when [`init`] is not installed.
    fn through_subscriber(request: &RequestLine, json: bool) -> String {
        captured(json, || {
            request
                .clone()
                .finish(StatusCode::OK, Duration::from_micros(1234));
        })
    }

    #[test]
    fn request_lines_written_directly_match_the_subscriber() {
        let ring =
            crate::keys::KeyRing::parse("7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let code = crate::verify::mint(
            &ring,
            &crate::audience::Audience::email("alice@contoso.com").unwrap(),
            crate::expiry::Expiry::from_unix(4_102_444_799),
        );
        let mut full = RequestLine::new(EndpointLabel::Entra);
        full.outcome = Outcome::Valid;
        full.code = Some(code);
        full.email = Some(email_for_log("Alice@Cont\"oso.com", false));
        let mut denied = RequestLine::new(EndpointLabel::CustomPolicy);
        denied.outcome = Outcome::Unauthorized;
        denied.denied = Some(super::super::auth::basic::WRONG_PASSWORD.with_user(b"b2c\"admin"));
        for request in [&full, &denied] {
            for json in [true, false] {
                let expected = through_subscriber(request, json);
                let mut direct = String::from("left over from an earlier line");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                request.format(json, StatusCode::OK, 1234, now, &mut direct);
                // The same line but for the instant it was written.
                let unstamped = |line: &str| {
                    let at = line.find("20").unwrap();
                    format!(
                        "{}{}",
                        &line[..at],
                        &line[at + "2026-12-01T00:00:00.000000Z".len()..]
                    )
                };
                assert_eq!(unstamped(&direct), unstamped(&expected), "{direct}");
                assert!(direct.ends_with('\n'), "{direct}");
                if json {
                    let value: serde_json::Value = serde_json::from_str(direct.trim_end()).unwrap();
                    assert_eq!(value["micros"], 1234, "{direct}");
                }
            }
        }
        assert!(through_subscriber(&full, true).contains("\"code\":\""));
    }

    #[test]
    fn request_lines_are_formatted_by_the_log_thread_in_the_order_logged() {
        let mut request = RequestLine::new(EndpointLabel::UserFlow);
        request.outcome = Outcome::Valid;
        request.email = Some(email_for_log("alice@Contoso.com", false));
        // 2026-12-06T12:00:00.250000Z
        let at = Duration::new(1_796_558_400, 250_000_000);
        let mut expected = String::new();
        request.format(true, StatusCode::OK, 42, at, &mut expected);
        assert!(
            expected.starts_with("{\"timestamp\":\"2026-12-06T12:00:00.250000Z\""),
            "{expected}"
        );
        let shared = Shared::default();
        shared.append(b"before\n");
        shared.defer(Deferred {
            line: request,
            status: StatusCode::OK,
            micros: 42,
            at,
        });
        shared.append(b"after\n");
        shared.stop.store(true, Ordering::Relaxed);
        let written = Arc::new(Mutex::new(Vec::new()));
        write_out(&shared, SharedVec(Arc::clone(&written)), true);
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text, format!("before\n{expected}after\n"));
        assert!(
            text.contains("\"email\":\"contoso.com\",\"micros\":42"),
            "{text}"
        );
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines_of_either_kind() {
        let shared = Shared::default();
        let request = RequestLine::new(EndpointLabel::Entra);
        let fits = LOG_BUFFER_BYTES / DEFERRED_LINE_BYTES;
        for _ in 0..fits {
            shared.defer(Deferred {
                line: request.clone(),
                status: StatusCode::OK,
                micros: 1,
                at: Duration::ZERO,
            });
        }
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(shared.lock().requests.len(), fits);
        // What is left is less than a request line's share, but a short text line fits.
        shared.defer(Deferred {
            line: request,
            status: StatusCode::OK,
            micros: 1,
            at: Duration::ZERO,
        });
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 1);
        let room = LOG_BUFFER_BYTES - shared.lock().bytes();
        shared.append(&vec![b'x'; room]);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 1);
        shared.append(b"\n");
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(shared.lock().bytes(), LOG_BUFFER_BYTES);
    }

    #[test]
    fn summary_lines_written_directly_match_the_subscriber() {
        let summaries = [
            Summary {
                key: (EndpointLabel::Entra.into(), "not-bearer"),
                more: 12_345,
            },
            Summary {
                key: (RefusedAt::Metrics, "wrong-password"),
                more: 7,
            },
        ];
        for summary in summaries {
            for json in [true, false] {
                let expected = captured(json, || write_summary(&summary));
                let mut direct = String::new();
                format_summary(&summary, json, &mut direct);
                let unstamped = |line: &str| line.split_once('Z').unwrap().1.to_owned();
                assert_eq!(unstamped(&direct), unstamped(&expected), "{direct}");
            }
        }
        let mut line = String::new();
        format_summary(&summaries[0], true, &mut line);
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["endpoint"], "entra");
        assert_eq!(value["denied"], "not-bearer");
        assert_eq!(value["more"], 12_345);
        assert_eq!(
            value["message"],
            "12345 more refusals for reason not-bearer within 1 s (counted, not logged one by one)"
        );
    }

    #[test]
    fn emails_are_bounded_and_show_the_domain() {
        assert_eq!(email_for_log("Alice@Contoso.COM ", false), "contoso.com");
        assert_eq!(
            email_for_log(" Alice@Contoso.COM", true),
            "Alice@Contoso.COM"
        );
        assert_eq!(email_for_log("nodomain", false), "(no domain)");
        let long = format!("a@{}.com", "b".repeat(70_000));
        let shown = email_for_log(&long, false);
        assert!(shown.len() < 300, "{}", shown.len());
        assert!(shown.ends_with("...(70004 bytes)"), "{shown}");
        let wide = format!("a@{}", "é".repeat(200));
        assert!(email_for_log(&wide, false).ends_with("...(400 bytes)"));
    }
}
