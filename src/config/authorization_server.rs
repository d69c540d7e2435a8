//! `[authorization_server]`: the bank's authorization server behind this one (issue 27).
//! `embedded` (the default) is this server as it always was; `rfc7591` also makes every
//! registration at the bank's AS, whose tokens then manage the clients.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};
use super::types::HttpsUrl;

/// Where registrations are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AsMode {
    /// This server registers, issues tokens and introspects them itself.
    #[default]
    Embedded,
    /// Every registration is also an RFC 7591 registration at the bank's AS.
    Rfc7591,
}

impl AsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Rfc7591 => "rfc7591",
        }
    }
}

// Unknown keys are refused for the whole file by `Config::parse` (serde_ignored), as for every
// other section, so no `deny_unknown_fields` here.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AuthorizationServerConfig {
    #[serde(default)]
    pub mode: AsMode,
    /// The AS's issuer; its discovery is `{issuer}/.well-known/openid-configuration`.
    /// Required in `rfc7591` mode.
    pub issuer: Option<HttpsUrl>,
    /// Each endpoint given here wins over the one discovery names.
    pub registration_endpoint: Option<HttpsUrl>,
    pub introspection_endpoint: Option<HttpsUrl>,
    pub token_endpoint: Option<HttpsUrl>,
    /// The Bearer of the RFC 7591 POST; absent: none is sent.
    pub initial_access_token_file: Option<PathBuf>,
    /// With `client_secret_file`: `client_secret_basic` at introspection.
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// PEM trust anchors for the AS's TLS, besides the system roots.
    pub ca: Option<PathBuf>,
    /// 32 random bytes that seal registration access tokens at rest; absent: stored as they are.
    pub storage_key_file: Option<PathBuf>,
    /// Each call to the AS (and its connect) gives up after this.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// How long an introspection answer is reused (never past the token's `exp`); 0: never.
    #[serde(default = "defaults::introspection_cache_secs")]
    pub introspection_cache_secs: u64,
}

impl Default for AuthorizationServerConfig {
    fn default() -> Self {
        Self {
            mode: AsMode::default(),
            issuer: None,
            registration_endpoint: None,
            introspection_endpoint: None,
            token_endpoint: None,
            initial_access_token_file: None,
            client_id: None,
            client_secret_file: None,
            ca: None,
            storage_key_file: None,
            timeout_ms: defaults::timeout_ms(),
            introspection_cache_secs: defaults::introspection_cache_secs(),
        }
    }
}

/// The AS's URLs as the config gives them, parsed (for `authorization_server::Endpoints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsUrls {
    pub issuer: Option<url::Url>,
    pub registration_endpoint: Option<url::Url>,
    pub introspection_endpoint: Option<url::Url>,
    pub token_endpoint: Option<url::Url>,
}

impl AuthorizationServerConfig {
    pub fn is_rfc7591(&self) -> bool {
        self.mode == AsMode::Rfc7591
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The configured URLs as `url::Url`s (an `HttpsUrl` always parses as one).
    pub fn urls(&self) -> AsUrls {
        let url = |u: &Option<HttpsUrl>| u.as_ref().and_then(|u| url::Url::parse(u.as_str()).ok());
        AsUrls {
            issuer: url(&self.issuer),
            registration_endpoint: url(&self.registration_endpoint),
            introspection_endpoint: url(&self.introspection_endpoint),
            token_endpoint: url(&self.token_endpoint),
        }
    }

    /// The files this section names, with their keys, for `Config::named_files`.
    pub(super) fn named_files(&self) -> Vec<(String, PathBuf)> {
        [
            ("initial_access_token_file", &self.initial_access_token_file),
            ("client_secret_file", &self.client_secret_file),
            ("ca", &self.ca),
            ("storage_key_file", &self.storage_key_file),
        ]
        .into_iter()
        .filter_map(|(key, path)| {
            path.as_ref()
                .map(|p| (format!("authorization_server.{key}"), p.clone()))
        })
        .collect()
    }

    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        c.at_least(
            "authorization_server.timeout_ms",
            usize::try_from(self.timeout_ms).unwrap_or(usize::MAX),
            1,
        )?;
        if self
            .client_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(c.bad("authorization_server.client_id", "must not be empty"));
        }
        match (&self.client_id, &self.client_secret_file) {
            (Some(_), None) => {
                return Err(c.bad(
                    "authorization_server.client_secret_file",
                    "needed with authorization_server.client_id (client_secret_basic at introspection)",
                ));
            }
            (None, Some(_)) => {
                return Err(c.bad(
                    "authorization_server.client_id",
                    "needed with authorization_server.client_secret_file (client_secret_basic at introspection)",
                ));
            }
            _ => {}
        }
        if self.is_rfc7591() {
            if self.issuer.is_none() {
                return Err(c.bad(
                    "authorization_server.issuer",
                    "required when authorization_server.mode is \"rfc7591\"",
                ));
            }
            // Management tokens are the AS's, checked by introspection as this client.
            if self.client_id.is_none() {
                return Err(c.bad(
                    "authorization_server.client_id",
                    "required when authorization_server.mode is \"rfc7591\" (with client_secret_file: management tokens are introspected at the AS)",
                ));
            }
            // cdr.enable = true with mode = "rfc7591" is refused here once [cdr] exists.
        }
        Ok(())
    }
}

