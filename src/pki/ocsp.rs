//! OCSP (RFC 6960) for client certificates, from the handshake or forwarded alike.
//!
//! The responder is the certificate's AIA OCSP URL, else `server.tls.ocsp.responder_url`. The
//! request names the certificate by a SHA-1 CertID (what responders expect) and is POSTed as
//! `application/ocsp-request`. An answer counts only when it is signed by the issuing CA, or by
//! a responder certificate that CA issued for `id-kp-OCSPSigning` and that is valid now; it is
//! about this serial; `thisUpdate` is not in the future and `nextUpdate` (when present) has not
//! passed, both allowing `clock_skew`.
//!
//! Answers are cached per (issuer, serial): a good one until its `nextUpdate` and at most
//! `max_cache_secs`, a revoked one for `max_cache_secs`, anything else briefly. Requests for one
//! certificate share one fetch; a request that misses the cache waits for it up to
//! `timeout_ms`. On the request path a check is a cache lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use der::{Decode, Encode};
use rustls::pki_types::CertificateDer;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::ClientCertificate;
use crate::config::{OcspConfig, RevocationMode};

/// An OCSP response larger than this is not read.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// How long an answer that is neither good nor revoked (or no answer) is kept, at most.
const FAILURE_CACHE_SECS: u64 = 10;

const OID_SHA1: &str = "1.3.14.3.2.26";
const OID_OCSP_BASIC: &str = "1.3.6.1.5.5.7.48.1.1";

/// What OCSP says about a certificate. The label is the metric's `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    Good,
    Revoked,
    /// The responder does not know the certificate.
    Unknown,
    /// No answer: a connection error, a timeout, a non-200 or an unsuccessful OCSP status.
    Unavailable,
    /// An answer that does not count: unparsable, badly signed, about another certificate,
    /// from the future or expired.
    Invalid,
    /// The certificate names no responder and `responder_url` is empty.
    NoResponder,
    /// The issuing CA is not in `server.tls.client_ca`, so no CertID can be built.
    NoIssuer,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
            Self::Unavailable => "unavailable",
            Self::Invalid => "invalid",
            Self::NoResponder => "no_responder",
            Self::NoIssuer => "no_issuer",
        }
    }
}

/// Why a certificate is refused. `Display` is for the log; the public description is
/// [`REVOKED_DESCRIPTION`] or [`UNCHECKED_DESCRIPTION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspRefusal {
    #[error("OCSP: the client certificate is revoked")]
    Revoked,
    /// `hard` mode, and no good answer.
    #[error("OCSP: no good answer for the client certificate ({})", .0.label())]
    Unchecked(Outcome),
}

pub const REVOKED_DESCRIPTION: &str = "the client certificate is revoked";
pub const UNCHECKED_DESCRIPTION: &str =
    "the revocation status of the client certificate could not be established";

impl OcspRefusal {
    pub fn description(self) -> &'static str {
        match self {
            Self::Revoked => REVOKED_DESCRIPTION,
            Self::Unchecked(_) => UNCHECKED_DESCRIPTION,
        }
    }
}

/// A CA of `client_ca`, as CertIDs and signatures need it.
struct Issuer {
    subject: Vec<u8>,
    key: PublicKey,
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
}

/// A public key as aws-lc takes it, with what picks the algorithm.
#[derive(Debug, Clone)]
struct PublicKey {
    /// The SPKI algorithm OID, and the curve OID for EC keys.
    algorithm: String,
    curve: Option<String>,
    /// The subjectPublicKey bits (an RSAPublicKey, an EC point, an Ed25519 key).
    bits: Vec<u8>,
}

impl PublicKey {
    fn of(cert: &X509Certificate<'_>) -> Self {
        let spki = cert.public_key();
        Self {
            algorithm: spki.algorithm.algorithm.to_id_string(),
            curve: spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string()),
            bits: spki.subject_public_key.as_ref().to_vec(),
        }
    }

    /// Whether `signature` over `message` with the X.509 signature algorithm `alg` verifies.
    fn verifies(&self, alg: &str, message: &[u8], sig: &[u8]) -> bool {
        verifiers(alg, &self.algorithm, self.curve.as_deref())
            .iter()
            .any(|v| {
                UnparsedPublicKey::new(*v, &self.bits)
                    .verify(message, sig)
                    .is_ok()
            })
    }
}

