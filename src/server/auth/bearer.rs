//! Bearer tokens from Microsoft Entra External ID (custom authentication extensions).
//!
//! Entra calls the extension's endpoint with `Authorization: Bearer <JWT>`, an RS256 token signed
//! by one of the tenant's keys. [`BearerAuth::check`] accepts it when, in this order:
//!
//! 1. the header is `Bearer <token>` and the token is a compact JWS of at most
//!    [`MAX_TOKEN_BYTES`];
//! 2. its header names `alg` `RS256` (never `none`, HMAC or another algorithm) and a `kid` that
//!    is in the tenant's key set (an unknown `kid` triggers one rate-limited refetch);
//! 3. the signature verifies with that key;
//! 4. `exp` is present and not past, and `nbf`, if present, is not ahead, both with the leeway;
//! 5. `iss` equals the configured issuer, `aud` is one of the configured audiences, and `azp`
//!    (v2 tokens) or `appid` (v1 tokens) is [`ENTRA_CALLER_APP_ID`].
//!
//! Entra sends one token for its whole lifetime, so an accepted token is remembered until its
//! `exp` (plus leeway) under the SHA-256 of its text: a repeated token costs one digest and one
//! map lookup, and its time window is still checked. The token text itself is never kept or
//! logged.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use sha2::{Digest as _, Sha256};

use super::jwks::{Fetcher, JwksSource, KeySet, KeySetError};

/// The application id of Microsoft's Authentication Events Service, which calls custom
/// authentication extensions: the `azp` (v2) or `appid` (v1) of every token Entra sends.
pub const ENTRA_CALLER_APP_ID: &str = "99045fe1-7639-4a75-9d4a-577b6ca3810f";
/// Clock skew allowed on `exp` and `nbf` unless configured otherwise.
pub const DEFAULT_TOKEN_LEEWAY: Duration = Duration::from_secs(60);
/// How often the key set is fetched again. Entra publishes a new key weeks before it signs
/// with it, so hourly is prompt; a token with an unknown `kid` also triggers a fetch.
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(60 * 60);
/// Shortest time between two fetches when a token names an unknown `kid`: a flood of made-up
/// key ids costs the tenant at most one request per interval.
pub const DEFAULT_UNKNOWN_KID_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Accepted tokens remembered at once. Entra reuses one token per tenant for about an hour;
/// 4096 entries of about a hundred bytes cover any real caller in a few hundred KiB.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;
/// Longest token read. Entra's tokens are 1 to 2 KiB; the bound caps the work an unverified
/// token can cause (hashing, decoding) well below the server's header limit.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Shortest allowed refresh period.
pub const MIN_REFRESH_EVERY: Duration = Duration::from_secs(1);

/// What bearer authentication needs; [`BearerConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct BearerConfig {
    /// The exact `iss` of accepted tokens, `https://{subdomain}.ciamlogin.com/{tenantId}/v2.0`.
    pub issuer: String,
    /// Accepted `aud` values: the extension's app id and/or its `api://` URI.
    pub audiences: Vec<String>,
    /// Where the signing keys come from.
    pub jwks: JwksSource,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Period of the scheduled key-set refresh ([`BearerAuth::spawn_refresh`]).
    pub refresh_every: Duration,
    /// Shortest time between two fetches caused by unknown key ids.
    pub unknown_kid_min_interval: Duration,
    /// Accepted tokens remembered at once.
    pub cache_capacity: usize,
}

