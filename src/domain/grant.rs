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

/// The grant types a client registered, in their registered order (its row's `grant_types`).
pub type GrantTypes = super::protocol::Names<GrantType>;
