//! Rate limits per client certificate (GCRA, counted by `governor`) and the pipeline's slots
//! (load shedding), both answered before any signature is verified or the database is touched.
//!
//! | scope | key | config |
//! |---|---|---|
//! | any request | certificate (its SHA-256) | `requests_per_second` |
//! | POST and PUT register | certificate | `registrations_per_minute` |
//! | `/token` | SHA-256 of (certificate, claimed client_id) | `token_requests_per_second` |
//!
//! A claimed client_id alone is never a key (a form field proves nothing), so one certificate
//! holder cannot drain another client's bucket. Requests without a certificate are not limited.
//! State is per process: N replicas allow N times the rate.
//!
//! Memory is bounded whatever clients send: every key is 32 bytes (a claimed client_id may be
//! 64 KiB; only its hash is kept), each limiter holds at most [`MAX_KEYS`] keys, and
//! [`Limits::sweep`] (every [`SWEEP_EVERY`], `app/jobs.rs`) drops the keys whose bucket is full
//! again. At the cap a new key evicts the least recently used one instead of being refused.
//! That key is idle whenever any key is (idleness is the time since a key's last use, and the
//! least recently used key has the oldest); when none is, it loses its state and starts again
//! with a full bucket, which is counted (`dcr_rate_limit_evictions_total{idle="false"}`).
//!
//! The pipeline (registration and `/token`) has `max_pending_requests` slots, of which
//! requests without a client certificate may hold `max_pending_anonymous`. A request takes its
//! slot only once its body has been read ([`SlotTicket`], redeemed by
//! [`PendingBody::read`](super::extract::PendingBody::read)), so a client that sends its body
//! slowly holds a connection, never a slot, and `server.body_timeout_ms` ends it.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{Quota, RateLimiter};
use hashlink::LinkedHashMap;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::config::{RateLimitConfig, ServerConfig};

/// A limiter's key: a certificate by the SHA-256 of its DER, or the SHA-256 of a certificate
/// and a claimed client_id. Fixed size, whatever the client sent.
type Key = [u8; 32];
type Keyed = RateLimiter<Key, BoundedKeys, DefaultClock>;

