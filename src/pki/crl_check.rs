//! A CRL checked once, when it enters: a `server.tls.crl` file at load, a URL's CRL at each
//! fetch. It must parse, be one the TLS verifier (rustls-webpki) can use, and be signed by a
//! `server.tls.client_ca` anchor or a `server.tls.crl_issuers` intermediate (itself checked to
//! chain to an anchor when it is loaded). Only then does it reach the handshake's verifier; the
//! rules over time (a URL keeps its issuer and never goes back) are in `pki/crl.rs`.
//!
//! Signatures are checked with the signature algorithms of the rustls crypto provider, the ones
//! webpki checks the same CRL with at the handshake, so a CRL accepted here verifies there too.

use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, SignatureVerificationAlgorithm,
};
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a CRL is refused. `Display` is the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// The fetch itself failed (network, HTTP status, size).
    #[error("{0}")]
    Fetch(String),
    /// Not a CRL at all.
    #[error("not a valid CRL: {0}")]
    Malformed(String),
    /// A CRL, but not one the TLS verifier can use.
    #[error("a CRL the TLS verifier cannot use: {0}")]
    Unusable(String),
    /// No trusted certificate has the CRL's issuer name.
    #[error(
        "issued by {issuer}, which is neither a server.tls.client_ca anchor nor listed in \
         server.tls.crl_issuers"
    )]
    UnknownIssuer { issuer: String },
    /// A trusted issuer of that name exists, but its key did not sign this CRL.
    #[error("its signature does not verify with the key of {issuer} (signed by another key)")]
    BadSignature { issuer: String },
    /// The issuer's keyUsage does not allow CRL signing (the TLS verifier would refuse it).
    #[error("issued by {issuer}, whose keyUsage does not include cRLSign")]
    NotCrlSigner { issuer: String },
    /// A URL's CRL from another issuer than the one it would replace.
    #[error(
        "issued by {new}, but the URL's CRL in use is issued by {current}; a URL keeps its \
         issuer until a reload (SIGHUP)"
    )]
    IssuerChanged { current: String, new: String },
    /// A URL's CRL older than the one it would replace.
    #[error("older than the CRL in use ({new}, against {current} in use)")]
    Older { current: String, new: String },
}

/// Who signed a CRL: the issuer's name and key (raw DER), as the CRL's issuer certificate has
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerId {
    subject: Vec<u8>,
    spki: Vec<u8>,
}

/// A CRL that passed every check, with what the rules over time need.
#[derive(Debug, Clone)]
pub struct VerifiedCrl {
    pub der: CertificateRevocationListDer<'static>,
    /// The CRL's issuer, raw DER: the `issuer` of the certificates it speaks for.
    pub issuer: Vec<u8>,
    /// The issuer as people read it (`C=GB, O=…, CN=…`).
    pub issuer_name: String,
    /// The certificate whose key verified the signature.
    pub signer: SignerId,
    /// The cRLNumber extension, when there is one.
    pub number: Option<BigUint>,
    pub this_update: i64,
    pub next_update: Option<i64>,
}

impl VerifiedCrl {
    /// "CRL number 7, thisUpdate 2025-01-01T00:00:00Z", for messages.
    pub fn version(&self) -> String {
        let update = crate::clock::rfc3339(self.this_update);
        match &self.number {
            Some(n) => format!("CRL number {n}, thisUpdate {update}"),
            None => format!("no CRL number, thisUpdate {update}"),
        }
    }

    /// Whether this CRL is older than `current` (of the same issuer): by CRL number when both
    /// have one and they differ, else by thisUpdate.
    pub fn is_older_than(&self, current: &VerifiedCrl) -> bool {
        match (&self.number, &current.number) {
            (Some(new), Some(old)) if new != old => new < old,
            _ => self.this_update < current.this_update,
        }
    }
}

/// Whether `new` may replace `current` as a URL's CRL: the same issuer (unless a reload let
/// the URL take another, `any_issuer`), and never older.
pub fn may_replace(
    current: &VerifiedCrl,
    new: &VerifiedCrl,
    any_issuer: bool,
) -> Result<(), CrlError> {
    if new.issuer != current.issuer {
        return if any_issuer {
            Ok(())
        } else {
            Err(CrlError::IssuerChanged {
                current: current.issuer_name.clone(),
                new: new.issuer_name.clone(),
            })
        };
    }
    if new.is_older_than(current) {
        return Err(CrlError::Older {
            current: current.version(),
            new: new.version(),
        });
    }
    Ok(())
}

