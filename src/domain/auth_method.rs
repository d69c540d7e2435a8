//! `token_endpoint_auth_method`: how a client authenticates at `/token`.

use super::protocol::protocol_enum;

protocol_enum! {
    /// The five `token_endpoint_auth_method` values of DCR v3.2.
    AuthMethod, "a DCR v3.2 method" {
        PrivateKeyJwt = "private_key_jwt",
        TlsClientAuth = "tls_client_auth",
        ClientSecretBasic = "client_secret_basic",
        ClientSecretPost = "client_secret_post",
        ClientSecretJwt = "client_secret_jwt",
    }
}

impl AuthMethod {
    /// Whether the client signs a JWT to authenticate (it then registers
    /// `token_endpoint_auth_signing_alg`).
    pub const fn signs_jwt(self) -> bool {
        matches!(self, Self::PrivateKeyJwt | Self::ClientSecretJwt)
    }
}
