//! RFC 7592 access to a registration (`GET`/`PUT`/`DELETE /register/{ClientId}`), in this
//! order: a client certificate; a `Bearer` token that exists, is live and, when bound, was
//! issued to this certificate; the token's client is the path's ClientId and exists and is
//! enabled. A token presented for another ClientId, or for one that no longer exists, is
//! revoked at once: whoever holds it is probing.

use serde_json::json;

use super::access_token::{self, TokenRejected};
use crate::domain::{AuditAction, AuditOutcome, secret};
use crate::jose::JwksCache;
use crate::jose::revoked::{self, RevokedKeyError};
use crate::pki::ClientCertificate;
use crate::store::{AuditRecord, ClientRecord, StoreError, TokenRecord, TokenStore};

/// Why a management call is refused. `Display` is the public description (401
/// `invalid_token`, except [`AccessError::Store`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    #[error("a Bearer access token from the token endpoint is required")]
    NoToken,
    #[error(transparent)]
    Token(#[from] TokenRejected),
    #[error("the access token was not issued to this ClientId; it has been revoked")]
    OtherClient,
    #[error("the client is disabled")]
    Disabled,
    #[error("unknown ClientId; the access token has been revoked")]
    UnknownClient,
    /// The directory lists the transport certificate as revoked, or its revoked keys cannot be
    /// read in `hard` mode (401 `invalid_client`).
    #[error(transparent)]
    RevokedKey(#[from] RevokedKeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `rfc7591` mode: the AS says the token is not active (expired, revoked or unknown).
    #[error("the access token is not active at the authorization server")]
    Inactive,
    /// `rfc7591` mode: the AS issued the token to another client, or names none.
    #[error("the access token was not issued to this ClientId")]
    NotForClient,
    /// `rfc7591` mode: the token is not bound to the certificate it came over.
    #[error("the access token is not bound to this client certificate")]
    NotBound,
    /// `rfc7591` mode: the AS knows the client, this server does not.
    #[error("unknown ClientId")]
    UnknownClientHere,
    /// `rfc7591` mode: introspection at the AS failed (503); the reason is logged.
    #[error("the service is temporarily unavailable; retry shortly")]
    AsUnavailable(String),
}

/// Why a token was revoked on the spot, for the audit record and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revocation {
    OtherClient,
    UnknownClient,
}

impl Revocation {
    fn reason(self) -> &'static str {
        match self {
            Self::OtherClient => "ClientId is not the token's client",
            Self::UnknownClient => "unknown ClientId",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::OtherClient => "certificate_or_client_mismatch",
            Self::UnknownClient => "unknown_client_id",
        }
    }
}

/// The directory's revoked keys, as management calls check them: the transport certificate
/// against the client's `software_jwks_revoked_endpoint`.
pub struct RevokedKeys<'a> {
    pub jwks: &'a JwksCache,
    /// An unreadable set refuses (`server.tls.ocsp.mode = "hard"`).
    pub hard: bool,
}

impl RevokedKeys<'_> {
    /// The transport certificate against the client's `software_jwks_revoked_endpoint`, when
    /// it has one: every management call, whoever issued its token.
    pub async fn check(
        &self,
        client: &ClientRecord,
        certificate: &ClientCertificate,
    ) -> Result<(), RevokedKeyError> {
        match &client.jwks_revoked_uri {
            Some(location) => {
                revoked::check(
                    self.jwks,
                    location,
                    None,
                    Some(certificate.x5t_s256()),
                    self.hard,
                )
                .await
            }
            None => Ok(()),
        }
    }
}

/// Authorises a call on `client_id` with the `presented` bearer token over `certificate`;
/// returns the client.
pub async fn authorize<S: TokenStore>(
    store: &S,
    revoked_keys: RevokedKeys<'_>,
    certificate: &ClientCertificate,
    presented: Option<&str>,
    client_id: &str,
    interaction_id: Option<&str>,
    now: i64,
) -> Result<ClientRecord, AccessError> {
    let presented = presented.ok_or(AccessError::NoToken)?;
    // One read for both (one round trip on PostgreSQL); the client is looked at only once the
    // token has passed.
    let (token, client) = store
        .find_token_and_client(&secret::hash(presented), client_id)
        .await?;
    let token = token.ok_or(TokenRejected::Unknown)?;
    access_token::check_live(&token, now)?;
    access_token::check_bound(&token, certificate.x5t_s256())?;
    if token.client_id != client_id {
        revoke(store, &token, Revocation::OtherClient, interaction_id, now).await;
        return Err(AccessError::OtherClient);
    }
    match client {
        Some(client) if client.enabled => {
            revoked_keys.check(&client, certificate).await?;
            Ok(client)
        }
        Some(_) => Err(AccessError::Disabled),
        None => {
            revoke(
                store,
                &token,
                Revocation::UnknownClient,
                interaction_id,
                now,
            )
            .await;
            Err(AccessError::UnknownClient)
        }
    }
}

/// Revokes `token` with an audit record; a failure is logged, the refusal stands anyway.
async fn revoke<S: TokenStore>(
    store: &S,
    token: &TokenRecord,
    why: Revocation,
    interaction_id: Option<&str>,
    now: i64,
) {
    let audit = AuditRecord::new(now, AuditAction::TokenRevoke, AuditOutcome::Success)
        .client_id(&token.client_id)
        .interaction(interaction_id)
        .detail(json!({ "reason": why.reason() }));
    match store.revoke_token(&token.token_hash, &audit).await {
        Ok(_) => {
            crate::metrics::token_revoked(why.label());
            tracing::info!(client_id = %token.client_id, reason = why.reason(), "token revoked");
        }
        Err(e) => tracing::warn!(error = %e, "could not revoke a token"),
    }
}

/// The `Bearer` token of an `Authorization` header value, if well-formed (RFC 6750 §2.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    let well_formed = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    (scheme.eq_ignore_ascii_case("bearer") && well_formed).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        for (value, want) in [
            ("Bearer abc-DEF_123", Some("abc-DEF_123")),
            ("bearer abc", Some("abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Basic abc", None),
            ("Bearer a b", None),
            ("Bearer a\"b", None),
        ] {
            assert_eq!(bearer_token(value), want, "{value}");
        }
    }

    #[test]
    fn revocations_have_fixed_labels() {
        assert_eq!(
            Revocation::OtherClient.label(),
            "certificate_or_client_mismatch"
        );
        assert_eq!(Revocation::UnknownClient.label(), "unknown_client_id");
    }
}
