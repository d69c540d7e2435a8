//! Step 4, the request's JWT claims: `iss` = SSA `software_id`, `exp`, `iat`, `aud`, `jti`.

use serde_json::{Map, Value};

use super::error_code::ErrorCode;
use super::policy::Policy;
use super::ssa::Ssa;
use crate::jose::claims::{self as access, ClaimError};
use crate::text::printable;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    #[error("{0}")]
    Claim(ClaimError),
    /// `iss` is not 1 to 22 Base62 characters.
    #[error("`iss` must be the software_id: 1 to 22 Base62 characters, not `{0}`")]
    IssFormat(String),
    /// `iss` differs from the SSA's `software_id`.
    #[error("`iss` must equal the software statement's software_id")]
    IssMismatch,
    /// `exp` has passed.
    #[error("the request has expired (`exp` is in the past)")]
    Expired,
    /// `iat` is in the future.
    #[error("`iat` is in the future")]
    IssuedInFuture,
    /// `exp` is not after `iat`.
    #[error("`exp` must be after `iat`")]
    ExpBeforeIat,
    /// `aud` is not one of the configured audiences.
    #[error("`aud` does not name this ASPSP")]
    Audience,
    /// The request `jti` was seen before.
    #[error("the request has been used before (replayed jti)")]
    Replayed,
}

impl ClaimsError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidClientMetadata
    }
}

/// What later steps need from the request claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestClaims {
    pub jti: String,
    pub exp: i64,
}

