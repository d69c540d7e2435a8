//! The TPP's transport certificate, as presented in the mTLS handshake.
//!
//! The certificate is parsed once per connection with x509-parser into a [`ClientCertificate`]
//! and shared with every request on that connection through the request extensions.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// OID of `organizationIdentifier` (X.520, used by eIDAS QWACs and OBWACs).
pub const OID_ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";

/// Why a presented certificate could not be turned into an identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The DER does not parse as an X.509 certificate.
    #[error("the client certificate is not valid DER X.509: {0}")]
    Der(String),
    /// A subject or issuer attribute holds a value that is not a string.
    #[error("the client certificate's {0} holds a value that is not a string")]
    Attribute(&'static str),
}

/// The kind of one attribute of a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttributeKind {
    Country,
    Organization,
    OrganizationalUnit,
    CommonName,
    /// `organizationIdentifier`, OID 2.5.4.97.
    OrganizationIdentifier,
    /// Any other attribute, by dotted OID.
    Other(String),
}

impl AttributeKind {
    /// From a dotted OID.
    pub fn from_oid(oid: &str) -> Self {
        match oid {
            "2.5.4.6" => Self::Country,
            "2.5.4.10" => Self::Organization,
            "2.5.4.11" => Self::OrganizationalUnit,
            "2.5.4.3" => Self::CommonName,
            OID_ORGANIZATION_IDENTIFIER => Self::OrganizationIdentifier,
            other => Self::Other(other.to_string()),
        }
    }

    /// From an RFC 4514 attribute type: a short name (case-insensitive) or a dotted OID.
    pub fn from_name(name: &str) -> Self {
        match name.to_ascii_uppercase().as_str() {
            "C" => Self::Country,
            "O" => Self::Organization,
            "OU" => Self::OrganizationalUnit,
            "CN" => Self::CommonName,
            "ORGANIZATIONIDENTIFIER" => Self::OrganizationIdentifier,
            _ => Self::from_oid(name.trim_start_matches("OID.").trim_start_matches("oid.")),
        }
    }

    fn label(&self) -> &str {
        match self {
            Self::Country => "C",
            Self::Organization => "O",
            Self::OrganizationalUnit => "OU",
            Self::CommonName => "CN",
            Self::OrganizationIdentifier => "organizationIdentifier",
            Self::Other(oid) => oid,
        }
    }
}

/// A distinguished name as the list of its attributes, in certificate order.
///
/// Equality ([`DistinguishedName::same_rdn_set`]) ignores order, because ASPSPs and TPPs
/// write DNs in both RFC 2253 (reversed) and X.500 order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistinguishedName {
    pub attributes: Vec<(AttributeKind, String)>,
}

impl DistinguishedName {
    fn from_x509(name: &X509Name<'_>, what: &'static str) -> Result<Self, CertificateError> {
        let mut attributes = Vec::new();
        for attr in name.iter_attributes() {
            let kind = AttributeKind::from_oid(&attr.attr_type().to_id_string());
            let value = match attr.as_str() {
                Ok(s) => s.to_string(),
                // BMPString and friends: keep them comparable rather than refusing the cert.
                Err(_) => String::from_utf8(attr.as_slice().to_vec())
                    .map_err(|_| CertificateError::Attribute(what))?,
            };
            attributes.push((kind, value));
        }
        Ok(Self { attributes })
    }

    /// The first value of an attribute kind.
    pub fn get(&self, kind: &AttributeKind) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
    }

    pub fn common_name(&self) -> Option<&str> {
        self.get(&AttributeKind::CommonName)
    }

    pub fn organizational_unit(&self) -> Option<&str> {
        self.get(&AttributeKind::OrganizationalUnit)
    }

    pub fn organization(&self) -> Option<&str> {
        self.get(&AttributeKind::Organization)
    }

    pub fn country(&self) -> Option<&str> {
        self.get(&AttributeKind::Country)
    }

    pub fn organization_identifier(&self) -> Option<&str> {
        self.get(&AttributeKind::OrganizationIdentifier)
    }

    /// Whether both names hold the same attributes, in any order.
    pub fn same_rdn_set(&self, other: &Self) -> bool {
        let mut a = self.attributes.clone();
        let mut b = other.attributes.clone();
        a.sort();
        b.sort();
        a == b
    }
}

impl fmt::Display for DistinguishedName {
    /// RFC 4514 order (most specific first), with values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (kind, value)) in self.attributes.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=", kind.label())?;
            for (j, c) in value.chars().enumerate() {
                let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
                    || (j == 0 && (c == ' ' || c == '#'))
                    || (j + 1 == value.chars().count() && c == ' ');
                if special {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// The verified client certificate of a connection, parsed once.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub der: Arc<[u8]>,
    /// SHA-256 of the DER: RFC 8705 `x5t#S256` before base64url.
    pub thumbprint_sha256: [u8; 32],
    pub subject: DistinguishedName,
    pub issuer: DistinguishedName,
    /// Validity period, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

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
        Ok(Self {
            der: Arc::from(der),
            thumbprint_sha256: Sha256::digest(der).into(),
            subject: DistinguishedName::from_x509(cert.subject(), "subject")?,
            issuer: DistinguishedName::from_x509(cert.issuer(), "issuer")?,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// The RFC 8705 `x5t#S256` value: base64url SHA-256 of the DER.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.thumbprint_sha256)
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

    fn dn(pairs: &[(&str, &str)]) -> DistinguishedName {
        DistinguishedName {
            attributes: pairs
                .iter()
                .map(|(k, v)| (AttributeKind::from_name(k), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn rdn_sets_ignore_order_and_oid_spelling() {
        let a = dn(&[
            ("C", "GB"),
            ("organizationIdentifier", "PSDGB-OB-1"),
            ("CN", "x"),
        ]);
        let b = dn(&[("CN", "x"), ("2.5.4.97", "PSDGB-OB-1"), ("c", "GB")]);
        assert!(a.same_rdn_set(&b));
        let c = dn(&[("CN", "x"), ("2.5.4.97", "PSDGB-OB-2"), ("C", "GB")]);
        assert!(!a.same_rdn_set(&c));
    }

    #[test]
    fn displays_rfc4514_with_escapes() {
        let d = dn(&[("C", "GB"), ("O", "Acme, Ltd"), ("CN", "a+b")]);
        assert_eq!(d.to_string(), "CN=a\\+b,O=Acme\\, Ltd,C=GB");
    }

    #[test]
    fn garbage_der_is_an_error_not_a_panic() {
        assert!(ClientCertificate::from_der(b"\x30\x03\x02\x01").is_err());
        assert!(ClientCertificate::from_der(&[]).is_err());
    }
}
