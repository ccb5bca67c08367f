//! Which domains a domain code should not be minted for.
//!
//! A domain code admits everyone with an address in the domain. For a public suffix
//! (`co.uk`, `github.io`) or a free-mail provider (`gmail.com`) that is anyone at all, which is
//! almost always a mistake; minting tools refuse such domains unless told otherwise.

use crate::{Audience, Error, Kind};

/// The large free-mail providers. Anyone can get an address there, so a domain code for one
/// admits anyone. Kept short on purpose: the public suffix list covers the structural cases,
/// and this list only the providers whose domains are ordinary registrable names.
pub const FREE_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "ymail.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "yandex.com",
    "yandex.ru",
    "mail.ru",
    "qq.com",
    "163.com",
    "126.com",
    "zoho.com",
    "fastmail.com",
    "tutanota.com",
];

/// Why a normalized domain is public, or `None` when a domain code for it is reasonable.
///
/// A domain is public when it is itself a public suffix (ICANN or private section of the
/// public suffix list, through the maintained `psl` crate), or when it is, or lies under, a
/// domain of [`FREE_MAIL_DOMAINS`].
#[must_use]
pub fn public_domain_reason(domain: &str) -> Option<&'static str> {
    let suffix = psl::suffix(domain.as_bytes());
    if suffix.is_some_and(|s| s.is_known() && s.as_bytes() == domain.as_bytes()) {
        return Some("it is a public suffix, under which anyone can register a domain");
    }
    let free_mail = FREE_MAIL_DOMAINS.iter().any(|free| {
        domain == *free
            || domain
                .strip_suffix(free)
                .is_some_and(|head| head.ends_with('.'))
    });
    free_mail.then_some("it is a free email provider, where anyone can get an address")
}

/// Refuses a domain audience that is public, unless `allow_public` says otherwise. Email
/// audiences always pass.
///
/// # Errors
///
/// [`Error::PublicDomain`] naming the domain and why it is public.
pub fn check_audience(audience: &Audience<'_>, allow_public: bool) -> Result<(), Error> {
    if audience.kind() == Kind::Email || allow_public {
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
        ] {
            assert!(public_domain_reason(public).is_some(), "{public}");
        }
        for private in [
            "contoso.com",
            "fabrikam.co.uk",
            "notgmail.com",
            "example.github.io",
        ] {
            assert_eq!(public_domain_reason(private), None, "{private}");
        }
    }
}
