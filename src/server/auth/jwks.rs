//! The identity provider's signing keys: where they come from and how they are read.
//!
//! A key set (JWKS, RFC 7517) is read from the issuer's OpenID metadata (`jwks_uri`), from an
//! explicit URL, from a file or from memory. Only RSA keys that may verify RS256 signatures are
//! kept: a key that declares another `alg`, a `use` other than `sig`, `key_ops` without
//! `verify`, no `kid`, or a modulus outside 2048 to 8192 bits is skipped. Fetching is bounded
//! in time and size and needs https, except http to a loopback address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use reqwest::Url;
use sha2::{Digest as _, Sha256};

use crate::https::{TlsSetupError, client_config, error_chain};

/// Time allowed for one HTTP fetch, connecting included. The tenant's endpoints answer in
/// milliseconds; a hung fetch must not hold the key-set lock (and the requests waiting on an
/// unknown key id) for long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to connect, within [`FETCH_TIMEOUT`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest metadata or key-set document read. Entra's key set is a few KiB; 1 MiB is far above
/// any real one and stops a wrong URL from filling memory.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most keys kept from one key set. A tenant publishes a handful; the bound keeps lookups and
/// the refresh cheap whatever a document holds.
pub const MAX_KEYS: usize = 64;
/// Smallest RSA modulus accepted, in bits. Entra signs with 2048-bit keys.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits: bounds the cost of one signature check.
pub const MAX_RSA_BITS: usize = 8192;
/// Redirects followed on a fetch; each target must pass the same https-or-loopback rule.
pub const MAX_REDIRECTS: usize = 3;

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// The issuer's OpenID metadata, `{issuer}/.well-known/openid-configuration`; its
    /// `jwks_uri` names the key set. What a tenant's custom extension should use.
    Metadata,
    /// OpenID metadata at this URL (https, or http to a loopback address); its `jwks_uri`
    /// names the key set. For a tenant: the tenant-ID host's metadata.
    MetadataAt(String),
    /// A key set at this URL (https, or http to a loopback address).
    Url(String),
    /// A key-set file, for hosts that cannot reach the tenant. Re-read at each refresh.
    File(PathBuf),
    /// A key-set document held in memory (`serve --dev`, tests).
    Inline(String),
}

/// Why a key set could not be loaded. Messages name the source and never carry a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The configuration cannot work.
    #[error("bearer authentication: {reason}")]
    Config {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A URL that is not https (http is allowed only to a loopback address).
    #[error("{url}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An HTTP fetch failed.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The URL fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A file could not be read.
    #[error("reading {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A document is not the JSON expected.
    #[error("{source_name}: {reason}")]
    Document {
        /// Where the document came from.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key set holds no key that can verify an RS256 token.
    #[error(
        "{source_name}: no usable RS256 signing key ({skipped} of {total} keys skipped: \
         keys need kty RSA, a kid, use sig and alg RS256 if given, and 2048 to 8192 bits)"
    )]
    NoUsableKey {
        /// Where the key set came from.
        source_name: String,
        /// Keys in the document.
        total: usize,
        /// Keys skipped.
        skipped: usize,
    },
}

/// One verifying key, ready for `jsonwebtoken`.
pub(crate) struct VerifyingKey {
    pub(crate) decoding: DecodingKey,
    /// SHA-256 of the modulus and exponent: the same `kid` with new key material is a new key.
    pub(crate) fingerprint: [u8; 32],
}

