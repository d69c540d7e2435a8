//! Step 5, the CIBA claims (v3.3 and later). With the CIBA grant type the four
//! `backchannel_*` claims are required and checked; without it they are refused, so that a
//! TPP never believes it registered CIBA settings that mean nothing. Versions without CIBA
//! ignore the claims (v3.2 §2 lets unknown claims pass) and refuse the grant type.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::allowed::{NotAllowed, one_of};
use super::error_code::ErrorCode;
use super::policy::Policy;
use crate::domain::version::{CIBA_SIGNING_ALGS, MAX_NOTIFICATION_ENDPOINT_LEN};
use crate::domain::{BackchannelDeliveryMode, GrantType, Profile, SigningAlg};
use crate::jose::claims::{self as access, ClaimError};
use crate::text::printable;

const MODE: &str = "backchannel_token_delivery_mode";
const ENDPOINT: &str = "backchannel_client_notification_endpoint";
const SIGNING_ALG: &str = "backchannel_authentication_request_signing_alg";
const USER_CODE: &str = "backchannel_user_code_parameter_supported";
/// Every CIBA claim of v3.3, in the specification's order.
pub const CLAIMS: [&str; 4] = [MODE, ENDPOINT, SIGNING_ALG, USER_CODE];

/// Why the CIBA claims were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackchannelError {
    #[error("{0}")]
    Claim(ClaimError),
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// A `backchannel_*` claim without the CIBA grant type.
    #[error("`{0}` is only allowed with the grant type urn:openid:params:grant-type:ciba")]
    CibaOnly(&'static str),
    /// A CIBA claim the CIBA grant type needs.
    #[error("`{0}` is required with the grant type urn:openid:params:grant-type:ciba")]
    RequiredWithCiba(&'static str),
    /// A claim the delivery mode needs.
    #[error("`{0}` is required when backchannel_token_delivery_mode is {1}")]
    RequiredForMode(&'static str, BackchannelDeliveryMode),
    #[error(
        "`backchannel_client_notification_endpoint` `{0}` must be an absolute https URL of at most 256 characters, without a fragment, not on localhost"
    )]
    NotificationEndpoint(String),
    #[error(
        "`backchannel_user_code_parameter_supported` must be false: user codes are not supported"
    )]
    UserCodeUnsupported,
}

impl BackchannelError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidClientMetadata
    }
}

/// A client's registered CIBA settings, stored and echoed with the rest of its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backchannel {
    pub backchannel_token_delivery_mode: BackchannelDeliveryMode,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub backchannel_client_notification_endpoint: Option<String>,
    pub backchannel_authentication_request_signing_alg: SigningAlg,
    pub backchannel_user_code_parameter_supported: bool,
}

/// The CIBA settings of a request whose grant types are `grant_types` (already checked
/// against `profile`), or `None` when it registers no CIBA.
pub fn parse(
    claims: &Map<String, Value>,
    grant_types: &[GrantType],
    profile: &Profile,
    policy: &Policy,
) -> Result<Option<Backchannel>, BackchannelError> {
    if !profile.ciba {
        return Ok(None);
    }
    let present = |name: &str| claims.get(name).is_some_and(|v| !v.is_null());
    if !grant_types.contains(&GrantType::Ciba) {
        return match CLAIMS.into_iter().find(|c| present(c)) {
            Some(claim) => Err(BackchannelError::CibaOnly(claim)),
            None => Ok(None),
        };
    }
    let claim = BackchannelError::Claim;
    let required = |name: &'static str| -> Result<&str, BackchannelError> {
        access::opt_str(claims, name)
            .map_err(claim)?
            .ok_or(BackchannelError::RequiredWithCiba(name))
    };

    let mode = one_of(MODE, required(MODE)?, BackchannelDeliveryMode::ALL)?;
    let endpoint = match (access::opt_str(claims, ENDPOINT).map_err(claim)?, mode) {
        (Some(url), _) => Some(notification_endpoint(url)?),
        (None, BackchannelDeliveryMode::Poll) => None,
        (None, other) => return Err(BackchannelError::RequiredForMode(ENDPOINT, other)),
    };
    let algs: Vec<SigningAlg> = CIBA_SIGNING_ALGS
        .iter()
        .copied()
        .filter(|a| policy.signing_algorithms.contains(a))
        .collect();
    let signing_alg = one_of(SIGNING_ALG, required(SIGNING_ALG)?, &algs)?;
    let user_code = match claims.get(USER_CODE) {
        None | Some(Value::Null) => return Err(BackchannelError::RequiredWithCiba(USER_CODE)),
        Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => return Err(BackchannelError::UserCodeUnsupported),
        Some(_) => {
            return Err(claim(ClaimError::WrongType {
                claim: USER_CODE.into(),
                expected: "a boolean",
            }));
        }
    };
    Ok(Some(Backchannel {
        backchannel_token_delivery_mode: mode,
        backchannel_client_notification_endpoint: endpoint,
        backchannel_authentication_request_signing_alg: signing_alg,
        backchannel_user_code_parameter_supported: user_code,
    }))
}

