//! The bot fleet: many [`tickrelay_client::Client`]s following one scenario, checking
//! invariants as they play, and a report.
//!
//! Every bot joins its room, sends inputs at the scenario's rate and mirrors the
//! room's state, verified against the server's checksums. Tick-to-client latency (the
//! frame's server tick time to its arrival) goes into an HDR histogram. Churn drops
//! connections (resumed by the client) or replaces bots with new players.
//!
//! Invariants, any of which makes the run fail: no desync, no close the scenario did
//! not cause, no client giving up, no input lost (every bot's last input is
//! acknowledged at the end), no input applied twice (relay rooms: each input creates
//! a new entity and removes the previous one, so a replayed input would be refused).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Serializer as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tickrelay_client::{Backoff, Client, ClientConfig, Event, Trust, proto};
use tokio::task::JoinSet;

/// What the fleet does.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Relay URLs (nodes of one cluster): bot `i` connects to `urls[i % n]` and
    /// falls back to the others in turn.
    pub urls: Vec<String>,
    /// A node is expected to be lost (killed, or stopped) during the run: its
    /// connections' 1006 (or 1001) closes, the 1013 closes of resumes elsewhere while
    /// its own lease lives and the `UNAVAILABLE` answers until its rooms' leases
    /// lapse are counted apart (`node_losses`, `unavailable`), not as violations.
    pub node_loss_expected: bool,
    /// The room's game refuses some of the bots' random intents by its own rules
    /// (`INVALID_INTENT`): counted and reported, not a violation.
    pub refusals_expected: bool,
    /// Certificate trust.
    pub trust: Trust,
    /// JWT for every bot (none in anonymous mode).
    pub token: Option<String>,
    /// Number of rooms.
    pub rooms: usize,
    /// Bots per room.
    pub members: usize,
    /// Room type (`arena`, `relay`, or any the relay's configuration names).
    pub room_type: String,
    /// Bots write entities (the input of a room type whose simulation is `relay`)
    /// rather than send two-byte movement intents (arena, and games such as tag).
    pub writes: bool,
    /// Room ids are `<prefix>-<n>`.
    pub room_prefix: String,
    /// Inputs per second per bot (0: idle bots).
    pub input_rate: f64,
    /// How long the bots play, ramp-up included.
    pub duration: Duration,
    /// Bots connect evenly over this time.
    pub ramp_up: Duration,
    /// Frames, bytes, entity updates and latency are counted from this long after the
    /// start to the end (zero: the whole run), so that a load run can measure its
    /// steady window after the ramp-up; the report's duration is then the window's.
    pub warm_up: Duration,
    /// Share of bots that churn per minute (0.1: a tenth of the bots each minute).
    pub churn_per_minute: f64,
    /// Of the churning bots, the share that drop their connection and resume; the
    /// others leave for good and are replaced by new players.
    pub churn_resume_share: f64,
    /// Print a progress line this often (none: silent).
    pub progress: Option<Duration>,
    /// This process runs the bots whose index modulo `workers` is `worker`.
    pub worker: usize,
    /// Number of worker processes.
    pub workers: usize,
    /// Share of bots that mirror their room in full and verify every checksum; the
    /// others follow ticks and input acknowledgements only, which costs a fraction of
    /// the CPU (see [`tickrelay_client::StateMirror::headers_only`]). In every room
    /// the share of its members verifies, rounded up: with 20
    /// members per room a share of 0.1 verifies every room twice, with 8 once (any
    /// share above 0 verifies every room).
    pub verify_share: f64,
}

impl Scenario {
    /// Whether the bot at `index` (room `index / members`) verifies its room's state.
    pub fn verifies(&self, index: usize) -> bool {
        let members = self.members.max(1);
        let share = self.verify_share.clamp(0.0, 1.0);
        let verifying = (members as f64 * share).ceil() as usize;
        // Seats shifted by the room's number, so that worker processes (which take
        // bots by index) share the verifying bots evenly.
        let (room, seat) = (index / members, index % members);
        (seat + room) % members < verifying
    }
}

/// How long a bot plays before its join not answered counts as never answered.
pub const JOIN_WAIT: Duration = Duration::from_secs(5);

/// Counters, summed over bots.
#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    max_connected: AtomicU64,
    players_joined: AtomicU64,
    never_joined: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    entity_updates: AtomicU64,
    inputs_sent: AtomicU64,
    inputs_counted: AtomicU64,
    reconnects: AtomicU64,
    resumes: AtomicU64,
    desyncs: AtomicU64,
    checksums: AtomicU64,
    messages_lost: AtomicU64,
    events_dropped: AtomicU64,
    gave_up: AtomicU64,
    lost_inputs: AtomicU64,
    replaced_players: AtomicU64,
    node_losses: AtomicU64,
    unavailable: AtomicU64,
    inputs_rolled_back: AtomicU64,
    inputs_unconfirmed: AtomicU64,
    /// Reconnections and desyncs of live bots as their events arrive, for the progress
    /// line (the report counts each bot's own figures when it ends: events can be
    /// dropped behind a slow bot).
    seen_reconnects: AtomicU64,
    seen_desyncs: AtomicU64,
}

