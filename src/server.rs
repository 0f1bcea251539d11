//! The server: builds everything from the [`Config`], accepts TCP connections (handed
//! to `transport::http`) and QUIC connections, and shuts down.
//!
//! Shutdown follows three steps: stop accepting, signal every task (a
//! `CancellationToken`, and every live connection's stop signal: each session closes
//! with 1001), then wait for all of them with a deadline (a `TaskTracker`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
/// What stops [`Server::run`] (`tokio_util`'s, re-exported so that a program that
/// embeds the relay needs no dependency of its own for it).
pub use tokio_util::sync::CancellationToken;

use crate::cluster::bus::{Bus, BusMessage};
use crate::cluster::{
    Claim, Closing, Cluster, DirectoryError, Node, NodeSettings, RedisAddress, RedisDirectory, probe_redis,
};
use crate::config::{Config, ConfigError, PrecreatedRoom, SimulationKind, Simulations};
use crate::engine::pacer::Pacer;
use crate::engine::sim_pool::{Checkpoint, Checkpoints, PoolConfig, SimPool};
use crate::engine::simulation::named;
use crate::log_budget::LogBudget;
use crate::metrics::Metrics;
use crate::session::SessionContext;
use crate::session::auth::{AuthMode, Authenticator};
use crate::state::Schema;
use crate::transport::context::{ConnectionSettings, Context};
use crate::transport::gate::Gate;
use crate::transport::http::{self, Http, Routes};
use crate::transport::io_threads::IoThreads;
use crate::transport::jwks;
use crate::transport::quic;
use crate::transport::registry::Registry;
use crate::transport::tls::{self, TlsError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A socket or thread could not be created.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An address could not be bound (typically already in use).
    #[error("cannot listen on {protocol} {addr}: {source} (change it with {option})")]
    Bind {
        /// `TCP` or `UDP (QUIC)`.
        protocol: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The configuration key and flag that set it.
        option: &'static str,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The signing keys of `[auth] jwks_url` could not be fetched.
    #[error("cannot fetch the signing keys from {url}: {why}")]
    Jwks {
        /// `[auth] jwks_url`.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// A pre-created room could not be created.
    #[error("cannot create room `{0}`: {1}")]
    Room(String, crate::engine::rooms::PoolError),
    /// Cluster mode: the room directory (Redis) could not be reached at start.
    #[error("cluster mode: {0} (check `[cluster] redis_url` / --cluster)")]
    Cluster(#[from] DirectoryError),
}

/// How long `tickrelay --check` waits for the signing keys and for Redis (a start
/// fails without them).
pub const CHECK_REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// Said when certificate files are configured with `insecure_plain`.
const IGNORED_CERTIFICATE: &str = "tls.cert and tls.key are set but not used: tls.insecure_plain serves without TLS";

/// An HTTP API or metrics token shorter than this is warned about (16 bytes: 128 bits of a random
/// one).
const MIN_API_TOKEN_BYTES: usize = 16;

/// `config` with the program's own room types added and every setting checked:
/// what the simulation pool starts with.
fn settled(config: &mut Config, simulations: &Simulations) -> Result<PoolConfig, ServerError> {
    config.add_room_types(simulations)?;
    config.validate()?;
    Ok(config.pool_config(simulations)?)
}

/// What in the authentication of `config` a relay in production should not run with,
/// a sentence each: logged at start, printed by `tickrelay --check`.
fn weak_secrets(config: &Config, auth: &Authenticator) -> Vec<String> {
    let mut weak = Vec::new();
    if auth.mode() == AuthMode::Anonymous {
        weak.push("auth.mode = \"anonymous\": every connection is accepted without a token (development only)".into());
        if config.auth.jwks_url.is_some() {
            weak.push("auth.jwks_url is set but auth.mode is \"anonymous\": no token is checked".into());
        }
    }
    weak.extend(auth.short_secret().map(String::from));
    for (what, token) in [
        ("the HTTP API's token", &config.api.token),
        ("the metrics token", &config.metrics.token),
    ] {
        if let Some(bytes) = token.as_ref().map(String::len).filter(|&n| n < MIN_API_TOKEN_BYTES) {
            weak.push(format!(
                "{what} is {bytes} bytes, shorter than {MIN_API_TOKEN_BYTES}: it can be guessed; use for example \
                 `head -c 32 /dev/urandom | base64`"
            ));
        }
    }
    weak
}

/// The kinds each room type's simulation declares, by room type.
type Schemas = BTreeMap<String, Arc<Schema>>;

/// Makes a simulation of each room type: the room types whose simulation panics as it
/// is made (its constructor, or its `schema`, refuses the type's params), a warning
/// each (no room of such a type can open), and the others' declared kinds. An error
/// when `[[rooms]]` keeps one that panics open: the relay would not start.
fn make_each_simulation(config: &Config, pool: &PoolConfig) -> Result<(Vec<String>, Schemas), ConfigError> {
    let (mut warnings, mut schemas) = (Vec::new(), BTreeMap::new());
    let mut names: Vec<&String> = pool.room_types.keys().collect();
    names.sort();
    for name in names {
        let room_type = &pool.room_types[name];
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (room_type.factory)().schema()));
        if let Ok(schema) = made {
            schemas.insert(name.clone(), schema);
            continue;
        }
        let why = format!("room type `{name}`: its simulation panicked as it was made (above): no room of it can open");
        match config.rooms.iter().find(|r| &r.room_type == name) {
            Some(room) => {
                return Err(ConfigError::Invalid(format!(
                    "{why}, `[[rooms]]` `{}` included",
                    room.id
                )));
            }
            None => warnings.push(why),
        }
    }
    Ok((warnings, schemas))
}

/// The URL a node's clients are sent to: `[cluster] public_url`, or `scheme://` at
/// the listen address (as [`Server::bind_with`] makes it; port 0: the port bound).
fn public_url(config: &Config, scheme: &str) -> String {
    (config.cluster.public_url.clone()).unwrap_or_else(|| format!("{scheme}://{}/ws", config.listen))
}

/// Cluster mode: the relay room types whose rooms may hold more state than a
/// checkpoint may carry (such a room's checkpoints are skipped, so it does not survive
/// its node), a sentence each: logged at start, printed by `tickrelay --check`.
fn unkept_rooms(config: &Config) -> Vec<String> {
    let bound = config.cluster.max_checkpoint_bytes;
    if config.cluster.redis_url.is_none() {
        return Vec::new();
    }
    (config.room_types.iter())
        .filter(|(_, t)| t.simulation == SimulationKind::Relay && t.max_state_bytes > bound)
        .map(|(name, t)| {
            format!(
                "room type `{name}`: a room may hold {} bytes of state (max_state_bytes), more than \
                 [cluster] max_checkpoint_bytes ({bound}): a room near that size is not checkpointed and does \
                 not survive its node",
                t.max_state_bytes
            )
        })
        .collect()
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    /// `[metrics] listen`, when `/metrics` has a listener of its own.
    metrics_listener: Option<TcpListener>,
    local_addr: SocketAddr,
    ctx: Arc<Context>,
    http: Arc<Http>,
    pool: Arc<SimPool>,
    tls: Option<tls::Tls>,
    /// `[tls] reload_secs`.
    tls_reload: Duration,
    /// `[auth] jwks_url`: kept fresh once started.
    jwks: Option<jwks::Source>,
    quic: Option<quinn::Endpoint>,
    /// Cluster mode: this node's part and its inputs.
    cluster: Option<ClusterParts>,
    /// `[[rooms]]`: kept open while the server runs.
    configured_rooms: Vec<PrecreatedRoom>,
    /// How long it keeps serving, with `/readyz` answering 503, once asked to stop.
    drain: Duration,
    /// The threads that serve the WebSocket connections.
    io: IoThreads,
}

/// Cluster mode: this node, what other nodes send it, and its rooms' checkpoints.
struct ClusterParts {
    cluster: Arc<Cluster>,
    inbox: mpsc::UnboundedReceiver<BusMessage>,
    checkpoints: mpsc::UnboundedReceiver<Checkpoint>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("local_addr", &self.local_addr).finish()
    }
}

