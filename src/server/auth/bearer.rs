//! Bearer tokens from Microsoft Entra External ID (custom authentication extensions).
//!
//! Entra calls the extension's endpoint with `Authorization: Bearer <JWT>`, an RS256 token signed
//! by one of the tenant's keys. [`BearerAuth::check`] accepts it when, in this order:
//!
//! 1. an audience is configured (else every call is refused, answered 503: the server is
//!    waiting for `ENTRA_AUDIENCE`);
//! 2. the header is `Bearer <token>` and the token is a compact JWS of at most
//!    [`MAX_TOKEN_BYTES`];
//! 3. its header names `alg` `RS256` (never `none`, HMAC or another algorithm) and a `kid` that
//!    is in the tenant's key set (an unknown `kid` triggers one shared, rate-limited fetch,
//!    waited for at most [`BearerConfig::unknown_kid_wait`]); no key held at all is
//!    [`TokenRejection::KeysUnavailable`], answered 503;
//! 4. the signature verifies with that key;
//! 5. `exp` is present and not past, and `nbf`, if present, is not ahead, both with the leeway;
//! 6. `iss` is one of the accepted issuers ([`BearerConfig::issuer`] and
//!    [`BearerConfig::also_issuers`] for any token, [`BearerConfig::v1_issuers`] only for a
//!    token with `ver` `1.0`);
//! 7. `tid`, when present and a tenant is configured, is that tenant;
//! 8. `aud` is one of the configured audiences, and `azp` (v2 tokens) or `appid` (v1 tokens)
//!    is [`ENTRA_CALLER_APP_ID`].
//!
//! Each refusal is a [`TokenRefusal`]: which check failed and the values it looked at, for the log.
//!
//! `jsonwebtoken`'s [`Validation`] checks only the signature and algorithm here; the claims
//! are checked by hand, because its checks would lose what this module must keep: it reads the
//! system clock inside `decode` (the check takes `now`, which the token cache and the tests
//! need); its issuer and audience errors do not carry the values, which every refusal logs; and
//! it has no notion of an issuer accepted only on v1 tokens, of `tid`, or of `azp`/`appid`.
//! The hand checks are a few string comparisons on claims `decode` has already parsed, beside
//! one RSA verification per token (and none for a token answered from the cache).
//!
//! Entra sends one token for its whole lifetime, so an accepted token is remembered until its
//! `exp` (plus leeway) under a keyed hash of its text, and a hit is a token of the same text
//! (see the `token_cache` module). The token is never logged.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use jsonwebtoken::{Algorithm, Validation};

pub use super::bearer_config::{
    BearerConfig, DEFAULT_CACHE_CAPACITY, DEFAULT_REFRESH_EVERY, DEFAULT_TOKEN_LEEWAY,
    DEFAULT_UNKNOWN_KID_MIN_INTERVAL, DEFAULT_UNKNOWN_KID_WAIT, ENTRA_CALLER_APP_ID,
    MIN_REFRESH_EVERY,
};
use super::claims::check_claims;
use super::jwks::{Fetcher, KeySetError};
use super::keystore::KeyStore;
use super::rejection::loggable;
pub use super::rejection::{Details, TokenRefusal, TokenRejection};
use super::token::{
    Claims, bearer_token, in_window, numeric_date, rejection, token_header, unix_seconds,
    unverified_claims,
};
use super::token_cache::{CachedToken, TokenCache};

/// Longest token read. Entra's tokens are 1 to 2 KiB; the bound caps the work an unverified
/// token can cause (hashing, decoding) well below the server's header limit.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Key ids listed in a refusal's `expected`: a tenant publishes a handful.
const LOGGED_KIDS: usize = 8;

/// Checks Entra's bearer tokens against the tenant's keys. Cheap to share: `Send + Sync`.
pub struct BearerAuth {
    config: BearerConfig,
    /// Leeway in whole seconds.
    leeway: i64,
    store: Arc<KeyStore>,
    cache: Arc<TokenCache>,
    /// Signature checks only: the claims are checked by hand against the injected clock.
    validation: Validation,
    verifications: AtomicU64,
}

impl BearerAuth {
    /// Checks the configuration and loads the keys once.
    ///
    /// # Errors
    ///
    /// A [`KeySetError`] naming the source and why, when the configuration cannot work (no
    /// audience included), the source cannot be read, or it holds no usable RS256 key.
    pub async fn start(config: BearerConfig) -> Result<Arc<Self>, KeySetError> {
        config.check(true)?;
        let auth = Self::new(config)?;
        auth.store.fetch_now().await?;
        Ok(auth)
    }

