//! CRLs by URL (`server.tls.crl` entries that are `http(s)://` URLs).
//!
//! Each URL's CRL is fetched at start-up and refreshed in the background (`app/crl_refresh.rs`)
//! halfway to its `nextUpdate`, and at least hourly. The handshake's verifier is rebuilt with
//! every new CRL, exactly as a SIGHUP would rebuild it, so a refresh also reaches open
//! connections. A CRL that cannot be refreshed keeps being used; once it is past its
//! `nextUpdate` plus `clock_skew` (or when it was never fetched), [`StaleCrlGuard`] decides on
//! the certificates of its CA: refused when `ocsp.mode = "hard"`, else allowed and counted.
//!
//! A fetched CRL is checked first (`pki/crl_check.rs`: usable, signed by a trusted issuer);
//! then it must be of the same issuer as the URL's current CRL (a reload lets a URL change
//! issuer) and not older (CRL number, then thisUpdate). Anything else is refused like a failed
//! fetch: the last good CRL stays. A CA whose URL came to serve another issuer's CRLs counts
//! as having lost its CRL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::crl_check::{CrlError, CrlIssuers, VerifiedCrl, may_replace};

/// A CRL larger than this is refused (the largest public CA CRLs are a few MiB).
pub const MAX_CRL_BYTES: usize = 32 * 1024 * 1024;

/// At least this often a URL is fetched again, whatever its `nextUpdate`.
const MAX_REFRESH_SECS: i64 = 3600;
/// A failed fetch is retried after at most this long.
const MAX_RETRY_SECS: i64 = 60;
/// A CRL fetched already past its `nextUpdate` (its CA publishes late) is fetched again after
/// this long, not every second.
const LATE_CRL_RETRY_SECS: i64 = 10;

/// One URL's current CRL.
#[derive(Debug)]
pub struct UrlCrl {
    /// Checked when it was fetched (`pki/crl_check.rs`).
    pub crl: VerifiedCrl,
    /// When it was fetched (Unix seconds).
    pub fetched_at: i64,
}

/// A fetched body as a CRL: DER, or one PEM `X509 CRL`. Whether it is a usable, trusted CRL
/// is [`CrlIssuers::verify`]'s to say.
pub fn decode(bytes: &[u8]) -> Result<CertificateRevocationListDer<'static>, CrlError> {
    use rustls::pki_types::pem::PemObject;
    if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::from_pem_slice(bytes)
            .map_err(|e| CrlError::Malformed(super::pem::pem_problem(&e, "X509 CRL")))
    } else {
        Ok(CertificateRevocationListDer::from(bytes.to_vec()))
    }
}

#[derive(Debug, Default)]
struct Slot {
    crl: Option<Arc<UrlCrl>>,
    /// When the next fetch is due (Unix seconds); 0 = now.
    due_at: i64,
    last_error: Option<String>,
    /// Set by a reload: the next CRL may come from another (trusted) issuer.
    any_issuer: bool,
    /// Issuers (raw DER names) this URL served CRLs of before its current one: their CAs lost
    /// the CRL this URL gave them.
    former_issuers: Vec<Vec<u8>>,
}

/// What every URL's CRL is now. Shared by start-up, the refresher, reloads and the verifier
/// builder; survives reloads (a reload does not refetch).
#[derive(Debug, Default)]
pub struct CrlUrls {
    slots: Mutex<HashMap<String, Slot>>,
}

impl CrlUrls {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current CRL of `url`, if one was ever fetched.
    pub fn current(&self, url: &str) -> Option<Arc<UrlCrl>> {
        self.slots().get(url).and_then(|s| s.crl.clone())
    }

    /// The last fetch error of `url`, while it has no newer success.
    pub fn last_error(&self, url: &str) -> Option<String> {
        self.slots().get(url).and_then(|s| s.last_error.clone())
    }

