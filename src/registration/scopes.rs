//! Step 8, roles → scopes: each requested scope must be known and allowed by the SSA's
//! `software_roles`. AISP → accounts, PISP → payments, CBPII → fundsconfirmations; `openid`
//! is always allowed.

use super::ErrorCode;
use crate::jose::printable;

/// (scope, role that grants it). `openid` needs no role.
pub const ROLE_SCOPES: &[(&str, &str)] = &[
    ("accounts", "AISP"),
    ("payments", "PISP"),
    ("fundsconfirmations", "CBPII"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    #[error(
        "scope `{0}` is not supported; supported: openid, accounts, payments, fundsconfirmations"
    )]
    Unknown(String),
    #[error("scope `{0}` needs the software role {1}, which the software statement does not grant")]
    RoleMissing(String, &'static str),
    #[error("`scope` must name at least one scope")]
    Empty,
}

impl ScopeError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidClientMetadata
    }
}

/// The scopes the roles allow, in a fixed order (used for discovery and token defaults).
pub fn allowed_by_roles(roles: &[String]) -> Vec<&'static str> {
    let mut out = vec!["openid"];
    for (scope, role) in ROLE_SCOPES {
        if roles.iter().any(|r| r.eq_ignore_ascii_case(role)) {
            out.push(scope);
        }
    }
    out
}

/// Checks every space-separated scope against the roles.
pub fn check(scope: &str, roles: &[String]) -> Result<(), ScopeError> {
    let mut any = false;
    for s in scope.split_whitespace() {
        any = true;
        if s == "openid" {
            continue;
        }
        let Some((_, role)) = ROLE_SCOPES.iter().find(|(name, _)| *name == s) else {
            return Err(ScopeError::Unknown(printable(s, 40)));
        };
        if !roles.iter().any(|r| r.eq_ignore_ascii_case(role)) {
            return Err(ScopeError::RoleMissing(s.to_string(), role));
        }
    }
    if any { Ok(()) } else { Err(ScopeError::Empty) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_grant_scopes() {
        assert!(check("openid accounts", &roles(&["AISP"])).is_ok());
        assert!(check("openid", &roles(&["CBPII"])).is_ok());
        assert!(check("fundsconfirmations", &roles(&["cbpii"])).is_ok());
        assert_eq!(
            check("payments", &roles(&["AISP"])).unwrap_err(),
            ScopeError::RoleMissing("payments".into(), "PISP")
        );
        assert!(matches!(
            check("accounts admin", &roles(&["AISP"])),
            Err(ScopeError::Unknown(_))
        ));
        assert_eq!(
            check("  ", &roles(&["AISP"])).unwrap_err(),
            ScopeError::Empty
        );
        assert_eq!(
            allowed_by_roles(&roles(&["PISP", "AISP"])),
            ["openid", "accounts", "payments"]
        );
    }
}
