//! `rfc7591` mode's background work, in one loop per process: read the bank's AS's discovery
//! document (at start until it answers, and again after each reload, serving on with the
//! previous answer meanwhile), and work off the compensations (clients to delete at the AS
//! that this server could not commit, or that an operator deleted). Every replica runs it;
//! each compensation is leased to one at a time.

use std::time::Duration;

use crate::http::SharedState;
use crate::registration::compensation;
use crate::store::CompensationStore;

const TICK: Duration = Duration::from_secs(1);
/// The longest pause between two discovery attempts while the AS does not answer.
const MAX_DISCOVERY_PAUSE: Duration = Duration::from_secs(30);

/// Starts the loop (it idles in `embedded` mode).
pub fn spawn(state: SharedState) {
    tokio::spawn(async move {
        let replica = uuid::Uuid::new_v4().simple().to_string();
        let mut sweeps = 0u64;
        let mut pause = TICK;
        let mut next_discovery = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let app = state.current();
            let Some(behind) = &app.behind else {
                continue;
            };
            let connection = &behind.connection;
            if connection.needs_discovery() && tokio::time::Instant::now() >= next_discovery {
                match connection.connect().await {
                    Ok(_) => {
                        pause = TICK;
                        tracing::info!(issuer = %connection.issuer(), "authorization server discovered");
                    }
                    Err(e) => {
                        tracing::warn!(issuer = %connection.issuer(), error = %e,
                            retry_in_secs = pause.as_secs(),
                            serving = connection.current().is_some(),
                            "authorization server discovery failed");
                        next_discovery = tokio::time::Instant::now() + pause;
                        pause = (pause * 2).min(MAX_DISCOVERY_PAUSE);
                    }
                }
            }
            let Some(connected) = connection.current() else {
                continue;
            };
            match app.store.pending_compensations().await {
                Ok(0) => {
                    crate::metrics::as_compensations_pending(0);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "compensations not read; retried next second");
                    continue;
                }
            }
            sweeps += 1;
            let owner = format!("{replica}/{sweeps}");
            let key = connection.storage_key.as_ref();
            let now = crate::clock::now();
            if let Err(e) =
                compensation::run_due(&app.store, &connected.server, key, &owner, now).await
            {
                tracing::warn!(error = %e, "compensations not worked off; retried next second");
            }
        }
    });
}
