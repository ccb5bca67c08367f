//! Entra External ID tokens configured by tenant: which issuers are accepted (and which not),
//! the `tid` rule, v1 tokens, and the log line of every refusal kind, which must name the
//! check and its values and never hold the token. No network: keys are inline or on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use invitegate::server::auth::dev_token::claims;
use invitegate::server::auth::{
    Auth, BearerAuth, BearerConfig, DevSigner, ENTRA_CALLER_APP_ID, JwksSource, TokenRejection,
};
use invitegate::server::config::EntraSettings;
use invitegate::server::labels::RefusalReason as _;
use serde_json::{Value, json};
use warp::http::HeaderValue;

const TID: &str = "8f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f";
const OTHER_TID: &str = "11111111-2222-4333-8444-555555555555";
const APP_ID: &str = "6b1b6b3e-1c1d-4a8e-9d40-3f4a2b9c8d7e";
const T0: u64 = 1_900_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0)
}

fn signers() -> &'static [DevSigner] {
    static SIGNERS: OnceLock<Vec<DevSigner>> = OnceLock::new();
    SIGNERS.get_or_init(|| (0..2).map(|_| DevSigner::generate().unwrap()).collect())
}

fn with(mut value: Value, name: &str, field: Value) -> Value {
    if field.is_null() {
        value.as_object_mut().unwrap().remove(name);
    } else {
        value[name] = field;
    }
    value
}

/// The tenant `TID` with subdomain `contoso`, keys inline.
fn tenant_config() -> BearerConfig {
    let settings = EntraSettings {
        tenant_id: Some(TID.to_owned()),
        tenant_subdomain: Some("contoso".to_owned()),
        audiences: vec![APP_ID.to_owned()],
        ..EntraSettings::default()
    };
    let mut config = settings.bearer_config(Duration::from_secs(60)).unwrap();
    config.jwks = JwksSource::Inline(signers()[0].jwks_json());
    config
}

async fn tenant_auth() -> Arc<BearerAuth> {
    BearerAuth::start(tenant_config()).await.unwrap()
}

/// A v2 token from the tenant, with `iss` and `tid` as given (`Null` leaves the claim out).
fn token(iss: &str, tid: Value) -> String {
    let c = with(claims(iss, APP_ID, t0(), HOUR), "tid", tid);
    format!("Bearer {}", signers()[0].sign(&signers()[0].header(), &c))
}

/// A v1 token: `ver` 1.0, `appid` instead of `azp`.
fn v1_token(iss: &str) -> String {
    let c = claims(iss, APP_ID, t0(), HOUR);
    let c = with(with(c, "azp", Value::Null), "ver", json!("1.0"));
    let c = with(
        with(c, "appid", json!(ENTRA_CALLER_APP_ID)),
        "tid",
        json!(TID),
    );
    format!("Bearer {}", signers()[0].sign(&signers()[0].header(), &c))
}

