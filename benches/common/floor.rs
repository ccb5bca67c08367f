//! The floor route: a warp 0.4 route that does only what no B2C user-flow connector can avoid,
//! and nothing of ours. An endpoint's rate against it is what our own work costs beyond the
//! unavoidable; against the bare route (no work at all) it would also count the work that any
//! implementation must do.
//!
//! What it does for each request, and nothing more:
//! - compares the `Authorization` header with the expected Basic value;
//! - reads the B2C user-flow body into a borrowed struct of the three fields it needs (`email`,
//!   the code attribute, `step`), unknown fields skipped;
//! - lower-cases the email;
//! - computes one HMAC-SHA256 (a clone of a prepared key) over about 60 bytes;
//! - answers a small struct through `serde_json::to_vec`, with `content-type:
//!   application/json`;
//! - appends one JSON log line of about 150 bytes (timestamp, endpoint, outcome, action,
//!   micros) to a shared buffer that a writer thread swaps out and writes every 20 ms, with no
//!   wake-up per line.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::http::HeaderValue;
use warp::reply::Response;

/// How often the writer thread swaps the buffer out and writes it.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// The log lines not yet written, shared by the route and its writer thread.
#[derive(Clone)]
pub struct FloorLog {
    pending: Arc<Mutex<Vec<u8>>>,
}

impl FloorLog {
    /// A buffer and the thread that writes it to `file` every 20 ms, for the life of the
    /// process (a bench's).
    pub fn start(mut file: std::fs::File) -> Self {
        let pending = Arc::new(Mutex::new(Vec::with_capacity(64 * 1024)));
        let shared = Arc::clone(&pending);
        std::thread::spawn(move || {
            let mut spare = Vec::with_capacity(64 * 1024);
            loop {
                std::thread::sleep(FLUSH_EVERY);
                std::mem::swap(&mut *shared.lock().unwrap(), &mut spare);
                if !spare.is_empty() {
                    file.write_all(&spare).unwrap();
                    spare.clear();
                }
            }
        });
        Self { pending }
    }

    fn append(&self, line: &[u8]) {
        self.pending.lock().unwrap().extend_from_slice(line);
    }
}

/// The user-flow request's three fields, borrowed from the body.
#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    email: &'a str,
    #[serde(
        rename = "extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode",
        borrow
    )]
    code: &'a str,
    #[serde(borrow)]
    step: &'a str,
}

#[derive(Serialize)]
struct Answer {
    version: &'static str,
    action: &'static str,
    #[serde(rename = "extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode")]
    code: &'static str,
}

#[derive(Serialize)]
struct LogLine<'a> {
    timestamp: &'a str,
    endpoint: &'static str,
    outcome: &'static str,
    action: &'static str,
    micros: u64,
}

/// The floor route for the user flow's requests; `basic` is the whole expected header value
/// (`Basic ...`), `key` the HMAC key. With `extra` above zero it also computes for that long (a
/// busy loop): a calibration of what a given cost beyond the floor does to the ratio.
pub fn floor_route(
    basic: &str,
    key: &[u8],
    log: FloorLog,
    extra: Duration,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible>
+ Clone
+ Send
+ Sync
+ 'static
+ use<> {
    let expected: Arc<[u8]> = Arc::from(basic.as_bytes());
    let prepared = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    warp::post()
        .and(warp::header::optional::<HeaderValue>("authorization"))
        .and(warp::body::bytes())
        .map(
            move |authorization: Option<HeaderValue>, body: bytes::Bytes| {
                let started = Instant::now();
                let authorized = authorization.is_some_and(|value| value.as_bytes() == &*expected);
                let request: Option<Request<'_>> = serde_json::from_slice(&body).ok();
                let Some(request) = request.filter(|_| authorized) else {
                    let mut refused = Response::new("".into());
                    *refused.status_mut() = warp::http::StatusCode::UNAUTHORIZED;
                    return refused;
                };
                let email = request.email.to_ascii_lowercase();
                let mut mac = prepared.clone();
                mac.update(b"invitegate-v1\0");
                mac.update(request.step.as_bytes());
                mac.update(&request.code.as_bytes()[..request.code.len().min(6)]);
                mac.update(email.as_bytes());
                std::hint::black_box(mac.finalize().into_bytes());
                if !extra.is_zero() {
                    let spinning = Instant::now();
                    while spinning.elapsed() < extra {
                        std::hint::spin_loop();
                    }
                }
                let action = "Continue";
                let answer = serde_json::to_vec(&Answer {
                    version: "1.0.0",
                    action,
                    code: "",
                })
                .unwrap();
                let mut response = Response::new(answer.into());
                response
                    .headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                let timestamp = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                let mut line = serde_json::to_vec(&LogLine {
                    timestamp: &timestamp,
                    endpoint: "b2c-user-flow",
                    outcome: "valid",
                    action,
                    micros: started.elapsed().as_micros() as u64,
                })
                .unwrap();
                line.push(b'\n');
                log.append(&line);
                response
            },
        )
        .recover(|_| async { Ok::<_, std::convert::Infallible>(Response::new("".into())) })
        .unify()
}
