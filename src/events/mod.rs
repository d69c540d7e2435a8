//! Provisioning events on their way out: the CloudEvents 1.0 document of a stored event, the
//! Standard Webhooks signature, and the retry schedule. Pure: the outbox rows are written by
//! the store in each change's transaction, and `app/deliveries.rs` leases and sends them.

pub mod cloudevent;
pub mod signing;

use std::time::Duration;

pub use signing::{SecretError, WebhookSecret};

/// The longest wait between two attempts of one delivery.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

/// How long to wait after the `attempts`-th failed attempt (1 = the first): exponential from
/// one second, at most 15 minutes, scaled by `jitter` (0.5 to 1.0) so that receivers coming
/// back are not hit by every sender at once.
pub fn retry_delay(attempts: i64, jitter: f64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let base = Duration::from_secs(1u64 << exponent).min(MAX_RETRY_DELAY);
    base.mul_f64(jitter.clamp(0.5, 1.0))
}

/// A jitter factor between 0.5 and 1.0.
pub fn jitter() -> f64 {
    let mut byte = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    0.5 + f64::from(u16::from_be_bytes(byte)) / f64::from(u16::MAX) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_a_cap() {
        assert_eq!(retry_delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(5, 1.0), Duration::from_secs(16));
        assert_eq!(retry_delay(5, 0.5), Duration::from_secs(8));
        assert_eq!(retry_delay(40, 1.0), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(0, 2.0), Duration::from_secs(1));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..=1.0).contains(&j), "{j}");
        }
    }
}
