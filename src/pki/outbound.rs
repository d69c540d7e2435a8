//! The clients for outbound fetches: https for JWKS and URI validation; http(s) for the
//! revocation services (OCSP responders and CRL distribution points publish over plain http,
//! and what they serve is signed).

use std::time::Duration;

use crate::config::JwksConfig;
use crate::pki::tls::TlsError;

/// The https client for outbound fetches (JWKS, URI validation): system roots plus
/// `jwks.extra_ca`, the same FAPI-restricted aws-lc-rs provider as the server, no redirects.
pub fn http_client(config: &JwksConfig) -> Result<reqwest::Client, TlsError> {
    let timeout = Duration::from_millis(config.timeout_ms);
    builder(config, timeout)?
        .build()
        .map_err(|e| config_error(e.to_string()))
}

/// The client for OCSP responders and CRL URLs: http or https (same roots as
/// [`http_client`]), no redirects, `timeout` per request.
pub fn revocation_client(
    config: &JwksConfig,
    timeout: Duration,
) -> Result<reqwest::Client, TlsError> {
    builder(config, timeout)?
        .build()
        .map_err(|e| config_error(e.to_string()))
}

/// The body of `response` if it answered 2xx and is at most `max` bytes; else why not (for the
/// log). OCSP and CRL fetches share it.
pub async fn read_capped(response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if !response.status().is_success() {
        return Err(format!("answered HTTP {}", response.status().as_u16()));
    }
    read_body_capped(response, max).await
}

/// The body of `response`, whatever its status, if it is at most `max` bytes; else why not.
pub async fn read_body_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    // A declared length over the cap is refused before anything is read.
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        // Without the URL: the callers name what they fetched, and some URLs are secrets
        // (an AS's registration_client_uri).
        .map_err(|e| format!("reading failed: {}", error_chain(&e.without_url())))?
    {
        if body.len() + chunk.len() > max {
            return Err(format!("larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error and its causes, for the log.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn config_error(message: String) -> TlsError {
    TlsError::Config {
        key: "open_banking.dcr.jwks".into(),
        message,
    }
}

/// The client a webhook is called with: system roots plus its own `ca` (`key` names the
/// webhook in errors), no redirects, `timeout` per request.
pub fn webhook_client(
    key: &str,
    ca: &[std::path::PathBuf],
    timeout: Duration,
) -> Result<reqwest::Client, TlsError> {
    let anchors = ca
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("{key}.ca[{i}]"), p.as_path()));
    builder_with(anchors, timeout, &[])?
        .build()
        .map_err(|e| TlsError::Config {
            key: key.to_string(),
            message: e.to_string(),
        })
}

/// The client for the bank's authorization server (`rfc7591` mode): system roots plus `ca`
/// (`authorization_server.ca`), https only, no redirects, `timeout` per request and per
/// connect. One keep-alive pool for every call to the AS; idle connections close after 90 s.
pub fn authorization_server_client(
    ca: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<reqwest::Client, TlsError> {
    let anchors = ca
        .into_iter()
        .map(|p| ("authorization_server.ca".to_string(), p));
    // HTTP/2 when the AS offers it: one connection carries every call in flight, where
    // HTTP/1.1 holds one per call (64 at c=64), each with its socket buffers and wake-ups.
    builder_with(anchors, timeout, &[b"h2", b"http/1.1"])?
        .https_only(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| TlsError::Config {
            key: "authorization_server".into(),
            message: e.to_string(),
        })
}

fn builder(config: &JwksConfig, timeout: Duration) -> Result<reqwest::ClientBuilder, TlsError> {
    let anchors = config
        .extra_ca
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("open_banking.dcr.jwks.extra_ca[{i}]"), p.as_path()));
    builder_with(anchors, timeout, &[])
}

/// A client builder trusting the system roots plus `anchors` (each file named by its key).
/// `alpn`: the protocols offered in the handshake (none: HTTP/1.1).
fn builder_with<'p>(
    anchors: impl Iterator<Item = (String, &'p std::path::Path)>,
    timeout: Duration,
    alpn: &[&[u8]],
) -> Result<reqwest::ClientBuilder, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for (key, path) in anchors {
        for cert in crate::pki::tls::load_certificates(&key, path)? {
            roots.add(cert).map_err(|e| TlsError::Config {
                key: key.clone(),
                message: e.to_string(),
            })?;
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(crate::pki::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| config_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("dcr-server/", env!("CARGO_PKG_VERSION"))))
}
