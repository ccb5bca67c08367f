//! How each endpoint authenticates its caller: HTTP Basic (B2C user flows and custom policies).

pub mod basic;

pub use basic::BasicAuth;
