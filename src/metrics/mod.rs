//! The Prometheus `/metrics` endpoint: the simulation threads' metrics plus the
//! transports' counters, in the text exposition format. Counters and gauges are
//! atomics; histograms are the lock-free [`Histogram`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use self::histogram::Histogram;
use crate::error::CloseReason;
use crate::session::auth::AuthError;

mod histogram;
mod process;

/// Label of [`Metrics::closes`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    /// The close code.
    pub code: u16,
}

/// Label of `tickrelay_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Label of [`Metrics::connection_ends`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabels {
    /// How the connection ended (one of [`CONNECTION_ENDS`]).
    pub end: &'static str,
}

/// The labels of [`Metrics::connection_ends`]: the server closed it (its code in
/// `closes`), the client closed it with 1000, with 1001 (going away: a browser
/// leaving the page) or with another code, it was lost (no
/// close frame: a network fault, a killed client, a heartbeat the server gave up
/// on is `server`), or a resume took it over.
pub const CONNECTION_ENDS: [&str; 6] = [
    "server",
    "client_normal",
    "client_going_away",
    "client_other_code",
    "lost",
    "taken_over",
];

/// Label of [`Metrics::auth_failures`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// What was wrong with the token.
    pub kind: &'static str,
}

/// Label of [`Metrics::upgrades_refused`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The HTTP status of the refusal.
    pub status: u16,
}

/// Bucket bounds of `state_send_delay`, in seconds: fine around the 15 ms of T4 in
/// BENCHMARKS.md, coarse up to the seconds of a saturated machine.
const SEND_DELAY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Server-wide simulation metrics (exported by the `/metrics` endpoint).
#[derive(Debug)]
pub struct SimMetrics {
    /// Ticks run.
    pub ticks: Counter,
    /// Ticks that were not run on time.
    pub overruns: Counter,
    /// Ticks dropped after falling too far behind.
    pub dropped_ticks: Counter,
    /// Time spent in each tick, in seconds.
    pub tick_duration: Histogram,
    /// State frames handed to outboxes.
    pub frames: Counter,
    /// Of which full snapshots.
    pub full_frames: Counter,
    /// Bytes of encoded state bodies.
    pub bytes_encoded: Counter,
    /// Rooms currently open.
    pub rooms: Gauge,
    /// Members in all rooms (seats held for resume included).
    pub members: Gauge,
    /// Rooms closed because their simulation panicked.
    pub room_panics: Counter,
    /// Full snapshots members asked for (`Resync`: a mirror failed its checksum, or
    /// the client wanted one).
    pub resyncs: Counter,
    /// Inputs a room's simulation refused (each answered with an `Error`).
    pub inputs_refused: Counter,
}

