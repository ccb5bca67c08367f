//! OAuth 2.0 client credentials from Microsoft Entra: an access token for the app itself, got
//! with a client secret or, as Microsoft recommends, a certificate (a signed client
//! assertion). Shared by the Graph transport and SMTP's XOAUTH2.
//!
//! One token serves the run until shortly before it expires; a transport told the token is no
//! longer good (HTTP 401) renews it once. Secrets, assertions and tokens are their own types:
//! their `Debug` prints no secret, they are zeroized on drop, and no message carries one.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::http::{self, cut, error_chain, join};
use crate::Error;

/// Entra's token service.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The scope of a token for SMTP AUTH XOAUTH2 with Exchange Online.
pub const OUTLOOK_SCOPE: &str = "https://outlook.office365.com/.default";

/// How long a client assertion is good for: Microsoft asks for 5 to 10 minutes at most.
const ASSERTION_LIFETIME: i64 = 10 * 60;

/// A token is renewed this long before it expires at most (a tenth of its life for a short
/// one): a message never goes with a token about to lapse.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// An app's client secret. Never printed; zeroized on drop.
#[derive(Clone)]
pub struct ClientSecret(Zeroizing<String>);

impl ClientSecret {
    /// Wraps a secret read from the environment or a file.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when it is empty.
    pub fn new(secret: String) -> Result<Self, Error> {
        let secret = Zeroizing::new(secret);
        if secret.trim().is_empty() {
            return Err(Error::Config {
                reason: "the OAuth client secret is empty".to_owned(),
            });
        }
        Ok(Self(secret))
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// A certificate credential: the SHA-256 thumbprint of the certificate registered with the
/// app, and its RSA private key, which signs client assertions. The key is never printed and
/// is zeroized on drop.
#[derive(Clone)]
pub struct ClientCertificate {
    /// Base64url SHA-256 of the certificate's DER: the assertion's `x5t#S256`.
    thumbprint: String,
    /// The private key, PKCS #1 DER.
    key: Zeroizing<Vec<u8>>,
}

impl ClientCertificate {
    /// Reads a PEM file holding the certificate and its RSA private key (`PRIVATE KEY`,
    /// PKCS #8, or `RSA PRIVATE KEY`, PKCS #1), in either order.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when either is missing, or the key is not an unencrypted RSA key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::pkcs8::DecodePrivateKey as _;
        let bad = |why: &str| Error::Config {
            reason: format!("--oauth-client-certificate: {why}"),
        };
        let text = std::str::from_utf8(pem).map_err(|_| bad("not a PEM file"))?;
        let mut certificate = None;
        let mut key = None;
        for (label, der) in pem_blocks(text) {
            match label {
                "CERTIFICATE" if certificate.is_none() => certificate = Some(der),
                "PRIVATE KEY" => {
                    let parsed = rsa::PrivateKey::from_pkcs8_der(&der)
                        .map_err(|_| bad("the PRIVATE KEY is not an RSA key"))?;
                    let pkcs1 = parsed
                        .to_pkcs1_der()
                        .map_err(|_| bad("the private key cannot be encoded"))?;
                    key = Some(Zeroizing::new(pkcs1.as_bytes().to_vec()));
                }
                "RSA PRIVATE KEY" => key = Some(der),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(bad(
                        "the private key is encrypted; give it unencrypted, in a file only the \
                         sending account can read",
                    ));
                }
                _ => {}
            }
        }
        let certificate = certificate.ok_or_else(|| bad("no CERTIFICATE block"))?;
        let key = key.ok_or_else(|| bad("no PRIVATE KEY block beside the certificate"))?;
        Ok(Self {
            thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(certificate.as_slice())),
            key,
        })
    }

    /// The certificate's SHA-256 thumbprint, base64url (what the assertion names it by).
    #[must_use]
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// The PEM blocks of `text`: label and DER bytes (zeroized, as one may be a key).
fn pem_blocks(text: &str) -> Vec<(&str, Zeroizing<Vec<u8>>)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some((_, after)) = rest.split_once("-----BEGIN ") {
        let Some((label, body)) = after.split_once("-----") else {
            break;
        };
        let Some((body, next)) = body.split_once(&format!("-----END {label}-----")) else {
            break;
        };
        let body: Zeroizing<String> =
            Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
        if let Ok(der) = STANDARD.decode(body.as_bytes()) {
            blocks.push((label, Zeroizing::new(der)));
        }
        rest = next;
    }
    blocks
}

