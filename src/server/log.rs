//! One structured log line per endpoint request: endpoint, outcome, status, kind, key id, the
//! code's fingerprint and the email's domain (the whole address only with `--log-emails`),
//! each field bounded in length. Never a whole code, a token or a password.
//!
//! Lines go through a batching writer ([`init`]): a request appends its formatted line to a
//! shared buffer, and one thread writes the buffer out every [`LOG_FLUSH_INTERVAL`]. No request
//! waits for stderr, and none wakes a thread: a queue whose writer thread is woken for every
//! line cost more than formatting the line. When the writer cannot keep up and the buffer is
//! full, lines are dropped and counted rather than slowing every request down.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use warp::http::StatusCode;

use super::auth::Denied;
use super::labels::{EndpointLabel, Outcome};
use crate::Code;
use crate::connector::{Answer, clip};

/// Bytes of log lines held before new lines are dropped (and counted). At about 300 bytes a
/// line that is some 14,000 lines: far more than arrive between two flushes at full load.
pub const LOG_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// How often the log thread writes out the buffered lines.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// What the request threads and the log thread share.
#[derive(Debug, Default)]
struct Shared {
    lines: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: AtomicBool,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves the bytes usable: take them back.
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one whole line, or drops and counts it when the buffer is full.
    fn append(&self, line: &[u8]) {
        let mut lines = self.lock();
        if lines.len() + line.len() > LOG_BUFFER_BYTES {
            drop(lines);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            lines.extend_from_slice(line);
        }
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
fn write_out<W: std::io::Write>(shared: &Shared, mut writer: W) {
    let mut spare = Vec::with_capacity(64 * 1024);
    loop {
        let stopping = {
            let lines = shared.lock();
            let (mut lines, _) = shared
                .wake
                .wait_timeout(lines, LOG_FLUSH_INTERVAL)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::swap(&mut *lines, &mut spare);
            shared.stop.load(Ordering::Relaxed)
        };
        if !spare.is_empty() {
            // A log that cannot be written is not a reason to stop serving; the lines are lost.
            let _ = writer.write_all(&spare).and_then(|()| writer.flush());
            spare.clear();
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
    // Request lines skip the subscriber's dispatch and go straight to the same buffer.
    let _ = DIRECT.set(Direct {
        shared: Arc::clone(&shared),
        json,
    });
    let worker = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("invitegate-log".to_owned())
        .spawn(move || write_out(&worker, writer))
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
}

thread_local! {
    /// The line being written by this thread, reused so a request line allocates nothing.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The line format: one JSON object a line (`timestamp`, `level`, `target`, then the event's
/// fields and `message`), or `timestamp LEVEL target: message field=value ...` as text.
///
/// Written field by field straight into the line, without building a JSON tree: with
/// `tracing-subscriber`'s own JSON format, a request's line cost about 4.4 µs of the request's
/// thread, a quarter of a bare request on this machine; this one about a quarter of that.
struct Lines {
    json: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Lines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = LineWriter::start(self.json, meta.level(), meta.target(), String::new());
        event.record(&mut line);
        let mut out = String::new();
        line.end(&mut out);
        writer.write_str(&out)
    }
}

/// Writes an event's fields into the line as it visits them.
struct LineWriter {
    out: String,
    json: bool,
    fields_at: usize,
    message: Option<Cow<'static, str>>,
}

impl LineWriter {
    /// A line with its timestamp (now), level and target written; `out` is reused.
    fn start(json: bool, level: &tracing::Level, target: &str, mut out: String) -> Self {
        out.clear();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if json {
            out.push_str("{\"timestamp\":\"");
            push_timestamp(&mut out, now);
            out.push_str("\",\"level\":\"");
            out.push_str(level.as_str());
            out.push_str("\",\"target\":");
            push_json_str(&mut out, target);
        } else {
            push_timestamp(&mut out, now);
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!(" {level:>5} {target}:"));
        }
        Self {
            fields_at: out.len(),
            out,
            json,
            message: None,
        }
    }

    /// Writes the message and the line's end into `line` (cleared first), with the newline.
    fn end(self, line: &mut String) {
        let Self {
            mut out,
            json,
            fields_at,
            message,
        } = self;
        let message = message.unwrap_or_default();
        if json {
            out.push_str(",\"message\":");
            push_json_str(&mut out, &message);
            out.push('}');
        } else {
            // The message first, as people read it, then the fields.
            let fields = out.split_off(fields_at);
            out.push(' ');
            out.push_str(&message);
            out.push_str(&fields);
        }
        out.push('\n');
        *line = out;
    }

    fn name(&mut self, name: &str) {
        if self.json {
            self.out.push_str(",\"");
            self.out.push_str(name);
            self.out.push_str("\":");
        } else {
            self.out.push(' ');
            self.out.push_str(name);
            self.out.push('=');
        }
    }

    fn str_field(&mut self, name: &str, value: &str) {
        self.name(name);
        if self.json {
            push_json_str(&mut self.out, value);
        } else {
            let _ = std::fmt::Write::write_fmt(&mut self.out, format_args!("{value:?}"));
        }
    }

    fn u64_field(&mut self, name: &str, value: u64) {
        self.name(name);
        push_u64(&mut self.out, value);
    }
}

impl tracing::field::Visit for LineWriter {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(Cow::Owned(value.to_owned()));
            return;
        }
        self.str_field(field.name(), value);
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.u64_field(field.name(), value);
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.name(field.name());
        let _ = std::fmt::Write::write_fmt(&mut self.out, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.name(field.name());
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(Cow::Owned(text));
            return;
        }
        self.name(field.name());
        if self.json {
            push_json_str(&mut self.out, &text);
        } else {
            self.out.push_str(&text);
        }
    }
}

/// Appends `value` in decimal.
fn push_u64(out: &mut String, value: u64) {
    push_padded(out, value, 1);
}

/// Appends `value` in decimal, zero-padded to at least `width` digits (at most 20).
fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    let mut rest = value;
    while rest > 0 {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let from = at.min(digits.len().saturating_sub(width.max(1)));
    // ASCII digits, so always UTF-8.
    out.push_str(std::str::from_utf8(&digits[from..]).unwrap_or_default());
}

/// Appends `text` as a JSON string literal, escaped byte for byte as serde_json escapes it
/// (so a line written here matches the subscriber's). Every byte that needs an escape is
/// ASCII, so runs of other bytes, multi-byte characters included, are copied whole.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, &byte) in text.as_bytes().iter().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(text.get(plain..i).unwrap_or_default());
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(text.get(plain..).unwrap_or_default());
    out.push('"');
}

