//! `tickrelay-client`: an async client for the tickrelay game state relay.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tickrelay_client::{Client, ClientConfig, Event, Trust};
//!
//! let config = ClientConfig::new("wss://127.0.0.1:7443/ws", Trust::CertFile("tickrelay-dev-cert.pem".into()));
//! let (client, mut events) = Client::connect(config)?;
//! client.join("demo", "arena");
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::State { room, tick, .. } => {
//!             let entities = client.with_mirror(&room, |m| m.world().len());
//!             println!("{room} at tick {tick}: {entities:?} entities");
//!         }
//!         Event::GaveUp { .. } => break,
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! What the client does for you:
//! - **Connection**: `wss://` or `quic://` (the same API; over QUIC state frames
//!   arrive as datagrams and are acknowledged), with a token, trusting the relay's
//!   certificate by file, PEM or fingerprint (never any certificate silently). Plain
//!   `ws://` only when the URL says so (a relay behind a TLS-terminating proxy, or a
//!   local benchmark), with a warning in the log; a `wss://` client never falls back
//!   to it.
//! - **Rooms and inputs**: inputs get sequence numbers per room; each room's state is
//!   mirrored ([`StateMirror`]) and verified against the server's checksums; on a
//!   mismatch the client asks for a full snapshot by itself. The mirror's world and
//!   its values are the types of [`state`] (`state::World`, `state::Entity`,
//!   `state::Value`), the messages those of [`proto`]: no other crate is needed.
//! - **Reconnection**: exponential backoff with full jitter (1 s, 2 s, 4 s … 30 s),
//!   giving up after a configurable number of attempts ([`Event::GaveUp`]), each
//!   [`Event::Reconnecting`] saying why the last attempt failed; permanent failures (a
//!   certificate other than the trusted one, HTTP 400/401/403/404 at the upgrade, close
//!   codes that mean "do not reconnect") give up at once; the session is resumed with its resume
//!   token, inputs not yet acknowledged are replayed (the server applies each once),
//!   other messages sent while disconnected are buffered (bounded) and sent in order,
//!   and full snapshots are awaited instead of assuming deltas suffice.
//! - **Liveness**: application pings measure the round-trip time and a watchdog
//!   reconnects when the server goes quiet.
//! - **Clusters**: a join the relay redirects to the node that owns the room
//!   ([`Event::Redirected`]) is joined there, over a second connection opened for
//!   that node (and shared by every room living there); inputs and events for the
//!   room follow it. When that node cannot be reached again, its rooms are joined
//!   again through the configured URL, which redirects them to their new owner
//!   (redirects back to the lost node, while the directory still names it, are waited
//!   out; at most four redirects are followed for a room before it is joined, across
//!   such trips home). A node that stops names a live node (`GoingAway`): a session on
//!   it continues there, then on the configured URLs if that fails.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backoff;
mod driver;
mod link;
mod numbering;
mod routes;
mod trust;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

pub use backoff::Backoff;
/// The `bytes` crate the protocol types use (`Bytes` in payloads), for a game that has no
/// dependency of its own on it.
pub use bytes;
pub use link::quic_endpoint;
pub use tickrelay_proto::mirror::{Desync, StateMirror};
pub use tickrelay_proto::state;
pub use tickrelay_proto::v1 as proto;
pub use trust::{Trust, TrustError};

/// Where [`ClientConfig::token_source`] gets a fresh token from.
///
/// ```
/// # use tickrelay_client::TokenSource;
/// let source = TokenSource::new(|| async {
///     // Ask the game's backend here.
///     Ok::<_, std::io::Error>("eyJhbGciOi…".to_string())
/// });
/// ```
#[derive(Clone)]
pub struct TokenSource(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

type TokenFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>;

impl TokenSource {
    /// A source that runs `fetch` for each token.
    pub fn new<F, E>(fetch: impl Fn() -> F + Send + Sync + 'static) -> Self
    where
        F: std::future::Future<Output = Result<String, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self(Arc::new(move || {
            let token = fetch();
            Box::pin(async move { token.await.map_err(|e| e.to_string()) })
        }))
    }

    pub(crate) fn fetch(&self) -> TokenFuture {
        (self.0)()
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The relay's URL: `wss://host:port/ws` (WebSocket), `quic://host:port` (QUIC,
    /// state frames as datagrams), or `ws://host:port/ws` (WebSocket without TLS:
    /// only behind a TLS-terminating proxy or on a trusted network).
    pub url: String,
    /// Other nodes of the same cluster: when `url` cannot be reached, each
    /// reconnection attempt tries the next of `url` and these in turn. A session
    /// resumed on another node continues there (the relay keeps its session id, and
    /// its seats in rooms restored from their checkpoints; the client joins its rooms
    /// again). Same scheme as `url`.
    pub fallback_urls: Vec<String>,
    /// Which certificate to trust (not read for a `ws://` URL, which has none).
    pub trust: Trust,
    /// A JWT, sent as `Authorization: Bearer` (none in anonymous mode).
    pub token: Option<String>,
    /// Asked for a token before every connection attempt (the first and each
    /// reconnect, after a 4500 "token expired" close too); what it gives replaces
    /// `token`. For short-lived tokens fetched from the game's backend. An error
    /// counts as a failed attempt (the backoff, then [`Event::GaveUp`]), and the next
    /// attempt goes to the same URL (no node was asked).
    pub token_source: Option<TokenSource>,
    /// A session to take over at the first connection: the [`Client::resume_token`]
    /// of an earlier process of this game (one that crashed, or was restarted),
    /// within the relay's resume grace period (20 s by default) and, under JWT, with
    /// a token for the same user. The session's rooms come back as
    /// [`Event::Joined`] (`request_id` 0, or the earlier process's own for a join
    /// still being answered) and their full snapshots, with the seats,
    /// member ids and entities the earlier process had; its input numbering goes on
    /// above the last input the room applied. Messages the earlier process may have
    /// received and not handled are not sent again. A token the relay no longer
    /// knows is answered 4504, and the client starts a new session at once
    /// ([`Event::Connected`] with `resumed` false).
    pub resume_token: Option<String>,
    /// What this player tells the game of every room it joins (a display name, a
    /// chosen character), sent with each join and quick join: at most
    /// [`proto::MAX_MEMBER_DATA_BYTES`] (1 KiB; beyond, joins are refused with
    /// `LIMIT_EXCEEDED`). A room's simulation reads it as `ctx.members.data(member)`;
    /// other members are not sent it. Empty (the default): nothing.
    pub member_data: Bytes,
    /// Reconnection policy.
    pub backoff: Backoff,
    /// Events and requests kept while disconnected (inputs are kept for their replay
    /// instead, within `unacked_input_limit`). One handed over beyond it is refused as
    /// beyond `send_queue_limit`: an [`Event::Error`] with `RATE_LIMITED`, a request's
    /// caller gets the error. Leaves, quick joins and token refreshes are always kept.
    pub buffer_limit: usize,
    /// Inputs kept until the server acknowledges them, per room.
    pub unacked_input_limit: usize,
    /// Messages waiting to be sent while connected (the server's announced message
    /// and byte rates pace them). An input, event or request handed to a full queue
    /// is refused: an [`Event::Error`] with `RATE_LIMITED` (the input is not kept for
    /// a replay; a request's caller gets the error), so an application that sends
    /// faster than the server takes learns it instead of queueing without bound.
    pub send_queue_limit: usize,
    /// Send an application ping this often (round-trip time, liveness).
    pub ping_interval: Duration,
    /// Reconnect when nothing arrived from the server for this long.
    pub quiet_timeout: Duration,
    /// When state frames stop arriving on a connection that was receiving them (for a
    /// second), the client pings at once, and reconnects when nothing at all arrives
    /// within this: a relay killed without closing its connections (QUIC has no
    /// close from the kernel) or a machine gone is noticed in about a second plus
    /// this, not `quiet_timeout`. A room that goes idle costs one ping.
    pub stall_timeout: Duration,
    /// Give up on one connection attempt after this long (a QUIC handshake to a
    /// closed port gets no answer at all).
    pub connect_timeout: Duration,
    /// How long one write may wait for the relay to take it: a relay that stops
    /// reading (its socket's buffer full) is a lost connection, not a client stuck in
    /// a write with nothing else looked at (timers, commands, `close`). What the write
    /// carried is sent again on the next connection as for any lost one.
    pub write_timeout: Duration,
    /// How long [`Client::request`] waits for its response.
    pub request_timeout: Duration,
    /// Capacity of the event channel; state events are dropped (and counted) when it
    /// is full, other events wait.
    pub event_capacity: usize,
    /// Keep each room's entities and verify the server's checksums (the default).
    /// False: follow ticks and input acknowledgements only
    /// ([`StateMirror::headers_only`]); for load generators.
    pub mirror_contents: bool,
    /// Most entities a room's mirror holds: a frame that would give it more is not
    /// applied (an [`Event::Desync`] with [`Desync::TooManyEntities`],
    /// then a resync at most once a second), so a broken or hostile relay cannot make
    /// the client hold gigabytes (a few bytes on the wire are an entity of some
    /// hundred bytes here). Raise it for rooms larger than the default 65,536.
    pub max_entities_per_room: usize,
    /// The QUIC endpoint (one UDP socket and the task that drives it) that
    /// `quic://` connections are opened from, shared with other clients of this
    /// process ([`quic_endpoint`] makes one). None (the default): each connection
    /// binds its own. A process holding many connections, such as a bot fleet, saves
    /// a socket, a task and most receive system calls per connection by sharing a
    /// few: the endpoint reads datagrams for all its connections in batches.
    pub quic_endpoint: Option<quinn::Endpoint>,
}

impl ClientConfig {
    /// Defaults for `url` and `trust`.
    pub fn new(url: impl Into<String>, trust: Trust) -> Self {
        Self {
            url: url.into(),
            fallback_urls: Vec::new(),
            trust,
            token: None,
            token_source: None,
            resume_token: None,
            member_data: Bytes::new(),
            backoff: Backoff::default(),
            buffer_limit: 1024,
            unacked_input_limit: 1024,
            send_queue_limit: 1024,
            ping_interval: Duration::from_secs(2),
            quiet_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            event_capacity: 4096,
            mirror_contents: true,
            max_entities_per_room: 65_536,
            quic_endpoint: None,
        }
    }
}

/// What happens to a client, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Connected (again). `resumed`: the server kept the session; rooms continue.
    Connected {
        /// Session id (the member id in every room).
        session_id: u64,
        /// The user id the server assigned or read from the token.
        user_id: String,
        /// Whether the earlier session was resumed.
        resumed: bool,
    },
    /// A room was joined.
    Joined(proto::Joined),
    /// Cluster mode: the room lives on another node; the client joins it there by
    /// itself ([`Event::Joined`] follows, or an error).
    Redirected {
        /// The room.
        room: String,
        /// The node's URL.
        url: String,
    },
    /// A room was left (on request, or the server closed it).
    Left(proto::Left),
    /// A state frame was applied to the room's mirror.
    State {
        /// The room.
        room: String,
        /// The frame's tick.
        tick: u64,
        /// Whether it was a full snapshot.
        full: bool,
        /// The server's time of the tick, µs since the Unix epoch.
        server_time_us: u64,
        /// When the frame arrived, µs since the Unix epoch.
        received_us: u64,
    },
    /// A room event.
    RoomEvent(proto::RoomEvent),
    /// A member joined or left a room, went away (its connection lost for a second,
    /// its seat held) or came back, or became the room's owner (`OWNER`; the owner at
    /// joining is `Joined.owner`).
    Presence(proto::Presence),
    /// A room's metadata or lock changed (its owner's `UpdateRoom`, or its game), at
    /// most four times a second ([`Client::room_listing`] follows it).
    RoomUpdated(proto::RoomUpdated),
    /// The server refused something.
    Error(proto::Error),
    /// After a resume, the server no longer had `count` messages (events, presence,
    /// responses) that were sent to the dropped connection and did not arrive: it
    /// keeps the last few hundred for a resume. Each room then sends its
    /// [`Event::Joined`] again (`request_id` 0): who is in it, who owns it and its
    /// metadata and lock now ([`Client::room_owner`] and [`Client::room_listing`]
    /// follow it). Lost events and responses stay lost.
    MessagesLost {
        /// How many numbered messages are missing.
        count: u64,
    },
    /// A room's mirror disagreed with the server; a full snapshot was requested.
    Desync {
        /// The room.
        room: String,
        /// What went wrong.
        error: Desync,
    },
    /// A connection ended: the client's own, or (`redirected`) one it opened to
    /// another node of a cluster for rooms living there. (Match it with `..`: fields
    /// may be added.)
    #[non_exhaustive]
    Disconnected {
        /// Close code (1006 when the connection was lost without one).
        code: u16,
        /// Close reason.
        reason: String,
        /// Whether this connection is tried again. False for the client's own
        /// connection means [`Event::GaveUp`] follows; for a `redirected` one, that
        /// its rooms are joined again through the client's own connection (a node
        /// that stops or cannot be reached gives its rooms back), and the client
        /// carries on.
        will_reconnect: bool,
        /// The URL of the connection that ended.
        url: String,
        /// Whether it was a connection to another node, opened for rooms a join was
        /// redirected to.
        redirected: bool,
    },
    /// Waiting before reconnection attempt `attempt`.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// The delay before it.
        delay: Duration,
        /// Why the last connection or attempt failed.
        reason: String,
    },
    /// The client stopped trying; it is finished. The last event: the stream itself
    /// stays open while the [`Client`] lives (drop it, or stop reading here).
    GaveUp {
        /// Failed connections in a row, the first included (so
        /// `Backoff::max_attempts + 1` when the retries ran out, 1 for a permanent
        /// failure at the first attempt); 0 after a do-not-reconnect close code.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
}

/// Counters of one client.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages received (WebSocket messages, QUIC stream frames and datagrams).
    pub messages_in: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// State frames applied.
    pub frames: AtomicU64,
    /// State frames skipped over QUIC: late, duplicated, or not usable by the mirror
    /// yet (normal under loss and reordering; not a desync).
    pub frames_skipped: AtomicU64,
    /// Successful reconnections.
    pub reconnects: AtomicU64,
    /// Of which resumed the session.
    pub resumes: AtomicU64,
    /// Mirror desyncs detected.
    pub desyncs: AtomicU64,
    /// Checksums verified, over every connection and mirror of the client (a room's
    /// `StateMirror::checksums_verified` counts since its mirror began: its last
    /// `Joined`).
    pub checksums: AtomicU64,
    /// Entity updates in the applied state frames: entities added, changed or
    /// removed, summed over frames (a full snapshot adds every entity).
    pub entity_updates: AtomicU64,
    /// Messages the server sent again after a resume that had already arrived
    /// (skipped).
    pub messages_repeated: AtomicU64,
    /// Messages lost across a resume (see [`Event::MessagesLost`]).
    pub messages_lost: AtomicU64,
    /// State events dropped because the event channel was full.
    pub events_dropped: AtomicU64,
    /// Last round-trip time in microseconds (0: none yet).
    pub rtt_us: AtomicU64,
    /// Messages waiting to be sent, paced to the server's announced limits, on every
    /// connection of the client (see [`Client::queued_messages`]).
    pub queued: AtomicU64,
}

/// Failures the caller sees directly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not a `wss://`, `ws://` or `quic://` URL.
    #[error("invalid URL `{0}`: expected wss://host:port/path, quic://host:port or ws://host:port/path")]
    Url(String),
    /// The trust settings are unusable.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The request got no answer in time.
    #[error("request timed out")]
    Timeout,
    /// The server answered with an error.
    #[error("server error {}: {}", .0.code, .0.message)]
    Server(proto::Error),
    /// The client has stopped.
    #[error("client closed")]
    Closed,
}