    /// Which of `urls` are due for a fetch at `now`.
    pub fn due<'a>(&self, urls: &'a [url::Url], now: i64) -> Vec<&'a url::Url> {
        let slots = self.slots();
        urls.iter()
            .filter(|u| slots.get(u.as_str()).is_none_or(|s| s.due_at <= now))
            .collect()
    }

    /// Records a fetch of `url` (the config's `key`), checked against the CRL it would
    /// replace: the same issuer and not older ([`may_replace`]). Returns whether its CRL
    /// changed (the verifier must then be rebuilt). A refused CRL is a failed fetch: the last
    /// good one stays and the URL is retried.
    pub fn record(
        &self,
        key: &str,
        url: &str,
        fetched: Result<VerifiedCrl, CrlError>,
        now: i64,
        skew: i64,
    ) -> bool {
        let mut slots = self.slots();
        let slot = slots.entry(url.to_string()).or_default();
        let fetched = fetched.and_then(|new| match &slot.crl {
            Some(current) => may_replace(&current.crl, &new, slot.any_issuer).map(|()| new),
            None => Ok(new),
        });
        match fetched {
            Ok(crl) => {
                crate::metrics::crl_refresh(url, true);
                slot.due_at = now + refresh_after(crl.next_update, now);
                slot.last_error = None;
                slot.any_issuer = false;
                let changed = slot.crl.as_ref().is_none_or(|old| old.crl.der != crl.der);
                crate::metrics::crl_age(url, 0, crl.next_update);
                if let Some(old) = slot.crl.as_ref().filter(|old| old.crl.issuer != crl.issuer) {
                    tracing::warn!(
                        key,
                        url,
                        former_issuer = %old.crl.issuer_name,
                        issuer = %crl.issuer_name,
                        "CRL URL: a CRL of another issuer accepted after a reload; the former \
                         issuer's certificates count as without their CRL"
                    );
                    let former = old.crl.issuer.clone();
                    slot.former_issuers
                        .retain(|i| *i != crl.issuer && *i != former);
                    slot.former_issuers.push(former);
                }
                if changed {
                    // Absent fields are left out rather than printed as `None`.
                    tracing::info!(
                        url,
                        next_update = crl.next_update,
                        number = crl.number.as_ref().map(ToString::to_string),
                        "CRL fetched"
                    );
                } else {
                    // Same CRL: keep the old one (its `fetched_at` is now, though).
                    tracing::debug!(url, "CRL unchanged");
                }
                slot.crl = Some(Arc::new(UrlCrl {
                    crl,
                    fetched_at: now,
                }));
                changed
            }
            Err(error) => {
                crate::metrics::crl_refresh(url, false);
                let stale_at = slot
                    .crl
                    .as_ref()
                    .and_then(|c| c.crl.next_update)
                    .map(|n| n.saturating_add(skew));
                slot.due_at = now + retry_after(stale_at, now);
                let stale = stale_at.is_none_or(|at| now > at);
                tracing::warn!(
                    key,
                    url,
                    error = %error,
                    stale,
                    "CRL refused or not fetched; the last good CRL stays in use"
                );
                slot.last_error = Some(error.to_string());
                false
            }
        }
    }

    /// A reload: each of `urls` may take its next CRL from another issuer; those whose last
    /// fetch failed, and those whose CRL `issuers` (the new config's) no longer trust, are due
    /// at once.
    pub fn reloading(&self, urls: &[url::Url], issuers: &CrlIssuers) {
        let mut slots = self.slots();
        for url in urls {
            let Some(slot) = slots.get_mut(url.as_str()) else {
                continue;
            };
            slot.any_issuer = true;
            let untrusted = slot
                .crl
                .as_ref()
                .is_some_and(|c| !issuers.trusts(&c.crl.signer));
            if untrusted {
                tracing::warn!(
                    url = url.as_str(),
                    "the CRL in use for this URL is signed by a certificate the new config does \
                     not trust; it is no longer used and the URL is fetched again"
                );
            }
            if untrusted || slot.last_error.is_some() {
                slot.due_at = 0;
            }
        }
    }

    /// The CRLs of `urls` that the verifier uses (those `issuers` still trust), and what each
    /// URL covers for [`StaleCrlGuard`].
    pub fn in_use(
        &self,
        urls: &[url::Url],
        issuers: &CrlIssuers,
        skew: i64,
    ) -> (Vec<CertificateRevocationListDer<'static>>, Vec<Coverage>) {
        let slots = self.slots();
        let mut crls = Vec::new();
        let mut coverage = Vec::new();
        for url in urls {
            let slot = slots.get(url.as_str());
            let trusted = slot
                .and_then(|s| s.crl.as_ref())
                .filter(|c| issuers.trusts(&c.crl.signer));
            let former_issuers = slot.map(|s| s.former_issuers.clone()).unwrap_or_default();
            coverage.push(match trusted {
                Some(c) => {
                    crls.push(c.crl.der.clone());
                    Coverage {
                        issuer: Some(c.crl.issuer.clone()),
                        stale_at: c
                            .crl
                            .next_update
                            .map_or(i64::MAX, |n| n.saturating_add(skew)),
                        former_issuers,
                    }
                }
                None => Coverage {
                    issuer: None,
                    stale_at: i64::MIN,
                    former_issuers,
                },
            });
        }
        (crls, coverage)
    }

    /// Sets the age gauges of `urls` at `now`.
    pub fn report_ages(&self, urls: &[url::Url], now: i64) {
        let slots = self.slots();
        for url in urls {
            match slots.get(url.as_str()).and_then(|s| s.crl.as_ref()) {
                Some(c) => {
                    crate::metrics::crl_age(url.as_str(), now - c.fetched_at, c.crl.next_update)
                }
                None => crate::metrics::crl_age(url.as_str(), -1, None),
            }
        }
    }
}

