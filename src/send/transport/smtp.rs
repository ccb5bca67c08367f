//! SMTP: the connection settings, and the pooled transport built from them (lettre, rustls)
//! that sends a campaign's messages.

use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use zeroize::Zeroizing;

use super::Transport;
use crate::Error;
use crate::send::oauth::{AccessToken, OAuthSettings, TokenError, TokenSource};
use crate::send::prepare::Mail;
use crate::send::reply::{Blame, Reply, smtp_blame};

/// How long connecting may take, and by default ([`SmtpSettings::timeout`]) a message's whole
/// exchange: lettre's async transport times out only the connection itself.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// lettre's pooled transport.
type Pool = AsyncSmtpTransport<Tokio1Executor>;

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
    /// The server as messages name it: `host:port`, an IPv6 address in brackets.
    #[must_use]
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

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
                "tls=none" | "tls=off" | "tls=false" | "tls=no" => {
                    // Plain text is dangerous: it is asked for by a flag whose name says so,
                    // never by a URL that may sit in a shared environment file.
                    return Err(bad(
                        "the URL takes no tls=none; to send in plain text, keep the URL \
                         without it and add --smtp-tls none",
                    ));
                }
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

    /// Builds the pooled transport, logging in with `xoauth2` (user and token) if given.
    /// Certificates are always verified.
    fn pool(&self, xoauth2: Option<(&str, &AccessToken)>) -> Result<Pool, Error> {
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
        if let Some((user, token)) = xoauth2 {
            builder = builder
                .credentials(Credentials::new(user.to_owned(), token.secret().to_owned()))
                .authentication(vec![Mechanism::Xoauth2]);
        } else if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.0.as_str().to_owned(),
            ));
        }
        Ok(builder.build())
    }
}

/// Sends through a pool of SMTP connections. Build it inside a Tokio runtime (the pool runs
/// a task of its own), and drop it there.
pub struct SmtpTransport {
    settings: SmtpSettings,
    /// With XOAUTH2: the mailbox to log in as, and where its tokens come from.
    xoauth2: Option<(String, TokenSource)>,
    /// The pool in use.
    pool: std::sync::Mutex<Current>,
}

/// The pool in use, how many times it was replaced, and the token it logs in with.
struct Current {
    generation: u64,
    pool: Pool,
    token: Option<(u64, std::sync::Arc<AccessToken>)>,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// A transport for `settings`; connects only when the first message or the check needs
    /// it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the CA file holds no usable certificate.
    pub fn new(settings: SmtpSettings) -> Result<Self, Error> {
        let pool = settings.pool(None)?;
        Ok(Self {
            settings,
            xoauth2: None,
            pool: std::sync::Mutex::new(Current {
                generation: 0,
                pool,
                token: None,
            }),
        })
    }

    /// A transport that logs in as `user` with AUTH XOAUTH2 and an app-only token from
    /// `oauth` (Exchange Online, for tenants that keep SMTP AUTH), renewed before it expires.
    ///
    /// # Errors
    ///
    /// As [`SmtpTransport::new`]; [`Error::Config`] when the HTTP client cannot be set up.
    pub fn with_xoauth2(
        settings: SmtpSettings,
        user: String,
        oauth: OAuthSettings,
    ) -> Result<Self, Error> {
        let mut transport = Self::new(settings)?;
        transport.xoauth2 = Some((user, TokenSource::new(oauth)?));
        Ok(transport)
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// The pool to send through, and its generation. With XOAUTH2, a new token (the last
    /// one about to expire) makes a new pool that logs in with it.
    async fn current(&self) -> Result<(u64, Pool), TokenError> {
        let token = match &self.xoauth2 {
            Some((_, tokens)) => Some(tokens.token().await?),
            None => None,
        };
        let mut current = self.pool.lock().map_err(|_| TokenError {
            reason: "the transport is unusable".to_owned(),
            refused: false,
        })?;
        if let (Some((generation, token)), Some((user, _))) = (token, &self.xoauth2)
            && current
                .token
                .as_ref()
                .is_none_or(|(had, _)| *had != generation)
        {
            let fresh = self
                .settings
                .pool(Some((user, &token)))
                .map_err(|err| TokenError {
                    reason: err.to_string(),
                    refused: true,
                })?;
            current.generation += 1;
            current.pool = fresh;
            current.token = Some((generation, token));
        }
        Ok((current.generation, current.pool.clone()))
    }

    /// Replaces the pool of generation `stalled` (unless another sender has): an attempt
    /// that timed out leaves its connection mid-exchange, and lettre would park it in the
    /// pool for the next message, whose replies it would then mix up. The old pool goes
    /// with the last message still using it.
    fn renew(&self, stalled: u64) {
        let Ok(mut current) = self.pool.lock() else {
            return;
        };
        if current.generation != stalled {
            return;
        }
        let login = match (&self.xoauth2, &current.token) {
            (Some((user, _)), Some((_, token))) => Some((user.as_str(), token.as_ref())),
            _ => None,
        };
        if let Ok(fresh) = self.settings.pool(login) {
            current.generation += 1;
            current.pool = fresh;
        }
    }
}

impl Transport for SmtpTransport {
    fn name(&self) -> &'static str {
        "the server"
    }