/// Appends the instant as RFC 3339 UTC with microseconds, e.g. `2026-12-01T21:17:29.123456Z`.
fn push_timestamp(out: &mut String, since_epoch: Duration) {
    let secs = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let field = |n: i64| u64::try_from(n).unwrap_or(0);
    push_padded(out, field(year), 4);
    out.push('-');
    push_padded(out, field(month), 2);
    out.push('-');
    push_padded(out, field(day), 2);
    out.push('T');
    push_padded(out, field(of_day / 3_600), 2);
    out.push(':');
    push_padded(out, field(of_day % 3_600 / 60), 2);
    out.push(':');
    push_padded(out, field(of_day % 60), 2);
    out.push('.');
    push_padded(out, u64::from(since_epoch.subsec_micros()), 6);
    out.push('Z');
}

/// Longest email or domain a log line carries; a longer one is cut and its length noted. A
/// DNS name is at most 253 octets, so this only cuts what no real address has.
pub const MAX_LOGGED_EMAIL: usize = 254;

/// Whether endpoint log lines are written.
fn enabled() -> bool {
    tracing::enabled!(target: REQUEST_TARGET, tracing::Level::INFO)
}

/// What one endpoint request came to, filled in as it is answered.
#[derive(Debug)]
pub struct RequestLine {
    endpoint: EndpointLabel,
    /// What became of the request.
    pub outcome: Outcome,
    /// Why authentication failed, for the log only.
    pub denied: Option<&'static str>,
    code: Option<Code>,
    /// What the log shows of the email; only taken when the line will be written.
    email: Option<String>,
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
        }
    }

    /// Takes what the log needs from a dialect's answer.
    pub fn record(&mut self, answer: &Answer<'_>, log_emails: bool) {
        self.outcome = answer.refusal.into();
        self.code = answer.code;
        if enabled() {
            self.email = answer
                .email
                .as_deref()
                .map(|email| email_for_log(email, log_emails));
        }
    }

    /// Writes the line.
    ///
    /// With the writer of [`init`] installed, the line is formatted here, exactly as the
    /// subscriber would, and appended to its buffer: the subscriber's dispatch (a visitor
    /// call a field, a writer a line) was half of a line's cost. Otherwise, an event.
    pub fn finish(&self, status: StatusCode, elapsed: Duration) {
        if !enabled() {
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
                denied = self.denied,
                micros,
                "{REQUEST_MESSAGE}"
            );
            return;
        };
        LINE.with(|reused| {
            let Ok(mut reused) = reused.try_borrow_mut() else {
                return;
            };
            self.format(direct.json, status, micros, &mut reused);
            direct.shared.append(reused.as_bytes());
        });
    }

    /// The line as the subscriber would write it, newline included, into `out` (reused).
    fn format(&self, json: bool, status: StatusCode, micros: u64, out: &mut String) {
        let mut line = LineWriter::start(
            json,
            &tracing::Level::INFO,
            REQUEST_TARGET,
            std::mem::take(out),
        );
        line.str_field("endpoint", self.endpoint.name());
        line.str_field("outcome", self.outcome.name());
        line.u64_field("status", u64::from(status.as_u16()));
        if let Some(code) = self.code {
            line.str_field("kind", code.kind().name());
            line.u64_field("key_id", u64::from(code.key_id()));
            line.str_field("code", &code.fingerprint());
        }
        if let Some(email) = &self.email {
            line.str_field("email", email);
        }
        if let Some(denied) = self.denied {
            line.str_field("denied", denied);
        }
        line.u64_field("micros", micros);
        line.message = Some(Cow::Borrowed(REQUEST_MESSAGE));
        line.end(out);
    }
}