/// The usable keys of one key set, by `kid`.
#[derive(Default)]
pub(crate) struct KeySet {
    pub(crate) keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    /// Reads a JWKS document, keeping the usable keys. Entries that do not parse are skipped
    /// like unusable ones, so one odd key cannot hide the others.
    pub(crate) fn parse(document: &[u8], source_name: &str) -> Result<Self, KeySetError> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(document).map_err(|e| KeySetError::Document {
                source_name: source_name.to_owned(),
                reason: format!("not a key set (a JSON object with a \"keys\" array): {e}"),
            })?;
        let total = document.keys.len();
        let mut keys = HashMap::new();
        for value in document.keys {
            if keys.len() == MAX_KEYS {
                break;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if let Some((kid, key)) = usable_key(&jwk) {
                // The first of two keys with one kid wins; a tenant never publishes both.
                keys.entry(kid).or_insert(key);
            }
        }
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey {
                source_name: source_name.to_owned(),
                total,
                skipped: total,
            });
        }
        Ok(Self { keys })
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The key's id and verifying key, if it may verify RS256 signatures.
fn usable_key(jwk: &Jwk) -> Option<(String, VerifyingKey)> {
    let common = &jwk.common;
    let kid = common.key_id.as_ref().filter(|kid| !kid.is_empty())?;
    if !matches!(common.public_key_use, None | Some(PublicKeyUse::Signature)) {
        return None;
    }
    if !matches!(common.key_algorithm, None | Some(KeyAlgorithm::RS256)) {
        return None;
    }
    if let Some(ops) = &common.key_operations
        && !ops.iter().any(|op| matches!(op, KeyOperations::Verify))
    {
        return None;
    }
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        return None;
    };
    let n = base64url(&rsa.n)?;
    let e = base64url(&rsa.e)?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = n.first().map_or(0, |&top| {
        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    // An even or tiny exponent is not an RSA public key anyone signs with.
    let e_ok = matches!(e.last(), Some(last) if last & 1 == 1) && e.len() <= 8 && e != [1];
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) || !e_ok {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update((n.len() as u64).to_be_bytes());
    hasher.update(n);
    hasher.update(e);
    let key = VerifyingKey {
        decoding: DecodingKey::from_rsa_raw_components(n, e),
        fingerprint: hasher.finalize().into(),
    };
    Some((kid.clone(), key))
}

/// JWK numbers are base64url without padding; some publishers pad anyway.
fn base64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// Checks that `text` is an absolute https URL, or http to a loopback address.
///
/// # Errors
///
/// [`KeySetError::Url`] naming what is wrong.
pub fn check_url(text: &str) -> Result<Url, KeySetError> {
    let url = Url::parse(text).map_err(|e| KeySetError::Url {
        url: text.to_owned(),
        reason: format!("not an absolute URL ({e})"),
    })?;
    url_allowed(&url).map_err(|reason| KeySetError::Url {
        url: text.to_owned(),
        reason: reason.to_owned(),
    })?;
    Ok(url)
}

fn url_allowed(url: &Url) -> Result<(), &'static str> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(
            "key sets are fetched over https; plain http is allowed only to a loopback \
                       address (127.0.0.1, [::1], localhost)",
        ),
        _ => Err("key sets are fetched over https"),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The OpenID metadata URL of an issuer.
#[must_use]
pub fn metadata_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// What one fetch brought.
pub(crate) struct Fetched {
    pub(crate) set: KeySet,
    /// The `issuer` the metadata declared, when the keys came from metadata.
    pub(crate) metadata_issuer: Option<String>,
    /// The key set's URL the metadata named.
    pub(crate) jwks_uri: Option<String>,
}

/// Reads key sets from one source, again at each refresh.
pub(crate) struct Fetcher {
    source: JwksSource,
    issuer: String,
    client: Option<reqwest::Client>,
}

impl Fetcher {
    /// Checks the source and, for network sources, builds the HTTP client.
    pub(crate) fn new(source: JwksSource, issuer: &str) -> Result<Self, KeySetError> {
        let url = match &source {
            JwksSource::Metadata => Some(check_url(&metadata_url(issuer))?),
            JwksSource::MetadataAt(url) | JwksSource::Url(url) => Some(check_url(url)?),
            JwksSource::File(_) | JwksSource::Inline(_) => None,
        };
        let client = match url {
            Some(url) => Some(http_client(url.scheme() == "https")?),
            None => None,
        };
        Ok(Self {
            source,
            issuer: issuer.to_owned(),
            client,
        })
    }

    /// Where the keys come from, for logs and errors.
    pub(crate) fn source_name(&self) -> String {
        match &self.source {
            JwksSource::Metadata => format!("metadata {}", metadata_url(&self.issuer)),
            JwksSource::MetadataAt(url) => format!("metadata {url}"),
            JwksSource::Url(url) => format!("key set {url}"),
            JwksSource::File(path) => format!("key-set file {}", path.display()),
            JwksSource::Inline(_) => "inline key set".to_owned(),
        }
    }

