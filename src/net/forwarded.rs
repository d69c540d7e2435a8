//! Client certificates forwarded by a load balancer that terminates TLS.
//!
//! Off by default (`[server.forwarded_certificate] enable`). When on, a request whose TCP peer
//! is a listed proxy gets its client identity from the configured header, verified against
//! `server.tls.client_ca` and the CRLs exactly as a handshake would verify it. From any other
//! peer the header is removed before the request is handled, so it can never be spoofed.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use crate::config::{ForwardedFormat, ServerConfig};
use crate::pki::ClientCertificate;

/// Why a forwarded certificate was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardedError {
    /// The header value is not a certificate in the configured format.
    #[error("the forwarded certificate cannot be decoded: {0}")]
    Decode(&'static str),
    /// The certificate does not chain to `client_ca`, is revoked or expired.
    #[error("the forwarded certificate is not trusted: {0}")]
    Untrusted(String),
    /// It verified but could not be parsed.
    #[error("the forwarded certificate is unusable: {0}")]
    Unusable(String),
}

/// The configured mode: header, format, proxies, and the handshake's verifier.
pub struct ForwardedCertificates {
    header: HeaderName,
    format: ForwardedFormat,
    proxies: Vec<IpAddr>,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ForwardedCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardedCertificates")
            .field("header", &self.header)
            .field("format", &self.format)
            .field("proxies", &self.proxies)
            .finish()
    }
}

/// What one request's identity comes from.
#[derive(Debug)]
pub enum Source {
    /// Not from a listed proxy (the header, if any, was removed): the TLS connection's own.
    Connection,
    /// From a listed proxy: the forwarded certificate, or none when the header is absent.
    Forwarded(Option<Result<Arc<ClientCertificate>, ForwardedError>>),
}

impl ForwardedCertificates {
    /// The mode of `server`, or `None` when it is off. `verifier` is the handshake's
    /// (`server.tls.client_ca` and the CRLs).
    pub fn from_config(
        server: &ServerConfig,
        verifier: Arc<dyn ClientCertVerifier>,
    ) -> Option<Arc<Self>> {
        let cfg = &server.forwarded_certificate;
        cfg.enable.then(|| {
            Arc::new(Self {
                header: cfg.header.0.clone(),
                format: cfg.format,
                proxies: cfg.trusted_proxies.clone(),
                verifier,
            })
        })
    }

    /// Takes the header out of `headers` and says where the request's identity comes from.
    pub fn apply(&self, peer: IpAddr, headers: &mut HeaderMap) -> Source {
        let values: Vec<_> = headers.get_all(&self.header).iter().cloned().collect();
        headers.remove(&self.header);
        if !self.proxies.contains(&peer.to_canonical()) {
            return Source::Connection;
        }
        match values.as_slice() {
            [] => Source::Forwarded(None),
            [one] => Source::Forwarded(Some(
                one.to_str()
                    .map_err(|_| ForwardedError::Decode("not ASCII"))
                    .and_then(|v| self.verify(v))
                    .map(Arc::new),
            )),
            _ => Source::Forwarded(Some(Err(ForwardedError::Decode(
                "the header appears more than once",
            )))),
        }
    }

    fn verify(&self, value: &str) -> Result<ClientCertificate, ForwardedError> {
        let chain = decode(value, self.format)?;
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(ForwardedError::Decode("no certificate"))?;
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| ForwardedError::Untrusted(e.to_string()))?;
        ClientCertificate::from_der(leaf).map_err(|e| ForwardedError::Unusable(e.to_string()))
    }
}

/// The certificate chain in a header value.
fn decode(
    value: &str,
    format: ForwardedFormat,
) -> Result<Vec<CertificateDer<'static>>, ForwardedError> {
    let encoded = match format {
        ForwardedFormat::Pem => value,
        ForwardedFormat::Xfcc => {
            xfcc_cert(value).ok_or(ForwardedError::Decode("no Cert= in the header"))?
        }
    };
    let text = percent_encoding::percent_decode_str(encoded.trim().trim_matches('"'))
        .decode_utf8()
        .map_err(|_| ForwardedError::Decode("not UTF-8 after URL decoding"))?;
    if text.contains("-----BEGIN") {
        let chain = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ForwardedError::Decode("bad PEM"))?;
        return Ok(chain);
    }
    // A bare base64 DER certificate (some proxies send that).
    let der = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| ForwardedError::Decode("neither PEM nor base64 DER"))?;
    Ok(vec![CertificateDer::from(der)])
}

/// The `Cert="…"` of the first element of an Envoy `x-forwarded-client-cert` value (the one
/// the edge proxy added for the client it saw).
fn xfcc_cert(value: &str) -> Option<&str> {
    let first = value.split(',').next()?;
    first.split(';').find_map(|pair| {
        let (key, v) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("cert")
            .then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_takes_the_first_elements_cert() {
        let v = r#"By=spiffe://lb;Hash=ab12;Cert="-----BEGIN%20CERTIFICATE-----%0Aabc";Subject="CN=x",By=spiffe://other;Cert="zzz""#;
        assert_eq!(xfcc_cert(v), Some("-----BEGIN%20CERTIFICATE-----%0Aabc"));
        assert_eq!(xfcc_cert("By=spiffe://lb;Hash=ab12"), None);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(
            decode("%%%", ForwardedFormat::Pem),
            Err(ForwardedError::Decode(_))
        ));
        assert!(matches!(
            decode(
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
                ForwardedFormat::Pem
            ),
            Err(ForwardedError::Decode(_))
        ));
        assert!(matches!(
            decode("By=x", ForwardedFormat::Xfcc),
            Err(ForwardedError::Decode(_))
        ));
    }
}
