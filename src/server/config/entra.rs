//! The Entra External ID endpoint's settings, and the issuer rules: which `iss` values a
//! tenant's tokens may carry, and where its signing keys are.
//!
//! For tenant `{tid}` (a GUID) with optional subdomain `{sub}` (the `contoso` of
//! `contoso.ciamlogin.com`), the accepted issuers are, and no others:
//!
//! - `https://{tid}.ciamlogin.com/{tid}/v2.0`, the form real external tenants sign custom
//!   authentication extension tokens with (the tenant id as the host);
//! - `https://{sub}.ciamlogin.com/{tid}/v2.0`, the form the portal shows, for the configured
//!   subdomain only;
//! - `https://login.microsoftonline.com/{tid}/v2.0`;
//! - `https://sts.windows.net/{tid}/`, for v1 tokens (`ver` `1.0`) only;
//!
//! and every issuer `ENTRA_ISSUER` lists (exact `https://` URLs: sovereign clouds, unusual
//! set-ups). A token's `tid`, when present, must be the tenant. The keys come from the
//! tenant-ID host's OpenID metadata, `https://{tid}.ciamlogin.com/{tid}/v2.0/.well-known/
//! openid-configuration`, then its `jwks_uri`, unless `ENTRA_JWKS_URL`, `ENTRA_JWKS_FILE` or
//! `ENTRA_METADATA_URL` names another source.

use std::path::PathBuf;
use std::time::Duration;

use super::Problem;
use crate::connector::entra::EmailSource;
use crate::server::auth::jwks::metadata_url;
use crate::server::auth::{BearerConfig, JwksSource, KeySetError};

/// The Entra endpoint's settings, as given (flags or environment).
#[derive(Debug, Clone, Default)]
pub struct EntraSettings {
    /// `ENTRA_TENANT_ID`: the tenant's id, a GUID.
    pub tenant_id: Option<String>,
    /// `ENTRA_TENANT_SUBDOMAIN`: the `contoso` of `contoso.ciamlogin.com`.
    pub tenant_subdomain: Option<String>,
    /// `ENTRA_ISSUER`: exact issuers to accept besides the tenant's forms.
    pub issuers: Vec<String>,
    /// `ENTRA_AUDIENCE`: the custom extension's app id and/or its `api://` URI.
    pub audiences: Vec<String>,
    /// `ENTRA_JWKS_URL`: a key set URL instead of the metadata's.
    pub jwks_url: Option<String>,
    /// `ENTRA_JWKS_FILE`: a key set file, for hosts that cannot reach the tenant.
    pub jwks_file: Option<PathBuf>,
    /// `ENTRA_METADATA_URL`: OpenID metadata elsewhere than the tenant's (https, or http to a
    /// loopback address).
    pub metadata_url: Option<String>,
    /// `ENTRA_EMAIL_SOURCE`: whether a code may be checked against the `email` attribute when
    /// the sign-up has no `email` identity (a federated sign-up). It has a default, so it does
    /// not turn the endpoint on by itself.
    pub email_source: EmailSource,
}

impl EntraSettings {
    /// Whether the endpoint is asked for: any Entra setting is given. One given without a
    /// tenant id or an issuer is then a problem, not silently ignored.
    #[must_use]
    pub fn is_set(&self) -> bool {
        let given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
        given(&self.tenant_id)
            || given(&self.tenant_subdomain)
            || self.issuers.iter().any(|i| !i.trim().is_empty())
            || self.audiences.iter().any(|a| !a.trim().is_empty())
            || given(&self.jwks_url)
            || given(&self.metadata_url)
            || self.jwks_file.is_some()
    }