/// Halfway to `nextUpdate`, at least 1 s and at most an hour; 10 s when it has passed.
fn refresh_after(next_update: Option<i64>, now: i64) -> i64 {
    match next_update {
        Some(next) if next <= now => LATE_CRL_RETRY_SECS,
        Some(next) => ((next - now) / 2).clamp(1, MAX_REFRESH_SECS),
        None => MAX_REFRESH_SECS,
    }
}

/// A quarter of the time left before the CRL goes stale, at least 1 s and at most a minute.
fn retry_after(stale_at: Option<i64>, now: i64) -> i64 {
    match stale_at {
        Some(at) => ((at - now) / 4).clamp(1, MAX_RETRY_SECS),
        None => 10,
    }
}

/// A URL's CRL as the verifier sees it: whose certificates it speaks for and when it goes
/// stale. A URL never fetched (or whose CRL is no longer trusted) has no issuer and is stale
/// from the start.
#[derive(Debug, Clone)]
pub struct Coverage {
    issuer: Option<Vec<u8>>,
    stale_at: i64,
    /// Issuers the URL covered before (see `Slot::former_issuers`).
    former_issuers: Vec<Vec<u8>>,
}

/// Wraps the webpki verifier: a certificate whose CA's URL CRL is stale (see the module
/// documentation) is refused when `hard`, else allowed and counted.
#[derive(Debug)]
pub struct StaleCrlGuard {
    inner: Arc<dyn ClientCertVerifier>,
    coverage: Vec<Coverage>,
    hard: bool,
}

impl StaleCrlGuard {
    /// The guard over `inner` for the URLs' `coverage` ([`CrlUrls::in_use`]).
    pub fn new(inner: Arc<dyn ClientCertVerifier>, coverage: Vec<Coverage>, hard: bool) -> Self {
        Self {
            inner,
            coverage,
            hard,
        }
    }

    /// Whether the CRL that speaks for certificates of `issuer` (raw DER) is stale at `now`.
    fn stale_for(&self, issuer: &[u8], now: i64) -> bool {
        stale_for(&self.coverage, issuer, now)
    }
}

/// Whether the certificates of `issuer` lack a fresh URL CRL: its URL's CRL is past its
/// nextUpdate (plus skew); or no URL covers it now but one did (it lost its CRL); or some URL
/// has no CRL in use (it might be this CA's).
fn stale_for(coverage: &[Coverage], issuer: &[u8], now: i64) -> bool {
    if let Some(c) = coverage
        .iter()
        .find(|c| c.issuer.as_deref() == Some(issuer))
    {
        return now > c.stale_at;
    }
    coverage
        .iter()
        .any(|c| c.issuer.is_none() || c.former_issuers.iter().any(|f| f == issuer))
}

