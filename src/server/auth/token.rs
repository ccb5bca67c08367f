//! The parts of a bearer token the checks read: the `Bearer` scheme, the JWS header, the
//! claims, and the time window. Pure functions, no keys and no clock.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::rejection::TokenRejection;

/// `ver` as text: Entra writes a string; a number is read as written.
pub(crate) fn version_text(ver: &serde_json::Value) -> String {
    match ver {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The token of a `Bearer <token>` header value; the scheme is case-insensitive.
pub(crate) fn bearer_token(header: &[u8]) -> Result<&[u8], TokenRejection> {
    let header = header.trim_ascii();
    let (scheme, rest) = match header.iter().position(|&b| b == b' ') {
        Some(space) => header.split_at_checked(space).unwrap_or((header, &[])),
        None => (header, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(TokenRejection::NotBearer);
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(TokenRejection::Malformed);
    }
    Ok(token)
}

/// The fields of a JWS header this module reads.
#[derive(serde::Deserialize)]
pub(crate) struct TokenHeader {
    pub(crate) alg: String,
    pub(crate) kid: Option<String>,
    pub(crate) crit: Option<serde::de::IgnoredAny>,
}

/// The decoded header of a compact JWS: three base64url parts, JSON header.
pub(crate) fn token_header(token: &[u8]) -> Result<TokenHeader, TokenRejection> {
    let shaped = token
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed);
    };
    if !shaped || header.is_empty() {
        return Err(TokenRejection::Malformed);
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenRejection::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenRejection::Malformed)
}

/// The claims as the token states them, signature unchecked: only for the log of a refusal
/// that comes before the signature is checked (unknown key, no keys, bad signature), where the
/// token's `iss` and `tid` tell which tenant and key set it expects.
pub(crate) fn unverified_claims(token: &[u8]) -> Option<Claims> {
    let payload = token.split(|&b| b == b'.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// The claims this module checks; anything else in the token is ignored.
#[derive(serde::Deserialize)]
pub(crate) struct Claims {
    pub(crate) exp: Option<f64>,
    pub(crate) nbf: Option<f64>,
    pub(crate) iss: Option<String>,
    pub(crate) aud: Option<Audiences>,
    pub(crate) azp: Option<String>,
    pub(crate) appid: Option<String>,
    pub(crate) tid: Option<String>,
    pub(crate) ver: Option<serde_json::Value>,
}

/// `aud` is one string or an array of strings (RFC 7519 section 4.1.3).
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Audiences {
    One(String),
    Many(Vec<String>),
}

/// A NumericDate as whole seconds, rounded with `round`; `None` if not finite.
pub(crate) fn numeric_date(value: f64, round: fn(f64) -> f64) -> Option<i64> {
    // `as` saturates at the i64 range, which is far beyond any real date.
    value.is_finite().then(|| round(value) as i64)
}

pub(crate) fn rejection(error: &jsonwebtoken::errors::Error) -> TokenRejection {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            TokenRejection::Signature
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm => TokenRejection::Algorithm,
        _ => TokenRejection::Malformed,
    }
}

/// Whether `now` lies in `[not_before, expires)` widened by `leeway` on both sides.
pub(crate) fn in_window(
    now: i64,
    not_before: i64,
    expires: i64,
    leeway: i64,
) -> Result<(), TokenRejection> {
    if now >= expires.saturating_add(leeway) {
        return Err(TokenRejection::Expired);
    }
    if now.saturating_add(leeway) < not_before {
        return Err(TokenRejection::NotYetValid);
    }
    Ok(())
}

pub(crate) fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token(b"Bearer abc"), Ok(&b"abc"[..]));
        assert_eq!(bearer_token(b"  bearer   abc  "), Ok(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Ok(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer"), Err(TokenRejection::Malformed));
        assert_eq!(bearer_token(b"Bearer   "), Err(TokenRejection::Malformed));
        assert_eq!(bearer_token(b"Basic abc"), Err(TokenRejection::NotBearer));
        assert_eq!(bearer_token(b"Bearerabc"), Err(TokenRejection::NotBearer));
        assert_eq!(bearer_token(b""), Err(TokenRejection::NotBearer));
    }

    #[test]
    fn window_edges() {
        // exp is exclusive, nbf inclusive, each widened by the leeway.
        assert_eq!(in_window(100, i64::MIN, 101, 0), Ok(()));
        assert_eq!(
            in_window(101, i64::MIN, 101, 0),
            Err(TokenRejection::Expired)
        );
        assert_eq!(in_window(160, i64::MIN, 101, 60), Ok(()));
        assert_eq!(
            in_window(161, i64::MIN, 101, 60),
            Err(TokenRejection::Expired)
        );
        assert_eq!(in_window(100, 100, 200, 0), Ok(()));
        assert_eq!(in_window(99, 100, 200, 0), Err(TokenRejection::NotYetValid));
        assert_eq!(in_window(40, 100, 200, 60), Ok(()));
        assert_eq!(
            in_window(39, 100, 200, 60),
            Err(TokenRejection::NotYetValid)
        );
        assert_eq!(
            in_window(i64::MAX, i64::MIN, i64::MAX, i64::MAX),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn clock_before_the_epoch_is_negative() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }
}
