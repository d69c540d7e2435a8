//! Step 9b, the directory's revoked keys: when the SSA names a `software_jwks_revoked_endpoint`,
//! its set is read under the TPP JWKS rules (https, `allowed_hosts`, size cap, timeout, TTL,
//! stale-if-error; `jose::revoked`), and neither the key that signed the request (by `kid`)
//! nor the transport certificate (by `x5t#S256`, or the thumbprint of a key's `x5c[0]`) may be
//! in it.
//!
//! A location that breaks the rules is refused like a bad `software_jwks_endpoint`. A set that
//! cannot be read (and has no usable stale copy) is refused like an unreadable JWKS when
//! `server.tls.ocsp.mode = "hard"`, and otherwise lets the request through, counted in
//! `dcr_revoked_keys_checks_total{outcome="unavailable"}` and logged.

use super::error_code::ErrorCode;
use super::ssa::Ssa;
use crate::jose::JwksCache;
use crate::jose::revoked::{self, RevokedKeyError};
use crate::pki::ClientCertificate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct RevokedError(#[from] pub RevokedKeyError);

impl RevokedError {
    pub fn code(&self) -> ErrorCode {
        match self.0 {
            RevokedKeyError::TransportKey(_) => ErrorCode::UnapprovedSoftwareStatement,
            _ => ErrorCode::InvalidClientMetadata,
        }
    }
}

/// Checks the request's signing key `kid` and the transport certificate against the SSA's
/// revoked keys (nothing to do when it names none).
pub async fn check(
    kid: &str,
    cert: &ClientCertificate,
    ssa: &Ssa,
    jwks: &JwksCache,
    hard: bool,
) -> Result<(), RevokedError> {
    let Some(location) = &ssa.software_jwks_revoked_endpoint else {
        return Ok(());
    };
    revoked::check(jwks, location, Some(kid), Some(cert.x5t_s256()), hard)
        .await
        .map_err(|e| {
            if matches!(e, RevokedKeyError::Unavailable(_)) {
                tracing::warn!(software_id = %ssa.software_id, "revoked keys unavailable; registration refused");
            }
            RevokedError(e)
        })
}