    /// Checks the configuration without fetching anything: no key is held until
    /// [`BearerAuth::refresh`] or [`BearerAuth::spawn_refresh`] fetches them, and until then
    /// every token is refused as [`TokenRejection::KeysUnavailable`]. The audiences may be
    /// empty: every token is then refused as [`TokenRejection::AudienceUnset`].
    ///
    /// # Errors
    ///
    /// A [`KeySetError`] when the configuration can never work.
    pub fn new(config: BearerConfig) -> Result<Arc<Self>, KeySetError> {
        config.check(false)?;
        let fetcher = Fetcher::new(config.jwks.clone(), &config.issuer)?;
        let cache = Arc::new(TokenCache::new(config.cache_capacity));
        let v2_issuers = std::iter::once(&config.issuer)
            .chain(&config.also_issuers)
            .cloned()
            .collect();
        let store = KeyStore::new(
            fetcher,
            Arc::clone(&cache),
            config.unknown_kid_min_interval,
            v2_issuers,
        );
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Ok(Arc::new(Self {
            leeway: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
            cache,
            config,
            store: Arc::new(store),
            validation,
            verifications: AtomicU64::new(0),
        }))
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &BearerConfig {
        &self.config
    }

    /// Checks an `Authorization` header value (`None`: no header) at `now`.
    ///
    /// # Errors
    ///
    /// Which check refused the token; [`BearerAuth::check_explained`] also gives the values.
    pub async fn check(
        &self,
        authorization: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<(), TokenRejection> {
        self.check_explained(authorization, now)
            .await
            .map_err(|refusal| refusal.kind)
    }

    /// Like [`BearerAuth::check`], with the values the failed check looked at, for the log.
    ///
    /// # Errors
    ///
    /// The [`TokenRefusal`]; log it, but do not send it to the caller.
    pub async fn check_explained(
        &self,
        authorization: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<(), TokenRefusal> {
        if self.config.audiences.is_empty() {
            return Err(TokenRefusal::new(TokenRejection::AudienceUnset)
                .with(|d| d.expected = Some("ENTRA_AUDIENCE".to_owned())));
        }
        let header = authorization.ok_or(TokenRejection::Missing)?;
        let token = bearer_token(header)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRefusal::new(TokenRejection::Malformed)
                .with(|d| d.expected = Some(format!("at most {MAX_TOKEN_BYTES} bytes"))));
        }
        let now = unix_seconds(now);
        let index = self.cache.index(token);
        if let Some(hit) = self.cache.get(index, token) {
            return self.window(now, hit.not_before, hit.expires);
        }
        // Boxed: only a token not seen before waits here, and the future of every request
        // stays small.
        Box::pin(self.check_uncached(token, index, now)).await
    }

    /// Whether `now` is in the token's window, with the values when it is not.
    fn window(&self, now: i64, not_before: i64, expires: i64) -> Result<(), TokenRefusal> {
        in_window(now, not_before, expires, self.leeway).map_err(|kind| {
            TokenRefusal::new(kind).with(|d| {
                d.exp = Some(expires);
                d.nbf = (not_before != i64::MIN).then_some(not_before);
                d.now = Some(now);
                d.leeway = Some(self.leeway);
            })
        })
    }

    /// The full check of a token not in the cache.
    async fn check_uncached(&self, token: &[u8], index: u64, now: i64) -> Result<(), TokenRefusal> {
        let header = token_header(token)?;
        let alg = loggable(&header.alg);
        if header.alg != "RS256" {
            return Err(TokenRefusal::new(TokenRejection::Algorithm).with(|d| {
                d.alg = Some(alg);
                d.expected = Some("RS256".to_owned());
            }));
        }
        if header.crit.is_some() {
            // No critical header extension is understood here (RFC 7515 section 4.1.11).
            return Err(TokenRefusal::new(TokenRejection::Malformed)
                .with(|d| d.expected = Some("no crit header".to_owned())));
        }
        let Some(kid) = header.kid else {
            return Err(TokenRefusal::new(TokenRejection::UnknownKey).with(|d| {
                stated(d, token);
                d.alg = Some(alg);
                d.expected = Some("a kid in the token header".to_owned());
            }));
        };
        let mut keys = self.store.snapshot();
        if !keys.set.keys.contains_key(&kid) {
            if let Some(mut fetched) = self.store.fetch_shared() {
                let _ = tokio::time::timeout(self.config.unknown_kid_wait, fetched.changed()).await;
            }
            keys = self.store.snapshot();
        }
        if keys.set.is_empty() {
            return Err(
                TokenRefusal::new(TokenRejection::KeysUnavailable).with(|d| {
                    stated(d, token);
                    d.kid = Some(loggable(&kid));
                    d.expected = Some(match self.store.last_error() {
                        Some(error) => format!("keys from {}: {error}", self.source_name()),
                        None => format!("keys from {}", self.source_name()),
                    });
                }),
            );
        }
        let Some(key) = keys.set.keys.get(&kid) else {
            return Err(TokenRefusal::new(TokenRejection::UnknownKey).with(|d| {
                stated(d, token);
                d.kid = Some(loggable(&kid));
                d.alg = Some(alg);
                let mut held: Vec<&str> = keys.set.keys.keys().map(String::as_str).collect();
                held.sort_unstable();
                held.truncate(LOGGED_KIDS);
                d.expected = Some(format!("one of {}", held.join(", ")));
            }));
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map_err(|e| {
                TokenRefusal::new(rejection(&e)).with(|d| {
                    stated(d, token);
                    d.kid = Some(loggable(&kid));
                    d.alg = Some(alg);
                })
            })?
            .claims;
        let expires = claims
            .exp
            .and_then(|exp| numeric_date(exp, f64::floor))
            .ok_or_else(|| {
                TokenRefusal::new(TokenRejection::Malformed)
                    .with(|d| d.expected = Some("a numeric exp claim".to_owned()))
            })?;
        let not_before = match claims.nbf {
            Some(nbf) => numeric_date(nbf, f64::ceil).ok_or_else(|| {
                TokenRefusal::new(TokenRejection::Malformed)
                    .with(|d| d.expected = Some("a numeric nbf claim".to_owned()))
            })?,
            None => i64::MIN,
        };
        self.window(now, not_before, expires)?;
        check_claims(&self.config, &claims)?;
        let entry = CachedToken {
            not_before,
            expires,
            key: key.fingerprint,
        };
        self.cache
            .insert((index, token), entry, now, self.leeway, || {
                self.store.snapshot().generation == keys.generation
            });
        Ok(())
    }

    /// The accepted issuers on one line, the v1-only ones marked.
    #[must_use]
    pub fn describe_issuers(&self) -> String {
        self.config.describe_issuers()
    }

    /// Fetches the key set once now, whatever the rate limit, and returns how many keys it
    /// holds. On failure the previous keys stay and the reason is logged.
    ///
    /// # Errors
    ///
    /// A [`KeySetError`] naming the source and why.
    pub async fn refresh(&self) -> Result<usize, KeySetError> {
        self.store.fetch_now().await
    }

    /// Keeps the keys fresh until this `BearerAuth` is dropped (or the task aborted): while
    /// none is held, fetches with backoff (1 s doubling to 60 s); then every
    /// [`BearerConfig::refresh_every`]. Failures are logged and the previous keys kept.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.store.spawn_maintenance(self.config.refresh_every)
    }

    /// Usable signing keys held now.
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.store.snapshot().set.len()
    }

