//! Step 8, roles → scopes: each requested scope must be known and allowed by the SSA's
//! `software_roles`. AISP → accounts, PISP → payments, CBPII → fundsconfirmations; `openid`
//! is always allowed.

use super::error_code::ErrorCode;
use crate::domain::{Scope, Scopes};
use crate::text::printable;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    #[error("scope `{0}` is not supported; supported: {supported}", supported = Scope::choices())]
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

/// Checks every space-separated scope against the roles; the scopes, parsed once.
pub fn check(scope: &str, roles: &[String]) -> Result<Scopes, ScopeError> {
    let mut checked = Vec::new();
    for s in scope.split_whitespace() {
        let known: Scope = s
            .parse()
            .map_err(|_| ScopeError::Unknown(printable(s, 40)))?;
        if let Some(role) = known.required_role()
            && !roles.iter().any(|r| r.eq_ignore_ascii_case(role))
        {
            return Err(ScopeError::RoleMissing(s.to_string(), role));
        }
        checked.push(known);
    }
    if checked.is_empty() {
        Err(ScopeError::Empty)
    } else {
        Ok(Scopes::new(checked))
    }
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
        let err = check("admin", &roles(&["AISP"])).unwrap_err().to_string();
        assert!(
            err.ends_with("supported: openid, accounts, payments, fundsconfirmations"),
            "{err}"
        );
    }
}
