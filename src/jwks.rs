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
//! - Only signature keys (`use` = `sig`, or no `use`) are kept; RSA keys need 2048 bits.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::config::JwksConfig;
use crate::jose::printable;

/// A source is refetched for an unknown `kid` at most this often.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
/// Sources remembered at most; beyond this, entries not used recently are dropped.
const MAX_SOURCES: usize = 10_000;
/// Smallest RSA modulus accepted, in bits (FAPI 1.0 Part 1 §5.2.2).
pub const MIN_RSA_BITS: usize = 2048;

/// Why no key could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The JWKS URL is not https (or not a URL).
    #[error("JWKS location `{0}` is not an https URL")]
    NotHttps(String),
    /// The URL's host is not in `jwks.allowed_hosts`.
    #[error("JWKS host `{0}` is not allowed")]
    HostNotAllowed(String),
    /// The fetch failed (connection, TLS, timeout) and no usable cache exists.
    #[error("JWKS at `{0}` could not be fetched: {1}")]
    Fetch(String, String),
    /// The response was not a JWKS.
    #[error("JWKS at `{0}` is not a valid JWK set: {1}")]
    Invalid(String, String),
    /// No key with this `kid` (among the usable signature keys).
    #[error("no signature key with kid `{0}` in the JWKS at `{1}`")]
    UnknownKid(String, String),
    /// The key exists but cannot verify this algorithm.
    #[error("key `{0}` cannot verify `{1}` signatures")]
    KeyUnfit(String, String),
}

/// The kind of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
}

/// A usable public signature key.
pub struct VerificationKey {
    pub kid: Option<String>,
    pub family: KeyFamily,
    /// The JWK's `alg`, if it names one.
    pub alg: Option<String>,
    /// The public key as aws-lc takes it: an RSA SubjectPublicKeyInfo (DER), or an uncompressed EC
    /// point.
    material: Vec<u8>,
    /// The key parsed once per algorithm on first use: rebuilding an RSA key (and its
    /// Montgomery context) for every signature was a tenth of a registration's CPU.
    parsed: [OnceLock<Option<ParsedPublicKey>>; ALGS.len()],
}

/// The algorithms a key can verify, and aws-lc's verifier for each.
const ALGS: [(Algorithm, &dyn VerificationAlgorithm); 8] = [
    (Algorithm::PS256, &sig::RSA_PSS_2048_8192_SHA256),
    (Algorithm::PS384, &sig::RSA_PSS_2048_8192_SHA384),
    (Algorithm::PS512, &sig::RSA_PSS_2048_8192_SHA512),
    (Algorithm::RS256, &sig::RSA_PKCS1_2048_8192_SHA256),
    (Algorithm::RS384, &sig::RSA_PKCS1_2048_8192_SHA384),
    (Algorithm::RS512, &sig::RSA_PKCS1_2048_8192_SHA512),
    (Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED),
    (Algorithm::ES384, &sig::ECDSA_P384_SHA384_FIXED),
];

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish()
    }
}

impl VerificationKey {
    /// Whether `signature` (raw bytes, JWS form) signs `message` with `alg`. The caller has
    /// checked [`VerificationKey::fits`].
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        let Some(i) = ALGS.iter().position(|(a, _)| *a == alg) else {
            return false;
        };
        let parsed =
            self.parsed[i].get_or_init(|| ParsedPublicKey::new(ALGS[i].1, &self.material).ok());
        parsed
            .as_ref()
            .is_some_and(|key| key.verify_sig(message, signature).is_ok())
    }

    /// Whether this key may verify `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let family_ok = match alg {
            Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512 => self.family == KeyFamily::Rsa,
            Algorithm::ES256 => self.family == KeyFamily::EcP256,
            Algorithm::ES384 => self.family == KeyFamily::EcP384,
            _ => false,
        };
        family_ok && self.alg.as_deref().is_none_or(|a| a == alg_name(alg))
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        _ => "?",
    }
}

/// The usable signature keys of a JWKS document.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Arc<VerificationKey>>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the usable signature keys and skipping the rest
    /// (encryption keys, unknown types, short RSA keys).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|_| "not JSON".to_string())?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| "no `keys` array".to_string())?;
        let mut usable = Vec::new();
        for raw in keys {
            if let Some(key) = usable_key(raw) {
                usable.push(Arc::new(key));
            }
        }
        Ok(Self { keys: usable })
    }

    /// The key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&Arc<VerificationKey>> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

fn usable_key(raw: &Value) -> Option<VerificationKey> {
    let obj = raw.as_object()?;
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        _ => return None,
    }
    let b64 = |name: &str| URL_SAFE_NO_PAD.decode(obj.get(name)?.as_str()?).ok();
    let (family, material) = match obj.get("kty")?.as_str()? {
        "RSA" => {
            let (n, e) = (b64("n")?, b64("e")?);
            let start = n.iter().position(|b| *b != 0)?;
            let bits = (n.len() - start) * 8 - n[start].leading_zeros() as usize;
            if bits < MIN_RSA_BITS {
                return None;
            }
            let e = &e[e.iter().position(|b| *b != 0)?..];
            let spki = aws_lc_rs::rsa::PublicKeyComponents { n: &n[start..], e }
                .as_der()
                .ok()?;
            (KeyFamily::Rsa, spki.as_ref().to_vec())
        }
        "EC" => {
            let (family, size) = match obj.get("crv")?.as_str()? {
                "P-256" => (KeyFamily::EcP256, 32),
                "P-384" => (KeyFamily::EcP384, 48),
                _ => return None,
            };
            let (x, y) = (b64("x")?, b64("y")?);
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (family, point)
        }
        _ => return None,
    };
    Some(VerificationKey {
        kid: obj.get("kid").and_then(Value::as_str).map(str::to_string),
        family,
        alg: obj.get("alg").and_then(Value::as_str).map(str::to_string),
        material,
        parsed: Default::default(),
    })
}

