//! One structured log line per endpoint request: endpoint, outcome, status, kind, key id, the
//! code's fingerprint and the email's domain (the whole address only with `--log-emails`),
//! each field bounded in length. Never a whole code, a token or a password.
//!
//! Lines go through a non-blocking writer ([`init`]): a request only formats its line into a
//! queue, and one thread writes the queue to stderr. When stderr cannot keep up and the queue
//! is full, lines are dropped and counted rather than slowing every request down.

use std::time::Duration;

use warp::http::StatusCode;

use super::auth::Denied;
use super::metrics::EndpointLabel;
use crate::Code;
use crate::connector::{Answer, clip};

/// Lines the log queue holds before new ones are dropped (and counted). At about 300 bytes a
/// line that is a few MiB: seconds of full load, enough to ride out a slow log collector.
pub const LOG_QUEUE_LINES: usize = 16 * 1024;

/// Bytes the log thread gathers before writing: a burst of lines becomes one system call.
pub const LOG_WRITE_BUFFER: usize = 64 * 1024;

/// The running log writer: keep it for as long as lines are logged; dropping it flushes the
/// queue.
#[derive(Debug)]
pub struct Logging {
    _guard: tracing_appender::non_blocking::WorkerGuard,
    dropped: tracing_appender::non_blocking::ErrorCounter,
}

impl Logging {
    /// Lines dropped so far because the queue was full.
    #[must_use]
    pub fn dropped(&self) -> DroppedLines {
        DroppedLines(Some(self.dropped.clone()))
    }
}

/// A count of log lines dropped, for `/metrics`; zero when logging is not through [`init`].
#[derive(Debug, Clone, Default)]
pub struct DroppedLines(Option<tracing_appender::non_blocking::ErrorCounter>);

impl DroppedLines {
    /// Lines dropped so far.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
    }
}

/// Installs the process's log subscriber: `filter` (an `EnvFilter` directive such as `info`),
/// text or JSON lines, written to `writer` through a non-blocking queue of
/// [`LOG_QUEUE_LINES`]. Returns `None` when a subscriber was already installed (tests).
pub fn init<W>(filter: &str, json: bool, ansi: bool, writer: W) -> Option<Logging>
where
    W: std::io::Write + Send + 'static,
{
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("invitegate-log")
        // The writer thread takes every queued line, then flushes: buffered, a burst of lines
        // is one write rather than one each.
        .finish(std::io::BufWriter::with_capacity(LOG_WRITE_BUFFER, writer));
    let dropped = writer.error_counter();
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    installed.ok().map(|()| Logging {
        _guard: guard,
        dropped,
    })
}

/// Longest email or domain a log line carries; a longer one is cut and its length noted. A
/// DNS name is at most 253 octets, so this only cuts what no real address has.
pub const MAX_LOGGED_EMAIL: usize = 254;

/// Whether endpoint log lines are written.
fn enabled() -> bool {
    tracing::enabled!(target: "invitegate::connector", tracing::Level::INFO)
}

/// What one endpoint request came to, filled in as it is answered.
#[derive(Debug)]
pub struct RequestLine {
    endpoint: EndpointLabel,
    /// `valid`, a reason's name, or an HTTP-level outcome (`unauthorized`, `too-large`, ...).
    pub outcome: &'static str,
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
            outcome: "bad-request",
            denied: None,
            code: None,
            email: None,
        }
    }

    /// Takes what the log needs from a dialect's answer.
    pub fn record(&mut self, answer: &Answer<'_>, log_emails: bool) {
        self.outcome = answer.outcome;
        self.code = answer.code;
        if enabled() {
            self.email = answer
                .email
                .as_deref()
                .map(|email| email_for_log(email, log_emails));
        }
    }

    /// Writes the line.
    pub fn finish(&self, status: StatusCode, elapsed: Duration) {
        if !enabled() {
            return;
        }
        tracing::info!(
            target: "invitegate::connector",
            endpoint = self.endpoint.name(),
            outcome = self.outcome,
            status = status.as_u16(),
            kind = self.code.map(|c| c.kind().name()),
            key_id = self.code.map(|c| c.key_id()),
            code = self.code.map(|c| c.fingerprint()).as_deref(),
            email = self.email.as_deref(),
            denied = self.denied,
            micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "connector request"
        );
    }
}

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