impl Default for SimMetrics {
    fn default() -> Self {
        Self {
            ticks: Counter::default(),
            overruns: Counter::default(),
            dropped_ticks: Counter::default(),
            // 10 µs to ~80 ms.
            tick_duration: Histogram::exponential(0.000_01, 2.0, 14),
            frames: Counter::default(),
            full_frames: Counter::default(),
            bytes_encoded: Counter::default(),
            rooms: Gauge::default(),
            members: Gauge::default(),
            room_panics: Counter::default(),
            resyncs: Counter::default(),
            inputs_refused: Counter::default(),
        }
    }
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The `process_*` metrics, named without the `tickrelay_` prefix.
    process: Registry,
    /// Simulation metrics (shared with the pool).
    pub sim: Arc<SimMetrics>,
    /// Open connections (WebSocket and QUIC).
    pub connections: Gauge,
    /// Connections whose session started (WebSocket and QUIC).
    pub connections_accepted: Counter,
    /// Inbound transport messages (WebSocket messages, QUIC stream frames and datagrams).
    pub messages_in: Counter,
    /// Inbound payload bytes.
    pub bytes_in: Counter,
    /// Outbound transport messages (each carries one envelope).
    pub messages_out: Counter,
    /// Outbound payload bytes.
    pub bytes_out: Counter,
    /// State frames replaced before a slow client took them, or dropped rather than
    /// queued behind others (QUIC).
    pub frames_superseded: Counter,
    /// From a tick's server time stamp to its state frame handed to the transport
    /// (written to the kernel's socket over WebSocket; to quinn over QUIC), seconds.
    pub state_send_delay: Histogram,
    /// Sessions closed by the server, by close code.
    pub closes: Family<CloseLabels, Counter>,
    /// Connections (WebSocket and QUIC) ended, by how (see [`CONNECTION_ENDS`]).
    pub connection_ends: Family<EndLabels, Counter>,
    /// TLS handshakes that failed.
    pub tls_failures: Counter,
    /// When the certificate served to new connections expires, Unix seconds (0:
    /// without TLS, or unreadable).
    pub tls_certificate_expiry: Gauge,
    /// TCP connections closed as soon as accepted: their address held its share of
    /// unfinished handshakes, or the process was out of file descriptors.
    pub sockets_refused: Counter,
    /// Unfinished handshakes (TLS or HTTP under way) closed to make room for newer
    /// sockets at `[connections] max_unfinished_handshakes`.
    pub handshakes_shed: Counter,
    /// Room events published through the HTTP API.
    pub events_published: Counter,
    /// Cluster mode: joins redirected to the node owning the room.
    pub redirects: Counter,
    /// Cluster mode: room directory (Redis) operations that failed or timed out.
    pub directory_errors: Counter,
    /// Cluster mode: 1 while the room directory answers, 0 after an operation failed
    /// (until one succeeds).
    pub directory_up: Gauge,
    /// Cluster mode: rooms closed here because another node holds their lease now.
    pub rooms_lost: Counter,
    /// Cluster mode: room checkpoints written to Redis.
    pub checkpoints_written: Counter,
    /// Cluster mode: room checkpoints not written (over `max_checkpoint_bytes`, or
    /// Redis failed).
    pub checkpoints_skipped: Counter,
    /// Cluster mode: rooms opened from a checkpoint (their node died or stopped).
    pub rooms_restored: Counter,
    /// Cluster mode: sessions of another node (it died or stopped) continued here.
    pub sessions_moved: Counter,
    /// Upgrades refused for a bad or missing token, by kind.
    pub auth_failures: Family<AuthLabels, Counter>,
    /// Upgrades refused with an HTTP status (401, 403, 429, 503).
    pub upgrades_refused: Family<StatusLabels, Counter>,
    /// Inbound messages dropped by the rate limiter.
    pub messages_rate_limited: Counter,
    /// Sessions resumed with a resume token.
    pub resumes: Counter,
    /// Reliable messages sent again on a resume (taken by a connection that died
    /// before the client confirmed them).
    pub messages_replayed: Counter,
    /// Reliable messages a resumed client missed that were no longer kept.
    pub messages_lost: Counter,
    /// Sessions currently parked, waiting for a resume.
    pub sessions_parked: Gauge,
    /// Bytes the writes blocked on clients that do not read hold together (bounded by
    /// `[session] max_blocked_write_bytes`).
    pub blocked_write_bytes: Gauge,
    /// The last rendering in each format, and when (see [`Metrics::rendered`]).
    rendered: [parking_lot::Mutex<Option<(Instant, Bytes)>>; 2],
}

/// How long one rendering of `/metrics` answers every request for it: a scraper
/// reads every few seconds, and each gets a fresh one; a flood of requests costs a
/// copy each instead of a rendering (about 100 µs of an I/O thread that also writes
/// game frames).
pub const RENDERED_FRESH: Duration = Duration::from_millis(100);

