//! `invitegate serve`: configuration from flags and the environment, then `server::run`.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use invitegate::connector::AttributeNames;
use invitegate::connector::b2c_policy::{CustomPolicy, DEFAULT_CODE_CLAIM, DEFAULT_EMAIL_CLAIM};
use invitegate::connector::b2c_user_flow::UserFlow;
use invitegate::connector::entra::Entra;
use invitegate::decision::Verifier;
use invitegate::messages::Messages;
use invitegate::server::auth::{
    ApiKey, Auth, BasicAuth, BearerAuth, BearerConfig, DevSigner, JwksSource,
};
use invitegate::server::{self, CUSTOM_POLICY_PATH, Config, ENTRA_PATH, Endpoint, USER_FLOW_PATH};
use invitegate::{Audience, DenyList, Expiry, KeyRing, VerifyOptions};
use time::OffsetDateTime;
use warp::Filter as _;
use zeroize::Zeroizing;

use super::codes::{MAX_LEEWAY_SECS, load_deny_list};
use super::{KeySource, Status, keys};

/// Default address: loopback, the Azure Functions local port.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7071);
/// Set by the Azure Functions host for a custom handler.
const FUNCTIONS_PORT_ENV: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
const LISTEN_ENV: &str = "INVITEGATE_LISTEN";
/// Environment variable for the Basic password; there is no flag, so it stays out of `ps`.
const PASSWORD_ENV: &str = "BASIC_AUTH_PASSWORD";
/// Environment variable for the API key; there is no flag, so it stays out of `ps`.
const API_KEY_ENV: &str = "INVITEGATE_API_KEY";
/// Passwords shorter than this get a warning: B2C stores and sends whatever is set.
const SHORT_PASSWORD: usize = 16;
/// The API key header of `--dev` when none is given: the Azure Functions key header.
const DEV_API_KEY_HEADER: &str = "x-functions-key";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: `HOST:PORT`, `IP:PORT` or a port alone (loopback). Default
    /// 127.0.0.1:7071, or 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT under Azure Functions.
    #[arg(long, env = "INVITEGATE_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Whether `listen` came from INVITEGATE_LISTEN rather than the flag.
    #[arg(skip)]
    pub(super) listen_from_env: bool,
    #[command(flatten)]
    keys: KeySource,
    /// Endpoints to serve, comma-separated: user-flow, custom-policy, entra. Default: every
    /// endpoint whose settings are present.
    #[arg(long, env = "INVITEGATE_ENDPOINTS", value_enum, value_delimiter = ',')]
    endpoints: Vec<EndpointName>,
    /// HTTP Basic user name B2C sends. The password comes from BASIC_AUTH_PASSWORD only.
    #[arg(
        long,
        env = "BASIC_AUTH_USERNAME",
        value_name = "NAME",
        hide_env_values = true
    )]
    basic_auth_username: Option<String>,
    /// Header carrying an API key for the custom-policy endpoint (B2C `ApiKeyHeader`), e.g.
    /// x-functions-key. The key comes from INVITEGATE_API_KEY only.
    #[arg(long, env = "INVITEGATE_API_KEY_HEADER", value_name = "NAME")]
    api_key_header: Option<String>,
    /// Serve endpoints that have no credentials configured without authentication. Anyone
    /// who finds the URL can then probe codes.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Application (client) ID of the tenant's b2c-extensions-app (a GUID; hyphens are fine).
    #[arg(
        long,
        env = "B2C_EXTENSIONS_APP_ID",
        value_name = "ID",
        hide_env_values = true
    )]
    extensions_app_id: Option<String>,
    /// Name of the custom attribute holding the code.
    #[arg(
        long,
        env = "INVITATION_CODE_ATTRIBUTE",
        default_value = "InvitationCode"
    )]
    attribute: String,
    /// Custom policy: the claim holding the email address.
    #[arg(long, env = "INVITEGATE_POLICY_EMAIL_CLAIM", default_value = DEFAULT_EMAIL_CLAIM)]
    policy_email_claim: String,
    /// Custom policy: the claim holding the code.
    #[arg(long, env = "INVITEGATE_POLICY_CODE_CLAIM", default_value = DEFAULT_CODE_CLAIM)]
    policy_code_claim: String,
    #[command(flatten)]
    entra: EntraArgs,
    /// Seconds after expiry during which a code still verifies, at most 3600. Also the clock
    /// skew allowed on an Entra token's exp and nbf.
    #[arg(
        long,
        env = "INVITEGATE_LEEWAY",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    leeway: u64,
    /// Revoked codes, one a line, written in any form `verify` accepts.
    #[arg(long, env = "INVITEGATE_DENY_LIST", value_name = "FILE")]
    deny_list: Option<PathBuf>,
    /// Messages by locale (JSON), overriding and adding to the built-in English.
    #[arg(long, env = "INVITEGATE_MESSAGES", value_name = "FILE")]
    messages: Option<PathBuf>,
    /// Keep the code in the directory: do not clear (B2C) or replace (Entra) the attribute.
    #[arg(long)]
    keep_code_attribute: bool,
    /// Log format.
    #[arg(
        long,
        env = "INVITEGATE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Log whole email addresses instead of their domain.
    #[arg(long)]
    log_emails: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// How often to check the key ring, deny list and messages files for changes (they are
    /// also reloaded on SIGHUP); 0s checks only on SIGHUP.
    #[arg(long, env = "INVITEGATE_RELOAD_INTERVAL", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
    /// Development only: every endpoint, throwaway keys and credentials, loopback only, and a
    /// working curl command for each. Production settings in the environment are ignored.
    #[arg(long, conflicts_with_all = ["keys_file", "insecure_no_auth"])]
    dev: bool,
}