/// Picks the key for `kid` and `alg` from a set.
pub fn select(
    set: &KeySet,
    kid: &str,
    alg: Algorithm,
    location: &str,
) -> Result<Arc<VerificationKey>, JwksError> {
    let key = set
        .find(kid)
        .ok_or_else(|| JwksError::UnknownKid(printable(kid, 80), printable(location, 200)))?;
    if !key.fits(alg) {
        return Err(JwksError::KeyUnfit(
            printable(kid, 80),
            alg_name(alg).to_string(),
        ));
    }
    Ok(key.clone())
}

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
        }
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
        alg: Algorithm,
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
        alg: Algorithm,
        restrict_hosts: bool,
    ) -> Result<Vec<Arc<VerificationKey>>, JwksError> {
        let keys = self.key_set(location, restrict_hosts, |_| true).await?;
        Ok(keys.keys.iter().filter(|k| k.fits(alg)).cloned().collect())
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

/// The https client for outbound fetches (JWKS, URI validation): system roots plus
/// `jwks.extra_ca`, the same FAPI-restricted aws-lc-rs provider as the server, no redirects.
pub fn http_client(config: &JwksConfig) -> Result<reqwest::Client, crate::tls::TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for (i, path) in config.extra_ca.iter().enumerate() {
        let key = format!("open_banking.dcr.jwks.extra_ca[{i}]");
        for cert in crate::tls::load_certificates(&key, path)? {
            roots.add(cert).map_err(|e| crate::tls::TlsError::Config {
                key: key.clone(),
                message: e.to_string(),
            })?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| crate::tls::TlsError::Config {
            key: "open_banking.dcr.jwks".into(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let timeout = Duration::from_millis(config.timeout_ms);
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("dcr-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::tls::TlsError::Config {
            key: "open_banking.dcr.jwks".into(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_jwk(bits: usize) -> Value {
        // A syntactically valid modulus of the given size (not a real key; parse only).
        let mut n = vec![0xC3u8; bits / 8];
        n[bits / 8 - 1] |= 1;
        json!({"kty": "RSA", "kid": format!("rsa{bits}"), "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"})
    }

    #[test]
    fn keeps_only_usable_signature_keys() {
        let mut enc = rsa_jwk(2048);
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc");
        let doc = json!({"keys": [
            rsa_jwk(2048),
            rsa_jwk(1024),
            enc,
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            "not an object"
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["rsa2048"]);
    }

    #[test]
    fn rsa_key_does_not_fit_es256_and_alg_must_match() {
        let mut jwk = rsa_jwk(2048);
        jwk["alg"] = json!("PS256");
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
        assert!(select(&set, "rsa2048", Algorithm::PS256, "x").is_ok());
        assert!(matches!(
            select(&set, "rsa2048", Algorithm::ES256, "x"),
            Err(JwksError::KeyUnfit(..))
        ));
        assert!(matches!(
            select(&set, "rsa2048", Algorithm::RS256, "x"),
            Err(JwksError::KeyUnfit(..))
        ));
        assert!(matches!(
            select(&set, "other", Algorithm::PS256, "x"),
            Err(JwksError::UnknownKid(..))
        ));
    }

    #[test]
    fn parsed_keys_verify_real_signatures_for_their_algorithm_only() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{KeyPair, RSA_PSS_SHA256};
        let rng = SystemRandom::new();
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        let point = ec.public_key().as_ref();
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)},
            {"kty": "EC", "kid": "e", "crv": "P-256",
             "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])},
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        let message = b"header.payload";
        let mut pss = vec![0; rsa.public_modulus_len()];
        rsa.sign(&RSA_PSS_SHA256, &rng, message, &mut pss).unwrap();
        let es = ec.sign(&rng, message).unwrap();
        let (r, e) = (set.find("r").unwrap(), set.find("e").unwrap());
        assert!(r.verify(Algorithm::PS256, message, &pss));
        // Twice: the second use takes the cached parsed key.
        assert!(r.verify(Algorithm::PS256, message, &pss));
        assert!(!r.verify(Algorithm::PS256, b"header.other", &pss));
        assert!(!r.verify(Algorithm::RS256, message, &pss));
        assert!(e.verify(Algorithm::ES256, message, es.as_ref()));
        assert!(!e.verify(Algorithm::ES256, b"header.other", es.as_ref()));
        assert!(!e.verify(Algorithm::PS256, message, es.as_ref()));
    }

    #[test]
    fn not_a_jwks_is_an_error() {
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(b"{\"keys\": 3}").is_err());
        assert!(KeySet::parse(b"\xff").is_err());
    }
}
