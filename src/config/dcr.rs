//! `[open_banking.dcr]`: the registration rules, the SSA issuers and outbound JWKS fetches.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};
use super::types::JwksSource;
use crate::domain::{AuthMethod, SigningAlg, SpecVersion};

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
    /// The DCR versions served, each at `/open-banking/v<N>/register`.
    #[serde(default = "defaults::versions")]
    pub versions: Vec<SpecVersion>,
    /// The spec's 128-character `tls_client_auth_subject_dn` limit on v3.2 and v3.3.
    #[serde(default = "defaults::off")]
    pub strict_subject_dn_length: Switch,
    /// The transport certificate must be a `use: tls` key of the SSA's software JWKS.
    #[serde(default = "defaults::off")]
    pub transport_cert_in_jwks: Switch,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SsaIssuer {
    /// The SSA `iss` value.
    pub name: String,
    /// A file path, or an https URL, of the issuer's JWKS.
    pub jwks: JwksSource,
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

impl DcrConfig {
    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        if self.signing_algorithms.is_empty() {
            return Err(c.bad(
                "open_banking.dcr.signing_algorithms",
                "must list at least one algorithm",
            ));
        }
        if self.token_endpoint_auth_methods.is_empty() {
            return Err(c.bad(
                "open_banking.dcr.token_endpoint_auth_methods",
                "must list at least one method",
            ));
        }
        if self.versions.is_empty() {
            return Err(c.bad(
                "open_banking.dcr.versions",
                &format!(
                    "must list at least one version of {}",
                    SpecVersion::choices()
                ),
            ));
        }
        if self.ssa_issuer.is_empty() {
            return Err(c.bad(
                "open_banking.dcr.ssa_issuer",
                "at least one [[open_banking.dcr.ssa_issuer]] is needed",
            ));
        }
        for (i, issuer) in self.ssa_issuer.iter().enumerate() {
            if issuer.name.trim().is_empty() {
                return Err(c.bad(
                    &format!("open_banking.dcr.ssa_issuer[{i}].name"),
                    "must not be empty",
                ));
            }
        }
        c.at_least("open_banking.dcr.jwks.max_bytes", self.jwks.max_bytes, 1024)?;
        c.at_least(
            "open_banking.dcr.jwks.timeout_ms",
            self.jwks.timeout_ms as usize,
            1,
        )
    }
}

mod defaults {
    use super::Switch;
    use crate::domain::{AuthMethod, SigningAlg, SpecVersion};

    pub fn versions() -> Vec<SpecVersion> {
        SpecVersion::ALL.to_vec()
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
    pub fn jwks_max_bytes() -> usize {
        256 * 1024
    }
}