/// Connection limits (durations like 10s, 5m).
#[derive(Debug, Args)]
struct LimitArgs {
    /// Time a client has to send a request head, also while a keep-alive connection waits.
    #[arg(long, env = "INVITEGATE_HEADER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Time a keep-alive connection may stay open with no request in flight.
    #[arg(long, env = "INVITEGATE_IDLE_TIMEOUT", value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Age after which a connection is closed, once its request in flight is answered.
    #[arg(long, env = "INVITEGATE_MAX_CONNECTION_AGE", value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    max_connection_age: Duration,
    /// Connections served at once; at the cap the connection idle the longest makes room.
    #[arg(long, env = "INVITEGATE_MAX_CONNECTIONS", value_name = "N", default_value_t = server::connection::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Time given at shutdown (SIGTERM, Ctrl-C) to answer the requests received.
    #[arg(long, env = "INVITEGATE_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<server::connection::Limits> {
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        for (name, value) in [
            ("--header-timeout", self.header_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--max-connection-age", self.max_connection_age),
        ] {
            if value.is_zero() {
                bail!("{name} must be longer than zero");
            }
        }
        Ok(server::connection::Limits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_age: self.max_connection_age,
            max_connections: self.max_connections,
            drain_timeout: self.drain_timeout,
        })
    }
}

/// Microsoft Entra External ID settings.
#[derive(Debug, Args)]
struct EntraArgs {
    /// Entra: the token issuer, https://{subdomain}.ciamlogin.com/{tenantId}/v2.0. Turns the
    /// Entra endpoint on.
    #[arg(long, env = "ENTRA_ISSUER", value_name = "URL")]
    entra_issuer: Option<String>,
    /// Entra: accepted token audiences, comma-separated: the custom extension's app id and/or
    /// its api:// URI.
    #[arg(
        long,
        env = "ENTRA_AUDIENCE",
        value_name = "IDS",
        value_delimiter = ','
    )]
    entra_audience: Vec<String>,
    /// Entra: where the signing keys are, instead of the issuer's OpenID metadata.
    #[arg(long, env = "ENTRA_JWKS_URL", value_name = "URL")]
    entra_jwks_url: Option<String>,
    /// Entra: a JWKS file, for hosts that cannot reach the tenant.
    #[arg(
        long,
        env = "ENTRA_JWKS_FILE",
        value_name = "PATH",
        conflicts_with = "entra_jwks_url"
    )]
    entra_jwks_file: Option<PathBuf>,
}

