//! The https client for outbound fetches (JWKS, URI validation).

use std::time::Duration;

use crate::config::JwksConfig;

/// The https client for outbound fetches (JWKS, URI validation): system roots plus
/// `jwks.extra_ca`, the same FAPI-restricted aws-lc-rs provider as the server, no redirects.
pub fn http_client(config: &JwksConfig) -> Result<reqwest::Client, crate::pki::tls::TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for (i, path) in config.extra_ca.iter().enumerate() {
        let key = format!("open_banking.dcr.jwks.extra_ca[{i}]");
        for cert in crate::pki::tls::load_certificates(&key, path)? {
            roots
                .add(cert)
                .map_err(|e| crate::pki::tls::TlsError::Config {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::pki::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| crate::pki::tls::TlsError::Config {
            key: "open_banking.dcr.jwks".into(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let timeout = Duration::from_millis(config.timeout_ms);
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("dcr-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::pki::tls::TlsError::Config {
            key: "open_banking.dcr.jwks".into(),
            message: e.to_string(),
        })
}