/// Why a `server.tls.crl_issuers` certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    #[error("a certificate does not parse: {0}")]
    Malformed(String),
    #[error("{subject} is not a CA certificate (basicConstraints cA)")]
    NotCa { subject: String },
    #[error("{subject} may not sign CRLs (its keyUsage does not include cRLSign)")]
    NotCrlSigner { subject: String },
    #[error("{subject} is not valid now (valid from {not_before} to {not_after})")]
    NotValidNow {
        subject: String,
        not_before: String,
        not_after: String,
    },
    #[error(
        "{subject} does not chain to a server.tls.client_ca anchor (its issuer {issuer} is \
         neither an anchor nor another crl_issuers certificate whose key signed it)"
    )]
    Unchained { subject: String, issuer: String },
}

/// A certificate trusted to sign CRLs.
#[derive(Debug, Clone)]
struct Signer {
    id: SignerId,
    name: String,
    /// The SubjectPublicKeyInfo's algorithm (contents of its AlgorithmIdentifier) and key bits,
    /// as the signature algorithms take them.
    key_algorithm: Vec<u8>,
    key: Vec<u8>,
    /// No keyUsage, or one with cRLSign.
    crl_sign: bool,
    /// basicConstraints cA: may sign another `crl_issuers` certificate.
    ca: bool,
}

impl Signer {
    fn of(cert: &X509Certificate<'_>) -> Option<Self> {
        let spki = cert.public_key().raw;
        let (key_algorithm, key) = spki_parts(spki)?;
        Some(Self {
            id: SignerId {
                subject: cert.subject().as_raw().to_vec(),
                spki: spki.to_vec(),
            },
            name: cert.subject().to_string(),
            key_algorithm: key_algorithm.to_vec(),
            key: key.to_vec(),
            crl_sign: match cert.key_usage() {
                Ok(Some(ku)) => ku.value.crl_sign(),
                Ok(None) => true,
                Err(_) => false,
            },
            ca: cert.is_ca(),
        })
    }

    /// Whether this signer's key signed `signed` (a certificate or a CRL, DER).
    fn signed(&self, signed: &[u8]) -> bool {
        let Some(parts) = signed_parts(signed) else {
            return false;
        };
        signature_algorithms()
            .iter()
            .filter(|alg| alg.signature_alg_id().as_ref() == parts.algorithm)
            .filter(|alg| alg.public_key_alg_id().as_ref() == self.key_algorithm.as_slice())
            .any(|alg| {
                alg.verify_signature(&self.key, parts.message, parts.signature)
                    .is_ok()
            })
    }
}

/// The certificates trusted to sign CRLs: every `server.tls.client_ca` anchor and every
/// `server.tls.crl_issuers` intermediate.
#[derive(Debug, Clone, Default)]
pub struct CrlIssuers {
    signers: Vec<Signer>,
}