/// The target of request lines.
const REQUEST_TARGET: &str = "invitegate::connector";
/// The message of request lines.
const REQUEST_MESSAGE: &str = "connector request";

/// Logs a refused request to a path that is not an endpoint (`/metrics`).
pub fn denied(path: &str, denied: &Denied) {
    tracing::warn!(path, reason = denied.reason, "request refused");
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

    /// What the subscriber, in `json` or text, writes for the events `emit` sends.
    fn captured(json: bool, emit: impl FnOnce()) -> String {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || SharedVec(std::sync::Arc::clone(&sink)))
            .event_format(Lines { json })
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// Formats one connector event in each format.
    fn line(json: bool) -> String {
        captured(json, || {
            tracing::info!(
                target: "invitegate::connector",
                endpoint = "entra",
                status = 200u16,
                key_id = Some(7u8),
                email = Some("quote\"d.example"),
                denied = None::<&str>,
                valid = true,
                "connector request"
            );
        })
    }

    struct SharedVec(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SharedVec {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_json_or_text() {
        let json = line(true);
        assert!(json.ends_with("}\n"), "{json}");
        let value: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], "invitegate::connector");
        assert_eq!(value["endpoint"], "entra");
        assert_eq!(value["status"], 200);
        assert_eq!(value["key_id"], 7);
        assert_eq!(value["email"], "quote\"d.example");
        assert_eq!(value["valid"], true);
        assert_eq!(value["message"], "connector request");
        assert!(value.get("denied").is_none(), "{json}");
        let text = line(false);
        let (_, rest) = text
            .split_once(" INFO invitegate::connector: connector request ")
            .unwrap();
        assert_eq!(
            rest,
            "endpoint=\"entra\" status=200 key_id=7 email=\"quote\\\"d.example\" valid=true\n"
        );
    }

    /// A request line through the subscriber, as written when [`init`] is not installed.
    fn through_subscriber(request: &RequestLine, json: bool) -> String {
        captured(json, || {
            request.finish(StatusCode::OK, Duration::from_micros(1234));
        })
    }

    #[test]
    fn request_lines_written_directly_match_the_subscriber() {
        let ring = crate::KeyRing::parse("7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let code = crate::mint(
            &ring,
            &crate::Audience::email("alice@contoso.com").unwrap(),
            crate::Expiry::from_unix(4_102_444_799),
        );
        let mut full = RequestLine::new(EndpointLabel::Entra);
        full.outcome = Outcome::Valid;
        full.code = Some(code);
        full.email = Some(email_for_log("Alice@Cont\"oso.com", false));
        let mut denied = RequestLine::new(EndpointLabel::CustomPolicy);
        denied.outcome = Outcome::Unauthorized;
        denied.denied = Some("no credentials");
        for request in [&full, &denied] {
            for json in [true, false] {
                let expected = through_subscriber(request, json);
                let mut direct = String::from("left over from an earlier line");
                request.format(json, StatusCode::OK, 1234, &mut direct);
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
    fn json_strings_are_escaped_as_serde_json_does() {
        for text in [
            "plain",
            "a\"b\\c",
            "line\nbreak\r\t",
            "\u{1}\u{1f}x\u{8}\u{c}\u{7f}",
            "é✓😀\"é",
            "",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn timestamps_are_rfc_3339() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (1_893_456_000, "2030-01-01T00:00:00.000000Z"),
            (4_102_444_799, "2099-12-31T23:59:59.000000Z"),
        ] {
            let mut out = String::new();
            push_timestamp(&mut out, Duration::from_secs(secs));
            assert_eq!(out, text);
            let parsed =
                time::OffsetDateTime::parse(&out, &time::format_description::well_known::Rfc3339)
                    .unwrap();
            assert_eq!(parsed.unix_timestamp(), i64::try_from(secs).unwrap());
        }
        let mut out = String::new();
        push_timestamp(&mut out, Duration::new(1, 123_456_789));
        assert_eq!(out, "1970-01-01T00:00:01.123456Z");
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
