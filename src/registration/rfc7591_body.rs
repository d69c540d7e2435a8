//! `rfc7591` mode (issue 27): the client metadata sent to the bank's authorization server, in
//! RFC 7591, RFC 8705 and OpenID Connect Registration names, built from what this server
//! checked (never from the request as sent). The mapping is [`MAPPING`], one row per name;
//! the README's "Behind your authorization server" has the same table.

use serde_json::{Map, Value, json};

use super::validated::Validated;
use crate::domain::{ApplicationType, ResponseType};

/// One row: the name at the AS, and its value from a checked registration (`None`: not sent).
type Row = (&'static str, fn(&Validated) -> Option<Value>);

/// Name at the AS ← its value here, in the order of the README's table.
pub const MAPPING: &[Row] = &[
    ("client_name", |v| {
        v.ssa.str_claim("software_client_name").map(|n| json!(n))
    }),
    ("redirect_uris", |v| Some(json!(v.metadata.redirect_uris))),
    ("grant_types", |v| Some(json!(grant_types(v)))),
    ("response_types", |v| Some(json!(v.metadata.response_types))),
    ("application_type", |v| {
        // RFC 7591 and OIDC know `web` and `native`; OB v3.2/v3.3's `mobile` is `native`.
        Some(json!(match v.metadata.application_type {
            ApplicationType::Web => "web",
            ApplicationType::Mobile | ApplicationType::Native => "native",
        }))
    }),
    ("scope", |v| Some(json!(v.scopes.as_str()))),
    ("token_endpoint_auth_method", |v| {
        Some(json!(v.metadata.token_endpoint_auth_method))
    }),
    ("token_endpoint_auth_signing_alg", |v| {
        v.metadata.token_endpoint_auth_signing_alg.map(|a| json!(a))
    }),
    ("tls_client_auth_subject_dn", |v| {
        v.metadata
            .tls_client_auth_subject_dn
            .as_ref()
            .map(|d| json!(d))
    }),
    ("jwks_uri", |v| Some(json!(v.ssa.software_jwks_endpoint))),
    ("id_token_signed_response_alg", |v| {
        Some(json!(v.metadata.id_token_signed_response_alg))
    }),
    ("request_object_signing_alg", |v| {
        Some(json!(v.metadata.request_object_signing_alg))
    }),
    // RFC 8705 §3.4: the AS binds the client's tokens to its certificate, as this server does.
    ("tls_client_certificate_bound_access_tokens", |_| {
        Some(json!(true))
    }),
    ("software_id", |v| Some(json!(v.ssa.software_id))),
    ("backchannel_token_delivery_mode", |v| {
        v.metadata
            .backchannel
            .as_ref()
            .map(|b| json!(b.backchannel_token_delivery_mode))
    }),
    ("backchannel_client_notification_endpoint", |v| {
        v.metadata
            .backchannel
            .as_ref()
            .and_then(|b| b.backchannel_client_notification_endpoint.as_ref())
            .map(|e| json!(e))
    }),
    ("backchannel_authentication_request_signing_alg", |v| {
        v.metadata
            .backchannel
            .as_ref()
            .map(|b| json!(b.backchannel_authentication_request_signing_alg))
    }),
    ("backchannel_user_code_parameter", |v| {
        v.metadata
            .backchannel
            .as_ref()
            .map(|b| json!(b.backchannel_user_code_parameter_supported))
    }),
];

/// The registered grant types, plus `implicit` when a response type returns an ID token from
/// the authorization endpoint (RFC 7591 §2.1 pairs `code id_token` with `implicit`).
fn grant_types(v: &Validated) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = v.metadata.grant_types.iter().map(|g| g.as_str()).collect();
    if v.metadata
        .response_types
        .contains(&ResponseType::CodeIdToken)
        && !names.contains(&"implicit")
    {
        names.push("implicit");
    }
    names
}

/// The RFC 7591 request body for `v`.
pub fn body(v: &Validated) -> Map<String, Value> {
    MAPPING
        .iter()
        .filter_map(|(name, value)| value(v).map(|value| (name.to_string(), value)))
        .collect()
}

