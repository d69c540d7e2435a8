//! The CloudEvents 1.0 document (structured JSON mode) of a stored event.

use serde_json::{Value, json};

use crate::store::EventRecord;

/// The media type of a structured-mode CloudEvent in JSON.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The event as CloudEvents JSON. `source` is the server's issuer; `subject` the client_id.
pub fn document(event: &EventRecord, source: &str) -> Value {
    let time = crate::clock::rfc3339(event.at);
    let mut data = json!({
        "client_id": event.client_id,
        "software_id": event.software_id,
        "org_id": event.org_id,
        "dcr_version": event.dcr_version,
        "action": event.action,
        "time": time,
    });
    if let Some(id) = &event.interaction_id {
        data["x_fapi_interaction_id"] = json!(id);
    }
    if let Some(changed) = event
        .changed
        .as_deref()
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
    {
        data["changed_fields"] = changed;
    }
    json!({
        "specversion": "1.0",
        "id": event.event_id,
        "source": source,
        "type": event.event_type,
        "subject": event.client_id,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_is_a_cloudevent_with_its_changed_fields() {
        let event = EventRecord {
            id: 7,
            event_id: "0b7c".into(),
            event_type: crate::domain::EventType::Updated,
            at: 1_796_000_000,
            client_id: "c1".into(),
            software_id: "sw".into(),
            org_id: "org".into(),
            dcr_version: crate::domain::SpecVersion::V3_4,
            action: crate::domain::AuditAction::Update,
            interaction_id: Some("i-1".into()),
            changed: Some(r#"["scope"]"#.into()),
        };
        let doc = document(&event, "https://bank.example");
        assert_eq!(doc["specversion"], "1.0");
        assert_eq!(doc["id"], "0b7c");
        assert_eq!(doc["type"], "client.updated");
        assert_eq!(doc["source"], "https://bank.example");
        assert_eq!(doc["subject"], "c1");
        assert_eq!(doc["time"], "2026-11-30T00:53:20Z");
        assert_eq!(doc["data"]["changed_fields"], json!(["scope"]));
        assert_eq!(doc["data"]["x_fapi_interaction_id"], "i-1");
        assert_eq!(doc["data"]["dcr_version"], "3.4");
        let registered = EventRecord {
            changed: None,
            interaction_id: None,
            ..event
        };
        let doc = document(&registered, "s");
        assert!(doc["data"].get("changed_fields").is_none());
        assert!(doc["data"].get("x_fapi_interaction_id").is_none());
    }
}
