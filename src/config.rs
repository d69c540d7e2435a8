//! `deployment.toml`: the operator's configuration, with WSO2's key names.
//!
//! Every key that the contract does not make mandatory has a safe default, so that a file
//! written from `CONTRACT.md` alone starts the server. Unknown keys are an error that names
//! the key: an operator's typo must never be silently ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::{AuthMethod, DistinguishedName, SigningAlg};

/// Environment variable that overrides `database.url`.
pub const DATABASE_URL_ENV: &str = "DCR_DATABASE_URL";

/// A configuration problem, phrased for the operator on one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: cannot read the file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config {path}: line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A key that the server does not know.
    #[error("config {path}: unknown key `{key}`")]
    UnknownKey { path: PathBuf, key: String },
    /// A key with a value of the wrong type or a missing required key.
    #[error("config {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub oauth: OAuthConfig,
    pub open_banking: OpenBankingConfig,
    #[serde(default)]
    pub sandbox: SandboxConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerConfig {
    /// `address:port` to listen on.
    pub listen: String,
    /// Public base URL; discovery `issuer`, and `{issuer}/token` is the token endpoint.
    pub issuer: String,
    pub tls: TlsConfig,
    /// Seconds that open requests get to finish after SIGTERM/SIGINT.
    #[serde(default = "defaults::shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Request bodies larger than this are refused with 413 before they are parsed.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers); larger ones are refused.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// A request that has not been answered after this many milliseconds gets a 503; a
    /// request head that has not arrived by then closes the connection (slowloris).
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Open connections at most; further connections wait in the listen backlog.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// TLS terminated at a load balancer that forwards the client certificate in a header.
    #[serde(default)]
    pub forwarded_certificate: ForwardedCertificateConfig,
}

