//! invitegate: invitation codes that need no database.
//!
//! An admin mints a short code for one email address, or for a whole email domain, valid until
//! an instant. The code carries its version, audience kind, key id and expiry, sealed by an
//! HMAC-SHA256 tag over those fields and the audience. At sign-up the identity provider sends
//! the user's email and the code they typed; [`verify()`] recomputes the tag and answers with an
//! [`Outcome`]. The key ring is the only secret state.
//!
//! ```
//! use invitegate::{Audience, Expiry, KeyRing, Outcome, VerifyOptions, mint, verify};
//! use time::macros::datetime;
//!
//! let ring = KeyRing::parse("7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let audience = Audience::email("alice@contoso.com")?;
//! let code = mint(&ring, &audience, Expiry::from_datetime(datetime!(2030-01-01 0:00 UTC))?);
//! assert_eq!(code.to_string(), "243Q1-PYRG0-DVPFF-Z9H9F-NDX66");
//!
//! let now = datetime!(2026-11-23 12:00 UTC);
//! let outcome = verify(&ring, "243q1 pyrg0 dvpff z9h9f ndx66", "Alice@Contoso.com", now,
//!     &VerifyOptions::default());
//! assert!(matches!(outcome, Outcome::Valid(_)));
//! # Ok::<(), invitegate::Error>(())
//! ```
//!
//! The normative format is in `docs/CODE-FORMAT.md`.

#![forbid(unsafe_code)]

pub mod audience;
pub mod batch;
pub mod code;
pub mod connector;
pub mod decision;
pub mod error;
pub mod expiry;
pub mod fsutil;
mod https;
pub mod keys;
pub mod messages;
pub mod policy;
pub mod reason;
pub mod send;
pub mod server;
pub mod source;
pub mod verify;

pub use audience::{Audience, EmailAddress, normalize_domain};
pub use code::{Code, Inspection, Kind};
pub use decision::{Decision, Verdict, Verifier, decide};
pub use error::{Error, KeyProblem};
pub use expiry::{Expiry, UnixTime};
pub use keys::{KeyRing, MAC_DOMAIN};
pub use reason::Reason;
pub use verify::{
    DEFAULT_LEEWAY, DenyList, Grant, Outcome, VerifyOptions, mint, verify, verify_code,
};