pub(crate) enum Command {
    Join {
        room: String,
        room_type: String,
        /// What a room moving between the client's connections takes along (none for
        /// the application's joins).
        carried: Carried,
    },
    QuickJoin(QuickAsk),
    Leave {
        room: String,
    },
    Input {
        room: String,
        /// Given by [`Client::send_input`].
        seq: u64,
        payload: proto::input::Payload,
    },
    Event(proto::SendEvent),
    Request {
        kind: proto::request::Kind,
        reply: oneshot::Sender<Result<proto::Response, proto::Error>>,
    },
    SetToken(String),
    DropConnection,
    /// Dropped once the close is done.
    Close(oneshot::Sender<()>),
}

/// A quick join the application asked for, with the rooms that refused it `ROOM_FULL`
/// so far (filled, locked or changed between the relay's pick and the join): each try
/// leaves them out, the last (after [`QUICK_JOIN_FULL_TRIES`] refusals) asks for a room
/// of the node asked only (`QuickJoin.local_only`), and a refusal of that is the answer.
#[derive(Clone, Default)]
pub(crate) struct QuickAsk {
    pub message: proto::QuickJoin,
    pub full_rooms: Vec<String>,
}

/// How many times a quick join answered `ROOM_FULL` is sent again by the client, each
/// time leaving out the rooms that refused it, before the refusal goes to the
/// application.
pub(crate) const QUICK_JOIN_FULL_TRIES: usize = 3;

