//! `rfc7591` mode: no orphans across two systems. A client the bank's AS created that this
//! server cannot commit (a replayed `jti`, a duplicate `software_id` or `client_id`, the
//! database failing) is deleted at the AS at once. When that fails too it is kept as a
//! compensation in the database, which [`run_due`] retries until the AS has deleted it; when
//! the database cannot keep it either, this process retries it in memory (a restart in between
//! is the window docs/security.md describes).

use std::time::Duration;

use url::Url;

use super::at_as::AtAs;
use super::error::RegistrationError;
use crate::authorization_server::sealed::{self, StorageKey};
use crate::authorization_server::{AuthorizationServer, Registration};
use crate::store::{
    AsLinkRecord, AsLinkStore, CompensationResult, CompensationStore, NewCompensation, StoreResult,
};

/// Why an AS client is deleted again, as the compensation row says.
pub mod reason {
    pub const REPLAYED_JTI: &str = "the request's jti was replayed";
    pub const DUPLICATE_SOFTWARE: &str = "a client for this software_id exists";
    pub const CLIENT_ID_IN_USE: &str = "the authorization server's client_id is in use here";
    pub const CLIENT_ID_UNACCEPTABLE: &str =
        "the authorization server's client_id is not 1 to 36 unreserved characters";
    pub const NOT_COMMITTED: &str = "the client could not be committed here";
    pub const OPERATOR_DELETE: &str = "deleted by an operator";
}

/// How many compensations one sweep leases, and for how long.
const LEASE_BATCH: i64 = 16;
const LEASE_SECS: i64 = 60;
/// The longest pause between two attempts at one compensation.
const MAX_BACKOFF_SECS: i64 = 300;

/// The pause before attempt `attempts + 1`: 2, 4, 8 … seconds, at most five minutes.
fn backoff_secs(attempts: i64) -> i64 {
    1i64.checked_shl(attempts.clamp(1, 16) as u32)
        .unwrap_or(MAX_BACKOFF_SECS)
        .min(MAX_BACKOFF_SECS)
}

/// The AS client to delete again (its registration access token as the AS gave it), and why.
pub struct Orphan<'a> {
    pub registration: Registration<'a>,
    pub reason: &'static str,
}

/// A client's registration at the AS as this server keeps it (a link, or a compensation),
/// opened: its URI parsed, its registration access token unsealed.
pub struct Kept {
    client_id: String,
    uri: Url,
    access_token: String,
}

/// Why a kept registration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeptError {
    #[error(transparent)]
    Sealed(#[from] sealed::SealError),
    #[error("registration_client_uri: {0}")]
    Uri(#[from] url::ParseError),
}

impl From<KeptError> for RegistrationError {
    fn from(e: KeptError) -> Self {
        match e {
            // Another storage key than the one it was sealed with: the operator's to fix.
            KeptError::Sealed(e) => Self::AsUnavailable(e.to_string()),
            KeptError::Uri(e) => Self::Internal(format!("registration_client_uri: {e}")),
        }
    }
}

impl Kept {
    pub fn open(
        key: Option<&StorageKey>,
        client_id: &str,
        uri: &str,
        stored_token: &str,
    ) -> Result<Self, KeptError> {
        Ok(Self {
            access_token: sealed::recover(key, client_id, stored_token)?,
            uri: Url::parse(uri)?,
            client_id: client_id.to_string(),
        })
    }

    pub fn of_link(key: Option<&StorageKey>, link: &AsLinkRecord) -> Result<Self, KeptError> {
        Self::open(
            key,
            &link.client_id,
            &link.registration_client_uri,
            &link.registration_access_token,
        )
    }

    pub fn registration(&self) -> Registration<'_> {
        Registration {
            client_id: &self.client_id,
            uri: &self.uri,
            access_token: &self.access_token,
        }
    }
}

/// The client's link to the AS, or why there is none to use: a client registered before the
/// mode was switched on has none.
pub async fn link_of<S: AsLinkStore>(
    store: &S,
    client_id: &str,
) -> Result<Option<AsLinkRecord>, RegistrationError> {
    store.get_as_link(client_id).await.map_err(|e| {
        if e.is_transient() {
            RegistrationError::Unavailable
        } else {
            RegistrationError::Internal(e.to_string())
        }
    })
}

