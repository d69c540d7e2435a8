//! Delivering provisioning events to webhooks, at least once, in order per (webhook, client).
//!
//! Every replica runs this loop. Each second it leases the due deliveries (the store hands a
//! worker only the oldest pending delivery of each (webhook, client), and never one another
//! worker holds), sends them concurrently as signed CloudEvents, and ends each lease with the
//! outcome: delivered, tried again later (exponential backoff with jitter), or failed once
//! past `events.max_age_secs`. A replica that dies mid-delivery leaves its lease to expire;
//! another worker (or this one after a restart) then sends the event again.

use std::sync::Arc;
use std::time::Duration;

use crate::events::{cloudevent, jitter, retry_delay};
use crate::http::{AppState, SharedState};
use crate::material::Webhook;
use crate::store::{DeliveryResult, EventStore, LeasedDelivery};

const TICK: Duration = Duration::from_secs(1);
/// Deliveries leased (and sent concurrently) per tick at most.
const BATCH: i64 = 32;

/// Starts the loop for the state of the running config.
pub fn spawn(state: SharedState) {
    let owner = uuid::Uuid::new_v4().to_string();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let app = state.current();
            // Pending deliveries of a webhook no longer configured are worked on too, so that
            // they expire into `failed` rather than wait forever.
            let pending = report_pending(&app).await;
            if !app.webhooks.is_empty() || pending > 0 {
                deliver_due(&app, &owner).await;
            }
        }
    });
}

/// Sets the pending gauges; returns how many deliveries are pending (0 if unknown).
async fn report_pending(app: &AppState) -> i64 {
    match app.store.pending_summary().await {
        Ok((count, oldest)) => {
            let age = if count > 0 {
                (crate::clock::now() - oldest).max(0)
            } else {
                0
            };
            crate::metrics::events_pending(count, age);
            count
        }
        Err(e) => {
            tracing::debug!(error = %e, "pending events not counted");
            0
        }
    }
}

/// Leases what is due and sends it; returns how many deliveries it worked on.
async fn deliver_due(app: &Arc<AppState>, owner: &str) -> usize {
    // Long enough for the slowest webhook's timeout, twice over.
    let slowest = app.webhooks.iter().map(|w| w.timeout).max().unwrap_or(TICK);
    let lease = i64::try_from((slowest * 2 + Duration::from_secs(5)).as_secs()).unwrap_or(60);
    let until = crate::clock::now() + lease;
    let leased = match app.store.lease_deliveries(owner, until, BATCH).await {
        Ok(leased) => leased,
        Err(e) => {
            tracing::warn!(error = %e, "event deliveries not leased; retried next second");
            return 0;
        }
    };
    let count = leased.len();
    let mut sends = tokio::task::JoinSet::new();
    for delivery in leased {
        let (app, owner) = (app.clone(), owner.to_string());
        sends.spawn(async move { deliver(&app, &owner, delivery).await });
    }
    while sends.join_next().await.is_some() {}
    count
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
