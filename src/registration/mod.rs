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
//! | 11 (`rfc7591`) | the AS: RFC 7591 POST of [`rfc7591_body`], its `client_id` checked; then 11 with the link, and [`compensation::undo`] if it fails | here | the AS's code (400), else `temporarily_unavailable` (503) |

// `pub`: the steps that fuzz/src/checks.rs drives (and tests/fuzz_regressions.rs replays).
mod allowed;
mod at_as;
mod backchannel;
pub mod compensation;
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
mod validated;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::authorization_server::Registration;
use crate::authorization_server::sealed;
use crate::domain::{AuditAction, AuditOutcome, GrantTypes, Profile, SpecVersion, secret};
use crate::jose::JwksCache;
use crate::pki::ClientCertificate;
use crate::store::{
    AsLinkRecord, AsLinkStore, AuditRecord, ClientFilter, ClientRecord, ClientStore,
    CompensationStore, Conflict, JtiRecord, StoreError,
};

pub use at_as::AtAs;
pub use error::RegistrationError;
pub use error_code::ErrorCode;
pub use metadata::ClientMetadata;
pub use policy::Policy;
pub use validated::Validated;

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

    /// The client row of a new registration `v` with `client_id` and its `body` (as GET shows
    /// it), issued `now`.
    fn new_record(
        v: &Validated,
        client_id: &str,
        body: &Value,
        client_secret: &str,
        now: i64,
    ) -> ClientRecord {
        ClientRecord {
            client_id: client_id.to_string(),
            software_id: v.ssa.software_id.clone(),
            org_id: v.ssa.org_id.clone(),
            metadata: body.to_string(),
            grant_types: GrantTypes::new(v.metadata.grant_types.clone()),
            scope: v.scopes.clone(),
            client_secret_hash: secret::hash(client_secret),
            token_endpoint_auth_method: v.metadata.token_endpoint_auth_method,
            tls_client_auth_subject_dn: v.metadata.tls_client_auth_subject_dn.clone(),
            jwks_uri: v.ssa.software_jwks_endpoint.clone(),
            cert_thumbprint: Some(v.cert_thumbprint.clone()),
            enabled: true,
            created_at: now,
            updated_at: now,
            dcr_version: v.version,
            jwks_revoked_uri: v.ssa.software_jwks_revoked_endpoint.clone(),
        }
    }

    /// The audit record of a registration `v` of `record`.
    fn register_audit(
        v: &Validated,
        record: &ClientRecord,
        input: &Input<'_>,
        now: i64,
    ) -> AuditRecord {
        AuditRecord::new(now, AuditAction::Register, AuditOutcome::Success)
            .client(record)
            .certificate(Some(v.cert_thumbprint.clone()))
            .interaction(input.interaction_id)
            .version(v.version)
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
        let mut body = client_body(&client_id, now, &v.metadata);
        let record = Self::new_record(&v, &client_id, &body, &client_secret, now);
        let (jtis, kinds) = self.jtis(&v, now);
        let audit = Self::register_audit(&v, &record, input, now);
        store
            .create_client(&record, self.policy.one_client_per_software, &jtis, &audit)
            .await
            .map_err(|e| store_error(e, &v.ssa.software_id, &kinds))?;

        if let Value::Object(map) = &mut body {
            map.insert("client_secret".into(), json!(client_secret));
        }
        Ok(Registered { client_id, body })
    }

    /// POST in `rfc7591` mode: validate, register at the bank's AS (the body from the checked
    /// metadata), then store the client under the AS's `client_id` with its registration
    /// access token. Whatever stops the commit deletes the AS client again
    /// ([`compensation::undo`]); nothing is stored and no `jti` is used when the AS refuses or
    /// cannot be reached.
    pub async fn register_behind<S>(
        &self,
        store: &S,
        at: &AtAs<'_>,
        input: &Input<'_>,
        now: i64,
    ) -> Result<Registered, RegistrationError>
    where
        S: ClientStore + AsLinkStore + CompensationStore,
    {
        let v = self.validate(input, now).await?;
        // Refused here before the AS is asked: the common duplicate leaves nothing to undo.
        if self.policy.one_client_per_software {
            let filter = ClientFilter {
                software_id: Some(&v.ssa.software_id),
                limit: 1,
                ..ClientFilter::default()
            };
            let existing = store
                .list_clients_page(&filter)
                .await
                .map_err(|e| store_error(e, &v.ssa.software_id, &[]))?;
            if !existing.is_empty() {
                return Err(RegistrationError::DuplicateSoftware(
                    v.ssa.software_id.clone(),
                ));
            }
        }
        let at_as = at.server.register(&rfc7591_body::body(&v)).await?;
        let client_id = at_as.client_id.clone();
        // What stops the commit from here on deletes the AS client again first.
        let undo = |reason| {
            let registration = Registration {
                client_id: &at_as.client_id,
                uri: &at_as.registration_client_uri,
                access_token: &at_as.registration_access_token,
            };
            let orphan = compensation::Orphan {
                registration,
                reason,
            };
            compensation::undo(store, at.server, at.storage_key, orphan, now)
        };
        if !rfc7591_body::acceptable_client_id(&client_id) {
            undo(compensation::reason::CLIENT_ID_UNACCEPTABLE).await;
            return Err(RegistrationError::AsUnavailable(format!(
                "the authorization server's client_id is not 1 to 36 unreserved characters ({} bytes)",
                client_id.len()
            )));
        }
        let sealed =
            match sealed::keep(at.storage_key, &client_id, &at_as.registration_access_token) {
                Ok(sealed) => sealed,
                Err(e) => {
                    undo(compensation::reason::NOT_COMMITTED).await;
                    return Err(RegistrationError::Internal(e.to_string()));
                }
            };
        let link = AsLinkRecord {
            client_id: client_id.clone(),
            registration_client_uri: at_as.registration_client_uri.to_string(),
            registration_access_token: sealed,
            updated_at: now,
        };
        // The secret is the AS's; this server's copy of it is a random one nobody holds, so that
        // the row can never authenticate here (`/token` answers 404 in this mode anyway).
        let mut body = client_body(&client_id, now, &v.metadata);
        let record = Self::new_record(&v, &client_id, &body, &secret::new_client_secret(), now);
        let (jtis, kinds) = self.jtis(&v, now);
        let audit = Self::register_audit(&v, &record, input, now)
            .detail(json!({"authorization_server": at.server.issuer().as_str()}));
        if let Err(e) = store
            .create_linked_client(
                &record,
                self.policy.one_client_per_software,
                &jtis,
                &audit,
                &link,
            )
            .await
        {
            let (reason, refusal) = match &e {
                StoreError::Conflict(Conflict::ClientId) => (
                    compensation::reason::CLIENT_ID_IN_USE,
                    RegistrationError::AsUnavailable(
                        "the authorization server's client_id is in use here".into(),
                    ),
                ),
                StoreError::Conflict(Conflict::Jti(_)) => (
                    compensation::reason::REPLAYED_JTI,
                    store_error(e.clone(), &v.ssa.software_id, &kinds),
                ),
                StoreError::Conflict(Conflict::SoftwareId) => (
                    compensation::reason::DUPLICATE_SOFTWARE,
                    store_error(e.clone(), &v.ssa.software_id, &kinds),
                ),
                _ => (
                    compensation::reason::NOT_COMMITTED,
                    store_error(e.clone(), &v.ssa.software_id, &kinds),
                ),
            };
            undo(reason).await;
            return Err(refusal);
        }
        if let (Value::Object(map), Some(secret)) = (&mut body, &at_as.client_secret) {
            map.insert("client_secret".into(), json!(secret));
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
        let update = self.prepare_update(&v, existing, input, now)?;
        match store
            .update_client(&update.record, &update.changed, &update.jtis, &update.audit)
            .await
        {
            Ok(true) => Ok(update.body),
            Ok(false) => Err(RegistrationError::Gone),
            Err(e) => Err(store_error(e, &existing.software_id, &update.kinds)),
        }
    }

    /// PUT in `rfc7591` mode: validate and the update rules, then RFC 7592 PUT at the AS with
    /// the client's registration access token, then the update here with the token the AS
    /// rotated to, if it did. The answer carries the new `client_secret` when the AS issued
    /// one. When the AS refuses or cannot be reached, nothing changes here.
    pub async fn update_behind<S>(
        &self,
        store: &S,
        at: &AtAs<'_>,
        existing: &ClientRecord,
        input: &Input<'_>,
        now: i64,
    ) -> Result<Value, RegistrationError>
    where
        S: ClientStore + AsLinkStore,
    {
        let v = self.validate(input, now).await?;
        let update = self.prepare_update(&v, existing, input, now)?;
        let link = compensation::link_of(store, &existing.client_id)
            .await?
            .ok_or_else(|| {
                RegistrationError::AsUnavailable(format!(
                    "client {} has no registration at the authorization server (registered in \
                     embedded mode)",
                    existing.client_id
                ))
            })?;
        let kept = compensation::Kept::of_link(at.storage_key, &link)?;
        let at_as = at
            .server
            .update(&kept.registration(), &rfc7591_body::body(&v))
            .await?;
        let new_link = match &at_as.registration_access_token {
            Some(rotated) => Some(AsLinkRecord {
                registration_access_token: sealed::keep(
                    at.storage_key,
                    &existing.client_id,
                    rotated,
                )
                .map_err(|e| RegistrationError::Internal(e.to_string()))?,
                updated_at: now,
                ..link.clone()
            }),
            None => None,
        };
        match store
            .update_linked_client(
                &update.record,
                &update.changed,
                &update.jtis,
                &update.audit,
                new_link.as_ref(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(RegistrationError::Gone),
            Err(e) => {
                if new_link.is_some() {
                    // docs/security.md, "A lost PUT answer": the AS holds the new metadata
                    // and a token this server could not keep.
                    tracing::warn!(client_id = %existing.client_id, error = %e,
                        "the authorization server rotated the registration access token, but the update could not be stored here");
                }
                return Err(store_error(e, &existing.software_id, &update.kinds));
            }
        }
        let mut body = update.body;
        if let (Value::Object(map), Some(secret)) = (&mut body, &at_as.client_secret) {
            map.insert("client_secret".into(), json!(secret));
        }
        Ok(body)
    }

    /// The update rules (the body's `client_id`, if any, is the path's; software_id and
    /// organisation stay), and what an update of `existing` to `v` writes.
    fn prepare_update(
        &self,
        v: &Validated,
        existing: &ClientRecord,
        input: &Input<'_>,
        now: i64,
    ) -> Result<Update, RegistrationError> {
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
        let (jtis, kinds) = self.jtis(v, now);
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
        Ok(Update {
            body,
            record,
            changed,
            jtis,
            kinds,
            audit,
        })
    }
}

/// What an update writes, once its rules passed.
struct Update {
    /// The client as GET will show it.
    body: Value,
    record: ClientRecord,
    changed: Vec<String>,
    jtis: Vec<JtiRecord>,
    kinds: Vec<JtiKind>,
    audit: AuditRecord,
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
