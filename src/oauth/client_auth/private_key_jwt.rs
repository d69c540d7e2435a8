//! `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9): a JWT the client signs with a key from its
//! JWKS (the SSA's `software_jwks_endpoint`).

use serde_json::{Map, Value};

use crate::domain::SigningAlg;
use crate::jose::claims::{self as access, ClaimError};
use crate::jose::{JwksCache, JwksError, Jws, JwsError};
use crate::store::JtiRecord;

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest accepted client-assertion lifetime (`exp` − `iat`, or `exp` − now).
pub const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// Why an assertion was refused (internal detail; the client is told only that it failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    #[error("the assertion {0}")]
    Jws(JwsError),
    #[error("{0}")]
    Claim(ClaimError),
    #[error("`iss` and `sub` must both be the client_id")]
    IssIsNotSub,
    #[error("{0}")]
    Keys(JwksError),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the assertion has expired")]
    Expired,
    #[error("`iat` is in the future")]
    IssuedInTheFuture,
    #[error("the assertion lives longer than {MAX_ASSERTION_LIFETIME} seconds")]
    TooLong,
    #[error("`aud` must be the token endpoint")]
    Audience,
}

/// What assertions are checked against.
#[derive(Debug, Clone)]
pub struct AssertionPolicy {
    pub algs: Vec<SigningAlg>,
    pub clock_skew: i64,
    /// Accepted `aud` values: the token endpoint, the issuer as configured and without its
    /// trailing slash.
    pub audiences: Vec<String>,
}

/// A parsed, not yet verified, assertion whose `iss` and `sub` name the same client.
pub struct Assertion<'a> {
    jws: Jws<'a>,
    client_id: String,
}

impl<'a> Assertion<'a> {
    pub fn parse(text: &'a str, policy: &AssertionPolicy) -> Result<Self, AssertionError> {
        let jws = Jws::parse(text, &policy.algs).map_err(AssertionError::Jws)?;
        let iss = access::req_str(&jws.claims, "iss").map_err(AssertionError::Claim)?;
        let sub = access::req_str(&jws.claims, "sub").map_err(AssertionError::Claim)?;
        if iss != sub {
            return Err(AssertionError::IssIsNotSub);
        }
        let client_id = iss.to_string();
        Ok(Self { jws, client_id })
    }

    /// The client the assertion claims to come from (unverified until the signature is).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Verifies the signature with the client's keys: the `kid`'s key, or any fitting key when
    /// the header names none. Returns the `kid` of the key that verified (for the directory's
    /// revoked keys), if it has one.
    pub async fn verify_signature(
        &self,
        jwks_uri: &str,
        jwks: &JwksCache,
    ) -> Result<Option<String>, AssertionError> {
        let jws = &self.jws;
        match &jws.kid {
            Some(kid) => {
                let key = jwks
                    .key(jwks_uri, kid, jws.alg, true)
                    .await
                    .map_err(AssertionError::Keys)?;
                match jws.verify(&key, kid) {
                    Ok(_) => Ok(Some(kid.clone())),
                    Err(_) => Err(AssertionError::BadSignature),
                }
            }
            None => jwks
                .keys_for(jwks_uri, jws.alg, true)
                .await
                .map_err(AssertionError::Keys)?
                .iter()
                .find(|k| jws.verify(k, "").is_ok())
                .map(|k| k.kid.clone())
                .ok_or(AssertionError::BadSignature),
        }
    }

    /// Checks the time and audience claims; returns the `jti` to remember.
    pub fn check_claims(
        &self,
        client_id: &str,
        now: i64,
        policy: &AssertionPolicy,
    ) -> Result<JtiRecord, AssertionError> {
        check_claims(&self.jws.claims, client_id, now, policy)
    }
}

