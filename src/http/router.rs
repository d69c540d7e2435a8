//! The one route table.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use super::error::ApiError;
use super::state::SharedState;
use super::{introspect, manage, middleware, ops, register, token};
use crate::{REGISTER_CLIENT_ROUTE, REGISTER_PATH};

/// The product's routes, before the state is attached. Tests add their own routes to this.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(ops::discovery))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/ready", get(ops::ready))
        .route(REGISTER_PATH, post(register::post_register))
        .route(
            REGISTER_CLIENT_ROUTE,
            get(manage::get_client)
                .put(manage::put_client)
                .delete(manage::delete_client),
        )
        .route("/token", post(token::post_token))
        .route("/introspect", post(introspect::post_introspect))
        .route(crate::sandbox::TPP_JWKS_PATH, get(ops::sandbox_tpp_jwks))
        .route(
            crate::sandbox::DIRECTORY_JWKS_PATH,
            get(ops::sandbox_directory_jwks),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
}

/// `routes` (and `extra`) with the state and the middleware: what the listener serves.
pub fn app(state: SharedState, extra: Router<SharedState>, request_timeout: Duration) -> Router {
    routes()
        .merge(extra)
        .with_state(state)
        .layer(axum::middleware::from_fn(move |request, next| {
            middleware::timeout(request_timeout, request, next)
        }))
        // Outermost: it sees the timeout's 503 too, and every response gets the interaction id.
        .layer(axum::middleware::from_fn(middleware::request_log))
}

/// Every route the server answers, as (method, path template). The OpenAPI document in
/// docs/openapi.json describes exactly these (a test holds the two together).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", REGISTER_PATH),
    ("GET", REGISTER_CLIENT_ROUTE),
    ("PUT", REGISTER_CLIENT_ROUTE),
    ("DELETE", REGISTER_CLIENT_ROUTE),
    ("POST", "/token"),
    ("POST", "/introspect"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", crate::sandbox::TPP_JWKS_PATH),
    ("GET", crate::sandbox::DIRECTORY_JWKS_PATH),
];
