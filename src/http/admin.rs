//! The admin API, on its own listener (`[admin]`): the bank's service desk finds, disables,
//! enables and deletes clients, reads the audit trail and retries failed events. Admins
//! authenticate with a client certificate that chains to `admin.client_ca` (the handshake
//! requires one) and is listed in `admin.allowed_subjects` or `admin.allowed_thumbprints`
//! (403 otherwise). Every action goes through [`crate::operator`], as the CLI's do.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{AdminRefusal, ApiError};
use super::extract::Peer;
use super::state::{AppState, SharedState};
use crate::operator::{
    ActError, Actor, ClientAction, Mode, client_details, client_summary, event_json,
};
use crate::pki::ClientCertificate;
use crate::store::{AuditLog, ClientFilter, ClientStore, EventFilter, EventStore};

/// The admin API's OpenAPI document, served at `/admin/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi-admin.json");

/// A page holds at most this many items; the default is 100.
const MAX_PAGE: i64 = 1000;

/// The admin listener's routes, with the state and the middleware the TPP listener has too:
/// the interaction id, one log line per request (with the admin's subject) and the request
/// timeout.
pub fn app(state: SharedState, request_timeout: Duration) -> Router {
    Router::new()
        .route("/admin/clients", get(list_clients))
        .route("/admin/clients/{id}", get(get_client).delete(delete_client))
        .route("/admin/clients/{id}/disable", post(disable_client))
        .route("/admin/clients/{id}/enable", post(enable_client))
        .route("/admin/audit", get(list_audit))
        .route("/admin/events", get(list_events))
        .route("/admin/events/{id}/retry", post(retry_event))
        .route("/admin/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::from(AdminRefusal::NoEndpoint) })
        .method_not_allowed_fallback(|| async { ApiError::from(AdminRefusal::MethodNotAllowed) })
        .with_state(state)
        .layer(axum::middleware::from_fn(move |request, next| {
            super::middleware::timeout(request_timeout, request, next)
        }))
        // Outermost: it sees the timeout's 503 too.
        .layer(axum::middleware::from_fn(
            super::middleware::admin_request_log,
        ))
}

/// The `{id}` of an admin path, percent-decoded: a path that does not decode (`%ff` is not
/// UTF-8) is 400 JSON, never axum's plain-text rejection.
struct PathId(String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Self(id)),
            Err(e) => Err(AdminRefusal::BadPathId(e.body_text()).into()),
        }
    }
}

/// Every admin route, as (method, path template): what docs/openapi-admin.json describes.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/clients"),
    ("GET", "/admin/clients/{id}"),
    ("DELETE", "/admin/clients/{id}"),
    ("POST", "/admin/clients/{id}/disable"),
    ("POST", "/admin/clients/{id}/enable"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/events"),
    ("POST", "/admin/events/{id}/retry"),
    ("GET", "/admin/openapi.json"),
    ("GET", "/metrics"),
];

/// An allowed admin's certificate, and its subject as RFC 4514 text (for the audit log).
pub struct AdminCert {
    cert: Arc<ClientCertificate>,
    subject: String,
}

impl AdminCert {
    fn actor(&self) -> Actor<'_> {
        Actor::Admin {
            subject: &self.subject,
            x5t_s256: self.cert.x5t_s256(),
        }
    }
}

impl<S> FromRequestParts<S> for AdminCert
where
    S: Send + Sync,
    Arc<AppState>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Ok(Peer(cert)) = Peer::from_request_parts(parts, state).await;
        // The handshake requires a certificate; none here means a reload's new
        // admin.client_ca no longer trusts the one this connection was opened with.
        let Some(cert) = cert else {
            return Err(AdminRefusal::CertificateNoLongerTrusted.into());
        };
        let app = Arc::<AppState>::from_ref(state);
        let admin = &app.config.admin;
        if cert.is_listed(&admin.allowed_thumbprints, &admin.allowed_subjects) {
            Ok(Self {
                subject: cert.subject.to_string(),
                cert,
            })
        } else {
            tracing::warn!(
                x5t_s256 = cert.x5t_s256(),
                "admin API: certificate not allowed"
            );
            Err(AdminRefusal::NotAnAdmin.into())
        }
    }
}

/// A query string the handler could not take: 400 JSON, never axum's plain text.
fn bad_query(e: QueryRejection) -> AdminRefusal {
    AdminRefusal::BadQuery(e.body_text())
}

