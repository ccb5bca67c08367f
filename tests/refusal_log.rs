//! Refused callers in the log and the metrics: each refusal names its reason in the log and
//! never in the body, never shows a password, and a flood of refusals writes a bounded number
//! of lines while `/metrics` counts every one.
//!
//! Its own test binary: it installs the process's log writer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use invitegate::KeyRing;
use invitegate::connector::AttributeNames;
use invitegate::connector::b2c_user_flow::UserFlow;
use invitegate::decision::Verifier;
use invitegate::server::auth::{Auth, BasicAuth};
use invitegate::server::log::limit::{REFUSAL_WINDOW, REFUSALS_IN_FULL};
use invitegate::server::{Config, Endpoint, routes};
use serde_json::Value;

const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const PASSWORD: &str = "s3cret-password";
const GUESS: &str = "guessed-wrong";
const FLOOD: u64 = 1500;

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[tokio::test]
async fn a_flood_of_refusals_writes_few_lines_and_is_counted_whole() {
    let captured = support::Captured::default();
    let logging = invitegate::server::log::init("info", true, false, captured.clone()).unwrap();
    let mut config = Config::new(Verifier::new(KeyRing::parse(KEYS).unwrap()));
    let flow = UserFlow::new(AttributeNames::new("InvitationCode", None), false);
    config.user_flow = Some(Endpoint::new(
        Auth::Basic(BasicAuth::new("b2c", PASSWORD)),
        flow,
    ));
    config.metrics_auth = Some(Auth::Basic(BasicAuth::new("b2c", PASSWORD)));
    config.dropped_log_lines = logging.dropped();
    let filter = routes(config);

    let post = |authorization: Option<String>| {
        let mut request = warp::test::request()
            .method("POST")
            .path("/api/b2c/user-flow")
            .body("{}");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request
    };
    let started = Instant::now();
    for _ in 0..FLOOD {
        let reply = post(Some(basic("b2c", GUESS))).reply(&filter).await;
        assert_eq!(reply.status(), 401);
        let body = String::from_utf8_lossy(reply.body()).into_owned();
        assert!(
            !body.contains("wrong-password") && !body.contains(GUESS),
            "{body}"
        );
    }
    let flooded_for = started.elapsed();
    // Other reasons have windows of their own, so they are logged in full during a flood.
    for authorization in [
        None,
        Some("Bearer abc.def.ghi".to_owned()),
        Some("Basic !!!".to_owned()),
        Some(basic("admin", PASSWORD)),
    ] {
        assert_eq!(post(authorization).reply(&filter).await.status(), 401);
    }
    let scrape = |authorization: String| {
        warp::test::request()
            .path("/metrics")
            .header("authorization", authorization)
    };
    assert_eq!(
        scrape(basic("b2c", GUESS)).reply(&filter).await.status(),
        401
    );
    let metrics = scrape(basic("b2c", PASSWORD)).reply(&filter).await;
    let metrics = String::from_utf8_lossy(metrics.body()).into_owned();
    for line in [
        format!(
            r#"invitegate_auth_refusals_total{{endpoint="b2c-user-flow",reason="wrong-password"}} {FLOOD}"#
        ),
        r#"invitegate_auth_refusals_total{endpoint="b2c-user-flow",reason="missing-header"} 1"#
            .to_owned(),
        r#"invitegate_auth_refusals_total{endpoint="b2c-user-flow",reason="wrong-scheme"} 1"#
            .to_owned(),
        r#"invitegate_auth_refusals_total{endpoint="b2c-user-flow",reason="malformed"} 1"#
            .to_owned(),
        r#"invitegate_auth_refusals_total{endpoint="b2c-user-flow",reason="unknown-user"} 1"#
            .to_owned(),
        r#"invitegate_auth_refusals_total{endpoint="metrics",reason="wrong-password"} 1"#
            .to_owned(),
        format!(
            r#"invitegate_connector_requests_total{{endpoint="b2c-user-flow",outcome="unauthorized"}} {}"#,
            FLOOD + 4
        ),
    ] {
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    // The log thread writes the last window's summary once the window has ended.
    tokio::time::sleep(REFUSAL_WINDOW + Duration::from_millis(300)).await;
    drop(logging);
    let log = captured.text();
    assert!(!log.contains(PASSWORD) && !log.contains(GUESS), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let of = |reason: &'static str| {
        lines
            .iter()
            .filter(move |line| line["denied"] == reason && line["endpoint"] == "b2c-user-flow")
    };
    let in_full: Vec<&Value> = of("wrong-password")
        .filter(|line| line["message"] == "connector request")
        .collect();
    let summaries: Vec<&Value> = of("wrong-password")
        .filter(|line| line.get("more").is_some())
        .collect();
    let counted: u64 = summaries
        .iter()
        .map(|line| line["more"].as_u64().unwrap())
        .sum();
    assert_eq!(in_full.len() as u64 + counted, FLOOD, "{log}");
    let windows = flooded_for.as_secs() + 2;
    assert!(
        in_full.len() as u64 <= u64::from(REFUSALS_IN_FULL) * windows,
        "{} lines in full over {flooded_for:?}",
        in_full.len()
    );
    assert!(summaries.len() as u64 <= windows, "{log}");
    let first = in_full[0];
    assert_eq!(first["outcome"], "unauthorized");
    assert_eq!(first["status"], 401);
    assert_eq!(first["user"], "b2c");
    assert_eq!(
        first["why"],
        "the password is wrong for the configured user"
    );
    let summary = summaries[0];
    assert_eq!(summary["target"], "invitegate::connector");
    assert!(
        summary["message"].as_str().unwrap().starts_with(&format!(
            "{} more refusals for reason wrong-password",
            summary["more"]
        )),
        "{summary}"
    );
    // Each other reason once, in full, with what is safe of what was sent.
    let one = |reason: &'static str| {
        let found: Vec<&Value> = of(reason).collect();
        assert_eq!(found.len(), 1, "{reason}: {log}");
        found[0].clone()
    };
    assert!(one("missing-header").get("user").is_none());
    assert_eq!(one("wrong-scheme")["scheme"], "bearer");
    assert_eq!(one("malformed")["outcome"], "unauthorized");
    assert_eq!(one("unknown-user")["user"], "admin");
    let scrape_refused: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "request refused")
        .collect();
    assert_eq!(scrape_refused.len(), 1, "{log}");
    assert_eq!(scrape_refused[0]["path"], "/metrics");
    assert_eq!(scrape_refused[0]["denied"], "wrong-password");
}
