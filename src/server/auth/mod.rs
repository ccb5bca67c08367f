//! How each endpoint authenticates its caller: HTTP Basic (B2C user flows and custom policies)
//! and Entra External ID bearer tokens (JWT, keys from the tenant's JWKS).

pub mod basic;
pub mod bearer;
pub mod dev_token;
pub mod jwks;

pub use basic::BasicAuth;
pub use bearer::{BearerAuth, BearerConfig, ENTRA_CALLER_APP_ID, TokenRejection};
pub use dev_token::DevSigner;
pub use jwks::{JwksSource, KeySetError};
