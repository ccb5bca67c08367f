//! `serve`'s flags and environment variables, and the library settings they fill.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use invitegate::connector::b2c_policy::{DEFAULT_CODE_CLAIM, DEFAULT_EMAIL_CLAIM};
use invitegate::connector::entra::EmailSource;
use invitegate::server;
use invitegate::server::config::{
    API_KEY_ENV, EndpointName, EntraSettings, PASSWORD_ENV, Settings,
};
use zeroize::Zeroizing;

use super::super::KeySource;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: `HOST:PORT`, `IP:PORT` or a port alone (loopback). Default
    /// 127.0.0.1:7071, or 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT under Azure Functions.
    #[arg(long, env = "INVITEGATE_LISTEN", value_name = "ADDR")]
    pub(super) listen: Option<String>,
    /// Whether `listen` came from INVITEGATE_LISTEN rather than the flag.
    #[arg(skip)]
    pub(in crate::cli) listen_from_env: bool,
    #[command(flatten)]
    pub(super) keys: KeySource,
    /// Endpoints to serve, comma-separated: user-flow, custom-policy, entra. Default: every
    /// endpoint whose settings are present.
    #[arg(long, env = "INVITEGATE_ENDPOINTS", value_enum, value_delimiter = ',')]
    pub(super) endpoints: Vec<EndpointArg>,
    /// HTTP Basic user name B2C sends. The password comes from BASIC_AUTH_PASSWORD only.
    #[arg(
        long,
        env = "BASIC_AUTH_USERNAME",
        value_name = "NAME",
        hide_env_values = true
    )]
    pub(super) basic_auth_username: Option<String>,
    /// Header carrying an API key for the custom-policy endpoint (B2C `ApiKeyHeader`), e.g.
    /// x-functions-key. The key comes from INVITEGATE_API_KEY only.
    #[arg(long, env = "INVITEGATE_API_KEY_HEADER", value_name = "NAME")]
    pub(super) api_key_header: Option<String>,
    /// Serve endpoints that have no credentials configured without authentication. Anyone
    /// who finds the URL can then probe codes.
    #[arg(long)]
    pub(super) insecure_no_auth: bool,
    /// Application (client) ID of the tenant's b2c-extensions-app (a GUID; hyphens are fine).
    #[arg(
        long,
        env = "B2C_EXTENSIONS_APP_ID",
        value_name = "ID",
        hide_env_values = true
    )]
    pub(super) extensions_app_id: Option<String>,
    /// Name of the custom attribute holding the code.
    #[arg(
        long,
        env = "INVITATION_CODE_ATTRIBUTE",
        default_value = "InvitationCode"
    )]
    pub(super) attribute: String,
    /// Custom policy: the claim holding the email address.
    #[arg(long, env = "INVITEGATE_POLICY_EMAIL_CLAIM", default_value = DEFAULT_EMAIL_CLAIM)]
    pub(super) policy_email_claim: String,
    /// Custom policy: the claim holding the code.
    #[arg(long, env = "INVITEGATE_POLICY_CODE_CLAIM", default_value = DEFAULT_CODE_CLAIM)]
    pub(super) policy_code_claim: String,
    #[command(flatten)]
    pub(super) entra: EntraArgs,
    /// Seconds after expiry during which a code still verifies, at most 3600. Also the clock
    /// skew allowed on an Entra token's exp and nbf.
    #[arg(
        long,
        env = "INVITEGATE_LEEWAY",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub(super) leeway: u64,
    /// Revoked codes, one a line, written in any form `verify` accepts.
    #[arg(long, env = "INVITEGATE_DENY_LIST", value_name = "FILE")]
    pub(super) deny_list: Option<PathBuf>,
    /// Messages by locale (JSON), overriding and adding to the built-in English.
    #[arg(long, env = "INVITEGATE_MESSAGES", value_name = "FILE")]
    pub(super) messages: Option<PathBuf>,
    /// Keep the code in the directory: do not clear (B2C) or replace (Entra) the attribute.
    #[arg(long)]
    pub(super) keep_code_attribute: bool,
    /// Log format.
    #[arg(
        long,
        env = "INVITEGATE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub(super) log_format: LogFormat,
    /// Log whole email addresses instead of their domain.
    #[arg(long)]
    pub(super) log_emails: bool,
    #[command(flatten)]
    pub(super) limits: LimitArgs,
    /// How often to check the key ring, deny list and messages files for changes (they are
    /// also reloaded on SIGHUP); 0s checks only on SIGHUP.
    #[arg(long, env = "INVITEGATE_RELOAD_INTERVAL", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(super) reload_interval: Duration,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first), reloaded
    /// with the key ring on SIGHUP and when the file changes. Needs --tls-key.
    #[arg(long, env = "INVITEGATE_TLS_CERT", value_name = "FILE")]
    pub(super) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[arg(long, env = "INVITEGATE_TLS_KEY", value_name = "FILE")]
    pub(super) tls_key: Option<PathBuf>,
    /// Client certificates the B2C endpoints accept, comma-separated thumbprints: SHA-1 as the
    /// Azure portal shows them, or SHA-256; hex, any case, colons allowed. Alone they turn the
    /// B2C endpoints on; with Basic credentials or an API key, either is accepted.
    #[arg(
        long,
        env = "INVITEGATE_CLIENT_CERT_THUMBPRINTS",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub(super) client_cert_thumbprints: Vec<String>,
    /// Read the client certificate from the X-ARR-ClientCert header, which App Service and
    /// Functions set when they terminate TLS. Only behind such a platform: anyone can send the
    /// header.
    #[arg(long, env = "INVITEGATE_TRUST_ARR_CLIENT_CERT", value_parser = clap::builder::BoolishValueParser::new())]
    pub(super) trust_arr_client_cert: bool,
    /// Also serve /metrics without authentication, and /healthz and /readyz, in plain HTTP on
    /// this address (`IP:PORT`, `HOST:PORT` or a port alone), for a scraper inside the
    /// cluster. /metrics on --listen keeps needing the endpoint credentials.
    #[arg(long, env = "INVITEGATE_METRICS_LISTEN", value_name = "ADDR")]
    pub(super) metrics_listen: Option<String>,
    /// Development only: every endpoint, throwaway keys and credentials, loopback only, and a
    /// working curl command for each. Production settings in the environment are ignored.
    #[arg(long, conflicts_with_all = ["keys_file", "insecure_no_auth"])]
    pub(super) dev: bool,
    /// Check the configuration and exit, like `nginx -t`: the first thing to run after
    /// configuring. Reads every setting as serve would (key ring, deny list, messages, app id,
    /// authentication, Entra signing keys fetched over the network), prints what each endpoint
    /// would serve, binds nothing; exit 0, or 2 listing every problem with the setting to fix.
    #[arg(long, conflicts_with = "dev")]
    pub(super) check: bool,
}