/// The endpoints `serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EndpointName {
    /// Azure AD B2C user flow API connector.
    UserFlow,
    /// Azure AD B2C custom policy RESTful technical profile.
    CustomPolicy,
    /// Microsoft Entra External ID OnAttributeCollectionSubmit.
    Entra,
}

/// `invitegate serve`.
pub fn serve(args: &ServeArgs) -> anyhow::Result<Status> {
    // Held to the end: dropping it writes out the lines still queued.
    let logging = init_logging(args.log_format);
    let listen = listen_address(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let (mut config, dev_banner) = if args.dev {
            let (config, banner) = dev_config(args, listen).await?;
            (config, Some(banner))
        } else {
            (config(args).await?, None)
        };
        config.dropped_log_lines = logging.as_ref().map(server::log::Logging::dropped).unwrap_or_default();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!("binding {listen}; is another server on that port? pass --listen ADDR")
            })?;
        let bound = listener.local_addr().context("reading the bound address")?;
        if let Some(banner) = dev_banner {
            // Whoever started us may stop reading once the banner is in: a closed stdout must
            // not stop the server, so the write's result is not a reason to panic.
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", banner.replace("{addr}", &bound.to_string()))
                .and_then(|()| stdout.flush());
        }
        tracing::info!(address = %bound, endpoints = %config.paths().join(", "), "invitegate serving");
        server::run(listener, config, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(Status::Success)
}

/// `--listen`: `IP:PORT`, `HOST:PORT` (resolved once, first address) or a port alone.
fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut resolved = text.to_socket_addrs().with_context(|| {
        format!("--listen {text:?} is not PORT, IP:PORT or HOST:PORT (e.g. 8080, 0.0.0.0:8080)")
    })?;
    resolved
        .next()
        .with_context(|| format!("--listen {text:?} resolves to no address"))
}

/// Where `serve` without `--listen` listens: INVITEGATE_LISTEN, else
/// FUNCTIONS_CUSTOMHANDLER_PORT on loopback, else the default.
///
/// # Errors
///
/// When either variable does not parse.
pub fn default_listen_address() -> anyhow::Result<SocketAddr> {
    let listen = std::env::var(LISTEN_ENV).ok();
    listen_from(listen.as_ref())
}

fn listen_address(args: &ServeArgs) -> anyhow::Result<SocketAddr> {
    let listen = listen_from(listen_flag(args))?;
    if args.dev && !listen.ip().is_loopback() {
        bail!("--dev listens on loopback only; {listen} is not a loopback address");
    }
    Ok(listen)
}

/// The address from `--listen` (or INVITEGATE_LISTEN, as clap reads it), else from
/// FUNCTIONS_CUSTOMHANDLER_PORT, else the default.
fn listen_from(given: Option<&String>) -> anyhow::Result<SocketAddr> {
    Ok(match (given, std::env::var(FUNCTIONS_PORT_ENV)) {
        (Some(addr), _) => parse_listen(addr)?,
        (None, Ok(port)) => {
            let port: u16 = port
                .trim()
                .parse()
                .with_context(|| format!("{FUNCTIONS_PORT_ENV} is not a port number"))?;
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
        }
        (None, Err(_)) => DEFAULT_LISTEN,
    })
}

/// The verifier from its parts: `ring`, the deny list and messages files (if any) and the
/// leeway. Start-up and every reload read them through this one function.
fn read_verifier(
    ring: KeyRing,
    deny_list: Option<&Path>,
    messages: Option<&Path>,
    leeway: u64,
) -> anyhow::Result<Verifier> {
    let deny_list = match deny_list {
        Some(path) => load_deny_list(path)?,
        None => DenyList::new(),
    };
    let messages = match messages {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading messages file {}", path.display()))?;
            Messages::from_json(&text)
                .with_context(|| format!("reading messages file {}", path.display()))?
        }
        None => Messages::english(),
    };
    Ok(Verifier {
        ring,
        options: VerifyOptions {
            leeway: Duration::from_secs(leeway),
            deny_list,
        },
        messages,
    })
}

