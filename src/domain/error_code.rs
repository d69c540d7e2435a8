//! The OAuth error codes this server answers with, the `error` member of every OAuth-shaped
//! refusal (RFC 7662 introspection has no codes of its own: it answers with RFC 6749's).

use super::protocol::protocol_enum;

protocol_enum! {
    /// An OAuth error code: RFC 6749 (§5.2, and §4.1.2.1 for the server's own failures),
    /// RFC 6750 §3.1 and RFC 7591 §3.2.2. Which status goes with it is `http/error.rs`'s.
    #[non_exhaustive]
    OAuthErrorCode, "an OAuth error code" {
        /// The request is malformed: a missing, repeated or bad parameter, or a body that
        /// cannot be read (RFC 6749 §5.2).
        InvalidRequest = "invalid_request",
        /// Client authentication failed, or the request has no client certificate where one
        /// is needed (RFC 6749 §5.2).
        InvalidClient = "invalid_client",
        /// The client may not use this grant type (RFC 6749 §5.2).
        UnauthorizedClient = "unauthorized_client",
        /// The grant type is not one this server supports (RFC 6749 §5.2).
        UnsupportedGrantType = "unsupported_grant_type",
        /// A scope beyond what the client may have (RFC 6749 §5.2).
        InvalidScope = "invalid_scope",
        /// The caller is known but not allowed: here, a certificate that is not an admin's
        /// (RFC 6749 §4.1.2.1).
        AccessDenied = "access_denied",
        /// A failure that is the server's, not the client's (RFC 6749 §4.1.2.1).
        ServerError = "server_error",
        /// The server cannot answer now (the database, a full pipeline); retry later
        /// (RFC 6749 §4.1.2.1).
        TemporarilyUnavailable = "temporarily_unavailable",
        /// The bearer token is missing, malformed, expired, revoked or not this client's
        /// (RFC 6750 §3.1).
        InvalidToken = "invalid_token",
        /// A redirect URI that the software statement does not allow (RFC 7591 §3.2.2).
        InvalidRedirectUri = "invalid_redirect_uri",
        /// A client metadata field, or the request that carries them, is not valid
        /// (RFC 7591 §3.2.2).
        InvalidClientMetadata = "invalid_client_metadata",
        /// The software statement is not valid (RFC 7591 §3.2.2).
        InvalidSoftwareStatement = "invalid_software_statement",
        /// The software statement is valid but not approved here (RFC 7591 §3.2.2).
        UnapprovedSoftwareStatement = "unapproved_software_statement",
    }
}
