//! CRLs by URL (`server.tls.crl` entries that are `http(s)://` URLs).
//!
//! Each URL's CRL is fetched at start-up and refreshed in the background (`app/crl_refresh.rs`)
//! halfway to its `nextUpdate`, and at least hourly. The handshake's verifier is rebuilt with
//! every new CRL, exactly as a SIGHUP would rebuild it, so a refresh also reaches open
//! connections. A CRL that cannot be refreshed keeps being used; once it is past its
//! `nextUpdate` plus `clock_skew` (or when it was never fetched), [`StaleCrlGuard`] decides on
//! the certificates of its CA: refused when `ocsp.mode = "hard"`, else allowed and counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

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
    pub der: CertificateRevocationListDer<'static>,
    /// The CRL's issuer, raw DER: the `issuer` of the certificates it speaks for.
    pub issuer: Vec<u8>,
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// When it was fetched (Unix seconds).
    pub fetched_at: i64,
}

/// Parses a fetched CRL (DER, or one PEM `X509 CRL`).
pub fn parse(bytes: &[u8], fetched_at: i64) -> Result<UrlCrl, String> {
    use rustls::pki_types::pem::PemObject;
    let der = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::from_pem_slice(bytes).map_err(|e| format!("not PEM: {e}"))?
    } else {
        CertificateRevocationListDer::from(bytes.to_vec())
    };
    let (rest, crl) =
        x509_parser::parse_x509_crl(&der).map_err(|e| format!("not a valid CRL: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the CRL".into());
    }
    Ok(UrlCrl {
        issuer: crl.issuer().as_raw().to_vec(),
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        fetched_at,
        der,
    })
}

#[derive(Debug, Default)]
struct Slot {
    crl: Option<Arc<UrlCrl>>,
    /// When the next fetch is due (Unix seconds); 0 = now.
    due_at: i64,
    last_error: Option<String>,
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

    /// Records a fetch of `url`; returns whether its CRL changed (the verifier must then be
    /// rebuilt).
    pub fn record(&self, url: &str, fetched: Result<UrlCrl, String>, now: i64, skew: i64) -> bool {
        let mut slots = self.slots();
        let slot = slots.entry(url.to_string()).or_default();
        match fetched {
            Ok(crl) => {
                crate::metrics::crl_refresh(url, true);
                slot.due_at = now + refresh_after(crl.next_update, now);
                slot.last_error = None;
                let changed = slot.crl.as_ref().is_none_or(|old| old.der != crl.der);
                crate::metrics::crl_age(url, 0, crl.next_update);
                if changed {
                    tracing::info!(url, next_update = ?crl.next_update, "CRL fetched");
                } else {
                    // Same CRL: keep the old one (its `fetched_at` is now, though).
                    tracing::debug!(url, "CRL unchanged");
                }
                slot.crl = Some(Arc::new(crl));
                changed
            }
            Err(error) => {
                crate::metrics::crl_refresh(url, false);
                let stale_at = slot
                    .crl
                    .as_ref()
                    .and_then(|c| c.next_update)
                    .map(|n| n.saturating_add(skew));
                slot.due_at = now + retry_after(stale_at, now);
                let stale = stale_at.is_none_or(|at| now > at);
                tracing::warn!(
                    url,
                    error = %error,
                    stale,
                    "CRL refresh failed; the last CRL stays in use"
                );
                slot.last_error = Some(error);
                false
            }
        }
    }

    /// Sets the age gauges of `urls` at `now`.
    pub fn report_ages(&self, urls: &[url::Url], now: i64) {
        let slots = self.slots();
        for url in urls {
            match slots.get(url.as_str()).and_then(|s| s.crl.as_ref()) {
                Some(c) => crate::metrics::crl_age(url.as_str(), now - c.fetched_at, c.next_update),
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
/// stale. A URL never fetched has no issuer and is stale from the start.
#[derive(Debug, Clone)]
struct Coverage {
    issuer: Option<Vec<u8>>,
    stale_at: i64,
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
    /// The guard over `inner` for `urls` as `crls` knows them now.
    pub fn new(
        inner: Arc<dyn ClientCertVerifier>,
        urls: &[url::Url],
        crls: &CrlUrls,
        skew: i64,
        hard: bool,
    ) -> Self {
        let coverage = urls
            .iter()
            .map(|u| match crls.current(u.as_str()) {
                Some(c) => Coverage {
                    issuer: Some(c.issuer.clone()),
                    stale_at: c.next_update.map_or(i64::MAX, |n| n.saturating_add(skew)),
                },
                None => Coverage {
                    issuer: None,
                    stale_at: i64::MIN,
                },
            })
            .collect();
        Self {
            inner,
            coverage,
            hard,
        }
    }

    /// Whether the CRL that speaks for certificates of `issuer` (raw DER) is stale at `now`.
    fn stale_for(&self, issuer: &[u8], now: i64) -> bool {
        match self
            .coverage
            .iter()
            .find(|c| c.issuer.as_deref() == Some(issuer))
        {
            Some(c) => now > c.stale_at,
            // A URL never fetched might be this CA's.
            None => self.coverage.iter().any(|c| c.issuer.is_none()),
        }
    }
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
        assert!(parse(b"not a crl", 0).is_err());
        assert!(
            parse(
                b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
                0
            )
            .is_err()
        );
    }
}
