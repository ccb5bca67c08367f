//! The B2C user-flow endpoint's HTTP contract through `warp::test`: one row per rule of the
//! B2C user-flow API connector contract (status, content type, parsed body).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use invitegate::connector::AttributeNames;
use invitegate::connector::b2c_user_flow::UserFlow;
use invitegate::decision::Verifier;
use invitegate::messages::Messages;
use invitegate::server::auth::{Auth, BasicAuth};
use invitegate::server::{Config, Endpoint, MAX_BODY_BYTES, routes};
use invitegate::{Audience, DenyList, Expiry, KeyRing, mint};
use serde_json::{Value, json};
use time::OffsetDateTime;

const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const APP_ID: &str = "93fd07aa-333c-409d-955d-96008fd08dd9";
const ATTR: &str = "extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode";
const USER: &str = "b2c";
const PASSWORD: &str = "s3cret:with:colons";
const PATH: &str = "/api/b2c/user-flow";

fn ring() -> KeyRing {
    KeyRing::parse(KEYS).unwrap()
}

fn code_for(audience: Audience<'_>, expiry: OffsetDateTime) -> String {
    mint(&ring(), &audience, Expiry::from_datetime(expiry).unwrap()).to_string()
}

fn tomorrow() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(1)
}

fn alice_code() -> String {
    code_for(Audience::email("alice@contoso.com").unwrap(), tomorrow())
}

fn config() -> Config {
    let mut config = Config::new(Verifier::new(ring()));
    let flow = UserFlow::new(AttributeNames::new("InvitationCode", Some(APP_ID)), false);
    config.user_flow = Some(Endpoint::new(
        Auth::Basic(BasicAuth::new(USER, PASSWORD)),
        flow,
    ));
    config.metrics_auth = Some(Auth::Basic(BasicAuth::new(USER, PASSWORD)));
    config
}

fn user_flow(config: &mut Config) -> &mut Endpoint<UserFlow> {
    config.user_flow.as_mut().unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

struct Reply {
    status: u16,
    json: Value,
    headers: warp::http::HeaderMap,
}

async fn send(config: Config, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> Reply {
    let mut request = warp::test::request().method(method).path(path).body(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.reply(&routes(config)).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{method} {path}: content type"
    );
    let json: Value = serde_json::from_slice(response.body()).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: body is not JSON ({e}): {:?}",
            response.body()
        )
    });
    assert_no_null(&json, path);
    Reply {
        status,
        json,
        headers: response.headers().clone(),
    }
}

fn assert_no_null(value: &Value, context: &str) {
    match value {
        Value::Null => panic!("{context}: JSON null in response"),
        Value::Array(items) => items.iter().for_each(|v| assert_no_null(v, context)),
        Value::Object(map) => map.values().for_each(|v| assert_no_null(v, context)),
        _ => {}
    }
}

/// Sends `body` as B2C does, with `step` PostAttributeCollection unless the body names one.
async fn connector(config: Config, mut body: Value) -> Reply {
    if let Some(object) = body.as_object_mut() {
        object
            .entry("step")
            .or_insert_with(|| json!("PostAttributeCollection"));
    }
    let auth = basic(USER, PASSWORD);
    send(
        config,
        "POST",
        PATH,
        Some(&auth),
        body.to_string().as_bytes(),
    )
    .await
}

/// Checks a ValidationError: 400, the body's own status 400, and a message with `needle`.
fn assert_validation_error(reply: &Reply, needle: &str, case: &str) {
    assert_eq!(reply.status, 400, "{case}: {}", reply.json);
    assert_eq!(reply.json["version"], "1.0.0", "{case}");
    assert_eq!(reply.json["status"], 400, "{case}");
    assert_eq!(reply.json["action"], "ValidationError", "{case}");
    let message = reply.json["userMessage"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "{case}: {message:?} lacks {needle:?}"
    );
}

fn assert_block_page(reply: &Reply, needle: &str, case: &str) {
    assert_eq!(reply.status, 200, "{case}");
    assert_eq!(reply.json["action"], "ShowBlockPage", "{case}");
    assert_eq!(reply.json["version"], "1.0.0", "{case}");
    assert!(
        reply.json["userMessage"].as_str().unwrap().contains(needle),
        "{case}: {}",
        reply.json
    );
}

