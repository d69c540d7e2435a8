//! `tls_client_auth` (RFC 8705 §2.1): the connection's certificate is the credential.

use super::error::{AuthenticationFailure, ClientAuthError};
use crate::domain::DistinguishedName;
use crate::pki::ClientCertificate;
use crate::store::ClientRecord;

/// The certificate's subject is the registered `tls_client_auth_subject_dn`, compared as RDN
/// sets (order, ASCII case and repeated spaces do not matter).
pub fn check(
    client: &ClientRecord,
    certificate: Option<&ClientCertificate>,
) -> Result<(), AuthenticationFailure> {
    let cert = certificate.ok_or(ClientAuthError::NoCertificate)?;
    // Registration stored only DNs that parse, so one that does not is a broken row.
    let registered = client
        .tls_client_auth_subject_dn
        .as_deref()
        .and_then(|dn| DistinguishedName::parse(dn).ok())
        .ok_or_else(|| AuthenticationFailure::Internal("registered DN does not parse".into()))?;
    if registered.same_rdn_set(&cert.subject) {
        Ok(())
    } else {
        Err(ClientAuthError::SubjectMismatch.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AuthMethod;
    use crate::oauth::client_auth::tests::client;

    fn certificate(subject: &str) -> ClientCertificate {
        ClientCertificate::with_subject(DistinguishedName::parse(subject).unwrap())
    }

    fn registered(dn: Option<&str>) -> ClientRecord {
        ClientRecord {
            tls_client_auth_subject_dn: dn.map(str::to_string),
            ..client(AuthMethod::TlsClientAuth)
        }
    }

    #[test]
    fn the_subject_must_be_the_registered_dn_as_an_rdn_set() {
        let c = registered(Some("CN=tpp,OU=0015800001,O=OpenBanking,C=GB"));
        let same = certificate("c=gb, o=OpenBanking, ou=0015800001, cn=TPP");
        assert!(check(&c, Some(&same)).is_ok());
        let other = certificate("CN=other,OU=0015800001,O=OpenBanking,C=GB");
        assert!(matches!(
            check(&c, Some(&other)),
            Err(AuthenticationFailure::Client(
                ClientAuthError::SubjectMismatch
            ))
        ));
        assert!(matches!(
            check(&c, None),
            Err(AuthenticationFailure::Client(
                ClientAuthError::NoCertificate
            ))
        ));
    }

    #[test]
    fn a_broken_stored_dn_is_a_server_error_not_a_client_one() {
        let cert = certificate("CN=tpp");
        for dn in [None, Some("not a dn")] {
            assert!(matches!(
                check(&registered(dn), Some(&cert)),
                Err(AuthenticationFailure::Internal(_))
            ));
        }
    }
}
