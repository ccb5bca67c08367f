//! Why a bearer token was refused: a stable short name for metrics and the request line
//! ([`TokenRejection::reason`]), and the values behind the refusal for the log ([`TokenRefusal`]),
//! so that every refusal can be diagnosed from the log alone.
//!
//! A refusal carries only the claims a check looked at (`iss`, `aud`, `azp`, `appid`, `tid`,
//! `ver`), the header's `kid` and `alg`, the time window and what was expected: never the
//! token, its signature or any other claim. A refusal made before the signature is verified
//! (unknown key, no keys, bad signature) carries the `iss` and `tid` the token states,
//! unverified: they tell which tenant's key set it was signed for. Values from the token are cut to
//! [`MAX_LOGGED_VALUE`] bytes and control characters replaced, so a made-up token cannot forge
//! or flood log lines.

use std::fmt;

use crate::server::labels::{EndpointLabel, RefusedAt};

/// Longest value taken from a token into the log. Real issuers, audiences and ids are under
/// 100 bytes; anything longer is cut and marked.
pub const MAX_LOGGED_VALUE: usize = 200;

/// Why a bearer token was refused. The HTTP answer does not say; the log does.
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
    /// `iss` is none of the accepted issuers.
    Issuer,
    /// `tid` is not the configured tenant.
    Tenant,
    /// `aud` is none of the configured audiences.
    Audience,
    /// `azp`/`appid` is not Entra's authentication events service.
    Caller,
    /// No signing key is held yet (the key source has not answered): answered 503.
    KeysUnavailable,
    /// No audience is configured yet (`ENTRA_AUDIENCE`): answered 503.
    AudienceUnset,
}

impl TokenRejection {
    /// Every rejection, for metrics that register their labels up front.
    pub const ALL: [Self; 14] = [
        Self::Missing,
        Self::NotBearer,
        Self::Malformed,
        Self::Algorithm,
        Self::UnknownKey,
        Self::Signature,
        Self::Expired,
        Self::NotYetValid,
        Self::Issuer,
        Self::Tenant,
        Self::Audience,
        Self::Caller,
        Self::KeysUnavailable,
        Self::AudienceUnset,
    ];

    /// A stable short kebab-case name: the log's `denied` field and a metric label.
    #[must_use]
    pub fn reason(self) -> &'static str {
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
            Self::Tenant => "tenant",
            Self::Audience => "audience",
            Self::Caller => "caller",
            Self::KeysUnavailable => "keys-unavailable",
            Self::AudienceUnset => "audience-unset",
        }
    }

    /// The same as [`TokenRejection::reason`].
    #[must_use]
    pub fn name(self) -> &'static str {
        self.reason()
    }

    /// Why, in a sentence for the log.
    #[must_use]
    pub fn explain(self) -> &'static str {
        match self {
            Self::Missing => "no authorization header (entra always sends a bearer token)",
            Self::NotBearer => "the authorization header is not a bearer token",
            Self::Malformed => "the bearer token is not a signed jwt with an exp claim",
            Self::Algorithm => "the token is not signed with rs256",
            Self::UnknownKey => "the token's key id is not in the tenant's key set",
            Self::Signature => "the token's signature does not verify",
            Self::Expired => "the token has expired (exp is past, beyond the leeway)",
            Self::NotYetValid => "the token is not valid yet (nbf is ahead, beyond the leeway)",
            Self::Issuer => "the token's issuer is none of the accepted issuers",
            Self::Tenant => "the token's tenant (tid) is not the configured tenant",
            Self::Audience => "the token's audience is none of the configured audiences",
            Self::Caller => {
                "the token was not issued to entra's authentication events service (azp/appid)"
            }
            Self::KeysUnavailable => {
                "no signing keys are held yet (the key source has not answered); answered 503"
            }
            Self::AudienceUnset => "ENTRA_AUDIENCE is not set yet; answered 503",
        }
    }

    /// Whether the server, not the caller, is at fault: answered 503, not 401.
    #[must_use]
    pub fn is_unavailable(self) -> bool {
        matches!(self, Self::KeysUnavailable | Self::AudienceUnset)
    }
}

impl fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.explain())
    }
}

/// A refusal with the values its check looked at, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    /// The token's `iss`.
    pub iss: Option<String>,
    /// The token's `aud` (several joined with ", ").
    pub aud: Option<String>,
    /// The token's `azp`.
    pub azp: Option<String>,
    /// The token's `appid`.
    pub appid: Option<String>,
    /// The token's `tid`.
    pub tid: Option<String>,
    /// The token's `ver`.
    pub ver: Option<String>,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The header's `alg`.
    pub alg: Option<String>,
    /// The token's `exp`, Unix seconds.
    pub exp: Option<i64>,
    /// The token's `nbf`, Unix seconds.
    pub nbf: Option<i64>,
    /// The server's clock when checked, Unix seconds.
    pub now: Option<i64>,
    /// The leeway allowed on `exp` and `nbf`, seconds.
    pub leeway: Option<i64>,
    /// What the check expected (accepted issuers, audiences, the caller, the key ids held).
    pub expected: Option<String>,
}