    async fn check(&self) -> Result<(), Error> {
        let mut renewed = false;
        loop {
            let (_, pool) = self.current().await.map_err(|err| Error::Smtp {
                reason: format!("no token for XOAUTH2: {err}"),
            })?;
            let timeout = self.settings.timeout;
            return match tokio::time::timeout(timeout, pool.test_connection())
                .await
                .unwrap_or(Ok(false))
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(Error::Smtp {
                    reason: format!(
                        "{} does not answer (no greeting, login or NOOP reply within {} s)",
                        self.settings.endpoint(),
                        timeout.as_secs_f64()
                    ),
                }),
                Err(err) if !renewed && self.login_refused(&err) => {
                    // The token may have been revoked since it was issued: renewed once.
                    renewed = true;
                    self.renew_token().await;
                    continue;
                }
                Err(err) => {
                    let error = describe(&err);
                    Err(Error::Smtp {
                        reason: format!(
                            "cannot connect and log in to {}: {error}{}",
                            self.settings.endpoint(),
                            hint(&error)
                        ),
                    })
                }
            };
        }
    }

    async fn send(&self, mail: &Mail) -> Reply {
        let message = match mail.to_message() {
            Ok(message) => message,
            Err(err) => return Reply::Rejected(format!("cannot build the message: {err}")),
        };
        let bytes = message.formatted();
        let mut renewed = false;
        loop {
            let (generation, pool) = match self.current().await {
                Ok(current) => current,
                Err(err) if err.refused => return Reply::Fatal(err.reason),
                Err(err) => {
                    return Reply::Retry {
                        reply: err.reason,
                        may_have_gone: false,
                        temporary: false,
                    };
                }
            };
            let attempt = tokio::time::timeout(
                self.settings.timeout,
                pool.send_raw(message.envelope(), &bytes),
            )
            .await;
            return match attempt {
                Ok(Ok(response)) => {
                    let mut reply = response.code().to_string();
                    for part in response.message() {
                        reply.push(' ');
                        reply.push_str(part);
                    }
                    Reply::Accepted(reply)
                }
                Ok(Err(err)) if self.login_refused(&err) => {
                    if !renewed {
                        // A token refused at login is renewed once, as Graph's 401.
                        renewed = true;
                        self.renew_token().await;
                        continue;
                    }
                    Reply::Fatal(format!(
                        "{}; the server refused a token just renewed: the app needs Office 365 \
                         Exchange Online's SMTP.SendAsApp permission with admin consent, and its \
                         service principal rights on the mailbox",
                        describe(&err)
                    ))
                }
                Ok(Err(err)) => classify(&err, &self.settings.endpoint()),
                Err(_) => {
                    // A stalled server: the message may have gone before it stopped answering.
                    self.renew(generation);
                    Reply::Retry {
                        reply: format!(
                            "no answer from {} within {} s",
                            self.settings.endpoint(),
                            self.settings.timeout.as_secs_f64()
                        ),
                        may_have_gone: true,
                        temporary: false,
                    }
                }
            };
        }
    }
}

impl SmtpTransport {
    /// Whether `err` is the server refusing an XOAUTH2 login (535).
    fn login_refused(&self, err: &lettre::transport::smtp::Error) -> bool {
        self.xoauth2.is_some() && err.is_permanent() && reply_of(err).0 == Some(535)
    }

    /// Replaces the token the pool logs in with; the next [`SmtpTransport::current`] builds
    /// a pool that uses the new one. A failure shows at that call.
    async fn renew_token(&self) {
        let Some((_, tokens)) = &self.xoauth2 else {
            return;
        };
        let had = self
            .pool
            .lock()
            .ok()
            .and_then(|current| current.token.as_ref().map(|(generation, _)| *generation))
            .unwrap_or(0);
        let _ = tokens.renew(had).await;
    }
}

/// What a lettre error means for the row. A failure that is not the server's reply (a refused
/// or broken connection, TLS) names the server, `at`: the run's last words may quote it.
fn classify(err: &lettre::transport::smtp::Error, at: &str) -> Reply {
    let reply = if err.status().is_some() {
        describe(err)
    } else {
        format!("{at}: {}", describe(err))
    };
    if err.is_permanent() {
        let (code, text) = reply_of(err);
        return match smtp_blame(code, &text) {
            Blame::Recipient => Reply::Rejected(reply),
            Blame::Sender => Reply::Refused(reply),
        };
    }
    if err.is_client() {
        // lettre could not make the exchange (no AUTH mechanism in common, no SMTPUTF8):
        // no retry mends that, and nothing was sent.
        return Reply::Refused(reply);
    }
    // A reply cut short or garbled (`incomplete response`) may follow a message the server
    // took: as a broken connection.
    let may_have_gone = err.is_response() || (!err.is_transient() && !no_connection(err));
    Reply::Retry {
        reply,
        may_have_gone,
        temporary: err.is_transient(),
    }
}