/// The result of a run (mergeable across worker processes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Bots started (new players from churn included).
    pub bots: u64,
    /// Seats played (rooms × members, of this worker's share): one bot at a time in
    /// each, however often churn replaced it.
    #[serde(default)]
    pub seats: u64,
    /// Most bots connected at once.
    pub max_connected: u64,
    /// Bots (players) whose join of their room was answered at least once.
    #[serde(default)]
    pub players_joined: u64,
    /// Client events a bot was too slow to take (its client dropped them, state frames
    /// mostly): frames and latency under-count by that much.
    #[serde(default)]
    pub events_dropped: u64,
    /// Bots connected for [`JOIN_WAIT`] or longer whose join was never answered.
    #[serde(default)]
    pub never_joined: u64,
    /// The run expected a node to be lost ([`Scenario::node_loss_expected`]): bots
    /// that never joined and inputs rolled back are then no violation.
    #[serde(default)]
    pub node_loss_expected: bool,
    /// The run expected a game's refusals ([`Scenario::refusals_expected`]).
    #[serde(default)]
    pub refusals_expected: bool,
    /// Seconds counted: from the end of the warm-up to the end of play.
    pub seconds: f64,
    /// State frames applied.
    pub frames: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Entity updates in the state frames applied: entities added, changed or
    /// removed, summed over frames.
    #[serde(default)]
    pub entity_updates: u64,
    /// Inputs sent.
    pub inputs_sent: u64,
    /// Inputs sent in the counted time (after the warm-up): with `seconds`, the
    /// input rate the fleet actually generated, which falls short of the rate asked
    /// when the bots' CPU is saturated.
    #[serde(default)]
    pub inputs_counted: u64,
    /// Reconnections.
    pub reconnects: u64,
    /// Of which resumed.
    pub resumes: u64,
    /// Desyncs detected.
    pub desyncs: u64,
    /// State checksums verified (by the verifying bots).
    #[serde(default)]
    pub checksums: u64,
    /// Server messages (events, presence, responses) lost across resumes.
    #[serde(default)]
    pub messages_lost: u64,
    /// Clients that gave up.
    pub gave_up: u64,
    /// Why clients gave up: the reason, and how many gave up for it.
    #[serde(default)]
    pub gave_up_reasons: BTreeMap<String, u64>,
    /// Reconnection waits, by why the last connection or attempt ended (a refused
    /// attempt, or a connection lost): at most [`MAX_ATTEMPT_REASONS`] reasons, the
    /// rest counted under "other reasons".
    #[serde(default)]
    pub failed_attempts: BTreeMap<String, u64>,
    /// Inputs never acknowledged at the end.
    pub lost_inputs: u64,
    /// Players replaced by churn.
    pub replaced_players: u64,
    /// Closes not caused by the scenario, by close code.
    pub unexpected_closes: BTreeMap<u16, u64>,
    /// Error messages from the server, by error code.
    pub errors: BTreeMap<i32, u64>,
    /// The first error message's text for each code.
    #[serde(default)]
    pub error_texts: BTreeMap<i32, String>,
    /// Bots the server removed from their room (`Left` with a reason: the room
    /// closed, or the game removed the member), by that reason; such a bot stops
    /// playing.
    #[serde(default)]
    pub removed: BTreeMap<i32, u64>,
    /// Tick-to-client latency histogram (HDR V2, base64), microseconds.
    pub latency: String,
    /// With [`Scenario::node_loss_expected`]: connections lost without a close (1006),
    /// closed by a node stopping (1001), or refused a resume elsewhere (1013, 4504).
    #[serde(default)]
    pub node_losses: u64,
    /// With [`Scenario::node_loss_expected`]: joins answered `UNAVAILABLE`.
    #[serde(default)]
    pub unavailable: u64,
    /// Inputs the server had acknowledged and then no longer counted as applied after
    /// a rejoin (a room restored from a checkpoint older than them, or a seat lost).
    #[serde(default)]
    pub inputs_rolled_back: u64,
    /// With [`Scenario::node_loss_expected`]: inputs not acknowledged by the end of
    /// the bot's play (the end of the run, or its leaving for good) because its room
    /// was not back yet (no frame since its connection was lost: its join still
    /// waiting, `UNAVAILABLE`), counted from the last one acknowledged. Without a
    /// node loss expected they count as lost.
    #[serde(default)]
    pub inputs_unconfirmed: u64,
    /// From a connection lost (or dropped) to the next state frame of the bot's room
    /// (HDR V2, base64), microseconds: how long players wait to play again.
    #[serde(default)]
    pub recovery: String,
    /// From an input sent to the first state frame that acknowledges it
    /// (`last_input_seq`), after the warm-up, timed by the verifying bots (HDR V2,
    /// base64), microseconds: the wait for the room's next tick plus the frame's way
    /// back.
    #[serde(default)]
    pub input_latency: String,
}

