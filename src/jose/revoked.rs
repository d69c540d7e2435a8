//! The directory's revoked keys of a software (the SSA's `software_jwks_revoked_endpoint`),
//! read through the JWKS cache under the TPP JWKS rules, for registration, `/token` and the
//! management endpoints alike: a signing key is listed by `kid`, a transport certificate by
//! `x5t#S256` (or the thumbprint of a key's `x5c[0]`).

use super::{JwksCache, JwksError};
use crate::text::printable;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevokedKeyError {
    /// The signing key is listed.
    #[error("the request is signed with key `{0}`, which the directory lists as revoked")]
    SigningKey(String),
    /// The transport certificate is listed.
    #[error(
        "the transport certificate (x5t#S256 {0}) is listed as revoked at the software statement's software_jwks_revoked_endpoint"
    )]
    TransportKey(String),
    /// The location is not one the server may fetch.
    #[error("software_jwks_revoked_endpoint cannot be used: {0}")]
    Location(JwksError),
    /// The set cannot be read and `server.tls.ocsp.mode` is `hard`.
    #[error("the revoked keys at software_jwks_revoked_endpoint cannot be read: {0}")]
    Unavailable(JwksError),
}

/// Checks `kid` (the signing key, if any) and `x5t_s256` (the transport certificate, if any)
/// against the revoked keys at `location`. A set that cannot be read refuses when `hard`, and
/// otherwise lets the request through, counted and logged.
pub async fn check(
    jwks: &JwksCache,
    location: &str,
    kid: Option<&str>,
    x5t_s256: Option<&str>,
    hard: bool,
) -> Result<(), RevokedKeyError> {
    let revoked = match jwks.any_set(location).await {
        Ok(set) => set,
        Err(e @ (JwksError::NotHttps(_) | JwksError::HostNotAllowed(_))) => {
            crate::metrics::revoked_keys_check("refused_location");
            return Err(RevokedKeyError::Location(e));
        }
        Err(e) if hard => {
            crate::metrics::revoked_keys_check("unavailable_refused");
            tracing::warn!(error = %e, "revoked keys unavailable; request refused (ocsp.mode = hard)");
            return Err(RevokedKeyError::Unavailable(e));
        }
        Err(e) => {
            crate::metrics::revoked_keys_check("unavailable");
            tracing::warn!(error = %e, "revoked keys unavailable; request allowed");
            return Ok(());
        }
    };
    if let Some(kid) = kid
        && revoked.names_kid(kid)
    {
        crate::metrics::revoked_keys_check("signing_key_revoked");
        return Err(RevokedKeyError::SigningKey(printable(kid, 80)));
    }
    if let Some(thumbprint) = x5t_s256
        && revoked.names_certificate(thumbprint)
    {
        crate::metrics::revoked_keys_check("transport_key_revoked");
        return Err(RevokedKeyError::TransportKey(thumbprint.to_string()));
    }
    crate::metrics::revoked_keys_check("clean");
    Ok(())
}