/// Whether `err` is a connection that was never made (refused, no route): no byte of the
/// message left, unlike a connection that broke.
fn no_connection(err: &lettre::transport::smtp::Error) -> bool {
    use std::io::ErrorKind;
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::AddrNotAvailable
            );
        }
        source = cause.source();
    }
    false
}

/// The reply's code and text (after the code), from lettre's error.
fn reply_of(err: &lettre::transport::smtp::Error) -> (Option<u16>, String) {
    let code = err.status().and_then(|code| code.to_string().parse().ok());
    let text = std::error::Error::source(err).map_or_else(String::new, ToString::to_string);
    (code, text)
}

/// What to do about a connection error (as [`describe`] writes it), where the error alone
/// does not say.
fn hint(text: &str) -> &'static str {
    if text.contains("STARTTLS is not supported") {
        " (the server offers no STARTTLS: use smtps:// if it takes TLS from the first byte, \
         usually on port 465; only on a network you trust, ?tls=opportunistic or --smtp-tls \
         none)"
    } else if text.contains("UnknownIssuer") {
        " (the server's certificate is not signed by a CA this machine trusts: give a private \
         CA's certificate with --smtp-ca-file)"
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        " (no TLS from the first byte on this port: for a server that starts in plain text \
         and offers STARTTLS, usually on port 587, use smtp://)"
    } else {
        ""
    }
}

/// An SMTP error in one line, with its causes: the server's reply or the network's error.
/// lettre's own heading for an exchange it could not make (`internal client error`) is left
/// out: it reads as a fault of this program, while the cause (`STARTTLS is not supported on
/// this server`) says what happened.
fn describe(err: &lettre::transport::smtp::Error) -> String {
    let mut text = if err.is_client() {
        String::new()
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if text.is_empty() {
            text = cause_text;
        } else if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if text.is_empty() {
        "the exchange with the server could not be made".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_told_from_a_broken_one() {
        /// The error of connecting to `port` on loopback.
        async fn connecting(port: u16) -> lettre::transport::smtp::Error {
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(port)
                .build::<lettre::Tokio1Executor>()
                .test_connection()
                .await
                .unwrap_err()
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // A port nobody listens on: the connection is refused.
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = closed.local_addr().unwrap().port();
            drop(closed);
            let refused = connecting(port).await;
            assert!(no_connection(&refused), "{refused:?}");
            // A server that accepts and hangs up at once: a connection was made, then broke.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    drop(socket);
                }
            });
            let broken = connecting(port).await;
            assert!(!no_connection(&broken), "{broken:?}");
        });
    }

    #[test]
    fn connection_errors_name_the_server_and_not_the_mail_library() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let settings = |port: u16| SmtpSettings {
                tls: TlsMode::None,
                timeout: Duration::from_secs(10),
                ..SmtpSettings::from_url(&format!("smtp://127.0.0.1:{port}")).unwrap()
            };
            // A port nobody listens on.
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = closed.local_addr().unwrap().port();
            drop(closed);
            let transport = SmtpTransport::new(settings(port)).unwrap();
            let err = transport.check().await.unwrap_err().to_string();
            assert!(
                err.contains(&format!("cannot connect and log in to 127.0.0.1:{port}: ")),
                "{err}"
            );
            assert!(!err.contains("internal client error"), "{err}");
            // A server that accepts and hangs up at once.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    drop(socket);
                }
            });
            let transport = SmtpTransport::new(settings(port)).unwrap();
            let err = transport.check().await.unwrap_err().to_string();
            assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
            assert!(!err.contains("internal client error"), "{err}");
        });
    }

    #[test]
    fn lettres_client_heading_is_left_out() {
        // A server that greets and answers EHLO without offering STARTTLS, which is required.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let (read, mut write) = socket.into_split();
                        let mut lines = tokio::io::BufReader::new(read).lines();
                        let _ = write.write_all(b"220 test ESMTP\r\n").await;
                        while let Ok(Some(line)) = lines.next_line().await {
                            let reply: &[u8] = if line.starts_with("EHLO") {
                                b"250 test\r\n"
                            } else if line.starts_with("QUIT") {
                                b"221 bye\r\n"
                            } else {
                                b"250 ok\r\n"
                            };
                            if write.write_all(reply).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            let settings = SmtpSettings {
                timeout: Duration::from_secs(10),
                ..SmtpSettings::from_url(&format!("smtp://127.0.0.1:{port}")).unwrap()
            };
            let transport = SmtpTransport::new(settings).unwrap();
            let err = transport.check().await.unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "cannot connect and log in to 127.0.0.1:{port}: STARTTLS is not supported \
                     on this server (the server offers no STARTTLS"
                )),
                "{err}"
            );
            assert!(!err.contains("internal client error"), "{err}");
        });
    }

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
            ("smtp://mail.contoso.com:25?tls=none", "add --smtp-tls none"),
            ("smtp://mail.contoso.com?tls=off", "add --smtp-tls none"),
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
