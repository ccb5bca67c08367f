//! Every decision outcome through each of the three dialects, over `warp::test`: one table of
//! sign-ups, and per dialect the request it sends and the answer its contract requires.
//! Authentication is tested in `api.rs` (Basic), `entra_auth.rs` (bearer) and below (API key).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use invitegate::connector::AttributeNames;
use invitegate::connector::b2c_policy::CustomPolicy;
use invitegate::connector::b2c_user_flow::UserFlow;
use invitegate::connector::entra::Entra;
use invitegate::decision::Verifier;
use invitegate::server::auth::{ApiKey, Auth};
use invitegate::server::{
    CUSTOM_POLICY_PATH, Config, ENTRA_PATH, Endpoint, USER_FLOW_PATH, routes,
};
use invitegate::{Audience, Code, DenyList, Expiry, KeyRing, mint};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const APP_ID: &str = "93fd07aa333c409d955d96008fd08dd9";
const ATTR: &str = "extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode";
const API_KEY: &str = "a-long-enough-api-key-0123456789";
/// The expiry of every code minted here that should be valid: far enough ahead that the tests
/// outlive it, and written out so that each dialect's answer can be compared with this text.
const EXPIRES: &str = "2100-01-01T00:00:00Z";

fn ring() -> KeyRing {
    KeyRing::parse(KEYS).unwrap()
}

fn code_for(audience: Audience<'_>) -> String {
    let expiry = OffsetDateTime::parse(EXPIRES, &Rfc3339).unwrap();
    mint(&ring(), &audience, Expiry::from_datetime(expiry).unwrap()).to_string()
}

/// What the person sent: the email (if any), the code attribute (if any, as JSON), and the
/// outcome every dialect must reach.
struct SignUp {
    case: &'static str,
    email: Option<&'static str>,
    code: Option<Value>,
    outcome: &'static str,
    /// For a valid code, the kind the answer names (`email`, `domain+subdomains`).
    kind: &'static str,
    /// A piece of the message the person reads (English).
    message: &'static str,
}

fn sign_ups() -> (Vec<SignUp>, DenyList) {
    let valid = code_for(Audience::email("alice@contoso.com").unwrap());
    let domain = code_for(Audience::domain_and_subdomains("contoso.com").unwrap());
    let expired = {
        let past = OffsetDateTime::from_unix_timestamp(1_577_836_800).unwrap();
        mint(
            &ring(),
            &Audience::email("alice@contoso.com").unwrap(),
            Expiry::from_datetime(past).unwrap(),
        )
        .to_string()
    };
    let revoked = code_for(Audience::email("revoked@contoso.com").unwrap());
    let mut deny = DenyList::new();
    deny.insert(&Code::parse(&revoked).unwrap());
    let mut typo = valid.clone().into_bytes();
    typo[3] = if typo[3] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let rows = vec![
        SignUp {
            case: "valid email code",
            email: Some("Alice@Contoso.com"),
            code: Some(json!(valid)),
            outcome: "valid",
            kind: "email",
            message: "",
        },
        SignUp {
            case: "valid domain code, subdomain",
            email: Some("bob@eu.contoso.com"),
            code: Some(json!(domain.to_lowercase())),
            outcome: "valid",
            kind: "domain+subdomains",
            message: "",
        },
        SignUp {
            case: "another address",
            email: Some("mallory@contoso.com"),
            code: Some(json!(valid)),
            outcome: "not-valid",
            kind: "",
            message: "not valid for this email address",
        },
        SignUp {
            case: "expired",
            email: Some("alice@contoso.com"),
            code: Some(json!(expired)),
            outcome: "expired",
            kind: "",
            message: "expired on 2020-01-01",
        },
        SignUp {
            case: "revoked",
            email: Some("revoked@contoso.com"),
            code: Some(json!(revoked)),
            outcome: "revoked",
            kind: "",
            message: "withdrawn",
        },
        SignUp {
            case: "typo",
            email: Some("alice@contoso.com"),
            code: Some(json!(typo)),
            outcome: "mistyped",
            kind: "",
            message: "has a typo",
        },
        SignUp {
            case: "not a code",
            email: Some("alice@contoso.com"),
            code: Some(json!("HELLO")),
            outcome: "malformed",
            kind: "",
            message: "not an invitation code",
        },
        SignUp {
            case: "no code",
            email: Some("alice@contoso.com"),
            code: None,
            outcome: "missing-code",
            kind: "",
            message: "enter the invitation code",
        },
        SignUp {
            case: "blank code",
            email: Some("alice@contoso.com"),
            code: Some(json!("   ")),
            outcome: "missing-code",
            kind: "",
            message: "enter the invitation code",
        },
        SignUp {
            case: "code not a string",
            email: Some("alice@contoso.com"),
            code: Some(json!(12345)),
            outcome: "bad-request",
            kind: "",
            message: "could not read",
        },
        SignUp {
            case: "no email",
            email: None,
            code: Some(json!(valid)),
            outcome: "no-email",
            kind: "",
            message: "need an email address",
        },
    ];
    (rows, deny)
}

