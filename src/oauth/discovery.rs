//! `GET /.well-known/openid-configuration`, built once from the config.

use serde_json::{Value, json};

use crate::config::Config;
use crate::domain::{GrantType, ResponseType, Scope, SigningAlg};

/// The configured signing algorithms with PS256 first: OBIE mandates PS256, and clients that
/// take the first advertised value should pick it.
pub fn ordered_algs(config: &Config) -> Vec<SigningAlg> {
    let mut algs = config.open_banking.dcr.signing_algorithms.clone();
    algs.sort_by_key(|a| *a != SigningAlg::PS256);
    algs
}

/// The discovery document. One `registration_endpoint` (`oauth2_dcr_url`); the grant types
/// are those a served version registers.
pub fn document(config: &Config) -> Value {
    let algs = ordered_algs(config);
    let versions = &config.open_banking.dcr.versions;
    let grant_types: Vec<GrantType> = GrantType::ALL
        .iter()
        .copied()
        .filter(|g| versions.iter().any(|v| v.profile().grant_types.contains(g)))
        .collect();
    json!({
        "issuer": config.server.issuer,
        "registration_endpoint": config.registration_endpoint(),
        "token_endpoint": config.token_endpoint(),
        "token_endpoint_auth_methods_supported": config.open_banking.dcr.token_endpoint_auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "request_object_signing_alg_values_supported": algs,
        "id_token_signing_alg_values_supported": algs,
        "grant_types_supported": grant_types,
        "response_types_supported": ResponseType::ALL,
        "scopes_supported": Scope::ALL,
        "tls_client_certificate_bound_access_tokens": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": true,
    })
}
