//! `invitegate serve --dev`: every endpoint with throwaway keys and credentials on loopback,
//! and a working curl command for each.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use invitegate::connector::AttributeNames;
use invitegate::connector::b2c_policy::CustomPolicy;
use invitegate::connector::b2c_user_flow::UserFlow;
use invitegate::connector::entra::Entra;
use invitegate::server::auth::{
    ApiKey, Auth, BasicAuth, BearerAuth, BearerConfig, DevSigner, JwksSource,
};
use invitegate::server::config::{self as settings, API_KEY_ENV, PASSWORD_ENV};
use invitegate::server::{self, CUSTOM_POLICY_PATH, Config, ENTRA_PATH, Endpoint, USER_FLOW_PATH};
use invitegate::source::{RingSource, VerifierSource};
use invitegate::{Audience, Expiry, KeyRing};
use time::OffsetDateTime;
use warp::Filter as _;
use zeroize::Zeroizing;

use super::args::ServeArgs;
use super::{LISTEN_ENV, listen_env_ignored_in_dev};

/// The API key header of `--dev` when none is given: the Azure Functions key header.
const DEV_API_KEY_HEADER: &str = "x-functions-key";

/// Names of production settings that `--dev` ignores, when they are set.
fn ignored_in_dev(args: &ServeArgs) -> Vec<&'static str> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let mut ignored = Vec::new();
    for name in [
        "BASIC_AUTH_USERNAME",
        PASSWORD_ENV,
        API_KEY_ENV,
        "INVITEGATE_KEYS",
        "INVITEGATE_KEYS_FILE",
        "ENTRA_TENANT_ID",
        "ENTRA_TENANT_SUBDOMAIN",
        "ENTRA_ISSUER",
        "ENTRA_AUDIENCE",
        "ENTRA_JWKS_URL",
        "ENTRA_JWKS_FILE",
        "ENTRA_METADATA_URL",
        "INVITEGATE_ENDPOINTS",
    ] {
        if set(name) {
            ignored.push(name);
        }
    }
    if listen_env_ignored_in_dev(args) {
        ignored.push(LISTEN_ENV);
    }
    if args.basic_auth_username.is_some() && !set("BASIC_AUTH_USERNAME") {
        ignored.push("--basic-auth-username");
    }
    ignored
}

/// Random bytes from the operating system.
fn random<const N: usize>() -> anyhow::Result<Zeroizing<[u8; N]>> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::fill(bytes.as_mut_slice())
        .map_err(|err| anyhow::anyhow!("the operating system's random source failed: {err}"))?;
    Ok(bytes)
}

