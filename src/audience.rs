//! Email address and domain normalization (spec section 4), and the audience a code binds.

use std::borrow::Cow;
use std::fmt;

use crate::code::Kind;
use crate::error::Error;
pub use crate::error::{MAX_DOMAIN_OCTETS, MAX_LABEL_OCTETS};

/// Normalizes a domain: trim ASCII white space, drop one trailing `.`, UTS #46 ToASCII
/// (non-transitional, with the WHATWG forbidden-code-point check, as browsers do), lower-case,
/// and check that the result fits DNS: [`MAX_DOMAIN_OCTETS`] in all, [`MAX_LABEL_OCTETS`] a
/// label.
///
/// Borrows the input when it is already normal, so the common case does not allocate. The
/// work is linear in the input's length, and an over-long name is refused before UTS #46
/// validates and encodes it: an ASCII name on its own length, any other on a lower bound read
/// from its mapped form.
///
/// # Errors
///
/// [`Error::DomainTooLong`] or [`Error::DomainLabelTooLong`] when the result would not fit
/// DNS; [`Error::InvalidDomain`] when it would be empty, hold an empty label or an `@`, or
/// UTS #46 refuses the name.
pub fn normalize_domain(text: &str) -> Result<Cow<'_, str>, Error> {
    let trimmed = text.trim_ascii();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if trimmed.is_ascii() {
        // ToASCII maps an ASCII name octet for octet (upper case to lower case; `xn--` labels
        // are decoded, checked and kept) or refuses it, so the input's lengths are the
        // result's: check them before spending anything on UTS #46.
        check_labels(trimmed)?;
        if is_plain_ldh(trimmed) {
            return Ok(Cow::Borrowed(trimmed));
        }
    } else {
        check_mapped_floor(trimmed)?;
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

/// Refuses, before UTS #46 validates and encodes anything, a name whose mapped form already
/// breaks a DNS limit, reading no more of it than it takes to tell.
///
/// UTS #46 maps and NFC-normalizes first; every code point of that mapped form (other than the
/// dots between labels) becomes at least one octet of the result: an ASCII one exactly one,
/// and a label with any other code point is spelled `xn--` and Punycode, which gives each of
/// them at least one octet. So the mapped form, walked lazily, gives a lower bound for each
/// label and for the name that only grows. What vanishes in the mapping (soft hyphens,
/// variation selectors, ...) costs a step each and bounds nothing, as the spec wants: the
/// result is what is judged. The walk stops at the first limit broken, before the `idna`
/// crate's validation and its quadratic Punycode encoding ever see a 64 KiB name.
fn check_mapped_floor(domain: &str) -> Result<(), Error> {
    let mapper = icu_normalizer::uts46::Uts46MapperBorrowed::new();
    let mut before = 0; // octets of the labels before this one, with their dots
    let mut label = 1;
    let mut octets = 0;
    let mut punycode = false;
    for c in mapper.map_normalize(domain.chars()) {
        if c == '.' {
            before += octets + if punycode { 4 } else { 0 } + 1;
            label += 1;
            octets = 0;
            punycode = false;
            continue;
        }
        octets += 1;
        punycode |= !c.is_ascii();
        let floor = octets + if punycode { 4 } else { 0 };
        if floor > MAX_LABEL_OCTETS {
            return Err(Error::DomainLabelTooLong {
                label,
                octets: floor,
                exact: false,
            });
        }
        if before + floor > MAX_DOMAIN_OCTETS {
            return Err(Error::DomainTooLong {
                octets: before + floor,
                exact: false,
            });
        }
    }
    Ok(())
}

/// Non-empty, no empty label (no leading, trailing or doubled `.`), and within the DNS limits:
/// [`MAX_DOMAIN_OCTETS`] in all, [`MAX_LABEL_OCTETS`] a label.
///
/// The whole length is checked first, so a huge name is refused without reading it.
fn check_labels(domain: &str) -> Result<(), Error> {
    if domain.is_empty() {
        return Err(Error::InvalidDomain {
            reason: "it is empty",
        });
    }
    if domain.len() > MAX_DOMAIN_OCTETS {
        return Err(Error::DomainTooLong {
            octets: domain.len(),
            exact: true,
        });
    }
    for (index, label) in domain.split('.').enumerate() {
        if label.is_empty() {
            return Err(Error::InvalidDomain {
                reason: "it has an empty label",
            });
        }
        if label.len() > MAX_LABEL_OCTETS {
            return Err(Error::DomainLabelTooLong {
                label: index + 1,
                octets: label.len(),
                exact: true,
            });
        }
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

/// Bits of [`ADDRESS_CLASS`].
const LOCAL: u8 = 1;
const DOMAIN: u8 = 2;
const DOT: u8 = 4;
const HYPHEN: u8 = 8;

/// What a byte may be in an address that is already normal and plainly so: [`LOCAL`] for
/// printable ASCII other than upper case and `@`; [`DOMAIN`] for `a`-`z`, `0`-`9`, `-`, `.`;
/// [`DOT`] and [`HYPHEN`] mark the two bytes that may not come twice in a row in such a domain.
static ADDRESS_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte: usize = 0x21;
    while byte < 0x7F {
        if byte as u8 != b'@' && !(byte as u8).is_ascii_uppercase() {
            table[byte] = LOCAL;
        }
        if (byte as u8).is_ascii_lowercase() || (byte as u8).is_ascii_digit() {
            table[byte] |= DOMAIN;
        }
        byte += 1;
    }
    table[b'.' as usize] |= DOMAIN | DOT;
    table[b'-' as usize] |= DOMAIN | HYPHEN;
    table
};

/// The index of the `@` when `address` is already what section 4 makes of it and plainly so;
/// `None` sends it through every step instead.
///
/// Plainly so: one `@` with printable, non-upper-case ASCII before it, and after it a domain of
/// lower-case letters, digits, `-` and `.` with no empty label and no `--` (so no `xn--`
/// label, which UTS #46 would decode and check), within the DNS limits. Such an address has
/// nothing to trim, its local part has no upper case, and its domain passes [`is_plain_ldh`]
/// and the label check, so normalization returns it unchanged. One pass a part, a table
/// look-up a byte; the unit tests check it against the full steps.
fn plain_address(address: &[u8]) -> Option<usize> {
    // The domain first, right to left up to the `@`, over no more bytes than DNS allows a
    // name: an `@` further left leaves a domain too long for this path. Starting as if a dot
    // came after the last byte makes a trailing dot (or an empty domain) an empty label, as a
    // leading one is below.
    let window = address.len().saturating_sub(MAX_DOMAIN_OCTETS + 1);
    let tail = address.get(window..)?;
    let mut previous = DOT;
    let mut all = DOMAIN;
    let mut doubled = 0;
    let mut label = 0;
    let mut longest = 0;
    let mut at = None;
    for (i, &b) in tail.iter().enumerate().rev() {
        if b == b'@' {
            at = Some(window + i);
            break;
        }
        let class = ADDRESS_CLASS[usize::from(b)];
        all &= class;
        doubled |= previous & class;
        previous = class;
        label = if class & DOT == 0 { label + 1 } else { 0 };
        longest = longest.max(label);
    }
    let at = at?;
    let local = address.get(..at)?;
    let local_class = local
        .iter()
        .fold(LOCAL, |all, &b| all & ADDRESS_CLASS[usize::from(b)]);
    let plain = !local.is_empty()
        && local_class & LOCAL != 0
        && all & DOMAIN != 0
        && doubled & (DOT | HYPHEN) == 0
        && previous & DOT == 0
        && longest <= MAX_LABEL_OCTETS;
    plain.then_some(at)
}

/// A normalized email address: `local@domain`, local part in Unicode default full lower case
/// (with Final_Sigma, as [`str::to_lowercase`] does), domain as [`normalize_domain`] makes it.
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
    /// [`Error::InvalidEmail`] without an `@` or with an empty side; as [`normalize_domain`]
    /// when the domain cannot be normalized.
    pub fn parse(text: &'a str) -> Result<Self, Error> {
        if let Some(at) = plain_address(text.as_bytes()) {
            return Ok(Self {
                text: Cow::Borrowed(text),
                at,
            });
        }
        Self::parse_general(text)
    }

    /// Section 4 step by step, for any address [`plain_address`] does not vouch for.
    fn parse_general(text: &'a str) -> Result<Self, Error> {
        let trimmed = text.trim_ascii();
        // `rfind` searches a word at a time: a few nanoseconds more for a short address, much
        // less for the 64 KiB ones a hostile client sends, which are refused below.
        let Some(at) = trimmed.rfind('@') else {
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
        // Unicode default full lower-casing with the Final_Sigma context, as the spec pins it:
        // `ΟΔΥΣΣΕΥΣ` becomes `οδυσσευς`. For ASCII it is the ASCII mapping.
        let local = local.to_lowercase();
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
        let parsed = EmailAddress::parse(address).map_err(|err| {
            // `Alice <alice@contoso.com>` fails on its domain, `contoso.com>`; the message
            // should say what to change.
            if address.trim_ascii_end().ends_with('>') {
                Error::InvalidEmail {
                    reason: "give the bare address, without a name or angle brackets",
                }
            } else {
                err
            }
        })?;
        Ok(Self {
            kind: Kind::Email,
            value: parsed.text,
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
///
/// Linear in the domain's length: the dots are counted once, and each step reads only the
/// label it drops. Every candidate is a slice of `domain`.
pub(crate) fn domain_candidates(domain: &str) -> impl Iterator<Item = &str> {
    let mut dots = domain.bytes().filter(|&b| b == b'.').count();
    let mut next = Some(domain);
    std::iter::from_fn(move || {
        let current = next?;
        next = if dots >= 2 {
            dots -= 1;
            current.split_once('.').map(|(_, rest)| rest)
        } else {
            None
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_is_named_as_the_mistake() {
        let err = Audience::email("Alice <alice@contoso.com>").unwrap_err();
        assert!(
            err.to_string().contains("without a name or angle brackets"),
            "{err}"
        );
        // Other bad domains keep their own reason.
        let err = Audience::email("alice@contoso..com").unwrap_err();
        assert!(err.to_string().starts_with("invalid domain"), "{err}");
    }

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
    fn candidates_are_linear_slices() {
        // 127 one-letter labels, 253 octets: 126 candidates, each a suffix of the domain.
        let domain = ["x"; 127].join(".");
        assert_eq!(domain.len(), MAX_DOMAIN_OCTETS);
        let all: Vec<&str> = domain_candidates(&domain).collect();
        assert_eq!(all.len(), 126);
        for (i, candidate) in all.iter().enumerate() {
            assert_eq!(candidate.len(), MAX_DOMAIN_OCTETS - 2 * i);
            assert!(std::ptr::eq(
                candidate.as_bytes(),
                &domain.as_bytes()[2 * i..]
            ));
        }
        assert_eq!(all.last(), Some(&"x.x"));
    }

    /// A name of exactly `octets` octets: labels of 63 `x`s, the last one shorter.
    fn name_of(octets: usize) -> String {
        let mut name = String::new();
        while name.len() < octets {
            if !name.is_empty() {
                name.push('.');
            }
            let room = octets - name.len();
            name.push_str(&"x".repeat(room.min(MAX_LABEL_OCTETS)));
        }
        assert_eq!(name.len(), octets);
        name
    }

    #[test]
    fn dns_label_limit_holds_at_63_octets() {
        let l63 = "a".repeat(63);
        let l64 = "a".repeat(64);
        let ok = format!("{l63}.com");
        assert_eq!(normalize_domain(&ok).as_deref(), Ok(ok.as_str()));
        let upper = format!("{}.COM", l63.to_uppercase());
        assert_eq!(normalize_domain(&upper).as_deref(), Ok(ok.as_str()));
        let too_long = |label| Error::DomainLabelTooLong {
            label,
            octets: 64,
            exact: true,
        };
        assert_eq!(normalize_domain(&format!("{l64}.com")), Err(too_long(1)));
        assert_eq!(normalize_domain(&format!("eu.{l64}.com")), Err(too_long(2)));
        // The same on the slow path (upper case) and with a trailing dot.
        let upper = format!("EU.{}.com.", l64.to_uppercase());
        assert_eq!(normalize_domain(&upper), Err(too_long(2)));
        for email in [format!("a@{l63}.com"), format!("A@{}.Com.", l63)] {
            let parsed = EmailAddress::parse(&email).map(|e| e.domain().to_owned());
            assert_eq!(parsed, Ok(ok.clone()), "{email}");
        }
        for email in [format!("a@{l64}.com"), format!(" A@{l64}.Com ")] {
            assert_eq!(EmailAddress::parse(&email), Err(too_long(1)), "{email}");
        }
    }

    #[test]
    fn dns_name_limit_holds_at_253_octets() {
        let d253 = name_of(253);
        let d254 = name_of(254);
        let too_long = Some(Error::DomainTooLong {
            octets: 254,
            exact: true,
        });
        assert_eq!(normalize_domain(&d253).as_deref(), Ok(d253.as_str()));
        assert_eq!(normalize_domain(&d254).err(), too_long);
        // The dropped trailing dot is not counted.
        assert_eq!(
            normalize_domain(&format!("{d253}.")).as_deref(),
            Ok(d253.as_str())
        );
        assert_eq!(normalize_domain(&format!("{d254}.")).err(), too_long);
        // Upper case takes the UTS #46 path; the limit is the same.
        let upper = d253.to_uppercase();
        assert_eq!(normalize_domain(&upper).as_deref(), Ok(d253.as_str()));
        assert_eq!(normalize_domain(&d254.to_uppercase()).err(), too_long);
        // In an address: the fast path borrows at 253, and both paths refuse 254.
        let email = format!("a@{d253}");
        let parsed = EmailAddress::parse(&email);
        assert!(matches!(
            &parsed,
            Ok(EmailAddress {
                text: Cow::Borrowed(_),
                ..
            })
        ));
        assert_eq!(parsed.map(|e| e.domain().len()), Ok(253));
        let upper = format!("A@{d253}.");
        assert_eq!(
            EmailAddress::parse(&upper).map(|e| e.domain().len()),
            Ok(253)
        );
        for email in [
            format!("a@{d254}"),
            format!("A@{d254}"),
            format!("a@{d254}."),
        ] {
            assert_eq!(EmailAddress::parse(&email).err(), too_long, "{email}");
        }
    }

    #[test]
    fn dns_limits_apply_after_punycode() {
        // 57 `ä` make a 63-octet label, 58 make 64: the input is short, its ASCII form is not.
        let label57 = "ä".repeat(57);
        let ascii57 = normalize_domain(&format!("{label57}.de")).map(Cow::into_owned);
        assert_eq!(ascii57.as_ref().map(|d| d.len()), Ok(63 + 3));
        assert!(ascii57.is_ok_and(|d| d.starts_with("xn--")));
        assert_eq!(
            normalize_domain(&format!("{}.de", "ä".repeat(58))),
            Err(Error::DomainLabelTooLong {
                label: 1,
                octets: 64,
                exact: true
            })
        );
        // Four such labels: 231 characters in, 255 octets out.
        let four = [label57.as_str(); 4].join(".");
        assert_eq!(four.chars().count(), 231);
        assert_eq!(
            normalize_domain(&four),
            Err(Error::DomainTooLong {
                octets: 255,
                exact: true
            })
        );
    }

    #[test]
    fn huge_names_are_refused_before_uts46() {
        // 64 KiB of labels, as a hostile client might send: refused on its length alone.
        let ascii = format!("{}com", "a.".repeat(32 * 1024));
        assert_eq!(
            normalize_domain(&ascii),
            Err(Error::DomainTooLong {
                octets: ascii.len(),
                exact: true
            })
        );
        let email = format!("a@{ascii}");
        assert!(matches!(
            EmailAddress::parse(&email),
            Err(Error::DomainTooLong { exact: true, .. })
        ));
        // Not ASCII: refused as soon as the mapped labels read so far are too long. 42 labels
        // `ä` make at least 251 octets (`xn--` and one more each, and the dots), 43 at least 257.
        let mixed = format!("{}com", "ä\u{3002}".repeat(22 * 1024));
        assert_eq!(
            normalize_domain(&mixed),
            Err(Error::DomainTooLong {
                octets: 257,
                exact: false
            })
        );
        let cjk: String = (0..1000)
            .filter_map(|i| char::from_u32(0x4E00 + i))
            .collect();
        assert_eq!(
            normalize_domain(&format!("{}.{cjk}", "a".repeat(60))),
            Err(Error::DomainLabelTooLong {
                label: 2,
                octets: 64,
                exact: false
            })
        );
        // A name that UTS #46 shrinks is judged on its result, as the spec says: soft hyphens
        // are ignored, so this long input is `a.com`.
        let shrinking = format!("a{}.com", "\u{ad}".repeat(4096));
        assert_eq!(normalize_domain(&shrinking).as_deref(), Ok("a.com"));
    }

    #[test]
    fn dns_limit_messages_name_the_limit() {
        let messages = [
            (
                normalize_domain(&name_of(300)).map(|_| ()),
                "domain is 300 octets; DNS allows at most 253",
            ),
            (
                normalize_domain(&format!("{}com", "ä.".repeat(300))).map(|_| ()),
                "domain is at least 257 octets; DNS allows at most 253",
            ),
            (
                normalize_domain(&format!("eu.{}.com", "a".repeat(70))).map(|_| ()),
                "domain label 2 is 70 octets; DNS allows at most 63 a label",
            ),
        ];
        for (result, message) in messages {
            assert_eq!(result.map_err(|e| e.to_string()), Err(message.to_owned()));
        }
    }

    #[test]
    fn codes_are_refused_for_names_dns_cannot_hold() {
        let d254 = name_of(254);
        assert_eq!(
            Audience::domain_and_subdomains(&d254).map_err(|e| e.to_string()),
            Err("domain is 254 octets; DNS allows at most 253".to_owned())
        );
        assert!(matches!(
            Audience::domain(&format!("{}.com", "a".repeat(64))),
            Err(Error::DomainLabelTooLong { label: 1, .. })
        ));
        assert!(matches!(
            Audience::email(&format!("alice@{d254}")),
            Err(Error::DomainTooLong { octets: 254, .. })
        ));
    }

    #[test]
    fn local_parts_lower_case_with_final_sigma() {
        for (input, normal) in [
            ("ΟΔΥΣΣΕΥΣ@example.gr", "οδυσσευς@example.gr"),
            ("ΣΑΣ.Σ@example.gr", "σασ.ς@example.gr"),
            ("Σ@example.gr", "σ@example.gr"),
            ("ΟΔΥΣΣΕΥΣ@EXAMPLE.gr.", "οδυσσευς@example.gr"),
        ] {
            let parsed = EmailAddress::parse(input).map(|e| e.to_string());
            assert_eq!(parsed.as_deref(), Ok(normal), "{input}");
            assert_eq!(
                normal,
                format!(
                    "{}@example.gr",
                    input.split('@').next().unwrap_or_default().to_lowercase()
                )
            );
        }
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

    /// Addresses built from the pieces that decide [`plain_address`], and a few others.
    fn address_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        // Two long pieces so that a few of them cross 63 octets in a label and 253 in all.
        const PIECES: [&str; 18] = [
            "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz",
            "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789",
            "a",
            "b0",
            "Z",
            ".",
            "-",
            "@",
            "xn--",
            "xn--bcher-kva",
            "--",
            " ",
            "\t",
            "ä",
            "_",
            "\"",
            "+",
            "\u{a0}",
        ];
        proptest::collection::vec(proptest::sample::select(&PIECES[..]), 0..12)
            .prop_map(|parts| parts.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// The shortcut only ever answers what the full steps would: the same text, borrowed,
        /// split at the same `@`.
        #[test]
        fn plain_addresses_are_what_the_full_steps_make(text in address_like()) {
            if let Some(at) = plain_address(text.as_bytes()) {
                let full = EmailAddress::parse_general(&text);
                proptest::prop_assert!(
                    matches!(&full, Ok(EmailAddress { text: Cow::Borrowed(t), at: a }) if *t == text && *a == at),
                    "{text:?}: {full:?}"
                );
            }
        }
    }

    #[test]
    fn plain_address_takes_the_common_case_only() {
        assert_eq!(plain_address(b"alice@contoso.com"), Some(5));
        assert_eq!(plain_address(b"a.b+tag@eu.my-shop.example"), Some(7));
        for other in [
            "Alice@contoso.com",
            "alice@Contoso.com",
            " alice@contoso.com",
            "alice@contoso.com.",
            "alice@.contoso.com",
            "alice@contoso..com",
            "alice@xn--bcher-kva.de",
            "a@b@contoso.com",
            "@contoso.com",
            "alice@",
            "al ice@contoso.com",
            "älice@contoso.com",
        ] {
            assert_eq!(plain_address(other.as_bytes()), None, "{other}");
        }
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
