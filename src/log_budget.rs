//! At most a few log lines of one kind per second: a storm of connections or rooms
//! (an attack, every client reconnecting at once) must not make the log the
//! bottleneck, nor fill the disk. The time is passed in.

use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Label of [`suppressed`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The budget's kind of log line.
    pub kind: &'static str,
}

/// Log lines left out, by kind, since the process started (every server in it):
/// `/metrics` exports it, so a storm shows even when no line after it says so.
pub fn suppressed() -> &'static Family<KindLabels, Counter> {
    static SUPPRESSED: LazyLock<Family<KindLabels, Counter>> = LazyLock::new(Family::default);
    &SUPPRESSED
}

/// A per-second allowance of log lines of one kind.
#[derive(Debug)]
pub struct LogBudget {
    kind: &'static str,
    per_second: u32,
    window: Mutex<Window>,
    /// This kind's series of [`suppressed`], found at the first line left out.
    counter: OnceLock<Counter>,
}

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// `per_second` lines a second of `kind` (the label of [`suppressed`]).
    pub const fn new(kind: &'static str, per_second: u32) -> Self {
        Self {
            kind,
            per_second,
            counter: OnceLock::new(),
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
            drop(w);
            let counter = self
                .counter
                .get_or_init(|| suppressed().get_or_create(&KindLabels { kind: self.kind }).clone());
            counter.inc();
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
        let budget = LogBudget::new("test", 2);
        let left_out = || suppressed().get_or_create(&KindLabels { kind: "test" }).get();
        let t0 = Instant::now();
        assert_eq!(budget.take(t0), Some(0));
        assert_eq!(budget.take(t0), Some(0));
        assert_eq!(budget.take(t0 + Duration::from_millis(500)), None);
        assert_eq!(budget.take(t0 + Duration::from_millis(999)), None);
        // A new second: the first line says two were left out.
        assert_eq!(left_out(), 2, "counted for /metrics too");
        assert_eq!(budget.take(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(budget.take(t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(budget.take(t0 + Duration::from_secs(1)), None);
    }
}
