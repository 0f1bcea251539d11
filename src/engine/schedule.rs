//! Fixed-rate tick scheduling, sans IO: the caller passes `now`.
//!
//! Tick `N` is due at `start + N × period`, computed from `N` each time rather than
//! by adding periods, so the schedule never drifts. A room that falls behind runs at
//! most `max_catch_up` ticks at once and drops the rest of the backlog; every due
//! tick that was not run on time counts as an overrun.
//!
//! Rooms that share a thread and a tick rate should share a few phases
//! ([`TickSchedule::on_grid`] with a few epochs): then they are due at a few instants
//! per period and the thread wakes that often, not once per room.

use std::time::{Duration, Instant};

/// The schedule of one room.
#[derive(Debug, Clone)]
pub struct TickSchedule {
    start: Instant,
    rate: u32,
    /// Slot number of the next tick to run (slot 1 is due one period after start).
    next: u64,
    /// When slot `next` is due (kept, since the thread asks for it at every wake-up).
    deadline: Instant,
    max_catch_up: u32,
    overruns: u64,
    dropped: u64,
}

impl TickSchedule {
    /// A schedule of `rate` ticks per second whose first tick is due one period after
    /// `start`.
    pub fn new(start: Instant, rate: u32, max_catch_up: u32) -> Self {
        Self::starting_at_slot(start, rate, max_catch_up, 1)
    }

    /// A schedule of `rate` ticks per second on the grid `epoch + k × period`, whose
    /// first tick is the first slot after `now` (so less than one period away). Every
    /// schedule with the same `epoch` and rate is due at the same instants.
    pub fn on_grid(epoch: Instant, now: Instant, rate: u32, max_catch_up: u32) -> Self {
        assert!(rate > 0, "tick rate must be positive");
        let next = latest_due(now.saturating_duration_since(epoch), rate) + 1;
        Self::starting_at_slot(epoch, rate, max_catch_up, next)
    }

    fn starting_at_slot(start: Instant, rate: u32, max_catch_up: u32, next: u64) -> Self {
        assert!(rate > 0, "tick rate must be positive");
        Self {
            start,
            rate,
            next,
            deadline: start + slot_offset(next, rate),
            max_catch_up: max_catch_up.max(1),
            overruns: 0,
            dropped: 0,
        }
    }

    /// When the next tick is due.
    pub fn next_deadline(&self) -> Instant {
        self.deadline
    }

    /// How many ticks to run now (0 if none is due yet). Advances the schedule.
    #[must_use]
    pub fn poll(&mut self, now: Instant) -> u32 {
        if now < self.deadline {
            return 0;
        }
        let latest_due = latest_due(now.duration_since(self.start), self.rate);
        let behind = latest_due + 1 - self.next;
        let run = behind.min(u64::from(self.max_catch_up));
        self.overruns += behind - 1;
        self.dropped += behind - run;
        self.next = latest_due + 1;
        self.deadline = self.start + slot_offset(self.next, self.rate);
        run as u32
    }

    /// Moves the schedule to the first slot after `now` without counting the slots
    /// passed (a room that sat empty had nothing to tick, so nothing was late).
    pub fn skip_to(&mut self, now: Instant) {
        let next = latest_due(now.saturating_duration_since(self.start), self.rate) + 1;
        if next > self.next {
            self.next = next;
            self.deadline = self.start + slot_offset(next, self.rate);
        }
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

/// The largest slot s with slot_offset(s) <= elapsed, where slot_offset floors
/// s × 1e9 / rate to whole nanoseconds: s × 1e9 <= (elapsed + 1) × rate - 1.
fn latest_due(elapsed: Duration, rate: u32) -> u64 {
    (((elapsed.as_nanos() + 1) * u128::from(rate) - 1) / 1_000_000_000) as u64
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
    fn skipped_slots_are_neither_late_nor_dropped() {
        let start = Instant::now();
        let mut s = TickSchedule::new(start, 10, 3);
        s.skip_to(start + ms(1_050));
        assert_eq!(s.next_deadline(), start + ms(1_100));
        assert_eq!(s.poll(start + ms(1_060)), 0);
        assert_eq!(s.poll(start + ms(1_100)), 1);
        assert_eq!((s.overruns(), s.dropped()), (0, 0));
        s.skip_to(start + ms(1_000)); // never backwards
        assert_eq!(s.next_deadline(), start + ms(1_200));
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
    fn schedules_on_one_grid_are_due_together() {
        let epoch = Instant::now();
        // Rooms created 5 ms and 51 ms after the epoch, at 10 Hz: both first tick at
        // 100 ms, then at every 100 ms together.
        let mut a = TickSchedule::on_grid(epoch, epoch + ms(5), 10, 3);
        let mut b = TickSchedule::on_grid(epoch, epoch + ms(51), 10, 3);
        assert_eq!(a.next_deadline(), epoch + ms(100));
        for _ in 0..50 {
            let due = a.next_deadline();
            assert_eq!(b.next_deadline(), due);
            assert_eq!((a.poll(due), b.poll(due)), (1, 1));
        }
        // Created exactly on a slot: the first tick is the next slot, not now.
        let c = TickSchedule::on_grid(epoch, epoch + ms(300), 10, 3);
        assert_eq!(c.next_deadline(), epoch + ms(400));
        assert_eq!((a.overruns(), b.overruns(), c.overruns()), (0, 0, 0));
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
