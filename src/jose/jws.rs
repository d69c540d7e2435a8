//! Compact JWS: strict parsing, and signature verification with a key we chose.
//!
//! Parsing never trusts the header to pick a key: `jwk`, `jku`, `x5u` and `x5c` are refused,
//! the `alg` must be on the configured allow-list, and the caller supplies the key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::jwk::VerificationKey;
use crate::domain::SigningAlg;
use crate::text::printable;

/// Largest compact JWS accepted anywhere (the request body limit is smaller still).
const MAX_JWS_LEN: usize = 256 * 1024;

/// Why a compact JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Not three base64url parts separated by dots.
    #[error("is not a compact JWS (three base64url parts separated by dots)")]
    Shape,
    /// A part is not valid base64url.
    #[error("has a {0} that is not valid base64url")]
    Base64(&'static str),
    /// The header or payload is JSON but not an object.
    #[error("has a {0} that is not a JSON object")]
    Json(&'static str),
    /// The header or payload is not JSON at all.
    #[error("has a {0} that is not valid JSON")]
    NotJson(&'static str),
    /// An object in the header or payload has a key twice (the key, made printable).
    #[error("has a {0} with a duplicate key \"{1}\"")]
    DuplicateKey(&'static str, String),
    /// The header or payload is nested deeper than the JSON parser's limit (128).
    #[error("has a {0} nested too deeply")]
    TooDeep(&'static str),
    /// `alg` is missing or not a string.
    #[error("has no `alg` in its header")]
    NoAlg,
    /// `alg` is not on the allow-list.
    #[error("is signed with `{0}`, which is not accepted (accepted: {1})")]
    AlgNotAllowed(String, String),
    /// The header names a key or a key location; those are never used.
    #[error("carries `{0}` in its header; keys are only taken from the registered JWKS")]
    HeaderKey(&'static str),
    /// The header has `crit` parameters, none of which this server understands.
    #[error("has critical header parameters (`crit`) that are not understood")]
    Crit,
    /// The header has no `kid` although one is needed to pick a key.
    #[error("has no `kid` in its header")]
    NoKid,
    /// The signature does not verify with the selected key.
    #[error("has a signature that does not verify with key `{0}`")]
    BadSignature(String),
    /// The input is too large to be a sensible JWS.
    #[error("is too large")]
    TooLarge,
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    pub alg: SigningAlg,
    pub kid: Option<String>,
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn decode_object(part: &str, what: &'static str) -> Result<Map<String, Value>, JwsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Base64(what))?;
    match serde_json::from_slice::<StrictValue>(&bytes) {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        Ok(_) => Err(JwsError::Json(what)),
        Err(e) => Err(json_refusal(&e, what)),
    }
}

/// What was wrong with a part that did not parse, in words: the TPP sees it in the error.
fn json_refusal(e: &serde_json::Error, what: &'static str) -> JwsError {
    let message = e.to_string();
    if let Some(key) = message
        .strip_prefix(DUPLICATE_KEY)
        .and_then(|rest| rest.split_once(DUPLICATE_KEY_END))
        .map(|(key, _)| key)
    {
        JwsError::DuplicateKey(what, printable(key, 40))
    } else if message.starts_with("recursion limit exceeded") {
        JwsError::TooDeep(what)
    } else {
        JwsError::NotJson(what)
    }
}

/// How [`StrictValue`] names a duplicate key in its error, so that [`json_refusal`] finds it.
const DUPLICATE_KEY: &str = "duplicate key \u{1}";
const DUPLICATE_KEY_END: &str = "\u{1}";

/// A JSON value that refuses duplicate object keys at any depth. Parsers disagree on which
/// duplicate wins, so a signed JWT with `{"iss":"a","iss":"b"}` could mean different things to
/// us and to the next system; RFC 7515 §4 lets us refuse it.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrictValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value without duplicate keys")
            }
            fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StrictValue, A::Error> {
                let mut items = Vec::new();
                while let Some(StrictValue(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(StrictValue(Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StrictValue, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let StrictValue(value) = map.next_value()?;
                    if out.insert(key.clone(), value).is_some() {
                        return Err(serde::de::Error::custom(format!(
                            "{DUPLICATE_KEY}{key}{DUPLICATE_KEY_END}"
                        )));
                    }
                }
                Ok(StrictValue(Value::Object(out)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The payload of a compact JWS, decoded as strictly as [`Jws::parse`] does but without any
/// header or signature check: only for recording what a refused request claimed.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let (_, payload, _) = split(token).ok()?;
    decode_object(payload, "payload").ok()
}

/// The three non-empty parts of a compact JWS of a sensible size.
fn split(token: &str) -> Result<(&str, &str, &str), JwsError> {
    if token.len() > MAX_JWS_LEN {
        return Err(JwsError::TooLarge);
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
            Ok((h, p, s))
        }
        _ => Err(JwsError::Shape),
    }
}

impl<'a> Jws<'a> {
    /// Parses `token` and checks the header against `allowed_algs`.
    pub fn parse(token: &'a str, allowed_algs: &[SigningAlg]) -> Result<Self, JwsError> {
        let (h, p, s) = split(token)?;
        let header = decode_object(h, "header")?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwsError::NoAlg)?;
        let alg = match alg_name.parse::<SigningAlg>() {
            Ok(alg) if allowed_algs.contains(&alg) => alg,
            _ => {
                let accepted: Vec<&str> = allowed_algs.iter().map(|a| a.as_str()).collect();
                return Err(JwsError::AlgNotAllowed(
                    printable(alg_name, 20),
                    accepted.join(", "),
                ));
            }
        };
        for key in ["jwk", "jku", "x5u", "x5c"] {
            if header.contains_key(key) {
                return Err(JwsError::HeaderKey(key));
            }
        }
        if header.contains_key("crit") {
            return Err(JwsError::Crit);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| JwsError::Base64("signature"))?;
        let claims = decode_object(p, "payload")?;
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Self {
            alg,
            kid,
            header,
            claims,
            signing_input: &token[..h.len() + 1 + p.len()],
            signature,
        })
    }

    /// The `kid`, required.
    pub fn require_kid(&self) -> Result<&str, JwsError> {
        self.kid.as_deref().ok_or(JwsError::NoKid)
    }

    /// Verifies the signature with `key`, which the caller selected.
    pub fn verify(&self, key: &VerificationKey, kid: &str) -> Result<(), JwsError> {
        if key.verify(self.alg, self.signing_input.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(JwsError::BadSignature(printable(kid, 80)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn allowed() -> Vec<SigningAlg> {
        vec![SigningAlg::PS256, SigningAlg::ES256]
    }

    #[test]
    fn refuses_bad_shapes() {
        for token in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "..",
            "a..c",
            &format!("{}.{}.", b64("{}"), b64("{}")),
        ] {
            assert_eq!(
                Jws::parse(token, &allowed()).unwrap_err(),
                JwsError::Shape,
                "{token}"
            );
        }
        let bad = format!("{}.{}.***", b64(r#"{"alg":"PS256"}"#), b64("{}"));
        assert_eq!(
            Jws::parse(&bad, &allowed()).unwrap_err(),
            JwsError::Base64("signature")
        );
        let bad = format!("{}.{}.c2ln", b64("[1]"), b64("{}"));
        assert_eq!(
            Jws::parse(&bad, &allowed()).unwrap_err(),
            JwsError::Json("header")
        );
        let bad = format!("{}.{}.c2ln", b64(r#"{"alg":"PS256"}"#), b64("\"x\""));
        assert_eq!(
            Jws::parse(&bad, &allowed()).unwrap_err(),
            JwsError::Json("payload")
        );
    }

    #[test]
    fn refuses_algs_off_the_list() {
        for alg in ["none", "HS256", "RS256", "ps256", "\u{0}"] {
            let header = serde_json::json!({ "alg": alg }).to_string();
            let t = format!("{}.{}.c2ln", b64(&header), b64("{}"));
            assert!(
                matches!(Jws::parse(&t, &allowed()), Err(JwsError::AlgNotAllowed(..))),
                "{alg}"
            );
        }
    }

    #[test]
    fn refuses_header_keys_and_crit() {
        for key in ["jwk", "jku", "x5u", "x5c"] {
            let t = format!(
                "{}.{}.c2ln",
                b64(&format!(r#"{{"alg":"PS256","{key}":"x"}}"#)),
                b64("{}")
            );
            assert_eq!(
                Jws::parse(&t, &allowed()).unwrap_err(),
                JwsError::HeaderKey(match key {
                    "jwk" => "jwk",
                    "jku" => "jku",
                    "x5u" => "x5u",
                    _ => "x5c",
                })
            );
        }
        let t = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"PS256","crit":["exp"]}"#),
            b64("{}")
        );
        assert_eq!(Jws::parse(&t, &allowed()).unwrap_err(), JwsError::Crit);
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        let h = b64(r#"{"alg":"PS256"}"#);
        for (payload, key) in [
            (r#"{"iss":"a","iss":"b"}"#, "iss"),
            (r#"{"a":{"x":1,"x":2}}"#, "x"),
            (r#"{"a":[{"k":1,"k":1}]}"#, "k"),
        ] {
            let t = format!("{h}.{}.c2ln", b64(payload));
            let e = Jws::parse(&t, &allowed()).unwrap_err();
            assert_eq!(
                e,
                JwsError::DuplicateKey("payload", key.into()),
                "{payload}"
            );
            assert_eq!(
                e.to_string(),
                format!("has a payload with a duplicate key \"{key}\"")
            );
        }
        let t = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"PS256","alg":"none"}"#),
            b64("{}")
        );
        assert_eq!(
            Jws::parse(&t, &allowed()).unwrap_err(),
            JwsError::DuplicateKey("header", "alg".into())
        );
        // A key that is long or has control characters is shown cut and cleaned.
        let long = format!("{}\\n", "k".repeat(100));
        let t = format!("{h}.{}.c2ln", b64(&format!(r#"{{"{long}":1,"{long}":2}}"#)));
        let e = Jws::parse(&t, &allowed()).unwrap_err().to_string();
        assert!(e.ends_with(&format!("\"{}…\"", "k".repeat(40))), "{e}");
        // Not JSON at all.
        let t = format!("{h}.{}.c2ln", b64(r#"{"iss":"#));
        let e = Jws::parse(&t, &allowed()).unwrap_err();
        assert_eq!(e, JwsError::NotJson("payload"));
        assert_eq!(e.to_string(), "has a payload that is not valid JSON");
        let ok = format!(
            "{h}.{}.c2ln",
            b64(r#"{"a":{"x":1},"b":{"x":2},"n":1.5,"z":null,"l":[1,"s",true]}"#)
        );
        let jws = Jws::parse(&ok, &allowed()).unwrap();
        assert_eq!(jws.claims["n"], serde_json::json!(1.5));
    }

    #[test]
    fn deeply_nested_json_is_refused_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let t = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"PS256"}"#),
            b64(&format!(r#"{{"a":{deep}}}"#))
        );
        assert_eq!(Jws::parse(&t, &allowed()).unwrap_err(), JwsError::TooLarge);
        let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
        let t = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"PS256"}"#),
            b64(&format!(r#"{{"a":{deep}}}"#))
        );
        let e = Jws::parse(&t, &allowed()).unwrap_err();
        assert_eq!(e, JwsError::TooDeep("payload"));
        assert_eq!(e.to_string(), "has a payload nested too deeply");
    }
}
