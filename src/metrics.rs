//! Prometheus metrics, served at `GET /metrics` in the Prometheus text format.
//!
//! Built on the `metrics` facade with `metrics-exporter-prometheus` as the recorder. Labels
//! come from fixed sets (route templates, error codes, outcomes), never from a client_id, so
//! that the number of series stays bounded.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Request latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Installs the process-wide recorder (once; later calls reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder was installed first (a test harness).
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// The current metrics, rendered.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "dcr_http_requests_total",
        "HTTP requests by route, method and status"
    );
    describe_counter!(
        "dcr_event_deliveries_total",
        "Event delivery attempts to webhooks by outcome (delivered, retry, failed)"
    );
    describe_gauge!(
        "dcr_events_pending",
        "Event deliveries waiting (all replicas share the count)"
    );
    describe_gauge!(
        "dcr_events_oldest_pending_age_seconds",
        "Age of the oldest pending event delivery"
    );
    describe_histogram!(
        "dcr_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route and method"
    );
    describe_counter!(
        "dcr_registrations_total",
        "Registrations and updates by action, outcome, error code and DCR version"
    );
    describe_counter!(
        "dcr_token_requests_refused_total",
        "Refused token requests by error code and, for invalid_client, the reason"
    );
    describe_counter!(
        "dcr_tokens_issued_total",
        "Access tokens issued, by client authentication method"
    );
    describe_counter!(
        "dcr_tokens_revoked_total",
        "Access tokens revoked, by reason"
    );
    describe_counter!(
        "dcr_jwks_fetches_total",
        "JWKS fetches by source host and outcome"
    );
    describe_counter!(
        "dcr_jwks_cache_total",
        "JWKS lookups answered from the cache (hit) or not (miss)"
    );
    describe_gauge!(
        "dcr_db_pool_connections",
        "Database pool connections by state (in_use, idle)"
    );
    describe_histogram!(
        "dcr_db_wait_seconds",
        metrics::Unit::Seconds,
        "Time a request-path read waited for a pooled database connection"
    );
    describe_counter!(
        "dcr_tls_handshakes_total",
        "TLS handshakes by listener (tpp, admin) and outcome (ok, refused, failed, timeout)"
    );
    describe_counter!(
        "dcr_rate_limited_total",
        "Requests refused with 429 by a per-certificate rate limit, by scope"
    );
    describe_counter!(
        "dcr_shed_requests_total",
        "Requests answered 503 at once because their pool of pipeline slots was full, by pool \
         (all, anonymous)"
    );
    describe_counter!(
        "dcr_rate_limit_evictions_total",
        "Rate-limit keys evicted at a limiter's key cap, by whether their bucket was full again"
    );
    describe_counter!(
        "dcr_body_timeouts_total",
        "Request bodies not complete by server.body_timeout_ms (answered 408, connection closed)"
    );
    describe_counter!(
        "dcr_ocsp_checks_total",
        "OCSP checks of client certificates per request, by outcome (good, revoked, unknown, \
         unavailable, invalid, no_responder, no_issuer) and decision (allowed, refused)"
    );
    describe_counter!(
        "dcr_ocsp_cache_total",
        "OCSP answers looked up per request, by result (hit, miss)"
    );
    describe_counter!(
        "dcr_crl_refreshes_total",
        "Fetches of server.tls.crl URLs, by outcome (ok, failed)"
    );
    describe_gauge!(
        "dcr_crl_age_seconds",
        "Seconds since each server.tls.crl URL was last fetched successfully (-1: never)"
    );
    describe_gauge!(
        "dcr_crl_next_update_timestamp_seconds",
        "Unix time of the nextUpdate of each server.tls.crl URL's current CRL"
    );
    describe_counter!(
        "dcr_crl_stale_handshakes_total",
        "Handshakes whose CA's URL CRL is past nextUpdate + clock_skew (or never fetched), by \
         decision (allowed, refused)"
    );
    describe_counter!(
        "dcr_revoked_keys_checks_total",
        "Checks against an SSA's software_jwks_revoked_endpoint, by outcome"
    );
    describe_counter!(
        "dcr_config_reloads_total",
        "Config reloads (SIGHUP) by outcome: ok, or failed (the old config stays)"
    );
    describe_gauge!(
        "dcr_config_last_reload_success_timestamp_seconds",
        "Unix time of the last config reload that was applied"
    );
    describe_counter!(
        "dcr_as_calls_total",
        "Calls to the bank's authorization server (rfc7591 mode), by endpoint (discovery, \
         register, update, delete, introspect) and outcome (ok, refused, unavailable)"
    );
    describe_histogram!(
        "dcr_as_call_duration_seconds",
        "Time of each call to the bank's authorization server, by endpoint"
    );
    describe_gauge!(
        "dcr_as_compensations_pending",
        "Clients still to be deleted at the bank's authorization server (an AS client that \
         could not be committed here, or an operator's delete), as the last sweep counted"
    );
    describe_counter!(
        "dcr_as_compensations_total",
        "Deletes at the bank's authorization server that keep the two systems agreeing, by \
         outcome (done, retry)"
    );
    describe_counter!(
        "dcr_as_introspection_cache_total",
        "Management tokens judged from the introspection cache (hit) or at the AS (miss)"
    );
}