#[tokio::test]
async fn authentication() {
    let body = json!({"email": "alice@contoso.com", ATTR: alice_code()}).to_string();
    let rows: [(&str, Option<String>, u16); 6] = [
        ("no credentials", None, 401),
        ("wrong password", Some(basic(USER, "s3cret")), 401),
        ("wrong user", Some(basic("B2C", PASSWORD)), 401),
        ("not basic", Some("Bearer x".to_owned()), 401),
        ("password with colons", Some(basic(USER, PASSWORD)), 200),
        (
            "lower-case scheme",
            Some(basic(USER, PASSWORD).replacen("Basic", "basic", 1)),
            200,
        ),
    ];
    for (case, auth, status) in rows {
        let reply = send(config(), "POST", PATH, auth.as_deref(), body.as_bytes()).await;
        assert_eq!(reply.status, status, "{case}");
        if status == 401 {
            assert_eq!(
                reply.headers["www-authenticate"], "Basic realm=\"invitegate\"",
                "{case}"
            );
            assert_eq!(reply.json["error"], "unauthorized", "{case}");
        }
    }
}

#[tokio::test]
async fn valid_codes_continue_and_clear_the_attribute() {
    let code = alice_code();
    // Attribute key matched case-insensitively; cleared under the key B2C sent.
    let lower = ATTR.to_lowercase();
    let rows = [
        (
            "documented key",
            json!({"email": "alice@contoso.com", ATTR: code, "step": "PostAttributeCollection"}),
            ATTR.to_owned(),
        ),
        (
            "key in other case",
            json!({"email": "Alice@Contoso.com", lower.clone(): code}),
            lower.clone(),
        ),
        (
            "short key",
            json!({"email": "alice@contoso.com", "extension_InvitationCode": code.to_lowercase()}),
            "extension_InvitationCode".to_owned(),
        ),
        (
            "email from identities",
            json!({"identities": [{"signInType": "emailAddress", "issuer": "t.onmicrosoft.com", "issuerAssignedId": "alice@contoso.com"}], ATTR: code}),
            ATTR.to_owned(),
        ),
        (
            "unknown keys",
            json!({"email": "alice@contoso.com", ATTR: code, "displayName": "Alice", "extension_x_Other": 3, "client_id": "x"}),
            ATTR.to_owned(),
        ),
    ];
    for (case, body, key) in rows {
        let reply = connector(config(), body).await;
        assert_eq!(reply.status, 200, "{case}: {}", reply.json);
        assert_eq!(reply.json["version"], "1.0.0", "{case}");
        assert_eq!(reply.json["action"], "Continue", "{case}");
        assert_eq!(reply.json[&key], "", "{case}: {}", reply.json);
        assert_eq!(
            reply.json.as_object().unwrap().len(),
            3,
            "{case}: {}",
            reply.json
        );
    }
    let mut keep = config();
    user_flow(&mut keep).connector =
        UserFlow::new(AttributeNames::new("InvitationCode", Some(APP_ID)), true);
    let reply = connector(keep, json!({"email": "alice@contoso.com", ATTR: code})).await;
    assert_eq!(
        reply.json,
        json!({"version": "1.0.0", "action": "Continue"})
    );
}

#[tokio::test]
async fn every_refusal_has_its_own_message() {
    let code = alice_code();
    let past = OffsetDateTime::from_unix_timestamp(1_577_836_800).unwrap(); // 2020-01-01
    let expired = code_for(Audience::email("alice@contoso.com").unwrap(), past);
    let revoked = code_for(Audience::domain("contoso.com").unwrap(), tomorrow());
    let mut deny_list = DenyList::new();
    deny_list.insert(&invitegate::Code::parse(&revoked).unwrap());
    let mut typo = code.clone().into_bytes();
    typo[3] = if typo[3] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let rows = [
        (
            "missing code",
            json!({"email": "alice@contoso.com"}),
            "enter the invitation code",
        ),
        (
            "empty code",
            json!({"email": "alice@contoso.com", ATTR: "  "}),
            "enter the invitation code",
        ),
        (
            "null code",
            json!({"email": "alice@contoso.com", ATTR: null}),
            "enter the invitation code",
        ),
        (
            "mistyped",
            json!({"email": "alice@contoso.com", ATTR: typo}),
            "typo",
        ),
        (
            "malformed",
            json!({"email": "alice@contoso.com", ATTR: "hello"}),
            "not an invitation code",
        ),
        (
            "another person",
            json!({"email": "mallory@contoso.com", ATTR: code}),
            "not valid for this email address",
        ),
        (
            "revoked",
            json!({"email": "bob@contoso.com", ATTR: revoked}),
            "withdrawn",
        ),
        (
            "expired, naming the date",
            json!({"email": "alice@contoso.com", ATTR: expired}),
            "expired on 2020-01-01",
        ),
        (
            "code not a string",
            json!({"email": "alice@contoso.com", ATTR: 12345}),
            "could not read",
        ),
        (
            "unreadable email",
            json!({"email": "not-an-email", ATTR: code}),
            "not valid for this email address",
        ),
    ];
    for (case, body, needle) in rows {
        let mut config = config();
        config.verifier.options.deny_list = deny_list.clone();
        let reply = connector(config, body).await;
        assert_validation_error(&reply, needle, case);
    }
}

