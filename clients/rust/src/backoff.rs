//! Reconnection delays: exponential (1 s, 2 s, 4 s … capped) with full jitter.

use std::time::Duration;

/// Reconnection policy.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Delay ceiling of the first retry.
    pub initial: Duration,
    /// The ceiling stops doubling here.
    pub max: Duration,
    /// Give up after this many failed attempts in a row (`None`: never). A connection
    /// that ends within 10 s of its `Welcome` without a state frame applied counts as
    /// a failed attempt too.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_attempts: Some(10),
        }
    }
}

impl Backoff {
    /// The ceiling for retry number `attempt` (1-based): `initial × 2^(attempt-1)`,
    /// capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt`: uniform in `0..=ceiling` ("full
    /// jitter"), so many clients dropped at once do not come back at once.
    pub fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        self.ceiling(attempt).mul_f64(rng.f64())
    }

    /// Whether retry number `attempt` is allowed.
    pub fn allows(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps_with_jitter_below_the_ceiling() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=7).map(|a| b.ceiling(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30]);
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..=20 {
            assert!(b.delay(attempt, &mut rng) <= b.ceiling(attempt));
        }
        assert!(b.allows(10) && !b.allows(11));
    }
}