/// What a room takes along when it moves between the client's connections: its input
/// numbering (a seat kept for the session continues it) and the inputs not
/// acknowledged yet.
#[derive(Default)]
pub(crate) struct Carried {
    pub next_seq: u64,
    pub unacked: std::collections::VecDeque<(u64, proto::input::Payload)>,
    /// The highest input number that may have been sent (see the driver's room state).
    pub sent_upto: u64,
    /// Events that waited for the join.
    pub events: std::collections::VecDeque<proto::SendEvent>,
    /// A redirect's seat ticket, for the join on the room's node.
    pub seat: String,
    /// The room's options, for a join that creates it.
    pub create: Option<proto::RoomOptions>,
    /// The quick join that picked the room on another node: asked again (over home)
    /// if the room's node refuses the join `ROOM_FULL`.
    pub quick: Option<QuickAsk>,
}

pub(crate) struct Shared {
    pub mirrors: Mutex<HashMap<String, StateMirror>>,
    /// The mirrors of the last rooms the server closed or removed the client from, as
    /// they were then, the newest last ([`Client::with_mirror`] reads them until the
    /// room is joined again).
    pub ended: Mutex<VecDeque<(String, StateMirror)>>,
    /// The mirrors rooms had before a reconnect, until the full snapshot after it
    /// comes ([`Client::with_mirror`] reads them meanwhile).
    pub previous: Mutex<HashMap<String, StateMirror>>,
    /// What the relay last told of each room the client is in.
    pub told: Mutex<HashMap<String, RoomTold>>,
    pub stats: Stats,
    /// Presented on every connection, so the relay counts this client's sessions on
    /// several nodes as one client's (see `Hello.client_id`).
    pub client_id: String,
    /// Each room's input numbering: [`Client::send_input`] numbers there, so it can
    /// return the number. One count per room, wherever the room lives (home or
    /// another node), never started again: a seat that outlived a leave (restored
    /// from a checkpoint, say) drops numbers it applied already.
    pub input_seqs: Mutex<HashMap<String, InputNumbers>>,
    /// Set by [`Client::close`]: no connection attempt or event waits any more.
    pub closing: tokio_util::sync::CancellationToken,
    /// The resume token of the home connection's session (see
    /// [`Client::resume_token`]).
    pub resume_token: Mutex<Option<String>>,
}

