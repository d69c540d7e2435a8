//! `rfc7591` mode (issue 27): the bank's authorization server as this server talks to it.
//! RFC 7591 registration, RFC 7592 management with the registration access token, RFC 7662
//! introspection. Only the wire: what to send is `registration::rfc7591_body`'s, what an
//! answer means for the TPP is the caller's, through the typed [`AsError`].
//!
//! Secrets that pass through here (the initial access token, registration access tokens, a
//! client secret the AS issues, the tokens introspected) are never logged or put in an error.

pub mod connection;
pub mod sealed;

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

/// The AS's OpenID Provider metadata (`{issuer}/.well-known/openid-configuration`), with the
/// endpoints this server uses read out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    /// The whole document, which `rfc7591` mode serves as its own discovery.
    pub document: Map<String, Value>,
    pub registration_endpoint: Option<Url>,
    pub introspection_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
}

/// What a discovery answer means for `issuer`: its document names that issuer exactly (OpenID
/// Connect Discovery §4.3), and each endpoint is an https URL (else it counts as absent).
pub fn judge_discovery(status: u16, body: &[u8], issuer: &Url) -> Result<Discovered, AsError> {
    if status != 200 {
        return Err(AsError::Unavailable(format!(
            "discovery answered HTTP {status}"
        )));
    }
    let Ok(Value::Object(document)) = serde_json::from_slice::<Value>(body) else {
        return Err(AsError::Unavailable(
            "discovery answered without a JSON object".into(),
        ));
    };
    let named = document.get("issuer").and_then(Value::as_str);
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    if !named.is_some_and(|n| same(n, issuer.as_str())) {
        return Err(AsError::Unavailable(format!(
            "discovery names another issuer: {}",
            crate::text::printable(named.unwrap_or("none"), 100)
        )));
    }
    let endpoint = |name: &str| {
        document
            .get(name)
            .and_then(Value::as_str)
            .and_then(|u| Url::parse(u).ok())
            .filter(|u| u.scheme() == "https")
    };
    Ok(Discovered {
        registration_endpoint: endpoint("registration_endpoint"),
        introspection_endpoint: endpoint("introspection_endpoint"),
        token_endpoint: endpoint("token_endpoint"),
        document,
    })
}

/// Fetches and judges the AS's discovery document, through `http` (the AS's trust anchors).
pub async fn discover(
    http: &reqwest::Client,
    issuer: &Url,
    timeout: Duration,
) -> Result<Discovered, AsError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.as_str().trim_end_matches('/')
    );
    observed("discovery", async {
        let (status, body) = send(http.get(url).timeout(timeout)).await?;
        judge_discovery(status, &body, issuer)
    })
    .await
}

/// A client at the AS as RFC 7592 addresses it.
#[derive(Clone, Copy)]
pub struct Registration<'a> {
    pub client_id: &'a str,
    pub uri: &'a Url,
    pub access_token: &'a str,
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
        other => Err(refusal(other, body)),
    }
}

/// Why a registration or update call that did not succeed failed: a 400 with an RFC 7591 error
/// is the TPP's (its code one of the four registration codes, else `invalid_client_metadata`),
/// anything else unavailable.
fn refusal(status: u16, body: &[u8]) -> AsError {
    let Some(map) = (status == 400)
        .then(|| serde_json::from_slice::<Value>(body).ok())
        .flatten()
        .and_then(|v| v.as_object().cloned())
    else {
        return AsError::Unavailable(format!("answered HTTP {status}"));
    };
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
    AsError::Refused {
        error,
        description: format!(
            "the authorization server refused the registration: {}",
            crate::text::printable(reason, 200)
        ),
    }
}

/// What an RFC 7592 PUT's answer says changed besides the metadata: a new client secret (shown
/// once), and a new registration access token when the AS rotated it (node-oidc-provider does on
/// every PUT; then the old one no longer works, and the new one must be kept).
#[derive(Clone, PartialEq, Eq)]
pub struct Updated {
    pub client_secret: Option<String>,
    pub registration_access_token: Option<String>,
}

impl std::fmt::Debug for Updated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updated")
            .field("rotated", &self.registration_access_token.is_some())
            .finish_non_exhaustive()
    }
}

/// What an RFC 7592 PUT's answer means. Refusals as for a registration.
pub fn judge_update(status: u16, body: &[u8], client_id: &str) -> Result<Updated, AsError> {
    if status != 200 {
        return Err(refusal(status, body));
    }
    let map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(AsError::Unavailable(
                "HTTP 200 without a JSON object".into(),
            ));
        }
    };
    let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_string);
    if text("client_id").as_deref() != Some(client_id) {
        return Err(AsError::Unavailable(
            "an update answered for another client_id".into(),
        ));
    }
    Ok(Updated {
        client_secret: text("client_secret"),
        registration_access_token: text("registration_access_token"),
    })
}

