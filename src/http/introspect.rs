//! `POST /introspect` (RFC 7662), for API gateways listed in `[oauth.introspection]`.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;

use super::error::ApiError;
use super::extract::{ClientCert, Guarded};
use super::response::client_json;
use super::state::AppState;
use crate::oauth::form::Form;
use crate::oauth::introspection;

/// A caller whose certificate may introspect.
pub struct Introspector;

impl<S> FromRequestParts<S> for Introspector
where
    S: Send + Sync,
    Arc<AppState>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let app = Arc::<AppState>::from_ref(state);
        // `rfc7591` mode: tokens are the bank's AS's; introspect them there.
        if app.behind.is_some() {
            return Err(ApiError::not_found());
        }
        let ClientCert(cert) = ClientCert::from_request_parts(parts, state).await?;
        if introspection::may_introspect(&app.config.oauth.introspection, &cert) {
            Ok(Self)
        } else {
            Err(ApiError::introspection_not_allowed())
        }
    }
}

/// `POST /introspect`.
pub async fn post_introspect(
    State(state): State<Arc<AppState>>,
    Guarded { body, .. }: Guarded<Introspector>,
) -> Result<Response, ApiError> {
    let bytes = body.read().await.map_err(ApiError::oauth_body)?;
    let form = Form::parse(&bytes)?;
    let token = form
        .non_empty("token")
        .ok_or_else(|| ApiError::missing_parameter("token"))?;
    let body = introspection::introspect(&state.store, token, crate::clock::now())
        .await
        .map_err(ApiError::from_store)?;
    Ok(client_json(StatusCode::OK, &body))
}
