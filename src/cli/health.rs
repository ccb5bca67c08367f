//! `invitegate healthcheck`: asks a running server's `/healthz`, for container health checks
//! on images that have no shell or curl.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use super::Status;

/// Time for the whole probe: connect, send, answer. A container runtime's own timeout is
/// usually 3 s or more.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of the answer read at most: the status line is all that counts.
const MAX_ANSWER: u64 = 4096;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The health URL (http only, as a container reaches its own port). Default: `/healthz`
    /// where `serve` listens with the same environment: INVITEGATE_METRICS_LISTEN (plain HTTP
    /// even when `serve` speaks TLS), else INVITEGATE_LISTEN, else
    /// 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT, else 127.0.0.1:7071.
    #[arg(long)]
    url: Option<String>,
}

/// `/healthz` where `serve` would listen with this environment (a wildcard address is
/// reached on loopback).
fn default_url() -> anyhow::Result<String> {
    let mut addr = match std::env::var("INVITEGATE_METRICS_LISTEN") {
        Ok(metrics) => super::serve::parse_listen(&metrics).context("INVITEGATE_METRICS_LISTEN")?,
        Err(_) if std::env::var_os("INVITEGATE_TLS_CERT").is_some() => bail!(
            "serve speaks TLS here (INVITEGATE_TLS_CERT) and healthcheck plain HTTP: set \
             INVITEGATE_METRICS_LISTEN, whose listener serves /healthz in plain HTTP, or pass \
             --url"
        ),
        Err(_) => super::serve::default_listen_address()?,
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(format!("http://{addr}/healthz"))
}

/// `invitegate healthcheck`: exit 0 when the server answers 200, 1 otherwise.
pub fn healthcheck(args: &HealthArgs) -> anyhow::Result<Status> {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => default_url()?,
    };
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--url must start with http:// (the probe runs beside the server, without TLS)");
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("--url: {authority:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("--url: {authority:?} resolves to no address"))?;
    let answer = probe(addr, authority, &path);
    match answer {
        Ok(200) => Ok(Status::Success),
        Ok(status) => {
            eprintln!("invitegate: {url} answered {status}");
            Ok(Status::NotVerified)
        }
        Err(err) => {
            eprintln!("invitegate: {url}: {err}");
            Ok(Status::NotVerified)
        }
    }
}

/// GETs `path` and returns the status code.
fn probe(addr: std::net::SocketAddr, host: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.take(MAX_ANSWER).read_to_string(&mut answer)?;
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("the answer is not HTTP/1.1"))
}
