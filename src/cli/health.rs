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
    /// The health URL (http only, as a container reaches its own port).
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    url: String,
}

/// `invitegate healthcheck`: exit 0 when the server answers 200, 1 otherwise.
pub fn healthcheck(args: &HealthArgs) -> anyhow::Result<Status> {
    let Some(rest) = args.url.strip_prefix("http://") else {
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
            eprintln!("invitegate: {} answered {status}", args.url);
            Ok(Status::NotVerified)
        }
        Err(err) => {
            eprintln!("invitegate: {}: {err}", args.url);
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
