//! `POST /token`: the client-credentials grant, and the access tokens it issues.
//!
//! The client authenticates with exactly the method it registered:
//! - `private_key_jwt`: an assertion signed with a key from the client's JWKS (the SSA's
//!   `software_jwks_endpoint`), `iss` = `sub` = client_id, `aud` = the token endpoint or the
//!   issuer, `exp` required, lifetime up to an hour, `jti` single-use (in the database);
//! - `tls_client_auth`: the presented certificate's subject equals the registered DN (RDN sets);
//! - `client_secret_basic` / `client_secret_post`: only when listed in
//!   `token_endpoint_auth_methods`; compared with the stored hash in constant time.
//!
//! Tokens are opaque random strings stored only as SHA-256 hashes. A token issued over mTLS is
//! bound to that certificate (RFC 8705 `cnf.x5t#S256`).

use std::collections::HashMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::jose::{Jws, printable};
use crate::mtls::{ClientCertificate, DistinguishedName, PeerIdentity};
use crate::registration::claims_access as access;
use crate::server::AppState;
use crate::store::{
    AuditRecord, ClientRecord, ClientStore, Conflict, JtiRecord, StoreError, TokenRecord,
    TokenStore,
};

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest accepted client-assertion lifetime (`exp` − `iat`, or `exp` − now).
pub const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// An RFC 6749 §5.2 token error. `Display` is the public description.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Client authentication failed (401 `invalid_client`).
    #[error("client authentication failed: {0}")]
    InvalidClient(String),
    /// A malformed request (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
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
    pub fn to_api_error(&self, used_basic: bool) -> ApiError {
        let (status, code) = match self {
            Self::InvalidClient(_) => (StatusCode::UNAUTHORIZED, "invalid_client"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::UnsupportedGrantType(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            Self::UnauthorizedClient => (StatusCode::BAD_REQUEST, "unauthorized_client"),
            Self::InvalidScope(_) => (StatusCode::BAD_REQUEST, "invalid_scope"),
            Self::Unavailable => return ApiError::unavailable(),
            Self::Internal(detail) => return ApiError::internal(detail),
        };
        let mut e = ApiError::new(status, code, self.to_string());
        if used_basic && status == StatusCode::UNAUTHORIZED {
            e.www_authenticate = Some("Basic realm=\"dcr-server\"");
        }
        e
    }

    fn from_store(e: StoreError) -> Self {
        if e.is_transient() {
            Self::Unavailable
        } else {
            Self::Internal(e.to_string())
        }
    }
}

/// SHA-256 of an access token, hex: the only form in which tokens are stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 32 random bytes, base64url (43 characters).
pub fn new_access_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Parses an `application/x-www-form-urlencoded` body; a repeated parameter is an error
/// (RFC 6749 §3.2).
pub fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, TokenError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| TokenError::InvalidRequest("the body is not a valid form".into()))?;
    let mut form = HashMap::new();
    for (k, v) in pairs {
        if form.contains_key(&k) {
            return Err(TokenError::InvalidRequest(format!(
                "parameter `{}` is repeated",
                printable(&k, 40)
            )));
        }
        form.insert(k, v);
    }
    Ok(form)
}

/// `Authorization: Basic` credentials, per RFC 6749 §2.3.1 (form-urlencoded, then base64).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, TokenError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || TokenError::InvalidClient("malformed Basic credentials".into());
    let value = value.to_str().map_err(|_| bad())?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(TokenError::InvalidRequest(
            "only Basic client authentication is accepted in the Authorization header".into(),
        ));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, v)| v)
            .ok_or_else(bad)
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

/// What the caller presented to authenticate.
enum Credentials {
    Assertion(String),
    Secret {
        client_id: String,
        secret: String,
        method: &'static str,
    },
    Certificate(String),
}

/// The token endpoint's logic, over parsed inputs.
pub struct TokenRequest<'a> {
    pub form: &'a HashMap<String, String>,
    pub basic: Option<(String, String)>,
    pub certificate: Option<&'a ClientCertificate>,
    pub interaction_id: Option<&'a str>,
}

