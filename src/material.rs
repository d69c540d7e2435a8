//! Everything the config names, loaded and checked once: the TLS certificate, key, `client_ca`,
//! `crl_issuers` and CRL files (each CRL verified), the SSA issuers' JWKS files, `jwks.extra_ca`
//! (in the outbound https client), the sandbox JWKS (served, and answered by the JWKS cache
//! without a request), the webhooks' secrets and trust anchors, and in `rfc7591` mode the bank's
//! AS's secrets, storage key and client ([`AsMaterial`]).
//!
//! `serve`, a SIGHUP reload and `check-config` all call [`Material::load`], so the three
//! refuse exactly the same files; `check-config` drops the result. Loading opens no database
//! connection and fetches nothing over the network.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use rustls::server::danger::ClientCertVerifier;

use rustls::pki_types::CertificateDer;

use crate::authorization_server::sealed::StorageKey;
use crate::config::{AuthorizationServerConfig, Config, JwksSource, WebhookConfig};
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
    /// Any other file: an SSA issuer's JWKS, the sandbox JWKS, a secret of the AS.
    #[error("{key} = {}: {message}", path.display())]
    File {
        key: String,
        path: PathBuf,
        message: String,
    },
    /// A key the running config needs but the file does not give (a reload that changes
    /// `authorization_server.mode`, which only a restart applies, without the keys it needs).
    #[error("{key}: {message}")]
    Required { key: String, message: String },
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
    /// The bank's AS: `Some` exactly in `rfc7591` mode.
    pub authorization_server: Option<AsMaterial>,
}

/// `[authorization_server]`'s files in `rfc7591` mode, read, and the client that calls the AS.
#[derive(Clone)]
pub struct AsMaterial {
    /// System roots plus `authorization_server.ca`; https only, no redirects,
    /// `timeout_ms` per request and per connect; one keep-alive pool.
    pub http: reqwest::Client,
    /// `initial_access_token_file`'s token, when set.
    pub initial_access_token: Option<String>,
    /// `client_secret_file`'s secret (with `client_id`: `client_secret_basic` at introspection).
    pub client_secret: String,
    /// `storage_key_file`'s key, when set; else registration access tokens are stored as they are.
    pub storage_key: Option<StorageKey>,
}

// By hand: the secrets stay out of every log line.
impl std::fmt::Debug for AsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsMaterial")
            .field("initial_access_token", &self.initial_access_token.is_some())
            .field("storage_key", &self.storage_key.is_some())
            .finish_non_exhaustive()
    }
}

impl AsMaterial {
    /// Reads the files `[authorization_server]` names and builds its client; `None` unless
    /// `mode` is `rfc7591`. Each secret is trimmed of surrounding whitespace; an empty one is
    /// an error naming its key.
    pub fn load(config: &AuthorizationServerConfig) -> Result<Option<Self>, MaterialError> {
        if !config.is_rfc7591() {
            return Ok(None);
        }
        // The config check holds these; a reload keeps a running `rfc7591` mode even when the
        // file says otherwise, and then they may be missing.
        let required = |key: &str| {
            MaterialError::Required {
            key: format!("authorization_server.{key}"),
            message: "required while authorization_server.mode is \"rfc7591\" (a change of mode applies only after a restart)".into(),
        }
        };
        if config.issuer.is_none() {
            return Err(required("issuer"));
        }
        if config.client_id.is_none() {
            return Err(required("client_id"));
        }
        let secret_file = config
            .client_secret_file
            .as_deref()
            .ok_or_else(|| required("client_secret_file"))?;
        let client_secret = read_secret("authorization_server.client_secret_file", secret_file)?;
        let initial_access_token = config
            .initial_access_token_file
            .as_deref()
            .map(|p| read_secret("authorization_server.initial_access_token_file", p))
            .transpose()?;
        let storage_key = config
            .storage_key_file
            .as_deref()
            .map(load_storage_key)
            .transpose()?;
        let http = crate::pki::outbound::authorization_server_client(
            config.ca.as_deref(),
            config.timeout(),
        )?;
        Ok(Some(Self {
            http,
            initial_access_token,
            client_secret,
            storage_key,
        }))
    }
}