/// How the app proves who it is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credential {
    /// A client secret.
    Secret(ClientSecret),
    /// A certificate: each token request carries an assertion it signed.
    Certificate(ClientCertificate),
}

/// Where and as whom to get tokens.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The token service, `https://login.microsoftonline.com` by default.
    pub authority: Url,
    /// The tenant: its ID or one of its domains.
    pub tenant: String,
    /// The app's client ID.
    pub client_id: String,
    /// The secret or certificate.
    pub credential: Credential,
    /// The scope asked for: `{graph}/.default` or [`OUTLOOK_SCOPE`].
    pub scope: String,
}

/// An access token. Never printed; zeroized on drop.
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// The token, to put in a request.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// Why no token was had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// What went wrong, and what to do; never a secret.
    pub reason: String,
    /// The token service refused the app (a wrong secret, tenant or client ID): no retry
    /// mends that. Otherwise it could not be reached.
    pub refused: bool,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A token and when to renew it.
struct Cached {
    token: Arc<AccessToken>,
    renew_at: Instant,
    generation: u64,
}

/// Gets tokens and keeps the current one.
pub struct TokenSource {
    settings: OAuthSettings,
    endpoint: Url,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("endpoint", &self.endpoint.as_str())
            .field("client_id", &self.settings.client_id)
            .field("scope", &self.settings.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    /// A source of tokens for `settings`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the HTTP client cannot be set up.
    pub fn new(settings: OAuthSettings) -> Result<Self, Error> {
        let endpoint = join(
            &settings.authority,
            &[&settings.tenant, "oauth2", "v2.0", "token"],
        );
        let client = http::client(endpoint.scheme() == "https")?;
        Ok(Self {
            settings,
            endpoint,
            client,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The token endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The current token and its generation; a new one when there is none or it is about
    /// to expire.
    ///
    /// # Errors
    ///
    /// [`TokenError`] when the token service refuses or cannot be reached.
    pub async fn token(&self) -> Result<(u64, Arc<AccessToken>), TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref()
            && Instant::now() < current.renew_at
        {
            return Ok((current.generation, Arc::clone(&current.token)));
        }
        let generation = cached.as_ref().map_or(1, |c| c.generation + 1);
        let fresh = self.fetch(generation).await?;
        let token = (generation, Arc::clone(&fresh.token));
        *cached = Some(fresh);
        Ok(token)
    }

    /// A new token, unless the one of `generation` was already replaced (by another sender
    /// told the same): a token refused with 401 is renewed once.
    ///
    /// # Errors
    ///
    /// As [`TokenSource::token`].
    pub async fn renew(&self, generation: u64) -> Result<(u64, Arc<AccessToken>), TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref()
            && current.generation > generation
        {
            return Ok((current.generation, Arc::clone(&current.token)));
        }
        let next = cached.as_ref().map_or(1, |c| c.generation + 1);
        let fresh = self.fetch(next).await?;
        let token = (next, Arc::clone(&fresh.token));
        *cached = Some(fresh);
        Ok(token)
    }

    /// The token request's form body: the app, the scope, and its secret or an assertion.
    fn form(&self) -> Result<Zeroizing<String>, TokenError> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("client_id", &self.settings.client_id)
            .append_pair("scope", &self.settings.scope)
            .append_pair("grant_type", "client_credentials");
        match &self.settings.credential {
            Credential::Secret(secret) => {
                form.append_pair("client_secret", &secret.0);
            }
            Credential::Certificate(certificate) => {
                let assertion = self.assertion(certificate)?;
                form.append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .append_pair("client_assertion", &assertion);
            }
        }
        Ok(Zeroizing::new(form.finish()))
    }

    async fn fetch(&self, generation: u64) -> Result<Cached, TokenError> {
        let body = self.form()?;
        let started = Instant::now();
        let unreachable = |why: String| TokenError {
            reason: format!("cannot reach the token endpoint {}: {why}", self.endpoint),
            refused: false,
        };
        let response = self
            .client
            .post(self.endpoint.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.as_str().to_owned())
            .send()
            .await
            .map_err(|err| unreachable(error_chain(&err)))?;
        let status = response.status();
        // The body holds the token: zeroized once read.
        let bytes = Zeroizing::new(
            http::read_body(response)
                .await
                .map_err(|err| unreachable(error_chain(&err)))?,
        );
        if !status.is_success() {
            let refusal: Option<TokenRefusal> = serde_json::from_slice(&bytes).ok();
            let (code, description) = refusal
                .map(|r| (r.error.unwrap_or_default(), r.error_description))
                .unwrap_or_default();
            // Entra's description runs on with trace and correlation IDs: its first line says it.
            let first = description
                .as_deref()
                .and_then(|d| d.lines().next())
                .unwrap_or_default();
            let said = self.scrub(&format!("{code}: {first}"));
            return Err(TokenError {
                reason: format!(
                    "the token endpoint {} refused the app (HTTP {}): {said}; check \
                     INVITEGATE_OAUTH_TENANT, INVITEGATE_OAUTH_CLIENT_ID and the secret or \
                     certificate registered with the app",
                    self.endpoint,
                    status.as_u16()
                ),
                refused: status.is_client_error() && status.as_u16() != 429,
            });
        }
        let reply: TokenReply = serde_json::from_slice(&bytes).map_err(|_| TokenError {
            reason: format!(
                "the token endpoint {} answered without an access token",
                self.endpoint
            ),
            refused: false,
        })?;
        let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(3600));
        let renew_at = started + lifetime.saturating_sub(RENEW_BEFORE.min(lifetime / 10));
        Ok(Cached {
            token: Arc::new(AccessToken(Zeroizing::new(reply.access_token))),
            renew_at,
            generation,
        })
    }

