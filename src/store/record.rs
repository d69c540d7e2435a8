//! The rows, as the rest of the server sees them. A leaf module: every other store module may
//! use it.

pub use crate::domain::EventType;

/// A registered client, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ClientRecord {
    pub client_id: String,
    pub software_id: String,
    pub org_id: String,
    /// The registered metadata as JSON: the response body without `client_secret`.
    pub metadata: String,
    /// The registered `grant_types`, space-separated in their registered order: the copy the
    /// token endpoint reads, so that it never parses `metadata`.
    pub grant_types: String,
    /// The registered `scope` string (space-separated scopes), likewise for the token endpoint.
    pub scope: String,
    /// Hash of the client secret; the secret itself is never stored.
    pub client_secret_hash: String,
    pub token_endpoint_auth_method: String,
    pub tls_client_auth_subject_dn: Option<String>,
    /// The SSA's `software_jwks_endpoint`.
    pub jwks_uri: String,
    /// `x5t#S256` of the transport certificate used to register.
    pub cert_thumbprint: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The DCR version the client was registered or last updated under (`3.2`, `3.3`, `3.4`).
    pub dcr_version: String,
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
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    pub token_hash: String,
    pub client_id: String,
    pub scope: String,
    /// RFC 8705 `x5t#S256` of the certificate the token is bound to.
    pub cert_thumbprint: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AuditRecord {
    pub at: i64,
    pub action: String,
    pub outcome: String,
    pub client_id: Option<String>,
    pub software_id: Option<String>,
    pub org_id: Option<String>,
    pub cert_thumbprint: Option<String>,
    pub interaction_id: Option<String>,
    pub error_code: Option<String>,
    /// Free-form JSON; never a secret.
    pub detail: Option<String>,
    /// The DCR version of a registration or update (and its refusal).
    pub dcr_version: Option<String>,
}

/// A provisioning event as stored: the data of its CloudEvent. Never a secret, a token or
/// an SSA.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct EventRecord {
    /// Orders the events (of a client, and overall).
    pub id: i64,
    /// The CloudEvents `id` and the `webhook-id` of every delivery.
    pub event_id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub event_type: String,
    pub at: i64,
    pub client_id: String,
    pub software_id: String,
    pub org_id: String,
    pub dcr_version: String,
    /// The audit action of the change (`register`, `update`, `delete`, `client.disable`, …).
    pub action: String,
    pub interaction_id: Option<String>,
    /// For `client.updated`: the metadata fields that changed, as a JSON array.
    pub changed: Option<String>,
}

/// Where an event's delivery to one webhook stands.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub event_id: String,
    /// The webhook's URL.
    pub webhook: String,
    pub client_id: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
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
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LeasedDelivery {
    pub delivery_id: i64,
    pub webhook: String,
    /// Attempts before this one.
    pub attempts: i64,
    pub expires_at: i64,
    #[sqlx(flatten)]
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
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub record: AuditRecord,
}
