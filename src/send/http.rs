//! The HTTP side of sending through Microsoft: one reqwest client over rustls for Entra's
//! token endpoint and Graph (bounded in time, following no redirect), the rule for their
//! URLs (https, or http on loopback for tests), and bounded, one-line reading of replies.

use std::time::Duration;

use reqwest::Url;

use crate::Error;
use crate::https::TlsSetupError;

/// How long a request to the token endpoint or Graph may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting may take: a host that does not answer in this long is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The most of a reply body read from the token endpoint or Graph: a token reply or an error
/// is a few kilobytes; a server that sends more is not one of them.
const MAX_REPLY_BYTES: usize = 256 * 1024;

/// The longest error text kept from a token endpoint or Graph: enough for the code and the
/// first sentence, not a page of HTML.
const MAX_ERROR_TEXT: usize = 300;

/// Parses a URL given by `flag`: `https://`, or `http://` for a loopback host (a test).
///
/// # Errors
///
/// [`Error::Config`] when it is not such a URL.
pub fn parse_url(flag: &str, text: &str) -> Result<Url, Error> {
    // A password typed into the URL must not come back in the message.
    let shown = if text.contains('@') {
        "(a URL with a user)".to_owned()
    } else {
        format!("{text:?}")
    };
    let bad = |why: &str| Error::Config {
        reason: format!("{flag} {shown}: {why}"),
    };
    let url = Url::parse(text).map_err(|_| bad("not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("a URL carries no user or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("give the URL without a query"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(bad(
            "http:// only for a loopback host (127.0.0.1, ::1, localhost); use https://",
        )),
        _ => Err(bad("the scheme must be https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `base` with `segments` appended as path segments (each percent-encoded as one).
pub(crate) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// A reply's body, up to [`MAX_REPLY_BYTES`] (the rest is not read).
///
/// # Errors
///
/// reqwest's, when the body cannot be read.
pub(crate) async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_REPLY_BYTES.saturating_sub(body.len());
        body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        if body.len() >= MAX_REPLY_BYTES {
            break;
        }
    }
    Ok(body)
}

/// `text` cut to [`MAX_ERROR_TEXT`] characters, control characters made spaces.
pub(crate) fn cut(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_TEXT)
        .collect();
    if text.chars().count() > MAX_ERROR_TEXT {
        out.push('…');
    }
    out
}

/// A reqwest client over rustls with the ring provider, bounded in time, that follows no
/// redirect (a request carrying a secret or a token goes where it was sent, or nowhere).
///
/// # Errors
///
/// [`Error::Config`] when TLS cannot be set up for an https URL.
pub(crate) fn client(needs_tls: bool) -> Result<reqwest::Client, Error> {
    let config_error = |reason: String| Error::Config { reason };
    let tls = crate::https::client_config(needs_tls).map_err(|e| match e {
        TlsSetupError::Protocols(e) => config_error(format!("tls setup: {e}")),
        TlsSetupError::NoVerifier(e) => config_error(format!(
            "cannot check https certificates: {e}; install the system's CA certificates \
             (ca-certificates)"
        )),
    })?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("invitegate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| config_error(format!("http client: {}", error_chain(&e))))
}

pub(crate) use crate::https::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_loopback_http() {
        for good in [
            "https://login.microsoftonline.com",
            "http://127.0.0.1:8080",
            "http://[::1]:9",
            "http://localhost:1/base",
        ] {
            assert!(parse_url("--graph-url", good).is_ok(), "{good}");
        }
        for bad in [
            "http://graph.microsoft.com",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "https://user:pw@graph.microsoft.com",
            "https://graph.microsoft.com?x=1",
            "graph.microsoft.com",
        ] {
            let err = parse_url("--graph-url", bad).unwrap_err().to_string();
            assert!(!err.contains("pw@"), "{err}");
        }
    }

    #[test]
    fn the_token_endpoint_is_under_the_authority_and_tenant() {
        let authority = parse_url("--oauth-authority", "http://127.0.0.1:9/base/").unwrap();
        let url = join(
            &authority,
            &["contoso.onmicrosoft.com", "oauth2", "v2.0", "token"],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/base/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let url = join(&authority, &["a/b"]);
        assert_eq!(url.as_str(), "http://127.0.0.1:9/base/a%2Fb");
    }

    #[test]
    fn error_texts_are_cut_and_single_line() {
        let long = "x".repeat(1000);
        assert_eq!(cut(&long).chars().count(), MAX_ERROR_TEXT + 1);
        assert_eq!(cut("a\r\nb"), "a  b");
    }
}
