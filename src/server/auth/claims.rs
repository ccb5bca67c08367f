//! The claim rules of an Entra token, once its signature and time window are checked: `iss`
//! one of the accepted issuers (v1-only ones for `ver` `1.0` only), `tid` the configured
//! tenant when both are present, `aud` one of the audiences, and `azp`/`appid` Entra's
//! authentication events service. A refusal carries the values compared, for the log.

use super::bearer_config::{BearerConfig, ENTRA_CALLER_APP_ID};
use super::rejection::{TokenRefusal, TokenRejection, loggable};
use super::token::{Audiences, Claims, version_text};

/// Issuer, tenant, audience and caller, in that order.
pub(crate) fn check_claims(config: &BearerConfig, claims: &Claims) -> Result<(), TokenRefusal> {
    let ver = claims.ver.as_ref().map(version_text);
    let iss_ok = claims
        .iss
        .as_deref()
        .is_some_and(|iss| config.accepts_issuer(iss, ver.as_deref()));
    if !iss_ok {
        return Err(TokenRefusal::new(TokenRejection::Issuer).with(|d| {
            d.iss = Some(
                claims
                    .iss
                    .as_deref()
                    .map_or_else(|| "(none)".to_owned(), loggable),
            );
            d.ver = ver.as_deref().map(loggable);
            d.tid = claims.tid.as_deref().map(loggable);
            d.expected = Some(config.describe_issuers());
        }));
    }
    if let (Some(tenant), Some(tid)) = (&config.tenant, &claims.tid)
        && !tid.eq_ignore_ascii_case(tenant)
    {
        return Err(TokenRefusal::new(TokenRejection::Tenant).with(|d| {
            d.tid = Some(loggable(tid));
            d.iss = claims.iss.as_deref().map(loggable);
            d.expected = Some(tenant.clone());
        }));
    }
    if !audience_accepted(config, claims.aud.as_ref()) {
        return Err(TokenRefusal::new(TokenRejection::Audience).with(|d| {
            d.aud = Some(match &claims.aud {
                Some(Audiences::One(aud)) => loggable(aud),
                Some(Audiences::Many(auds)) => loggable(&auds.join(", ")),
                None => "(none)".to_owned(),
            });
            d.expected = Some(config.audiences.join(", "));
        }));
    }
    let callers = [claims.azp.as_deref(), claims.appid.as_deref()];
    let mut named = callers.iter().flatten().peekable();
    if named.peek().is_none()
        || !named.all(|caller| caller.eq_ignore_ascii_case(ENTRA_CALLER_APP_ID))
    {
        return Err(TokenRefusal::new(TokenRejection::Caller).with(|d| {
            d.azp = Some(
                claims
                    .azp
                    .as_deref()
                    .map_or_else(|| "(none)".to_owned(), loggable),
            );
            d.appid = claims.appid.as_deref().map(loggable);
            d.ver = ver.as_deref().map(loggable);
            d.expected = Some(ENTRA_CALLER_APP_ID.to_owned());
        }));
    }
    Ok(())
}

fn audience_accepted(config: &BearerConfig, aud: Option<&Audiences>) -> bool {
    let accepted = |aud: &String| config.audiences.contains(aud);
    match aud {
        Some(Audiences::One(aud)) => accepted(aud),
        Some(Audiences::Many(auds)) => auds.iter().any(accepted),
        None => false,
    }
}
