//! Client authentication, shared by every endpoint that authenticates an OAuth client (today
//! `/token`). The client authenticates with exactly the method it registered:
//!
//! | method | module | rule |
//! |---|---|---|
//! | `private_key_jwt` | [`private_key_jwt`] | an assertion signed with a key of the client's JWKS; `iss` = `sub` = client_id, `aud`, `exp`, lifetime ≤ 1 h, single-use `jti` |
//! | `tls_client_auth` | [`tls_client_auth`] | the certificate's subject is the registered DN (RDN sets) |
//! | `client_secret_basic` / `_post` | [`client_secret`] | only when enabled; the secret's hash, compared in constant time |
//!
//! Every failure is one public `invalid_client` with one description, whatever went wrong, so
//! that nobody can probe which client_ids exist or what they registered; the
//! [`ClientAuthError`] says what it was, for the log and the metric label.

pub mod client_secret;
pub mod error;
pub mod private_key_jwt;
pub mod tls_client_auth;

use crate::domain::AuthMethod;
use crate::jose::JwksCache;
use crate::jose::revoked;
use crate::oauth::form::Form;
use crate::pki::ClientCertificate;
use crate::store::{ClientRecord, ClientStore, JtiRecord};

pub use error::{AuthenticationFailure, ClientAuthError, FAILED};
pub use private_key_jwt::{AssertionError, CLIENT_ASSERTION_TYPE, MAX_ASSERTION_LIFETIME};

/// What the caller presented to authenticate, parsed from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `client_assertion` (RFC 7523).
    Assertion(String),
    /// A client secret, from the Authorization header or the form.
    Secret {
        client_id: String,
        secret: String,
        method: AuthMethod,
    },
    /// Only a `client_id`: the certificate of the connection is the credential.
    Certificate(String),
}

impl Credentials {
    /// Reads the credentials from the form and the `Authorization: Basic` pair (already
    /// decoded). Exactly one method may be used.
    pub fn from_request(
        form: &Form,
        basic: Option<(String, String)>,
    ) -> Result<Self, AuthenticationFailure> {
        let assertion = form.get("client_assertion");
        let post_secret = form.get("client_secret");
        let presented = [assertion.is_some(), post_secret.is_some(), basic.is_some()];
        if presented.iter().filter(|p| **p).count() > 1 {
            return Err(AuthenticationFailure::InvalidRequest(
                "use exactly one client authentication method".into(),
            ));
        }
        if let Some(assertion) = assertion {
            if form.get("client_assertion_type") != Some(CLIENT_ASSERTION_TYPE) {
                return Err(AuthenticationFailure::InvalidRequest(format!(
                    "client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
                )));
            }
            return Ok(Self::Assertion(assertion.to_string()));
        }
        if let Some((client_id, secret)) = basic {
            return Ok(Self::Secret {
                client_id,
                secret,
                method: AuthMethod::ClientSecretBasic,
            });
        }
        let client_id = form
            .non_empty("client_id")
            .ok_or(ClientAuthError::NoCredentials)?
            .to_string();
        Ok(match post_secret {
            Some(secret) => Self::Secret {
                client_id,
                secret: secret.to_string(),
                method: AuthMethod::ClientSecretPost,
            },
            None => Self::Certificate(client_id),
        })
    }
}

/// What client authentication needs from the config.
#[derive(Debug, Clone)]
pub struct ClientAuthPolicy {
    /// `token_endpoint_auth_methods`: the secret methods work only when listed.
    pub methods: Vec<AuthMethod>,
    pub assertion: private_key_jwt::AssertionPolicy,
    /// An unreadable revoked-keys set refuses (`server.tls.ocsp.mode = "hard"`).
    pub revoked_keys_hard: bool,
}

/// An authenticated client, and the assertion `jti` to remember with what it is granted (in
/// the same transaction, so that a replay cannot win a race).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub client: ClientRecord,
    pub method: AuthMethod,
    pub jti: Option<JtiRecord>,
}

/// Authenticates a client with the method it registered.
pub async fn authenticate<S: ClientStore>(
    store: &S,
    jwks: &JwksCache,
    policy: &ClientAuthPolicy,
    credentials: Credentials,
    certificate: Option<&ClientCertificate>,
    now: i64,
) -> Result<Authenticated, AuthenticationFailure> {
    match credentials {
        Credentials::Assertion(assertion) => {
            let assertion = private_key_jwt::Assertion::parse(&assertion, &policy.assertion)?;
            let client = enabled_client(store, assertion.client_id()).await?;
            registered(&client, AuthMethod::PrivateKeyJwt)?;
            let kid = assertion.verify_signature(&client.jwks_uri, jwks).await?;
            let jti = assertion.check_claims(&client.client_id, now, &policy.assertion)?;
            not_revoked(jwks, &client, kid.as_deref(), certificate, policy).await?;
            Ok(Authenticated {
                client,
                method: AuthMethod::PrivateKeyJwt,
                jti: Some(jti),
            })
        }
        Credentials::Secret {
            client_id,
            secret,
            method,
        } => {
            if !policy.methods.contains(&method) {
                return Err(ClientAuthError::MethodNotEnabled(method).into());
            }
            let client = enabled_client(store, &client_id).await?;
            registered(&client, method)?;
            client_secret::check(&client, &secret)?;
            not_revoked(jwks, &client, None, certificate, policy).await?;
            Ok(Authenticated {
                client,
                method,
                jti: None,
            })
        }
        Credentials::Certificate(client_id) => {
            let client = enabled_client(store, &client_id).await?;
            registered(&client, AuthMethod::TlsClientAuth)?;
            tls_client_auth::check(&client, certificate)?;
            not_revoked(jwks, &client, None, certificate, policy).await?;
            Ok(Authenticated {
                client,
                method: AuthMethod::TlsClientAuth,
                jti: None,
            })
        }
    }
}

