//! Rate limits per client certificate (GCRA, counted by `governor`) and load shedding, both
//! answered before any signature is verified or the database is touched.
//!
//! | scope | key | config |
//! |---|---|---|
//! | any request | certificate (its SHA-256) | `requests_per_second` |
//! | POST and PUT register | certificate | `registrations_per_minute` |
//! | `/token` | (certificate, claimed client_id) | `token_requests_per_second` |
//!
//! A claimed client_id alone is never a key (a form field proves nothing), so one certificate
//! holder cannot drain another client's bucket. Requests without a certificate are not limited.
//! State is per process: N replicas allow N times the rate.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::error::ApiError;
use crate::config::{RateLimitConfig, ServerConfig};

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;
/// A certificate, by the SHA-256 of its DER (no allocation per check).
type Thumbprint = [u8; 32];

/// Checks between two sweeps of idle keys (their state is dropped; memory stays bounded).
const SWEEP_EVERY: u64 = 4096;

/// The limiters and the pending-request count of one configuration.
pub struct Limits {
    pub config: RateLimitConfig,
    requests: Keyed<Thumbprint>,
    registrations: Keyed<Thumbprint>,
    tokens: Keyed<(Thumbprint, String)>,
    clock: DefaultClock,
    checks: AtomicU64,
    pending: AtomicUsize,
    max_pending: usize,
}

fn quota(rate: u32, per: Duration, burst: f64) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let depth = (f64::from(rate.get()) * burst)
        .ceil()
        .clamp(1.0, f64::from(u32::MAX)) as u32;
    let period = per / rate.get();
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(rate))
        .allow_burst(NonZeroU32::new(depth).unwrap_or(NonZeroU32::MIN))
}

impl Limits {
    pub fn new(server: &ServerConfig) -> Self {
        let c = &server.rate_limit;
        Self {
            requests: RateLimiter::keyed(quota(
                c.requests_per_second,
                Duration::from_secs(1),
                c.burst,
            )),
            registrations: RateLimiter::keyed(quota(
                c.registrations_per_minute,
                Duration::from_secs(60),
                c.burst,
            )),
            tokens: RateLimiter::keyed(quota(
                c.token_requests_per_second,
                Duration::from_secs(1),
                c.burst,
            )),
            config: c.clone(),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            max_pending: server.max_pending_requests,
        }
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &Keyed<K>,
        key: &K,
        scope: &'static str,
    ) -> Result<(), ApiError> {
        if !self.config.enable {
            return Ok(());
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        match limiter.check_key(key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                crate::metrics::rate_limited(scope);
                Err(ApiError::too_many_requests(wait))
            }
        }
    }

    /// Any request over a certificate.
    pub fn request(&self, certificate: &Thumbprint) -> Result<(), ApiError> {
        self.check(&self.requests, certificate, "request")
    }

    /// A registration or update over a certificate.
    pub fn registration(&self, certificate: &Thumbprint) -> Result<(), ApiError> {
        self.check(&self.registrations, certificate, "registration")
    }

    /// A token request over a certificate, for a claimed client_id.
    pub fn token(&self, certificate: &Thumbprint, claimed_client_id: &str) -> Result<(), ApiError> {
        if !self.config.enable {
            return Ok(());
        }
        let key = (*certificate, claimed_client_id.to_string());
        self.check(&self.tokens, &key, "token")
    }

    /// A request entering the registration or token pipeline: 503 at once when
    /// `max_pending_requests` are in it already. The guard leaves when dropped.
    pub fn enter(&self) -> Result<Pending<'_>, ApiError> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        let guard = Pending(&self.pending);
        if before >= self.max_pending {
            crate::metrics::shed();
            return Err(ApiError::unavailable());
        }
        Ok(guard)
    }
}

/// A request counted as pending until dropped.
pub struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Thumbprint = [1; 32];
    const B: Thumbprint = [2; 32];

    fn limits(toml: &str) -> Limits {
        let text =
            crate::config::tests::MINIMAL.replace("[server.tls]", &format!("{toml}\n[server.tls]"));
        let config = crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        Limits::new(&config.server)
    }

    #[test]
    fn buckets_are_per_key_and_as_deep_as_rate_times_burst() {
        let l = limits("rate_limit.requests_per_second = 2\nrate_limit.burst = 1.5");
        for _ in 0..3 {
            assert!(l.request(&A).is_ok());
        }
        let refused = l.request(&A).unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert!(
            l.request(&B).is_ok(),
            "another certificate has its own bucket"
        );
        let t = limits("rate_limit.token_requests_per_second = 1\nrate_limit.burst = 1.0");
        assert!(t.token(&A, "c1").is_ok());
        assert!(t.token(&A, "c1").is_err());
        assert!(t.token(&A, "c2").is_ok(), "per (certificate, client)");
        assert!(t.token(&B, "c1").is_ok(), "per (certificate, client)");
        let off = limits(
            "rate_limit.enable = false\nrate_limit.requests_per_second = 1\nrate_limit.burst = 1.0",
        );
        for _ in 0..10 {
            assert!(off.request(&A).is_ok());
        }
    }

    #[test]
    fn pending_requests_are_bounded() {
        let l = limits("max_pending_requests = 2");
        let a = l.enter().unwrap();
        let _b = l.enter().unwrap();
        assert_eq!(l.enter().err().map(|e| e.status.as_u16()), Some(503));
        drop(a);
        assert!(l.enter().is_ok());
    }
}
