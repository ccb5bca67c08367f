//! The metrics listener (`--metrics-listen`: `/metrics` without authentication, and the probes)
//! and `/readyz` naming every part not ready, the drain after SIGTERM included, on the real
//! binary over real TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const PASSWORD: &str = "a-long-enough-password";
const TENANT: &str = "8f1c2a6e-5b7d-4c3e-9a1f-2d4b6c8e0a13";
const AUDIENCE: &str = "5e2d1c0b-4a39-4827-b6f5-e4d3c2b1a098";

fn basic() -> String {
    support::basic_header("b2c", PASSWORD)
}

fn ask(addr: SocketAddr, request: &str) -> (u16, String) {
    support::ask_once(addr, request)
}

fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    ask(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"),
    )
}

/// The metrics listener's address, from the start-up log.
fn metrics_address(server: &support::Server) -> SocketAddr {
    let seen = server.log.seen();
    let line = seen
        .lines()
        .find(|line| line.contains("metrics listener"))
        .unwrap_or_else(|| panic!("no metrics listener line in\n{seen}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    json["address"].as_str().unwrap().parse().unwrap()
}

#[test]
fn the_metrics_listener_needs_no_credentials_and_the_main_metrics_still_do() {
    let dir = support::with_keys();
    let server = support::serve(
        support::serve_command(dir.path())
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    let metrics = metrics_address(&server);
    assert_ne!(metrics, server.addr);
    let (status, text) = get(metrics, "/metrics", "");
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("invitegate_connector_requests_total"),
        "{text}"
    );
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(get(metrics, probe, "").0, 200, "{probe}");
    }
    // The metrics listener serves nothing else.
    let body = r#"{"email":"a@b.c"}"#;
    let sign_up = format!(
        "POST /api/b2c/user-flow HTTP/1.1\r\nHost: x\r\n{}Content-Length: {}\r\n\r\n{body}",
        basic(),
        body.len()
    );
    assert_eq!(ask(metrics, &sign_up).0, 404);
    assert_eq!(ask(server.addr, &sign_up).0, 200);
    // The main listener's /metrics keeps its credentials.
    assert_eq!(get(server.addr, "/metrics", "").0, 401);
    let (status, text) = get(server.addr, "/metrics", &basic());
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"endpoint="metrics",reason="missing-header"} 1"#),
        "{text}"
    );
}

#[test]
fn entra_only_says_where_the_metrics_are() {
    let dir = support::with_keys();
    let server = support::serve(
        support::serve_command(dir.path())
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("ENTRA_TENANT_ID", TENANT)
            .env("ENTRA_AUDIENCE", AUDIENCE)
            .env("ENTRA_JWKS_URL", "http://127.0.0.1:9/keys")
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    let metrics = metrics_address(&server);
    let seen = server.log.seen();
    assert!(
        seen.contains(&format!("scrape http://{metrics}/metrics")),
        "{seen}"
    );
    assert_eq!(get(server.addr, "/metrics", "").0, 404);
    assert_eq!(get(metrics, "/metrics", "").0, 200);
}

#[test]
fn readyz_names_every_part_not_ready_and_the_drain() {
    let dir = support::with_keys();
    let mut server = support::serve(
        support::serve_command(dir.path())
            .args(["--metrics-listen", "127.0.0.1:0", "--drain-timeout", "100s"])
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .env("ENTRA_TENANT_ID", TENANT)
            .env("ENTRA_AUDIENCE", AUDIENCE)
            // Nothing listens there: the Entra endpoint waits for its keys.
            .env("ENTRA_JWKS_URL", "http://127.0.0.1:9/keys")
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    let metrics = metrics_address(&server);
    let (status, body) = get(metrics, "/readyz", "");
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["not_ready"]["entra"].is_string(), "{body}");
    assert!(json["not_ready"].get("server").is_none(), "{body}");
    assert_eq!(get(server.addr, "/healthz", "").0, 200);

    // A request in flight holds the drain open: its body is sent only at the end. hyper
    // answers `100 Continue` once the endpoint reads the body, so the request is known to be
    // in flight before the signal.
    let code = support::ALICE_CODE;
    let body = format!(r#"{{"email":"alice@contoso.com","extension_InvitationCode":"{code}"}}"#);
    let mut held = TcpStream::connect(server.addr).unwrap();
    held.set_read_timeout(Some(support::DEADLINE)).unwrap();
    write!(
        held,
        "POST /api/b2c/user-flow HTTP/1.1\r\nHost: x\r\n{}Expect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        basic(),
        body.len()
    )
    .unwrap();
    let mut continued = [0u8; 25];
    held.read_exact(&mut continued).unwrap();
    assert!(
        continued.starts_with(b"HTTP/1.1 100 Continue"),
        "{continued:?}"
    );

    support::signal(server.process.id(), "TERM");
    let started = Instant::now();
    let draining = loop {
        let (status, body) = get(metrics, "/readyz", "");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if json["not_ready"].get("server").is_some() {
            assert_eq!(status, 503, "{body}");
            break json;
        }
        assert!(
            started.elapsed() < support::DEADLINE,
            "never draining: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Every part not ready is named, not only the first.
    assert!(draining["not_ready"]["entra"].is_string(), "{draining}");
    assert!(
        draining["not_ready"]["server"]
            .as_str()
            .unwrap()
            .contains("draining"),
        "{draining}"
    );
    // Liveness holds while the process serves.
    assert_eq!(get(metrics, "/healthz", "").0, 200);

    // The request in flight is answered, and the server then stops.
    held.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    held.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = support::wait_within(&mut server.process, support::DEADLINE);
    assert!(status.success(), "{status:?}");
}

/// `healthcheck` beside a server that speaks TLS asks the metrics listener, which answers in
/// plain HTTP; without one it says what to set rather than probing TLS with plain HTTP.
#[test]
fn healthcheck_asks_the_metrics_listener_when_serve_speaks_tls() {
    let dir = support::with_keys();
    support::tls::pair("server").write(&dir.path().join("tls.crt"), &dir.path().join("tls.key"));
    let server = support::serve(
        support::serve_command(dir.path())
            .args(["--tls-cert", "tls.crt", "--tls-key", "tls.key"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    let metrics = metrics_address(&server);
    let healthcheck = |envs: &[(&str, String)]| {
        let mut command = support::invitegate(dir.path());
        command
            .arg("healthcheck")
            .env_remove("INVITEGATE_METRICS_LISTEN")
            .env_remove("INVITEGATE_TLS_CERT")
            .env("INVITEGATE_LISTEN", server.addr.to_string());
        for (name, value) in envs {
            command.env(name, value);
        }
        support::run(&mut command)
    };
    let up = healthcheck(&[
        ("INVITEGATE_TLS_CERT", "tls.crt".to_owned()),
        ("INVITEGATE_METRICS_LISTEN", metrics.to_string()),
    ]);
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    let unset = healthcheck(&[("INVITEGATE_TLS_CERT", "tls.crt".to_owned())]);
    assert_ne!(unset.status.code(), Some(0), "{unset:?}");
    assert!(
        support::stderr(&unset).contains("INVITEGATE_METRICS_LISTEN"),
        "{unset:?}"
    );
}
