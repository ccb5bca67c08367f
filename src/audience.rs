//! Email address and domain normalization (spec section 4), and the audience a code binds.

use std::borrow::Cow;
use std::fmt;

use crate::{Error, Kind};

/// Normalizes a domain: trim ASCII white space, drop one trailing `.`, UTS #46 ToASCII
/// (non-transitional, with the WHATWG forbidden-code-point check, as browsers do), lower-case.
///
/// Borrows the input when it is already normal, so the common case does not allocate.
///
/// # Errors
///
/// [`Error::InvalidDomain`] when the result would be empty, hold an empty label or an `@`, or
/// UTS #46 refuses the name.
pub fn normalize_domain(text: &str) -> Result<Cow<'_, str>, Error> {
    let trimmed = text.trim_ascii();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if is_plain_ldh(trimmed) {
        return check_labels(trimmed).map(|()| Cow::Borrowed(trimmed));
    }
    let ascii =
        idna::domain_to_ascii_cow(trimmed.as_bytes(), idna::AsciiDenyList::URL).map_err(|_| {
            Error::InvalidDomain {
                reason: "it is not a valid internationalized domain name",
            }
        })?;
    // UTS #46 maps upper case already and the URL deny list refuses `@`; checking again keeps
    // the spec's promises explicit on this slower path.
    if ascii.contains('@') {
        return Err(Error::InvalidDomain {
            reason: "it contains `@`",
        });
    }
    check_labels(&ascii)?;
    if ascii.bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(Cow::Owned(ascii.to_ascii_lowercase()));
    }
    Ok(ascii)
}

/// Non-empty, and no empty label (no leading, trailing or doubled `.`).
fn check_labels(domain: &str) -> Result<(), Error> {
    if domain.is_empty() {
        return Err(Error::InvalidDomain {
            reason: "it is empty",
        });
    }
    let bytes = domain.as_bytes();
    let mut previous = b'.';
    let mut empty_label = false;
    for &byte in bytes {
        empty_label |= byte == b'.' && previous == b'.';
        previous = byte;
    }
    if empty_label || previous == b'.' {
        return Err(Error::InvalidDomain {
            reason: "it has an empty label",
        });
    }
    Ok(())
}

/// Whether UTS #46 ToASCII would return `domain` unchanged without looking: lower-case ASCII
/// letters, digits, `-` and `.` only, and no label starting `xn--` (those are decoded and
/// checked). Such labels are valid and mapped to themselves, hyphen rules are off as in
/// browsers, and the bidi and joiner rules concern non-ASCII only. `tests/properties.rs` checks
/// this against the `idna` crate.
#[must_use]
pub fn is_plain_ldh(domain: &str) -> bool {
    let bytes = domain.as_bytes();
    let mut label_start = true;
    for (i, &b) in bytes.iter().enumerate() {
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') {
            return false;
        }
        if label_start && bytes.get(i..i + 4) == Some(b"xn--") {
            return false;
        }
        label_start = b == b'.';
    }
    true
}

/// A normalized email address: `local@domain`, local part Unicode lower-case, domain as
/// [`normalize_domain`] makes it.
///
/// Borrows the text it was parsed from when that is already normal (the common case), so
/// verification need not allocate.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress<'a> {
    text: Cow<'a, str>,
    at: usize,
}

impl<'a> EmailAddress<'a> {
    /// Normalizes an email address as the spec's section 4 says.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEmail`] without an `@` or with an empty side; [`Error::InvalidDomain`]
    /// when the domain cannot be normalized.
    pub fn parse(text: &'a str) -> Result<Self, Error> {
        let trimmed = text.trim_ascii();
        // A plain reverse scan: addresses are short, and memrchr's set-up costs more here.
        let Some(at) = trimmed.bytes().rposition(|b| b == b'@') else {
            return Err(Error::InvalidEmail {
                reason: "it has no `@`",
            });
        };
        // `at` is the index of an ASCII byte, so both sides are on character boundaries.
        let (local, domain) = trimmed.split_at(at);
        let domain = domain.get(1..).unwrap_or_default();
        if local.is_empty() {
            return Err(Error::InvalidEmail {
                reason: "nothing before the `@`",
            });
        }
        if domain.is_empty() {
            return Err(Error::InvalidEmail {
                reason: "nothing after the `@`",
            });
        }
        let normal_domain = normalize_domain(domain)?;
        let at = local.len();
        let local_is_normal = local
            .bytes()
            .all(|b| b.is_ascii() && !b.is_ascii_uppercase());
        if local_is_normal && matches!(normal_domain, Cow::Borrowed(d) if d == domain) {
            return Ok(Self {
                text: Cow::Borrowed(trimmed),
                at,
            });
        }
        let local = if local.is_ascii() {
            local.to_ascii_lowercase()
        } else {
            local.to_lowercase()
        };
        let at = local.len();
        Ok(Self {
            text: Cow::Owned(format!("{local}@{normal_domain}")),
            at,
        })
    }

    /// The whole normalized address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The normalized domain part.
    #[must_use]
    pub fn domain(&self) -> &str {
        self.text.get(self.at + 1..).unwrap_or_default()
    }

    /// The address as an owned value.
    #[must_use]
    pub fn into_owned(self) -> EmailAddress<'static> {
        EmailAddress {
            text: Cow::Owned(self.text.into_owned()),
            at: self.at,
        }
    }
}

impl fmt::Display for EmailAddress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for EmailAddress<'_> {
    /// Shows the domain only: addresses are personal data and `Debug` output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress(…@{})", self.domain())
    }
}

