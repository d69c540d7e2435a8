//! What a failed client authentication is: the internal reason ([`ClientAuthError`]), the
//! failure that also covers the server's side ([`AuthenticationFailure`]) and the one public
//! description ([`FAILED`]). A file of its own, so that the methods beside it import it
//! without importing their parent.

use super::private_key_jwt::AssertionError;
use crate::domain::AuthMethod;
use crate::jose::revoked::RevokedKeyError;
use crate::store::StoreError;

/// The one public description of a failed client authentication.
pub const FAILED: &str = "client authentication failed";

/// Why a client did not authenticate. Internal: the public answer is always [`FAILED`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthError {
    #[error("no client authentication was presented")]
    NoCredentials,
    #[error("malformed Basic credentials")]
    MalformedBasic,
    #[error("{0} is not enabled")]
    MethodNotEnabled(AuthMethod),
    #[error("unknown client")]
    UnknownClient,
    #[error("the client is disabled")]
    Disabled,
    #[error("the client registered {registered}, not {presented}")]
    WrongMethod {
        registered: String,
        presented: AuthMethod,
    },
    #[error("wrong client secret")]
    WrongSecret,
    #[error("tls_client_auth needs a client certificate")]
    NoCertificate,
    #[error("the certificate's subject is not the registered tls_client_auth_subject_dn")]
    SubjectMismatch,
    #[error("client assertion: {0}")]
    Assertion(#[from] AssertionError),
    #[error("the client assertion has been used before (replayed jti)")]
    Replayed,
    /// The directory's revoked keys list the assertion's key or the transport certificate,
    /// or cannot be read in `hard` mode.
    #[error(transparent)]
    RevokedKey(#[from] RevokedKeyError),
}

impl ClientAuthError {
    /// A fixed label for metrics: one per variant, never a client-supplied value.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoCredentials => "no_credentials",
            Self::MalformedBasic => "malformed_basic",
            Self::MethodNotEnabled(_) => "method_not_enabled",
            Self::UnknownClient => "unknown_client",
            Self::Disabled => "client_disabled",
            Self::WrongMethod { .. } => "wrong_method",
            Self::WrongSecret => "wrong_secret",
            Self::NoCertificate => "no_certificate",
            Self::SubjectMismatch => "subject_mismatch",
            Self::Assertion(_) => "invalid_assertion",
            Self::Replayed => "replayed_assertion",
            Self::RevokedKey(RevokedKeyError::SigningKey(_)) => "revoked_signing_key",
            Self::RevokedKey(RevokedKeyError::TransportKey(_)) => "revoked_transport_key",
            Self::RevokedKey(_) => "revoked_keys_unavailable",
        }
    }
}

/// A failure of [`authenticate`]: the client's fault, or the server's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthenticationFailure {
    #[error(transparent)]
    Client(#[from] ClientAuthError),
    /// A request that is malformed rather than unauthenticated (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored row that cannot be used (a bug or a hand-edited database).
    #[error("{0}")]
    Internal(String),
}

impl From<AssertionError> for AuthenticationFailure {
    fn from(e: AssertionError) -> Self {
        Self::Client(ClientAuthError::Assertion(e))
    }
}
