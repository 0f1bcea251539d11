//! Server configuration: built-in defaults, overridden by a TOML file, then by any
//! file setting given as a `TICKRELAY__SECTION__KEY` variable or a `--set` flag
//! ([`Override`]), then by the named `TICKRELAY_*` variables and command-line flags
//! (the binary's `--help` lists them). [`DEFAULT_CONFIG`] is the commented default file that
//! `tickrelay config --print-default` prints (`src/config/default.toml`; a test checks
//! it parses to exactly these defaults).

mod overrides;
mod simulations;
pub(crate) mod urls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::outbox::OutboxLimits;
use crate::engine::room::RoomConfig;
use crate::engine::sim_pool::{CreationLimits, PoolConfig, RoomType};
use crate::engine::simulation::{Arena, ArenaConfig, EntityLimits, Relay};
use crate::session::SessionSettings;
use crate::session::auth::AuthConfig;
use crate::session::limits::RateLimits;
use crate::state::{FieldSpec, FieldType, KindSchema, Schema};
pub use crate::transport::gate::ConnectionLimits;
use crate::transport::origin::OriginConfig;
pub use overrides::{ENV_PREFIX, Override};
pub use simulations::Simulations;
/// The TOML crate `[room_types.NAME.params]` is read with ([`RoomTypeConfig::params`]).
pub use toml;

/// Most reliable messages a session's queue may hold (`[session] outbox_max_messages`):
/// the clients take a gap in message numbers wider than this (65,536) for a broken
/// relay (PROTOCOL.md, "A client bounds what a relay can make it do").
const MAX_OUTBOX_MESSAGES: usize = 1 << 16;
/// The most NPCs an arena room type may have (each room holds them all).
const MAX_ARENA_NPCS: u32 = 10_000;
/// The largest presence message: a room id and a user id at their longest.
const PRESENCE_MAX_BYTES: usize = crate::engine::room::MAX_ROOM_ID_BYTES + crate::session::auth::MAX_SUB_BYTES + 32;
pub use crate::transport::quic::QuicConfig;
pub use crate::transport::tls::TlsConfig;

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTPS listener (WebSocket at `/ws`, `/healthz`, `/metrics`).
    pub listen: SocketAddr,
    /// TLS settings.
    pub tls: TlsConfig,
    /// WebSocket-only settings.
    pub websocket: WebSocketConfig,
    /// QUIC settings.
    pub quic: QuicConfig,
    /// Authentication at the upgrade.
    pub auth: AuthConfig,
    /// The `Origin` allowlist.
    pub origins: OriginConfig,
    /// Per-session protections: heartbeats, rate limits, resume, slow consumers.
    pub session: SessionConfig,
    /// Listener protections: connection caps and handshake rate.
    pub connections: ConnectionLimits,
    /// Where `/metrics` is served and who may read it.
    pub metrics: MetricsConfig,
    /// The HTTP API for game backends (`POST /rooms/{room}/events`, `GET` and
    /// `DELETE /rooms/{room}`, `DELETE /rooms/{room}/users/{user}`).
    pub api: ApiConfig,
    /// Several nodes sharing a room directory in Redis (off unless `redis_url` is set).
    pub cluster: ClusterConfig,
    /// Simulation threads; 0 means one per core.
    pub sim_threads: usize,
    /// Threads that serve the main listener's connections (WebSocket sessions, the
    /// HTTP API, `/healthz`, the demo); 0 means one per core.
    pub io_threads: usize,
    /// While rooms tick, the I/O threads sleep between ticks instead of waking for
    /// every message (inputs are read just before each tick, frames written right
    /// after it); this is the longest anything else (a ping, a request, a timer)
    /// waits, in milliseconds. A connection's TLS handshake and first HTTP request,
    /// and a blocked write, are not held, and Redis's answers (cluster mode) wake
    /// them at once. 0: woken by every message.
    pub io_wait_ms: u64,
    /// Commands (joins, inputs, events) that may wait for one simulation thread;
    /// beyond it sessions are answered `SERVER_BUSY`. Memory is taken only while
    /// commands wait.
    pub sim_queue_capacity: usize,
    /// Maximum number of open rooms.
    pub max_rooms: usize,
    /// Rooms one creator (a JWT user, or an anonymous client's address) may have open.
    pub max_rooms_per_creator: usize,
    /// Rooms one creator may create per minute, sustained.
    pub room_creations_per_minute: f64,
    /// Rooms one creator may create in a burst.
    pub room_creation_burst: f64,
    /// Room searches (`ListRooms`, `QuickJoin`) one creator may make per second,
    /// sustained, across its sessions: each looks at up to 2,000 rooms.
    pub room_searches_per_second: f64,
    /// Room searches one creator may make in a burst.
    pub room_search_burst: f64,
    /// Seconds an empty room stays open before it is closed (a new room nobody has
    /// joined yet: at least 1 s, its creator's join is on its way).
    pub empty_room_ttl_secs: u64,
    /// Room type used when a join names none.
    pub default_room_type: String,
    /// Room types by name.
    pub room_types: BTreeMap<String, RoomTypeConfig>,
    /// Rooms created at start-up and kept open.
    pub rooms: Vec<PrecreatedRoom>,
    /// What loading found suspicious but allowed (a room type named like a
    /// simulation, running none; the arena's settings on a type running a game's own
    /// simulation): the command line (`tickrelay::cli::main`) warns
    /// about it at start and in `--check`; a program that binds the server itself
    /// may log it.
    #[serde(skip)]
    pub lookalikes: Vec<String>,
    /// Benchmark baseline, never for players: every room sends every member a full
    /// snapshot every tick, encoded for that member alone, and the transport writes
    /// each message separately ([`RoomConfig::naive_fanout`] in every room type).
    pub naive_fanout: bool,
    /// Serve the browser demo (`clients/web/demo`: the arena in a canvas, on the
    /// TypeScript client) at `/demo/` on the main listener.
    pub demo: bool,
}

/// Where `/metrics` is served and who may read it (`[metrics]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` (and `/healthz`) on this address instead, over plain HTTP (for
    /// a scraper on a private network); the main listener then answers 404 there.
    pub listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` to read `/metrics` (401 otherwise).
    pub token: Option<String>,
}

/// The HTTP API for game backends (`[api]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The bearer token the API requires; without one the API is off (404).
    pub token: Option<String>,
}

/// Cluster mode (`[cluster]`): several relay nodes share one room directory in Redis.
/// Off unless `redis_url` is set; a single node needs none of it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Redis holding the directory (`redis://host:port/db`, a Redis Cluster's seed
    /// nodes, comma-separated, or the sentinels watching a primary:
    /// `redis-sentinel://host:port,host:port/db#name`; `rediss://` and
    /// `rediss-sentinel://` over TLS); setting it turns cluster mode on.
    pub redis_url: Option<String>,
    /// TLS to Redis: trust the certificate authorities in this PEM file instead of
    /// the system's.
    pub redis_ca_file: Option<PathBuf>,
    /// TLS to Redis: present this client certificate (PEM; with `redis_key_file`), as
    /// a Redis with `tls-auth-clients yes` (its default) asks.
    pub redis_cert_file: Option<PathBuf>,
    /// The private key of `redis_cert_file` (PEM).
    pub redis_key_file: Option<PathBuf>,
    /// With Redis Sentinel: the user the sentinels are asked as (ACL users; default
    /// user unless set).
    pub sentinel_username: Option<String>,
    /// With Redis Sentinel: the password the sentinels ask for (their `requirepass`);
    /// the primary's credentials are the URL's.
    pub sentinel_password: Option<String>,
    /// This node's id, unique in the cluster (default: the public URL).
    pub node_id: Option<String>,
    /// The URL clients reach this node at, sent to clients redirected here (default:
    /// `wss://<listen address>/ws`, right on one machine).
    pub public_url: Option<String>,
    /// How long a room's lease lives without renewal, in milliseconds: a node that
    /// dies loses its rooms to the next claim after this. Renewed every third of it.
    pub lease_ms: u64,
    /// Prefix of every Redis key (several clusters can share one Redis); on a Redis
    /// Cluster it is made a hash tag (`{tickrelay:}`) unless it holds one.
    pub key_prefix: String,
    /// Ticks between two checkpoints of a room's state to Redis (0: only when the
    /// node stops). What a room loses when its node dies is at most this.
    pub checkpoint_ticks: u32,
    /// Checkpoints larger than this are not written (counted and logged): the room
    /// then restarts from its previous checkpoint, or empty. By default above what a
    /// relay room of the default `max_state_bytes` (4 MiB in memory) holds, with its
    /// seats and bans.
    pub max_checkpoint_bytes: usize,
    /// How long a checkpoint is kept in Redis after its last write: a room whose node
    /// died can be restored this long after.
    pub checkpoint_ttl_secs: u64,
    /// Bytes a room's periodic checkpoints write a second at most: a room whose
    /// checkpoint is larger than this times the interval is checkpointed less often
    /// (its checkpoint's size over this apart), and loses up to that much when its
    /// node dies.
    pub checkpoint_bytes_per_second: u64,
    /// Where a room that no node owns opens: on the node asked, or on a live node
    /// with clearly fewer members (the client is redirected there).
    pub placement: Placement,
    /// Whether a client connected over QUIC is sent to other nodes over QUIC
    /// (`quic://` at the host and port of their public URL) rather than over
    /// WebSocket. Unset: yes when this node serves QUIC at its own public URL's port
    /// and that URL is the default one (nodes configured alike serve QUIC alike).
    pub quic_redirects: Option<bool>,
}

/// Where a new room opens (`[cluster] placement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// On the node the join reached.
    #[default]
    Local,
    /// On a live node with clearly fewer members than the node asked at the last
    /// renewals, if there is one (see `cluster::node`); a room created with options
    /// (metadata, private) still opens on the node asked.
    LeastLoaded,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_ca_file: None,
            redis_cert_file: None,
            redis_key_file: None,
            sentinel_username: None,
            sentinel_password: None,
            node_id: None,
            public_url: None,
            lease_ms: 6_000,
            key_prefix: "tickrelay:".into(),
            checkpoint_ticks: 30,
            max_checkpoint_bytes: 5 << 20,
            checkpoint_ttl_secs: 600,
            checkpoint_bytes_per_second: 1 << 20,
            placement: Placement::Local,
            quic_redirects: None,
        }
    }
}

