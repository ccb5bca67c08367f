//! Shared by `entra_keys.rs` and `serve_check.rs`: a tenant's OpenID metadata and key set on
//! 127.0.0.1 that a test can break, slow down or fix, tokens for it, and a bare HTTP/1.1 call.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use invitegate::server::auth::DevSigner;
use invitegate::server::auth::dev_token::claims;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use warp::Filter as _;
use warp::http::{Response, StatusCode};

pub const TID: &str = "8f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f";
pub const APP_ID: &str = "6b1b6b3e-1c1d-4a8e-9d40-3f4a2b9c8d7e";
pub const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The spec vectors' code for alice@contoso.com, key 7, expires 2030-01-01.
pub const ALICE_CODE: &str = "243Q1-PYRG0-DVPFF-Z9H9F-NDX66";
pub const APP: &str = "93fd07aa-333c-409d-955d-96008fd08dd9";

pub fn signer() -> &'static DevSigner {
    static SIGNER: OnceLock<DevSigner> = OnceLock::new();
    SIGNER.get_or_init(|| DevSigner::generate().unwrap())
}

/// The issuer real external tenants sign with: the tenant id as the host.
pub fn tenant_issuer() -> String {
    format!("https://{TID}.ciamlogin.com/{TID}/v2.0")
}

/// A token from the tenant, valid for an hour from now.
pub fn token() -> String {
    let mut c = claims(
        &tenant_issuer(),
        APP_ID,
        std::time::SystemTime::now(),
        Duration::from_secs(3600),
    );
    c["tid"] = json!(TID);
    signer().sign(&signer().header(), &c)
}

/// The tenant's metadata and key set on 127.0.0.1.
#[derive(Clone)]
pub struct Tenant {
    pub base: String,
    /// Metadata and key set answer 500.
    pub failing: Arc<AtomicBool>,
    /// The key set answers only after 30 s.
    pub hanging: Arc<AtomicBool>,
    /// The `issuer` the metadata declares.
    pub declared_issuer: Arc<Mutex<String>>,
    pub key_fetches: Arc<AtomicUsize>,
}

impl Tenant {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let tenant = Self {
            base: base.clone(),
            failing: Arc::default(),
            hanging: Arc::default(),
            declared_issuer: Arc::new(Mutex::new(tenant_issuer())),
            key_fetches: Arc::default(),
        };
        let json = |status: StatusCode, body: String| {
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(body)
                .unwrap()
        };
        let (failing, declared) = (tenant.failing.clone(), tenant.declared_issuer.clone());
        let jwks_uri = format!("{base}/keys");
        let metadata = warp::path!("tenant" / "v2.0" / ".well-known" / "openid-configuration").map(
            move || {
                if failing.load(Ordering::SeqCst) {
                    return json(StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned());
                }
                let issuer = declared.lock().unwrap().clone();
                json(
                    StatusCode::OK,
                    json!({ "issuer": issuer, "jwks_uri": jwks_uri }).to_string(),
                )
            },
        );
        let (failing, hanging, fetches) = (
            tenant.failing.clone(),
            tenant.hanging.clone(),
            tenant.key_fetches.clone(),
        );
        let keys = warp::path!("keys").then(move || {
            let (failing, hanging, fetches) = (failing.clone(), hanging.clone(), fetches.clone());
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                if hanging.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                if failing.load(Ordering::SeqCst) {
                    return json(StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned());
                }
                json(StatusCode::OK, signer().jwks_json())
            }
        });
        tokio::spawn(warp::serve(metadata.or(keys)).incoming(listener).run());
        tenant
    }

    pub fn metadata_url(&self) -> String {
        format!("{}/tenant/v2.0/.well-known/openid-configuration", self.base)
    }

    pub fn keys_url(&self) -> String {
        format!("{}/keys", self.base)
    }
}

/// A port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request; the status and body of the answer, `None` if nothing listens.
pub async fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// An OnAttributeCollectionSubmit request for alice@contoso.com with her code.
pub fn entra_body() -> String {
    json!({
        "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
        "data": {
            "userSignUpInfo": {
                "attributes": {
                    format!("extension_{}_InvitationCode", APP.replace('-', "")): {
                        "value": ALICE_CODE, "attributeType": "directorySchemaExtension"
                    }
                },
                "identities": [{"signInType": "email", "issuerAssignedId": "alice@contoso.com"}],
            }
        }
    })
    .to_string()
}
