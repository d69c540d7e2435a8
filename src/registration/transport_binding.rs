//! Step 9, the transport certificate belongs to the SSA:
//!
//! - OB certificates: `OU` = SSA `org_id` and `CN` = SSA `software_id`;
//! - eIDAS/OBWAC certificates (with `organizationIdentifier`, OID 2.5.4.97): it is
//!   `PSDGB-OB-<org_id>`, or `PSD<CC>-<NCA>-<id>` where `<id>` is the SSA's competent-authority
//!   `registration_id` and `<NCA>` starts its `authority_id` (e.g. `PSDGB-FCA-123456` with
//!   authority `FCAGBR`, registration `123456`).
//!
//! With `transport_cert_in_jwks` on, the certificate must also be a `use: "tls"` key of the
//! SSA's `software_jwks_endpoint` ([`check_in_jwks`]).

use super::error_code::ErrorCode;
use super::ssa::Ssa;
use crate::jose::JwksCache;
use crate::pki::ClientCertificate;
use crate::text::printable;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    #[error(
        "the transport certificate (OU={0}, CN={1}) does not belong to the software statement's org_id and software_id"
    )]
    ObMismatch(String, String),
    #[error(
        "the transport certificate's organizationIdentifier `{0}` does not match the software statement's organisation"
    )]
    EidasMismatch(String),
    #[error(
        "the transport certificate carries neither OU/CN nor organizationIdentifier to bind it to the software statement"
    )]
    NoIdentity,
    #[error(
        "the transport certificate (x5t#S256 {0}) is not a `use: tls` key of the software statement's software_jwks_endpoint"
    )]
    NotInJwks(String),
    #[error("the software_jwks_endpoint could not be read for the transport certificate: {0}")]
    JwksUnreadable(String),
}

impl BindingError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::UnapprovedSoftwareStatement
    }
}

/// Whether an eIDAS `organizationIdentifier` names the SSA's organisation.
pub fn eidas_matches(org_identifier: &str, ssa: &Ssa) -> bool {
    // PSD<CC>-<NCA>-<id>; the id may itself contain dashes.
    let Some(rest) = org_identifier.strip_prefix("PSD") else {
        return false;
    };
    let mut parts = rest.splitn(3, '-');
    let (Some(country), Some(nca), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if country.len() != 2 || nca.is_empty() || id.is_empty() {
        return false;
    }
    if nca.eq_ignore_ascii_case("OB") && id == ssa.org_id {
        return true;
    }
    match &ssa.competent_authority {
        Some((authority, registration)) => {
            id == registration
                && authority
                    .to_ascii_uppercase()
                    .starts_with(&nca.to_ascii_uppercase())
        }
        None => false,
    }
}

pub fn check(cert: &ClientCertificate, ssa: &Ssa) -> Result<(), BindingError> {
    let subject = &cert.subject;
    if let Some(org_identifier) = subject.organization_identifier() {
        return if eidas_matches(org_identifier, ssa) {
            Ok(())
        } else {
            Err(BindingError::EidasMismatch(printable(org_identifier, 80)))
        };
    }
    match (subject.organizational_unit(), subject.common_name()) {
        (Some(ou), Some(cn)) if ou == ssa.org_id && cn == ssa.software_id => Ok(()),
        (Some(ou), Some(cn)) => Err(BindingError::ObMismatch(
            printable(ou, 40),
            printable(cn, 40),
        )),
        _ => Err(BindingError::NoIdentity),
    }
}

/// The certificate is a transport key of the software's JWKS (its `x5t#S256`, or its
/// `x5c[0]`): what the OB Directory publishes for every transport certificate it issues.
pub async fn check_in_jwks(
    cert: &ClientCertificate,
    ssa: &Ssa,
    jwks: &JwksCache,
) -> Result<(), BindingError> {
    let thumbprint = cert.x5t_s256();
    match jwks
        .has_tls_key(&ssa.software_jwks_endpoint, thumbprint)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(BindingError::NotInJwks(thumbprint.to_string())),
        Err(e) => Err(BindingError::JwksUnreadable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::ssa::parse_claims;
    use serde_json::json;

    fn ssa() -> Ssa {
        parse_claims(
            "raw",
            json!({
                "iss": "OpenBanking Ltd", "software_id": "sw1", "org_id": "0015800001ABC",
                "software_jwks_endpoint": "https://k.example.com/j", "software_roles": ["AISP"],
                "org_status": "Active",
                "organisation_competent_authority_claims": {"authority_id": "FCAGBR", "registration_id": "123456"}
            })
            .as_object()
            .cloned()
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn eidas_identifiers() {
        let s = ssa();
        assert!(eidas_matches("PSDGB-OB-0015800001ABC", &s));
        assert!(eidas_matches("PSDGB-FCA-123456", &s));
        assert!(!eidas_matches("PSDGB-OB-0015800001XYZ", &s));
        assert!(!eidas_matches("PSDGB-FCA-654321", &s));
        assert!(!eidas_matches("PSDGB-PRA-123456", &s));
        assert!(!eidas_matches("VATGB-123456", &s));
        assert!(!eidas_matches("PSDGB-OB-", &s));
    }
}