    /// A client assertion signed with the certificate's key (RS256, `x5t#S256`), for the
    /// token endpoint, good for a few minutes.
    fn assertion(&self, certificate: &ClientCertificate) -> Result<Zeroizing<String>, TokenError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|err| TokenError {
            reason: format!("no randomness for a client assertion: {err}"),
            refused: true,
        })?;
        let claims = AssertionClaims {
            aud: self.endpoint.as_str(),
            iss: &self.settings.client_id,
            sub: &self.settings.client_id,
            jti: crate::code::hex(&id),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5t_s256 = Some(certificate.thumbprint.clone());
        let key = jsonwebtoken::EncodingKey::from_rsa_der(&certificate.key);
        jsonwebtoken::encode(&header, &claims, &key)
            .map(Zeroizing::new)
            .map_err(|err| TokenError {
                reason: format!("cannot sign a client assertion with the certificate's key: {err}"),
                refused: true,
            })
    }

    /// `text` with the client secret, if any, taken out, and cut to a sensible length.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        if let Credential::Secret(secret) = &self.settings.credential {
            text = text.replace(secret.0.as_str(), "(secret)");
        }
        cut(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_file_gives_its_thumbprint_and_key_in_either_order() {
        let pem = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/send/oauth-client.pem"),
        )
        .unwrap();
        let certificate = ClientCertificate::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(
            certificate.thumbprint(),
            "zMPz1DmLkBAQFRCtHuCs7Za049KBoyDFHywq-37ZDYw"
        );
        assert!(!format!("{certificate:?}").contains("key: "));
        let (cert, key) = pem.split_at(pem.find("-----BEGIN PRIVATE KEY").unwrap());
        let swapped = format!("{key}{cert}");
        let again = ClientCertificate::from_pem(swapped.as_bytes()).unwrap();
        assert_eq!(again.thumbprint(), certificate.thumbprint());
        for (broken, why) in [
            (cert.to_owned(), "no PRIVATE KEY"),
            (key.to_owned(), "no CERTIFICATE"),
            (
                format!(
                    "{cert}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                ),
                "encrypted",
            ),
        ] {
            let err = ClientCertificate::from_pem(broken.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn secrets_and_tokens_print_nothing() {
        let secret = ClientSecret::new("s3cr3t-value".to_owned()).unwrap();
        assert_eq!(format!("{secret:?}"), "ClientSecret(..)");
        let token = AccessToken(Zeroizing::new("eyJ0b2tlbg".to_owned()));
        assert_eq!(format!("{token:?}"), "AccessToken(..)");
        assert!(ClientSecret::new("  ".to_owned()).is_err());
    }
}
