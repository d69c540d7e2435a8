//! Grant types, response types and application types a client may register, and the CIBA
//! delivery modes. Which version allows which value is in [`super::version`].

use super::protocol::protocol_enum;

protocol_enum! {
    /// Grant types a client may register, across every DCR version. `/token` itself issues
    /// `client_credentials`; the others are for the bank's authorisation server that shares
    /// this registry.
    GrantType, "a supported grant type" {
        AuthorizationCode = "authorization_code",
        ClientCredentials = "client_credentials",
        RefreshToken = "refresh_token",
        /// CIBA (v3.3 and later).
        Ciba = "urn:openid:params:grant-type:ciba",
        /// RFC 7523 §2.1 JWT bearer assertions (v3.4).
        JwtBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer",
    }
}

protocol_enum! {
    /// Response types a client may register (every version).
    ResponseType, "a supported response type" {
        Code = "code",
        CodeIdToken = "code id_token",
    }
}

protocol_enum! {
    /// `application_type` values across every version (v3.2/v3.3 `mobile`, v3.4 `native`).
    ApplicationType, "a supported application type" {
        Web = "web",
        Mobile = "mobile",
        Native = "native",
    }
}

protocol_enum! {
    /// `backchannel_token_delivery_mode` values FAPI-CIBA allows (`push` is not one).
    BackchannelDeliveryMode, "a supported backchannel token delivery mode" {
        Poll = "poll",
        Ping = "ping",
    }
}

/// The grant types a client registered, in their registered order, each once. Its text (what
/// the client's row holds, and what a token request checks against) is the names
/// space-separated, kept beside the list so that neither is rebuilt per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantTypes {
    list: Vec<GrantType>,
    text: String,
}

impl GrantTypes {
    pub fn new(list: &[GrantType]) -> Self {
        let mut unique: Vec<GrantType> = Vec::with_capacity(list.len());
        for g in list {
            if !unique.contains(g) {
                unique.push(*g);
            }
        }
        let text = unique
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Self { list: unique, text }
    }

    /// As a client's row holds them. Rows migrated from registrations older than the column
    /// may name what is no grant type: such a name stays in the text and grants nothing.
    pub fn from_stored(text: &str) -> Self {
        Self {
            list: text.split(' ').filter_map(|g| g.parse().ok()).collect(),
            text: text.to_string(),
        }
    }

    pub fn contains(&self, grant: GrantType) -> bool {
        self.list.contains(&grant)
    }

    pub fn as_slice(&self) -> &[GrantType] {
        &self.list
    }

    /// The names, space-separated.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::str::FromStr for GrantTypes {
    type Err = super::protocol::UnknownValue;
    /// Space-separated names, as [`GrantTypes::as_str`] writes them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list = s
            .split(' ')
            .filter(|g| !g.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<GrantType>, _>>()?;
        Ok(Self::new(&list))
    }
}

impl std::fmt::Display for GrantTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