/// The b2c-extensions-app id: a GUID, with or without hyphens, any case.
fn extensions_app_id(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let Some(id) = args.extensions_app_id.as_deref().map(str::trim) else {
        return Ok(None);
    };
    let hex: String = id.chars().filter(|&c| c != '-').collect();
    let grouped = id.len() == 36
        && id
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) || !(grouped || id == hex) {
        bail!(
            "B2C_EXTENSIONS_APP_ID is not a GUID: give the Application (client) ID of the \
             tenant's b2c-extensions-app, e.g. 93fd07aa-333c-409d-955d-96008fd08dd9 (App \
             registrations > All applications > b2c-extensions-app)"
        );
    }
    Ok(Some(hex.to_ascii_lowercase()))
}

/// Basic credentials from the environment, if both parts are set.
fn basic_auth(args: &ServeArgs) -> anyhow::Result<Option<BasicAuth>> {
    let user = args
        .basic_auth_username
        .as_deref()
        .filter(|u| !u.is_empty());
    let password = std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .map(Zeroizing::new);
    match (user, password) {
        (Some(user), Some(password)) => {
            if password.chars().count() < SHORT_PASSWORD {
                tracing::warn!("{PASSWORD_ENV} is shorter than {SHORT_PASSWORD} characters");
            }
            Ok(Some(BasicAuth::new(user, &password)))
        }
        (None, None) => Ok(None),
        (Some(_), None) => bail!(
            "BASIC_AUTH_USERNAME (--basic-auth-username) is set but {PASSWORD_ENV} is not: set \
             the password in the environment"
        ),
        (None, Some(_)) => {
            bail!("{PASSWORD_ENV} is set but BASIC_AUTH_USERNAME (--basic-auth-username) is not")
        }
    }
}

/// The API key, if `--api-key-header` and INVITEGATE_API_KEY are both set.
fn api_key(args: &ServeArgs) -> anyhow::Result<Option<ApiKey>> {
    let key = std::env::var(API_KEY_ENV)
        .ok()
        .filter(|k| !k.is_empty())
        .map(Zeroizing::new);
    match (&args.api_key_header, key) {
        (Some(header), Some(key)) => Ok(Some(ApiKey::new(header, &key)?)),
        (None, None) => Ok(None),
        (Some(_), None) => bail!(
            "--api-key-header (INVITEGATE_API_KEY_HEADER) is set but {API_KEY_ENV} is not: set \
             the key"
        ),
        (None, Some(_)) => bail!(
            "{API_KEY_ENV} is set but --api-key-header is not: name the header the policy \
             sends it in (e.g. --api-key-header x-functions-key, or the setting \
             INVITEGATE_API_KEY_HEADER=x-functions-key)"
        ),
    }
}

/// The keys, deny list and messages, read from their sources, with the leeway checked.
fn load_verifier(args: &ServeArgs, ring: KeyRing) -> anyhow::Result<Verifier> {
    if args.leeway > MAX_LEEWAY_SECS {
        bail!(
            "--leeway is at most {MAX_LEEWAY_SECS} seconds; a longer one extends every code's life"
        );
    }
    read_verifier(
        ring,
        args.deny_list.as_deref(),
        args.messages.as_deref(),
        args.leeway,
    )
}