/// WebSocket-only settings (`[websocket]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// A connection's read buffer between messages (a larger message grows it while
    /// it arrives); each read asks the socket for at least this much.
    pub read_buffer_bytes: usize,
    /// No longer used (it bounded the WebSocket library's write buffer; the relay now
    /// writes every frame itself), still accepted.
    #[doc(hidden)]
    pub max_write_buffer_bytes: Option<usize>,
    /// Old name of `[session] max_message_bytes` (it governs QUIC too), still read.
    #[doc(hidden)]
    pub max_message_bytes: Option<usize>,
    /// Old name of `[session] outbox_max_messages`, still read.
    #[doc(hidden)]
    pub outbox_max_messages: Option<usize>,
    /// Old name of `[session] outbox_max_bytes`, still read.
    #[doc(hidden)]
    pub outbox_max_bytes: Option<usize>,
}

/// Per-session protections, over every transport (`[session]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Largest inbound message; larger ones close the connection with 1009.
    pub max_message_bytes: usize,
    /// Reliable messages that may wait in a session's outbox.
    pub outbox_max_messages: usize,
    /// Bytes of reliable messages that may wait in a session's outbox.
    pub outbox_max_bytes: usize,
    /// Seconds without inbound traffic before the server pings.
    pub heartbeat_interval_secs: f64,
    /// Seconds to wait for any answer to a ping before dropping the peer (4502).
    pub heartbeat_timeout_secs: f64,
    /// Seconds a dropped session's seats are held for resume.
    pub resume_grace_secs: f64,
    /// Seconds a write to a client may stay blocked before it is closed as a slow
    /// consumer (4501).
    pub slow_consumer_secs: f64,
    /// Bytes the writes blocked on clients that do not read (for more than half a
    /// second) may hold together, and an eighth of it those of one address; a write
    /// blocked beyond closes its client at once as a slow consumer (4501).
    pub max_blocked_write_bytes: usize,
    /// Sustained inbound messages per second.
    pub messages_per_second: f64,
    /// Inbound message burst.
    pub message_burst: f64,
    /// Sustained inbound bytes per second.
    pub bytes_per_second: f64,
    /// Inbound byte burst.
    pub byte_burst: f64,
    /// Milliseconds a client may stay over the rate limit before it is closed (1008).
    pub flood_window_ms: u64,
    /// Rooms one session may be in at once.
    pub max_rooms_per_session: usize,
}

impl SessionConfig {
    /// Raises `byte_burst` to `max_message_bytes` when below: a message of the size
    /// allowed must fit the byte bucket (what a setting of the size alone implies).
    pub fn fit_byte_burst_to_message_size(&mut self) {
        self.byte_burst = self.byte_burst.max(self.max_message_bytes as f64);
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        let rate = RateLimits::default();
        let s = SessionSettings::default();
        let outbox = OutboxLimits::default();
        Self {
            max_message_bytes: s.max_message_bytes as usize,
            outbox_max_messages: outbox.max_messages,
            outbox_max_bytes: outbox.max_bytes,
            heartbeat_interval_secs: s.heartbeat_interval.as_secs_f64(),
            heartbeat_timeout_secs: s.heartbeat_timeout.as_secs_f64(),
            resume_grace_secs: s.resume_grace.as_secs_f64(),
            slow_consumer_secs: 5.0,
            max_blocked_write_bytes: 512 << 20,
            messages_per_second: rate.messages_per_second,
            message_burst: rate.message_burst,
            bytes_per_second: rate.bytes_per_second,
            byte_burst: rate.byte_burst,
            flood_window_ms: rate.flood_window.as_millis() as u64,
            max_rooms_per_session: s.max_rooms_per_session,
        }
    }
}

/// Which simulation a room type runs: `simulation = "relay"`, `"arena"`, or the name
/// of one the program registered ([`Simulations`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum SimulationKind {
    /// Members write the entities they own.
    Relay,
    /// The example authoritative game.
    Arena,
    /// A simulation the program registered under this name (the `tickrelay` binary
    /// registers none: a game's own binary does, see [`Simulations`]).
    Registered(String),
}

impl From<String> for SimulationKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "relay" => Self::Relay,
            "arena" => Self::Arena,
            _ => Self::Registered(name),
        }
    }
}

impl From<SimulationKind> for String {
    fn from(kind: SimulationKind) -> Self {
        match kind {
            SimulationKind::Relay => "relay".into(),
            SimulationKind::Arena => "arena".into(),
            SimulationKind::Registered(name) => name,
        }
    }
}

/// A room type.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomTypeConfig {
    /// The simulation.
    pub simulation: SimulationKind,
    /// Ticks per second, 1–128.
    pub tick_rate: u32,
    /// Member cap.
    pub max_members: usize,
    /// Ticks a delta baseline may lag before a full snapshot is sent instead.
    pub history: u64,
    /// Send the state checksum every this many ticks.
    pub checksum_interval: u64,
    /// Inputs a member may queue for one tick.
    pub input_queue: usize,
    /// The room's owner counts as away (its ownership passes on) once it has sent no
    /// input for this long; 0: only when its connection has been lost for a second.
    pub owner_quiet_ms: u64,
    /// Entities one member may own (relay).
    pub max_entities_per_member: usize,
    /// Fields per entity (relay).
    pub max_fields_per_entity: usize,
    /// Bytes per bytes/string field (relay).
    pub max_field_bytes: usize,
    /// Bytes of the whole room state as it sits in memory: an entity 128, a field 88
    /// plus its value, each member a hidden entity is shown to 64 (relay).
    pub max_state_bytes: usize,
    /// Arena width (arena).
    pub arena_width: f32,
    /// Arena height (arena).
    pub arena_height: f32,
    /// Wandering NPCs (arena).
    pub arena_npcs: u32,
    /// Step positions are rounded to (arena).
    pub arena_precision: f64,
    /// Declared entity kinds (relay; the arena declares its own).
    pub kinds: Vec<KindConfig>,
    /// Settings of a registered simulation, read into its own type as the server
    /// starts (`[room_types.TYPE.params]`; see [`Simulations::add_with_params`]).
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    pub params: toml::Table,
}

/// A declared entity kind of a relay room type: `[[room_types.NAME.kinds]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KindConfig {
    /// The kind number entities are created with.
    pub kind: u32,
    /// A name for tools and messages.
    #[serde(default)]
    pub name: String,
    /// The fields (at most 64).
    pub fields: Vec<FieldConfig>,
    /// Entities of the kind reach their owner only (a hand of cards, a fog of war).
    #[serde(default)]
    pub owner_only: bool,
}

/// A declared field: `{ id = 1, name = "x", type = "float", min = 0, max = 100,
/// precision = 0.01 }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The field id.
    pub id: u32,
    /// A name for tools and messages.
    #[serde(default)]
    pub name: String,
    /// `int`, `float`, `bool`, `bytes` or `string`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Int and float: the smallest value (required).
    pub min: Option<Number>,
    /// Int and float: the largest value (required).
    pub max: Option<Number>,
    /// Float: the step values are rounded to (required).
    pub precision: Option<f64>,
    /// Bytes and string: the longest value in bytes (default: `max_field_bytes`).
    pub max_len: Option<u32>,
}

/// A TOML number, integer or float.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Self::Int(v) => v as f64,
            Self::Float(v) => v,
        }
    }
}

/// Whether a name other than the empty one stands twice in `names` (names are
/// optional; given, each names one thing: clients and messages go by them).
fn repeats<'a>(names: impl Iterator<Item = &'a str>) -> bool {
    let mut named: Vec<&str> = names.filter(|n| !n.is_empty()).collect();
    named.sort_unstable();
    named.windows(2).any(|w| w[0] == w[1])
}

impl FieldConfig {
    fn spec(&self, max_field_bytes: usize) -> Result<FieldSpec, String> {
        let need = |v: Option<Number>, what: &str| v.ok_or(format!("field {} needs `{what}`", self.id));
        let max_field_bytes = max_field_bytes.min(u32::MAX as usize) as u32;
        let bounded = |max_len: Option<u32>| match max_len {
            // The rest could never be written: every value is bounded by the room's
            // max_field_bytes first.
            Some(len) if len > max_field_bytes => Err(format!(
                "field {}: max_len = {len} is more than the room type's max_field_bytes ({max_field_bytes})",
                self.id
            )),
            len => Ok(len.unwrap_or(max_field_bytes)),
        };
        let ty = match self.ty.as_str() {
            "int" => match (need(self.min, "min")?, need(self.max, "max")?) {
                (Number::Int(min), Number::Int(max)) => FieldType::int(min, max),
                _ => return Err(format!("field {}: an int's min and max must be integers", self.id)),
            },
            "float" => {
                let precision = self.precision.ok_or(format!("field {} needs `precision`", self.id))?;
                FieldType::float(
                    need(self.min, "min")?.as_f64(),
                    need(self.max, "max")?.as_f64(),
                    precision,
                )
            }
            "bool" => Ok(FieldType::Bool),
            "bytes" => Ok(FieldType::Bytes {
                max_len: bounded(self.max_len)?,
            }),
            "string" => Ok(FieldType::String {
                max_len: bounded(self.max_len)?,
            }),
            other => {
                return Err(format!(
                    "field {}: unknown type `{other}` (one of: int, float, bool, bytes, string)",
                    self.id
                ));
            }
        };
        // A setting the type does not take would be silently ignored.
        let numeric = matches!(self.ty.as_str(), "int" | "float");
        let given = [
            ("min", self.min.is_some() && !numeric),
            ("max", self.max.is_some() && !numeric),
            ("precision", self.precision.is_some() && self.ty != "float"),
            (
                "max_len",
                self.max_len.is_some() && !matches!(self.ty.as_str(), "bytes" | "string"),
            ),
        ];
        if let Some((setting, _)) = given.iter().find(|(_, misplaced)| *misplaced) {
            return Err(format!(
                "field {}: type = \"{}\" takes no `{setting}`",
                self.id, self.ty
            ));
        }
        let ty = ty.map_err(|e| format!("field {}: {e}", self.id))?;
        Ok(FieldSpec::new(self.id, self.name.clone(), ty))
    }
}