/// Keys one limiter holds at most (about 100 bytes each).
pub const MAX_KEYS: usize = 100_000;
/// How often every limiter drops its idle keys.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A limiter's state: each key's GCRA state, in order of last use, at most `cap` keys.
#[derive(Debug)]
pub struct BoundedKeys {
    keys: Mutex<LinkedHashMap<Key, KeyState>>,
    cap: usize,
    /// A key unused for this long has a full bucket again (the quota's refill time).
    idle_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct KeyState {
    /// The GCRA theoretical arrival time, as `governor` keeps it.
    tat: Nanos,
    used: Instant,
}

impl BoundedKeys {
    fn new(cap: usize, idle_after: Duration) -> Self {
        Self {
            keys: Mutex::new(LinkedHashMap::new()),
            cap: cap.max(1),
            idle_after,
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, LinkedHashMap<Key, KeyState>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StateStore for BoundedKeys {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let now = Instant::now();
        let mut keys = self.keys();
        // A key's use, allowed or not, makes it the most recently used.
        let previous = keys.to_back(key).map(|state| state.tat);
        let (outcome, tat) = f(previous)?;
        match keys.get_mut(key) {
            Some(state) => *state = KeyState { tat, used: now },
            None => {
                if keys.len() >= self.cap
                    && let Some((_, oldest)) = keys.pop_front()
                {
                    let idle = now.duration_since(oldest.used) >= self.idle_after;
                    crate::metrics::rate_limit_eviction(idle);
                }
                keys.insert(*key, KeyState { tat, used: now });
            }
        }
        Ok(outcome)
    }
}

impl ShrinkableKeyedStateStore<Key> for BoundedKeys {
    fn retain_recent(&self, drop_below: Nanos) {
        self.keys()
            .retain(|_, state| state.tat.as_u64() >= drop_below.as_u64());
    }

    fn shrink_to_fit(&self) {
        self.keys().shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.keys().len()
    }

    fn is_empty(&self) -> bool {
        self.keys().is_empty()
    }
}

/// The limiters and the pipeline's slots of one configuration.
pub struct Limits {
    pub config: RateLimitConfig,
    requests: Keyed,
    registrations: Keyed,
    tokens: Keyed,
    clock: DefaultClock,
    slots: Slots,
}

/// The pipeline's slots: `all` taken of `max`, `anonymous` of them by requests without a
/// certificate, of `max_anonymous`.
struct Slots {
    all: AtomicUsize,
    anonymous: AtomicUsize,
    max: usize,
    max_anonymous: usize,
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

fn limiter(quota: Quota, cap: usize) -> Keyed {
    let store = BoundedKeys::new(cap, quota.burst_size_replenished_in());
    RateLimiter::new(quota, store, DefaultClock::default())
}

/// The `/token` key of a certificate and a claimed client_id.
fn token_key(certificate: &Key, claimed_client_id: &str) -> Key {
    let mut hash = Sha256::new();
    hash.update(certificate);
    hash.update(claimed_client_id.as_bytes());
    hash.finalize().into()
}

impl Limits {
    pub fn new(server: &ServerConfig) -> Self {
        Self::with_key_cap(server, MAX_KEYS)
    }

    fn with_key_cap(server: &ServerConfig, cap: usize) -> Self {
        let c = &server.rate_limit;
        Self {
            requests: limiter(
                quota(c.requests_per_second, Duration::from_secs(1), c.burst),
                cap,
            ),
            registrations: limiter(
                quota(c.registrations_per_minute, Duration::from_secs(60), c.burst),
                cap,
            ),
            tokens: limiter(
                quota(c.token_requests_per_second, Duration::from_secs(1), c.burst),
                cap,
            ),
            config: c.clone(),
            clock: DefaultClock::default(),
            slots: Slots {
                all: AtomicUsize::new(0),
                anonymous: AtomicUsize::new(0),
                max: server.max_pending_requests,
                max_anonymous: server.max_pending_anonymous,
            },
        }
    }

    /// Whether these limits are the ones `server` asks for (a reload keeps them then, so that
    /// it does not refill every bucket).
    pub fn built_from(&self, server: &ServerConfig) -> bool {
        self.config == server.rate_limit
            && self.slots.max == server.max_pending_requests
            && self.slots.max_anonymous == server.max_pending_anonymous
    }

    fn check(&self, limiter: &Keyed, key: &Key, scope: &'static str) -> Result<(), ApiError> {
        if !self.config.enable {
            return Ok(());
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
    pub fn request(&self, certificate: &Key) -> Result<(), ApiError> {
        self.check(&self.requests, certificate, "request")
    }

    /// A registration or update over a certificate.
    pub fn registration(&self, certificate: &Key) -> Result<(), ApiError> {
        self.check(&self.registrations, certificate, "registration")
    }

    /// A token request over a certificate, for a claimed client_id.
    pub fn token(&self, certificate: &Key, claimed_client_id: &str) -> Result<(), ApiError> {
        if !self.config.enable {
            return Ok(());
        }
        self.check(
            &self.tokens,
            &token_key(certificate, claimed_client_id),
            "token",
        )
    }

    /// Drops every limiter's keys whose bucket is full again (they are indistinguishable from
    /// new ones).
    pub fn sweep(&self) {
        for limiter in [&self.requests, &self.registrations, &self.tokens] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys held now, over all limiters.
    pub fn keys(&self) -> usize {
        [&self.requests, &self.registrations, &self.tokens]
            .iter()
            .map(|l| l.len())
            .sum()
    }

    /// A slot in the registration or token pipeline: 503 at once when `max_pending_requests`
    /// are taken, or (`anonymous`: no client certificate) `max_pending_anonymous` by requests
    /// without one. The slot is given back when dropped.
    pub fn take_slot(self: &Arc<Self>, anonymous: bool) -> Result<Slot, ApiError> {
        let s = &self.slots;
        let before = s.all.fetch_add(1, Ordering::AcqRel);
        let mut slot = Slot {
            limits: self.clone(),
            anonymous: false,
        };
        if before >= s.max {
            crate::metrics::shed("all");
            return Err(ApiError::unavailable());
        }
        if anonymous {
            let before = s.anonymous.fetch_add(1, Ordering::AcqRel);
            slot.anonymous = true;
            if before >= s.max_anonymous {
                crate::metrics::shed("anonymous");
                return Err(ApiError::unavailable());
            }
        }
        Ok(slot)
    }
}

/// A taken pipeline slot, given back when dropped.
pub struct Slot {
    limits: Arc<Limits>,
    anonymous: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let s = &self.limits.slots;
        s.all.fetch_sub(1, Ordering::AcqRel);
        if self.anonymous {
            s.anonymous.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A request's claim on a pipeline slot: the `limit` middleware puts one in the extensions of
/// every registration and token request and keeps a copy until the response is made;
/// [`PendingBody::read`](super::extract::PendingBody::read) redeems it once the body is in.
/// The slot is held from then until the response, and never while a client is still sending.
#[derive(Clone)]
pub struct SlotTicket {
    limits: Arc<Limits>,
    anonymous: bool,
    held: Arc<Mutex<Option<Slot>>>,
}

impl SlotTicket {
    pub fn new(limits: Arc<Limits>, anonymous: bool) -> Self {
        Self {
            limits,
            anonymous,
            held: Arc::new(Mutex::new(None)),
        }
    }

    /// Takes the slot (once; a second call keeps the first slot): 503 when none is free.
    pub fn redeem(&self) -> Result<(), ApiError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            *held = Some(self.limits.take_slot(self.anonymous)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Key = [1; 32];
    const B: Key = [2; 32];

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
        let l = Arc::new(limits("max_pending_requests = 2"));
        let a = l.take_slot(false).unwrap();
        let _b = l.take_slot(false).unwrap();
        assert_eq!(
            l.take_slot(false).err().map(|e| e.status.as_u16()),
            Some(503)
        );
        drop(a);
        assert!(l.take_slot(false).is_ok());
    }

    /// Requests without a certificate share `max_pending_anonymous` slots; with theirs
    /// taken, a request with a certificate still gets one.
    #[test]
    fn anonymous_requests_share_their_own_slots() {
        let l = Arc::new(limits(
            "max_pending_requests = 4\nmax_pending_anonymous = 2",
        ));
        let a = l.take_slot(true).unwrap();
        let _b = l.take_slot(true).unwrap();
        assert_eq!(
            l.take_slot(true).err().map(|e| e.status.as_u16()),
            Some(503)
        );
        let _c = l
            .take_slot(false)
            .expect("a certificate's request is not anonymous");
        drop(a);
        let _d = l
            .take_slot(true)
            .expect("a freed anonymous slot is free again");
        let _e = l.take_slot(false).expect("the fourth slot");
        assert_eq!(
            l.take_slot(false).err().map(|e| e.status.as_u16()),
            Some(503)
        );
    }

    /// A ticket takes its slot once, and gives it back when its last copy goes.
    #[test]
    fn a_ticket_holds_one_slot_until_its_copies_are_gone() {
        let l = Arc::new(limits("max_pending_requests = 1"));
        let ticket = SlotTicket::new(l.clone(), false);
        let copy = ticket.clone();
        copy.redeem().unwrap();
        copy.redeem().unwrap();
        assert!(l.take_slot(false).is_err());
        drop(copy);
        assert!(
            l.take_slot(false).is_err(),
            "the middleware's copy still holds it"
        );
        drop(ticket);
        assert!(l.take_slot(false).is_ok());
    }

    /// Claimed client_ids of 64 KiB, each new: the limiter holds at most its cap of 32-byte
    /// keys, and never refuses a new key because of the cap.
    #[test]
    fn token_keys_are_hashed_and_capped() {
        let config = crate::config::Config::parse(
            &crate::config::tests::MINIMAL.replace(
                "[server.tls]",
                "rate_limit.token_requests_per_second = 1\nrate_limit.burst = 1.0\n[server.tls]",
            ),
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let l = Limits::with_key_cap(&config.server, 100);
        let long = "x".repeat(64 * 1024);
        for i in 0..1000 {
            assert!(l.token(&A, &format!("{long}{i}")).is_ok(), "key {i}");
        }
        assert_eq!(l.tokens.len(), 100);
        // The most recent key is still known (and limited); the first was evicted.
        assert!(l.token(&A, &format!("{long}999")).is_err());
        assert!(l.token(&A, &format!("{long}0")).is_ok());
    }

    /// The sweep drops keys whose bucket is full again, without any further check.
    #[test]
    fn the_sweep_drops_idle_keys() {
        let l = limits("rate_limit.requests_per_second = 1000\nrate_limit.burst = 1.0");
        for i in 0..50u8 {
            l.request(&[i; 32]).unwrap();
        }
        assert_eq!(l.keys(), 50);
        std::thread::sleep(Duration::from_millis(20));
        l.sweep();
        assert_eq!(l.keys(), 0);
    }
}