/// Rooms whose input numbering is kept after they are left, at most (beyond it,
/// numbering in a room left long ago starts again).
const MAX_ROOMS_NUMBERED: usize = 1024;

/// How many ended rooms' mirrors a client keeps readable ([`Client::with_mirror`]).
pub const ENDED_MIRRORS_KEPT: usize = 4;

/// A room's input numbering (see [`Shared::input_seqs`]).
#[derive(Debug, Default)]
pub(crate) struct InputNumbers {
    /// The last number given (or the last a join's answer says the seat applied).
    pub last: u64,
    /// Joined (or joining), not left nor refused: inputs may be sent.
    pub open: bool,
}

/// What the relay last told of a room (see [`Shared::told`]): its `Joined` says it
/// all, then presence `OWNER` and `RoomUpdated` what changes.
#[derive(Debug, Default)]
pub(crate) struct RoomTold {
    pub owner: u64,
    pub listing: proto::RoomUpdated,
}

impl Shared {
    /// Forgets what the client held of `room` (its mirror, its owner and listing): it left, or
    /// the room lives elsewhere now.
    pub(crate) fn forget_room(&self, room: &str) {
        self.mirrors.lock().remove(room);
        self.previous.lock().remove(room);
        self.told.lock().remove(room);
    }

    /// [`Shared::forget_room`] for a room the server closed or removed the client
    /// from: its mirror stays readable, as the room's last state, among the last
    /// [`ENDED_MIRRORS_KEPT`].
    pub(crate) fn room_ended(&self, room: &str) {
        let live = self.mirrors.lock().remove(room).filter(StateMirror::is_synced);
        let mirror = live.or_else(|| self.previous.lock().remove(room));
        self.told.lock().remove(room);
        let mut ended = self.ended.lock();
        ended.retain(|(r, _)| r != room);
        if let Some(mirror) = mirror {
            if ended.len() == ENDED_MIRRORS_KEPT {
                ended.pop_front();
            }
            ended.push_back((room.to_string(), mirror));
        }
    }

