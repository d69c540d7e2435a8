//! Fetching `server.tls.crl` URLs (the rules are in `pki/crl.rs`, which only parses and
//! judges): at start-up, by `check-config`, before a reload puts a new URL in use, and by the
//! background refresh (`app/crl_refresh.rs`).

use crate::config::{Config, CrlSource};
use crate::pki::crl::{self, CrlUrls};
use std::time::Duration;

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
