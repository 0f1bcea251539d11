//! The process's own metrics under the names every Prometheus client library exports
//! them by (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …), so that
//! dashboards and alerts written for any service read the relay too. Read from
//! `/proc` at each scrape; on other systems there are none.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Samples the process at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    start_time_seconds: f64,
    threads: i64,
    open_fds: i64,
    /// `None`: unlimited.
    max_fds: Option<i64>,
}

impl Sample {
    #[cfg(target_os = "linux")]
    fn read() -> Option<Self> {
        let me = procfs::process::Process::myself().ok()?;
        let stat = me.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        let boot = procfs::boot_time_secs().ok()?;
        let max_fds = match me.limits().ok()?.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(n) => Some(n as i64),
            procfs::process::LimitValue::Unlimited => None,
        };
        Some(Self {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_bytes: (stat.rss * procfs::page_size()) as i64,
            virtual_bytes: stat.vsize as i64,
            start_time_seconds: boot as f64 + stat.starttime as f64 / ticks,
            threads: stat.num_threads,
            open_fds: me.fd_count().ok()? as i64,
            max_fds,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Option<Self> {
        None
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = Sample::read() else {
            return Ok(());
        };
        let counter = ConstCounter::new(s.cpu_seconds);
        counter.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&Unit::Seconds),
            counter.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Some(Unit::Seconds),
                Some(s.start_time_seconds),
            ),
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(Unit::Bytes),
                Some(s.resident_bytes as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(Unit::Bytes),
                Some(s.virtual_bytes as f64),
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                None,
                Some(s.threads as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                Some(s.open_fds as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                s.max_fds.map(|n| n as f64),
            ),
        ];
        for (name, help, unit, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_reading_describes_this_process() {
        let files: Vec<std::fs::File> = (0..3)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let s = Sample::read().expect("/proc is there");
        assert!(s.open_fds >= files.len() as i64, "{s:?}");
        assert!(s.max_fds.is_none_or(|max| max >= s.open_fds), "{s:?}");
        assert!(
            s.threads >= 1 && s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes,
            "{s:?}"
        );
        let now = crate::clock::unix_micros() as f64 / 1e6;
        assert!(
            (now - 24.0 * 3600.0..=now + 1.0).contains(&s.start_time_seconds),
            "started today: {s:?}"
        );
        // Work shows as CPU time (read in clock ticks of 10 ms, within seconds on a
        // busy machine).
        let spin = std::time::Instant::now();
        while Sample::read().unwrap().cpu_seconds <= s.cpu_seconds {
            assert!(
                spin.elapsed() < std::time::Duration::from_secs(10),
                "no CPU time counted: {s:?}"
            );
        }
    }
}