/// Whether the AS's `client_id` may be ours too: 1 to 36 characters of RFC 3986's unreserved
/// set (the length of this server's own UUIDs, and what its columns, paths and logs expect).
pub fn acceptable_client_id(id: &str) -> bool {
    (1..=36).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's "What is sent to your AS" table is [`MAPPING`]: the same names, in order.
    #[test]
    fn the_readme_table_is_the_mapping() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### What is sent to your AS")
            .nth(1)
            .and_then(|s| s.split("\n### ").next())
            .expect("the README has the section");
        let names: Vec<&str> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        let mapped: Vec<&str> = MAPPING.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, mapped);
    }

    #[test]
    fn as_client_ids_are_short_and_unreserved() {
        for ok in ["a", "0b7c-11.x_~", "0192f0c2-7b0e-7c4e-9d8a-2a2b9b8f9e10"] {
            assert!(acceptable_client_id(ok), "{ok}");
        }
        let long = "x".repeat(37);
        for bad in ["", long.as_str(), "a b", "a/b", "é", "a\0", "a%20"] {
            assert!(!acceptable_client_id(bad), "{bad:?}");
        }
    }

    fn validated(metadata: serde_json::Value) -> Validated {
        let ssa = super::super::ssa::Ssa {
            raw: "eyJ.x.y".into(),
            claims: json!({"software_client_name": "Pay Co"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            iss: "OpenBanking Ltd".into(),
            software_id: "sw1".into(),
            org_id: "org1".into(),
            software_jwks_endpoint: "https://keys.example.com/sw1.jwks".into(),
            software_jwks_revoked_endpoint: None,
            software_redirect_uris: vec![],
            software_roles: vec!["AISP".into()],
            iat: None,
            jti: None,
            competent_authority: None,
        };
        let metadata: super::super::metadata::ClientMetadata =
            serde_json::from_value(metadata).expect("metadata");
        Validated {
            client_id_claim: None,
            ssa,
            request: super::super::request_claims::RequestClaims {
                jti: "j".into(),
                exp: 0,
            },
            scopes: metadata.scope.parse().expect("scopes"),
            metadata,
            cert_thumbprint: "t".into(),
            version: crate::domain::SpecVersion::V3_3,
        }
    }

    #[test]
    fn a_ciba_registration_in_rfc_7591_names() {
        let v = validated(json!({
            "redirect_uris": ["https://tpp.example.com/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "PS256",
            "grant_types": ["authorization_code", "urn:openid:params:grant-type:ciba"],
            "response_types": ["code id_token"],
            "scope": "openid accounts",
            "software_id": "sw1",
            "software_statement": "eyJ.x.y",
            "application_type": "mobile",
            "id_token_signed_response_alg": "PS256",
            "request_object_signing_alg": "PS256",
            "backchannel_token_delivery_mode": "ping",
            "backchannel_client_notification_endpoint": "https://tpp.example.com/ciba",
            "backchannel_authentication_request_signing_alg": "PS256",
            "backchannel_user_code_parameter_supported": false,
        }));
        assert_eq!(
            Value::Object(body(&v)),
            json!({
                "client_name": "Pay Co",
                "redirect_uris": ["https://tpp.example.com/cb"],
                "grant_types": ["authorization_code", "urn:openid:params:grant-type:ciba", "implicit"],
                "response_types": ["code id_token"],
                "application_type": "native",
                "scope": "openid accounts",
                "token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_signing_alg": "PS256",
                "jwks_uri": "https://keys.example.com/sw1.jwks",
                "id_token_signed_response_alg": "PS256",
                "request_object_signing_alg": "PS256",
                "tls_client_certificate_bound_access_tokens": true,
                "software_id": "sw1",
                "backchannel_token_delivery_mode": "ping",
                "backchannel_client_notification_endpoint": "https://tpp.example.com/ciba",
                "backchannel_authentication_request_signing_alg": "PS256",
                "backchannel_user_code_parameter": false,
            })
        );
    }

    #[test]
    fn the_mapping_names_each_field_once() {
        let mut names: Vec<&str> = MAPPING.iter().map(|(n, _)| *n).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
    }
}
