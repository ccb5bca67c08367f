//! Minting, and verification with its outcome in the spec's order of checks (section 5).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::audience::{Audience, EmailAddress, domain_candidates};
use crate::code::{CODE_BYTES, Code, Kind, TAG_BYTES};
use crate::error::Error;
use crate::expiry::{Expiry, UnixTime};
use crate::keys::{KeyRing, tag};

/// Leeway after the expiry instant during which a code still verifies, for clock skew.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Mints a code for `audience`, valid until `expiry`, signed with the ring's first key.
#[must_use]
pub fn mint(ring: &KeyRing, audience: &Audience<'_>, expiry: Expiry) -> Code {
    let (key_id, mac) = ring.signing_mac();
    let header = Code::header(audience.kind(), key_id, expiry);
    Code::from_parts(header, tag(mac, &header, audience.value()))
}

/// Codes that verify but must no longer be accepted, by canonical form.
#[derive(Clone, Default)]
pub struct DenyList {
    codes: HashSet<[u8; CODE_BYTES]>,
}

impl DenyList {
    /// An empty deny list.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one code a line; blank lines and lines starting with `#` are ignored. Lines are
    /// read as codes are, so any spelling of a code denies its canonical form.
    ///
    /// # Errors
    ///
    /// [`Error::DenyListLine`] naming the first line that is not a code.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut list = Self::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let code = Code::parse(line).map_err(|err| Error::DenyListLine {
                line: index + 1,
                reason: err.to_string(),
            })?;
            list.insert(&code);
        }
        Ok(list)
    }

    /// Adds a code.
    pub fn insert(&mut self, code: &Code) {
        self.codes.insert(*code.as_bytes());
    }

    /// Whether the list holds this code.
    #[must_use]
    pub fn contains(&self, code: &Code) -> bool {
        // Most deployments revoke nothing: skip hashing then.
        !self.codes.is_empty() && self.codes.contains(code.as_bytes())
    }

    /// How many codes the list holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether the list is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

impl fmt::Debug for DenyList {
    /// The count only: the entries are whole codes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DenyList({} codes)", self.codes.len())
    }
}

/// How verification treats time and revocation.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// How long after its expiry a code still verifies (clock skew). Default 60 s.
    pub leeway: Duration,
    /// Codes refused as `revoked` even though their tag verifies.
    pub deny_list: DenyList,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            leeway: DEFAULT_LEEWAY,
            deny_list: DenyList::new(),
        }
    }
}

/// What an authentic code says: returned only after its tag verified.
///
/// Borrows the email text given to [`verify()`] when that was already normal; call
/// [`Grant::into_owned`] to keep it longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<'a> {
    /// The audience that matched: its kind and the normalized address or domain.
    pub audience: Audience<'a>,
    /// The key that signed the code.
    pub key_id: u8,
    /// The authentic expiry.
    pub expiry: Expiry,
}

impl Grant<'_> {
    /// The audience kind.
    #[must_use]
    pub fn kind(&self) -> Kind {
        self.audience.kind()
    }

    /// The grant with its audience text owned.
    #[must_use]
    pub fn into_owned(self) -> Grant<'static> {
        Grant {
            audience: self.audience.into_owned(),
            key_id: self.key_id,
            expiry: self.expiry,
        }
    }
}

/// The result of verification, one of the spec's section 5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Not 25 symbols of the alphabet, or an unknown version or kind.
    Malformed,
    /// The check symbol is wrong: most likely a typing mistake.
    Mistyped,
    /// No key with the code's id, an email that cannot be normalized, or no tag match.
    NotValid,
    /// Authentic but on the deny list.
    Revoked(Grant<'a>),
    /// Authentic but past its expiry plus the leeway.
    Expired(Grant<'a>),
    /// Authentic, not revoked, not expired.
    Valid(Grant<'a>),
}

impl<'a> Outcome<'a> {
    /// The spec's name: `malformed`, `mistyped`, `not-valid`, `revoked`, `expired`, `valid`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Mistyped => "mistyped",
            Self::NotValid => "not-valid",
            Self::Revoked(_) => "revoked",
            Self::Expired(_) => "expired",
            Self::Valid(_) => "valid",
        }
    }

    /// The outcome for text that [`Code::parse`] refused: `mistyped` for a wrong check symbol,
    /// `malformed` for anything else (spec section 5, steps 1 to 3).
    #[must_use]
    pub fn unreadable(error: &Error) -> Outcome<'static> {
        match error {
            Error::MistypedCode => Outcome::Mistyped,
            _ => Outcome::Malformed,
        }
    }

    /// Whether the code admits the address now.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid(_))
    }

    /// The authentic grant, for `valid`, `expired` and `revoked`.
    #[must_use]
    pub fn grant(&self) -> Option<&Grant<'a>> {
        match self {
            Self::Revoked(grant) | Self::Expired(grant) | Self::Valid(grant) => Some(grant),
            Self::Malformed | Self::Mistyped | Self::NotValid => None,
        }
    }
}