/// Every endpoint with throwaway keys and credentials, a code for alice@example.com, and the
/// banner to print with a curl command for each.
pub(super) async fn dev_config(
    args: &ServeArgs,
    listen: SocketAddr,
) -> anyhow::Result<(Config, String)> {
    let ignored = ignored_in_dev(args);
    if !ignored.is_empty() {
        eprintln!(
            "invitegate: --dev ignores these production settings: {}",
            ignored.join(", ")
        );
    }
    let key = random::<32>()?;
    let ring_text = Zeroizing::new(format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(key.as_slice())
    ));
    let ring = KeyRing::parse(&ring_text)?;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let password = Zeroizing::new(encode(random::<18>()?.as_slice()));
    let api_key_value = Zeroizing::new(encode(random::<24>()?.as_slice()));
    let header = args.api_key_header.as_deref().unwrap_or(DEV_API_KEY_HEADER);
    let expiry = Expiry::from_datetime(OffsetDateTime::now_utc() + time::Duration::days(1))?;
    let code = invitegate::mint(&ring, &Audience::email("alice@example.com")?, expiry);
    let app_id = match args.extensions_app_id.as_deref() {
        Some(id) => Some(settings::entra::guid_hex(id).context(
            "B2C_EXTENSIONS_APP_ID is not a GUID: give the Application (client) ID of the \
             tenant's b2c-extensions-app",
        )?),
        None => None,
    };
    let names = AttributeNames::new(&args.attribute, app_id.as_deref());
    let verifier = VerifierSource {
        ring: RingSource::Text(ring_text),
        deny_list: args.deny_list.clone(),
        messages: args.messages.clone(),
        leeway: Duration::from_secs(args.leeway),
    }
    .load()?;
    let mut config = Config::new(verifier);
    config.log_emails = args.log_emails;
    config.limits = args.limits.limits();
    let basic = BasicAuth::new("dev", &password);
    config.user_flow = Some(Endpoint::new(
        Auth::Basic(basic.clone()),
        UserFlow::new(names.clone(), args.keep_code_attribute),
    ));
    config.custom_policy = Some(Endpoint::new(
        Auth::ApiKey(ApiKey::new(header, &api_key_value)?),
        CustomPolicy {
            email_claim: args.policy_email_claim.clone(),
            code_claim: args.policy_code_claim.clone(),
        },
    ));
    let (entra_auth, entra_curl) = dev_entra(args, &names, &code.to_string()).await?;
    config.entra = Some(Endpoint::new(
        entra_auth,
        Entra {
            attribute: names.clone(),
            keep_code_attribute: args.keep_code_attribute,
            email_source: Default::default(),
        },
    ));
    config.metrics_auth = Some(Auth::Basic(basic));
    let claim = names.response_name();
    let email_claim = &args.policy_email_claim;
    let code_claim = &args.policy_code_claim;
    let banner = format!(
        "\n================ DEVELOPMENT ONLY: NOT FOR PRODUCTION ================
invitegate is serving with a throwaway key ring and credentials that change
at every start. Codes minted here verify nowhere else.

  user       dev
  password   {password}
  API key    {header}: {api_key_value}
  test code  {code}  (for alice@example.com, expires {expiry})

B2C user flow (answers {{\"version\":\"1.0.0\",\"action\":\"Continue\",...}}):

  curl -s -u 'dev:{password}' -H 'Content-Type: application/json' \\
    -d '{{\"email\":\"alice@example.com\",\"{claim}\":\"{code}\",\"step\":\"PostAttributeCollection\"}}' \\
    http://{{addr}}{USER_FLOW_PATH}

B2C custom policy (answers {{\"invitationKind\":\"email\",...}}):

  curl -s -H '{header}: {api_key_value}' -H 'Content-Type: application/json' \\
    -d '{{\"{email_claim}\":\"alice@example.com\",\"{code_claim}\":\"{code}\"}}' \\
    http://{{addr}}{CUSTOM_POLICY_PATH}

Entra External ID (answers {{\"data\":{{...\"modifyAttributeValues\"...}}}}):

{entra_curl}
=======================================================================\n",
        password = password.as_str(),
        api_key_value = api_key_value.as_str(),
    );
    tracing::warn!(address = %listen, "development mode: throwaway keys and credentials");
    Ok((config, banner))
}

/// Issuer and audience of `--dev`'s throwaway tokens.
const DEV_ISSUER: &str = "https://dev.ciamlogin.com/00000000-0000-0000-0000-000000000000/v2.0";
const DEV_AUDIENCE: &str = "00000000-0000-0000-0000-0000000000de";

/// The Entra endpoint of `--dev`: a throwaway RSA key whose JWKS is served on loopback and
/// fetched like a tenant's, and a curl command with a token it signed.
async fn dev_entra(
    args: &ServeArgs,
    names: &AttributeNames,
    code: &str,
) -> anyhow::Result<(Auth, String)> {
    let signer = DevSigner::generate().context("making the throwaway Entra signing key")?;
    let jwks = signer.jwks_json();
    let route = warp::path!(".well-known" / "jwks.json")
        .map(move || warp::reply::with_header(jwks.clone(), "content-type", "application/json"));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding the development JWKS server")?;
    let jwks_url = format!(
        "http://{}/.well-known/jwks.json",
        listener
            .local_addr()
            .context("reading the JWKS server's address")?
    );
    tokio::spawn(server::serve(
        listener,
        route
            .map(warp::Reply::into_response)
            .recover(|_| async {
                let mut missing = warp::reply::Response::new("{}".into());
                *missing.status_mut() = warp::http::StatusCode::NOT_FOUND;
                Ok::<_, std::convert::Infallible>(missing)
            })
            .unify(),
        std::future::pending(),
    ));
    let mut config = BearerConfig::new(
        DEV_ISSUER.to_owned(),
        vec![DEV_AUDIENCE.to_owned()],
        JwksSource::Url(jwks_url),
    );
    config.leeway = Duration::from_secs(args.leeway);
    let bearer = BearerAuth::start(config)
        .await
        .context("loading the development JWKS")?;
    bearer.spawn_refresh();
    let token = signer.token(DEV_ISSUER, DEV_AUDIENCE, Duration::from_secs(24 * 60 * 60));
    let body = entra_dev_body(names.response_name(), code);
    let curl = format!(
        "  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n    -d '{body}' \\\n    http://{{addr}}{ENTRA_PATH}"
    );
    Ok((Auth::Bearer(bearer), curl))
}

/// A minimal OnAttributeCollectionSubmit request for alice@example.com.
fn entra_dev_body(attribute: &str, code: &str) -> String {
    serde_json::json!({
        "type": invitegate::connector::entra::EVENT_TYPE,
        "data": {
            "userSignUpInfo": {
                "attributes": {attribute: {"value": code, "attributeType": "directorySchemaExtension"}},
                "identities": [{"signInType": "email", "issuerAssignedId": "alice@example.com"}],
            },
        },
    })
    .to_string()
}
