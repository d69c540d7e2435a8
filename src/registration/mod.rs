//! `POST /register` (and the validation that `PUT` re-runs): an ordered list of small named
//! steps, one module each, each returning a typed error that maps to one of the RFC 7591 error codes.
//!
//! Every request arrives on one DCR version's path ([`Input::version`]); the steps that differ
//! between versions read that version's [`Profile`] (`domain::version`) instead of branching.
//!
//! | # | step | module | error code |
//! |---|---|---|---|
//! | 0 | client certificate present | `http::extract::ClientCert` | 401 `invalid_client` |
//! | 1 | content type, compact JWS, `alg` allow-list, no header keys | [`envelope`] | `invalid_client_metadata` |
//! | 2 | SSA: issuer allow-list → signature → `org_status`, roles → age | [`ssa`] | `unapproved_software_statement` / `invalid_software_statement` |
//! | 3 | request signature with the `kid` from `software_jwks_endpoint` | `request_signature` | `invalid_client_metadata` |
//! | 4 | `iss`, `exp`, `iat`, `aud`, `jti` | [`request_claims`] | `invalid_client_metadata` |
//! | 5 | metadata types, the version's allowed values, cross-field rules; CIBA claims | [`metadata`], `backchannel` | `invalid_client_metadata` |
//! | 6 | redirect URIs | [`redirect_uris`] | `invalid_redirect_uri` |
//! | 7 | URI and hostname policies (when enabled) | [`uri_policy`] | `invalid_client_metadata` |
//! | 8 | scopes against SSA roles | [`scopes`] | `invalid_client_metadata` |
//! | 9 | transport certificate belongs to the SSA (and, when enabled, is a `tls` key of its JWKS) | [`transport_binding`] | `unapproved_software_statement` |
//! | 9b | neither the signing key nor the certificate is in the SSA's revoked keys | `revoked_keys` | `invalid_client_metadata` / `unapproved_software_statement` |
//! | 10 | `tls_client_auth_subject_dn` matches the certificate | [`subject_dn`] | `invalid_client_metadata` |
//! | 11 | store: `jti` replay, one client per software_id, client + audit in one transaction | here | `invalid_client_metadata` / `invalid_software_statement` |

// `pub`: the steps that fuzz/src/checks.rs drives (and tests/fuzz_regressions.rs replays).
mod allowed;
mod backchannel;
pub mod envelope;
mod error;
mod error_code;
pub mod metadata;
mod policy;
pub mod redirect_uris;
pub(crate) mod refusal;
pub mod request_claims;
mod request_signature;
mod revoked_keys;
pub mod rfc7591_body;
pub mod scopes;
pub mod ssa;
pub mod subject_dn;
pub mod transport_binding;
pub mod uri_policy;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::domain::{AuditAction, AuditOutcome, GrantTypes, Profile, Scopes, SpecVersion, secret};
use crate::jose::JwksCache;
use crate::pki::ClientCertificate;
use crate::store::{AuditRecord, ClientRecord, ClientStore, Conflict, JtiRecord, StoreError};

pub use error::RegistrationError;
pub use error_code::ErrorCode;
pub use metadata::ClientMetadata;
pub use policy::Policy;

/// Maps a storage failure during registration.
fn store_error(e: StoreError, software_id: &str, jti_kinds: &[JtiKind]) -> RegistrationError {
    match e {
        StoreError::Conflict(Conflict::Jti(i)) => match jti_kinds.get(i) {
            Some(JtiKind::Ssa) => ssa::SsaError::Replayed.into(),
            _ => request_claims::ClaimsError::Replayed.into(),
        },
        StoreError::Conflict(Conflict::SoftwareId) => {
            RegistrationError::DuplicateSoftware(software_id.to_string())
        }
        e if e.is_transient() => RegistrationError::Unavailable,
        e => RegistrationError::Internal(e.to_string()),
    }
}

#[derive(Debug, Clone, Copy)]
enum JtiKind {
    Request,
    Ssa,
}

/// One registration request as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The transport certificate of the request (the HTTP layer refuses a request without one).
    pub certificate: &'a ClientCertificate,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub interaction_id: Option<&'a str>,
    /// The DCR version of the path the request came to; its rules apply.
    pub version: SpecVersion,
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The request's own `client_id` claim, if it sent one (POST ignores it; PUT checks it).
    pub client_id_claim: Option<String>,
    pub ssa: ssa::Ssa,
    pub request: request_claims::RequestClaims,
    pub metadata: ClientMetadata,
    /// `metadata.scope`, checked against the SSA's roles.
    pub scopes: Scopes,
    pub cert_thumbprint: String,
    pub version: SpecVersion,
}

/// A stored registration and what the TPP is told once.
#[derive(Debug, Clone)]
pub struct Registered {
    pub client_id: String,
    /// The 201 body, with the secret.
    pub body: Value,
}

