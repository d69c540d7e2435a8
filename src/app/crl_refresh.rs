//! The background refresh of `server.tls.crl` URLs (see `pki/crl.rs` for the rules): every
//! second the URLs of the running config that are due are fetched; a changed CRL rebuilds the
//! transport as a reload would, so that new handshakes and open connections both see it.

use std::sync::Arc;
use std::time::Duration;

use super::reload::Reloader;
use crate::pki::crl::CrlUrls;
use crate::pki::crl_fetch::{fetch_due, urls};

/// Refreshes for as long as the server runs.
pub fn spawn(reloader: Reloader, crls: Arc<CrlUrls>, client: reqwest::Client) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let config = reloader.config();
            if urls(&config).is_empty() {
                continue;
            }
            if fetch_due(&config, &crls, &client).await {
                let this = reloader.clone();
                match tokio::task::spawn_blocking(move || this.rebuild_transport()).await {
                    Ok(Ok(())) => tracing::info!("new CRL in use, for open connections too"),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "a new CRL could not be put in use; the previous TLS material stays")
                    }
                    Err(e) => tracing::error!(error = %e, "the CRL rebuild task did not finish"),
                }
            }
        }
    });
}
