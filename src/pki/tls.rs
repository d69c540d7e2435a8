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
use rustls::server::WebPkiClientVerifier;

use super::crl::{CrlUrls, StaleCrlGuard};
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
        .map_err(|e| file_error(key, path, format!("cannot read: {e}")))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, format!("not valid PEM: {e}")))?;
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
        rustls::pki_types::pem::Error::Io(io) => {
            file_error(key, path, format!("cannot read: {io}"))
        }
        rustls::pki_types::pem::Error::NoItemsFound => {
            file_error(key, path, "holds no PEM PRIVATE KEY")
        }
        other => file_error(key, path, format!("not a valid PEM private key: {other}")),
    })
}

/// Reads a CRL file, PEM or DER.
pub fn load_crl(
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes =
        std::fs::read(path).map_err(|e| file_error(key, path, format!("cannot read: {e}")))?;
    let crls = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(key, path, format!("not valid PEM: {e}")))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(file_error(key, path, "holds no X509 CRL"));
    }
    for crl in &crls {
        x509_parser::parse_x509_crl(crl)
            .map_err(|e| file_error(key, path, format!("not a valid CRL: {e}")))?;
    }
    Ok(crls)
}

/// Builds the trust store for TPP transport certificates.
pub fn load_client_roots(paths: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    load_roots("server.tls.client_ca", paths)
}

/// The trust anchors in `paths`, each file named `{key}[i]` in errors.
fn load_roots(key: &str, paths: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, path) in paths.iter().enumerate() {
        let key = format!("{key}[{i}]");
        for cert in load_certificates(&key, path)? {
            roots.add(cert).map_err(|e| {
                file_error(&key, path, format!("not usable as a trust anchor: {e}"))
            })?;
        }
    }
    Ok(roots)
}

/// The verifier of admin certificates: `admin.client_ca`, a certificate required at the
/// handshake (the admin API has no anonymous endpoint).
pub fn admin_verifier(
    client_ca: &[PathBuf],
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let roots = load_roots("admin.client_ca", client_ca)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| TlsError::Config {
            key: "admin.client_ca".into(),
            message: e.to_string(),
        })
}

/// The verifier of TPP transport certificates: `client_ca`, the CRL files and the URL CRLs
/// `urls` holds now (a stale or missing one judged by [`StaleCrlGuard`]). The handshake uses
/// it, and so does a certificate forwarded by a load balancer.
pub fn client_verifier(
    tls: &TlsConfig,
    urls: &CrlUrls,
    clock_skew: i64,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let provider = crypto_provider();
    let roots = load_client_roots(&tls.client_ca)?;
    let mut crls = Vec::new();
    let mut crl_urls = Vec::new();
    for (i, source) in tls.crl.iter().enumerate() {
        match source {
            CrlSource::File(path) => {
                crls.extend(load_crl(&format!("server.tls.crl[{i}]"), path)?);
            }
            CrlSource::Url(url) => {
                if let Some(current) = urls.current(url.as_str()) {
                    crls.push(current.der.clone());
                }
                crl_urls.push(url.clone());
            }
        }
    }

    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated();
    if !crls.is_empty() {
        // A CRL revokes the leaf certificates of its issuer. Issuers without a configured CRL
        // are not checked, rather than having all their certificates refused.
        verifier = verifier
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    let verifier = verifier.build().map_err(|e| TlsError::Config {
        key: "server.tls.client_ca".into(),
        message: e.to_string(),
    })?;
    if crl_urls.is_empty() {
        return Ok(verifier);
    }
    Ok(Arc::new(StaleCrlGuard::new(
        verifier,
        &crl_urls,
        urls,
        clock_skew,
        tls.ocsp.mode.is_hard(),
    )))
}

/// The client CA certificates of `server.tls.client_ca`, as DER (OCSP looks issuers up here).
pub fn client_ca_certificates(tls: &TlsConfig) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut all = Vec::new();
    for (i, path) in tls.client_ca.iter().enumerate() {
        all.extend(load_certificates(
            &format!("server.tls.client_ca[{i}]"),
            path,
        )?);
    }
    Ok(all)
}

/// Builds the rustls server configuration from `[server.tls]` with a verifier already built
/// from it (the forwarded-certificate mode and open connections share that verifier).
pub fn server_config_with(
    tls: &TlsConfig,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = crypto_provider();
    let chain = load_certificates("server.tls.certificate", &tls.certificate)?;
    let key = load_private_key("server.tls.private_key", &tls.private_key)?;

    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config {
            key: "server.tls".into(),
            message: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config {
            key: "server.tls.private_key".into(),
            message: format!("does not fit server.tls.certificate: {e}"),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
