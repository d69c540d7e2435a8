//! Step 5, client metadata: every claim of DCR §2, its type and the values the request's
//! version allows (its [`Profile`]), and the cross-field rules. The CIBA claims are in
//! `super::backchannel`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::allowed::{NotAllowed, one_of};
use super::backchannel::{self, Backchannel, BackchannelError};
use super::error_code::ErrorCode;
use super::policy::Policy;
use super::ssa::Ssa;
use crate::domain::version::matches_cn_first_pattern;
use crate::domain::{
    ApplicationType, AuthMethod, GrantType, Profile, ProtocolValue, ResponseType, SigningAlg,
    SpecVersion,
};
use crate::jose::claims::{self as access, ClaimError};

/// Longest `scope` (v3.2: Max256Text).
pub const MAX_SCOPE_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    #[error("{0}")]
    Claim(ClaimError),
    /// A value outside the allowed set.
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// `software_id` differs from the SSA's.
    #[error("`software_id` must equal the software statement's software_id")]
    SoftwareIdMismatch,
    /// A claim that must only be present with another value.
    #[error("`{0}` is only allowed with token_endpoint_auth_method {1}")]
    OnlyWith(&'static str, String),
    /// A claim that is required because of another.
    #[error("`{0}` is required when token_endpoint_auth_method is {1}")]
    RequiredWith(&'static str, AuthMethod),
    /// A value of another DCR version than the one of the path.
    #[error(
        "`{claim}` value `{value}` is not part of DCR v{version} (supported: {allowed}); register it at {paths}"
    )]
    OtherVersion {
        claim: &'static str,
        value: String,
        version: SpecVersion,
        allowed: String,
        paths: String,
    },
    /// v3.4's `tls_client_auth_subject_dn` pattern.
    #[error(
        "`tls_client_auth_subject_dn` must start with CN= and go on with attribute=value pairs, without escaped commas (DCR v{0})"
    )]
    DnPattern(SpecVersion),
    /// The CIBA claims.
    #[error(transparent)]
    Backchannel(#[from] BackchannelError),
}

impl MetadataError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidClientMetadata
    }
}

/// The registered metadata, as stored and as returned (the response adds `client_id` etc.).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    pub grant_types: Vec<GrantType>,
    pub response_types: Vec<ResponseType>,
    pub scope: String,
    pub software_id: String,
    pub software_statement: String,
    pub application_type: ApplicationType,
    pub id_token_signed_response_alg: SigningAlg,
    pub request_object_signing_alg: SigningAlg,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_endpoint_auth_signing_alg: Option<SigningAlg>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tls_client_auth_subject_dn: Option<String>,
    /// The CIBA claims (v3.3 and later, with the CIBA grant type).
    #[serde(flatten, skip_serializing_if = "Option::is_none", default)]
    pub backchannel: Option<Backchannel>,
}

