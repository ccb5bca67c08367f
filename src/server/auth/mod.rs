//! How each endpoint authenticates its caller: HTTP Basic (B2C user flows and custom
//! policies), an API key in a named header (custom policies), a pinned client certificate (B2C,
//! alone or beside Basic or the API key), Entra External ID bearer tokens (JWT, keys from the
//! tenant's JWKS), or none when named as such.

pub mod api_key;
pub mod basic;
pub mod bearer;
mod bearer_config;
mod claims;
pub mod client_cert;
pub mod dev_token;
pub mod jwks;
pub mod keystore;
pub mod rejection;
mod secret;
mod token;
mod token_cache;

use std::sync::Arc;
use std::time::SystemTime;

use warp::http::{HeaderValue, header};

use super::labels::Refusal;

pub use api_key::ApiKey;
pub use basic::BasicAuth;
pub use bearer::{BearerAuth, BearerConfig, ENTRA_CALLER_APP_ID};
pub use client_cert::{ClientCertAuth, Pins, Presented};
pub use dev_token::DevSigner;
pub use jwks::{JwksSource, KeySetError};
pub use rejection::{Details, TokenRefusal, TokenRejection};

/// Who may call an endpoint.
#[derive(Debug)]
#[non_exhaustive]
pub enum Auth {
    /// Anyone: only with `--insecure-no-auth`.
    None,
    /// HTTP Basic (RFC 7617).
    Basic(BasicAuth),
    /// A key in a named header.
    ApiKey(ApiKey),
    /// A bearer JWT issued by Entra External ID.
    Bearer(Arc<BearerAuth>),
    /// A pinned client certificate, or else the other credentials when set (Basic or an API
    /// key): either is accepted.
    ClientCert(Arc<ClientCertAuth>, Option<Box<Auth>>),
}

/// Why a request was refused: `reason` goes to the log and the refusal counter, `message` to
/// the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// What went wrong, for the log and metrics only (never secret material).
    pub reason: Refusal,
    /// What the caller reads: names the scheme, never the reason.
    pub message: &'static str,
    /// The server cannot check credentials yet (no signing keys, no audience): answered 503,
    /// not 401.
    pub unavailable: bool,
}

