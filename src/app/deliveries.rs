//! Delivering provisioning events to webhooks, at least once, in order per (webhook, client).
//!
//! Every replica runs this loop. Each second it asks which webhooks have deliveries due and,
//! for each, leases what is due (the store hands a worker only the oldest pending delivery of
//! each (webhook, client), and never one another worker holds), up to the webhook's free
//! slots. Each leased delivery is sent on its own task as a signed CloudEvent, and its lease is
//! ended as soon as its send is: delivered, tried again later (exponential backoff with
//! jitter), or failed once past `events.max_age_secs`. Nothing waits for a batch, so a webhook
//! that stalls holds only its own slots and leases; the others go on. A (webhook, client) gets
//! at most one delivery a tick: its next event is leased on the tick after the last one ended.
//! A replica that dies mid-delivery leaves its lease to expire; another worker (or this one
//! after a restart) then sends the event again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::events::{cloudevent, jitter, retry_delay};
use crate::http::{AppState, SharedState};
use crate::material::Webhook;
use crate::store::{DeliveryResult, EventStore, LeasedDelivery};

const TICK: Duration = Duration::from_secs(1);
/// Deliveries of one webhook in flight at most (sent concurrently).
const PER_WEBHOOK: usize = 32;

/// Starts the loop for the state of the running config.
pub fn spawn(state: SharedState) {
    let replica = uuid::Uuid::new_v4().to_string();
    tokio::spawn(async move {
        let in_flight = InFlight::default();
        let mut leases = 0u64;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let app = state.current();
            // Pending deliveries of a webhook no longer configured are worked on too, so that
            // they expire into `failed` rather than wait forever.
            if report_pending(&app).await == Some(0) {
                continue;
            }
            let due = match app.store.due_webhooks().await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "event deliveries not leased; retried next second");
                    continue;
                }
            };
            for webhook in due {
                let free = in_flight.free(&webhook);
                if free == 0 {
                    continue;
                }
                // Each lease has an owner of its own, so that its rows are read back alone.
                leases += 1;
                let owner = format!("{replica}/{leases}");
                lease_and_send(&app, &owner, &webhook, free, &in_flight).await;
            }
        }
    });
}

/// How many deliveries of each webhook are being sent now.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<String, usize>>>);

impl InFlight {
    /// How many more of `webhook`'s deliveries may start.
    fn free(&self, webhook: &str) -> usize {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        PER_WEBHOOK.saturating_sub(map.get(webhook).copied().unwrap_or(0))
    }

    /// Takes a slot of `webhook` until the returned guard is dropped (also by a panic).
    fn take(&self, webhook: &str) -> Slot {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(webhook.to_string()).or_default() += 1;
        Slot {
            in_flight: self.clone(),
            webhook: webhook.to_string(),
        }
    }
}

/// One delivery in flight.
struct Slot {
    in_flight: InFlight,
    webhook: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.in_flight.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.webhook) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.webhook);
            }
        }
    }
}

/// Sets the pending gauges; returns how many deliveries are pending (None if unknown).
async fn report_pending(app: &AppState) -> Option<i64> {
    match app.store.pending_summary().await {
        Ok((count, oldest)) => {
            let age = if count > 0 {
                (crate::clock::now() - oldest).max(0)
            } else {
                0
            };
            crate::metrics::events_pending(count, age);
            Some(count)
        }
        Err(e) => {
            tracing::debug!(error = %e, "pending events not counted");
            None
        }
    }
}

/// How long a lease of `webhook`'s deliveries lasts: its timeout twice over, and 5 s (a
/// webhook no longer configured fails at once).
fn lease_secs(app: &AppState, webhook: &str) -> i64 {
    let timeout = app
        .webhooks
        .iter()
        .find(|w| w.url.as_str() == webhook)
        .map_or(TICK, |w| w.timeout);
    i64::try_from((timeout * 2 + Duration::from_secs(5)).as_secs()).unwrap_or(60)
}

/// Leases up to `free` due deliveries of `webhook` and starts sending each; returns at once.
async fn lease_and_send(
    app: &Arc<AppState>,
    owner: &str,
    webhook: &str,
    free: usize,
    in_flight: &InFlight,
) {
    let until = crate::clock::now() + lease_secs(app, webhook);
    let limit = i64::try_from(free).unwrap_or(i64::MAX);
    let leased = match app
        .store
        .lease_deliveries(owner, webhook, until, limit)
        .await
    {
        Ok(leased) => leased,
        Err(e) => {
            tracing::warn!(error = %e, webhook, "event deliveries not leased; retried next second");
            return;
        }
    };
    for delivery in leased {
        let slot = in_flight.take(webhook);
        let (app, owner) = (app.clone(), owner.to_string());
        tokio::spawn(async move {
            deliver(&app, &owner, delivery).await;
            drop(slot);
        });
    }
}

