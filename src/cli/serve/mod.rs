//! `invitegate serve`: configuration from flags and the environment, then `server::run`.

mod args;
mod check;
mod dev;

pub use args::ServeArgs;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs as _};

use anyhow::{Context as _, bail};
use invitegate::server::config::{self as settings, Built, Problem};
use invitegate::server::{self, Config};

use super::Status;
use args::{LogFormat, settings_from};

/// Default address: loopback, the Azure Functions local port.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7071);
/// Set by the Azure Functions host for a custom handler.
const FUNCTIONS_PORT_ENV: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
const LISTEN_ENV: &str = "INVITEGATE_LISTEN";

/// `invitegate serve`.
pub fn serve(args: &ServeArgs) -> anyhow::Result<Status> {
    // Held to the end: dropping it writes out the lines still queued.
    let logging = init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.check {
        return runtime.block_on(check::check(args));
    }
    let listen = listen_address(args)?;
    runtime.block_on(async {
        let (mut config, dev_banner) = if args.dev {
            let (config, banner) = dev::dev_config(args, listen).await?;
            (config, Some(banner))
        } else {
            (production_config(args).await?, None)
        };
        config.dropped_log_lines = logging.as_ref().map(server::log::Logging::dropped).unwrap_or_default();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!("binding {listen}; is another server on that port? pass --listen ADDR")
            })?;
        let bound = listener.local_addr().context("reading the bound address")?;
        if let Some(warning) = settings::plain_http_warning(bound, config.tls.is_some()) {
            tracing::warn!("{warning}");
        }
        let metrics_at = match &args.metrics_listen {
            Some(text) => {
                let address = parse_listen(text).context("--metrics-listen")?;
                let metrics_listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding --metrics-listen {address}"))?;
                let at = metrics_listener
                    .local_addr()
                    .context("reading the metrics listener's address")?;
                config.metrics_listener = Some(metrics_listener);
                Some(at)
            }
            None => None,
        };
        announce_metrics(&config, metrics_at);
        if let Some(banner) = dev_banner {
            // Whoever started us may stop reading once the banner is in: a closed stdout must
            // not stop the server, so the write's result is not a reason to panic.
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", banner.replace("{addr}", &bound.to_string()))
                .and_then(|()| stdout.flush());
        }
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %bound, scheme, endpoints = %config.paths().join(", "), "invitegate serving");
        server::run(listener, config, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(Status::Success)
}

/// `--listen`: `IP:PORT`, `HOST:PORT` (resolved once, first address) or a port alone.
pub(super) fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
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

/// One error holding every problem, one a line.
fn problems_error(problems: &[Problem]) -> anyhow::Error {
    match problems {
        [one] => anyhow::anyhow!("{one}"),
        many => anyhow::anyhow!(
            "{} problems in the configuration:\n{}",
            many.len(),
            many.iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// The production configuration, with the Entra keys fetched (or being retried).
async fn production_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let built = settings::build(&settings_from(args)).map_err(|p| problems_error(&p))?;
    for warning in &built.warnings {
        tracing::warn!("{warning}");
    }
    for pending in &built.pending {
        tracing::error!(setting = pending.setting, "{pending}");
    }
    settings::fetch_entra_keys_at_start(&built).await;
    announce(&built);
    Ok(built.config)
}

/// Says, per endpoint, whether it is on, how it is authenticated and what it reads; for Entra
/// also the accepted issuers, audiences, key source and keys held.
fn announce(built: &Built) {
    for endpoint in settings::summary(&built.config, &built.names) {
        match &endpoint.auth {
            Some(auth) => tracing::info!(
                endpoint = endpoint.name,
                path = endpoint.path,
                auth = %auth,
                reads = endpoint.reads.as_deref(),
                waiting = endpoint.waiting,
                "endpoint on"
            ),
            None => tracing::info!(
                endpoint = endpoint.name,
                path = endpoint.path,
                "endpoint off"
            ),
        }
    }
    if let Some(bearer) = built.entra_bearer() {
        let config = bearer.config();
        tracing::info!(
            endpoint = "entra",
            issuers = %bearer.describe_issuers(),
            audiences = %config.audiences.join(", "),
            tenant = config.tenant.as_deref(),
            keys_from = %bearer.source_name(),
            key_set = bearer.jwks_uri().as_deref(),
            keys = bearer.key_count(),
            "entra bearer tokens"
        );
    }
}

/// Says where the metrics are: on the main listener behind the endpoint credentials, on the
/// metrics listener without authentication, both, or nowhere.
fn announce_metrics(config: &Config, metrics_at: Option<SocketAddr>) {
    if let Some(at) = metrics_at {
        tracing::info!(
            address = %at,
            "metrics listener: GET /metrics without authentication, /healthz and /readyz, in \
             plain HTTP"
        );
    }
    match (&config.metrics_auth, metrics_at) {
        (Some(auth), _) => tracing::info!(
            auth = %auth.describe(),
            "/metrics on the main listener, behind the endpoint credentials"
        ),
        (None, Some(at)) => tracing::info!(
            "/metrics is off on the main listener (no Basic credentials or API key to protect \
             it); scrape http://{at}/metrics"
        ),
        (None, None) => tracing::info!(
            "/metrics is off: it needs Basic credentials or an API key to protect it, or \
             --metrics-listen ADDR to serve it apart without authentication"
        ),
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
