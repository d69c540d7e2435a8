//! The TPP's transport certificate, as presented in the mTLS handshake.
//!
//! The certificate is parsed once per connection with x509-parser into a [`ClientCertificate`]
//! and shared with every request on that connection through the request extensions.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::domain::dn::{AttributeKind, DistinguishedName};

/// Why a presented certificate could not be turned into an identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The DER does not parse as an X.509 certificate.
    #[error("the client certificate is not valid DER X.509: {0}")]
    Der(String),
    /// A subject or issuer attribute has a malformed type or a value that is not a string.
    #[error("the client certificate's {0} holds a malformed attribute")]
    Attribute(&'static str),
}

/// The subject or issuer of a parsed certificate.
fn dn_from_x509(
    name: &X509Name<'_>,
    what: &'static str,
) -> Result<DistinguishedName, CertificateError> {
    let mut attributes = Vec::new();
    for attr in name.iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        // A malformed type shows as "" or hex bytes, which no DN string can name (found by
        // the cert_der fuzzer); refuse it like a value that is not a string.
        if !AttributeKind::is_valid_name(&oid) {
            return Err(CertificateError::Attribute(what));
        }
        let kind = AttributeKind::from_oid(&oid);
        let value = match attr.as_str() {
            Ok(s) => s.to_string(),
            // BMPString and friends: keep them comparable rather than refusing the cert.
            Err(_) => String::from_utf8(attr.as_slice().to_vec())
                .map_err(|_| CertificateError::Attribute(what))?,
        };
        attributes.push((kind, value));
    }
    Ok(DistinguishedName { attributes })
}

/// The verified client certificate of a connection, parsed once.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub der: Arc<[u8]>,
    /// SHA-256 of the DER: RFC 8705 `x5t#S256` before base64url.
    pub thumbprint_sha256: [u8; 32],
    /// The `x5t#S256` text, encoded once per connection (logs, limits, bindings and audit
    /// records all use it).
    x5t_s256: String,
    pub subject: DistinguishedName,
    pub issuer: DistinguishedName,
    /// Validity period, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// What an OCSP check needs, taken from the DER once per connection.
    pub revocation: RevocationFacts,
}

/// The parts of a certificate that OCSP asks about.
#[derive(Debug, Clone, Default)]
pub struct RevocationFacts {
    /// The issuer name as encoded (the issuing CA's subject).
    pub issuer_der: Box<[u8]>,
    /// The serial number, big-endian, leading zeros stripped.
    pub serial: Box<[u8]>,
    /// The OCSP responders of the AIA extension (http and https only).
    pub ocsp_urls: Vec<String>,
    /// SHA-256 of issuer and serial: the OCSP cache key.
    pub key: [u8; 32],
}

impl RevocationFacts {
    fn of(cert: &X509Certificate<'_>) -> Self {
        use x509_parser::extensions::{GeneralName, ParsedExtension};
        let issuer_der: Box<[u8]> = cert.issuer().as_raw().into();
        let raw = cert.raw_serial();
        let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        let serial: Box<[u8]> = raw[start..].into();
        let mut ocsp_urls = Vec::new();
        for ext in cert.extensions() {
            if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
                for desc in &aia.accessdescs {
                    if desc.access_method.to_id_string() == OID_AD_OCSP
                        && let GeneralName::URI(uri) = desc.access_location
                        && (uri.starts_with("http://") || uri.starts_with("https://"))
                    {
                        ocsp_urls.push(uri.to_string());
                    }
                }
            }
        }
        let mut hasher = Sha256::new();
        hasher.update((issuer_der.len() as u64).to_be_bytes());
        hasher.update(&issuer_der);
        hasher.update(&serial);
        Self {
            key: hasher.finalize().into(),
            issuer_der,
            serial,
            ocsp_urls,
        }
    }
}

/// id-ad-ocsp (RFC 5280 §4.2.2.1).
const OID_AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";

impl ClientCertificate {
    /// Parses the DER of a certificate that the TLS layer has already verified.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| CertificateError::Der(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertificateError::Der(
                "trailing bytes after the certificate".into(),
            ));
        }
        let validity = cert.validity();
        let thumbprint_sha256: [u8; 32] = Sha256::digest(der).into();
        Ok(Self {
            der: Arc::from(der),
            x5t_s256: URL_SAFE_NO_PAD.encode(thumbprint_sha256),
            thumbprint_sha256,
            subject: dn_from_x509(cert.subject(), "subject")?,
            issuer: dn_from_x509(cert.issuer(), "issuer")?,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            revocation: RevocationFacts::of(&cert),
        })
    }

    /// The RFC 8705 `x5t#S256` value: base64url SHA-256 of the DER.
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// Whether an allow-list names this certificate: by its `x5t#S256`, or by its subject as
    /// an RDN set (introspection callers, admins).
    pub fn is_listed(&self, thumbprints: &[String], subjects: &[DistinguishedName]) -> bool {
        thumbprints.contains(&self.x5t_s256)
            || subjects.iter().any(|dn| dn.same_rdn_set(&self.subject))
    }

    /// A certificate with this subject and no other content, for unit tests of the rules that
    /// read only the subject.
    #[cfg(test)]
    pub fn with_subject(subject: DistinguishedName) -> Self {
        Self {
            der: Arc::from(&b"der"[..]),
            thumbprint_sha256: [0; 32],
            x5t_s256: URL_SAFE_NO_PAD.encode([0; 32]),
            subject,
            issuer: DistinguishedName::default(),
            not_before: 0,
            not_after: 0,
            revocation: RevocationFacts::default(),
        }
    }
}

/// What the connection layer attaches to every request.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity {
    pub certificate: Option<Arc<ClientCertificate>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate with an AIA OCSP responder (and an ldap one, ignored).
    #[test]
    fn revocation_facts_name_the_issuer_serial_and_http_responders() {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            assert!(body.len() < 128);
            [&[tag, body.len() as u8][..], body].concat()
        }
        let ocsp_oid = [0x2b, 6, 1, 5, 5, 7, 0x30, 1];
        let desc = |url: &str| {
            tlv(
                0x30,
                &[tlv(6, &ocsp_oid), tlv(0x86, url.as_bytes())].concat(),
            )
        };
        let aia = tlv(
            0x30,
            &[
                desc("ldap://dir.example.com/ocsp"),
                desc("http://ocsp.example.com/"),
            ]
            .concat(),
        );
        let mut params = rcgen::CertificateParams::new(vec!["tpp.example.com".into()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0, 0x42, 7]));
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            aia,
        )];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let parsed = ClientCertificate::from_der(cert.der()).unwrap();
        let facts = &parsed.revocation;
        assert_eq!(facts.ocsp_urls, ["http://ocsp.example.com/"]);
        assert_eq!(&*facts.serial, &[0x42, 7]);
        let (_, x509) = X509Certificate::from_der(cert.der()).unwrap();
        assert_eq!(&*facts.issuer_der, x509.issuer().as_raw());
        let other = ClientCertificate::from_der(
            rcgen::CertificateParams::new(vec!["x".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap()
                .der(),
        )
        .unwrap();
        assert!(other.revocation.ocsp_urls.is_empty());
        assert_ne!(other.revocation.key, facts.key);
    }

    #[test]
    fn garbage_der_is_an_error_not_a_panic() {
        assert!(ClientCertificate::from_der(b"\x30\x03\x02\x01").is_err());
        assert!(ClientCertificate::from_der(&[]).is_err());
    }
}