#[tokio::test]
async fn issuer_forms_of_one_tenant() {
    let auth = tenant_auth().await;
    let tid = json!(TID);
    let rows: Vec<(&str, String, Result<(), TokenRejection>)> = vec![
        (
            "tenant id as the host (what real tenants sign with)",
            token(
                &format!("https://{TID}.ciamlogin.com/{TID}/v2.0"),
                tid.clone(),
            ),
            Ok(()),
        ),
        (
            "the configured subdomain",
            token(
                &format!("https://contoso.ciamlogin.com/{TID}/v2.0"),
                tid.clone(),
            ),
            Ok(()),
        ),
        (
            "login.microsoftonline.com",
            token(
                &format!("https://login.microsoftonline.com/{TID}/v2.0"),
                tid.clone(),
            ),
            Ok(()),
        ),
        (
            "no tid claim",
            token(
                &format!("https://{TID}.ciamlogin.com/{TID}/v2.0"),
                Value::Null,
            ),
            Ok(()),
        ),
        (
            "tid in upper case",
            token(
                &format!("https://{TID}.ciamlogin.com/{TID}/v2.0"),
                json!(TID.to_uppercase()),
            ),
            Ok(()),
        ),
        (
            "v1 token from sts.windows.net",
            v1_token(&format!("https://sts.windows.net/{TID}/")),
            Ok(()),
        ),
        (
            "another subdomain",
            token(
                &format!("https://fabrikam.ciamlogin.com/{TID}/v2.0"),
                tid.clone(),
            ),
            Err(TokenRejection::Issuer),
        ),
        (
            "another tenant's host",
            token(
                &format!("https://{OTHER_TID}.ciamlogin.com/{TID}/v2.0"),
                tid.clone(),
            ),
            Err(TokenRejection::Issuer),
        ),
        (
            "another tenant altogether",
            token(
                &format!("https://{OTHER_TID}.ciamlogin.com/{OTHER_TID}/v2.0"),
                json!(OTHER_TID),
            ),
            Err(TokenRejection::Issuer),
        ),
        (
            "another tenant on login.microsoftonline.com",
            token(
                &format!("https://login.microsoftonline.com/{OTHER_TID}/v2.0"),
                tid.clone(),
            ),
            Err(TokenRejection::Issuer),
        ),
        (
            "tid of another tenant under an accepted issuer",
            token(
                &format!("https://{TID}.ciamlogin.com/{TID}/v2.0"),
                json!(OTHER_TID),
            ),
            Err(TokenRejection::Tenant),
        ),
        (
            "sts.windows.net on a v2 token",
            token(&format!("https://sts.windows.net/{TID}/"), tid.clone()),
            Err(TokenRejection::Issuer),
        ),
        (
            "v1 token of another tenant",
            v1_token(&format!("https://sts.windows.net/{OTHER_TID}/")),
            Err(TokenRejection::Issuer),
        ),
        (
            "v1 issuer without the trailing slash",
            v1_token(&format!("https://sts.windows.net/{TID}")),
            Err(TokenRejection::Issuer),
        ),
        (
            "http instead of https",
            token(
                &format!("http://{TID}.ciamlogin.com/{TID}/v2.0"),
                tid.clone(),
            ),
            Err(TokenRejection::Issuer),
        ),
        (
            "trailing slash after v2.0",
            token(
                &format!("https://{TID}.ciamlogin.com/{TID}/v2.0/"),
                tid.clone(),
            ),
            Err(TokenRejection::Issuer),
        ),
        (
            "upper-case host",
            token(
                &format!("https://CONTOSO.ciamlogin.com/{TID}/v2.0"),
                tid.clone(),
            ),
            Err(TokenRejection::Issuer),
        ),
        (
            "b2clogin, not an external tenant",
            token(
                &format!("https://contoso.b2clogin.com/{TID}/v2.0/"),
                tid.clone(),
            ),
            Err(TokenRejection::Issuer),
        ),
    ];
    let mut failures = Vec::new();
    for (name, header, expected) in &rows {
        let got = auth.check(Some(header.as_bytes()), t0()).await;
        if got != *expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn entra_issuer_lists_exact_issuers_beside_the_tenant() {
    let sovereign = format!("https://login.microsoftonline.us/{TID}/v2.0");
    let settings = EntraSettings {
        tenant_id: Some(TID.to_owned()),
        issuers: vec![sovereign.clone()],
        audiences: vec![APP_ID.to_owned()],
        ..EntraSettings::default()
    };
    let mut config = settings.bearer_config(Duration::from_secs(60)).unwrap();
    config.jwks = JwksSource::Inline(signers()[0].jwks_json());
    let auth = BearerAuth::start(config).await.unwrap();
    let check = |header: String| {
        let auth = Arc::clone(&auth);
        async move { auth.check(Some(header.as_bytes()), t0()).await }
    };
    assert_eq!(check(token(&sovereign, json!(TID))).await, Ok(()));
    // Without a subdomain configured, no subdomain form is accepted.
    assert_eq!(
        check(token(
            &format!("https://contoso.ciamlogin.com/{TID}/v2.0"),
            json!(TID)
        ))
        .await,
        Err(TokenRejection::Issuer)
    );

    // ENTRA_ISSUER alone: exactly those issuers, no tenant forms, no tid rule.
    let only = EntraSettings {
        issuers: vec![sovereign.clone(), "https://issuer.example/x".to_owned()],
        audiences: vec![APP_ID.to_owned()],
        ..EntraSettings::default()
    };
    let mut config = only.bearer_config(Duration::from_secs(60)).unwrap();
    assert_eq!(
        config.accepted_issuers(),
        [sovereign.as_str(), "https://issuer.example/x"]
    );
    assert_eq!(config.tenant, None);
    config.jwks = JwksSource::Inline(signers()[0].jwks_json());
    let auth = BearerAuth::start(config).await.unwrap();
    let iss = "https://issuer.example/x";
    assert_eq!(
        auth.check(Some(token(iss, json!(OTHER_TID)).as_bytes()), t0())
            .await,
        Ok(())
    );
    let tenant_form = token(
        &format!("https://{TID}.ciamlogin.com/{TID}/v2.0"),
        json!(TID),
    );
    assert_eq!(
        auth.check(Some(tenant_form.as_bytes()), t0()).await,
        Err(TokenRejection::Issuer)
    );
}

#[test]
fn a_portal_issuer_alone_gets_advice_to_configure_the_tenant() {
    let settings = EntraSettings {
        issuers: vec![format!("https://contoso.ciamlogin.com/{TID}/v2.0")],
        audiences: vec![APP_ID.to_owned()],
        ..EntraSettings::default()
    };
    let warnings = settings.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!(
            "set ENTRA_TENANT_ID={TID} ENTRA_TENANT_SUBDOMAIN=contoso instead"
        )),
        "{warnings:?}"
    );
    let with_tenant = EntraSettings {
        tenant_id: Some(TID.to_owned()),
        ..settings
    };
    assert!(with_tenant.warnings().is_empty());
}

