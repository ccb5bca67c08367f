//! HTTP load: the connector against a bare warp route, same process, same run, same load.
//!
//! Both are served by `server::serve` (the same connection handling); the bare route answers
//! every POST with a Continue body of the same bytes and does no work. Each is driven by the
//! same number of keep-alive connections for the same time, one after the other. Prints
//! requests per second, p50 and p99 latency, and the connector's share of the bare rate. The
//! two alternate in half-second rounds, so that whatever else the machine does in the
//! meantime weighs on both alike.
//! Target: at least 0.85.
//!
//! `cargo bench --bench http`; `INVITEGATE_BENCH_SECS` (default 5) and
//! `INVITEGATE_BENCH_CONNECTIONS` (default 32) change the load.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use invitegate::connector::AttributeNames;
use invitegate::connector::b2c_user_flow::UserFlow;
use invitegate::decision::Verifier;
use invitegate::server::auth::{Auth, BasicAuth};
use invitegate::server::{Config, Endpoint, routes, serve};
use invitegate::{Audience, Expiry, KeyRing, mint};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use warp::Filter as _;

const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ATTR: &str = "extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode";
const CONTINUE: &str = r#"{"version":"1.0.0","action":"Continue","extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode":""}"#;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of every request in the rounds so far, and the time they took.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    seconds: f64,
}

impl Tally {
    fn add(&mut self, (latencies, seconds): (Vec<Duration>, f64)) {
        self.latencies.extend(latencies);
        self.seconds += seconds;
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds
    }

    fn quantile(&mut self, q: f64) -> Duration {
        self.latencies.sort_unstable();
        self.latencies[((self.latencies.len() as f64 - 1.0) * q) as usize]
    }
}

/// Drives `addr` with `connections` keep-alive connections sending `request` for `time`.
async fn load(
    addr: SocketAddr,
    request: &'static [u8],
    connections: u64,
    time: Duration,
) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let deadline = started + time;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut latencies = Vec::new();
            let mut buffer = vec![0u8; 4096];
            while Instant::now() < deadline {
                let sent = Instant::now();
                stream.write_all(request).await.unwrap();
                read_response(&mut stream, &mut buffer).await;
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    (latencies, started.elapsed().as_secs_f64())
}

/// Reads one response, framed by content-length, and checks it is a 200 Continue.
async fn read_response(stream: &mut TcpStream, buffer: &mut [u8]) {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buffer[filled..]).await.unwrap();
        assert!(n > 0, "server closed the connection");
        filled += n;
        let data = &buffer[..filled];
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&data[..end]).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        if filled >= end + 4 + length {
            assert!(data[end + 4..].starts_with(b"{\"version\":\"1.0.0\",\"action\":\"Continue\""));
            return;
        }
    }
}

fn main() {
    let seconds = env_number("INVITEGATE_BENCH_SECS", 5);
    let connections = env_number("INVITEGATE_BENCH_CONNECTIONS", 32);
    let time = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ring = KeyRing::parse(KEYS).unwrap();
        let expiry = Expiry::from_datetime(time::OffsetDateTime::now_utc() + time::Duration::days(1)).unwrap();
        let code = mint(&ring, &Audience::email("alice@contoso.com").unwrap(), expiry);
        let mut config = Config::new(Verifier::new(ring));
        let flow = UserFlow {
            attribute: AttributeNames::new("InvitationCode", Some("93fd07aa-333c-409d-955d-96008fd08dd9")),
            keep_code_attribute: false,
        };
        config.user_flow = Some(Endpoint::new(
            Auth::Basic(BasicAuth::new("b2c", "a-long-enough-password")),
            flow,
        ));
        let body = format!(
            r#"{{"email":"alice@contoso.com","identities":[{{"signInType":"emailAddress","issuer":"contoso.onmicrosoft.com","issuerAssignedId":"alice@contoso.com"}}],"displayName":"Alice","givenName":"Alice","surname":"Smith","{ATTR}":"{code}","step":"PostAttributeCollection","client_id":"93fd07aa-333c-409d-955d-96008fd08dd9","ui_locales":"en-US"}}"#
        );
        let auth = base64::engine::general_purpose::STANDARD.encode("b2c:a-long-enough-password");
        let request: &'static [u8] = Box::leak(
            format!(
                "POST /api/b2c/user-flow HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
            .into_boxed_slice(),
        );

        let bare = warp::path!("api" / "b2c" / "user-flow")
            .and(warp::post())
            .and(warp::body::bytes())
            .map(|_body: bytes::Bytes| {
                let mut response = warp::reply::Response::new(CONTINUE.into());
                response.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/json"));
                response
            })
            .recover(|_| async { Ok::<_, std::convert::Infallible>(warp::reply::Response::new("".into())) })
            .unify();

        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let stopper = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stop.changed().await;
        };
        let bare_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connector_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = [bare_listener.local_addr().unwrap(), connector_listener.local_addr().unwrap()];
        tokio::spawn(serve(bare_listener, bare, stopper(stop_rx.clone())));
        tokio::spawn(serve(connector_listener, routes(config), stopper(stop_rx.clone())));
        // Warm both up, then measure each under the same load.
        load(addrs[0], request, connections, Duration::from_millis(500)).await;
        load(addrs[1], request, connections, Duration::from_millis(500)).await;
        let round = Duration::from_millis(500);
        let (mut bare, mut connector) = (Tally::default(), Tally::default());
        for _ in 0..(time.as_millis() / round.as_millis()).max(1) {
            bare.add(load(addrs[0], request, connections, round).await);
            connector.add(load(addrs[1], request, connections, round).await);
        }
        let _ = stop_tx.send(true);
        let _ = stop_rx.changed().await;

        println!("HTTP load: {connections} keep-alive connections, {seconds} s each, {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
        for (name, tally) in [("bare route", &mut bare), ("connector", &mut connector)] {
            println!(
                "  {name:<11} {:>9.0} req/s   p50 {:>7.1} µs   p99 {:>7.1} µs   ({} requests)",
                tally.rate(),
                tally.quantile(0.50).as_secs_f64() * 1e6,
                tally.quantile(0.99).as_secs_f64() * 1e6,
                tally.latencies.len()
            );
        }
        let ratio = connector.rate() / bare.rate();
        println!("  connector rate / bare rate  {ratio:.2}");
    });
}