/// `[server.forwarded_certificate]`: off unless enabled, and then only for listed proxies.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ForwardedCertificateConfig {
    #[serde(default)]
    pub enable: bool,
    /// The header that carries the certificate.
    #[serde(default = "defaults::forwarded_header")]
    pub header: String,
    /// `pem`: a URL-encoded (or plain) PEM certificate, as WSO2's `x-wso2-mutual-auth-cert` and
    /// nginx's `$ssl_client_escaped_cert`; `xfcc`: Envoy's `x-forwarded-client-cert`.
    #[serde(default)]
    pub format: ForwardedFormat,
    /// IP addresses of the proxies whose header is believed. From any other peer the header is
    /// removed and ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl Default for ForwardedCertificateConfig {
    fn default() -> Self {
        Self {
            enable: false,
            header: defaults::forwarded_header(),
            format: ForwardedFormat::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardedFormat {
    #[default]
    Pem,
    Xfcc,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub client_ca: Vec<PathBuf>,
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// A TLS handshake that has not finished after this many milliseconds is dropped.
    #[serde(default = "defaults::handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseConfig {
    pub url: String,
    #[serde(default = "defaults::pool_size")]
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before it gets a 503.
    #[serde(default = "defaults::acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// SQLite only: how long a write waits for another writer's lock before it gets a 503.
    #[serde(default = "defaults::sqlite_busy_timeout_ms")]
    pub sqlite_busy_timeout_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OAuthConfig {
    #[serde(default)]
    pub endpoints: EndpointsConfig,
    #[serde(default)]
    pub token: TokenConfig,
    #[serde(default)]
    pub introspection: IntrospectionConfig,
}

/// Who may call `POST /introspect`: API gateways, identified by their mTLS certificate.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct IntrospectionConfig {
    /// `x5t#S256` values (base64url SHA-256 of the DER) of allowed client certificates.
    #[serde(default)]
    pub allowed_thumbprints: Vec<String>,
    /// Subject DNs (RFC 4514) of allowed client certificates, compared as RDN sets.
    #[serde(default)]
    pub allowed_subjects: Vec<DistinguishedName>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EndpointsConfig {
    /// Advertised `registration_endpoint`; defaults to `{issuer}/open-banking/v3.2/register`.
    pub oauth2_dcr_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenConfig {
    #[serde(default = "defaults::access_token_lifetime")]
    pub access_token_lifetime: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime: defaults::access_token_lifetime(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OpenBankingConfig {
    pub dcr: DcrConfig,
}

/// A WSO2-style `x.enable = bool` switch.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
pub struct Switch {
    pub enable: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DcrConfig {
    #[serde(default = "defaults::off")]
    pub uri_validation: Switch,
    #[serde(default = "defaults::off")]
    pub hostname_validation: Switch,
    #[serde(default = "defaults::on")]
    pub software_id_as_application_name: Switch,
    #[serde(default = "defaults::on")]
    pub request_jti_validation: Switch,
    #[serde(default = "defaults::off")]
    pub ssa_jti_validation: Switch,
    /// Minutes a seen `jti` is remembered (never less than the JWT's own `exp`).
    #[serde(default = "defaults::jti_cache_expiry_time")]
    pub jti_cache_expiry_time: u64,
    /// Accepted request `aud` values; empty means `aud` must be present with any value.
    #[serde(default)]
    pub audience: Vec<String>,
    #[serde(default = "defaults::signing_algorithms")]
    pub signing_algorithms: Vec<SigningAlg>,
    #[serde(default = "defaults::token_endpoint_auth_methods")]
    pub token_endpoint_auth_methods: Vec<AuthMethod>,
    /// Seconds since SSA `iat`; 0 = no limit.
    #[serde(default)]
    pub ssa_max_age: u64,
    /// Seconds of clock difference tolerated on `exp`, `iat` and SSA `iat`.
    #[serde(default = "defaults::clock_skew")]
    pub clock_skew: u64,
    pub ssa_issuer: Vec<SsaIssuer>,
    #[serde(default)]
    pub jwks: JwksConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SsaIssuer {
    /// The SSA `iss` value.
    pub name: String,
    /// A file path, or an https URL, of the issuer's JWKS.
    pub jwks: String,
}

impl SsaIssuer {
    pub fn jwks_is_url(&self) -> bool {
        self.jwks.starts_with("https://") || self.jwks.starts_with("http://")
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct JwksConfig {
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub extra_ca: Vec<PathBuf>,
    #[serde(default = "defaults::jwks_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "defaults::jwks_cache_ttl")]
    pub cache_ttl: u64,
    /// Seconds a cached JWKS may still be used while its source is unreachable.
    #[serde(default = "defaults::jwks_max_stale")]
    pub max_stale: u64,
    /// Largest JWKS response accepted, in bytes.
    #[serde(default = "defaults::jwks_max_bytes")]
    pub max_bytes: usize,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            extra_ca: Vec::new(),
            timeout_ms: defaults::jwks_timeout_ms(),
            cache_ttl: defaults::jwks_cache_ttl(),
            max_stale: defaults::jwks_max_stale(),
            max_bytes: defaults::jwks_max_bytes(),
        }
    }
}

/// The generated sandbox PKI (see `dcr-server sandbox init`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SandboxConfig {
    /// `true`: `serve` creates the sandbox when it is missing and serves the sandbox TPP's
    /// JWKS. When unset, the sandbox is on exactly when a configured file lies inside `dir`.
    pub enable: Option<bool>,
    #[serde(default = "defaults::sandbox_dir")]
    pub dir: PathBuf,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            enable: None,
            dir: defaults::sandbox_dir(),
        }
    }
}

mod defaults {
    use super::Switch;
    use crate::domain::{AuthMethod, SigningAlg};
    use std::path::PathBuf;

    pub fn forwarded_header() -> String {
        "x-wso2-mutual-auth-cert".into()
    }

    pub fn shutdown_grace_secs() -> u64 {
        10
    }
    pub fn handshake_timeout_ms() -> u64 {
        10_000
    }
    pub fn pool_size() -> u32 {
        10
    }
    pub fn acquire_timeout_ms() -> u64 {
        5_000
    }
    pub fn access_token_lifetime() -> u64 {
        3600
    }
    pub fn off() -> Switch {
        Switch { enable: false }
    }
    pub fn on() -> Switch {
        Switch { enable: true }
    }
    pub fn jti_cache_expiry_time() -> u64 {
        60
    }
    pub fn signing_algorithms() -> Vec<SigningAlg> {
        vec![SigningAlg::PS256, SigningAlg::ES256]
    }
    pub fn token_endpoint_auth_methods() -> Vec<AuthMethod> {
        vec![AuthMethod::PrivateKeyJwt, AuthMethod::TlsClientAuth]
    }
    pub fn jwks_timeout_ms() -> u64 {
        3000
    }
    pub fn jwks_cache_ttl() -> u64 {
        300
    }
    pub fn jwks_max_stale() -> u64 {
        3600
    }
    pub fn clock_skew() -> u64 {
        60
    }
    pub fn max_body_bytes() -> usize {
        64 * 1024
    }
    pub fn max_header_bytes() -> usize {
        16 * 1024
    }
    pub fn request_timeout_ms() -> u64 {
        15_000
    }
    pub fn max_connections() -> usize {
        4096
    }
    pub fn jwks_max_bytes() -> usize {
        256 * 1024
    }
    pub fn sqlite_busy_timeout_ms() -> u64 {
        5_000
    }
    pub fn sandbox_dir() -> PathBuf {
        PathBuf::from("certs/sandbox")
    }
}

impl Config {
    /// Reads, parses and checks `path`, then applies `DCR_DATABASE_URL`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        if let Ok(url) = std::env::var(DATABASE_URL_ENV)
            && !url.is_empty()
        {
            config.database.url = url;
        }
        config.check(path)?;
        Ok(config)
    }

    /// Parses TOML text. `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let line_of = |span: Option<std::ops::Range<usize>>| {
            span.map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                .unwrap_or(1)
        };
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: line_of(e.span()),
            message: e.message().trim().to_string(),
        })?;
        let mut unknown = Vec::new();
        let mut record = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
        let ignored = serde_ignored::Deserializer::new(de, &mut record);
        let parsed: Result<Config, _> = serde_path_to_error::deserialize(ignored);
        // An unknown key is reported first: it is usually the cause of a "missing" one.
        if let Some(key) = unknown.into_iter().next() {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key,
            });
        }
        parsed.map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().trim().to_string();
            // serde reports a missing field at its parent; name the field itself.
            let key = match message.strip_prefix("missing field `") {
                Some(rest) => {
                    let field = rest.trim_end_matches('`');
                    if key == "." || key.is_empty() {
                        field.to_string()
                    } else {
                        format!("{key}.{field}")
                    }
                }
                None => key,
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            }
        })
    }

    /// Checks values that TOML types cannot express.
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad(
                "server.listen",
                format!(
                    "`{}` is not an address:port such as 127.0.0.1:8243",
                    self.server.listen
                ),
            ));
        }
        let url_ok = |u: &str| {
            u.starts_with("https://")
                && !u.chars().any(|c| c.is_control() || c.is_whitespace())
                && url::Url::parse(u).is_ok_and(|p| p.host_str().is_some())
        };
        if !url_ok(&self.server.issuer) {
            return Err(bad("server.issuer", "must be an https:// URL".into()));
        }
        if let Some(url) = &self.oauth.endpoints.oauth2_dcr_url
            && !url_ok(url)
        {
            return Err(bad(
                "oauth.endpoints.oauth2_dcr_url",
                "must be an https:// URL".into(),
            ));
        }
        if self.server.tls.client_ca.is_empty() {
            return Err(bad(
                "server.tls.client_ca",
                "at least one trust anchor is needed for TPP transport certificates".into(),
            ));
        }
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return Err(bad(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        for (key, value, min) in [
            ("server.max_body_bytes", self.server.max_body_bytes, 1024),
            (
                "server.max_header_bytes",
                self.server.max_header_bytes,
                8192,
            ),
            ("server.max_connections", self.server.max_connections, 1),
            (
                "open_banking.dcr.jwks.max_bytes",
                self.open_banking.dcr.jwks.max_bytes,
                1024,
            ),
        ] {
            if value < min {
                return Err(bad(key, format!("must be at least {min}")));
            }
        }
        if self.server.request_timeout_ms < 100 {
            return Err(bad(
                "server.request_timeout_ms",
                "must be at least 100".into(),
            ));
        }
        let fwd = &self.server.forwarded_certificate;
        if axum::http::HeaderName::from_bytes(fwd.header.as_bytes()).is_err() {
            return Err(bad(
                "server.forwarded_certificate.header",
                format!("`{}` is not a header name", fwd.header),
            ));
        }
        for (i, proxy) in fwd.trusted_proxies.iter().enumerate() {
            if proxy.parse::<std::net::IpAddr>().is_err() {
                return Err(bad(
                    &format!("server.forwarded_certificate.trusted_proxies[{i}]"),
                    format!("`{proxy}` is not an IP address"),
                ));
            }
        }
        if fwd.enable && fwd.trusted_proxies.is_empty() {
            return Err(bad(
                "server.forwarded_certificate.trusted_proxies",
                "list the load balancers' addresses: the header is believed from them only".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(bad("database.max_connections", "must be at least 1".into()));
        }
        if self.oauth.token.access_token_lifetime == 0 {
            return Err(bad(
                "oauth.token.access_token_lifetime",
                "must be at least 1 second".into(),
            ));
        }
        let dcr = &self.open_banking.dcr;
        if dcr.signing_algorithms.is_empty() {
            return Err(bad(
                "open_banking.dcr.signing_algorithms",
                "must list at least one algorithm".into(),
            ));
        }
        if dcr.token_endpoint_auth_methods.is_empty() {
            return Err(bad(
                "open_banking.dcr.token_endpoint_auth_methods",
                "must list at least one method".into(),
            ));
        }
        if dcr.ssa_issuer.is_empty() {
            return Err(bad(
                "open_banking.dcr.ssa_issuer",
                "at least one [[open_banking.dcr.ssa_issuer]] is needed".into(),
            ));
        }
        for (i, issuer) in dcr.ssa_issuer.iter().enumerate() {
            if issuer.name.trim().is_empty() {
                return Err(bad(
                    &format!("open_banking.dcr.ssa_issuer[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if issuer.jwks.starts_with("http://") {
                return Err(bad(
                    &format!("open_banking.dcr.ssa_issuer[{i}].jwks"),
                    "a JWKS URL must use https".into(),
                ));
            }
        }
        if dcr.jwks.timeout_ms == 0 {
            return Err(bad(
                "open_banking.dcr.jwks.timeout_ms",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The advertised registration endpoint.
    pub fn registration_endpoint(&self) -> String {
        self.oauth
            .endpoints
            .oauth2_dcr_url
            .clone()
            .unwrap_or_else(|| format!("{}{}", self.issuer_base(), crate::REGISTER_PATH))
    }

    /// `{issuer}/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer_base())
    }

    /// The issuer without a trailing slash, for building URLs.
    pub fn issuer_base(&self) -> &str {
        self.server.issuer.trim_end_matches('/')
    }

    /// Every file the configuration names, with the key that names it.
    pub fn named_files(&self) -> Vec<(String, PathBuf)> {
        let tls = &self.server.tls;
        let mut files = vec![
            (
                "server.tls.certificate".to_string(),
                tls.certificate.clone(),
            ),
            (
                "server.tls.private_key".to_string(),
                tls.private_key.clone(),
            ),
        ];
        for (i, p) in tls.client_ca.iter().enumerate() {
            files.push((format!("server.tls.client_ca[{i}]"), p.clone()));
        }
        for (i, p) in tls.crl.iter().enumerate() {
            files.push((format!("server.tls.crl[{i}]"), p.clone()));
        }
        for (i, issuer) in self.open_banking.dcr.ssa_issuer.iter().enumerate() {
            if !issuer.jwks_is_url() {
                files.push((
                    format!("open_banking.dcr.ssa_issuer[{i}].jwks"),
                    PathBuf::from(&issuer.jwks),
                ));
            }
        }
        for (i, p) in self.open_banking.dcr.jwks.extra_ca.iter().enumerate() {
            files.push((format!("open_banking.dcr.jwks.extra_ca[{i}]"), p.clone()));
        }
        files
    }

    /// Whether the generated sandbox is in use: explicitly, or because a configured file lies
    /// inside the sandbox directory.
    pub fn sandbox_enabled(&self) -> bool {
        match self.sandbox.enable {
            Some(on) => on,
            None => self
                .named_files()
                .iter()
                .any(|(_, p)| p.starts_with(&self.sandbox.dir)),
        }
    }

    /// The effective settings as TOML, with any database password masked.
    pub fn effective_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = mask_password(&shown.database.url);
        let mut out = toml::to_string_pretty(&shown).unwrap_or_default();
        // Debug-quoted (control characters escaped), so that no value can break out of its
        // comment line.
        let quoted = |v: String| format!("{v:?}");
        out.push_str(&format!(
            "\n# derived\n# registration_endpoint = {}\n# token_endpoint = {}\n# sandbox in use = {}\n",
            quoted(self.registration_endpoint()),
            quoted(self.token_endpoint()),
            self.sandbox_enabled()
        ));
        out
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A config with only the contract's required keys (other modules' tests start from it).
    pub(crate) const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8243"
issuer = "https://localhost:8243"
[server.tls]
certificate = "certs/sandbox/server.pem"
private_key = "certs/sandbox/server.key"
client_ca = ["certs/sandbox/ca.pem"]
[database]
url = "sqlite://data/dcr.db"
[[open_banking.dcr.ssa_issuer]]
name = "OpenBanking Ltd"
jwks = "certs/sandbox/directory.jwks"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let c = Config::parse(text, Path::new("t.toml"))?;
        c.check(Path::new("t.toml"))?;
        Ok(c)
    }

    #[test]
    fn minimal_contract_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        let dcr = &c.open_banking.dcr;
        assert!(dcr.software_id_as_application_name.enable);
        assert!(dcr.request_jti_validation.enable);
        assert!(!dcr.ssa_jti_validation.enable);
        assert_eq!(
            dcr.signing_algorithms,
            [SigningAlg::PS256, SigningAlg::ES256]
        );
        assert_eq!(c.database.max_connections, 10);
        assert_eq!(
            c.registration_endpoint(),
            "https://localhost:8243/open-banking/v3.2/register"
        );
        assert_eq!(c.token_endpoint(), "https://localhost:8243/token");
        assert!(c.sandbox_enabled());
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let text = MINIMAL.replace(
            "[database]",
            "[database]\nmax_conections = 3\n[open_banking.dcr]\nuri_validation.enabled = true",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("database.max_conections"), "{err}");
    }

    #[test]
    fn unknown_dotted_key_is_named() {
        let text = format!("{MINIMAL}\n[open_banking.dcr.jwks]\ntimeout = 5\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("open_banking.dcr.jwks.timeout"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = MINIMAL.replace("[database]", "[database]\nmax_connections = \"ten\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("database.max_connections"), "{err}");
    }

    #[test]
    fn missing_key_is_named() {
        let text = MINIMAL.replace("issuer = \"https://localhost:8243\"\n", "");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("server.issuer"), "{err}");
    }

    #[test]
    fn none_and_hs256_cannot_be_enabled() {
        for alg in ["none", "HS256"] {
            let text = MINIMAL.replace(
                "[[open_banking.dcr.ssa_issuer]]",
                &format!("[open_banking.dcr]\nsigning_algorithms = [\"{alg}\"]\n[[open_banking.dcr.ssa_issuer]]"),
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("signing_algorithms"), "{err}");
        }
    }

    #[test]
    fn urls_with_control_characters_are_refused_and_never_break_config_show() {
        let text = MINIMAL.replace(
            "issuer = \"https://localhost:8243\"",
            "issuer = \"https://localhost:8243/\\nx = 1\"",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("server.issuer"), "{err}");
        // Found by the config fuzzer: `config show` must stay valid TOML whatever it shows.
        let shown = Config::parse(&text, Path::new("t.toml"))
            .unwrap()
            .effective_toml();
        assert!(
            Config::parse(&shown, Path::new("shown.toml")).is_ok(),
            "{shown}"
        );
    }

    #[test]
    fn masks_database_password() {
        assert_eq!(
            mask_password("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            mask_password("sqlite://data/dcr.db"),
            "sqlite://data/dcr.db"
        );
    }
}
