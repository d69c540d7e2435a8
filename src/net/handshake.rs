//! Why a TLS handshake refused the client's certificate, in words for the log: an operator
//! reads "expired at 2026-01-01T00:00:00Z", not `InvalidCertificate(ExpiredContext { .. })`.

use rustls::CertificateError;

/// The reason the handshake that ended with `error` refused the client's certificate; `None`
/// when it failed for another reason (a client that hung up, spoke no TLS, or refused ours).
pub fn refusal(error: &std::io::Error) -> Option<String> {
    let rustls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    certificate_refusal(rustls)
}

fn certificate_refusal(error: &rustls::Error) -> Option<String> {
    let certificate = match error {
        rustls::Error::InvalidCertificate(c) => c,
        rustls::Error::NoCertificatesPresented => {
            return Some("no client certificate was presented".into());
        }
        _ => return None,
    };
    let at = |t: &rustls::pki_types::UnixTime| {
        crate::clock::rfc3339(i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
    };
    Some(match certificate {
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("expired at {}", at(not_after))
        }
        CertificateError::Expired => "expired".into(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("not valid before {}", at(not_before))
        }
        CertificateError::NotValidYet => "not valid yet".into(),
        CertificateError::UnknownIssuer => "not issued by a trusted CA".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "wrong extended key usage (not for TLS client authentication)".into()
        }
        CertificateError::Revoked => "revoked by its CA's CRL".into(),
        CertificateError::UnknownRevocationStatus => {
            "its revocation status is unknown (no CRL of its CA)".into()
        }
        CertificateError::ExpiredRevocationList
        | CertificateError::ExpiredRevocationListContext { .. } => {
            "its CA's CRL is past its nextUpdate".into()
        }
        // webpki found a trusted CA of the issuer's name, but that CA did not sign it.
        CertificateError::BadSignature => {
            "not issued by a trusted CA (a trusted CA has its issuer's name, but did not sign it)"
                .into()
        }
        CertificateError::BadEncoding => "it is not a well-formed certificate".into(),
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "it is signed with an algorithm that is not accepted".into()
        }
        CertificateError::Other(other)
            if matches!(
                (&*other.0 as &(dyn std::error::Error + 'static)).downcast_ref(),
                Some(webpki::Error::UnsupportedCertVersion)
            ) =>
        {
            "X.509 v1 certificates are not accepted".into()
        }
        other => format!("refused: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::UnixTime;
    use std::sync::Arc;
    use std::time::Duration;

    fn said(e: rustls::Error) -> Option<String> {
        refusal(&std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn refused_certificates_are_described_in_words() {
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_767_225_600)),
        };
        assert_eq!(
            said(expired.into()).as_deref(),
            Some("expired at 2026-01-01T00:00:00Z")
        );
        assert_eq!(
            said(CertificateError::UnknownIssuer.into()).as_deref(),
            Some("not issued by a trusted CA")
        );
        assert_eq!(
            said(CertificateError::InvalidPurpose.into()).as_deref(),
            Some("wrong extended key usage (not for TLS client authentication)")
        );
        let v1 = CertificateError::Other(rustls::OtherError(Arc::new(
            webpki::Error::UnsupportedCertVersion,
        )));
        assert_eq!(
            said(v1.into()).as_deref(),
            Some("X.509 v1 certificates are not accepted")
        );
        assert_eq!(
            said(rustls::Error::NoCertificatesPresented).as_deref(),
            Some("no client certificate was presented")
        );
    }

    /// Handshakes that fail for other reasons are not certificate refusals.
    #[test]
    fn other_failures_are_not_refusals() {
        assert_eq!(
            said(rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA
            )),
            None
        );
        assert_eq!(
            refusal(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            None
        );
    }
}
