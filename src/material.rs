//! Everything the config names, loaded and checked once: the TLS certificate, key, `client_ca`,
//! `crl_issuers` and CRL files (each CRL verified), the SSA issuers' JWKS files, `jwks.extra_ca`
//! (in the outbound https client), the sandbox JWKS (served, and answered by the JWKS cache
//! without a request) and the webhooks' secrets and trust anchors.
//!
//! `serve`, a SIGHUP reload and `check-config` all call [`Material::load`], so the three
//! refuse exactly the same files; `check-config` drops the result. Loading opens no database
//! connection and fetches nothing over the network.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use rustls::server::danger::ClientCertVerifier;

use rustls::pki_types::CertificateDer;

use crate::config::{Config, JwksSource, WebhookConfig};
use crate::events::{SecretError, WebhookSecret};
use crate::jose::KeySet;
use crate::pki::crl::CrlUrls;
use crate::pki::tls::{ServerTls, TlsError};

/// A file the config names that cannot be used. `Display` names the key and the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaterialError {
    /// A TLS file (certificate, key, `client_ca`, CRL, `jwks.extra_ca`).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Any other file: an SSA issuer's JWKS, the sandbox JWKS.
    #[error("{key} = {}: {message}", path.display())]
    File {
        key: String,
        path: PathBuf,
        message: String,
    },
}

/// Where an SSA issuer's keys come from, ready to use.
#[derive(Debug, Clone)]
pub enum IssuerKeys {
    /// Read from a file at load.
    Static(Arc<KeySet>),
    /// Fetched (and cached) from an https URL.
    Url(String),
}

/// The sandbox's JWKS documents, served as they are, and the same sets parsed with the URLs
/// that name them, which the JWKS cache answers without a request (see
/// [`crate::jose::jwks_cache`]).
#[derive(Debug, Clone)]
pub struct SandboxJwks {
    pub tpp: Bytes,
    pub directory: Bytes,
    /// Each set, with its URLs: under this config's issuer, and under the issuer the sandbox
    /// was made for (`tpp.json`'s `software_jwks_endpoint`, which its SSAs carry).
    pub own_sets: Vec<(Vec<String>, Arc<KeySet>)>,
}

impl SandboxJwks {
    fn load(config: &Config) -> Result<Self, MaterialError> {
        let dir = &config.sandbox.dir;
        let tpp_path = dir.join("tpp/signing.jwks");
        let directory_path = dir.join("directory.jwks");
        let info_path = dir.join("tpp/tpp.json");
        let tpp = read("sandbox.dir", &tpp_path)?;
        let directory = read("sandbox.dir", &directory_path)?;
        let info: crate::sandbox::TppInfo =
            serde_json::from_slice(&read("sandbox.dir", &info_path)?).map_err(|e| {
                MaterialError::File {
                    key: "sandbox.dir".into(),
                    path: info_path,
                    message: format!("not the sandbox TPP's tpp.json: {e}"),
                }
            })?;
        let parse = |path: PathBuf, bytes: &Bytes| {
            KeySet::parse(bytes)
                .map(Arc::new)
                .map_err(|e| MaterialError::File {
                    key: "sandbox.dir".into(),
                    path,
                    message: format!("not a JWKS: {e}"),
                })
        };
        let issuer = config.issuer_base();
        let made_for = info.issuer.trim_end_matches('/');
        let own_sets = vec![
            (
                vec![
                    format!("{issuer}{}", crate::sandbox::TPP_JWKS_PATH),
                    info.software_jwks_endpoint.clone(),
                ],
                parse(tpp_path, &tpp)?,
            ),
            (
                vec![
                    format!("{issuer}{}", crate::sandbox::DIRECTORY_JWKS_PATH),
                    format!("{made_for}{}", crate::sandbox::DIRECTORY_JWKS_PATH),
                ],
                parse(directory_path, &directory)?,
            ),
        ];
        Ok(Self {
            tpp,
            directory,
            own_sets,
        })
    }
}

/// A `[[events.webhook]]`, ready to call.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: url::Url,
    pub secret: WebhookSecret,
    /// System roots plus the webhook's `ca`; `timeout_ms` per request.
    pub client: reqwest::Client,
    pub timeout: std::time::Duration,
}

