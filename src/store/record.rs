//! The rows, as the rest of the server sees them: every value the domain has a type for is
//! held as that type (decoded once, at the store's edge: `row`). A leaf module: every other
//! store module may use it. Their columns are listed in `schema`.

pub use crate::domain::EventType;
use crate::domain::{
    AuditAction, AuditOutcome, AuthMethod, DeliveryState, GrantTypes, OAuthErrorCode, Scopes,
    SpecVersion,
};

/// A registered client, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    pub client_id: String,
    pub software_id: String,
    pub org_id: String,
    /// The registered metadata as JSON: the response body without `client_secret`.
    pub metadata: String,
    /// The registered `grant_types`, in their registered order: the copy the token endpoint
    /// reads, so that it never parses `metadata`.
    pub grant_types: GrantTypes,
    /// The registered scopes, likewise for the token endpoint.
    pub scope: Scopes,
    /// Hash of the client secret; the secret itself is never stored.
    pub client_secret_hash: String,
    pub token_endpoint_auth_method: AuthMethod,
    pub tls_client_auth_subject_dn: Option<String>,
    /// The SSA's `software_jwks_endpoint`.
    pub jwks_uri: String,
    /// `x5t#S256` of the transport certificate used to register.
    pub cert_thumbprint: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The DCR version the client was registered or last updated under.
    pub dcr_version: SpecVersion,
    /// The SSA's `software_jwks_revoked_endpoint`, if it named one.
    pub jwks_revoked_uri: Option<String>,
}

/// A seen `jti`, remembered until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JtiRecord {
    /// What the `jti` belongs to, e.g. `request:<software_id>` or `ssa:<issuer>`, so that two
    /// issuers' identical `jti`s do not collide.
    pub scope: String,
    pub jti: String,
    pub expires_at: i64,
}

/// An access token, stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token_hash: String,
    pub client_id: String,
    pub scope: Scopes,
    /// RFC 8705 `x5t#S256` of the certificate the token is bound to.
    pub cert_thumbprint: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub at: i64,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    pub client_id: Option<String>,
    pub software_id: Option<String>,
    pub org_id: Option<String>,
    pub cert_thumbprint: Option<String>,
    pub interaction_id: Option<String>,
    pub error_code: Option<OAuthErrorCode>,
    /// Free-form JSON; never a secret.
    pub detail: Option<String>,
    /// The DCR version of a registration or update (and its refusal).
    pub dcr_version: Option<SpecVersion>,
}

impl AuditRecord {
    /// A record of `action` ending in `outcome` at `at`, about no one yet: the methods below
    /// say who and what.
    pub fn new(at: i64, action: AuditAction, outcome: AuditOutcome) -> Self {
        Self {
            at,
            action,
            outcome,
            client_id: None,
            software_id: None,
            org_id: None,
            cert_thumbprint: None,
            interaction_id: None,
            error_code: None,
            detail: None,
            dcr_version: None,
        }
    }

    /// About `client`: its id, software and organisation.
    pub fn client(self, client: &ClientRecord) -> Self {
        Self {
            client_id: Some(client.client_id.clone()),
            software_id: Some(client.software_id.clone()),
            org_id: Some(client.org_id.clone()),
            ..self
        }
    }

    /// About the client `client_id` (whose row may be gone, or not read).
    pub fn client_id(self, client_id: &str) -> Self {
        Self {
            client_id: Some(client_id.to_string()),
            ..self
        }
    }

    /// The software and organisation a request claims (a refusal's, perhaps unverified).
    pub fn software(self, software_id: Option<String>, org_id: Option<String>) -> Self {
        Self {
            software_id,
            org_id,
            ..self
        }
    }

    /// The `x5t#S256` of the certificate the request came with.
    pub fn certificate(self, x5t_s256: Option<String>) -> Self {
        Self {
            cert_thumbprint: x5t_s256,
            ..self
        }
    }

    /// The request's `x-fapi-interaction-id`.
    pub fn interaction(self, interaction_id: Option<&str>) -> Self {
        Self {
            interaction_id: interaction_id.map(str::to_string),
            ..self
        }
    }

    /// The DCR version of the registration or update.
    pub fn version(self, version: SpecVersion) -> Self {
        Self {
            dcr_version: Some(version),
            ..self
        }
    }

    /// Free-form detail (never a secret).
    pub fn detail(self, detail: serde_json::Value) -> Self {
        Self {
            detail: Some(detail.to_string()),
            ..self
        }
    }
}