impl CrlIssuers {
    /// The anchors, and the intermediates of each `crl_issuers` file, each of which must chain
    /// (through others of them) to an anchor and be a CA allowed to sign CRLs, valid at `now`.
    /// An error gives the index of the file of the first certificate refused.
    pub fn new(
        anchors: &[CertificateDer<'_>],
        intermediates: &[Vec<CertificateDer<'_>>],
        now: i64,
    ) -> Result<Self, (usize, IssuerError)> {
        let mut signers: Vec<Signer> = anchors
            .iter()
            .filter_map(|der| X509Certificate::from_der(der).ok())
            .filter_map(|(_, cert)| Signer::of(&cert))
            .collect();
        let mut pending = Vec::new();
        for (file, certs) in intermediates.iter().enumerate() {
            for der in certs {
                let malformed = |e: String| (file, IssuerError::Malformed(e));
                let (_, cert) =
                    X509Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
                let subject = cert.subject().to_string();
                if !cert.is_ca() {
                    return Err((file, IssuerError::NotCa { subject }));
                }
                let validity = cert.validity();
                let (from, to) = (
                    validity.not_before.timestamp(),
                    validity.not_after.timestamp(),
                );
                if now < from || now > to {
                    return Err((
                        file,
                        IssuerError::NotValidNow {
                            subject,
                            not_before: crate::clock::rfc3339(from),
                            not_after: crate::clock::rfc3339(to),
                        },
                    ));
                }
                let signer = Signer::of(&cert)
                    .ok_or_else(|| malformed("its public key does not parse".into()))?;
                if !signer.crl_sign {
                    return Err((file, IssuerError::NotCrlSigner { subject }));
                }
                pending.push((
                    file,
                    der.as_ref(),
                    cert.issuer().as_raw().to_vec(),
                    cert.issuer().to_string(),
                    signer,
                ));
            }
        }
        // An intermediate counts once its issuer does: an anchor, or one counted before.
        loop {
            let before = pending.len();
            let mut rest = Vec::new();
            for entry in pending {
                let (_, der, issuer, _, _) = &entry;
                let chained = signers
                    .iter()
                    .any(|s| s.id.subject == *issuer && s.ca && s.signed(der));
                if chained {
                    signers.push(entry.4);
                } else {
                    rest.push(entry);
                }
            }
            pending = rest;
            if pending.is_empty() {
                break;
            }
            if pending.len() == before {
                let (file, _, _, issuer, signer) = pending.swap_remove(0);
                return Err((
                    file,
                    IssuerError::Unchained {
                        subject: signer.name,
                        issuer,
                    },
                ));
            }
        }
        Ok(Self { signers })
    }

    /// Whether `signer` is still among these (a reload may have dropped it).
    pub fn trusts(&self, signer: &SignerId) -> bool {
        self.signers.iter().any(|s| s.id == *signer && s.crl_sign)
    }

    /// Checks a CRL (DER) as it enters.
    pub fn verify(
        &self,
        der: CertificateRevocationListDer<'static>,
    ) -> Result<VerifiedCrl, CrlError> {
        let (rest, crl) =
            x509_parser::parse_x509_crl(&der).map_err(|e| CrlError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CrlError::Malformed("trailing bytes after the CRL".into()));
        }
        // webpki reads a v1 CRL's missing version field as bad DER; say what it is.
        if crl.version().is_none_or(|v| v.0 < 1) {
            return Err(CrlError::Unusable(V1.into()));
        }
        let Some(next_update) = crl.next_update() else {
            return Err(CrlError::Unusable("it has no nextUpdate".into()));
        };
        webpki::OwnedCertRevocationList::from_der(&der)
            .map_err(|e| CrlError::Unusable(unusable(&e)))?;
        let issuer = crl.issuer().as_raw().to_vec();
        let issuer_name = crl.issuer().to_string();
        let mut named = self
            .signers
            .iter()
            .filter(|s| s.id.subject == issuer)
            .peekable();
        if named.peek().is_none() {
            return Err(CrlError::UnknownIssuer {
                issuer: issuer_name,
            });
        }
        let Some(signer) = named.find(|s| s.signed(&der)) else {
            return Err(CrlError::BadSignature {
                issuer: issuer_name,
            });
        };
        if !signer.crl_sign {
            return Err(CrlError::NotCrlSigner {
                issuer: issuer_name,
            });
        }
        Ok(VerifiedCrl {
            signer: signer.id.clone(),
            number: crl.crl_number().cloned(),
            this_update: crl.last_update().timestamp(),
            next_update: Some(next_update.timestamp()),
            issuer,
            issuer_name,
            der,
        })
    }
}

const V1: &str = "a version 1 CRL (without extensions, as `openssl ca -gencrl` writes \
    without `-crlexts`); the TLS verifier takes only version 2 CRLs with a CRL number";

/// What webpki's refusal means, in words.
fn unusable(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::UnsupportedCrlVersion => V1.into(),
        E::MalformedExtensions => "its extensions are missing or malformed".into(),
        E::UnsupportedDeltaCrl => "a delta CRL".into(),
        E::UnsupportedIndirectCrl => "an indirect CRL".into(),
        E::UnsupportedCriticalExtension => {
            "a critical extension the TLS verifier does not know".into()
        }
        E::InvalidCrlNumber => "an invalid CRL number".into(),
        E::UnsupportedRevocationReason => "an unsupported revocation reason".into(),
        other => format!("{other:?}"),
    }
}

/// The signature algorithms the handshake's verifier checks CRLs with.
fn signature_algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all
}

/// A signed X.509 structure (certificate or CRL): the signed bytes, the contents of the
/// signature's AlgorithmIdentifier, the signature bits.
struct SignedParts<'a> {
    message: &'a [u8],
    algorithm: &'a [u8],
    signature: &'a [u8],
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;

