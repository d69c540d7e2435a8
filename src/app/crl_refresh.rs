//! The background refresh of `server.tls.crl` URLs (see `pki/crl.rs` for the rules): every
//! second the URLs of the running config that are due are fetched, each checked against the
//! running material's CRL issuers; a changed CRL rebuilds the transport from the material in
//! use (no file is read again), so that new handshakes and open connections both see it. A
//! CRL that could not be put in use is tried again until it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reload::Reloader;
use crate::pki::crl::CrlUrls;
use crate::pki::crl_fetch::{fetch_due, urls};

/// A rebuild that failed is tried again after this long.
const REBUILD_RETRY: Duration = Duration::from_secs(10);

/// Refreshes for as long as the server runs.
pub fn spawn(reloader: Reloader, crls: Arc<CrlUrls>, client: reqwest::Client) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A CRL recorded but not yet in the transport, and when to try again.
        let mut unapplied = false;
        let mut retry_at = Instant::now();
        loop {
            tick.tick().await;
            let config = reloader.config();
            if urls(&config).is_empty() {
                continue;
            }
            let issuers = reloader.crl_issuers();
            if fetch_due(&config, &crls, &client, &issuers).await {
                unapplied = true;
                retry_at = Instant::now();
            }
            if !unapplied || Instant::now() < retry_at {
                continue;
            }
            let this = reloader.clone();
            match tokio::task::spawn_blocking(move || this.rebuild_transport()).await {
                Ok(Ok(())) => {
                    unapplied = false;
                    tracing::info!("new CRL in use, for open connections too");
                }
                Ok(Err(e)) => tracing::error!(
                    error = %e,
                    retry_secs = REBUILD_RETRY.as_secs(),
                    "a new CRL could not be put in use; the previous TLS material stays and it is tried again"
                ),
                Err(e) => tracing::error!(error = %e, "the CRL rebuild task did not finish"),
            }
            if unapplied {
                retry_at = Instant::now() + REBUILD_RETRY;
            }
        }
    });
}
