//! A Prometheus histogram without a lock: observing is two relaxed atomic adds (the
//! bucket's count and the sum), so simulation threads and connection tasks that
//! observe at once never wait on each other. prometheus-client's own histogram takes
//! a mutex per observation, which the relay paid on every tick and delivered frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// See the module documentation. Clones share the counts.
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds in seconds, ascending; one more count follows for `+Inf`.
    bounds: Box<[f64]>,
    counts: Box<[AtomicU64]>,
    /// Sum of the observations in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// A histogram with these bucket upper bounds (seconds, ascending), plus `+Inf`.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = bounds.into_iter().collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                bounds,
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Bounds growing by `factor` from `start`, `count` of them.
    pub fn exponential(start: f64, factor: f64, count: u16) -> Self {
        Self::new((0..count).map(|i| start * factor.powi(i32::from(i))))
    }

    /// Records one observation of `seconds`.
    pub fn observe(&self, seconds: f64) {
        let inner = &*self.inner;
        let bucket = inner.bounds.partition_point(|&bound| bound < seconds);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = (seconds.max(0.0) * 1e9) as u64;
        inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        // prometheus-client writes `f64::INFINITY` as `+Inf` and accumulates the counts.
        let buckets: Vec<(f64, u64)> = (inner.bounds.iter().copied().chain([f64::INFINITY]))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn encodes_like_a_prometheus_histogram() {
        let histogram = Histogram::new([0.001, 0.01]);
        for seconds in [0.0005, 0.001, 0.002, 5.0] {
            histogram.observe(seconds);
        }
        assert_eq!(histogram.count(), 4);
        let mut registry = Registry::default();
        registry.register("delay_seconds", "A delay", histogram.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "delay_seconds_sum 5.0035",
            "delay_seconds_count 4",
            "delay_seconds_bucket{le=\"0.001\"} 2",
            "delay_seconds_bucket{le=\"0.01\"} 3",
            "delay_seconds_bucket{le=\"+Inf\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
}
