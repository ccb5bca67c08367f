//! Connection limits and the drain, on real sockets: a crowd of idle, trickling keep-alive
//! connections cannot hold fresh clients out, and SIGTERM under keep-alive load answers every
//! request a client finished sending.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
        if let Some(response) = support::response_in(buffer) {
            buffer.drain(..response.len);
            return Some((response.status, response.close));
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
        invitegate::connector::b2c_user_flow::UserFlow::new(
            invitegate::connector::AttributeNames::new("InvitationCode", None),
            false,
        ),
    ));
    config.metrics_auth = Some(Auth::None);
    config.limits = limits;
    config
}

/// How long a test waits for what should take a moment: far beyond that on a busy machine, far
/// below the five minutes a connection may live (so a fresh client stuck behind the crowd
/// until a slot frees by age fails), and below CI's limit, so a hang is a failure.
const WITHIN: Duration = Duration::from_secs(30);

/// 1,100 keep-alive connections, more than the 1,024 the server serves at once, each sending
/// `GET /healthz` every 2 s (more often than the idle timeout, so only the cap can act): fresh
/// clients are still answered, and the connections that made room for them are counted.
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
    // The crowd takes every slot.
    let started = Instant::now();
    while stats.open() < 1_000 {
        assert!(
            started.elapsed() < WITHIN,
            "only {} open after {WITHIN:?}",
            stats.open()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        // Without eviction a fresh client would wait for a crowd connection to reach its
        // maximum age (5 minutes), or be closed as overflow: `WITHIN` tells that from a
        // client let in, without asking how fast.
        let answered = tokio::time::timeout(WITHIN, async {
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.store(false, Ordering::Relaxed);
    assert!(
        stats.hits(Limit::Evicted) >= 20,
        "{}",
        stats.hits(Limit::Evicted)
    );
    let _ = stop.send(());
    for task in crowd {
        task.abort();
    }
    tokio::time::timeout(WITHIN, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
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
    // Closed by the idle timeout, not by another limit (the header timeout, 10 s, also runs
    // between requests): the count says which.
    let closed = tokio::time::timeout(WITHIN, response(&mut idle, &mut buffer)).await;
    assert_eq!(closed.ok(), Some(None), "closed when idle");
    assert_eq!(stats.hits(Limit::IdleTimeout), 1);

    let mut busy = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut answered = 0;
    loop {
        assert!(
            started.elapsed() < WITHIN,
            "not closed at its maximum age after {answered} answers"
        );
        busy.write_all(HEALTH).await.unwrap();
        match tokio::time::timeout(WITHIN, response(&mut busy, &mut buffer)).await {
            Ok(Some((200, false))) => answered += 1,
            Ok(Some((200, true))) => break,
            other => panic!("{other:?} after {answered} answers"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    let closed = tokio::time::timeout(WITHIN, response(&mut busy, &mut buffer)).await;
    assert_eq!(closed.ok(), Some(None), "closed after its last answer");
    assert_eq!(stats.hits(Limit::MaxAge), 1);
    let _ = stop.send(());
    tokio::time::timeout(WITHIN, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

/// What one load connection saw: requests whose bytes were all written, and answers read.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    answered: usize,
    closed_by_server: bool,
}

/// Sends requests back to back until the server closes; counts what was sent and answered,
/// and adds one to `connected` at the first answer.
async fn keep_alive_load(
    addr: SocketAddr,
    request: &'static [u8],
    connected: Arc<AtomicUsize>,
) -> Tally {
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
                if tally.answered == 1 {
                    connected.fetch_add(1, Ordering::Relaxed);
                }
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
    let dir = tempfile::tempdir().unwrap();
    let mut server = support::serve(
        support::invitegate(dir.path())
            .args([
                "serve",
                "--insecure-no-auth",
                "--listen",
                "127.0.0.1:0",
                "--drain-timeout",
                "5s",
            ])
            .env("INVITEGATE_KEYS", KEYS)
            .env_remove("BASIC_AUTH_USERNAME")
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    let addr = server.addr;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tallies = runtime.block_on(async {
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
        const CONNECTIONS: usize = 16;
        let connected = Arc::new(AtomicUsize::new(0));
        let load: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                let request = if i % 2 == 0 { request } else { health };
                tokio::spawn(keep_alive_load(addr, request, Arc::clone(&connected)))
            })
            .collect();
        // Every connection is under way, with requests in flight, before the signal.
        let started = Instant::now();
        while connected.load(Ordering::Relaxed) < CONNECTIONS {
            assert!(
                started.elapsed() < WITHIN,
                "{} of {CONNECTIONS} connections answered",
                connected.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        support::signal(server.process.id(), "TERM");
        let mut tallies = Vec::new();
        for task in load {
            let tally = tokio::time::timeout(WITHIN, task)
                .await
                .expect("the server closes every connection")
                .unwrap();
            tallies.push(tally);
        }
        tallies
    });
    let status = support::wait_within(&mut server.process, WITHIN);
    assert!(status.success(), "{status:?}");
    for tally in &tallies {
        assert_eq!(tally.sent, tally.answered, "{tally:?}");
        assert!(tally.closed_by_server, "{tally:?}");
    }
}