#[tokio::test]
async fn block_pages_fail_closed() {
    let code = alice_code();
    let rows = [
        (
            "no email at all",
            json!({ATTR: code, "identities": [{"signInType": "federated", "issuer": "facebook.com", "issuerAssignedId": "1"}]}),
            "need an email address",
        ),
        (
            "empty email",
            json!({"email": "", ATTR: code}),
            "need an email address",
        ),
        (
            "wrong step",
            json!({"email": "alice@contoso.com", ATTR: code, "step": "PostFederationSignup"}),
            "not available",
        ),
        (
            "token step",
            json!({"email": "alice@contoso.com", ATTR: code, "step": "PreTokenIssuance"}),
            "not available",
        ),
        (
            "step not a string",
            json!({"email": "alice@contoso.com", ATTR: code, "step": 1}),
            "not available",
        ),
    ];
    for (case, body, needle) in rows {
        let reply = connector(config(), body).await;
        assert_block_page(&reply, needle, case);
    }
    // No step at all cannot be told from another step: it fails closed too.
    let auth = basic(USER, PASSWORD);
    let body = json!({"email": "alice@contoso.com", ATTR: code}).to_string();
    let reply = send(config(), "POST", PATH, Some(&auth), body.as_bytes()).await;
    assert_block_page(&reply, "not available", "no step");
}

#[tokio::test]
async fn bad_bodies_never_get_a_5xx() {
    let auth = basic(USER, PASSWORD);
    let rows: [(&str, Vec<u8>); 6] = [
        ("not JSON", b"email=alice".to_vec()),
        ("empty", Vec::new()),
        ("array", b"[1,2]".to_vec()),
        ("string", b"\"hello\"".to_vec()),
        ("invalid UTF-8", vec![b'{', 0xFF, b'}']),
        ("deeply nested", "[".repeat(10_000).into_bytes()),
    ];
    for (case, body) in rows {
        let reply = send(config(), "POST", PATH, Some(&auth), &body).await;
        assert_validation_error(&reply, "could not read", case);
    }
    let too_large = vec![b' '; usize::try_from(MAX_BODY_BYTES).unwrap() + 1];
    let reply = send(config(), "POST", PATH, Some(&auth), &too_large).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json["error"], "payload_too_large");
    let mut just_fits = json!({"email": "alice@contoso.com", ATTR: alice_code()}).to_string();
    just_fits.push_str(&" ".repeat(usize::try_from(MAX_BODY_BYTES).unwrap() - just_fits.len()));
    let reply = send(config(), "POST", PATH, Some(&auth), just_fits.as_bytes()).await;
    assert_eq!(reply.status, 200, "a body of exactly the limit is read");
}

#[tokio::test]
async fn wrong_method_or_path() {
    let auth = basic(USER, PASSWORD);
    for method in ["GET", "PUT", "DELETE"] {
        let reply = send(config(), method, PATH, Some(&auth), b"").await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.headers["allow"], "POST");
    }
    for path in ["/", "/api/b2c", "/api/b2c/user-flow/x", "/api/b2c/userflow"] {
        let reply = send(config(), "POST", path, Some(&auth), b"{}").await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json["error"], "not_found");
    }
    let reply = send(config(), "POST", "/healthz", None, b"").await;
    assert_eq!(reply.status, 405);
}