/// Runs the pipeline. Shared by every request; holds nothing per request.
pub struct Registrar {
    pub policy: Policy,
    pub jwks: Arc<JwksCache>,
    pub http: reqwest::Client,
}

/// The client as GET returns it (and as POST returns it, plus the secret).
pub fn client_body(client_id: &str, issued_at: i64, metadata: &ClientMetadata) -> Value {
    let mut body = serde_json::to_value(metadata).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("client_id".into(), json!(client_id));
        map.insert("client_id_issued_at".into(), json!(issued_at));
        map.insert("client_secret_expires_at".into(), json!(0));
    }
    body
}

impl Registrar {
    /// Steps 0 to 10: everything that needs no write.
    async fn validate(&self, input: &Input<'_>, now: i64) -> Result<Validated, RegistrationError> {
        let policy = &self.policy;
        let cert = input.certificate;
        let profile: &'static Profile = input.version.profile();

        envelope::check_content_type(input.content_type)?;
        let request = envelope::parse(input.body, &policy.signing_algorithms)?;

        let raw_ssa = ssa::extract(&request.claims)?;
        let ssa_jws = ssa::parse_envelope(raw_ssa, policy)?;
        let issuer = ssa::trusted_issuer(&ssa_jws, policy)?;
        ssa::verify_signature(&ssa_jws, issuer, &self.jwks).await?;
        let ssa = ssa::parse_claims(raw_ssa, ssa_jws.claims)?;
        ssa::check_age(&ssa, now, policy)?;

        request_signature::verify(&request, &ssa, &self.jwks).await?;
        let claims = request_claims::check(&request.claims, &ssa, now, policy)?;
        let mut metadata = metadata::parse(&request.claims, &ssa, policy, profile)?;
        metadata.redirect_uris = redirect_uris::check(&metadata.redirect_uris, &ssa)?;
        uri_policy::check(&ssa, &metadata.redirect_uris, policy, &self.http).await?;
        let scopes = scopes::check(&metadata.scope, &ssa.software_roles)?;
        transport_binding::check(cert, &ssa)?;
        if policy.transport_cert_in_jwks {
            transport_binding::check_in_jwks(cert, &ssa, &self.jwks).await?;
        }
        // The kid verified in step 3 (a request without one was refused there).
        let kid = request.kid.as_deref().unwrap_or_default();
        revoked_keys::check(kid, cert, &ssa, &self.jwks, policy.revoked_keys_hard).await?;
        subject_dn::check(&metadata, cert)?;
        let client_id_claim = crate::jose::claims::opt_str(&request.claims, "client_id")
            .map_err(metadata::MetadataError::Claim)?
            .map(str::to_string);

        Ok(Validated {
            client_id_claim,
            ssa,
            request: claims,
            metadata,
            scopes,
            cert_thumbprint: cert.x5t_s256().to_string(),
            version: input.version,
        })
    }

    /// The `jti`s to remember with this registration, and which is which.
    fn jtis(&self, v: &Validated, now: i64) -> (Vec<JtiRecord>, Vec<JtiKind>) {
        let policy = &self.policy;
        let mut records = Vec::new();
        let mut kinds = Vec::new();
        if policy.request_jti {
            records.push(JtiRecord {
                scope: format!("request:{}", v.ssa.software_id),
                jti: v.request.jti.clone(),
                // Never forget a jti before its JWT expires.
                expires_at: (now + policy.jti_ttl)
                    .max(v.request.exp.saturating_add(policy.clock_skew)),
            });
            kinds.push(JtiKind::Request);
        }
        if policy.ssa_jti
            && let Some(jti) = &v.ssa.jti
        {
            records.push(JtiRecord {
                scope: format!("ssa:{}", v.ssa.iss),
                jti: jti.clone(),
                expires_at: now + policy.jti_ttl,
            });
            kinds.push(JtiKind::Ssa);
        }
        (records, kinds)
    }

