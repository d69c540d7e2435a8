//! The registration rules as configured, computed once at start-up.

use crate::config::Config;
use crate::domain::{AuthMethod, SigningAlg, SpecVersion};
pub use crate::material::IssuerKeys;

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
    /// The versions served (`open_banking.dcr.versions`).
    pub versions: Vec<SpecVersion>,
    /// The spec's 128-character DN limit on v3.2/v3.3.
    pub strict_subject_dn_length: bool,
    /// The transport certificate must be a `use: tls` key of the software JWKS.
    pub transport_cert_in_jwks: bool,
    /// An unreadable revoked-keys set refuses (`server.tls.ocsp.mode = "hard"`).
    pub revoked_keys_hard: bool,
}

impl Policy {
    /// The rules of `config`, with the issuers' keys as loaded (one per
    /// `[[open_banking.dcr.ssa_issuer]]`, in order).
    pub fn from_config(config: &Config, issuer_keys: &[IssuerKeys]) -> Self {
        let dcr = &config.open_banking.dcr;
        let issuers = dcr
            .ssa_issuer
            .iter()
            .zip(issuer_keys)
            .map(|(issuer, keys)| SsaIssuerPolicy {
                name: issuer.name.clone(),
                keys: keys.clone(),
            })
            .collect();
        Self {
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
            versions: dcr.versions.clone(),
            strict_subject_dn_length: dcr.strict_subject_dn_length.enable,
            transport_cert_in_jwks: dcr.transport_cert_in_jwks.enable,
            revoked_keys_hard: config.server.tls.ocsp.mode.is_hard(),
        }
    }
}
