//! The three identity-provider endpoints as the HTTP benches drive them: one configuration,
//! one valid request each, and the bare warp route each is compared with.

use std::time::Duration;

use base64::Engine as _;
use invitegate::connector::AttributeNames;
use invitegate::connector::b2c_policy::CustomPolicy;
use invitegate::connector::b2c_user_flow::UserFlow;
use invitegate::connector::entra::Entra;
use invitegate::decision::Verifier;
use invitegate::server::auth::{
    ApiKey, Auth, BasicAuth, BearerAuth, BearerConfig, DevSigner, JwksSource,
};
use invitegate::server::{Config, Endpoint};
use invitegate::{Audience, Expiry, KeyRing, mint};
use warp::Filter;
use warp::reply::Response;

const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Key 7's bytes (0, 1, ..., 31), for the floor route's HMAC.
pub const KEY_BYTES: &[u8] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];
const APP_ID: &str = "93fd07aa-333c-409d-955d-96008fd08dd9";
const ATTR: &str = "extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode";
/// The user flow's answer to a valid code, which the bare route sends too.
pub const CONTINUE: &str = r#"{"version":"1.0.0","action":"Continue","extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode":""}"#;
const ISSUER: &str = "https://contoso.ciamlogin.com/30000000-0000-0000-0000-000000000003/v2.0";
const AUDIENCE: &str = "66666666-7777-8888-9999-000000000000";
const API_KEY: &str = "a-long-enough-api-key-0123456789";

/// The endpoints' names, in the order of [`cases`].
pub const NAMES: [&str; 3] = ["B2C user flow", "Entra", "custom policy"];

/// One endpoint's valid request, and the start of the 200 body it must answer with.
pub struct Case {
    /// As the benches print it.
    pub name: &'static str,
    pub path: &'static str,
    /// The one header carrying the credentials.
    pub credentials: (&'static str, String),
    pub body: String,
    pub expect: &'static [u8],
}

/// The endpoints' configuration; the Entra endpoint checks tokens against `signer`'s key.
pub async fn config(signer: &DevSigner) -> Config {
    let ring = KeyRing::parse(KEYS).unwrap();
    let names = AttributeNames::new("InvitationCode", Some(APP_ID));
    let mut config = Config::new(Verifier::new(ring));
    config.user_flow = Some(Endpoint::new(
        Auth::Basic(BasicAuth::new("b2c", "a-long-enough-password")),
        UserFlow::new(names.clone(), false),
    ));
    config.custom_policy = Some(Endpoint::new(
        Auth::ApiKey(ApiKey::new("x-functions-key", API_KEY).unwrap()),
        CustomPolicy::default(),
    ));
    let bearer = BearerAuth::start(BearerConfig::new(
        ISSUER.to_owned(),
        vec![AUDIENCE.to_owned()],
        JwksSource::Inline(signer.jwks_json()),
    ))
    .await
    .unwrap();
    config.entra = Some(Endpoint::new(
        Auth::Bearer(bearer),
        Entra {
            attribute: names,
            keep_code_attribute: false,
            email_source: Default::default(),
        },
    ));
    config
}

/// The user flow's `Authorization` header value.
pub fn user_flow_authorization() -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode("b2c:a-long-enough-password");
    format!("Basic {basic}")
}