/// Whether an RFC 7592 DELETE's answer means the client is gone at the AS: deleted now (2xx),
/// or already unknown to it (401: the registration access token no longer names a client;
/// 404). Anything else: it may still be there.
pub fn judge_delete(status: u16) -> Result<(), AsError> {
    match status {
        200..=299 | 401 | 404 => Ok(()),
        other => Err(AsError::Unavailable(format!("answered HTTP {other}"))),
    }
}

/// What RFC 7662 introspection says of a token, as much as management needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    pub client_id: Option<String>,
    /// RFC 8705 §3.2: `cnf.x5t#S256`, the certificate the token is bound to.
    pub x5t_s256: Option<String>,
    pub exp: Option<i64>,
}

/// What an introspection answer means; anything but 200 with a JSON object is unavailable.
pub fn judge_introspection(status: u16, body: &[u8]) -> Result<Introspection, AsError> {
    if status != 200 {
        return Err(AsError::Unavailable(format!(
            "introspection answered HTTP {status}"
        )));
    }
    let map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(AsError::Unavailable(
                "introspection answered without a JSON object".into(),
            ));
        }
    };
    let active = map.get("active").and_then(Value::as_bool).unwrap_or(false);
    Ok(Introspection {
        active,
        client_id: map
            .get("client_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        x5t_s256: map
            .get("cnf")
            .and_then(|c| c.get("x5t#S256"))
            .and_then(Value::as_str)
            .map(str::to_string),
        exp: map.get("exp").and_then(Value::as_i64),
    })
}

/// The bank's AS as the config names it: where, and with which credentials.
#[derive(Clone)]
pub struct Settings {
    pub issuer: Url,
    pub registration_endpoint: Url,
    /// The Bearer of RFC 7591 POSTs, if the AS wants one.
    pub initial_access_token: Option<String>,
    pub introspection: Option<Introspector>,
    /// The AS's token endpoint, when known (shown by `check-config`; not called here).
    pub token_endpoint: Option<Url>,
    /// Each call gives up after this.
    pub timeout: Duration,
}

/// The endpoints the config gives; each one given wins over the one discovery names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Endpoints<'a> {
    pub registration: Option<&'a Url>,
    pub introspection: Option<&'a Url>,
    pub token: Option<&'a Url>,
}

/// The [`Settings`] of the AS at `issuer`: the endpoints `given` by the config, else those
/// `discovered`, with the credentials read from the config's files. A registration endpoint is
/// required; introspection is filled when both its endpoint and `introspection_client`
/// (`client_id`, `client_secret`) are known.
pub fn settings(
    issuer: &Url,
    given: Endpoints<'_>,
    discovered: &Discovered,
    initial_access_token: Option<String>,
    introspection_client: Option<(String, String)>,
    timeout: Duration,
) -> Result<Settings, AsError> {
    let pick = |given: Option<&Url>, found: &Option<Url>| given.or(found.as_ref()).cloned();
    let registration_endpoint = pick(given.registration, &discovered.registration_endpoint)
        .ok_or_else(|| {
            AsError::Unavailable(
                "no registration endpoint: neither authorization_server.registration_endpoint \
                 nor the AS's discovery (registration_endpoint) names one"
                    .into(),
            )
        })?;
    let introspection = pick(given.introspection, &discovered.introspection_endpoint)
        .zip(introspection_client)
        .map(|(endpoint, (client_id, client_secret))| Introspector {
            endpoint,
            client_id,
            client_secret,
        });
    Ok(Settings {
        issuer: issuer.clone(),
        registration_endpoint,
        initial_access_token,
        introspection,
        token_endpoint: pick(given.token, &discovered.token_endpoint),
        timeout,
    })
}

/// Where and as whom this server introspects: `client_secret_basic` (RFC 6749 §2.3.1).
#[derive(Clone)]
pub struct Introspector {
    pub endpoint: Url,
    pub client_id: String,
    pub client_secret: String,
}

/// The bank's AS, through one client (so one keep-alive pool for every call).
#[derive(Clone)]
pub struct AuthorizationServer {
    http: reqwest::Client,
    settings: Settings,
}

