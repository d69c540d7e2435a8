//! Errors as the outside world sees them: `{"error", "error_description"}` JSON.
//!
//! The public message is kept apart from the internal detail, which goes to the log only, so
//! that no SQL message, path or stack trace ever reaches a TPP.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::OAuthErrorCode;
use crate::oauth::TokenError;
use crate::oauth::form::FormError;
use crate::oauth::registration_access::AccessError;
use crate::pki::ocsp::OcspRefusal;
use crate::registration::RegistrationError;
use crate::store::StoreError;

/// The public description of a missing client certificate, on every endpoint that needs one.
pub const CERTIFICATE_REQUIRED: &str =
    "a TLS client certificate (the TPP's transport certificate) is required";

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

/// This server's own error codes, for the HTTP-level refusals that no OAuth RFC names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpErrorCode {
    /// No such endpoint (404), or no such thing behind an admin path.
    NotFound,
    /// The endpoint does not take that method (405).
    MethodNotAllowed,
    /// A rate limit of the request's certificate (429, with `Retry-After`).
    TooManyRequests,
    /// The action does not fit the server's mode (409).
    Conflict,
}

impl HttpErrorCode {
    /// The code as it goes on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooManyRequests => "too_many_requests",
            Self::Conflict => "conflict",
        }
    }
}

/// The `error` member of an answer: an OAuth code, or one of this server's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorCode {
    /// RFC 6749, RFC 6750 or RFC 7591.
    OAuth(OAuthErrorCode),
    /// This server's, where no RFC has a code.
    Http(HttpErrorCode),
}

impl ApiErrorCode {
    /// The code as it goes on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OAuth(code) => code.as_str(),
            Self::Http(code) => code.as_str(),
        }
    }
}

impl From<OAuthErrorCode> for ApiErrorCode {
    fn from(code: OAuthErrorCode) -> Self {
        Self::OAuth(code)
    }
}

impl From<HttpErrorCode> for ApiErrorCode {
    fn from(code: HttpErrorCode) -> Self {
        Self::Http(code)
    }
}

/// An error response. Handlers get one from the named constructors and the `From`s below
/// (`new` is private), so that which status and code answer which error is decided in this
/// file alone.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// The OAuth / RFC 7591 error code, or this server's own.
    pub error: ApiErrorCode,
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

/// What a TPP is told to wait when the bank's authorization server is unavailable: long
/// enough for a restart or a failover, short enough for an interactive onboarding.
const AS_RETRY_AFTER_SECS: u32 = 5;

impl ApiError {
    fn new(
        status: StatusCode,
        error: impl Into<ApiErrorCode>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error: error.into(),
            description: description.into(),
            www_authenticate: None,
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            HttpErrorCode::NotFound,
            "no such endpoint; see /.well-known/openid-configuration",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            HttpErrorCode::MethodNotAllowed,
            "this endpoint does not support that HTTP method",
        )
    }

    /// 503 with `Retry-After`: the database is unreachable or busy.
    pub fn unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                OAuthErrorCode::TemporarilyUnavailable,
                "the service is temporarily unavailable; retry shortly",
            )
        }
    }

    /// 503 with `Retry-After` and a WARN: the bank's authorization server (`rfc7591` mode)
    /// cannot be used; `reason` is logged, not sent.
    pub fn authorization_server_unavailable(reason: &str) -> Self {
        tracing::warn!(reason = %reason, "authorization server unavailable");
        Self {
            retry_after: Some(AS_RETRY_AFTER_SECS),
            ..Self::unavailable()
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
                HttpErrorCode::TooManyRequests,
                format!("too many requests with this client certificate; retry in {secs} seconds"),
            )
        }
    }

    /// A server-side failure that is not the client's fault; the detail is logged, not sent.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            OAuthErrorCode::ServerError,
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
            RegistrationError::AsUnavailable(reason) => {
                Self::authorization_server_unavailable(reason)
            }
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
    /// 401 `invalid_client`: no client certificate.
    pub fn certificate_required() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            OAuthErrorCode::InvalidClient,
            CERTIFICATE_REQUIRED,
        )
    }

    /// 401 `invalid_client`: OCSP refused the client certificate.
    pub fn certificate_refused(refusal: OcspRefusal) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            OAuthErrorCode::InvalidClient,
            refusal.description(),
        )
    }

    /// 401 `invalid_client`: the certificate is not one `[oauth.introspection]` allows.
    pub fn introspection_not_allowed() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            OAuthErrorCode::InvalidClient,
            "this client certificate may not introspect tokens",
        )
    }

    /// 400 `invalid_request`: a required form parameter is absent or empty.
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            OAuthErrorCode::InvalidRequest,
            format!("`{name}` is required"),
        )
    }

    /// A registration body that could not be had: 413 (or 400) `invalid_client_metadata`.
    pub fn registration_body(e: BodyError) -> Self {
        Self::body(e, OAuthErrorCode::InvalidClientMetadata)
    }

    /// An OAuth endpoint's body (`/token`, `/introspect`): 413 (or 400) `invalid_request`.
    pub fn oauth_body(e: BodyError) -> Self {
        Self::body(e, OAuthErrorCode::InvalidRequest)
    }

    /// A body that could not be had, `code` being the endpoint's for a bad one. A slow body
    /// and a full pipeline answer the same everywhere.
    fn body(e: BodyError, code: OAuthErrorCode) -> Self {
        match e {
            BodyError::TooLarge(_) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, e.to_string()),
            BodyError::Unreadable => Self::new(StatusCode::BAD_REQUEST, code, e.to_string()),
            BodyError::TimedOut(_) => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                OAuthErrorCode::InvalidRequest,
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
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                OAuthErrorCode::InvalidToken,
                description,
            )
        }
    }
}

