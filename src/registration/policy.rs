//! The registration rules as configured, computed once at start-up.

use std::sync::Arc;

use crate::config::Config;
use crate::domain::{AuthMethod, SigningAlg};
use crate::jose::KeySet;

/// Where an SSA issuer's keys come from.
#[derive(Debug, Clone)]
pub enum IssuerKeys {
    /// Loaded from a file at start-up.
    Static(Arc<KeySet>),
    /// Fetched (and cached) from an https URL.
    Url(String),
}

#[derive(Debug, Clone)]
pub struct SsaIssuerPolicy {
    pub name: String,
    pub keys: IssuerKeys,
}

/// Everything the validation steps need from the config, in ready-to-use form.
#[derive(Debug, Clone)]
pub struct Policy {
    pub signing_algorithms: Vec<SigningAlg>,
    pub auth_methods: Vec<AuthMethod>,
    pub audience: Vec<String>,
    pub clock_skew: i64,
    pub ssa_max_age: i64,
    pub issuers: Vec<SsaIssuerPolicy>,
    pub request_jti: bool,
    pub ssa_jti: bool,
    pub jti_ttl: i64,
    pub one_client_per_software: bool,
    pub uri_validation: bool,
    pub hostname_validation: bool,
}

/// A JWKS file named by the config could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {path}: {message}")]
pub struct PolicyError {
    pub key: String,
    pub path: String,
    pub message: String,
}

impl Policy {
    pub fn from_config(config: &Config) -> Result<Self, PolicyError> {
        let dcr = &config.open_banking.dcr;
        let mut issuers = Vec::new();
        for (i, issuer) in dcr.ssa_issuer.iter().enumerate() {
            let keys = if issuer.jwks_is_url() {
                IssuerKeys::Url(issuer.jwks.clone())
            } else {
                let err = |message: String| PolicyError {
                    key: format!("open_banking.dcr.ssa_issuer[{i}].jwks"),
                    path: issuer.jwks.clone(),
                    message,
                };
                let bytes =
                    std::fs::read(&issuer.jwks).map_err(|e| err(format!("cannot read: {e}")))?;
                let set = KeySet::parse(&bytes).map_err(|e| err(format!("not a JWKS: {e}")))?;
                if set.keys.is_empty() {
                    return Err(err("holds no usable signature key".into()));
                }
                IssuerKeys::Static(Arc::new(set))
            };
            issuers.push(SsaIssuerPolicy {
                name: issuer.name.clone(),
                keys,
            });
        }
        Ok(Self {
            signing_algorithms: dcr.signing_algorithms.clone(),
            auth_methods: dcr.token_endpoint_auth_methods.clone(),
            audience: dcr.audience.clone(),
            clock_skew: dcr.clock_skew as i64,
            ssa_max_age: dcr.ssa_max_age as i64,
            issuers,
            request_jti: dcr.request_jti_validation.enable,
            ssa_jti: dcr.ssa_jti_validation.enable,
            jti_ttl: dcr.jti_cache_expiry_time as i64 * 60,
            one_client_per_software: dcr.software_id_as_application_name.enable,
            uri_validation: dcr.uri_validation.enable,
            hostname_validation: dcr.hostname_validation.enable,
        })
    }
}
