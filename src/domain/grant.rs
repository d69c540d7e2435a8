//! Grant types, response types and application types a client may register.

use super::protocol_enum;

protocol_enum! {
    /// Grant types a client may register (v3.2). `/token` itself issues `client_credentials`;
    /// the others are for the bank's authorisation server that shares this registry.
    GrantType, "a supported grant type" {
        AuthorizationCode = "authorization_code",
        ClientCredentials = "client_credentials",
        RefreshToken = "refresh_token",
    }
}

protocol_enum! {
    /// Response types a client may register (v3.2).
    ResponseType, "a supported response type" {
        Code = "code",
        CodeIdToken = "code id_token",
    }
}

protocol_enum! {
    /// `application_type` values of v3.2.
    ApplicationType, "a supported application type" {
        Web = "web",
        Mobile = "mobile",
    }
}