    /// Numbers in `room` continue above `seq` (a join's answer: the seat applied that
    /// much already).
    pub(crate) fn inputs_above(&self, room: &str, seq: u64) {
        let mut seqs = self.input_seqs.lock();
        let numbers = seqs.entry(room.to_string()).or_default();
        numbers.last = numbers.last.max(seq);
    }

    /// Inputs to `room` are sent (`open`) or not, from now on. Past
    /// [`MAX_ROOMS_NUMBERED`] rooms, those closed are forgotten (a client hopping
    /// through many match rooms keeps no number per room for ever).
    pub(crate) fn inputs_open(&self, room: &str, open: bool) {
        let mut seqs = self.input_seqs.lock();
        seqs.entry(room.to_string()).or_default().open = open;
        if seqs.len() > MAX_ROOMS_NUMBERED {
            seqs.retain(|_, numbers| numbers.open);
        }
    }
}

/// A handle to a client; cheap to clone. The connection lives in a background task
/// that ends when [`Client::close`] is called or the client gives up (in a cluster,
/// one task per node the client's rooms live on).
#[derive(Clone)]
pub struct Client {
    routes: Arc<routes::Routes>,
    shared: Arc<Shared>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Starts connecting in the background and returns the handle and the event
    /// stream. Must be called inside a tokio runtime.
    pub fn connect(config: ClientConfig) -> Result<(Client, mpsc::Receiver<Event>), ClientError> {
        let target = link::Target::parse(&config.url)?;
        for url in &config.fallback_urls {
            let fallback = link::Target::parse(url)?;
            if fallback.scheme.uses_tls() != target.scheme.uses_tls() {
                return Err(ClientError::Url(format!(
                    "{url}: a fallback URL must use TLS exactly when {} does",
                    config.url
                )));
            }
        }
        let tls = if target.scheme.uses_tls() {
            Some(Arc::new(trust::Tls::new(&config.trust)?))
        } else {
            tracing::warn!(url = %config.url, "connecting without TLS (ws://): only behind a TLS-terminating proxy or on a trusted network");
            None
        };
        let (event_tx, events) = mpsc::channel(config.event_capacity);
        let shared = Arc::new(Shared {
            mirrors: Mutex::new(HashMap::new()),
            ended: Mutex::new(VecDeque::new()),
            previous: Mutex::new(HashMap::new()),
            told: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            client_id: format!("{:016x}", fastrand::u64(..)),
            input_seqs: Mutex::new(HashMap::new()),
            closing: tokio_util::sync::CancellationToken::new(),
            resume_token: Mutex::new(None),
        });
        let request_timeout = config.request_timeout;
        let spawn = routes::Spawn {
            config,
            tls,
            events: event_tx,
            shared: shared.clone(),
        };
        let client = Client {
            routes: routes::Routes::start(spawn, target),
            shared,
            request_timeout,
        };
        Ok((client, events))
    }

