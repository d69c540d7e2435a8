//! Extractors: what handlers take instead of digging in the request.
//!
//! - [`Peer`]: the client certificate of the request, if any (from the connection or a trusted
//!   load balancer; see `net/`).
//! - [`ClientCert`]: a required client certificate that OCSP does not refuse (401
//!   `invalid_client` otherwise); [`PresentedCert`] before the OCSP question.
//! - [`InteractionId`]: the request's `x-fapi-interaction-id`, set by the middleware.
//! - [`Served`]: the DCR version of the route, when `open_banking.dcr.versions` serves it
//!   (404 otherwise).
//! - [`PendingBody`]: the body, read on demand within `server.max_body_bytes` and
//!   `server.body_timeout_ms`; on the registration and token routes it then takes the
//!   request's pipeline slot ([`SlotTicket`]).
//! - [`Guarded`]: a guard extractor and the body; when the guard refuses, what the client is
//!   still sending is read and dropped first, so that it sees the answer and not a reset.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::error::{ApiError, BodyError};
use super::limits::SlotTicket;
use super::state::AppState;
use crate::domain::SpecVersion;
use crate::net::connection::CloseConnection;
use crate::pki::{ClientCertificate, PeerIdentity};

// Where the tests (and the TPP-facing docs) have always found it.
pub use super::error::CERTIFICATE_REQUIRED;

/// An oversized body is still read (and dropped) up to this many bytes, so that the client,
/// which may still be sending, gets to read the answer instead of a broken pipe.
const DRAIN_LIMIT: usize = 2 * 1024 * 1024;

/// Reads and discards up to [`DRAIN_LIMIT`] bytes, for at most two seconds.
pub async fn drain(mut body: Body) {
    let mut seen = 0usize;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// The request's client certificate, if it has one.
#[derive(Debug, Clone, Default)]
pub struct Peer(pub Option<Arc<ClientCertificate>>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(
            parts
                .extensions
                .get::<PeerIdentity>()
                .and_then(|i| i.certificate.clone()),
        ))
    }
}

/// A client certificate the endpoint requires, not yet asked about by OCSP (registration asks
/// itself, to audit a refusal).
#[derive(Debug, Clone)]
pub struct PresentedCert(pub Arc<ClientCertificate>);

impl<S: Send + Sync> FromRequestParts<S> for PresentedCert {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Ok(Peer(certificate)) = Peer::from_request_parts(parts, state).await;
        certificate
            .map(Self)
            .ok_or_else(ApiError::certificate_required)
    }
}

/// A client certificate the endpoint requires, and that OCSP does not refuse (401
/// `invalid_client` otherwise; `server.tls.ocsp`).
#[derive(Debug, Clone)]
pub struct ClientCert(pub Arc<ClientCertificate>);

impl<S> FromRequestParts<S> for ClientCert
where
    S: Send + Sync,
    Arc<AppState>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PresentedCert(certificate) = PresentedCert::from_request_parts(parts, state).await?;
        Arc::<AppState>::from_ref(state)
            .ocsp
            .check(&certificate)
            .await
            .map_err(ApiError::certificate_refused)?;
        Ok(Self(certificate))
    }
}

/// The DCR version of a registration route (the router puts it on each version's routes),
/// when the current config serves it. A version not served answers 404 JSON, as an unknown
/// path does, before anything else is looked at; a reload may switch a version on or off.
#[derive(Debug, Clone, Copy)]
pub struct Served(pub SpecVersion);

impl<S> FromRequestParts<S> for Served
where
    S: Send + Sync,
    Arc<AppState>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let version = parts
            .extensions
            .get::<SpecVersion>()
            .copied()
            .ok_or_else(ApiError::not_found)?;
        let app = Arc::<AppState>::from_ref(state);
        if app.registrar.policy.versions.contains(&version) {
            Ok(Self(version))
        } else {
            Err(ApiError::not_found())
        }
    }
}

/// The request's `x-fapi-interaction-id` (the TPP's, checked, or a new UUID), as the
/// middleware set it. `None` only where the middleware does not run (router unit tests).
#[derive(Debug, Clone, Default)]
pub struct InteractionId(pub Option<String>);