impl ClientCertVerifier for StaleCrlGuard {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity) else {
            return Ok(verified);
        };
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if !self.stale_for(cert.issuer().as_raw(), seconds) {
            return Ok(verified);
        }
        crate::metrics::crl_stale_handshake(self.hard);
        if self.hard {
            tracing::info!("client certificate refused: its CA's CRL is stale (ocsp.mode = hard)");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ExpiredRevocationList,
            ))
        } else {
            tracing::debug!("client certificate allowed although its CA's CRL is stale");
            Ok(verified)
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_halfway_to_next_update_within_bounds() {
        assert_eq!(refresh_after(Some(1000 + 600), 1000), 300);
        assert_eq!(refresh_after(Some(1000 + 7 * 86400), 1000), 3600);
        assert_eq!(refresh_after(Some(1001), 1000), 1);
        assert_eq!(refresh_after(Some(1000), 1000), 10);
        assert_eq!(refresh_after(Some(10), 1000), 10);
        assert_eq!(refresh_after(None, 1000), 3600);
        assert_eq!(retry_after(Some(1000 + 40), 1000), 10);
        assert_eq!(retry_after(Some(1000 + 86400), 1000), 60);
        assert_eq!(retry_after(Some(10), 1000), 1);
    }

    #[test]
    fn garbage_is_not_a_crl() {
        let issuers = CrlIssuers::default();
        let der = decode(b"not a crl").unwrap();
        assert!(matches!(issuers.verify(der), Err(CrlError::Malformed(_))));
        let der = decode(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").unwrap();
        assert!(matches!(issuers.verify(der), Err(CrlError::Malformed(_))));
        // A truncated PEM is named in words, not as a list of bytes.
        let truncated = decode(b"-----BEGIN X509 CRL-----\nAAAA\n")
            .unwrap_err()
            .to_string();
        assert!(truncated.contains("-----END X509 CRL-----"), "{truncated}");
    }

    use super::super::crl_check::testing::{TestCa, crl_of, root};

    const NOW: i64 = 1_760_000_000;
    const URL: &str = "http://crl.example/ca.crl";

    fn record(urls: &CrlUrls, issuers: &CrlIssuers, ca: &TestCa, number: u64, at: i64) -> bool {
        let fetched = issuers.verify(crl_of(ca, number, at));
        assert!(fetched.is_ok(), "{fetched:?}");
        urls.record("server.tls.crl[0]", URL, fetched, NOW, 0)
    }

    fn in_use_number(urls: &CrlUrls) -> Option<String> {
        urls.current(URL)
            .and_then(|c| c.crl.number.as_ref().map(ToString::to_string))
    }

    #[test]
    fn a_url_never_goes_back_to_an_older_crl() {
        let a = root("CA A");
        let issuers = CrlIssuers::new(std::slice::from_ref(&a.der), &[], NOW).unwrap();
        let urls = CrlUrls::default();
        assert!(record(&urls, &issuers, &a, 5, NOW));
        assert!(!record(&urls, &issuers, &a, 4, NOW + 60));
        assert_eq!(in_use_number(&urls).as_deref(), Some("5"));
        assert!(urls.last_error(URL).is_some_and(|e| e.contains("older")));
        assert!(!record(&urls, &issuers, &a, 5, NOW - 60));
        assert!(record(&urls, &issuers, &a, 6, NOW));
        assert_eq!(in_use_number(&urls).as_deref(), Some("6"));
        assert_eq!(urls.last_error(URL), None);
    }

    #[test]
    fn a_url_keeps_its_issuer_until_a_reload() {
        let (a, b) = (root("CA A"), root("CA B"));
        let issuers = CrlIssuers::new(&[a.der.clone(), b.der.clone()], &[], NOW).unwrap();
        let urls = CrlUrls::default();
        let list = [url::Url::parse(URL).unwrap()];
        assert!(record(&urls, &issuers, &a, 5, NOW));
        assert!(!record(&urls, &issuers, &b, 9, NOW));
        assert!(urls.last_error(URL).is_some_and(|e| e.contains("CA B")));
        let issuer_a = urls.current(URL).unwrap().crl.issuer.clone();
        let (_, coverage) = urls.in_use(&list, &issuers, 0);
        assert!(!stale_for(&coverage, &issuer_a, NOW));

        // A reload lets the next CRL be B's, and makes the refused URL due at once; A then
        // counts as having lost its CRL.
        urls.reloading(&list, &issuers);
        assert_eq!(urls.due(&list, NOW).len(), 1);
        assert!(record(&urls, &issuers, &b, 1, NOW));
        let (crls, coverage) = urls.in_use(&list, &issuers, 0);
        assert_eq!(crls.len(), 1);
        let issuer_b = urls.current(URL).unwrap().crl.issuer.clone();
        assert!(!stale_for(&coverage, &issuer_b, NOW));
        assert!(stale_for(&coverage, &issuer_a, NOW));
        // A CA never seen at a URL is not covered by one (not stale).
        assert!(!stale_for(&coverage, b"another CA", NOW));
        // The reload's leave is used up: back to A needs another reload.
        assert!(!record(&urls, &issuers, &a, 7, NOW));
    }

    #[test]
    fn a_crl_whose_signer_a_reload_no_longer_trusts_is_not_used() {
        let (a, b) = (root("CA A"), root("CA B"));
        let both = CrlIssuers::new(&[a.der.clone(), b.der.clone()], &[], NOW).unwrap();
        let only_b = CrlIssuers::new(std::slice::from_ref(&b.der), &[], NOW).unwrap();
        let urls = CrlUrls::default();
        let list = [url::Url::parse(URL).unwrap()];
        assert!(record(&urls, &both, &a, 5, NOW));
        let (crls, coverage) = urls.in_use(&list, &only_b, 0);
        assert!(crls.is_empty());
        // Judged as a URL without a CRL: stale for every CA it does not cover.
        assert!(stale_for(&coverage, b"any CA", NOW));
        urls.reloading(&list, &only_b);
        assert_eq!(urls.due(&list, NOW).len(), 1);
    }
}