/// A form body that does not parse (`/introspect`; `/token` has it as a `TokenError`): 400
/// `invalid_request`.
impl From<FormError> for ApiError {
    fn from(e: FormError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            OAuthErrorCode::InvalidRequest,
            e.to_string(),
        )
    }
}

/// Why `/token` issued no token: the grant's error, which the endpoint counts and logs before
/// [`ApiError::token`] answers it, or an answer due before the grant runs (the rate limit of
/// (certificate, client), OCSP, a slow body, a full pipeline).
#[derive(Debug)]
pub enum TokenRefusal {
    /// The grant refused: answered by [`ApiError::token`] once counted and logged.
    Grant(TokenError),
    /// Answered as it is.
    Early(ApiError),
}

impl From<TokenError> for TokenRefusal {
    fn from(e: TokenError) -> Self {
        Self::Grant(e)
    }
}

impl From<ApiError> for TokenRefusal {
    fn from(e: ApiError) -> Self {
        Self::Early(e)
    }
}

/// A `/token` body that could not be had: too large or unreadable is the grant's
/// `invalid_request`, counted as a refused token request; a slow body or a full pipeline
/// answers as on every endpoint.
impl From<BodyError> for TokenRefusal {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(limit) => Self::Grant(TokenError::TooLarge(limit)),
            BodyError::Unreadable => Self::Grant(TokenError::InvalidRequest(e.to_string())),
            other => Self::Early(ApiError::oauth_body(other)),
        }
    }
}

/// The admin API's own refusals, in the admin's words (its 404 and 405 point at its OpenAPI
/// document, not at discovery). `Display` is the public description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminRefusal {
    /// No admin route has that path (404 `not_found`).
    #[error("no such admin endpoint; see /admin/openapi.json")]
    NoEndpoint,
    /// The admin route does not take that method (405 `method_not_allowed`).
    #[error("this admin endpoint does not support that HTTP method; see /admin/openapi.json")]
    MethodNotAllowed,
    /// The `{id}` of the path does not decode, in axum's words (400 `invalid_request`).
    #[error("the id in the path is not valid: {0}")]
    BadPathId(String),
    /// A query string the route does not take, in axum's words (400 `invalid_request`).
    #[error("bad query parameters: {0}")]
    BadQuery(String),
    /// `limit` outside `1..=max` (400 `invalid_request`).
    #[error("limit must be between 1 and {max}")]
    BadPageSize { max: i64 },
    /// A reload's `admin.client_ca` no longer trusts the certificate this connection was
    /// opened with (403 `access_denied`).
    #[error(
        "this connection's certificate is no longer trusted by admin.client_ca; connect again with a trusted one"
    )]
    CertificateNoLongerTrusted,
    /// The certificate is in neither allow-list (403 `access_denied`).
    #[error(
        "this certificate is not an allowed admin (admin.allowed_subjects, admin.allowed_thumbprints)"
    )]
    NotAnAdmin,
    /// No client has that id (404 `not_found`).
    #[error("no such client")]
    NoClient,
    /// Disable or enable in `rfc7591` mode (409 `conflict`).
    #[error("{0}")]
    NotInThisMode(String),
    /// The event has no failed delivery to a configured webhook (404 `not_found`).
    #[error("no failed delivery of that event to a configured webhook")]
    NoFailedDelivery,
}