impl Metrics {
    /// Registers every metric; `tls_expiry` is [`crate::transport::tls::Tls::expiry`]
    /// (a default gauge without TLS).
    pub fn new(sim: Arc<SimMetrics>, tls_expiry: Gauge) -> Self {
        let mut registry = Registry::with_prefix("tickrelay");
        let m = Self {
            registry: Registry::default(),
            process: Registry::default(),
            sim,
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            messages_in: Counter::default(),
            bytes_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            frames_superseded: Counter::default(),
            state_send_delay: Histogram::new(SEND_DELAY_BUCKETS),
            closes: Family::default(),
            connection_ends: Family::default(),
            tls_failures: Counter::default(),
            tls_certificate_expiry: tls_expiry,
            sockets_refused: Counter::default(),
            handshakes_shed: Counter::default(),
            events_published: Counter::default(),
            redirects: Counter::default(),
            directory_errors: Counter::default(),
            directory_up: Gauge::default(),
            rooms_lost: Counter::default(),
            checkpoints_written: Counter::default(),
            checkpoints_skipped: Counter::default(),
            rooms_restored: Counter::default(),
            sessions_moved: Counter::default(),
            auth_failures: Family::default(),
            upgrades_refused: Family::default(),
            messages_rate_limited: Counter::default(),
            resumes: Counter::default(),
            messages_replayed: Counter::default(),
            messages_lost: Counter::default(),
            sessions_parked: Gauge::default(),
            blocked_write_bytes: Gauge::default(),
            rendered: Default::default(),
        };
        let s = &m.sim;
        registry.register("ticks", "Room ticks run", s.ticks.clone());
        registry.register("tick_overruns", "Room ticks not run on time", s.overruns.clone());
        registry.register(
            "ticks_dropped",
            "Room ticks skipped after falling behind",
            s.dropped_ticks.clone(),
        );
        registry.register(
            "tick_duration_seconds",
            "Time spent in one room tick",
            s.tick_duration.clone(),
        );
        registry.register("state_frames", "State frames handed to sessions", s.frames.clone());
        registry.register("full_snapshots", "Full snapshot state frames", s.full_frames.clone());
        registry.register(
            "state_bytes_encoded",
            "Bytes of encoded state bodies (and members' own parts)",
            s.bytes_encoded.clone(),
        );
        registry.register("rooms", "Open rooms", s.rooms.clone());
        registry.register(
            "resyncs",
            "Full snapshots members asked for (Resync: a client's mirror failed its checksum, or it wanted one)",
            s.resyncs.clone(),
        );
        registry.register(
            "inputs_refused",
            "Inputs a room's simulation refused, each answered with an Error (not the member's entity, a limit, a rate, a value its kind does not take, a game's own rule)",
            s.inputs_refused.clone(),
        );
        registry.register(
            "members",
            "Members in all rooms (a member whose connection dropped stays one through the resume grace)",
            s.members.clone(),
        );
        registry.register(
            "room_panics",
            "Rooms closed (or not opened) after their simulation panicked",
            s.room_panics.clone(),
        );
        registry.register(
            "connections",
            "Open connections (WebSocket and QUIC)",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Connections whose session started (WebSocket and QUIC)",
            m.connections_accepted.clone(),
        );
        registry.register("messages_in", "Inbound transport messages", m.messages_in.clone());
        registry.register("bytes_in", "Inbound payload bytes", m.bytes_in.clone());
        registry.register(
            "messages_out",
            "Outbound transport messages (one envelope each)",
            m.messages_out.clone(),
        );
        registry.register("bytes_out", "Outbound payload bytes", m.bytes_out.clone());
        registry.register(
            "frames_superseded",
            "State frames replaced before a slow client took them, or dropped rather than queued behind others (QUIC)",
            m.frames_superseded.clone(),
        );
        registry.register(
            "state_send_delay_seconds",
            "From a tick's server time stamp to its state frame handed to the transport",
            m.state_send_delay.clone(),
        );
        registry.register(
            "closes",
            "Sessions closed by the server, by close code",
            m.closes.clone(),
        );
        registry.register(
            "connection_ends",
            "Connections ended: closed by the server (by code in closes) or the client (with 1000 or another code), lost without a close, or taken over by a resume",
            m.connection_ends.clone(),
        );
        registry.register("tls_failures", "Failed TLS handshakes", m.tls_failures.clone());
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the certificate served to new connections expires, Unix seconds (0: no TLS); alert well before",
            m.tls_certificate_expiry.clone(),
        );
        registry.register(
            "sockets_refused",
            "TCP connections closed as soon as accepted (per-IP share of unfinished handshakes, or out of file descriptors)",
            m.sockets_refused.clone(),
        );
        registry.register(
            "events_published",
            "Room events published through the HTTP API (POST /rooms/{room}/events)",
            m.events_published.clone(),
        );
        registry.register(
            "redirects",
            "Cluster mode: joins redirected to the node that owns the room",
            m.redirects.clone(),
        );
        registry.register(
            "directory_errors",
            "Cluster mode: room directory (Redis) operations that failed or timed out",
            m.directory_errors.clone(),
        );
        registry.register(
            "directory_up",
            "1 while the room directory answers (always on one node, whose directory is in memory; in cluster mode, Redis)",
            m.directory_up.clone(),
        );
        registry.register(
            "rooms_lost",
            "Cluster mode: rooms closed here because another node holds their lease now",
            m.rooms_lost.clone(),
        );
        registry.register(
            "checkpoints_written",
            "Cluster mode: room checkpoints written to Redis",
            m.checkpoints_written.clone(),
        );
        registry.register(
            "checkpoints_skipped",
            "Cluster mode: room checkpoints not written (over max_checkpoint_bytes, or Redis failed)",
            m.checkpoints_skipped.clone(),
        );
        registry.register(
            "rooms_restored",
            "Cluster mode: rooms opened from a checkpoint after their node died or stopped",
            m.rooms_restored.clone(),
        );
        registry.register(
            "sessions_moved",
            "Cluster mode: sessions of another node (it died or stopped) continued here with their session id",
            m.sessions_moved.clone(),
        );
        registry.register(
            "handshakes_shed",
            "Unfinished handshakes closed to make room for newer sockets (max_unfinished_handshakes)",
            m.handshakes_shed.clone(),
        );
        registry.register(
            "auth_failures",
            "Upgrades refused for a bad or missing token",
            m.auth_failures.clone(),
        );
        registry.register(
            "upgrades_refused",
            "Upgrades refused, by HTTP status",
            m.upgrades_refused.clone(),
        );
        registry.register(
            "messages_rate_limited",
            "Inbound messages dropped by the rate limiter",
            m.messages_rate_limited.clone(),
        );
        registry.register("resumes", "Sessions resumed with a resume token", m.resumes.clone());
        registry.register(
            "messages_replayed",
            "Reliable messages sent again on a resume",
            m.messages_replayed.clone(),
        );
        registry.register(
            "messages_lost",
            "Reliable messages a resumed client missed that were no longer kept (its rooms send their Joined again)",
            m.messages_lost.clone(),
        );
        registry.register(
            "sessions_parked",
            "Sessions waiting to be resumed",
            m.sessions_parked.clone(),
        );
        registry.register(
            "blocked_write_bytes",
            "Bytes held by writes blocked on clients that do not read (past [session] max_blocked_write_bytes, or an eighth of it for one address, a write that stays blocked closes its connection, 4501)",
            m.blocked_write_bytes.clone(),
        );
        // Every family is exported from the start, each known label at zero, so a
        // dashboard or alert sees a series before its first event.
        for reason in CloseReason::ALL {
            let _ = m.closes.get_or_create(&CloseLabels { code: reason.code() });
        }
        for end in CONNECTION_ENDS {
            let _ = m.connection_ends.get_or_create(&EndLabels { end });
        }
        for kind in AuthError::KINDS {
            let _ = m.auth_failures.get_or_create(&AuthLabels { kind });
        }
        for status in REFUSAL_STATUSES {
            let _ = m.upgrades_refused.get_or_create(&StatusLabels { status });
        }
        registry.register(
            "log_lines_suppressed",
            "Log lines left out by the per-kind budgets (a few lines a second of each kind), by kind",
            crate::log_budget::suppressed().clone(),
        );
        // A gauge, not OpenMetrics' info type, which the classic format has not.
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The relay's version (always 1)", build);
        let mut process = Registry::default();
        process.register_collector(Box::new(process::ProcessCollector));
        Self { registry, process, ..m }
    }

    /// Counts a server-initiated close.
    pub fn count_close(&self, reason: CloseReason) {
        self.closes.get_or_create(&CloseLabels { code: reason.code() }).inc();
    }

    /// Counts an upgrade refused for a bad or missing token.
    pub fn count_auth_failure(&self, kind: &'static str) {
        self.auth_failures.get_or_create(&AuthLabels { kind }).inc();
    }

    /// Counts an upgrade refused with an HTTP status.
    pub fn count_refused_upgrade(&self, status: hyper::StatusCode) {
        self.upgrades_refused
            .get_or_create(&StatusLabels {
                status: status.as_u16(),
            })
            .inc();
    }

    /// [`Metrics::render`] for `/metrics`: the same text to every request within
    /// [`RENDERED_FRESH`] of its rendering.
    pub fn rendered(&self, format: Format) -> Bytes {
        self.rendered_at(format, Instant::now())
    }

    fn rendered_at(&self, format: Format, now: Instant) -> Bytes {
        let slot = match format {
            Format::OpenMetrics => 0,
            Format::Prometheus => 1,
        };
        let mut rendered = self.rendered[slot].lock();
        if let Some((at, text)) = &*rendered
            && now.duration_since(*at) < RENDERED_FRESH
        {
            return text.clone();
        }
        // (Rendered under the lock: requests at the same moment wait for this one.)
        let text = Bytes::from(self.render(format));
        *rendered = Some((now, text.clone()));
        text
    }

    /// Every metric in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &self.process);
        let _ = encode_eof(&mut out);
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => classic(&out),
        }
    }
}

