//! A flood of refused bearer tokens: each refusal's details (the claims the failed check looked
//! at) go to the log for the first few of each reason a second only, while the request lines'
//! summaries and `/metrics` count every one.
//!
//! Its own test binary: it installs the process's log writer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use invitegate::KeyRing;
use invitegate::connector::AttributeNames;
use invitegate::connector::entra::Entra;
use invitegate::decision::Verifier;
use invitegate::server::auth::{Auth, BasicAuth, BearerAuth, BearerConfig, DevSigner, JwksSource};
use invitegate::server::log::limit::{REFUSAL_WINDOW, REFUSALS_IN_FULL};
use invitegate::server::{Config, Endpoint, routes};

const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ISSUER: &str = "https://contoso.ciamlogin.com/30000000-0000-0000-0000-000000000003/v2.0";
const AUDIENCE: &str = "66666666-7777-8888-9999-000000000000";
const FLOOD: u64 = 600;

#[tokio::test]
async fn a_flood_of_refused_tokens_logs_few_details_and_counts_every_one() {
    let captured = support::Captured::default();
    let logging = invitegate::server::log::init("info", true, false, captured.clone()).unwrap();
    let signer = DevSigner::generate().unwrap();
    let bearer = BearerAuth::start(BearerConfig::new(
        ISSUER.to_owned(),
        vec![AUDIENCE.to_owned()],
        JwksSource::Inline(signer.jwks_json()),
    ))
    .await
    .unwrap();
    let mut config = Config::new(Verifier::new(KeyRing::parse(KEYS).unwrap()));
    config.entra = Some(Endpoint::new(
        Auth::Bearer(bearer),
        Entra {
            attribute: AttributeNames::new("InvitationCode", None),
            keep_code_attribute: false,
            email_source: Default::default(),
        },
    ));
    config.metrics_auth = Some(Auth::Basic(BasicAuth::new("b2c", "a-long-enough-password")));
    config.dropped_log_lines = logging.dropped();
    let filter = routes(config);

    // Signed by the right key for another audience: refused for its audience, every time.
    let token = signer.token(ISSUER, "another-app", Duration::from_secs(3600));
    let started = Instant::now();
    for _ in 0..FLOOD {
        let reply = warp::test::request()
            .method("POST")
            .path("/api/entra/attribute-collection-submit")
            .header("authorization", format!("Bearer {token}"))
            .body("{}")
            .reply(&filter)
            .await;
        assert_eq!(reply.status(), 401);
    }
    let flooded_for = started.elapsed();
    let metrics = warp::test::request()
        .path("/metrics")
        .header(
            "authorization",
            "Basic YjJjOmEtbG9uZy1lbm91Z2gtcGFzc3dvcmQ=",
        )
        .reply(&filter)
        .await;
    let metrics = String::from_utf8_lossy(metrics.body()).into_owned();
    let counted =
        format!(r#"invitegate_auth_refusals_total{{endpoint="entra",reason="audience"}} {FLOOD}"#);
    assert!(metrics.contains(&counted), "{counted} in\n{metrics}");

    tokio::time::sleep(REFUSAL_WINDOW + Duration::from_millis(300)).await;
    drop(logging);
    let log = captured.text();
    let details = log
        .lines()
        .filter(|line| line.contains("bearer token refused"))
        .count() as u64;
    // At most the first few of each window the flood lasted; the flood is far more than that.
    let windows = flooded_for.as_secs_f64() / REFUSAL_WINDOW.as_secs_f64();
    let bound = u64::from(REFUSALS_IN_FULL) * (windows.ceil() as u64 + 1);
    assert!(details >= 1, "no details line at all:\n{log}");
    assert!(
        details <= bound && bound < FLOOD,
        "{details} details lines for {FLOOD} refusals in {flooded_for:?} (bound {bound})"
    );
    // The details name the audience the token had, and never the token.
    assert!(log.contains("another-app"), "{log}");
    for part in token.split('.') {
        assert!(!log.contains(part), "the token is in the log");
    }
}
