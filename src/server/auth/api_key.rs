//! An API key in a named request header, as B2C custom policies send with `ApiKeyHeader`
//! authentication (for example `x-functions-key`).

use std::fmt;

use warp::http::HeaderName;

use super::secret::Secret;
use crate::error::Error;
use crate::server::labels::Refusal;

/// No header of the key's name.
pub const MISSING_HEADER: Refusal = Refusal::new("missing-header", "no API key header");
/// The header is there, with another value.
pub const WRONG_KEY: Refusal = Refusal::new("wrong-key", "the API key is wrong");

/// Keys shorter than this are refused: B2C stores whatever is set, and a short key can be
/// guessed.
pub const MIN_API_KEY_CHARS: usize = 16;

/// The expected key, compared in time that tells nothing of it (a keyed hash first); `Debug`
/// shows only the header's name.
#[derive(Clone)]
pub struct ApiKey {
    header: &'static str,
    key: Secret,
}

impl ApiKey {
    /// Expects `key` in the header `header` (case-insensitive, as all header names).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the header name is not a valid HTTP header name or the
    /// key is shorter than [`MIN_API_KEY_CHARS`].
    pub fn new(header: &str, key: &str) -> Result<Self, Error> {
        let name = HeaderName::from_bytes(header.trim().as_bytes()).map_err(|_| Error::Config {
            reason: format!("{header:?} is not an HTTP header name"),
        })?;
        if key.chars().count() < MIN_API_KEY_CHARS {
            return Err(Error::Config {
                reason: format!(
                    "the API key is {} characters; use at least {MIN_API_KEY_CHARS} random ones",
                    key.chars().count()
                ),
            });
        }
        // One name a server: leaked once so that the route's header filter can borrow it for
        // the life of the process.
        let header: &'static str = Box::leak(name.as_str().to_owned().into_boxed_str());
        Ok(Self {
            header,
            key: Secret::new(key.as_bytes()),
        })
    }

    /// The header's name, lower case.
    #[must_use]
    pub fn header(&self) -> &'static str {
        self.header
    }

    /// Whether a header value is the key, compared in constant time.
    #[must_use]
    pub fn accepts(&self, value: Option<&[u8]>) -> bool {
        self.check(value).is_ok()
    }

    /// Checks the header's value (`None` when the header is missing), in constant time.
    ///
    /// # Errors
    ///
    /// [`MISSING_HEADER`] or [`WRONG_KEY`]; neither carries anything of the value sent.
    pub fn check(&self, value: Option<&[u8]>) -> Result<(), Refusal> {
        let value = value.ok_or(MISSING_HEADER)?;
        if self.key.matches(value.trim_ascii()) {
            Ok(())
        } else {
            Err(WRONG_KEY)
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}: ..)", self.header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_in_its_header_only() {
        let key = ApiKey::new("X-Functions-Key", "0123456789abcdef-secret").unwrap();
        assert_eq!(key.header(), "x-functions-key");
        assert!(key.accepts(Some(b"0123456789abcdef-secret")));
        assert!(key.accepts(Some(b" 0123456789abcdef-secret ")));
        assert!(!key.accepts(Some(b"0123456789abcdef-secreT")));
        assert!(!key.accepts(Some(b"")));
        assert!(!key.accepts(None));
        assert_eq!(key.check(None), Err(MISSING_HEADER));
        assert_eq!(key.check(Some(b"guess")), Err(WRONG_KEY));
        assert!(!format!("{key:?}").contains("secret"));
        assert!(ApiKey::new("x-functions-key", "short").is_err());
        assert!(ApiKey::new("bad header", "0123456789abcdef-secret").is_err());
    }
}
