//! Fixed-rate tick scheduling, sans IO: the caller passes `now`.
//!
//! Tick `N` is due at `start + N × period`, computed from `N` each time rather than
//! by adding periods, so the schedule never drifts. A room that falls behind runs at
//! most `max_catch_up` ticks at once and drops the rest of the backlog; every due
//! tick that was not run on time counts as an overrun.

use std::time::{Duration, Instant};

/// The schedule of one room.
#[derive(Debug, Clone)]
pub struct TickSchedule {
    start: Instant,
    rate: u32,
    /// Slot number of the next tick to run (slot 1 is due one period after start).
    next: u64,
    max_catch_up: u32,
    overruns: u64,
    dropped: u64,
}

impl TickSchedule {
    /// A schedule of `rate` ticks per second whose first tick is due one period after
    /// `start`.
    pub fn new(start: Instant, rate: u32, max_catch_up: u32) -> Self {
        assert!(rate > 0, "tick rate must be positive");
        Self {
            start,
            rate,
            next: 1,
            max_catch_up: max_catch_up.max(1),
            overruns: 0,
            dropped: 0,
        }
    }

    /// When the next tick is due.
    pub fn next_deadline(&self) -> Instant {
        self.start + slot_offset(self.next, self.rate)
    }

    /// How many ticks to run now (0 if none is due yet). Advances the schedule.
    #[must_use]
    pub fn poll(&mut self, now: Instant) -> u32 {
        if now < self.next_deadline() {
            return 0;
        }
        // The largest slot s with slot_offset(s) <= elapsed, where slot_offset floors
        // s × 1e9 / rate to whole nanoseconds: s × 1e9 <= (elapsed + 1) × rate - 1.
        let elapsed = now.duration_since(self.start).as_nanos();
        let latest_due = (((elapsed + 1) * u128::from(self.rate) - 1) / 1_000_000_000) as u64;
        let behind = latest_due + 1 - self.next;
        let run = behind.min(u64::from(self.max_catch_up));
        self.overruns += behind - 1;
        self.dropped += behind - run;
        self.next = latest_due + 1;
        run as u32
    }

    /// Due ticks that were not run on time (each late slot counts once).
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// Due ticks skipped because the backlog exceeded the catch-up bound.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

fn slot_offset(slot: u64, rate: u32) -> Duration {
    Duration::from_nanos((u128::from(slot) * 1_000_000_000 / u128::from(rate)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_drift_over_a_long_run() {
        let start = Instant::now();
        let mut s = TickSchedule::new(start, 30, 3);
        let mut ran = 0u64;
        // Poll exactly at each deadline for an hour of simulated time.
        for _ in 0..30 * 3600 {
            let due = s.next_deadline();
            assert_eq!(s.poll(due), 1);
            ran += 1;
        }
        assert_eq!(
            s.next_deadline(),
            start + Duration::from_secs(3600) + slot_offset(1, 30)
        );
        assert_eq!(ran, 108_000);
        assert_eq!(s.overruns(), 0);
    }

    #[test]
    fn nothing_is_due_early() {
        let start = Instant::now();
        let mut s = TickSchedule::new(start, 10, 3);
        assert_eq!(s.poll(start), 0);
        assert_eq!(s.poll(start + ms(99)), 0);
        assert_eq!(s.poll(start + ms(100)), 1);
        assert_eq!(s.poll(start + ms(150)), 0);
    }

    #[test]
    fn late_ticks_are_counted_and_catch_up_is_bounded() {
        let start = Instant::now();
        let mut s = TickSchedule::new(start, 10, 3);
        assert_eq!(s.poll(start + ms(100)), 1);
        // Stalled for a while: ticks 2..=6 are due at once.
        assert_eq!(s.poll(start + ms(650)), 3);
        assert_eq!(s.overruns(), 4);
        assert_eq!(s.dropped(), 2);
        // Back on schedule afterwards.
        assert_eq!(s.next_deadline(), start + ms(700));
        assert_eq!(s.poll(start + ms(700)), 1);
        assert_eq!(s.overruns(), 4);
    }

    #[test]
    fn slightly_late_poll_is_not_an_overrun() {
        let start = Instant::now();
        let mut s = TickSchedule::new(start, 30, 3);
        assert_eq!(s.poll(start + ms(60)), 1); // tick 1 due at 33.3 ms, tick 2 at 66.7 ms
        assert_eq!(s.overruns(), 0);
        assert_eq!(s.poll(start + ms(67)), 1);
    }
}
