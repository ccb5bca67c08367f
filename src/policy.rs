//! Which domains a domain code should not be minted for, and which addresses no email code.
//!
//! A domain code admits everyone with an address in the domain. For a public suffix
//! (`co.uk`, `github.io`) or a free-mail provider (`gmail.com`) that is anyone at all, which is
//! almost always a mistake; minting tools refuse such domains unless told otherwise.

use crate::{Audience, Error, Kind};

/// The free-mail list: a documented data file, one domain a line (see its header).
const FREE_MAIL_LIST: &str = include_str!("policy/free-mail.txt");

/// How a listed domain is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// The domain and every name under it belong to the provider (`eu.gmail.com`).
    WithSubdomains,
    /// Only the domain itself: the names under it belong to separate owners
    /// (`contoso.onmicrosoft.com` is one tenant), so only a code for the domain itself, or for
    /// it with its subdomains, would admit everyone.
    Exact,
}

/// The free-mail and shared-tenant domains of the data file, in file order. Anyone can get an
/// address there, so a domain code for one admits anyone.
pub fn free_mail_domains() -> impl Iterator<Item = (&'static str, Listing)> {
    FREE_MAIL_LIST.lines().filter_map(|line| {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            None
        } else if let Some(exact) = line.strip_prefix('=') {
            Some((exact.trim(), Listing::Exact))
        } else {
            Some((line, Listing::WithSubdomains))
        }
    })
}

/// Why a normalized domain is public, or `None` when a domain code for it is reasonable.
///
/// A domain is public when it is itself a public suffix (ICANN or private section of the
/// public suffix list, through the maintained `psl` crate), or when it is, or lies under, a
/// domain of the free-mail list ([`free_mail_domains`]; for [`Listing::Exact`] domains only
/// the domain itself).
#[must_use]
pub fn public_domain_reason(domain: &str) -> Option<&'static str> {
    let suffix = psl::suffix(domain.as_bytes());
    if suffix.is_some_and(|s| s.is_known() && s.as_bytes() == domain.as_bytes()) {
        return Some("it is a public suffix, under which anyone can register a domain");
    }
    let (_, listing) = free_mail_domains().find(|&(free, listing)| {
        domain == free
            || (listing == Listing::WithSubdomains
                && domain
                    .strip_suffix(free)
                    .is_some_and(|head| head.ends_with('.')))
    })?;
    Some(match listing {
        Listing::WithSubdomains => "it is a free email provider, where anyone can get an address",
        Listing::Exact => {
            "it is shared by many organisations, each with its own name under it, and anyone \
             can get one"
        }
    })
}

/// Refuses what a code should not be minted for: a domain audience that is public, unless
/// `allow_public` says otherwise, and an email audience that no mail server takes although
/// it normalizes (split at the last `@`, as the spec says): `alice@contoso.com;bob@contoso.com`,
/// two addresses in one cell, or `a@b@contoso.com`. `send` could not deliver such a code, and
/// no one could sign up with such an address.
///
/// # Errors
///
/// [`Error::PublicDomain`] naming the domain and why it is public; [`Error::InvalidEmail`]
/// for an address no mail server takes.
pub fn check_audience(audience: &Audience<'_>, allow_public: bool) -> Result<(), Error> {
    if audience.kind() == Kind::Email {
        // The local part as the mail library checks it (`send` parses each address with
        // lettre, which asks `email_address`); the domain is already a DNS name, normalized.
        let local = audience
            .value()
            .rsplit_once('@')
            .map_or("", |(local, _)| local);
        return if is_plain_local_part(local)
            || email_address::EmailAddress::is_valid_local_part(local)
        {
            Ok(())
        } else {
            Err(Error::InvalidEmail {
                reason: "it is not one address a mail server takes (two in one field?)",
            })
        };
    }
    if allow_public {
        return Ok(());
    }
    match public_domain_reason(audience.value()) {
        Some(reason) => Err(Error::PublicDomain {
            domain: audience.value().to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Whether `local` is a dot-atom of ASCII characters (RFC 5322), at most 64 octets: the
/// usual address, which the mail library takes too, checked without its slower general
/// parse (quoted strings, other scripts).
fn is_plain_local_part(local: &str) -> bool {
    local.len() <= 64
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_domains_are_recognized() {
        for public in [
            "co.uk",
            "com",
            "github.io",
            "gmail.com",
            "eu.gmail.com",
            "yahoo.com",
            "hotmail.fr",
            "outlook.fr",
            "hotmail.co.uk",
            "yahoo.fr",
            "yahoo.co.uk",
            "gmx.at",
            "web.de",
            "onmicrosoft.com",
        ] {
            assert!(public_domain_reason(public).is_some(), "{public}");
        }
        for private in [
            "contoso.com",
            "fabrikam.co.uk",
            "notgmail.com",
            "example.github.io",
            "contoso.onmicrosoft.com",
            "notonmicrosoft.com",
        ] {
            assert_eq!(public_domain_reason(private), None, "{private}");
        }
    }

    #[test]
    fn the_data_file_is_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for (domain, _) in free_mail_domains() {
            assert_eq!(domain, domain.to_ascii_lowercase(), "{domain}");
            assert!(domain.contains('.') && !domain.contains(' '), "{domain}");
            assert!(seen.insert(domain), "{domain} twice");
        }
        assert!(seen.len() > 200, "{} domains", seen.len());
    }

    #[test]
    fn shared_tenant_domains_are_refused_with_subdomains() {
        let tenants = Audience::domain_and_subdomains("onmicrosoft.com").unwrap();
        assert!(check_audience(&tenants, false).is_err());
        let one = Audience::domain("contoso.onmicrosoft.com").unwrap();
        assert!(check_audience(&one, false).is_ok());
        let country = Audience::domain_and_subdomains("hotmail.fr").unwrap();
        assert!(check_audience(&country, false).is_err());
        assert!(
            public_domain_reason("onmicrosoft.com").is_some_and(|r| r.contains("shared")),
            "a tenant domain is not a free email provider"
        );
    }

    #[test]
    fn the_quick_local_part_check_agrees_with_the_mail_library() {
        let long = "a".repeat(65);
        for local in [
            "alice", "a.b", "o'neil+x", "a..b", ".a", "a.", "", "a;b", "a b", "a@b", "zoë",
            "\"a b\"", &long,
        ] {
            if is_plain_local_part(local) {
                assert!(
                    email_address::EmailAddress::is_valid_local_part(local),
                    "{local}"
                );
            }
        }
        assert!(is_plain_local_part("o'neil+x") && !is_plain_local_part(&long));
    }

    #[test]
    fn addresses_no_mail_server_takes_get_no_code() {
        for taken in [
            "alice@contoso.com",
            "zoë.o'neil+x@contoso.com",
            "a@bücher.de",
        ] {
            let audience = Audience::email(taken).unwrap();
            assert!(check_audience(&audience, false).is_ok(), "{taken}");
        }
        for refused in [
            "alice@contoso.com;bob@contoso.com",
            "alice@contoso.com,bob@contoso.com",
            "a@b@contoso.com",
            "Alice Smith@contoso.com",
        ] {
            let audience = Audience::email(refused).unwrap();
            assert!(
                matches!(
                    check_audience(&audience, true),
                    Err(Error::InvalidEmail { .. })
                ),
                "{refused}"
            );
        }
    }
}