    /// The bearer-token configuration these settings describe, with `leeway` on `exp`/`nbf`.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming the setting to fix. A missing audience is not one
    /// here (the server can wait for it); [`EntraSettings::pending`] reports it.
    pub fn bearer_config(&self, leeway: Duration) -> Result<BearerConfig, Vec<Problem>> {
        let mut problems = Vec::new();
        let tenant = match self.tenant_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => match parse_guid(id) {
                Some(id) => Some(id),
                None => {
                    problems.push(Problem::new(
                        "ENTRA_TENANT_ID",
                        format!(
                            "ENTRA_TENANT_ID {id:?} is not a GUID: give the Tenant ID from the \
                             external tenant's overview page, e.g. \
                             1a2b3c4d-0000-4000-8000-0123456789ab"
                        ),
                    ));
                    None
                }
            },
            _ => None,
        };
        let subdomain = match self.tenant_subdomain.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => {
                if self
                    .tenant_id
                    .as_deref()
                    .is_none_or(|id| id.trim().is_empty())
                {
                    problems.push(Problem::new(
                        "ENTRA_TENANT_ID",
                        "ENTRA_TENANT_SUBDOMAIN is set but ENTRA_TENANT_ID is not: the \
                         subdomain is accepted only with its tenant's id",
                    ));
                }
                parse_subdomain(text)
                    .map_err(|message| {
                        problems.push(Problem::new("ENTRA_TENANT_SUBDOMAIN", message));
                    })
                    .ok()
            }
            _ => None,
        };
        let mut explicit = Vec::new();
        for issuer in self
            .issuers
            .iter()
            .map(|i| i.trim())
            .filter(|i| !i.is_empty())
        {
            match reqwest::Url::parse(issuer) {
                Ok(url) if url.scheme() == "https" && url.host_str().is_some() => {
                    explicit.push(issuer.to_owned());
                }
                _ => problems.push(Problem::new(
                    "ENTRA_ISSUER",
                    format!(
                        "ENTRA_ISSUER {issuer:?} is not an https:// URL: give the exact iss of \
                         the tokens (comma-separated for several), or set ENTRA_TENANT_ID \
                         instead"
                    ),
                )),
            }
        }
        let sources = [
            ("ENTRA_JWKS_FILE", self.jwks_file.is_some()),
            ("ENTRA_JWKS_URL", self.jwks_url.is_some()),
            ("ENTRA_METADATA_URL", self.metadata_url.is_some()),
        ];
        let given: Vec<&str> = sources.iter().filter(|s| s.1).map(|s| s.0).collect();
        if given.len() > 1 {
            problems.push(Problem::new(
                given.first().copied().unwrap_or("ENTRA_JWKS_URL"),
                format!(
                    "{} name the signing keys twice: set only one",
                    given.join(" and ")
                ),
            ));
        }
        let (issuer, mut also, v1) = match (&tenant, explicit.split_first()) {
            (Some(tid), _) => {
                let mut also: Vec<String> = subdomain
                    .iter()
                    .map(|sub| format!("https://{sub}.ciamlogin.com/{tid}/v2.0"))
                    .collect();
                also.push(format!("https://login.microsoftonline.com/{tid}/v2.0"));
                also.extend(explicit.iter().cloned());
                let v1 = vec![format!("https://sts.windows.net/{tid}/")];
                (tenant_issuer(tid), also, v1)
            }
            (None, Some((first, rest))) => (first.clone(), rest.to_vec(), Vec::new()),
            (None, None) => {
                if problems.is_empty() {
                    problems.push(Problem::new(
                        "ENTRA_TENANT_ID",
                        "the entra endpoint needs its tenant: set ENTRA_TENANT_ID (and \
                         ENTRA_AUDIENCE)",
                    ));
                }
                return Err(problems);
            }
        };
        // Each issuer once, in the order given, the first one not repeated.
        let mut seen = vec![issuer.clone()];
        also.retain(|i| {
            let new = !seen.contains(i);
            seen.push(i.clone());
            new
        });
        let jwks = match (&self.jwks_file, &self.jwks_url, &self.metadata_url) {
            (Some(path), _, _) => JwksSource::File(path.clone()),
            (None, Some(url), _) => JwksSource::Url(url.trim().to_owned()),
            (None, None, Some(url)) => JwksSource::MetadataAt(url.trim().to_owned()),
            (None, None, None) => JwksSource::Metadata,
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut config = BearerConfig::new(issuer, self.audiences(), jwks);
        config.also_issuers = also;
        config.v1_issuers = v1;
        config.tenant = tenant;
        config.leeway = leeway;
        Ok(config)
    }

    /// The audiences given, trimmed, empty ones dropped.
    #[must_use]
    pub fn audiences(&self) -> Vec<String> {
        self.audiences
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect()
    }

    /// What the endpoint still waits for while the server runs: the audience. `serve` starts
    /// with these; `serve --check` reports them.
    #[must_use]
    pub fn pending(&self) -> Vec<Problem> {
        if self.audiences().is_empty() {
            vec![Problem::new(
                "ENTRA_AUDIENCE",
                "ENTRA_AUDIENCE is not set: the entra endpoint refuses every call (503) until \
                 it is; give the custom authentication extension's app id and/or its api:// \
                 URI, comma-separated",
            )]
        } else {
            Vec::new()
        }
    }

    /// Advice that does not stop the server: an `ENTRA_ISSUER` of the portal's
    /// `https://{subdomain}.ciamlogin.com/{tenantId}/v2.0` form given without the tenant id
    /// accepts that exact issuer only, while real tenants also sign with the tenant id as the
    /// host.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        if self.tenant_id.is_some() {
            return Vec::new();
        }
        self.issuers
            .iter()
            .filter_map(|issuer| {
                let rest = issuer.trim().strip_prefix("https://")?;
                let (subdomain, rest) = rest.split_once(".ciamlogin.com/")?;
                let tid = parse_guid(rest.strip_suffix("/v2.0")?)?;
                let subdomain = if subdomain == tid {
                    String::new()
                } else {
                    format!(" ENTRA_TENANT_SUBDOMAIN={subdomain}")
                };
                Some(format!(
                    "ENTRA_ISSUER {issuer} is accepted exactly, but external tenants also sign \
                     as {}; set ENTRA_TENANT_ID={tid}{subdomain} instead (and unset \
                     ENTRA_ISSUER) to accept every form of this tenant",
                    tenant_issuer(&tid)
                ))
            })
            .collect()
    }
}

