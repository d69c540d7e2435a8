//! `[events]` and `[[events.webhook]]`: provisioning events and the webhooks they are
//! delivered to.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};
use crate::domain::{EventType, serde_as_text};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct EventsConfig {
    /// Where events are delivered; none: events are kept (for the CLI and the admin API) and
    /// purged after `retention_secs`.
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
    /// A delivery is retried for this long after its event, then marked failed.
    #[serde(default = "defaults::max_age_secs")]
    pub max_age_secs: u64,
    /// Delivered events (and events without webhooks) are purged after this long.
    #[serde(default = "defaults::retention_secs")]
    pub retention_secs: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            webhook: Vec::new(),
            max_age_secs: defaults::max_age_secs(),
            retention_secs: defaults::retention_secs(),
        }
    }
}

/// The longest `events.webhook[].timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// One `[[events.webhook]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WebhookConfig {
    pub url: WebhookUrl,
    /// The Standard Webhooks secret, `whsec_<base64 key>`, in a file of its own.
    pub secret_file: PathBuf,
    /// Extra PEM trust anchors for this webhook's https (a bank's private CA).
    #[serde(default)]
    pub ca: Vec<PathBuf>,
    /// The event types it receives; empty: every type.
    #[serde(default)]
    pub types: Vec<EventType>,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
}

/// A webhook URL: `https://`, or `http://` to a loopback address only (a receiver on the same
/// host), with a host, no userinfo and no whitespace or control characters.
///
/// Userinfo (`user:pass@`) is refused: the URL is shown in the log, the database, `events
/// list`, the admin API and `check-config`, so a password in it would be everywhere. The
/// Standard Webhooks signature authenticates the sender instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for WebhookUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const MESSAGE: &str = "must be an https:// URL (or http:// to a loopback address)";
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(MESSAGE.into());
        }
        let url = url::Url::parse(s).map_err(|_| MESSAGE.to_string())?;
        if !url.username().is_empty() || url.password().is_some() {
            // The value is not echoed: it holds a credential.
            return Err(
                "must not carry a user name or password (`user:pass@`); the webhook-signature \
                 header authenticates this server to the receiver"
                    .into(),
            );
        }
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        match url.scheme() {
            "https" if url.host().is_some() => Ok(Self(url)),
            "http" if loopback => Ok(Self(url)),
            _ => Err(MESSAGE.into()),
        }
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

serde_as_text!(WebhookUrl);

impl EventsConfig {
    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        c.at_least("events.max_age_secs", self.max_age_secs as usize, 1)?;
        c.at_least("events.retention_secs", self.retention_secs as usize, 1)?;
        for (i, w) in self.webhook.iter().enumerate() {
            let key = format!("events.webhook[{i}].timeout_ms");
            c.at_least(&key, w.timeout_ms as usize, 100)?;
            // A delivery holds its lease for twice this (plus 5 s): a replica that dies
            // mid-delivery delays the event that long.
            if w.timeout_ms > MAX_TIMEOUT_MS {
                return Err(c.bad(&key, &format!("must be at most {MAX_TIMEOUT_MS}")));
            }
            // The URL is the key of a webhook's deliveries: one webhook per URL.
            if self.webhook[..i].iter().any(|o| o.url == w.url) {
                return Err(c.bad(
                    &format!("events.webhook[{i}].url"),
                    "the same URL is configured twice",
                ));
            }
        }
        Ok(())
    }
}

mod defaults {
    pub fn max_age_secs() -> u64 {
        86_400
    }
    pub fn retention_secs() -> u64 {
        604_800
    }
    pub fn timeout_ms() -> u64 {
        5000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_https_or_loopback_http() {
        for ok in [
            "https://gateway.internal/dcr-events",
            "http://127.0.0.1:9000/hook",
            "http://[::1]/hook",
            "http://localhost:8080/",
        ] {
            assert!(ok.parse::<WebhookUrl>().is_ok(), "{ok}");
        }
        for bad in [
            "http://gateway.internal/dcr-events",
            "http://10.0.0.1/hook",
            "ftp://127.0.0.1/",
            "https://",
            "https://a b/",
            "not a url",
        ] {
            assert!(bad.parse::<WebhookUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn webhook_timeouts_are_bounded_naming_the_key() {
        let with = |ms: u64| {
            let text = format!(
                "{}\n[[events.webhook]]\nurl = \"https://h.example/\"\nsecret_file = \"k\"\ntimeout_ms = {ms}\n",
                crate::config::tests::MINIMAL
            );
            crate::config::Config::parse(&text, std::path::Path::new("t.toml"))
                .and_then(|c| c.check(std::path::Path::new("t.toml")).map(|()| c))
        };
        assert!(with(MAX_TIMEOUT_MS).is_ok());
        let e = with(MAX_TIMEOUT_MS + 1).unwrap_err().to_string();
        assert!(
            e.contains("`events.webhook[0].timeout_ms`: must be at most 60000"),
            "{e}"
        );
        assert!(with(99).is_err());
    }

    /// A credential in a webhook URL is refused, naming the key and never echoing it.
    #[test]
    fn webhook_urls_with_userinfo_are_refused_naming_the_key() {
        for (url, secret) in [
            ("https://user:s3cret-pw@gateway.internal/hook", "s3cret-pw"),
            ("https://only-user@gateway.internal/hook", "only-user"),
            ("https://:s3cret-pw@gateway.internal/hook", "s3cret-pw"),
            ("http://user:s3cret-pw@127.0.0.1:9000/hook", "s3cret-pw"),
        ] {
            let text = format!(
                "{}\n[[events.webhook]]\nurl = \"{url}\"\nsecret_file = \"k\"\n",
                crate::config::tests::MINIMAL
            );
            let e = crate::config::Config::parse(&text, std::path::Path::new("t.toml"))
                .expect_err(url)
                .to_string();
            assert!(e.contains("`events.webhook[0].url`"), "{e}");
            assert!(e.contains("user name or password"), "{e}");
            assert!(!e.contains(secret), "the credential is echoed: {e}");
        }
        // An `@` in the path or query is not userinfo.
        assert!(
            "https://gateway.internal/hook?by=ops@bank.example"
                .parse::<WebhookUrl>()
                .is_ok()
        );
    }
}
