//! Exponential backoff with jitter, shared by restarts and reconnects.

use std::time::Duration;

/// Delay before attempt `n` (1-based): `min * 2^(n-1)`, capped at `max`, then jittered into
/// `[d/2, d]` so that many actors failing together do not retry in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
        }
    }

    /// The un-jittered ceiling for attempt `n`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.min
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max)
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + ceiling.saturating_sub(half).mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_bounds() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(100), Duration::from_secs(1));
        for attempt in 1..10 {
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(
                    d >= b.ceiling(attempt) / 2 && d <= b.ceiling(attempt),
                    "{d:?}"
                );
            }
        }
    }
}