/// How to read the verifier again on SIGHUP or when one of its files changes.
fn reload_source(args: &ServeArgs) -> server::reload::ReloadSource {
    let keys = args.keys.clone();
    let deny_list = args.deny_list.clone();
    let messages_file = args.messages.clone();
    let leeway = args.leeway;
    let mut files: Vec<PathBuf> = [&args.keys.keys_file, &args.deny_list, &args.messages]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if args.keys.keys_file.is_none()
        && let Some(path) = std::env::var_os(keys::KEYS_FILE_ENV).filter(|p| !p.is_empty())
    {
        files.push(PathBuf::from(path));
    }
    let load = move || -> Result<Verifier, String> {
        keys::load(&keys)
            .and_then(|ring| {
                read_verifier(ring, deny_list.as_deref(), messages_file.as_deref(), leeway)
            })
            .map_err(|err| format!("{err:#}"))
    };
    server::reload::ReloadSource {
        load: Box::new(load),
        files,
        interval: Some(args.reload_interval).filter(|i| !i.is_zero()),
    }
}

/// Everything but the endpoints: the verifier and the logging choice.
fn base_config(args: &ServeArgs, ring: KeyRing) -> anyhow::Result<Config> {
    let verifier = load_verifier(args, ring)?;
    let mut config = Config::new(verifier);
    config.log_emails = args.log_emails;
    config.limits = args.limits.limits()?;
    Ok(config)
}

fn user_flow(args: &ServeArgs, names: &AttributeNames) -> UserFlow {
    UserFlow {
        attribute: names.clone(),
        keep_code_attribute: args.keep_code_attribute,
    }
}

fn custom_policy(args: &ServeArgs) -> CustomPolicy {
    CustomPolicy {
        email_claim: args.policy_email_claim.clone(),
        code_claim: args.policy_code_claim.clone(),
    }
}

fn entra(args: &ServeArgs, names: &AttributeNames) -> Entra {
    Entra {
        attribute: names.clone(),
        keep_code_attribute: args.keep_code_attribute,
    }
}

/// The production configuration: each endpoint on whose settings are present (or that
/// `--endpoints` names), each with its authentication.
async fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    let basic = basic_auth(args)?;
    let api_key = api_key(args)?;
    let entra_set = args.entra.entra_issuer.is_some();
    let chosen = |name: EndpointName, present: bool| {
        if args.endpoints.is_empty() {
            present
        } else {
            args.endpoints.contains(&name)
        }
    };
    let unauthenticated = |name: &str, needs: &str| -> anyhow::Result<Auth> {
        if args.insecure_no_auth {
            tracing::warn!("{name}: serving WITHOUT authentication (--insecure-no-auth)");
            Ok(Auth::None)
        } else {
            bail!("the {name} endpoint has no authentication: {needs}, or pass --insecure-no-auth")
        }
    };
    let insecure_default = args.insecure_no_auth && args.endpoints.is_empty();
    let app_id = extensions_app_id(args)?;
    let names = AttributeNames::new(&args.attribute, app_id.as_deref());
    let ring = keys::load(&args.keys)?;
    let mut config = base_config(args, ring)?;
    if chosen(
        EndpointName::UserFlow,
        basic.is_some() || (insecure_default && !entra_set),
    ) {
        let auth = match &basic {
            Some(basic) => Auth::Basic(basic.clone()),
            None => unauthenticated(
                "user-flow",
                &format!(
                    "set BASIC_AUTH_USERNAME and {PASSWORD_ENV} (the API connector's user \
                 name and password in the B2C portal)"
                ),
            )?,
        };
        config.user_flow = Some(Endpoint::new(auth, user_flow(args, &names)));
    }
    if chosen(
        EndpointName::CustomPolicy,
        basic.is_some() || api_key.is_some() || (insecure_default && !entra_set),
    ) {
        let auth = match (&api_key, &basic) {
            (Some(key), _) => Auth::ApiKey(key.clone()),
            (None, Some(basic)) => Auth::Basic(basic.clone()),
            (None, None) => unauthenticated(
                "custom-policy",
                &format!(
                    "set BASIC_AUTH_USERNAME and {PASSWORD_ENV}, or --api-key-header and \
                 {API_KEY_ENV}"
                ),
            )?,
        };
        config.custom_policy = Some(Endpoint::new(auth, custom_policy(args)));
    }
    if chosen(EndpointName::Entra, entra_set) {
        let auth = entra_auth(args).await?;
        config.entra = Some(Endpoint::new(auth, entra(args, &names)));
    }
    config.metrics_auth = match (basic, api_key) {
        (Some(basic), _) => Some(Auth::Basic(basic)),
        (None, Some(key)) => Some(Auth::ApiKey(key)),
        (None, None) => None,
    };
    config.reload = Some(reload_source(args));
    if config.paths().is_empty() {
        bail!(
            "no endpoint to serve: set BASIC_AUTH_USERNAME and {PASSWORD_ENV} (B2C user flows \
             and custom policies), --api-key-header and {API_KEY_ENV} (custom policies), or \
             ENTRA_ISSUER and ENTRA_AUDIENCE (Entra External ID); try `invitegate serve --dev`"
        );
    }
    announce(&config, &names);
    Ok(config)
}

