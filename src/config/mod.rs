//! `deployment.toml`: the operator's configuration, with WSO2's key names.
//!
//! Every key that the README's configuration reference does not mark as required has a safe
//! default, so that a file with only the required keys starts the server. Unknown keys are an
//! error that names the key: an operator's typo must never be silently ignored.
//!
//! Values are parsed into their types when the file is read (addresses, URLs, algorithms,
//! DNs, header names; see [`types`]), so nothing downstream parses them again. Each section
//! then checks only the rules that one field's type cannot hold (minimums, lists that must not
//! be empty, switches that need another key).

mod admin;
mod authorization_server;
mod database;
mod dcr;
mod error;
mod events;
mod oauth;
mod sandbox;
mod server;
pub mod types;

use std::path::{Path, PathBuf};

use crate::domain::SpecVersion;
use serde::{Deserialize, Serialize};

pub use admin::AdminConfig;
pub use authorization_server::{AsMode, AsUrls, AuthorizationServerConfig};
pub use database::DatabaseConfig;
pub use dcr::{DcrConfig, JwksConfig, OpenBankingConfig, SsaIssuer, Switch};
use error::Checker;
pub use error::ConfigError;
pub use events::{EventsConfig, WebhookConfig, WebhookUrl};
pub use oauth::{EndpointsConfig, IntrospectionConfig, OAuthConfig, TokenConfig};
pub use sandbox::SandboxConfig;
pub use server::{
    ForwardedCertificateConfig, ForwardedFormat, OcspConfig, RateLimitConfig, RevocationMode,
    ServerConfig, TlsConfig,
};
pub use types::{CrlSource, DatabaseUrl, HeaderName, HttpUrl, HttpsUrl, JwksSource, mask_password};

/// Environment variable that overrides `database.url`.
pub const DATABASE_URL_ENV: &str = "DCR_DATABASE_URL";
/// Environment variable that overrides `server.listen`.
pub const LISTEN_ENV: &str = "DCR_LISTEN";
/// Environment variable that overrides `server.issuer`.
pub const ISSUER_ENV: &str = "DCR_ISSUER";

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub oauth: OAuthConfig,
    pub open_banking: OpenBankingConfig,
    #[serde(default)]
    pub sandbox: SandboxConfig,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub authorization_server: AuthorizationServerConfig,
}