fn page_size(limit: Option<i64>) -> Result<i64, AdminRefusal> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(AdminRefusal::BadPageSize { max: MAX_PAGE }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientQuery {
    software_id: Option<String>,
    org_id: Option<String>,
    enabled: Option<bool>,
    version: Option<crate::domain::SpecVersion>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /admin/clients`: a page of clients in client_id order, filtered.
async fn list_clients(
    State(state): State<Arc<AppState>>,
    _: AdminCert,
    query: Result<Query<ClientQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let limit = page_size(q.limit)?;
    let filter = ClientFilter {
        after: q.cursor.as_deref().unwrap_or(""),
        software_id: q.software_id.as_deref(),
        org_id: q.org_id.as_deref(),
        enabled: q.enabled,
        dcr_version: q.version,
        limit,
    };
    let clients = state
        .store
        .list_clients_page(&filter)
        .await
        .map_err(ApiError::from_store)?;
    let next = (clients.len() as i64 == limit)
        .then(|| clients.last().map(|c| c.client_id.clone()))
        .flatten();
    Ok(Json(json!({
        "clients": clients.iter().map(client_summary).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// `GET /admin/clients/{id}`.
async fn get_client(
    State(state): State<Arc<AppState>>,
    _: AdminCert,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    match state
        .store
        .get_client(&id)
        .await
        .map_err(ApiError::from_store)?
    {
        Some(c) => Ok(Json(client_details(&c))),
        None => Err(AdminRefusal::NoClient.into()),
    }
}

async fn act(
    state: &AppState,
    admin: &AdminCert,
    id: &str,
    action: ClientAction,
) -> Result<Json<Value>, ApiError> {
    let mode = match state.behind {
        Some(_) => Mode::BehindAnAs,
        None => Mode::Embedded,
    };
    let done = crate::operator::act(&state.store, id, action, admin.actor(), mode)
        .await
        .map_err(|e| match e {
            ActError::Store(e) => ApiError::from_store(e),
            other => AdminRefusal::NotInThisMode(other.to_string()).into(),
        })?;
    if !done {
        return Err(AdminRefusal::NoClient.into());
    }
    tracing::info!(client_id = %id, action = action.result(), subject = %admin.subject, "admin API");
    Ok(Json(json!({"client_id": id, "result": action.result()})))
}

/// `POST /admin/clients/{id}/disable`.
async fn disable_client(
    State(state): State<Arc<AppState>>,
    admin: AdminCert,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    act(&state, &admin, &id, ClientAction::Disable).await
}

/// `POST /admin/clients/{id}/enable`.
async fn enable_client(
    State(state): State<Arc<AppState>>,
    admin: AdminCert,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    act(&state, &admin, &id, ClientAction::Enable).await
}

/// `DELETE /admin/clients/{id}`.
async fn delete_client(
    State(state): State<Arc<AppState>>,
    admin: AdminCert,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    act(&state, &admin, &id, ClientAction::Delete).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    client_id: Option<String>,
    /// Unix seconds.
    since: Option<i64>,
    cursor: Option<i64>,
    limit: Option<i64>,
}

/// `GET /admin/audit`: a page of the audit trail, oldest first.
async fn list_audit(
    State(state): State<Arc<AppState>>,
    _: AdminCert,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let limit = page_size(q.limit)?;
    let entries = state
        .store
        .list_audit_page(
            q.cursor.unwrap_or(0),
            q.client_id.as_deref(),
            q.since,
            limit,
        )
        .await
        .map_err(ApiError::from_store)?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let records: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut row = serde_json::to_value(e).unwrap_or_default();
            row["time"] = crate::clock::rfc3339(e.record.at).into();
            if let Some(detail) = e.record.detail.as_deref() {
                row["detail"] = serde_json::from_str(detail).unwrap_or_else(|_| detail.into());
            }
            row
        })
        .collect();
    Ok(Json(json!({"records": records, "next_cursor": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    #[serde(default)]
    failed: bool,
    client_id: Option<String>,
    cursor: Option<i64>,
    limit: Option<i64>,
}

/// `GET /admin/events`: a page of events with their deliveries, oldest first.
async fn list_events(
    State(state): State<Arc<AppState>>,
    _: AdminCert,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let limit = page_size(q.limit)?;
    let filter = EventFilter {
        after: q.cursor.unwrap_or(0),
        client_id: q.client_id.as_deref(),
        failed: q.failed,
        limit,
    };
    let events = state
        .store
        .list_events(&filter)
        .await
        .map_err(ApiError::from_store)?;
    let next = (events.len() as i64 == limit)
        .then(|| events.last().map(|(e, _)| e.id))
        .flatten();
    let rows: Vec<Value> = events.iter().map(|(e, d)| event_json(e, d)).collect();
    Ok(Json(json!({"events": rows, "next_cursor": next})))
}

/// `POST /admin/events/{id}/retry`: the event's failed deliveries are pending again.
async fn retry_event(
    State(state): State<Arc<AppState>>,
    admin: AdminCert,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let n = crate::operator::retry_events(&state.store, Some(&id), &state.config.events)
        .await
        .map_err(ApiError::from_store)?;
    if n == 0 {
        return Err(AdminRefusal::NoFailedDelivery.into());
    }
    tracing::info!(event_id = %id, deliveries = n, subject = %admin.subject, "admin API: event retried");
    Ok(Json(json!({"event_id": id, "retried": n})))
}

async fn openapi(_: AdminCert) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// `/metrics`, here when `admin.metrics` is set (and then not on the public listener).
async fn metrics(State(state): State<Arc<AppState>>, _: AdminCert) -> Response {
    if state.config.admin.metrics {
        super::ops::render_metrics(&state)
    } else {
        ApiError::from(AdminRefusal::NoEndpoint).into_response()
    }
}
