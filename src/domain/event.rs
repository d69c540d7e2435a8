//! The provisioning events' vocabulary.

use super::protocol::protocol_enum;

protocol_enum! {
    /// What a provisioning event reports: its CloudEvents `type`, and the names
    /// `[[events.webhook]] types` lists.
    EventType, "an event type" {
        Registered = "client.registered",
        Updated = "client.updated",
        Deleted = "client.deleted",
        Disabled = "client.disabled",
        Enabled = "client.enabled",
        TokensRevoked = "client.tokens_revoked",
    }
}