/// Neither the signing key `kid` nor the transport certificate is among the client's revoked
/// keys (its SSA's `software_jwks_revoked_endpoint`, kept in a column).
async fn not_revoked(
    jwks: &JwksCache,
    client: &ClientRecord,
    kid: Option<&str>,
    certificate: Option<&ClientCertificate>,
    policy: &ClientAuthPolicy,
) -> Result<(), ClientAuthError> {
    let Some(location) = &client.jwks_revoked_uri else {
        return Ok(());
    };
    let x5t = certificate.map(ClientCertificate::x5t_s256);
    revoked::check(jwks, location, kid, x5t, policy.revoked_keys_hard).await?;
    Ok(())
}

/// The client, if it exists and is enabled.
async fn enabled_client<S: ClientStore>(
    store: &S,
    client_id: &str,
) -> Result<ClientRecord, AuthenticationFailure> {
    match store.get_client(client_id).await? {
        Some(c) if c.enabled => Ok(c),
        Some(_) => Err(ClientAuthError::Disabled.into()),
        None => Err(ClientAuthError::UnknownClient.into()),
    }
}

/// The client registered `method`.
fn registered(client: &ClientRecord, method: AuthMethod) -> Result<(), ClientAuthError> {
    if client.token_endpoint_auth_method == method {
        Ok(())
    } else {
        Err(ClientAuthError::WrongMethod {
            registered: client.token_endpoint_auth_method.to_string(),
            presented: method,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stored client registered with `method`.
    pub(crate) fn client(method: AuthMethod) -> ClientRecord {
        ClientRecord {
            client_id: "c1".into(),
            software_id: "sw".into(),
            org_id: "org".into(),
            metadata: "{}".into(),
            grant_types: crate::domain::GrantTypes::new(vec![
                crate::domain::GrantType::ClientCredentials,
            ]),
            scope: "openid accounts".parse().unwrap(),
            client_secret_hash: crate::domain::secret::hash("s3cret"),
            token_endpoint_auth_method: method,
            tls_client_auth_subject_dn: None,
            jwks_uri: "https://keys.example.com/jwks".into(),
            cert_thumbprint: None,
            enabled: true,
            created_at: 0,
            updated_at: 0,
            dcr_version: crate::domain::SpecVersion::V3_2,
            jwks_revoked_uri: None,
        }
    }

    fn invalid_request(r: Result<Credentials, AuthenticationFailure>) -> bool {
        matches!(r, Err(AuthenticationFailure::InvalidRequest(_)))
    }

    #[test]
    fn exactly_one_method_is_presented() {
        let basic = || Some(("c1".to_string(), "s".to_string()));
        let assertion = [
            ("client_assertion", "a.b.c"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ];
        assert!(invalid_request(Credentials::from_request(
            &Form::from(assertion),
            basic()
        )));
        assert!(invalid_request(Credentials::from_request(
            &Form::from([("client_id", "c1"), ("client_secret", "s")]),
            basic()
        )));
        assert_eq!(
            Credentials::from_request(&Form::from(assertion), None).unwrap(),
            Credentials::Assertion("a.b.c".into())
        );
        assert_eq!(
            Credentials::from_request(&Form::default(), basic()).unwrap(),
            Credentials::Secret {
                client_id: "c1".into(),
                secret: "s".into(),
                method: AuthMethod::ClientSecretBasic
            }
        );
        assert_eq!(
            Credentials::from_request(
                &Form::from([("client_id", "c1"), ("client_secret", "s")]),
                None
            )
            .unwrap(),
            Credentials::Secret {
                client_id: "c1".into(),
                secret: "s".into(),
                method: AuthMethod::ClientSecretPost
            }
        );
        assert_eq!(
            Credentials::from_request(&Form::from([("client_id", "c1")]), None).unwrap(),
            Credentials::Certificate("c1".into())
        );
    }

    #[test]
    fn an_assertion_needs_the_jwt_bearer_type_and_nothing_is_no_credentials() {
        assert!(invalid_request(Credentials::from_request(
            &Form::from([("client_assertion", "a.b.c")]),
            None
        )));
        assert!(invalid_request(Credentials::from_request(
            &Form::from([
                ("client_assertion", "a.b.c"),
                ("client_assertion_type", "urn:other")
            ]),
            None
        )));
        for form in [Form::default(), Form::from([("client_id", "")])] {
            assert!(matches!(
                Credentials::from_request(&form, None),
                Err(AuthenticationFailure::Client(
                    ClientAuthError::NoCredentials
                ))
            ));
        }
    }

    #[test]
    fn the_registered_method_must_be_the_one_presented() {
        let c = client(AuthMethod::PrivateKeyJwt);
        assert!(registered(&c, AuthMethod::PrivateKeyJwt).is_ok());
        for other in [
            AuthMethod::TlsClientAuth,
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
        ] {
            assert_eq!(
                registered(&c, other).unwrap_err().reason(),
                "wrong_method",
                "{other}"
            );
        }
    }

    /// `authenticate` against a real SQLite store: the order of the rules, and that each
    /// failure names its cause.
    #[tokio::test]
    async fn authentication_rules_against_a_real_store() {
        use crate::config::{DatabaseConfig, JwksConfig};
        use crate::store::{AuditRecord, Database};
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&DatabaseConfig {
            url: format!("sqlite://{}/t.db", dir.path().display())
                .parse()
                .unwrap(),
            max_connections: 2,
            acquire_timeout_ms: 5000,
            sqlite_busy_timeout_ms: 5000,
            startup_timeout_secs: 0,
        })
        .await
        .unwrap();
        db.migrate().await.unwrap();
        let audit = AuditRecord::new(
            0,
            crate::domain::AuditAction::Register,
            crate::domain::AuditOutcome::Success,
        );
        let post = client(AuthMethod::ClientSecretPost);
        db.create_client(&post, false, &[], &audit).await.unwrap();
        let disabled = ClientRecord {
            client_id: "c2".into(),
            enabled: false,
            ..client(AuthMethod::ClientSecretPost)
        };
        db.create_client(&disabled, false, &[], &audit)
            .await
            .unwrap();
        crate::pki::tls::install_default_provider();
        let jwks_config = JwksConfig::default();
        let http = crate::pki::outbound::http_client(&jwks_config).unwrap();
        let jwks = JwksCache::new(http, &jwks_config);
        let policy = ClientAuthPolicy {
            methods: vec![AuthMethod::PrivateKeyJwt, AuthMethod::ClientSecretPost],
            assertion: private_key_jwt::AssertionPolicy {
                algs: vec![crate::domain::SigningAlg::PS256],
                clock_skew: 60,
                audiences: vec!["https://bank.example.com/token".into()],
            },
            revoked_keys_hard: false,
        };
        let secret = |id: &str, secret: &str, method| Credentials::Secret {
            client_id: id.into(),
            secret: secret.into(),
            method,
        };
        let run = |credentials| authenticate(&db, &jwks, &policy, credentials, None, 0);
        let ok = run(secret("c1", "s3cret", AuthMethod::ClientSecretPost))
            .await
            .unwrap();
        assert_eq!(
            (ok.client.client_id.as_str(), ok.method),
            ("c1", AuthMethod::ClientSecretPost)
        );
        assert!(ok.jti.is_none());
        let reason = |r: Result<Authenticated, AuthenticationFailure>| match r {
            Err(AuthenticationFailure::Client(e)) => e.reason(),
            other => panic!("not a client failure: {other:?}"),
        };
        for (credentials, want) in [
            (
                secret("c1", "wrong", AuthMethod::ClientSecretPost),
                "wrong_secret",
            ),
            (
                secret("nobody", "s3cret", AuthMethod::ClientSecretPost),
                "unknown_client",
            ),
            (
                secret("c2", "s3cret", AuthMethod::ClientSecretPost),
                "client_disabled",
            ),
            // Not enabled: refused before the client is even looked up.
            (
                secret("c1", "s3cret", AuthMethod::ClientSecretBasic),
                "method_not_enabled",
            ),
            (Credentials::Certificate("c1".into()), "wrong_method"),
            (Credentials::Assertion("a.b.c".into()), "invalid_assertion"),
        ] {
            assert_eq!(reason(run(credentials).await), want, "{want}");
        }
    }

    #[test]
    fn every_failure_has_its_own_bounded_reason() {
        let all = [
            ClientAuthError::NoCredentials,
            ClientAuthError::MalformedBasic,
            ClientAuthError::MethodNotEnabled(AuthMethod::ClientSecretPost),
            ClientAuthError::UnknownClient,
            ClientAuthError::Disabled,
            ClientAuthError::WrongMethod {
                registered: "x".into(),
                presented: AuthMethod::TlsClientAuth,
            },
            ClientAuthError::WrongSecret,
            ClientAuthError::NoCertificate,
            ClientAuthError::SubjectMismatch,
            ClientAuthError::Assertion(AssertionError::Expired),
            ClientAuthError::Replayed,
        ];
        let reasons: std::collections::BTreeSet<_> = all.iter().map(|e| e.reason()).collect();
        assert_eq!(reasons.len(), all.len());
    }
}
