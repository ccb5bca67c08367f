//! What bearer authentication needs: the accepted issuers (and which only for v1 tokens), the
//! tenant, the audiences, the key source, and the timing of the key fetches and the cache.

use std::time::Duration;

use super::jwks::{JwksSource, KeySetError};

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
/// Longest a request waits for a key fetch its unknown `kid` started or joined. Entra gives
/// the whole call 1 s by default (2 s at most): half of it leaves room for the answer, and a
/// fetch from a healthy tenant takes a fraction of it. The fetch itself goes on in the
/// background, so Entra's retry finds the new key.
pub const DEFAULT_UNKNOWN_KID_WAIT: Duration = Duration::from_millis(500);
/// Accepted tokens remembered at once. Entra reuses one token per tenant for about an hour;
/// 4096 entries cover any real caller. Each keeps the token's text, for the comparison on a hit:
/// about 6 MiB with Entra's 1-2 KiB tokens, 32 MiB at most (tokens of [`MAX_TOKEN_BYTES`]), and
/// only tokens that passed every check are kept.
///
/// [`MAX_TOKEN_BYTES`]: super::bearer::MAX_TOKEN_BYTES
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;
/// Shortest allowed refresh period.
pub const MIN_REFRESH_EVERY: Duration = Duration::from_secs(1);
/// What bearer authentication needs; [`BearerConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct BearerConfig {
    /// The first accepted `iss`; with [`JwksSource::Metadata`], where the metadata is looked
    /// for (`{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// More accepted `iss` values, for tokens of any version.
    pub also_issuers: Vec<String>,
    /// Accepted `iss` values for v1 tokens (`ver` `1.0`) only, e.g.
    /// `https://sts.windows.net/{tenantId}/`.
    pub v1_issuers: Vec<String>,
    /// The tenant id a token's `tid`, when present, must equal (compared without case).
    pub tenant: Option<String>,
    /// Accepted `aud` values: the extension's app id and/or its `api://` URI. Empty only while
    /// waiting for it ([`BearerAuth::new`](super::BearerAuth::new)): every call is then refused.
    pub audiences: Vec<String>,
    /// Where the signing keys come from.
    pub jwks: JwksSource,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Period of the scheduled key-set refresh ([`BearerAuth::spawn_refresh`](super::BearerAuth::spawn_refresh)).
    pub refresh_every: Duration,
    /// Shortest time between two fetches caused by unknown key ids.
    pub unknown_kid_min_interval: Duration,
    /// Longest a request waits for the fetch its unknown key id started or joined.
    pub unknown_kid_wait: Duration,
    /// Accepted tokens remembered at once.
    pub cache_capacity: usize,
}

impl BearerConfig {
    /// A configuration with one issuer and the default leeway, refresh period, rate limit and
    /// cache size.
    #[must_use]
    pub fn new(issuer: String, audiences: Vec<String>, jwks: JwksSource) -> Self {
        Self {
            issuer,
            also_issuers: Vec::new(),
            v1_issuers: Vec::new(),
            tenant: None,
            audiences,
            jwks,
            leeway: DEFAULT_TOKEN_LEEWAY,
            refresh_every: DEFAULT_REFRESH_EVERY,
            unknown_kid_min_interval: DEFAULT_UNKNOWN_KID_MIN_INTERVAL,
            unknown_kid_wait: DEFAULT_UNKNOWN_KID_WAIT,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    /// Every accepted issuer, the v1-only ones last.
    #[must_use]
    pub fn accepted_issuers(&self) -> Vec<&str> {
        std::iter::once(self.issuer.as_str())
            .chain(self.also_issuers.iter().map(String::as_str))
            .chain(self.v1_issuers.iter().map(String::as_str))
            .collect()
    }

    /// Whether `iss` is accepted for a token of version `ver`.
    #[must_use]
    pub fn accepts_issuer(&self, iss: &str, ver: Option<&str>) -> bool {
        iss == self.issuer
            || self.also_issuers.iter().any(|i| i == iss)
            || (ver == Some("1.0") && self.v1_issuers.iter().any(|i| i == iss))
    }

    /// The accepted issuers on one line, the v1-only ones marked.
    #[must_use]
    pub fn describe_issuers(&self) -> String {
        let mut issuers: Vec<String> = std::iter::once(&self.issuer)
            .chain(&self.also_issuers)
            .cloned()
            .collect();
        issuers.extend(
            self.v1_issuers
                .iter()
                .map(|issuer| format!("{issuer} (v1 tokens)")),
        );
        issuers.join(", ")
    }

    pub(crate) fn check(&self, need_audience: bool) -> Result<(), KeySetError> {
        let fail = |reason: &str| {
            Err(KeySetError::Config {
                reason: reason.to_owned(),
            })
        };
        if self.accepted_issuers().iter().any(|i| i.trim().is_empty()) {
            return fail(
                "no issuer (or an empty one); give the tenant id, or \
                 https://{subdomain}.ciamlogin.com/{tenantId}/v2.0",
            );
        }
        if (need_audience && self.audiences.is_empty())
            || self.audiences.iter().any(|a| a.trim().is_empty())
        {
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