    /// The whole of POST: validate, mint, store (client, `jti`s, audit) in one transaction.
    pub async fn register(
        &self,
        store: &impl ClientStore,
        input: &Input<'_>,
        now: i64,
    ) -> Result<Registered, RegistrationError> {
        let v = self.validate(input, now).await?;
        // UUIDv7: time-ordered, so a new client lands at the end of the primary-key and audit
        // indexes instead of on a random page (fewer pages written per registration); its 74
        // random bits keep it unguessable. It is an identifier, not a secret.
        let client_id = uuid::Uuid::now_v7().to_string();
        let client_secret = secret::new_client_secret();
        let stored_body = client_body(&client_id, now, &v.metadata);
        let record = ClientRecord {
            client_id: client_id.clone(),
            software_id: v.ssa.software_id.clone(),
            org_id: v.ssa.org_id.clone(),
            metadata: stored_body.to_string(),
            grant_types: GrantTypes::new(v.metadata.grant_types.clone()),
            scope: v.scopes.clone(),
            client_secret_hash: secret::hash(&client_secret),
            token_endpoint_auth_method: v.metadata.token_endpoint_auth_method,
            tls_client_auth_subject_dn: v.metadata.tls_client_auth_subject_dn.clone(),
            jwks_uri: v.ssa.software_jwks_endpoint.clone(),
            cert_thumbprint: Some(v.cert_thumbprint.clone()),
            enabled: true,
            created_at: now,
            updated_at: now,
            dcr_version: v.version,
            jwks_revoked_uri: v.ssa.software_jwks_revoked_endpoint.clone(),
        };
        let (jtis, kinds) = self.jtis(&v, now);
        let audit = AuditRecord::new(now, AuditAction::Register, AuditOutcome::Success)
            .client(&record)
            .certificate(Some(v.cert_thumbprint.clone()))
            .interaction(input.interaction_id)
            .version(v.version);
        store
            .create_client(&record, self.policy.one_client_per_software, &jtis, &audit)
            .await
            .map_err(|e| store_error(e, &v.ssa.software_id, &kinds))?;

        let mut body = stored_body;
        if let Value::Object(map) = &mut body {
            map.insert("client_secret".into(), json!(client_secret));
        }
        Ok(Registered { client_id, body })
    }
}

/// The top-level fields of the registered metadata that an update added, removed or changed
/// (for the `client.updated` event), sorted. Stored metadata that is not a JSON object counts
/// as empty.
fn changed_fields(stored: &str, updated: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let before = serde_json::from_str::<Value>(stored).ok();
    let before = before.as_ref().and_then(Value::as_object).unwrap_or(&empty);
    let after = updated.as_object().unwrap_or(&empty);
    let mut changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

impl Registrar {
    /// The whole of PUT: the full pipeline on the new request, then the update rules: the
    /// body's `client_id` (if any) equals the path, software_id and organisation stay. Tokens
    /// are kept. The client moves to the version of the path (an upgrade keeps its client_id,
    /// secret, tokens and binding); a refusal writes nothing. Returns the updated client as GET
    /// shows it.
    pub async fn update(
        &self,
        store: &impl ClientStore,
        existing: &ClientRecord,
        input: &Input<'_>,
        now: i64,
    ) -> Result<Value, RegistrationError> {
        let v = self.validate(input, now).await?;
        if v.client_id_claim
            .as_deref()
            .is_some_and(|c| c != existing.client_id)
        {
            return Err(RegistrationError::ClientIdMismatch);
        }
        if v.ssa.software_id != existing.software_id {
            return Err(RegistrationError::Immutable("software_id"));
        }
        if v.ssa.org_id != existing.org_id {
            return Err(RegistrationError::Immutable("the organisation (org_id)"));
        }
        // `client_id_issued_at` is the row's `created_at`: both are set at registration.
        let body = client_body(&existing.client_id, existing.created_at, &v.metadata);
        let record = ClientRecord {
            metadata: body.to_string(),
            grant_types: GrantTypes::new(v.metadata.grant_types.clone()),
            scope: v.scopes.clone(),
            token_endpoint_auth_method: v.metadata.token_endpoint_auth_method,
            tls_client_auth_subject_dn: v.metadata.tls_client_auth_subject_dn.clone(),
            jwks_uri: v.ssa.software_jwks_endpoint.clone(),
            cert_thumbprint: Some(v.cert_thumbprint.clone()),
            updated_at: now,
            dcr_version: v.version,
            jwks_revoked_uri: v.ssa.software_jwks_revoked_endpoint.clone(),
            ..existing.clone()
        };
        let (jtis, kinds) = self.jtis(&v, now);
        let mut audit = AuditRecord::new(now, AuditAction::Update, AuditOutcome::Success)
            .client(existing)
            .certificate(Some(v.cert_thumbprint.clone()))
            .interaction(input.interaction_id)
            .version(v.version);
        // An upgrade (or a move back) says where the client came from.
        if existing.dcr_version != v.version {
            audit = audit.detail(json!({"previous_version": existing.dcr_version}));
        }
        let changed = changed_fields(&existing.metadata, &body);
        match store.update_client(&record, &changed, &jtis, &audit).await {
            Ok(true) => Ok(body),
            Ok(false) => Err(RegistrationError::Gone),
            Err(e) => Err(store_error(e, &existing.software_id, &kinds)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_fields_name_what_an_update_added_removed_or_changed() {
        let stored = json!({"a": 1, "b": [1, 2], "c": "x", "gone": true}).to_string();
        let updated = json!({"a": 1, "b": [2, 1], "c": "y", "new": null});
        assert_eq!(changed_fields(&stored, &updated), ["b", "c", "gone", "new"]);
        assert!(changed_fields(&stored, &serde_json::from_str(&stored).unwrap()).is_empty());
        assert_eq!(changed_fields("not json", &json!({"a": 1})), ["a"]);
    }
}
