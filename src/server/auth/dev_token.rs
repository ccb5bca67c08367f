//! A throwaway RS256 signer that stands in for Entra: `serve --dev` and tests use it to make
//! tokens the bearer check accepts, and the key set that verifies them.
//!
//! The key lives in memory only and is new each time; nothing here is for production.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use sha2::Sha256;

use super::bearer::ENTRA_CALLER_APP_ID;

/// Size of the generated key, as Entra's.
pub const DEV_KEY_BITS: usize = 2048;

/// Why a development key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot generate a development signing key: {reason}")]
pub struct DevSignerError {
    reason: String,
}

/// A fresh RSA-2048 key with a random `kid`. `Debug` shows the `kid` only.
pub struct DevSigner {
    kid: String,
    key: SigningKey<Sha256>,
    /// Modulus and exponent, big-endian.
    n: Vec<u8>,
    e: Vec<u8>,
}

impl DevSigner {
    /// Generates a key from the operating system's random numbers.
    ///
    /// # Errors
    ///
    /// [`DevSignerError`] if the random number generator fails.
    pub fn generate() -> Result<Self, DevSignerError> {
        let fail = |reason: String| DevSignerError { reason };
        let private =
            rsa::PrivateKey::new(&mut OsRandom, DEV_KEY_BITS).map_err(|e| fail(e.to_string()))?;
        let mut kid = [0u8; 16];
        getrandom::fill(&mut kid).map_err(|e| fail(e.to_string()))?;
        let public = private.to_public_key();
        Ok(Self {
            kid: crate::code::hex(&kid),
            n: public.n_bytes().into_vec(),
            e: public.e_bytes().into_vec(),
            key: SigningKey::new(private),
        })
    }

    /// The key id put in the key set and in every token header.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as one JWK: `{kty, use: "sig", alg: "RS256", kid, n, e}`.
    #[must_use]
    pub fn jwk(&self) -> serde_json::Value {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64(&self.n),
            "e": b64(&self.e),
        })
    }

    /// The key set that verifies this signer's tokens: `{"keys": [jwk]}`.
    #[must_use]
    pub fn jwks_json(&self) -> String {
        serde_json::json!({ "keys": [self.jwk()] }).to_string()
    }

    /// The public key's modulus, big-endian.
    #[must_use]
    pub fn modulus(&self) -> &[u8] {
        &self.n
    }

    /// The public key's exponent, big-endian.
    #[must_use]
    pub fn exponent(&self) -> &[u8] {
        &self.e
    }

    /// A token valid from now for `valid_for`, as Entra would send it: RS256 with this `kid`;
    /// `iss`, `aud`, `azp` = [`ENTRA_CALLER_APP_ID`], `iat`, `nbf`, `exp` and `ver` `2.0`.
    #[must_use]
    pub fn token(&self, issuer: &str, audience: &str, valid_for: Duration) -> String {
        self.token_at(issuer, audience, SystemTime::now(), valid_for)
    }

    /// Like [`DevSigner::token`], issued at `now`.
    #[must_use]
    pub fn token_at(
        &self,
        issuer: &str,
        audience: &str,
        now: SystemTime,
        valid_for: Duration,
    ) -> String {
        self.sign(&self.header(), &claims(issuer, audience, now, valid_for))
    }

    /// The header of this signer's tokens: `{"alg": "RS256", "typ": "JWT", "kid": kid}`.
    #[must_use]
    pub fn header(&self) -> serde_json::Value {
        serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid })
    }

    /// Signs any header and claims with RS256, whatever the header says: tests use it to make
    /// tokens that lie about their key or algorithm.
    #[must_use]
    pub fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let b64 = |text: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let message = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = self.key.sign(message.as_bytes());
        format!(
            "{message}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.to_vec())
        )
    }
}

/// The claims of an Entra v2 token for a custom authentication extension.
#[must_use]
pub fn claims(
    issuer: &str,
    audience: &str,
    now: SystemTime,
    valid_for: Duration,
) -> serde_json::Value {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    serde_json::json!({
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(valid_for.as_secs()),
        "azp": ENTRA_CALLER_APP_ID,
        "azpacr": "1",
        "oid": "00000000-0000-0000-0000-000000000000",
        "sub": "00000000-0000-0000-0000-000000000000",
        "tid": "00000000-0000-0000-0000-000000000000",
        "ver": "2.0",
    })
}

impl fmt::Debug for DevSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The operating system's random numbers, as the RNG that `rsa` key generation takes.
struct OsRandom;

/// The operating system's random number generator failed.
#[derive(Debug)]
struct RandomFailed;

impl fmt::Display for RandomFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operating system's random number generator failed")
    }
}

impl std::error::Error for RandomFailed {}

impl rsa::rand_core::TryRng for OsRandom {
    type Error = RandomFailed;

    fn try_next_u32(&mut self) -> Result<u32, RandomFailed> {
        getrandom::u32().map_err(|_| RandomFailed)
    }

    fn try_next_u64(&mut self) -> Result<u64, RandomFailed> {
        getrandom::u64().map_err(|_| RandomFailed)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), RandomFailed> {
        getrandom::fill(dst).map_err(|_| RandomFailed)
    }
}

impl rsa::rand_core::TryCryptoRng for OsRandom {}