fn credentials(req: &TokenRequest<'_>) -> Result<Credentials, TokenError> {
    let form = req.form;
    let assertion = form.get("client_assertion");
    let post_secret = form.get("client_secret");
    let presented = [
        assertion.is_some(),
        post_secret.is_some(),
        req.basic.is_some(),
    ];
    if presented.iter().filter(|p| **p).count() > 1 {
        return Err(TokenError::InvalidRequest(
            "use exactly one client authentication method".into(),
        ));
    }
    if let Some(assertion) = assertion {
        match form.get("client_assertion_type").map(String::as_str) {
            Some(CLIENT_ASSERTION_TYPE) => {}
            _ => {
                return Err(TokenError::InvalidRequest(format!(
                    "client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
                )));
            }
        }
        return Ok(Credentials::Assertion(assertion.clone()));
    }
    if let Some((client_id, secret)) = &req.basic {
        return Ok(Credentials::Secret {
            client_id: client_id.clone(),
            secret: secret.clone(),
            method: "client_secret_basic",
        });
    }
    let client_id = form
        .get("client_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            TokenError::InvalidClient("no client authentication was presented".into())
        })?;
    match post_secret {
        Some(secret) => Ok(Credentials::Secret {
            client_id: client_id.clone(),
            secret: secret.clone(),
            method: "client_secret_post",
        }),
        None => Ok(Credentials::Certificate(client_id.clone())),
    }
}

impl AppState {
    async fn client_for(&self, client_id: &str) -> Result<ClientRecord, TokenError> {
        match self.store.get_client(client_id).await {
            Ok(Some(c)) if c.enabled => Ok(c),
            Ok(Some(_)) => Err(TokenError::InvalidClient("the client is disabled".into())),
            Ok(None) => Err(TokenError::InvalidClient("unknown client".into())),
            Err(e) => Err(TokenError::from_store(e)),
        }
    }

    /// Authenticates the client with its registered method; returns it, and the assertion's
    /// `jti` to remember in the same transaction as the token.
    async fn authenticate(
        &self,
        req: &TokenRequest<'_>,
        now: i64,
    ) -> Result<(ClientRecord, Option<JtiRecord>), TokenError> {
        let methods = &self.config.open_banking.dcr.token_endpoint_auth_methods;
        match credentials(req)? {
            Credentials::Assertion(assertion) => {
                let (client, jti) = self.authenticate_assertion(&assertion, now).await?;
                Ok((client, Some(jti)))
            }
            Credentials::Secret {
                client_id,
                secret,
                method,
            } => {
                if !methods.iter().any(|m| m == method) {
                    return Err(TokenError::InvalidClient(format!(
                        "{method} is not enabled"
                    )));
                }
                let client = self.client_for(&client_id).await?;
                if client.token_endpoint_auth_method != method {
                    return Err(TokenError::InvalidClient(format!(
                        "the client registered {}, not {method}",
                        client.token_endpoint_auth_method
                    )));
                }
                let presented = crate::registration::hash_secret(&secret);
                if aws_lc_rs::constant_time::verify_slices_are_equal(
                    presented.as_bytes(),
                    client.client_secret_hash.as_bytes(),
                )
                .is_err()
                {
                    return Err(TokenError::InvalidClient("wrong client secret".into()));
                }
                Ok((client, None))
            }
            Credentials::Certificate(client_id) => {
                let client = self.client_for(&client_id).await?;
                if client.token_endpoint_auth_method != "tls_client_auth" {
                    return Err(TokenError::InvalidClient(format!(
                        "the client registered {}; present its credentials",
                        client.token_endpoint_auth_method
                    )));
                }
                let cert = req.certificate.ok_or_else(|| {
                    TokenError::InvalidClient("tls_client_auth needs a client certificate".into())
                })?;
                let registered = client
                    .tls_client_auth_subject_dn
                    .as_deref()
                    .and_then(|dn| DistinguishedName::parse(dn).ok())
                    .ok_or_else(|| TokenError::Internal("registered DN does not parse".into()))?;
                if !registered.same_rdn_set(&cert.subject) {
                    return Err(TokenError::InvalidClient(
                        "the certificate's subject is not the registered tls_client_auth_subject_dn".into(),
                    ));
                }
                Ok((client, None))
            }
        }
    }

