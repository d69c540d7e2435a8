//! Background housekeeping: expired `jti`s and tokens, and events past `events.retention_secs`
//! (delivered, or with no webhook), are purged from the database; the rate limiters drop
//! their idle keys.
//!
//! Purging is only about space: every check compares `expires_at` itself, so a row that has
//! not been purged yet is never mistaken for a live one.

use std::time::Duration;

use super::reload::Reloader;
use crate::http::SharedState;
use crate::store::{Database, EventStore, JtiStore, TokenStore};

const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Starts the purge loop. Every replica runs it; the DELETEs are idempotent. The retention of
/// events is the running config's.
pub fn spawn_purger(store: Database, reloader: Reloader) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = crate::clock::now();
            match store.purge_expired_jtis(now).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired jtis purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging jtis failed"),
            }
            match store.purge_expired_tokens(now).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired tokens purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging tokens failed"),
            }
            let retention = reloader.config().events.retention_secs;
            let before = now.saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX));
            match store.purge_events(before).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "old events purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging events failed"),
            }
        }
    });
}

/// Sweeps the running rate limiters every `http::limits::SWEEP_EVERY`, so that the keys of
/// clients gone quiet are freed whether or not anyone else sends a request.
pub fn spawn_limit_sweeper(state: SharedState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::http::limits::SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            state.current().limits.sweep();
        }
    });
}