/// The Entra endpoint's bearer-token authentication: the key set is fetched before the
/// server starts, then refreshed on a schedule.
async fn entra_auth(args: &ServeArgs) -> anyhow::Result<Auth> {
    let entra = &args.entra;
    let Some(issuer) = entra.entra_issuer.as_deref().map(str::trim) else {
        return unauthenticated_entra(args);
    };
    let audiences: Vec<String> = entra
        .entra_audience
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if audiences.is_empty() {
        bail!(
            "ENTRA_ISSUER is set but ENTRA_AUDIENCE is not: give the custom authentication \
             extension's app id and/or its api:// URI, comma-separated"
        );
    }
    if !looks_like_entra_issuer(issuer) {
        tracing::warn!(
            issuer,
            "ENTRA_ISSUER does not look like https://{{subdomain}}.ciamlogin.com/{{tenantId}}/v2.0; \
             tokens must carry exactly this iss"
        );
    }
    let jwks = match (&entra.entra_jwks_url, &entra.entra_jwks_file) {
        (Some(url), _) => JwksSource::Url(url.clone()),
        (None, Some(path)) => JwksSource::File(path.clone()),
        (None, None) => JwksSource::Metadata,
    };
    let mut config = BearerConfig::new(issuer.to_owned(), audiences, jwks);
    config.leeway = Duration::from_secs(args.leeway);
    let bearer = BearerAuth::start(config).await.context(
        "loading the Entra signing keys (ENTRA_ISSUER, ENTRA_JWKS_URL, ENTRA_JWKS_FILE)",
    )?;
    bearer.spawn_refresh();
    Ok(Auth::Bearer(bearer))
}

/// Whether `issuer` has the shape Entra External ID uses.
fn looks_like_entra_issuer(issuer: &str) -> bool {
    issuer
        .strip_prefix("https://")
        .and_then(|rest| rest.split_once(".ciamlogin.com/"))
        .is_some_and(|(subdomain, rest)| {
            !subdomain.is_empty()
                && rest
                    .strip_suffix("/v2.0")
                    .is_some_and(|tenant| !tenant.is_empty() && !tenant.contains('/'))
        })
}

fn unauthenticated_entra(args: &ServeArgs) -> anyhow::Result<Auth> {
    if args.insecure_no_auth {
        tracing::warn!("entra: serving WITHOUT authentication (--insecure-no-auth)");
        Ok(Auth::None)
    } else {
        bail!(
            "the entra endpoint has no authentication: set ENTRA_ISSUER and ENTRA_AUDIENCE, or \
             pass --insecure-no-auth"
        )
    }
}

