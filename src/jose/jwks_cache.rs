//! JWKS: the SSA issuers' keys and each TPP's `software_jwks_endpoint`, fetched over https and
//! cached.
//!
//! - Only https, only `jwks.allowed_hosts` when that list is set, no redirects, a timeout and a
//!   `jwks.max_bytes` cap (256 KiB) on the response.
//! - Keys are cached for `jwks.cache_ttl`. A `kid` that is not cached triggers one refetch, at
//!   most once per source every [`MIN_REFETCH`], and concurrent callers share that fetch, so
//!   random `kid`s cannot turn the server into a request amplifier.
//! - A source that is down is answered from its stale cache while that is younger than
//!   `jwks.max_stale`.
//! - Key sets this server holds itself (the sandbox's, which it also serves) are answered from
//!   memory under their URLs, never fetched: from where the server runs, its own public URL
//!   may not reach it (a container whose `DCR_ISSUER` host resolves only outside, or whose
//!   `DCR_LISTEN` port differs from the issuer's).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::jwk::{JwksError, KeySet, VerificationKey, select};
use crate::config::JwksConfig;
use crate::domain::SigningAlg;
use crate::text::printable;

/// A source is refetched for an unknown `kid` at most this often.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
/// Sources remembered at most; beyond this, entries not used recently are dropped.
const MAX_SOURCES: usize = 10_000;

struct Cached {
    keys: Arc<KeySet>,
    fetched_at: Instant,
}

#[derive(Default)]
struct Source {
    /// Held while fetching: concurrent callers wait and then share the result.
    fetch: tokio::sync::Mutex<()>,
    cached: RwLock<Option<Cached>>,
    last_attempt: RwLock<Option<Instant>>,
    last_failure: RwLock<Option<Instant>>,
    last_used: RwLock<Option<Instant>>,
}

impl Source {
    fn snapshot(&self) -> Option<(Arc<KeySet>, Instant)> {
        self.cached
            .read()
            .ok()?
            .as_ref()
            .map(|c| (c.keys.clone(), c.fetched_at))
    }
}

/// The process's JWKS cache. It is only a cache: the truth is always the remote JWKS.
pub struct JwksCache {
    client: reqwest::Client,
    allowed_hosts: Vec<String>,
    ttl: Duration,
    max_stale: Duration,
    max_bytes: usize,
    sources: RwLock<HashMap<String, Arc<Source>>>,
    /// The server's own key sets, by URL (normalised as [`reqwest::Url`] prints it).
    own: HashMap<String, Arc<KeySet>>,
}

impl JwksCache {
    pub fn new(client: reqwest::Client, config: &JwksConfig) -> Self {
        Self {
            client,
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            ttl: Duration::from_secs(config.cache_ttl),
            max_stale: Duration::from_secs(config.max_stale.max(config.cache_ttl)),
            max_bytes: config.max_bytes,
            sources: RwLock::new(HashMap::new()),
            own: HashMap::new(),
        }
    }

