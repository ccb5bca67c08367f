//! Entra External ID bearer tokens, checked against a real key-set server on 127.0.0.1 and
//! real RSA keys: every claim rule, the key sources, refresh, rate limit and the token cache.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use invitegate::server::auth::dev_token::claims;
use invitegate::server::auth::{
    BearerAuth, BearerConfig, DevSigner, ENTRA_CALLER_APP_ID, JwksSource, KeySetError,
    TokenRejection,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warp::Filter as _;
use warp::http::{Response, StatusCode};

/// The app id Entra's custom authentication extensions call with, as the connector contract
/// (section 3) gives it: tokens carry it as `azp` (v2) or `appid` (v1). Written out here so that
/// a wrong constant in the library fails these tests instead of agreeing with itself.
const ENTRA_CALLER: &str = "99045fe1-7639-4a75-9d4a-577b6ca3810f";
const APP_ID: &str = "6b1b6b3e-1c1d-4a8e-9d40-3f4a2b9c8d7e";
const APP_URI: &str = "api://auth.contoso.com/6b1b6b3e-1c1d-4a8e-9d40-3f4a2b9c8d7e";
/// The instant every table check runs at (2030-03-17T17:46:40Z).
const T0: u64 = 1_900_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0)
}

fn at(offset: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0.checked_add_signed(offset).unwrap())
}

/// Three keys per test process: RSA generation is the slow part.
fn signer(index: usize) -> &'static DevSigner {
    static SIGNERS: OnceLock<Vec<DevSigner>> = OnceLock::new();
    &SIGNERS.get_or_init(|| (0..3).map(|_| DevSigner::generate().unwrap()).collect())[index]
}

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A tenant's OpenID metadata and key set on 127.0.0.1, with fetch counters, a key set the
/// test can change, and a switch that makes the key set answer 500.
struct KeyServer {
    base: String,
    jwks: Arc<Mutex<String>>,
    jwks_uri: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    metadata_fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl KeyServer {
    async fn start(jwks: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = Self {
            jwks_uri: Arc::new(Mutex::new(format!("{base}/tenant/discovery/v2.0/keys"))),
            base,
            jwks: Arc::new(Mutex::new(jwks)),
            fetches: Arc::default(),
            metadata_fetches: Arc::default(),
            failing: Arc::default(),
        };
        let json = |status: StatusCode, body: String| {
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(body)
                .unwrap()
        };
        let (issuer, jwks_uri, metadata_fetches) = (
            server.issuer(),
            server.jwks_uri.clone(),
            server.metadata_fetches.clone(),
        );
        let metadata = warp::path!("tenant" / "v2.0" / ".well-known" / "openid-configuration").map(
            move || {
                metadata_fetches.fetch_add(1, Ordering::SeqCst);
                let uri = jwks_uri.lock().unwrap().clone();
                let body = json!({ "issuer": issuer, "jwks_uri": uri }).to_string();
                json(StatusCode::OK, body)
            },
        );
        let (served, fetches, failing) = (
            server.jwks.clone(),
            server.fetches.clone(),
            server.failing.clone(),
        );
        let keys = warp::path!("tenant" / "discovery" / "v2.0" / "keys").map(move || {
            fetches.fetch_add(1, Ordering::SeqCst);
            if failing.load(Ordering::SeqCst) {
                json(StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned())
            } else {
                json(StatusCode::OK, served.lock().unwrap().clone())
            }
        });
        let huge = warp::path!("huge").map(move || {
            let padding = " ".repeat(2 * 1024 * 1024);
            json(StatusCode::OK, format!("{{\"keys\": []{padding}}}"))
        });
        let redirect = warp::path!("redirect").map(|| {
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", "http://jwks.invalid/keys")
                .body(String::new())
                .unwrap()
        });
        let routes = metadata.or(keys).or(huge).or(redirect);
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        server
    }

    fn issuer(&self) -> String {
        format!("{}/tenant/v2.0", self.base)
    }

    fn jwks_url(&self) -> String {
        format!("{}/tenant/discovery/v2.0/keys", self.base)
    }

    fn set_jwks(&self, jwks: String) {
        *self.jwks.lock().unwrap() = jwks;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn config(&self) -> BearerConfig {
        BearerConfig::new(
            self.issuer(),
            vec![APP_ID.to_owned(), APP_URI.to_owned()],
            JwksSource::Url(self.jwks_url()),
        )
    }

    /// A v2 token from `signer` for this tenant, issued at `T0` for an hour.
    fn claims(&self) -> Value {
        claims(&self.issuer(), APP_ID, t0(), HOUR)
    }
}

/// Changes one claim (or removes it with `Value::Null`).
fn with(mut claims: Value, name: &str, value: Value) -> Value {
    let object = claims.as_object_mut().unwrap();
    if value.is_null() {
        object.remove(name);
    } else {
        object.insert(name.to_owned(), value);
    }
    claims
}

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token signed with HMAC-SHA256 over `secret`: the classic RS256/HS256 confusion when the
/// secret is the public key.
fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string()),
        b64url(claims.to_string())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(message.as_bytes());
    format!("{message}.{}", b64url(mac.finalize().into_bytes()))
}

