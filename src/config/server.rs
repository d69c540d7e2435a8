//! `[server]`: the listener, TLS, limits and forwarded client certificates.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use super::error::{Checker, ConfigError};
use super::types::{CrlSource, HeaderName, HttpUrl, HttpsUrl};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerConfig {
    /// `address:port` to listen on.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Public base URL; discovery `issuer`, and `{issuer}/token` is the token endpoint.
    pub issuer: HttpsUrl,
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
    /// Per-certificate rate limits.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Requests in the registration or token pipeline at most (counted once their body is
    /// read); beyond, 503 at once.
    #[serde(default = "defaults::max_pending_requests")]
    pub max_pending_requests: usize,
    /// Of those, requests without a client certificate at most.
    #[serde(default = "defaults::max_pending_anonymous")]
    pub max_pending_anonymous: usize,
    /// A request body not complete this many milliseconds after its head gets 408 and the
    /// connection is closed.
    #[serde(default = "defaults::body_timeout_ms")]
    pub body_timeout_ms: u64,
}

/// `[server.rate_limit]`: per client certificate, on by default with limits a real TPP never
/// meets. Counted per replica.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RateLimitConfig {
    #[serde(default = "defaults::on")]
    pub enable: bool,
    /// POST and PUT register, per certificate.
    #[serde(default = "defaults::registrations_per_minute")]
    pub registrations_per_minute: u32,
    /// `/token`, per (certificate, claimed client_id).
    #[serde(default = "defaults::token_requests_per_second")]
    pub token_requests_per_second: u32,
    /// Any endpoint, per certificate.
    #[serde(default = "defaults::requests_per_second")]
    pub requests_per_second: u32,
    /// Bucket depth as a multiple of each rate (GCRA).
    #[serde(default = "defaults::burst")]
    pub burst: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enable: true,
            registrations_per_minute: defaults::registrations_per_minute(),
            token_requests_per_second: defaults::token_requests_per_second(),
            requests_per_second: defaults::requests_per_second(),
            burst: defaults::burst(),
        }
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{}` is not an address:port such as 127.0.0.1:8243",
            crate::text::printable(&text, 60)
        ))
    })
}

/// `[server.forwarded_certificate]`: off unless enabled, and then only for listed proxies.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ForwardedCertificateConfig {
    #[serde(default)]
    pub enable: bool,
    /// The header that carries the certificate.
    #[serde(default = "defaults::forwarded_header")]
    pub header: HeaderName,
    /// `pem`: a URL-encoded (or plain) PEM certificate, as WSO2's `x-wso2-mutual-auth-cert` and
    /// nginx's `$ssl_client_escaped_cert`; `xfcc`: Envoy's `x-forwarded-client-cert`.
    #[serde(default)]
    pub format: ForwardedFormat,
    /// IP addresses of the proxies whose header is believed. From any other peer the header is
    /// removed and ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
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
    /// CRL files, or `http(s)://` URLs fetched at start-up and refreshed in the background.
    #[serde(default)]
    pub crl: Vec<CrlSource>,
    /// PEM files of intermediate CAs (each chaining to a `client_ca` anchor) whose CRLs are
    /// trusted besides those of the anchors.
    #[serde(default)]
    pub crl_issuers: Vec<PathBuf>,
    /// OCSP checks of client certificates.
    #[serde(default)]
    pub ocsp: OcspConfig,
    /// A TLS handshake that has not finished after this many milliseconds is dropped.
    #[serde(default = "defaults::handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

/// `[server.tls.ocsp]`: OCSP (RFC 6960) for client certificates, checked per request from a
/// cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OcspConfig {
    #[serde(default)]
    pub mode: RevocationMode,
    /// A fetch (and a request waiting for it) gives up after this many milliseconds.
    #[serde(default = "defaults::ocsp_timeout_ms")]
    pub timeout_ms: u64,
    /// A good answer is cached until its `nextUpdate`, never longer than this.
    #[serde(default = "defaults::ocsp_max_cache_secs")]
    pub max_cache_secs: u64,
    /// The responder for certificates that name none (AIA); `""` in the file: none.
    #[serde(default, with = "super::types::empty_is_none")]
    pub responder_url: Option<HttpUrl>,
}

