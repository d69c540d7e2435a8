//! Step 2, the Software Statement Assertion: issuer allow-list → signature with that issuer's
//! keys → `org_status` Active and roles present → `ssa_max_age`. (The SSA `jti` replay check
//! is part of the final transaction.)

use serde_json::{Map, Value};

use super::error_code::ErrorCode;
use super::policy::{IssuerKeys, Policy, SsaIssuerPolicy};
use crate::jose::claims::{self as access, ClaimError, MAX_JTI_LEN};
use crate::jose::jwk::select;
use crate::jose::{JwksCache, JwksError};
use crate::jose::{Jws, JwsError};
use crate::text::printable;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SsaError {
    /// The request has no `software_statement`.
    #[error("`software_statement` is required")]
    Missing,
    /// `software_statement` is not a string.
    #[error("`software_statement` must be a string holding a signed JWT")]
    NotAString,
    /// The SSA is not a well-formed JWS with an accepted algorithm.
    #[error("the software statement {0}")]
    Jws(JwsError),
    /// The SSA's `iss` is not a configured SSA issuer.
    #[error("the software statement's issuer `{0}` is not trusted")]
    UntrustedIssuer(String),
    /// The issuer's keys could not be had, or have no such `kid`.
    #[error("the software statement cannot be verified: {0}")]
    Keys(JwksError),
    /// A claim of the SSA is missing or malformed.
    #[error("the software statement is malformed: {0}")]
    Claim(ClaimError),
    /// `org_status` is not Active.
    #[error("the software statement's organisation status is `{0}`, not Active")]
    OrgNotActive(String),
    /// `software_roles` is empty.
    #[error("the software statement has no software_roles")]
    NoRoles,
    /// SSA `iat` is older than `ssa_max_age` (or in the future).
    #[error("the software statement was issued {0}")]
    Age(String),
    /// The SSA `jti` was seen before.
    #[error("the software statement has been used before (replayed jti)")]
    Replayed,
}

impl SsaError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UntrustedIssuer(_) | Self::OrgNotActive(_) | Self::NoRoles => {
                ErrorCode::UnapprovedSoftwareStatement
            }
            _ => ErrorCode::InvalidSoftwareStatement,
        }
    }
}

/// The SSA claims this server uses, after the signature was verified.
#[derive(Debug, Clone)]
pub struct Ssa {
    /// The SSA exactly as sent.
    pub raw: String,
    pub claims: Map<String, Value>,
    pub iss: String,
    pub software_id: String,
    pub org_id: String,
    pub software_jwks_endpoint: String,
    /// The OB Directory's JWKS of the software's revoked keys, when the SSA names one.
    pub software_jwks_revoked_endpoint: Option<String>,
    pub software_redirect_uris: Vec<String>,
    pub software_roles: Vec<String>,
    pub iat: Option<i64>,
    pub jti: Option<String>,
    /// `organisation_competent_authority_claims`: (authority_id, registration_id).
    pub competent_authority: Option<(String, String)>,
}

impl Ssa {
    /// An optional string claim of the SSA (URIs such as `software_logo_uri`).
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// The raw SSA from the request claims.
pub fn extract(claims: &Map<String, Value>) -> Result<&str, SsaError> {
    match claims.get("software_statement") {
        None | Some(Value::Null) => Err(SsaError::Missing),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.as_str()),
        Some(Value::String(_)) => Err(SsaError::Missing),
        Some(_) => Err(SsaError::NotAString),
    }
}

/// Parses the SSA's JWS envelope.
pub fn parse_envelope<'a>(raw: &'a str, policy: &Policy) -> Result<Jws<'a>, SsaError> {
    Jws::parse(raw, &policy.signing_algorithms).map_err(SsaError::Jws)
}

/// The configured issuer named by the SSA's `iss`.
pub fn trusted_issuer<'p>(
    jws: &Jws<'_>,
    policy: &'p Policy,
) -> Result<&'p SsaIssuerPolicy, SsaError> {
    let iss = access::req_str(&jws.claims, "iss").map_err(SsaError::Claim)?;
    policy
        .issuers
        .iter()
        .find(|i| i.name == iss)
        .ok_or_else(|| SsaError::UntrustedIssuer(printable(iss, 80)))
}