/// The exposition formats `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (what Prometheus asks for first).
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 (what `promtool check metrics`, curl
    /// and older scrapers read).
    Prometheus,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics only when it is named.
    /// OpenMetrics only when it is named and preferred (a higher `q`) to everything
    /// that would take the classic format (`text/plain`, `text/*`, `*/*`).
    pub fn from_accept(accept: Option<&str>) -> Self {
        let (mut open_metrics, mut classic) = (0.0_f64, 0.0_f64);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = (parts.filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))))
                .find_map(|q| q.parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => open_metrics = open_metrics.max(q),
                "text/plain" | "text/*" | "*/*" => classic = classic.max(q),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics > classic {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The HTTP statuses an upgrade is refused with (labels of `upgrades_refused`).
const REFUSAL_STATUSES: [u16; 4] = [401, 403, 429, 503];

/// The classic text format of an OpenMetrics exposition: a counter's `HELP` and `TYPE`
/// lines name its samples (`x_total`, where OpenMetrics names the family `x`), and
/// OpenMetrics' `# UNIT` and `# EOF` lines go.
fn classic(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 64 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let family = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| Some((&line[..p.len()], line.strip_prefix(p)?.split_once(' ')?)));
        match family {
            Some((prefix, (name, rest))) if counters.contains(name) => {
                out.push_str(&format!("{prefix}{name}_total {rest}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The samples' names and the families named by `# HELP` lines.
    fn samples_and_help(text: &str) -> (Vec<&str>, Vec<&str>) {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split(['{', ' ']).next().unwrap())
            .collect();
        let help = text
            .lines()
            .filter_map(|l| l.strip_prefix("# HELP ")?.split(' ').next())
            .collect();
        (samples, help)
    }

    #[test]
    fn a_rendering_answers_for_its_format_until_it_is_no_longer_fresh() {
        let metrics = Metrics::new(Default::default(), Gauge::default());
        let resumes = |text: &Bytes| {
            let text = std::str::from_utf8(text).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("tickrelay_resumes_total "))
                .map(str::to_owned)
        };
        let start = Instant::now();
        let first = metrics.rendered_at(Format::Prometheus, start);
        metrics.resumes.inc();
        let soon = start + RENDERED_FRESH / 2;
        assert_eq!(resumes(&metrics.rendered_at(Format::Prometheus, soon)), resumes(&first));
        assert!(
            metrics.rendered_at(Format::OpenMetrics, soon).ends_with(b"# EOF\n"),
            "its own"
        );
        let later = metrics.rendered_at(Format::Prometheus, start + RENDERED_FRESH);
        assert_eq!(resumes(&later).as_deref(), Some("1"));
    }

    #[test]
    fn the_classic_format_has_help_for_every_sample_as_promtool_wants() {
        let metrics = Metrics::new(Arc::new(SimMetrics::default()), Gauge::default());
        metrics.messages_in.inc();
        let text = metrics.render(Format::Prometheus);
        let (samples, help) = samples_and_help(&text);
        assert!(samples.len() > 60, "{text}");
        for sample in samples {
            // A histogram's samples belong to the family without the suffix.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| sample.strip_suffix(s).filter(|f| help.contains(f)))
                .unwrap_or(sample);
            assert!(help.contains(&family), "no help text for {sample}:\n{text}");
        }
        assert!(text.contains("# TYPE tickrelay_messages_in_total counter\ntickrelay_messages_in_total 1\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));

        // OpenMetrics names the counter family without `_total`, and ends with EOF.
        let open = metrics.render(Format::OpenMetrics);
        assert!(open.contains("# TYPE tickrelay_messages_in counter\ntickrelay_messages_in_total 1\n"));
        assert!(open.ends_with("# EOF\n"));
    }

    #[test]
    fn the_process_and_the_build_are_exported_as_every_client_library_names_them() {
        // A kind's series appears with the first line its budget leaves out.
        let budget = crate::log_budget::LogBudget::new("metrics_test", 1);
        let now = std::time::Instant::now();
        assert!(budget.take(now).is_some() && budget.take(now).is_none());
        let text = Metrics::new(Arc::new(SimMetrics::default()), Gauge::default()).render(Format::Prometheus);
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            text.contains(&format!("tickrelay_build_info{{version=\"{version}\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains("tickrelay_log_lines_suppressed_total{kind=\"metrics_test\"} 1\n"),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        for family in [
            "process_cpu_seconds_total counter",
            "process_resident_memory_bytes gauge",
            "process_start_time_seconds gauge",
            "process_open_fds gauge",
            "process_threads gauge",
        ] {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{family} in\n{text}");
        }
        let open_metrics = Metrics::new(Arc::new(SimMetrics::default()), Gauge::default()).render(Format::OpenMetrics);
        assert!(
            open_metrics.ends_with("# EOF\n") && open_metrics.matches("# EOF").count() == 1,
            "{open_metrics}"
        );
    }

    #[test]
    fn labelled_families_are_exported_before_their_first_event() {
        let text = Metrics::new(Arc::new(SimMetrics::default()), Gauge::default()).render(Format::Prometheus);
        for sample in [
            "tickrelay_closes_total{code=\"1001\"} 0",
            "tickrelay_closes_total{code=\"4501\"} 0",
            "tickrelay_auth_failures_total{kind=\"expired\"} 0",
            "tickrelay_upgrades_refused_total{status=\"429\"} 0",
        ] {
            assert!(text.contains(sample), "{sample} in\n{text}");
        }
    }

    #[test]
    fn the_format_follows_the_accept_header() {
        let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        let prometheus_3 = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::from_accept(Some(prometheus_3)), Format::OpenMetrics);
        assert_eq!(
            Format::from_accept(Some("Application/OpenMetrics-Text")),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        let prefers_text = "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.1";
        assert_eq!(Format::from_accept(Some(prefers_text)), Format::Prometheus);
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }
}
