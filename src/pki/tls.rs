//! TLS material and the rustls server configuration.
//!
//! Strict by default: TLS 1.3, plus TLS 1.2 with only the FAPI cipher suites. Client
//! certificates are requested and verified against `server.tls.client_ca` (and the CRLs), but a
//! connection without one is let through so that discovery and health work; the endpoints that
//! need a certificate answer 401 without one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};

use super::crl::{CrlUrls, StaleCrlGuard};
use super::crl_check::{CrlIssuers, VerifiedCrl};
use super::pem::pem_problem;
use crate::config::{CrlSource, TlsConfig};

/// A TLS file that is missing or does not parse, named by its config key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read or holds nothing usable.
    #[error("{key} = {path:?}: {message}")]
    File {
        key: String,
        path: PathBuf,
        message: String,
    },
    /// rustls refused the combination (for example a key that does not match the certificate).
    #[error("{key}: {message}")]
    Config { key: String, message: String },
}

fn file_error(key: &str, path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        key: key.to_string(),
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The process-wide crypto provider: aws-lc-rs, with the TLS 1.2 suites cut to FAPI's list.
///
/// FAPI 1.0 Part 2 §8.5 allows, for TLS 1.2, only the (DHE|ECDHE)_RSA AES-GCM suites; rustls
/// has no DHE, so two remain. With an EC server key TLS 1.2 therefore has no suite and only
/// TLS 1.3 is offered, which FAPI allows.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    use provider::cipher_suite as cs;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ],
        ..provider::default_provider()
    })
}

/// Installs aws-lc-rs as the default provider for any library that asks for one (reqwest,
/// sqlx). Idempotent.
pub fn install_default_provider() {
    let _ = provider::default_provider().install_default();
}

/// Reads every certificate of a PEM file.
pub fn load_certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(key, path, pem_problem(&e, "CERTIFICATE")))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, pem_problem(&e, "CERTIFICATE")))?;
    if certs.is_empty() {
        return Err(file_error(key, path, "holds no PEM CERTIFICATE"));
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|e| file_error(key, path, format!("a certificate does not parse: {e}")))?;
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            file_error(key, path, "holds no PEM PRIVATE KEY")
        }
        other => file_error(key, path, pem_problem(&other, "PRIVATE KEY")),
    })
}

/// Reads a CRL file, PEM (one or more) or DER, each CRL checked as it enters
/// ([`CrlIssuers::verify`]).
pub fn load_crl(
    key: &str,
    path: &Path,
    issuers: &CrlIssuers,
) -> Result<Vec<VerifiedCrl>, TlsError> {
    let bytes =
        std::fs::read(path).map_err(|e| file_error(key, path, format!("cannot read: {e}")))?;
    let crls = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(key, path, pem_problem(&e, "X509 CRL")))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(file_error(key, path, "holds no X509 CRL"));
    }
    crls.into_iter()
        .map(|crl| {
            issuers
                .verify(crl)
                .map_err(|e| file_error(key, path, e.to_string()))
        })
        .collect()
}

/// The trust anchors in `paths`, each file named `{key}[i]` in errors, and their certificates.
fn load_roots(
    key: &str,
    paths: &[PathBuf],
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let mut roots = RootCertStore::empty();
    let mut all = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let key = format!("{key}[{i}]");
        for cert in load_certificates(&key, path)? {
            roots.add(cert.clone()).map_err(|e| {
                file_error(&key, path, format!("not usable as a trust anchor: {e}"))
            })?;
            all.push(cert);
        }
    }
    Ok((roots, all))
}

/// The verifier of admin certificates: `admin.client_ca`, a certificate required at the
/// handshake (the admin API has no anonymous endpoint).
pub fn admin_verifier(client_ca: &[PathBuf]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let (roots, _) = load_roots("admin.client_ca", client_ca)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| TlsError::Config {
            key: "admin.client_ca".into(),
            message: e.to_string(),
        })
}

/// `[server.tls]` read and checked once (by `serve`, a reload and `check-config`): what the
/// handshake's verifier and the rustls server configuration are built from. A CRL refresh
/// rebuilds both from it with the URLs' new CRLs, without reading any file again.
#[derive(Clone)]
pub struct ServerTls {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    roots: Arc<RootCertStore>,
    client_ca: Vec<CertificateDer<'static>>,
    /// Who may sign CRLs: the `client_ca` anchors and the `crl_issuers` intermediates.
    crl_issuers: Arc<CrlIssuers>,
    /// The CRLs of the `crl` files, checked.
    crl_files: Vec<CertificateRevocationListDer<'static>>,
    crl_urls: Vec<url::Url>,
    clock_skew: i64,
    hard: bool,
}

