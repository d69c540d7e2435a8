//! The one route table.

use std::time::Duration;

use axum::routing::{get, post};
use axum::{Extension, Router};

use super::error::ApiError;
use super::state::SharedState;
use super::{introspect, manage, middleware, ops, register, token};
use crate::domain::version::PROFILES;

/// The product's routes, before the state is attached. Tests add their own routes to this.
/// Every DCR version has its routes; each carries its version for the
/// [`Served`](super::extract::Served) extractor, which answers 404 for a version not served.
pub fn routes() -> Router<SharedState> {
    let mut router = Router::new();
    for profile in PROFILES {
        let version = Extension(profile.version);
        router = router
            .route(
                profile.register_path,
                post(register::post_register)
                    .fallback(wrong_method)
                    .layer(version),
            )
            .route(
                profile.client_route,
                get(manage::get_client)
                    .put(manage::put_client)
                    .delete(manage::delete_client)
                    .fallback(wrong_method)
                    .layer(version),
            );
    }
    router
        .route("/.well-known/openid-configuration", get(ops::discovery))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/ready", get(ops::ready))
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

/// Another method on a registration path: 405 where the version is served, and 404 (from
/// [`Served`](super::extract::Served)) where it is not, as for the methods it has.
async fn wrong_method(_: super::extract::Served) -> ApiError {
    ApiError::method_not_allowed()
}

/// `routes` (and `extra`) with the state and the middleware: what the listener serves.
pub fn app(state: SharedState, extra: Router<SharedState>, request_timeout: Duration) -> Router {
    routes()
        .merge(extra)
        .with_state(state.clone())
        // Innermost: it sees the route, and its 429s and 503s are logged and counted.
        .layer(axum::middleware::from_fn_with_state(
            state,
            middleware::limit,
        ))
        .layer(axum::middleware::from_fn(move |request, next| {
            middleware::timeout(request_timeout, request, next)
        }))
        // Outermost: it sees the timeout's 503 too, and every response gets the interaction id.
        .layer(axum::middleware::from_fn(middleware::request_log))
}

/// Every route the server answers, as (method, path template). The OpenAPI document in
/// docs/openapi.json describes exactly these (a test holds the two together).
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    let mut routes = Vec::new();
    for p in PROFILES {
        routes.push(("POST", p.register_path));
        for method in ["GET", "PUT", "DELETE"] {
            routes.push((method, p.client_route));
        }
    }
    routes.extend_from_slice(OTHER_ROUTES);
    routes
}

/// The routes that are the same for every DCR version.
const OTHER_ROUTES: &[(&str, &str)] = &[
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