/// Verifies the SSA signature with the issuer's key named by `kid`.
pub async fn verify_signature(
    jws: &Jws<'_>,
    issuer: &SsaIssuerPolicy,
    jwks: &JwksCache,
) -> Result<(), SsaError> {
    let kid = jws.require_kid().map_err(SsaError::Jws)?;
    let key = match &issuer.keys {
        IssuerKeys::Static(set) => select(set, kid, jws.alg, &format!("the {} JWKS", issuer.name)),
        IssuerKeys::Url(url) => jwks.key(url, kid, jws.alg, false).await,
    }
    .map_err(SsaError::Keys)?;
    jws.verify(&key, kid).map_err(SsaError::Jws)
}

/// Reads the claims this server needs and checks organisation status and roles.
pub fn parse_claims(raw: &str, claims: Map<String, Value>) -> Result<Ssa, SsaError> {
    let c = &claims;
    let claim = SsaError::Claim;
    let iss = access::req_str(c, "iss").map_err(claim)?.to_string();
    let software_id = access::req_str_max(c, "software_id", 22)
        .map_err(claim)?
        .to_string();
    if !access::is_base62(&software_id, 22) {
        return Err(SsaError::Claim(ClaimError::WrongType {
            claim: "software_id".into(),
            expected: "1 to 22 Base62 characters",
        }));
    }
    let org_id = access::req_str_max(c, "org_id", 40)
        .map_err(claim)?
        .to_string();
    let software_jwks_endpoint = access::req_str_max(c, "software_jwks_endpoint", 1024)
        .map_err(claim)?
        .to_string();
    let software_jwks_revoked_endpoint =
        match access::opt_str(c, "software_jwks_revoked_endpoint").map_err(claim)? {
            Some(url) if url.chars().count() > 1024 => {
                return Err(claim(ClaimError::TooLong {
                    claim: "software_jwks_revoked_endpoint".into(),
                    max: 1024,
                }));
            }
            url => url.map(str::to_string),
        };
    let software_redirect_uris = access::opt_str_array(c, "software_redirect_uris")
        .map_err(claim)?
        .unwrap_or_default()
        .into_iter()
        .map(str::to_string)
        .collect();
    let iat = access::opt_int(c, "iat").map_err(claim)?;
    // Capped like the request's `jti`: it is a database key when replays are checked.
    let jti = match access::opt_str(c, "jti").map_err(claim)? {
        Some(j) if j.chars().count() > MAX_JTI_LEN => {
            return Err(claim(ClaimError::TooLong {
                claim: "jti".into(),
                max: MAX_JTI_LEN,
            }));
        }
        j => j.map(str::to_string),
    };
    let org_status = access::req_str(c, "org_status").map_err(claim)?;
    if !org_status.eq_ignore_ascii_case("active") {
        return Err(SsaError::OrgNotActive(printable(org_status, 40)));
    }
    let software_roles: Vec<String> =
        match access::opt_str_array(c, "software_roles").map_err(claim)? {
            Some(roles) if !roles.is_empty() => roles.into_iter().map(str::to_string).collect(),
            _ => return Err(SsaError::NoRoles),
        };
    let competent_authority = c
        .get("organisation_competent_authority_claims")
        .and_then(|v| {
            // The directory sends an object; some test directories send a one-element array.
            let obj = match v {
                Value::Array(items) => items.first()?,
                other => other,
            };
            Some((
                obj.get("authority_id")?.as_str()?.to_string(),
                obj.get("registration_id")?.as_str()?.to_string(),
            ))
        });
    Ok(Ssa {
        raw: raw.to_string(),
        iss,
        software_id,
        org_id,
        software_jwks_endpoint,
        software_jwks_revoked_endpoint,
        software_redirect_uris,
        software_roles,
        iat,
        jti,
        competent_authority,
        claims,
    })
}

