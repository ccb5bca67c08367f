//! `invitegate serve`: configuration from flags and the environment, then `server::run`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use invitegate::connector::b2c::AttributeNames;
use invitegate::server::auth::BasicAuth;
use invitegate::server::messages::Messages;
use invitegate::server::{self, Config, USER_FLOW_PATH};
use invitegate::{Audience, DenyList, Expiry, KeyRing, VerifyOptions};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::codes::{MAX_LEEWAY_SECS, load_deny_list};
use super::{KeySource, Status, keys};

/// Default address: loopback, the Azure Functions local port.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7071);
/// Set by the Azure Functions host for a custom handler.
const FUNCTIONS_PORT_ENV: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
/// Environment variable for the Basic password; there is no flag, so it stays out of `ps`.
const PASSWORD_ENV: &str = "BASIC_AUTH_PASSWORD";
/// Passwords shorter than this get a warning: B2C stores and sends whatever is set.
const SHORT_PASSWORD: usize = 16;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Default 127.0.0.1:7071, or 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT
    /// under Azure Functions.
    #[arg(long, env = "INVITEGATE_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    keys: KeySource,
    /// HTTP Basic user name B2C sends. The password comes from BASIC_AUTH_PASSWORD only.
    #[arg(
        long,
        env = "BASIC_AUTH_USERNAME",
        value_name = "NAME",
        hide_env_values = true
    )]
    basic_auth_username: Option<String>,
    /// Serve without authentication. Anyone who finds the URL can then probe codes.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Application (client) ID of the tenant's b2c-extensions-app; hyphens are fine.
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
    /// Seconds after expiry during which a code still verifies, at most 3600.
    #[arg(
        long,
        env = "INVITEGATE_LEEWAY",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    leeway: u64,
    /// Revoked codes, one canonical code a line.
    #[arg(long, env = "INVITEGATE_DENY_LIST", value_name = "FILE")]
    deny_list: Option<PathBuf>,
    /// Messages by locale (JSON), overriding and adding to the built-in English.
    #[arg(long, env = "INVITEGATE_MESSAGES", value_name = "FILE")]
    messages: Option<PathBuf>,
    /// Keep the code in the directory: do not clear the attribute on Continue.
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
    /// Development only: throwaway keys and credentials, loopback only, and a test code.
    #[arg(long, conflicts_with_all = ["keys_file", "basic_auth_username", "insecure_no_auth"])]
    dev: bool,
}

/// `invitegate serve`.
pub fn serve(args: &ServeArgs) -> anyhow::Result<Status> {
    init_logging(args.log_format);
    let listen = listen_address(args)?;
    let (config, dev_banner) = if args.dev {
        dev_config(args, listen)?
    } else {
        (config(args)?, None)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!("binding {listen}; is another server on that port? pass --listen ADDR")
            })?;
        let bound = listener.local_addr().context("reading the bound address")?;
        if let Some(banner) = dev_banner {
            println!("{}", banner.replace("{addr}", &bound.to_string()));
        }
        tracing::info!(address = %bound, path = USER_FLOW_PATH, "invitegate serving");
        server::run(listener, config, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(Status::Success)
}

fn listen_address(args: &ServeArgs) -> anyhow::Result<SocketAddr> {
    let listen = match (args.listen, std::env::var(FUNCTIONS_PORT_ENV)) {
        (Some(addr), _) => addr,
        (None, Ok(port)) => {
            let port: u16 = port
                .trim()
                .parse()
                .with_context(|| format!("{FUNCTIONS_PORT_ENV} is not a port number"))?;
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
        }
        (None, Err(_)) => DEFAULT_LISTEN,
    };
    if args.dev && !listen.ip().is_loopback() {
        bail!("--dev listens on loopback only; {listen} is not a loopback address");
    }
    Ok(listen)
}