    async fn authenticate_assertion(
        &self,
        assertion: &str,
        now: i64,
    ) -> Result<(ClientRecord, JtiRecord), TokenError> {
        let invalid = |m: String| TokenError::InvalidClient(m);
        let jws = Jws::parse(assertion, &self.config.open_banking.dcr.signing_algorithms)
            .map_err(|e| invalid(format!("the client assertion {e}")))?;
        let claim = |e: access::ClaimError| invalid(format!("client assertion: {e}"));
        let iss = access::req_str(&jws.claims, "iss").map_err(claim)?;
        let sub = access::req_str(&jws.claims, "sub").map_err(claim)?;
        if iss != sub {
            return Err(invalid(
                "client assertion: `iss` and `sub` must both be the client_id".into(),
            ));
        }
        let client = self.client_for(iss).await?;
        if client.token_endpoint_auth_method != "private_key_jwt" {
            return Err(invalid(format!(
                "the client registered {}, not private_key_jwt",
                client.token_endpoint_auth_method
            )));
        }
        let jwks = &self.registrar.jwks;
        let verified = match &jws.kid {
            Some(kid) => {
                let key = jwks
                    .key(&client.jwks_uri, kid, jws.alg, true)
                    .await
                    .map_err(|e| invalid(format!("client assertion: {e}")))?;
                jws.verify(&key, kid).is_ok()
            }
            None => jwks
                .keys_for(&client.jwks_uri, jws.alg, true)
                .await
                .map_err(|e| invalid(format!("client assertion: {e}")))?
                .iter()
                .any(|k| jws.verify(k, "").is_ok()),
        };
        if !verified {
            return Err(invalid(
                "the client assertion's signature does not verify".into(),
            ));
        }
        let skew = self.config.open_banking.dcr.clock_skew as i64;
        let exp = access::req_int(&jws.claims, "exp").map_err(claim)?;
        if now > exp + skew {
            return Err(invalid("the client assertion has expired".into()));
        }
        let iat = access::opt_int(&jws.claims, "iat").map_err(claim)?;
        if iat.is_some_and(|iat| iat > now + skew) {
            return Err(invalid(
                "the client assertion's `iat` is in the future".into(),
            ));
        }
        if exp - iat.unwrap_or(now) > MAX_ASSERTION_LIFETIME {
            return Err(invalid(format!(
                "the client assertion lives longer than {MAX_ASSERTION_LIFETIME} seconds"
            )));
        }
        let issuer = &self.config.server.issuer;
        let accepted = [
            self.config.token_endpoint(),
            issuer.clone(),
            self.config.issuer_base().to_string(),
        ];
        let aud_ok = match jws.claims.get("aud") {
            Some(Value::String(a)) => accepted.contains(a),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .any(|a| accepted.iter().any(|x| x == a)),
            _ => false,
        };
        if !aud_ok {
            return Err(invalid(format!(
                "client assertion `aud` must be {}",
                self.config.token_endpoint()
            )));
        }
        let jti = access::req_str_max(&jws.claims, "jti", 256).map_err(claim)?;
        let record = JtiRecord {
            scope: format!("assertion:{}", client.client_id),
            jti: jti.to_string(),
            expires_at: exp + skew,
        };
        Ok((client, record))
    }

