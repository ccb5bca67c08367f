//! The SMTP connection settings and the pooled transport built from them (lettre, rustls).

use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use zeroize::Zeroizing;

use crate::Error;

/// How long connecting may take, and by default ([`SmtpSettings::timeout`]) a message's whole
/// exchange: lettre's async transport times out only the connection itself.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The pooled transport the campaign sends through.
pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `smtp://`: STARTTLS, and no mail without it (the default).
    Required,
    /// `smtp://...?tls=opportunistic`: STARTTLS when the server offers it, else plain text.
    Opportunistic,
    /// `--smtp-tls none`: plain text.
    None,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// An SMTP password: never printed.
#[derive(Clone)]
pub struct SmtpPassword(Zeroizing<String>);

impl SmtpPassword {
    /// Wraps a password read from the environment or a file.
    #[must_use]
    pub fn new(password: String) -> Self {
        Self(Zeroizing::new(password))
    }
}

impl std::fmt::Debug for SmtpPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpPassword(..)")
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The server's host name (checked against its certificate).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The encryption.
    pub tls: TlsMode,
    /// The user name and password for AUTH PLAIN or LOGIN, if any.
    pub credentials: Option<(String, SmtpPassword)>,
    /// Extra trusted root certificates (PEM), beside the built-in web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Connections kept open at most.
    pub pool_size: u32,
    /// How long one message's exchange (with connecting and logging in, if a new connection
    /// is needed) may take before the attempt counts as a broken connection.
    pub timeout: Duration,
}

impl SmtpSettings {
    /// Parses `smtp://HOST[:PORT][?tls=required|opportunistic]` or `smtps://HOST[:PORT]`.
    /// Default ports: 587 for `smtp`, 465 for `smtps`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the URL is not one of those, or carries a password.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        // A password typed into the URL must not come back in the message.
        let shown = match url.rsplit_once('@') {
            Some((_, host)) => format!("(a URL with a user) @{host}"),
            None => format!("{url:?}"),
        };
        let bad = |why: &str| Error::Config {
            reason: format!("--smtp {shown}: {why}"),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected smtp://HOST:PORT or smtps://HOST:PORT"))?;
        let (mut tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => (TlsMode::Required, 587),
            "smtps" => (TlsMode::Implicit, 465),
            _ => return Err(bad("the scheme must be smtp or smtps")),
        };
        let (authority, query) = match rest.split_once('?') {
            Some((authority, query)) => (authority, Some(query)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        if authority.contains('@') {
            return Err(bad(
                "no user or password in the URL; set INVITEGATE_SMTP_USERNAME and \
                 INVITEGATE_SMTP_PASSWORD (or --smtp-password-file)",
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                let port = port.parse().map_err(|_| bad("the port is not a number"))?;
                (host, port)
            }
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            match pair {
                "tls=required" if tls == TlsMode::Required => {}
                "tls=opportunistic" if tls == TlsMode::Required => tls = TlsMode::Opportunistic,
                _ => {
                    return Err(bad(
                        "the only option is ?tls=required or ?tls=opportunistic",
                    ));
                }
            }
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
            credentials: None,
            ca_pem: None,
            pool_size: 4,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Builds the pooled transport. Certificates are always verified.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the CA file holds no usable certificate.
    pub fn transport(&self) -> Result<Transport, Error> {
        let tls_parameters = || -> Result<TlsParameters, Error> {
            let mut builder = TlsParameters::builder(self.host.clone());
            if let Some(pem) = &self.ca_pem {
                let certificate = Certificate::from_pem(pem).map_err(|err| Error::Config {
                    reason: format!("the SMTP CA file holds no PEM certificate: {err}"),
                })?;
                builder = builder.add_root_certificate(certificate);
            }
            builder.build_rustls().map_err(|err| Error::Config {
                reason: format!("TLS settings: {err}"),
            })
        };
        let tls = match self.tls {
            TlsMode::Required => Tls::Required(tls_parameters()?),
            TlsMode::Opportunistic => Tls::Opportunistic(tls_parameters()?),
            TlsMode::Implicit => Tls::Wrapper(tls_parameters()?),
            TlsMode::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.timeout.min(DEFAULT_TIMEOUT)))
            .pool_config(PoolConfig::new().max_size(self.pool_size.max(1)));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.0.as_str().to_owned(),
            ));
        }
        Ok(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_secure_defaults() {
        let s = SmtpSettings::from_url("smtp://mail.contoso.com").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("mail.contoso.com", 587, TlsMode::Required)
        );
        let s = SmtpSettings::from_url("smtps://mail.contoso.com:2465").unwrap();
        assert_eq!((s.port, s.tls), (2465, TlsMode::Implicit));
        let s = SmtpSettings::from_url("smtp://127.0.0.1:2525?tls=opportunistic").unwrap();
        assert_eq!(
            (s.host.as_str(), s.tls),
            ("127.0.0.1", TlsMode::Opportunistic)
        );
        let s = SmtpSettings::from_url("smtp://[::1]:25").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 25));
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("mail.contoso.com", "expected smtp://"),
            ("http://mail.contoso.com", "scheme"),
            (
                "smtp://u:hunter2@mail.contoso.com",
                "INVITEGATE_SMTP_PASSWORD",
            ),
            ("smtp://mail.contoso.com:x", "port"),
            ("smtps://mail.contoso.com?tls=opportunistic", "only option"),
        ] {
            let err = SmtpSettings::from_url(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn a_password_is_not_printed() {
        let password = SmtpPassword::new("hunter2".to_owned());
        assert_eq!(format!("{password:?}"), "SmtpPassword(..)");
    }
}
