//! Value types for config fields: each is checked when the file is parsed, so that the rest
//! of the server takes a checked value and never parses it again.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::domain::{deserialize_from_str, serde_as_text};

/// An absolute `https://` URL with a host and no whitespace or control characters, kept as
/// written (a trailing slash stays, so that the issuer compares as configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl(String);

impl HttpsUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HttpsUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = s.starts_with("https://")
            && !s.chars().any(|c| c.is_control() || c.is_whitespace())
            && url::Url::parse(s).is_ok_and(|p| p.host_str().is_some());
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err("must be an https:// URL".into())
        }
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serde_as_text!(HttpsUrl);

/// An absolute `http://` or `https://` URL with a host: a responder an operator names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.chars().any(|c| c.is_control() || c.is_whitespace())
            && url::Url::parse(s)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err("must be an http(s) URL, or \"\" for none".into())
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serde_as_text!(HttpUrl);

/// serde for an optional value written `""` when absent (a key WSO2's files always carry).
pub mod empty_is_none {
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr<Err = String>,
    {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer, T: std::fmt::Display>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }
}

/// `database.url`: SQLite (`sqlite:`) or PostgreSQL (`postgres://`, `postgresql://`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as written, password included: for connecting only, never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    /// The URL with any password replaced by `***`, for messages and `config show`.
    pub fn masked(&self) -> String {
        mask_password(&self.0)
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("sqlite:")
            || s.starts_with("postgres://")
            || s.starts_with("postgresql://")
        {
            Ok(Self(s.to_string()))
        } else {
            Err("must start with sqlite:, postgres:// or postgresql://".into())
        }
    }
}

/// Shown masked: a `Debug` of the config never prints a password.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.masked())
    }
}

deserialize_from_str!(DatabaseUrl);

/// Serialised as written: `config show` masks it itself.
impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn mask_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            if parsed.set_password(Some("***")).is_ok() {
                parsed.to_string()
            } else {
                url.to_string()
            }
        }
        _ => url.to_string(),
    }
}

/// Where an SSA issuer's JWKS comes from: a file, or an https URL (never plain http).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(HttpsUrl),
}

impl FromStr for JwksSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("http://") {
            Err("a JWKS URL must use https".into())
        } else if s.starts_with("https://") {
            s.parse().map(Self::Url)
        } else if s.trim().is_empty() {
            Err("must name a file or an https URL".into())
        } else {
            Ok(Self::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Url(u) => f.write_str(u.as_str()),
        }
    }
}

serde_as_text!(JwksSource);

/// A `server.tls.crl` entry: a file (PEM or DER), or an `http(s)://` URL the server fetches
/// and refreshes (CRLs are signed, so plain http is as good as the CAs publish them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlSource {
    File(PathBuf),
    Url(url::Url),
}

impl FromStr for CrlSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("http://") || s.starts_with("https://") {
            let url = url::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err("a CRL URL needs a host".into());
            }
            Ok(Self::Url(url))
        } else if s.contains("://") {
            Err("a CRL URL must use http or https".into())
        } else if s.trim().is_empty() {
            Err("must name a file or an http(s) URL".into())
        } else {
            Ok(Self::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for CrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Url(u) => f.write_str(u.as_str()),
        }
    }
}

serde_as_text!(CrlSource);

/// An HTTP header name, lower-cased as HTTP/2 sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderName(pub axum::http::HeaderName);

impl FromStr for HeaderName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        axum::http::HeaderName::from_bytes(s.as_bytes())
            .map(Self)
            .map_err(|_| format!("`{}` is not a header name", crate::text::printable(s, 60)))
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

serde_as_text!(HeaderName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls() {
        assert!("https://bank.example.com".parse::<HttpsUrl>().is_ok());
        assert_eq!(
            "https://bank.example.com/"
                .parse::<HttpsUrl>()
                .unwrap()
                .as_str(),
            "https://bank.example.com/"
        );
        for bad in [
            "http://x",
            "https://",
            "https://a b",
            "https://x/\n",
            "ftp://x",
        ] {
            assert!(bad.parse::<HttpsUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn crl_sources() {
        assert_eq!(
            "certs/ca.crl".parse::<CrlSource>(),
            Ok(CrlSource::File("certs/ca.crl".into()))
        );
        assert!(matches!(
            "http://crl.example.com/ca.crl".parse::<CrlSource>(),
            Ok(CrlSource::Url(_))
        ));
        assert!(matches!(
            "https://crl.example.com/ca.crl".parse::<CrlSource>(),
            Ok(CrlSource::Url(_))
        ));
        for bad in ["", "ftp://x/ca.crl", "http://", "https:// x"] {
            assert!(bad.parse::<CrlSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn jwks_sources() {
        assert_eq!(
            "certs/d.jwks".parse::<JwksSource>(),
            Ok(JwksSource::File("certs/d.jwks".into()))
        );
        assert!(matches!(
            "https://keys.example.com/jwks".parse::<JwksSource>(),
            Ok(JwksSource::Url(_))
        ));
        assert!(
            "http://keys.example.com/jwks"
                .parse::<JwksSource>()
                .is_err()
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
        let url: DatabaseUrl = "postgres://u:pw@h/db".parse().unwrap();
        assert!(!format!("{url:?}").contains("pw"));
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
    }
}
