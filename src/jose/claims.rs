//! Typed access to JSON claims, with errors that name the claim.

use serde_json::{Map, Value};

use crate::text::printable;

/// Longest `jti` of any JWT (request, SSA, client assertion): it becomes a database key.
pub const MAX_JTI_LEN: usize = 256;

/// A claim that is missing or of the wrong JSON type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    #[error("`{0}` is required")]
    Missing(String),
    #[error("`{claim}` must be {expected}")]
    WrongType {
        claim: String,
        expected: &'static str,
    },
    #[error("`{0}` must not be empty")]
    Empty(String),
    #[error("`{claim}` is longer than {max} characters")]
    TooLong { claim: String, max: usize },
    /// PostgreSQL's `text` cannot hold NUL, and no protocol value has one: refused here, where
    /// every string claim is read, so that none reaches a database.
    #[error("`{0}` must not contain a NUL character")]
    Nul(String),
}

fn wrong(claim: &str, expected: &'static str) -> ClaimError {
    ClaimError::WrongType {
        claim: printable(claim, 60),
        expected,
    }
}

fn no_nul<'a>(name: &str, s: &'a str) -> Result<&'a str, ClaimError> {
    if s.contains('\0') {
        Err(ClaimError::Nul(printable(name, 60)))
    } else {
        Ok(s)
    }
}

/// An optional string claim.
pub fn opt_str<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ClaimError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => no_nul(name, s).map(Some),
        Some(_) => Err(wrong(name, "a string")),
    }
}

/// A required, non-empty string claim.
pub fn req_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, ClaimError> {
    match opt_str(claims, name)? {
        None => Err(ClaimError::Missing(name.to_string())),
        Some(s) if s.trim().is_empty() => Err(ClaimError::Empty(name.to_string())),
        Some(s) => Ok(s),
    }
}

/// A required, non-empty string claim of at most `max` characters.
pub fn req_str_max<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<&'a str, ClaimError> {
    let s = req_str(claims, name)?;
    if s.chars().count() > max {
        return Err(ClaimError::TooLong {
            claim: name.to_string(),
            max,
        });
    }
    Ok(s)
}

/// An optional array of strings.
pub fn opt_str_array<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<&'a str>>, ClaimError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| wrong(name, "an array of strings"))
                    .and_then(|s| no_nul(name, s))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong(name, "an array of strings")),
    }
}

/// A required, non-empty array of strings.
pub fn req_str_array<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Vec<&'a str>, ClaimError> {
    match opt_str_array(claims, name)? {
        None => Err(ClaimError::Missing(name.to_string())),
        Some(v) if v.is_empty() => Err(ClaimError::Empty(name.to_string())),
        Some(v) => Ok(v),
    }
}

/// A required integer claim (JSON number without fraction), such as `exp`.
pub fn req_int(claims: &Map<String, Value>, name: &str) -> Result<i64, ClaimError> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(ClaimError::Missing(name.to_string())),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| wrong(name, "an integer number of seconds")),
        Some(_) => Err(wrong(name, "an integer number of seconds")),
    }
}

/// An optional integer claim.
pub fn opt_int(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ClaimError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        _ => req_int(claims, name).map(Some),
    }
}

/// Whether `s` is 1..=`max` Base62 characters (OB ids).
pub fn is_base62(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn types_are_enforced_and_named() {
        let c = claims(json!({"s": "x", "n": 5, "f": 1.5, "a": ["a", 1], "e": "", "big": 1e30}));
        assert_eq!(req_str(&c, "s").unwrap(), "x");
        assert!(matches!(
            req_str(&c, "n"),
            Err(ClaimError::WrongType { .. })
        ));
        assert!(matches!(req_str(&c, "e"), Err(ClaimError::Empty(_))));
        assert!(matches!(req_str(&c, "zz"), Err(ClaimError::Missing(_))));
        assert_eq!(req_int(&c, "n").unwrap(), 5);
        assert!(matches!(
            req_int(&c, "f"),
            Err(ClaimError::WrongType { .. })
        ));
        assert!(matches!(
            req_int(&c, "big"),
            Err(ClaimError::WrongType { .. })
        ));
        assert!(matches!(
            req_int(&c, "s"),
            Err(ClaimError::WrongType { .. })
        ));
        assert!(matches!(
            req_str_array(&c, "a"),
            Err(ClaimError::WrongType { .. })
        ));
        assert!(matches!(
            req_str_array(&c, "s"),
            Err(ClaimError::WrongType { .. })
        ));
    }

    #[test]
    fn base62() {
        assert!(is_base62("abcXYZ019", 22));
        assert!(!is_base62("", 22));
        assert!(!is_base62("foo.is/invalid", 22));
        assert!(!is_base62(&"a".repeat(30), 22));
    }

    /// No string claim, alone or in an array, may carry NUL (PostgreSQL cannot store it).
    #[test]
    fn nul_is_refused_in_every_string_claim() {
        let c = serde_json::json!({"s": "a\u{0}b", "a": ["ok", "\u{0}"], "fine": "a\u{1}b"});
        let c = c.as_object().unwrap();
        assert_eq!(opt_str(c, "s"), Err(ClaimError::Nul("s".into())));
        assert_eq!(req_str(c, "s"), Err(ClaimError::Nul("s".into())));
        assert_eq!(opt_str_array(c, "a"), Err(ClaimError::Nul("a".into())));
        assert_eq!(opt_str(c, "fine"), Ok(Some("a\u{1}b")));
    }
}
