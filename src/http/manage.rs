//! `GET`, `PUT` and `DELETE /open-banking/v3.N/register/{ClientId}` (RFC 7592 as OBIE profiles
//! it), behind the [`RegistrationAccess`] extractor. Any served version's path reaches any
//! client: GET answers the registration as it was registered, PUT moves the client to the
//! path's version (its rules decide), DELETE is the same everywhere.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::{ClientCert, Guarded, InteractionId, Served};
use super::register::content_type;
use super::response::{Known, client_json, client_json_text};
use super::state::AppState;
use crate::domain::{AuditAction, AuditOutcome, SpecVersion};
use crate::oauth::as_access;
use crate::oauth::registration_access::{self, bearer_token};
use crate::pki::ClientCertificate;
use crate::registration::{Input, compensation, refusal};
use crate::store::{AuditRecord, ClientRecord, ClientStore};

/// An authorised management call: the path's client, and the certificate it came over
/// (see `oauth::registration_access` for the rules).
pub struct RegistrationAccess {
    pub client: ClientRecord,
    pub certificate: Arc<ClientCertificate>,
    pub interaction: InteractionId,
    /// The version of the path (served).
    pub version: SpecVersion,
}

impl<S> FromRequestParts<S> for RegistrationAccess
where
    S: Send + Sync,
    Arc<AppState>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Served(version) = Served::from_request_parts(parts, state).await?;
        let ClientCert(certificate) = ClientCert::from_request_parts(parts, state).await?;
        let Ok(interaction) = InteractionId::from_request_parts(parts, state).await;
        let Path(client_id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let app = Arc::<AppState>::from_ref(state);
        let revoked_keys = registration_access::RevokedKeys {
            jwks: &app.jwks,
            hard: app.config.server.tls.ocsp.mode.is_hard(),
        };
        let now = crate::clock::now();
        let client = match &app.behind {
            None => {
                registration_access::authorize(
                    &app.store,
                    revoked_keys,
                    &certificate,
                    presented,
                    &client_id,
                    interaction.as_deref(),
                    now,
                )
                .await?
            }
            Some(behind) => {
                let connected = behind.connected()?;
                as_access::authorize(
                    &app.store,
                    as_access::TheAs {
                        server: &connected.server,
                        cache: &behind.introspection,
                    },
                    revoked_keys,
                    &certificate,
                    presented,
                    &client_id,
                    now,
                )
                .await?
            }
        };
        Ok(Self {
            client,
            certificate,
            interaction,
            version,
        })
    }
}

impl RegistrationAccess {
    /// The audit record of `action` on this client, ending in `outcome` at `at`.
    fn audit(&self, action: AuditAction, outcome: AuditOutcome, at: i64) -> AuditRecord {
        AuditRecord::new(at, action, outcome)
            .client(&self.client)
            .certificate(Some(self.certificate.x5t_s256().to_string()))
            .interaction(self.interaction.as_deref())
    }
}

/// `GET /register/{ClientId}`: the registration, without the secret.
pub async fn get_client(access: RegistrationAccess) -> Response {
    let client = access.client;
    Known::attach(
        client_json_text(StatusCode::OK, client.metadata),
        Some(&client.client_id),
        Some(&client.software_id),
    )
}

/// `PUT /register/{ClientId}`: the full pipeline on the new JWS; tokens stay valid.
pub async fn put_client(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Guarded {
        guard: access,
        body,
    }: Guarded<RegistrationAccess>,
) -> Result<Response, ApiError> {
    let bytes = body.read().await.map_err(ApiError::registration_body)?;
    let input = Input {
        certificate: &access.certificate,
        content_type: content_type(&headers),
        body: &bytes,
        interaction_id: access.interaction.as_deref(),
        version: access.version,
    };
    let now = crate::clock::now();
    let result = match &state.behind {
        None => {
            state
                .registrar
                .update(&state.store, &access.client, &input, now)
                .await
        }
        Some(behind) => {
            let connected = behind.connected()?;
            state
                .registrar
                .update_behind(
                    &state.store,
                    &behind.at(&connected),
                    &access.client,
                    &input,
                    now,
                )
                .await
        }
    };
    match result {
        Ok(body) => {
            crate::metrics::registration(
                AuditAction::Update.as_str(),
                AuditOutcome::Success.as_str(),
                "",
                access.version,
            );
            Ok(Known::attach(
                client_json(StatusCode::OK, &body),
                Some(&access.client.client_id),
                Some(&access.client.software_id),
            ))
        }
        Err(e) => {
            let audit = access.audit(AuditAction::Update, AuditOutcome::Refused, now);
            refusal::record(&state.store, &e, access.version, audit).await;
            Err(ApiError::from(&e))
        }
    }
}

/// `DELETE /register/{ClientId}`: the client and every token issued to it, in one transaction.
pub async fn delete_client(
    State(state): State<Arc<AppState>>,
    access: RegistrationAccess,
) -> Result<Response, ApiError> {
    let audit = access.audit(
        AuditAction::Delete,
        AuditOutcome::Success,
        crate::clock::now(),
    );
    let client_id = &access.client.client_id;
    // `rfc7591` mode: deleted at the AS first; only what it has deleted (or never knew, or
    // no longer lets us manage) is deleted here.
    if let Some(behind) = &state.behind {
        let connected = behind.connected()?;
        compensation::delete_at_as(&state.store, &behind.at(&connected), client_id)
            .await
            .map_err(|e| ApiError::from(&e))?;
    }
    if state
        .store
        .delete_client(client_id, &audit)
        .await
        .map_err(ApiError::from_store)?
    {
        tracing::info!(client_id = %client_id, "client deleted with its tokens");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::invalid_token("unknown ClientId"))
    }
}
