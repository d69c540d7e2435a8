//! What an operator does to clients and events, through the CLI or the admin API alike: the
//! same store calls, the same audit records (which say who did it), the same JSON.

use serde_json::{Value, json};

use crate::domain::{AuditAction, AuditOutcome};
use crate::store::{
    AsLinkStore, AuditRecord, ClientRecord, ClientStore, DeliveryRecord, EventRecord, EventStore,
    StoreError, StoreResult,
};

/// Who acts.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// `dcr-server clients …` / `events …` on the server's host.
    Cli,
    /// An admin API call, by the holder of this certificate.
    Admin { subject: &'a str, x5t_s256: &'a str },
}

impl Actor<'_> {
    /// The audit record of `action` on `client_id` by this actor.
    fn audit(&self, action: AuditAction, client_id: &str) -> AuditRecord {
        let (detail, thumbprint) = match self {
            Self::Cli => (json!({"by": "operator cli"}), None),
            Self::Admin { subject, x5t_s256 } => (
                json!({"by": "admin api", "subject": subject}),
                Some(x5t_s256.to_string()),
            ),
        };
        AuditRecord::new(crate::clock::now(), action, AuditOutcome::Success)
            .client_id(client_id)
            .certificate(thumbprint)
            .detail(detail)
    }
}

/// What an operator does to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAction {
    /// The client and every token issued to it go.
    Delete,
    /// No more tokens; its live tokens are revoked.
    Disable,
    /// Undoes `Disable` (revoked tokens stay revoked).
    Enable,
}

impl ClientAction {
    /// What the answer says was done.
    pub fn result(self) -> &'static str {
        match self {
            Self::Delete => "deleted",
            Self::Disable => "disabled",
            Self::Enable => "enabled",
        }
    }
}

/// Why an operator's action was not done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActError {
    /// `rfc7591` mode: the bank's AS issues the client's tokens, so disabling here would stop
    /// nothing there.
    #[error(
        "clients cannot be disabled or enabled here in rfc7591 mode (authorization_server.mode):          the bank's authorization server issues their tokens; disable the client there, or delete it"
    )]
    NotInThisMode,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the clients live: here only, or also at the bank's AS (`rfc7591` mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    /// A delete here is also a delete at the AS, through a compensation in the same
    /// transaction; disable and enable are refused.
    BehindAnAs,
}

/// Does `action` to `client_id`, audited as `actor`'s, with its event. False: no such client.
pub async fn act<S: ClientStore + AsLinkStore>(
    store: &S,
    client_id: &str,
    action: ClientAction,
    actor: Actor<'_>,
    mode: Mode,
) -> Result<bool, ActError> {
    if mode == Mode::BehindAnAs && action != ClientAction::Delete {
        return Err(ActError::NotInThisMode);
    }
    Ok(match action {
        ClientAction::Delete => {
            let audit = actor.audit(AuditAction::Delete, client_id);
            match mode {
                Mode::Embedded => store.delete_client(client_id, &audit).await?,
                Mode::BehindAnAs => {
                    store
                        .delete_client_compensating(
                            client_id,
                            &audit,
                            crate::registration::compensation::reason::OPERATOR_DELETE,
                            crate::clock::now(),
                        )
                        .await?
                }
            }
        }
        ClientAction::Disable => {
            let audit = actor.audit(AuditAction::Disable, client_id);
            store.set_client_enabled(client_id, false, &audit).await?
        }
        ClientAction::Enable => {
            let audit = actor.audit(AuditAction::Enable, client_id);
            store.set_client_enabled(client_id, true, &audit).await?
        }
    })
}

/// The columns an operator looks at first.
pub fn client_summary(c: &ClientRecord) -> Value {
    json!({
        "client_id": c.client_id,
        "software_id": c.software_id,
        "org_id": c.org_id,
        "token_endpoint_auth_method": c.token_endpoint_auth_method,
        "dcr_version": c.dcr_version,
        "enabled": c.enabled,
        "created_at": crate::clock::rfc3339(c.created_at),
        "updated_at": crate::clock::rfc3339(c.updated_at),
    })
}

/// The summary and the registered metadata (never the secret: it is not stored).
pub fn client_details(c: &ClientRecord) -> Value {
    let mut details = client_summary(c);
    details["metadata"] = serde_json::from_str(&c.metadata).unwrap_or(Value::Null);
    details
}

/// An event with its deliveries, as the CLI's `--json` and the admin API show it.
pub fn event_json(e: &EventRecord, deliveries: &[DeliveryRecord]) -> Value {
    let mut row = serde_json::to_value(e).unwrap_or_default();
    row["time"] = crate::clock::rfc3339(e.at).into();
    if let Some(changed) = e.changed.as_deref() {
        row["changed"] = serde_json::from_str(changed).unwrap_or_default();
    }
    row["deliveries"] = serde_json::to_value(deliveries).unwrap_or_default();
    row
}

/// Makes the failed deliveries of `event_id` (or all) pending again, for another
/// `events.max_age_secs`; how many. Only deliveries to webhooks `events` configures: one to a
/// removed webhook could only fail again, so it stays failed (`events list --failed` shows it).
pub async fn retry_events(
    store: &impl EventStore,
    event_id: Option<&str>,
    events: &crate::config::EventsConfig,
) -> StoreResult<u64> {
    let max_age = i64::try_from(events.max_age_secs).unwrap_or(i64::MAX);
    let until = crate::clock::now().saturating_add(max_age);
    let mut retried = 0;
    for webhook in &events.webhook {
        retried += store
            .retry_failed(event_id, webhook.url.as_str(), until)
            .await?;
    }
    Ok(retried)
}