#[test]
fn settings_that_can_never_work_are_refused() {
    let base = EntraSettings {
        audiences: vec![APP_ID.to_owned()],
        ..EntraSettings::default()
    };
    let cases: Vec<(&str, EntraSettings, &str)> = vec![
        (
            "malformed tenant",
            EntraSettings {
                tenant_id: Some("contoso.onmicrosoft.com".into()),
                ..base.clone()
            },
            "ENTRA_TENANT_ID",
        ),
        (
            "issuer not a URL",
            EntraSettings {
                issuers: vec!["contoso".into()],
                ..base.clone()
            },
            "ENTRA_ISSUER",
        ),
        (
            "issuer over http",
            EntraSettings {
                issuers: vec![format!("http://contoso.ciamlogin.com/{TID}/v2.0")],
                ..base.clone()
            },
            "ENTRA_ISSUER",
        ),
        (
            "subdomain without tenant",
            EntraSettings {
                issuers: vec![format!("https://contoso.ciamlogin.com/{TID}/v2.0")],
                tenant_subdomain: Some("contoso".into()),
                ..base.clone()
            },
            "ENTRA_TENANT_ID",
        ),
        (
            "subdomain not a label",
            EntraSettings {
                tenant_id: Some(TID.into()),
                tenant_subdomain: Some("con toso".into()),
                ..base.clone()
            },
            "ENTRA_TENANT_SUBDOMAIN",
        ),
        ("neither tenant nor issuer", base.clone(), "ENTRA_TENANT_ID"),
    ];
    for (name, settings, setting) in cases {
        let problems = settings.bearer_config(Duration::ZERO).unwrap_err();
        assert!(
            problems.iter().any(|p| p.setting == setting),
            "{name}: {problems:?}"
        );
    }
    // A missing audience is not a refusal: the server waits for it.
    let waiting = EntraSettings {
        tenant_id: Some(TID.into()),
        ..EntraSettings::default()
    };
    assert!(waiting.bearer_config(Duration::ZERO).is_ok());
    assert_eq!(waiting.pending()[0].setting, "ENTRA_AUDIENCE");
}

/// Log lines written while the guard lives, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

