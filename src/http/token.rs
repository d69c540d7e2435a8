//! `POST /token`: the client-credentials grant (`oauth::client_credentials`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::error::{ApiError, TokenRefusal};
use super::extract::{InteractionId, Peer, PendingBody};
use super::response::{Known, client_json};
use super::state::AppState;
use crate::oauth::TokenError;
use crate::oauth::client_auth::client_secret::parse_basic;
use crate::oauth::client_credentials::{self, Issued, TokenRequest};
use crate::oauth::form::Form;

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `POST /token`.
pub async fn post_token(
    State(state): State<Arc<AppState>>,
    Peer(certificate): Peer,
    interaction: InteractionId,
    headers: HeaderMap,
    body: PendingBody,
) -> Result<Response, ApiError> {
    // `rfc7591` mode: the bank's AS issues the tokens.
    if state.behind.is_some() {
        body.drain().await;
        return Err(ApiError::not_found());
    }
    let used_basic = headers.contains_key(header::AUTHORIZATION);
    match issue(&state, certificate.as_deref(), &interaction, &headers, body).await {
        Ok(issued) => Ok(Known::attach(
            client_json(StatusCode::OK, &issued.body),
            Some(&issued.client_id),
            Some(&issued.software_id),
        )),
        Err(TokenRefusal::Early(e)) => Err(e),
        Err(TokenRefusal::Grant(e)) => {
            // The public description is generic for invalid_client; the cause is logged.
            let (reason, detail) = match &e {
                TokenError::InvalidClient(cause) => (cause.reason(), cause.to_string()),
                other => ("", other.to_string()),
            };
            crate::metrics::token_refused(e.code().as_str(), reason);
            tracing::info!(error = e.code().as_str(), reason = %detail, "token request refused");
            Err(ApiError::token(&e, used_basic))
        }
    }
}

/// The client_id a token request claims (unverified: only ever a rate-limit key next to the
/// certificate): `client_id`, the Basic user, or the client assertion's `iss`.
fn claimed_client_id(form: &Form, basic: Option<&str>) -> String {
    form.get("client_id")
        .or(basic)
        .map(str::to_string)
        .or_else(|| {
            let claims = crate::jose::jws::unverified_claims(form.get("client_assertion")?)?;
            claims.get("iss")?.as_str().map(str::to_string)
        })
        .unwrap_or_default()
}

async fn issue(
    state: &AppState,
    certificate: Option<&crate::pki::ClientCertificate>,
    interaction: &InteractionId,
    headers: &HeaderMap,
    body: PendingBody,
) -> Result<Issued, TokenRefusal> {
    if !is_form(headers) {
        return Err(TokenError::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded".into(),
        )
        .into());
    }
    let bytes = body.read().await?;
    let form = Form::parse(&bytes).map_err(TokenError::from)?;
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(parse_basic(v.to_str().unwrap_or_default()).map_err(TokenError::from)?),
    };
    if let Some(cert) = certificate {
        let claimed = claimed_client_id(&form, basic.as_ref().map(|b| b.0.as_str()));
        state.limits.token(&cert.thumbprint_sha256, &claimed)?;
        state
            .ocsp
            .check(cert)
            .await
            .map_err(ApiError::certificate_refused)?;
    }
    let req = TokenRequest {
        form: &form,
        basic,
        certificate,
        interaction_id: interaction.as_deref(),
    };
    Ok(client_credentials::issue(
        &state.store,
        &state.jwks,
        &state.tokens,
        req,
        crate::clock::now(),
    )
    .await?)
}
