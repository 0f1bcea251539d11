//! Server configuration: built-in defaults, overridden by a TOML file, then by any
//! file setting given as a `TICKRELAY__SECTION__KEY` variable or a `--set` flag
//! ([`Override`]), then by the named `TICKRELAY_*` variables and command-line flags
//! (the binary's `--help` lists them). [`DEFAULT_CONFIG`] is the commented default file that
//! `tickrelay config --print-default` prints (`src/config/default.toml`; a test checks
//! it parses to exactly these defaults).

mod load;
mod overrides;
mod room_types;
mod simulations;
pub(crate) mod urls;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::outbox::OutboxLimits;
use crate::engine::sim_pool::{CreationLimits, PoolConfig};
use crate::session::SessionSettings;
use crate::session::auth::AuthConfig;
use crate::session::limits::RateLimits;
pub use crate::transport::gate::ConnectionLimits;
use crate::transport::origin::OriginConfig;
pub use overrides::{ENV_PREFIX, Override};
pub use room_types::{FieldConfig, KindConfig, Number, PrecreatedRoom, RoomTypeConfig, SimulationKind};
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

/// An `IP:PORT` address, with a hint when it is not one (a host name, a port alone):
/// what `listen`, `quic.listen` and `metrics.listen` take, in a file and on the command
/// line alike.
pub fn parse_socket_address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        "expected IP:PORT, such as 127.0.0.1:7443, 0.0.0.0:7443 or [::1]:7443 (a host name is not resolved)".into()
    })
}

fn socket_address<'de, D: serde::Deserializer<'de>>(text: D) -> Result<SocketAddr, D::Error> {
    parse_socket_address(&String::deserialize(text)?).map_err(serde::de::Error::custom)
}

pub(crate) fn optional_socket_address<'de, D: serde::Deserializer<'de>>(
    text: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_address(text).map(Some)
}

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTPS listener (WebSocket at `/ws`, `/healthz`, `/metrics`).
    #[serde(deserialize_with = "socket_address")]
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
    /// each message separately ([`RoomConfig::naive_fanout`](crate::engine::room::RoomConfig::naive_fanout) in every room type).
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
    #[serde(deserialize_with = "optional_socket_address")]
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

/// The lock [`Config::loopback`]'s process holds on a file of its directory while it
/// runs (across PID namespaces too: a container sharing the temporary directory
/// cannot tell from its `/proc` whether another's process runs).
static LOOPBACK_LOCK: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
const LOOPBACK_LOCK_FILE: &str = "running.lock";
/// A directory changed more recently than this is left alone (its process may be
/// between making it and locking its file).
const LOOPBACK_DIR_QUIET: Duration = Duration::from_secs(60);

/// Removes the `tickrelay-PID` directories [`Config::loopback`] made in `temp` whose
/// process ended: its lock file free, and nothing in it changed for `quiet`.
fn remove_ended_processes_dirs(temp: &std::path::Path, quiet: Duration) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix("tickrelay-"));
        if pid.is_none_or(|pid| pid.parse::<u32>().is_err()) {
            continue;
        }
        let (dir, lock) = (entry.path(), entry.path().join(LOOPBACK_LOCK_FILE));
        let ended = std::fs::File::open(&lock).is_ok_and(|file| file.try_lock().is_ok());
        let quiet_for = |path: &std::path::Path| {
            let changed = std::fs::metadata(path).and_then(|m| m.modified());
            changed
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|since| since >= quiet)
        };
        if ended && quiet_for(&dir) && quiet_for(&lock) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The least `owner_quiet_ms` a room type may set (0 aside: off).
pub const MIN_OWNER_QUIET_MS: u64 = 100;

impl Config {
    /// A configuration for tests and local tools: listens on `127.0.0.1:0` (any free
    /// port), two simulation threads, the built-in room types at `tick_rate`, and a
    /// development certificate in this process's directory under the system's
    /// temporary directory (one for every such configuration of the process: a
    /// directory per configuration left thousands behind after a test run). The
    /// process holds a lock on a file in it while it runs; the directories of
    /// processes that ended (their lock free) are removed as the next one is made.
    pub fn loopback(tick_rate: u32) -> Self {
        let temp = std::env::temp_dir();
        let dir = temp.join(format!("tickrelay-{}", std::process::id()));
        LOOPBACK_LOCK.get_or_init(|| {
            remove_ended_processes_dirs(&temp, LOOPBACK_DIR_QUIET);
            let _ = std::fs::create_dir_all(&dir);
            let lock = std::fs::File::create(dir.join(LOOPBACK_LOCK_FILE)).ok()?;
            lock.lock().ok().map(|()| lock)
        });
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

/// The most `io_threads` may ask for.
pub const MAX_IO_THREADS: usize = 1024;

/// The default configuration file, with every setting explained.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

#[cfg(test)]
mod tests;
