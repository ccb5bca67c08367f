//! Which domains a domain code should not be minted for, and which cells no email code.
//!
//! A domain code admits everyone with an address in the domain. For a public suffix
//! (`co.uk`, `github.io`) or a free-mail provider (`gmail.com`) that is anyone at all, which is
//! almost always a mistake; minting tools refuse such domains unless told otherwise.

use crate::audience::Audience;
use crate::code::Kind;
use crate::error::Error;

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
/// `allow_public` says otherwise, and an email audience whose local part holds what separates
/// addresses in a list (`,` `;` white space `<` `>` or a second `@`), although it normalizes
/// (the spec splits at the last `@`): `alice@contoso.com;bob@contoso.com` is two addresses in
/// one spreadsheet cell, and no one signs up with it. A quoted local part (`"a b"@...`) is left
/// alone, as is anything else a mail server may take.
///
/// # Errors
///
/// [`Error::PublicDomain`] naming the domain and why it is public; [`Error::InvalidEmail`]
/// for an address that is a list.
pub fn check_audience(audience: &Audience<'_>, allow_public: bool) -> Result<(), Error> {
    if audience.kind() == Kind::Email {
        let local = audience
            .value()
            .rsplit_once('@')
            .map_or("", |(local, _)| local);
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        let separator = |c: char| ",;<>@".contains(c) || c.is_whitespace();
        return if quoted || !local.contains(separator) {
            Ok(())
        } else {
            Err(Error::InvalidEmail {
                reason: "it holds `,`, `;`, `@`, `<`, `>` or a space before its domain: one \
                         address a field",
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
    fn address_lists_get_no_code() {
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