fn config(deny: DenyList) -> Config {
    let mut verifier = Verifier::new(ring());
    verifier.options.deny_list = deny;
    let names = AttributeNames::new("InvitationCode", Some(APP_ID));
    let mut config = Config::new(verifier);
    config.user_flow = Some(Endpoint::new(
        Auth::None,
        UserFlow::new(names.clone(), false),
    ));
    config.custom_policy = Some(Endpoint::new(
        Auth::ApiKey(ApiKey::new("x-functions-key", API_KEY).unwrap()),
        CustomPolicy::default(),
    ));
    config.entra = Some(Endpoint::new(
        Auth::None,
        Entra {
            attribute: names,
            keep_code_attribute: false,
            email_source: Default::default(),
        },
    ));
    config
}

async fn post(config: Config, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut request = warp::test::request().method("POST").path(path).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.reply(&routes(config)).await;
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{path}"
    );
    let json: Value = serde_json::from_slice(response.body())
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {:?}", response.body()));
    assert!(!response.body().windows(4).any(|w| w == b"null"), "{json}");
    (response.status().as_u16(), json)
}

fn user_flow_body(row: &SignUp) -> Value {
    let mut body = json!({"step": "PostAttributeCollection", "ui_locales": "en-US"});
    if let Some(email) = row.email {
        body["email"] = json!(email);
    }
    if let Some(code) = &row.code {
        body[ATTR] = code.clone();
    }
    body
}

fn policy_body(row: &SignUp) -> Value {
    let mut body = json!({"objectId": "x"});
    if let Some(email) = row.email {
        body["email"] = json!(email);
    }
    if let Some(code) = &row.code {
        body["invitationCode"] = code.clone();
    }
    body
}

fn entra_body(row: &SignUp) -> Value {
    let mut attributes = json!({
        "givenName": {"@odata.type": "microsoft.graph.stringDirectoryAttributeValue",
            "value": "Alice", "attributeType": "builtIn"},
    });
    if let Some(code) = &row.code {
        attributes[ATTR] = json!({"@odata.type": "microsoft.graph.stringDirectoryAttributeValue",
            "value": code, "attributeType": "directorySchemaExtension"});
    }
    let identities = row.email.map_or_else(
        || json!([{"signInType": "federated", "issuer": "google.com", "issuerAssignedId": "1"}]),
        |email| {
            json!([{"signInType": "email", "issuer": "contoso.onmicrosoft.com",
            "issuerAssignedId": email}])
        },
    );
    json!({
        "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
        "source": "/tenants/30000000-0000-0000-0000-000000000003/applications/x",
        "data": {
            "@odata.type": "microsoft.graph.onAttributeCollectionSubmitCalloutData",
            "tenantId": "30000000-0000-0000-0000-000000000003",
            "authenticationContext": {"correlationId": "c", "client": {"ip": "30.51.176.110",
                "locale": "en-us", "market": "en-us"}},
            "userSignUpInfo": {"attributes": attributes, "identities": identities},
        },
    })
}

fn message_of(text: &Value) -> &str {
    text.as_str()
        .unwrap_or_else(|| panic!("no message: {text}"))
}

