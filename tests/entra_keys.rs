//! The Entra signing keys under a sick key source: unavailable at start (the server starts,
//! answers 503, then 200 once they arrive, without a restart), no audience yet (503 with the
//! reason logged), and a hung source under a flood of unknown key ids (no request waits for
//! the fetch's timeout; known keys keep working). Everything on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod entra_support;
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use entra_support::{
    APP, APP_ID, KEYS, TID, Tenant, call, entra_body, free_port, signer, tenant_issuer, token,
};
use invitegate::server::auth::dev_token::claims;
use invitegate::server::auth::{BearerAuth, BearerConfig, JwksSource, TokenRejection};
use serde_json::{Value, json};

const PASSWORD: &str = "a-password-long-enough";

/// `serve` for the tenant on `port`, its log in `log`.
fn serve(tenant: &Tenant, port: u16, audience: Option<&str>, log: &std::path::Path) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_invitegate"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("INVITEGATE_KEYS", KEYS)
        .env("BASIC_AUTH_USERNAME", "b2c")
        .env("BASIC_AUTH_PASSWORD", PASSWORD)
        .env("B2C_EXTENSIONS_APP_ID", APP)
        .env("ENTRA_TENANT_ID", TID)
        .env("ENTRA_METADATA_URL", tenant.metadata_url())
        .env("INVITEGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(audience) = audience {
        command.env("ENTRA_AUDIENCE", audience);
    }
    command.spawn().unwrap()
}