/// The aws-lc verifiers for an X.509 signature algorithm and key. SHA-1 signatures are not
/// accepted. RSASSA-PSS is tried with the SHA-2 hashes (a signature that verifies under one of
/// them is one).
fn verifiers(
    alg: &str,
    key_alg: &str,
    curve: Option<&str>,
) -> Vec<&'static dyn VerificationAlgorithm> {
    const RSA: &str = "1.2.840.113549.1.1.1";
    const EC: &str = "1.2.840.10045.2.1";
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    match (alg, key_alg, curve) {
        ("1.2.840.113549.1.1.11", RSA, _) => vec![&signature::RSA_PKCS1_2048_8192_SHA256],
        ("1.2.840.113549.1.1.12", RSA, _) => vec![&signature::RSA_PKCS1_2048_8192_SHA384],
        ("1.2.840.113549.1.1.13", RSA, _) => vec![&signature::RSA_PKCS1_2048_8192_SHA512],
        ("1.2.840.113549.1.1.10", RSA, _) => vec![
            &signature::RSA_PSS_2048_8192_SHA256,
            &signature::RSA_PSS_2048_8192_SHA384,
            &signature::RSA_PSS_2048_8192_SHA512,
        ],
        ("1.2.840.10045.4.3.2", EC, Some(P256)) => vec![&signature::ECDSA_P256_SHA256_ASN1],
        ("1.2.840.10045.4.3.3", EC, Some(P256)) => vec![&signature::ECDSA_P256_SHA384_ASN1],
        ("1.2.840.10045.4.3.2", EC, Some(P384)) => vec![&signature::ECDSA_P384_SHA256_ASN1],
        ("1.2.840.10045.4.3.3", EC, Some(P384)) => vec![&signature::ECDSA_P384_SHA384_ASN1],
        ("1.3.101.112", "1.3.101.112", _) => vec![&signature::ED25519],
        _ => Vec::new(),
    }
}