/// A secret in a file of its own: its text, trimmed of surrounding whitespace (an editor's
/// trailing newline); empty or not UTF-8 is an error naming `key`. The secret is never echoed.
fn read_secret(key: &str, path: &std::path::Path) -> Result<String, MaterialError> {
    let err = |message: &str| MaterialError::File {
        key: key.to_string(),
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let bytes = read(key, path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| err("is not UTF-8 text"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(err("is empty"));
    }
    Ok(text.to_string())
}

/// `storage_key_file`: exactly 32 bytes, or as text (trimmed) 64 hex digits or the base64 of 32
/// bytes.
fn load_storage_key(path: &std::path::Path) -> Result<StorageKey, MaterialError> {
    const KEY: &str = "authorization_server.storage_key_file";
    let bytes = read(KEY, path)?;
    storage_key_bytes(&bytes)
        .and_then(|key| StorageKey::new(&key).ok())
        .ok_or_else(|| MaterialError::File {
            key: KEY.into(),
            path: path.to_path_buf(),
            message: format!(
                "must hold a 32-byte key: 32 bytes, 64 hex digits or base64 of 32 bytes (it \
                 holds {} bytes); `openssl rand -out FILE 32` makes one",
                bytes.len()
            ),
        })
}

/// The 32 key bytes a storage key file holds, if it holds them in one of the three forms.
fn storage_key_bytes(bytes: &[u8]) -> Option<[u8; 32]> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(raw);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let decoded = if text.len() == 64 {
        hex::decode(text).ok()
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
    };
    decoded.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok())
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
        let authorization_server = AsMaterial::load(&config.authorization_server)?;
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
            authorization_server,
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
    use crate::config::AsMode;

    #[test]
    fn storage_keys_are_32_bytes_raw_hex_or_base64() {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let key = [0xabu8; 32];
        let hex = hex::encode(key);
        for good in [
            key.to_vec(),
            hex.clone().into_bytes(),
            format!("{hex}\n").into_bytes(),
            format!("  {}\n", hex.to_uppercase()).into_bytes(),
            STANDARD.encode(key).into_bytes(),
            format!("{}\r\n", URL_SAFE_NO_PAD.encode(key)).into_bytes(),
        ] {
            assert_eq!(storage_key_bytes(&good), Some(key), "{good:?}");
        }
        for bad in [
            vec![],
            vec![1u8; 16],
            vec![1u8; 31],
            vec![1u8; 33],
            vec![1u8; 64],
            hex.as_bytes()[..62].to_vec(),
            format!("{hex}00").into_bytes(),
            "z".repeat(64).into_bytes(),
            STANDARD.encode([1u8; 16]).into_bytes(),
            STANDARD.encode([1u8; 48]).into_bytes(),
        ] {
            assert_eq!(storage_key_bytes(&bad), None, "{bad:?}");
        }
    }

    /// `[authorization_server]` in `rfc7591` mode with its files in `dir`.
    fn rfc7591(dir: &std::path::Path, files: &[(&str, &[u8])]) -> AuthorizationServerConfig {
        let mut c = AuthorizationServerConfig {
            mode: AsMode::Rfc7591,
            issuer: Some("https://as.bank.example".parse().unwrap()),
            client_id: Some("dcr-server".into()),
            ..Default::default()
        };
        for (name, bytes) in files {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            match *name {
                "secret" => c.client_secret_file = Some(path),
                "iat" => c.initial_access_token_file = Some(path),
                "key" => c.storage_key_file = Some(path),
                other => panic!("{other}"),
            }
        }
        c
    }

    fn load_error(c: &AuthorizationServerConfig) -> String {
        AsMaterial::load(c).expect_err("refused").to_string()
    }

    #[test]
    fn the_as_secrets_are_read_trimmed_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let c = rfc7591(
            dir.path(),
            &[
                ("secret", b"  s3cret-value\n"),
                ("iat", b"iat-value\r\n"),
                ("key", &[7u8; 32]),
            ],
        );
        let m = AsMaterial::load(&c).unwrap().expect("rfc7591 has material");
        assert_eq!(m.client_secret, "s3cret-value");
        assert_eq!(m.initial_access_token.as_deref(), Some("iat-value"));
        let sealed = m.storage_key.as_ref().unwrap().seal("c1", "rat").unwrap();
        let other = StorageKey::new(&[7u8; 32]).unwrap();
        assert_eq!(other.open("c1", &sealed).unwrap(), "rat");
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("iat-value"),
            "{shown}"
        );
        // Optional files absent: none sent, stored as they are.
        let c = rfc7591(dir.path(), &[("secret", b"s")]);
        let m = AsMaterial::load(&c).unwrap().unwrap();
        assert!(m.initial_access_token.is_none() && m.storage_key.is_none());
        // Embedded: nothing is read.
        let embedded = AuthorizationServerConfig {
            mode: AsMode::Embedded,
            ..c
        };
        assert!(AsMaterial::load(&embedded).unwrap().is_none());
    }

    #[test]
    fn unusable_as_files_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        for (files, key, says) in [
            (
                &[("secret", &b" \n"[..])][..],
                "authorization_server.client_secret_file",
                "is empty",
            ),
            (
                &[("secret", b"s"), ("iat", b"")],
                "authorization_server.initial_access_token_file",
                "is empty",
            ),
            (
                &[("secret", b"\xff\xfe")],
                "authorization_server.client_secret_file",
                "not UTF-8",
            ),
            (
                &[("secret", b"s"), ("key", &[1u8; 16])],
                "authorization_server.storage_key_file",
                "holds 16 bytes",
            ),
            (
                &[("secret", b"s"), ("key", b"not a key\n")],
                "authorization_server.storage_key_file",
                "32-byte key",
            ),
        ] {
            let e = load_error(&rfc7591(dir.path(), files));
            assert!(e.starts_with(&format!("{key} = ")), "{key}: {e}");
            assert!(e.contains(says), "{key}: {e}");
        }
        let mut missing = rfc7591(dir.path(), &[("secret", b"s")]);
        missing.initial_access_token_file = Some(dir.path().join("no-such-file"));
        let e = load_error(&missing);
        assert!(
            e.starts_with("authorization_server.initial_access_token_file = "),
            "{e}"
        );
        missing.initial_access_token_file = None;
        missing.ca = Some(dir.path().join("no-such-ca.pem"));
        assert!(load_error(&missing).contains("authorization_server.ca"));
        // A running rfc7591 mode kept by a reload whose file lacks the keys it needs.
        let mut kept = rfc7591(dir.path(), &[]);
        let e = load_error(&kept);
        assert!(
            e.starts_with("authorization_server.client_secret_file: required"),
            "{e}"
        );
        kept.issuer = None;
        assert!(load_error(&kept).starts_with("authorization_server.issuer: "));
    }

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
