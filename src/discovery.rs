//! `GET /.well-known/openid-configuration`, built once from the config.

use serde_json::{Value, json};

use crate::config::Config;

/// Grant types a client may register (v3.2 enum). `/token` itself issues client_credentials;
/// the others are for the bank's authorisation server that shares this registry.
pub const GRANT_TYPES: &[&str] = &["authorization_code", "client_credentials", "refresh_token"];
/// Response types a client may register (v3.2).
pub const RESPONSE_TYPES: &[&str] = &["code", "code id_token"];
/// Scopes this server knows; `openid` is always allowed, the others follow SSA roles.
pub const SCOPES: &[&str] = &["openid", "accounts", "payments", "fundsconfirmations"];

/// The configured signing algorithms with PS256 first, as the contract asks.
pub fn ordered_algs(config: &Config) -> Vec<String> {
    let mut algs = config.open_banking.dcr.signing_algorithms.clone();
    algs.sort_by_key(|a| a != "PS256");
    algs
}

/// The discovery document.
pub fn document(config: &Config) -> Value {
    let algs = ordered_algs(config);
    json!({
        "issuer": config.server.issuer,
        "registration_endpoint": config.registration_endpoint(),
        "token_endpoint": config.token_endpoint(),
        "token_endpoint_auth_methods_supported": config.open_banking.dcr.token_endpoint_auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "request_object_signing_alg_values_supported": algs,
        "id_token_signing_alg_values_supported": algs,
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": RESPONSE_TYPES,
        "scopes_supported": SCOPES,
        "tls_client_certificate_bound_access_tokens": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": true,
    })
}
