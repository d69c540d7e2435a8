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

/// Scopes as a client registered them or a token carries them, in their order: what the row's
/// `scope` column holds, space-separated. The text is kept beside the list so that neither is
/// rebuilt per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    list: Vec<Scope>,
    text: String,
}

impl Scopes {
    pub fn new(list: Vec<Scope>) -> Self {
        let text = list
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Self { list, text }
    }

    /// As a row holds them, the text kept as written. Rows migrated from registrations older
    /// than the column may name what is no scope: such a name stays in the text and is never
    /// granted.
    pub fn from_stored(text: &str) -> Self {
        Self {
            list: text
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect(),
            text: text.to_string(),
        }
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.list.contains(&scope)
    }

    pub fn as_slice(&self) -> &[Scope] {
        &self.list
    }

    /// The names, space-separated.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::str::FromStr for Scopes {
    type Err = super::protocol::UnknownValue;
    /// Names separated by white space.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list = s
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<Scope>, _>>()?;
        Ok(Self::new(list))
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}
