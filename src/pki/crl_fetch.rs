//! Fetching `server.tls.crl` URLs (the rules are in `pki/crl.rs` and `pki/crl_check.rs`,
//! which only parse and judge): at start-up, by `check-config`, before a reload puts a new URL
//! in use, and by the background refresh (`app/crl_refresh.rs`). Each fetched CRL is checked
//! against the CRL issuers of the material in use before it is recorded.

use crate::config::{Config, CrlSource};
use crate::pki::crl::{self, CrlUrls};
use crate::pki::crl_check::{CrlError, CrlIssuers, VerifiedCrl};
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

/// The config key that names `url`: `server.tls.crl[i]`.
pub fn key_of(config: &Config, url: &url::Url) -> String {
    config
        .server
        .tls
        .crl
        .iter()
        .position(|s| matches!(s, CrlSource::Url(u) if u == url))
        .map_or_else(
            || "server.tls.crl".into(),
            |i| format!("server.tls.crl[{i}]"),
        )
}

/// The client CRL fetches use.
pub fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    Ok(crate::pki::outbound::revocation_client(
        &config.open_banking.dcr.jwks,
        FETCH_TIMEOUT,
    )?)
}

/// Fetches the CRL at `url` and checks it against `issuers`.
async fn fetch(
    client: &reqwest::Client,
    url: &url::Url,
    issuers: &CrlIssuers,
) -> Result<VerifiedCrl, CrlError> {
    use crate::pki::outbound::{error_chain, read_capped};
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| CrlError::Fetch(format!("fetch failed: {}", error_chain(&e))))?;
    let body = read_capped(response, crl::MAX_CRL_BYTES)
        .await
        .map_err(CrlError::Fetch)?;
    issuers.verify(crl::decode(&body)?)
}

/// Fetches the URLs of `config` that are due now, one after another, each CRL checked against
/// `issuers` (those of the material loaded from `config`); returns whether a CRL changed.
pub async fn fetch_due(
    config: &Config,
    crls: &CrlUrls,
    client: &reqwest::Client,
    issuers: &CrlIssuers,
) -> bool {
    let urls = urls(config);
    let skew = i64::try_from(config.open_banking.dcr.clock_skew).unwrap_or(i64::MAX);
    let mut changed = false;
    for url in crls.due(&urls, crate::clock::now()) {
        let fetched = fetch(client, url, issuers).await;
        let key = key_of(config, url);
        changed |= crls.record(&key, url.as_str(), fetched, crate::clock::now(), skew);
    }
    crls.report_ages(&urls, crate::clock::now());
    changed
}