/// A valid request for each endpoint: a code for alice@contoso.com valid for a day, and for
/// Entra one bearer token signed by `signer`, repeated as Entra repeats it.
pub fn cases(signer: &DevSigner) -> Vec<Case> {
    let ring = KeyRing::parse(KEYS).unwrap();
    let expiry =
        Expiry::from_datetime(time::OffsetDateTime::now_utc() + time::Duration::days(1)).unwrap();
    let code = mint(
        &ring,
        &Audience::email("alice@contoso.com").unwrap(),
        expiry,
    )
    .to_string();
    let token = signer.token(ISSUER, AUDIENCE, Duration::from_secs(3600));
    vec![
        Case {
            name: NAMES[0],
            path: "/api/b2c/user-flow",
            credentials: ("Authorization", user_flow_authorization()),
            body: format!(
                r#"{{"email":"alice@contoso.com","identities":[{{"signInType":"emailAddress","issuer":"contoso.onmicrosoft.com","issuerAssignedId":"alice@contoso.com"}}],"displayName":"Alice","givenName":"Alice","surname":"Smith","{ATTR}":"{code}","step":"PostAttributeCollection","client_id":"93fd07aa-333c-409d-955d-96008fd08dd9","ui_locales":"en-US"}}"#
            ),
            expect: b"{\"version\":\"1.0.0\",\"action\":\"Continue\"",
        },
        Case {
            name: NAMES[1],
            path: "/api/entra/attribute-collection-submit",
            credentials: ("Authorization", format!("Bearer {token}")),
            body: entra_body(&code),
            expect: b"{\"data\":",
        },
        Case {
            name: NAMES[2],
            path: "/api/b2c/custom-policy",
            credentials: ("x-functions-key", API_KEY.to_owned()),
            body: format!(
                r#"{{"email":"alice@contoso.com","invitationCode":"{code}","objectId":"0f0e0d0c-0b0a-0908-0706-050403020100"}}"#
            ),
            expect: b"{\"invitationKind\":\"email\"",
        },
    ]
}

/// The baseline: a bare warp route on any path that reads the body and answers
/// [`CONTINUE`], doing no other work. With `work` above zero it first computes for that long
/// (a busy loop), to calibrate what a handler's own cost does to the ratio on a machine.
pub fn bare_route(
    work: Duration,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    warp::post()
        .and(warp::body::bytes())
        .map(move |_body: bytes::Bytes| {
            if !work.is_zero() {
                let start = std::time::Instant::now();
                while start.elapsed() < work {
                    std::hint::spin_loop();
                }
            }
            let mut response = Response::new(CONTINUE.into());
            response.headers_mut().insert(
                "content-type",
                warp::http::HeaderValue::from_static("application/json"),
            );
            response
        })
        .recover(|_| async { Ok::<_, std::convert::Infallible>(Response::new("".into())) })
        .unify()
}

/// An OnAttributeCollectionSubmit event as Entra sends it, about 1.5 KB.
fn entra_body(code: &str) -> String {
    serde_json::json!({
        "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
        "source": "/tenants/30000000-0000-0000-0000-000000000003/applications/00000000-0000-0000-0000-000000000001",
        "data": {
            "@odata.type": "microsoft.graph.onAttributeCollectionSubmitCalloutData",
            "tenantId": "30000000-0000-0000-0000-000000000003",
            "authenticationEventListenerId": "10000000-0000-0000-0000-000000000001",
            "customAuthenticationExtensionId": "10000000-0000-0000-0000-000000000002",
            "authenticationContext": {
                "correlationId": "0f0e0d0c-0b0a-0908-0706-050403020100",
                "client": {"ip": "30.51.176.110", "locale": "en-us", "market": "en-us"},
                "protocol": "OAUTH2.0",
                "clientServicePrincipal": {"id": "1", "appId": "2", "appDisplayName": "Contoso", "displayName": "Contoso"},
                "resourceServicePrincipal": {"id": "1", "appId": "2", "appDisplayName": "Contoso", "displayName": "Contoso"}
            },
            "userSignUpInfo": {
                "attributes": {
                    "givenName": {"@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "Alice", "attributeType": "builtIn"},
                    "surname": {"@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "Smith", "attributeType": "builtIn"},
                    ATTR: {"@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": code, "attributeType": "directorySchemaExtension"}
                },
                "identities": [{"signInType": "email", "issuer": "contoso.onmicrosoft.com", "issuerAssignedId": "alice@contoso.com"}]
            }
        }
    })
    .to_string()
}
