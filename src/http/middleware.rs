//! Middleware: the `x-fapi-interaction-id`, one log line and the HTTP metrics per request, and
//! the request timeout.
//!
//! The OBIE read/write specification asks servers to echo the TPP's `x-fapi-interaction-id`
//! and to generate one (a UUID) when the TPP sent none. The id is put into the request's
//! extensions before the handlers run ([`InteractionId`](super::extract::InteractionId)), so
//! that their audit records carry it too.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::INTERACTION_ID;
use super::error::ApiError;
use super::extract::InteractionId;
use super::limits::SlotTicket;
use super::response::Known;
use crate::pki::PeerIdentity;

/// The longest interaction id echoed; a longer or unprintable one is replaced.
const MAX_INTERACTION_ID: usize = 128;

fn acceptable(v: &HeaderValue) -> bool {
    !v.is_empty()
        && v.len() <= MAX_INTERACTION_ID
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

/// The interaction id of a request: the TPP's when it is acceptable, else a new UUID.
fn interaction_id(request: &Request) -> HeaderValue {
    match request.headers().get(INTERACTION_ID) {
        Some(v) if acceptable(v) => v.clone(),
        _ => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
    }
}

/// Sets the interaction id, runs the request, logs one line and counts it. The route is the
/// matched template (so a client_id in the path never becomes a log field's or a metric
/// label's value), or `unmatched`.
pub async fn request_log(request: Request, next: Next) -> Response {
    logged(request, next, false).await
}

/// The same for the admin listener: its line also says `"listener": "admin"` and the admin
/// certificate's subject (who did it), which a TPP's line leaves out.
pub async fn admin_request_log(request: Request, next: Next) -> Response {
    logged(request, next, true).await
}

async fn logged(mut request: Request, next: Next, admin: bool) -> Response {
    let started = Instant::now();
    let interaction = interaction_id(&request);
    let id = interaction.to_str().unwrap_or_default().to_string();
    request.extensions_mut().insert(InteractionId(Some(id)));
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let certificate = request
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|i| i.certificate.as_ref());
    let thumbprint = certificate.map(|c| c.x5t_s256().to_string());
    let subject = certificate.filter(|_| admin).map(|c| c.subject.to_string());
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(INTERACTION_ID, interaction.clone());
    let known = response
        .extensions()
        .get::<Known>()
        .cloned()
        .unwrap_or_default();
    let status = response.status().as_u16();
    let dcr_version = crate::domain::version::PROFILES
        .iter()
        .find(|p| route == p.register_path || route == p.client_route)
        .map(|p| p.version.as_str());
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    crate::metrics::request(&route, method.as_str(), status, latency_ms / 1000.0);
    tracing::info!(
        target: "dcr_server::request",
        listener = admin.then_some("admin"),
        method = %method,
        route,
        dcr_version,
        status,
        latency_ms = (latency_ms * 1000.0).round() / 1000.0,
        cert_thumbprint = thumbprint.as_deref(),
        cert_subject = subject.as_deref(),
        client_id = known.client_id.as_deref(),
        software_id = known.software_id.as_deref(),
        interaction_id = interaction.to_str().unwrap_or_default(),
        "request"
    );
    response
}

/// The rate limits of the request's certificate (`http::limits`): a 429 before the handler
/// runs, so before any body is read, signature verified or row read. A registration or token
/// request also gets a [`SlotTicket`]: its pipeline slot is taken once its body is in (503
/// when none is free), and held until its response is made here.
pub async fn limit(
    axum::extract::State(shared): axum::extract::State<super::SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    let state = shared.current();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let method = request.method();
    let registration = route.is_some_and(|route| {
        crate::domain::version::PROFILES.iter().any(|p| {
            (method == axum::http::Method::POST && route == p.register_path)
                || (method == axum::http::Method::PUT && route == p.client_route)
        })
    });
    let pipeline = registration || route == Some("/token");
    let certificate = request
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|i| i.certificate.as_ref());
    if state.limits.config.enable
        && let Some(cert) = certificate
    {
        let thumbprint = &cert.thumbprint_sha256;
        let refused = state.limits.request(thumbprint).err().or_else(|| {
            registration
                .then(|| state.limits.registration(thumbprint).err())
                .flatten()
        });
        if let Some(e) = refused {
            return e.into_response();
        }
    }
    let ticket = pipeline.then(|| SlotTicket::new(state.limits.clone(), certificate.is_none()));
    if let Some(ticket) = &ticket {
        request.extensions_mut().insert(ticket.clone());
    }
    let response = next.run(request).await;
    drop(ticket);
    response
}

/// No request is held past `limit`, whatever it waits for: it gets a 503.
pub async fn timeout(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!("request timed out");
            ApiError::unavailable().into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    /// The route label is the matched template, never the path with its ids; anything the
    /// router does not know is `unmatched`. Every answer carries an interaction id, the
    /// TPP's when it is acceptable.
    #[tokio::test]
    async fn requests_are_named_by_their_route_template() {
        crate::metrics::install();
        let app = Router::new()
            .route(
                "/mw-test/{ClientId}",
                get(|InteractionId(id): InteractionId| async move { id.unwrap_or_default() }),
            )
            .layer(axum::middleware::from_fn(request_log));
        let send = |uri: &str, id: Option<&str>| {
            let mut request = Request::get(uri);
            if let Some(id) = id {
                request = request.header(INTERACTION_ID, id);
            }
            app.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        let r = send("/mw-test/client-123", Some("tpp-id-1")).await.unwrap();
        assert_eq!(r.headers()[INTERACTION_ID], "tpp-id-1");
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"tpp-id-1", "the handler sees the same id");
        let r = send("/mw-test-nothing-here", Some("bad id")).await.unwrap();
        assert_eq!(r.status(), 404);
        assert_ne!(r.headers()[INTERACTION_ID], "bad id");
        let rendered = crate::metrics::render();
        assert!(
            rendered.contains("route=\"/mw-test/{ClientId}\""),
            "{rendered}"
        );
        assert!(!rendered.contains("client-123"), "{rendered}");
        assert!(rendered.contains("route=\"unmatched\""), "{rendered}");
    }

    #[test]
    fn interaction_ids_are_checked() {
        assert!(acceptable(&HeaderValue::from_static(
            "93bac548-d2de-4546-b106-880a5018460d"
        )));
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("a b")));
        assert!(!acceptable(
            &HeaderValue::from_str(&"x".repeat(129)).unwrap()
        ));
    }
}