impl Server {
    /// Validates the configuration, binds the listeners, sets up TLS, starts the
    /// simulation threads and creates the configured rooms. The addresses are bound
    /// first, so a start that fails on an address in use changes nothing (it does not
    /// write a development certificate over the running relay's).
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        Self::bind_with(config, &Simulations::new()).await
    }

    /// Checks `config` as [`Server::bind_with`] would, without starting or writing
    /// anything: the settings, the room types with the program's `simulations`, the
    /// configured TLS files (read; a development certificate is not made), the
    /// addresses (each bound and released at once; one that cannot be is a warning),
    /// the signing keys of `[auth] jwks_url` (fetched) and the cluster's Redis
    /// (reached, and asked for a `PONG`), each within [`CHECK_REACH_TIMEOUT`]. Returns
    /// what a start would use, a line each, warnings first (`tickrelay --check`).
    pub async fn check(mut config: Config, simulations: &Simulations) -> Result<Vec<String>, ServerError> {
        let pool = settled(&mut config, simulations)?;
        let (mut lines, mut warnings) = (Vec::new(), Vec::new());
        let (unmakeable, schemas) = make_each_simulation(&config, &pool)?;
        warnings.extend(unmakeable);
        let scheme = if config.tls.insecure_plain { "ws" } else { "wss" };
        lines.push(format!("listen: {scheme}://{}/ws", config.listen));
        lines.push(match (config.tls.insecure_plain, config.quic.enabled) {
            (false, true) => format!("quic: udp {}", config.quic.listen.unwrap_or(config.listen)),
            (true, true) => "quic: off (it needs TLS, and tls.insecure_plain is set)".into(),
            (_, false) => "quic: off".into(),
        });
        if config.tls.insecure_plain {
            warnings.push("no TLS (tls.insecure_plain): only behind a TLS-terminating proxy".into());
            if config.tls.cert.is_some() {
                warnings.push(IGNORED_CERTIFICATE.into());
            }
        } else if config.tls.cert.is_some() {
            let tls = tls::load(&config.tls)?;
            warnings.extend(tls::expiry_warning(tls.not_after));
            let expiry = match tls::days_left(tls.not_after) {
                Some(days) => format!("{days} days left"),
                None => "its expiry unreadable".into(),
            };
            lines.push(format!("tls: certificate sha256 {}, {expiry}", tls.fingerprint));
        } else {
            tls::check_dev_cert(&config.tls.dev_cert_path)?;
            warnings.push(
                "no TLS certificate configured: a development certificate for localhost (not for production)".into(),
            );
            let made = if config.tls.dev_cert_path.exists() {
                "kept from an earlier start while it is valid"
            } else {
                "written at the first start"
            };
            lines.push(format!(
                "tls: development certificate at {} ({made})",
                config.tls.dev_cert_path.display()
            ));
        }
        let auth = Authenticator::new(&config.auth).map_err(ConfigError::Invalid)?;
        let jwks = jwks::Source::from_config(&config.auth).map_err(ConfigError::Invalid)?;
        lines.push(match (config.auth.mode, &jwks, auth.key_set()) {
            (AuthMode::Anonymous, ..) => "auth: anonymous".into(),
            (AuthMode::Jwt, Some(source), Some(keys)) => {
                let url = source.url();
                let fetched = tokio::time::timeout(CHECK_REACH_TIMEOUT, source.load(keys)).await;
                let count = (fetched.unwrap_or_else(|_| Err(format!("no answer within {CHECK_REACH_TIMEOUT:?}"))))
                    .map_err(|why| ServerError::Jwks { url: url.into(), why })?;
                format!("auth: jwt ({count} signing keys fetched from {url})")
            }
            (AuthMode::Jwt, ..) => format!("auth: jwt ({})", config.auth.algorithm),
        });
        warnings.extend(weak_secrets(&config, &auth));
        warnings.extend(unkept_rooms(&config));
        let types: Vec<String> = (config.room_types.iter())
            .map(|(name, t)| {
                let simulation: String = t.simulation.clone().into();
                format!("{name} ({simulation}, {} Hz, {} seats)", t.tick_rate, t.max_members)
            })
            .collect();
        lines.push(format!(
            "room types: {}; default {}",
            types.join(", "),
            config.default_room_type
        ));
        // As each simulation declares them (a relay room's, from the configuration).
        for (name, schema) in &schemas {
            let kinds: Vec<String> = (schema.kinds().iter())
                .map(|kind| {
                    let fields: Vec<String> = (kind.fields().iter())
                        .map(|f| format!("{} {}", named(&f.name, f.id), f.ty))
                        .collect();
                    let seen = if kind.is_owner_only() {
                        " (seen by its owner only)"
                    } else {
                        ""
                    };
                    format!("{}{seen}: {}", named(kind.name(), kind.kind()), fields.join(", "))
                })
                .collect();
            if !kinds.is_empty() {
                lines.push(format!("kinds of {name}: {}", kinds.join("; ")));
            }
        }
        let ids: Vec<&str> = config.rooms.iter().map(|room| room.id.as_str()).collect();
        lines.push(format!("rooms kept open: {} {ids:?}", ids.len()));
        let origins = &config.origins;
        lines.push(format!(
            "origins allowed: {:?}{}",
            origins.allowed,
            if origins.allow_missing {
                ", and clients sending none"
            } else {
                ""
            }
        ));
        let token = if config.metrics.token.is_some() {
            ", behind a token"
        } else {
            ""
        };
        lines.push(match config.metrics.listen {
            Some(addr) => format!("metrics: http://{addr}/metrics{token}"),
            None => format!("metrics: /metrics on the listener{token}"),
        });
        lines.push(format!(
            "http api: {}",
            if config.api.token.is_some() { "on" } else { "off" }
        ));
        lines.push(match RedisAddress::from_config(&config.cluster)? {
            Some(redis) => format!(
                "cluster: {} ({} answered), node {}, clients sent to {}",
                redis.shown(),
                (tokio::time::timeout(CHECK_REACH_TIMEOUT, probe_redis(&redis)).await).unwrap_or_else(|_| Err(
                    DirectoryError(format!(
                        "no answer from Redis at {} within {CHECK_REACH_TIMEOUT:?}",
                        redis.shown()
                    ))
                ))?,
                config
                    .cluster
                    .node_id
                    .clone()
                    .unwrap_or_else(|| public_url(&config, scheme)),
                public_url(&config, scheme),
            ),
            None => "cluster: off".into(),
        });
        warnings.extend(unbindable(&config));
        Ok(warnings
            .into_iter()
            .map(|w| format!("warning: {w}"))
            .chain(lines)
            .collect())
    }

    /// [`Server::bind`] with the program's own simulations, which room types name
    /// in `simulation = "…"`; each has a room type of its name unless the configuration
    /// gives one ([`Config::add_room_types`]).
    pub async fn bind_with(mut config: Config, simulations: &Simulations) -> Result<Self, ServerError> {
        let mut pool_config = settled(&mut config, simulations)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind {
                protocol: "TCP",
                addr: config.listen,
                option: LISTEN_OPTION,
                source,
            })?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = match config.metrics.listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| ServerError::Bind {
                protocol: "TCP (metrics)",
                addr,
                option: METRICS_OPTION,
                source,
            })?),
            None => None,
        };
        let udp = match (config.tls.insecure_plain, config.quic.enabled) {
            (false, true) => Some(bind_udp(&config, local_addr)?),
            (true, true) => {
                tracing::warn!("QUIC needs TLS: not serving QUIC with tls.insecure_plain");
                None
            }
            (_, false) => None,
        };
        let tls = if config.tls.insecure_plain {
            tracing::warn!(
                "serving plain ws:// and http:// without TLS: only behind a TLS-terminating proxy, or for development on this machine"
            );
            if config.tls.cert.is_some() {
                tracing::warn!("{IGNORED_CERTIFICATE}");
            }
            None
        } else {
            let tls = tls::load(&config.tls)?;
            if tls.dev_certificate.is_some() {
                tracing::warn!(
                    path = %config.tls.dev_cert_path.display(),
                    sha256 = %tls.fingerprint,
                    "no certificate configured: using a self-signed development certificate for localhost (made at the first start, then reused); \
                     clients must trust this file (not for production)"
                );
            } else {
                match (tls::expiry_warning(tls.not_after), tls::days_left(tls.not_after)) {
                    (Some(warning), _) => tracing::warn!(sha256 = %tls.fingerprint, "loaded: {warning}"),
                    (None, Some(days_left)) => {
                        tracing::info!(sha256 = %tls.fingerprint, days_left, "loaded TLS certificate")
                    }
                    (None, None) => {
                        tracing::info!(sha256 = %tls.fingerprint, "loaded TLS certificate (its expiry unreadable)")
                    }
                }
            }
            Some(tls)
        };
        // Cluster mode: rooms checkpoint into this channel; the cluster writes them.
        let checkpoints = config.cluster.redis_url.is_some().then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let closing = Arc::new(Closing::default());
            pool_config.checkpoints = Some(Checkpoints {
                every_ticks: config.cluster.checkpoint_ticks,
                seat_grace: Duration::from_secs_f64(config.session.resume_grace_secs),
                rewrite_after: Duration::from_secs(config.cluster.checkpoint_ttl_secs) / 4,
                bytes_per_second: config.cluster.checkpoint_bytes_per_second,
                sink: Arc::new(closing.sink(tx)),
            });
            (rx, closing)
        });
        let io_threads = match config.io_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let io_wait = Duration::from_millis(config.io_wait_ms);
        let pacer = Arc::new(Pacer::new(pool_config.threads, io_threads, io_wait));
        pool_config.pacer = Some(pacer.clone());
        let io = IoThreads::start(&pacer)?;
        let pool = Arc::new(SimPool::start(pool_config)?);
        let tls_expiry = tls.as_ref().map(|tls| tls.expiry.clone()).unwrap_or_default();
        let metrics = Arc::new(Metrics::new(pool.metrics().clone(), tls_expiry));
        // One node's directory is in memory: always there (cluster mode sets it from
        // Redis's answers).
        metrics.directory_up.set(1);
        let cluster = match (RedisAddress::from_config(&config.cluster)?, checkpoints) {
            (Some(redis), Some((checkpoints, closing))) => {
                let (cluster, inbox) = join_cluster(&config, &redis, local_addr, &pool, closing, &metrics).await?;
                Some(ClusterParts {
                    cluster: Arc::new(cluster),
                    inbox,
                    checkpoints,
                })
            }
            _ => None,
        };
        for room in &config.rooms {
            // In a cluster, the node that claims a configured room first holds it.
            if let Some(ClusterParts { cluster, .. }) = &cluster {
                let claim = cluster
                    .claim_configured(&room.id, &room.room_type, &room.metadata)
                    .await;
                match claim.map_err(|e| ServerError::Room(room.id.clone(), e))? {
                    Claim::Ours => {}
                    Claim::Theirs { node, .. } => {
                        tracing::info!(room = %room.id, owner = %node, "configured room is held by another node");
                        continue;
                    }
                    // Opened here once the directory settles, if its node (alive
                    // through a Redis outage) does not take it back first.
                    Claim::Settling => {
                        tracing::info!(room = %room.id, "configured room waits for the room directory to settle after a Redis outage");
                        continue;
                    }
                    // Another process with this node's id (cut off from Redis, and
                    // back) holds it: opened here once its lease lapses.
                    Claim::Superseded => {
                        tracing::warn!(room = %room.id, "configured room is held by another process with this node's id");
                        continue;
                    }
                }
            }
            pool.create_persistent(&room.id, &room.room_type, &room.metadata)
                .map_err(|e| ServerError::Room(room.id.clone(), e))?;
        }
        let mut settings = config.session_settings();
        settings.quic_redirects = config.cluster.quic_redirects.unwrap_or_else(|| {
            let quic_port = udp
                .as_ref()
                .and_then(|socket| socket.local_addr().ok())
                .map(|a| a.port());
            config.cluster.public_url.is_none() && tls.is_some() && quic_port == Some(local_addr.port())
        });
        let quic = match (udp, &tls) {
            (Some(socket), Some(tls)) => Some(quic::endpoint(socket, &config.quic, &settings, tls)?),
            _ => None,
        };
        let auth = Arc::new(Authenticator::new(&config.auth).map_err(ConfigError::Invalid)?);
        let jwks = jwks::Source::from_config(&config.auth).map_err(ConfigError::Invalid)?;
        if let (Some(source), Some(keys)) = (&jwks, auth.key_set()) {
            let url = source.url();
            let count = (source.load(keys).await).map_err(|why| ServerError::Jwks { url: url.into(), why })?;
            tracing::info!(url, keys = count, "signing keys fetched");
        }
        for warning in weak_secrets(&config, &auth).into_iter().chain(unkept_rooms(&config)) {
            tracing::warn!("{warning}");
        }
        let session = SessionContext {
            rooms: pool.clone(),
            auth,
            settings: Arc::new(settings),
            clustered: cluster.is_some(),
            room_ids: Arc::new(crate::session::auth::random_hex::<8>),
            searches: Arc::new(config.search_rate()),
            refreshes: Arc::new(crate::session::limits::refresh_rate()),
        };
        let settings = ConnectionSettings {
            outbox: config.outbox_limits(),
            slow_consumer: Duration::from_secs_f64(config.session.slow_consumer_secs),
            max_blocked_write_bytes: config.session.max_blocked_write_bytes,
            duplicate_sessions: config.auth.duplicate_sessions,
            naive_fanout: config.naive_fanout,
        };
        let registry = Registry::new(config.connections.max_connections, config.connections.max_per_ip);
        let gate = Gate::new(config.connections.clone());
        let mut ctx = Context::new(session, settings, registry, gate, metrics);
        if let Some(ClusterParts { cluster, .. }) = &cluster {
            ctx.set_first_session_id(cluster.first_session_id());
            ctx.session.auth.number_anonymous_from(cluster.first_session_id());
            ctx.cluster = Some(cluster.clone());
        }
        let ctx = Arc::new(ctx);
        let http = Arc::new(Http {
            ctx: ctx.clone(),
            origins: config.origins,
            read_chunk: config.websocket.read_buffer_bytes,
            routes: Routes::Main {
                metrics: metrics_listener.is_none(),
                demo: config.demo,
            },
            metrics_token: config.metrics.token.as_deref().map(Arc::from),
            api_token: config.api.token.as_deref().map(Arc::from),
        });
        Ok(Self {
            listener,
            metrics_listener,
            local_addr,
            ctx,
            http,
            pool,
            tls,
            tls_reload: Duration::from_secs(config.tls.reload_secs),
            jwks,
            quic,
            cluster,
            configured_rooms: config.rooms.clone(),
            drain: Duration::ZERO,
            io,
        })
    }

    /// Once asked to stop, keeps serving for `drain` with `/readyz` answering 503
    /// (load balancers take the node out of rotation), then stops as usual.
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound `[metrics] listen` address, when `/metrics` has a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    /// The bound QUIC address, when QUIC is served.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref()?.local_addr().ok()
    }

    /// The generated development certificate (PEM), if one was generated.
    pub fn dev_certificate(&self) -> Option<&str> {
        self.tls.as_ref()?.dev_certificate.as_deref()
    }

    /// What reads the configured certificate files again (the binary: on SIGHUP),
    /// besides every `[tls] reload_secs`; none with the development certificate or
    /// without TLS.
    pub fn tls_reloader(&self) -> Option<tls::TlsReloader> {
        self.tls.as_ref()?.reloader()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.ctx.metrics.clone()
    }

    /// The simulation pool.
    pub fn pool(&self) -> Arc<SimPool> {
        self.pool.clone()
    }

    /// Serves until `shutdown` is cancelled, then closes every session with 1001 and
    /// waits up to `grace` for them to finish.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            "listening on {scheme}://{}/ws",
            self.local_addr
        );
        if matches!(self.http.routes, Routes::Main { demo: true, .. }) {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            tracing::info!("browser demo at {scheme}://{}/demo/", self.local_addr);
        }
        if self.http.api_token.is_some() {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            tracing::info!("HTTP API for game backends on at {scheme}://{}/rooms/", self.local_addr);
        }
        let acceptor = self.tls.as_ref().map(|t| TlsAcceptor::from(t.config.clone()));
        let ctx = self.ctx;
        ctx.tracker.spawn(reap_parked_sessions(ctx.clone()));
        if let (Some(source), Some(keys)) = (self.jwks, ctx.session.auth.key_set()) {
            (ctx.tracker).spawn(jwks::keep_fresh(source, keys.clone(), ctx.shutdown.clone()));
        }
        if let Some(reloader) = self.tls.as_ref().and_then(tls::Tls::reloader)
            && !self.tls_reload.is_zero()
        {
            ctx.tracker
                .spawn(reload_tls(reloader, self.tls_reload, ctx.shutdown.clone()));
        }
        let cluster = self.cluster.as_ref().map(|parts| parts.cluster.clone());
        ctx.tracker.spawn(keep_configured_rooms(
            self.configured_rooms,
            self.pool.clone(),
            cluster,
            ctx.shutdown.clone(),
        ));
        if let Some(ClusterParts {
            cluster,
            inbox,
            checkpoints,
        }) = self.cluster
        {
            let node = cluster.node();
            tracing::info!(node = %node.id, url = %node.url, "cluster mode: sharing the room directory");
            ctx.tracker.spawn(cluster.clone().keep_leases(ctx.shutdown.clone()));
            ctx.tracker
                .spawn(cluster.clone().keep_session_records(ctx.shutdown.clone()));
            ctx.tracker.spawn(cluster.clone().sweep_indexes(ctx.shutdown.clone()));
            let replace = Arc::clone(&ctx);
            let on_user_live =
                move |live: crate::proto::UserLive| replace.registry.replace(&live.user_id, live.family, live.since_us);
            ctx.tracker
                .spawn(cluster.clone().serve_inbox(inbox, on_user_live, ctx.shutdown.clone()));
            ctx.tracker
                .spawn(cluster.write_checkpoints(checkpoints, ctx.shutdown.clone()));
        }
        if let Some(endpoint) = self.quic.clone() {
            if let Ok(addr) = endpoint.local_addr() {
                tracing::info!("listening on quic://{addr} (ALPN tickrelay/1)");
            }
            ctx.tracker.spawn(quic::accept(endpoint, ctx.clone()));
        }
        if let Some(listener) = self.metrics_listener {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("serving /metrics on http://{addr}/metrics");
            }
            let http = Arc::new(Http {
                routes: Routes::Metrics,
                ..(*self.http).clone()
            });
            ctx.tracker.spawn(http::serve_metrics(listener, http));
        }
        // A descriptor kept in reserve: out of descriptors, it is given up to accept the
        // waiting connection and close it at once (the client learns at once instead
        // of waiting in the backlog, and accept does not spin), then taken back.
        let mut reserve = std::fs::File::open("/dev/null").ok();
        let mut drained_at: Option<tokio::time::Instant> = None;
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled(), if drained_at.is_none() => {
                    if self.drain.is_zero() {
                        break;
                    }
                    ctx.draining.store(true, std::sync::atomic::Ordering::Release);
                    tracing::info!(drain_secs = self.drain.as_secs_f64(), "draining: /readyz answers 503, then the relay stops");
                    drained_at = Some(tokio::time::Instant::now() + self.drain);
                    continue;
                }
                () = tokio::time::sleep_until(drained_at.unwrap_or_else(tokio::time::Instant::now)), if drained_at.is_some() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if matches!(e.raw_os_error(), Some(code) if OUT_OF_DESCRIPTORS.contains(&code)) => {
                        drop(reserve.take());
                        if let Some(Ok(_refused)) = self.listener.accept().now_or_never() {
                            ctx.metrics.sockets_refused.inc();
                        }
                        reserve = std::fs::File::open("/dev/null").ok();
                        if let Some(suppressed) = ACCEPT_LOGS.take(std::time::Instant::now()) {
                            tracing::warn!(suppressed, "out of file descriptors: refusing connections ({e})");
                        }
                        if reserve.is_none() {
                            // Not even the reserve came back: wait for descriptors to free.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        continue;
                    }
                    Err(e) => {
                        // Usually a connection reset before it was accepted; pause
                        // briefly in case it is something lasting (out of memory).
                        tracing::debug!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let (socket, shed) = match ctx.gate.admit_socket(peer.ip(), std::time::Instant::now()) {
                Ok(admitted) => admitted,
                Err(why) => {
                    ctx.metrics.sockets_refused.inc();
                    crate::transport::log_refusal(peer, "tcp", &format_args!("closed at accept: {why}"));
                    continue;
                }
            };
            if shed {
                ctx.metrics.handshakes_shed.inc();
            }
            // The connection moves to an I/O thread, for its whole life.
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            let (acceptor, http) = (acceptor.clone(), self.http.clone());
            self.io.spawn(ctx.tracker.track_future(async move {
                if let Ok(stream) = TcpStream::from_std(stream) {
                    http::serve_connection(stream, peer, acceptor, http, socket).await;
                }
            }));
        }
        drop(self.listener);
        // Before the sessions go: their rooms' state and seats move with them.
        if let Some(cluster) = &ctx.cluster {
            cluster.hand_off().await;
        }
        tracing::info!("shutting down: closing every session");
        ctx.shut_down();
        ctx.tracker.close();
        let deadline = tokio::time::Instant::now() + grace;
        if tokio::time::timeout_at(deadline, ctx.tracker.wait()).await.is_err() {
            tracing::warn!("shutdown deadline reached with connections still open");
        }
        if let Some(endpoint) = &self.quic {
            quic::close_endpoint(endpoint, deadline).await;
        }
        // Sessions parked for resume end now (their members leave their rooms).
        for mut session in ctx.registry.expire_all() {
            ctx.end_session(&mut session);
        }
    }
}

