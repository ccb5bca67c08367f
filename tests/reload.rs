//! Hot reload on the real binary under load: a new key via SIGHUP, a deny-list entry picked up
//! from the file's change alone, and a broken key ring that keeps the old state; no request
//! fails meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const KEY_7: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_8: &str = "8:HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";
const PASSWORD: &str = "a-long-enough-password";

/// Replaces a file the way deployment tools do: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn request(path: &str, body: &str) -> Vec<u8> {
    let auth = support::basic_header("b2c", PASSWORD);
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn sign_up(code: &str) -> Vec<u8> {
    request(
        "/api/b2c/user-flow",
        &format!(
            r#"{{"email":"alice@contoso.com","extension_InvitationCode":"{code}","step":"PostAttributeCollection"}}"#
        ),
    )
}

/// What became of one request on a keep-alive connection.
#[derive(Debug)]
enum Exchange {
    /// The status and body, and whether the server said `Connection: close`.
    Answered(u16, String, bool),
    /// The write failed: the server had closed the connection before the request was sent.
    NotSent,
    /// The request was written but the connection closed before its answer: a lost request.
    Lost(String),
}

/// Sends one request on `stream` and reads its answer.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Exchange {
    if stream.write_all(request).await.is_err() {
        return Exchange::NotSent;
    }
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(error) => return Exchange::Lost(error.to_string()),
        };
        if n == 0 {
            return Exchange::Lost(format!("closed after {} bytes of the answer", buffer.len()));
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(response) = support::response_in(&buffer) {
            return Exchange::Answered(response.status, response.body, response.close);
        }
    }
}

/// One request on a new connection.
async fn ask(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    match exchange(&mut stream, request).await {
        Exchange::Answered(status, body, _) => (status, body),
        other => panic!("no answer on a new connection: {other:?}"),
    }
}

/// How long a test waits for a reload the server should make within its 100 ms interval: far
/// beyond that on a busy machine, so that passing it means the reload did not happen.
const RELOAD_WITHIN: Duration = Duration::from_secs(30);

/// Asks until `done` holds for the answer, for at most [`RELOAD_WITHIN`].
async fn until(addr: SocketAddr, request: &[u8], done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let (_, body) = ask(addr, request).await;
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < RELOAD_WITHIN,
            "still {body} after {RELOAD_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `invitegate_reloads_total{result="..."}` in a scrape of `/metrics`.
fn reloads(metrics: &str, result: &str) -> u64 {
    support::counter(
        metrics,
        &format!(r#"invitegate_reloads_total{{result="{result}"}}"#),
    )
}

async fn scrape(addr: SocketAddr) -> String {
    let auth = support::basic_header("b2c", PASSWORD);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
    let (status, metrics) = ask(addr, request.as_bytes()).await;
    assert_eq!(status, 200, "{metrics}");
    metrics
}

/// Waits until the count of reloads with `result` exceeds `before`, for at most
/// [`RELOAD_WITHIN`].
async fn reloaded(addr: SocketAddr, result: &str, before: u64) {
    let started = Instant::now();
    loop {
        let metrics = scrape(addr).await;
        if reloads(&metrics, result) > before {
            return;
        }
        assert!(
            started.elapsed() < RELOAD_WITHIN,
            "no {result} reload after {RELOAD_WITHIN:?}: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one load task saw: requests written and answered as expected, and the first few that
/// were answered otherwise (a 5xx or not JSON) or lost (written, then the connection closed
/// without an answer).
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    answered: usize,
    failures: Vec<String>,
}

impl Tally {
    fn failure(&mut self, what: String) {
        if self.failures.len() < 5 {
            self.failures.push(what);
        }
    }
}

/// Sends `request` on keep-alive connections until `running` is cleared. A new connection is
/// made when the server announces a close (`Connection: close`) or closed one before a request
/// was written; a request written and never answered is lost.
async fn load(addr: SocketAddr, request: Vec<u8>, running: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    while running.load(Ordering::Relaxed) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        while running.load(Ordering::Relaxed) {
            match exchange(&mut stream, &request).await {
                Exchange::NotSent => break,
                Exchange::Lost(why) => {
                    tally.sent += 1;
                    tally.failure(format!("lost: {why}"));
                    break;
                }
                Exchange::Answered(status, body, close) => {
                    tally.sent += 1;
                    if status < 500 && body.starts_with('{') {
                        tally.answered += 1;
                    } else {
                        tally.failure(format!("{status} {body}"));
                    }
                    if close {
                        break;
                    }
                }
            }
        }
    }
    tally
}

#[test]
fn keys_and_deny_list_reload_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let deny = dir.path().join("deny.txt");
    std::fs::write(&keys, format!("{KEY_7}\n")).unwrap();
    std::fs::write(&deny, "# revoked codes\n").unwrap();
    let server = support::serve(
        support::invitegate(dir.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--reload-interval",
                "100ms",
            ])
            .arg("--keys-file")
            .arg(&keys)
            .arg("--deny-list")
            .arg(&deny)
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    let addr = server.addr;
    let pid = server.process.id();
    let old = support::alice_code(KEY_7);
    let new = support::alice_code(KEY_8);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tallies = runtime.block_on(async {
        tokio::time::timeout(support::DEADLINE, async {
            // Load through every reload: every request gets a JSON answer that is not a 5xx.
            let running = Arc::new(AtomicBool::new(true));
            let tasks: Vec<_> = (0..4)
                .map(|_| tokio::spawn(load(addr, sign_up(&old), Arc::clone(&running))))
                .collect();
            let (_, body) = ask(addr, &sign_up(&new)).await;
            assert!(body.contains("not valid"), "{body}");
            assert!(ask(addr, &sign_up(&old)).await.1.contains("Continue"));

            // A new signing key, by SIGHUP.
            replace(&keys, &format!("{KEY_8}\n{KEY_7}\n"));
            support::signal(pid, "HUP");
            until(addr, &sign_up(&new), |body| body.contains("Continue")).await;

            // A revoked code, from the file's change alone.
            replace(&deny, &format!("# revoked codes\n{old}\n"));
            until(addr, &sign_up(&old), |body| body.contains("withdrawn")).await;

            // A broken key ring: the reload fails and the previous state stays.
            let failed = reloads(&scrape(addr).await, "failed");
            replace(&keys, "8:not-base64!!\n");
            support::signal(pid, "HUP");
            reloaded(addr, "failed", failed).await;
            assert!(ask(addr, &sign_up(&new)).await.1.contains("Continue"));
            assert!(ask(addr, &sign_up(&old)).await.1.contains("withdrawn"));

            running.store(false, Ordering::Relaxed);
            let mut tallies = Vec::new();
            for task in tasks {
                tallies.push(task.await.unwrap());
            }
            let metrics = scrape(addr).await;
            assert!(reloads(&metrics, "ok") >= 2, "{metrics}");
            tallies
        })
        .await
        .expect("the test finishes within its deadline")
    });
    for tally in &tallies {
        assert!(tally.answered > 0, "the load ran: {tallies:?}");
        // Every request written was answered, none with a 5xx and none lost.
        assert_eq!(tally.sent, tally.answered, "{tally:?}");
    }
}
