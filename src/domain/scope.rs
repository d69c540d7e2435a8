//! Scopes, and the SSA software roles that grant them.

use super::protocol::protocol_enum;

protocol_enum! {
    /// The scopes this server knows; `openid` is always allowed, the others follow SSA roles.
    Scope, "a supported scope" {
        OpenId = "openid",
        Accounts = "accounts",
        Payments = "payments",
        FundsConfirmations = "fundsconfirmations",
    }
}

impl Scope {
    /// The SSA `software_roles` entry that grants this scope (compared case-insensitively);
    /// `None` for `openid`, which needs no role.
    pub const fn required_role(self) -> Option<&'static str> {
        match self {
            Self::OpenId => None,
            Self::Accounts => Some("AISP"),
            Self::Payments => Some("PISP"),
            Self::FundsConfirmations => Some("CBPII"),
        }
    }
}

/// Scopes as a client registered them or a token carries them, in their order (the rows'
/// `scope` columns).
pub type Scopes = super::protocol::Names<Scope>;