/// A room created at start-up and kept open (see `[[rooms]]` in the README).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrecreatedRoom {
    /// Room id.
    pub id: String,
    /// Room type name.
    #[serde(rename = "type")]
    pub room_type: String,
    /// Its listing's metadata (matched by quick joins' filters), within the limits
    /// a join's is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: crate::engine::listing::Metadata,
}

impl Default for Config {
    fn default() -> Self {
        let room_types = [
            ("relay".to_string(), RoomTypeConfig::default()),
            (
                "arena".to_string(),
                RoomTypeConfig {
                    simulation: SimulationKind::Arena,
                    ..Default::default()
                },
            ),
        ];
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            tls: TlsConfig::default(),
            websocket: WebSocketConfig::default(),
            quic: QuicConfig::default(),
            auth: AuthConfig::default(),
            origins: OriginConfig::default(),
            session: SessionConfig::default(),
            connections: ConnectionLimits::default(),
            metrics: MetricsConfig::default(),
            api: ApiConfig::default(),
            cluster: ClusterConfig::default(),
            sim_threads: 0,
            io_threads: 0,
            io_wait_ms: 50,
            sim_queue_capacity: 65_536,
            max_rooms: 10_000,
            max_rooms_per_creator: 1_000,
            room_creations_per_minute: 120.0,
            room_creation_burst: 60.0,
            room_searches_per_second: 10.0,
            room_search_burst: 20.0,
            empty_room_ttl_secs: 30,
            default_room_type: "relay".into(),
            room_types: room_types.into_iter().collect(),
            rooms: Vec::new(),
            lookalikes: Vec::new(),
            naive_fanout: false,
            demo: false,
        }
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            read_buffer_bytes: 1024,
            max_write_buffer_bytes: None,
            max_message_bytes: None,
            outbox_max_messages: None,
            outbox_max_bytes: None,
        }
    }
}

