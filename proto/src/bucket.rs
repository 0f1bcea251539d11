//! A token bucket on a caller-supplied clock: the rate limit both ends of the wire
//! apply (the server to what a client sends, a client to pace what it sends).

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Holds no more than `earlier` does at `now` (a bucket that replaces it, for
    /// limits announced again, does not start full).
    pub fn no_fuller_than(&mut self, earlier: &mut TokenBucket, now: Instant) {
        self.refill(now);
        earlier.refill(now);
        self.tokens = self.tokens.min(earlier.tokens);
    }

    /// Takes `n` tokens, or returns how long until they would be available (the
    /// bucket is left unchanged then).
    pub fn try_take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            return Ok(());
        }
        let missing = n.min(self.burst) - self.tokens;
        Err(Duration::from_secs_f64((missing / self.rate).max(0.0)))
    }

    /// Takes as many whole tokens as available, at most `max`; returns how many.
    pub fn take_up_to(&mut self, max: u64, now: Instant) -> u64 {
        self.refill(now);
        let n = (self.tokens.floor().max(0.0) as u64).min(max);
        self.tokens -= n as f64;
        n
    }

    /// How long until one token is available (zero if one is).
    pub fn wait_for_one(&mut self, now: Instant) -> Duration {
        self.wait_for(1.0, now)
    }

    /// How long until `n` tokens (at most the burst) are available (zero if they are).
    pub fn wait_for(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        Duration::from_secs_f64(((n.min(self.burst) - self.tokens) / self.rate).max(0.0))
    }

    /// Tokens left as of the last call that took or checked (no refill).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    /// Takes `n` tokens whatever the bucket holds, going below zero if need be: for
    /// what was sent without asking, paid for before anything else is taken.
    pub fn charge(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.tokens -= n;
    }

    /// Puts `n` tokens back (a take that was undone), up to the burst.
    pub fn give_back(&mut self, n: f64) {
        self.tokens = (self.tokens + n).min(self.burst);
    }

    /// True when the bucket is full (nothing to remember about this key).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50.0, 100.0, t0);
        for _ in 0..100 {
            b.try_take(1.0, t0).unwrap();
        }
        assert_eq!(b.try_take(1.0, t0), Err(ms(20)));
        // 20 ms later exactly one more token.
        b.try_take(1.0, t0 + ms(20)).unwrap();
        assert!(b.try_take(1.0, t0 + ms(20)).is_err());
        // Refills to the burst, not beyond.
        assert!(b.is_full(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn a_bucket_replacing_another_starts_no_fuller() {
        let t0 = Instant::now();
        let mut earlier = TokenBucket::new(10.0, 5.0, t0);
        assert_eq!(earlier.take_up_to(5, t0), 5);
        let mut next = TokenBucket::new(20.0, 10.0, t0 + ms(100));
        next.no_fuller_than(&mut earlier, t0 + ms(100));
        assert_eq!(
            next.take_up_to(10, t0 + ms(100)),
            1,
            "the earlier one's refill, not a full bucket"
        );
        let mut emptier = TokenBucket::new(10.0, 5.0, t0);
        let mut full = TokenBucket::new(10.0, 5.0, t0);
        emptier.take_up_to(2, t0);
        emptier.no_fuller_than(&mut full, t0);
        assert_eq!(emptier.take_up_to(10, t0), 3, "never fuller than it was");
    }

    #[test]
    fn take_up_to_takes_whole_tokens() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        assert_eq!(b.take_up_to(3, t0), 3);
        assert_eq!(b.take_up_to(10, t0), 2);
        assert_eq!(b.take_up_to(10, t0), 0);
        assert_eq!(b.wait_for_one(t0), ms(100));
        assert_eq!(b.take_up_to(10, t0 + ms(250)), 2);
    }

    #[test]
    fn a_charge_goes_below_zero_and_is_paid_back_first() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        b.charge(8.0, t0);
        assert_eq!(b.tokens(), -3.0);
        assert_eq!(b.try_take(1.0, t0), Err(ms(400)));
        assert_eq!(b.wait_for(1.0, t0), ms(400));
        assert_eq!(b.try_take(1.0, t0 + ms(400)), Ok(()));
    }
}