/// One finished HTTP request.
pub fn request(route: &str, method: &str, status: u16, seconds: f64) {
    counter!("dcr_http_requests_total", "route" => route.to_string(), "method" => method.to_string(), "status" => status.to_string())
        .increment(1);
    histogram!("dcr_http_request_duration_seconds", "route" => route.to_string(), "method" => method.to_string())
        .record(seconds);
}

/// One registration or update: `outcome` is `success` or `refused`; `error` the error code;
/// `version` the DCR version of the path.
pub fn registration(
    action: &'static str,
    outcome: &'static str,
    error: &'static str,
    version: crate::domain::SpecVersion,
) {
    counter!("dcr_registrations_total", "action" => action, "outcome" => outcome, "error" => error, "version" => version.as_str())
        .increment(1);
}

/// One check against the directory's revoked keys: `clean`, `signing_key_revoked`,
/// `transport_key_revoked`, `unavailable` (allowed) or `refused_location`.
pub fn revoked_keys_check(outcome: &'static str) {
    counter!("dcr_revoked_keys_checks_total", "outcome" => outcome).increment(1);
}

/// One OCSP check of a request's client certificate.
pub fn ocsp_check(outcome: &'static str, refused: bool) {
    let decision = if refused { "refused" } else { "allowed" };
    counter!("dcr_ocsp_checks_total", "outcome" => outcome, "decision" => decision).increment(1);
}

