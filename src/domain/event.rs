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

protocol_enum! {
    /// Where the delivery of an event to one webhook stands.
    DeliveryState, "a delivery state" {
        /// Not delivered yet; tried again when due.
        Pending = "pending",
        Delivered = "delivered",
        /// Given up (past `events.max_age_secs`); an operator may retry it.
        Failed = "failed",
    }
}
