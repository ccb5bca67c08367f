//! What the log and the metrics both name: the endpoint a request came to, what became of it,
//! and why its caller was refused. Kept apart from both so that neither imports the other for
//! them.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use crate::reason::Reason;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum EndpointLabel {
    /// `POST /api/b2c/user-flow`.
    UserFlow,
    /// `POST /api/b2c/custom-policy`.
    CustomPolicy,
    /// `POST /api/entra/attribute-collection-submit`.
    Entra,
}

impl EndpointLabel {
    /// Every endpoint.
    pub const ALL: [Self; 3] = [Self::UserFlow, Self::CustomPolicy, Self::Entra];

    /// The label value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::UserFlow => "b2c-user-flow",
            Self::CustomPolicy => "b2c-custom-policy",
            Self::Entra => "entra",
        }
    }
}

impl EncodeLabelValue for EndpointLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.name())
    }
}

/// What became of one endpoint request: the sign-up's decision, or what stopped the request
/// before one was asked for.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// The code admits the address.
    Valid,
    /// The sign-up is refused (a request that could not be read is [`Reason::BadRequest`]).
    Refused(Reason),
    /// The caller did not authenticate.
    Unauthorized,
    /// The endpoint cannot check credentials yet (no signing keys held, no audience set):
    /// answered 503.
    Unavailable,
    /// Not a `POST`.
    MethodNotAllowed,
    /// The body is over the size limit.
    TooLarge,
    /// The body was not sent in time.
    Timeout,
}

impl Outcome {
    /// Every outcome: valid, each refusal reason, then what stops a request before a decision.
    pub fn all() -> impl Iterator<Item = Self> {
        std::iter::once(Self::Valid)
            .chain(Reason::ALL.into_iter().map(Self::Refused))
            .chain([
                Self::Unauthorized,
                Self::Unavailable,
                Self::MethodNotAllowed,
                Self::TooLarge,
                Self::Timeout,
            ])
    }

    /// The label value: `valid`, a reason's name, or `unauthorized`, `unavailable`,
    /// `method-not-allowed`, `too-large`, `timeout`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Refused(reason) => reason.name(),
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::TooLarge => "too-large",
            Self::Timeout => "timeout",
        }
    }
}

impl From<Option<Reason>> for Outcome {
    /// The outcome of a decision: refused for its reason, else valid.
    fn from(refusal: Option<Reason>) -> Self {
        refusal.map_or(Self::Valid, Self::Refused)
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.name())
    }
}

/// Where a caller was refused: an endpoint, or `/metrics`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RefusedAt {
    /// An identity-provider endpoint.
    Endpoint(EndpointLabel),
    /// `GET /metrics`.
    Metrics,
}

impl RefusedAt {
    /// The label value: the endpoint's name, or `metrics`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Endpoint(endpoint) => endpoint.name(),
            Self::Metrics => "metrics",
        }
    }
}

impl From<EndpointLabel> for RefusedAt {
    fn from(endpoint: EndpointLabel) -> Self {
        Self::Endpoint(endpoint)
    }
}

impl EncodeLabelValue for RefusedAt {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.name())
    }
}

/// Anything that names why a caller was refused, so that the refusal counter and the log can
/// take it: a [`Refusal`], or a bare reason such as `"wrong-key"`.
pub trait RefusalReason {
    /// The stable kebab-case name: the metric label and the log's `denied` field.
    fn reason(&self) -> &'static str;
}

impl RefusalReason for &'static str {
    fn reason(&self) -> &'static str {
        self
    }
}

/// Longest user name a log line carries, in bytes; a longer one is cut at a character. Enough
/// for any name an operator sets, and small enough to keep a refusal a cheap value to return.
pub const MAX_LOGGED_USER: usize = 48;

/// Why a caller was refused, with what the log may show of what it sent: never a password, a
/// key or a token. `Copy`, and bounded in size, so a refusal costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    reason: &'static str,
    why: &'static str,
    scheme: Option<&'static str>,
    /// The user name given, cut.
    user: Option<ShortText>,
    /// The SHA-1 thumbprint of the client certificate presented (public, as the Azure portal
    /// shows it). With Basic as the alternative to a certificate, a refusal may carry both.
    thumbprint: Option<[u8; 20]>,
}

impl Refusal {
    /// A refusal for `reason` (kebab case, the metric label), explained by `why` (a sentence
    /// for the log).
    #[must_use]
    pub const fn new(reason: &'static str, why: &'static str) -> Self {
        Self {
            reason,
            why,
            scheme: None,
            user: None,
            thumbprint: None,
        }
    }

