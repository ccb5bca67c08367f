//! HTTP load, as users run it: release build, logging on (JSON lines through the non-blocking
//! writer into a file), the server on one core and the load generator on the other.
//!
//! Measured in one run, alternating in half-second rounds so that whatever else the machine
//! does weighs on all alike:
//! - the B2C user flow, the B2C custom policy, and Entra External ID with one repeated valid
//!   bearer token (verified once, then from the token cache), each with a valid code;
//! - for each of them, the baseline: a bare warp route (same connection handling, answers a
//!   fixed body, does no work) sent the endpoint's very same request bytes.
//!
//! - the floor route (`common::floor`: only what no connector can avoid) sent the user flow's
//!   request, beside its own bare twin.
//!
//! Prints requests per second, p50 and p99 latency and each route's share of its bare rate, then
//! each round's ratios to bare and to the floor, their median and range. Targets: user flow and
//! custom policy at least 0.95 of the floor, Entra at least 0.85 (its request is the bigger one).
//! Where Linux shows a thread's CPU time (`/proc/.../schedstat`), also the server thread's CPU
//! time a request, each round's, and each endpoint's beyond the floor's: what a route costs the
//! server in place, in µs (its rounds vary as much as the rates do).
//! For an endpoint sent a request other than the floor's (Entra, the custom policy), also the
//! ratio of the shares of bare (its own over the floor's), which sets apart what its request
//! itself costs the kernel and hyper.
//!
//! Then two checks of the connection handling, with their figures:
//! - flood: 1,100 keep-alive connections trickling `GET /healthz` every 2 s hold every slot;
//!   fresh clients connect and are answered (slowest and median time);
//! - drain: keep-alive load, then shutdown; every request whose bytes were sent is answered.
//!
//! `cargo bench --bench http`; `INVITEGATE_BENCH_SECS` (default 5) and
//! `INVITEGATE_BENCH_CONNECTIONS` (default 32) change the load; `INVITEGATE_BENCH_ONLY=entra`
//! measures only the endpoints whose name contains that text (to profile one).
//! `INVITEGATE_BENCH_BARE_WORK_US=N` makes the bare route compute for N µs a request: a
//! calibration of what a handler costing that much does to the ratio on the machine at hand.
//! `INVITEGATE_BENCH_FLOOR_PLUS_NS=250,500,1000` adds, for each figure, the floor route computing
//! that many nanoseconds more (a busy loop), with its ratio to the floor: what a given cost
//! beyond the floor does to that ratio, to set beside `cargo bench --bench handlers`.
//! `cargo bench --bench handlers` measures the endpoints' own cost without sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use invitegate::server::auth::DevSigner;
use invitegate::server::serve;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::endpoints::{self, Case};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of every request in the rounds so far, the time they took, each round's rate and,
/// where Linux shows it, the server thread's CPU time a request in each round (ns).
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    seconds: f64,
    rounds: Vec<f64>,
    cpu: Vec<f64>,
}

impl Tally {
    fn add(&mut self, (latencies, seconds): (Vec<Duration>, f64)) {
        self.rounds.push(latencies.len() as f64 / seconds);
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

/// One measured route: its request and the start of the body it must answer with.
struct Route {
    name: &'static str,
    /// The index of the bare route given the same request, for an endpoint or the floor.
    baseline: Option<usize>,
    /// Whether it is one of our endpoints, compared with the floor too.
    endpoint: bool,
    addr: SocketAddr,
    request: &'static [u8],
    expect: &'static [u8],
    tally: Tally,
}

/// Drives `addr` with `connections` keep-alive connections sending `request` for `time`.
async fn load(
    addr: SocketAddr,
    request: &'static [u8],
    expect: &'static [u8],
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
            let mut buffer = vec![0u8; 8192];
            while Instant::now() < deadline {
                let sent = Instant::now();
                stream.write_all(request).await.unwrap();
                let answer = read_response(&mut stream, &mut buffer, expect).await;
                if answer.is_some() {
                    latencies.push(sent.elapsed());
                }
                if answer != Some(false) {
                    // Closed by the server (idle or maximum age): reconnect.
                    stream = TcpStream::connect(addr).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                }
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

/// Reads one response, framed by content-length, and checks it is a 200 whose body starts
/// with `expect`. `None` when the connection was closed first; else whether the server said
/// `Connection: close`.
async fn read_response(stream: &mut TcpStream, buffer: &mut [u8], expect: &[u8]) -> Option<bool> {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buffer[filled..]).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
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
            let body = &data[end + 4..];
            assert!(
                body.starts_with(expect),
                "{}",
                String::from_utf8_lossy(body)
            );
            return Some(head.to_ascii_lowercase().contains("\r\nconnection: close"));
        }
    }
}

fn leak_name(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn leak(text: String) -> &'static [u8] {
    Box::leak(text.into_bytes().into_boxed_slice())
}

/// `case`'s request as the bytes a client sends.
fn request(case: &Case) -> &'static [u8] {
    let (name, value) = &case.credentials;
    leak(format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\n{name}: {value}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        case.path,
        case.body.len(),
        case.body
    ))
}