impl Config {
    /// Reads, parses and checks `path`, then applies `DCR_DATABASE_URL`, `DCR_LISTEN` and
    /// `DCR_ISSUER` (each, when set and not empty, replaces its key; a reload applies them
    /// too).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bad = |key: &str, name: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: format!("{key} (from {name})"),
            message,
        };
        if let Some(url) = env(DATABASE_URL_ENV) {
            config.database.url = url
                .parse()
                .map_err(|m| bad("database.url", DATABASE_URL_ENV, m))?;
        }
        if let Some(listen) = env(LISTEN_ENV) {
            config.server.listen = listen.parse().map_err(|e: std::net::AddrParseError| {
                bad("server.listen", LISTEN_ENV, e.to_string())
            })?;
        }
        if let Some(issuer) = env(ISSUER_ENV) {
            config.server.issuer = issuer
                .parse()
                .map_err(|m| bad("server.issuer", ISSUER_ENV, m))?;
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

    /// The rules that one field's type cannot hold, section by section.
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let c = Checker::new(path);
        self.server.check(&c)?;
        self.database.check(&c)?;
        self.oauth.check(&c)?;
        self.events.check(&c)?;
        self.admin.check(&c)?;
        self.authorization_server.check(&c)?;
        self.open_banking.dcr.check(&c)
    }

    /// The advertised registration endpoint: `oauth2_dcr_url`, else the v3.2 path (or, when
    /// v3.2 is not served, the first served version's).
    pub fn registration_endpoint(&self) -> String {
        match &self.oauth.endpoints.oauth2_dcr_url {
            Some(url) => url.to_string(),
            None => {
                let versions = &self.open_banking.dcr.versions;
                let path = if versions.contains(&SpecVersion::V3_2) {
                    crate::REGISTER_PATH
                } else {
                    versions
                        .iter()
                        .min()
                        .map_or(crate::REGISTER_PATH, |v| v.profile().register_path)
                };
                format!("{}{path}", self.issuer_base())
            }
        }
    }

    /// What is allowed but probably a mistake, one line each, for `check-config` and the log at
    /// start-up and reload.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(url) = &self.oauth.endpoints.oauth2_dcr_url {
            let advertised = url::Url::parse(url.as_str()).ok();
            let issuer = url::Url::parse(self.server.issuer.as_str()).ok();
            let served: Vec<&str> = self
                .open_banking
                .dcr
                .versions
                .iter()
                .map(|v| v.profile().register_path)
                .collect();
            if let (Some(advertised), Some(issuer)) = (advertised, issuer)
                && advertised.host_str() == issuer.host_str()
                && !served.contains(&advertised.path().trim_end_matches('/'))
            {
                warnings.push(format!(
                    "oauth.endpoints.oauth2_dcr_url {url} is on this server's host but its path is not a served registration path ({}); TPPs that follow discovery get 404 unless a gateway rewrites the path",
                    served.join(", ")
                ));
            }
        }
        if self.admin.enabled()
            && self.admin.allowed_subjects.is_empty()
            && self.admin.allowed_thumbprints.is_empty()
        {
            warnings.push(
                "admin.listen is set but neither admin.allowed_subjects nor admin.allowed_thumbprints lists anyone: every admin request gets 403".to_string(),
            );
        }
        let a = &self.authorization_server;
        if a.is_rfc7591() && a.storage_key_file.is_none() {
            warnings.push(
                "authorization_server.storage_key_file is not set: registration access tokens are stored unencrypted in the database".to_string(),
            );
        }
        warnings
    }

    /// `{issuer}/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer_base())
    }

    /// The issuer without a trailing slash, for building URLs.
    pub fn issuer_base(&self) -> &str {
        self.server.issuer.as_str().trim_end_matches('/')
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
        for (i, source) in tls.crl.iter().enumerate() {
            if let CrlSource::File(p) = source {
                files.push((format!("server.tls.crl[{i}]"), p.clone()));
            }
        }
        for (i, p) in tls.crl_issuers.iter().enumerate() {
            files.push((format!("server.tls.crl_issuers[{i}]"), p.clone()));
        }
        for (i, issuer) in self.open_banking.dcr.ssa_issuer.iter().enumerate() {
            if let JwksSource::File(path) = &issuer.jwks {
                files.push((
                    format!("open_banking.dcr.ssa_issuer[{i}].jwks"),
                    path.clone(),
                ));
            }
        }
        for (i, p) in self.open_banking.dcr.jwks.extra_ca.iter().enumerate() {
            files.push((format!("open_banking.dcr.jwks.extra_ca[{i}]"), p.clone()));
        }
        for (i, p) in self.admin.client_ca.iter().enumerate() {
            files.push((format!("admin.client_ca[{i}]"), p.clone()));
        }
        for (i, w) in self.events.webhook.iter().enumerate() {
            files.push((
                format!("events.webhook[{i}].secret_file"),
                w.secret_file.clone(),
            ));
            for (j, p) in w.ca.iter().enumerate() {
                files.push((format!("events.webhook[{i}].ca[{j}]"), p.clone()));
            }
        }
        files.extend(self.authorization_server.named_files());
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
        if let Ok(masked) = shown.database.url.masked().parse() {
            shown.database.url = masked;
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::SigningAlg;

    /// A config with only the required keys of the README's configuration reference (other
    /// modules' tests start from it).
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
    fn minimal_config_gets_defaults() {
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
        // Found by the config fuzzer: `config show` must stay valid TOML whatever it shows
        // (the URL is refused when read now; a name with a newline still reaches it).
        let text = MINIMAL.replace(
            "name = \"OpenBanking Ltd\"",
            "name = \"Open\\nBanking\\u0000\"",
        );
        let shown = parse(&text).unwrap().effective_toml();
        assert!(
            Config::parse(&shown, Path::new("shown.toml")).is_ok(),
            "{shown}"
        );
    }

    /// Each (from, to, key): MINIMAL with `from` replaced by `to` is refused, naming `key`.
    fn refused_naming_the_key(cases: &[(&str, &str, &str)]) {
        for (from, to, key) in cases {
            let text = MINIMAL.replace(from, to);
            assert_ne!(text, MINIMAL, "{from}");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn typed_values_are_checked_where_they_are_read() {
        refused_naming_the_key(&[
            (
                "listen = \"127.0.0.1:8243\"",
                "listen = \"nowhere\"",
                "server.listen",
            ),
            (
                "[server.tls]",
                "forwarded_certificate.header = \"a b\"\n[server.tls]",
                "server.forwarded_certificate.header",
            ),
            (
                "[server.tls]",
                "forwarded_certificate.trusted_proxies = [\"10.0.0.300\"]\n[server.tls]",
                "server.forwarded_certificate.trusted_proxies",
            ),
            (
                "url = \"sqlite://data/dcr.db\"",
                "url = \"mysql://x\"",
                "database.url",
            ),
            (
                "jwks = \"certs/sandbox/directory.jwks\"",
                "jwks = \"http://keys.example.com\"",
                "open_banking.dcr.ssa_issuer[0].jwks",
            ),
            (
                "[database]",
                "[oauth.introspection]\nallowed_subjects = [\"CN\"]\n[database]",
                "oauth.introspection.allowed_subjects",
            ),
        ]);
        let shown = MINIMAL.replace("sqlite://data/dcr.db", "postgres://u:pw@db/dcr");
        let shown = parse(&shown).unwrap().effective_toml();
        assert!(
            shown.contains("postgres://u:***@db/dcr") && !shown.contains("pw"),
            "{shown}"
        );
    }

    #[test]
    fn section_rules_name_their_key() {
        refused_naming_the_key(&[
            (
                "client_ca = [\"certs/sandbox/ca.pem\"]",
                "client_ca = []",
                "server.tls.client_ca",
            ),
            (
                "[server.tls]",
                "max_body_bytes = 10\n[server.tls]",
                "server.max_body_bytes",
            ),
            (
                "[server.tls]",
                "forwarded_certificate.enable = true\n[server.tls]",
                "server.forwarded_certificate.trusted_proxies",
            ),
            (
                "[database]",
                "[oauth.token]\naccess_token_lifetime = 0\n[database]",
                "oauth.token.access_token_lifetime",
            ),
            (
                "name = \"OpenBanking Ltd\"",
                "name = \" \"",
                "open_banking.dcr.ssa_issuer[0].name",
            ),
        ]);
    }

    /// `open_banking.dcr.versions`: the three by default, an unknown or empty list refused.
    #[test]
    fn versions_are_known_ones() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.open_banking.dcr.versions, SpecVersion::ALL);
        assert!(!c.open_banking.dcr.strict_subject_dn_length.enable);
        let dcr = "[[open_banking.dcr.ssa_issuer]]";
        refused_naming_the_key(&[
            (
                dcr,
                "[open_banking.dcr]\nversions = [\"3.2\", \"3.5\"]\n[[open_banking.dcr.ssa_issuer]]",
                "open_banking.dcr.versions",
            ),
            (
                dcr,
                "[open_banking.dcr]\nversions = []\n[[open_banking.dcr.ssa_issuer]]",
                "open_banking.dcr.versions",
            ),
        ]);
        let text = MINIMAL.replace(
            dcr,
            "[open_banking.dcr]\nversions = [\"3.4\"]\n[[open_banking.dcr.ssa_issuer]]",
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.open_banking.dcr.versions, [SpecVersion::V3_4]);
        // Without v3.2, the advertised default is the first served version's path.
        assert_eq!(
            c.registration_endpoint(),
            "https://localhost:8243/open-banking/v3.4/register"
        );
        assert_eq!(
            parse(MINIMAL).unwrap().registration_endpoint(),
            "https://localhost:8243/open-banking/v3.2/register"
        );
    }

    /// `oauth2_dcr_url` on this server's host must be a served path, or check-config warns
    /// (a gateway may rewrite it, so it is not refused); elsewhere it is the operator's.
    #[test]
    fn an_advertised_path_that_is_not_served_is_warned_about() {
        let with = |url: &str, versions: &str| {
            let text = MINIMAL.replace(
                "[database]",
                &format!("[oauth.endpoints]\noauth2_dcr_url = \"{url}\"\n[database]"),
            );
            let text = text.replace(
                "[[open_banking.dcr.ssa_issuer]]",
                &format!(
                    "[open_banking.dcr]\nversions = {versions}\n[[open_banking.dcr.ssa_issuer]]"
                ),
            );
            parse(&text).unwrap().warnings()
        };
        let all = r#"["3.2", "3.3", "3.4"]"#;
        assert!(with("https://localhost:8243/open-banking/v3.4/register", all).is_empty());
        assert!(with("https://localhost:8243/open-banking/v3.4/register/", all).is_empty());
        assert!(with("https://gateway.bank.example/dcr", all).is_empty());
        let w = with(
            "https://localhost:8243/open-banking/v3.4/register",
            r#"["3.2"]"#,
        );
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("oauth.endpoints.oauth2_dcr_url"), "{w:?}");
        assert_eq!(with("https://localhost/register", all).len(), 1);
        assert!(parse(MINIMAL).unwrap().warnings().is_empty());
    }
}