    fn command(&self, command: Command) {
        self.routes.send(command);
    }

    /// Joins a room (created with `room_type` if it does not exist; empty: the
    /// server's default). Answered with [`Event::Joined`] or [`Event::Error`]. Rooms
    /// are joined again automatically after a reconnect that could not resume. Of the
    /// refusals, `Unavailable` and `RateLimited` are retried by the client itself
    /// (they still come as [`Event::Error`], for the record: a `Joined` follows); any
    /// other forgets the room (inputs and events that waited for it are dropped) until
    /// it is joined again.
    pub fn join(&self, room: &str, room_type: &str) {
        self.numbered(room);
        self.command(Command::Join {
            room: room.into(),
            room_type: room_type.into(),
            carried: Carried::default(),
        });
    }

    /// Joins a room like [`Client::join`]; a join that creates the room creates it
    /// with `create`'s metadata (listed, and matched by quick joins) and privacy, and
    /// this client as its owner (who may change them: `UpdateRoom` through
    /// [`Client::request`]).
    pub fn join_with(&self, room: &str, room_type: &str, create: proto::RoomOptions) {
        self.numbered(room);
        self.command(Command::Join {
            room: room.into(),
            room_type: room_type.into(),
            carried: Carried {
                create: Some(create),
                ..Carried::default()
            },
        });
    }

