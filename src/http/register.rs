//! `POST /open-banking/v3.N/register`: the registration pipeline of the path's version,
//! behind a client certificate.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::error::ApiError;
use super::extract::{Guarded, InteractionId, PresentedCert, Served};
use super::response::{Known, client_json};
use super::state::AppState;
use crate::domain::{AuditAction, AuditOutcome};
use crate::registration::{Input, RegistrationError, refusal};
use crate::store::AuditRecord;

/// The request's `Content-Type`, for the envelope step.
pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// `POST /open-banking/v3.N/register`.
pub async fn post_register(
    State(state): State<Arc<AppState>>,
    Served(version): Served,
    interaction: InteractionId,
    headers: HeaderMap,
    Guarded {
        guard: PresentedCert(certificate),
        body,
    }: Guarded<PresentedCert>,
) -> Result<Response, ApiError> {
    let now = crate::clock::now();
    // Who tried, for the audit record of a refusal.
    let refused = || {
        AuditRecord::new(now, AuditAction::Register, AuditOutcome::Refused)
            .certificate(Some(certificate.x5t_s256().to_string()))
            .interaction(interaction.as_deref())
    };
    if let Err(refusal) = state.ocsp.check(&certificate).await {
        body.drain().await;
        let e = RegistrationError::Certificate(refusal);
        refusal::record(&state.store, &e, version, refused()).await;
        return Err(ApiError::from(&e));
    }
    let bytes = body.read().await.map_err(ApiError::registration_body)?;
    let input = Input {
        certificate: &certificate,
        content_type: content_type(&headers),
        body: &bytes,
        interaction_id: interaction.as_deref(),
        version,
    };
    let result = match &state.behind {
        None => state.registrar.register(&state.store, &input, now).await,
        Some(behind) => {
            let connected = behind.connected()?;
            state
                .registrar
                .register_behind(&state.store, &behind.at(&connected), &input, now)
                .await
        }
    };
    match result {
        Ok(registered) => {
            crate::metrics::registration(
                AuditAction::Register.as_str(),
                AuditOutcome::Success.as_str(),
                "",
                version,
            );
            let software_id = registered.body["software_id"].as_str();
            Ok(Known::attach(
                client_json(StatusCode::CREATED, &registered.body),
                Some(&registered.client_id),
                software_id,
            ))
        }
        Err(e) => {
            // What they tried: the software and organisation the SSA names, unverified.
            let (software_id, org_id) = refusal::claimed_identity(&bytes);
            let audit = refused().software(software_id, org_id);
            refusal::record(&state.store, &e, version, audit).await;
            Err(ApiError::from(&e))
        }
    }
}
