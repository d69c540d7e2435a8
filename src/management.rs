//! `GET`, `PUT` and `DELETE /open-banking/v3.2/register/{ClientId}` (RFC 7592 as OBIE profiles
//! it), and `POST /introspect` for API gateways.
//!
//! Authorisation, in this order: a client certificate; a `Bearer` token that exists, is not
//! revoked or expired, and — when bound — was issued to this certificate; the token's client is
//! the path's ClientId and exists. An unknown ClientId, or one that is not the token's client,
//! gives 401 and revokes the presented token at once.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::mtls::{ClientCertificate, PeerIdentity};
use crate::registration::Input;
use crate::server::AppState;
use crate::store::{AuditRecord, ClientRecord, ClientStore, TokenRecord, TokenStore};
use crate::token::hash_token;

/// 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
pub fn unauthorized(description: &str) -> ApiError {
    ApiError {
        www_authenticate: Some("Bearer error=\"invalid_token\""),
        ..ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
    }
}

fn no_certificate() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "a TLS client certificate (the TPP's transport certificate) is required",
    )
}

/// The `Bearer` token of the request, if well-formed.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    let well_formed = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    (scheme.eq_ignore_ascii_case("bearer") && well_formed).then_some(token)
}

/// An authorised management call.
struct Authorized {
    client: ClientRecord,
    certificate: std::sync::Arc<ClientCertificate>,
}

impl AppState {
    async fn revoke(&self, token: &TokenRecord, why: &str, interaction: Option<&str>) {
        let audit = AuditRecord {
            at: crate::clock::now(),
            action: "token.revoke".into(),
            outcome: "success".into(),
            client_id: Some(token.client_id.clone()),
            interaction_id: interaction.map(str::to_string),
            detail: Some(json!({ "reason": why }).to_string()),
            ..AuditRecord::default()
        };
        match self.store.revoke_token(&token.token_hash, &audit).await {
            Ok(_) => {
                crate::metrics::token_revoked(if why == "unknown ClientId" {
                    "unknown_client_id"
                } else {
                    "certificate_or_client_mismatch"
                });
                tracing::info!(client_id = %token.client_id, reason = why, "token revoked")
            }
            Err(e) => tracing::warn!(error = %e, "could not revoke a token"),
        }
    }

    async fn authorize(
        &self,
        identity: Option<Extension<PeerIdentity>>,
        headers: &HeaderMap,
        client_id: &str,
    ) -> Result<Authorized, ApiError> {
        let certificate = identity
            .and_then(|Extension(i)| i.certificate)
            .ok_or_else(no_certificate)?;
        let presented = bearer_token(headers).ok_or_else(|| {
            unauthorized("a Bearer access token from the token endpoint is required")
        })?;
        let token = self
            .store
            .find_token(&hash_token(presented))
            .await
            .map_err(ApiError::from_store)?
            .ok_or_else(|| unauthorized("the access token is not valid"))?;
        if token.revoked {
            return Err(unauthorized("the access token has been revoked"));
        }
        if token.expires_at <= crate::clock::now() {
            return Err(unauthorized("the access token has expired"));
        }
        if token
            .cert_thumbprint
            .as_deref()
            .is_some_and(|t| t != certificate.x5t_s256())
        {
            return Err(unauthorized(
                "the access token is bound to another client certificate",
            ));
        }
        let interaction = crate::api::interaction_id(headers);
        if token.client_id != client_id {
            self.revoke(
                &token,
                "ClientId is not the token's client",
                interaction.as_deref(),
            )
            .await;
            return Err(unauthorized(
                "the access token was not issued to this ClientId; it has been revoked",
            ));
        }
        match self
            .store
            .get_client(client_id)
            .await
            .map_err(ApiError::from_store)?
        {
            Some(client) if client.enabled => Ok(Authorized {
                client,
                certificate,
            }),
            Some(_) => Err(unauthorized("the client is disabled")),
            None => {
                self.revoke(&token, "unknown ClientId", interaction.as_deref())
                    .await;
                Err(unauthorized(
                    "unknown ClientId; the access token has been revoked",
                ))
            }
        }
    }
}