fn verify_options(args: &ServeArgs) -> anyhow::Result<VerifyOptions> {
    if args.leeway > MAX_LEEWAY_SECS {
        bail!(
            "--leeway is at most {MAX_LEEWAY_SECS} seconds; a longer one extends every code's life"
        );
    }
    let deny_list = match &args.deny_list {
        Some(path) => load_deny_list(path)?,
        None => DenyList::new(),
    };
    Ok(VerifyOptions {
        leeway: Duration::from_secs(args.leeway),
        deny_list,
    })
}

fn messages(args: &ServeArgs) -> anyhow::Result<Messages> {
    let Some(path) = &args.messages else {
        return Ok(Messages::english());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading messages file {}", path.display()))?;
    Messages::from_json(&text).with_context(|| format!("reading messages file {}", path.display()))
}

fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    let auth = match (
        &args.basic_auth_username,
        std::env::var(PASSWORD_ENV),
        args.insecure_no_auth,
    ) {
        (_, _, true) => {
            tracing::warn!("serving WITHOUT authentication (--insecure-no-auth)");
            None
        }
        (Some(user), Ok(password), false) if !user.is_empty() && !password.is_empty() => {
            let password = Zeroizing::new(password);
            if password.chars().count() < SHORT_PASSWORD {
                tracing::warn!("{PASSWORD_ENV} is shorter than {SHORT_PASSWORD} characters");
            }
            Some(BasicAuth::new(user, &password))
        }
        _ => bail!(
            "no Basic credentials: set BASIC_AUTH_USERNAME and {PASSWORD_ENV} (the API \
             connector's user name and password in the B2C portal), or pass --insecure-no-auth"
        ),
    };
    let ring = keys::load(&args.keys)?;
    assemble(args, ring, auth)
}

/// The configuration from the flags, given the ring and credentials (real or throwaway).
fn assemble(args: &ServeArgs, ring: KeyRing, auth: Option<BasicAuth>) -> anyhow::Result<Config> {
    Ok(Config {
        ring,
        verify: verify_options(args)?,
        auth,
        attribute: AttributeNames::new(&args.attribute, args.extensions_app_id.as_deref()),
        keep_code_attribute: args.keep_code_attribute,
        messages: messages(args)?,
        log_emails: args.log_emails,
    })
}

/// A throwaway ring and password, a code for alice@example.com, and the banner to print.
fn dev_config(args: &ServeArgs, listen: SocketAddr) -> anyhow::Result<(Config, Option<String>)> {
    let mut secret = Zeroizing::new([0u8; 50]);
    getrandom::fill(secret.as_mut_slice())
        .map_err(|err| anyhow::anyhow!("the operating system's random source failed: {err}"))?;
    let (key, password_bytes) = secret.split_at(32);
    let ring = KeyRing::from_key(1, key)?;
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(password_bytes);
    let expiry = Expiry::from_datetime(OffsetDateTime::now_utc() + time::Duration::days(1))?;
    let code = invitegate::mint(&ring, &Audience::email("alice@example.com")?, expiry);
    let config = assemble(args, ring, Some(BasicAuth::new("dev", &password)))?;
    let url = format!("http://{{addr}}{USER_FLOW_PATH}");
    let claim = config.attribute.response_name();
    let banner = format!(
        "\n================ DEVELOPMENT ONLY: NOT FOR PRODUCTION ================
invitegate is serving with a throwaway key ring and password that change
at every start. Codes minted here verify nowhere else.

  endpoint   {url}
  user       dev
  password   {password}
  test code  {code}  (for alice@example.com, expires {expiry})

Try it (answers {{\"version\":\"1.0.0\",\"action\":\"Continue\",...}}):

  curl -s -u 'dev:{password}' -H 'Content-Type: application/json' \\
    -d '{{\"email\":\"alice@example.com\",\"{claim}\":\"{code}\",\"step\":\"PostAttributeCollection\"}}' \\
    {url}
=======================================================================\n"
    );
    tracing::warn!(address = %listen, "development mode: throwaway keys and credentials");
    Ok((config, Some(banner)))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INVITEGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second initialization (only possible in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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