impl Auth {
    /// The request header that carries the credentials.
    #[must_use]
    pub fn header_name(&self) -> &'static str {
        match self {
            Self::ApiKey(key) => key.header(),
            Self::ClientCert(_, Some(otherwise)) => otherwise.header_name(),
            Self::None | Self::Basic(_) | Self::Bearer(_) | Self::ClientCert(_, None) => {
                header::AUTHORIZATION.as_str()
            }
        }
    }

    /// The `WWW-Authenticate` challenge of a 401, when the scheme has one.
    #[must_use]
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            Self::Basic(_) => Some("Basic realm=\"invitegate\""),
            Self::Bearer(_) => Some("Bearer"),
            Self::ClientCert(_, otherwise) => otherwise.as_ref().and_then(|o| o.challenge()),
            Self::None | Self::ApiKey(_) => None,
        }
    }

    /// Whether the endpoint can accept calls: `Err` says what it waits for.
    ///
    /// # Errors
    ///
    /// A short phrase, for `/healthz` and `/readyz`.
    pub fn ready(&self) -> Result<(), &'static str> {
        match self {
            Self::Bearer(bearer) => bearer.ready(),
            Self::None | Self::Basic(_) | Self::ApiKey(_) | Self::ClientCert(..) => Ok(()),
        }
    }

    /// One line for the start-up log.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::None => "NO AUTHENTICATION (--insecure-no-auth)".to_owned(),
            Self::Basic(_) => "HTTP Basic".to_owned(),
            Self::ApiKey(key) => format!("API key in header {}", key.header()),
            Self::Bearer(bearer) => format!("Entra bearer token: {}", bearer.describe()),
            Self::ClientCert(cert, None) => cert.describe(),
            Self::ClientCert(cert, Some(otherwise)) => {
                format!("{} or {}", cert.describe(), otherwise.describe())
            }
        }
    }

    /// Checks the credentials header's value (`None` when the header is missing), for a
    /// request that came with no client certificate.
    ///
    /// # Errors
    ///
    /// [`Denied`] when the caller is not let in.
    pub async fn check(&self, value: Option<&HeaderValue>) -> Result<(), Denied> {
        self.check_request(value, None, SystemTime::now()).await
    }

    /// Checks the credentials header's value (`None` when the header is missing) and, for
    /// [`Auth::ClientCert`], the certificate the request came with, at `now` (a token's or a
    /// certificate's validity).
    ///
    /// With a client certificate and other credentials both configured, either lets the
    /// caller in. When neither does, the refusal named is the certificate's when one was
    /// presented without the other credentials' header, else the other credentials', with the
    /// thumbprint of the certificate presented, if any.
    ///
    /// # Errors
    ///
    /// [`Denied`] when the caller is not let in.
    pub async fn check_request(
        &self,
        value: Option<&HeaderValue>,
        presented: Option<&Presented>,
        now: SystemTime,
    ) -> Result<(), Denied> {
        let bytes = value.map(HeaderValue::as_bytes);
        match self {
            Self::ClientCert(cert, otherwise) => {
                let checked = cert.check(presented, now);
                let refusal = match checked {
                    client_cert::Checked::Accepted => return Ok(()),
                    client_cert::Checked::Absent => client_cert::MISSING,
                    client_cert::Checked::Refused(refusal) => refusal,
                };
                match otherwise {
                    Some(otherwise)
                        if value.is_some() || checked == client_cert::Checked::Absent =>
                    {
                        otherwise.check_secret(bytes).map_err(|denied| Denied {
                            // The certificate refused too is named by its thumbprint.
                            reason: match refusal.thumbprint_bytes() {
                                Some(thumbprint) => denied.reason.with_thumbprint(thumbprint),
                                None => denied.reason,
                            },
                            message: "missing or wrong client certificate or credentials",
                            ..denied
                        })
                    }
                    _ => Err(Denied {
                        reason: refusal,
                        message: if otherwise.is_some() {
                            "missing or wrong client certificate or credentials"
                        } else {
                            "missing or unknown client certificate"
                        },
                        unavailable: false,
                    }),
                }
            }
            Self::None | Self::Basic(_) | Self::ApiKey(_) => self.check_secret(bytes),
            Self::Bearer(bearer) => bearer.check_explained(bytes, now).await.map_err(|refusal| {
                refusal.log("entra");
                let kind = refusal.kind;
                Denied {
                    reason: Refusal::new(kind.reason(), kind.explain()),
                    message: if kind.is_unavailable() {
                        "the server cannot check bearer tokens yet; try again later"
                    } else {
                        "missing or invalid bearer token"
                    },
                    unavailable: kind.is_unavailable(),
                }
            }),
        }
    }

    /// Checks the credentials of the schemes that need no I/O: none, Basic, an API key. Any
    /// other scheme is refused (it is never configured where this is called).
    // The same `Denied` that `check` returns: bounded and `Copy`, so a refusal allocates nothing.
    #[allow(clippy::result_large_err)]
    fn check_secret(&self, bytes: Option<&[u8]>) -> Result<(), Denied> {
        match self {
            Self::None => Ok(()),
            Self::Basic(basic) => basic.check(bytes).map_err(|reason| Denied {
                reason,
                message: "missing or wrong HTTP Basic credentials",
                unavailable: false,
            }),
            Self::ApiKey(key) => key.check(bytes).map_err(|reason| Denied {
                reason,
                message: "missing or wrong API key",
                unavailable: false,
            }),
            Self::Bearer(_) | Self::ClientCert(..) => Err(Denied {
                reason: client_cert::MISSING,
                message: "missing credentials",
                unavailable: false,
            }),
        }
    }
}