impl Report {
    /// Adds another worker's report.
    pub fn merge(&mut self, other: &Report) {
        self.bots += other.bots;
        self.seats += other.seats;
        self.max_connected += other.max_connected;
        self.players_joined += other.players_joined;
        self.never_joined += other.never_joined;
        self.events_dropped += other.events_dropped;
        self.node_loss_expected |= other.node_loss_expected;
        self.refusals_expected |= other.refusals_expected;
        self.seconds = self.seconds.max(other.seconds);
        self.frames += other.frames;
        self.bytes += other.bytes;
        self.entity_updates += other.entity_updates;
        self.inputs_sent += other.inputs_sent;
        self.inputs_counted += other.inputs_counted;
        self.reconnects += other.reconnects;
        self.resumes += other.resumes;
        self.desyncs += other.desyncs;
        self.checksums += other.checksums;
        self.messages_lost += other.messages_lost;
        self.gave_up += other.gave_up;
        for (k, v) in &other.failed_attempts {
            count_attempt(&mut self.failed_attempts, k, *v);
        }
        for (k, v) in &other.gave_up_reasons {
            *self.gave_up_reasons.entry(k.clone()).or_default() += v;
        }
        self.lost_inputs += other.lost_inputs;
        self.replaced_players += other.replaced_players;
        for (k, v) in &other.unexpected_closes {
            *self.unexpected_closes.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (k, text) in &other.error_texts {
            self.error_texts.entry(*k).or_insert_with(|| text.clone());
        }
        for (k, v) in &other.removed {
            *self.removed.entry(*k).or_default() += v;
        }
        let merge = |mine: &mut String, theirs: &str| {
            let mut merged = decode_histogram(mine);
            merged.add(decode_histogram(theirs)).expect("same histogram bounds");
            *mine = encode_histogram(&merged);
        };
        merge(&mut self.latency, &other.latency);
        merge(&mut self.recovery, &other.recovery);
        merge(&mut self.input_latency, &other.input_latency);
        self.node_losses += other.node_losses;
        self.unavailable += other.unavailable;
        self.inputs_rolled_back += other.inputs_rolled_back;
        self.inputs_unconfirmed += other.inputs_unconfirmed;
    }

    /// The latency histogram.
    pub fn histogram(&self) -> Histogram<u64> {
        decode_histogram(&self.latency)
    }

    /// Every invariant the run violated (empty: success).
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.bots > 0 && self.max_connected == 0 {
            let attempts: Vec<String> = (self.failed_attempts.iter())
                .map(|(reason, n)| format!("{n} × {reason}"))
                .collect();
            match attempts.is_empty() {
                true => v.push("no bot ever connected".to_string()),
                false => v.push(format!(
                    "no bot ever connected; attempts failed: {}",
                    attempts.join("; ")
                )),
            }
        } else if self.bots > 0 && self.players_joined == 0 {
            v.push("no bot ever joined its room".to_string());
        } else if self.never_joined > 0 && !self.node_loss_expected {
            v.push(format!("{} bots never joined their room", self.never_joined));
        }
        // Without a node lost, a relay that forgets applied inputs (a resume that
        // lost them) is wrong: clients number on and the run would pass.
        if self.inputs_rolled_back > 0 && !self.node_loss_expected {
            v.push(format!("{} acknowledged inputs rolled back", self.inputs_rolled_back));
        }
        if self.desyncs > 0 {
            v.push(format!("{} desyncs", self.desyncs));
        }
        if self.gave_up > 0 {
            let reasons: Vec<String> = (self.gave_up_reasons.iter())
                .map(|(reason, n)| format!("{n} × {reason}"))
                .collect();
            v.push(format!("{} clients gave up: {}", self.gave_up, reasons.join("; ")));
        }
        if self.messages_lost > 0 {
            v.push(format!("{} server messages lost across resumes", self.messages_lost));
        }
        if self.lost_inputs > 0 {
            v.push(format!("{} inputs never acknowledged", self.lost_inputs));
        }
        let closes: u64 = self.unexpected_closes.values().sum();
        if closes > 0 {
            v.push(format!("{closes} unexpected closes {:?}", self.unexpected_closes));
        }
        let duplicates = [proto::ErrorCode::EntityExists, proto::ErrorCode::EntityNotFound]
            .iter()
            .map(|c| self.errors.get(&(*c as i32)).copied().unwrap_or(0))
            .sum::<u64>();
        if duplicates > 0 {
            v.push(format!("{duplicates} inputs applied twice or out of order"));
        }
        let refusals = match self.refusals_expected {
            true => (self.errors.get(&(proto::ErrorCode::InvalidIntent as i32)).copied()).unwrap_or(0),
            false => 0,
        };
        let errors: u64 = self.errors.values().sum();
        if errors > duplicates + refusals {
            v.push(format!("server errors {}", named_codes(&self.errors)));
            v.extend(self.error_texts.iter().map(|(&code, text)| {
                let hint = error_hint(code).map(|hint| format!(" ({hint})")).unwrap_or_default();
                format!("  {}: \"{text}\"{hint}", code_name(code))
            }));
        }
        let removed: u64 = self.removed.values().sum();
        if removed > 0 {
            v.push(format!(
                "{removed} bots removed from their room by the server {}",
                named_codes(&self.removed)
            ));
        }
        v
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let h = self.histogram();
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        // Per seat: churn's replacements play in turn, not at once.
        let clients = if self.seats > 0 { self.seats } else { self.bots };
        let per_client = clients.max(1) as f64 * self.seconds.max(0.001);
        let rows = [
            ("bots started", self.bots.to_string()),
            ("connections held (max)", self.max_connected.to_string()),
            ("players that joined their room", self.players_joined.to_string()),
            ("bots that never joined", self.never_joined.to_string()),
            ("client events dropped (bots too slow)", self.events_dropped.to_string()),
            ("duration", format!("{:.1} s", self.seconds)),
            (
                "state frames / s",
                format!("{:.0}", self.frames as f64 / self.seconds.max(0.001)),
            ),
            ("bytes / s per client", format!("{:.0}", self.bytes as f64 / per_client)),
            (
                "entity updates / s",
                format!("{:.0}", self.entity_updates as f64 / self.seconds.max(0.001)),
            ),
            (
                "bytes / entity update",
                format!("{:.2}", self.bytes as f64 / self.entity_updates.max(1) as f64),
            ),
            ("inputs sent", self.inputs_sent.to_string()),
            (
                "inputs sent / s",
                format!("{:.0}", self.inputs_counted as f64 / self.seconds.max(0.001)),
            ),
            ("latency p50", format!("{:.2} ms", ms(0.5))),
            ("latency p90", format!("{:.2} ms", ms(0.9))),
            ("latency p99", format!("{:.2} ms", ms(0.99))),
            ("latency p99.9", format!("{:.2} ms", ms(0.999))),
            ("latency max", format!("{:.2} ms", h.max() as f64 / 1000.0)),
            ("latency samples", h.len().to_string()),
            ("reconnects", self.reconnects.to_string()),
            ("of which resumed", self.resumes.to_string()),
            ("players replaced", self.replaced_players.to_string()),
            ("desyncs", self.desyncs.to_string()),
            ("checksums verified", self.checksums.to_string()),
            ("messages lost across resumes", self.messages_lost.to_string()),
            ("inputs lost", self.lost_inputs.to_string()),
            ("unexpected closes", format!("{:?}", self.unexpected_closes)),
            ("server errors", named_codes(&self.errors)),
            ("removed from their room by the server", named_codes(&self.removed)),
        ];
        let recovery = decode_histogram(&self.recovery);
        let recovered = (!recovery.is_empty()).then(|| {
            let ms = |q: f64| recovery.value_at_quantile(q) as f64 / 1000.0;
            [
                ("connections lost with a node", self.node_losses.to_string()),
                ("joins answered UNAVAILABLE", self.unavailable.to_string()),
                ("inputs rolled back", self.inputs_rolled_back.to_string()),
                (
                    "inputs unconfirmed: the room not back at the end",
                    self.inputs_unconfirmed.to_string(),
                ),
                (
                    "back to playing p50 / p99 / max",
                    format!(
                        "{:.0} / {:.0} / {:.0} ms ({} times)",
                        ms(0.5),
                        ms(0.99),
                        recovery.max() as f64 / 1000.0,
                        recovery.len()
                    ),
                ),
            ]
        });
        let input_latency = decode_histogram(&self.input_latency);
        let acknowledged = (!input_latency.is_empty()).then(|| {
            let ms = |q: f64| input_latency.value_at_quantile(q) as f64 / 1000.0;
            (
                "input to its acknowledging frame p50 / p99 / max",
                format!(
                    "{:.2} / {:.2} / {:.2} ms",
                    ms(0.5),
                    ms(0.99),
                    input_latency.max() as f64 / 1000.0
                ),
            )
        });
        let rows = rows
            .into_iter()
            .chain(acknowledged)
            .chain(recovered.into_iter().flatten());
        let mut out = String::from("| metric | value |\n|---|---|\n");
        for (k, v) in rows {
            out.push_str(&format!("| {k} | {v} |\n"));
        }
        out
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 minute, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn encode_histogram(h: &Histogram<u64>) -> String {
    use base64::Engine;
    let mut buf = Vec::new();
    hdrhistogram::serialization::V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("serializing to memory");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

fn decode_histogram(text: &str) -> Histogram<u64> {
    use base64::Engine;
    if text.is_empty() {
        return new_histogram();
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64 histogram");
    let mut h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut &bytes[..])
        .expect("HDR histogram");
    h.auto(true);
    h
}

/// Shared by all bots of a process.
struct Fleet {
    scenario: Scenario,
    counters: Counters,
    /// Sharded so thousands of bots do not contend on one lock.
    latency: Vec<Mutex<Histogram<u64>>>,
    input_latency: Vec<Mutex<Histogram<u64>>>,
    recovery: Mutex<Histogram<u64>>,
    closes: Mutex<BTreeMap<u16, u64>>,
    errors: Mutex<BTreeMap<i32, u64>>,
    error_texts: Mutex<BTreeMap<i32, String>>,
    removed: Mutex<BTreeMap<i32, u64>>,
    gave_up_reasons: Mutex<BTreeMap<String, u64>>,
    failed_attempts: Mutex<BTreeMap<String, u64>>,
    bots_started: AtomicU64,
    /// Counting starts here (see [`Scenario::warm_up`]).
    measure_from: Instant,
    stop_at: Instant,
    /// The QUIC endpoints the bots share (one per [`BOTS_PER_QUIC_ENDPOINT`]; none
    /// when no URL is `quic://`).
    quic_endpoints: Vec<quinn::Endpoint>,
}

/// Bots that share one QUIC endpoint (one UDP socket, read in batches by one task):
/// an endpoint per bot costs a socket, a task and a receive system call per
/// datagram.
const BOTS_PER_QUIC_ENDPOINT: usize = 500;

/// Inputs a bot remembers sending until they are acknowledged (for
/// [`Report::input_latency`]); beyond, the oldest are forgotten.
const IN_FLIGHT: usize = 256;

/// The shared QUIC endpoints for `bots` bots (see [`BOTS_PER_QUIC_ENDPOINT`]).
fn quic_endpoints(scenario: &Scenario, bots: usize) -> std::io::Result<Vec<quinn::Endpoint>> {
    if !scenario.urls.iter().any(|u| u.starts_with("quic://")) {
        return Ok(Vec::new());
    }
    // A dual-stack socket reaches IPv4 and IPv6 relays (a name may resolve to
    // either); where the system has no IPv6, an IPv4 one.
    let bind = || {
        tickrelay_client::quic_endpoint("[::]:0".parse().expect("valid address"))
            .or_else(|_| tickrelay_client::quic_endpoint("0.0.0.0:0".parse().expect("valid address")))
    };
    (0..bots.div_ceil(BOTS_PER_QUIC_ENDPOINT).max(1))
        .map(|_| bind())
        .collect()
}

/// The most distinct reasons a report keeps for failed connection attempts.
pub const MAX_ATTEMPT_REASONS: usize = 8;

/// Counts `n` failed connection attempts for `reason` in `attempts` (beyond
/// [`MAX_ATTEMPT_REASONS`] reasons, under "other reasons").
fn count_attempt(attempts: &mut BTreeMap<String, u64>, reason: &str, n: u64) {
    let reason = if attempts.contains_key(reason) || attempts.len() < MAX_ATTEMPT_REASONS {
        reason
    } else {
        "other reasons"
    };
    *attempts.entry(reason.to_string()).or_default() += n;
}

impl Fleet {
    /// A bot gave up for `reason`.
    fn gave_up(&self, reason: String) {
        self.counters.gave_up.fetch_add(1, Ordering::Relaxed);
        *self.gave_up_reasons.lock().entry(reason).or_default() += 1;
    }
}

/// Runs the scenario in this process and returns its report.
pub async fn run_scenario(scenario: Scenario) -> Report {
    let started = Instant::now();
    let total = scenario.rooms * scenario.members;
    let mine: Vec<usize> = (0..total)
        .filter(|i| i % scenario.workers.max(1) == scenario.worker)
        .collect();
    let quic_endpoints = quic_endpoints(&scenario, mine.len()).unwrap_or_else(|e| {
        eprintln!("tickrelay-bots: no shared QUIC endpoint ({e}); each bot binds its own");
        Vec::new()
    });
    let fleet = Arc::new(Fleet {
        counters: Counters::default(),
        latency: (0..32).map(|_| Mutex::new(new_histogram())).collect(),
        input_latency: (0..32).map(|_| Mutex::new(new_histogram())).collect(),
        recovery: Mutex::new(new_histogram()),
        closes: Mutex::new(BTreeMap::new()),
        errors: Mutex::new(BTreeMap::new()),
        error_texts: Mutex::new(BTreeMap::new()),
        removed: Mutex::new(BTreeMap::new()),
        gave_up_reasons: Mutex::new(BTreeMap::new()),
        failed_attempts: Mutex::new(BTreeMap::new()),
        bots_started: AtomicU64::new(0),
        measure_from: started + scenario.warm_up,
        stop_at: started + scenario.duration,
        scenario,
        quic_endpoints,
    });
    let mut bots = JoinSet::new();
    let ramp_step = fleet.scenario.ramp_up.as_secs_f64() / mine.len().max(1) as f64;
    let progress = fleet
        .scenario
        .progress
        .map(|every| tokio::spawn(progress(fleet.clone(), every, started)));
    for (n, index) in mine.into_iter().enumerate() {
        let fleet = fleet.clone();
        let start_at = started + Duration::from_secs_f64(ramp_step * n as f64);
        bots.spawn(async move {
            tokio::time::sleep_until(start_at.into()).await;
            let mut generation = 0;
            // A bot replaced by churn starts again as a new player in the same seat.
            while bot(&fleet, index, generation).await {
                generation += 1;
                fleet.counters.replaced_players.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while bots.join_next().await.is_some() {}
    // The bots' closes on shared QUIC endpoints go out before the process exits.
    for endpoint in &fleet.quic_endpoints {
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let c = &fleet.counters;
    let merged = |shards: &[Mutex<Histogram<u64>>]| {
        let mut all = new_histogram();
        for shard in shards {
            all.add(&*shard.lock()).expect("same bounds");
        }
        encode_histogram(&all)
    };
    Report {
        bots: fleet.bots_started.load(Ordering::Relaxed),
        max_connected: c.max_connected.load(Ordering::Relaxed),
        players_joined: c.players_joined.load(Ordering::Relaxed),
        never_joined: c.never_joined.load(Ordering::Relaxed),
        seats: {
            let (s, seats) = (&fleet.scenario, fleet.scenario.rooms * fleet.scenario.members);
            (0..seats).filter(|i| i % s.workers.max(1) == s.worker).count() as u64
        },
        events_dropped: c.events_dropped.load(Ordering::Relaxed),
        node_loss_expected: fleet.scenario.node_loss_expected,
        refusals_expected: fleet.scenario.refusals_expected,
        // The time played (and counted), without the wait for the last acks.
        seconds: (fleet.stop_at.min(Instant::now()))
            .saturating_duration_since(fleet.measure_from)
            .as_secs_f64(),
        frames: c.frames.load(Ordering::Relaxed),
        bytes: c.bytes.load(Ordering::Relaxed),
        entity_updates: c.entity_updates.load(Ordering::Relaxed),
        inputs_sent: c.inputs_sent.load(Ordering::Relaxed),
        inputs_counted: c.inputs_counted.load(Ordering::Relaxed),
        reconnects: c.reconnects.load(Ordering::Relaxed),
        resumes: c.resumes.load(Ordering::Relaxed),
        desyncs: c.desyncs.load(Ordering::Relaxed),
        checksums: c.checksums.load(Ordering::Relaxed),
        messages_lost: c.messages_lost.load(Ordering::Relaxed),
        gave_up: c.gave_up.load(Ordering::Relaxed),
        gave_up_reasons: fleet.gave_up_reasons.lock().clone(),
        failed_attempts: fleet.failed_attempts.lock().clone(),
        lost_inputs: c.lost_inputs.load(Ordering::Relaxed),
        replaced_players: c.replaced_players.load(Ordering::Relaxed),
        unexpected_closes: fleet.closes.lock().clone(),
        errors: fleet.errors.lock().clone(),
        error_texts: fleet.error_texts.lock().clone(),
        removed: fleet.removed.lock().clone(),
        latency: merged(&fleet.latency),
        input_latency: merged(&fleet.input_latency),
        node_losses: c.node_losses.load(Ordering::Relaxed),
        unavailable: c.unavailable.load(Ordering::Relaxed),
        inputs_rolled_back: c.inputs_rolled_back.load(Ordering::Relaxed),
        inputs_unconfirmed: c.inputs_unconfirmed.load(Ordering::Relaxed),
        recovery: encode_histogram(&fleet.recovery.lock()),
    }
}

async fn progress(fleet: Arc<Fleet>, every: Duration, started: Instant) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let c = &fleet.counters;
        let mut latency = new_histogram();
        for shard in &fleet.latency {
            latency.add(&*shard.lock()).expect("same bounds");
        }
        eprintln!(
            "[worker {}] t={:>4.0}s connected={} frames={} p99={:.2}ms reconnects={} desyncs={} errors={:?} closes={:?} removed={:?}",
            fleet.scenario.worker,
            started.elapsed().as_secs_f64(),
            c.connected.load(Ordering::Relaxed),
            c.frames.load(Ordering::Relaxed),
            latency.value_at_quantile(0.99) as f64 / 1000.0,
            c.seen_reconnects.load(Ordering::Relaxed),
            c.seen_desyncs.load(Ordering::Relaxed),
            fleet.errors.lock(),
            fleet.closes.lock(),
            fleet.removed.lock(),
        );
    }
}

/// One player: plays until the scenario ends (returns false) or churn replaces it
/// (returns true).
async fn bot(fleet: &Fleet, index: usize, generation: u64) -> bool {
    let s = &fleet.scenario;
    fleet.bots_started.fetch_add(1, Ordering::Relaxed);
    let room = format!("{}-{}", s.room_prefix, index / s.members.max(1));
    let mut urls = s
        .urls
        .iter()
        .cycle()
        .skip(index % s.urls.len().max(1))
        .take(s.urls.len());
    let mut config = ClientConfig::new(urls.next().map_or("", |u| u.as_str()), s.trust.clone());
    config.fallback_urls = urls.cloned().collect();
    config.token = s.token.clone();
    config.backoff = Backoff {
        initial: Duration::from_millis(250),
        max: Duration::from_secs(5),
        max_attempts: Some(8),
    };
    config.ping_interval = Duration::from_secs(5);
    config.quiet_timeout = Duration::from_secs(15);
    config.mirror_contents = s.verifies(index);
    if !fleet.quic_endpoints.is_empty() {
        config.quic_endpoint = Some(fleet.quic_endpoints[index % fleet.quic_endpoints.len()].clone());
    }
    let (client, mut events) = match Client::connect(config) {
        Ok(connected) => connected,
        Err(e) => {
            fleet.gave_up(e.to_string());
            return false;
        }
    };
    client.join(&room, &s.room_type);
    let mut rng = fastrand::Rng::with_seed((index as u64) << 16 | generation);
    let input_every = (s.input_rate > 0.0).then(|| Duration::from_secs_f64(1.0 / s.input_rate));
    let mut inputs = tokio::time::interval(input_every.unwrap_or(Duration::from_secs(3600)));
    inputs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Churn is decided once a second: probability churn_per_minute / 60.
    let mut churn_clock = tokio::time::interval(Duration::from_secs(1));
    churn_clock.tick().await;
    let relay = s.writes;
    let entity_base = ((index as u64) << 32) | (generation << 24);
    let mut sent = 0u64;
    let mut joined = false;
    let mut ever_joined = false;
    // The relay refused the join (answered, so counted however soon the run ends).
    let mut join_refused = false;
    // When the bot's first connection was welcomed.
    let mut connected_at: Option<Instant> = None;
    let mut dropping = false;
    // The server removed the bot from its room (see `Report::removed`).
    let mut removed = false;
    // A rollback (a room restored from an older checkpoint) makes the next removal fail.
    let mut removal_refused_ahead = false;
    // The bot's open connections (home, and the nodes its room was redirected to):
    // it counts as connected while it has one.
    let mut live = 0u32;
    // When the connection was last lost, until the room's next frame.
    let mut lost_at: Option<Instant> = None;
    // The last input the server acknowledged, and the member that had it applied.
    let mut acked = 0u64;
    // A verifying bot's inputs sent and not yet acknowledged, with when (the oldest
    // dropped beyond `IN_FLIGHT`).
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let times_inputs = s.verifies(index);
    let mut member = None;
    // One timer for the bot's whole play, not one made per turn of the loop.
    let stop = tokio::time::sleep_until(tokio::time::Instant::from_std(fleet.stop_at));
    tokio::pin!(stop);
    let c = &fleet.counters;
    // This client's (bytes received, entity updates) when counting started: as they
    // were up to the frame before the first one after the warm-up (zero without a
    // warm-up), so that first frame counts with its bytes.
    let mut counted_from = s.warm_up.is_zero().then_some((0, 0));
    let mut before_frame = (0, 0);
    let opened = |live: &mut u32| {
        *live += 1;
        if *live == 1 {
            let n = c.connected.fetch_add(1, Ordering::Relaxed) + 1;
            c.max_connected.fetch_max(n, Ordering::Relaxed);
        }
    };
    let closed = |live: &mut u32| {
        if *live == 1 {
            c.connected.fetch_sub(1, Ordering::Relaxed);
        }
        *live = live.saturating_sub(1);
    };
    let replaced = loop {
        tokio::select! {
            () = &mut stop => break false,
            _ = inputs.tick(), if joined && input_every.is_some() => {
                sent += 1;
                let payload = if relay {
                    // Create a new entity, remove the previous: a replay would fail.
                    let create = vec![proto::Entity { id: entity_base + sent, owner: 0, kind: 1, fields: vec![] }];
                    let remove = if sent > 1 { vec![entity_base + sent - 1] } else { vec![] };
                    proto::input::Payload::Writes(Box::new(proto::EntityWrites { create, remove, ..Default::default() }))
                } else {
                    let intent = [rng.i8(..) as u8, rng.i8(..) as u8];
                    proto::input::Payload::Intent(Bytes::copy_from_slice(&intent))
                };
                let seq = client.send_input(&room, payload);
                if let Some(seq) = seq.filter(|_| times_inputs) {
                    if in_flight.len() == IN_FLIGHT {
                        in_flight.pop_front();
                    }
                    in_flight.push_back((seq, Instant::now()));
                }
                c.inputs_sent.fetch_add(1, Ordering::Relaxed);
                if counted_from.is_some() {
                    c.inputs_counted.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = churn_clock.tick(), if joined => {
                if rng.f64() < s.churn_per_minute / 60.0 {
                    if rng.f64() < s.churn_resume_share {
                        dropping = true;
                        client.drop_connection();
                    } else {
                        break true; // leave for good; a new player takes the seat
                    }
                }
            }
            event = events.recv() => match event {
                None => break false,
                Some(Event::Connected { .. }) => {
                    if connected_at.is_some() {
                        c.seen_reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    connected_at.get_or_insert_with(Instant::now);
                    opened(&mut live);
                }
                Some(Event::Reconnecting { reason, .. }) => count_attempt(&mut fleet.failed_attempts.lock(), &reason, 1),
                Some(Event::Joined(j)) => {
                    if !ever_joined {
                        c.players_joined.fetch_add(1, Ordering::Relaxed);
                    }
                    (joined, ever_joined) = (true, true);
                    // A new member (its session could not be continued) had none of
                    // them applied: what the old one had is no rollback. A relay bot's
                    // next input removes an entity the old member made (gone with it,
                    // or not the new member's): refused once.
                    if member.replace(j.member_id).is_some_and(|old| old != j.member_id) {
                        acked = 0;
                        in_flight.clear();
                        removal_refused_ahead |= relay;
                    }
                    let rolled_back = acked.saturating_sub(j.last_input_seq);
                    c.inputs_rolled_back.fetch_add(rolled_back, Ordering::Relaxed);
                    // A relay bot's next input removes the entity its previous one
                    // created: after a room restored from an older checkpoint that
                    // entity is gone, and the removal is refused once.
                    removal_refused_ahead |= relay && rolled_back > 0;
                    acked = j.last_input_seq;
                }
                Some(Event::State { server_time_us, received_us, .. }) => {
                    if let Some(at) = lost_at.take() {
                        let _ = fleet.recovery.lock().record((at.elapsed().as_micros() as u64).max(1));
                    }
                    acked = acked.max(client.with_mirror(&room, |m| m.last_input_seq()).unwrap_or(0));
                    if counted_from.is_none() && Instant::now() >= fleet.measure_from {
                        counted_from = Some(before_frame);
                    }
                    while let Some(&(seq, at)) = in_flight.front()
                        && seq <= acked
                    {
                        in_flight.pop_front();
                        if counted_from.is_some() {
                            let waited = (at.elapsed().as_micros() as u64).max(1);
                            let _ = fleet.input_latency[index % fleet.input_latency.len()].lock().record(waited);
                        }
                    }
                    if counted_from.is_some() {
                        c.frames.fetch_add(1, Ordering::Relaxed);
                        let latency = received_us.saturating_sub(server_time_us).max(1);
                        let _ = fleet.latency[index % fleet.latency.len()].lock().record(latency);
                    } else {
                        let stats = client.stats();
                        before_frame = (
                            stats.bytes_in.load(Ordering::Relaxed),
                            stats.entity_updates.load(Ordering::Relaxed),
                        );
                    }
                }
                Some(Event::Disconnected { code, .. }) => {
                    closed(&mut live);
                    lost_at.get_or_insert_with(Instant::now);
                    if dropping && code == 1006 {
                        // The scenario's own churn.
                    } else if s.node_loss_expected && matches!(code, 1001 | 1006 | 1013 | 4504) {
                        // (4504: a session begun just before its node died was not
                        // recorded yet, PROTOCOL.md.)
                        c.node_losses.fetch_add(1, Ordering::Relaxed);
                    } else {
                        *fleet.closes.lock().entry(code).or_default() += 1;
                    }
                    dropping = false;
                }
                Some(Event::Error(e)) if s.node_loss_expected && e.code == proto::ErrorCode::Unavailable as i32 => {
                    c.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                Some(Event::Error(e))
                    if removal_refused_ahead
                        && [proto::ErrorCode::EntityNotFound, proto::ErrorCode::NotOwner]
                            .iter()
                            .any(|&code| e.code == code as i32) =>
                {
                    removal_refused_ahead = false;
                }
                Some(Event::Error(e)) => {
                    join_refused |= !ever_joined && e.room == room;
                    *fleet.errors.lock().entry(e.code).or_default() += 1;
                    (fleet.error_texts.lock().entry(e.code)).or_insert_with(|| e.message.clone());
                }
                Some(Event::GaveUp { reason, .. }) => {
                    fleet.gave_up(reason);
                    break false;
                }
                // Removed by the server: its inputs go nowhere now, and none sent
                // after this counts as lost.
                Some(Event::Left(left)) if removed_from(&room, &left) => {
                    *fleet.removed.lock().entry(left.reason).or_default() += 1;
                    removed = true;
                    break false;
                }
                Some(Event::Desync { .. }) => {
                    c.seen_desyncs.fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {}
            },
        }
    };
    // Bytes and entity updates up to the end of play (not the wait for acks below).
    if let Some((bytes, updates)) = counted_from {
        let stats = client.stats();
        let bytes = stats.bytes_in.load(Ordering::Relaxed) - bytes;
        let updates = stats.entity_updates.load(Ordering::Relaxed) - updates;
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
        c.entity_updates.fetch_add(updates, Ordering::Relaxed);
    }
    // Let the last inputs be acknowledged, then check none was lost.
    if sent > 0 && live > 0 && !removed {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while client.with_mirror(&room, |m| m.last_input_seq()) < Some(sent) && tokio::time::Instant::now() < deadline {
            if let Ok(Some(Event::Left(left))) = tokio::time::timeout_at(deadline, events.recv()).await
                && removed_from(&room, &left)
            {
                *fleet.removed.lock().entry(left.reason).or_default() += 1;
                removed = true;
                break;
            }
        }
        // Applied as the room last said, if it said anything since the client's last
        // connection (a new connection's mirror waits for its room's first frame).
        let applied = client.with_mirror(&room, |m| (m.tick() > 0).then(|| m.last_input_seq()));
        match applied.flatten() {
            _ if removed => 0,
            Some(applied) => c.lost_inputs.fetch_add(sent.saturating_sub(applied), Ordering::Relaxed),
            // The room is not back (its node was lost, its join still waits), so
            // nothing since the last acknowledgement can be confirmed.
            None if s.node_loss_expected => c
                .inputs_unconfirmed
                .fetch_add(sent.saturating_sub(acked), Ordering::Relaxed),
            None => c.lost_inputs.fetch_add(sent, Ordering::Relaxed),
        };
    }
    // (A player that came in at the very end may not have been answered yet.)
    if !ever_joined && (join_refused || connected_at.is_some_and(|at| at.elapsed() >= JOIN_WAIT)) {
        c.never_joined.fetch_add(1, Ordering::Relaxed);
    }
    let stats = client.stats();
    c.reconnects
        .fetch_add(stats.reconnects.load(Ordering::Relaxed), Ordering::Relaxed);
    c.resumes
        .fetch_add(stats.resumes.load(Ordering::Relaxed), Ordering::Relaxed);
    c.desyncs
        .fetch_add(stats.desyncs.load(Ordering::Relaxed), Ordering::Relaxed);
    c.checksums
        .fetch_add(stats.checksums.load(Ordering::Relaxed), Ordering::Relaxed);
    c.messages_lost
        .fetch_add(stats.messages_lost.load(Ordering::Relaxed), Ordering::Relaxed);
    c.events_dropped
        .fetch_add(stats.events_dropped.load(Ordering::Relaxed), Ordering::Relaxed);
    client.close().await;
    if live > 0 {
        c.connected.fetch_sub(1, Ordering::Relaxed);
    }
    replaced
}

/// Whether `left` says the server removed the bot from `room` (a reason: the room
/// closed, or the game removed the member; none: the bot's own leave).
fn removed_from(room: &str, left: &proto::Left) -> bool {
    left.reason != 0 && left.room == room
}

/// Counts by error code, named as PROTOCOL.md lists them (`{ROOM_FULL: 2}`).
fn named_codes(counts: &BTreeMap<i32, u64>) -> String {
    let named: Vec<String> = (counts.iter())
        .map(|(&code, &n)| format!("{}: {n}", code_name(code)))
        .collect();
    format!("{{{}}}", named.join(", "))
}

/// An error code's name without its prefix (`ROOM_FULL`).
fn code_name(code: i32) -> &'static str {
    (proto::ErrorCode::try_from(code).map(|c| c.as_str_name()))
        .map_or("UNKNOWN", |name| name.trim_start_matches("ERROR_CODE_"))
}

/// What a user running the bots may change when the server answers `code`.
fn error_hint(code: i32) -> Option<&'static str> {
    use proto::ErrorCode;
    Some(match ErrorCode::try_from(code).ok()? {
        ErrorCode::WrongPayload => {
            "the room's simulation takes the other kind of input: --payload writes for a room type whose simulation is relay, --payload intents otherwise"
        }
        ErrorCode::RoomTypeMismatch => "the rooms exist with another type: pick another --room-prefix",
        ErrorCode::UnknownRoomType => "--room-type names a type the relay's configuration does not have",
        ErrorCode::Forbidden => "the token's rooms do not cover PREFIX-N: see --room-prefix",
        ErrorCode::RoomFull => "more --members than the room type's seats",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            bots: 4,
            max_connected: 4,
            players_joined: 4,
            latency: encode_histogram(&new_histogram()),
            ..Report::default()
        }
    }

    #[test]
    fn a_run_where_no_bot_connected_is_a_failure_that_says_why() {
        let mut r = report();
        assert!(r.violations().is_empty());
        r.max_connected = 0;
        r.gave_up = 4;
        r.gave_up_reasons.insert("connection refused (127.0.0.1:1)".into(), 4);
        r.failed_attempts.insert("connect: Connection refused".into(), 12);
        let v = r.violations().join("\n");
        assert!(
            v.contains("no bot ever connected; attempts failed: 12 × connect: Connection refused"),
            "{v}"
        );
        assert!(
            v.contains("4 clients gave up: 4 × connection refused (127.0.0.1:1)"),
            "{v}"
        );
    }

    /// Connected, but redirected for ever (say): a run in which no bot played fails.
    #[test]
    fn a_run_where_no_bot_joined_its_room_is_a_failure() {
        let mut r = report();
        r.players_joined = 0;
        assert_eq!(r.violations(), ["no bot ever joined its room"]);
    }

    /// Some bots never joined, or a relay forgot inputs it had acknowledged: failures,
    /// unless a node was expected to be lost (then both happen by design).
    #[test]
    fn bots_that_never_joined_and_inputs_rolled_back_fail_a_run_without_a_node_lost() {
        let mut r = report();
        (r.never_joined, r.inputs_rolled_back) = (3, 5);
        assert_eq!(
            r.violations(),
            ["3 bots never joined their room", "5 acknowledged inputs rolled back"]
        );
        let mut other = report();
        other.node_loss_expected = true;
        r.merge(&other);
        assert!(r.violations().is_empty(), "{:?}", r.violations());
    }

    /// Every room has a verifying bot, its share of the seats rounded up.
    #[test]
    fn every_room_is_verified() {
        let verifying = |members: usize, share: f64| {
            let s = Scenario {
                urls: vec![],
                node_loss_expected: false,
                refusals_expected: false,
                trust: Trust::CertFile("cert.pem".into()),
                token: None,
                rooms: 3,
                members,
                room_type: "arena".into(),
                writes: false,
                room_prefix: "r".into(),
                input_rate: 0.0,
                duration: Duration::ZERO,
                ramp_up: Duration::ZERO,
                warm_up: Duration::ZERO,
                churn_per_minute: 0.0,
                churn_resume_share: 0.0,
                progress: None,
                worker: 0,
                workers: 1,
                verify_share: share,
            };
            (0..members * 3).filter(|&i| s.verifies(i)).count()
        };
        assert_eq!(verifying(8, 0.1), 3, "one in each of 3 rooms");
        assert_eq!(verifying(20, 0.1), 6);
        assert_eq!(verifying(20, 0.0), 0);
        assert_eq!(verifying(20, 1.0), 60);
    }

    #[test]
    fn the_table_gives_bytes_per_entity_update() {
        let mut r = report();
        (r.seconds, r.bytes, r.entity_updates) = (2.0, 1_000, 100);
        let table = r.table();
        assert!(table.contains("| entity updates / s | 50 |"), "{table}");
        assert!(table.contains("| bytes / entity update | 10.00 |"), "{table}");
        let mut merged = report();
        merged.merge(&r);
        merged.merge(&r);
        assert_eq!(merged.entity_updates, 200);
    }

    /// Bytes per client count each seat once, however many bots churn put in it.
    #[test]
    fn bytes_per_client_are_per_seat() {
        let mut r = report();
        (r.bots, r.seats, r.seconds, r.bytes) = (4, 2, 2.0, 400);
        assert!(r.table().contains("| bytes / s per client | 100 |"), "{}", r.table());
    }

    #[test]
    fn server_errors_are_named() {
        let mut r = report();
        r.errors.insert(proto::ErrorCode::RoomFull as i32, 2);
        assert!(r.violations().join("").contains("ROOM_FULL: 2"), "{:?}", r.violations());
        assert!(
            r.table().contains("| server errors | {ROOM_FULL: 2} |"),
            "{}",
            r.table()
        );
    }

    /// The server's first message for each code comes with the counts, with what the
    /// user may change, and survives the merge of worker reports.
    #[test]
    fn server_errors_come_with_their_first_message_and_a_hint() {
        let mut worker = report();
        let code = proto::ErrorCode::WrongPayload as i32;
        worker.errors.insert(code, 258);
        worker.error_texts.insert(code, "relay rooms take entity writes".into());
        let mut merged = report();
        merged.merge(&worker);
        let violations = merged.violations().join("\n");
        assert!(
            violations.contains("WRONG_PAYLOAD: \"relay rooms take entity writes\" (the room's simulation"),
            "{violations}"
        );
        assert!(violations.contains("--payload writes"), "{violations}");
    }

    /// A game's refusals of random intents are no violation when expected, and
    /// still reported; other errors still are.
    #[test]
    fn a_games_refusals_may_be_expected() {
        let mut r = report();
        r.errors.insert(proto::ErrorCode::InvalidIntent as i32, 5);
        assert!(!r.violations().is_empty());
        r.refusals_expected = true;
        assert!(r.violations().is_empty(), "{:?}", r.violations());
        assert!(r.table().contains("INVALID_INTENT: 5"), "{}", r.table());
        r.errors.insert(proto::ErrorCode::RoomFull as i32, 1);
        assert!(r.violations().join("").contains("ROOM_FULL: 1"), "{:?}", r.violations());
    }
}