impl InteractionId {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for InteractionId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<InteractionId>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The body, not read yet. [`PendingBody::read`] refuses more than `server.max_body_bytes`
/// (by `Content-Length` before reading, or while reading), and a body not complete
/// `server.body_timeout_ms` after the request was taken in (408; its connection is closed).
pub struct PendingBody {
    body: Body,
    declared: Option<u64>,
    limits: BodyLimits,
    /// The pipeline slot to take once the body is in (registration and token routes).
    ticket: Option<SlotTicket>,
    close: Option<CloseConnection>,
}

/// What a body may be, from `[server]`.
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    max_bytes: usize,
    deadline: Instant,
    timeout: Duration,
}

impl BodyLimits {
    fn of<S>(state: &S) -> Self
    where
        Arc<AppState>: FromRef<S>,
    {
        let server = &Arc::<AppState>::from_ref(state).config.server;
        let timeout = Duration::from_millis(server.body_timeout_ms);
        Self {
            max_bytes: server.max_body_bytes,
            deadline: Instant::now() + timeout,
            timeout,
        }
    }
}

impl PendingBody {
    fn new(parts: &Parts, body: Body, limits: BodyLimits) -> Self {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Self {
            body,
            declared,
            limits,
            ticket: parts.extensions.get::<SlotTicket>().cloned(),
            close: parts.extensions.get::<CloseConnection>().cloned(),
        }
    }

    /// The whole body; then, on the pipeline's routes, the request's slot (503 `Busy` when
    /// none is free).
    pub async fn read(self) -> Result<Bytes, BodyError> {
        let limits = self.limits;
        let limit = limits.max_bytes;
        if self.declared.is_some_and(|n| n > limit as u64) {
            drain(self.body).await;
            return Err(BodyError::TooLarge(limit));
        }
        let mut body = self.body;
        let collect = async {
            let mut buf = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Err(BodyError::Unreadable);
                };
                if let Some(data) = frame.data_ref() {
                    if buf.len() + data.len() > limit {
                        return Err(BodyError::TooLarge(limit));
                    }
                    buf.extend_from_slice(data);
                }
            }
            Ok(Bytes::from(buf))
        };
        let bytes = match tokio::time::timeout_at(limits.deadline, collect).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(BodyError::TooLarge(limit))) => {
                drain(body).await;
                return Err(BodyError::TooLarge(limit));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                // Whoever sends this slowly gets no more of the connection.
                crate::metrics::body_timed_out();
                tracing::info!(
                    timeout_ms = limits.timeout.as_millis() as u64,
                    "request body not complete in time; closing the connection"
                );
                if let Some(close) = &self.close {
                    close.request();
                }
                return Err(BodyError::TimedOut(limits.timeout));
            }
        };
        if let Some(ticket) = &self.ticket {
            ticket.redeem().map_err(|_| BodyError::Busy)?;
        }
        Ok(bytes)
    }

    /// Reads and drops the body (see [`drain`]).
    pub async fn drain(self) {
        drain(self.body).await;
    }
}

impl<S> FromRequest<S> for PendingBody
where
    S: Send + Sync,
    Arc<AppState>: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Infallible> {
        let (parts, body) = request.into_parts();
        Ok(Self::new(&parts, body, BodyLimits::of(state)))
    }
}

/// A request that the guard `G` let through, with its body still to read. When `G` refuses,
/// the body is drained before its refusal is answered.
pub struct Guarded<G> {
    pub guard: G,
    pub body: PendingBody,
}

impl<S, G> FromRequest<S> for Guarded<G>
where
    S: Send + Sync,
    Arc<AppState>: FromRef<S>,
    G: FromRequestParts<S>,
    G::Rejection: IntoResponse,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let refusal = match G::from_request_parts(&mut parts, state).await {
            Ok(guard) => {
                return Ok(Self {
                    guard,
                    body: PendingBody::new(&parts, body, BodyLimits::of(state)),
                });
            }
            Err(refusal) => refusal.into_response(),
        };
        drain(body).await;
        Err(refusal)
    }
}