    /// The whole grant: authenticate, check the grant and scope, issue and store a token.
    pub async fn issue_token(
        &self,
        req: &TokenRequest<'_>,
        now: i64,
    ) -> Result<Issued, TokenError> {
        match req.form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {}
            Some(other) => return Err(TokenError::UnsupportedGrantType(printable(other, 60))),
            None => return Err(TokenError::InvalidRequest("grant_type is required".into())),
        }
        let (client, jti) = self.authenticate(req, now).await?;
        if !client
            .grant_types
            .split(' ')
            .any(|g| g == "client_credentials")
        {
            return Err(TokenError::UnauthorizedClient);
        }
        let registered: Vec<&str> = client.scope.split_whitespace().collect();
        let requested = req
            .form
            .get("scope")
            .map(String::as_str)
            .unwrap_or_default();
        let scope = if requested.trim().is_empty() {
            registered.join(" ")
        } else {
            let mut granted: Vec<&str> = Vec::new();
            for s in requested.split_whitespace() {
                if !registered.contains(&s) {
                    return Err(TokenError::InvalidScope(printable(s, 60)));
                }
                if !granted.contains(&s) {
                    granted.push(s);
                }
            }
            granted.join(" ")
        };
        let lifetime = self.config.oauth.token.access_token_lifetime as i64;
        let token = new_access_token();
        let record = TokenRecord {
            token_hash: hash_token(&token),
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            cert_thumbprint: req.certificate.map(|c| c.x5t_s256()),
            issued_at: now,
            expires_at: now + lifetime,
            revoked: false,
        };
        let audit = AuditRecord {
            at: now,
            action: "token.issue".into(),
            outcome: "success".into(),
            client_id: Some(client.client_id.clone()),
            software_id: Some(client.software_id.clone()),
            org_id: Some(client.org_id.clone()),
            cert_thumbprint: record.cert_thumbprint.clone(),
            interaction_id: req.interaction_id.map(str::to_string),
            ..AuditRecord::default()
        };
        // The assertion's jti is remembered in the token's transaction: one write, and a
        // replayed assertion cannot get a token however the two requests interleave.
        match self
            .store
            .insert_token(&record, jti.as_slice(), &audit)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(Conflict::Jti(_))) => {
                return Err(TokenError::InvalidClient(
                    "the client assertion has been used before (replayed jti)".into(),
                ));
            }
            // Deleted between authentication and now: no token may outlive its client.
            Err(StoreError::Conflict(Conflict::UnknownClient)) => {
                return Err(TokenError::InvalidClient("unknown client".into()));
            }
            Err(e) => return Err(TokenError::from_store(e)),
        }
        crate::metrics::token_issued(&client.token_endpoint_auth_method);
        Ok(Issued {
            body: json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": lifetime,
                "scope": scope,
            }),
            client_id: client.client_id,
            software_id: client.software_id,
        })
    }
}

/// A token issued: the response body, and who got it (for the request's log line). No `Debug`:
/// the body holds the access token.
pub struct Issued {
    pub body: Value,
    pub client_id: String,
    pub software_id: String,
}

fn form_content_type(headers: &HeaderMap) -> bool {
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
    State(state): State<AppState>,
    identity: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let certificate = identity.and_then(|Extension(i)| i.certificate);
    let used_basic = headers.contains_key(header::AUTHORIZATION);
    let result = async {
        if !form_content_type(&headers) {
            return Err(TokenError::InvalidRequest(
                "Content-Type must be application/x-www-form-urlencoded".into(),
            ));
        }
        let bytes = crate::api::read_body(&headers, body, state.config.server.max_body_bytes)
            .await
            .map_err(|e| TokenError::InvalidRequest(e.description))?;
        let form = parse_form(&bytes)?;
        let interaction = crate::api::interaction_id(&headers);
        let req = TokenRequest {
            form: &form,
            basic: basic_credentials(&headers)?,
            certificate: certificate.as_deref(),
            interaction_id: interaction.as_deref(),
        };
        state.issue_token(&req, crate::clock::now()).await
    }
    .await;
    match result {
        Ok(issued) => crate::request_log::Known::attach(
            crate::api::client_json(StatusCode::OK, &issued.body),
            Some(&issued.client_id),
            Some(&issued.software_id),
        ),
        Err(e) => {
            let api = e.to_api_error(used_basic);
            tracing::info!(error = api.error, reason = %api.description, "token request refused");
            api.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn forms_refuse_repeated_parameters() {
        assert!(parse_form(b"grant_type=client_credentials&scope=").is_ok());
        assert!(matches!(
            parse_form(b"grant_type=a&grant_type=b"),
            Err(TokenError::InvalidRequest(_))
        ));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        let encoded = STANDARD.encode("my%3Aid:s%2Bcret");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("my:id".into(), "s+cret".into()))
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(basic_credentials(&h).is_err());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let t = new_access_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, new_access_token());
        assert_eq!(hash_token(&t).len(), 64);
    }
}