impl From<AdminRefusal> for ApiError {
    fn from(e: AdminRefusal) -> Self {
        let (status, code): (StatusCode, ApiErrorCode) = match e {
            AdminRefusal::NoEndpoint | AdminRefusal::NoClient | AdminRefusal::NoFailedDelivery => {
                (StatusCode::NOT_FOUND, HttpErrorCode::NotFound.into())
            }
            AdminRefusal::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                HttpErrorCode::MethodNotAllowed.into(),
            ),
            AdminRefusal::BadPathId(_)
            | AdminRefusal::BadQuery(_)
            | AdminRefusal::BadPageSize { .. } => (
                StatusCode::BAD_REQUEST,
                OAuthErrorCode::InvalidRequest.into(),
            ),
            AdminRefusal::CertificateNoLongerTrusted | AdminRefusal::NotAnAdmin => {
                (StatusCode::FORBIDDEN, OAuthErrorCode::AccessDenied.into())
            }
            AdminRefusal::NotInThisMode(_) => {
                (StatusCode::CONFLICT, HttpErrorCode::Conflict.into())
            }
        };
        Self::new(status, code, e.to_string())
    }
}

/// A refused management call: 401 `invalid_token`, or 503/500 from the store.
impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Store(e) => Self::from_store(e),
            AccessError::AsUnavailable(reason) => Self::authorization_server_unavailable(&reason),
            AccessError::RevokedKey(e) => Self::new(
                StatusCode::UNAUTHORIZED,
                OAuthErrorCode::InvalidClient,
                e.to_string(),
            ),
            other => Self::invalid_token(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&Body {
            error: self.error.as_str(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire text of every code is the RFCs' (and the contract's), byte for byte.
    #[test]
    fn codes_go_on_the_wire_as_spelled() {
        let oauth: Vec<&str> = OAuthErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            oauth,
            [
                "invalid_request",
                "invalid_client",
                "unauthorized_client",
                "unsupported_grant_type",
                "invalid_scope",
                "access_denied",
                "server_error",
                "temporarily_unavailable",
                "invalid_token",
                "invalid_redirect_uri",
                "invalid_client_metadata",
                "invalid_software_statement",
                "unapproved_software_statement",
            ]
        );
        let http = [
            HttpErrorCode::NotFound,
            HttpErrorCode::MethodNotAllowed,
            HttpErrorCode::TooManyRequests,
        ]
        .map(|c| ApiErrorCode::from(c).as_str());
        assert_eq!(
            http,
            ["not_found", "method_not_allowed", "too_many_requests"]
        );
    }

    #[test]
    fn admin_refusals_answer_with_their_status_and_code() {
        let cases = [
            (AdminRefusal::NoEndpoint, 404, "not_found"),
            (AdminRefusal::MethodNotAllowed, 405, "method_not_allowed"),
            (AdminRefusal::BadPathId("x".into()), 400, "invalid_request"),
            (AdminRefusal::BadQuery("x".into()), 400, "invalid_request"),
            (
                AdminRefusal::BadPageSize { max: 1000 },
                400,
                "invalid_request",
            ),
            (
                AdminRefusal::CertificateNoLongerTrusted,
                403,
                "access_denied",
            ),
            (AdminRefusal::NotAnAdmin, 403, "access_denied"),
            (AdminRefusal::NoClient, 404, "not_found"),
            (AdminRefusal::NoFailedDelivery, 404, "not_found"),
        ];
        for (refusal, status, code) in cases {
            let description = refusal.to_string();
            let api = ApiError::from(refusal);
            assert_eq!(
                (api.status.as_u16(), api.error.as_str()),
                (status, code),
                "{description}"
            );
            assert_eq!(api.description, description);
        }
    }
}