impl fmt::Display for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Verifies a code as typed against an email address at instant `now` (an
/// [`OffsetDateTime`](time::OffsetDateTime), a [`SystemTime`](std::time::SystemTime) or a
/// [`UnixTime`]).
///
/// Steps run in the spec's order: read the text, check symbol, version and kind, key id,
/// tag, deny list, expiry. Only the key named by the code is tried.
#[must_use]
pub fn verify<'a>(
    ring: &KeyRing,
    text: &str,
    email: &'a str,
    now: impl Into<UnixTime>,
    options: &VerifyOptions,
) -> Outcome<'a> {
    verify_at(ring, text, email, now.into(), options)
}

/// [`verify()`] with the instant converted: compiled once here, whatever the caller passes.
fn verify_at<'a>(
    ring: &KeyRing,
    text: &str,
    email: &'a str,
    now: UnixTime,
    options: &VerifyOptions,
) -> Outcome<'a> {
    match Code::parse(text) {
        Ok(code) => verify_code_at(ring, &code, email, now, options),
        Err(err) => Outcome::unreadable(&err),
    }
}

/// Compares two tags in constant time: all nine bytes are always compared, as one 64-bit word
/// and one byte, and the answer does not depend on where they differ.
fn tags_equal(a: &[u8; TAG_BYTES], b: &[u8; TAG_BYTES]) -> bool {
    let ([a_word @ .., a_last], [b_word @ .., b_last]) = (*a, *b);
    let same =
        u64::from_le_bytes(a_word).ct_eq(&u64::from_le_bytes(b_word)) & a_last.ct_eq(&b_last);
    bool::from(same)
}

/// Verifies an already parsed code; steps 4 to 8 of the spec.
///
/// For callers that parse once and keep the [`Code`] (for example to log its fingerprint).
#[must_use]
pub fn verify_code<'a>(
    ring: &KeyRing,
    code: &Code,
    email: &'a str,
    now: impl Into<UnixTime>,
    options: &VerifyOptions,
) -> Outcome<'a> {
    verify_code_at(ring, code, email, now.into(), options)
}

fn verify_code_at<'a>(
    ring: &KeyRing,
    code: &Code,
    email: &'a str,
    now: UnixTime,
    options: &VerifyOptions,
) -> Outcome<'a> {
    let Some(mac) = ring.mac(code.key_id()) else {
        return Outcome::NotValid;
    };
    let Ok(address) = EmailAddress::parse(email) else {
        return Outcome::NotValid;
    };
    let kind = code.kind();
    let header = code.header_bytes();
    let matches =
        |candidate: &&str| -> bool { tags_equal(&tag(mac, header, candidate), code.tag()) };
    let matched = match kind {
        Kind::Email => Some(address.as_str()).filter(matches),
        Kind::Domain => Some(address.domain()).filter(matches),
        Kind::DomainAndSubdomains => domain_candidates(address.domain()).find(matches),
    };
    // Every candidate is a suffix of the address, so its length says where it starts.
    let Some(start) = matched.map(|m| address.as_str().len() - m.len()) else {
        return Outcome::NotValid;
    };
    let grant = Grant {
        audience: Audience::matched(kind, address, start),
        key_id: code.key_id(),
        expiry: code.expiry(),
    };
    if options.deny_list.contains(code) {
        return Outcome::Revoked(grant);
    }
    let leeway = i64::try_from(options.leeway.as_secs()).unwrap_or(i64::MAX);
    let deadline = i64::from(grant.expiry.unix()).saturating_add(leeway);
    if now.unix() >= deadline {
        return Outcome::Expired(grant);
    }
    Outcome::Valid(grant)
}
