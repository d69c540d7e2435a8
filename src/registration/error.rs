//! Why a registration was refused: one variant per step's error, and the server-side ones.

use super::error_code::ErrorCode;
use super::{
    envelope, metadata, redirect_uris, request_claims, request_signature, revoked_keys, scopes,
    ssa, subject_dn, transport_binding, uri_policy,
};
use crate::domain::OAuthErrorCode;

/// Why a registration was refused. `Display` is the public `error_description`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    #[error(transparent)]
    Envelope(#[from] envelope::EnvelopeError),
    #[error(transparent)]
    Ssa(#[from] ssa::SsaError),
    #[error(transparent)]
    Signature(#[from] request_signature::SignatureError),
    #[error(transparent)]
    Claims(#[from] request_claims::ClaimsError),
    #[error(transparent)]
    Metadata(#[from] metadata::MetadataError),
    #[error(transparent)]
    RedirectUri(#[from] redirect_uris::RedirectUriError),
    #[error(transparent)]
    UriPolicy(#[from] uri_policy::UriPolicyError),
    #[error(transparent)]
    Scope(#[from] scopes::ScopeError),
    #[error(transparent)]
    Binding(#[from] transport_binding::BindingError),
    #[error(transparent)]
    Revoked(#[from] revoked_keys::RevokedError),
    #[error(transparent)]
    SubjectDn(#[from] subject_dn::SubjectDnError),
    /// OCSP refused the transport certificate (401 `invalid_client`, not an RFC 7591 code).
    #[error(transparent)]
    Certificate(#[from] crate::pki::ocsp::OcspRefusal),
    /// PUT: the body's `client_id` is not the one in the path.
    #[error("`client_id` in the request must equal the ClientId in the path")]
    ClientIdMismatch,
    /// PUT: the new software statement names another software or organisation.
    #[error("{0} cannot change; register a new client instead")]
    Immutable(&'static str),
    /// PUT: the client was deleted while the request was processed.
    #[error("the client does not exist")]
    Gone,
    /// A client for this software_id exists while one client per software is enforced.
    #[error("software_id {0} is registered already; update it with PUT, or delete it first")]
    DuplicateSoftware(String),
    /// `rfc7591` mode: the bank's authorization server refused the registration (400 with its
    /// code, one of the four registration codes; the description names its reason).
    #[error("{description}")]
    AsRefused {
        code: ErrorCode,
        description: String,
    },
    /// `rfc7591` mode: the bank's authorization server could not be used (503 with
    /// `Retry-After`); the reason is logged, not sent.
    #[error("the service is temporarily unavailable; retry shortly")]
    AsUnavailable(String),
    /// The database is unavailable (503).
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable,
    /// A bug or broken database (500); the detail is logged, not shown.
    #[error("the server could not process the request")]
    Internal(String),
}

impl RegistrationError {
    /// The RFC 7591 error code, for 400s.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Self::Envelope(e) => e.code(),
            Self::Ssa(e) => e.code(),
            Self::Signature(e) => e.code(),
            Self::Claims(e) => e.code(),
            Self::Metadata(e) => e.code(),
            Self::RedirectUri(e) => e.code(),
            Self::UriPolicy(e) => e.code(),
            Self::Scope(e) => e.code(),
            Self::Binding(e) => e.code(),
            Self::Revoked(e) => e.code(),
            Self::SubjectDn(e) => e.code(),
            Self::DuplicateSoftware(_) | Self::ClientIdMismatch | Self::Immutable(_) => {
                ErrorCode::InvalidClientMetadata
            }
            Self::AsRefused { code, .. } => *code,
            Self::Gone
            | Self::Unavailable
            | Self::AsUnavailable(_)
            | Self::Internal(_)
            | Self::Certificate(_) => {
                return None;
            }
        })
    }

    /// The public error code: the step's RFC 7591 code, or the server-side one.
    pub fn error_code(&self) -> OAuthErrorCode {
        match self {
            Self::Unavailable | Self::AsUnavailable(_) => OAuthErrorCode::TemporarilyUnavailable,
            Self::Internal(_) => OAuthErrorCode::ServerError,
            Self::Certificate(_) => OAuthErrorCode::InvalidClient,
            other => other
                .code()
                .map_or(OAuthErrorCode::InvalidClientMetadata, ErrorCode::oauth),
        }
    }
}

impl From<crate::authorization_server::AsError> for RegistrationError {
    fn from(e: crate::authorization_server::AsError) -> Self {
        use crate::authorization_server::AsError;
        match e {
            AsError::Refused { error, description } => Self::AsRefused {
                code: ErrorCode::from_oauth(error).unwrap_or(ErrorCode::InvalidClientMetadata),
                description,
            },
            AsError::Unavailable(reason) => Self::AsUnavailable(reason),
        }
    }
}