/// Why a token was refused and the values involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefusal {
    /// Which check failed.
    pub kind: TokenRejection,
    /// The values it looked at.
    pub details: Box<Details>,
}

impl TokenRefusal {
    /// A refusal with no values yet.
    #[must_use]
    pub fn new(kind: TokenRejection) -> Self {
        Self {
            kind,
            details: Box::default(),
        }
    }

    /// Sets values through `fill`.
    #[must_use]
    pub fn with(mut self, fill: impl FnOnce(&mut Details)) -> Self {
        fill(&mut self.details);
        self
    }

    /// Writes the refusal to the log: one warning with the check's name and its values.
    /// Only the first few of each reason a second are written (see
    /// [`crate::server::log::limit`]); the request lines count every one.
    pub fn log(&self, endpoint: &str) {
        let at = RefusedAt::Endpoint(EndpointLabel::Entra);
        if !crate::server::log::details_in_full(at, self.kind.reason()) {
            return;
        }
        let d = &self.details;
        tracing::warn!(
            target: "invitegate::auth",
            endpoint,
            reason = self.kind.reason(),
            check = self.kind.explain(),
            iss = d.iss.as_deref(),
            aud = d.aud.as_deref(),
            azp = d.azp.as_deref(),
            appid = d.appid.as_deref(),
            tid = d.tid.as_deref(),
            ver = d.ver.as_deref(),
            kid = d.kid.as_deref(),
            alg = d.alg.as_deref(),
            exp = d.exp,
            nbf = d.nbf,
            now = d.now,
            leeway = d.leeway,
            expected = d.expected.as_deref(),
            "bearer token refused"
        );
    }
}

impl From<TokenRejection> for TokenRefusal {
    fn from(kind: TokenRejection) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind.explain(), self.kind.reason())?;
        let d = &self.details;
        let texts = [
            ("iss", &d.iss),
            ("aud", &d.aud),
            ("azp", &d.azp),
            ("appid", &d.appid),
            ("tid", &d.tid),
            ("ver", &d.ver),
            ("kid", &d.kid),
            ("alg", &d.alg),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                write!(f, " {name}={value:?}")?;
            }
        }
        for (name, value) in [
            ("exp", d.exp),
            ("nbf", d.nbf),
            ("now", d.now),
            ("leeway", d.leeway),
        ] {
            if let Some(value) = value {
                write!(f, " {name}={value}")?;
            }
        }
        if let Some(expected) = &d.expected {
            write!(f, " expected={expected:?}")?;
        }
        Ok(())
    }
}

/// A value from a token, safe for a log line: at most [`MAX_LOGGED_VALUE`] bytes, control
/// characters replaced by `?`, a cut marked with `...`.
#[must_use]
pub fn loggable(value: &str) -> String {
    let mut text = String::with_capacity(value.len().min(MAX_LOGGED_VALUE + 3));
    for c in value.chars() {
        if text.len() + c.len_utf8() > MAX_LOGGED_VALUE {
            text.push_str("...");
            break;
        }
        text.push(if c.is_control() { '?' } else { c });
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_kebab_case() {
        let names: std::collections::HashSet<_> =
            TokenRejection::ALL.iter().map(|r| r.reason()).collect();
        assert_eq!(names.len(), TokenRejection::ALL.len());
        for rejection in TokenRejection::ALL {
            let name = rejection.reason();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{name}"
            );
        }
    }

    #[test]
    fn values_are_cut_and_cleaned() {
        assert_eq!(loggable("a\nb\u{1b}c"), "a?b?c");
        let long = "x".repeat(500);
        let cut = loggable(&long);
        assert_eq!(cut.len(), MAX_LOGGED_VALUE + 3);
        assert!(cut.ends_with("..."));
        assert_eq!(loggable("é".repeat(150).as_str()).len(), 200 + 3);
    }

    #[test]
    fn display_names_the_check_and_its_values() {
        let refusal = TokenRefusal::new(TokenRejection::Issuer).with(|d| {
            d.iss = Some("https://a/".into());
            d.expected = Some("https://b/".into());
        });
        assert_eq!(
            refusal.to_string(),
            "the token's issuer is none of the accepted issuers (issuer) iss=\"https://a/\" \
             expected=\"https://b/\""
        );
    }
}