fn signed_parts(der: &[u8]) -> Option<SignedParts<'_>> {
    let (tag, outer, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after_tbs) = tlv(outer)?;
    let message = &outer[..outer.len() - after_tbs.len()];
    let (tag, algorithm, after_alg) = tlv(after_tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, bits, rest) = tlv(after_alg)?;
    if tag != BIT_STRING || !rest.is_empty() {
        return None;
    }
    Some(SignedParts {
        message,
        algorithm,
        signature: bit_string(bits)?,
    })
}

/// A SubjectPublicKeyInfo (DER): the contents of its AlgorithmIdentifier, and the key bits.
fn spki_parts(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, inner, _) = tlv(spki)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, algorithm, rest) = tlv(inner)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, bits, _) = tlv(rest)?;
    if tag != BIT_STRING {
        return None;
    }
    Some((algorithm, bit_string(bits)?))
}

/// A BIT STRING's bits, when they fill whole bytes (as keys and signatures do).
fn bit_string(contents: &[u8]) -> Option<&[u8]> {
    match contents.split_first() {
        Some((0, bits)) => Some(bits),
        _ => None,
    }
}

/// One DER element: its tag, its contents, and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((tag, contents, after))
}

/// CAs and CRLs for unit tests (here and in `pki/crl.rs`).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
    };

    fn ca(name: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    pub struct TestCa {
        pub der: CertificateDer<'static>,
        pub params: CertificateParams,
        pub key: KeyPair,
    }

    pub fn root(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let params = ca(name);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().clone(),
            params,
            key,
        }
    }

    pub fn intermediate(name: &str, parent: &TestCa) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let params = ca(name);
        let issuer = Issuer::from_params(&parent.params, &parent.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        TestCa {
            der: cert.der().clone(),
            params,
            key,
        }
    }

    pub fn crl_of(
        ca: &TestCa,
        number: u64,
        this_update: i64,
    ) -> CertificateRevocationListDer<'static> {
        let this = time::OffsetDateTime::from_unix_timestamp(this_update).unwrap();
        let params = CertificateRevocationListParams {
            this_update: this,
            next_update: this + time::Duration::days(30),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&ca.params, &ca.key);
        params.signed_by(&issuer).unwrap().der().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use rcgen::KeyPair;

    const NOW: i64 = 1_760_000_000;

    #[test]
    fn a_crl_verifies_against_its_anchor_and_not_against_another_key() {
        let a = root("CA A");
        let issuers = CrlIssuers::new(std::slice::from_ref(&a.der), &[], NOW).unwrap();
        let crl = issuers.verify(crl_of(&a, 1, NOW)).unwrap();
        assert_eq!(crl.number, Some(BigUint::from(1u32)));
        assert_eq!(crl.this_update, NOW);
        assert!(issuers.trusts(&crl.signer));

        // The same name, another key.
        let impostor = root("CA A");
        assert!(matches!(
            issuers.verify(crl_of(&impostor, 2, NOW)),
            Err(CrlError::BadSignature { .. })
        ));
        // Another name altogether.
        let b = root("CA B");
        assert!(matches!(
            issuers.verify(crl_of(&b, 2, NOW)),
            Err(CrlError::UnknownIssuer { .. })
        ));
        assert!(matches!(
            issuers.verify(CertificateRevocationListDer::from(b"not a crl".to_vec())),
            Err(CrlError::Malformed(_))
        ));
    }

    #[test]
    fn an_intermediate_counts_only_when_it_chains_to_an_anchor() {
        let a = root("CA A");
        let sub = intermediate("Sub CA", &a);
        let subsub = intermediate("Sub-sub CA", &sub);
        let anchors = std::slice::from_ref(&a.der);
        // Without crl_issuers the intermediate's CRL has no issuer.
        let none = CrlIssuers::new(anchors, &[], NOW).unwrap();
        assert!(matches!(
            none.verify(crl_of(&sub, 1, NOW)),
            Err(CrlError::UnknownIssuer { .. })
        ));
        // Listed (in any order, one chaining through the other): both verify.
        let both = CrlIssuers::new(
            anchors,
            &[vec![subsub.der.clone()], vec![sub.der.clone()]],
            NOW,
        )
        .unwrap();
        both.verify(crl_of(&sub, 1, NOW)).unwrap();
        both.verify(crl_of(&subsub, 1, NOW)).unwrap();
        // One of another root does not chain.
        let other = intermediate("Stray CA", &root("CA B"));
        let refused = CrlIssuers::new(anchors, &[vec![sub.der.clone()], vec![other.der]], NOW);
        assert!(
            matches!(refused, Err((1, IssuerError::Unchained { .. }))),
            "{refused:?}"
        );
    }

    #[test]
    fn a_newer_crl_has_a_higher_number_then_a_later_this_update() {
        let a = root("CA A");
        let issuers = CrlIssuers::new(std::slice::from_ref(&a.der), &[], NOW).unwrap();
        let crl = |n, t| issuers.verify(crl_of(&a, n, t)).unwrap();
        let current = crl(5, NOW);
        // A lower number is older even with a later thisUpdate.
        assert!(crl(4, NOW + 60).is_older_than(&current));
        assert!(!crl(6, NOW - 60).is_older_than(&current));
        // The same number: thisUpdate decides.
        assert!(crl(5, NOW - 1).is_older_than(&current));
        assert!(!crl(5, NOW).is_older_than(&current));
        assert!(!crl(5, NOW + 1).is_older_than(&current));
        assert!(matches!(
            may_replace(&current, &crl(4, NOW), false),
            Err(CrlError::Older { .. })
        ));
        assert_eq!(may_replace(&current, &crl(6, NOW), false), Ok(()));
    }

    #[test]
    fn a_url_keeps_its_issuer_unless_a_reload_allows_another() {
        let (a, b) = (root("CA A"), root("CA B"));
        let issuers = CrlIssuers::new(&[a.der.clone(), b.der.clone()], &[], NOW).unwrap();
        let current = issuers.verify(crl_of(&a, 5, NOW)).unwrap();
        let other = issuers.verify(crl_of(&b, 9, NOW)).unwrap();
        assert!(matches!(
            may_replace(&current, &other, false),
            Err(CrlError::IssuerChanged { .. })
        ));
        assert_eq!(may_replace(&current, &other, true), Ok(()));
        // Another issuer's numbering is not compared.
        let low = issuers.verify(crl_of(&b, 1, NOW - 3600)).unwrap();
        assert_eq!(may_replace(&current, &low, true), Ok(()));
    }

    #[test]
    fn a_version_1_crl_is_unusable() {
        // A v1 CRL (no version field, no extensions) signed by the anchor's key: x509-parser
        // reads it, webpki does not.
        let a = root("CA A");
        let issuers = CrlIssuers::new(std::slice::from_ref(&a.der), &[], NOW).unwrap();
        let v1 = v1_crl(&a);
        assert!(x509_parser::parse_x509_crl(&v1).is_ok());
        let refused = issuers.verify(CertificateRevocationListDer::from(v1));
        assert!(
            matches!(&refused, Err(CrlError::Unusable(m)) if m.contains("version 1")),
            "{refused:?}"
        );
    }

    /// A DER TLV.
    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = contents.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let bytes: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(contents);
        out
    }

    /// A v1 CRL (as `openssl ca -gencrl` writes by default) signed by `ca`.
    fn v1_crl(ca: &TestCa) -> Vec<u8> {
        let (_, cert) = X509Certificate::from_der(&ca.der).unwrap();
        // ecdsa-with-SHA256
        let alg = der(
            SEQUENCE,
            &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        );
        let time = |s: &str| der(0x17, s.as_bytes());
        let mut tbs = alg.clone();
        tbs.extend_from_slice(cert.subject().as_raw());
        tbs.extend(time("250101000000Z"));
        tbs.extend(time("440101000000Z"));
        let tbs = der(SEQUENCE, &tbs);
        let signature = ca_sign(&ca.key, &tbs);
        let mut bits = vec![0u8];
        bits.extend(signature);
        let mut all = tbs;
        all.extend(alg);
        all.extend(der(BIT_STRING, &bits));
        der(SEQUENCE, &all)
    }

    fn ca_sign(key: &KeyPair, message: &[u8]) -> Vec<u8> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der())
            .unwrap();
        pair.sign(&aws_lc_rs::rand::SystemRandom::new(), message)
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn the_v1_test_crl_is_signed_by_its_ca() {
        // So that the test above fails for the version, not for the signature.
        let a = root("CA A");
        let v1 = v1_crl(&a);
        let (_, cert) = X509Certificate::from_der(&a.der).unwrap();
        assert!(Signer::of(&cert).unwrap().signed(&v1));
    }
}