/// Connects to the cluster's directory as the node `[cluster]` describes (by default
/// its id is its public URL, and that is `wss://<listen address>/ws`).
async fn join_cluster(
    config: &Config,
    redis: &RedisAddress,
    local_addr: SocketAddr,
    pool: &Arc<SimPool>,
    closing: Arc<Closing>,
    metrics: &Arc<Metrics>,
) -> Result<(Cluster, mpsc::UnboundedReceiver<BusMessage>), ServerError> {
    let c = &config.cluster;
    let scheme = if config.tls.insecure_plain { "ws" } else { "wss" };
    let url = (c.public_url.clone()).unwrap_or_else(|| format!("{scheme}://{local_addr}/ws"));
    let node = Node {
        id: c.node_id.clone().unwrap_or_else(|| url.clone()),
        url,
    };
    let lease = Duration::from_millis(c.lease_ms);
    let (bus, inbox) = Bus::connect(redis, &c.key_prefix, &node.id).await?;
    let directory = (RedisDirectory::connect(redis, node, lease, &c.key_prefix).await?)
        .with_checkpoint_ttl(Duration::from_secs(c.checkpoint_ttl_secs));
    let resume_grace = Duration::from_secs_f64(config.session.resume_grace_secs);
    let settings = NodeSettings {
        lease,
        max_checkpoint_bytes: c.max_checkpoint_bytes,
        checkpoint_ttl: Duration::from_secs(c.checkpoint_ttl_secs),
        // Held as the node's sessions are (see `Cluster::session_ttl`).
        number: directory.register_node(lease + resume_grace).await?,
        resume_grace,
        placement: c.placement,
    };
    let cluster = Cluster::new(directory, bus, pool.clone(), closing, metrics.clone(), settings);
    Ok((cluster, inbox))
}

