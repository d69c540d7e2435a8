//! Step 9b, the directory's revoked keys: when the SSA names a `software_jwks_revoked_endpoint`,
//! its set is read under the TPP JWKS rules (https, `allowed_hosts`, size cap, timeout, TTL,
//! stale-if-error), and neither the key that signed the request (by `kid`) nor the transport
//! certificate (by `x5t#S256`, or the thumbprint of a key's `x5c[0]`) may be in it.
//!
//! A location that breaks the rules is refused like a bad `software_jwks_endpoint`. A set that
//! cannot be read (and has no usable stale copy) lets the request through, counted in
//! `dcr_revoked_keys_checks_total{outcome="unavailable"}` and logged: the directory's outage
//! must not stop registrations until the operator chooses that (a hard mode comes with OCSP).

use super::ErrorCode;
use super::ssa::Ssa;
use crate::jose::{JwksCache, JwksError};
use crate::pki::ClientCertificate;
use crate::text::printable;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevokedError {
    /// The request is signed with a revoked key.
    #[error("the request is signed with key `{0}`, which the directory lists as revoked")]
    SigningKey(String),
    /// The transport certificate is a revoked key.
    #[error(
        "the transport certificate (x5t#S256 {0}) is listed as revoked at the software statement's software_jwks_revoked_endpoint"
    )]
    TransportKey(String),
    /// The revoked-keys location is not one the server may fetch.
    #[error("software_jwks_revoked_endpoint cannot be used: {0}")]
    Location(JwksError),
}

impl RevokedError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TransportKey(_) => ErrorCode::UnapprovedSoftwareStatement,
            Self::SigningKey(_) | Self::Location(_) => ErrorCode::InvalidClientMetadata,
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
) -> Result<(), RevokedError> {
    let Some(location) = &ssa.software_jwks_revoked_endpoint else {
        return Ok(());
    };
    let revoked = match jwks.any_set(location).await {
        Ok(set) => set,
        Err(e @ (JwksError::NotHttps(_) | JwksError::HostNotAllowed(_))) => {
            crate::metrics::revoked_keys_check("refused_location");
            return Err(RevokedError::Location(e));
        }
        Err(e) => {
            crate::metrics::revoked_keys_check("unavailable");
            tracing::warn!(software_id = %ssa.software_id, error = %e, "revoked keys unavailable; request allowed");
            return Ok(());
        }
    };
    if revoked.names_kid(kid) {
        crate::metrics::revoked_keys_check("signing_key_revoked");
        return Err(RevokedError::SigningKey(printable(kid, 80)));
    }
    let thumbprint = cert.x5t_s256();
    if revoked.names_certificate(thumbprint) {
        crate::metrics::revoked_keys_check("transport_key_revoked");
        return Err(RevokedError::TransportKey(thumbprint.to_string()));
    }
    crate::metrics::revoked_keys_check("clean");
    Ok(())
}