impl Default for OcspConfig {
    fn default() -> Self {
        Self {
            mode: RevocationMode::default(),
            timeout_ms: defaults::ocsp_timeout_ms(),
            max_cache_secs: defaults::ocsp_max_cache_secs(),
            responder_url: None,
        }
    }
}

/// `server.tls.ocsp.mode`: what an unanswered revocation question means. It also decides for
/// stale CRLs fetched by URL and unreadable revoked-key sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationMode {
    /// No OCSP; stale CRLs and unreadable revoked keys let requests through (counted).
    #[default]
    Off,
    /// OCSP is asked; no answer, a bad one or `unknown` lets the request through (counted).
    Soft,
    /// OCSP is asked; anything but `good` refuses, and so do stale CRLs and unreadable
    /// revoked keys.
    Hard,
}

impl RevocationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Soft => "soft",
            Self::Hard => "hard",
        }
    }

    /// Whether an unanswered question refuses.
    pub fn is_hard(self) -> bool {
        self == Self::Hard
    }
}

impl ServerConfig {
    /// The rules one field's type cannot hold.
    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        if self.tls.client_ca.is_empty() {
            return Err(c.bad(
                "server.tls.client_ca",
                "at least one trust anchor is needed for TPP transport certificates",
            ));
        }
        c.at_least("server.max_body_bytes", self.max_body_bytes, 1024)?;
        c.at_least("server.max_header_bytes", self.max_header_bytes, 8192)?;
        c.at_least("server.max_connections", self.max_connections, 1)?;
        c.at_least(
            "server.request_timeout_ms",
            self.request_timeout_ms as usize,
            100,
        )?;
        c.at_least("server.max_pending_requests", self.max_pending_requests, 1)?;
        c.at_least("server.body_timeout_ms", self.body_timeout_ms as usize, 100)?;
        let rl = &self.rate_limit;
        for (key, rate) in [
            (
                "server.rate_limit.registrations_per_minute",
                rl.registrations_per_minute,
            ),
            (
                "server.rate_limit.token_requests_per_second",
                rl.token_requests_per_second,
            ),
            (
                "server.rate_limit.requests_per_second",
                rl.requests_per_second,
            ),
        ] {
            c.at_least(key, rate as usize, 1)?;
        }
        if !(rl.burst.is_finite() && rl.burst >= 1.0 && rl.burst <= 1000.0) {
            return Err(c.bad(
                "server.rate_limit.burst",
                "must be a number from 1.0 to 1000.0 (the bucket depth as a multiple of the rate)",
            ));
        }
        let ocsp = &self.tls.ocsp;
        c.at_least("server.tls.ocsp.timeout_ms", ocsp.timeout_ms as usize, 10)?;
        c.at_least(
            "server.tls.ocsp.max_cache_secs",
            ocsp.max_cache_secs as usize,
            1,
        )?;
        let fwd = &self.forwarded_certificate;
        if fwd.enable && fwd.trusted_proxies.is_empty() {
            return Err(c.bad(
                "server.forwarded_certificate.trusted_proxies",
                "list the load balancers' addresses: the header is believed from them only",
            ));
        }
        Ok(())
    }
}

mod defaults {
    use super::HeaderName;

    pub fn forwarded_header() -> HeaderName {
        HeaderName(axum::http::HeaderName::from_static(
            "x-wso2-mutual-auth-cert",
        ))
    }
    pub fn shutdown_grace_secs() -> u64 {
        10
    }
    pub fn handshake_timeout_ms() -> u64 {
        10_000
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
    pub fn max_pending_requests() -> usize {
        1024
    }
    pub fn max_pending_anonymous() -> usize {
        64
    }
    pub fn body_timeout_ms() -> u64 {
        5_000
    }
    pub fn on() -> bool {
        true
    }
    pub fn registrations_per_minute() -> u32 {
        30
    }
    pub fn token_requests_per_second() -> u32 {
        20
    }
    pub fn requests_per_second() -> u32 {
        50
    }
    pub fn burst() -> f64 {
        2.0
    }
    pub fn ocsp_timeout_ms() -> u64 {
        2000
    }
    pub fn ocsp_max_cache_secs() -> u64 {
        3600
    }
}