/// The issuer of tokens signed for tenant `tid` on its own host, whose metadata holds the keys.
#[must_use]
pub fn tenant_issuer(tid: &str) -> String {
    format!("https://{tid}.ciamlogin.com/{tid}/v2.0")
}

/// The tenant's OpenID metadata URL.
#[must_use]
pub fn tenant_metadata_url(tid: &str) -> String {
    metadata_url(&tenant_issuer(tid))
}

/// A GUID, with or without hyphens, in any case, as lower-case hex: 32 digits when
/// `hyphens` is false, else grouped 8-4-4-4-12. `None` when it is not one.
#[must_use]
pub fn guid_hex(text: &str) -> Option<String> {
    let text = text.trim();
    let hex: String = text.chars().filter(|&c| c != '-').collect();
    let grouped = text.len() == 36
        && text
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) && (grouped || text == hex))
        .then(|| hex.to_ascii_lowercase())
}

/// A GUID as Entra writes it in issuers and `tid`: lower case, grouped 8-4-4-4-12.
#[must_use]
pub fn parse_guid(text: &str) -> Option<String> {
    let hex = guid_hex(text)?;
    let part = |range: std::ops::Range<usize>| hex.get(range).unwrap_or_default().to_owned();
    Some(format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    ))
}

/// The subdomain: a DNS label, lower-cased; `contoso.ciamlogin.com` and an `https://` URL of
/// that host are read as `contoso`.
fn parse_subdomain(text: &str) -> Result<String, String> {
    let lower = text.trim().to_ascii_lowercase();
    let host = lower
        .strip_prefix("https://")
        .unwrap_or(&lower)
        .split('/')
        .next()
        .unwrap_or_default();
    let label = host.strip_suffix(".ciamlogin.com").unwrap_or(host);
    let valid = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if valid {
        Ok(label.to_owned())
    } else {
        Err(format!(
            "ENTRA_TENANT_SUBDOMAIN {text:?} is not a subdomain: give the contoso of \
             contoso.ciamlogin.com"
        ))
    }
}