/// The public key's encodings an attacker could use as an HMAC secret.
fn public_key_encodings(signer: &DevSigner) -> Vec<(&'static str, Vec<u8>)> {
    use rsa::pkcs1::EncodeRsaPublicKey as _;
    use rsa::pkcs8::EncodePublicKey as _;
    let public = rsa::PublicKey::new(
        rsa::BoxedUint::from_be_slice_vartime(signer.modulus()),
        rsa::BoxedUint::from_be_slice_vartime(signer.exponent()),
    )
    .unwrap();
    let spki = public.to_public_key_der().unwrap().as_bytes().to_vec();
    let pkcs1 = public.to_pkcs1_der().unwrap().as_bytes().to_vec();
    let pem = |label: &str, der: &[u8]| {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
        .into_bytes()
    };
    vec![
        ("spki pem", pem("PUBLIC KEY", &spki)),
        ("pkcs1 pem", pem("RSA PUBLIC KEY", &pkcs1)),
        ("spki der", spki),
        ("pkcs1 der", pkcs1),
        ("n bytes", signer.modulus().to_vec()),
    ]
}

#[tokio::test]
async fn every_rule_in_one_table() {
    let (good, other, third) = (signer(0), signer(1), signer(2));
    // The served key set also holds two keys that must not be used: one declaring another
    // algorithm, one for encryption.
    let declared_rs384 = with(other.jwk(), "alg", json!("RS384"));
    let for_encryption = with(third.jwk(), "use", json!("enc"));
    let server = KeyServer::start(jwks(&[good.jwk(), declared_rs384, for_encryption])).await;
    let auth = BearerAuth::start(server.config()).await.unwrap();
    assert_eq!(auth.key_count(), 1, "only the RS256 signing key is usable");

    let c = server.claims();
    let h = good.header();
    let sign = |claims: &Value| good.sign(&h, claims);
    let header_with = |name: &str, value: Value| with(h.clone(), name, value);
    let unsigned = |header: &Value, claims: &Value, signature: &str| {
        format!(
            "{}.{}.{signature}",
            b64url(header.to_string()),
            b64url(claims.to_string())
        )
    };
    let valid = sign(&c);
    let (valid_head, valid_rest) = valid.split_once('.').unwrap();
    let tampered_claims = format!(
        "{valid_head}.{}.{}",
        b64url(with(c.clone(), "aud", json!(APP_URI)).to_string()),
        valid_rest.split_once('.').unwrap().1
    );
    let exp = |offset: i64| json!(T0.checked_add_signed(offset).unwrap());
    let iat_early = with(c.clone(), "iat", exp(-7200));
    let nbf_early = with(iat_early, "nbf", exp(-7200));

    use TokenRejection::*;
    let mut rows: Vec<(String, Option<String>, Result<(), TokenRejection>)> = vec![
        ("good token".into(), Some(bearer(&valid)), Ok(())),
        (
            "expired beyond the leeway".into(),
            Some(bearer(&sign(&with(nbf_early.clone(), "exp", exp(-61))))),
            Err(Expired),
        ),
        (
            "expired exactly at the leeway".into(),
            Some(bearer(&sign(&with(nbf_early.clone(), "exp", exp(-60))))),
            Err(Expired),
        ),
        (
            "expired within the leeway".into(),
            Some(bearer(&sign(&with(nbf_early.clone(), "exp", exp(-59))))),
            Ok(()),
        ),
        (
            "not yet valid beyond the leeway".into(),
            Some(bearer(&sign(&with(c.clone(), "nbf", exp(61))))),
            Err(NotYetValid),
        ),
        (
            "not yet valid within the leeway".into(),
            Some(bearer(&sign(&with(c.clone(), "nbf", exp(60))))),
            Ok(()),
        ),
        (
            "no exp".into(),
            Some(bearer(&sign(&with(c.clone(), "exp", Value::Null)))),
            Err(Malformed),
        ),
        (
            "exp as text".into(),
            Some(bearer(&sign(&with(c.clone(), "exp", json!("2030-01-01"))))),
            Err(Malformed),
        ),
        (
            "wrong issuer".into(),
            Some(bearer(&sign(&with(
                c.clone(),
                "iss",
                json!("https://fabrikam.ciamlogin.com/tenant/v2.0"),
            )))),
            Err(Issuer),
        ),
        (
            "issuer with a trailing slash".into(),
            Some(bearer(&sign(&with(
                c.clone(),
                "iss",
                json!(format!("{}/", server.issuer())),
            )))),
            Err(Issuer),
        ),
        (
            "no issuer".into(),
            Some(bearer(&sign(&with(c.clone(), "iss", Value::Null)))),
            Err(Issuer),
        ),
        (
            "wrong audience".into(),
            Some(bearer(&sign(&with(c.clone(), "aud", json!("api://other"))))),
            Err(Audience),
        ),
        (
            "no audience".into(),
            Some(bearer(&sign(&with(c.clone(), "aud", Value::Null)))),
            Err(Audience),
        ),
        (
            "second configured audience".into(),
            Some(bearer(&sign(&with(c.clone(), "aud", json!(APP_URI))))),
            Ok(()),
        ),
        (
            "audience array holding a configured one".into(),
            Some(bearer(&sign(&with(
                c.clone(),
                "aud",
                json!(["api://other", APP_ID]),
            )))),
            Ok(()),
        ),
        (
            "audience array holding none".into(),
            Some(bearer(&sign(&with(
                c.clone(),
                "aud",
                json!(["api://other"]),
            )))),
            Err(Audience),
        ),
        (
            "wrong azp".into(),
            Some(bearer(&sign(&with(
                c.clone(),
                "azp",
                json!("00000000-0000-0000-0000-000000000001"),
            )))),
            Err(Caller),
        ),
        (
            "no azp and no appid".into(),
            Some(bearer(&sign(&with(c.clone(), "azp", Value::Null)))),
            Err(Caller),
        ),
        (
            "v1 token with appid".into(),
            Some(bearer(&sign(&with(
                with(with(c.clone(), "azp", Value::Null), "ver", json!("1.0")),
                "appid",
                json!(ENTRA_CALLER),
            )))),
            Ok(()),
        ),
        (
            "v1 token with another appid".into(),
            Some(bearer(&sign(&with(
                with(with(c.clone(), "azp", Value::Null), "ver", json!("1.0")),
                "appid",
                json!("00000000-0000-0000-0000-000000000001"),
            )))),
            Err(Caller),
        ),
        (
            "azp right but appid wrong".into(),
            Some(bearer(&sign(&with(
                c.clone(),
                "appid",
                json!("00000000-0000-0000-0000-000000000001"),
            )))),
            Err(Caller),
        ),
        (
            "alg none without signature".into(),
            Some(bearer(&unsigned(
                &header_with("alg", json!("none")),
                &c,
                "",
            ))),
            Err(Algorithm),
        ),
        (
            "alg none with the real signature".into(),
            Some(bearer(&unsigned(
                &header_with("alg", json!("none")),
                &c,
                valid.rsplit_once('.').unwrap().1,
            ))),
            Err(Algorithm),
        ),
        (
            "no alg".into(),
            Some(bearer(&unsigned(
                &header_with("alg", Value::Null),
                &c,
                "AAAA",
            ))),
            Err(Malformed),
        ),
        (
            "RS384 named in the header".into(),
            Some(bearer(&good.sign(&header_with("alg", json!("RS384")), &c))),
            Err(Algorithm),
        ),
        (
            "PS256 named in the header".into(),
            Some(bearer(&good.sign(&header_with("alg", json!("PS256")), &c))),
            Err(Algorithm),
        ),
        (
            "lower-case rs256".into(),
            Some(bearer(&good.sign(&header_with("alg", json!("rs256")), &c))),
            Err(Algorithm),
        ),
        (
            "signed by another key under this kid".into(),
            Some(bearer(&other.sign(&h, &c))),
            Err(Signature),
        ),
        (
            "claims changed after signing".into(),
            Some(bearer(&tampered_claims)),
            Err(Signature),
        ),
        (
            // 336 of 342 characters: still base64url, 252 of 256 bytes.
            "signature truncated by four bytes".into(),
            Some(bearer(&valid[..valid.rfind('.').unwrap() + 1 + 336])),
            Err(Signature),
        ),
        (
            "token truncated inside the claims".into(),
            Some(bearer(&valid[..valid_head.len() + 20])),
            Err(Malformed),
        ),
        (
            "token truncated inside the header".into(),
            Some(bearer(&valid[..10])),
            Err(Malformed),
        ),
        ("garbage".into(), Some(bearer("not-a-jwt")), Err(Malformed)),
        (
            "three garbage parts".into(),
            Some(bearer("a.b.c")),
            Err(Malformed),
        ),
        (
            "five parts (JWE)".into(),
            Some(bearer(&format!("{valid}.AAAA.AAAA"))),
            Err(Malformed),
        ),
        (
            "standard base64 instead of base64url".into(),
            Some(bearer(&(valid.replace('-', "+").replace('_', "/") + "+/="))),
            Err(Malformed),
        ),
        (
            "longer than 8 KiB".into(),
            Some(bearer(&sign(&with(
                c.clone(),
                "pad",
                json!("x".repeat(9000)),
            )))),
            Err(Malformed),
        ),
        (
            "critical header extension".into(),
            Some(bearer(&good.sign(&header_with("crit", json!(["exp"])), &c))),
            Err(Malformed),
        ),
        (
            "no kid".into(),
            Some(bearer(&good.sign(&header_with("kid", Value::Null), &c))),
            Err(UnknownKey),
        ),
        (
            "unknown kid".into(),
            Some(bearer(
                &good.sign(&header_with("kid", json!("made-up")), &c),
            )),
            Err(UnknownKey),
        ),
        (
            "key whose JWK declares RS384".into(),
            Some(bearer(&other.sign(&other.header(), &c))),
            Err(UnknownKey),
        ),
        (
            "key whose JWK is for encryption".into(),
            Some(bearer(&third.sign(&third.header(), &c))),
            Err(UnknownKey),
        ),
        ("no header".into(), None, Err(Missing)),
        (
            "Basic scheme".into(),
            Some("Basic YjJjOnBhc3N3b3Jk".into()),
            Err(NotBearer),
        ),
        (
            "bearer scheme in lower case".into(),
            Some(format!("bearer {valid}")),
            Ok(()),
        ),
        (
            "empty bearer".into(),
            Some("Bearer ".into()),
            Err(Malformed),
        ),
        (
            "token without scheme".into(),
            Some(valid.clone()),
            Err(NotBearer),
        ),
    ];
    for (name, secret) in public_key_encodings(good) {
        rows.push((
            format!("HS256 signed with the public key ({name})"),
            Some(bearer(&hs256(
                &header_with("alg", json!("HS256")),
                &c,
                &secret,
            ))),
            Err(Algorithm),
        ));
    }

    let mut failures = Vec::new();
    for (name, header, expected) in &rows {
        let got = auth.check(header.as_deref().map(str::as_bytes), t0()).await;
        if got != *expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The unknown kids asked for at most one more fetch (the rate limit is 10 s).
    assert!(server.fetches() <= 2, "{} fetches", server.fetches());
}

#[tokio::test]
async fn leeway_is_configurable() {
    let server = KeyServer::start(signer(0).jwks_json()).await;
    let mut config = server.config();
    config.leeway = Duration::ZERO;
    let auth = BearerAuth::start(config).await.unwrap();
    let token = bearer(&signer(0).sign(&signer(0).header(), &server.claims()));
    assert_eq!(auth.check(Some(token.as_bytes()), at(3599)).await, Ok(()));
    assert_eq!(
        auth.check(Some(token.as_bytes()), at(3600)).await,
        Err(TokenRejection::Expired)
    );
    assert_eq!(
        auth.check(Some(token.as_bytes()), at(-1)).await,
        Err(TokenRejection::NotYetValid)
    );
}

#[tokio::test]
async fn unknown_kid_is_fetched_and_then_accepted() {
    let server = KeyServer::start(signer(0).jwks_json()).await;
    let mut config = server.config();
    // No rate limit: every unknown kid may fetch at once, so no waiting for an interval here
    // (the limit has its own test below).
    config.unknown_kid_min_interval = Duration::ZERO;
    let auth = BearerAuth::start(config).await.unwrap();
    assert_eq!(server.fetches(), 1);
    let token = bearer(&signer(1).sign(&signer(1).header(), &server.claims()));

    assert_eq!(
        auth.check(Some(token.as_bytes()), t0()).await,
        Err(TokenRejection::UnknownKey)
    );
    assert_eq!(server.fetches(), 2, "the unknown kid caused one fetch");

    // The tenant publishes the new key; the same token passes after the next refetch.
    server.set_jwks(jwks(&[signer(0).jwk(), signer(1).jwk()]));
    assert_eq!(auth.check(Some(token.as_bytes()), t0()).await, Ok(()));
    assert_eq!(server.fetches(), 3);
    assert_eq!(auth.key_count(), 2);
}

#[tokio::test]
async fn a_flood_of_made_up_kids_costs_one_fetch_per_interval() {
    let server = KeyServer::start(signer(0).jwks_json()).await;
    let claims = server.claims();
    let made_up = |i: usize| {
        let header = with(signer(0).header(), "kid", json!(format!("made-up-{i}")));
        bearer(&signer(0).sign(&header, &claims))
    };
    let tokens: Vec<String> = (0..200).map(made_up).collect();

    // Right after the start-up fetch the limiter is closed: nothing is fetched. An interval
    // no test run comes near keeps it closed however slow the machine is.
    let mut config = server.config();
    config.unknown_kid_min_interval = Duration::from_secs(3600);
    let closed = BearerAuth::start(config).await.unwrap();
    assert_eq!(server.fetches(), 1);
    for token in &tokens[..20] {
        assert_eq!(
            closed.check(Some(token.as_bytes()), t0()).await,
            Err(TokenRejection::UnknownKey)
        );
    }
    assert_eq!(server.fetches(), 1, "no fetch inside the interval");

    // Once the interval has passed, a concurrent flood shares one fetch.
    let interval = Duration::from_secs(2);
    let mut config = server.config();
    config.unknown_kid_min_interval = interval;
    let auth = BearerAuth::start(config).await.unwrap();
    assert_eq!(server.fetches(), 2);
    tokio::time::sleep(interval).await;
    let flood_start = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for token in tokens.clone() {
        let auth = auth.clone();
        flood.spawn(async move { auth.check(Some(token.as_bytes()), t0()).await });
    }
    while let Some(outcome) = flood.join_next().await {
        assert_eq!(outcome.unwrap(), Err(TokenRejection::UnknownKey));
    }
    for token in &tokens {
        assert_eq!(
            auth.check(Some(token.as_bytes()), t0()).await,
            Err(TokenRejection::UnknownKey)
        );
    }
    // At most one fetch per interval begun since the flood started, and at least the one the
    // open limiter let through.
    let elapsed = flood_start.elapsed();
    let allowed = 1 + usize::try_from(elapsed.as_millis() / interval.as_millis()).unwrap();
    let fetched = server.fetches() - 2;
    assert!(
        (1..=allowed).contains(&fetched),
        "{fetched} fetches for 400 made-up kids in {elapsed:?}"
    );
    // The good key still works all along.
    let good = bearer(&signer(0).sign(&signer(0).header(), &claims));
    assert_eq!(auth.check(Some(good.as_bytes()), t0()).await, Ok(()));
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_old_keys() {
    let server = KeyServer::start(signer(0).jwks_json()).await;
    let auth = BearerAuth::start(server.config()).await.unwrap();
    let claims = server.claims();

    server.failing.store(true, Ordering::SeqCst);
    let error = auth.refresh().await.unwrap_err();
    assert!(matches!(error, KeySetError::Fetch { .. }), "{error:?}");
    assert!(error.to_string().contains("500"), "{error}");
    assert!(error.to_string().contains(&server.jwks_url()), "{error}");
    server.failing.store(false, Ordering::SeqCst);

    for broken in [
        "not json".to_owned(),
        "{}".to_owned(),
        jwks(&[]),
        jwks(&[with(signer(0).jwk(), "alg", json!("HS256"))]),
    ] {
        server.set_jwks(broken.clone());
        let error = auth.refresh().await.unwrap_err();
        assert!(
            matches!(
                error,
                KeySetError::Document { .. } | KeySetError::NoUsableKey { .. }
            ),
            "{broken}: {error:?}"
        );
        assert_eq!(auth.key_count(), 1, "{broken}");
    }
    // A token never seen before still verifies with the kept key.
    let before = auth.signature_checks();
    let fresh = bearer(&signer(0).sign(&signer(0).header(), &with(claims, "jti", json!("x"))));
    assert_eq!(auth.check(Some(fresh.as_bytes()), t0()).await, Ok(()));
    assert_eq!(auth.signature_checks(), before + 1);

    server.set_jwks(jwks(&[signer(0).jwk(), signer(1).jwk()]));
    assert_eq!(auth.refresh().await.unwrap(), 2);
}

#[tokio::test]
async fn start_fails_without_usable_keys_or_source() {
    let server = KeyServer::start(jwks(&[with(signer(0).jwk(), "use", json!("enc"))])).await;
    let error = BearerAuth::start(server.config()).await.unwrap_err();
    assert!(
        matches!(error, KeySetError::NoUsableKey { total: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&server.jwks_url()), "{error}");

    server.failing.store(true, Ordering::SeqCst);
    let error = BearerAuth::start(server.config()).await.unwrap_err();
    assert!(error.to_string().contains("500"), "{error}");

    // Nothing listens on a port just released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = server.config();
    config.jwks = JwksSource::Url(format!("http://127.0.0.1:{port}/keys"));
    let error = BearerAuth::start(config).await.unwrap_err();
    assert!(matches!(error, KeySetError::Fetch { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );

    let mut config = server.config();
    config.jwks = JwksSource::Url(format!("{}/huge", server.base));
    let error = BearerAuth::start(config).await.unwrap_err();
    assert!(
        error.to_string().contains("larger than 1048576 bytes"),
        "{error}"
    );

    let mut config = server.config();
    config.jwks = JwksSource::Url(format!("{}/redirect", server.base));
    let error = BearerAuth::start(config).await.unwrap_err();
    assert!(error.to_string().contains("https"), "{error}");

    for url in [
        "http://login.contoso.invalid/keys",
        "ftp://127.0.0.1/keys",
        "keys.json",
    ] {
        let mut config = server.config();
        config.jwks = JwksSource::Url(url.to_owned());
        let error = BearerAuth::start(config).await.unwrap_err();
        assert!(matches!(error, KeySetError::Url { .. }), "{url}: {error:?}");
    }

    let mut config = server.config();
    config.audiences.clear();
    let error = BearerAuth::start(config).await.unwrap_err();
    assert!(error.to_string().contains("audience"), "{error}");

    let mut config = server.config();
    config.jwks = JwksSource::File("/nonexistent/keys.json".into());
    let error = BearerAuth::start(config).await.unwrap_err();
    assert!(matches!(error, KeySetError::File { .. }), "{error:?}");
    assert!(
        error.to_string().contains("/nonexistent/keys.json"),
        "{error}"
    );
}

#[tokio::test]
async fn metadata_names_the_key_set() {
    let server = KeyServer::start(signer(0).jwks_json()).await;
    let mut config = server.config();
    config.jwks = JwksSource::Metadata;
    let auth = BearerAuth::start(config.clone()).await.unwrap();
    assert_eq!(server.metadata_fetches.load(Ordering::SeqCst), 1);
    assert_eq!(server.fetches(), 1);
    assert_eq!(auth.key_count(), 1);
    let token = bearer(&signer(0).sign(&signer(0).header(), &server.claims()));
    assert_eq!(auth.check(Some(token.as_bytes()), t0()).await, Ok(()));
    assert!(
        auth.describe()
            .contains("/tenant/v2.0/.well-known/openid-configuration")
    );

    // A jwks_uri that is plain http to another host is refused before any connection.
    *server.jwks_uri.lock().unwrap() = "http://jwks.invalid/keys".to_owned();
    let error = BearerAuth::start(config.clone()).await.unwrap_err();
    assert!(matches!(error, KeySetError::Url { .. }), "{error:?}");
    assert!(
        error.to_string().contains("http://jwks.invalid/keys"),
        "{error}"
    );

    // The issuer decides where metadata is looked for: plain http elsewhere is refused too.
    config.issuer = "http://contoso.ciamlogin.invalid/tenant/v2.0".to_owned();
    let error = BearerAuth::start(config).await.unwrap_err();
    assert!(matches!(error, KeySetError::Url { .. }), "{error:?}");
}

#[tokio::test]
async fn file_source_is_read_and_reread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, signer(0).jwks_json()).unwrap();
    let issuer = "https://contoso.ciamlogin.com/tenant/v2.0";
    let config = BearerConfig::new(
        issuer.to_owned(),
        vec![APP_ID.to_owned()],
        JwksSource::File(path.clone()),
    );
    let auth = BearerAuth::start(config).await.unwrap();
    let claims = claims(issuer, APP_ID, t0(), HOUR);
    let first = bearer(&signer(0).sign(&signer(0).header(), &claims));
    assert_eq!(auth.check(Some(first.as_bytes()), t0()).await, Ok(()));

    // The file is replaced by the next key: refresh reads it again.
    std::fs::write(&path, signer(1).jwks_json()).unwrap();
    assert_eq!(auth.refresh().await.unwrap(), 1);
    let second = bearer(&signer(1).sign(&signer(1).header(), &claims));
    assert_eq!(auth.check(Some(second.as_bytes()), t0()).await, Ok(()));
    assert_eq!(
        auth.check(Some(first.as_bytes()), t0()).await,
        Err(TokenRejection::UnknownKey)
    );

    std::fs::write(&path, vec![b' '; 1024 * 1024 + 1]).unwrap();
    let error = auth.refresh().await.unwrap_err();
    assert!(error.to_string().contains("larger than"), "{error}");
    assert_eq!(auth.key_count(), 1);
}

#[tokio::test]
async fn inline_source_for_dev() {
    let issuer = "https://contoso.ciamlogin.com/tenant/v2.0";
    let config = BearerConfig::new(
        issuer.to_owned(),
        vec![APP_ID.to_owned()],
        JwksSource::Inline(signer(2).jwks_json()),
    );
    let auth = BearerAuth::start(config).await.unwrap();
    // `token` stamps the real clock.
    let token = bearer(&signer(2).token(issuer, APP_ID, Duration::from_secs(300)));
    assert_eq!(
        auth.check(Some(token.as_bytes()), SystemTime::now()).await,
        Ok(())
    );
    assert_eq!(
        auth.check(Some(token.as_bytes()), SystemTime::now() + HOUR)
            .await,
        Err(TokenRejection::Expired)
    );
}

#[tokio::test]
async fn a_repeated_token_is_answered_from_the_cache() {
    let server = KeyServer::start(signer(0).jwks_json()).await;
    let auth = BearerAuth::start(server.config()).await.unwrap();
    let token = bearer(&signer(0).sign(&signer(0).header(), &server.claims()));
    assert_eq!(auth.signature_checks(), 0);
    assert_eq!(auth.check(Some(token.as_bytes()), t0()).await, Ok(()));
    assert_eq!(auth.signature_checks(), 1);
    assert_eq!(auth.cached_tokens(), 1);
    for _ in 0..100 {
        assert_eq!(auth.check(Some(token.as_bytes()), at(60)).await, Ok(()));
    }
    assert_eq!(
        auth.signature_checks(),
        1,
        "no signature work for a cached token"
    );

    // The cache still honours the time window, with the leeway.
    assert_eq!(auth.check(Some(token.as_bytes()), at(3659)).await, Ok(()));
    assert_eq!(
        auth.check(Some(token.as_bytes()), at(3660)).await,
        Err(TokenRejection::Expired)
    );
    assert_eq!(
        auth.check(Some(token.as_bytes()), at(-61)).await,
        Err(TokenRejection::NotYetValid)
    );
    assert_eq!(auth.signature_checks(), 1);

    // A token that differs in one character of its signature is not the cached one.
    let mut changed = token.clone().into_bytes();
    let inside = changed.len() - 10;
    changed[inside] = if changed[inside] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        auth.check(Some(&changed), t0()).await,
        Err(TokenRejection::Signature)
    );
    assert_eq!(auth.signature_checks(), 2);
    // Refused tokens are not remembered.
    assert_eq!(auth.cached_tokens(), 1);
}

#[tokio::test]
async fn a_key_rotated_out_stops_authenticating_at_the_next_refresh() {
    let server = KeyServer::start(jwks(&[signer(0).jwk(), signer(1).jwk()])).await;
    let auth = BearerAuth::start(server.config()).await.unwrap();
    let claims = server.claims();
    let old = bearer(&signer(0).sign(&signer(0).header(), &claims));
    let new = bearer(&signer(1).sign(&signer(1).header(), &claims));
    assert_eq!(auth.check(Some(old.as_bytes()), t0()).await, Ok(()));
    assert_eq!(auth.check(Some(new.as_bytes()), t0()).await, Ok(()));
    assert_eq!(auth.cached_tokens(), 2);

    server.set_jwks(signer(1).jwks_json());
    assert_eq!(auth.refresh().await.unwrap(), 1);
    assert_eq!(
        auth.cached_tokens(),
        1,
        "the old key's token left the cache"
    );
    assert_eq!(
        auth.check(Some(old.as_bytes()), t0()).await,
        Err(TokenRejection::UnknownKey)
    );
    let checks = auth.signature_checks();
    assert_eq!(auth.check(Some(new.as_bytes()), t0()).await, Ok(()));
    assert_eq!(
        auth.signature_checks(),
        checks,
        "the kept key's token stayed cached"
    );

    // The same kid with new key material is a new key: tokens of the old material go too.
    let reused_kid = with(signer(2).jwk(), "kid", json!(signer(1).kid()));
    server.set_jwks(jwks(&[reused_kid]));
    auth.refresh().await.unwrap();
    assert_eq!(auth.cached_tokens(), 0);
    assert_eq!(
        auth.check(Some(new.as_bytes()), t0()).await,
        Err(TokenRejection::Signature)
    );
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let server = KeyServer::start(signer(0).jwks_json()).await;
    let mut config = server.config();
    config.cache_capacity = 4;
    let auth = BearerAuth::start(config).await.unwrap();
    for i in 0..10 {
        let claims = with(server.claims(), "jti", json!(i));
        let token = bearer(&signer(0).sign(&signer(0).header(), &claims));
        assert_eq!(auth.check(Some(token.as_bytes()), t0()).await, Ok(()));
        assert!(auth.cached_tokens() <= 4);
    }
    assert_eq!(auth.cached_tokens(), 4);
}

#[tokio::test]
async fn scheduled_refresh_picks_up_new_keys_and_ends_with_the_auth() {
    let server = KeyServer::start(signer(0).jwks_json()).await;
    let mut config = server.config();
    config.refresh_every = Duration::from_secs(1);
    let auth = BearerAuth::start(config).await.unwrap();
    let task = auth.spawn_refresh();
    server.set_jwks(jwks(&[signer(0).jwk(), signer(1).jwk()]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while auth.key_count() != 2 {
        assert!(
            Instant::now() < deadline,
            "no scheduled refresh within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.fetches() >= 2);
    drop(auth);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the refresh task ends once the auth is dropped")
        .unwrap();
}

#[tokio::test]
async fn nothing_secret_in_debug_or_describe() {
    let server = KeyServer::start(signer(0).jwks_json()).await;
    let auth = BearerAuth::start(server.config()).await.unwrap();
    let token = signer(0).sign(&signer(0).header(), &server.claims());
    assert_eq!(
        auth.check(Some(bearer(&token).as_bytes()), t0()).await,
        Ok(())
    );
    let signature = token.rsplit_once('.').unwrap().1;
    for text in [format!("{auth:?}"), auth.describe()] {
        assert!(text.contains(&server.issuer()), "{text}");
        assert!(text.contains(APP_ID) && text.contains(APP_URI), "{text}");
        assert!(!text.contains(signature), "{text}");
        assert!(!text.contains(&token[..40]), "{text}");
    }
    assert!(format!("{auth:?}").contains("keys: 1"));
    let debug = format!("{:?}", signer(0));
    assert!(debug.contains(signer(0).kid()), "{debug}");
    assert!(
        !debug.contains(&b64url(signer(0).modulus())[..32]),
        "{debug}"
    );

    fn send_sync<T: Send + Sync>() {}
    send_sync::<BearerAuth>();
    send_sync::<DevSigner>();
}

#[test]
fn dev_signer_key_set_shape() {
    let jwks: Value = serde_json::from_str(&signer(0).jwks_json()).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["kid"], signer(0).kid());
    assert_eq!(key["e"], "AQAB");
    assert_eq!(signer(0).modulus().len() * 8, 2048);
    assert_ne!(signer(0).kid(), signer(1).kid());
    // The token names the kid, and carries the claims Entra sends.
    let token = signer(0).token("https://issuer/v2.0", APP_ID, HOUR);
    let mut parts = token.split('.');
    let decode = |part: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let header = decode(parts.next().unwrap());
    let claims = decode(parts.next().unwrap());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], signer(0).kid());
    assert_eq!(claims["azp"], ENTRA_CALLER);
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["aud"], APP_ID);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["nbf"].as_u64().unwrap(),
        3600
    );
}

#[test]
fn the_caller_app_id_is_the_contracts() {
    assert_eq!(ENTRA_CALLER_APP_ID, ENTRA_CALLER);
}

/// A token made without the library's signer or claims helper: an RSA key from the `rsa`
/// crate, the JWT encoded by `jsonwebtoken`, the key set written by hand, and the claims those
/// of Microsoft's documented token for a custom authentication extension (v2: `azp` is the
/// caller, `tid` the tenant, the issuer bound to it). The bearer check accepts it, and refuses
/// it when only the caller differs.
#[tokio::test]
async fn a_token_shaped_as_entra_documents_it_is_accepted() {
    use rsa::Generate as _;
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::traits::PublicKeyParts as _;

    const TENANT: &str = "30000000-0000-0000-0000-000000000003";
    let issuer = format!("https://{TENANT}.ciamlogin.com/{TENANT}/v2.0");
    let private = rsa::PrivateKey::generate();
    let public = private.to_public_key();
    let kid = "entra-documented-key";
    let key_set = json!({"keys": [{
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": b64url(public.n_bytes()),
        "e": b64url(public.e_bytes()),
    }]});
    let auth = BearerAuth::start(BearerConfig::new(
        issuer.clone(),
        vec![APP_ID.to_owned()],
        JwksSource::Inline(key_set.to_string()),
    ))
    .await
    .unwrap();

    let encoding =
        jsonwebtoken::EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let sign = |claims: &Value| bearer(&jsonwebtoken::encode(&header, claims, &encoding).unwrap());
    let documented = |caller: &str| {
        json!({
            "aud": APP_ID,
            "iss": issuer,
            "iat": T0,
            "nbf": T0,
            "exp": T0 + 3600,
            "aio": "AXQAi/8TAAAAoZQSeH3FM1Uf7KSyPSsrDasYe/uxVH3Tj9rYgEbUp+jGnD/5SbtqN4IqT8tvjLqK",
            "azp": caller,
            "azpacr": "1",
            "oid": "1a3d5cb1-6dd2-4bae-a3e6-8d0ec1d28a3b",
            "rh": "0.AUYAS6NhH6W0gEKfKIomu8JtQCsJP2nG2dBIn0mfsSDXzjo3AAA.",
            "sub": "1a3d5cb1-6dd2-4bae-a3e6-8d0ec1d28a3b",
            "tid": TENANT,
            "uti": "YBZkk3PXsUSpUB8zzDkDAA",
            "ver": "2.0",
        })
    };
    let accepted = sign(&documented(ENTRA_CALLER));
    assert_eq!(auth.check(Some(accepted.as_bytes()), t0()).await, Ok(()));
    assert_eq!(auth.signature_checks(), 1, "the signature was checked");
    // The caller id one digit off, or another application: refused.
    for caller in [
        "99045fe1-7639-4a75-9d4a-577b6ca3810e",
        "00000000-0000-0000-0000-000000000001",
    ] {
        let token = sign(&documented(caller));
        assert_eq!(
            auth.check(Some(token.as_bytes()), t0()).await,
            Err(TokenRejection::Caller),
            "{caller}"
        );
    }
}
