//! The client-credentials grant (RFC 6749 §4.4): authenticate the client, check the grant and
//! the scope, mint a token and store it with its audit record and the assertion's `jti`.

use serde_json::{Value, json};

use super::access_token;
use super::client_auth::{
    self, AuthenticationFailure, ClientAuthError, ClientAuthPolicy, Credentials,
};
use super::form::{Form, FormError};
use crate::config::Config;
use crate::domain::{AuditAction, AuditOutcome, GrantType, OAuthErrorCode, Scope, Scopes};
use crate::jose::JwksCache;
use crate::pki::ClientCertificate;
use crate::store::{AuditRecord, ClientStore, Conflict, StoreError, TokenStore};
use crate::text::printable;

/// An RFC 6749 §5.2 token error. `Display` is the public description.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Client authentication failed (401 `invalid_client`). One description for every cause;
    /// the cause is for the log and the metric label.
    #[error("{}", client_auth::FAILED)]
    InvalidClient(ClientAuthError),
    /// A malformed request (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// A body over `server.max_body_bytes` (413 `invalid_request`).
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Not `client_credentials` (400 `unsupported_grant_type`).
    #[error("grant_type `{0}` is not supported; use client_credentials")]
    UnsupportedGrantType(String),
    /// The client did not register `client_credentials` (400 `unauthorized_client`).
    #[error("the client did not register the client_credentials grant type")]
    UnauthorizedClient,
    /// A scope beyond the registered ones (400 `invalid_scope`).
    #[error("scope `{0}` is not registered for this client")]
    InvalidScope(String),
    /// The database is unavailable (503).
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable,
    /// A bug or broken database (500); the detail is logged.
    #[error("the server could not process the request")]
    Internal(String),
}

impl TokenError {
    /// The RFC 6749 error code.
    pub fn code(&self) -> OAuthErrorCode {
        match self {
            Self::InvalidClient(_) => OAuthErrorCode::InvalidClient,
            Self::InvalidRequest(_) | Self::TooLarge(_) => OAuthErrorCode::InvalidRequest,
            Self::UnsupportedGrantType(_) => OAuthErrorCode::UnsupportedGrantType,
            Self::UnauthorizedClient => OAuthErrorCode::UnauthorizedClient,
            Self::InvalidScope(_) => OAuthErrorCode::InvalidScope,
            Self::Unavailable => OAuthErrorCode::TemporarilyUnavailable,
            Self::Internal(_) => OAuthErrorCode::ServerError,
        }
    }