pub fn ocsp_cache(hit: bool) {
    counter!("dcr_ocsp_cache_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// One fetch of a CRL URL (`url` is the operator's configured URL: a bounded set).
pub fn crl_refresh(url: &str, ok: bool) {
    counter!("dcr_crl_refreshes_total", "url" => url.to_string(), "outcome" => if ok { "ok" } else { "failed" })
        .increment(1);
}

/// The age of a CRL URL's current CRL (`-1`: never fetched) and its `nextUpdate`.
pub fn crl_age(url: &str, age_secs: i64, next_update: Option<i64>) {
    gauge!("dcr_crl_age_seconds", "url" => url.to_string()).set(age_secs as f64);
    if let Some(next) = next_update {
        gauge!("dcr_crl_next_update_timestamp_seconds", "url" => url.to_string()).set(next as f64);
    }
}

/// A handshake whose CA's URL CRL is stale.
pub fn crl_stale_handshake(refused: bool) {
    let decision = if refused { "refused" } else { "allowed" };
    counter!("dcr_crl_stale_handshakes_total", "decision" => decision).increment(1);
}

/// One delivery attempt of an event to a webhook: `delivered`, `retry` (failed, tried again)
/// or `failed` (given up).
pub fn event_delivery(outcome: &'static str) {
    counter!("dcr_event_deliveries_total", "outcome" => outcome).increment(1);
}

/// Pending deliveries, and the age of the oldest one's event (0 when none).
pub fn events_pending(count: i64, oldest_age_secs: i64) {
    gauge!("dcr_events_pending").set(count as f64);
    gauge!("dcr_events_oldest_pending_age_seconds").set(oldest_age_secs as f64);
}

/// A request refused by a rate limit of `scope` (`request`, `registration`, `token`).
pub fn rate_limited(scope: &'static str) {
    counter!("dcr_rate_limited_total", "scope" => scope).increment(1);
}

/// A request shed because its pool of pipeline slots was full: `all`
/// (`server.max_pending_requests`) or `anonymous` (`server.max_pending_anonymous`).
pub fn shed(pool: &'static str) {
    counter!("dcr_shed_requests_total", "pool" => pool).increment(1);
}

/// A rate-limit key evicted at the limiter's key cap; `idle`: its bucket was full again.
pub fn rate_limit_eviction(idle: bool) {
    counter!("dcr_rate_limit_evictions_total", "idle" => if idle { "true" } else { "false" })
        .increment(1);
}

/// A request body that had not arrived by `server.body_timeout_ms`.
pub fn body_timed_out() {
    counter!("dcr_body_timeouts_total").increment(1);
}

pub fn token_issued(method: &str) {
    counter!("dcr_tokens_issued_total", "method" => method.to_string()).increment(1);
}

/// A refused token request: the error code and, for `invalid_client`, what failed (a fixed
/// label, which the public answer does not tell).
pub fn token_refused(error: &'static str, reason: &'static str) {
    counter!("dcr_token_requests_refused_total", "error" => error, "reason" => reason).increment(1);
}

pub fn token_revoked(reason: &'static str) {
    counter!("dcr_tokens_revoked_total", "reason" => reason).increment(1);
}

pub fn jwks_fetch(host: &str, outcome: &'static str) {
    counter!("dcr_jwks_fetches_total", "source" => host.to_string(), "outcome" => outcome)
        .increment(1);
}

pub fn jwks_cache(hit: bool) {
    counter!("dcr_jwks_cache_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
}

pub fn db_pool(in_use: usize, idle: usize) {
    gauge!("dcr_db_pool_connections", "state" => "in_use").set(in_use as f64);
    gauge!("dcr_db_pool_connections", "state" => "idle").set(idle as f64);
}

pub fn db_wait(seconds: f64) {
    histogram!("dcr_db_wait_seconds").record(seconds);
}

/// One TLS handshake on the listener `listener` (`tpp`, `admin`).
pub fn handshake(listener: &'static str, outcome: &'static str) {
    counter!("dcr_tls_handshakes_total", "listener" => listener, "outcome" => outcome).increment(1);
}

/// One config reload. A failed one changed nothing.
pub fn reload(applied: bool) {
    let outcome = if applied { "ok" } else { "failed" };
    counter!("dcr_config_reloads_total", "outcome" => outcome).increment(1);
    if applied {
        gauge!("dcr_config_last_reload_success_timestamp_seconds").set(crate::clock::now() as f64);
    }
}

/// One call to the bank's authorization server: `endpoint` (discovery, register, update,
/// delete, introspect), `outcome` (ok, refused, unavailable), and how long it took.
pub fn as_call(endpoint: &'static str, outcome: &'static str, seconds: f64) {
    counter!("dcr_as_calls_total", "endpoint" => endpoint, "outcome" => outcome).increment(1);
    histogram!("dcr_as_call_duration_seconds", "endpoint" => endpoint).record(seconds);
}

/// Compensations (deletes at the AS) still pending.
pub fn as_compensations_pending(count: i64) {
    gauge!("dcr_as_compensations_pending").set(count as f64);
}

/// One compensation attempt: `done` or `retry`.
pub fn as_compensation(outcome: &'static str) {
    counter!("dcr_as_compensations_total", "outcome" => outcome).increment(1);
}

/// A management token judged from the introspection cache (`hit`) or at the AS.
pub fn as_introspection_cache(hit: bool) {
    let outcome = if hit { "hit" } else { "miss" };
    counter!("dcr_as_introspection_cache_total", "outcome" => outcome).increment(1);
}