#[tokio::test]
async fn user_flow_speaks_every_outcome() {
    let (rows, deny) = sign_ups();
    for row in &rows {
        let body = user_flow_body(row).to_string();
        let (status, json) = post(config(deny.clone()), USER_FLOW_PATH, &[], body.as_bytes()).await;
        let case = row.case;
        assert_eq!(json["version"], "1.0.0", "{case}");
        match row.outcome {
            "valid" => {
                assert_eq!(status, 200, "{case}: {json}");
                assert_eq!(
                    json,
                    json!({"version": "1.0.0", "action": "Continue", ATTR: ""})
                );
            }
            "no-email" => {
                assert_eq!(
                    (status, &json["action"]),
                    (200, &json!("ShowBlockPage")),
                    "{case}"
                );
                assert!(
                    message_of(&json["userMessage"]).contains(row.message),
                    "{case}"
                );
            }
            _ => {
                assert_eq!(status, 400, "{case}: {json}");
                assert_eq!(json["status"], 400, "{case}");
                assert_eq!(json["action"], "ValidationError", "{case}");
                assert!(
                    message_of(&json["userMessage"]).contains(row.message),
                    "{case}: {json}"
                );
            }
        }
    }
}

#[tokio::test]
async fn custom_policy_speaks_every_outcome() {
    let (rows, deny) = sign_ups();
    let key = [("x-functions-key", API_KEY)];
    for row in &rows {
        let body = policy_body(row).to_string();
        let (status, json) = post(
            config(deny.clone()),
            CUSTOM_POLICY_PATH,
            &key,
            body.as_bytes(),
        )
        .await;
        let case = row.case;
        if row.outcome == "valid" {
            assert_eq!(status, 200, "{case}: {json}");
            // The output claims the shipped policy reads, and nothing else.
            assert_eq!(
                json,
                json!({"invitationKind": row.kind, "invitationExpires": EXPIRES,
                    "invitationKeyId": 7}),
                "{case}"
            );
        } else {
            assert_eq!(status, 409, "{case}: {json}");
            assert_eq!(
                json,
                json!({"version": "1.0.0", "status": 409,
                    "code": format!("invitegate.{}", row.outcome),
                    "userMessage": json["userMessage"].clone()}),
                "{case}"
            );
            assert!(
                message_of(&json["userMessage"]).contains(row.message),
                "{case}: {json}"
            );
        }
    }
    // The API key is required, in its header, with its value.
    let body = policy_body(&rows[0]).to_string();
    for headers in [
        &[][..],
        &[("x-functions-key", "a-long-enough-api-key-012345678")][..],
        &[("x-api-key", API_KEY)][..],
        &[("authorization", API_KEY)][..],
    ] {
        let (status, json) = post(
            config(deny.clone()),
            CUSTOM_POLICY_PATH,
            headers,
            body.as_bytes(),
        )
        .await;
        assert_eq!(
            (status, &json["error"]),
            (401, &json!("unauthorized")),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn entra_speaks_every_outcome() {
    let (rows, deny) = sign_ups();
    let block = "microsoft.graph.attributeCollectionSubmit.showBlockPage";
    let error = "microsoft.graph.attributeCollectionSubmit.showValidationError";
    for row in &rows {
        let body = entra_body(row).to_string();
        let (status, json) = post(config(deny.clone()), ENTRA_PATH, &[], body.as_bytes()).await;
        let case = row.case;
        assert_eq!(status, 200, "{case}: {json}");
        assert_eq!(
            json["data"]["@odata.type"], "microsoft.graph.onAttributeCollectionSubmitResponseData",
            "{case}"
        );
        let actions = json["data"]["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 1, "{case}: exactly one action");
        let action = &actions[0];
        match row.outcome {
            "valid" => {
                assert_eq!(
                    action["@odata.type"],
                    "microsoft.graph.attributeCollectionSubmit.modifyAttributeValues",
                    "{case}"
                );
                let note = action["attributes"][ATTR].as_str().unwrap();
                // The note's shape is the README's: kind, key id and expiry, no code.
                assert_eq!(
                    note,
                    format!(
                        "redeemed: {} invitation, key 7, valid until {EXPIRES}",
                        row.kind
                    ),
                    "{case}"
                );
                // The note is no code: nothing in it parses as one.
                assert!(
                    note.split_whitespace().all(|w| Code::parse(w).is_err()),
                    "{note}"
                );
                assert_eq!(action["attributes"].as_object().unwrap().len(), 1);
            }
            "no-email" => {
                assert_eq!(action["@odata.type"], block, "{case}");
                assert!(
                    message_of(&action["message"]).contains(row.message),
                    "{case}"
                );
            }
            _ => {
                assert_eq!(action["@odata.type"], error, "{case}: {json}");
                let message = message_of(&action["message"]);
                assert!(message.contains(row.message), "{case}: {json}");
                assert_eq!(action["attributeErrors"][ATTR], message, "{case}: {json}");
            }
        }
    }
    // A payload of another event fails closed.
    let mut other = entra_body(&rows[0]);
    other["type"] = json!("microsoft.graph.authenticationEvent.attributeCollectionStart");
    let (status, json) = post(
        config(deny.clone()),
        ENTRA_PATH,
        &[],
        other.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json["data"]["actions"][0]["@odata.type"], block, "{json}");
    other.as_object_mut().unwrap().remove("type");
    let (_, json) = post(
        config(deny.clone()),
        ENTRA_PATH,
        &[],
        other.to_string().as_bytes(),
    )
    .await;
    assert_eq!(json["data"]["actions"][0]["@odata.type"], block, "{json}");
    // Kept on request: continue with the default behaviour.
    let mut keep = config(deny.clone());
    keep.entra.as_mut().unwrap().connector.keep_code_attribute = true;
    let body = entra_body(&rows[0]).to_string();
    let (_, json) = post(keep, ENTRA_PATH, &[], body.as_bytes()).await;
    assert_eq!(
        json["data"]["actions"],
        json!([{"@odata.type": "microsoft.graph.attributeCollectionSubmit.continueWithDefaultBehavior"}])
    );
}

/// The request example of Microsoft's OnAttributeCollectionSubmit reference, as published:
/// with a trailing comma after `resourceServicePrincipal` and one attribute spelled
/// `@odata.Type`. Here with the invitation code attribute among the custom attributes.
fn documentation_example(code: &str) -> String {
    format!(
        r#"{{
  "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
  "source": "/tenants/30000000-0000-0000-0000-000000000003/applications/<resourceAppguid>",
  "data": {{
    "@odata.type": "microsoft.graph.onAttributeCollectionSubmitCalloutData",
    "tenantId": "30000000-0000-0000-0000-000000000003",
    "authenticationEventListenerId": "10000000-0000-0000-0000-000000000001",
    "customAuthenticationExtensionId": "10000000-0000-0000-0000-000000000002",
    "authenticationContext": {{
        "correlationId": "<GUID>",
        "client": {{
            "ip": "30.51.176.110",
            "locale": "en-us",
            "market": "en-us"
        }},
        "protocol": "OAUTH2.0",
        "clientServicePrincipal": {{
            "id": "<Your Test Applications servicePrincipal objectId>",
            "appId": "<Your Test Application App Id>",
            "appDisplayName": "My Test application",
            "displayName": "My Test application"
        }},
        "resourceServicePrincipal": {{
            "id": "<Your Test Applications servicePrincipal objectId>",
            "appId": "<Your Test Application App Id>",
            "appDisplayName": "My Test application",
            "displayName": "My Test application"
        }},
    }},
    "userSignUpInfo": {{
      "attributes": {{
        "givenName": {{
          "@odata.type": "microsoft.graph.stringDirectoryAttributeValue",
          "value": "Larissa Price",
          "attributeType": "builtIn"
        }},
        "companyName": {{
          "@odata.type": "microsoft.graph.stringDirectoryAttributeValue",
          "value": "Contoso University",
          "attributeType": "builtIn"
        }},
        "extension_<appid>_universityGroups": {{
          "@odata.Type": "microsoft.graph.stringDirectoryAttributeValue",
          "value": "Alumni,Faculty",
          "attributeType": "directorySchemaExtension"
        }},
        "extension_<appid>_graduationYear": {{
          "@odata.type": "microsoft.graph.int64DirectoryAttributeValue",
          "value": 2010,
          "attributeType": "directorySchemaExtension"
        }},
        "extension_<appid>_onMailingList": {{
          "@odata.type": "microsoft.graph.booleanDirectoryAttributeValue",
          "value": false,
          "attributeType": "directorySchemaExtension"
        }},
        "{ATTR}": {{
          "@odata.Type": "microsoft.graph.stringDirectoryAttributeValue",
          "value": "{code}",
          "attributeType": "directorySchemaExtension"
        }}
      }},
      "identities": [
        {{
          "signInType": "email",
          "issuer": "contoso.onmicrosoft.com",
          "issuerAssignedId": "larissa.price@contoso.onmicrosoft.com"
        }}
      ]
    }}
  }}
}}"#
    )
}

#[tokio::test]
async fn the_documentation_example_is_read_leniently() {
    let code = code_for(Audience::email("larissa.price@contoso.onmicrosoft.com").unwrap());
    let published = documentation_example(&code);
    assert!(
        published.contains("\"displayName\": \"My Test application\"\n        },\n    },"),
        "the example keeps its trailing comma"
    );
    // Read leniently, as the contract says: the trailing comma, `@odata.Type` spellings and
    // non-string attribute values included, it is read and decided.
    let (status, json) = post(
        config(DenyList::new()),
        ENTRA_PATH,
        &[],
        published.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json["data"]["actions"],
        json!([{
            "@odata.type": "microsoft.graph.attributeCollectionSubmit.modifyAttributeValues",
            "attributes": {
                ATTR: format!("redeemed: email invitation, key 7, valid until {EXPIRES}"),
            },
        }]),
        "{json}"
    );
    // A body that is not JSON even so is a clear 400, never a 5xx or a decision.
    let broken = published.replacen("\"type\":", "\"type\"", 1);
    let (status, json) = post(config(DenyList::new()), ENTRA_PATH, &[], broken.as_bytes()).await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["error"], "bad_request");
    let fixed = published;
    // And for another person the message is under the code attribute.
    let other = fixed.replace("larissa.price@", "someone.else@");
    let (_, json) = post(config(DenyList::new()), ENTRA_PATH, &[], other.as_bytes()).await;
    let action = &json["data"]["actions"][0];
    assert!(
        action["attributeErrors"][ATTR]
            .as_str()
            .unwrap()
            .contains("not valid"),
        "{json}"
    );
}

#[tokio::test]
async fn the_policy_reads_its_locale_and_claim_names() {
    let (rows, deny) = sign_ups();
    let mut config = config(deny);
    config.verifier.messages = invitegate::messages::Messages::from_json(
        r#"{"fr": {"not_valid": "Ce code n'est pas valable pour cette adresse."}}"#,
    )
    .unwrap();
    config.custom_policy.as_mut().unwrap().connector = CustomPolicy {
        email_claim: "signInName".into(),
        code_claim: "extension_code".into(),
    };
    let body = json!({"signInName": "mallory@contoso.com", "extension_code": rows[0].code,
        "ui_locales": "fr-FR"});
    let (status, json) = post(
        config,
        CUSTOM_POLICY_PATH,
        &[("x-functions-key", API_KEY)],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(json["code"], "invitegate.not-valid");
    assert_eq!(
        json["userMessage"],
        "Ce code n'est pas valable pour cette adresse."
    );
}

#[tokio::test]
async fn unreadable_bodies_get_a_json_4xx_in_every_dialect() {
    let bodies: [&[u8]; 5] = [b"", b"not json", b"[1,2]", b"{\"a\":", &[b'{', 0xFF, b'}']];
    for body in bodies {
        let (status, json) = post(config(DenyList::new()), USER_FLOW_PATH, &[], body).await;
        assert_eq!(
            (status, &json["action"]),
            (400, &json!("ValidationError")),
            "{body:?}"
        );
        let (status, json) = post(
            config(DenyList::new()),
            CUSTOM_POLICY_PATH,
            &[("x-functions-key", API_KEY)],
            body,
        )
        .await;
        assert_eq!(
            (status, &json["code"]),
            (400, &json!("invitegate.bad-request")),
            "{body:?}"
        );
        let (status, json) = post(config(DenyList::new()), ENTRA_PATH, &[], body).await;
        assert_eq!(
            (status, &json["error"]),
            (400, &json!("bad_request")),
            "{body:?}"
        );
    }
}

#[tokio::test]
async fn an_endpoint_that_is_off_is_not_found() {
    let mut config = config(DenyList::new());
    config.entra = None;
    let (status, json) = post(config, ENTRA_PATH, &[], b"{}").await;
    assert_eq!(status, 404);
    assert!(
        json["message"].as_str().unwrap().contains(USER_FLOW_PATH),
        "{json}"
    );
    assert!(
        !json["message"].as_str().unwrap().contains(ENTRA_PATH),
        "{json}"
    );
}

/// The Entra endpoint behind its real authentication: a token signed by the tenant's key gets
/// the dialect's answer; anything else a 401 whose body does not say why.
#[tokio::test]
async fn entra_requires_a_valid_bearer_token() {
    use invitegate::server::auth::{BearerAuth, BearerConfig, DevSigner, JwksSource};
    let issuer = "https://contoso.ciamlogin.com/30000000-0000-0000-0000-000000000003/v2.0";
    let audience = "api://invites.contoso.com/66666666-7777-8888-9999-000000000000";
    let signer = DevSigner::generate().unwrap();
    let other = DevSigner::generate().unwrap();
    let bearer = BearerAuth::start(BearerConfig::new(
        issuer.to_owned(),
        vec![audience.to_owned()],
        JwksSource::Inline(signer.jwks_json()),
    ))
    .await
    .unwrap();
    let (rows, deny) = sign_ups();
    let body = entra_body(&rows[0]).to_string();
    let hour = std::time::Duration::from_secs(3600);
    let good = format!("Bearer {}", signer.token(issuer, audience, hour));
    let cases = [
        (Some(good.clone()), 200),
        (None, 401),
        (
            Some(format!("Bearer {}", other.token(issuer, audience, hour))),
            401,
        ),
        (
            Some(format!(
                "Bearer {}",
                signer.token(issuer, "api://other", hour)
            )),
            401,
        ),
        (
            Some(format!(
                "Bearer {}",
                signer.token("https://evil.ciamlogin.com/x/v2.0", audience, hour)
            )),
            401,
        ),
        (Some(good.replacen("Bearer", "Basic", 1)), 401),
        (Some(good[..good.len() - 10].to_owned()), 401),
    ];
    for (authorization, status) in cases {
        let mut config = config(deny.clone());
        config.entra.as_mut().unwrap().auth = Auth::Bearer(std::sync::Arc::clone(&bearer));
        let mut request = warp::test::request()
            .method("POST")
            .path(ENTRA_PATH)
            .body(&body);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.reply(&routes(config)).await;
        assert_eq!(response.status(), status, "{authorization:?}");
        let json: Value = serde_json::from_slice(response.body()).unwrap();
        if status == 401 {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert_eq!(
                json,
                json!({"error": "unauthorized", "message": "missing or invalid bearer token"})
            );
        } else {
            assert_eq!(
                json["data"]["actions"][0]["@odata.type"],
                "microsoft.graph.attributeCollectionSubmit.modifyAttributeValues"
            );
        }
    }
    // The repeated token was verified once: asked again, it comes from the cache.
    let checks = bearer.signature_checks();
    for _ in 0..3 {
        let mut config = config(deny.clone());
        config.entra.as_mut().unwrap().auth = Auth::Bearer(std::sync::Arc::clone(&bearer));
        let response = warp::test::request()
            .method("POST")
            .path(ENTRA_PATH)
            .header("authorization", &good)
            .body(&body)
            .reply(&routes(config))
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(bearer.signature_checks(), checks);
}