    /// Joins the fullest open room of `room_type` (empty: the server's default) whose
    /// metadata holds every entry of `filters`, or creates one with `create`'s
    /// metadata plus the filters. Answered with [`Event::Joined`] (its `room` is the
    /// room chosen, from then on a room like any other) or [`Event::Error`]. One
    /// refused for now (`RATE_LIMITED`, `UNAVAILABLE`: the error event says so) is
    /// sent again by the client after the wait the relay gave. In a cluster, the room
    /// picked on another node is joined there ([`Event::Redirected`]). A room that
    /// refuses the join `ROOM_FULL` (filled, locked or its metadata changed between
    /// the pick and the join: across nodes the directory's view is up to a third of a
    /// lease old) is left out and the quick join sent again by the client, up to
    /// three times, the last for a room of the node asked only (a refusal of that is
    /// the answer). What the application sent to a room that refused so is dropped.
    pub fn quick_join(&self, room_type: &str, filters: BTreeMap<String, String>, create: proto::RoomOptions) {
        self.command(Command::QuickJoin(QuickAsk {
            message: proto::QuickJoin {
                request_id: 0,
                room_type: room_type.into(),
                filters,
                create: Some(create),
                exclude: Vec::new(),
                member_data: Bytes::new(), // the configuration's, set as it is sent
                local_only: false,         // set on the last try
            },
            full_rooms: Vec::new(),
        }));
    }

    /// Inputs to `room` are sent from now on, numbered on from the room's last
    /// (or above what its seat applied, once the join is answered).
    fn numbered(&self, room: &str) {
        self.shared.inputs_open(room, true);
    }

    /// Leaves a room (one this client is not in: nothing is sent).
    pub fn leave(&self, room: &str) {
        self.shared.inputs_open(room, false);
        self.command(Command::Leave { room: room.into() });
    }

    /// Sends an input for the room's next tick and returns its sequence number:
    /// compare it with the mirror's `last_input_seq` (applied up to there), and an
    /// [`Event::Error`] refusing the input carries it as its `request_id`. It is kept
    /// until the server acknowledges it and replayed after a reconnect. None (and
    /// nothing sent) for a room this client has not joined, or has left or been
    /// refused. (One exception to the number: a client continuing an earlier
    /// process's session ([`ClientConfig::resume_token`]) cannot know how far that
    /// process numbered, so inputs it sends before the room's `Joined` are sent
    /// numbered above the seat's last applied input instead, in order; the numbers
    /// returned for them are below those, and `last_input_seq` passes them once they
    /// are applied.)
    pub fn send_input(&self, room: &str, payload: proto::input::Payload) -> Option<u64> {
        let mut seqs = self.shared.input_seqs.lock();
        let numbers = seqs.get_mut(room).filter(|n| n.open)?;
        numbers.last += 1;
        // Handed on while numbering is held: two threads' inputs reach the driver in
        // the order of their numbers (the room drops a lower number after a higher).
        self.command(Command::Input {
            room: room.into(),
            seq: numbers.last,
            payload,
        });
        Some(numbers.last)
    }

    /// Sends a room event to `targets` (empty: everyone else in the room). An event
    /// for a room whose join is not answered yet waits for `Joined` (and goes with a
    /// redirected join to the room's node); it is kept until the session takes it
    /// and sent again after a reconnect.
    pub fn send_event(&self, room: &str, kind: &str, payload: Bytes, targets: Vec<u64>) {
        self.command(Command::Event(proto::SendEvent {
            room: room.into(),
            kind: kind.into(),
            payload,
            targets,
        }));
    }