/// Sends one leased delivery and records how it went.
async fn deliver(app: &AppState, owner: &str, d: LeasedDelivery) {
    let now = crate::clock::now();
    let result = if now > d.expires_at {
        DeliveryResult::GiveUp {
            error: "not delivered within events.max_age_secs".into(),
        }
    } else {
        let sent = match app.webhooks.iter().find(|w| w.url.as_str() == d.webhook) {
            Some(webhook) => send(webhook, &d, app.config.server.issuer.as_str()).await,
            // Removed from the config: kept (and retried) until it expires.
            None => Err("the webhook is no longer configured".to_string()),
        };
        match sent {
            Ok(()) => DeliveryResult::Delivered,
            Err(error) => after_failure(&d, now, error),
        }
    };
    let outcome = match &result {
        DeliveryResult::Delivered => "delivered",
        DeliveryResult::RetryAt { .. } => "retry",
        DeliveryResult::GiveUp { .. } => "failed",
    };
    crate::metrics::event_delivery(outcome);
    match &result {
        DeliveryResult::Delivered => tracing::info!(
            event_id = %d.event.event_id,
            event_type = %d.event.event_type,
            client_id = %d.event.client_id,
            webhook = %d.webhook,
            "event delivered"
        ),
        DeliveryResult::RetryAt { next_at, error } => tracing::warn!(
            event_id = %d.event.event_id,
            webhook = %d.webhook,
            attempts = d.attempts + 1,
            retry_in_secs = next_at - now,
            error = %error,
            "event not delivered; retried later"
        ),
        DeliveryResult::GiveUp { error } => tracing::error!(
            event_id = %d.event.event_id,
            webhook = %d.webhook,
            attempts = d.attempts + 1,
            error = %error,
            "event not delivered; marked failed (dcr-server events retry)"
        ),
    }
    match app
        .store
        .finish_delivery(d.delivery_id, owner, &result)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            event_id = %d.event.event_id,
            "the lease of a delivery was lost (it took longer than the lease); another worker sends it again"
        ),
        Err(e) => {
            tracing::warn!(error = %e, event_id = %d.event.event_id, "delivery outcome not recorded; the lease expires and it is sent again")
        }
    }
}

/// Tried again after the backoff, unless that is past the delivery's expiry.
fn after_failure(d: &LeasedDelivery, now: i64, error: String) -> DeliveryResult {
    let delay = retry_delay(d.attempts + 1, jitter());
    let next_at = now + i64::try_from(delay.as_secs()).unwrap_or(i64::MAX).max(1);
    if next_at > d.expires_at {
        DeliveryResult::GiveUp { error }
    } else {
        DeliveryResult::RetryAt { next_at, error }
    }
}

/// POSTs the event as a signed CloudEvent; `Ok` on any 2xx.
async fn send(webhook: &Webhook, d: &LeasedDelivery, source: &str) -> Result<(), String> {
    let body = serde_json::to_vec(&cloudevent::document(&d.event, source))
        .map_err(|e| format!("the event could not be serialised: {e}"))?;
    let timestamp = crate::clock::now();
    let signature = webhook.secret.sign(&d.event.event_id, timestamp, &body);
    let response = webhook
        .client
        .post(webhook.url.clone())
        .header(reqwest::header::CONTENT_TYPE, cloudevent::CONTENT_TYPE)
        .header("webhook-id", &d.event.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| crate::pki::outbound::error_chain(&e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each webhook has its own slots; a finished (or panicked) send gives its slot back.
    #[test]
    fn webhooks_have_slots_of_their_own() {
        let in_flight = InFlight::default();
        let slow: Vec<Slot> = (0..PER_WEBHOOK).map(|_| in_flight.take("slow")).collect();
        assert_eq!(in_flight.free("slow"), 0);
        assert_eq!(in_flight.free("fast"), PER_WEBHOOK);
        let fast = in_flight.take("fast");
        assert_eq!(in_flight.free("fast"), PER_WEBHOOK - 1);
        drop(fast);
        assert_eq!(in_flight.free("fast"), PER_WEBHOOK);
        let panicked = std::thread::spawn({
            let in_flight = in_flight.clone();
            move || {
                let _slot = in_flight.take("fast");
                panic!("a send panicked");
            }
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(in_flight.free("fast"), PER_WEBHOOK);
        drop(slow);
        assert_eq!(in_flight.free("slow"), PER_WEBHOOK);
    }
}