/// `GET /register/{ClientId}`: the registration, without the secret.
pub async fn get_client(
    State(state): State<AppState>,
    identity: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Response {
    match state.authorize(identity, &headers, &client_id).await {
        Ok(auth) => crate::request_log::Known::attach(
            crate::api::client_json_text(StatusCode::OK, auth.client.metadata),
            Some(&auth.client.client_id),
            Some(&auth.client.software_id),
        ),
        Err(e) => e.into_response(),
    }
}

/// `PUT /register/{ClientId}`: the full pipeline on the new JWS; tokens stay valid.
pub async fn put_client(
    State(state): State<AppState>,
    identity: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Body,
) -> Response {
    let auth = match state.authorize(identity, &headers, &client_id).await {
        Ok(a) => a,
        Err(e) => {
            // Read what the client is still sending, so that it sees the 401, not a reset.
            crate::api::drain(body).await;
            return e.into_response();
        }
    };
    let bytes =
        match crate::api::read_body(&headers, body, state.config.server.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
    let interaction = crate::api::interaction_id(&headers);
    let input = Input {
        certificate: Some(&auth.certificate),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body: &bytes,
        interaction_id: interaction.as_deref(),
    };
    let now = crate::clock::now();
    match state
        .registrar
        .update(&state.store, &auth.client, &input, now)
        .await
    {
        Ok(body) => {
            crate::metrics::registration("update", "success", "");
            crate::request_log::Known::attach(
                crate::api::client_json(StatusCode::OK, &body),
                Some(&client_id),
                Some(&auth.client.software_id),
            )
        }
        Err(e) => {
            let audit = AuditRecord {
                at: now,
                action: "update".into(),
                client_id: Some(client_id.clone()),
                software_id: Some(auth.client.software_id.clone()),
                org_id: Some(auth.client.org_id.clone()),
                cert_thumbprint: Some(auth.certificate.x5t_s256()),
                interaction_id: interaction,
                ..AuditRecord::default()
            };
            crate::api::refused(&state, &e, audit).await
        }
    }
}

/// `DELETE /register/{ClientId}`: the client and every token issued to it, in one transaction.
pub async fn delete_client(
    State(state): State<AppState>,
    identity: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Response {
    let auth = match state.authorize(identity, &headers, &client_id).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let audit = AuditRecord {
        at: crate::clock::now(),
        action: "delete".into(),
        outcome: "success".into(),
        client_id: Some(client_id.clone()),
        software_id: Some(auth.client.software_id.clone()),
        org_id: Some(auth.client.org_id.clone()),
        cert_thumbprint: Some(auth.certificate.x5t_s256()),
        interaction_id: crate::api::interaction_id(&headers),
        ..AuditRecord::default()
    };
    match state.store.delete_client(&client_id, &audit).await {
        Ok(true) => {
            tracing::info!(client_id = %client_id, "client deleted with its tokens");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => unauthorized("unknown ClientId").into_response(),
        Err(e) => ApiError::from_store(e).into_response(),
    }
}

/// Whether a certificate may call the introspection endpoint.
fn may_introspect(state: &AppState, cert: &ClientCertificate) -> bool {
    let cfg = &state.config.oauth.introspection;
    let thumbprint = cert.x5t_s256();
    cfg.allowed_thumbprints.contains(&thumbprint)
        || state
            .introspection_subjects
            .iter()
            .any(|dn| dn.same_rdn_set(&cert.subject))
}

/// `POST /introspect` (RFC 7662), for API gateways listed in `[oauth.introspection]`.
pub async fn post_introspect(
    State(state): State<AppState>,
    identity: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(cert) = identity.and_then(|Extension(i)| i.certificate) else {
        return no_certificate().into_response();
    };
    if !may_introspect(&state, &cert) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "this client certificate may not introspect tokens",
        )
        .into_response();
    }
    let bytes =
        match crate::api::read_body(&headers, body, state.config.server.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
    let form = match crate::token::parse_form(&bytes) {
        Ok(f) => f,
        Err(e) => return e.to_api_error(false).into_response(),
    };
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "`token` is required",
        )
        .into_response();
    };
    let record = match state.store.find_token(&hash_token(token)).await {
        Ok(r) => r,
        Err(e) => return ApiError::from_store(e).into_response(),
    };
    let now = crate::clock::now();
    let live = match record {
        Some(t) if !t.revoked && t.expires_at > now => {
            match state.store.get_client(&t.client_id).await {
                Ok(Some(c)) if c.enabled => Some(t),
                Ok(_) => None,
                Err(e) => return ApiError::from_store(e).into_response(),
            }
        }
        _ => None,
    };
    let body = match live {
        Some(t) => {
            let mut body = json!({
                "active": true,
                "client_id": t.client_id,
                "scope": t.scope,
                "exp": t.expires_at,
                "iat": t.issued_at,
                "token_type": "Bearer",
            });
            if let Some(thumbprint) = t.cert_thumbprint {
                body["cnf"] = json!({ "x5t#S256": thumbprint });
            }
            body
        }
        None => json!({ "active": false }),
    };
    crate::api::client_json(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        for (value, want) in [
            ("Bearer abc-DEF_123", Some("abc-DEF_123")),
            ("bearer abc", Some("abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Basic abc", None),
            ("Bearer a b", None),
            ("Bearer a\"b", None),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            assert_eq!(bearer_token(&h), want, "{value}");
        }
    }
}
