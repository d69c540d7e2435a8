//! The background refresh of `server.tls.crl` URLs (see `pki/crl.rs` for the rules): every
//! second the URLs of the running config that are due are fetched; a changed CRL rebuilds the
//! transport as a reload would, so that new handshakes and open connections both see it.

use std::sync::Arc;
use std::time::Duration;

use super::reload::Reloader;
use crate::config::{Config, CrlSource};
use crate::pki::crl::{self, CrlUrls};

/// A CRL fetch gives up after this long (CRLs can be megabytes).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The CRL URLs of `config`.
pub fn urls(config: &Config) -> Vec<url::Url> {
    config
        .server
        .tls
        .crl
        .iter()
        .filter_map(|s| match s {
            CrlSource::Url(u) => Some(u.clone()),
            CrlSource::File(_) => None,
        })
        .collect()
}

/// The client CRL fetches use.
pub fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    Ok(crate::pki::outbound::revocation_client(
        &config.open_banking.dcr.jwks,
        FETCH_TIMEOUT,
    )?)
}

/// Fetches and parses the CRL at `url`.
async fn fetch(client: &reqwest::Client, url: &url::Url, now: i64) -> Result<crl::UrlCrl, String> {
    use crate::pki::outbound::{error_chain, read_capped};
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("fetch failed: {}", error_chain(&e)))?;
    let body = read_capped(response, crl::MAX_CRL_BYTES).await?;
    crl::parse(&body, now)
}

/// Fetches the URLs of `config` that are due now, one after another; returns whether a CRL
/// changed.
pub async fn fetch_due(config: &Config, crls: &CrlUrls, client: &reqwest::Client) -> bool {
    let urls = urls(config);
    let skew = i64::try_from(config.open_banking.dcr.clock_skew).unwrap_or(i64::MAX);
    let mut changed = false;
    for url in crls.due(&urls, crate::clock::now()) {
        let fetched = fetch(client, url, crate::clock::now()).await;
        changed |= crls.record(url.as_str(), fetched, crate::clock::now(), skew);
    }
    crls.report_ages(&urls, crate::clock::now());
    changed
}

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