/// What a code admits: a kind and its normalized value, which the tag covers.
///
/// Borrows the text it was made from when that was already normal (the common case, so batch
/// minting and verification need not allocate); [`Audience::into_owned`] makes it owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Audience<'a> {
    kind: Kind,
    value: Cow<'a, str>,
}

impl<'a> Audience<'a> {
    /// One email address.
    ///
    /// # Errors
    ///
    /// As [`EmailAddress::parse`].
    pub fn email(address: &'a str) -> Result<Self, Error> {
        Ok(Self {
            kind: Kind::Email,
            value: EmailAddress::parse(address)?.text,
        })
    }

    /// Every address whose domain is exactly `domain`.
    ///
    /// # Errors
    ///
    /// As [`normalize_domain`], and [`Error::SingleLabelDomain`] for a domain like `com`.
    pub fn domain(domain: &'a str) -> Result<Self, Error> {
        Self::domain_of_kind(Kind::Domain, domain)
    }

    /// Every address whose domain is `domain` or one of its subdomains.
    ///
    /// # Errors
    ///
    /// As [`Audience::domain`].
    pub fn domain_and_subdomains(domain: &'a str) -> Result<Self, Error> {
        Self::domain_of_kind(Kind::DomainAndSubdomains, domain)
    }

    /// An audience of any kind from its text: an address for [`Kind::Email`], else a domain.
    ///
    /// # Errors
    ///
    /// As [`Audience::email`] or [`Audience::domain`].
    pub fn new(kind: Kind, text: &'a str) -> Result<Self, Error> {
        match kind {
            Kind::Email => Self::email(text),
            Kind::Domain | Kind::DomainAndSubdomains => Self::domain_of_kind(kind, text),
        }
    }

    fn domain_of_kind(kind: Kind, domain: &'a str) -> Result<Self, Error> {
        let value = normalize_domain(domain)?;
        if !value.contains('.') {
            return Err(Error::SingleLabelDomain {
                domain: value.into_owned(),
            });
        }
        Ok(Self { kind, value })
    }

    /// The audience that verification matched: the address itself, or the suffix of its
    /// domain that starts at byte `start`. Borrows when the address does.
    pub(crate) fn matched(kind: Kind, address: EmailAddress<'a>, start: usize) -> Self {
        let value = match address.text {
            Cow::Borrowed(text) => Cow::Borrowed(text.get(start..).unwrap_or_default()),
            Cow::Owned(mut text) => {
                text.replace_range(..start.min(text.len()), "");
                Cow::Owned(text)
            }
        };
        Self { kind, value }
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The normalized value: an address or a domain.
    #[must_use]
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The audience with its text owned, to keep beyond the email text it borrows.
    #[must_use]
    pub fn into_owned(self) -> Audience<'static> {
        Audience {
            kind: self.kind,
            value: Cow::Owned(self.value.into_owned()),
        }
    }
}

impl fmt::Display for Audience<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// The domain and each suffix that drops leading labels while at least two labels remain:
/// `a.b.contoso.com`, `b.contoso.com`, `contoso.com`. A one-label domain yields itself only.
pub(crate) fn domain_candidates(domain: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(domain);
    std::iter::from_fn(move || {
        let current = next?;
        next = current
            .split_once('.')
            .map(|(_, rest)| rest)
            .filter(|rest| rest.contains('.'));
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_stop_at_two_labels() {
        let all: Vec<&str> = domain_candidates("a.b.contoso.com").collect();
        assert_eq!(all, ["a.b.contoso.com", "b.contoso.com", "contoso.com"]);
        assert_eq!(domain_candidates("com").collect::<Vec<_>>(), ["com"]);
        assert_eq!(
            domain_candidates("contoso.com").collect::<Vec<_>>(),
            ["contoso.com"]
        );
    }

    #[test]
    fn domain_normalization_follows_the_spec() {
        assert_eq!(
            normalize_domain("Bücher.DE").as_deref(),
            Ok("xn--bcher-kva.de")
        );
        assert_eq!(
            normalize_domain(" Contoso.com. ").as_deref(),
            Ok("contoso.com")
        );
        assert!(normalize_domain("contoso.com..").is_err());
        assert!(normalize_domain("a..b").is_err());
        assert!(normalize_domain(".").is_err());
        assert!(normalize_domain("").is_err());
        assert!(normalize_domain("a@b.com").is_err());
        assert!(normalize_domain("a b.com").is_err());
    }

    #[test]
    fn email_normalization_follows_the_spec() {
        let e = EmailAddress::parse("  Ärger.Alice@Bücher.DE ").map(|e| e.to_string());
        assert_eq!(e.as_deref(), Ok("ärger.alice@xn--bcher-kva.de"));
        // Split at the last `@`.
        let e = EmailAddress::parse("\"a@b\"@contoso.com").map(|e| e.domain().to_owned());
        assert_eq!(e.as_deref(), Ok("contoso.com"));
        assert!(EmailAddress::parse("@contoso.com").is_err());
        assert!(EmailAddress::parse("alice@").is_err());
        assert!(EmailAddress::parse("alice").is_err());
    }

    #[test]
    fn single_label_domain_codes_are_refused() {
        assert!(matches!(
            Audience::domain("COM"),
            Err(Error::SingleLabelDomain { domain }) if domain == "com"
        ));
        assert!(Audience::domain_and_subdomains("localhost.").is_err());
    }
}