/// Checks `iss`, `exp`, `iat`, `aud` and `jti` (presence and form; replay is checked when the
/// client is stored).
pub fn check(
    claims: &Map<String, Value>,
    ssa: &Ssa,
    now: i64,
    policy: &Policy,
) -> Result<RequestClaims, ClaimsError> {
    let claim = ClaimsError::Claim;
    let iss = match claims.get("iss") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => return Err(claim(ClaimError::Missing("iss".into()))),
        Some(_) => {
            return Err(claim(ClaimError::WrongType {
                claim: "iss".into(),
                expected: "a string",
            }));
        }
    };
    if !access::is_base62(iss, 22) {
        return Err(ClaimsError::IssFormat(printable(iss, 40)));
    }
    if iss != ssa.software_id {
        return Err(ClaimsError::IssMismatch);
    }
    let exp = access::req_int(claims, "exp").map_err(claim)?;
    let iat = access::req_int(claims, "iat").map_err(claim)?;
    if iat <= 0 {
        return Err(ClaimsError::Claim(ClaimError::WrongType {
            claim: "iat".into(),
            expected: "a positive number of seconds",
        }));
    }
    // Saturating: `exp` is the caller's number, up to i64::MAX.
    if now > exp.saturating_add(policy.clock_skew) {
        return Err(ClaimsError::Expired);
    }
    if iat > now + policy.clock_skew {
        return Err(ClaimsError::IssuedInFuture);
    }
    if exp <= iat {
        return Err(ClaimsError::ExpBeforeIat);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) if !s.is_empty() => vec![s.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                claim(ClaimError::WrongType {
                    claim: "aud".into(),
                    expected: "a string or an array of strings",
                })
            })?,
        None | Some(Value::Null) => return Err(claim(ClaimError::Missing("aud".into()))),
        Some(Value::String(_)) | Some(Value::Array(_)) => {
            return Err(claim(ClaimError::Empty("aud".into())));
        }
        Some(_) => {
            return Err(claim(ClaimError::WrongType {
                claim: "aud".into(),
                expected: "a string or an array of strings",
            }));
        }
    };
    if !policy.audience.is_empty()
        && !audiences
            .iter()
            .any(|a| policy.audience.iter().any(|want| want == a))
    {
        return Err(ClaimsError::Audience);
    }
    let jti = access::req_str_max(claims, "jti", access::MAX_JTI_LEN)
        .map_err(claim)?
        .to_string();
    Ok(RequestClaims { jti, exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::ssa::tests::{minimal_ssa, patched, test_policy};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn ssa() -> Ssa {
        minimal_ssa("raw")
    }

    fn request(patch: Value) -> Map<String, Value> {
        patched(
            json!({"iss": "abcDEF123", "iat": NOW, "exp": NOW + 300, "aud": "bank", "jti": "j-1"}),
            patch,
        )
    }

    fn run(patch: Value) -> Result<RequestClaims, ClaimsError> {
        check(&request(patch), &ssa(), NOW, &test_policy())
    }

    #[test]
    fn accepts_a_good_request() {
        assert_eq!(
            run(json!({})).unwrap(),
            RequestClaims {
                jti: "j-1".into(),
                exp: NOW + 300
            }
        );
    }

    #[test]
    fn conformance_iss_cases() {
        for iss in ["", "foo.is/invalid", &"a".repeat(30)] {
            assert!(
                matches!(run(json!({"iss": iss})), Err(ClaimsError::IssFormat(_))),
                "{iss}"
            );
        }
        assert_eq!(
            run(json!({"iss": "other"})).unwrap_err(),
            ClaimsError::IssMismatch
        );
        assert!(matches!(run(json!({"iss": 5})), Err(ClaimsError::Claim(_))));
        assert!(matches!(
            run(json!({"iss": null})),
            Err(ClaimsError::Claim(_))
        ));
    }

    #[test]
    fn time_claims() {
        assert_eq!(
            run(json!({"exp": NOW - 3600})).unwrap_err(),
            ClaimsError::Expired
        );
        assert!(
            run(json!({"iat": NOW - 100, "exp": NOW - 30})).is_ok(),
            "within the clock skew"
        );
        assert_eq!(
            run(json!({"iat": NOW + 3600, "exp": NOW + 7200})).unwrap_err(),
            ClaimsError::IssuedInFuture
        );
        assert_eq!(
            run(json!({"iat": NOW, "exp": NOW})).unwrap_err(),
            ClaimsError::ExpBeforeIat
        );
        assert!(matches!(
            run(json!({"exp": "soon"})),
            Err(ClaimsError::Claim(_))
        ));
        assert!(matches!(
            run(json!({"exp": null})),
            Err(ClaimsError::Claim(_))
        ));
        assert!(matches!(
            run(json!({"iat": null})),
            Err(ClaimsError::Claim(_))
        ));
    }

    #[test]
    fn audience() {
        assert!(matches!(
            run(json!({"aud": null})),
            Err(ClaimsError::Claim(_))
        ));
        assert!(matches!(
            run(json!({"aud": ""})),
            Err(ClaimsError::Claim(_))
        ));
        assert!(matches!(run(json!({"aud": 7})), Err(ClaimsError::Claim(_))));
        let mut policy = test_policy();
        policy.audience = vec!["0015800001HQQrZAAX".into()];
        let r = check(&request(json!({})), &ssa(), NOW, &policy);
        assert_eq!(r.unwrap_err(), ClaimsError::Audience);
        let r = check(
            &request(json!({"aud": ["x", "0015800001HQQrZAAX"]})),
            &ssa(),
            NOW,
            &policy,
        );
        assert!(r.is_ok());
    }

    #[test]
    fn iat_must_be_positive() {
        assert!(matches!(
            run(json!({"iat": -1})),
            Err(ClaimsError::Claim(_))
        ));
        assert!(matches!(run(json!({"iat": 0})), Err(ClaimsError::Claim(_))));
    }

    #[test]
    fn jti_is_required() {
        assert!(matches!(
            run(json!({"jti": null})),
            Err(ClaimsError::Claim(_))
        ));
        assert!(matches!(
            run(json!({"jti": ""})),
            Err(ClaimsError::Claim(_))
        ));
        assert!(matches!(
            run(json!({"jti": 12})),
            Err(ClaimsError::Claim(_))
        ));
    }
}
