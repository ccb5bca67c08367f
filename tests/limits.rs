//! Connection limits and the drain, on real sockets: a crowd of idle, trickling keep-alive
//! connections cannot hold fresh clients out, and SIGTERM under keep-alive load answers every
//! request a client finished sending.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use invitegate::KeyRing;
use invitegate::decision::Verifier;
use invitegate::server::auth::Auth;
use invitegate::server::connection::{Limit, Limits};
use invitegate::server::{Config, run};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one response framed by content-length; `None` when the connection closed first.
/// Returns the status and whether the server said `Connection: close`.
async fn response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(u16, bool)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buffer.len() >= end + 4 + length {
                let status = head.get(9..12).unwrap().parse().unwrap();
                let close = head.lines().any(|l| l == "connection: close");
                buffer.drain(..end + 4 + length);
                return Some((status, close));
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn config(limits: Limits) -> Config {
    let mut config = Config::new(Verifier::new(KeyRing::parse(KEYS).unwrap()));
    config.user_flow = Some(invitegate::server::Endpoint::new(
        Auth::None,
        invitegate::connector::b2c_user_flow::UserFlow {
            attribute: invitegate::connector::AttributeNames::new("InvitationCode", None),
            keep_code_attribute: false,
        },
    ));
    config.metrics_auth = Some(Auth::None);
    config.limits = limits;
    config
}

/// 1,100 keep-alive connections, more than the 1,024 the server serves at once, each sending
/// `GET /healthz` every 2 s (more often than the idle timeout, so only the cap can act): fresh
/// clients are still answered within a second, and the connections that made room for them
/// are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_trickling_connections_cannot_lock_fresh_clients_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = config(Limits::default());
    let stats = Arc::clone(&config.connection_stats);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, config, async {
        let _ = stopped.await;
    }));
    let running = Arc::new(AtomicBool::new(true));
    let mut crowd = Vec::new();
    for _ in 0..1_100 {
        let running = Arc::clone(&running);
        crowd.push(tokio::spawn(async move {
            // A closed connection comes back: the crowd keeps trying to hold its slots.
            while running.load(Ordering::Relaxed) {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut buffer = Vec::new();
                while running.load(Ordering::Relaxed) {
                    if stream.write_all(HEALTH).await.is_err()
                        || response(&mut stream, &mut buffer).await.is_none()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }));
    }
    // Let the crowd take every slot.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stats.open() >= 1_000, "only {} open", stats.open());
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let answered = tokio::time::timeout(Duration::from_secs(5), async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(HEALTH).await.unwrap();
            response(&mut stream, &mut Vec::new()).await
        })
        .await;
        assert_eq!(
            answered.ok().flatten().map(|(s, _)| s),
            Some(200),
            "open {}, evicted {}, overflow {}, idle {}",
            stats.open(),
            stats.hits(Limit::Evicted),
            stats.hits(Limit::Overflow),
            stats.hits(Limit::IdleTimeout)
        );
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.store(false, Ordering::Relaxed);
    assert!(
        slowest < Duration::from_secs(1),
        "a fresh client waited {slowest:?}"
    );
    assert!(
        stats.hits(Limit::Evicted) >= 20,
        "{}",
        stats.hits(Limit::Evicted)
    );
    let _ = stop.send(());
    for task in crowd {
        task.abort();
    }
    server.await.unwrap().unwrap();
}

/// An idle keep-alive connection is closed after the idle timeout; a busy one after its
/// maximum age, with its request answered first.
#[tokio::test]
async fn idle_and_old_connections_are_closed_and_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        max_age: Duration::from_millis(1_500),
        ..Limits::default()
    };
    let config = config(limits);
    let stats = Arc::clone(&config.connection_stats);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, config, async {
        let _ = stopped.await;
    }));
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut buffer = Vec::new();
    idle.write_all(HEALTH).await.unwrap();
    assert_eq!(response(&mut idle, &mut buffer).await, Some((200, false)));
    let started = Instant::now();
    assert_eq!(
        response(&mut idle, &mut buffer).await,
        None,
        "closed when idle"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(stats.hits(Limit::IdleTimeout), 1);

    let mut busy = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut answered = 0;
    loop {
        busy.write_all(HEALTH).await.unwrap();
        match response(&mut busy, &mut buffer).await {
            Some((200, false)) => answered += 1,
            Some((200, true)) => break,
            other => panic!("{other:?} after {answered} answers"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    assert_eq!(response(&mut busy, &mut buffer).await, None);
    assert_eq!(stats.hits(Limit::MaxAge), 1);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// What one load connection saw: requests whose bytes were all written, and answers read.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    answered: usize,
    closed_by_server: bool,
}

/// Sends requests back to back until the server closes; counts what was sent and answered.
async fn keep_alive_load(addr: SocketAddr, request: &'static [u8]) -> Tally {
    let mut tally = Tally::default();
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return tally;
    };
    let mut buffer = Vec::new();
    loop {
        if stream.write_all(request).await.is_err() {
            return tally;
        }
        tally.sent += 1;
        match response(&mut stream, &mut buffer).await {
            // The user-flow request is answered 400 (a ValidationError): any answer counts.
            Some((status, close)) if status < 500 => {
                tally.answered += 1;
                if close {
                    tally.closed_by_server = true;
                    return tally;
                }
            }
            Some((status, _)) => panic!("status {status}"),
            None => return tally,
        }
    }
}

/// SIGTERM to the real binary under keep-alive load: every request a client finished sending
/// gets its answer, the last with `Connection: close`, and the process exits by itself.
#[test]
fn sigterm_under_load_loses_no_request() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_invitegate"))
        .args([
            "serve",
            "--insecure-no-auth",
            "--listen",
            &port.to_string(),
            "--drain-timeout",
            "5s",
        ])
        .env("INVITEGATE_KEYS", KEYS)
        .env_remove("INVITEGATE_KEYS_FILE")
        .env_remove("BASIC_AUTH_USERNAME")
        .env("INVITEGATE_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tallies = runtime.block_on(async {
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let body = r#"{"email":"a@contoso.com","extension_InvitationCode":"ABCDE","step":"PostAttributeCollection"}"#;
        let request: &'static [u8] = Box::leak(
            format!(
                "POST /api/b2c/user-flow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        let health: &'static [u8] = HEALTH;
        let load: Vec<_> = (0..16)
            .map(|i| {
                let request = if i % 2 == 0 { request } else { health };
                tokio::spawn(keep_alive_load(addr, request))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let killed = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", server.id())])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut tallies = Vec::new();
        for task in load {
            tallies.push(task.await.unwrap());
        }
        tallies
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(8), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let sent: usize = tallies.iter().map(|t| t.sent).sum();
    assert!(sent > 100, "the load ran: {tallies:?}");
    for tally in &tallies {
        assert_eq!(tally.sent, tally.answered, "{tally:?}");
        assert!(tally.closed_by_server, "{tally:?}");
    }
}