/// Waits until the server answers `/healthz`.
async fn wait_up(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(port, "GET", "/healthz", &[], "").await.is_none() {
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, so the log writer flushes what it holds, then waits.
fn stop(mut child: Child) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status();
    // A server that does not stop fails the test rather than hanging it.
    support::wait_within(&mut child, Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_unavailable_at_start_then_arriving() {
    let tenant = Tenant::start().await;
    tenant.failing.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let port = free_port();
    let mut child = serve(&tenant, port, Some(APP_ID), &log);
    wait_up(port, &mut child).await;

    let bearer = format!("Bearer {}", token());
    let entra = || async {
        call(
            port,
            "POST",
            "/api/entra/attribute-collection-submit",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            &entra_body(),
        )
        .await
        .unwrap()
    };
    // Keys missing: the server runs, the Entra endpoint fails closed with a 503 in JSON.
    let (status, body) = entra().await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "unavailable");
    let (status, health) = call(port, "GET", "/healthz", &[], "").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&health).unwrap(),
        json!({"status": "not-ready", "not_ready": {"entra": "waiting for the signing keys"}})
    );
    assert_eq!(call(port, "GET", "/readyz", &[], "").await.unwrap().0, 503);
    // The B2C endpoints are served meanwhile.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("b2c:{PASSWORD}"))
    );
    let user_flow = json!({
        "email": "alice@contoso.com",
        format!("extension_{}_InvitationCode", APP.replace('-', "")): entra_support::ALICE_CODE,
        "step": "PostAttributeCollection",
    })
    .to_string();
    let (status, body) = call(
        port,
        "POST",
        "/api/b2c/user-flow",
        &[
            ("Authorization", &basic),
            ("Content-Type", "application/json"),
        ],
        &user_flow,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // The tenant comes back: the keys arrive by the retry, no restart.
    tenant.failing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = entra().await;
        if status == 200 {
            assert!(body.contains("modifyAttributeValues"), "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "the keys never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(call(port, "GET", "/readyz", &[], "").await.unwrap().0, 200);
    let (_, health) = call(port, "GET", "/healthz", &[], "").await.unwrap();
    assert_eq!(health, r#"{"status":"ok"}"#);
    stop(child);

    let log = std::fs::read_to_string(&log).unwrap();
    // Each failed fetch is logged with the URL and why; the refusals with their reason.
    assert!(log.contains(&tenant.metadata_url()), "{log}");
    assert!(log.contains("500"), "{log}");
    assert!(log.contains("retry_in=1s"), "{log}");
    assert!(log.contains("reason=\"keys-unavailable\""), "{log}");
    assert!(log.contains("bearer token signing keys loaded"), "{log}");
    assert!(!log.contains(&token()[20..80]), "the token is in the log");
}

/// The guide's order: the server runs before the custom extension (and its app id) exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_audience() {
    let tenant = Tenant::start().await;
    // The metadata also declares an issuer none of the accepted ones: start-up says so.
    *tenant.declared_issuer.lock().unwrap() = "https://elsewhere.example/v2.0".to_owned();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let port = free_port();
    let mut child = serve(&tenant, port, None, &log);
    wait_up(port, &mut child).await;
    let bearer = format!("Bearer {}", token());
    let (status, body) = call(
        port,
        "POST",
        "/api/entra/attribute-collection-submit",
        &[("Authorization", &bearer)],
        &entra_body(),
    )
    .await
    .unwrap();
    assert_eq!(status, 503, "{body}");
    let (_, health) = call(port, "GET", "/healthz", &[], "").await.unwrap();
    assert!(health.contains("waiting for ENTRA_AUDIENCE"), "{health}");
    stop(child);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("reason=\"audience-unset\""), "{log}");
    assert!(log.contains("ENTRA_AUDIENCE is not set"), "{log}");
    assert!(
        log.contains("declares an issuer that is not accepted"),
        "{log}"
    );
    assert!(
        log.contains("declared=https://elsewhere.example/v2.0"),
        "{log}"
    );
}

/// A hung key source and a flood of made-up key ids: each such request is answered within
/// about the bounded wait, one fetch is shared, and tokens of known keys pass meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_key_source_never_holds_a_request_for_long() {
    let tenant = Tenant::start().await;
    let mut config = BearerConfig::new(
        tenant_issuer(),
        vec![APP_ID.to_owned()],
        JwksSource::Url(tenant.keys_url()),
    );
    // Worst case for the limiter: every unknown kid may ask for a fetch.
    config.unknown_kid_min_interval = Duration::ZERO;
    let auth = BearerAuth::start(config).await.unwrap();
    assert_eq!(tenant.key_fetches.load(Ordering::SeqCst), 1);
    tenant.hanging.store(true, Ordering::SeqCst);

    let now = std::time::SystemTime::now();
    let base = claims(&tenant_issuer(), APP_ID, now, Duration::from_secs(3600));
    // Tokens made before the clock starts (signing is slow in a debug build). A made-up key
    // id needs no real signature: it is refused before any is checked.
    let signed = signer().sign(&signer().header(), &base);
    let rest = signed.split_once('.').unwrap().1.to_owned();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let made_up: Vec<String> = (0..300)
        .map(|i| {
            let header = json!({"alg": "RS256", "kid": format!("made-up-{i}")});
            format!("Bearer {}.{rest}", b64(&header))
        })
        .collect();
    let known: Vec<String> = (0..20)
        .map(|i| {
            let mut c = base.clone();
            c["jti"] = json!(i);
            format!("Bearer {}", signer().sign(&signer().header(), &c))
        })
        .collect();
    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for (i, token) in made_up.into_iter().enumerate() {
        let each = auth.clone();
        flood.spawn(async move {
            let begun = Instant::now();
            let outcome = each.check(Some(token.as_bytes()), now).await;
            (false, outcome, begun.elapsed())
        });
        if i % 15 == 0 {
            let (each, token) = (auth.clone(), known[i / 15].clone());
            flood.spawn(async move {
                let begun = Instant::now();
                let outcome = each.check(Some(token.as_bytes()), now).await;
                (true, outcome, begun.elapsed())
            });
        }
    }
    let mut slowest = Duration::ZERO;
    while let Some(joined) = flood.join_next().await {
        let (good, outcome, took) = joined.unwrap();
        if good {
            assert_eq!(outcome, Ok(()));
        } else {
            assert_eq!(outcome, Err(TokenRejection::UnknownKey));
            slowest = slowest.max(took);
        }
    }
    // 500 ms of wait, and a busy two-core machine's scheduling on top.
    assert!(
        slowest < Duration::from_millis(1500),
        "slowest refusal {slowest:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // One fetch was started for the whole flood, and it is still hanging.
    assert_eq!(tenant.key_fetches.load(Ordering::SeqCst), 2);
}

/// The same over HTTP: with the key source hung, a flood of tokens naming unknown key ids is
/// answered 401 within about the bounded wait, while valid Entra calls and the B2C endpoints
/// keep being answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_calls_are_answered_during_a_flood_of_unknown_keys() {
    let tenant = Tenant::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let port = free_port();
    let mut child = serve(&tenant, port, Some(APP_ID), &log);
    wait_up(port, &mut child).await;
    // Past the unknown-kid rate limit (10 s) since the start-up fetch, so the flood starts a
    // fetch, which hangs.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    tenant.hanging.store(true, Ordering::SeqCst);

    let good = format!("Bearer {}", token());
    let signed = token();
    let rest = signed.split_once('.').unwrap().1.to_owned();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("b2c:{PASSWORD}"))
    );
    let user_flow = json!({
        "email": "alice@contoso.com",
        format!("extension_{}_InvitationCode", APP.replace('-', "")): entra_support::ALICE_CODE,
        "step": "PostAttributeCollection",
    })
    .to_string();
    let mut calls = tokio::task::JoinSet::new();
    // One timed call of `kind` to `path`, answered with its status (None: no answer).
    let mut spawn =
        |kind: &'static str, path: &'static str, authorization: String, body: String| {
            calls.spawn(async move {
                let begun = Instant::now();
                let answer = call(
                    port,
                    "POST",
                    path,
                    &[("Authorization", &authorization)],
                    &body,
                )
                .await;
                (kind, answer.map(|a| a.0), begun.elapsed())
            });
        };
    const ENTRA: &str = "/api/entra/attribute-collection-submit";
    for i in 0..150 {
        let made_up = format!(
            "Bearer {}.{rest}",
            b64(&json!({"alg": "RS256", "kid": format!("made-up-{i}")}))
        );
        spawn("flood", ENTRA, made_up, entra_body());
        if i % 10 == 0 {
            spawn("entra", ENTRA, good.clone(), entra_body());
            spawn(
                "b2c",
                "/api/b2c/user-flow",
                basic.clone(),
                user_flow.clone(),
            );
        }
    }
    let mut slowest = Duration::ZERO;
    while let Some(joined) = calls.join_next().await {
        let (kind, status, took) = joined.unwrap();
        let expected = if kind == "flood" { 401 } else { 200 };
        assert_eq!(status, Some(expected), "{kind} after {took:?}");
        slowest = slowest.max(took);
    }
    // Entra gives a call 1 s by default; 500 ms of wait and a busy machine's scheduling.
    assert!(
        slowest < Duration::from_millis(1800),
        "slowest call {slowest:?}"
    );
    // One fetch for the flood (the start-up fetch before it).
    assert_eq!(tenant.key_fetches.load(Ordering::SeqCst), 2);
    stop(child);
}