/// Each refusal kind, through the endpoint's authentication: the log line names the check and
/// its values, and never holds the token or its signature.
#[tokio::test(flavor = "current_thread")]
async fn every_refusal_is_logged_with_its_values_and_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let signer = &signers()[0];
    let issuer = format!("https://{TID}.ciamlogin.com/{TID}/v2.0");
    let now = SystemTime::now();
    let good = claims(&issuer, APP_ID, now, HOUR);
    let good = with(good, "tid", json!(TID));
    let sign = |c: &Value| signer.sign(&signer.header(), c);
    let secs = |offset: i64| {
        let base = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        json!(base.checked_add_signed(offset).unwrap())
    };
    let rows: Vec<(&str, Option<String>, Vec<String>)> = vec![
        (
            "issuer",
            Some(sign(&with(
                good.clone(),
                "iss",
                json!(format!("https://fabrikam.ciamlogin.com/{TID}/v2.0")),
            ))),
            vec![
                format!("iss=\"https://fabrikam.ciamlogin.com/{TID}/v2.0\""),
                format!("https://{TID}.ciamlogin.com/{TID}/v2.0"),
                format!("https://sts.windows.net/{TID}/ (v1 tokens)"),
            ],
        ),
        (
            "tenant",
            Some(sign(&with(good.clone(), "tid", json!(OTHER_TID)))),
            vec![
                format!("tid=\"{OTHER_TID}\""),
                format!("expected=\"{TID}\""),
            ],
        ),
        (
            "audience",
            Some(sign(&with(
                good.clone(),
                "aud",
                json!("api://someone-else"),
            ))),
            vec![
                "aud=\"api://someone-else\"".to_owned(),
                format!("expected=\"{APP_ID}\""),
            ],
        ),
        (
            "caller",
            Some(sign(&with(good.clone(), "azp", json!(OTHER_TID)))),
            vec![
                format!("azp=\"{OTHER_TID}\""),
                format!("expected=\"{ENTRA_CALLER_APP_ID}\""),
            ],
        ),
        (
            "expired",
            Some(sign(&with(
                with(good.clone(), "nbf", secs(-7200)),
                "exp",
                secs(-3600),
            ))),
            vec![
                format!("exp={}", secs(-3600)),
                "now=".to_owned(),
                "leeway=60".to_owned(),
            ],
        ),
        (
            "not-yet-valid",
            Some(sign(&with(good.clone(), "nbf", secs(600)))),
            vec![format!("nbf={}", secs(600)), "now=".to_owned()],
        ),
        (
            "unknown-key",
            Some(signer.sign(&json!({"alg": "RS256", "kid": "made-up-kid"}), &good)),
            vec![
                "kid=\"made-up-kid\"".to_owned(),
                format!("one of {}", signer.kid()),
                // Unverified, the token's own issuer and tenant: which key set it expects.
                format!("iss=\"{issuer}\""),
                format!("tid=\"{TID}\""),
            ],
        ),
        (
            "signature",
            Some(signers()[1].sign(&signer.header(), &good)),
            vec![
                format!("kid=\"{}\"", signer.kid()),
                "alg=\"RS256\"".to_owned(),
            ],
        ),
        (
            "algorithm",
            Some(signer.sign(&json!({"alg": "HS256", "kid": signer.kid()}), &good)),
            vec!["alg=\"HS256\"".to_owned(), "expected=\"RS256\"".to_owned()],
        ),
        ("malformed", Some("not-a-jwt".to_owned()), vec![]),
        ("missing", None, vec![]),
    ];
    let auth = Auth::Bearer(tenant_auth().await);
    for (reason, token, values) in &rows {
        let header = token
            .as_ref()
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
        let denied = auth.check(header.as_ref()).await.expect_err(reason);
        assert_eq!(denied.reason.reason(), *reason);
        assert!(!denied.unavailable, "{reason}");
        let log = captured.take();
        assert!(log.contains("bearer token refused"), "{reason}: {log}");
        assert!(
            log.contains(&format!("reason=\"{reason}\"")),
            "{reason}: {log}"
        );
        for value in values {
            assert!(
                log.contains(value.as_str()),
                "{reason}: no {value} in {log}"
            );
        }
        if let Some(token) = token {
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(
                    !log.contains(part),
                    "{reason}: the token is in the log: {log}"
                );
            }
        }
        assert!(!log.contains("\"oid\""), "{reason}: {log}");
    }

    // The server's own faults are 503, not 401, and say why too.
    let mut waiting = tenant_config();
    waiting.audiences.clear();
    let waiting = Auth::Bearer(BearerAuth::new(waiting).unwrap());
    let denied = waiting.check(None).await.unwrap_err();
    assert_eq!(
        (denied.reason.reason(), denied.unavailable),
        ("audience-unset", true)
    );
    assert!(captured.take().contains("expected=\"ENTRA_AUDIENCE\""));

    let mut unreachable = tenant_config();
    unreachable.jwks = JwksSource::Url("http://127.0.0.1:9/keys".to_owned());
    let unreachable = BearerAuth::new(unreachable).unwrap();
    let _ = unreachable.refresh().await;
    let denied = Auth::Bearer(unreachable)
        .check(Some(
            &HeaderValue::from_str(&format!("Bearer {}", sign(&good))).unwrap(),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (denied.reason.reason(), denied.unavailable),
        ("keys-unavailable", true)
    );
    let log = captured.take();
    assert!(log.contains("http://127.0.0.1:9/keys"), "{log}");
    assert!(log.contains(&format!("kid=\"{}\"", signer.kid())), "{log}");
}

#[test]
fn refusal_names_are_stable() {
    let names: Vec<&str> = TokenRejection::ALL.iter().map(|r| r.reason()).collect();
    assert_eq!(
        names,
        [
            "missing",
            "not-bearer",
            "malformed",
            "algorithm",
            "unknown-key",
            "signature",
            "expired",
            "not-yet-valid",
            "issuer",
            "tenant",
            "audience",
            "caller",
            "keys-unavailable",
            "audience-unset",
        ]
    );
}
