//! Where Entra's address comes from, for a federated sign-up that has no `email` identity:
//! `--entra-email-source identity-or-attribute` (the default) checks the code against the
//! `email` attribute, `identity` refuses rather than check it against an address the person may
//! have typed; the request line says which source the address came from.
//!
//! Its own test binary: it installs the process's log writer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use invitegate::connector::AttributeNames;
use invitegate::connector::entra::{EmailSource, Entra};
use invitegate::decision::Verifier;
use invitegate::server::auth::Auth;
use invitegate::server::{Config, Endpoint, routes};
use invitegate::{Audience, Expiry, KeyRing, mint};
use serde_json::{Value, json};

const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ATTR: &str = "extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode";

fn config(source: EmailSource) -> Config {
    let mut config = Config::new(Verifier::new(KeyRing::parse(KEYS).unwrap()));
    config.entra = Some(Endpoint::new(
        Auth::None,
        Entra {
            attribute: AttributeNames::new(
                "InvitationCode",
                Some("93fd07aa-333c-409d-955d-96008fd08dd9"),
            ),
            keep_code_attribute: false,
            email_source: source,
        },
    ));
    config
}

/// A sign-up through Google: an identity of another kind, the address only as an attribute.
fn federated_sign_up(code: &str) -> Value {
    json!({
        "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
        "data": {
            "@odata.type": "microsoft.graph.onAttributeCollectionSubmitCalloutData",
            "userSignUpInfo": {
                "attributes": {
                    "email": {"value": "alice@contoso.com", "attributeType": "builtIn"},
                    ATTR: {"value": code, "attributeType": "directorySchemaExtension"}
                },
                "identities": [{
                    "signInType": "federated",
                    "issuer": "google.com",
                    "issuerAssignedId": "109876543210987654321"
                }]
            }
        }
    })
}

async fn action(source: EmailSource, body: &Value) -> String {
    let response = warp::test::request()
        .method("POST")
        .path("/api/entra/attribute-collection-submit")
        .body(body.to_string())
        .reply(&routes(config(source)))
        .await;
    assert_eq!(response.status(), 200);
    let json: Value = serde_json::from_slice(response.body()).unwrap();
    json["data"]["actions"][0]["@odata.type"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_typed_address_is_checked_only_when_the_operator_accepts_one() {
    let captured = support::Captured::default();
    let logging = invitegate::server::log::init("info", true, false, captured.clone()).unwrap();
    let ring = KeyRing::parse(KEYS).unwrap();
    let expiry = Expiry::from_unix(4_102_444_800);
    let code = mint(
        &ring,
        &Audience::email("alice@contoso.com").unwrap(),
        expiry,
    )
    .to_string();
    let body = federated_sign_up(&code);

    assert_eq!(
        action(EmailSource::IdentityOrAttribute, &body).await,
        "microsoft.graph.attributeCollectionSubmit.modifyAttributeValues"
    );
    // As any sign-up without an address: a block page, since retyping cannot help.
    assert_eq!(
        action(EmailSource::Identity, &body).await,
        "microsoft.graph.attributeCollectionSubmit.showBlockPage"
    );
    drop(logging);
    let log = captured.text();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &Value| line["endpoint"] == "entra")
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[0]["email_source"], "attribute", "{log}");
    assert_eq!(lines[0]["outcome"], "valid", "{log}");
    assert_eq!(lines[1]["email_source"], "attribute-ignored", "{log}");
    assert_eq!(lines[1]["outcome"], "no-email", "{log}");
}