/// Connection limits (durations like 10s, 5m).
#[derive(Debug, Args)]
pub(super) struct LimitArgs {
    /// Time a client has to send a request head, also while a keep-alive connection waits.
    #[arg(long, env = "INVITEGATE_HEADER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(super) header_timeout: Duration,
    /// Time a keep-alive connection may stay open with no request in flight.
    #[arg(long, env = "INVITEGATE_IDLE_TIMEOUT", value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(super) idle_timeout: Duration,
    /// Age after which a connection is closed, once its request in flight is answered.
    #[arg(long, env = "INVITEGATE_MAX_CONNECTION_AGE", value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(super) max_connection_age: Duration,
    /// Connections served at once; at the cap the connection idle the longest makes room.
    #[arg(long, env = "INVITEGATE_MAX_CONNECTIONS", value_name = "N", default_value_t = server::connection::DEFAULT_MAX_CONNECTIONS)]
    pub(super) max_connections: usize,
    /// Time given at shutdown (SIGTERM, Ctrl-C) to answer the requests received.
    #[arg(long, env = "INVITEGATE_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(super) drain_timeout: Duration,
}

impl LimitArgs {
    /// The limits as given; the library checks them.
    pub(super) fn limits(&self) -> server::connection::Limits {
        server::connection::Limits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_age: self.max_connection_age,
            max_connections: self.max_connections,
            drain_timeout: self.drain_timeout,
        }
    }
}

