//! JOSE: strict compact-JWS parsing, JWK keys, and the cache of remote JWK sets.
//!
//! The three files import downwards only: `jwks_cache` → `jwk`, `jws` → `jwk`.

pub mod claims;
pub mod jwk;
pub mod jwks_cache;
pub mod jws;
pub mod revoked;

pub use jwk::{JwksError, KeySet, VerificationKey};
pub use jwks_cache::JwksCache;
pub use jws::{Jws, JwsError};
