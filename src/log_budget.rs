//! At most a few log lines of one kind per second: a storm of connections or rooms
//! (an attack, every client reconnecting at once) must not make the log the
//! bottleneck, nor fill the disk. The time is passed in.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A per-second allowance of log lines of one kind.
#[derive(Debug)]
pub struct LogBudget {
    per_second: u32,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// `per_second` lines a second.
    pub const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Mutex::new(Window {
                started: None,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)`: write the line, and say that `n` lines of this kind were left out
    /// since the last one written. `None`: leave this one out.
    pub fn take(&self, now: Instant) -> Option<u64> {
        let mut w = self.window.lock();
        if w.started
            .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1))
        {
            w.started = Some(now);
            w.used = 0;
        }
        if w.used >= self.per_second {
            w.suppressed += 1;
            return None;
        }
        w.used += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_so_many_lines_a_second_and_counts_the_rest() {
        let budget = LogBudget::new(2);
        let t0 = Instant::now();
        assert_eq!(budget.take(t0), Some(0));
        assert_eq!(budget.take(t0), Some(0));
        assert_eq!(budget.take(t0 + Duration::from_millis(500)), None);
        assert_eq!(budget.take(t0 + Duration::from_millis(999)), None);
        // A new second: the first line says two were left out.
        assert_eq!(budget.take(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(budget.take(t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(budget.take(t0 + Duration::from_secs(1)), None);
    }
}