/// Microsoft Entra External ID settings.
#[derive(Debug, Args)]
pub(super) struct EntraArgs {
    /// Entra: the external tenant's id (a GUID, the Tenant ID on its overview page). With
    /// ENTRA_AUDIENCE, turns the Entra endpoint on; tokens must come from this tenant.
    #[arg(long, env = "ENTRA_TENANT_ID", value_name = "GUID")]
    pub(super) entra_tenant_id: Option<String>,
    /// Entra: the tenant's subdomain, the contoso of contoso.ciamlogin.com; tokens issued as
    /// https://contoso.ciamlogin.com/{tenantId}/v2.0 are then accepted too.
    #[arg(long, env = "ENTRA_TENANT_SUBDOMAIN", value_name = "NAME")]
    pub(super) entra_tenant_subdomain: Option<String>,
    /// Entra: exact token issuers to accept, comma-separated https:// URLs (sovereign clouds,
    /// unusual set-ups); without ENTRA_TENANT_ID, the first one's metadata holds the keys.
    #[arg(long, env = "ENTRA_ISSUER", value_name = "URLS", value_delimiter = ',')]
    pub(super) entra_issuer: Vec<String>,
    /// Entra: accepted token audiences, comma-separated: the custom extension's app id and/or
    /// its api:// URI. Until it is set, the endpoint answers 503.
    #[arg(
        long,
        env = "ENTRA_AUDIENCE",
        value_name = "IDS",
        value_delimiter = ','
    )]
    pub(super) entra_audience: Vec<String>,
    /// Entra: where the signing keys are, instead of the tenant's OpenID metadata.
    #[arg(long, env = "ENTRA_JWKS_URL", value_name = "URL")]
    pub(super) entra_jwks_url: Option<String>,
    /// Entra: a JWKS file, for hosts that cannot reach the tenant.
    // Given with ENTRA_JWKS_URL, the configuration reports both among its problems (so that
    // `--check` lists every problem), rather than clap stopping at that one.
    #[arg(long, env = "ENTRA_JWKS_FILE", value_name = "PATH")]
    pub(super) entra_jwks_file: Option<PathBuf>,
    /// Entra: OpenID metadata elsewhere than
    /// https://{tenantId}.ciamlogin.com/{tenantId}/v2.0/.well-known/openid-configuration
    /// (https, or http to a loopback address); a metadata issuer that is not accepted is warned
    /// about.
    #[arg(long, env = "ENTRA_METADATA_URL", value_name = "URL")]
    pub(super) entra_metadata_url: Option<String>,
    /// Entra: where the address a code is checked against may come from. `identity`: only the
    /// `email` sign-in identity, so a federated sign-up (Google, Facebook, OpenID Connect)
    /// without one is refused rather than checked against an address the person may have
    /// typed; `identity-or-attribute`: that identity, else the `email` attribute. Each request
    /// line logs the source as `email_source`.
    #[arg(
        long,
        env = "ENTRA_EMAIL_SOURCE",
        value_enum,
        default_value = "identity-or-attribute",
        value_name = "SOURCE"
    )]
    pub(super) entra_email_source: EmailSourceArg,
}

/// `--entra-email-source`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum EmailSourceArg {
    /// Only the `email` sign-in identity.
    Identity,
    /// The `email` sign-in identity, else the `email` attribute.
    IdentityOrAttribute,
}

impl From<EmailSourceArg> for EmailSource {
    fn from(arg: EmailSourceArg) -> Self {
        match arg {
            EmailSourceArg::Identity => Self::Identity,
            EmailSourceArg::IdentityOrAttribute => Self::IdentityOrAttribute,
        }
    }
}

/// The endpoints `serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum EndpointArg {
    /// Azure AD B2C user flow API connector.
    UserFlow,
    /// Azure AD B2C custom policy RESTful technical profile.
    CustomPolicy,
    /// Microsoft Entra External ID OnAttributeCollectionSubmit.
    Entra,
}

impl EndpointArg {
    pub(super) fn library(self) -> EndpointName {
        match self {
            Self::UserFlow => EndpointName::UserFlow,
            Self::CustomPolicy => EndpointName::CustomPolicy,
            Self::Entra => EndpointName::Entra,
        }
    }
}

/// The library's settings from the flags and the environment. The password and the API key
/// come from the environment only, so they stay out of `ps`.
pub(super) fn settings_from(args: &ServeArgs) -> Settings {
    let secret = |name: &str| std::env::var(name).ok().map(Zeroizing::new);
    let entra = &args.entra;
    Settings {
        keys_file: args.keys.keys_file.clone(),
        endpoints: args.endpoints.iter().map(|e| e.library()).collect(),
        basic_auth_username: args.basic_auth_username.clone(),
        basic_auth_password: secret(PASSWORD_ENV),
        api_key_header: args.api_key_header.clone(),
        api_key: secret(API_KEY_ENV),
        insecure_no_auth: args.insecure_no_auth,
        extensions_app_id: args.extensions_app_id.clone(),
        attribute: args.attribute.clone(),
        policy_email_claim: args.policy_email_claim.clone(),
        policy_code_claim: args.policy_code_claim.clone(),
        entra: EntraSettings {
            tenant_id: entra.entra_tenant_id.clone(),
            tenant_subdomain: entra.entra_tenant_subdomain.clone(),
            issuers: entra.entra_issuer.clone(),
            audiences: entra.entra_audience.clone(),
            jwks_url: entra.entra_jwks_url.clone(),
            jwks_file: entra.entra_jwks_file.clone(),
            metadata_url: entra.entra_metadata_url.clone(),
            email_source: entra.entra_email_source.into(),
        },
        leeway: Duration::from_secs(args.leeway),
        deny_list: args.deny_list.clone(),
        messages: args.messages.clone(),
        keep_code_attribute: args.keep_code_attribute,
        log_emails: args.log_emails,
        limits: args.limits.limits(),
        reload_interval: args.reload_interval,
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        client_cert_thumbprints: args.client_cert_thumbprints.clone(),
        trust_arr_client_cert: args.trust_arr_client_cert,
    }
}
