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

/// `rfc7591` mode's discovery: the AS's own document, so that a TPP
/// (or the conformance tool) pointed here sees the AS's endpoints, with this server as its
/// registration endpoint, also among the mTLS aliases when the AS has them.
pub fn behind(as_document: &serde_json::Map<String, Value>, registration_endpoint: &str) -> Value {
    let mut doc = as_document.clone();
    doc.insert("registration_endpoint".into(), json!(registration_endpoint));
    if let Some(Value::Object(aliases)) = doc.get_mut("mtls_endpoint_aliases") {
        aliases.insert("registration_endpoint".into(), json!(registration_endpoint));
    }
    Value::Object(doc)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_an_as_its_document_names_us_for_registration() {
        let as_doc = json!({
            "issuer": "https://as.bank.example",
            "registration_endpoint": "https://as.bank.example/reg",
            "token_endpoint": "https://as.bank.example/token",
            "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.as.bank.example/token",
                                      "registration_endpoint": "https://mtls.as.bank.example/reg"},
        });
        let ours = "https://dcr.bank.example/open-banking/v3.2/register";
        let doc = behind(as_doc.as_object().unwrap(), ours);
        assert_eq!(doc["registration_endpoint"], ours);
        assert_eq!(doc["mtls_endpoint_aliases"]["registration_endpoint"], ours);
        assert_eq!(doc["token_endpoint"], "https://as.bank.example/token");
        assert_eq!(
            doc["mtls_endpoint_aliases"]["token_endpoint"],
            "https://mtls.as.bank.example/token"
        );
        // Without aliases, none are made up.
        let plain = behind(json!({"issuer": "x"}).as_object().unwrap(), ours);
        assert!(plain.get("mtls_endpoint_aliases").is_none());
    }
}
