//! Step 1, the envelope: content type, and a compact JWS in the body.

use crate::domain::SigningAlg;
use crate::jose::{Jws, JwsError};
use crate::text::printable;

use super::error_code::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The `Content-Type` is not `application/jwt` or `application/jose`.
    #[error("Content-Type must be application/jwt or application/jose, not `{0}`")]
    ContentType(String),
    /// The body is not UTF-8 text.
    #[error("the request body must be a compact JWS (ASCII text)")]
    NotText,
    /// The body is not a well-formed JWS with an accepted algorithm.
    #[error("the request {0}")]
    Jws(JwsError),
}

impl EnvelopeError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidClientMetadata
    }
}

/// Accepts `application/jwt` and `application/jose`, with parameters such as `charset`.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), EnvelopeError> {
    let value = content_type.unwrap_or_default();
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/jwt")
        || essence.eq_ignore_ascii_case("application/jose")
    {
        Ok(())
    } else if value.is_empty() {
        Err(EnvelopeError::ContentType("(none)".into()))
    } else {
        Err(EnvelopeError::ContentType(printable(value, 80)))
    }
}

/// The body as a compact JWS, header checked against the allowed algorithms.
pub fn parse<'a>(body: &'a [u8], algs: &[SigningAlg]) -> Result<Jws<'a>, EnvelopeError> {
    let text = std::str::from_utf8(body).map_err(|_| EnvelopeError::NotText)?;
    Jws::parse(text.trim(), algs).map_err(EnvelopeError::Jws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for ok in [
            "application/jwt",
            "application/jose",
            "application/jwt; charset=ISO-8859-1",
            "Application/JOSE",
        ] {
            assert!(check_content_type(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            None,
            Some("application/json"),
            Some("text/plain"),
            Some("application/jwt+json"),
        ] {
            assert!(check_content_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn non_utf8_body_is_refused() {
        assert_eq!(parse(b"\xff\xfe", &[]).unwrap_err(), EnvelopeError::NotText);
    }
}
