//! Errors as the outside world sees them: `{"error", "error_description"}` JSON.
//!
//! The public message is kept apart from the internal detail, which goes to the log only, so
//! that no SQL message, path or stack trace ever reaches a TPP.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::oauth::TokenError;
use crate::oauth::registration_access::AccessError;
use crate::registration::RegistrationError;
use crate::store::StoreError;

/// Why a body could not be had. Each endpoint answers with its own error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// More than the limit (413), refused before anything is parsed.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The connection failed while the body was read (400).
    #[error("the request body could not be read")]
    Unreadable,
    /// The body was not complete in time (408 `invalid_request`, whatever the endpoint; the
    /// connection is closed).
    #[error("the request body was not complete within {} ms", .0.as_millis())]
    TimedOut(std::time::Duration),
    /// The body is in, but the pipeline has no free slot (503 `temporarily_unavailable`).
    #[error("the service is temporarily unavailable; retry shortly")]
    Busy,
}

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// The OAuth / RFC 7591 error code.
    pub error: &'static str,
    /// What the client should fix. Never internals.
    pub description: String,
    /// `WWW-Authenticate` value, for 401s.
    pub www_authenticate: Option<&'static str>,
    /// `Retry-After` seconds, for 503s and 429s.
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            www_authenticate: None,
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; see /.well-known/openid-configuration",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not support that HTTP method",
        )
    }

    /// 503 with `Retry-After`: the database is unreachable or busy.
    pub fn unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the service is temporarily unavailable; retry shortly",
            )
        }
    }

    /// 429: a rate limit of the request's certificate; `Retry-After` says when to come back.
    pub fn too_many_requests(wait: std::time::Duration) -> Self {
        let secs = u32::try_from(wait.as_secs_f64().ceil() as u64)
            .unwrap_or(u32::MAX)
            .max(1);
        Self {
            retry_after: Some(secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("too many requests with this client certificate; retry in {secs} seconds"),
            )
        }
    }

    /// A server-side failure that is not the client's fault; the detail is logged, not sent.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the server could not process the request",
        )
    }

    /// Maps a storage failure: transient ones become 503, anything else a logged 500.
    pub fn from_store(e: StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(detail = %e, "database unavailable");
            Self::unavailable()
        } else {
            Self::internal(&e)
        }
    }
}

/// The registration endpoints' answers: 400 with the RFC 7591 code the step chose.
impl From<&RegistrationError> for ApiError {
    fn from(e: &RegistrationError) -> Self {
        match e {
            RegistrationError::Unavailable => Self::unavailable(),
            RegistrationError::Internal(detail) => Self::internal(detail),
            RegistrationError::Certificate(refusal) => Self::certificate_refused(*refusal),
            other => Self::new(
                StatusCode::BAD_REQUEST,
                other.error_code(),
                other.to_string(),
            ),
        }
    }
}

impl ApiError {
    /// 401 `invalid_client`: OCSP refused the client certificate.
    pub fn certificate_refused(refusal: crate::pki::ocsp::OcspRefusal) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            refusal.description(),
        )
    }

    /// A registration body that could not be had: 413 (or 400) `invalid_client_metadata`.
    pub fn registration_body(e: BodyError) -> Self {
        Self::body(e, "invalid_client_metadata")
    }

    /// An OAuth endpoint's body (`/token`, `/introspect`): 413 (or 400) `invalid_request`.
    pub fn oauth_body(e: BodyError) -> Self {
        Self::body(e, "invalid_request")
    }

    /// A body that could not be had, `code` being the endpoint's for a bad one. A slow body
    /// and a full pipeline answer the same everywhere.
    fn body(e: BodyError, code: &'static str) -> Self {
        match e {
            BodyError::TooLarge(_) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, e.to_string()),
            BodyError::Unreadable => Self::new(StatusCode::BAD_REQUEST, code, e.to_string()),
            BodyError::TimedOut(_) => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                e.to_string(),
            ),
            BodyError::Busy => Self::unavailable(),
        }
    }

    /// A token error; `used_basic` adds the `WWW-Authenticate: Basic` challenge to a 401.
    pub fn token(e: &TokenError, used_basic: bool) -> Self {
        let status = match e {
            TokenError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            TokenError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            TokenError::Unavailable => return Self::unavailable(),
            TokenError::Internal(detail) => return Self::internal(detail),
            _ => StatusCode::BAD_REQUEST,
        };
        let mut api = Self::new(status, e.code(), e.to_string());
        if used_basic && status == StatusCode::UNAUTHORIZED {
            api.www_authenticate = Some("Basic realm=\"dcr-server\"");
        }
        api
    }

    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self {
            www_authenticate: Some("Bearer error=\"invalid_token\""),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
        }
    }
}

/// A refused management call: 401 `invalid_token`, or 503/500 from the store.
impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Store(e) => Self::from_store(e),
            AccessError::RevokedKey(e) => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_client", e.to_string())
            }
            other => Self::invalid_token(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&Body {
            error: self.error,
            error_description: &self.description,
        })
        .unwrap_or_default();
        let mut response = super::response::client_json_text(self.status, body);
        let headers = response.headers_mut();
        if let Some(value) = self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