    /// This cache answering `urls` with `keys`, a set the server holds itself, without a
    /// request. A URL that does not parse is left out (it could never be asked for).
    pub fn with_own_set<'a>(
        mut self,
        urls: impl IntoIterator<Item = &'a str>,
        keys: &Arc<KeySet>,
    ) -> Self {
        for url in urls {
            if let Ok(parsed) = reqwest::Url::parse(url) {
                self.own.insert(parsed.to_string(), keys.clone());
            }
        }
        self
    }

    /// This cache with the entries of `old` (a reload keeps the TPPs' cached key sets, so
    /// that it does not cause a burst of refetches). The entries are shared, not copied.
    pub fn with_entries_of(self, old: &JwksCache) -> Self {
        if let (Ok(mut mine), Ok(theirs)) = (self.sources.write(), old.sources.read()) {
            mine.extend(theirs.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        self
    }

    /// Checks that `location` is an https URL on an allowed host.
    pub fn check_location(
        &self,
        location: &str,
        restrict_hosts: bool,
    ) -> Result<reqwest::Url, JwksError> {
        let url = reqwest::Url::parse(location)
            .map_err(|_| JwksError::NotHttps(printable(location, 200)))?;
        if url.scheme() != "https" || url.host_str().is_none() {
            return Err(JwksError::NotHttps(printable(location, 200)));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if restrict_hosts && !self.allowed_hosts.is_empty() && !self.allowed_hosts.contains(&host) {
            return Err(JwksError::HostNotAllowed(printable(&host, 200)));
        }
        Ok(url)
    }

    fn source(&self, location: &str) -> Arc<Source> {
        if let Some(s) = self
            .sources
            .read()
            .ok()
            .and_then(|m| m.get(location).cloned())
        {
            return s;
        }
        let Ok(mut map) = self.sources.write() else {
            return Arc::new(Source::default());
        };
        if map.len() >= MAX_SOURCES {
            // Drop the least recently used half; they are refetched on demand.
            let mut by_use: Vec<(String, Option<Instant>)> = map
                .iter()
                .map(|(k, s)| (k.clone(), s.last_used.read().ok().and_then(|t| *t)))
                .collect();
            by_use.sort_by_key(|(_, t)| *t);
            for (k, _) in by_use.into_iter().take(MAX_SOURCES / 2) {
                map.remove(&k);
            }
        }
        map.entry(location.to_string()).or_default().clone()
    }

    /// The key with `kid` able to verify `alg`, from the JWKS at `location`.
    ///
    /// `restrict_hosts` applies `jwks.allowed_hosts` (TPP JWKS); the operator's own SSA issuer
    /// URLs are not restricted.
    pub async fn key(
        &self,
        location: &str,
        kid: &str,
        alg: SigningAlg,
        restrict_hosts: bool,
    ) -> Result<Arc<VerificationKey>, JwksError> {
        let keys = self
            .key_set(location, restrict_hosts, |set| set.find(kid).is_some())
            .await?;
        select(&keys, kid, alg, location)
    }

    /// Every usable key of the JWKS at `location` that can verify `alg` (for JWTs without a
    /// `kid`).
    pub async fn keys_for(
        &self,
        location: &str,
        alg: SigningAlg,
        restrict_hosts: bool,
    ) -> Result<Vec<Arc<VerificationKey>>, JwksError> {
        let keys = self.key_set(location, restrict_hosts, |_| true).await?;
        Ok(keys.keys.iter().filter(|k| k.fits(alg)).cloned().collect())
    }

    /// Whether the JWKS at `location` (a TPP's) has a `use: "tls"` key for the certificate with
    /// this `x5t#S256`. A set without one is refetched under the usual rules, so a key just
    /// published is found.
    pub async fn has_tls_key(&self, location: &str, x5t_s256: &str) -> Result<bool, JwksError> {
        let keys = self
            .key_set(location, true, |set| set.has_tls_key(x5t_s256))
            .await?;
        Ok(keys.has_tls_key(x5t_s256))
    }

    /// The whole set at `location` (the directory's revoked keys of a software), under the TPP
    /// JWKS rules: TTL, stale-if-error, host allow-list, size cap.
    pub async fn any_set(&self, location: &str) -> Result<Arc<KeySet>, JwksError> {
        self.key_set(location, true, |_| true).await
    }

    /// The key set of `location`: from the cache while it is fresh and `satisfies` it, else
    /// refetched under the rules in the module documentation.
    pub async fn key_set(
        &self,
        location: &str,
        restrict_hosts: bool,
        satisfies: impl Fn(&KeySet) -> bool,
    ) -> Result<Arc<KeySet>, JwksError> {
        let url = self.check_location(location, restrict_hosts)?;
        if let Some(keys) = self.own.get(url.as_str()) {
            crate::metrics::jwks_cache(true);
            return Ok(keys.clone());
        }
        let source = self.source(location);
        if let Ok(mut used) = source.last_used.write() {
            *used = Some(Instant::now());
        }
        let asked_at = Instant::now();
        if let Some((keys, fetched_at)) = source.snapshot()
            && fetched_at.elapsed() < self.ttl
            && satisfies(&keys)
        {
            crate::metrics::jwks_cache(true);
            return Ok(keys);
        }
        crate::metrics::jwks_cache(false);

        let _fetching = source.fetch.lock().await;
        // Someone else may have fetched while this caller waited: share their result.
        let snapshot = source.snapshot();
        if let Some((keys, fetched_at)) = &snapshot
            && *fetched_at >= asked_at
        {
            return Ok(keys.clone());
        }
        let fresh = snapshot
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < self.ttl);
        let within = |t: &RwLock<Option<Instant>>| {
            t.read()
                .ok()
                .and_then(|t| *t)
                .is_some_and(|t| t.elapsed() < MIN_REFETCH)
        };
        let usable_stale = |snapshot: &Option<(Arc<KeySet>, Instant)>| match snapshot {
            Some((keys, at)) if at.elapsed() < self.max_stale => Some(keys.clone()),
            _ => None,
        };
        if let (true, Some((keys, _))) = (fresh && within(&source.last_attempt), &snapshot) {
            // Not satisfied by a set fetched moments ago (an unknown kid): no new request.
            return Ok(keys.clone());
        }
        if !fresh && within(&source.last_failure) {
            // The source failed moments ago; do not hammer it.
            return usable_stale(&snapshot).ok_or_else(|| {
                JwksError::Fetch(
                    printable(location, 200),
                    "recently unreachable; retry shortly".into(),
                )
            });
        }
        if let Ok(mut t) = source.last_attempt.write() {
            *t = Some(Instant::now());
        }
        let host = url.host_str().unwrap_or_default().to_string();
        match self.fetch(&url).await {
            Ok(keys) => {
                crate::metrics::jwks_fetch(&host, "ok");
                let keys = Arc::new(keys);
                if let Ok(mut c) = source.cached.write() {
                    *c = Some(Cached {
                        keys: keys.clone(),
                        fetched_at: Instant::now(),
                    });
                }
                Ok(keys)
            }
            Err(e) => {
                crate::metrics::jwks_fetch(&host, "failed");
                tracing::warn!(location = %printable(location, 200), error = %e, "JWKS fetch failed");
                if let Ok(mut t) = source.last_failure.write() {
                    *t = Some(Instant::now());
                }
                usable_stale(&snapshot).ok_or(e)
            }
        }
    }

    async fn fetch(&self, url: &reqwest::Url) -> Result<KeySet, JwksError> {
        let location = printable(url.as_str(), 200);
        let fetch_err = |e: String| JwksError::Fetch(location.clone(), e);
        let mut response = self
            .client
            .get(url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(|e| fetch_err(describe(&e)))?;
        if !response.status().is_success() {
            return Err(fetch_err(format!(
                "HTTP status {}",
                response.status().as_u16()
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(fetch_err(format!(
                "response larger than {} bytes",
                self.max_bytes
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fetch_err(describe(&e)))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(fetch_err(format!(
                    "response larger than {} bytes",
                    self.max_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        KeySet::parse(&body).map_err(|e| JwksError::Invalid(location.clone(), e))
    }
}

/// A short, public description of a reqwest error (no internal addresses).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_redirect() {
        "redirects are not followed".into()
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read".into()
    } else {
        "request failed".into()
    }
}