    fn from_store(e: StoreError) -> Self {
        if e.is_transient() {
            Self::Unavailable
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<AuthenticationFailure> for TokenError {
    fn from(e: AuthenticationFailure) -> Self {
        match e {
            AuthenticationFailure::Client(e) => Self::InvalidClient(e),
            AuthenticationFailure::InvalidRequest(m) => Self::InvalidRequest(m),
            AuthenticationFailure::Store(e) => Self::from_store(e),
            AuthenticationFailure::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<FormError> for TokenError {
    fn from(e: FormError) -> Self {
        Self::InvalidRequest(e.to_string())
    }
}

/// What the token endpoint needs from the config, computed once.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub client_auth: ClientAuthPolicy,
    /// `oauth.token.access_token_lifetime`, seconds.
    pub lifetime: i64,
}

impl TokenPolicy {
    pub fn from_config(config: &Config) -> Self {
        let dcr = &config.open_banking.dcr;
        Self {
            client_auth: ClientAuthPolicy {
                revoked_keys_hard: config.server.tls.ocsp.mode.is_hard(),
                methods: dcr.token_endpoint_auth_methods.clone(),
                assertion: client_auth::private_key_jwt::AssertionPolicy {
                    algs: dcr.signing_algorithms.clone(),
                    clock_skew: dcr.clock_skew as i64,
                    audiences: vec![
                        config.token_endpoint(),
                        config.server.issuer.to_string(),
                        config.issuer_base().to_string(),
                    ],
                },
            },
            lifetime: config.oauth.token.access_token_lifetime as i64,
        }
    }
}

/// One token request, parsed.
pub struct TokenRequest<'a> {
    pub form: &'a Form,
    /// The decoded `Authorization: Basic` pair, if the request had one.
    pub basic: Option<(String, String)>,
    pub certificate: Option<&'a ClientCertificate>,
    pub interaction_id: Option<&'a str>,
}

/// A token issued: the response body, and who got it (for the request's log line). No `Debug`:
/// the body holds the access token.
pub struct Issued {
    pub body: Value,
    pub client_id: String,
    pub software_id: String,
}

/// The scope to grant: the registered scopes when none is asked for, else the requested ones
/// (each once), every one of which must be registered.
pub fn grant_scope(registered: &Scopes, requested: &str) -> Result<Scopes, TokenError> {
    if requested.trim().is_empty() {
        return Ok(Scopes::new(registered.as_slice().to_vec()));
    }
    let mut granted: Vec<Scope> = Vec::new();
    for s in requested.split_whitespace() {
        let scope = s
            .parse()
            .ok()
            .filter(|scope| registered.contains(*scope))
            .ok_or_else(|| TokenError::InvalidScope(printable(s, 60)))?;
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Ok(Scopes::new(granted))
}

/// The whole grant: authenticate, check the grant and scope, issue and store a token.
pub async fn issue<S: ClientStore + TokenStore>(
    store: &S,
    jwks: &JwksCache,
    policy: &TokenPolicy,
    req: TokenRequest<'_>,
    now: i64,
) -> Result<Issued, TokenError> {
    match req.form.get("grant_type") {
        Some(g) if g == GrantType::ClientCredentials.as_str() => {}
        Some(other) => return Err(TokenError::UnsupportedGrantType(printable(other, 60))),
        None => return Err(TokenError::InvalidRequest("grant_type is required".into())),
    }
    let credentials = Credentials::from_request(req.form, req.basic)?;
    let auth = client_auth::authenticate(
        store,
        jwks,
        &policy.client_auth,
        credentials,
        req.certificate,
        now,
    )
    .await?;
    let client = auth.client;
    if !client.grant_types.contains(GrantType::ClientCredentials) {
        return Err(TokenError::UnauthorizedClient);
    }
    let scope = grant_scope(&client.scope, req.form.get("scope").unwrap_or_default())?;
    let minted = access_token::mint(
        &client.client_id,
        scope,
        req.certificate,
        now,
        policy.lifetime,
    );
    let audit = AuditRecord::new(now, AuditAction::TokenIssue, AuditOutcome::Success)
        .client(&client)
        .certificate(minted.record.cert_thumbprint.clone())
        .interaction(req.interaction_id);
    // The assertion's jti is remembered in the token's transaction: one write, and a
    // replayed assertion cannot get a token however the two requests interleave.
    match store
        .insert_token(&minted.record, auth.jti.as_slice(), &audit)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(Conflict::Jti(_))) => {
            return Err(TokenError::InvalidClient(ClientAuthError::Replayed));
        }
        // Deleted between authentication and now: no token may outlive its client.
        Err(StoreError::Conflict(Conflict::UnknownClient)) => {
            return Err(TokenError::InvalidClient(ClientAuthError::UnknownClient));
        }
        Err(e) => return Err(TokenError::from_store(e)),
    }
    crate::metrics::token_issued(auth.method.as_str());
    Ok(Issued {
        body: json!({
            "access_token": minted.token,
            "token_type": "Bearer",
            "expires_in": policy.lifetime,
            "scope": minted.record.scope,
        }),
        client_id: client.client_id,
        software_id: client.software_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_granted_from_the_registered_ones() {
        let registered = &"openid accounts payments".parse().unwrap();
        let granted = |requested| grant_scope(registered, requested).unwrap().to_string();
        assert_eq!(granted(""), "openid accounts payments");
        assert_eq!(granted("  "), "openid accounts payments");
        assert_eq!(granted("payments"), "payments");
        assert_eq!(granted("accounts accounts openid"), "accounts openid");
        // Not registered, or not a scope at all.
        assert!(matches!(
            grant_scope(registered, "accounts admin"),
            Err(TokenError::InvalidScope(s)) if s == "admin"
        ));
        assert!(matches!(
            grant_scope(registered, "accounts fundsconfirmations"),
            Err(TokenError::InvalidScope(s)) if s == "fundsconfirmations"
        ));
    }

    #[test]
    fn every_invalid_client_has_the_same_public_description() {
        let causes = [
            ClientAuthError::UnknownClient,
            ClientAuthError::WrongSecret,
            ClientAuthError::Disabled,
            ClientAuthError::Replayed,
            ClientAuthError::WrongMethod {
                registered: "private_key_jwt".into(),
                presented: crate::domain::AuthMethod::TlsClientAuth,
            },
        ];
        for cause in causes {
            let e = TokenError::InvalidClient(cause.clone());
            assert_eq!(e.to_string(), client_auth::FAILED, "{cause}");
            assert_eq!(e.code().as_str(), "invalid_client");
        }
    }
}
