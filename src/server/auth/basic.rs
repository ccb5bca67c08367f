//! HTTP Basic authentication of the identity provider (RFC 7617).

use std::fmt;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The expected user name and password, kept as SHA-256 digests so that comparison is constant
/// time whatever the lengths, and so that `Debug` has nothing to show.
#[derive(Clone)]
pub struct BasicAuth {
    user: [u8; 32],
    password: [u8; 32],
    /// Digest of the canonical header value `Basic <standard base64 of user:password>`, which
    /// is what clients send: one digest then decides, without decoding.
    canonical: [u8; 32],
}

impl BasicAuth {
    /// Credentials to expect.
    #[must_use]
    pub fn new(user: &str, password: &str) -> Self {
        let pair = zeroize::Zeroizing::new(format!("{user}:{password}"));
        let header = zeroize::Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
        ));
        Self {
            user: digest(user.as_bytes()),
            password: digest(password.as_bytes()),
            canonical: digest(header.as_bytes()),
        }
    }

    /// Whether an `Authorization` header value carries these credentials.
    ///
    /// The scheme is case-insensitive; the credentials split at the first `:`, so passwords
    /// may contain colons. Both parts are always compared, in constant time.
    #[must_use]
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(header) = header else {
            return false;
        };
        if bool::from(digest(header).ct_eq(&self.canonical)) {
            return true;
        }
        let Some(encoded) = basic_credentials(header) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii())
        else {
            return false;
        };
        let decoded = zeroize::Zeroizing::new(decoded);
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = decoded.split_at(colon);
        let password = password.get(1..).unwrap_or_default();
        let user_ok = digest(user).ct_eq(&self.user);
        let password_ok = digest(password).ct_eq(&self.password);
        bool::from(user_ok & password_ok)
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BasicAuth(..)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The credentials part of `Basic <credentials>`.
fn basic_credentials(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii();
    let (scheme, rest) = header.split_at_checked(6)?;
    scheme.eq_ignore_ascii_case(b"basic ").then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
        .into_bytes()
    }

    #[test]
    fn colon_in_password_and_case_insensitive_scheme() {
        let auth = BasicAuth::new("b2c", "pa:ss:word");
        assert!(auth.accepts(Some(&header("b2c:pa:ss:word"))));
        let lower = String::from_utf8(header("b2c:pa:ss:word"))
            .unwrap()
            .replacen("Basic", "basic", 1);
        assert!(auth.accepts(Some(lower.as_bytes())));
        for wrong in [
            "b2c:pa:ss",
            "b2c:pa:ss:word:",
            "B2C:pa:ss:word",
            "b2cpa:ss:word",
            ":",
            "",
        ] {
            assert!(!auth.accepts(Some(&header(wrong))), "{wrong}");
        }
        assert!(!auth.accepts(None));
        assert!(!auth.accepts(Some(b"Bearer abc")));
        assert!(!auth.accepts(Some(b"Basic !!!")));
        assert_eq!(format!("{auth:?}"), "BasicAuth(..)");
    }
}