/// Says, per endpoint, whether it is on and how it is authenticated.
fn announce(config: &Config, names: &AttributeNames) {
    let endpoints = [
        (
            "user-flow",
            USER_FLOW_PATH,
            config.user_flow.as_ref().map(|e| &e.auth),
        ),
        (
            "custom-policy",
            CUSTOM_POLICY_PATH,
            config.custom_policy.as_ref().map(|e| &e.auth),
        ),
        ("entra", ENTRA_PATH, config.entra.as_ref().map(|e| &e.auth)),
    ];
    for (name, path, auth) in endpoints {
        match auth {
            Some(auth) => tracing::info!(
                endpoint = name,
                path,
                auth = %auth.describe(),
                "endpoint on"
            ),
            None => tracing::info!(endpoint = name, path, "endpoint off"),
        }
    }
    let reads_attribute = config.user_flow.is_some() || config.entra.is_some();
    if reads_attribute && !names.has_app_id() {
        tracing::warn!(
            attribute = names.response_name(),
            "B2C_EXTENSIONS_APP_ID is not set: the code is read only from this attribute, but \
             B2C user flows and Entra send extension_<appid>_<attribute>; every sign-up will be \
             answered 'missing code' until it is set"
        );
    } else if reads_attribute {
        tracing::info!(
            attribute = names.response_name(),
            "the code is read from this attribute (and extension_<attribute> without the app id)"
        );
    }
    if config.metrics_auth.is_none() {
        tracing::info!("/metrics is off: it needs Basic credentials or an API key to protect it");
    }
}

/// `--listen`, but not a non-loopback `INVITEGATE_LISTEN` under `--dev`: that is a production
/// setting, which `--dev` ignores (given as a flag, it is refused).
fn listen_flag(args: &ServeArgs) -> Option<&String> {
    args.listen
        .as_ref()
        .filter(|_| !listen_env_ignored_in_dev(args))
}

/// Whether the address came from a non-loopback `INVITEGATE_LISTEN` under `--dev`.
fn listen_env_ignored_in_dev(args: &ServeArgs) -> bool {
    args.dev
        && args.listen_from_env
        && !args
            .listen
            .as_deref()
            .is_some_and(|text| parse_listen(text).is_ok_and(|addr| addr.ip().is_loopback()))
}

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
        "ENTRA_ISSUER",
        "ENTRA_AUDIENCE",
        "ENTRA_JWKS_URL",
        "ENTRA_JWKS_FILE",
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
async fn dev_config(args: &ServeArgs, listen: SocketAddr) -> anyhow::Result<(Config, String)> {
    let ignored = ignored_in_dev(args);
    if !ignored.is_empty() {
        eprintln!(
            "invitegate: --dev ignores these production settings: {}",
            ignored.join(", ")
        );
    }
    let key = random::<32>()?;
    let ring = KeyRing::from_key(1, key.as_slice())?;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let password = Zeroizing::new(encode(random::<18>()?.as_slice()));
    let api_key_value = Zeroizing::new(encode(random::<24>()?.as_slice()));
    let header = args.api_key_header.as_deref().unwrap_or(DEV_API_KEY_HEADER);
    let expiry = Expiry::from_datetime(OffsetDateTime::now_utc() + time::Duration::days(1))?;
    let code = invitegate::mint(&ring, &Audience::email("alice@example.com")?, expiry);
    let app_id = extensions_app_id(args)?;
    let names = AttributeNames::new(&args.attribute, app_id.as_deref());
    let mut config = base_config(args, ring)?;
    let basic = BasicAuth::new("dev", &password);
    config.user_flow = Some(Endpoint::new(
        Auth::Basic(basic.clone()),
        user_flow(args, &names),
    ));
    config.custom_policy = Some(Endpoint::new(
        Auth::ApiKey(ApiKey::new(header, &api_key_value)?),
        custom_policy(args),
    ));
    let (entra_auth, entra_curl) = dev_entra(args, &names, &code.to_string()).await?;
    config.entra = Some(Endpoint::new(entra_auth, entra(args, &names)));
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

/// Starts the non-blocking log writer on stderr; `INVITEGATE_LOG` sets the filter.
fn init_logging(format: LogFormat) -> Option<server::log::Logging> {
    let filter = std::env::var("INVITEGATE_LOG").unwrap_or_else(|_| "info".to_owned());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    server::log::init(
        &filter,
        matches!(format, LogFormat::Json),
        ansi,
        std::io::stderr(),
    )
}

/// Completes on Ctrl-C or, on Unix, SIGTERM (what container platforms and the Functions host
/// send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