    /// Why the last key fetch failed, if it did.
    #[must_use]
    pub fn last_fetch_error(&self) -> Option<String> {
        self.store.last_error()
    }

    /// Whether calls can be accepted: `Err` says what is missing (the audience, the keys).
    ///
    /// # Errors
    ///
    /// A short phrase for `/healthz` and the log.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.config.audiences.is_empty() {
            Err("waiting for ENTRA_AUDIENCE")
        } else if self.key_count() == 0 {
            Err("waiting for the signing keys")
        } else {
            Ok(())
        }
    }

    /// The `issuer` the key source's metadata declared, when the keys come from metadata.
    #[must_use]
    pub fn metadata_issuer(&self) -> Option<String> {
        self.store.metadata_issuer()
    }

    /// The key set's URL, when the keys come from metadata and have been read.
    #[must_use]
    pub fn jwks_uri(&self) -> Option<String> {
        self.store.jwks_uri()
    }

    /// Where the keys come from, for logs.
    #[must_use]
    pub fn source_name(&self) -> String {
        self.store.fetcher().source_name()
    }

    /// The URL first fetched for the keys (metadata or key set), if they come from the network.
    #[must_use]
    pub fn source_url(&self) -> Option<String> {
        self.store.fetcher().url()
    }

    /// Signature checks done so far: a repeated token answered from the cache adds none.
    #[must_use]
    pub fn signature_checks(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Accepted tokens remembered now.
    #[must_use]
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// One line for the start-up log: issuers, audiences, key source and keys held.
    #[must_use]
    pub fn describe(&self) -> String {
        let audiences = if self.config.audiences.is_empty() {
            "(none yet: set ENTRA_AUDIENCE)".to_owned()
        } else {
            self.config.audiences.join(" or ")
        };
        format!(
            "entra bearer tokens from issuer {} for audience {}, caller {}{}, keys from {} \
             (usable keys: {}, refreshed every {}, leeway {})",
            self.describe_issuers(),
            audiences,
            ENTRA_CALLER_APP_ID,
            self.config
                .tenant
                .as_ref()
                .map(|tenant| format!(", tenant {tenant}"))
                .unwrap_or_default(),
            self.source_name(),
            self.key_count(),
            humantime::format_duration(self.config.refresh_every),
            humantime::format_duration(self.config.leeway),
        )
    }
}

/// The `iss` and `tid` a token states, unverified, for the log of a refusal before (or at)
/// its signature check: they say which tenant's key set the token expects.
fn stated(details: &mut Details, token: &[u8]) {
    if let Some(claims) = unverified_claims(token) {
        details.iss = claims.iss.as_deref().map(loggable);
        details.tid = claims.tid.as_deref().map(loggable);
    }
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("issuers", &self.config.accepted_issuers())
            .field("audiences", &self.config.audiences)
            .field("source", &self.source_name())
            .field("keys", &self.key_count())
            .field("cached_tokens", &self.cache.len())
            .finish_non_exhaustive()
    }
}
