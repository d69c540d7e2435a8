//! HTTP handlers for the registration endpoints. Thin: they read the request, call the
//! pipeline, and write the answer.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::mtls::PeerIdentity;
use crate::registration::{Input, RegistrationError};
use crate::server::AppState;
use crate::store::{AuditLog, AuditRecord};

/// Header that OBIE uses to correlate a request across parties.
pub const INTERACTION_ID: &str = "x-fapi-interaction-id";

/// An oversized body is still read (and dropped) up to this many bytes, so that the client,
/// which may still be sending, gets to read the 413 instead of a broken pipe.
const DRAIN_LIMIT: usize = 2 * 1024 * 1024;

/// Reads and discards up to [`DRAIN_LIMIT`] bytes, for at most two seconds.
pub async fn drain(mut body: Body) {
    let mut seen = 0usize;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// Reads the body, refusing more than `limit` bytes with 413 before anything is parsed.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        drain(body).await;
        return Err(too_large());
    }
    let mut body = body;
    let mut buf = Vec::new();
    loop {
        match body.frame().await {
            None => return Ok(Bytes::from(buf)),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if buf.len() + data.len() > limit {
                        drain(body).await;
                        return Err(too_large());
                    }
                    buf.extend_from_slice(data);
                }
            }
            Some(Err(_)) => break,
        }
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
        "the request body could not be read",
    ))
}

/// JSON with the headers every client-bearing response needs.
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

/// The request's interaction id: the request log middleware has set it (the TPP's, checked, or
/// a new UUID), so this only reads it back.
pub fn interaction_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(INTERACTION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Answers a refused registration or update, and appends it to the audit log with its error
/// code and reason (never a secret). Server-side failures are not the TPP's doing: no record.
pub async fn refused(state: &AppState, e: &RegistrationError, mut audit: AuditRecord) -> Response {
    let api = e.to_api_error();
    let action = if audit.action == "register" {
        "register"
    } else {
        "update"
    };
    crate::metrics::registration(action, "refused", api.error);
    tracing::info!(action = %audit.action, client_id = ?audit.client_id, error = api.error, reason = %api.description, "request refused");
    if !matches!(
        e,
        RegistrationError::Unavailable | RegistrationError::Internal(_)
    ) {
        audit.outcome = "refused".into();
        audit.error_code = Some(api.error.to_string());
        audit.detail = Some(serde_json::json!({ "reason": api.description }).to_string());
        if let Err(e) = state.store.append_audit(&audit).await {
            tracing::warn!(error = %e, "could not audit a refusal");
        }
    }
    api.into_response()
}

/// The `software_id` and `org_id` that a refused request's SSA claims, read without any
/// verification, for the audit trail only (cut to 100 printable characters).
pub fn claimed_identity(body: &[u8]) -> (Option<String>, Option<String>) {
    fn payload(jwt: &str) -> Option<serde_json::Value> {
        use base64::Engine;
        let part = jwt.trim().split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }
    let ssa = std::str::from_utf8(body)
        .ok()
        .and_then(payload)
        .and_then(|claims| claims["software_statement"].as_str().and_then(payload));
    let claim = |name: &str| {
        ssa.as_ref()
            .and_then(|c| c[name].as_str())
            .map(|v| crate::jose::printable(v, 100))
    };
    (claim("software_id"), claim("org_id"))
}

/// `POST /open-banking/v3.2/register`.
pub async fn post_register(
    State(state): State<AppState>,
    identity: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let certificate = identity.and_then(|Extension(i)| i.certificate);
    let Some(certificate) = certificate else {
        // Read what the client is still sending, so that it sees the 401, not a reset stream.
        drain(body).await;
        return RegistrationError::NoCertificate
            .to_api_error()
            .into_response();
    };
    let bytes = match read_body(&headers, body, state.config.server.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let interaction = interaction_id(&headers);
    let input = Input {
        certificate: Some(&certificate),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body: &bytes,
        interaction_id: interaction.as_deref(),
    };
    let now = crate::clock::now();
    match state.registrar.register(&state.store, &input, now).await {
        Ok(registered) => {
            crate::metrics::registration("register", "success", "");
            let software_id = registered.body["software_id"].as_str();
            crate::request_log::Known::attach(
                client_json(StatusCode::CREATED, &registered.body),
                Some(&registered.client_id),
                software_id,
            )
        }
        Err(e) => {
            // What they tried: the software and organisation the SSA names, unverified.
            let (software_id, org_id) = claimed_identity(&bytes);
            let audit = AuditRecord {
                at: now,
                action: "register".into(),
                software_id,
                org_id,
                cert_thumbprint: Some(certificate.x5t_s256()),
                interaction_id: interaction,
                ..AuditRecord::default()
            };
            refused(&state, &e, audit).await
        }
    }
}