/// Where Linux shows the CPU time of `runtime`'s worker thread (`schedstat`, whose first field
/// is the nanoseconds it has run), found from inside that thread; `None` without such a file.
fn worker_schedstat(runtime: &tokio::runtime::Runtime) -> Option<std::path::PathBuf> {
    let task = runtime
        .block_on(async { tokio::spawn(async { std::fs::read_link("/proc/thread-self") }).await })
        .ok()?
        .ok()?;
    let path = std::path::Path::new("/proc").join(task).join("schedstat");
    cpu_ns(&path).map(|_| path)
}

/// The nanoseconds a thread has run, from its `schedstat`.
fn cpu_ns(schedstat: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(schedstat)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A runtime of one worker thread, pinned to `core` when the machine has more than one.
fn runtime(core: usize, name: &str) -> tokio::runtime::Runtime {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pin = (cores.len() > 1).then(|| cores[core % cores.len()]);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .on_thread_start(move || {
            if let Some(core) = pin {
                core_affinity::set_for_current(core);
            }
        })
        .enable_all()
        .build()
        .unwrap()
}

/// Flood: 1,100 trickling keep-alive connections, then fresh clients. Returns the fresh
/// clients' median and slowest answer times.
async fn flood(addr: SocketAddr) -> (Duration, Duration, usize) {
    const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let running = Arc::new(AtomicBool::new(true));
    let mut crowd = Vec::new();
    for _ in 0..1_100 {
        let running = Arc::clone(&running);
        crowd.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; 1024];
            while running.load(Ordering::Relaxed) {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                while running.load(Ordering::Relaxed) {
                    if stream.write_all(HEALTH).await.is_err()
                        || read_response(&mut stream, &mut buffer, b"{").await != Some(false)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut times = Vec::new();
    let mut buffer = vec![0u8; 1024];
    for _ in 0..50 {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(HEALTH).await.unwrap();
        assert!(
            read_response(&mut stream, &mut buffer, b"{")
                .await
                .is_some()
        );
        times.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.store(false, Ordering::Relaxed);
    for task in crowd {
        task.abort();
    }
    times.sort_unstable();
    (times[times.len() / 2], times[times.len() - 1], times.len())
}

/// Drain: keep-alive load on `addr`, then `stop`; returns requests sent and answered.
async fn drain(
    addr: SocketAddr,
    request: &'static [u8],
    expect: &'static [u8],
    stop: tokio::sync::oneshot::Sender<()>,
) -> (usize, usize) {
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let (mut sent, mut answered) = (0, 0);
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let mut buffer = vec![0u8; 8192];
                loop {
                    if stream.write_all(request).await.is_err() {
                        return (sent, answered);
                    }
                    sent += 1;
                    match read_response(&mut stream, &mut buffer, expect).await {
                        None => return (sent, answered),
                        // A client sends nothing more after `Connection: close`.
                        Some(true) => return (sent, answered + 1),
                        Some(false) => answered += 1,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(());
    let (mut sent, mut answered) = (0, 0);
    for task in tasks {
        let (s, a) = task.await.unwrap();
        sent += s;
        answered += a;
    }
    (sent, answered)
}

fn main() {
    let seconds = env_number("INVITEGATE_BENCH_SECS", 5);
    let connections = env_number("INVITEGATE_BENCH_CONNECTIONS", 32);
    let time = Duration::from_secs(seconds);
    // Logging on, as users run it: one JSON line per request through the non-blocking writer
    // into a real file.
    let log_dir = tempfile::tempdir().unwrap();
    let log_file = std::fs::File::create(log_dir.path().join("invitegate.log")).unwrap();
    // INVITEGATE_BENCH_LOG=off measures without it, to see what logging costs.
    let log_on = std::env::var("INVITEGATE_BENCH_LOG").map_or(true, |v| v != "off");
    let logging =
        invitegate::server::log::init(if log_on { "info" } else { "off" }, true, false, log_file)
            .unwrap();
    let server_runtime = runtime(0, "bench-server");
    // The server thread's CPU time a request: what a route costs in place, the kernel's part
    // (the client's wake-ups) and cold caches included.
    let schedstat = worker_schedstat(&server_runtime);
    let load_runtime = runtime(1, "bench-load");

    let signer = DevSigner::generate().unwrap();
    let (config, drain_config) = server_runtime.block_on(async {
        (
            endpoints::config(&signer).await,
            endpoints::config(&signer).await,
        )
    });
    // Any path: each endpoint's twin gets that endpoint's exact request.
    let work = Duration::from_micros(env_number("INVITEGATE_BENCH_BARE_WORK_US", 0));
    let bare = endpoints::bare_route(work);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopper = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.changed().await;
    };
    let floor_log = common::floor::FloorLog::start(
        std::fs::File::create(log_dir.path().join("floor.log")).unwrap(),
    );
    let floor_with = |extra: Duration| {
        common::floor::floor_route(
            &endpoints::user_flow_authorization(),
            endpoints::KEY_BYTES,
            floor_log.clone(),
            extra,
        )
    };
    let floor = floor_with(Duration::ZERO);
    // The calibration: the floor plus a fixed cost, each on its own listener.
    let floor_plus: Vec<u64> = std::env::var("INVITEGATE_BENCH_FLOOR_PLUS_NS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let floor_plus: Vec<(u64, SocketAddr)> = floor_plus
        .into_iter()
        .map(|nanos| {
            let route = floor_with(Duration::from_nanos(nanos));
            let addr = server_runtime.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(serve(listener, route, stopper(stop_rx.clone())));
                addr
            });
            (nanos, addr)
        })
        .collect();
    let (bare_addr, floor_addr, endpoints_addr, drain_addr, drain_stop) =
        server_runtime.block_on(async {
            let bare_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let floor_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let floor_addr = floor_listener.local_addr().unwrap();
            tokio::spawn(serve(floor_listener, floor, stopper(stop_rx.clone())));
            let endpoints_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let drain_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addrs = (
                bare_listener.local_addr().unwrap(),
                endpoints_listener.local_addr().unwrap(),
                drain_listener.local_addr().unwrap(),
            );
            tokio::spawn(serve(bare_listener, bare, stopper(stop_rx.clone())));
            tokio::spawn(invitegate::server::run(
                endpoints_listener,
                config,
                stopper(stop_rx.clone()),
            ));
            let (drain_stop, drain_stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(invitegate::server::run(
                drain_listener,
                drain_config,
                async {
                    let _ = drain_stopped.await;
                },
            ));
            (addrs.0, floor_addr, addrs.1, addrs.2, drain_stop)
        });

    let cases = endpoints::cases(&signer);
    let user_flow = request(&cases[0]);
    // Each endpoint beside a bare route sent the very same bytes: a bigger request (Entra's
    // bearer token and event) costs the kernel and hyper more whatever answers it.
    let only = std::env::var("INVITEGATE_BENCH_ONLY").unwrap_or_default();
    let mut routes = Vec::new();
    for case in &cases {
        if !case.name.to_lowercase().contains(&only.to_lowercase()) {
            continue;
        }
        let request = request(case);
        routes.push(Route {
            name: "  bare route",
            baseline: None,
            endpoint: false,
            addr: bare_addr,
            request,
            expect: b"{\"version\":\"1.0.0\",\"action\":\"Continue\"",
            tally: Tally::default(),
        });
        if case.name == endpoints::NAMES[0] {
            // The floor is sent the user flow's very request, beside its bare twin.
            routes.push(Route {
                name: "floor route",
                baseline: Some(routes.len() - 1),
                endpoint: false,
                addr: floor_addr,
                request,
                expect: b"{\"version\":\"1.0.0\",\"action\":\"Continue\"",
                tally: Tally::default(),
            });
            let floor_twin = routes.len() - 2;
            for &(nanos, addr) in &floor_plus {
                routes.push(Route {
                    name: leak_name(format!("floor +{nanos} ns")),
                    baseline: Some(floor_twin),
                    endpoint: true,
                    addr,
                    request,
                    expect: b"{\"version\":\"1.0.0\",\"action\":\"Continue\"",
                    tally: Tally::default(),
                });
            }
        }
        let twin = routes
            .iter()
            .rposition(|route| route.baseline.is_none())
            .unwrap();
        routes.push(Route {
            name: case.name,
            baseline: Some(twin),
            endpoint: true,
            addr: endpoints_addr,
            request,
            expect: case.expect,
            tally: Tally::default(),
        });
    }

    load_runtime.block_on(async {
        // Warm every route up, then measure each under the same load, in alternating rounds.
        for route in &routes {
            load(
                route.addr,
                route.request,
                route.expect,
                connections,
                Duration::from_millis(500),
            )
            .await;
        }
        let round = Duration::from_millis(500);
        for _ in 0..(time.as_millis() / round.as_millis()).max(1) {
            for route in &mut routes {
                let before = schedstat.as_deref().and_then(cpu_ns);
                let measured =
                    load(route.addr, route.request, route.expect, connections, round).await;
                let after = schedstat.as_deref().and_then(cpu_ns);
                if let (Some(before), Some(after)) = (before, after) {
                    let requests = measured.0.len().max(1) as f64;
                    route
                        .tally
                        .cpu
                        .push(after.saturating_sub(before) as f64 / requests);
                }
                route.tally.add(measured);
            }
        }
    });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "HTTP load: {connections} keep-alive connections, {seconds} s each, {cores} cores \
         (server on one, load on the other), logging {} (JSON to a file)",
        if log_on { "on" } else { "off" }
    );
    let rates: Vec<f64> = routes.iter().map(|route| route.tally.rate()).collect();
    for route in &mut routes {
        let share = route.baseline.map_or_else(
            || "(baseline for the line below)".to_owned(),
            |bare| format!("{:.2} of bare", route.tally.rate() / rates[bare]),
        );
        println!(
            "  {:<14} {:>9.0} req/s   p50 {:>7.1} µs   p99 {:>7.1} µs   {share}   ({} requests)",
            route.name,
            route.tally.rate(),
            route.tally.quantile(0.50).as_secs_f64() * 1e6,
            route.tally.quantile(0.99).as_secs_f64() * 1e6,
            route.tally.latencies.len()
        );
    }
    println!("  log lines dropped: {}", logging.dropped().get());
    // Each round's ratios, then their median and range: a slow phase of the shared machine
    // weighs on every route of a round alike.
    let floor = routes.iter().position(|route| route.name == "floor route");
    let round_ratios = |route: &Route, against: usize| -> Vec<f64> {
        let mut ratios: Vec<f64> = (route.tally.rounds.iter())
            .zip(&routes[against].tally.rounds)
            .map(|(ours, theirs)| ours / theirs)
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios
    };
    let summary = |ratios: &[f64]| {
        format!(
            "{:.2} (rounds {:.2}-{:.2})",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        )
    };
    println!(
        "per-round ratios, median of {} rounds (range):",
        routes[0].tally.rounds.len()
    );
    for route in &routes {
        let Some(bare) = route.baseline else { continue };
        let to_floor = match floor {
            Some(floor) if route.endpoint => {
                let mut line = format!("   {} of the floor", summary(&round_ratios(route, floor)));
                // Sent a request of its own, an endpoint also pays what that request costs the
                // kernel and hyper: each round's share of its own bare twin over the floor's
                // share of the floor's twin sets that apart.
                let floor_bare = routes[floor].baseline.unwrap();
                if bare != floor_bare {
                    let mut shares: Vec<f64> = (0..route.tally.rounds.len())
                        .map(|i| {
                            let own = route.tally.rounds[i] / routes[bare].tally.rounds[i];
                            let floors =
                                routes[floor].tally.rounds[i] / routes[floor_bare].tally.rounds[i];
                            own / floors
                        })
                        .collect();
                    shares.sort_by(f64::total_cmp);
                    line += &format!(
                        "\n  {:<14} {} of the floor, each of its own bare twin",
                        "",
                        summary(&shares)
                    );
                }
                line
            }
            _ => String::new(),
        };
        println!(
            "  {:<14} {} of bare{to_floor}",
            route.name,
            summary(&round_ratios(route, bare))
        );
    }
    println!("  targets: user flow and custom policy >= 0.95 of the floor, Entra >= 0.85");
    if let (Some(floor), true) = (floor, schedstat.is_some()) {
        let median_range = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            format!(
                "{:.2} ({:.2} to {:.2})",
                values[values.len() / 2],
                values[0],
                values[values.len() - 1]
            )
        };
        println!("server thread's CPU time a request, in µs, median of the rounds (range):");
        for route in &routes {
            let mut line = format!(
                "  {:<14} {}",
                route.name,
                median_range(route.tally.cpu.iter().map(|ns| ns / 1e3).collect())
            );
            if route.endpoint {
                let floor_cpu = &routes[floor].tally.cpu;
                let beyond = route.tally.cpu.iter().zip(floor_cpu);
                line += &format!(
                    "   beyond the floor {}   the floor's over its own {}",
                    median_range(beyond.clone().map(|(ours, f)| (ours - f) / 1e3).collect()),
                    median_range(beyond.map(|(ours, f)| f / ours).collect())
                );
            }
            println!("{line}");
        }
    }

    let (median, slowest, fresh) = load_runtime.block_on(flood(endpoints_addr));
    println!(
        "flood: 1,100 trickling keep-alive connections over 1,024 slots; {fresh} fresh clients \
         answered, median {:.1} ms, slowest {:.1} ms",
        median.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3
    );
    let (sent, answered) = load_runtime.block_on(drain(
        drain_addr,
        user_flow,
        b"{\"version\":\"1.0.0\",\"action\":\"Continue\"",
        drain_stop,
    ));
    println!(
        "drain: 16 keep-alive connections under load, then shutdown: {sent} requests sent, \
         {answered} answered"
    );
    let _ = stop_tx.send(true);
    drop(server_runtime);
    drop(logging);
}
