//! Operations endpoints: discovery, health, readiness, metrics, the OpenAPI document and the
//! sandbox JWKS.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

/// The OpenAPI 3.1 document, checked in under docs/.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

fn json(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `GET /.well-known/openid-configuration`.
/// In `rfc7591` mode, the AS's document with this server as its registration endpoint
/// (503 until the AS's own has been read).
pub async fn discovery(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let Some(behind) = &state.behind else {
        return Ok(json(state.discovery.clone()));
    };
    let connected = behind.connected()?;
    Ok(json(behind.discovery(
        &connected,
        &state.config.registration_endpoint(),
    )))
}

/// `GET /health`: the process answers.
pub async fn health() -> Response {
    json(Bytes::from_static(br#"{"status":"ok"}"#))
}

/// `GET /ready`: ready when the database answers within two seconds and, in `rfc7591` mode,
/// the AS's discovery document has been read.
pub async fn ready(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    // `rfc7591` mode: not before the AS's discovery document has been read.
    if let Some(behind) = &state.behind {
        behind.connected()?;
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(json(Bytes::from_static(br#"{"status":"ready"}"#))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: database");
            Err(ApiError::unavailable())
        }
        Err(_) => {
            tracing::warn!("not ready: database ping timed out");
            Err(ApiError::unavailable())
        }
    }
}

/// `GET /sandbox/tpp.jwks`: the sandbox TPP's `software_jwks_endpoint`.
pub async fn sandbox_tpp_jwks(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let jwks = state
        .sandbox_jwks
        .as_ref()
        .ok_or_else(ApiError::not_found)?;
    Ok(json(jwks.tpp.clone()))
}

/// `GET /sandbox/directory.jwks`: the sandbox directory's keys.
pub async fn sandbox_directory_jwks(
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    let jwks = state
        .sandbox_jwks
        .as_ref()
        .ok_or_else(ApiError::not_found)?;
    Ok(json(jwks.directory.clone()))
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // With `admin.metrics`, the admin listener serves them instead.
    if state.config.admin.metrics {
        return ApiError::not_found().into_response();
    }
    render_metrics(&state)
}

/// The metrics, rendered (the public listener's `/metrics`, or the admin listener's).
pub fn render_metrics(state: &AppState) -> Response {
    let (in_use, idle) = state.store.pool_usage();
    crate::metrics::db_pool(in_use, idle);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
        .into_response()
}