impl Default for RoomTypeConfig {
    fn default() -> Self {
        let room = RoomConfig::default();
        let arena = ArenaConfig::default();
        Self {
            simulation: SimulationKind::Relay,
            tick_rate: room.tick_rate,
            max_members: room.max_members,
            history: room.history,
            checksum_interval: room.checksum_interval,
            input_queue: room.input_queue,
            owner_quiet_ms: 0,
            max_entities_per_member: room.limits.max_entities_per_member,
            max_fields_per_entity: room.limits.max_fields_per_entity,
            max_field_bytes: room.limits.max_field_bytes,
            max_state_bytes: room.limits.max_state_bytes,
            arena_width: arena.width,
            arena_height: arena.height,
            arena_npcs: arena.npcs,
            arena_precision: arena.precision,
            kinds: Vec::new(),
            params: toml::Table::new(),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<toml::de::Error>,
    },
    /// A setting is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The least `owner_quiet_ms` a room type may set (0 aside: off).
pub const MIN_OWNER_QUIET_MS: u64 = 100;

impl Config {
    /// A configuration for tests and local tools: listens on `127.0.0.1:0` (any free
    /// port), two simulation threads, the built-in room types at `tick_rate`, and a
    /// development certificate in this process's directory under the system's
    /// temporary directory (one for every such configuration of the process: a
    /// directory per configuration left thousands behind after a test run).
    pub fn loopback(tick_rate: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("tickrelay-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sim_threads: 2,
            ..Config::default()
        };
        config.tls.dev_cert_path = dir.join("cert.pem");
        for room_type in config.room_types.values_mut() {
            room_type.tick_rate = tick_rate;
        }
        config
    }

    /// Reads a TOML file; settings it leaves out keep their defaults. A program with
    /// simulations of its own reads it with [`Config::load`] and them, so that a
    /// `[room_types.NAME]` of one may leave its `simulation` out.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::load(Some(path), &[], &Simulations::new())
    }

    /// Reads the file (none: the defaults) and sets `overrides` over it, in order.
    /// Room types are those of the file added to the built-in `relay` and `arena`
    /// and to one per simulation of the program's `own` (named after it): a file's
    /// or an override's `[room_types.NAME]` of one of those changes the settings it
    /// names, the others keep the type's.
    pub fn load(
        path: Option<&std::path::Path>,
        overrides: &[Override],
        own: &Simulations,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_parts(&text, path, overrides, own)
    }

    /// [`Config::load`] of a file that holds `text` (`path`: where it was read).
    fn from_parts(
        text: &str,
        path: Option<&std::path::Path>,
        overrides: &[Override],
        own: &Simulations,
    ) -> Result<Self, ConfigError> {
        // The file alone first, so that an error in it names its line.
        let file_error = |source| match path {
            Some(path) => ConfigError::Parse {
                path: path.into(),
                source: Box::new(source),
            },
            None => ConfigError::Invalid(source.to_string()),
        };
        let mut table: toml::Table = toml::from_str(text).map_err(file_error)?;
        toml::from_str::<Config>(text).map_err(file_error)?;
        move_old_settings(&mut table)?;
        // Each simulation has a room type of its name (written out before the
        // overrides, so that a variable's key finds it whatever its case).
        let simulations: Vec<&str> = ["relay", "arena"].into_iter().chain(own.names()).collect();
        let types = room_types_mut(&mut table)?;
        for name in &simulations {
            types.entry(*name).or_insert_with(|| toml::Table::new().into());
        }
        // The types known so far: an override that makes another must say what it
        // runs (a typo in a type's name would otherwise make a new relay type).
        let known: Vec<String> = types.keys().cloned().collect();
        for o in overrides {
            // An old `[websocket]` name sets the new one, in its turn.
            let moved = OLD_NAMES
                .iter()
                .find_map(|key| o.renamed(["websocket", key], ["session", key]));
            moved
                .as_ref()
                .unwrap_or(o)
                .apply(&mut table)
                .map_err(ConfigError::Invalid)?;
        }
        let types = room_types_mut(&mut table)?;
        for (name, room_type) in types.iter().filter(|(name, _)| !known.contains(name)) {
            if room_type.get("simulation").is_none() {
                return Err(ConfigError::Invalid(format!(
                    "room type `{name}` is not in the file, built in or the program's: a new one given by {} needs its `simulation` too (relay, arena, or the program's)",
                    overrides_of(overrides, &format!("room_types.{name}")).join(", "),
                )));
            }
        }
        // A section whose name misses a simulation's by a letter or two, with no
        // `simulation` of its own, is more often a typo than a relay type: warned about.
        let unnamed = |(name, t): &(&String, &toml::Value)| {
            !simulations.contains(&name.as_str()) && t.get("simulation").is_none()
        };
        let mut lookalikes = Vec::new();
        for (name, _) in types.iter().filter(unnamed) {
            let near = |sim: &str| {
                let distance = strsim::damerau_levenshtein(&sim.to_lowercase(), &name.to_lowercase());
                distance <= if sim.len().min(name.len()) < 5 { 1 } else { 2 }
            };
            if let Some(sim) = simulations.iter().find(|&&sim| sim != "relay" && near(sim)) {
                lookalikes.push(format!(
                    "room type `{name}` names no `simulation`, so it is a relay room type: did you mean `{sim}`? \
                     (give it `simulation = \"relay\"` to say it is meant)"
                ));
            }
        }
        // Each simulation's type runs it unless told otherwise: a section (or override)
        // of one changes the settings it names, and one given whole (which may have
        // dropped the built-in types) leaves them there.
        for name in simulations {
            let room_type = types.entry(name).or_insert_with(|| toml::Table::new().into());
            if let Some(room_type) = room_type.as_table_mut() {
                room_type.entry("simulation").or_insert_with(|| name.into());
            }
        }
        // The arena's settings on a type running a game's own simulation do nothing
        // (a relay type's are allowed: the default file has them).
        for (name, room_type) in types.iter() {
            let runs = room_type
                .get("simulation")
                .and_then(toml::Value::as_str)
                .unwrap_or("relay");
            if matches!(runs, "relay" | "arena") {
                continue;
            }
            let arena: Vec<&str> = (room_type.as_table().into_iter().flatten())
                .map(|(key, _)| key.as_str())
                .filter(|key| key.starts_with("arena_"))
                .collect();
            if !arena.is_empty() {
                lookalikes.push(format!(
                    "room type `{name}` runs `{runs}`, not the arena: {} ignored (a game's own settings go in \
                     [room_types.{name}.params])",
                    arena.join(", ")
                ));
            }
        }
        let mut config: Config = toml::Value::Table(table.clone()).try_into().map_err(|e| {
            // The file alone deserialized: the overrides are in it.
            let e = e.to_string().trim().replace('\n', " ");
            let key = e
                .rsplit_once("in `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map_or("", |(key, _)| key);
            let by = overrides_of(overrides, key);
            // A value meant as an array or a table that is not TOML was read as text.
            let doubts = (overrides.iter())
                .filter(|o| by.contains(&o.origin()) && o.read_as_text())
                .map(|o| {
                    format!(
                        "; the value of {} is not valid TOML, so it was read as text (quote the strings \
                         inside it, as in name = \"card\", and the whole flag for the shell)",
                        o.origin()
                    )
                });
            let doubts: String = doubts.collect();
            ConfigError::Invalid(format!("{e} (set by {}){doubts}", by.join(", ")))
        })?;
        // A message of the size allowed must fit the byte bucket: a configuration
        // that raises the size and leaves the burst out raises the burst with it
        // (one that sets both inconsistently is refused by `validate`).
        if (table.get("session")).is_none_or(|s| s.get("byte_burst").is_none()) {
            config.session.fit_byte_burst_to_message_size();
        }
        config.lookalikes = lookalikes;
        Ok(config)
    }

    /// This configuration as a TOML file (`tickrelay --print-config`), every setting
    /// written out but secrets: the HS256 secret, the API and metrics tokens and the
    /// sentinels' password are left out (a comment first names those that are set),
    /// credentials in the Redis URL shown as `***`.
    pub fn to_toml_redacted(&self) -> String {
        let mut table = toml::Table::try_from(self).expect("a configuration is a TOML table");
        let mut hidden = Vec::new();
        for (section, key) in [
            ("auth", "hs256_secret"),
            ("api", "token"),
            ("metrics", "token"),
            ("cluster", "sentinel_password"),
        ] {
            let section_table = table.get_mut(section).and_then(toml::Value::as_table_mut);
            if section_table.and_then(|t| t.remove(key)).is_some() {
                hidden.push(format!("{section}.{key}"));
            }
        }
        if let Some(url) = self.cluster.redis_url.as_deref() {
            table["cluster"]["redis_url"] = urls::without_credentials(url).into();
        }
        // The arena's settings only where they apply.
        let types = table.get_mut("room_types").and_then(toml::Value::as_table_mut);
        for (name, room_type) in types.into_iter().flatten() {
            if let Some(room_type) = room_type.as_table_mut()
                && self.room_types[name].simulation != SimulationKind::Arena
            {
                room_type.retain(|key, _| !key.starts_with("arena_"));
            }
        }
        let mut out = String::new();
        if !hidden.is_empty() {
            out = format!("# Set, not shown: {}.\n", hidden.join(", "));
        }
        out + &toml::to_string(&table).expect("a table prints")
    }

    /// Parses a TOML configuration, as [`Config::load`] reads a file.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_parts(text, None, &[], &Simulations::new())
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid("tls.cert and tls.key must be given together".into());
        }
        if !(self.room_creations_per_minute > 0.0 && self.room_creation_burst >= 1.0) {
            return invalid("room_creations_per_minute must be > 0 and room_creation_burst >= 1".into());
        }
        if !(self.room_searches_per_second > 0.0 && self.room_search_burst >= 1.0) {
            return invalid("room_searches_per_second must be > 0 and room_search_burst >= 1".into());
        }
        if self.io_threads > MAX_IO_THREADS {
            return invalid(format!("io_threads must be at most {MAX_IO_THREADS} (0: one per core)"));
        }
        if !self.room_types.contains_key(&self.default_room_type) {
            return invalid(format!(
                "default_room_type `{}` is not in room_types",
                self.default_room_type
            ));
        }
        let at_least_one = [
            ("sim_queue_capacity", self.sim_queue_capacity),
            ("max_rooms", self.max_rooms),
            ("session.max_rooms_per_session", self.session.max_rooms_per_session),
        ];
        if let Some((name, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return invalid(format!(
                "{name} must be at least 1 (0 leaves the relay refusing every join)"
            ));
        }
        for (name, t) in &self.room_types {
            if name.is_empty() || crate::session::check_room_type(name).is_err() {
                return invalid(format!(
                    "room type `{}`: a room type's name is 1-{} bytes, without control characters",
                    name.escape_debug(),
                    crate::session::MAX_ROOM_TYPE_BYTES
                ));
            }
            t.room_config()
                .validate()
                .or_else(|e| invalid(format!("room type `{name}`: {e}")))?;
            if let Err(e) = t.schema() {
                return invalid(format!("room type `{name}`: {e}"));
            }
            // Ownership passing back and forth between two members a few ticks apart
            // would cost every member a presence message each time.
            if (1..MIN_OWNER_QUIET_MS).contains(&t.owner_quiet_ms) {
                return invalid(format!(
                    "room type `{name}`: owner_quiet_ms must be 0 (off) or at least {MIN_OWNER_QUIET_MS}"
                ));
            }
            // Each room holds them all: a typo of a few zeros would take the memory of
            // the machine at the first join.
            if t.simulation == SimulationKind::Arena && t.arena_npcs > MAX_ARENA_NPCS {
                return invalid(format!(
                    "room type `{name}`: arena_npcs must be at most {MAX_ARENA_NPCS}"
                ));
            }
            if !t.params.is_empty() && !matches!(t.simulation, SimulationKind::Registered(_)) {
                return invalid(format!(
                    "room type `{name}`: `params` are for simulations a program registers; relay and arena rooms take the settings above"
                ));
            }
            // One tick's presence for a member: a leave and a join per seat, with room
            // for its own `Joined` (or a `RoomUpdated`: a member owed a `Joined` is told
            // the room's metadata by it alone) and an error (events wait for the next
            // tick), and the room's metadata once.
            let listing = crate::engine::listing::MAX_ROOM_UPDATED_BYTES;
            let (messages, bytes) = (2 * t.max_members + 2, 2 * t.max_members * PRESENCE_MAX_BYTES + listing);
            if messages > self.session.outbox_max_messages || bytes > self.session.outbox_max_bytes {
                return invalid(format!(
                    "room type `{name}`: max_members {} needs session.outbox_max_messages of at least {messages} and outbox_max_bytes of at least {bytes} (one tick's presence can be a leave and a join per seat, and the room's metadata)",
                    t.max_members,
                ));
            }
        }
        let mut rooms = BTreeMap::new();
        for room in &self.rooms {
            if !crate::engine::room::valid_room_id(&room.id) {
                return invalid(format!(
                    "room `{}`: a room id is 1-{} bytes, without control characters",
                    room.id.escape_debug(),
                    crate::engine::room::MAX_ROOM_ID_BYTES
                ));
            }
            if !self.room_types.contains_key(&room.room_type) {
                let mut types: Vec<&str> = self.room_types.keys().map(String::as_str).collect();
                types.sort_unstable();
                let near = crate::engine::rooms::nearest_name(&room.room_type, types.iter().copied());
                let hint = near.map_or_else(String::new, |near| format!(" (did you mean `{near}`?)"));
                return invalid(format!(
                    "room `{}` has unknown type `{}`{hint}; the room types are: {}",
                    room.id,
                    room.room_type,
                    types.join(", ")
                ));
            }
            if let Err(e) = crate::engine::listing::check(&room.metadata) {
                return invalid(format!("room `{}`: metadata: {e}", room.id));
            }
            if let Some(other) = rooms
                .insert(&room.id, &room.room_type)
                .filter(|&t| t != &room.room_type)
            {
                return invalid(format!(
                    "room `{}` is listed twice, as `{other}` and as `{}`",
                    room.id, room.room_type
                ));
            }
        }
        if rooms.len() > self.max_rooms {
            return invalid(format!(
                "{} rooms kept open, more than max_rooms ({})",
                rooms.len(),
                self.max_rooms
            ));
        }
        crate::session::auth::Authenticator::new(&self.auth).map_err(ConfigError::Invalid)?;
        self.origins.validate().map_err(ConfigError::Invalid)?;
        if self.connections.max_connections == 0 || self.connections.max_per_ip == 0 {
            return invalid(
                "connections.max_connections and max_per_ip must be at least 1 (0 refuses every connection, /healthz too)"
                    .into(),
            );
        }
        for (name, token) in [("api.token", &self.api.token), ("metrics.token", &self.metrics.token)] {
            if token.as_deref().is_some_and(|t| t.chars().any(char::is_control)) {
                return invalid(format!(
                    "{name} holds a control character (a line break?), which no Authorization header can carry"
                ));
            }
            if token.as_deref().is_some_and(|t| !t.is_ascii()) {
                return invalid(format!(
                    "{name} holds a character beyond ASCII, which an Authorization header cannot carry as text"
                ));
            }
            if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                let unset = match name {
                    "api.token" => "leave it unset to turn the HTTP API off",
                    _ => "leave it unset to serve /metrics without a token",
                };
                return invalid(format!("{name} is empty: no request could present it ({unset})"));
            }
            if token.as_deref().is_some_and(|t| t.trim() != t) {
                return invalid(format!(
                    "{name} starts or ends with white space, which no Authorization header can carry"
                ));
            }
        }
        let s = &self.session;
        let positive = [
            ("session.heartbeat_interval_secs", s.heartbeat_interval_secs),
            ("session.heartbeat_timeout_secs", s.heartbeat_timeout_secs),
            ("session.slow_consumer_secs", s.slow_consumer_secs),
            ("session.messages_per_second", s.messages_per_second),
            ("session.message_burst", s.message_burst),
            ("session.bytes_per_second", s.bytes_per_second),
            ("session.byte_burst", s.byte_burst),
            (
                "connections.handshakes_per_ip_per_second",
                self.connections.handshakes_per_ip_per_second,
            ),
            ("connections.handshake_burst", self.connections.handshake_burst),
        ];
        for (name, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return invalid(format!("{name} must be a positive number"));
            }
        }
        // Times: a day at most (beyond, a typo of a few zeros; and a time too large for
        // a `Duration` would stop the start).
        let times = [
            ("session.heartbeat_interval_secs", s.heartbeat_interval_secs),
            ("session.heartbeat_timeout_secs", s.heartbeat_timeout_secs),
            ("session.slow_consumer_secs", s.slow_consumer_secs),
            ("session.resume_grace_secs", s.resume_grace_secs),
        ];
        if let Some((name, _)) = times.iter().find(|(_, secs)| !(0.0..=86_400.0).contains(secs)) {
            return invalid(format!("{name} must be at most 86400 (a day)"));
        }
        // Told to clients as whole numbers (`Welcome.limits`), where 0 means "not
        // announced": a client would then pace to the defaults, not to these.
        let announced = [
            ("session.messages_per_second", s.messages_per_second),
            ("session.message_burst", s.message_burst),
            ("session.bytes_per_second", s.bytes_per_second),
        ];
        for (name, value) in announced {
            if value < 1.0 {
                return invalid(format!(
                    "{name} must be at least 1 (clients are told it as a whole number, and 0 means unset)"
                ));
            }
        }
        // Clients take a gap in message numbers wider than this for a broken relay
        // (PROTOCOL.md); a resume never skips more than the queue holds.
        if s.outbox_max_messages > MAX_OUTBOX_MESSAGES {
            return invalid(format!(
                "session.outbox_max_messages must be at most {MAX_OUTBOX_MESSAGES} (clients take a wider gap in message numbers for a broken relay)"
            ));
        }
        // A message the size limit admits must fit the byte bucket, or it is refused
        // however slowly it is sent.
        if s.byte_burst < s.max_message_bytes as f64 {
            return invalid(format!(
                "session.byte_burst ({}) must be at least session.max_message_bytes ({})",
                s.byte_burst, s.max_message_bytes
            ));
        }
        if !(s.resume_grace_secs >= 0.0 && s.resume_grace_secs.is_finite()) {
            return invalid("session.resume_grace_secs must be 0 or more".into());
        }
        let c = &self.cluster;
        if c.redis_cert_file.is_some() != c.redis_key_file.is_some() {
            return invalid(
                "cluster.redis_cert_file and cluster.redis_key_file go together: set both or neither".into(),
            );
        }
        let tls_files = c.redis_ca_file.is_some() || c.redis_cert_file.is_some();
        let tls_url = c.redis_url.as_deref().is_some_and(|url| url.starts_with("rediss"));
        if tls_files && !tls_url {
            return invalid(
                "cluster.redis_ca_file / redis_cert_file are for TLS to Redis: the redis_url must then be rediss://… or rediss-sentinel://…".into(),
            );
        }
        if c.sentinel_username.is_some() && c.sentinel_password.is_none() {
            return invalid("cluster.sentinel_username needs cluster.sentinel_password".into());
        }
        let sentinels = c.redis_url.as_deref().is_some_and(|url| url.contains("-sentinel://"));
        if (c.sentinel_username.is_some() || c.sentinel_password.is_some()) && !sentinels {
            return invalid(
                "cluster.sentinel_username / sentinel_password are for Redis Sentinel: the redis_url must then be redis-sentinel://… or rediss-sentinel://…".into(),
            );
        }
        if self.tls.reload_secs > 86_400 {
            return invalid("tls.reload_secs must be at most 86400 (a day; 0: on SIGHUP only)".into());
        }
        if self.cluster.redis_url.is_some() && self.cluster.lease_ms < 300 {
            return invalid("cluster.lease_ms must be at least 300".into());
        }
        if self.cluster.checkpoint_bytes_per_second < 1024 {
            return invalid("cluster.checkpoint_bytes_per_second must be at least 1024".into());
        }
        if self.cluster.checkpoint_ttl_secs == 0 {
            return invalid("cluster.checkpoint_ttl_secs must be at least 1".into());
        }
        if self.cluster.redis_url.is_some() && self.cluster.public_url.is_none() && self.listen.ip().is_unspecified() {
            return invalid(format!(
                "cluster mode listening on {}: set cluster.public_url (--public-url), the URL other machines reach this node at",
                self.listen
            ));
        }
        if let Some(url) = c.public_url.as_deref().filter(|url| {
            // The path after the host, before any query: more than `/`.
            let rest = url.split_once("://").map_or("", |(_, rest)| rest);
            let path = rest.trim_start_matches(|c| !matches!(c, '/' | '?' | '#'));
            let path = path.split(['?', '#']).next().unwrap_or("");
            urls::http_base(url).is_none() || path.len() < 2
        }) {
            return invalid(format!(
                "cluster.public_url `{url}` is not a ws:// or wss:// URL with a host and the WebSocket path (for example wss://node1.example.com/ws)"
            ));
        }
        if c.node_id
            .as_deref()
            .is_some_and(|id| id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
        {
            return invalid("cluster.node_id must be 1-128 bytes, without control characters".into());
        }
        if self.metrics.listen.is_some_and(|m| m == self.listen && m.port() != 0) {
            return invalid(format!(
                "metrics.listen is listen's own address ({}): leave it unset to serve /metrics there",
                self.listen
            ));
        }
        // No credit at all would stall every QUIC client's control stream.
        if self.quic.stream_receive_window_bytes < 1024 {
            return invalid("quic.stream_receive_window_bytes must be at least 1024".into());
        }
        if self.session.max_message_bytes < 64 || self.websocket.read_buffer_bytes < 256 {
            return invalid("session.max_message_bytes must be >= 64 and websocket.read_buffer_bytes >= 256".into());
        }
        Ok(())
    }