impl BearerConfig {
    /// A configuration with the default leeway, refresh period, rate limit and cache size.
    #[must_use]
    pub fn new(issuer: String, audiences: Vec<String>, jwks: JwksSource) -> Self {
        Self {
            issuer,
            audiences,
            jwks,
            leeway: DEFAULT_TOKEN_LEEWAY,
            refresh_every: DEFAULT_REFRESH_EVERY,
            unknown_kid_min_interval: DEFAULT_UNKNOWN_KID_MIN_INTERVAL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    fn check(&self) -> Result<(), KeySetError> {
        let fail = |reason: &str| {
            Err(KeySetError::Config {
                reason: reason.to_owned(),
            })
        };
        if self.issuer.trim().is_empty() {
            return fail(
                "no issuer; give https://{subdomain}.ciamlogin.com/{tenantId}/v2.0 \
                 (the tenant's subdomain and id)",
            );
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.trim().is_empty()) {
            return fail(
                "no audience (or an empty one); give the custom extension's app id and/or its \
                 api:// URI",
            );
        }
        if self.refresh_every < MIN_REFRESH_EVERY {
            return fail("the key-set refresh period must be at least one second");
        }
        if self.cache_capacity == 0 {
            return fail("the token cache needs room for at least one token");
        }
        Ok(())
    }
}

/// Why a bearer token was refused. For the log and metrics only: the HTTP answer does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenRejection {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header of another scheme, such as `Basic`.
    NotBearer,
    /// Not a compact signed JWT, too long, or without `exp`.
    Malformed,
    /// The header's `alg` is not `RS256`.
    Algorithm,
    /// The `kid` is missing or not in the tenant's key set, even after a refetch.
    UnknownKey,
    /// The signature does not verify with the named key.
    Signature,
    /// `exp` is past, beyond the leeway.
    Expired,
    /// `nbf` is ahead, beyond the leeway.
    NotYetValid,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` is none of the configured audiences.
    Audience,
    /// `azp`/`appid` is not Entra's authentication events service.
    Caller,
    /// No usable signing key is loaded: every token is refused.
    NoKeys,
}

impl TokenRejection {
    /// Every rejection, for metrics that register their labels up front.
    pub const ALL: [Self; 12] = [
        Self::Missing,
        Self::NotBearer,
        Self::Malformed,
        Self::Algorithm,
        Self::UnknownKey,
        Self::Signature,
        Self::Expired,
        Self::NotYetValid,
        Self::Issuer,
        Self::Audience,
        Self::Caller,
        Self::NoKeys,
    ];

    /// A stable kebab-case name, for metric labels.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::NotBearer => "not-bearer",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown-key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Caller => "caller",
            Self::NoKeys => "no-keys",
        }
    }
}

impl TokenRejection {
    /// Why, in a sentence for the log.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "no authorization header (entra always sends a bearer token)",
            Self::NotBearer => "the authorization header is not a bearer token",
            Self::Malformed => "the bearer token is not a signed jwt with an exp claim",
            Self::Algorithm => "the token is not signed with rs256",
            Self::UnknownKey => "the token's key id is not in the tenant's key set",
            Self::Signature => "the token's signature does not verify",
            Self::Expired => "the token has expired (exp is past, beyond the leeway)",
            Self::NotYetValid => "the token is not valid yet (nbf is ahead, beyond the leeway)",
            Self::Issuer => "the token's issuer is not the configured issuer",
            Self::Audience => "the token's audience is none of the configured audiences",
            Self::Caller => {
                "the token was not issued to entra's authentication events service (azp/appid)"
            }
            Self::NoKeys => "no signing keys are loaded, so every token is refused",
        }
    }
}

impl fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Checks Entra's bearer tokens against the tenant's keys. Cheap to share: `Send + Sync`.
pub struct BearerAuth {
    config: BearerConfig,
    /// Leeway in whole seconds.
    leeway: i64,
    fetcher: Fetcher,
    keys: RwLock<Arc<Keys>>,
    /// Held while fetching, so that requests with an unknown `kid` share one fetch.
    fetching: tokio::sync::Mutex<FetchState>,
    cache: TokenCache,
    /// Signature checks only: the claims are checked by hand against the injected clock.
    validation: Validation,
    verifications: AtomicU64,
}

/// One installed key set.
struct Keys {
    set: KeySet,
    /// Counts installs, so a request can tell whether keys arrived while it waited.
    generation: u64,
}

#[derive(Default)]
struct FetchState {
    last_fetch: Option<Instant>,
}

impl BearerAuth {
    /// Checks the configuration and loads the keys once.
    ///
    /// # Errors
    ///
    /// A [`KeySetError`] naming the source and why, when the configuration cannot work, the
    /// source cannot be read, or it holds no usable RS256 key.
    pub async fn start(config: BearerConfig) -> Result<Arc<Self>, KeySetError> {
        config.check()?;
        let fetcher = Fetcher::new(config.jwks.clone(), &config.issuer)?;
        let set = fetcher.fetch().await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let auth = Self {
            leeway: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
            cache: TokenCache::new(config.cache_capacity),
            config,
            fetcher,
            keys: RwLock::new(Arc::new(Keys { set, generation: 1 })),
            fetching: tokio::sync::Mutex::new(FetchState {
                last_fetch: Some(Instant::now()),
            }),
            validation,
            verifications: AtomicU64::new(0),
        };
        tracing::info!(
            keys = auth.key_count(),
            source = %auth.fetcher.source_name(),
            "bearer token signing keys loaded"
        );
        Ok(Arc::new(auth))
    }

    /// Checks an `Authorization` header value (`None`: no header) at `now`.
    ///
    /// # Errors
    ///
    /// Why the token is refused; log it, but do not send it to the caller.
    pub async fn check(
        &self,
        authorization: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<(), TokenRejection> {
        let header = authorization.ok_or(TokenRejection::Missing)?;
        let token = bearer_token(header)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::Malformed);
        }
        let now = unix_seconds(now);
        let digest: [u8; 32] = Sha256::digest(token).into();
        if let Some(hit) = self.cache.get(&digest) {
            return in_window(now, hit.not_before, hit.expires, self.leeway);
        }
        self.check_uncached(token, digest, now).await
    }

    /// The full check of a token not in the cache.
    async fn check_uncached(
        &self,
        token: &[u8],
        digest: [u8; 32],
        now: i64,
    ) -> Result<(), TokenRejection> {
        let header = token_header(token)?;
        if header.alg != "RS256" {
            return Err(TokenRejection::Algorithm);
        }
        if header.crit.is_some() {
            // No critical header extension is understood here (RFC 7515 section 4.1.11).
            return Err(TokenRejection::Malformed);
        }
        let kid = header.kid.ok_or(TokenRejection::UnknownKey)?;
        let mut keys = self.snapshot();
        if !keys.set.keys.contains_key(&kid) {
            self.refetch_for_unknown_kid(keys.generation).await;
            keys = self.snapshot();
        }
        if keys.set.is_empty() {
            return Err(TokenRejection::NoKeys);
        }
        let key = keys.set.keys.get(&kid).ok_or(TokenRejection::UnknownKey)?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map_err(|e| rejection(&e))?
            .claims;
        let expires = claims
            .exp
            .and_then(|exp| numeric_date(exp, f64::floor))
            .ok_or(TokenRejection::Malformed)?;
        let not_before = match claims.nbf {
            Some(nbf) => numeric_date(nbf, f64::ceil).ok_or(TokenRejection::Malformed)?,
            None => i64::MIN,
        };
        in_window(now, not_before, expires, self.leeway)?;
        if claims.iss.as_deref() != Some(self.config.issuer.as_str()) {
            return Err(TokenRejection::Issuer);
        }
        if !self.audience_accepted(claims.aud.as_ref()) {
            return Err(TokenRejection::Audience);
        }
        let callers = [claims.azp.as_deref(), claims.appid.as_deref()];
        let mut named = callers.iter().flatten().peekable();
        if named.peek().is_none()
            || !named.all(|caller| caller.eq_ignore_ascii_case(ENTRA_CALLER_APP_ID))
        {
            return Err(TokenRejection::Caller);
        }
        let entry = CachedToken {
            not_before,
            expires,
            key: key.fingerprint,
        };
        self.cache.insert(digest, entry, now, self.leeway, || {
            self.snapshot().generation == keys.generation
        });
        Ok(())
    }

    fn audience_accepted(&self, aud: Option<&Audiences>) -> bool {
        let accepted = |aud: &String| self.config.audiences.contains(aud);
        match aud {
            Some(Audiences::One(aud)) => accepted(aud),
            Some(Audiences::Many(auds)) => auds.iter().any(accepted),
            None => false,
        }
    }

    /// Fetches the key set once now, whatever the rate limit, and returns how many keys it
    /// holds. On failure the previous keys stay and the reason is logged.
    ///
    /// # Errors
    ///
    /// A [`KeySetError`] naming the source and why.
    pub async fn refresh(&self) -> Result<usize, KeySetError> {
        let mut state = self.fetching.lock().await;
        self.fetch_locked(&mut state).await
    }

    /// Refreshes the keys every [`BearerConfig::refresh_every`] until this `BearerAuth` is
    /// dropped (or the task aborted). Failures are logged and the previous keys kept.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let every = self.config.refresh_every;
        let auth = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(auth) = auth.upgrade() else {
                    break;
                };
                // A failure is logged by `refresh` and changes nothing.
                let _ = auth.refresh().await;
            }
        })
    }

    /// Usable signing keys loaded now.
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.snapshot().set.len()
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

    /// One line for the start-up log: issuer, audiences and key source.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "entra bearer tokens from issuer {} for audience {}, caller {}, keys from {} \
             (usable keys: {}, refreshed every {}, leeway {})",
            self.config.issuer,
            self.config.audiences.join(" or "),
            ENTRA_CALLER_APP_ID,
            self.fetcher.source_name(),
            self.key_count(),
            humantime::format_duration(self.config.refresh_every),
            humantime::format_duration(self.config.leeway),
        )
    }

    fn snapshot(&self) -> Arc<Keys> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches the keys for a token with an unknown `kid`, unless keys arrived while this
    /// request waited for the lock (then it shares that fetch) or the last fetch was too
    /// recent.
    async fn refetch_for_unknown_kid(&self, seen_generation: u64) {
        let mut state = self.fetching.lock().await;
        if self.snapshot().generation != seen_generation {
            return;
        }
        if state
            .last_fetch
            .is_some_and(|last| last.elapsed() < self.config.unknown_kid_min_interval)
        {
            return;
        }
        // A failure is logged by `fetch_locked`; the token is then refused as unknown.
        let _ = self.fetch_locked(&mut state).await;
    }

    async fn fetch_locked(&self, state: &mut FetchState) -> Result<usize, KeySetError> {
        state.last_fetch = Some(Instant::now());
        match self.fetcher.fetch().await {
            Ok(set) => {
                let count = set.len();
                self.install(set);
                Ok(count)
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    keys = self.key_count(),
                    "bearer token key set refresh failed; keeping the previous keys"
                );
                Err(error)
            }
        }
    }

    /// Installs a new key set and forgets cached tokens whose key left it.
    fn install(&self, set: KeySet) {
        let fingerprints = |set: &KeySet| -> HashSet<[u8; 32]> {
            set.keys.values().map(|key| key.fingerprint).collect()
        };
        let new_fingerprints = fingerprints(&set);
        let old_fingerprints = {
            let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
            let old = fingerprints(&keys.set);
            *keys = Arc::new(Keys {
                set,
                generation: keys.generation + 1,
            });
            old
        };
        self.cache
            .retain(|entry| new_fingerprints.contains(&entry.key));
        if new_fingerprints == old_fingerprints {
            tracing::debug!(
                keys = new_fingerprints.len(),
                "bearer token signing keys unchanged"
            );
        } else {
            tracing::info!(
                keys = new_fingerprints.len(),
                added = new_fingerprints.difference(&old_fingerprints).count(),
                removed = old_fingerprints.difference(&new_fingerprints).count(),
                "bearer token signing keys changed"
            );
        }
    }
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("issuer", &self.config.issuer)
            .field("audiences", &self.config.audiences)
            .field("source", &self.fetcher.source_name())
            .field("keys", &self.key_count())
            .field("cached_tokens", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// The token of a `Bearer <token>` header value; the scheme is case-insensitive.
fn bearer_token(header: &[u8]) -> Result<&[u8], TokenRejection> {
    let header = header.trim_ascii();
    let (scheme, rest) = match header.iter().position(|&b| b == b' ') {
        Some(space) => header.split_at_checked(space).unwrap_or((header, &[])),
        None => (header, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(TokenRejection::NotBearer);
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(TokenRejection::Malformed);
    }
    Ok(token)
}

/// The fields of a JWS header this module reads.
#[derive(serde::Deserialize)]
struct TokenHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

/// The decoded header of a compact JWS: three base64url parts, JSON header.
fn token_header(token: &[u8]) -> Result<TokenHeader, TokenRejection> {
    let shaped = token
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed);
    };
    if !shaped || header.is_empty() {
        return Err(TokenRejection::Malformed);
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenRejection::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenRejection::Malformed)
}

/// The claims this module checks; anything else in the token is ignored.
#[derive(serde::Deserialize)]
struct Claims {
    exp: Option<f64>,
    nbf: Option<f64>,
    iss: Option<String>,
    aud: Option<Audiences>,
    azp: Option<String>,
    appid: Option<String>,
}

/// `aud` is one string or an array of strings (RFC 7519 section 4.1.3).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Audiences {
    One(String),
    Many(Vec<String>),
}

/// A NumericDate as whole seconds, rounded with `round`; `None` if not finite.
fn numeric_date(value: f64, round: fn(f64) -> f64) -> Option<i64> {
    // `as` saturates at the i64 range, which is far beyond any real date.
    value.is_finite().then(|| round(value) as i64)
}

fn rejection(error: &jsonwebtoken::errors::Error) -> TokenRejection {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            TokenRejection::Signature
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm => TokenRejection::Algorithm,
        _ => TokenRejection::Malformed,
    }
}

/// Whether `now` lies in `[not_before, expires)` widened by `leeway` on both sides.
fn in_window(now: i64, not_before: i64, expires: i64, leeway: i64) -> Result<(), TokenRejection> {
    if now >= expires.saturating_add(leeway) {
        return Err(TokenRejection::Expired);
    }
    if now.saturating_add(leeway) < not_before {
        return Err(TokenRejection::NotYetValid);
    }
    Ok(())
}

fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// What is remembered of an accepted token: its time window and its key, never its text.
#[derive(Debug, Clone, Copy)]
struct CachedToken {
    /// `nbf` in Unix seconds, `i64::MIN` without one.
    not_before: i64,
    /// `exp` in Unix seconds.
    expires: i64,
    /// Fingerprint of the key that verified it.
    key: [u8; 32],
}

/// Accepted tokens by the SHA-256 of their text, bounded.
struct TokenCache {
    capacity: usize,
    entries: RwLock<HashMap<[u8; 32], CachedToken>>,
}

impl TokenCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, digest: &[u8; 32]) -> Option<CachedToken> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .copied()
    }

    /// Remembers a token if `still_current` holds under the cache lock: a key-set install that
    /// raced with this check must not leave behind a token of a key it removed. When full,
    /// expired entries go first, then any.
    fn insert(
        &self,
        digest: [u8; 32],
        entry: CachedToken,
        now: i64,
        leeway: i64,
        still_current: impl FnOnce() -> bool,
    ) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if !still_current() {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&digest) {
            entries.retain(|_, cached| now < cached.expires.saturating_add(leeway));
            while entries.len() >= self.capacity {
                let Some(any) = entries.keys().next().copied() else {
                    break;
                };
                entries.remove(&any);
            }
        }
        entries.insert(digest, entry);
    }

    fn retain(&self, keep: impl Fn(&CachedToken) -> bool) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, entry| keep(entry));
    }

    fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token(b"Bearer abc"), Ok(&b"abc"[..]));
        assert_eq!(bearer_token(b"  bearer   abc  "), Ok(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Ok(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer"), Err(TokenRejection::Malformed));
        assert_eq!(bearer_token(b"Bearer   "), Err(TokenRejection::Malformed));
        assert_eq!(bearer_token(b"Basic abc"), Err(TokenRejection::NotBearer));
        assert_eq!(bearer_token(b"Bearerabc"), Err(TokenRejection::NotBearer));
        assert_eq!(bearer_token(b""), Err(TokenRejection::NotBearer));
    }

    #[test]
    fn window_edges() {
        // exp is exclusive, nbf inclusive, each widened by the leeway.
        assert_eq!(in_window(100, i64::MIN, 101, 0), Ok(()));
        assert_eq!(
            in_window(101, i64::MIN, 101, 0),
            Err(TokenRejection::Expired)
        );
        assert_eq!(in_window(160, i64::MIN, 101, 60), Ok(()));
        assert_eq!(
            in_window(161, i64::MIN, 101, 60),
            Err(TokenRejection::Expired)
        );
        assert_eq!(in_window(100, 100, 200, 0), Ok(()));
        assert_eq!(in_window(99, 100, 200, 0), Err(TokenRejection::NotYetValid));
        assert_eq!(in_window(40, 100, 200, 60), Ok(()));
        assert_eq!(
            in_window(39, 100, 200, 60),
            Err(TokenRejection::NotYetValid)
        );
        assert_eq!(
            in_window(i64::MAX, i64::MIN, i64::MAX, i64::MAX),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn rejection_names_are_unique_kebab_case() {
        let names: HashSet<_> = TokenRejection::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), TokenRejection::ALL.len());
        for rejection in TokenRejection::ALL {
            let name = rejection.name();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{name}"
            );
            let text = rejection.to_string();
            assert_eq!(text, text.to_lowercase(), "{text}");
        }
    }

    #[test]
    fn cache_is_bounded_and_evicts_expired_first() {
        let cache = TokenCache::new(3);
        let entry = |expires| CachedToken {
            not_before: i64::MIN,
            expires,
            key: [0; 32],
        };
        cache.insert([1; 32], entry(10), 0, 0, || true);
        cache.insert([2; 32], entry(1000), 0, 0, || true);
        cache.insert([3; 32], entry(1000), 0, 0, || true);
        // Full: at now = 500 the first entry is expired and goes first.
        cache.insert([4; 32], entry(1000), 500, 0, || true);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[4; 32]).is_some());
        // Full of live entries: one of them goes.
        cache.insert([5; 32], entry(1000), 500, 0, || true);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&[5; 32]).is_some());
        // A raced key-set install: nothing is remembered.
        cache.insert([6; 32], entry(1000), 500, 0, || false);
        assert!(cache.get(&[6; 32]).is_none());
    }

    #[test]
    fn clock_before_the_epoch_is_negative() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }
}