/// The setting to fix for a key-source error.
#[must_use]
pub fn key_source_setting(settings: &EntraSettings, error: &KeySetError) -> &'static str {
    if settings.jwks_file.is_some() {
        "ENTRA_JWKS_FILE"
    } else if settings.jwks_url.is_some() {
        "ENTRA_JWKS_URL"
    } else if settings.metadata_url.is_some() {
        "ENTRA_METADATA_URL"
    } else if matches!(error, KeySetError::Config { .. }) || settings.tenant_id.is_none() {
        "ENTRA_ISSUER"
    } else {
        "ENTRA_TENANT_ID"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "1a2b3c4d-0000-4000-8000-0123456789ab";

    #[test]
    fn guids_are_normalized() {
        assert_eq!(parse_guid(TID).as_deref(), Some(TID));
        assert_eq!(
            parse_guid(
                "1A2B3C4D00004000800001234567 89AB"
                    .replace(' ', "")
                    .as_str()
            )
            .as_deref(),
            Some(TID)
        );
        for bad in [
            "",
            "contoso",
            "1a2b3c4d-0000-4000-8000-0123456789a",
            "1a2b3c4d0-000-4000-8000-0123456789ab",
        ] {
            assert_eq!(parse_guid(bad), None, "{bad}");
        }
    }

    #[test]
    fn subdomains() {
        assert_eq!(parse_subdomain("Contoso").as_deref(), Ok("contoso"));
        assert_eq!(
            parse_subdomain("contoso.ciamlogin.com").as_deref(),
            Ok("contoso")
        );
        assert_eq!(
            parse_subdomain("https://contoso.ciamlogin.com/").as_deref(),
            Ok("contoso")
        );
        for bad in ["", "-x", "a.b", "con toso", "x".repeat(64).as_str()] {
            assert!(parse_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenant_forms() {
        let settings = EntraSettings {
            tenant_id: Some(TID.to_uppercase()),
            tenant_subdomain: Some("contoso".into()),
            audiences: vec!["api://x".into()],
            ..EntraSettings::default()
        };
        let config = settings.bearer_config(Duration::from_secs(60)).unwrap();
        assert_eq!(
            config.accepted_issuers(),
            [
                format!("https://{TID}.ciamlogin.com/{TID}/v2.0"),
                format!("https://contoso.ciamlogin.com/{TID}/v2.0"),
                format!("https://login.microsoftonline.com/{TID}/v2.0"),
                format!("https://sts.windows.net/{TID}/"),
            ]
        );
        assert!(!config.accepts_issuer(&format!("https://sts.windows.net/{TID}/"), Some("2.0")));
        assert!(config.accepts_issuer(&format!("https://sts.windows.net/{TID}/"), Some("1.0")));
        assert_eq!(config.tenant.as_deref(), Some(TID));
        let repeated = EntraSettings {
            issuers: vec![
                format!("https://contoso.ciamlogin.com/{TID}/v2.0"),
                format!("https://{TID}.ciamlogin.com/{TID}/v2.0"),
            ],
            ..settings.clone()
        };
        let again = repeated.bearer_config(Duration::ZERO).unwrap();
        assert_eq!(again.accepted_issuers(), config.accepted_issuers());
        assert_eq!(config.jwks, JwksSource::Metadata);
        assert_eq!(
            metadata_url(&config.issuer),
            format!("https://{TID}.ciamlogin.com/{TID}/v2.0/.well-known/openid-configuration")
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let settings = EntraSettings {
            tenant_id: Some("nope".into()),
            tenant_subdomain: Some("a b".into()),
            issuers: vec!["http://x.example/v2.0".into(), "contoso".into()],
            jwks_url: Some("https://a/".into()),
            metadata_url: Some("https://b/".into()),
            ..EntraSettings::default()
        };
        let problems = settings.bearer_config(Duration::ZERO).unwrap_err();
        let settings: Vec<&str> = problems.iter().map(|p| p.setting).collect();
        assert_eq!(
            settings,
            [
                "ENTRA_TENANT_ID",
                "ENTRA_TENANT_SUBDOMAIN",
                "ENTRA_ISSUER",
                "ENTRA_ISSUER",
                "ENTRA_JWKS_URL"
            ]
        );
    }
}