    /// The URL of the first document fetched (metadata or key set), if the source is one.
    pub(crate) fn url(&self) -> Option<String> {
        match &self.source {
            JwksSource::Metadata => Some(metadata_url(&self.issuer)),
            JwksSource::MetadataAt(url) | JwksSource::Url(url) => Some(url.clone()),
            JwksSource::File(_) | JwksSource::Inline(_) => None,
        }
    }

    /// Reads the key set once; from metadata, also the metadata's `issuer` and `jwks_uri`.
    pub(crate) async fn fetch(&self) -> Result<Fetched, KeySetError> {
        let plain = |set| Fetched {
            set,
            metadata_issuer: None,
            jwks_uri: None,
        };
        let metadata_at = match &self.source {
            JwksSource::Metadata => metadata_url(&self.issuer),
            JwksSource::MetadataAt(url) => url.clone(),
            JwksSource::Url(url) => {
                let document = self.get(url).await?;
                return Ok(plain(KeySet::parse(&document, &self.source_name())?));
            }
            JwksSource::File(path) => {
                let document = read_file(path.clone()).await?;
                return Ok(plain(KeySet::parse(&document, &self.source_name())?));
            }
            JwksSource::Inline(document) => {
                return Ok(plain(KeySet::parse(
                    document.as_bytes(),
                    &self.source_name(),
                )?));
            }
        };
        let metadata = self.get(&metadata_at).await?;
        let (jwks_uri, issuer) = jwks_uri(&metadata, &metadata_at)?;
        let document = self.get(&jwks_uri).await?;
        let set = KeySet::parse(&document, &format!("key set {jwks_uri}"))?;
        Ok(Fetched {
            set,
            metadata_issuer: issuer,
            jwks_uri: Some(jwks_uri),
        })
    }

    /// One bounded GET.
    async fn get(&self, url: &str) -> Result<Vec<u8>, KeySetError> {
        let parsed = check_url(url)?;
        let fail = |reason: String| KeySetError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let Some(client) = &self.client else {
            return Err(fail("no HTTP client for this source".to_owned()));
        };
        let mut response = client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(fail(format!("the server answered {}", response.status())));
        }
        let too_large = || {
            fail(format!(
                "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
            ))
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(error_chain(&e)))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The `jwks_uri` of an OpenID metadata document, checked like any fetched URL, and the
/// document's own `issuer`.
fn jwks_uri(metadata: &[u8], metadata_url: &str) -> Result<(String, Option<String>), KeySetError> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        jwks_uri: String,
        issuer: Option<String>,
    }
    let metadata: Metadata =
        serde_json::from_slice(metadata).map_err(|e| KeySetError::Document {
            source_name: format!("metadata {metadata_url}"),
            reason: format!("not OpenID metadata with a jwks_uri: {e}"),
        })?;
    check_url(&metadata.jwks_uri)?;
    Ok((metadata.jwks_uri, metadata.issuer))
}

/// Reads at most [`MAX_DOCUMENT_BYTES`] of a file, off the async threads.
async fn read_file(path: PathBuf) -> Result<Vec<u8>, KeySetError> {
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || read_bounded(&path))
    };
    let fail = |reason: String| KeySetError::File {
        path: path.clone(),
        reason,
    };
    match read.await {
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => Err(fail(format!(
            "the file is larger than {MAX_DOCUMENT_BYTES} bytes"
        ))),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// The file's bytes, or `None` when it is larger than [`MAX_DOCUMENT_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() <= MAX_DOCUMENT_BYTES).then_some(bytes))
}

/// A reqwest client over rustls with the ring provider, bounded in time, that follows only
/// redirects that stay https (or loopback http).
fn http_client(needs_tls: bool) -> Result<reqwest::Client, KeySetError> {
    let config_error = |reason: String| KeySetError::Config { reason };
    // Without the system's certificates, loopback http still works; https fetches fail with a
    // clear TLS error.
    let tls = client_config(needs_tls).map_err(|e| match e {
        TlsSetupError::Protocols(e) => config_error(format!("tls setup: {e}")),
        TlsSetupError::NoVerifier(e) => config_error(format!(
            "cannot check the tenant's https certificates: {e}; install the system's CA \
             certificates (ca-certificates)"
        )),
    })?;
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if let Err(reason) = url_allowed(attempt.url()) {
            attempt.error(reason)
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(redirects)
        .user_agent(concat!("invitegate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| config_error(format!("http client: {}", error_chain(&e))))
}