/// An absolute https URL of at most 256 characters, on a host that is not this machine (the
/// bank calls it), without a fragment (OpenID CIBA §4).
fn notification_endpoint(url: &str) -> Result<String, BackchannelError> {
    let bad = || BackchannelError::NotificationEndpoint(printable(url, 100));
    if url.chars().count() > MAX_NOTIFICATION_ENDPOINT_LEN
        || url.chars().any(|c| c.is_control() || c.is_whitespace())
        || url.contains('#')
    {
        return Err(bad());
    }
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    if parsed.scheme() != "https" || super::redirect_uris::is_local_host(&parsed) {
        return Err(bad());
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SpecVersion;
    use crate::registration::ssa::tests::test_policy;
    use serde_json::json;

    fn run(
        version: SpecVersion,
        grants: &[GrantType],
        claims: Value,
    ) -> Result<Option<Backchannel>, BackchannelError> {
        let Value::Object(map) = claims else {
            panic!("an object")
        };
        parse(&map, grants, version.profile(), &test_policy())
    }

    fn ping() -> Value {
        json!({
            MODE: "ping",
            ENDPOINT: "https://tpp.example.com/ciba",
            SIGNING_ALG: "PS256",
            USER_CODE: false,
        })
    }

    fn with(patch: Value) -> Value {
        let mut v = ping();
        for (k, val) in patch.as_object().into_iter().flatten() {
            v[k] = val.clone();
        }
        v
    }

    #[test]
    fn ciba_claims_by_version() {
        let ciba = &[GrantType::Ciba];
        let got = run(SpecVersion::V3_3, ciba, ping()).unwrap().unwrap();
        assert_eq!(
            got.backchannel_token_delivery_mode,
            BackchannelDeliveryMode::Ping
        );
        assert!(run(SpecVersion::V3_4, ciba, ping()).unwrap().is_some());
        // v3.2 ignores them.
        assert_eq!(
            run(SpecVersion::V3_2, &[GrantType::ClientCredentials], ping()),
            Ok(None)
        );
        // v3.3/v3.4 refuse them without the grant.
        for v in [SpecVersion::V3_3, SpecVersion::V3_4] {
            assert_eq!(
                run(
                    v,
                    &[GrantType::ClientCredentials],
                    json!({USER_CODE: false})
                ),
                Err(BackchannelError::CibaOnly(USER_CODE))
            );
            assert_eq!(run(v, &[GrantType::ClientCredentials], json!({})), Ok(None));
        }
    }

    #[test]
    fn each_ciba_rule() {
        let ciba = &[GrantType::Ciba];
        let v = SpecVersion::V3_3;
        let poll = run(v, ciba, with(json!({MODE: "poll", ENDPOINT: null})))
            .unwrap()
            .unwrap();
        assert_eq!(poll.backchannel_client_notification_endpoint, None);
        assert!(matches!(
            run(v, ciba, with(json!({MODE: "push"}))),
            Err(BackchannelError::NotAllowed { .. })
        ));
        assert_eq!(
            run(v, ciba, with(json!({MODE: null}))),
            Err(BackchannelError::RequiredWithCiba(MODE))
        );
        assert_eq!(
            run(v, ciba, with(json!({ENDPOINT: null}))),
            Err(BackchannelError::RequiredForMode(
                ENDPOINT,
                BackchannelDeliveryMode::Ping
            ))
        );
        for url in [
            "http://tpp.example.com/ciba",
            "https://localhost/ciba",
            "https://tpp.example.com/ciba#x",
            "not a url",
            &format!("https://tpp.example.com/{}", "a".repeat(240)),
        ] {
            assert!(
                matches!(
                    run(v, ciba, with(json!({ENDPOINT: url}))),
                    Err(BackchannelError::NotificationEndpoint(_))
                ),
                "{url}"
            );
        }
        let exactly_256 = format!("https://tpp.example.com/{}", "a".repeat(256 - 24));
        assert_eq!(exactly_256.len(), 256);
        assert!(run(v, ciba, with(json!({ENDPOINT: exactly_256}))).is_ok());
        assert!(matches!(
            run(v, ciba, with(json!({SIGNING_ALG: "RS256"}))),
            Err(BackchannelError::NotAllowed { .. })
        ));
        assert!(run(v, ciba, with(json!({SIGNING_ALG: "ES256"}))).is_ok());
        assert_eq!(
            run(v, ciba, with(json!({SIGNING_ALG: null}))),
            Err(BackchannelError::RequiredWithCiba(SIGNING_ALG))
        );
        assert_eq!(
            run(v, ciba, with(json!({USER_CODE: true}))),
            Err(BackchannelError::UserCodeUnsupported)
        );
        assert_eq!(
            run(v, ciba, with(json!({USER_CODE: null}))),
            Err(BackchannelError::RequiredWithCiba(USER_CODE))
        );
        assert!(matches!(
            run(v, ciba, with(json!({USER_CODE: "false"}))),
            Err(BackchannelError::Claim(_))
        ));
        assert!(matches!(
            run(v, ciba, with(json!({MODE: 1}))),
            Err(BackchannelError::Claim(_))
        ));
    }
}