/// How often [`keep_configured_rooms`] looks for a configured room that is not open.
const CONFIGURED_ROOMS_CHECK: Duration = Duration::from_secs(1);

/// `accept` errors that mean the process (EMFILE, 24) or the system (ENFILE, 23) is
/// out of file descriptors.
const OUT_OF_DESCRIPTORS: [i32; 2] = [24, 23];

/// Out-of-descriptor warnings: at most one a second (`suppressed` counts the rest).
static ACCEPT_LOGS: LogBudget = LogBudget::new("accept_errors", 1);

/// The setting that gives the TCP address, for [`ServerError::Bind`].
const LISTEN_OPTION: &str = "`listen` / --listen";
/// The setting that gives the metrics' own address.
const METRICS_OPTION: &str = "`[metrics] listen` / --metrics-listen";
/// The setting that gives the QUIC address.
const QUIC_OPTION: &str = "`[quic] listen` / --quic-listen, or `[quic] enabled = false`";

/// For `--check`: the addresses a start could not bind now (in use, or a port below
/// 1024 without the right to it), each bound and released at once. Warnings, not
/// refusals: the relay being checked, running, may be what holds them.
fn unbindable(config: &Config) -> Vec<String> {
    let mut tried = vec![(
        "TCP",
        config.listen,
        LISTEN_OPTION,
        std::net::TcpListener::bind(config.listen).err(),
    )];
    if let Some(addr) = config.metrics.listen {
        let failed = std::net::TcpListener::bind(addr).err();
        tried.push(("TCP (metrics)", addr, METRICS_OPTION, failed));
    }
    if config.quic.enabled && !config.tls.insecure_plain {
        let addr = config.quic.listen.unwrap_or(config.listen);
        tried.push(("UDP (QUIC)", addr, QUIC_OPTION, std::net::UdpSocket::bind(addr).err()));
    }
    (tried.into_iter())
        .filter_map(|(protocol, addr, option, failed)| {
            let source = failed?;
            let error = ServerError::Bind {
                protocol,
                addr,
                option,
                source,
            };
            Some(format!(
                "{error}; a start fails unless it is freed first (a relay running there holds it)"
            ))
        })
        .collect()
}