/// `exp` (required), `iat` (optional, not in the future), lifetime, `aud` and `jti`.
pub fn check_claims(
    claims: &Map<String, Value>,
    client_id: &str,
    now: i64,
    policy: &AssertionPolicy,
) -> Result<JtiRecord, AssertionError> {
    let skew = policy.clock_skew;
    let exp = access::req_int(claims, "exp").map_err(AssertionError::Claim)?;
    // Saturating: `exp` and `iat` are the caller's numbers, up to i64::MAX and down to MIN.
    if now > exp.saturating_add(skew) {
        return Err(AssertionError::Expired);
    }
    let iat = access::opt_int(claims, "iat").map_err(AssertionError::Claim)?;
    if iat.is_some_and(|iat| iat > now + skew) {
        return Err(AssertionError::IssuedInTheFuture);
    }
    if exp.saturating_sub(iat.unwrap_or(now)) > MAX_ASSERTION_LIFETIME {
        return Err(AssertionError::TooLong);
    }
    let accepted = |a: &str| policy.audiences.iter().any(|x| x == a);
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => accepted(a),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(accepted),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::Audience);
    }
    let jti =
        access::req_str_max(claims, "jti", access::MAX_JTI_LEN).map_err(AssertionError::Claim)?;
    Ok(JtiRecord {
        scope: format!("assertion:{client_id}"),
        jti: jti.to_string(),
        expires_at: exp.saturating_add(skew),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const TOKEN: &str = "https://bank.example.com/token";

    fn policy() -> AssertionPolicy {
        AssertionPolicy {
            algs: vec![SigningAlg::PS256],
            clock_skew: 60,
            audiences: vec![TOKEN.into(), "https://bank.example.com".into()],
        }
    }

    fn claims(patch: Value) -> Map<String, Value> {
        let mut c = json!({
            "iss": "c1", "sub": "c1", "aud": TOKEN, "jti": "j1",
            "iat": NOW, "exp": NOW + 300,
        });
        if let (Some(c), Value::Object(p)) = (c.as_object_mut(), patch) {
            for (k, v) in p {
                if v.is_null() {
                    c.remove(&k);
                } else {
                    c.insert(k, v);
                }
            }
        }
        c.as_object().cloned().unwrap_or_default()
    }

    fn check(patch: Value) -> Result<JtiRecord, AssertionError> {
        check_claims(&claims(patch), "c1", NOW, &policy())
    }

    #[test]
    fn a_good_assertion_gives_its_jti_scoped_to_the_client() {
        let jti = check(json!({})).unwrap();
        assert_eq!(jti.scope, "assertion:c1");
        assert_eq!(jti.jti, "j1");
        assert_eq!(jti.expires_at, NOW + 300 + 60);
        // aud as an array with one accepted value; the issuer is accepted too.
        assert!(check(json!({"aud": ["x", TOKEN]})).is_ok());
        assert!(check(json!({"aud": "https://bank.example.com"})).is_ok());
        // No iat: the lifetime counts from now.
        assert!(check(json!({"iat": null})).is_ok());
    }

    #[test]
    fn time_rules() {
        assert_eq!(
            check(json!({"exp": NOW - 61})),
            Err(AssertionError::Expired)
        );
        // Within the clock skew.
        assert!(check(json!({"exp": NOW - 59})).is_ok());
        assert_eq!(
            check(json!({"iat": NOW + 61})),
            Err(AssertionError::IssuedInTheFuture)
        );
        assert_eq!(
            check(json!({"exp": NOW + MAX_ASSERTION_LIFETIME + 1})),
            Err(AssertionError::TooLong)
        );
        assert_eq!(
            check(json!({"iat": null, "exp": NOW + MAX_ASSERTION_LIFETIME + 1})),
            Err(AssertionError::TooLong)
        );
        assert!(matches!(
            check(json!({"exp": null})),
            Err(AssertionError::Claim(ClaimError::Missing(_)))
        ));
        assert!(matches!(
            check(json!({"exp": "soon"})),
            Err(AssertionError::Claim(_))
        ));
    }

    #[test]
    fn audience_and_jti_rules() {
        for aud in [
            json!("https://other.example.com/token"),
            json!([]),
            json!(3),
            Value::Null,
        ] {
            assert_eq!(
                check(json!({ "aud": aud })),
                Err(AssertionError::Audience),
                "{aud}"
            );
        }
        assert!(matches!(
            check(json!({"jti": null})),
            Err(AssertionError::Claim(_))
        ));
        assert!(matches!(
            check(json!({"jti": "x".repeat(257)})),
            Err(AssertionError::Claim(ClaimError::TooLong { .. }))
        ));
    }

    fn unsigned(header: Value, claims: Value) -> String {
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2ln", b64(&header), b64(&claims))
    }

    #[test]
    fn parsing_needs_an_allowed_alg_and_iss_equal_to_sub() {
        let p = policy();
        let ok = unsigned(json!({"alg": "PS256"}), json!({"iss": "c1", "sub": "c1"}));
        assert_eq!(Assertion::parse(&ok, &p).unwrap().client_id(), "c1");
        let other = unsigned(json!({"alg": "PS256"}), json!({"iss": "c1", "sub": "c2"}));
        assert!(matches!(
            Assertion::parse(&other, &p),
            Err(AssertionError::IssIsNotSub)
        ));
        let es = unsigned(json!({"alg": "ES256"}), json!({"iss": "c1", "sub": "c1"}));
        assert!(matches!(
            Assertion::parse(&es, &p),
            Err(AssertionError::Jws(JwsError::AlgNotAllowed(..)))
        ));
        let no_sub = unsigned(json!({"alg": "PS256"}), json!({"iss": "c1"}));
        assert!(matches!(
            Assertion::parse(&no_sub, &p),
            Err(AssertionError::Claim(_))
        ));
        assert!(matches!(
            Assertion::parse("not a jwt", &p),
            Err(AssertionError::Jws(JwsError::Shape))
        ));
    }
}