/// `value` if the request's version allows it (`allowed` of its profile). A value that another
/// served version allows is refused with the paths to register it at.
fn in_version<T: ProtocolValue>(
    claim: &'static str,
    value: &str,
    profile: &'static Profile,
    policy: &Policy,
    allowed: fn(&'static Profile) -> &'static [T],
) -> Result<T, MetadataError> {
    let NotAllowed {
        value,
        allowed: here,
        ..
    } = match one_of(claim, value, allowed(profile)) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let paths: Vec<&str> = policy
        .versions
        .iter()
        .map(|v| v.profile())
        .filter(|p| allowed(p).iter().any(|a| a.name() == value))
        .map(|p| p.register_path)
        .collect();
    if paths.is_empty() {
        return Err(NotAllowed {
            claim,
            value,
            allowed: here,
        }
        .into());
    }
    Err(MetadataError::OtherVersion {
        claim,
        value,
        version: profile.version,
        allowed: here,
        paths: paths.join(" or "),
    })
}

/// Builds the metadata to register from the request claims, by the rules of `profile`.
pub fn parse(
    claims: &Map<String, Value>,
    ssa: &Ssa,
    policy: &Policy,
    profile: &'static Profile,
) -> Result<ClientMetadata, MetadataError> {
    let claim = MetadataError::Claim;
    let redirect_uris = access::req_str_array(claims, "redirect_uris")
        .map_err(claim)?
        .into_iter()
        .map(str::to_string)
        .collect();

    let method = access::req_str(claims, "token_endpoint_auth_method").map_err(claim)?;
    let method = one_of("token_endpoint_auth_method", method, &policy.auth_methods)?;

    let mut grant_types = Vec::new();
    for g in access::req_str_array(claims, "grant_types").map_err(claim)? {
        let g = in_version("grant_types", g, profile, policy, |p| p.grant_types)?;
        if !grant_types.contains(&g) {
            grant_types.push(g);
        }
    }

    let response_types = match access::opt_str_array(claims, "response_types").map_err(claim)? {
        // v3.2: absent means `code id_token`.
        None => vec![ResponseType::CodeIdToken],
        Some(v) if v.is_empty() => return Err(claim(ClaimError::Empty("response_types".into()))),
        Some(v) => {
            let mut out = Vec::new();
            for r in v {
                let r = one_of("response_types", r, ResponseType::ALL)?;
                if !out.contains(&r) {
                    out.push(r);
                }
            }
            out
        }
    };

    if let Some(software_id) = access::opt_str(claims, "software_id").map_err(claim)?
        && software_id != ssa.software_id
    {
        return Err(MetadataError::SoftwareIdMismatch);
    }

    let scope = access::req_str_max(claims, "scope", MAX_SCOPE_LEN).map_err(claim)?;
    // Normalise whitespace; the scope-vs-roles step checks each token.
    let scope = scope.split_whitespace().collect::<Vec<_>>().join(" ");

    let application_type = access::req_str(claims, "application_type").map_err(claim)?;
    let application_type: ApplicationType =
        in_version("application_type", application_type, profile, policy, |p| {
            p.application_types
        })?;
    let algs = &policy.signing_algorithms;
    let id_token_alg = access::req_str(claims, "id_token_signed_response_alg").map_err(claim)?;
    let id_token_alg = one_of("id_token_signed_response_alg", id_token_alg, algs)?;
    let request_alg = access::req_str(claims, "request_object_signing_alg").map_err(claim)?;
    let request_alg = one_of("request_object_signing_alg", request_alg, algs)?;

    let signing_alg = access::opt_str(claims, "token_endpoint_auth_signing_alg").map_err(claim)?;
    let token_endpoint_auth_signing_alg = match (method.signs_jwt(), signing_alg) {
        (true, Some(alg)) => Some(one_of("token_endpoint_auth_signing_alg", alg, algs)?),
        (true, None) => {
            return Err(MetadataError::RequiredWith(
                "token_endpoint_auth_signing_alg",
                method,
            ));
        }
        (false, Some(_)) => {
            let jwt_methods: Vec<&str> = AuthMethod::ALL
                .iter()
                .filter(|m| m.signs_jwt())
                .map(|m| m.as_str())
                .collect();
            return Err(MetadataError::OnlyWith(
                "token_endpoint_auth_signing_alg",
                jwt_methods.join(" or "),
            ));
        }
        (false, None) => None,
    };

    let dn = access::opt_str(claims, "tls_client_auth_subject_dn").map_err(claim)?;
    let dn_rule = profile.subject_dn;
    let max_dn_len = dn_rule.max_len(policy.strict_subject_dn_length);
    let tls_client_auth_subject_dn = match (method == AuthMethod::TlsClientAuth, dn) {
        (true, Some(dn)) if dn.trim().is_empty() => {
            return Err(claim(ClaimError::Empty(
                "tls_client_auth_subject_dn".into(),
            )));
        }
        (true, Some(dn)) if dn.chars().count() > max_dn_len => {
            return Err(claim(ClaimError::TooLong {
                claim: "tls_client_auth_subject_dn".into(),
                max: max_dn_len,
            }));
        }
        (true, Some(dn)) if dn_rule.cn_first_pattern && !matches_cn_first_pattern(dn) => {
            return Err(MetadataError::DnPattern(profile.version));
        }
        (true, Some(dn)) => Some(dn.to_string()),
        (true, None) => {
            return Err(MetadataError::RequiredWith(
                "tls_client_auth_subject_dn",
                method,
            ));
        }
        (false, Some(_)) => {
            return Err(MetadataError::OnlyWith(
                "tls_client_auth_subject_dn",
                AuthMethod::TlsClientAuth.as_str().into(),
            ));
        }
        (false, None) => None,
    };

    let backchannel = backchannel::parse(claims, &grant_types, profile, policy)?;

    Ok(ClientMetadata {
        redirect_uris,
        token_endpoint_auth_method: method,
        grant_types,
        response_types,
        scope,
        software_id: ssa.software_id.clone(),
        software_statement: ssa.raw.clone(),
        application_type,
        id_token_signed_response_alg: id_token_alg,
        request_object_signing_alg: request_alg,
        token_endpoint_auth_signing_alg,
        tls_client_auth_subject_dn,
        backchannel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::ssa::tests::{minimal_ssa, patched, test_policy};
    use serde_json::json;

    fn ssa() -> Ssa {
        minimal_ssa("SSA")
    }

    fn request(patch: Value) -> Map<String, Value> {
        patched(
            json!({
                "redirect_uris": ["https://tpp.example.com/cb"],
                "token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_signing_alg": "PS256",
                "grant_types": ["client_credentials", "authorization_code"],
                "scope": "openid  accounts",
                "software_statement": "SSA",
                "application_type": "web",
                "id_token_signed_response_alg": "PS256",
                "request_object_signing_alg": "PS256",
            }),
            patch,
        )
    }

    fn run(patch: Value) -> Result<ClientMetadata, MetadataError> {
        run_on(SpecVersion::V3_2, patch)
    }

    fn run_on(version: SpecVersion, patch: Value) -> Result<ClientMetadata, MetadataError> {
        parse(&request(patch), &ssa(), &test_policy(), version.profile())
    }

    #[test]
    fn defaults_and_normalisation() {
        let m = run(json!({})).unwrap();
        assert_eq!(m.response_types, [ResponseType::CodeIdToken]);
        assert_eq!(m.scope, "openid accounts");
        assert_eq!(m.software_id, "abcDEF123");
        assert_eq!(m.software_statement, "SSA");
    }

    #[test]
    fn required_claims() {
        for k in [
            "redirect_uris",
            "token_endpoint_auth_method",
            "grant_types",
            "scope",
            "application_type",
            "id_token_signed_response_alg",
            "request_object_signing_alg",
        ] {
            assert!(
                matches!(run(json!({k: null})), Err(MetadataError::Claim(_))),
                "{k}"
            );
        }
        assert!(matches!(
            run(json!({"redirect_uris": []})),
            Err(MetadataError::Claim(_))
        ));
        assert!(matches!(
            run(json!({"grant_types": []})),
            Err(MetadataError::Claim(_))
        ));
    }

    #[test]
    fn allowed_values() {
        for patch in [
            json!({"response_types": ["id_token", "token"]}),
            json!({"grant_types": ["password"]}),
            json!({"application_type": "desktop"}),
            json!({"id_token_signed_response_alg": "RS256"}),
            json!({"request_object_signing_alg": "none"}),
            json!({"token_endpoint_auth_signing_alg": "HS256"}),
            json!({"token_endpoint_auth_method": "client_secret_basic"}),
        ] {
            assert!(
                matches!(run(patch.clone()), Err(MetadataError::NotAllowed(_))),
                "{patch}"
            );
        }
        assert!(matches!(
            run(json!({"scope": "a".repeat(257)})),
            Err(MetadataError::Claim(_))
        ));
    }

    #[test]
    fn wrong_types() {
        for patch in [
            json!({"redirect_uris": "https://tpp.example.com/cb"}),
            json!({"grant_types": [1]}),
            json!({"scope": ["openid"]}),
            json!({"application_type": 1}),
            json!({"software_id": 5}),
        ] {
            assert!(
                matches!(run(patch.clone()), Err(MetadataError::Claim(_))),
                "{patch}"
            );
        }
    }

    #[test]
    fn cross_field_rules() {
        assert!(matches!(
            run(json!({"token_endpoint_auth_signing_alg": null})),
            Err(MetadataError::RequiredWith(..))
        ));
        let tls = json!({"token_endpoint_auth_method": "tls_client_auth", "token_endpoint_auth_signing_alg": null});
        assert!(matches!(
            run(tls.clone()),
            Err(MetadataError::RequiredWith(..))
        ));
        let mut with_dn = tls.clone();
        with_dn["tls_client_auth_subject_dn"] = json!("CN=x");
        let m = run(with_dn).unwrap();
        assert_eq!(m.tls_client_auth_subject_dn.as_deref(), Some("CN=x"));
        assert_eq!(m.token_endpoint_auth_signing_alg, None);
        assert!(matches!(
            run(json!({"tls_client_auth_subject_dn": "CN=x"})),
            Err(MetadataError::OnlyWith(..))
        ));
        assert_eq!(
            run(json!({"software_id": "other"})).unwrap_err(),
            MetadataError::SoftwareIdMismatch
        );
    }

    /// Each version's values, and a value of another version naming where it belongs.
    #[test]
    fn values_by_version() {
        use SpecVersion::{V3_2, V3_3, V3_4};
        let ok = |v, patch: Value| {
            run_on(v, patch.clone())
                .map(|_| ())
                .map_err(|e| format!("{patch}: {e}"))
        };
        for v in [V3_2, V3_3] {
            ok(v, json!({"application_type": "mobile"})).unwrap();
            let e = run_on(v, json!({"application_type": "native"})).unwrap_err();
            assert!(matches!(e, MetadataError::OtherVersion { .. }), "{e}");
            assert!(e.to_string().contains("/open-banking/v3.4/register"), "{e}");
        }
        ok(V3_4, json!({"application_type": "native"})).unwrap();
        let e = run_on(V3_4, json!({"application_type": "mobile"})).unwrap_err();
        assert!(
            e.to_string()
                .contains("/open-banking/v3.2/register or /open-banking/v3.3/register"),
            "{e}"
        );

        let jwt_bearer = json!({"grant_types": ["client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"]});
        ok(V3_4, jwt_bearer.clone()).unwrap();
        for v in [V3_2, V3_3] {
            assert!(matches!(
                run_on(v, jwt_bearer.clone()),
                Err(MetadataError::OtherVersion { .. })
            ));
        }
        let e = run_on(
            V3_2,
            json!({"grant_types": ["urn:openid:params:grant-type:ciba"]}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not part of DCR v3.2"), "{e}");
        assert!(e.to_string().contains("/open-banking/v3.3/register"), "{e}");
        // A value no version allows is refused as before.
        assert!(matches!(
            run_on(V3_4, json!({"grant_types": ["password"]})),
            Err(MetadataError::NotAllowed(_))
        ));
    }

    /// The DN limits: 512 by default on every version, 128 on v3.2/v3.3 when strict, and the
    /// CN-first pattern on v3.4.
    #[test]
    fn subject_dn_by_version() {
        use SpecVersion::{V3_2, V3_3, V3_4};
        let dn_of = |len: usize| format!("CN={}", "a".repeat(len - 3));
        let tls = |dn: String| json!({"token_endpoint_auth_method": "tls_client_auth", "token_endpoint_auth_signing_alg": null, "tls_client_auth_subject_dn": dn});
        let mut strict = test_policy();
        strict.strict_subject_dn_length = true;
        let with = |policy: &Policy, v: SpecVersion, dn: String| {
            parse(&request(tls(dn)), &ssa(), policy, v.profile())
        };
        for v in [V3_2, V3_3, V3_4] {
            assert!(with(&test_policy(), v, dn_of(512)).is_ok(), "{v}");
            assert!(
                matches!(
                    with(&test_policy(), v, dn_of(513)),
                    Err(MetadataError::Claim(ClaimError::TooLong { max: 512, .. }))
                ),
                "{v}"
            );
        }
        for v in [V3_2, V3_3] {
            assert!(with(&strict, v, dn_of(128)).is_ok(), "{v}");
            assert!(
                matches!(
                    with(&strict, v, dn_of(129)),
                    Err(MetadataError::Claim(ClaimError::TooLong { max: 128, .. }))
                ),
                "{v}"
            );
            assert!(with(&test_policy(), v, "O=Bank,CN=x".into()).is_ok(), "{v}");
        }
        assert!(with(&strict, V3_4, dn_of(512)).is_ok());
        assert_eq!(
            with(&test_policy(), V3_4, "O=Bank,CN=x".into()),
            Err(MetadataError::DnPattern(V3_4))
        );
    }

    #[test]
    fn ciba_claims_are_stored_and_echoed_on_v33() {
        let patch = json!({
            "grant_types": ["urn:openid:params:grant-type:ciba"],
            "backchannel_token_delivery_mode": "poll",
            "backchannel_authentication_request_signing_alg": "PS256",
            "backchannel_user_code_parameter_supported": false,
        });
        let m = run_on(SpecVersion::V3_3, patch.clone()).unwrap();
        let echoed = serde_json::to_value(&m).unwrap();
        assert_eq!(echoed["backchannel_token_delivery_mode"], "poll");
        assert_eq!(echoed["backchannel_user_code_parameter_supported"], false);
        assert!(
            echoed
                .get("backchannel_client_notification_endpoint")
                .is_none()
        );
        // v3.2 refuses the grant and does not store the claims.
        assert!(run_on(SpecVersion::V3_2, patch.clone()).is_err());
        let mut v32 = patch;
        v32["grant_types"] = json!(["client_credentials"]);
        let m = run_on(SpecVersion::V3_2, v32).unwrap();
        assert!(
            serde_json::to_value(&m)
                .unwrap()
                .get("backchannel_token_delivery_mode")
                .is_none()
        );
    }
}
