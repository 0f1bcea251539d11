//! Wall-clock time for drivers. Sans-IO cores never read a clock: drivers pass
//! `now` in.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A moment on both clocks: monotonic for timers, wall-clock for the wire.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time, for deadlines.
    pub instant: Instant,
    /// Microseconds since the Unix epoch, for timestamps and token expiry.
    pub unix_us: u64,
}

impl Now {
    /// The current moment.
    pub fn system() -> Self {
        Self {
            instant: Instant::now(),
            unix_us: unix_micros(),
        }
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
