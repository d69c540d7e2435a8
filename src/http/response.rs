//! Response helpers shared by the endpoints.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// JSON with the headers every client-bearing response needs (no caching).
pub fn client_json(status: StatusCode, body: &serde_json::Value) -> Response {
    client_json_text(status, body.to_string())
}

/// As [`client_json`], for JSON that is text already (a stored registration).
pub fn client_json_text(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// What a handler learnt about the caller, for the request's log line (a response extension
/// that the request-log middleware reads).
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub client_id: Option<String>,
    pub software_id: Option<String>,
}

impl Known {
    /// Attaches `client_id` and `software_id` to `response`.
    pub fn attach(
        mut response: Response,
        client_id: Option<&str>,
        software_id: Option<&str>,
    ) -> Response {
        response.extensions_mut().insert(Known {
            client_id: client_id.map(str::to_string),
            software_id: software_id.map(str::to_string),
        });
        response
    }
}