fn digest_of(certs: &[CertificateDer<'static>]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for c in certs {
        ctx.update(&(c.len() as u64).to_be_bytes());
        ctx.update(c);
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn sha1(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .to_vec()
}

/// One cached answer, or a fetch in progress (the cell is empty until it ends).
#[derive(Default)]
struct Slot {
    answer: tokio::sync::OnceCell<(Outcome, Instant)>,
}

impl Slot {
    fn fresh(&self, now: Instant) -> Option<Outcome> {
        self.answer
            .get()
            .and_then(|(o, until)| (*until > now).then_some(*o))
    }

    fn expired(&self, now: Instant) -> bool {
        self.answer.get().is_some_and(|(_, until)| *until <= now)
    }
}

/// The OCSP checker of the running config. Kept across a reload that changes neither
/// `[server.tls.ocsp]` nor `client_ca`, so that a reload does not empty the cache.
pub struct OcspChecker {
    /// What it was built from: a reload with the same keeps this checker and its cache.
    built_from: (OcspConfig, [u8; 32], i64),
    mode: RevocationMode,
    client: reqwest::Client,
    timeout: Duration,
    max_cache: Duration,
    responder_url: Option<String>,
    clock_skew: i64,
    issuers: Vec<Issuer>,
    cache: Mutex<Cache>,
}

/// The answers per SHA-256(issuer, serial). Expired entries are swept whenever the map has
/// doubled since the last sweep, so that certificates seen once do not stay forever.
#[derive(Default)]
struct Cache {
    slots: HashMap<[u8; 32], Arc<Slot>>,
    sweep_at: usize,
}

/// The smallest map size at which expired entries are swept.
const MIN_SWEEP_AT: usize = 256;

impl Cache {
    /// The slot for `key`: the cached one while it has not expired, else a new one.
    fn slot(&mut self, key: [u8; 32], now: Instant) -> Arc<Slot> {
        if let Some(slot) = self.slots.get(&key).filter(|s| !s.expired(now)) {
            return slot.clone();
        }
        if self.slots.len() >= self.sweep_at.max(MIN_SWEEP_AT) {
            // Fetches in progress are kept: their waiters hold them anyway.
            self.slots.retain(|_, s| !s.expired(now));
            self.sweep_at = self.slots.len() * 2;
        }
        let slot = Arc::new(Slot::default());
        self.slots.insert(key, slot.clone());
        slot
    }
}

impl OcspChecker {
    /// The checker for `config`, with the CAs of `client_ca` as the issuers it knows.
    pub fn new(
        config: &OcspConfig,
        client: reqwest::Client,
        client_ca: &[CertificateDer<'static>],
        clock_skew: i64,
    ) -> Self {
        let issuers = client_ca
            .iter()
            .filter_map(|der| {
                let (_, cert) = X509Certificate::from_der(der).ok()?;
                let key = PublicKey::of(&cert);
                Some(Issuer {
                    subject: cert.subject().as_raw().to_vec(),
                    name_hash: sha1(cert.subject().as_raw()),
                    key_hash: sha1(&key.bits),
                    key,
                })
            })
            .collect();
        Self {
            built_from: (config.clone(), digest_of(client_ca), clock_skew),
            mode: config.mode,
            client,
            timeout: Duration::from_millis(config.timeout_ms),
            max_cache: Duration::from_secs(config.max_cache_secs),
            responder_url: config
                .responder_url
                .as_ref()
                .map(|u| u.as_str().to_string()),
            clock_skew,
            issuers,
            cache: Mutex::new(Cache::default()),
        }
    }

    pub fn mode(&self) -> RevocationMode {
        self.mode
    }

    /// Whether this checker is the one `new` would build from these.
    pub fn built_from(
        &self,
        config: &OcspConfig,
        client_ca: &[CertificateDer<'static>],
        clock_skew: i64,
    ) -> bool {
        self.built_from == (config.clone(), digest_of(client_ca), clock_skew)
    }

    /// Checks `cert`: `Ok` lets the request go on (counted when OCSP gave no good answer in
    /// `soft` mode), `Err` refuses it.
    pub async fn check(&self, cert: &ClientCertificate) -> Result<(), OcspRefusal> {
        if self.mode == RevocationMode::Off {
            return Ok(());
        }
        let (outcome, fetched) = self.outcome(cert).await;
        let refusal = match outcome {
            Outcome::Good => None,
            Outcome::Revoked => Some(OcspRefusal::Revoked),
            other if self.mode.is_hard() => Some(OcspRefusal::Unchecked(other)),
            _ => None,
        };
        crate::metrics::ocsp_check(outcome.label(), refusal.is_some());
        match refusal {
            Some(r) => {
                tracing::info!(
                    x5t_s256 = cert.x5t_s256(),
                    outcome = outcome.label(),
                    "client certificate refused by OCSP"
                );
                Err(r)
            }
            None => {
                // Warned by the requests that waited for a fetch, not by every request that a
                // cached failure answers.
                if outcome != Outcome::Good && fetched {
                    tracing::warn!(
                        x5t_s256 = cert.x5t_s256(),
                        outcome = outcome.label(),
                        "OCSP gave no good answer; request allowed (ocsp.mode = soft)"
                    );
                }
                Ok(())
            }
        }
    }

    /// The cached outcome for `cert`, or the shared fetch's; `true` when it was not cached.
    async fn outcome(&self, cert: &ClientCertificate) -> (Outcome, bool) {
        let now = Instant::now();
        let slot = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .slot(cert.revocation.key, now);
        if let Some(outcome) = slot.fresh(now) {
            crate::metrics::ocsp_cache(true);
            return (outcome, false);
        }
        crate::metrics::ocsp_cache(false);
        let wait = slot.answer.get_or_init(|| async {
            let (outcome, next_update_in) = self.fetch(cert).await;
            (
                outcome,
                Instant::now() + self.keep_for(outcome, next_update_in),
            )
        });
        match tokio::time::timeout(self.timeout, wait).await {
            Ok((outcome, _)) => (*outcome, true),
            Err(_) => (Outcome::Unavailable, true),
        }
    }

    /// How long an answer is cached: a good one until its `nextUpdate` (at most
    /// `max_cache_secs`), a revoked one for `max_cache_secs`, the rest briefly.
    fn keep_for(&self, outcome: Outcome, next_update_in: Option<Duration>) -> Duration {
        match outcome {
            Outcome::Good => next_update_in.map_or(self.max_cache, |d| d.min(self.max_cache)),
            Outcome::Revoked => self.max_cache,
            _ => self.max_cache.min(Duration::from_secs(FAILURE_CACHE_SECS)),
        }
    }

    /// Asks the responder about `cert`; the outcome and, for a good answer, how long until
    /// its `nextUpdate`.
    async fn fetch(&self, cert: &ClientCertificate) -> (Outcome, Option<Duration>) {
        let facts = &cert.revocation;
        let Some(issuer) = self
            .issuers
            .iter()
            .find(|i| *i.subject == *facts.issuer_der)
        else {
            return (Outcome::NoIssuer, None);
        };
        let Some(url) = facts
            .ocsp_urls
            .first()
            .cloned()
            .or_else(|| self.responder_url.clone())
        else {
            return (Outcome::NoResponder, None);
        };
        let Ok(request) = request_der(issuer, &facts.serial) else {
            return (Outcome::Invalid, None);
        };
        let body = match self.post(&url, request).await {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(responder = %url, error = %e, "OCSP responder did not answer");
                return (Outcome::Unavailable, None);
            }
        };
        let now = crate::clock::now();
        match judge(&body, issuer, &facts.serial, now, self.clock_skew) {
            Ok(answer) => answer,
            Err(Judged::Unavailable(why)) => {
                tracing::warn!(responder = %url, why, "OCSP responder gave no answer");
                (Outcome::Unavailable, None)
            }
            Err(Judged::Invalid(why)) => {
                tracing::warn!(responder = %url, why, "OCSP answer refused");
                (Outcome::Invalid, None)
            }
        }
    }

    async fn post(&self, url: &str, request: Vec<u8>) -> Result<Vec<u8>, String> {
        let response = self
            .client
            .post(url)
            .header("content-type", "application/ocsp-request")
            .header("accept", "application/ocsp-response")
            .body(request)
            .send()
            .await
            .map_err(|e| super::outbound::error_chain(&e))?;
        super::outbound::read_capped(response, MAX_RESPONSE_BYTES).await
    }
}

/// The SHA-1 CertID of `serial` under `issuer`.
fn cert_id(issuer: &Issuer, serial: &[u8]) -> Result<CertId, der::Error> {
    let serial = if serial.is_empty() {
        &[0u8][..]
    } else {
        serial
    };
    Ok(CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: der::asn1::ObjectIdentifier::new_unwrap(OID_SHA1),
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: der::asn1::OctetString::new(issuer.name_hash.clone())?,
        issuer_key_hash: der::asn1::OctetString::new(issuer.key_hash.clone())?,
        serial_number: x509_cert::serial_number::SerialNumber::new(serial)?,
    })
}

fn request_der(issuer: &Issuer, serial: &[u8]) -> Result<Vec<u8>, der::Error> {
    OcspRequest {
        tbs_request: TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id(issuer, serial)?,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
}

enum Judged {
    Unavailable(&'static str),
    Invalid(&'static str),
}

/// Judges a responder's answer about `serial` of `issuer` at `now` (Unix seconds).
fn judge(
    body: &[u8],
    issuer: &Issuer,
    serial: &[u8],
    now: i64,
    skew: i64,
) -> Result<(Outcome, Option<Duration>), Judged> {
    let response =
        OcspResponse::from_der(body).map_err(|_| Judged::Invalid("not an OCSP response"))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(Judged::Unavailable("responseStatus is not successful"));
    }
    let bytes = response
        .response_bytes
        .ok_or(Judged::Invalid("no responseBytes"))?;
    if bytes.response_type.to_string() != OID_OCSP_BASIC {
        return Err(Judged::Invalid("not a basic OCSP response"));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|_| Judged::Invalid("the basic response does not parse"))?;
    // The der crate decodes DER only, so the re-encoding is the signed bytes.
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|_| Judged::Invalid("the response data does not encode"))?;
    let alg = basic.signature_algorithm.oid.to_string();
    let sig = basic
        .signature
        .as_bytes()
        .ok_or(Judged::Invalid("the signature is not whole bytes"))?;
    if !signed_by_ca_or_delegate(&basic, issuer, &alg, &tbs, sig, now, skew) {
        return Err(Judged::Invalid(
            "not signed by the issuing CA or its OCSP responder",
        ));
    }
    let wanted = cert_id(issuer, serial).map_err(|_| Judged::Invalid("serial"))?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| r.cert_id == wanted)
        .ok_or(Judged::Invalid("the answer is about another certificate"))?;
    let this_update = unix(&single.this_update);
    if this_update > now.saturating_add(skew) {
        return Err(Judged::Invalid("thisUpdate is in the future"));
    }
    let next_update = single.next_update.as_ref().map(unix);
    if next_update.is_some_and(|n| n.saturating_add(skew) < now) {
        return Err(Judged::Invalid("nextUpdate has passed"));
    }
    let remaining = next_update.map(|n| Duration::from_secs(u64::try_from(n - now).unwrap_or(0)));
    Ok(match single.cert_status {
        CertStatus::Good(_) => (Outcome::Good, remaining),
        CertStatus::Revoked(_) => (Outcome::Revoked, None),
        CertStatus::Unknown(_) => (Outcome::Unknown, None),
    })
}

fn unix(t: &x509_ocsp::OcspGeneralizedTime) -> i64 {
    i64::try_from(t.0.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// Whether the response is signed by the issuing CA, or by a certificate in it that the CA
/// issued for OCSP signing and that is valid at `now`.
fn signed_by_ca_or_delegate(
    basic: &BasicOcspResponse,
    issuer: &Issuer,
    alg: &str,
    tbs: &[u8],
    sig: &[u8],
    now: i64,
    skew: i64,
) -> bool {
    if issuer.key.verifies(alg, tbs, sig) {
        return true;
    }
    let Some(certs) = &basic.certs else {
        return false;
    };
    certs.iter().any(|c| {
        let Ok(der) = c.to_der() else { return false };
        let Ok((_, responder)) = X509Certificate::from_der(&der) else {
            return false;
        };
        let issued_by_ca = *responder.issuer().as_raw() == *issuer.subject
            && issuer.key.verifies(
                &responder.signature_algorithm.algorithm.to_id_string(),
                responder.tbs_certificate.as_ref(),
                responder.signature_value.as_ref(),
            );
        let for_ocsp =
            matches!(responder.extended_key_usage(), Ok(Some(eku)) if eku.value.ocsp_signing);
        let validity = responder.validity();
        let valid_now = validity.not_before.timestamp() <= now.saturating_add(skew)
            && now <= validity.not_after.timestamp().saturating_add(skew);
        issued_by_ca && for_ocsp && valid_now && PublicKey::of(&responder).verifies(alg, tbs, sig)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(until: Instant) -> Arc<Slot> {
        let slot = Slot::default();
        let _ = slot.answer.set((Outcome::Good, until));
        Arc::new(slot)
    }

    #[test]
    fn the_cache_sweeps_expired_answers_and_keeps_the_rest() {
        let now = Instant::now();
        let past = now - Duration::from_secs(1);
        let mut cache = Cache::default();
        for i in 0..MIN_SWEEP_AT {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let slot = match i {
                0 => answered(now + Duration::from_secs(60)),
                1 => Arc::new(Slot::default()), // a fetch in progress
                _ => answered(past),
            };
            cache.slots.insert(key, slot);
        }
        let fresh = cache.slots[&[0u8; 32]].clone();
        // A hit returns the cached answer and sweeps nothing.
        assert!(Arc::ptr_eq(&cache.slot([0u8; 32], now), &fresh));
        assert_eq!(cache.slots.len(), MIN_SWEEP_AT);
        // A miss at the threshold sweeps: the live answer, the fetch and the new slot stay.
        let new = cache.slot([9u8; 32], now);
        assert_eq!(cache.slots.len(), 3);
        assert!(new.answer.get().is_none());
        assert!(Arc::ptr_eq(&cache.slot([0u8; 32], now), &fresh));
        assert_eq!(cache.sweep_at, 4);
    }
}
