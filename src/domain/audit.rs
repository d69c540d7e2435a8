//! The audit log's vocabulary.

use super::protocol::protocol_enum;

protocol_enum! {
    /// What an audit record is about. A client deletion has one name whoever deletes it (the
    /// TPP through the API or an operator through the CLI, whose records say
    /// `{"by":"operator cli"}` in their detail).
    AuditAction, "an audit action" {
        Register = "register",
        Update = "update",
        Delete = "delete",
        TokenIssue = "token.issue",
        TokenRevoke = "token.revoke",
        Disable = "client.disable",
        Enable = "client.enable",
    }
}

protocol_enum! {
    /// How the audited action ended.
    AuditOutcome, "an audit outcome" {
        Success = "success",
        Refused = "refused",
    }
}
