//! HTTP Basic authentication of the identity provider (RFC 7617).
//!
//! A refusal says why, for the log and the refusal counter only: `missing-header`,
//! `wrong-scheme`, `malformed`, `unknown-user` or `wrong-password`, with the scheme seen or the
//! user name given. The password is never kept.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::secret::Secret;
use crate::server::labels::{Refusal, scheme_seen};

/// No `Authorization` header.
pub const MISSING_HEADER: Refusal = Refusal::new("missing-header", "no Authorization header");
/// A scheme other than Basic.
pub const WRONG_SCHEME: Refusal =
    Refusal::new("wrong-scheme", "the Authorization header is not HTTP Basic");
/// Basic, but not the base64 of `user:password`.
pub const MALFORMED: Refusal = Refusal::new(
    "malformed",
    "the Basic credentials are not the base64 of user:password",
);
/// A user name other than the configured one.
pub const UNKNOWN_USER: Refusal =
    Refusal::new("unknown-user", "the user name is not the configured one");
/// The configured user name with another password.
pub const WRONG_PASSWORD: Refusal = Refusal::new(
    "wrong-password",
    "the password is wrong for the configured user",
);

/// The expected user name and password, kept as SHA-256 digests so that comparison is constant
/// time whatever the lengths, and so that `Debug` has nothing to show.
#[derive(Clone)]
pub struct BasicAuth {
    user: [u8; 32],
    password: [u8; 32],
    /// The canonical header value `Basic <standard base64 of user:password>`, which is what
    /// clients send: one keyed hash then decides, without decoding (see [`Secret`]).
    canonical: Secret,
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
            canonical: Secret::new(header.as_bytes()),
        }
    }

    /// Whether an `Authorization` header value carries these credentials.
    #[must_use]
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        self.check(header).is_ok()
    }

    /// Checks an `Authorization` header value (`None` when the header is missing).
    ///
    /// The scheme is case-insensitive; the credentials split at the first `:`, so passwords
    /// may contain colons. Both parts are always compared, in constant time; which of them
    /// was wrong is decided only after both comparisons.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] naming why, with the scheme seen or the user name given.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), Refusal> {
        let Some(header) = header else {
            return Err(MISSING_HEADER);
        };
        if self.canonical.matches(header) {
            return Ok(());
        }
        let Some(encoded) = basic_credentials(header) else {
            // `Basic` with nothing after it is the right scheme without credentials.
            if header.trim_ascii().eq_ignore_ascii_case(b"basic") {
                return Err(MALFORMED);
            }
            return Err(WRONG_SCHEME.with_scheme(scheme_seen(header)));
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii())
        else {
            return Err(MALFORMED);
        };
        let decoded = zeroize::Zeroizing::new(decoded);
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return Err(MALFORMED);
        };
        let (user, password) = decoded.split_at(colon);
        let password = password.get(1..).unwrap_or_default();
        let user_ok = bool::from(digest(user).ct_eq(&self.user));
        let password_ok = bool::from(digest(password).ct_eq(&self.password));
        match (user_ok, password_ok) {
            (true, true) => Ok(()),
            (false, _) => Err(UNKNOWN_USER.with_user(user)),
            (true, false) => Err(WRONG_PASSWORD.with_user(user)),
        }
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

    #[test]
    fn each_refusal_says_why_and_never_shows_the_password() {
        use crate::server::labels::RefusalReason as _;
        let auth = BasicAuth::new("b2c", "s3cret-password");
        let reason = |header: Option<&[u8]>| auth.check(header).unwrap_err();
        assert_eq!(reason(None).reason(), "missing-header");
        let bearer = reason(Some(b"Bearer abc.def"));
        assert_eq!(
            (bearer.reason(), bearer.scheme()),
            ("wrong-scheme", Some("bearer"))
        );
        assert_eq!(reason(Some(b"s3cret")).scheme(), Some("none"));
        assert_eq!(reason(Some(b"Basic !!!")).reason(), "malformed");
        assert_eq!(reason(Some(b" basic ")).reason(), "malformed");
        assert_eq!(reason(Some(&header("no-colon"))).reason(), "malformed");
        let user = reason(Some(&header("admin:s3cret-password")));
        assert_eq!(
            (user.reason(), user.user()),
            ("unknown-user", Some("admin"))
        );
        let password = reason(Some(&header("b2c:guess")));
        assert_eq!(
            (password.reason(), password.user()),
            ("wrong-password", Some("b2c"))
        );
        assert!(!format!("{password:?}{user:?}").contains("s3cret"));
        assert!(auth.check(Some(&header("b2c:s3cret-password"))).is_ok());
    }
}