/// A provisioning event as stored: the data of its CloudEvent. Never a secret, a token or
/// an SSA.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventRecord {
    /// Orders the events (of a client, and overall).
    pub id: i64,
    /// The CloudEvents `id` and the `webhook-id` of every delivery.
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub at: i64,
    pub client_id: String,
    pub software_id: String,
    pub org_id: String,
    pub dcr_version: SpecVersion,
    /// The audit action of the change.
    pub action: AuditAction,
    pub interaction_id: Option<String>,
    /// For `client.updated`: the metadata fields that changed, as a JSON array.
    pub changed: Option<String>,
}

/// Where an event's delivery to one webhook stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub event_id: String,
    /// The webhook's URL.
    pub webhook: String,
    pub client_id: String,
    pub state: DeliveryState,
    pub attempts: i64,
    /// When the next attempt is due (pending).
    pub next_at: i64,
    /// After this a pending delivery is marked failed.
    pub expires_at: i64,
    pub last_error: Option<String>,
    /// When it was delivered or marked failed.
    pub done_at: Option<i64>,
}

/// The webhooks each new event gets a delivery row for, and how long a delivery is tried.
/// Set from the config at start-up and on every reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRouting {
    pub webhooks: Vec<EventTarget>,
    /// `events.max_age_secs`.
    pub max_age_secs: i64,
}

/// One webhook, as the outbox sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTarget {
    /// The webhook's URL: the key of its deliveries.
    pub url: String,
    /// The types it receives; empty: every type.
    pub types: Vec<EventType>,
}

impl EventTarget {
    pub fn wants(&self, event: EventType) -> bool {
        self.types.is_empty() || self.types.contains(&event)
    }
}

/// A delivery a worker holds the lease of, with its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedDelivery {
    pub delivery_id: i64,
    pub webhook: String,
    /// Attempts before this one.
    pub attempts: i64,
    pub expires_at: i64,
    pub event: EventRecord,
}

/// How a leased delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// Failed; tried again at `next_at`.
    RetryAt {
        next_at: i64,
        error: String,
    },
    /// Failed, and not tried again (past `events.max_age_secs`).
    GiveUp {
        error: String,
    },
}

/// An audit record with its position in the log (the cursor of a page).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// Why a secret's field shows only as this in `Debug` output.
const REDACTED: &str = "<redacted>";

/// A client's registration at the bank's authorization server (`rfc7591` mode): where and with
/// what it is managed there (RFC 7592). Clients of the embedded mode have none.
#[derive(Clone, PartialEq, Eq)]
pub struct AsLinkRecord {
    pub client_id: String,
    /// Never logged or shown (the contract's "No orphans" section).
    pub registration_client_uri: String,
    /// A secret: as the caller hands it over (sealed when a storage key is set).
    pub registration_access_token: String,
    pub updated_at: i64,
}

/// The URI and the token are never logged: `Debug` leaves them out.
impl std::fmt::Debug for AsLinkRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsLinkRecord")
            .field("client_id", &self.client_id)
            .field("registration_client_uri", &REDACTED)
            .field("registration_access_token", &REDACTED)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// A client to delete at the bank's authorization server, kept until that is done: one the AS
/// created that could not be committed here, or an operator's delete reaching the AS later.
#[derive(Clone, PartialEq, Eq)]
pub struct CompensationRecord {
    pub id: i64,
    pub client_id: String,
    pub registration_client_uri: String,
    pub registration_access_token: String,
    /// Why the AS client goes (free text, never a secret).
    pub reason: String,
    /// Attempts so far, counting the one a lease is taken for.
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

impl std::fmt::Debug for CompensationRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompensationRecord")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("registration_client_uri", &REDACTED)
            .field("registration_access_token", &REDACTED)
            .field("reason", &self.reason)
            .field("attempts", &self.attempts)
            .field("next_attempt_at", &self.next_attempt_at)
            .field("last_error", &self.last_error)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A compensation to enqueue.
#[derive(Clone, PartialEq, Eq)]
pub struct NewCompensation {
    pub client_id: String,
    pub registration_client_uri: String,
    pub registration_access_token: String,
    pub reason: String,
}

impl std::fmt::Debug for NewCompensation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCompensation")
            .field("client_id", &self.client_id)
            .field("registration_client_uri", &REDACTED)
            .field("registration_access_token", &REDACTED)
            .field("reason", &self.reason)
            .finish()
    }
}

/// How a leased compensation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompensationResult {
    /// The AS client is gone: so is the compensation.
    Done,
    /// Failed; tried again at `at`.
    RetryAt { at: i64, error: String },
}
