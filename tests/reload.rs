//! Hot reload on the real binary under load: a new key via SIGHUP, a deny-list entry picked up
//! from the file's change alone, and a broken key ring that keeps the old state; no request
//! fails meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use invitegate::{Audience, Expiry, KeyRing, mint};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const KEY_7: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_8: &str = "8:HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";
const PASSWORD: &str = "a-long-enough-password";

fn code(keys: &str) -> String {
    let expiry =
        Expiry::from_datetime(time::OffsetDateTime::now_utc() + time::Duration::hours(1)).unwrap();
    mint(
        &KeyRing::parse(keys).unwrap(),
        &Audience::email("alice@contoso.com").unwrap(),
        expiry,
    )
    .to_string()
}

/// Replaces a file the way deployment tools do: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn request(path: &str, body: &str) -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("b2c:{PASSWORD}"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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

/// Sends one request on `stream` and returns the status and body.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Option<(u16, String)> {
    stream.write_all(request).await.ok()?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if buffer.len() >= end + 4 + length {
            let status = head.get(9..12)?.parse().ok()?;
            let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
            return Some((status, body));
        }
    }
}

/// One request on a new connection.
async fn ask(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    exchange(&mut stream, request).await.unwrap()
}

/// Asks until `done` holds for the answer, for at most 5 s.
async fn until(addr: SocketAddr, request: &[u8], done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let (_, body) = ask(addr, request).await;
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still {body} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sighup(pid: u32) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -HUP {pid}")])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn keys_and_deny_list_reload_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let deny = dir.path().join("deny.txt");
    std::fs::write(&keys, format!("{KEY_7}\n")).unwrap();
    std::fs::write(&deny, "# revoked codes\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_invitegate"))
        .args([
            "serve",
            "--listen",
            &port.to_string(),
            "--reload-interval",
            "100ms",
        ])
        .arg("--keys-file")
        .arg(&keys)
        .arg("--deny-list")
        .arg(&deny)
        .env("BASIC_AUTH_USERNAME", "b2c")
        .env("BASIC_AUTH_PASSWORD", PASSWORD)
        .env_remove("INVITEGATE_KEYS")
        .env_remove("INVITEGATE_KEYS_FILE")
        .env("INVITEGATE_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let old = code(KEY_7);
    let new = code(KEY_8);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (answered, failures, metrics) = runtime.block_on(async {
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // Load through every reload: every request gets a JSON answer that is not a 5xx.
        let running = Arc::new(AtomicBool::new(true));
        let answered = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicUsize::new(0));
        let load: Vec<_> = (0..4)
            .map(|_| {
                let (running, answered, failures) = (
                    Arc::clone(&running),
                    Arc::clone(&answered),
                    Arc::clone(&failures),
                );
                let request = sign_up(&old);
                tokio::spawn(async move {
                    while running.load(Ordering::Relaxed) {
                        let mut stream = TcpStream::connect(addr).await.unwrap();
                        while running.load(Ordering::Relaxed) {
                            match exchange(&mut stream, &request).await {
                                Some((status, body)) if status < 500 && body.starts_with('{') => {
                                    answered.fetch_add(1, Ordering::Relaxed);
                                }
                                // The server closed an idle or old connection: reconnect.
                                None => break,
                                Some(_) => {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let (_, body) = ask(addr, &sign_up(&new)).await;
        assert!(body.contains("not valid"), "{body}");
        assert!(ask(addr, &sign_up(&old)).await.1.contains("Continue"));

        // A new signing key, by SIGHUP.
        replace(&keys, &format!("{KEY_8}\n{KEY_7}\n"));
        sighup(server.id());
        until(addr, &sign_up(&new), |body| body.contains("Continue")).await;

        // A revoked code, from the file's change alone.
        replace(&deny, &format!("# revoked codes\n{old}\n"));
        until(addr, &sign_up(&old), |body| body.contains("withdrawn")).await;

        // A broken key ring: the reload fails and the previous state stays.
        replace(&keys, "8:not-base64!!\n");
        sighup(server.id());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(ask(addr, &sign_up(&new)).await.1.contains("Continue"));
        assert!(ask(addr, &sign_up(&old)).await.1.contains("withdrawn"));

        running.store(false, Ordering::Relaxed);
        for task in load {
            task.await.unwrap();
        }
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("b2c:{PASSWORD}"));
        let scrape =
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n");
        let (_, metrics) = ask(addr, scrape.as_bytes()).await;
        (
            answered.load(Ordering::Relaxed),
            failures.load(Ordering::Relaxed),
            metrics,
        )
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(answered > 100, "the load ran: {answered}");
    assert_eq!(failures, 0);
    let count = |result: &str| -> u64 {
        let prefix = format!(r#"invitegate_reloads_total{{result="{result}"}} "#);
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
            .parse()
            .unwrap()
    };
    // The broken ring may be seen by the signal and by the file check alike.
    assert!(count("failed") >= 1, "{metrics}");
    assert!(count("ok") >= 2, "{metrics}");
}