/// `iat` within `ssa_max_age` (0 = no limit), and not in the future.
pub fn check_age(ssa: &Ssa, now: i64, policy: &Policy) -> Result<(), SsaError> {
    if let Some(iat) = ssa.iat
        && iat > now + policy.clock_skew
    {
        return Err(SsaError::Age("in the future (check `iat`)".into()));
    }
    if policy.ssa_max_age > 0 {
        let Some(iat) = ssa.iat else {
            return Err(SsaError::Claim(ClaimError::Missing("iat".into())));
        };
        let age = now.saturating_sub(iat);
        if age > policy.ssa_max_age.saturating_add(policy.clock_skew) {
            return Err(SsaError::Age(format!(
                "{age} seconds ago; at most {} seconds are accepted",
                policy.ssa_max_age
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn base() -> Value {
        json!({
            "iss": "OpenBanking Ltd", "iat": 1000, "jti": "abc",
            "software_id": "abcDEF123", "org_id": "0015800001ABCDEFGH",
            "software_jwks_endpoint": "https://keystore.example.com/x.jwks",
            "software_redirect_uris": ["https://tpp.example.com/cb"],
            "software_roles": ["AISP"], "org_status": "Active",
            "organisation_competent_authority_claims": {"authority_id": "FCAGBR", "registration_id": "123456"}
        })
    }

    #[test]
    fn parses_the_claims() {
        let ssa = parse_claims("raw", claims(base())).unwrap();
        assert_eq!(ssa.software_id, "abcDEF123");
        assert_eq!(
            ssa.competent_authority,
            Some(("FCAGBR".into(), "123456".into()))
        );
    }

    #[test]
    fn inactive_org_and_missing_roles_are_unapproved() {
        let mut v = base();
        v["org_status"] = json!("Revoked");
        let e = parse_claims("raw", claims(v)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::UnapprovedSoftwareStatement);
        let mut v = base();
        v["software_roles"] = json!([]);
        assert_eq!(
            parse_claims("raw", claims(v)).unwrap_err(),
            SsaError::NoRoles
        );
        let mut v = base();
        v["org_status"] = json!("active");
        assert!(parse_claims("raw", claims(v)).is_ok());
    }

    #[test]
    fn malformed_claims_are_invalid() {
        for (k, bad) in [
            ("software_id", json!(5)),
            ("software_id", json!("a.b")),
            ("org_id", json!(null)),
            ("software_roles", json!("AISP")),
        ] {
            let mut v = base();
            v[k] = bad;
            let e = parse_claims("raw", claims(v)).unwrap_err();
            assert!(
                matches!(e, SsaError::Claim(_) | SsaError::NoRoles),
                "{k}: {e:?}"
            );
        }
    }

    #[test]
    fn age_limits() {
        let ssa = parse_claims("raw", claims(base())).unwrap();
        let mut policy = test_policy();
        assert!(check_age(&ssa, 100_000, &policy).is_ok());
        policy.ssa_max_age = 300;
        assert!(check_age(&ssa, 1000 + 300 + 60, &policy).is_ok());
        assert!(matches!(
            check_age(&ssa, 1000 + 300 + 61, &policy),
            Err(SsaError::Age(_))
        ));
        assert!(matches!(
            check_age(&ssa, 900, &policy),
            Err(SsaError::Age(_))
        ));
    }

    /// A minimal valid SSA (software `abcDEF123`, role AISP) with its raw text.
    pub(crate) fn minimal_ssa(raw: &str) -> Ssa {
        parse_claims(
            raw,
            claims(json!({
                "iss": "OpenBanking Ltd", "software_id": "abcDEF123", "org_id": "org",
                "software_jwks_endpoint": "https://k.example.com/j", "software_roles": ["AISP"],
                "org_status": "Active"
            })),
        )
        .unwrap()
    }

    /// `base` with the members of `patch` set, or removed where they are null.
    pub(crate) fn patched(mut base: Value, patch: Value) -> Map<String, Value> {
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base.as_object().cloned().unwrap()
    }

    pub(crate) fn test_policy() -> Policy {
        Policy {
            signing_algorithms: vec![
                crate::domain::SigningAlg::PS256,
                crate::domain::SigningAlg::ES256,
            ],
            auth_methods: vec![
                crate::domain::AuthMethod::PrivateKeyJwt,
                crate::domain::AuthMethod::TlsClientAuth,
            ],
            audience: vec![],
            clock_skew: 60,
            ssa_max_age: 0,
            issuers: vec![],
            request_jti: true,
            ssa_jti: false,
            jti_ttl: 3600,
            one_client_per_software: true,
            uri_validation: false,
            hostname_validation: false,
            versions: crate::domain::SpecVersion::ALL.to_vec(),
            strict_subject_dn_length: false,
            transport_cert_in_jwks: false,
            revoked_keys_hard: false,
        }
    }
}