#[tokio::test]
async fn messages_follow_ui_locales() {
    let mut config = config();
    config.verifier.messages = Messages::from_json(
        r#"{"fr": {"not_valid": "Ce code n'est pas valable pour cette adresse."},
            "fr-CA": {"not_valid": "Code non valide pour ce courriel."}}"#,
    )
    .unwrap();
    let messages = config.verifier.messages.clone();
    let rows = [
        (Some("fr-FR,fr"), "Ce code n'est pas valable"),
        (Some("fr-CA"), "Code non valide pour ce courriel."),
        (Some("de-DE"), "not valid for this email address"),
        (None, "not valid for this email address"),
    ];
    for (locales, needle) in rows {
        let mut body = json!({"email": "mallory@contoso.com", ATTR: alice_code()});
        if let Some(locales) = locales {
            body["ui_locales"] = json!(locales);
        }
        let mut config = self::config();
        config.verifier.messages = messages.clone();
        let reply = connector(config, body).await;
        assert_validation_error(&reply, needle, &format!("{locales:?}"));
    }
}

#[tokio::test]
async fn health_needs_no_auth_and_metrics_do() {
    let filter = routes(config());
    let health = warp::test::request().path("/healthz").reply(&filter).await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.body().as_ref(), br#"{"status":"ok"}"#);
    let auth = basic(USER, PASSWORD);
    // Mallory's is refused as B2C expects a refusal (400), alice's continues (200).
    for (body, expected) in [
        (
            json!({"email": "mallory@contoso.com", ATTR: alice_code(), "step": "PostAttributeCollection"}),
            400,
        ),
        (
            json!({"email": "alice@contoso.com", ATTR: alice_code(), "step": "PostAttributeCollection"}),
            200,
        ),
    ] {
        let r = warp::test::request()
            .method("POST")
            .path(PATH)
            .header("authorization", &auth)
            .body(body.to_string())
            .reply(&filter)
            .await;
        assert_eq!(r.status(), expected);
    }
    let anonymous = warp::test::request().path("/metrics").reply(&filter).await;
    assert_eq!(anonymous.status(), 401);
    let metrics = warp::test::request()
        .path("/metrics")
        .header("authorization", &auth)
        .reply(&filter)
        .await;
    assert_eq!(metrics.status(), 200);
    let text = String::from_utf8(metrics.body().to_vec()).unwrap();
    assert!(
        text.contains(
            r#"invitegate_connector_requests_total{endpoint="b2c-user-flow",outcome="valid"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"invitegate_connector_requests_total{endpoint="b2c-user-flow",outcome="not-valid"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("invitegate_connector_request_duration_seconds_count 2"),
        "{text}"
    );
}

#[tokio::test]
async fn without_auth_only_when_configured_so() {
    let mut open = config();
    user_flow(&mut open).auth = Auth::None;
    let reply = send(
        open,
        "POST",
        PATH,
        None,
        json!({"email": "alice@contoso.com", ATTR: alice_code(), "step": "PostAttributeCollection"})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200);
}

mod hostile_input {
    use super::*;
    use proptest::prelude::*;

    /// JSON-looking bodies: objects with the connector's keys holding any JSON value.
    fn claims() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            "[0-9A-Za-z -]{20,35}".prop_map(Value::from),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-zA-Z_]{1,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        let key = prop_oneof![
            Just("email".to_owned()),
            Just("identities".to_owned()),
            Just("step".to_owned()),
            Just("ui_locales".to_owned()),
            Just(ATTR.to_owned()),
            Just("extension_InvitationCode".to_owned()),
            "[a-zA-Z_]{1,20}",
        ];
        prop::collection::btree_map(key, value, 0..8)
            .prop_map(|m| serde_json::to_vec(&Value::Object(m.into_iter().collect())).unwrap())
    }

    fn assert_answer(
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), TestCaseError> {
        prop_assert!(status < 500, "status {status}");
        prop_assert!(matches!(status, 200 | 400 | 413), "status {status}");
        prop_assert_eq!(content_type, Some("application/json"));
        let json: Value =
            serde_json::from_slice(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!body.windows(4).any(|w| w == b"null"), "{json}");
        Ok(())
    }

    fn reply(body: Vec<u8>) -> (u16, Option<String>, Vec<u8>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = warp::test::request()
                .method("POST")
                .path(PATH)
                .header("authorization", basic(USER, PASSWORD))
                .body(body)
                .reply(&routes(config()))
                .await;
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (
                response.status().as_u16(),
                content_type,
                response.body().to_vec(),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_get_a_5xx(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let (status, content_type, body) = reply(body);
            assert_answer(status, content_type.as_deref(), &body)?;
        }

        #[test]
        fn arbitrary_claims_never_get_a_5xx(body in claims()) {
            let (status, content_type, body) = reply(body);
            assert_answer(status, content_type.as_deref(), &body)?;
        }
    }
}
