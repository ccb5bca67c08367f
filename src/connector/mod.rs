//! The identity-provider contracts the server speaks, one module each: request fields, response
//! shapes and status codes, with no HTTP or server code in them.

pub mod b2c;