/// The loaded material. Cheap to clone (a CRL refresh clones it with a new verifier).
#[derive(Clone)]
pub struct Material {
    /// `[server.tls]` as read: a CRL refresh rebuilds the verifier and `server_tls` from it.
    pub tls: ServerTls,
    /// `client_ca` and the CRLs: the handshake's verifier, shared with forwarded certificates
    /// and the re-check of open connections after a reload.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// The rustls server configuration (certificate, key, the verifier).
    pub server_tls: Arc<rustls::ServerConfig>,
    /// One per `[[open_banking.dcr.ssa_issuer]]`, in order.
    pub issuer_keys: Vec<IssuerKeys>,
    /// The https client for JWKS and URI checks: system roots plus `jwks.extra_ca`.
    pub http: reqwest::Client,
    /// When the sandbox is in use.
    pub sandbox_jwks: Option<SandboxJwks>,
    /// The certificates of `client_ca` (OCSP finds issuing CAs among them).
    pub client_ca: Vec<CertificateDer<'static>>,
    /// The http(s) client for OCSP responders and CRL URLs (`ocsp.timeout_ms` per request).
    pub revocation_http: reqwest::Client,
    /// One per `[[events.webhook]]`, in order.
    pub webhooks: Vec<Webhook>,
    /// The admin listener's TLS (the server certificate, `admin.client_ca` required), when
    /// `admin.listen` is set.
    pub admin: Option<AdminTls>,
}

/// The admin listener's TLS configuration and certificate verifier.
#[derive(Clone)]
pub struct AdminTls {
    pub server_tls: Arc<rustls::ServerConfig>,
    pub verifier: Arc<dyn ClientCertVerifier>,
}

impl Material {
    /// Loads what `config` names; URL CRLs are taken from `crls` as last fetched (loading
    /// fetches nothing).
    pub fn load(config: &Config, crls: &CrlUrls) -> Result<Self, MaterialError> {
        for (key, path) in config.named_files() {
            if !path.is_file() {
                return Err(MaterialError::File {
                    key,
                    message: not_a_file(&path),
                    path,
                });
            }
        }
        let skew = i64::try_from(config.open_banking.dcr.clock_skew).unwrap_or(i64::MAX);
        let tls = ServerTls::load(&config.server.tls, skew)?;
        let verifier = tls.client_verifier(crls)?;
        let client_ca = tls.client_ca().to_vec();
        let revocation_http = crate::pki::outbound::revocation_client(
            &config.open_banking.dcr.jwks,
            std::time::Duration::from_millis(config.server.tls.ocsp.timeout_ms),
        )?;
        let server_tls = tls.server_config(verifier.clone())?;
        let issuer_keys = config
            .open_banking
            .dcr
            .ssa_issuer
            .iter()
            .enumerate()
            .map(|(i, issuer)| match &issuer.jwks {
                JwksSource::Url(url) => Ok(IssuerKeys::Url(url.to_string())),
                JwksSource::File(path) => {
                    load_key_set(&format!("open_banking.dcr.ssa_issuer[{i}].jwks"), path)
                        .map(|set| IssuerKeys::Static(Arc::new(set)))
                }
            })
            .collect::<Result<_, _>>()?;
        let http = crate::pki::outbound::http_client(&config.open_banking.dcr.jwks)?;
        let sandbox_jwks = if config.sandbox_enabled() {
            Some(SandboxJwks::load(config)?)
        } else {
            None
        };
        let webhooks = config
            .events
            .webhook
            .iter()
            .enumerate()
            .map(|(i, w)| load_webhook(&format!("events.webhook[{i}]"), w))
            .collect::<Result<_, _>>()?;
        let admin = if config.admin.enabled() {
            let verifier = crate::pki::tls::admin_verifier(&config.admin.client_ca)?;
            Some(AdminTls {
                server_tls: tls.server_config(verifier.clone())?,
                verifier,
            })
        } else {
            None
        };
        Ok(Self {
            tls,
            verifier,
            server_tls,
            issuer_keys,
            http,
            sandbox_jwks,
            client_ca,
            revocation_http,
            webhooks,
            admin,
        })
    }
}

impl Material {
    /// The same material with the URL CRLs as `crls` holds them now: a new verifier and
    /// server configuration, built from what was read at load (no file is read again, so a
    /// file half-written on disk cannot hold a new CRL back).
    pub fn with_url_crls(&self, crls: &CrlUrls) -> Result<Self, MaterialError> {
        let verifier = self.tls.client_verifier(crls)?;
        let server_tls = self.tls.server_config(verifier.clone())?;
        Ok(Self {
            verifier,
            server_tls,
            ..self.clone()
        })
    }
}

