//! One log line per request, and the `x-fapi-interaction-id` on every response.
//!
//! The OBIE read/write specification asks servers to echo the TPP's `x-fapi-interaction-id`
//! and to generate one (a UUID) when the TPP sent none. The id is written into the request
//! before the handlers run, so that their audit records carry it too.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::api::INTERACTION_ID;
use crate::pki::PeerIdentity;

/// What a handler learnt about the caller, for the request's log line (a response extension).
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

/// The longest interaction id echoed; a longer or unprintable one is replaced.
const MAX_INTERACTION_ID: usize = 128;

fn acceptable(v: &HeaderValue) -> bool {
    !v.is_empty()
        && v.len() <= MAX_INTERACTION_ID
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

/// The route template of `path`: a fixed set of names, so that a client_id in the path does
/// not become a log field's (or a metric label's) unbounded value.
pub fn route_of(path: &str) -> &'static str {
    if let Some((_, fixed)) = crate::server::ROUTES.iter().find(|(_, p)| *p == path) {
        return fixed;
    }
    match path.strip_prefix(crate::REGISTER_PATH) {
        Some(rest) if rest.len() > 1 && rest.starts_with('/') && !rest[1..].contains('/') => {
            crate::REGISTER_CLIENT_ROUTE
        }
        _ => "unmatched",
    }
}

/// The middleware: sets the interaction id, runs the request, logs one line.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let interaction = match request.headers().get(INTERACTION_ID) {
        Some(v) if acceptable(v) => v.clone(),
        _ => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
    };
    request
        .headers_mut()
        .insert(INTERACTION_ID, interaction.clone());
    let method = request.method().clone();
    let route = route_of(request.uri().path());
    let thumbprint = request
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|i| i.certificate.as_ref())
        .map(|c| c.x5t_s256());
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
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    crate::metrics::request(route, method.as_str(), status, latency_ms / 1000.0);
    tracing::info!(
        target: "dcr_server::request",
        method = %method,
        route,
        status,
        latency_ms = (latency_ms * 1000.0).round() / 1000.0,
        cert_thumbprint = thumbprint.as_deref(),
        client_id = known.client_id.as_deref(),
        software_id = known.software_id.as_deref(),
        interaction_id = interaction.to_str().unwrap_or_default(),
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates() {
        assert_eq!(route_of("/token"), "/token");
        assert_eq!(
            route_of(&format!("{}/abc", crate::REGISTER_PATH)),
            crate::REGISTER_CLIENT_ROUTE
        );
        assert_eq!(
            route_of(&format!("{}/a/b", crate::REGISTER_PATH)),
            "unmatched"
        );
        assert_eq!(route_of("/nope"), "unmatched");
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
