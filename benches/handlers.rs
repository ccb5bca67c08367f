//! What each endpoint costs the server's own thread, without sockets or kernel: a request
//! handed to the warp service in process and its whole answer collected, against the bare
//! warp route handed the very same request, in the same run.
//!
//! `cargo bench --bench handlers`. Logging is on (JSON lines to a file), as users run it (the
//! request lines are formatted by the log thread, so that part is not counted here);
//! `INVITEGATE_BENCH_LOG=off` measures without it.
//! This isolates our code (routing, authentication, body, decision, answer, log line,
//! metrics) from the connection and kernel work that `benches/http.rs` includes: a regression
//! here is ours. The difference between an endpoint and its bare twin is what the endpoint
//! adds to every request; the difference between an endpoint and the floor route (the work no
//! connector can avoid, `common::floor`) is what our own code adds beyond the unavoidable.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http_body_util::{BodyExt as _, Full};
use invitegate::server::auth::DevSigner;
use warp::http::{Request, StatusCode};

mod common;

use common::endpoints::{self, Case};

const GROUP: &str = "handlers";
/// The floor route (`common::floor`) handed the user flow's request.
const FLOOR: &str = "floor_route";

/// `case`'s request as hyper hands it to the service.
fn request(case: &Case, body: &Bytes) -> Request<Full<Bytes>> {
    let (name, value) = &case.credentials;
    Request::post(case.path)
        .header("host", "localhost")
        .header(*name, value.as_str())
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Full::new(body.clone()))
        .unwrap()
}

/// Hands `request` to `service` in process and collects the whole answer.
fn answer<S>(
    runtime: &tokio::runtime::Runtime,
    service: &mut S,
    request: Request<Full<Bytes>>,
) -> (StatusCode, Bytes)
where
    S: tower_service::Service<
            Request<Full<Bytes>>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        >,
{
    runtime.block_on(async {
        let response = service.call(request).await.unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    })
}

/// Bench names for an endpoint: its own and its bare twin's.
fn names(endpoint: &str) -> (String, String) {
    let name = endpoint.to_lowercase().replace(' ', "_");
    (name.clone(), format!("bare_route_{name}"))
}

fn handlers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let signer = DevSigner::generate().unwrap();
    let config = runtime.block_on(endpoints::config(&signer));
    let mut routes = warp::service(invitegate::server::routes(config));
    let mut bare = warp::service(endpoints::bare_route(Duration::ZERO));
    let floor_log = common::floor::FloorLog::start(tempfile::tempfile().unwrap());
    let mut floor = warp::service(common::floor::floor_route(
        &endpoints::user_flow_authorization(),
        endpoints::KEY_BYTES,
        floor_log,
        Duration::ZERO,
    ));
    let mut group = c.benchmark_group(GROUP);
    let cases = endpoints::cases(&signer);
    // The floor is handed the user flow's very request.
    let user_flow = &cases[0];
    let user_flow_body = Bytes::from(user_flow.body.clone());
    group.bench_function(FLOOR, |b| {
        b.iter(|| {
            black_box(answer(
                &runtime,
                &mut floor,
                request(user_flow, &user_flow_body),
            ));
        });
    });
    for case in &cases {
        let body = Bytes::from(case.body.clone());
        let (name, bare_name) = names(case.name);
        // Measure what the name says: each endpoint answers 200 with its valid answer.
        let (status, answered) = answer(&runtime, &mut routes, request(case, &body));
        assert_eq!(status, StatusCode::OK);
        assert!(answered.starts_with(case.expect), "{answered:?}");
        group.bench_function(&bare_name, |b| {
            b.iter(|| {
                black_box(answer(&runtime, &mut bare, request(case, &body)));
            });
        });
        group.bench_function(&name, |b| {
            b.iter(|| {
                black_box(answer(&runtime, &mut routes, request(case, &body)));
            });
        });
    }
    group.finish();
    // Criterion measures one bench after another, so a busy phase of a shared machine can fall
    // on the floor and not on an endpoint: paired rounds alternate the two, and each round's
    // difference is what the endpoint costs beyond the floor at that moment.
    println!(
        "\nbeyond the floor route, paired rounds ({PAIRED_ROUNDS} rounds of {PAIRED_CALLS} calls each):"
    );
    for case in &cases {
        let body = Bytes::from(case.body.clone());
        let mut call_floor = || {
            black_box(answer(
                &runtime,
                &mut floor,
                request(user_flow, &user_flow_body),
            ));
        };
        let mut call_endpoint = || {
            black_box(answer(&runtime, &mut routes, request(case, &body)));
        };
        let differences = paired_differences(&mut call_floor, &mut call_endpoint);
        println!(
            "  {:<16} {:.2} µs beyond the floor (rounds {:.2} to {:.2})",
            case.name,
            differences[differences.len() / 2] / 1e3,
            differences[0] / 1e3,
            differences[differences.len() - 1] / 1e3
        );
    }
}

/// Rounds of the paired measurement; odd, for a median.
const PAIRED_ROUNDS: usize = 31;
/// Calls of each route a round.
const PAIRED_CALLS: u32 = 2_000;

/// Each round's nanoseconds a call of `endpoint` minus those of `floor`, timed back to back
/// (the order swapped every other round), after a round of warm-up; sorted.
fn paired_differences(floor: &mut impl FnMut(), endpoint: &mut impl FnMut()) -> Vec<f64> {
    let time = |f: &mut dyn FnMut()| {
        let started = std::time::Instant::now();
        for _ in 0..PAIRED_CALLS {
            f();
        }
        started.elapsed().as_secs_f64() * 1e9 / f64::from(PAIRED_CALLS)
    };
    time(floor);
    time(endpoint);
    let mut differences: Vec<f64> = (0..PAIRED_ROUNDS)
        .map(|round| {
            if round % 2 == 0 {
                let f = time(floor);
                time(endpoint) - f
            } else {
                let e = time(endpoint);
                e - time(floor)
            }
        })
        .collect();
    differences.sort_by(f64::total_cmp);
    differences
}

criterion_group!(benches, handlers);

fn main() {
    let run = common::Run::start();
    let log_dir = tempfile::tempdir().unwrap();
    let log_file = std::fs::File::create(log_dir.path().join("invitegate.log")).unwrap();
    let log_on = std::env::var("INVITEGATE_BENCH_LOG").map_or(true, |v| v != "off");
    let filter = if log_on { "info" } else { "off" };
    let logging = invitegate::server::log::init(filter, true, false, log_file).unwrap();
    benches();
    Criterion::default().configure_from_args().final_summary();
    let signer = DevSigner::generate().unwrap();
    let (_, user_flow_bare) = names(endpoints::NAMES[0]);
    if let (Some(floor), Some(bare)) = (
        run.median_ns(GROUP, FLOOR),
        run.median_ns(GROUP, &user_flow_bare),
    ) {
        println!(
            "\nthe floor route costs {:.2} µs a request beyond the bare route (the user flow's \
             request)",
            (floor - bare) / 1e3
        );
    }
    for case in endpoints::cases(&signer) {
        let (name, bare_name) = names(case.name);
        run.print_ratios(GROUP, &bare_name, &[&name]);
        if let (Some(ours), Some(bare)) = (
            run.median_ns(GROUP, &name),
            run.median_ns(GROUP, &bare_name),
        ) {
            println!("  {name} adds {:.0} ns a request", ours - bare);
            if let Some(floor) = run.median_ns(GROUP, FLOOR) {
                println!(
                    "  {name} costs {:.2} µs a request beyond the floor route",
                    (ours - floor) / 1e3
                );
            }
        }
    }
    drop(logging);
}