fn load_webhook(key: &str, w: &WebhookConfig) -> Result<Webhook, MaterialError> {
    let secret_key = format!("{key}.secret_file");
    let text = read(&secret_key, &w.secret_file)?;
    let secret = std::str::from_utf8(&text)
        .ok()
        .ok_or(SecretError::Format)
        .and_then(WebhookSecret::parse)
        .map_err(|e| MaterialError::File {
            key: secret_key,
            path: w.secret_file.clone(),
            message: e.to_string(),
        })?;
    let timeout = std::time::Duration::from_millis(w.timeout_ms);
    let client = crate::pki::outbound::webhook_client(key, &w.ca, timeout)?;
    Ok(Webhook {
        url: w.url.as_url().clone(),
        secret,
        client,
        timeout,
    })
}

/// Why `path`, which is not a file, is not one, in words.
fn not_a_file(path: &std::path::Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => "is a directory, not a file".into(),
        Ok(_) => "is not a regular file".into(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".into(),
        Err(e) => format!("cannot be read: {e}"),
    }
}

fn read(key: &str, path: &std::path::Path) -> Result<Bytes, MaterialError> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|e| MaterialError::File {
            key: key.to_string(),
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })
}

/// A JWKS file with at least one usable signature key (the same rule as a fetched JWKS).
fn load_key_set(key: &str, path: &std::path::Path) -> Result<KeySet, MaterialError> {
    let err = |message: String| MaterialError::File {
        key: key.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let set = KeySet::parse(&bytes).map_err(|e| err(format!("not a JWKS: {e}")))?;
    if set.keys.is_empty() {
        return Err(err("holds no usable signature key".into()));
    }
    Ok(set)
}

/// What the trust anchors allow but is probably a mistake, for `check-config`: an
/// `admin.client_ca` certificate that is also in `server.tls.client_ca` (every TPP certificate
/// of that CA then passes the admin handshake, and only the allow-lists keep TPPs out).
pub fn trust_warnings(config: &Config) -> Result<Vec<String>, MaterialError> {
    if !config.admin.enabled() {
        return Ok(Vec::new());
    }
    let load = |prefix: &str, paths: &[PathBuf]| {
        paths
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let key = format!("{prefix}[{i}]");
                crate::pki::tls::load_certificates(&key, path).map(|certs| (key, certs))
            })
            .collect::<Result<Vec<_>, TlsError>>()
    };
    let admin = load("admin.client_ca", &config.admin.client_ca)?;
    let tpp = load("server.tls.client_ca", &config.server.tls.client_ca)?;
    Ok(shared_anchors(&admin, &tpp)
        .into_iter()
        .map(|(admin, tpp)| {
            format!(
                "{admin} holds a certificate that is also in {tpp}: every TPP certificate of \
                 that CA passes the admin listener's handshake, and only \
                 admin.allowed_subjects and admin.allowed_thumbprints keep TPPs out; give \
                 admins a CA of their own"
            )
        })
        .collect())
}

/// The (admin key, TPP key) pairs whose files share a certificate.
fn shared_anchors<'a>(
    admin: &'a [(String, Vec<CertificateDer<'static>>)],
    tpp: &'a [(String, Vec<CertificateDer<'static>>)],
) -> Vec<(&'a str, &'a str)> {
    let mut shared = Vec::new();
    for (admin_key, admin_certs) in admin {
        for (tpp_key, tpp_certs) in tpp {
            if admin_certs.iter().any(|c| tpp_certs.contains(c)) {
                shared.push((admin_key.as_str(), tpp_key.as_str()));
            }
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_shared_by_admins_and_tpps_are_named_by_their_keys() {
        let cert = |b: u8| CertificateDer::from(vec![b; 4]);
        let admin = vec![
            ("admin.client_ca[0]".to_string(), vec![cert(1)]),
            ("admin.client_ca[1]".to_string(), vec![cert(2), cert(3)]),
        ];
        let tpp = vec![
            ("server.tls.client_ca[0]".to_string(), vec![cert(4)]),
            (
                "server.tls.client_ca[1]".to_string(),
                vec![cert(5), cert(3)],
            ),
        ];
        assert_eq!(
            shared_anchors(&admin, &tpp),
            [("admin.client_ca[1]", "server.tls.client_ca[1]")]
        );
        assert!(shared_anchors(&admin[..1], &tpp).is_empty());
    }
}