    /// With the SHA-1 thumbprint of the client certificate the request presented.
    #[must_use]
    pub fn with_thumbprint(self, thumbprint: [u8; 20]) -> Self {
        Self {
            thumbprint: Some(thumbprint),
            ..self
        }
    }

    /// The SHA-1 thumbprint of the client certificate presented, as bytes.
    #[must_use]
    pub fn thumbprint_bytes(&self) -> Option<[u8; 20]> {
        self.thumbprint
    }

    /// The SHA-1 thumbprint of the client certificate presented, in upper-case hex as the
    /// Azure portal shows it.
    #[must_use]
    pub fn thumbprint(&self) -> Option<String> {
        let bytes = self.thumbprint?;
        Some(
            bytes
                .iter()
                .fold(String::with_capacity(40), |mut text, byte| {
                    text.push_str(&format!("{byte:02X}"));
                    text
                }),
        )
    }

    /// With the authentication scheme the request used (see [`scheme_seen`]).
    #[must_use]
    pub fn with_scheme(self, scheme: &'static str) -> Self {
        Self {
            scheme: Some(scheme),
            ..self
        }
    }

    /// With the user name the request gave, cut to [`MAX_LOGGED_USER`] bytes.
    #[must_use]
    pub fn with_user(self, user: &[u8]) -> Self {
        Self {
            user: Some(ShortText::new(user)),
            ..self
        }
    }

    /// The sentence for the log.
    #[must_use]
    pub fn why(&self) -> &'static str {
        self.why
    }

    /// The scheme the request used, when it is part of the reason.
    #[must_use]
    pub fn scheme(&self) -> Option<&'static str> {
        self.scheme
    }

    /// The user name the request gave (cut), when it got that far.
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(ShortText::as_str)
    }
}

impl RefusalReason for Refusal {
    fn reason(&self) -> &'static str {
        self.reason
    }
}

impl std::fmt::Debug for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusal")
            .field("reason", &self.reason)
            .field("scheme", &self.scheme)
            .field("user", &self.user())
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

/// The scheme of an `Authorization` header value as the log may show it: a known scheme's
/// name in lower case, `other`, or `none` when the value has no scheme. Whatever else was sent
/// could be a secret pasted in the wrong place, so it is never shown.
#[must_use]
pub fn scheme_seen(header: &[u8]) -> &'static str {
    const KNOWN: [&str; 9] = [
        "basic",
        "bearer",
        "digest",
        "negotiate",
        "ntlm",
        "hoba",
        "mutual",
        "dpop",
        "token",
    ];
    let header = header.trim_ascii();
    let Some(space) = header.iter().position(|&b| b == b' ') else {
        return "none";
    };
    let scheme = header.get(..space).unwrap_or_default();
    KNOWN
        .into_iter()
        .find(|known| scheme.eq_ignore_ascii_case(known.as_bytes()))
        .unwrap_or("other")
}

/// Text of at most [`MAX_LOGGED_USER`] bytes, held inline.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ShortText {
    bytes: [u8; MAX_LOGGED_USER],
    /// At most [`MAX_LOGGED_USER`].
    len: u8,
}

impl ShortText {
    /// The bytes as UTF-8 (invalid sequences replaced), cut at a character boundary.
    fn new(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let mut len = text.len().min(MAX_LOGGED_USER);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut held = [0; MAX_LOGGED_USER];
        // `len` is at most both lengths.
        held[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self {
            bytes: held,
            len: u8::try_from(len).unwrap_or(0),
        }
    }

    fn as_str(&self) -> &str {
        // Cut at a character boundary of valid UTF-8 in `new`.
        let held = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        std::str::from_utf8(held).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_are_distinct() {
        let names: Vec<_> = Outcome::all().map(Outcome::name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), 15);
    }

    #[test]
    fn refusals_show_a_bounded_user_name_and_only_known_schemes() {
        let long = "é".repeat(100);
        let refusal = Refusal::new("unknown-user", "why").with_user(long.as_bytes());
        assert_eq!(refusal.user().unwrap(), "é".repeat(MAX_LOGGED_USER / 2));
        let odd = Refusal::new("unknown-user", "why").with_user(b"a\xffb");
        assert_eq!(odd.user(), Some("a\u{fffd}b"));
        assert_eq!(scheme_seen(b"Bearer eyJ"), "bearer");
        assert_eq!(scheme_seen(b"  NTLM abc"), "ntlm");
        assert_eq!(scheme_seen(b"s3cr3t-key-pasted-here xyz"), "other");
        assert_eq!(scheme_seen(b"s3cr3t-key-pasted-here"), "none");
        assert_eq!(scheme_seen(b""), "none");
        assert_eq!(RefusalReason::reason(&"wrong-key"), "wrong-key");
    }
}