/// Deletes `orphan` at the AS now; when the AS cannot be reached, keeps it to be retried.
pub async fn undo<S: CompensationStore>(
    store: &S,
    server: &AuthorizationServer,
    key: Option<&StorageKey>,
    orphan: Orphan<'_>,
    now: i64,
) {
    let r = orphan.registration;
    let error = match server.delete(&r).await {
        Ok(()) => {
            crate::metrics::as_compensation("done");
            tracing::info!(client_id = %r.client_id, reason = orphan.reason,
                "client deleted again at the authorization server");
            return;
        }
        Err(e) => e,
    };
    crate::metrics::as_compensation("retry");
    let kept = sealed::keep(key, r.client_id, r.access_token);
    let queued = match &kept {
        Ok(token) => {
            let compensation = NewCompensation {
                client_id: r.client_id.to_string(),
                registration_client_uri: r.uri.to_string(),
                registration_access_token: token.clone(),
                reason: orphan.reason.to_string(),
            };
            store.enqueue_compensation(&compensation, now).await.is_ok()
        }
        Err(_) => false,
    };
    if queued {
        tracing::warn!(client_id = %r.client_id, reason = orphan.reason, error = %error,
            "could not delete a client again at the authorization server; kept to be retried");
        return;
    }
    tracing::error!(client_id = %r.client_id, reason = orphan.reason, error = %error,
        "could not delete a client again at the authorization server, nor keep it in the database; \
         retrying in this process (a restart loses it: see docs/security.md)");
    let server = server.clone();
    let kept = Kept {
        client_id: r.client_id.to_string(),
        uri: r.uri.clone(),
        access_token: r.access_token.to_string(),
    };
    tokio::spawn(async move {
        let mut attempts = 1;
        loop {
            tokio::time::sleep(Duration::from_secs(backoff_secs(attempts) as u64)).await;
            match server.delete(&kept.registration()).await {
                Ok(()) => {
                    crate::metrics::as_compensation("done");
                    tracing::info!(client_id = %kept.client_id, "client deleted again at the authorization server");
                    return;
                }
                Err(e) => {
                    crate::metrics::as_compensation("retry");
                    tracing::warn!(client_id = %kept.client_id, error = %e, attempts,
                        "still cannot delete a client again at the authorization server");
                    attempts += 1;
                }
            }
        }
    });
}

/// A TPP's DELETE in `rfc7591` mode, at the AS: RFC 7592 DELETE with the client's
/// registration access token. `Ok` when the AS has deleted it (or never knew it, or no longer
/// takes our token), and for a client registered before the mode (no link); any other answer
/// is [`RegistrationError::AsUnavailable`], and nothing may be deleted here.
pub async fn delete_at_as<S: AsLinkStore>(
    store: &S,
    at: &AtAs<'_>,
    client_id: &str,
) -> Result<(), RegistrationError> {
    let Some(link) = link_of(store, client_id).await? else {
        return Ok(());
    };
    let kept = Kept::of_link(at.storage_key, &link)?;
    // Whatever the AS says, if not gone it is a 503: nothing of a DELETE is the TPP's to fix.
    at.server
        .delete(&kept.registration())
        .await
        .map_err(|e| RegistrationError::AsUnavailable(e.to_string()))
}

/// One sweep: the due compensations leased to `owner`, each tried at the AS once. Returns how
/// many are still pending.
pub async fn run_due<S: CompensationStore>(
    store: &S,
    server: &AuthorizationServer,
    key: Option<&StorageKey>,
    owner: &str,
    now: i64,
) -> StoreResult<i64> {
    let due = store
        .lease_compensations(owner, now, now + LEASE_SECS, LEASE_BATCH)
        .await?;
    for c in &due {
        let kept = Kept::open(
            key,
            &c.client_id,
            &c.registration_client_uri,
            &c.registration_access_token,
        );
        let result = match kept {
            Ok(kept) => match server.delete(&kept.registration()).await {
                Ok(()) => CompensationResult::Done,
                Err(e) => CompensationResult::RetryAt {
                    at: now + backoff_secs(c.attempts),
                    error: e.to_string(),
                },
            },
            // Not to be mended by waiting: the longest pause, and the error for the operator.
            Err(e) => CompensationResult::RetryAt {
                at: now + MAX_BACKOFF_SECS,
                error: e.to_string(),
            },
        };
        match &result {
            CompensationResult::Done => {
                crate::metrics::as_compensation("done");
                tracing::info!(client_id = %c.client_id, reason = %c.reason,
                    "client deleted at the authorization server");
            }
            CompensationResult::RetryAt { error, .. } => {
                crate::metrics::as_compensation("retry");
                tracing::warn!(client_id = %c.client_id, reason = %c.reason, attempts = c.attempts,
                    error = %error, "could not delete a client at the authorization server; retrying later");
            }
        }
        store.finish_compensation(c.id, owner, &result).await?;
    }
    let pending = store.pending_compensations().await?;
    crate::metrics::as_compensations_pending(pending);
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let pauses: Vec<i64> = [0, 1, 2, 3, 8, 9, 64].map(backoff_secs).to_vec();
        assert_eq!(pauses, [2, 2, 4, 8, 256, 300, 300]);
    }
}
