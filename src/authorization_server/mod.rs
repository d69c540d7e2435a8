//! `rfc7591` mode (issue 27): the bank's authorization server as this server talks to it.
//! RFC 7591 registration, RFC 7592 management with the registration access token, RFC 7662
//! introspection. Only the wire: what to send is `registration::rfc7591_body`'s, what an
//! answer means for the TPP is the caller's, through the typed [`AsError`].
//!
//! Secrets that pass through here (the initial access token, registration access tokens, a
//! client secret the AS issues, the tokens introspected) are never logged or put in an error.

use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use crate::domain::OAuthErrorCode;

/// What the AS said to a registration call, when it is not a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AsError {
    /// 400 with an RFC 7591 error: the TPP's to fix. `error` is one of the four registration
    /// codes (any other the AS names is `invalid_client_metadata`); `description` is the AS's
    /// reason, cut to printable text.
    #[error("the authorization server refused: {description}")]
    Refused {
        error: OAuthErrorCode,
        description: String,
    },
    /// Not the TPP's doing: 401, 403 or 429 (our credentials or our rate), 5xx, a timeout, no
    /// connection, or an answer that is not RFC 7591 JSON. 503 to the TPP, nothing stored.
    #[error("the authorization server is unavailable: {0}")]
    Unavailable(String),
}

/// A client the AS registered (or updated): what this server keeps of its answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Registered {
    pub client_id: String,
    /// Shown to the TPP once, never stored here.
    pub client_secret: Option<String>,
    /// Kept here (encrypted when configured), never shown.
    pub registration_access_token: String,
    /// RFC 7592's URI of the client; only followed on the AS issuer's origin.
    pub registration_client_uri: Url,
}

// By hand: the secrets stay out of every log line.
impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("client_id", &self.client_id)
            .field(
                "registration_client_uri",
                &self.registration_client_uri.as_str(),
            )
            .finish_non_exhaustive()
    }
}

/// The registration codes an AS may answer a registration with (RFC 7591 §3.2.2).
const REGISTRATION_CODES: [OAuthErrorCode; 4] = [
    OAuthErrorCode::InvalidRedirectUri,
    OAuthErrorCode::InvalidClientMetadata,
    OAuthErrorCode::InvalidSoftwareStatement,
    OAuthErrorCode::UnapprovedSoftwareStatement,
];

/// The longest answer read from the AS.
const MAX_ANSWER: usize = 256 * 1024;

/// What a registration call's answer (`status`, `body`) means: the registration, or why not.
/// `origin` is the AS issuer's: a `registration_client_uri` elsewhere is not followed.
pub fn judge_registration(status: u16, body: &[u8], origin: &Url) -> Result<Registered, AsError> {
    let json = || -> Result<Map<String, Value>, AsError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(AsError::Unavailable(format!(
                "HTTP {status} without a JSON object"
            ))),
        }
    };
    match status {
        200 | 201 => {
            let map = json()?;
            let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_string);
            let client_id = text("client_id")
                .ok_or_else(|| AsError::Unavailable("an answer without client_id".into()))?;
            let registration_access_token = text("registration_access_token").ok_or_else(|| {
                AsError::Unavailable("an answer without registration_access_token".into())
            })?;
            let registration_client_uri = text("registration_client_uri")
                .and_then(|u| Url::parse(&u).ok())
                .filter(|u| u.origin() == origin.origin())
                .ok_or_else(|| {
                    AsError::Unavailable(
                        "an answer without a registration_client_uri on the issuer's origin".into(),
                    )
                })?;
            Ok(Registered {
                client_id,
                client_secret: text("client_secret"),
                registration_access_token,
                registration_client_uri,
            })
        }
        400 => {
            let map = json()?;
            let error = map
                .get("error")
                .and_then(Value::as_str)
                .and_then(|e| e.parse::<OAuthErrorCode>().ok())
                .filter(|e| REGISTRATION_CODES.contains(e))
                .unwrap_or(OAuthErrorCode::InvalidClientMetadata);
            let reason = map
                .get("error_description")
                .and_then(Value::as_str)
                .or_else(|| map.get("error").and_then(Value::as_str))
                .unwrap_or("no reason given");
            Err(AsError::Refused {
                error,
                description: format!(
                    "the authorization server refused the registration: {}",
                    crate::text::printable(reason, 200)
                ),
            })
        }
        other => Err(AsError::Unavailable(format!("answered HTTP {other}"))),
    }
}