impl std::fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("issuer", &self.settings.issuer.as_str())
            .field(
                "registration_endpoint",
                &self.settings.registration_endpoint.as_str(),
            )
            .finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// `http` carries the AS's trust anchors besides the system roots.
    pub fn new(http: reqwest::Client, settings: Settings) -> Self {
        Self { http, settings }
    }

    /// The AS's issuer, as configured.
    pub fn issuer(&self) -> &Url {
        &self.settings.issuer
    }

    /// RFC 7591 §3.1: registers `metadata` at the AS.
    pub async fn register(&self, metadata: &Map<String, Value>) -> Result<Registered, AsError> {
        let s = &self.settings;
        let mut request = self
            .http
            .post(s.registration_endpoint.clone())
            .timeout(s.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(metadata).unwrap_or_default());
        if let Some(token) = &s.initial_access_token {
            request = request.bearer_auth(token);
        }
        observed("register", async {
            let (status, body) = send(request).await?;
            judge_registration(status, &body, &s.issuer)
        })
        .await
    }

    /// A call on the client's RFC 7592 URI with its registration access token.
    fn managed(&self, method: reqwest::Method, r: &Registration<'_>) -> reqwest::RequestBuilder {
        self.http
            .request(method, r.uri.clone())
            .timeout(self.settings.timeout)
            .bearer_auth(r.access_token)
    }

    /// RFC 7592 §2.2: replaces the client's metadata (`metadata` with its `client_id`).
    pub async fn update(
        &self,
        registration: &Registration<'_>,
        metadata: &Map<String, Value>,
    ) -> Result<Updated, AsError> {
        let mut metadata = metadata.clone();
        metadata.insert("client_id".into(), Value::from(registration.client_id));
        let request = self
            .managed(reqwest::Method::PUT, registration)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(Value::Object(metadata).to_string());
        observed("update", async {
            let (status, body) = send(request).await?;
            judge_update(status, &body, registration.client_id)
        })
        .await
    }

    /// RFC 7592 §2.3: deletes the client; `Ok` when it is gone at the AS.
    pub async fn delete(&self, registration: &Registration<'_>) -> Result<(), AsError> {
        observed("delete", async {
            let (status, _) = send(self.managed(reqwest::Method::DELETE, registration)).await?;
            if status == 401 {
                // Gone by RFC 7592 §2.3, or a token the AS rotated without our knowing (a lost
                // PUT answer, docs/security.md): the operator may have a client to delete there.
                tracing::warn!(client_id = %registration.client_id,
                    "the authorization server refused the registration access token on DELETE; \
                     treated as deleted there");
            }
            judge_delete(status)
        })
        .await
    }

    /// RFC 7662: what the AS says of `token`.
    pub async fn introspect(&self, token: &str) -> Result<Introspection, AsError> {
        let Some(i) = &self.settings.introspection else {
            return Err(AsError::Unavailable("no introspection endpoint".into()));
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
        let encode =
            |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let request = self
            .http
            .post(i.endpoint.clone())
            .timeout(self.settings.timeout)
            .basic_auth(encode(&i.client_id), Some(encode(&i.client_secret)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        observed("introspect", async {
            let (status, body) = send(request).await?;
            judge_introspection(status, &body)
        })
        .await
    }
}

/// Runs one call to the AS, counted by `endpoint` and outcome, and timed.
async fn observed<T>(
    endpoint: &'static str,
    call: impl std::future::Future<Output = Result<T, AsError>>,
) -> Result<T, AsError> {
    let started = std::time::Instant::now();
    let result = call.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(AsError::Refused { .. }) => "refused",
        Err(AsError::Unavailable(_)) => "unavailable",
    };
    crate::metrics::as_call(endpoint, outcome, started.elapsed().as_secs_f64());
    result
}

/// Sends `request`; its status and (capped) body, or why there is none.
async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), AsError> {
    let response = request.send().await.map_err(|e| {
        // A registration_client_uri is never logged (the contract): the error goes without it.
        let e = e.without_url();
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
    let body = crate::pki::outbound::read_body_capped(response, MAX_ANSWER)
        .await
        .map_err(|e| AsError::Unavailable(format!("the answer: {e}")))?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_must_name_the_issuer_and_endpoints_must_be_https() {
        let issuer = Url::parse("https://as.bank.example").unwrap();
        let d = judge_discovery(
            200,
            br#"{"issuer":"https://as.bank.example","registration_endpoint":"https://as.bank.example/reg",
                "introspection_endpoint":"http://as.bank.example/i","token_endpoint":"https://as.bank.example/t"}"#,
            &issuer,
        )
        .unwrap();
        assert_eq!(d.registration_endpoint.unwrap().path(), "/reg");
        assert_eq!(d.introspection_endpoint, None);
        assert!(d.token_endpoint.is_some());
        for (status, body) in [
            (200, &br#"{"issuer":"https://evil.example"}"#[..]),
            (200, br#"{}"#),
            (200, b"[]"),
            (404, b"{}"),
        ] {
            assert!(judge_discovery(status, body, &issuer).is_err(), "{status}");
        }
    }

    #[test]
    fn updates_deletes_and_introspection_are_judged() {
        let rotated = judge_update(
            200,
            br#"{"client_id":"c1","registration_access_token":"new"}"#,
            "c1",
        )
        .unwrap();
        assert_eq!(rotated.registration_access_token.as_deref(), Some("new"));
        assert!(matches!(
            judge_update(200, br#"{"client_id":"c2"}"#, "c1"),
            Err(AsError::Unavailable(_))
        ));
        assert!(matches!(
            judge_update(400, br#"{"error":"invalid_redirect_uri"}"#, "c1"),
            Err(AsError::Refused { .. })
        ));
        for gone in [200, 204, 401, 404] {
            assert!(judge_delete(gone).is_ok(), "{gone}");
        }
        for kept in [400, 403, 429, 500, 503] {
            assert!(judge_delete(kept).is_err(), "{kept}");
        }
        assert_eq!(
            judge_introspection(
                200,
                br#"{"active":true,"client_id":"c1","exp":9,"cnf":{"x5t#S256":"abc"}}"#
            )
            .unwrap(),
            Introspection {
                active: true,
                client_id: Some("c1".into()),
                x5t_s256: Some("abc".into()),
                exp: Some(9),
            }
        );
        assert!(
            !judge_introspection(200, br#"{"active":"yes"}"#)
                .unwrap()
                .active
        );
        assert!(judge_introspection(401, b"{}").is_err());
    }

    fn discovered(registration: bool, introspection: bool) -> Discovered {
        let url = |p: &str| Some(Url::parse(&format!("https://as.bank.example{p}")).unwrap());
        Discovered {
            document: Map::new(),
            registration_endpoint: if registration { url("/reg") } else { None },
            introspection_endpoint: if introspection {
                url("/introspect")
            } else {
                None
            },
            token_endpoint: url("/token"),
        }
    }

    #[test]
    fn settings_take_the_given_endpoints_over_the_discovered_ones() {
        let issuer = origin();
        let client = || Some(("dcr".to_string(), "secret".to_string()));
        let t = Duration::from_millis(1234);
        let found = settings(
            &issuer,
            Endpoints::default(),
            &discovered(true, true),
            Some("iat".into()),
            client(),
            t,
        )
        .unwrap();
        assert_eq!(found.issuer, issuer);
        assert_eq!(found.registration_endpoint.path(), "/reg");
        assert_eq!(found.token_endpoint.unwrap().path(), "/token");
        assert_eq!(found.initial_access_token.as_deref(), Some("iat"));
        assert_eq!(found.timeout, t);
        let i = found.introspection.unwrap();
        assert_eq!(
            (
                i.endpoint.path(),
                i.client_id.as_str(),
                i.client_secret.as_str()
            ),
            ("/introspect", "dcr", "secret")
        );
        let (reg, intro, token) = (
            Url::parse("https://gw.bank.example/r").unwrap(),
            Url::parse("https://gw.bank.example/i").unwrap(),
            Url::parse("https://gw.bank.example/t").unwrap(),
        );
        let given = Endpoints {
            registration: Some(&reg),
            introspection: Some(&intro),
            token: Some(&token),
        };
        for d in [discovered(true, true), discovered(false, false)] {
            let s = settings(&issuer, given, &d, None, client(), t).unwrap();
            assert_eq!(s.registration_endpoint, reg);
            assert_eq!(s.introspection.unwrap().endpoint, intro);
            assert_eq!(s.token_endpoint, Some(token.clone()));
            assert_eq!(s.initial_access_token, None);
        }
    }

    #[test]
    fn settings_need_a_registration_endpoint_and_introspect_only_with_a_client() {
        let issuer = origin();
        let t = Duration::from_secs(1);
        let e = settings(
            &issuer,
            Endpoints::default(),
            &discovered(false, true),
            None,
            None,
            t,
        )
        .err()
        .unwrap();
        assert!(
            matches!(&e, AsError::Unavailable(m) if m.contains("registration_endpoint")),
            "{e}"
        );
        let no_client = settings(
            &issuer,
            Endpoints::default(),
            &discovered(true, true),
            None,
            None,
            t,
        )
        .unwrap();
        assert!(no_client.introspection.is_none());
        let no_endpoint = settings(
            &issuer,
            Endpoints::default(),
            &discovered(true, false),
            None,
            Some(("dcr".into(), "secret".into())),
            t,
        )
        .unwrap();
        assert!(no_endpoint.introspection.is_none());
    }

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