    /// Gives each of the program's `simulations` a room type of its name, running it
    /// with the default room settings, unless the configuration has one, which must
    /// then run it (a `[room_types.NAME]` that forgot `simulation = "NAME"` would
    /// otherwise run relay rooms).
    pub fn add_room_types(&mut self, simulations: &Simulations) -> Result<(), ConfigError> {
        for name in simulations.names() {
            let simulation = SimulationKind::Registered(name.to_string());
            match self.room_types.get(name) {
                None => {
                    let room_type = RoomTypeConfig {
                        simulation,
                        ..RoomTypeConfig::default()
                    };
                    self.room_types.insert(name.to_string(), room_type);
                }
                Some(t) if t.simulation == simulation => {}
                Some(_) => {
                    return Err(ConfigError::Invalid(format!(
                        "room type `{name}` is named after the program's simulation `{name}` but runs another: add simulation = \"{name}\" to [room_types.{name}]"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The simulation pool settings this configuration describes, with the
    /// program's own `simulations` (a room type naming one that is not there, or
    /// whose `params` do not fit it, is an error).
    pub fn pool_config(&self, simulations: &Simulations) -> Result<PoolConfig, ConfigError> {
        let threads = match self.sim_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(PoolConfig {
            threads,
            channel_capacity: self.sim_queue_capacity,
            max_rooms: self.max_rooms,
            max_catch_up: 3,
            empty_room_ttl: Duration::from_secs(self.empty_room_ttl_secs),
            default_room_type: self.default_room_type.clone(),
            creation: CreationLimits {
                max_open: self.max_rooms_per_creator,
                per_second: self.room_creations_per_minute / 60.0,
                burst: self.room_creation_burst,
            },
            room_types: self
                .room_types
                .iter()
                .map(|(name, t)| {
                    let mut room_type = t
                        .room_type(simulations)
                        .map_err(|e| ConfigError::Invalid(format!("room type `{name}`: {e}")))?;
                    room_type.config.naive_fanout = self.naive_fanout;
                    Ok((name.clone(), room_type))
                })
                .collect::<Result<_, ConfigError>>()?,
            checkpoints: None,
            configured_rooms: self.rooms.iter().map(|r| r.id.clone()).collect(),
            pacer: None,
        })
    }

    /// The room-search rate every session of one creator shares.
    pub fn search_rate(&self) -> crate::session::limits::SharedRate {
        crate::session::limits::SharedRate::new(self.room_searches_per_second, self.room_search_burst)
    }

    /// The settings every session runs with.
    pub fn session_settings(&self) -> SessionSettings {
        let s = &self.session;
        SessionSettings {
            max_message_bytes: self.session.max_message_bytes as u32,
            rate: RateLimits {
                messages_per_second: s.messages_per_second,
                message_burst: s.message_burst,
                bytes_per_second: s.bytes_per_second,
                byte_burst: s.byte_burst,
                flood_window: Duration::from_millis(s.flood_window_ms),
            },
            heartbeat_interval: Duration::from_secs_f64(s.heartbeat_interval_secs),
            heartbeat_timeout: Duration::from_secs_f64(s.heartbeat_timeout_secs),
            resume_grace: Duration::from_secs_f64(s.resume_grace_secs),
            max_rooms_per_session: s.max_rooms_per_session,
            // Decided once QUIC's socket is bound: see `ClusterConfig::quic_redirects`.
            quic_redirects: false,
        }
    }

    /// Outbox bounds for each session.
    pub fn outbox_limits(&self) -> OutboxLimits {
        OutboxLimits {
            max_messages: self.session.outbox_max_messages,
            max_bytes: self.session.outbox_max_bytes,
        }
    }
}

impl RoomTypeConfig {
    /// The room settings of this type.
    pub fn room_config(&self) -> RoomConfig {
        RoomConfig {
            tick_rate: self.tick_rate,
            max_members: self.max_members,
            history: self.history,
            checksum_interval: self.checksum_interval,
            input_queue: self.input_queue,
            // In whole ticks, rounded up.
            owner_quiet: (self.owner_quiet_ms.saturating_mul(u64::from(self.tick_rate))).div_ceil(1000),
            limits: EntityLimits {
                max_entities_per_member: self.max_entities_per_member,
                max_fields_per_entity: self.max_fields_per_entity,
                max_field_bytes: self.max_field_bytes,
                max_state_bytes: self.max_state_bytes,
            },
            ..RoomConfig::default()
        }
    }

    fn arena(&self) -> ArenaConfig {
        ArenaConfig {
            width: self.arena_width,
            height: self.arena_height,
            npcs: self.arena_npcs,
            precision: self.arena_precision,
            ..ArenaConfig::default()
        }
    }

    /// The kinds rooms of this type declare in the configuration (relay), or that
    /// the arena declares; empty for a registered simulation, which declares its
    /// own ([`crate::engine::simulation::Simulation::schema`]).
    pub fn schema(&self) -> Result<Schema, String> {
        match &self.simulation {
            SimulationKind::Arena | SimulationKind::Registered(_) if !self.kinds.is_empty() => Err(format!(
                "`kinds` are for relay rooms, and this one runs simulation `{}` (the arena and registered \
                 simulations declare their own; is that name right?)",
                String::from(self.simulation.clone())
            )),
            SimulationKind::Arena => self.arena().schema().map_err(|e| e.to_string()),
            // Declared by the simulation itself (`Simulation::schema`).
            SimulationKind::Registered(_) => Ok(Schema::default()),
            SimulationKind::Relay => {
                let kinds = self.kinds.iter().map(|k| {
                    // The rest could never be written.
                    if k.fields.len() > self.max_fields_per_entity {
                        return Err(format!(
                            "kind {} declares {} fields, more than an entity may have (max_fields_per_entity = {})",
                            k.kind,
                            k.fields.len(),
                            self.max_fields_per_entity
                        ));
                    }
                    let fields = k
                        .fields
                        .iter()
                        .map(|f| f.spec(self.max_field_bytes))
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("kind {}: {e}", k.kind))?;
                    if repeats(k.fields.iter().map(|f| f.name.as_str())) {
                        return Err(format!("kind {}: two fields have one name", k.kind));
                    }
                    let kind =
                        KindSchema::new(k.kind, k.name.clone(), fields).map_err(|e| format!("kind {}: {e}", k.kind))?;
                    Ok(if k.owner_only { kind.seen_by_owner_only() } else { kind })
                });
                let kinds = kinds.collect::<Result<_, _>>()?;
                if repeats(self.kinds.iter().map(|k| k.name.as_str())) {
                    return Err("two kinds have one name".into());
                }
                Schema::new(kinds).map_err(|e| e.to_string())
            }
        }
    }

    fn room_type(&self, simulations: &Simulations) -> Result<RoomType, String> {
        let factory: crate::engine::sim_pool::SimFactory = match &self.simulation {
            SimulationKind::Relay => {
                let schema = Arc::new(self.schema().expect("checked by Config::validate"));
                Arc::new(move || Box::new(Relay::with_schema(schema.clone())))
            }
            SimulationKind::Arena => {
                let arena = self.arena();
                Arc::new(move || Box::new(Arena::new(arena)))
            }
            SimulationKind::Registered(name) => simulations.factory(name, &self.params)?,
        };
        Ok(RoomType {
            config: self.room_config(),
            factory,
        })
    }
}

/// Settings that moved from `[websocket]` to `[session]` (they govern QUIC too).
const OLD_NAMES: [&str; 3] = ["max_message_bytes", "outbox_max_messages", "outbox_max_bytes"];

/// The file's `[websocket]` settings of [`OLD_NAMES`] moved in `table` to their place
/// in `[session]` (the old names still work); a file with both names is refused.
fn move_old_settings(table: &mut toml::Table) -> Result<(), ConfigError> {
    let Some(websocket) = table.get_mut("websocket").and_then(toml::Value::as_table_mut) else {
        return Ok(());
    };
    let moved: Vec<(&str, toml::Value)> = OLD_NAMES
        .into_iter()
        .filter_map(|key| Some((key, websocket.remove(key)?)))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    let session = table.entry("session").or_insert_with(|| toml::Table::new().into());
    let session = session
        .as_table_mut()
        .ok_or_else(|| ConfigError::Invalid("session must be a table".into()))?;
    for (key, value) in moved {
        if session.contains_key(key) {
            return Err(ConfigError::Invalid(format!(
                "[websocket] {key} is the old name of [session] {key}, and both are set: keep [session]'s"
            )));
        }
        session.insert(key.into(), value);
    }
    Ok(())
}

/// The `[room_types]` table of a configuration being read (made when missing).
fn room_types_mut(table: &mut toml::Table) -> Result<&mut toml::Table, ConfigError> {
    let types = table.entry("room_types").or_insert_with(|| toml::Table::new().into());
    types
        .as_table_mut()
        .ok_or_else(|| ConfigError::Invalid("room_types must be a table".into()))
}

/// The origins of the overrides that set `key` (a dotted path), or a setting in or
/// around it; all of them when none does.
fn overrides_of<'a>(overrides: &'a [Override], key: &str) -> Vec<&'a str> {
    let related: Vec<&str> = (overrides.iter())
        .filter(|o| {
            let path = o.dotted();
            let within = |inner: &str, outer: &str| {
                inner
                    .strip_prefix(outer)
                    .is_some_and(|r| r.is_empty() || r.starts_with('.'))
            };
            within(&path, key) || within(key, &path)
        })
        .map(Override::origin)
        .collect();
    if related.is_empty() {
        overrides.iter().map(Override::origin).collect()
    } else {
        related
    }
}

/// The most `io_threads` may ask for.
pub const MAX_IO_THREADS: usize = 1024;

/// The default configuration file, with every setting explained.
pub const DEFAULT_CONFIG: &str = include_str!("config/default.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_default_is_the_default() {
        let parsed = Config::from_toml(DEFAULT_CONFIG).unwrap();
        assert_eq!(parsed, Config::default());
        parsed.validate().unwrap();
    }

    #[test]
    fn the_printed_configuration_reads_back_as_itself_but_for_secrets() {
        let mut c = Config::default();
        c.room_types.get_mut("relay").unwrap().kinds.push(KindConfig {
            kind: 3,
            name: "dot".into(),
            fields: vec![FieldConfig {
                id: 1,
                name: "x".into(),
                ty: "float".into(),
                min: Some(Number::Int(0)),
                max: Some(Number::Float(10.5)),
                precision: Some(0.5),
                max_len: None,
            }],
            owner_only: true,
        });
        c.room_types.insert(
            "tag".into(),
            RoomTypeConfig {
                simulation: SimulationKind::Registered("tag".into()),
                ..RoomTypeConfig::default()
            },
        );
        c.rooms.push(PrecreatedRoom {
            id: "lobby".into(),
            room_type: "relay".into(),
            metadata: Default::default(),
        });
        let printed = c.to_toml_redacted();
        assert_eq!(Config::from_toml(&printed).unwrap(), c, "{printed}");
        assert_eq!(
            printed.matches("arena_width").count(),
            1,
            "the arena's alone: {printed}"
        );

        c.auth.hs256_secret = Some("k".repeat(32));
        c.api.token = Some("api-token-of-the-backend".into());
        c.cluster.redis_url = Some("redis://user:hunter2@redis:6379".into());
        let printed = c.to_toml_redacted();
        for secret in ["kkkk", "api-token", "hunter2"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(
            printed.starts_with("# Set, not shown: auth.hs256_secret, api.token.\n"),
            "{printed}"
        );
        let read = Config::from_toml(&printed).unwrap();
        assert_eq!((read.auth.hs256_secret, read.api.token), (None, None));
        assert_eq!(read.cluster.redis_url.as_deref(), Some("redis://***@redis:6379"));
    }

    #[test]
    fn overrides_set_single_settings_over_the_file() {
        let none = Simulations::new();
        assert_eq!(Config::load(None, &[], &none).unwrap(), Config::default());
        let dir = std::env::temp_dir().join(format!("tickrelay-overrides-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(
            &file,
            "max_rooms = 5\n[session]\nmax_rooms_per_session = 7\n[websocket]\nmax_message_bytes = 65536\n",
        )
        .unwrap();
        let set = |arg: &str| Override::from_set(arg).unwrap();
        let env = |name: &str, value: &str| Override::from_env(name, value).unwrap().unwrap();
        let c = Config::load(
            Some(&file),
            &[
                env("TICKRELAY__SESSION__MAX_ROOMS_PER_SESSION", "9"),
                env("TICKRELAY__ROOM_TYPES__ARENA__TICK_RATE", "30"),
                set("session.max_rooms_per_session=11"),
                set("session.max_message_bytes=100000"),
            ],
            &none,
        )
        .unwrap();
        assert_eq!(c.max_rooms, 5, "the file's other settings kept");
        assert_eq!(c.session.max_rooms_per_session, 11, "later overrides win");
        assert_eq!(
            c.session.max_message_bytes, 100_000,
            "over the file's old [websocket] name too"
        );
        let c2 = Config::load(None, &[set("session.max_message_bytes=200000")], &none).unwrap();
        assert_eq!(c2.session.byte_burst, 200_000.0, "the byte burst raised with the size");
        // One setting of a built-in room type changed, the type otherwise as built in.
        let arena = &c.room_types["arena"];
        assert_eq!(arena.tick_rate, 30);
        assert_eq!(arena.simulation, SimulationKind::Arena);
        // A whole table given for it too; and one for every type keeps the built-in ones.
        let c = Config::load(None, &[set("room_types.arena={max_members=8}")], &none).unwrap();
        let arena = &c.room_types["arena"];
        assert_eq!((arena.max_members, &arena.simulation), (8, &SimulationKind::Arena));
        let c = Config::load(None, &[set("room_types={fast={simulation=\"arena\"}}")], &none).unwrap();
        let types: Vec<&str> = c.room_types.keys().map(String::as_str).collect();
        assert_eq!(types, ["arena", "fast", "relay"]);
        // An old [websocket] name given as an override outranks the file's new one.
        let c = Config::load(
            Some(&file),
            &[env("TICKRELAY__WEBSOCKET__MAX_MESSAGE_BYTES", "70000")],
            &none,
        )
        .unwrap();
        assert_eq!(c.session.max_message_bytes, 70_000);
        let c = Config::load(
            None,
            &[
                env("TICKRELAY__WEBSOCKET__MAX_MESSAGE_BYTES", "70000"),
                set("session.max_message_bytes=90000"),
            ],
            &none,
        )
        .unwrap();
        assert_eq!(c.session.max_message_bytes, 90_000, "in the order given");
        // A variable finds the program's own type whatever the case of its name.
        let capitals = Simulations::new().add("Plain", || Arena::new(ArenaConfig::default()));
        let c = Config::load(None, &[env("TICKRELAY__ROOM_TYPES__PLAIN__TICK_RATE", "60")], &capitals).unwrap();
        assert_eq!(c.room_types["Plain"].tick_rate, 60);
        assert!(!c.room_types.contains_key("plain"));
        // So is a type of the program's own simulation.
        let own = Simulations::new().add("plain", || Arena::new(ArenaConfig::default()));
        let c = Config::load(None, &[set("room_types.plain.tick_rate=60")], &own).unwrap();
        let plain = &c.room_types["plain"];
        assert_eq!(
            (plain.tick_rate, &plain.simulation),
            (60, &SimulationKind::Registered("plain".into()))
        );
        // A new type must say what it runs (a typo in a name would make one).
        let e = Config::load(None, &[set("room_types.arean.tick_rate=60")], &none)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("room type `arean`") && e.contains("--set room_types.arean.tick_rate"),
            "{e}"
        );
        let c = Config::load(
            None,
            &[
                set("room_types.duel.simulation=\"arena\""),
                set("room_types.duel.max_members=2"),
            ],
            &none,
        )
        .unwrap();
        assert_eq!(c.room_types["duel"].max_members, 2);
        // A typo or a wrong type is refused, naming the override that set it.
        let e = Config::load(Some(&file), &[set("session.max_rooms_per_sessio=1")], &none)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max_rooms_per_sessio") && e.ends_with("(set by --set session.max_rooms_per_sessio)"),
            "{e}"
        );
        let e = Config::load(
            None,
            &[set("max_rooms_per_creator=3"), env("TICKRELAY__MAX_ROOMS", "many")],
            &none,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`max_rooms`") && e.ends_with("(set by TICKRELAY__MAX_ROOMS)"),
            "{e}"
        );
        // A value meant as an array that is not TOML (its strings unquoted) is text,
        // and the refusal says so; an address in brackets is text, rightly.
        let e = Config::load(
            None,
            &[set("room_types.relay.kinds=[{kind=2, name=card, fields=[]}]")],
            &none,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not valid TOML, so it was read as text"), "{e}");
        let c = Config::load(None, &[set("listen=[::1]:7443")], &none).unwrap();
        assert_eq!(c.listen.to_string(), "[::1]:7443");
        // An error in the file names the file and its line, whatever overrides there are.
        std::fs::write(&file, "max_rooms = 5\nmax_roms = 6\n").unwrap();
        let e = Config::load(Some(&file), &[env("TICKRELAY__MAX_ROOMS", "7")], &none).unwrap_err();
        assert!(
            matches!(e, ConfigError::Parse { .. }) && e.to_string().contains("line 2"),
            "{e}"
        );
        // An old name and its new one both set: which one was meant is not clear.
        std::fs::write(
            &file,
            "[websocket]\noutbox_max_bytes = 1\n[session]\noutbox_max_bytes = 2\n",
        )
        .unwrap();
        let e = Config::load(Some(&file), &[], &none).unwrap_err().to_string();
        assert!(e.contains("[websocket] outbox_max_bytes is the old name"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rooms_kept_open_are_checked_as_a_start_would_open_them() {
        let refused = |toml: &str| Config::from_toml(toml).unwrap().validate().unwrap_err().to_string();
        let e = refused(
            "max_rooms = 1\n[[rooms]]\nid = \"a\"\ntype = \"relay\"\n[[rooms]]\nid = \"b\"\ntype = \"relay\"\n",
        );
        assert!(e.contains("2 rooms kept open, more than max_rooms (1)"), "{e}");
        let e = refused("[[rooms]]\nid = \"a\"\ntype = \"relay\"\n[[rooms]]\nid = \"a\"\ntype = \"arena\"\n");
        assert!(e.contains("listed twice"), "{e}");
        let e = refused("[[rooms]]\nid = \"a\\nb\"\ntype = \"relay\"\n");
        assert!(e.contains("without control characters"), "{e}");
        let e = refused("[[rooms]]\nid = \"a\"\ntype = \"relay\"\nmetadata = { \"\" = \"v\" }\n");
        assert!(e.contains("room `a`: metadata: metadata keys"), "{e}");
        let e = refused("[[rooms]]\nid = \"a\"\ntype = \"arnea\"\n");
        assert!(
            e.contains("unknown type `arnea` (did you mean `arena`?); the room types are: arena, relay"),
            "{e}"
        );
        // A simulation's name mistyped in a type declaring kinds: the message names it.
        let e =
            refused("[room_types.duel]\nsimulation = \"relya\"\nkinds = [{ kind = 1, name = \"dot\", fields = [] }]\n");
        assert!(e.contains("runs simulation `relya`"), "{e}");
        let twice = "max_rooms = 1\n[[rooms]]\nid = \"a\"\ntype = \"relay\"\n[[rooms]]\nid = \"a\"\ntype = \"relay\"\n";
        Config::from_toml(twice).unwrap().validate().unwrap();
    }

    #[test]
    fn a_files_built_in_room_type_changes_the_settings_it_names() {
        let c = Config::from_toml("[room_types.arena]\ntick_rate = 10\n").unwrap();
        let arena = &c.room_types["arena"];
        assert_eq!((arena.tick_rate, &arena.simulation), (10, &SimulationKind::Arena));
        // A section that is not a table is an error, not a crash.
        let e = Config::from_toml("session = []\n[websocket]\nmax_message_bytes = 1000\n").unwrap_err();
        assert!(e.to_string().contains("session must be a table"), "{e}");
    }

    #[test]
    fn partial_files_keep_defaults_and_typos_are_refused() {
        let c = Config::from_toml("listen = \"0.0.0.0:9000\"\n[room_types.fast]\ntick_rate = 60\n").unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.room_types["fast"].tick_rate, 60);
        assert_eq!(c.room_types["fast"].max_members, 64);
        // Defining one room type keeps the built-in ones.
        assert!(c.room_types.contains_key("relay") && c.room_types.contains_key("arena"));
        c.validate().unwrap();
        let c = Config::from_toml("[room_types.arena]\nsimulation = \"arena\"\ntick_rate = 10\n").unwrap();
        assert_eq!(c.room_types["arena"].tick_rate, 10);
        c.validate().unwrap();
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    #[test]
    fn a_room_type_named_like_a_simulation_but_running_none_is_warned_about() {
        let own = Simulations::new()
            .add("ctf", || Arena::new(ArenaConfig::default()))
            .add("go", || Arena::new(ArenaConfig::default()));
        let warned = |text: &str| Config::from_parts(text, None, &[], &own).unwrap().lookalikes;
        for typo in [
            "[room_types.cft]\ntick_rate = 10\n",
            "[room_types.Arnea]\n",
            "[room_types.arenaa]\n",
        ] {
            let warned = warned(typo);
            assert!(
                warned.len() == 1 && warned[0].contains("did you mean"),
                "{typo}: {warned:?}"
            );
        }
        // Meant, or too far from any simulation's name (short names need a closer miss).
        assert!(
            warned("[room_types.cft]\nsimulation = \"relay\"\n").is_empty(),
            "named: meant"
        );
        for name in ["lobby", "dm", "ui", "tdm", "game", "ctf"] {
            assert!(warned(&format!("[room_types.{name}]\n")).is_empty(), "{name}");
        }
        // The arena's settings on a game's own type are ignored, and said so; on a
        // relay type (as in the default file) they are not worth a word.
        let arena_on_ctf = warned("[room_types.ctf]\narena_npcs = 3\n");
        assert!(
            arena_on_ctf.len() == 1 && arena_on_ctf[0].contains("runs `ctf`, not the arena: arena_npcs ignored"),
            "{arena_on_ctf:?}"
        );
        assert!(warned("[room_types.lobby]\narena_npcs = 3\n").is_empty());
        assert!(warned("[room_types.arena]\narena_npcs = 3\n").is_empty());
    }

    #[test]
    fn invalid_settings_are_explained() {
        let mut c = Config::default();
        c.room_types.get_mut("relay").unwrap().tick_rate = 500;
        assert!(c.validate().unwrap_err().to_string().contains("tick_rate"));
        let mut c = Config::default();
        c.session.resume_grace_secs = 1e20;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("resume_grace_secs must be at most 86400")
        );
        let mut c = Config::default();
        c.room_types.get_mut("relay").unwrap().owner_quiet_ms = 40;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("owner_quiet_ms must be 0 (off) or at least 100")
        );
        c.room_types.get_mut("relay").unwrap().owner_quiet_ms = MIN_OWNER_QUIET_MS;
        assert!(c.validate().is_ok());
        let c = Config {
            default_room_type: "nope".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.session.outbox_max_messages = 100;
        assert!(c.validate().unwrap_err().to_string().contains("outbox_max_messages"));
        let mut c = Config::default();
        c.session.outbox_max_messages = 100_000;
        assert!(c.validate().unwrap_err().to_string().contains("at most 65536"));
        let mut c = Config::default();
        c.session.messages_per_second = 0.5;
        assert!(c.validate().unwrap_err().to_string().contains("at least 1"));
        let mut c = Config::default();
        c.session.byte_burst = c.session.max_message_bytes as f64 - 1.0;
        assert!(c.validate().unwrap_err().to_string().contains("byte_burst"));
        c.session.byte_burst += 1.0;
        assert!(c.validate().is_ok());
        // A file raising the message size alone raises the burst with it; one setting
        // both inconsistently is refused.
        let c = Config::from_toml("[session]\nmax_message_bytes = 200000\n").unwrap();
        assert_eq!(c.session.byte_burst, 200_000.0);
        let c = Config::from_toml("[session]\nmax_message_bytes = 200000\nbyte_burst = 1000.0\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("byte_burst"));
        // A token no request could present (`TICKRELAY_API_TOKEN=` left empty).
        let mut c = Config::default();
        c.api.token = Some(" ".into());
        assert!(c.validate().unwrap_err().to_string().contains("api.token is empty"));
        c.api.token = None;
        c.metrics.token = Some(String::new());
        assert!(c.validate().unwrap_err().to_string().contains("metrics.token is empty"));
        c.metrics.token = Some("secret ".into());
        assert!(c.validate().unwrap_err().to_string().contains("white space"));
        c.metrics.token = Some("line\nbreak".into());
        assert!(c.validate().unwrap_err().to_string().contains("control character"));
        // Settings that would leave the relay up but useless.
        let refused = |set: &str| {
            let c = Config::load(None, &[Override::from_set(set).unwrap()], &Simulations::new()).unwrap();
            c.validate().unwrap_err().to_string()
        };
        for set in ["sim_queue_capacity=0", "max_rooms=0", "session.max_rooms_per_session=0"] {
            assert!(refused(set).contains("at least 1"), "{set}");
        }
        assert!(refused("quic.stream_receive_window_bytes=0").contains("at least 1024"));
        assert!(refused("cluster.public_url=notaurl").contains("not a ws:// or wss:// URL"));
        for url in [
            "wss://node1.example.com",
            "wss://node1.example.com/",
            "wss://node1.example.com?x=/ws",
        ] {
            assert!(
                refused(&format!("cluster.public_url={url}")).contains("the WebSocket path"),
                "{url}"
            );
        }
        assert!(refused("cluster.node_id=\"\"").contains("cluster.node_id"));
        assert!(refused("metrics.listen=\"127.0.0.1:7443\"").contains("listen's own address"));
        assert!(refused("room_types.\"a\\tb\".simulation=\"relay\"").contains("a room type's name"));
        let mut c = Config::default();
        c.connections.max_per_ip = 0;
        assert!(c.validate().unwrap_err().to_string().contains("at least 1"));
    }

    #[test]
    fn settings_moved_to_session_are_still_read_under_their_old_names() {
        let old = "[websocket]\nmax_message_bytes = 2048\noutbox_max_messages = 10\noutbox_max_bytes = 999\n";
        let c = Config::from_toml(old).unwrap();
        assert_eq!(c.session_settings().max_message_bytes, 2048);
        assert_eq!((c.outbox_limits().max_messages, c.outbox_limits().max_bytes), (10, 999));
        let new = "[session]\nmax_message_bytes = 4096\n";
        assert_eq!(
            Config::from_toml(new).unwrap().session_settings().max_message_bytes,
            4096
        );
    }

    #[test]
    fn naive_fanout_reaches_every_room_type() {
        let c = Config::from_toml("naive_fanout = true\n[room_types.fast]\ntick_rate = 60\n").unwrap();
        let pool = c.pool_config(&Simulations::new()).unwrap();
        assert_eq!(pool.room_types.len(), 3);
        assert!(pool.room_types.values().all(|t| t.config.naive_fanout));
        assert!(
            Config::default()
                .pool_config(&Simulations::new())
                .unwrap()
                .room_types
                .values()
                .all(|t| !t.config.naive_fanout)
        );
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Size {
        width: f32,
    }

    #[test]
    fn room_types_run_the_simulations_a_program_registers_with_their_params() {
        let simulations = Simulations::new()
            .add("plain", || Arena::new(ArenaConfig::default()))
            .add_with_params("sized", |size: &Size| {
                Arena::new(ArenaConfig {
                    width: size.width,
                    ..ArenaConfig::default()
                })
            });
        let types = |toml: &str| {
            let c = Config::from_toml(toml).unwrap();
            c.validate().map_err(|e| e.to_string())?;
            c.pool_config(&simulations)
                .map(|p| p.room_types)
                .map_err(|e| e.to_string())
        };
        let sized = "[room_types.wide]\nsimulation = \"sized\"\n[room_types.wide.params]\nwidth = 500.0\n";
        let wide = &types(sized).unwrap()["wide"];
        let schema = (wide.factory)().schema();
        let x = &schema.kinds()[0].fields()[0];
        assert_eq!(x.ty, FieldType::float(0.0, 500.0, 0.01).unwrap());
        types("[room_types.p]\nsimulation = \"plain\"\n").unwrap();

        for (toml, problem) in [
            (
                "[room_types.x]\nsimulation = \"chess\"\n",
                "`chess` is not one this program has (it has: relay, arena, plain, sized)",
            ),
            (
                "[room_types.x]\nsimulation = \"sized\"\n",
                "params: missing field `width`",
            ),
            (
                "[room_types.x]\nsimulation = \"sized\"\nparams = { width = \"wide\" }\n",
                "params: invalid type",
            ),
            (
                "[room_types.x]\nsimulation = \"plain\"\nparams = { width = 1.0 }\n",
                "params: unknown field `width`",
            ),
            (
                "[room_types.x]\nsimulation = \"arena\"\nparams = { width = 1.0 }\n",
                "`params` are for simulations a program registers",
            ),
            (
                "[room_types.x]\nsimulation = \"plain\"\n[[room_types.x.kinds]]\nkind = 1\nfields = []\n",
                "declare their own",
            ),
        ] {
            let e = types(toml).unwrap_err();
            assert!(e.contains("room type `x`") && e.contains(problem), "{e}");
        }
    }

    #[test]
    fn a_registered_simulation_has_a_room_type_of_its_name_unless_one_is_configured() {
        let simulations = Simulations::new().add("plain", || Arena::new(ArenaConfig::default()));
        let mut c = Config::default();
        c.add_room_types(&simulations).unwrap();
        assert_eq!(
            c.room_types["plain"].simulation,
            SimulationKind::Registered("plain".into())
        );
        c.pool_config(&simulations).unwrap();

        let tuned = "[room_types.plain]\nsimulation = \"plain\"\ntick_rate = 20\n";
        let mut c = Config::from_toml(tuned).unwrap();
        c.add_room_types(&simulations).unwrap();
        assert_eq!(c.room_types["plain"].tick_rate, 20);

        let forgot = Config::from_toml("[room_types.plain]\ntick_rate = 20\n");
        let e = forgot.unwrap().add_room_types(&simulations).unwrap_err().to_string();
        assert!(e.contains("add simulation = \"plain\" to [room_types.plain]"), "{e}");
    }

    #[test]
    #[should_panic(expected = "simulation `arena` is registered twice")]
    fn a_built_in_name_cannot_be_registered() {
        let _ = Simulations::new().add("arena", || Arena::new(ArenaConfig::default()));
    }

    #[test]
    fn redis_certificates_and_sentinel_passwords_need_their_kind_of_url() {
        let check = |toml: &str| Config::from_toml(toml).unwrap().validate().map_err(|e| e.to_string());
        let plain = "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nredis_ca_file = \"ca.pem\"\n";
        assert!(check(plain).unwrap_err().contains("rediss://"));
        let tls = "[cluster]\nredis_url = \"rediss://127.0.0.1:6379\"\nredis_ca_file = \"ca.pem\"\n";
        check(tls).unwrap();
        let sentinels = "[cluster]\nredis_url = \"rediss-sentinel://127.0.0.1#m\"\nredis_cert_file = \"c.pem\"\nredis_key_file = \"k.pem\"\n";
        check(sentinels).unwrap();
        let half = "[cluster]\nredis_url = \"rediss://127.0.0.1:6379\"\nredis_cert_file = \"c.pem\"\n";
        assert!(check(half).unwrap_err().contains("set both or neither"));
        let no_sentinels = "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nsentinel_password = \"x\"\n";
        assert!(check(no_sentinels).unwrap_err().contains("redis-sentinel://"));
        check("[cluster]\nredis_url = \"redis-sentinel://127.0.0.1#m\"\nsentinel_password = \"x\"\n").unwrap();
        let user_alone = "[cluster]\nredis_url = \"redis-sentinel://127.0.0.1#m\"\nsentinel_username = \"u\"\n";
        assert!(
            check(user_alone)
                .unwrap_err()
                .contains("needs cluster.sentinel_password")
        );
    }

    #[test]
    fn an_arena_of_too_many_npcs_is_refused_at_start() {
        let arena = |npcs: u32| {
            let text = format!("[room_types.arena]\nsimulation = \"arena\"\narena_npcs = {npcs}\n");
            Config::from_toml(&text).unwrap().validate().map_err(|e| e.to_string())
        };
        assert_eq!(arena(MAX_ARENA_NPCS), Ok(()));
        let e = arena(MAX_ARENA_NPCS + 1).unwrap_err();
        assert!(e.contains("arena_npcs must be at most 10000"), "{e}");
    }

    #[test]
    fn relay_kinds_are_declared_in_toml_and_checked() {
        // The example in the default file, uncommented.
        let example: String = DEFAULT_CONFIG
            .lines()
            .skip_while(|l| !l.starts_with("# [[room_types.relay.kinds]]"))
            .take_while(|l| l.starts_with('#') && !l.starts_with("# Rooms"))
            .filter(|l| !l.starts_with("#   ") || l.contains('{'))
            .map(|l| l.trim_start_matches("# ").trim_start_matches('#'))
            // Its prose between the examples left out.
            .filter(|l| l.starts_with(['[', ' ', ']']) || l.contains(" = ") || l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::from_toml(&example).unwrap();
        c.validate().unwrap();
        let schema = c.room_types["relay"].schema().unwrap();
        let player = &schema.kinds()[0];
        assert_eq!((player.kind(), player.name(), player.fields().len()), (1, "player", 5));
        assert!(!player.is_owner_only());
        let card = &schema.kinds()[1];
        assert_eq!((card.kind(), card.name(), card.is_owner_only()), (2, "card", true));
        assert_eq!(c.room_types["arena"].schema().unwrap().kinds().len(), 2);

        for (toml, problem) in [
            ("{ id = 1, type = \"float\", min = 0, max = 1 }", "needs `precision`"),
            ("{ id = 1, type = \"int\", min = 0.5, max = 1 }", "must be integers"),
            ("{ id = 1, type = \"vec3\" }", "unknown type"),
            (
                "{ id = 1, type = \"f32\", min = 0, max = 1, precision = 0.1 }",
                "unknown type `f32` (one of: int, float, bool, bytes, string)",
            ),
            (
                "{ id = 1, type = \"int\", min = 0, max = 9, precision = 1 }",
                "type = \"int\" takes no `precision`",
            ),
            ("{ id = 1, type = \"bool\", max = 1 }", "type = \"bool\" takes no `max`"),
            (
                "{ id = 1, type = \"float\", min = 0, max = 1, precision = 0.1, max_len = 4 }",
                "no `max_len`",
            ),
            (
                "{ id = 1, type = \"string\", max_len = 5000 }",
                "more than the room type's max_field_bytes (1024)",
            ),
            (
                "{ id = 1, name = \"hp\", type = \"bool\" }, { id = 2, name = \"hp\", type = \"bool\" }",
                "two fields have one name",
            ),
            (
                "{ id = 1, type = \"float\", min = 0, max = 1e9, precision = 1 }",
                "2^24 steps",
            ),
        ] {
            let text = format!("[[room_types.relay.kinds]]\nkind = 1\nfields = [{toml}]\n");
            let e = Config::from_toml(&text).unwrap().validate().unwrap_err().to_string();
            assert!(e.contains(problem) && e.contains("room type `relay`"), "{e}");
        }
        let three = "{ id = 1, type = \"bool\" }, { id = 2, type = \"bool\" }, { id = 3, type = \"bool\" }";
        let text = format!(
            "[room_types.relay]\nmax_fields_per_entity = 2\n[[room_types.relay.kinds]]\nkind = 1\nfields = [{three}]\n"
        );
        let e = Config::from_toml(&text).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("declares 3 fields"), "{e}");
        // Names are optional; given, no two kinds share one (nor two fields of a kind).
        let kinds = |a: &str, b: &str| {
            let kind = |n: u32, name: &str| {
                format!("[[room_types.relay.kinds]]\nkind = {n}\nname = \"{name}\"\nfields = []\n")
            };
            Config::from_toml(&(kind(1, a) + &kind(2, b))).unwrap().validate()
        };
        assert!(kinds("", "").is_ok() && kinds("ship", "rock").is_ok());
        let e = kinds("ship", "ship").unwrap_err().to_string();
        assert!(e.contains("two kinds have one name"), "{e}");
    }
}
