//! Step 10, `tls_client_auth_subject_dn`: for `tls_client_auth` it must name the presented
//! transport certificate's subject, compared as RDN sets (order, spacing, ASCII case and
//! `organizationIdentifier` vs `2.5.4.97` do not matter).

use super::error_code::ErrorCode;
use super::metadata::ClientMetadata;
use crate::domain::dn::{DistinguishedName, DnParseError};
use crate::pki::ClientCertificate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectDnError {
    #[error("tls_client_auth_subject_dn: {0}")]
    Parse(DnParseError),
    #[error("tls_client_auth_subject_dn does not match the transport certificate's subject `{0}`")]
    Mismatch(String),
}

impl SubjectDnError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidClientMetadata
    }
}

pub fn check(metadata: &ClientMetadata, cert: &ClientCertificate) -> Result<(), SubjectDnError> {
    let Some(dn) = &metadata.tls_client_auth_subject_dn else {
        return Ok(());
    };
    let parsed = DistinguishedName::parse(dn).map_err(SubjectDnError::Parse)?;
    if parsed.same_rdn_set(&cert.subject) {
        Ok(())
    } else {
        Err(SubjectDnError::Mismatch(crate::text::printable(
            &cert.subject.to_string(),
            200,
        )))
    }
}