    /// Sends a request and waits for its response (with the configured timeout; one
    /// that timed out before it was sent, offline, is not sent, while one sent may
    /// still take effect). A
    /// refusal is returned as `Err(ClientError::Server(error))` and, like every
    /// server `Error`, also comes as an [`Event::Error`] (an application that logs
    /// those sees it twice; its `request_id` tells them apart).
    pub async fn request(&self, kind: proto::request::Kind) -> Result<proto::Response, ClientError> {
        let (reply, response) = oneshot::channel();
        self.command(Command::Request { kind, reply });
        match tokio::time::timeout(self.request_timeout, response).await {
            Err(_) => Err(ClientError::Timeout),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(result)) => result.map_err(ClientError::Server),
        }
    }

    /// Replaces the token used for reconnecting and refreshes it on the live
    /// session (answered with `TokenRefreshed` or an error event). A refresh the
    /// relay refuses for now (`UNAVAILABLE`, with `retry_after_ms`: the token is
    /// signed by a key of the identity provider's that the relay has not fetched yet;
    /// or `RATE_LIMITED`: a user's sessions refresh 3 times at once, then once every
    /// 5 s) is sent again by itself after that wait (at least a second, at most five
    /// minutes), until it is answered otherwise or `set_token` is called again; the
    /// error event still reports each refusal.
    pub fn set_token(&self, token: &str) {
        self.command(Command::SetToken(token.into()));
    }

    /// The room's owner as last told (`Joined.owner`, then presence `OWNER`): the
    /// member that changes its listing and, in a relay room, writes the room's own
    /// entities (docs/PROTOCOL.md, "Room ownership"). 0: the room has none; `None`:
    /// this client is not in the room (or its join is not answered yet).
    pub fn room_owner(&self, room: &str) -> Option<u64> {
        self.shared.told.lock().get(room).map(|t| t.owner)
    }

    /// The room's metadata and whether it is locked, as last told (`Joined`, then
    /// [`Event::RoomUpdated`]); `None` as for [`Client::room_owner`].
    pub fn room_listing(&self, room: &str) -> Option<proto::RoomUpdated> {
        self.shared.told.lock().get(room).map(|t| t.listing.clone())
    }

    /// Reads a room's mirror (`None` if the client is not in the room). After a
    /// reconnect, until the full snapshot that follows it arrives, the state the
    /// client had before (so a renderer does not go blank for a moment). A room the
    /// server closed, or removed the client from ([`Event::Left`] with a reason), stays
    /// readable as it was then, its last state (a closed room's last tick arrives
    /// before its `Left`; a client offline then keeps what it had), until the client
    /// joins it again; the last [`ENDED_MIRRORS_KEPT`] such rooms are kept. A mirror
    /// a frame failed to verify ([`Event::Desync`]) is handed as it is until the full
    /// snapshot the client then asks for arrives: [`StateMirror::is_synced`] is
    /// false meanwhile (the browser client's `mirror()` returns nothing then).
    pub fn with_mirror<T>(&self, room: &str, read: impl FnOnce(&StateMirror) -> T) -> Option<T> {
        {
            let mirrors = self.shared.mirrors.lock();
            if let Some(mirror) = mirrors.get(room) {
                if !mirror.is_synced()
                    && let Some(previous) = self.shared.previous.lock().get(room)
                {
                    return Some(read(previous));
                }
                return Some(read(mirror));
            }
        }
        let ended = self.shared.ended.lock();
        ended
            .iter()
            .rev()
            .find(|(r, _)| r == room)
            .map(|(_, mirror)| read(mirror))
    }

    /// The client's counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Messages (inputs, events, requests) in the send queues of this client's
    /// connections together (what is handed to the client while it is offline waits
    /// apart, bounded by `buffer_limit`): everything goes out paced to the server's announced
    /// limits (80 % of them), in order, so this grows while the application sends
    /// faster than that (more than about one input per tick at the defaults), and
    /// each new input waits longer behind it. A game that sees it grow should send
    /// less (merge its inputs, say); at `send_queue_limit` new ones are refused.
    pub fn queued_messages(&self) -> u64 {
        self.shared.stats.queued.load(Ordering::Relaxed)
    }

    /// The resume token of the client's session, once connected (it changes only
    /// when a new session starts: after [`Event::Connected`] with `resumed` false);
    /// given [`ClientConfig::resume_token`], that one from the start.
    /// Store it to continue the session from a new process after a crash or a
    /// restart ([`ClientConfig::resume_token`]). A secret: in anonymous mode it
    /// alone continues the session. Rooms on other nodes of a cluster (joins
    /// redirected there) are sessions of their own, not continued by it.
    pub fn resume_token(&self) -> Option<String> {
        self.shared.resume_token.lock().clone()
    }

    /// The last measured round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        match self.shared.stats.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Drops the connection without a close frame, as a network failure would (for
    /// tests and churn): told as one (`Event::Disconnected`, code 1006), then the
    /// client reconnects and resumes.
    pub fn drop_connection(&self) {
        self.command(Command::DropConnection);
    }

    /// Closes the connection normally (code 1000), stops the client, and returns once
    /// the server answered the close (or after a second without an answer), so a
    /// program that exits right after it leaves no member waiting for a resume.
    pub async fn close(&self) {
        self.shared.closing.cancel();
        let mut waiting = Vec::new();
        for to in self.routes.close_all() {
            let (done, closed) = oneshot::channel();
            let _ = to.send(Command::Close(done));
            waiting.push(closed);
        }
        // A driver drops `done` when it stopped; an error means the same.
        for closed in waiting {
            let _ = closed.await;
        }
    }
}