impl ServerTls {
    /// Reads the server certificate and key, `client_ca`, `crl_issuers` (each chaining to an
    /// anchor) and the CRL files (each signed by one of those), every error naming its key.
    pub fn load(tls: &TlsConfig, clock_skew: i64) -> Result<Self, TlsError> {
        let (roots, client_ca) = load_roots("server.tls.client_ca", &tls.client_ca)?;
        let mut intermediates = Vec::new();
        for (i, path) in tls.crl_issuers.iter().enumerate() {
            intermediates.push(load_certificates(
                &format!("server.tls.crl_issuers[{i}]"),
                path,
            )?);
        }
        let crl_issuers = CrlIssuers::new(&client_ca, &intermediates, crate::clock::now())
            .map_err(|(i, e)| {
                file_error(
                    &format!("server.tls.crl_issuers[{i}]"),
                    &tls.crl_issuers[i],
                    e.to_string(),
                )
            })?;
        let mut crl_files = Vec::new();
        let mut crl_urls = Vec::new();
        for (i, source) in tls.crl.iter().enumerate() {
            match source {
                CrlSource::File(path) => crl_files.extend(
                    load_crl(&format!("server.tls.crl[{i}]"), path, &crl_issuers)?
                        .into_iter()
                        .map(|c| c.der),
                ),
                CrlSource::Url(url) => crl_urls.push(url.clone()),
            }
        }
        let chain = load_certificates("server.tls.certificate", &tls.certificate)?;
        let key = load_private_key("server.tls.private_key", &tls.private_key)?;
        Ok(Self {
            chain,
            key: Arc::new(key),
            roots: Arc::new(roots),
            client_ca,
            crl_issuers: Arc::new(crl_issuers),
            crl_files,
            crl_urls,
            clock_skew,
            hard: tls.ocsp.mode.is_hard(),
        })
    }

    /// The certificates of `server.tls.client_ca` (OCSP looks issuers up here).
    pub fn client_ca(&self) -> &[CertificateDer<'static>] {
        &self.client_ca
    }

    /// Who may sign CRLs (a URL's fetched CRL is checked against them).
    pub fn crl_issuers(&self) -> &Arc<CrlIssuers> {
        &self.crl_issuers
    }

    /// The verifier of TPP transport certificates: `client_ca`, the CRL files and the URL CRLs
    /// `urls` holds now (a stale or missing one judged by [`StaleCrlGuard`]). The handshake
    /// uses it, and so does a certificate forwarded by a load balancer.
    pub fn client_verifier(&self, urls: &CrlUrls) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let (url_crls, coverage) = urls.in_use(&self.crl_urls, &self.crl_issuers, self.clock_skew);
        let mut crls = self.crl_files.clone();
        crls.extend(url_crls);
        let mut verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), crypto_provider())
                .allow_unauthenticated();
        if !crls.is_empty() {
            // A CRL revokes the leaf certificates of its issuer. Issuers without a configured
            // CRL are not checked, rather than having all their certificates refused.
            verifier = verifier
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        let verifier = verifier.build().map_err(|e| TlsError::Config {
            // Every CRL was checked with webpki's parser when it entered.
            key: match e {
                VerifierBuilderError::InvalidCrl(_) => "server.tls.crl",
                _ => "server.tls.client_ca",
            }
            .into(),
            message: e.to_string(),
        })?;
        if self.crl_urls.is_empty() {
            return Ok(verifier);
        }
        Ok(Arc::new(StaleCrlGuard::new(verifier, coverage, self.hard)))
    }

    /// The rustls server configuration: the server certificate and key, with `verifier` (the
    /// forwarded-certificate mode and open connections share that verifier).
    pub fn server_config(
        &self,
        verifier: Arc<dyn ClientCertVerifier>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config {
                key: "server.tls".into(),
                message: e.to_string(),
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config {
                key: "server.tls.private_key".into(),
                message: format!("does not fit server.tls.certificate: {e}"),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A truncated PEM file is named by its key, with the END line it lacks in words (the PEM
    /// library lists it as bytes).
    #[test]
    fn a_truncated_pem_is_reported_in_words() {
        let dir = std::env::temp_dir().join(format!("dcr-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let cert = load_certificates("server.tls.certificate", &path)
            .unwrap_err()
            .to_string();
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nMIIB\n").unwrap();
        let key = load_private_key("server.tls.private_key", &path)
            .unwrap_err()
            .to_string();
        std::fs::write(&path, "-----BEGIN X509 CRL-----\nMIIB\n").unwrap();
        let crl = load_crl("server.tls.crl[0]", &path, &CrlIssuers::default())
            .unwrap_err()
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        for (message, key, label) in [
            (cert, "server.tls.certificate", "CERTIFICATE"),
            (key, "server.tls.private_key", "PRIVATE KEY"),
            (crl, "server.tls.crl[0]", "X509 CRL"),
        ] {
            assert!(message.starts_with(key), "{message}");
            assert!(
                message.contains(&format!("truncated PEM: no \"-----END {label}-----\" line")),
                "{message}"
            );
            assert!(!message[key.len()..].contains('['), "{message}");
        }
    }
}