/// Binds the UDP socket for QUIC on `quic.listen`, by default the TCP listener's
/// address and port. With an ephemeral TCP port (`listen` port 0) whose number is
/// taken on UDP, any free UDP port is used instead.
fn bind_udp(config: &Config, tcp: SocketAddr) -> Result<std::net::UdpSocket, ServerError> {
    let addr = config.quic.listen.unwrap_or(tcp);
    let buffer = config.quic.socket_buffer_bytes;
    let bound = match quic::udp_socket(addr, buffer) {
        Err(_) if config.quic.listen.is_none() && config.listen.port() == 0 => {
            quic::udp_socket(SocketAddr::new(tcp.ip(), 0), buffer)
        }
        result => result,
    };
    bound.map_err(|source| ServerError::Bind {
        protocol: "UDP (QUIC)",
        addr,
        option: QUIC_OPTION,
        source,
    })
}

/// Opens again, every second, a configured room that is not open: its simulation
/// closed it (it opens empty), or in cluster mode its node died or stopped and no
/// other node took it first (it opens here from its checkpoint).
async fn keep_configured_rooms(
    rooms: Vec<PrecreatedRoom>,
    pool: Arc<SimPool>,
    cluster: Option<Arc<Cluster>>,
    shutdown: CancellationToken,
) {
    if rooms.is_empty() {
        return;
    }
    let mut every = tokio::time::interval(CONFIGURED_ROOMS_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is now: they were opened at start-up
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        for room in &rooms {
            let reopened = match &cluster {
                Some(cluster) => {
                    cluster
                        .reopen_configured(&room.id, &room.room_type, &room.metadata)
                        .await
                }
                None if pool.room(&room.id).is_none() => pool
                    .create_persistent(&room.id, &room.room_type, &room.metadata)
                    .map(drop),
                None => Ok(()),
            };
            // Tried again at the next check (the room cap is full, Redis is away).
            if let Err(e) = reopened {
                tracing::debug!(room = %room.id, error = %e, "configured room not opened again yet");
            }
        }
    }
}

/// Reads the certificate files again every `every` until shutdown.
async fn reload_tls(reloader: tls::TlsReloader, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await; // the first is at once: the files were just read
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => reloader.reload_in_background().await,
        }
    }
}

/// Ends parked sessions whose resume grace is over, every 100 ms.
async fn reap_parked_sessions(ctx: Arc<Context>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = every.tick() => {
                let expired = ctx.registry.expire(std::time::Instant::now());
                if !expired.is_empty() {
                    tracing::debug!(count = expired.len(), "resume grace over; ending sessions");
                }
                for mut session in expired {
                    ctx.end_session(&mut session);
                }
                ctx.metrics.sessions_parked.set(ctx.registry.parked() as i64);
            }
        }
    }
}