mod defaults {
    pub fn timeout_ms() -> u64 {
        5000
    }
    pub fn introspection_cache_secs() -> u64 {
        30
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::MINIMAL;
    use std::path::Path;

    fn with(section: &str) -> Result<Config, ConfigError> {
        let text = format!("{MINIMAL}\n[authorization_server]\n{section}\n");
        let c = Config::parse(&text, Path::new("t.toml"))?;
        c.check(Path::new("t.toml"))?;
        Ok(c)
    }

    const RFC7591: &str = r#"mode = "rfc7591"
issuer = "https://as.bank.example"
client_id = "dcr-server"
client_secret_file = "secrets/as-client-secret"
"#;

    #[test]
    fn absent_section_is_embedded_with_defaults() {
        let c = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        let a = &c.authorization_server;
        assert_eq!(*a, AuthorizationServerConfig::default());
        assert_eq!(a.mode, AsMode::Embedded);
        assert!(!a.is_rfc7591());
        assert_eq!(a.timeout(), Duration::from_millis(5000));
        assert_eq!(a.introspection_cache_secs, 30);
        assert!(a.named_files().is_empty());
        assert_eq!(with("").unwrap().authorization_server, *a);
    }

    #[test]
    fn rfc7591_without_a_storage_key_is_warned_about() {
        let w = with(RFC7591).unwrap().warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("authorization_server.storage_key_file") && w[0].contains("unencrypted"),
            "{w:?}"
        );
        let keyed = with(&format!("{RFC7591}storage_key_file = \"k\"")).unwrap();
        assert!(keyed.warnings().is_empty());
        assert!(with("").unwrap().warnings().is_empty());
    }

    #[test]
    fn modes_are_named_in_lowercase() {
        assert_eq!(
            with("mode = \"embedded\"")
                .unwrap()
                .authorization_server
                .mode,
            AsMode::Embedded
        );
        let c = with(RFC7591).unwrap();
        assert!(c.authorization_server.is_rfc7591());
        assert_eq!(AsMode::Rfc7591.as_str(), "rfc7591");
        for bad in ["RFC7591", "rfc-7591", "external"] {
            let e = with(&format!("mode = \"{bad}\"")).unwrap_err().to_string();
            assert!(e.contains("`authorization_server.mode`"), "{e}");
        }
    }

    #[test]
    fn an_rfc7591_section_is_read_whole() {
        let c = with(&format!(
            "{RFC7591}registration_endpoint = \"https://as.bank.example/reg\"\n\
             introspection_endpoint = \"https://as.bank.example/introspect\"\n\
             token_endpoint = \"https://as.bank.example/token\"\n\
             initial_access_token_file = \"secrets/iat\"\nca = \"secrets/as-ca.pem\"\n\
             storage_key_file = \"secrets/storage.key\"\ntimeout_ms = 1\nintrospection_cache_secs = 0\n"
        ))
        .unwrap();
        let a = &c.authorization_server;
        assert_eq!(a.timeout(), Duration::from_millis(1));
        assert_eq!(a.introspection_cache_secs, 0);
        let urls = a.urls();
        assert_eq!(urls.issuer.unwrap().as_str(), "https://as.bank.example/");
        assert_eq!(urls.registration_endpoint.unwrap().path(), "/reg");
        assert_eq!(urls.introspection_endpoint.unwrap().path(), "/introspect");
        assert_eq!(urls.token_endpoint.unwrap().path(), "/token");
        let keys: Vec<String> = c.named_files().into_iter().map(|(k, _)| k).collect();
        for key in [
            "authorization_server.initial_access_token_file",
            "authorization_server.client_secret_file",
            "authorization_server.ca",
            "authorization_server.storage_key_file",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key}: {keys:?}");
        }
    }

    #[test]
    fn unknown_keys_and_non_https_urls_are_refused_naming_the_key() {
        let e = with(&format!("{RFC7591}timeout = 5"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`authorization_server.timeout`"), "{e}");
        let e = with(&RFC7591.replace("https://as.bank", "http://as.bank"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`authorization_server.issuer`"), "{e}");
        for key in [
            "registration_endpoint",
            "introspection_endpoint",
            "token_endpoint",
        ] {
            let e = with(&format!("{RFC7591}{key} = \"http://as.bank.example/x\""))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`authorization_server.{key}`")), "{e}");
        }
    }

    #[test]
    fn each_rule_holds_both_ways_naming_its_key() {
        let refused = |section: &str, key: &str| {
            let e = with(section).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`authorization_server.{key}`")),
                "{key}: {e}"
            );
        };
        // rfc7591 needs the issuer.
        refused(
            &RFC7591.replace("issuer = \"https://as.bank.example\"\n", ""),
            "issuer",
        );
        // rfc7591 needs the introspection client.
        refused(
            &RFC7591
                .replace("client_id = \"dcr-server\"\n", "")
                .replace("client_secret_file = \"secrets/as-client-secret\"\n", ""),
            "client_id",
        );
        // The client's id and secret only together, in either mode.
        for mode in ["rfc7591", "embedded"] {
            let section = RFC7591.replace("\"rfc7591\"", &format!("\"{mode}\""));
            refused(
                &section.replace("client_id = \"dcr-server\"\n", ""),
                "client_id",
            );
            refused(
                &section.replace("client_secret_file = \"secrets/as-client-secret\"\n", ""),
                "client_secret_file",
            );
            assert!(with(&section).is_ok(), "{mode}");
        }
        refused(&RFC7591.replace("\"dcr-server\"", "\" \""), "client_id");
        refused(&format!("{RFC7591}timeout_ms = 0"), "timeout_ms");
        assert!(with(&format!("{RFC7591}timeout_ms = 1")).is_ok());
        // Embedded needs none of it.
        assert!(with("mode = \"embedded\"\ntimeout_ms = 100").is_ok());
    }
}
