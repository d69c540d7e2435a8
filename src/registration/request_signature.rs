//! Step 3, the request signature: `alg` on the allow-list (checked when parsing), the key named
//! by `kid` in the JWKS at the SSA's `software_jwks_endpoint`, never a key from the header.

use super::error_code::ErrorCode;
use super::ssa::Ssa;
use crate::jose::{JwksCache, JwksError};
use crate::jose::{Jws, JwsError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `kid`, or a signature that does not verify.
    #[error("the request {0}")]
    Jws(JwsError),
    /// The TPP's JWKS could not be had, or has no usable key with that `kid`.
    #[error("the request signature cannot be checked: {0}")]
    Keys(JwksError),
}

impl SignatureError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidClientMetadata
    }
}

/// Verifies the request with the TPP's key from `software_jwks_endpoint`.
pub async fn verify(request: &Jws<'_>, ssa: &Ssa, jwks: &JwksCache) -> Result<(), SignatureError> {
    let kid = request.require_kid().map_err(SignatureError::Jws)?;
    let key = jwks
        .key(&ssa.software_jwks_endpoint, kid, request.alg, true)
        .await
        .map_err(SignatureError::Keys)?;
    request.verify(&key, kid).map_err(SignatureError::Jws)
}
