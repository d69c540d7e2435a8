//! `rfc7591` mode: no orphans across two systems. A client the bank's AS created that this
//! server cannot commit (a replayed `jti`, a duplicate `software_id` or `client_id`, the
//! database failing) is deleted at the AS at once. When that fails too it is kept as a
//! compensation in the database, which [`run_due`] retries until the AS has deleted it; when
//! the database cannot keep it either, this process retries it in memory (a restart in between
//! is the window docs/security.md describes).

use std::time::Duration;

use url::Url;

use super::error::RegistrationError;
use crate::authorization_server::sealed::{self, StorageKey};
use crate::authorization_server::{AuthorizationServer, Registration};
use crate::store::{
    AsLinkStore, CompensationResult, CompensationStore, NewCompensation, StoreResult,
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

/// The AS client to delete again.
pub struct Orphan<'a> {
    pub client_id: &'a str,
    pub uri: &'a Url,
    /// The registration access token, as the AS gave it.
    pub access_token: &'a str,
    pub reason: &'static str,
}

/// Deletes `orphan` at the AS now; when the AS cannot be reached, keeps it to be retried.
pub async fn undo<S: CompensationStore>(
    store: &S,
    server: &AuthorizationServer,
    key: Option<&StorageKey>,
    orphan: Orphan<'_>,
    now: i64,
) {
    let registration = Registration {
        client_id: orphan.client_id,
        uri: orphan.uri,
        access_token: orphan.access_token,
    };
    let error = match server.delete(&registration).await {
        Ok(()) => {
            crate::metrics::as_compensation("done");
            tracing::info!(client_id = %orphan.client_id, reason = orphan.reason,
                "client deleted again at the authorization server");
            return;
        }
        Err(e) => e,
    };
    crate::metrics::as_compensation("retry");
    let kept = sealed::keep(key, orphan.client_id, orphan.access_token);
    let queued = match &kept {
        Ok(token) => {
            let compensation = NewCompensation {
                client_id: orphan.client_id.to_string(),
                registration_client_uri: orphan.uri.to_string(),
                registration_access_token: token.clone(),
                reason: orphan.reason.to_string(),
            };
            store.enqueue_compensation(&compensation, now).await.is_ok()
        }
        Err(_) => false,
    };
    if queued {
        tracing::warn!(client_id = %orphan.client_id, reason = orphan.reason, error = %error,
            "could not delete a client again at the authorization server; kept to be retried");
        return;
    }
    tracing::error!(client_id = %orphan.client_id, reason = orphan.reason, error = %error,
        "could not delete a client again at the authorization server, nor keep it in the database; \
         retrying in this process (a restart loses it: see docs/security.md)");
    let server = server.clone();
    let (client_id, uri, token) = (
        orphan.client_id.to_string(),
        orphan.uri.clone(),
        orphan.access_token.to_string(),
    );
    tokio::spawn(async move {
        let mut attempts = 1;
        loop {
            tokio::time::sleep(Duration::from_secs(backoff_secs(attempts) as u64)).await;
            let registration = Registration {
                client_id: &client_id,
                uri: &uri,
                access_token: &token,
            };
            match server.delete(&registration).await {
                Ok(()) => {
                    crate::metrics::as_compensation("done");
                    tracing::info!(client_id = %client_id, "client deleted again at the authorization server");
                    return;
                }
                Err(e) => {
                    crate::metrics::as_compensation("retry");
                    tracing::warn!(client_id = %client_id, error = %e, attempts,
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
    server: &AuthorizationServer,
    key: Option<&StorageKey>,
    client_id: &str,
) -> Result<(), RegistrationError> {
    let link = match store.get_as_link(client_id).await {
        Ok(Some(link)) => link,
        Ok(None) => return Ok(()),
        Err(e) if e.is_transient() => return Err(RegistrationError::Unavailable),
        Err(e) => return Err(RegistrationError::Internal(e.to_string())),
    };
    let token = sealed::recover(key, client_id, &link.registration_access_token)
        .map_err(|e| RegistrationError::AsUnavailable(e.to_string()))?;
    let uri = Url::parse(&link.registration_client_uri)
        .map_err(|e| RegistrationError::Internal(format!("registration_client_uri: {e}")))?;
    let registration = Registration {
        client_id,
        uri: &uri,
        access_token: &token,
    };
    // Whatever the AS says, if not gone it is a 503: nothing of a DELETE is the TPP's to fix.
    server
        .delete(&registration)
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
        let result = match (
            sealed::recover(key, &c.client_id, &c.registration_access_token),
            Url::parse(&c.registration_client_uri),
        ) {
            (Ok(token), Ok(uri)) => {
                let registration = Registration {
                    client_id: &c.client_id,
                    uri: &uri,
                    access_token: &token,
                };
                match server.delete(&registration).await {
                    Ok(()) => CompensationResult::Done,
                    Err(e) => CompensationResult::RetryAt {
                        at: now + backoff_secs(c.attempts),
                        error: e.to_string(),
                    },
                }
            }
            (Err(e), _) => CompensationResult::RetryAt {
                at: now + MAX_BACKOFF_SECS,
                error: e.to_string(),
            },
            (_, Err(e)) => CompensationResult::RetryAt {
                at: now + MAX_BACKOFF_SECS,
                error: format!("registration_client_uri: {e}"),
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