/// The bank's AS, as the endpoints and credentials of the config name it.
#[derive(Clone)]
pub struct AuthorizationServer {
    http: reqwest::Client,
    issuer: Url,
    registration_endpoint: Url,
    initial_access_token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("issuer", &self.issuer.as_str())
            .field(
                "registration_endpoint",
                &self.registration_endpoint.as_str(),
            )
            .finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// `http` should keep its connections alive (one pool for every call) and carry the AS's
    /// trust anchors; each call gives up after `timeout`.
    pub fn new(
        http: reqwest::Client,
        issuer: Url,
        registration_endpoint: Url,
        initial_access_token: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            issuer,
            registration_endpoint,
            initial_access_token,
            timeout,
        }
    }

    /// RFC 7591 §3.1: registers `metadata` at the AS.
    pub async fn register(&self, metadata: &Map<String, Value>) -> Result<Registered, AsError> {
        let mut request = self
            .http
            .post(self.registration_endpoint.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(Value::Object(metadata.clone()).to_string());
        if let Some(token) = &self.initial_access_token {
            request = request.bearer_auth(token);
        }
        let (status, body) = send(request).await?;
        judge_registration(status, &body, &self.issuer)
    }
}

/// Sends `request`; its status and (capped) body, or why there is none.
async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), AsError> {
    let response = request.send().await.map_err(|e| {
        AsError::Unavailable(if e.is_timeout() {
            "no answer in time".into()
        } else {
            format!(
                "cannot be reached: {}",
                crate::pki::outbound::error_chain(&e)
            )
        })
    })?;
    let status = response.status().as_u16();
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| AsError::Unavailable(format!("the answer broke off: {e}")))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(AsError::Unavailable(format!(
                "an answer larger than {MAX_ANSWER} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Url {
        Url::parse("https://as.bank.example/").unwrap()
    }

    #[test]
    fn a_registration_is_kept_with_its_management_uri_on_the_issuers_origin() {
        let body =
            br#"{"client_id":"c1","client_secret":"s","registration_access_token":"RAT-secret-1",
            "registration_client_uri":"https://as.bank.example/reg/c1","redirect_uris":[]}"#;
        let r = judge_registration(201, body, &origin()).unwrap();
        assert_eq!(r.client_id, "c1");
        assert_eq!(r.client_secret.as_deref(), Some("s"));
        assert_eq!(r.registration_access_token, "RAT-secret-1");
        assert!(!format!("{r:?}").contains("RAT-secret"));
        let elsewhere = br#"{"client_id":"c1","registration_access_token":"RAT-secret-1",
            "registration_client_uri":"https://evil.example/reg/c1"}"#;
        assert!(matches!(
            judge_registration(201, elsewhere, &origin()),
            Err(AsError::Unavailable(_))
        ));
    }

    #[test]
    fn refusals_keep_the_four_registration_codes_and_the_rest_is_unavailable() {
        let refused = |body: &[u8]| judge_registration(400, body, &origin());
        assert!(matches!(
            refused(br#"{"error":"invalid_redirect_uri","error_description":"no"}"#),
            Err(AsError::Refused { error: OAuthErrorCode::InvalidRedirectUri, description })
                if description.ends_with(": no")
        ));
        assert!(matches!(
            refused(br#"{"error":"invalid_request"}"#),
            Err(AsError::Refused {
                error: OAuthErrorCode::InvalidClientMetadata,
                ..
            })
        ));
        for (status, body) in [
            (400, &b"not json"[..]),
            (401, br#"{"error":"invalid_token"}"#),
            (403, b""),
            (429, b""),
            (500, b"{}"),
            (201, b"{}"),
            (201, b"[]"),
        ] {
            assert!(
                matches!(
                    judge_registration(status, body, &origin()),
                    Err(AsError::Unavailable(_))
                ),
                "{status}"
            );
        }
    }
}
