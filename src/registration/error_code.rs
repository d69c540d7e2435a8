//! The RFC 7591 error codes that registration answers with: each step's error names one. A
//! file of its own, so that the steps import it without importing their parent.

use crate::domain::OAuthErrorCode;

/// The four RFC 7591 registration error codes: the only ones a step may choose (their text
/// is [`OAuthErrorCode`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidSoftwareStatement,
    UnapprovedSoftwareStatement,
}

impl ErrorCode {
    /// The OAuth error code it is.
    pub const fn oauth(self) -> OAuthErrorCode {
        match self {
            Self::InvalidRedirectUri => OAuthErrorCode::InvalidRedirectUri,
            Self::InvalidClientMetadata => OAuthErrorCode::InvalidClientMetadata,
            Self::InvalidSoftwareStatement => OAuthErrorCode::InvalidSoftwareStatement,
            Self::UnapprovedSoftwareStatement => OAuthErrorCode::UnapprovedSoftwareStatement,
        }
    }

    /// The registration code `code` is, if it is one.
    pub const fn from_oauth(code: OAuthErrorCode) -> Option<Self> {
        Some(match code {
            OAuthErrorCode::InvalidRedirectUri => Self::InvalidRedirectUri,
            OAuthErrorCode::InvalidClientMetadata => Self::InvalidClientMetadata,
            OAuthErrorCode::InvalidSoftwareStatement => Self::InvalidSoftwareStatement,
            OAuthErrorCode::UnapprovedSoftwareStatement => Self::UnapprovedSoftwareStatement,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        self.oauth().as_str()
    }
}

impl From<ErrorCode> for OAuthErrorCode {
    fn from(code: ErrorCode) -> Self {
        code.oauth()
    }
}
