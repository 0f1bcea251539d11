//! The simulation threads: a fixed pool of dedicated OS threads (not the async
//! runtime), each owning a set of rooms and ticking each on its own
//! [`TickSchedule`], all on one phase per thread (rooms of a tick rate are due
//! together, so a thread wakes once per period rather than once per room).
//!
//! Transports talk to rooms through [`SimPool`]: every call turns into a [`Command`]
//! on the owning thread's crossbeam channel. The channel is bounded by a count of
//! waiting commands rather than by a preallocated ring (so an idle thread's queue
//! costs no memory); a send never blocks, and one over the bound is answered with
//! [`PoolError::Busy`]. Sending does not wake the thread either (only a join, a
//! close, a checkpoint request and shutdown do): it sleeps until its next tick and
//! takes what is queued then. Rooms answer through the members'
//! outboxes. A room lives on one thread for its whole life, so a
//! heavy room delays only rooms on its own thread, and a panicking simulation takes
//! down only its own room.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use crate::bucket::TokenBucket;
use crate::clock::unix_micros;
use crate::engine::listing::{self, Listing, ListingState, Metadata};
use crate::engine::outbox::{Outbox, RoomKey};
use crate::engine::pacer::Pacer;
use crate::engine::room::{Bans, Joiner, Roll, Room, RoomConfig, encode_error, error_message};
use crate::engine::schedule::TickSchedule;
use crate::engine::simulation::Simulation;
use crate::log_budget::LogBudget;
use crate::metrics::SimMetrics;
use crate::proto::{self, ErrorCode, SendEvent, input};
use crate::state::{MemberId, Tick};

/// Room created and closed lines: at most 20 a second (`suppressed` counts the rest).
static ROOM_LOGS: LogBudget = LogBudget::new("rooms", 20);

/// Builds the simulation of a new room.
pub type SimFactory = Arc<dyn Fn() -> Box<dyn Simulation> + Send + Sync>;

/// A room type: its settings and how to build its simulation.
#[derive(Clone)]
pub struct RoomType {
    /// Settings of rooms of this type.
    pub config: RoomConfig,
    /// Builds a room's simulation.
    pub factory: SimFactory,
}

impl std::fmt::Debug for RoomType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomType").field("config", &self.config).finish()
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of simulation threads (default: one per core).
    pub threads: usize,
    /// Commands that may wait for one thread.
    pub channel_capacity: usize,
    /// Maximum number of rooms on the server.
    pub max_rooms: usize,
    /// Ticks a late room may run back to back before dropping the backlog.
    pub max_catch_up: u32,
    /// An empty room is closed after this long.
    pub empty_room_ttl: Duration,
    /// The room type used when a join names none.
    pub default_room_type: String,
    /// Known room types by name.
    pub room_types: HashMap<String, RoomType>,
    /// Room creations per creator.
    pub creation: CreationLimits,
    /// Cluster mode: where rooms' checkpoints go, and how often.
    pub checkpoints: Option<Checkpoints>,
    /// Ids of the rooms the configuration creates: they stay open while empty, also
    /// when a join or a restore opens them (cluster mode: on a node other than the one
    /// that created them).
    pub configured_rooms: HashSet<String>,
    /// The I/O threads' pacer: told when each thread ticks next, and handed the
    /// wake-ups of each turn in one batch (none: wake-ups happen as they come).
    pub pacer: Option<Arc<Pacer>>,
}

/// Cluster mode: rooms checkpoint their state every `every_ticks` ticks (and on
/// [`SimPool::hand_off`]) into `sink`; a restored room keeps its members' seats
/// for `seat_grace`.
#[derive(Clone)]
pub struct Checkpoints {
    /// Ticks between two checkpoints of a room (0: only on demand).
    pub every_ticks: u32,
    /// How long a restored room keeps the seats of its checkpoint's members.
    pub seat_grace: Duration,
    /// A room that did not change is checkpointed again after this long at the
    /// latest (well within how long Redis keeps a checkpoint).
    pub rewrite_after: Duration,
    /// A room's periodic checkpoints write at most this many bytes a second: a
    /// large room's come less often than every `every_ticks` (its checkpoint's size
    /// over this rate apart, at most `rewrite_after`), so a small change to it does
    /// not cost Redis its whole state every interval.
    pub bytes_per_second: u64,
    /// Called on the simulation thread with each checkpoint; must not block.
    pub sink: Arc<dyn Fn(Checkpoint) + Send + Sync>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("every_ticks", &self.every_ticks)
            .field("seat_grace", &self.seat_grace)
            .finish_non_exhaustive()
    }
}

/// Why a room whose simulation panicked was closed (its members' `Left`).
const PANICKED: &str = "room closed after an internal error";

/// Logs and counts a simulation that panicked in a running room (which then closes).
fn room_panicked(metrics: &SimMetrics, room: &str) {
    tracing::error!(room, "simulation panicked; closing the room");
    metrics.room_panics.inc();
}

/// How long a new room waits for its first member at least, whatever
/// `empty_room_ttl`: its creator's join follows its creation.
const FIRST_JOIN_WAIT: Duration = Duration::from_secs(1);

/// Checkpoints of an unchanged room not written in a row, at most (see
/// `SimThread`'s ticks).
const UNCHANGED_CHECKPOINTS: u32 = 9;

/// What a simulation thread hands the checkpoint sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Checkpoint {
    /// A room's state.
    Room(Box<proto::RoomCheckpoint>),
    /// The thread has sent the checkpoints [`SimPool::hand_off`] asked of it.
    Flushed,
    /// The room with this id and key closed (it emptied out, or failed): its
    /// checkpoint must go, so that the next room with its id starts empty. (Sent
    /// before the room leaves the pool's directory: the key tells it from a room
    /// opened under the id since.)
    Closed(Arc<str>, RoomKey),
}

/// How many rooms one creator may make: a user (with JWT), or a client's address
/// (anonymous users are one per session). Joining a room that exists is not limited.
#[derive(Debug, Clone, PartialEq)]
pub struct CreationLimits {
    /// Rooms one creator may have open at once.
    pub max_open: usize,
    /// Sustained creations per second.
    pub per_second: f64,
    /// Creations in a burst.
    pub burst: f64,
}

impl Default for CreationLimits {
    fn default() -> Self {
        Self {
            max_open: 1_000,
            per_second: 2.0,
            burst: 60.0,
        }
    }
}

/// One creator's open rooms and creation rate.
struct Creator {
    open: usize,
    bucket: TokenBucket,
}

/// Creators with rooms open, or whose creation rate has not refilled, by key.
type Creators = HashMap<Arc<str>, Creator>;

/// Gives a creator's slot back (its room closed, or was never made). The record is
/// kept while its bucket is not full: forgotten, a creator whose rooms close at once
/// (a game closing rooms as they empty) would start each time with a whole burst.
fn release_creation(creators: &Mutex<Creators>, key: &str) {
    let mut creators = creators.lock();
    if let Some(c) = creators.get_mut(key) {
        c.open -= 1;
        if c.open == 0 && c.bucket.is_full(Instant::now()) {
            creators.remove(key);
        }
    }
}

/// Why the pool refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No room type with this name (made with [`PoolError::unknown_room_type`]).
    #[error("unknown room type `{name}`{hint}")]
    UnknownRoomType {
        /// The name asked for.
        name: String,
        /// What the relay has instead: "; did you mean `arena`? (this relay has: …)".
        hint: String,
    },
    /// No room with this id.
    #[error("no room `{0}`")]
    RoomNotFound(String),
    /// The room exists with another type than the one asked for.
    #[error("room `{room}` exists with type `{existing}`")]
    RoomTypeMismatch {
        /// The room.
        room: String,
        /// Its type.
        existing: String,
    },
    /// The server holds its maximum number of rooms.
    #[error("room limit reached")]
    TooManyRooms,
    /// The creator (user, or anonymous client's address) has as many rooms open as
    /// allowed, or creates them too fast.
    #[error("{0}")]
    CreationLimit(String),
    /// The simulation thread's queue is full; try again later.
    #[error("simulation thread busy")]
    Busy,
    /// The pool is shut down.
    #[error("shutting down")]
    ShutDown,
    /// Cluster mode: the room directory, or the node that owns the room, cannot be
    /// reached now.
    #[error("{0}")]
    Unavailable(String),
    /// The room's simulation panicked as the room opened (building it, declaring its
    /// schema or restoring it): a bug in the game's simulation.
    #[error("the room's simulation failed to start")]
    SimulationFailed,
    /// Cluster mode: the room's checkpoint cannot be restored (it does not decode, or
    /// does not fit the room type's schema).
    #[error("{0}")]
    Unrestorable(String),
}

/// Of `known`, the name nearest `name` (at most two letters apart, case aside), if
/// one is: what a typo of `name` meant.
pub fn nearest_name<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let distance = |known: &str| strsim::damerau_levenshtein(&known.to_lowercase(), &name.to_lowercase());
    (known.into_iter())
        .filter(|k| distance(k) <= 2)
        .min_by_key(|k| distance(k))
}

/// `retry_after_ms` of an `UNAVAILABLE` answer.
pub const UNAVAILABLE_RETRY_MS: u32 = 1_000;

impl PoolError {
    /// A join's room type is not one of `known`: the error names the nearest, if one
    /// is near, and them all.
    pub fn unknown_room_type(name: &str, known: &HashMap<String, RoomType>) -> Self {
        let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
        names.sort_unstable();
        let near = nearest_name(name, names.iter().copied());
        let mut hint = near.map_or_else(String::new, |k| format!("; did you mean `{k}`?"));
        // A long list is left out: a room type's name is the game's, not the client's guess.
        if (1..=16).contains(&names.len()) {
            hint += &format!(" (this relay has: {})", names.join(", "));
        }
        Self::UnknownRoomType {
            name: name.to_string(),
            hint,
        }
    }

    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownRoomType { .. } => ErrorCode::UnknownRoomType,
            Self::RoomNotFound(_) => ErrorCode::RoomNotFound,
            Self::RoomTypeMismatch { .. } => ErrorCode::RoomTypeMismatch,
            Self::TooManyRooms | Self::Busy => ErrorCode::ServerBusy,
            Self::CreationLimit(_) => ErrorCode::LimitExceeded,
            Self::ShutDown | Self::SimulationFailed => ErrorCode::RoomClosed,
            Self::Unavailable(_) | Self::Unrestorable(_) => ErrorCode::Unavailable,
        }
    }

    /// The `Error` message that answers request `request_id` about `room` with this
    /// error; an `UNAVAILABLE` one carries its retry hint.
    pub fn message(&self, request_id: u64, room: &str) -> Bytes {
        // The directory or the room's node usually comes back within a lease.
        let retry_after_ms = match self {
            Self::Unavailable(_) => UNAVAILABLE_RETRY_MS,
            _ => 0,
        };
        encode_error(proto::Error {
            code: self.code() as i32,
            message: self.to_string(),
            request_id,
            room: room.to_string(),
            retry_after_ms,
        })
    }
}

/// A message to a simulation thread.
#[non_exhaustive]
pub enum Command {
    /// Take ownership of a new room (`true`: keep it open while empty).
    Create(Box<Room>, Arc<RoomShared>, bool),
    /// A member joins (answered through `outbox`).
    Join {
        /// Room.
        room: RoomKey,
        /// Its id, for an answer after it closed.
        room_id: Arc<str>,
        /// Member id (the session id).
        member: MemberId,
        /// Authenticated user id.
        user_id: Arc<str>,
        /// What the member told the room's game about itself (`JoinRoom.member_data`).
        member_data: Bytes,
        /// The member's session outbox.
        outbox: Arc<Outbox>,
        /// Request id to answer.
        request_id: u64,
        /// The session's number of this join (see [`Outbox::leave_room`]).
        join_seq: u64,
        /// The join holds a seat a quick join reserved ([`RoomShared::reserved`]),
        /// released once the join is handled.
        reserved: bool,
    },
    /// A member leaves.
    Leave {
        /// Room.
        room: RoomKey,
        /// Its id, for an answer when the member is not in it.
        room_id: Arc<str>,
        /// Member.
        member: MemberId,
        /// The leaving session's outbox: a seat another session has taken over since
        /// (the same member id, continued on this node) is not its to leave.
        outbox: Arc<Outbox>,
        /// Request id to answer (0: do not answer).
        request_id: u64,
    },
    /// An input for the next tick.
    Input {
        /// Room.
        room: RoomKey,
        /// Member.
        member: MemberId,
        /// Client sequence number.
        seq: u64,
        /// The payload.
        payload: input::Payload,
    },
    /// A room event to relay.
    Event {
        /// Room.
        room: RoomKey,
        /// Sender.
        member: MemberId,
        /// The event.
        event: SendEvent,
    },
    /// A full snapshot request.
    Resync {
        /// Room.
        room: RoomKey,
        /// Its id, for an answer when the member is not in it.
        room_id: Arc<str>,
        /// Member.
        member: MemberId,
        /// The asking session's outbox (see `Leave`).
        outbox: Arc<Outbox>,
        /// Request id to answer (0: do not answer).
        request_id: u64,
        /// Send the member its `Joined` again as well (a resume that lost presence).
        joined_too: bool,
    },
    /// The room's owner hands it to another member, with its other listing changes
    /// (see [`Room::update_listing`]; answered through `outbox`).
    UpdateRoom {
        /// Room.
        room: RoomKey,
        /// Its id, for an answer.
        room_id: Arc<str>,
        /// The asking member.
        member: MemberId,
        /// The asking session's outbox (see `Leave`).
        outbox: Arc<Outbox>,
        /// Request id to answer.
        request_id: u64,
        /// What it asks.
        update: proto::UpdateRoom,
    },
    /// The node is stopping: checkpoint every room of the thread now, send
    /// [`Checkpoint::Flushed`], and tick no room any more.
    HandOff,
    /// The room's last checkpoint did not reach the directory: its next periodic one
    /// is written even if nothing changed (an idle room's would be skipped).
    CheckpointAgain {
        /// Room.
        room: RoomKey,
    },
    /// Close the room now: every member gets `Left` with this reason.
    Close {
        /// Room.
        room: RoomKey,
        /// Why, for the members.
        code: ErrorCode,
        /// The `Left` message's text.
        message: String,
    },
    /// The game's backend removes a user (see [`Room::remove_user`]).
    RemoveUser {
        /// Room.
        room: RoomKey,
        /// The user whose members go.
        user_id: String,
        /// The `Left` message's text.
        message: String,
        /// How long its joins are refused (0: none, and a ban it had is lifted).
        ban_secs: u32,
    },
    /// Tell who is in the room ([`Room::roll`]) on `reply`.
    Roll {
        /// Room.
        room: RoomKey,
        /// Where the answer goes (its receiver may have given up waiting).
        reply: std::sync::mpsc::SyncSender<Roll>,
    },
    /// Stop the thread.
    Shutdown,
}

/// Room facts shared between its thread and the directory.
#[derive(Debug)]
pub struct RoomShared {
    /// Room id.
    pub id: Arc<str>,
    /// Room type name.
    pub room_type: Arc<str>,
    /// Member cap.
    pub max_members: u32,
    /// Current member count, updated by the owning thread.
    pub members: AtomicU32,
    /// Who created it, when counted against a creator's [`CreationLimits`].
    pub creator: Option<Arc<str>>,
    /// What it shows in listings and quick joins (shared with the room).
    pub listing: Arc<Listing>,
    /// Seats quick joins reserved whose joins the room has not handled yet.
    pub reserved: AtomicU32,
    /// Seats a restored room keeps for members of its checkpoint, updated by the
    /// owning thread.
    pub kept: AtomicU32,
    /// Users banned from it (shared with the room).
    pub bans: Arc<Bans>,
}

impl RoomShared {
    /// Members plus reserved seats.
    fn seats_taken(&self) -> u32 {
        // The thread counts a reserved join (or a kept seat taken back) as a member
        // before it gives the reservation (or the kept seat) back: read in the other
        // order, a seat is never missed (at worst counted twice for a moment).
        let reserved = self.reserved.load(Ordering::Acquire);
        let kept = self.kept.load(Ordering::Acquire);
        self.members.load(Ordering::Acquire) + kept + reserved
    }

    /// Whether a quick join may pick the room, but for its metadata: neither private
    /// nor locked, with a free seat. Without a lock.
    fn pickable(&self) -> bool {
        self.listing.pickable() && self.seats_taken() < self.max_members
    }

    /// Reserves a seat for a quick join, if one is free.
    fn reserve_seat(&self) -> bool {
        (self.reserved)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |reserved| {
                let others = self.members.load(Ordering::Acquire) + self.kept.load(Ordering::Acquire);
                (others + reserved < self.max_members).then_some(reserved + 1)
            })
            .is_ok()
    }

    /// Members plus the seats a restored room keeps: what counts against the cap.
    pub fn occupied(&self) -> u32 {
        self.members.load(Ordering::Relaxed) + self.kept.load(Ordering::Relaxed)
    }

    /// Whether a listing with `filter` shows the room.
    pub fn listed(&self, filter: &RoomFilter<'_>) -> bool {
        self.listing
            .with(|l| filter.admits(&self.room_type, self.seats_taken(), self.max_members, l))
    }

    /// The room as listed.
    pub fn info(&self) -> proto::RoomInfo {
        let (metadata, locked, owner) = self.listing.with(|l| (l.metadata.clone(), l.locked, l.owner));
        proto::RoomInfo {
            room: self.id.to_string(),
            room_type: self.room_type.to_string(),
            members: self.members.load(Ordering::Relaxed),
            max_members: self.max_members,
            metadata,
            locked,
            owner,
        }
    }
}

/// Which rooms a listing or a quick join considers.
#[derive(Debug, Clone, Copy)]
pub struct RoomFilter<'a> {
    /// Only rooms of this type (empty: any).
    pub room_type: &'a str,
    /// Only rooms whose metadata holds every one of these entries.
    pub metadata: &'a Metadata,
    /// Only rooms a quick join may pick: not locked, with a free seat.
    pub open_only: bool,
}

impl RoomFilter<'_> {
    /// Whether the filter admits a room of `room_type` with `seats_taken` of
    /// `max_members` and `listing` (private rooms never).
    pub fn admits(&self, room_type: &str, seats_taken: u32, max_members: u32, listing: &ListingState) -> bool {
        (self.room_type.is_empty() || room_type == self.room_type)
            && !listing.private
            && listing.matches(self.metadata)
            && !(self.open_only && (listing.locked || seats_taken >= max_members))
    }
}

impl RoomFilter<'static> {
    /// Every listed room.
    pub fn all() -> Self {
        static NONE: Metadata = Metadata::new();
        Self {
            room_type: "",
            metadata: &NONE,
            open_only: false,
        }
    }
}

/// A cheap handle to a room: where to send its commands.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    /// The room key.
    pub key: RoomKey,
    /// Shared facts.
    pub shared: Arc<RoomShared>,
    thread: usize,
}

impl RoomHandle {
    /// A handle to a room outside any pool: what a test double of [`Rooms`] hands out.
    #[cfg(test)]
    pub fn standalone(key: RoomKey, shared: Arc<RoomShared>) -> Self {
        Self { key, shared, thread: 0 }
    }
}

/// Rooms listed at most per page of `ListRooms`, whatever the client asks for.
pub const MAX_ROOMS_PER_PAGE: usize = 500;

/// Rooms (or, in a cluster, directory entries) one page of a filtered listing or one
/// quick join looks at, at most (a few in unit tests): the first ones in id order (of
/// its type, for a quick join).
pub const LIST_SCAN: usize = if cfg!(test) { 4 } else { 2_000 };

/// What a session needs of the rooms: open one, send it commands, list them. The
/// [`SimPool`] is the real thing; sessions are unit-tested against a fake.
pub trait Rooms: Send + Sync {
    /// The room with this id, created with `room_type` (or the default type when
    /// empty) and `listing` if it does not exist, counted against `creator`'s
    /// [`CreationLimits`].
    fn open(&self, id: &str, room_type: &str, creator: &str, listing: ListingState) -> Result<RoomHandle, PoolError>;

    /// A quick join's pick: of the open rooms of `room_type` (empty: the default
    /// type) whose metadata holds every entry of `filters` and that `skip` does not
    /// exclude, the one with the most seats taken (the first in id order on a tie),
    /// with a seat reserved for the join (send it with `reserved: true`). It looks at
    /// [`LIST_SCAN`] rooms of the type at most, among those neither private, locked
    /// nor full whose metadata matches: when there are more, at that many in id order
    /// from a random one on.
    fn pick(&self, room_type: &str, filters: &Metadata, skip: &dyn Fn(&RoomShared) -> bool) -> Option<RoomHandle>;

    /// The open room with this id, if any (never creates one).
    fn find(&self, id: &str) -> Option<RoomHandle>;

    /// Sends a command to the room without blocking.
    fn send(&self, room: &RoomHandle, command: Command) -> Result<(), PoolError>;

    /// Sends a command the room must get, past the bound on what waits for its thread
    /// (a resume's full snapshot: the client has its state from nothing else; resumes
    /// bound how many there are).
    fn send_owed(&self, room: &RoomHandle, command: Command) {
        let _ = self.send(room, command);
    }

    /// Closes the room with this id, if open here (`None` if not): every member gets
    /// `Left` with `code` and `message`. Refused like any command when the room's
    /// thread has too much waiting.
    fn close(&self, id: &str, code: ErrorCode, message: &str) -> Option<Result<(), PoolError>> {
        let room = self.find(id)?;
        let command = Command::Close {
            room: room.key,
            code,
            message: message.to_string(),
        };
        Some(self.send(&room, command))
    }

    /// [`Rooms::close`] for a removal of `user_id` from the room, banned for
    /// `ban_secs` (see [`Room::remove_user`]).
    fn remove_user(&self, id: &str, user_id: &str, message: &str, ban_secs: u32) -> Option<Result<(), PoolError>> {
        let room = self.find(id)?;
        let command = Command::RemoveUser {
            room: room.key,
            user_id: user_id.to_string(),
            message: message.to_string(),
            ban_secs,
        };
        Some(self.send(&room, command))
    }

    /// Whether the rooms were handed off (cluster mode, the node stopping): they
    /// relay no more events, so a session takes (and acknowledges) none.
    fn handed_off(&self) -> bool {
        false
    }

    /// One page of the rooms `filter` lists, in id order: at most `limit` (capped at
    /// [`MAX_ROOMS_PER_PAGE`]) whose ids sort after `after`, and where the next page
    /// starts (none: this is the last). It stops once past `max_bytes` of rooms (see
    /// [`listing::listed_bytes`]).
    fn list(
        &self,
        filter: &RoomFilter<'_>,
        after: &str,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<proto::RoomInfo>, Option<String>);
}

impl Rooms for SimPool {
    fn open(&self, id: &str, room_type: &str, creator: &str, listing: ListingState) -> Result<RoomHandle, PoolError> {
        self.open_room(id, room_type, false, Some(creator), OpenAs::New(listing))
            .map(|(handle, _)| handle)
    }

    fn pick(&self, room_type: &str, filters: &Metadata, skip: &dyn Fn(&RoomShared) -> bool) -> Option<RoomHandle> {
        SimPool::pick(self, room_type, filters, skip)
    }

    fn find(&self, id: &str) -> Option<RoomHandle> {
        self.room(id)
    }

    fn send(&self, room: &RoomHandle, command: Command) -> Result<(), PoolError> {
        SimPool::send(self, room, command)
    }

    fn send_owed(&self, room: &RoomHandle, command: Command) {
        // (False only when the thread is gone, with its rooms.)
        let _ = self.workers[room.thread].send_unbounded(command);
    }

    fn handed_off(&self) -> bool {
        self.handed_off.load(Ordering::Acquire)
    }

    fn list(
        &self,
        filter: &RoomFilter<'_>,
        after: &str,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<proto::RoomInfo>, Option<String>) {
        self.list_rooms(filter, after, limit, max_bytes)
    }
}

/// How [`SimPool::open_room`] opens a room that is not open.
enum OpenAs<'a> {
    /// A new room with this listing.
    New(ListingState),
    /// As its checkpoint left it.
    Restore(&'a proto::RoomCheckpoint),
}

/// Rooms by id, in id order (so listings page).
type RoomsById = BTreeMap<Arc<str>, RoomHandle>;

/// Payload bytes (inputs, events) that may wait in one simulation thread's queue:
/// the queue's count bound alone would let large events (published through the HTTP
/// API, say) hold a gigabyte while the thread is late.
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// What waits in one simulation thread's queue: sent and not yet received.
#[derive(Debug, Default)]
struct Queued {
    commands: AtomicUsize,
    bytes: AtomicUsize,
}

/// Payloads smaller than this are not counted against [`MAX_QUEUED_BYTES`] (the
/// count bound holds them to a few MiB), so the common small input costs no shared
/// counter.
const COUNTED_PAYLOAD_BYTES: usize = 256;

impl Command {
    /// The payload bytes it carries, when they count against [`MAX_QUEUED_BYTES`].
    fn counted_bytes(&self) -> usize {
        let bytes = match self {
            Command::Input { payload, .. } => match payload {
                input::Payload::Intent(intent) => intent.len(),
                input::Payload::Writes(writes) => prost::Message::encoded_len(writes),
            },
            Command::Event { event, .. } => event.payload.len() + event.kind.len(),
            _ => 0,
        };
        if bytes >= COUNTED_PAYLOAD_BYTES { bytes } else { 0 }
    }
}

/// A command on its way to a thread, with its counted bytes.
type Queuing = (Command, usize);

struct Worker {
    tx: Sender<Queuing>,
    queued: Arc<Queued>,
    rooms: Arc<AtomicU32>,
    join: Option<JoinHandle<()>>,
    /// Held (read) while an event, a user's removal or a close for this thread is
    /// checked against `SimPool::handed_off` and sent, and (write) while the thread is
    /// sent its `HandOff`: such a command is either queued before it (and in the
    /// checkpoint) or refused. One per thread: commands for other threads do not touch
    /// it.
    hand_off_gate: RwLock<()>,
}

impl Worker {
    /// Queues a command unless `capacity` commands, or [`MAX_QUEUED_BYTES`] of
    /// payloads, already wait.
    fn send(&self, command: Command, capacity: usize) -> Result<(), PoolError> {
        let bytes = command.counted_bytes();
        if self.queued.commands.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.queued.commands.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolError::Busy);
        }
        if bytes > 0 && self.queued.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > MAX_QUEUED_BYTES {
            self.queued.bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.queued.commands.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolError::Busy);
        }
        self.tx.send((command, bytes)).map_err(|_| PoolError::ShutDown)
    }

    /// Queues a command of the pool's own (a stop, a checkpoint), whatever waits;
    /// false when the thread is gone.
    fn send_unbounded(&self, command: Command) -> bool {
        // Counted like any command: the thread uncounts what it receives.
        self.queued.commands.fetch_add(1, Ordering::AcqRel);
        self.tx.send((command, 0)).is_ok()
    }
}

/// The pool; see the module documentation.
pub struct SimPool {
    workers: Vec<Worker>,
    directory: Arc<Mutex<RoomsById>>,
    creators: Arc<Mutex<Creators>>,
    next_key: AtomicU64,
    config: PoolConfig,
    metrics: Arc<SimMetrics>,
    /// Set by [`SimPool::hand_off`]: the rooms take no more events (see
    /// `Worker::hand_off_gate`).
    handed_off: AtomicBool,
}

impl std::fmt::Debug for SimPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPool")
            .field("threads", &self.workers.len())
            .field("rooms", &self.directory.lock().len())
            .finish()
    }
}

impl SimPool {
    /// Starts the simulation threads.
    pub fn start(config: PoolConfig) -> std::io::Result<Self> {
        let metrics = Arc::new(SimMetrics::default());
        let directory = Arc::new(Mutex::new(RoomsById::new()));
        let creators = Arc::new(Mutex::new(Creators::new()));
        let workers = (0..config.threads.max(1))
            .map(|i| {
                let (tx, rx) = crossbeam_channel::unbounded();
                let queued = Arc::new(Queued::default());
                let rooms = Arc::new(AtomicU32::new(0));
                let thread = SimThread {
                    rx,
                    queued: queued.clone(),
                    rooms: Vec::new(),
                    index: FxHashMap::default(),
                    room_count: rooms.clone(),
                    directory: directory.clone(),
                    creators: creators.clone(),
                    metrics: metrics.clone(),
                    max_catch_up: config.max_catch_up,
                    empty_room_ttl: config.empty_room_ttl,
                    checkpoints: config.checkpoints.clone(),
                    epoch: Instant::now(),
                    next_phase: 0,
                    handed_off: false,
                    pacer: config.pacer.clone(),
                    number: i,
                };
                let join = std::thread::Builder::new()
                    .name(format!("tickrelay-sim-{i}"))
                    .spawn(move || thread.run())?;
                Ok(Worker {
                    tx,
                    queued,
                    rooms,
                    join: Some(join),
                    hand_off_gate: RwLock::new(()),
                })
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            workers,
            directory,
            creators,
            next_key: AtomicU64::new(1),
            config,
            metrics,
            handed_off: AtomicBool::new(false),
        })
    }

    /// Counts a creation against `creator`'s limits, or says which one it exceeds.
    fn take_creation(&self, creator: &str) -> Result<Arc<str>, PoolError> {
        let limits = &self.config.creation;
        if limits.max_open == 0 {
            // Nothing to remember per creator: none may create.
            return Err(PoolError::CreationLimit(
                "this relay lets clients create no rooms: join one it keeps open".into(),
            ));
        }
        let now = Instant::now();
        let key: Arc<str> = creator.into();
        let mut creators = self.creators.lock();
        if creators.len() > 65_536 {
            // Forget creators with no room open whose bucket has refilled.
            creators.retain(|_, c| c.open > 0 || !c.bucket.is_full(now));
        }
        let state = creators.entry(key.clone()).or_insert_with(|| Creator {
            open: 0,
            bucket: TokenBucket::new(limits.per_second, limits.burst, now),
        });
        if state.open >= limits.max_open {
            return Err(PoolError::CreationLimit(format!(
                "you have {} rooms open, the most one user or address may create; join one of them",
                state.open
            )));
        }
        if state.bucket.try_take(1.0, now).is_err() {
            return Err(PoolError::CreationLimit(format!(
                "rooms created too fast (at most {} a second after a burst of {}); try again shortly",
                limits.per_second, limits.burst
            )));
        }
        state.open += 1;
        Ok(key)
    }

    /// Server-wide simulation counters.
    pub fn metrics(&self) -> &Arc<SimMetrics> {
        &self.metrics
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Whether the pool holds its maximum number of rooms (a new one would be refused).
    pub fn is_full(&self) -> bool {
        self.directory.lock().len() >= self.config.max_rooms
    }

    /// The room with this id, if open.
    pub fn room(&self, id: &str) -> Option<RoomHandle> {
        self.directory.lock().get(id).cloned()
    }

    /// The room with this id, created with `room_type` (or the default type when
    /// empty) if it does not exist. The new room goes to the least loaded thread.
    /// (Counted against no creator: for the server itself and tests.)
    pub fn get_or_create(&self, id: &str, room_type: &str) -> Result<RoomHandle, PoolError> {
        self.open_room(id, room_type, false, None, OpenAs::New(ListingState::default()))
            .map(|(handle, _)| handle)
    }

    /// Creates a room that stays open while empty (rooms from the configuration),
    /// listed with `metadata`.
    pub fn create_persistent(&self, id: &str, room_type: &str, metadata: &Metadata) -> Result<RoomHandle, PoolError> {
        self.open_room(
            id,
            room_type,
            true,
            None,
            OpenAs::New(ListingState::listed_as(metadata)),
        )
        .map(|(handle, _)| handle)
    }

    /// Opens a room as its checkpoint left it (cluster mode: the node that held it
    /// died or stopped), unless a room with its id is open already (then `None`: two
    /// joins may race to restore it). Counted against no creator.
    pub fn restore(&self, checkpoint: &proto::RoomCheckpoint) -> Result<Option<RoomHandle>, PoolError> {
        let opening = OpenAs::Restore(checkpoint);
        let (handle, opened) = self.open_room(&checkpoint.room, &checkpoint.room_type, false, None, opening)?;
        Ok(opened.then_some(handle))
    }

    /// See [`Rooms::pick`].
    pub fn pick(&self, room_type: &str, filters: &Metadata, skip: &dyn Fn(&RoomShared) -> bool) -> Option<RoomHandle> {
        let filter = RoomFilter {
            room_type: if room_type.is_empty() {
                &self.config.default_room_type
            } else {
                room_type
            },
            metadata: filters,
            open_only: true,
        };
        if !self.config.room_types.contains_key(filter.room_type) {
            return None; // opening one will say why
        }
        // Under the directory's lock (everyone's), the rooms of the asked type that
        // are neither private, locked nor full and whose metadata may match the
        // filters (told by atomics: however many other rooms there are, they take
        // nothing of the scan); `LIST_SCAN` of them from a random one on, wrapping, so
        // that rooms whose ids sort first cannot hide the others. The filters run
        // exactly outside the lock.
        let wanted = listing::Wanted::of(filters);
        let scan: Vec<RoomHandle> = {
            let directory = self.directory.lock();
            let open: Vec<&RoomHandle> = (directory.values())
                .filter(|h| {
                    *h.shared.room_type == *filter.room_type
                        && h.shared.pickable()
                        && h.shared.listing.may_match(&wanted)
                })
                .collect();
            let start = if open.len() > LIST_SCAN {
                fastrand::usize(..open.len())
            } else {
                0
            };
            let (later, first) = open.split_at(start);
            (first.iter().chain(later))
                .take(LIST_SCAN)
                .map(|&h| h.clone())
                .collect()
        };
        let mut open: Vec<(u32, RoomHandle)> = (scan.into_iter())
            .filter(|h| h.shared.listed(&filter) && !skip(&h.shared))
            .map(|h| (h.shared.seats_taken(), h))
            .collect();
        // The fullest first (the first in id order on a tie); a seat is reserved only
        // while one is free, so two quick joins never take the last seat twice.
        open.sort_by_key(|(taken, _)| std::cmp::Reverse(*taken));
        open.into_iter().map(|(_, h)| h).find(|h| h.shared.reserve_seat())
    }

    fn open_room(
        &self,
        id: &str,
        room_type: &str,
        persistent: bool,
        creator: Option<&str>,
        opening: OpenAs<'_>,
    ) -> Result<(RoomHandle, bool), PoolError> {
        // An open room is joined as it is; a new one is built outside the directory's
        // lock (the simulation's factory, schema and restore may take a while), and
        // looked for again before it is entered: of two joins racing to open one id,
        // the second finds the first's room and drops its own.
        if let Some(open) = self.open_already(&self.directory.lock(), id, room_type)? {
            return Ok((open, false));
        }
        let type_name = if room_type.is_empty() {
            self.config.default_room_type.as_str()
        } else {
            room_type
        };
        let spec = self
            .config
            .room_types
            .get(type_name)
            .ok_or_else(|| PoolError::unknown_room_type(type_name, &self.config.room_types))?;
        let creator = creator.map(|c| self.take_creation(c)).transpose()?;
        let give_back = || {
            if let Some(creator) = &creator {
                release_creation(&self.creators, creator);
            }
        };
        let refuse = |e: PoolError| {
            give_back();
            Err(e)
        };
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let id: Arc<str> = id.into();
        let type_name: Arc<str> = type_name.into();
        // The simulation's own code runs here (its factory, schema, restore): a panic
        // refuses this join, as a panic in a tick closes only its room.
        let built = catch_unwind(AssertUnwindSafe(|| match opening {
            OpenAs::New(listing) => {
                let mut room = Room::new(
                    key,
                    id.clone(),
                    type_name.clone(),
                    spec.config.clone(),
                    (spec.factory)(),
                );
                room.set_listing(listing);
                Ok(room)
            }
            OpenAs::Restore(checkpoint) => {
                let grace = self
                    .config
                    .checkpoints
                    .as_ref()
                    .map_or(Duration::ZERO, |c| c.seat_grace);
                let seat_ticks = (grace.as_secs_f64() * f64::from(spec.config.tick_rate)).ceil() as Tick;
                let restored = Room::restore(key, spec.config.clone(), (spec.factory)(), checkpoint, seat_ticks);
                restored.map_err(|e| PoolError::Unrestorable(e.to_string()))
            }
        }));
        let room = match built {
            Ok(Ok(room)) => room,
            Ok(Err(e)) => return refuse(e),
            Err(_) => {
                tracing::error!(room = %id, room_type = %type_name, "simulation panicked as the room opened");
                self.metrics.room_panics.inc();
                return refuse(PoolError::SimulationFailed);
            }
        };
        let mut directory = self.directory.lock();
        match self.open_already(&directory, &id, room_type) {
            Ok(None) => {}
            Ok(Some(open)) => {
                drop(directory);
                give_back();
                return Ok((open, false));
            }
            Err(e) => return refuse(e),
        }
        let shared = Arc::new(RoomShared {
            id: id.clone(),
            room_type: type_name,
            max_members: spec.config.max_members as u32,
            members: AtomicU32::new(0),
            creator: creator.clone(),
            listing: room.listing().clone(),
            reserved: AtomicU32::new(0),
            kept: AtomicU32::new(room.kept_seats() as u32),
            bans: room.bans().clone(),
        });
        let thread = (0..self.workers.len())
            .min_by_key(|&i| self.workers[i].rooms.load(Ordering::Relaxed))
            .unwrap_or(0);
        let handle = RoomHandle {
            key,
            shared: shared.clone(),
            thread,
        };
        // Sent under the lock: whoever finds the room in the directory sends its
        // commands after the thread has it.
        let sent = self.workers[thread].send(
            Command::Create(
                Box::new(room),
                shared,
                persistent || self.config.configured_rooms.contains(&*id),
            ),
            self.config.channel_capacity,
        );
        if let Err(e) = sent {
            return refuse(e);
        }
        self.workers[thread].rooms.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = ROOM_LOGS.take(Instant::now()) {
            tracing::info!(room = %id, room_type = %handle.shared.room_type, thread, suppressed, "room created");
        }
        directory.insert(id, handle.clone());
        Ok((handle, true))
    }

    /// The room `id` if it is open (and `room_type` is its type, or empty), or `None`
    /// if the directory has room for it.
    fn open_already(&self, directory: &RoomsById, id: &str, room_type: &str) -> Result<Option<RoomHandle>, PoolError> {
        match directory.get(id) {
            // An empty type joins whatever the room is; another type is a mistake to
            // report, not to paper over.
            Some(handle) if !room_type.is_empty() && *handle.shared.room_type != *room_type => {
                Err(PoolError::RoomTypeMismatch {
                    room: id.to_string(),
                    existing: handle.shared.room_type.to_string(),
                })
            }
            Some(handle) => Ok(Some(handle.clone())),
            None if directory.len() >= self.config.max_rooms => Err(PoolError::TooManyRooms),
            None => Ok(None),
        }
    }

    /// One page of the rooms `filter` lists, in id order: at most `limit` (capped at
    /// [`MAX_ROOMS_PER_PAGE`]) whose ids sort after `after` (empty: from the start),
    /// and where the next page starts (none: this is the last). A page looks at
    /// [`LIST_SCAN`] rooms at most, so a selective filter may answer a short page
    /// (even an empty one) that is not the last. It stops once its rooms are past
    /// `max_bytes` (see [`listing::listed_bytes`]). Under the directory's lock it only
    /// takes handles of the rooms it will look at; the filters run outside it.
    pub fn list_rooms(
        &self,
        filter: &RoomFilter<'_>,
        after: &str,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<proto::RoomInfo>, Option<String>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let limit = limit.min(MAX_ROOMS_PER_PAGE);
        let lower = if after.is_empty() { Unbounded } else { Excluded(after) };
        // Taken under the directory's lock (everyone's), filtered outside it.
        let scan: Vec<Arc<RoomShared>> = (self.directory.lock().range::<str, _>((lower, Unbounded)))
            .take(LIST_SCAN + 1)
            .map(|(_, handle)| handle.shared.clone())
            .collect();
        let mut rooms = Vec::new();
        let (mut last, mut bytes) = (None, 0);
        for (scanned, shared) in scan.iter().enumerate() {
            if rooms.len() == limit || scanned == LIST_SCAN || bytes > max_bytes {
                return (rooms, last.map(|shared: &Arc<RoomShared>| shared.id.to_string()));
            }
            last = Some(shared);
            if shared.listed(filter) {
                let info = shared.info();
                bytes += listing::listed_bytes(&info);
                rooms.push(info);
            }
        }
        (rooms, None)
    }

    /// Every open room, in id order (a snapshot for the cluster's leases).
    pub fn all_rooms(&self) -> Vec<Arc<RoomShared>> {
        self.directory.lock().values().map(|h| h.shared.clone()).collect()
    }

    /// The node is stopping: asks every thread to checkpoint all its rooms now and
    /// then tick them no more (so a room's checkpoint holds every input it
    /// acknowledged); each thread then sends [`Checkpoint::Flushed`]. Returns how many
    /// threads were asked (the number of `Flushed` to wait for). Cluster mode only
    /// (without a sink: 0, and the rooms run on until shutdown).
    pub fn hand_off(&self) -> usize {
        if self.config.checkpoints.is_none() {
            return 0;
        }
        // Before the rooms are told: an event taken after this would be acknowledged
        // to its sender and never relayed.
        self.handed_off.store(true, Ordering::Release);
        let mut asked = 0;
        for worker in &self.workers {
            let _gate = worker.hand_off_gate.write();
            if worker.send_unbounded(Command::HandOff) {
                asked += 1;
                if let Some(join) = &worker.join {
                    join.thread().unpark();
                }
            }
        }
        asked
    }

    /// Sends a command to the room's thread without blocking. A command that may find
    /// the room empty (anything but what its members send) wakes the thread: a thread
    /// whose rooms are all empty sleeps until the first of them expires.
    pub fn send(&self, room: &RoomHandle, command: Command) -> Result<(), PoolError> {
        let from_member = matches!(
            command,
            Command::Input { .. }
                | Command::Event { .. }
                | Command::Leave { .. }
                | Command::Resync { .. }
                | Command::UpdateRoom { .. }
        );
        let worker = &self.workers[room.thread];
        // What the checkpoint must hold if taken: refused once the rooms are handed off.
        let gated = matches!(
            command,
            Command::Event { .. }
                | Command::RemoveUser { .. }
                | Command::Close { .. }
                | Command::Join { .. }
                | Command::UpdateRoom { .. }
        );
        let gate = gated.then(|| worker.hand_off_gate.read());
        if gate.is_some() && self.handed_off.load(Ordering::Acquire) {
            return Err(PoolError::Unavailable("this node is stopping".into()));
        }
        worker.send(command, self.config.channel_capacity)?;
        if !from_member && let Some(join) = &worker.join {
            join.thread().unpark();
        }
        Ok(())
    }

    /// The last checkpoint of the room with this id did not reach the directory (see
    /// [`Command::CheckpointAgain`]); nothing for a room no longer open.
    pub fn checkpoint_again(&self, id: &str) {
        if let Some(room) = self.room(id) {
            self.send_owed(&room, Command::CheckpointAgain { room: room.key });
        }
    }

    /// Stops every thread and waits for them.
    pub fn shutdown(&mut self) {
        for worker in &self.workers {
            let _ = worker.send_unbounded(Command::Shutdown);
            // A thread sleeping until its next tick takes the command now.
            if let Some(join) = &worker.join {
                join.thread().unpark();
            }
        }
        for worker in &mut self.workers {
            if let Some(join) = worker.join.take() {
                let _ = join.join();
            }
        }
        self.directory.lock().clear();
    }
}

impl Drop for SimPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct OwnedRoom {
    room: Room,
    shared: Arc<RoomShared>,
    /// Created from the configuration: stays open while empty.
    persistent: bool,
    schedule: TickSchedule,
    empty_since: Option<Instant>,
    /// Someone has joined it (until then it waits at least [`FIRST_JOIN_WAIT`] for
    /// its creator's join).
    joined: bool,
    /// Its periodic checkpoints.
    checkpoints: PeriodicCheckpoints,
}

/// When a room's periodic checkpoints are written.
#[derive(Default)]
struct PeriodicCheckpoints {
    /// The fingerprint of the last checkpoint written, when, and how many since were
    /// not written because it had not changed.
    written: Option<(u64, Instant, u32)>,
    /// A checkpoint is due.
    due: bool,
    /// When a change written soon (see [`PeriodicCheckpoints::write_soon`]) is
    /// written, at the latest.
    soon_at: Option<Instant>,
    /// Periodic checkpoints wait until then (see [`Checkpoints::bytes_per_second`]).
    paced_until: Option<Instant>,
}

/// Changes written soon (bans) make at most one checkpoint of a room this often: a
/// backend banning many users in a row costs Redis one write a second, not one each.
const SOON_INTERVAL: Duration = Duration::from_secs(1);

impl PeriodicCheckpoints {
    /// Hands the sink `room`'s checkpoint after its tick `tick` when one is due. A
    /// checkpoint due while the simulation has yet to hear of joins or leaves (the
    /// members this tick removed) is taken at the next tick that leaves none. A room
    /// that did not change since its last checkpoint is not written again (an idle
    /// room of a megabyte would cost Redis a megabyte each time), but every tenth time
    /// all the same (a write Redis failed is made good then), and before Redis lets
    /// the last one expire. One that comes due sooner than the last one's size allows
    /// ([`Checkpoints::bytes_per_second`]) waits for the first tick after that.
    fn after_tick(&mut self, room: &mut Room, tick: u64, now: Instant, c: &Checkpoints) {
        self.due |= c.every_ticks > 0 && tick.is_multiple_of(u64::from(c.every_ticks));
        if !self.due || room.has_pending_sim_calls() || self.paced_until.is_some_and(|until| now < until) {
            return;
        }
        self.write(room, now, c);
    }

    /// Between ticks: a change the room's ticks would not bring to a checkpoint soon
    /// (a ban, which an empty room keeps without ticking) is written now, or after the
    /// next tick when the room has work pending, or [`SOON_INTERVAL`] after the last
    /// checkpoint when that was less than that ago (periodic checkpoints only).
    fn write_soon(&mut self, room: &mut Room, now: Instant, c: &Checkpoints) {
        if c.every_ticks == 0 {
            return;
        }
        let last = self.written.as_ref().map(|&(_, at, _)| at);
        let soon = last.map_or(now, |at| at + SOON_INTERVAL);
        self.soon_at = Some(self.soon_at.map_or(soon, |at| at.min(soon)));
        self.when_due(room, now, c);
    }

    /// Writes what [`PeriodicCheckpoints::write_soon`] left for later, once its time
    /// came and the room has no work pending (its ticks, which do that work, call
    /// this again after each).
    fn when_due(&mut self, room: &mut Room, now: Instant, c: &Checkpoints) {
        if self.soon_at.is_some_and(|at| now >= at) && !room.has_pending_work() {
            self.write(room, now, c);
        }
    }

    fn write(&mut self, room: &mut Room, now: Instant, c: &Checkpoints) {
        self.due = false;
        self.soon_at = None;
        // (A simulation that panics saving its state fails the room: not written.)
        let game_state = room.game_state();
        if room.failed() {
            return;
        }
        let fingerprint = room.checkpoint_fingerprint(&game_state);
        match &mut self.written {
            Some((last, at, skipped))
                if *last == fingerprint && *skipped < UNCHANGED_CHECKPOINTS && now - *at < c.rewrite_after =>
            {
                *skipped += 1;
            }
            written => {
                *written = Some((fingerprint, now, 0));
                let checkpoint = room.checkpoint_with(unix_micros(), game_state);
                // (At most `rewrite_after` apart all the same: what the room would lose.)
                let bytes = prost::Message::encoded_len(&checkpoint) as f64;
                let apart = Duration::from_secs_f64(bytes / c.bytes_per_second.max(1) as f64);
                self.paced_until = Some(now + apart.min(c.rewrite_after));
                (c.sink)(Checkpoint::Room(Box::new(checkpoint)));
            }
        }
    }
}

/// The sooner of two instants, either of which may be none.
fn sooner(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl OwnedRoom {
    /// When the room ticks next, if it ticks (it has members).
    fn next_tick(&self) -> Option<Instant> {
        (!self.room.is_vacant()).then(|| self.schedule.next_deadline())
    }

    /// When the thread must wake for this room: its next tick, or, while it is empty,
    /// when it expires (never for a persistent room).
    /// A checkpoint written soon may be due before either (while the room has work
    /// pending, its ticks write it once that is done: waking for it sooner would find
    /// it still not writable, again and again).
    fn wake_at(&self, empty_room_ttl: Duration) -> Option<Instant> {
        let pending = self.room.has_pending_work();
        let wake = match self.empty_since {
            Some(_) if self.room.is_vacant() && !pending => self.expires_at(empty_room_ttl),
            _ => Some(self.schedule.next_deadline()),
        };
        sooner(wake, self.checkpoints.soon_at.filter(|_| !pending))
    }

    /// When the room closes if it stays empty: none while it has members or kept
    /// seats, or when it is persistent.
    fn expires_at(&self, empty_room_ttl: Duration) -> Option<Instant> {
        let since = self.empty_since.filter(|_| !self.persistent && self.room.is_vacant())?;
        let ttl = if self.joined {
            empty_room_ttl
        } else {
            empty_room_ttl.max(FIRST_JOIN_WAIT)
        };
        Some(since + ttl)
    }
}

struct SimThread {
    rx: Receiver<Queuing>,
    /// Shared with the senders: decremented for every command received.
    queued: Arc<Queued>,
    rooms: Vec<OwnedRoom>,
    /// Position in `rooms` by room key.
    index: FxHashMap<RoomKey, usize>,
    room_count: Arc<AtomicU32>,
    directory: Arc<Mutex<RoomsById>>,
    creators: Arc<Mutex<Creators>>,
    metrics: Arc<SimMetrics>,
    max_catch_up: u32,
    empty_room_ttl: Duration,
    checkpoints: Option<Checkpoints>,
    /// The grid the rooms' schedules on this thread are laid on: rooms of one tick
    /// rate are due in [`TICK_PHASES`] phases, so the thread wakes at most that many
    /// times per period, not once per room.
    epoch: Instant,
    /// The phase the next room created gets (round robin).
    next_phase: u32,
    /// Set by [`Command::HandOff`]: the rooms stay as checkpointed.
    handed_off: bool,
    /// Told when this thread ticks next; holds each turn's wake-ups.
    pacer: Option<Arc<Pacer>>,
    /// This thread's number in the pool (and the pacer).
    number: usize,
}

/// Answers a leave or a resync (if it asks for an answer) of a session not seated in
/// the room: refused before (a full room, say) or taken over by another session
/// (`NOT_A_MEMBER`), or the room closed meanwhile (`ROOM_CLOSED`; the session got
/// `Left` for it too).
fn answer_not_seated(outbox: &Outbox, room_open: bool, request_id: u64, room_id: &str) {
    if request_id == 0 {
        return;
    }
    let error = if room_open {
        error_message(ErrorCode::NotAMember, "not a member of this room", request_id, room_id)
    } else {
        error_message(ErrorCode::RoomClosed, "room closed", request_id, room_id)
    };
    let _ = outbox.push_reliable(error);
}

/// Rooms on a thread tick in this many phases spread evenly over the period. One phase
/// for all would wake the thread least, but then every member of every room gets its
/// frame in the same instant and the transports write them in one burst (the relay
/// spends about 22 µs of CPU per frame it delivers, TLS and kernel included): in the
/// T4 load run (2,000 members on two cores) the median frame went out 15–25 ms after
/// its tick, and under 15 ms with eight phases. Eight phases cost at most eight
/// wake-ups per period.
const TICK_PHASES: u32 = 8;

/// Commands handled per turn before ticking again, so a command flood cannot starve
/// the ticks.
const COMMANDS_PER_TURN: usize = 4096;

impl SimThread {
    fn run(mut self) {
        self.serve();
        // Gone (shutdown): I/O threads wait for no tick of this thread's.
        if let Some(pacer) = &self.pacer {
            pacer.next_tick(self.number, None);
        }
    }

    fn serve(&mut self) {
        let (mut backlog, mut received) = (false, None);
        // No rooms yet: nothing to wake for.
        let mut wake_at = None;
        loop {
            match wake_at {
                // More commands wait than one turn takes: take them before sleeping.
                _ if backlog => {}
                // No rooms, only empty persistent ones, or rooms handed off: nothing to
                // do until a command (a new room, a join; shutdown) arrives.
                None => match self.rx.recv() {
                    Ok(command) => received = Some(command),
                    Err(_) => return,
                },
                // Sleep until the next tick (or an empty room's expiry). Senders do not
                // wake the thread (one wake-up per input was a quarter of the relay's
                // CPU): what they queue is taken at the tick, so a command waits at
                // most one period while a room on the thread has members (with none, it
                // sleeps until an empty room expires). Only a join or a close (its room
                // may be empty), a checkpoint request and shutdown unpark it early.
                Some(deadline) => {
                    let now = Instant::now();
                    if deadline > now {
                        std::thread::park_timeout(deadline - now);
                    }
                }
            }
            // What the turn leaves in outboxes reaches each I/O thread in one batch.
            let pacer = self.pacer.clone();
            let _turn = pacer.as_deref().map(Pacer::defer);
            if let Some(command) = received.take()
                && !self.take(command)
            {
                return;
            }
            match self.take_queued() {
                Some(more) => backlog = more,
                None => return,
            }
            self.tick_due_rooms();
            let next_tick;
            (wake_at, next_tick) = self.next_wakes();
            // Before the turn's wake-ups go: the woken I/O threads then sleep until
            // just before the next tick.
            if let Some(pacer) = &pacer {
                pacer.next_tick(self.number, next_tick);
            }
        }
    }

    /// When the thread must wake next (see `OwnedRoom::wake_at`), and when one of
    /// its rooms ticks next: none for rooms handed off.
    fn next_wakes(&self) -> (Option<Instant>, Option<Instant>) {
        if self.handed_off {
            return (None, None);
        }
        (self.rooms.iter()).fold((None, None), |(wake, tick), r| {
            (
                sooner(wake, r.wake_at(self.empty_room_ttl)),
                sooner(tick, r.next_tick()),
            )
        })
    }

    /// Handles the commands waiting, at most [`COMMANDS_PER_TURN`]; whether more
    /// wait, or `None` on shutdown.
    fn take_queued(&mut self) -> Option<bool> {
        for _ in 0..COMMANDS_PER_TURN {
            match self.rx.try_recv() {
                Ok(command) => {
                    if !self.take(command) {
                        return None;
                    }
                }
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => return Some(false),
            }
        }
        Some(true)
    }

    /// Handles one received command; false on shutdown.
    fn take(&mut self, (command, bytes): Queuing) -> bool {
        self.queued.commands.fetch_sub(1, Ordering::AcqRel);
        if bytes > 0 {
            self.queued.bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
        if matches!(command, Command::Shutdown) {
            return false;
        }
        self.handle(command);
        true
    }

    fn room_mut(&mut self, key: RoomKey) -> Option<&mut OwnedRoom> {
        let i = *self.index.get(&key)?;
        Some(&mut self.rooms[i])
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Create(room, shared, persistent) => {
                let rate = room.config().tick_rate;
                let phase = self.next_phase;
                self.next_phase = (phase + 1) % TICK_PHASES;
                let offset = Duration::from_secs(1) * phase / (rate.max(1) * TICK_PHASES);
                let schedule = TickSchedule::on_grid(self.epoch + offset, Instant::now(), rate, self.max_catch_up);
                self.index.insert(room.key(), self.rooms.len());
                self.rooms.push(OwnedRoom {
                    room: *room,
                    shared,
                    persistent,
                    schedule,
                    empty_since: Some(Instant::now()),
                    joined: false,
                    checkpoints: PeriodicCheckpoints::default(),
                });
                self.metrics.rooms.inc();
            }
            Command::Join {
                room,
                room_id,
                member,
                user_id,
                member_data,
                outbox,
                request_id,
                join_seq,
                reserved,
            } => match self.index.get(&room).map(|&i| &mut self.rooms[i]) {
                Some(r) => {
                    let joiner = Joiner {
                        member,
                        user_id,
                        data: member_data,
                    };
                    let _ = (r.room).admit(joiner, outbox, request_id, join_seq, unix_micros());
                    r.sync_members(&self.metrics);
                    if reserved {
                        r.shared.reserved.fetch_sub(1, Ordering::Release);
                    }
                }
                None => {
                    let error = error_message(ErrorCode::RoomClosed, "room closed; join again", request_id, &room_id);
                    outbox.leave_room(room, join_seq);
                    let _ = outbox.push_reliable(error);
                }
            },
            Command::Leave {
                room,
                room_id,
                member,
                outbox,
                request_id,
            } => {
                let metrics = self.metrics.clone();
                let left = self.room_mut(room).map(|r| {
                    let left = r.room.leave_session(member, &outbox, request_id);
                    r.sync_members(&metrics);
                    left
                });
                if left != Some(true) {
                    answer_not_seated(&outbox, left.is_some(), request_id, &room_id);
                }
            }
            Command::Input {
                room,
                member,
                seq,
                payload,
            } => {
                if let Some(r) = self.room_mut(room) {
                    r.room.push_input(member, seq, payload);
                }
            }
            Command::Event { room, member, event } => {
                if let Some(r) = self.room_mut(room) {
                    r.room.push_event(member, event);
                }
            }
            Command::Resync {
                room,
                room_id,
                member,
                outbox,
                request_id,
                joined_too,
            } => match self.room_mut(room) {
                Some(r) if r.room.seated(member, &outbox) => {
                    r.room.resync(member, request_id);
                    if joined_too {
                        r.room.send_joined(member);
                    }
                    self.metrics.resyncs.inc();
                }
                r => answer_not_seated(&outbox, r.is_some(), request_id, &room_id),
            },
            Command::UpdateRoom {
                room,
                room_id,
                member,
                outbox,
                request_id,
                update,
            } => match self.room_mut(room) {
                Some(r) if r.room.seated(member, &outbox) => {
                    let answer = match r.room.update_listing(member, &update, request_id) {
                        Ok(()) => {
                            crate::frame::encode_message(proto::server_message::Kind::Response(proto::Response {
                                request_id,
                                kind: Some(proto::response::Kind::Room(r.shared.info())),
                            }))
                        }
                        Err(refused) => refused,
                    };
                    let _ = outbox.push_reliable(answer);
                }
                r => answer_not_seated(&outbox, r.is_some(), request_id, &room_id),
            },
            Command::CheckpointAgain { room } => {
                if let Some(r) = self.room_mut(room) {
                    r.checkpoints.written = None;
                }
            }
            Command::HandOff => {
                if let Some(sink) = self.checkpoints.as_ref().map(|c| c.sink.clone()) {
                    let now = unix_micros();
                    let mut i = 0;
                    while i < self.rooms.len() {
                        // What the room was told before is done first, inputs
                        // included (they are in the checkpoint, so acknowledging
                        // them loses nothing).
                        let owned = &mut self.rooms[i];
                        let finished = catch_unwind(AssertUnwindSafe(|| owned.room.finish_pending(now)));
                        if finished.is_ok() {
                            let mut checkpoint = owned.room.checkpoint(now);
                            // What members over their share are still owed goes with it.
                            checkpoint.pending_events = owned.room.pending_events();
                            if !owned.room.failed() {
                                sink(Checkpoint::Room(Box::new(checkpoint)));
                                i += 1;
                                continue;
                            }
                        }
                        // Closed, as after any tick that panics (and its checkpoint
                        // with it: restoring an older one would lose what was
                        // acknowledged since).
                        room_panicked(&self.metrics, owned.room.id());
                        let closed = self.remove_room(i);
                        self.close_room(closed, Some((ErrorCode::RoomClosed, PANICKED)));
                    }
                    sink(Checkpoint::Flushed);
                }
                // Nothing after the checkpoints: an input applied now would be
                // acknowledged to its member and lost with this node.
                self.handed_off = true;
            }
            Command::Close { room, code, message } => {
                if let Some(&i) = self.index.get(&room) {
                    let closed = self.remove_room(i);
                    self.close_room(closed, Some((code, &message)));
                }
            }
            Command::RemoveUser {
                room,
                user_id,
                message,
                ban_secs,
            } => {
                if let Some(&i) = self.index.get(&room) {
                    let owned = &mut self.rooms[i];
                    owned.room.remove_user(&user_id, &message, ban_secs, unix_micros());
                    if let Some(c) = &self.checkpoints {
                        owned.checkpoints.write_soon(&mut owned.room, Instant::now(), c);
                    }
                }
            }
            Command::Roll { room, reply } => {
                if let Some(r) = self.room_mut(room) {
                    let _ = reply.try_send(r.room.roll(unix_micros()));
                }
            }
            Command::Shutdown => {}
        }
    }

    fn tick_due_rooms(&mut self) {
        if self.handed_off {
            return;
        }
        let now = Instant::now();
        let mut i = 0;
        while i < self.rooms.len() {
            let owned = &mut self.rooms[i];
            // A vacant room costs nothing: nobody would see its ticks (a join is a member
            // at once), once a tick has done what the last leaves left to do. (Seats
            // kept for a restored room's members lapse in ticks: it ticks till then.) Its
            // schedule stands still, and moves on without counting when one joins
            // (`sync_members`).
            let due = if owned.room.is_vacant() {
                u32::from(owned.room.has_pending_work())
            } else {
                let (overruns, dropped) = (owned.schedule.overruns(), owned.schedule.dropped());
                let due = owned.schedule.poll(now);
                self.metrics.overruns.inc_by(owned.schedule.overruns() - overruns);
                self.metrics.dropped_ticks.inc_by(owned.schedule.dropped() - dropped);
                due
            };
            let mut healthy = true;
            for _ in 0..due {
                let started = Instant::now();
                let result = catch_unwind(AssertUnwindSafe(|| owned.room.tick(unix_micros())));
                match result {
                    Ok(report) => {
                        if let Some(c) = &self.checkpoints {
                            owned.checkpoints.after_tick(&mut owned.room, report.tick, now, c);
                            if owned.room.failed() {
                                break; // its simulation panicked saving: no more ticks
                            }
                        }
                        let m = &self.metrics;
                        m.ticks.inc();
                        m.tick_duration.observe(started.elapsed().as_secs_f64());
                        m.frames.inc_by(u64::from(report.frames));
                        m.full_frames.inc_by(u64::from(report.full_frames));
                        m.bytes_encoded
                            .inc_by((report.delta_bytes + report.full_bytes + report.own_bytes) as u64);
                        m.inputs_refused.inc_by(u64::from(report.inputs_refused));
                        if owned.room.closing().is_some() {
                            break; // the simulation ended the room
                        }
                    }
                    Err(_) => {
                        room_panicked(&self.metrics, owned.room.id());
                        healthy = false;
                        break;
                    }
                }
            }
            if healthy && let Some(c) = &self.checkpoints {
                owned.checkpoints.when_due(&mut owned.room, now, c);
            }
            // A checkpoint (after a tick, or a ban's between ticks) found the
            // simulation panicking as it saved its state.
            if healthy && owned.room.failed() {
                room_panicked(&self.metrics, owned.room.id());
                healthy = false;
            }
            // Ticks evict members whose session is gone, and kept seats lapse: keep the
            // counts current.
            if owned.room.member_count() as u32 != owned.shared.members.load(Ordering::Relaxed)
                || owned.room.kept_seats() as u32 != owned.shared.kept.load(Ordering::Relaxed)
            {
                owned.sync_members(&self.metrics);
            }
            let expired = owned.expires_at(self.empty_room_ttl).is_some_and(|at| now >= at);
            let ended = owned.room.closing().map(str::to_string);
            if healthy && !expired && ended.is_none() {
                i += 1;
                continue;
            }
            let closed = self.remove_room(i);
            let why = if healthy { ended.as_deref() } else { Some(PANICKED) };
            self.close_room(closed, why.map(|why| (ErrorCode::RoomClosed, why)));
        }
    }

    /// Takes the room at `i` off this thread.
    fn remove_room(&mut self, i: usize) -> OwnedRoom {
        let removed = self.rooms.swap_remove(i);
        self.index.remove(&removed.room.key());
        if let Some(moved) = self.rooms.get(i) {
            self.index.insert(moved.room.key(), i);
        }
        removed
    }

    /// Tells the members why (unless it closed empty), then unlists the room, so
    /// anyone who sees it gone from the directory also finds the `Left` in its outbox.
    fn close_room(&mut self, closed: OwnedRoom, why: Option<(ErrorCode, &str)>) {
        let OwnedRoom { room, shared, .. } = closed;
        let key = room.key();
        // (A simulation that panics as it is dropped takes no other room of the
        // thread with it.)
        let ended = catch_unwind(AssertUnwindSafe(move || match why {
            Some((code, message)) => room.close(code, message),
            None => drop(room),
        }));
        if ended.is_err() {
            room_panicked(&self.metrics, &shared.id);
        }
        // The creator's slot and the close first: whoever sees the room gone may
        // count on the slot, and finds the close on its way (a cluster waits for it
        // before it claims the room again).
        if let Some(creator) = &shared.creator {
            release_creation(&self.creators, creator);
        }
        if let Some(checkpoints) = &self.checkpoints {
            (checkpoints.sink)(Checkpoint::Closed(shared.id.clone(), key));
        }
        {
            let mut directory = self.directory.lock();
            if directory.get(&shared.id).is_some_and(|h| h.key == key) {
                directory.remove(&shared.id);
            }
        }
        self.room_count.fetch_sub(1, Ordering::Relaxed);
        self.metrics.rooms.dec();
        if let Some(suppressed) = ROOM_LOGS.take(Instant::now()) {
            let reason = why.map_or("empty", |(_, message)| message);
            tracing::info!(room = %shared.id, reason, suppressed, "room closed");
        }
        let members = shared.members.load(Ordering::Relaxed);
        self.metrics.members.dec_by(i64::from(members));
    }
}

impl OwnedRoom {
    fn sync_members(&mut self, metrics: &SimMetrics) {
        let count = self.room.member_count() as u32;
        // Members first: a seat moves from kept to taken, and a reader that sees it no
        // longer kept sees it taken (see `RoomShared::seats_taken`).
        let before = self.shared.members.swap(count, Ordering::Release);
        self.shared.kept.store(self.room.kept_seats() as u32, Ordering::Release);
        metrics.members.inc_by(i64::from(count) - i64::from(before));
        let now = Instant::now();
        if count > 0 && self.empty_since.is_some() {
            // The schedule stood still while the room was empty: it moves on without
            // counting the slots passed as late (or running them).
            self.schedule.skip_to(now);
        }
        // Since it emptied: a join refused or a leave of no member (the room still
        // empty) does not start the wait for its close again.
        self.empty_since = if count == 0 {
            self.empty_since.or(Some(now))
        } else {
            None
        };
        self.joined |= count > 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::outbox::{Batch, OutboxLimits};
    use crate::engine::simulation::{Arena, ArenaConfig, Relay, SimContext, SimError};
    use crate::proto::server_message;

    /// A simulation whose step blocks while the gate holds a value, or panics on demand.
    struct Gated {
        gate: crossbeam_channel::Receiver<()>,
        panic_on_step: bool,
    }

    impl Simulation for Gated {
        fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
        fn leave(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
        fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> {
            Ok(())
        }
        fn step(&mut self, _: &mut SimContext<'_>) {
            assert!(!self.panic_on_step, "simulated game bug");
            // Blocks until the test drops the sender.
            let _ = self.gate.recv();
        }
    }

    /// A simulation that ends its room at its third tick (writing an entity then).
    struct Ending;

    impl Simulation for Ending {
        fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
        fn leave(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
        fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> {
            Ok(())
        }
        fn step(&mut self, ctx: &mut SimContext<'_>) {
            if ctx.tick == 3 {
                ctx.world.spawn(1, 0, 1, [(1, crate::state::Value::Int(3))]).unwrap();
                ctx.close_room("match over");
            }
        }
    }

    /// Leaves its simulation has heard of (only the farewell test makes them).
    static FAREWELLS: AtomicU32 = AtomicU32::new(0);

    /// A simulation that says farewell to everyone at each leave.
    struct Farewell;

    impl Simulation for Farewell {
        fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
        fn leave(&mut self, ctx: &mut SimContext<'_>, member: MemberId) {
            FAREWELLS.fetch_add(1, Ordering::SeqCst);
            ctx.send_event("farewell", member.to_string(), &[]);
        }
        fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> {
            Ok(())
        }
        fn step(&mut self, _: &mut SimContext<'_>) {}
    }

    fn pool(threads: usize, gate: crossbeam_channel::Receiver<()>) -> SimPool {
        SimPool::start(config(threads, gate)).unwrap()
    }

    fn config(threads: usize, gate: crossbeam_channel::Receiver<()>) -> PoolConfig {
        let fast = RoomConfig {
            tick_rate: 100,
            ..Default::default()
        };
        let mut room_types = HashMap::new();
        room_types.insert(
            "relay".to_string(),
            RoomType {
                config: fast.clone(),
                factory: Arc::new(|| Box::new(Relay::new())),
            },
        );
        // Arena rooms change every tick, so they send a frame every tick.
        room_types.insert(
            "arena".to_string(),
            RoomType {
                config: fast.clone(),
                factory: Arc::new(|| Box::new(Arena::new(ArenaConfig::default()))),
            },
        );
        let blocking_gate = gate.clone();
        room_types.insert(
            "blocking".to_string(),
            RoomType {
                config: fast.clone(),
                factory: Arc::new(move || {
                    Box::new(Gated {
                        gate: blocking_gate.clone(),
                        panic_on_step: false,
                    })
                }),
            },
        );
        room_types.insert(
            "ending".to_string(),
            RoomType {
                config: fast.clone(),
                factory: Arc::new(|| Box::new(Ending)),
            },
        );
        room_types.insert(
            "farewell".to_string(),
            RoomType {
                config: fast.clone(),
                factory: Arc::new(|| Box::new(Farewell)),
            },
        );
        room_types.insert(
            "broken".to_string(),
            RoomType {
                config: fast.clone(),
                factory: Arc::new(|| panic!("simulated game bug in a factory")),
            },
        );
        room_types.insert(
            "panicking".to_string(),
            RoomType {
                config: fast,
                factory: Arc::new(move || {
                    Box::new(Gated {
                        gate: gate.clone(),
                        panic_on_step: true,
                    })
                }),
            },
        );
        PoolConfig {
            threads,
            channel_capacity: 1024,
            max_rooms: 20,
            max_catch_up: 3,
            empty_room_ttl: Duration::from_secs(60),
            default_room_type: "relay".into(),
            room_types,
            creation: CreationLimits {
                max_open: 2,
                per_second: 1000.0,
                burst: 1000.0,
            },
            checkpoints: None,
            configured_rooms: HashSet::new(),
            pacer: None,
        }
    }

    fn join(pool: &SimPool, room: &str, room_type: &str, member: MemberId) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        let handle = pool.get_or_create(room, room_type).unwrap();
        pool.send(
            &handle,
            Command::Join {
                room: handle.key,
                room_id: handle.shared.id.clone(),
                member,
                user_id: "u".into(),
                member_data: Bytes::new(),
                outbox: outbox.clone(),
                request_id: 1,
                join_seq: 1,
                reserved: false,
            },
        )
        .unwrap();
        outbox
    }

    /// Waits (bounded) until `outbox` has delivered `frames` state frames; returns the
    /// reliable messages seen on the way.
    fn wait_for_frames(outbox: &Outbox, frames: usize) -> Vec<server_message::Kind> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut seen, mut reliable) = (0, Vec::new());
        let mut batch = Batch::default();
        while seen < frames {
            assert!(Instant::now() < deadline, "only {seen} of {frames} frames arrived");
            if outbox.drain(&mut batch) {
                seen += batch.states.len();
                for m in &batch.reliable {
                    use prost::Message;
                    reliable.push(proto::ServerMessage::decode(&m[..]).unwrap().kind.unwrap());
                }
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        reliable
    }

    #[test]
    fn rooms_tick_and_answer_through_outboxes() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(2, rx);
        let outbox = join(&pool, "lobby", "", 7);
        let messages = wait_for_frames(&outbox, 1);
        assert!(matches!(messages[0], server_message::Kind::Joined(ref j) if j.room == "lobby"));
        let (rooms, next) = pool.list_rooms(&RoomFilter::all(), "", 10, usize::MAX);
        assert_eq!(
            (rooms[0].members, rooms[0].room_type.as_str(), next),
            (1, "relay", None)
        );
        assert_eq!(
            pool.get_or_create("x", "nope").unwrap_err(),
            PoolError::unknown_room_type("nope", &pool.config.room_types)
        );
        let told = pool.get_or_create("x", "Relay").unwrap_err().to_string();
        assert!(
            told.starts_with("unknown room type `Relay`; did you mean `relay`? (this relay has: arena, blocking,"),
            "{told}"
        );
    }

    /// The last members leave together: the simulation hears of it at once, though
    /// nobody is left to tick for, and what it sends then goes to nobody, not to the
    /// next member to join.
    #[test]
    fn a_room_left_empty_finishes_its_tick_for_nobody() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        let first = join(&pool, "f", "farewell", 1);
        let second = join(&pool, "f", "farewell", 2);
        wait_for_frames(&first, 1);
        wait_for_frames(&second, 1);
        let handle = pool.room("f").unwrap();
        for (member, outbox) in [(1, &first), (2, &second)] {
            let leave = Command::Leave {
                room: handle.key,
                room_id: handle.shared.id.clone(),
                member,
                outbox: outbox.clone(),
                request_id: 0,
            };
            pool.send(&handle, leave).unwrap();
        }
        // Leaves are taken at the next tick of a room with members: another room's.
        let other = join(&pool, "busy", "arena", 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        while FAREWELLS.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "the simulation never heard of the leaves");
            wait_for_frames(&other, 1);
        }
        let newcomer = join(&pool, "f", "farewell", 4);
        let mut seen = wait_for_frames(&newcomer, 1);
        seen.extend(wait_for_frames(&newcomer, 3));
        let events: Vec<_> = seen
            .iter()
            .filter(|k| matches!(k, server_message::Kind::Event(_)))
            .collect();
        assert!(events.is_empty(), "the newcomer got {events:?}");
    }

    /// A leave or a resync from a session that is not in the room (its join was
    /// refused, or another session took its seat over) is answered `NOT_A_MEMBER` with
    /// the room's id, and the member that is in it stays.
    #[test]
    fn a_leave_or_resync_of_a_session_not_seated_is_answered() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        let seated = join(&pool, "r", "relay", 7);
        wait_for_frames(&seated, 1);
        let handle = pool.room("r").unwrap();
        let other = Arc::new(Outbox::new(OutboxLimits::default()));
        let room_id = handle.shared.id.clone();
        let leave = Command::Leave {
            room: handle.key,
            room_id: room_id.clone(),
            member: 7,
            outbox: other.clone(),
            request_id: 41,
        };
        pool.send(&handle, leave).unwrap();
        let resync = Command::Resync {
            room: handle.key,
            room_id,
            member: 7,
            outbox: other.clone(),
            request_id: 42,
            joined_too: false,
        };
        pool.send(&handle, resync).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut answers = Vec::new();
        while answers.len() < 2 {
            assert!(Instant::now() < deadline, "answered: {answers:?}");
            let mut batch = Batch::default();
            other.drain(&mut batch);
            for m in &batch.reliable {
                use prost::Message;
                if let Some(server_message::Kind::Error(e)) = proto::ServerMessage::decode(&m[..]).unwrap().kind {
                    answers.push((e.request_id, e.code(), e.room));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(answers, [41, 42].map(|id| (id, ErrorCode::NotAMember, "r".to_string())));
        assert_eq!(pool.list_rooms(&RoomFilter::all(), "", 10, usize::MAX).0[0].members, 1);
    }

    /// With no wait for empty rooms, a new room still waits for its creator's join
    /// (sent just after it was created, and taken by its thread maybe a tick later);
    /// once its members have left it closes at once.
    #[test]
    fn a_new_room_waits_for_its_first_join_whatever_the_empty_room_ttl() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let mut config = config(1, rx);
        config.empty_room_ttl = Duration::ZERO;
        let pool = SimPool::start(config).unwrap();
        // A room that ticks keeps the thread taking its commands.
        let busy = join(&pool, "busy", "arena", 1);
        wait_for_frames(&busy, 2);
        pool.get_or_create("new", "relay").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(pool.room("new").is_some(), "closed before its creator joined");
        let outbox = join(&pool, "new", "relay", 2);
        let handle = pool.room("new").unwrap();
        let leave = Command::Leave {
            room: handle.key,
            room_id: handle.shared.id.clone(),
            member: 2,
            outbox,
            request_id: 0,
        };
        pool.send(&handle, leave).unwrap();
        let deadline = Instant::now() + Duration::from_millis(900);
        while pool.room("new").is_some() {
            assert!(Instant::now() < deadline, "an emptied room waited as a new one");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// An empty room closes `empty_room_ttl` after it emptied, however many commands
    /// that leave it empty reach it meanwhile (here leaves of no member: each used to
    /// start the wait again, so that a client could keep an empty room open for ever).
    #[test]
    fn commands_that_leave_a_room_empty_do_not_put_its_close_off() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let mut config = config(1, rx);
        config.empty_room_ttl = Duration::from_millis(300);
        let pool = SimPool::start(config).unwrap();
        let outbox = join(&pool, "r", "relay", 1);
        let handle = pool.room("r").unwrap();
        let leave = |member| Command::Leave {
            room: handle.key,
            room_id: handle.shared.id.clone(),
            member,
            outbox: outbox.clone(),
            request_id: 0,
        };
        let members = || {
            pool.list_rooms(&RoomFilter::all(), "", 10, usize::MAX)
                .0
                .first()
                .map(|r| r.members)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while members() != Some(1) {
            assert!(Instant::now() < deadline, "the join was not applied");
            std::thread::sleep(Duration::from_millis(5));
        }
        pool.send(&handle, leave(1)).unwrap();
        // Ten times the wait, with a leave of nobody every 20 ms.
        let deadline = Instant::now() + Duration::from_secs(3);
        while pool.room("r").is_some() {
            assert!(Instant::now() < deadline, "the empty room stayed open");
            let _ = pool.send(&handle, leave(99));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An empty room does not tick (an empty arena used to move its NPCs for nobody
    /// until the room was reclaimed); it ticks again when someone joins.
    #[test]
    fn empty_rooms_do_not_tick() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        let outbox = join(&pool, "quiet", "arena", 7);
        wait_for_frames(&outbox, 5);
        let handle = pool.room("quiet").unwrap();
        let leave = Command::Leave {
            room: handle.key,
            room_id: handle.shared.id.clone(),
            member: 7,
            outbox: outbox.clone(),
            request_id: 0,
        };
        pool.send(&handle, leave).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.list_rooms(&RoomFilter::all(), "", 10, usize::MAX).0[0].members != 0 {
            assert!(Instant::now() < deadline, "the leave was not applied");
            std::thread::sleep(Duration::from_millis(5));
        }
        // One tick may have been under way; then none for 30 periods (100 Hz).
        std::thread::sleep(Duration::from_millis(20));
        let ticks = pool.metrics().ticks.get();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(pool.metrics().ticks.get(), ticks, "an empty room ticked");
        let (overruns, dropped) = (pool.metrics().overruns.get(), pool.metrics().dropped_ticks.get());
        let outbox = join(&pool, "quiet", "arena", 8);
        wait_for_frames(&outbox, 5);
        // The 30-odd slots passed while it was empty were neither late nor dropped.
        assert_eq!(pool.metrics().overruns.get(), overruns);
        assert_eq!(pool.metrics().dropped_ticks.get(), dropped);
    }

    /// An empty room's thread sleeps until the room expires, but a backend's call for
    /// the room (who is in it, a user's removal) is answered at once.
    #[test]
    fn a_backend_call_for_an_empty_room_wakes_its_thread() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = SimPool::start(config(1, rx)).unwrap();
        let handle = pool.get_or_create("quiet", "relay").unwrap();
        // The thread takes the room, then sleeps until it would expire (60 s).
        std::thread::sleep(Duration::from_millis(100));
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        pool.send(
            &handle,
            Command::Roll {
                room: handle.key,
                reply,
            },
        )
        .unwrap();
        let roll = answer.recv_timeout(Duration::from_secs(2)).expect("answered at once");
        assert!(roll.members.is_empty() && roll.kept_seats.is_empty());
    }

    /// A pool of `threads` whose rooms checkpoint every `every_ticks` ticks (0: on
    /// hand-off only), and what they checkpoint.
    fn checkpointing(threads: usize, every_ticks: u32) -> (SimPool, crossbeam_channel::Receiver<Checkpoint>) {
        checkpointing_with(threads, every_ticks, |_| {})
    }

    /// [`checkpointing`] of the configuration `edit` leaves.
    fn checkpointing_with(
        threads: usize,
        every_ticks: u32,
        edit: impl FnOnce(&mut PoolConfig),
    ) -> (SimPool, crossbeam_channel::Receiver<Checkpoint>) {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let (sink, checkpoints) = crossbeam_channel::unbounded();
        let mut config = config(threads, rx);
        config.checkpoints = Some(Checkpoints {
            every_ticks,
            seat_grace: Duration::from_secs(60),
            rewrite_after: Duration::from_secs(60),
            bytes_per_second: u64::MAX,
            sink: Arc::new(move |checkpoint| sink.send(checkpoint).unwrap()),
        });
        edit(&mut config);
        (SimPool::start(config).unwrap(), checkpoints)
    }

    /// A simulation that panics saving what it keeps beside the world.
    struct Unsavable;

    impl Simulation for Unsavable {
        fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
        fn leave(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
        fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> {
            Ok(())
        }
        fn step(&mut self, _: &mut SimContext<'_>) {}
        fn save(&self) -> Vec<u8> {
            panic!("simulated game bug in save")
        }
    }

    /// A checkpoint asks the simulation what it saves: one that panics there closes
    /// only its room, as a panic in a tick does; the thread's other rooms go on.
    /// Checkpoints after ticks, and the one a ban asks between ticks.
    #[test]
    fn a_simulation_that_panics_saving_closes_only_its_room() {
        let unsavable = |config: &mut PoolConfig| {
            let unsavable = RoomType {
                config: config.room_types["arena"].config.clone(),
                factory: Arc::new(|| Box::new(Unsavable)),
            };
            config.room_types.insert("unsavable".into(), unsavable);
        };
        let closed = |pool: &SimPool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while pool.room("bad").is_some() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the room whose save panics closes"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        // A ban's checkpoint, between ticks (the periodic ones too far apart).
        let (pool, _checkpoints) = checkpointing_with(1, 100_000, unsavable);
        let _bad = join(&pool, "bad", "unsavable", 1);
        std::thread::sleep(Duration::from_millis(100));
        Rooms::remove_user(&pool, "bad", "someone", "banned", 60)
            .unwrap()
            .unwrap();
        closed(&pool); // (by the thread: it lives)
        // Periodic checkpoints, after ticks.
        let (pool, checkpoints) = checkpointing_with(1, 2, unsavable);
        let _bad = join(&pool, "bad", "unsavable", 1);
        let _good = join(&pool, "field", "arena", 2);
        closed(&pool);
        let before = next_checkpoint_of(&checkpoints, "field").tick;
        assert!(
            next_checkpoint_of(&checkpoints, "field").tick > before,
            "the other room goes on"
        );
        // A hand-off's checkpoints: the room is closed, not checkpointed, and the
        // others are.
        let (pool, checkpoints) = checkpointing_with(1, 0, unsavable);
        let _bad = join(&pool, "bad", "unsavable", 1);
        let _good = join(&pool, "field", "arena", 2);
        pool.hand_off();
        let mut rooms = Vec::new();
        loop {
            match checkpoints.recv_timeout(Duration::from_secs(5)).unwrap() {
                Checkpoint::Room(c) => rooms.push(c.room),
                Checkpoint::Flushed => break,
                Checkpoint::Closed(..) => {}
            }
        }
        assert_eq!(rooms, ["field"]);
        closed(&pool);
    }

    /// A hand-off finishes what a room was told before its checkpoint (a member who
    /// just joined has its avatar in it), and from then on the pool takes no event.
    #[test]
    fn a_hand_off_finishes_what_rooms_were_told_and_takes_no_more_events() {
        let (pool, checkpoints) = checkpointing(1, 0);
        let _member = join(&pool, "field", "arena", 7);
        assert!(!Rooms::handed_off(&pool));
        pool.hand_off();
        assert!(Rooms::handed_off(&pool));
        let checkpoint = next_checkpoint_of(&checkpoints, "field");
        assert_eq!(
            avatars(&checkpoint, 7),
            1,
            "the join was finished before the checkpoint"
        );
        let handle = pool.room("field").unwrap();
        let event = Command::Event {
            room: handle.key,
            member: 7,
            event: proto::SendEvent::default(),
        };
        assert!(pool.send(&handle, event).is_err(), "no event taken after the hand-off");
        // Nor a join, seated after the checkpoint and never answered (the client is
        // told UNAVAILABLE and joins where the relay sends it).
        let join = Command::Join {
            room: handle.key,
            room_id: handle.shared.id.clone(),
            member: 8,
            user_id: "u".into(),
            member_data: Bytes::new(),
            outbox: Arc::new(Outbox::new(OutboxLimits::default())),
            request_id: 2,
            join_seq: 1,
            reserved: false,
        };
        let refused = pool.send(&handle, join).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Unavailable);
    }

    /// Events a hand-off could not relay to a member over its share (four ticks of it)
    /// go with the room's checkpoint, owed to that member.
    #[test]
    fn a_hand_off_checkpoints_the_events_still_owed() {
        let (pool, checkpoints) = checkpointing(1, 0);
        let _sender = join(&pool, "field", "arena", 7);
        let _flooded = join(&pool, "field", "arena", 8);
        let handle = pool.room("field").unwrap();
        // Five a tick fit a member's share (a quarter of 256 KiB).
        for n in 0..30 {
            let event = proto::SendEvent {
                room: "field".into(),
                kind: format!("e{n}"),
                payload: Bytes::from(vec![0; 12_000]),
                targets: vec![8],
            };
            (pool.send(
                &handle,
                Command::Event {
                    room: handle.key,
                    member: 7,
                    event,
                },
            ))
            .unwrap();
        }
        pool.hand_off();
        let pending = next_checkpoint_of(&checkpoints, "field").pending_events;
        let kinds: Vec<String> = pending.iter().map(|p| p.event.as_ref().unwrap().kind.clone()).collect();
        // (A tick of the room's own may have come between the events and the hand-off.)
        let relayed = 30 - kinds.len();
        assert!(relayed == 20 || relayed == 25, "{kinds:?}");
        assert_eq!(kinds, (relayed..30).map(|n| format!("e{n}")).collect::<Vec<_>>());
        assert!(pending.iter().all(|p| p.owed == [8]));
    }

    /// A user's removal sent before a hand-off is done before the room's checkpoint
    /// (its seat and avatar gone, its ban kept); after the hand-off, removals and closes
    /// are refused like events, not taken and lost with the node.
    #[test]
    fn a_hand_off_finishes_a_removal_and_takes_none_after() {
        let (pool, checkpoints) = checkpointing(1, 0);
        let _member = join(&pool, "field", "arena", 7);
        ban_from_field(&pool, "u");
        pool.hand_off();
        let checkpoint = next_checkpoint_of(&checkpoints, "field");
        assert!(checkpoint.seats.is_empty(), "{:?}", checkpoint.seats);
        assert_eq!(avatars(&checkpoint, 7), 0);
        let banned: Vec<&str> = checkpoint.bans.iter().map(|b| &*b.user_id).collect();
        assert_eq!(banned, ["u"]);
        let unavailable = |taken| matches!(taken, Some(Err(PoolError::Unavailable(_))));
        assert!(unavailable(Rooms::remove_user(&pool, "field", "u", "", 0)));
        assert!(unavailable(Rooms::close(&pool, "field", ErrorCode::RoomClosed, "")));
    }

    /// A ban reaches the room's checkpoint at once, not at the next periodic one (an
    /// empty room would take that only once it ticks again).
    #[test]
    fn a_ban_is_checkpointed_at_once() {
        let (pool, checkpoints) = checkpointing(1, 100_000);
        let _member = join(&pool, "field", "arena", 7);
        ban_from_field(&pool, "other");
        let checkpoint = next_checkpoint_of(&checkpoints, "field");
        let banned: Vec<&str> = checkpoint.bans.iter().map(|b| &*b.user_id).collect();
        assert_eq!(banned, ["other"]);
    }

    /// Bans in a row make one checkpoint at once and one a second later holding the
    /// rest, not one each; an empty room, which does not tick, wakes for it.
    #[test]
    fn bans_in_a_row_are_checkpointed_once_a_second() {
        let (pool, checkpoints) = checkpointing(1, 100_000);
        pool.open("field", "relay", "x", ListingState::default()).unwrap();
        let ban = |user: &str| ban_from_field(&pool, user);
        ban("first");
        assert_eq!(next_checkpoint_of(&checkpoints, "field").bans.len(), 1, "at once");
        let started = Instant::now();
        for i in 0..20 {
            ban(&format!("user{i}"));
        }
        let second = next_checkpoint_of(&checkpoints, "field");
        assert_eq!(second.bans.len(), 21);
        assert!(
            started.elapsed() >= Duration::from_millis(800),
            "{:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(1_500));
        let more = checkpoints
            .try_iter()
            .filter(|c| matches!(c, Checkpoint::Room(r) if r.room == "field"));
        assert_eq!(more.count(), 0, "one checkpoint for the twenty");
    }

    /// An event on its way to a thread as the node stops (checked against the
    /// hand-off, not yet queued) is queued before the thread's `HandOff`, so it is in
    /// the checkpoint: the hand-off waits for it. Queued after, it would be
    /// acknowledged to its sender and never relayed.
    #[test]
    fn a_hand_off_waits_for_an_event_on_its_way() {
        let (pool, _checkpoints) = checkpointing(1, 0);
        let pool = Arc::new(pool);
        let _member = join(&pool, "field", "arena", 7);
        // What `SimPool::send` holds from its check to its send.
        let on_its_way = pool.workers[0].hand_off_gate.read();
        let stopping = std::thread::spawn({
            let pool = pool.clone();
            move || pool.hand_off()
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !stopping.is_finished(),
            "the hand-off went ahead of an event on its way"
        );
        drop(on_its_way);
        assert_eq!(stopping.join().unwrap(), 1);
    }

    /// A node stopping hands its rooms off: each is checkpointed, then ticks no more,
    /// so no input is applied (and acknowledged to its member) after its checkpoint:
    /// the node that restores the room from it loses nothing its members were told.
    #[test]
    fn a_handed_off_room_stops_at_its_checkpoint() {
        let (pool, checkpoints) = checkpointing(2, 0);
        let outbox = join(&pool, "world", "arena", 7);
        wait_for_frames(&outbox, 3);
        assert_eq!(pool.hand_off(), 2, "both threads asked");
        let received: Vec<Checkpoint> = (0..3)
            .map(|_| checkpoints.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        let rooms: Vec<&str> = (received.iter())
            .filter_map(|c| match c {
                Checkpoint::Room(room) => Some(room.room.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(rooms, ["world"]);
        // Each thread's ticks before its `Flushed` are counted: none after.
        let ticks = pool.metrics().ticks.get();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(pool.metrics().ticks.get(), ticks, "a room ticked after its checkpoint");
    }

    /// Removes `user` from room "field" with a minute's ban, the room's thread taking it.
    fn ban_from_field(pool: &SimPool, user: &str) {
        assert!(matches!(Rooms::remove_user(pool, "field", user, "", 60), Some(Ok(()))));
    }

    /// The next checkpoint of `room` the sink gets (within 5 s), skipping the others.
    fn next_checkpoint_of(checkpoints: &crossbeam_channel::Receiver<Checkpoint>, room: &str) -> proto::RoomCheckpoint {
        loop {
            match checkpoints.recv_timeout(Duration::from_secs(5)).unwrap() {
                Checkpoint::Room(c) if c.room == room => break *c,
                _ => {}
            }
        }
    }

    /// The entities `member` owns in an arena room's checkpoint.
    fn avatars(checkpoint: &proto::RoomCheckpoint, member: MemberId) -> usize {
        let schema = Arc::new(ArenaConfig::default().schema().unwrap());
        let mut mirror = crate::mirror::StateMirror::with_schema(schema);
        mirror
            .apply(&prost::Message::decode(&checkpoint.state[..]).unwrap())
            .unwrap();
        mirror.world().entities().filter(|e| e.owner() == member).count()
    }

    /// A checkpoint that comes due while the simulation has yet to hear of a leave (a
    /// member its tick removed) waits for the next tick: written at once, it would
    /// hold the leaver's avatar but not its seat, and the simulation of a room
    /// restored from it would never hear of that leave.
    #[test]
    fn a_checkpoint_waits_for_the_simulation_to_hear_of_every_leave() {
        let arena = Box::new(Arena::new(ArenaConfig::default()));
        let mut room = Room::new(1, "field".into(), "arena".into(), RoomConfig::default(), arena);
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        room.join(7, "u".into(), outbox, 1, 1).unwrap();
        let joined = room.tick(0).tick;
        let (sink, written) = crossbeam_channel::unbounded();
        let every_tick = Checkpoints {
            every_ticks: 1,
            seat_grace: Duration::from_secs(60),
            rewrite_after: Duration::from_secs(60),
            bytes_per_second: u64::MAX,
            sink: Arc::new(move |checkpoint| sink.send(checkpoint).unwrap()),
        };
        let mut periodic = PeriodicCheckpoints::default();
        // As a tick's removal leaves it: the member gone, its simulation not yet told.
        room.leave(7, 0);
        periodic.after_tick(&mut room, joined, Instant::now(), &every_tick);
        assert!(
            written.is_empty(),
            "a checkpoint was written before the simulation heard of the leave"
        );
        let report = room.tick(0);
        periodic.after_tick(&mut room, report.tick, Instant::now(), &every_tick);
        let Ok(Checkpoint::Room(checkpoint)) = written.try_recv() else {
            panic!("no checkpoint after the next tick");
        };
        assert_eq!(avatars(&checkpoint, 7), 0, "the leaver's avatar is in the checkpoint");
    }

    /// A room's periodic checkpoints are at least its checkpoint's size over
    /// `bytes_per_second` apart: a room that changes every tick (the arena's moving
    /// NPCs) but whose checkpoint takes longer than a tick at that rate waits.
    #[test]
    fn a_large_rooms_checkpoints_are_paced_by_their_size() {
        let arena = Box::new(Arena::new(ArenaConfig::default()));
        let mut room = Room::new(1, "field".into(), "arena".into(), RoomConfig::default(), arena);
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        room.join(7, "u".into(), outbox, 1, 1).unwrap();
        let (sink, written) = crossbeam_channel::unbounded();
        let paced = Checkpoints {
            every_ticks: 1,
            seat_grace: Duration::from_secs(60),
            rewrite_after: Duration::from_secs(60),
            bytes_per_second: 1024,
            sink: Arc::new(move |checkpoint| sink.send(checkpoint).unwrap()),
        };
        let mut periodic = PeriodicCheckpoints::default();
        let start = Instant::now();
        let mut tick_at = |room: &mut Room, at: Instant| {
            let tick = room.tick(0).tick;
            periodic.after_tick(room, tick, at, &paced);
            match written.try_recv() {
                Ok(Checkpoint::Room(checkpoint)) => Some(checkpoint),
                _ => None,
            }
        };
        let first = tick_at(&mut room, start).expect("the first is written at once");
        let apart = Duration::from_secs_f64(prost::Message::encoded_len(&*first) as f64 / 1024.0);
        assert!(apart > Duration::from_millis(100), "{apart:?}");
        for n in 1..10 {
            assert!(
                tick_at(&mut room, start + apart * n / 10).is_none(),
                "written {n} tenths early"
            );
        }
        let second = tick_at(&mut room, start + apart).expect("written once its time came");
        assert!(second.tick > first.tick);
    }

    /// A room that does not change is checkpointed every tenth time only (an idle
    /// room of a megabyte would cost Redis a megabyte a second otherwise).
    #[test]
    fn an_unchanged_room_is_not_checkpointed_every_time() {
        let (pool, checkpoints) = checkpointing(1, 1);
        let outbox = join(&pool, "quiet", "relay", 7);
        wait_for_frames(&outbox, 1);
        std::thread::sleep(Duration::from_millis(50));
        let (ticks, taken) = (pool.metrics().ticks.get(), checkpoints.len());
        std::thread::sleep(Duration::from_millis(500));
        let ticks = pool.metrics().ticks.get() - ticks;
        let written = (checkpoints.len() - taken) as u64;
        assert!(ticks >= 20, "{ticks} ticks");
        assert!(
            (1..=ticks / 10 + 2).contains(&written),
            "{written} checkpoints in {ticks} ticks of an idle room"
        );
    }

    /// A checkpoint Redis did not take has the room's next one written even if
    /// nothing changed ([`SimPool::checkpoint_again`]), not the tenth after it.
    #[test]
    fn a_checkpoint_asked_again_is_written_sooner_than_the_tenth_tick() {
        let (pool, checkpoints) = checkpointing(1, 1);
        let outbox = join(&pool, "quiet", "relay", 7);
        wait_for_frames(&outbox, 1);
        let next = || loop {
            match checkpoints.recv_timeout(Duration::from_secs(10)) {
                Ok(Checkpoint::Room(checkpoint)) => break checkpoint.tick,
                Ok(_) => {}
                Err(e) => panic!("no checkpoint: {e}"),
            }
        };
        // Unchanged, the room is written every tenth tick: asked again just after a
        // write, the next comes sooner. (A few tries: this thread may be descheduled
        // for the ten ticks between.)
        let gaps: Vec<u64> = (0..5)
            .map(|_| {
                while checkpoints.try_recv().is_ok() {}
                let written = next();
                pool.checkpoint_again("quiet");
                next() - written
            })
            .collect();
        assert!(gaps.iter().any(|&gap| gap < 5), "ticks between checkpoints: {gaps:?}");
    }

    #[test]
    fn a_blocked_room_does_not_delay_a_room_on_another_thread() {
        let (gate, rx) = crossbeam_channel::bounded::<()>(0);
        let pool = pool(2, rx);
        let _blocked = join(&pool, "heavy", "blocking", 1);
        // Least-loaded placement puts the second room on the other thread.
        let outbox = join(&pool, "light", "arena", 2);
        wait_for_frames(&outbox, 50);
        assert!(pool.metrics().ticks.get() >= 50);
        drop(gate);
    }

    /// Sends member 1's inputs to `room` until its thread refuses one, and returns the
    /// refusal: once the thread is stuck in the room's step, the 1,024 waiting
    /// commands of the test pool fill up.
    fn fill_until_refused(pool: &SimPool, room: &str) -> PoolError {
        let room = pool.room(room).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for seq in 1.. {
            let input = Command::Input {
                room: room.key,
                member: 1,
                seq,
                payload: input::Payload::Intent(Default::default()),
            };
            match pool.send(&room, input) {
                Ok(()) => assert!(Instant::now() < deadline, "never refused"),
                Err(e) => return e,
            }
        }
        unreachable!("more inputs than a u64 counts")
    }

    #[test]
    fn a_thread_with_its_queue_full_answers_busy_then_recovers() {
        let (gate, rx) = crossbeam_channel::bounded::<()>(0);
        let pool = pool(1, rx);
        let _member = join(&pool, "heavy", "blocking", 1);
        assert_eq!(fill_until_refused(&pool, "heavy"), PoolError::Busy);
        // Released, the thread works through the queue and takes commands again.
        drop(gate);
        let room = pool.room("heavy").unwrap();
        let input = || Command::Input {
            room: room.key,
            member: 1,
            seq: u64::MAX,
            payload: input::Payload::Intent(Default::default()),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.send(&room, input()).is_err() {
            assert!(Instant::now() < deadline, "still busy");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Large payloads fill a stuck thread's queue by bytes long before its count
    /// bound: 8 MiB events, at most 64 MiB of them wait.
    #[test]
    fn a_thread_with_too_many_payload_bytes_waiting_answers_busy() {
        let (gate, rx) = crossbeam_channel::bounded::<()>(0);
        let pool = pool(1, rx);
        let _member = join(&pool, "heavy", "blocking", 1);
        let room = pool.room("heavy").unwrap();
        let event = || Command::Event {
            room: room.key,
            member: crate::state::SERVER,
            event: SendEvent {
                payload: vec![0; 8 << 20].into(),
                ..Default::default()
            },
        };
        // Wait for the thread to be stuck in the room's step (nothing is taken).
        std::thread::sleep(Duration::from_millis(200));
        let taken = (0..20).take_while(|_| pool.send(&room, event()).is_ok()).count();
        assert!((7..=8).contains(&taken), "{taken} events of 8 MiB queued");
        drop(gate);
    }

    #[test]
    fn listings_page_in_id_order() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(2, rx);
        for id in ["c", "a", "d", "b", "e"] {
            pool.get_or_create(id, "relay").unwrap();
        }
        let ids = |page: &[proto::RoomInfo]| page.iter().map(|r| r.room.clone()).collect::<Vec<_>>();
        let (first, next) = pool.list_rooms(&RoomFilter::all(), "", 2, usize::MAX);
        assert_eq!(
            (ids(&first), next),
            (vec!["a".to_string(), "b".into()], Some("b".into()))
        );
        let (rest, next) = pool.list_rooms(&RoomFilter::all(), "b", 10, usize::MAX);
        assert_eq!(
            (ids(&rest), next),
            (vec!["c".to_string(), "d".into(), "e".into()], None)
        );
        assert_eq!(pool.list_rooms(&RoomFilter::all(), "e", 10, usize::MAX), (vec![], None));
        // Past its bytes a page stops (one room past them: the session cuts it exact).
        let one = listing::listed_bytes(&first[0]);
        let (cut, next) = pool.list_rooms(&RoomFilter::all(), "", 10, one);
        assert_eq!((ids(&cut), next), (vec!["a".to_string(), "b".into()], Some("b".into())));
    }

    fn listed(metadata: &[(&str, &str)], private: bool) -> ListingState {
        ListingState {
            metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            private,
            ..ListingState::default()
        }
    }

    #[test]
    fn listings_filter_by_type_metadata_and_openness_and_never_show_private_rooms() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        let ctf = listed(&[("mode", "ctf")], false);
        pool.open("a", "relay", "x", ctf.clone()).unwrap();
        pool.open("b", "arena", "x", ctf.clone()).unwrap();
        pool.open("hidden", "relay", "y", listed(&[("mode", "ctf")], true))
            .unwrap();
        pool.open("dm", "relay", "y", listed(&[("mode", "dm")], false)).unwrap();
        let locked = pool.open("locked", "relay", "z", ctf.clone()).unwrap();
        locked.shared.listing.update(|l| l.locked = true);
        // Every page, each looking at a few rooms.
        let ids = |filter: RoomFilter<'_>| {
            let (mut all, mut after) = (Vec::new(), String::new());
            loop {
                let (page, next) = pool.list_rooms(&filter, &after, 100, usize::MAX);
                all.extend(page.into_iter().map(|r| r.room));
                match next {
                    Some(next) => after = next,
                    None => return all,
                }
            }
        };
        assert_eq!(ids(RoomFilter::all()), ["a", "b", "dm", "locked"]);
        let relay_ctf = RoomFilter {
            room_type: "relay",
            metadata: &ctf.metadata,
            open_only: false,
        };
        assert_eq!(ids(relay_ctf), ["a", "locked"]);
        assert_eq!(
            ids(RoomFilter {
                open_only: true,
                ..relay_ctf
            }),
            ["a"]
        );
        let (page, _) = pool.list_rooms(&relay_ctf, "a", 1, usize::MAX);
        assert_eq!((page[0].metadata.clone(), page[0].locked), (ctf.metadata, true));
    }

    #[test]
    fn quick_joins_fill_the_fullest_open_room_and_never_overbook_one() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        let ctf = listed(&[("mode", "ctf")], false);
        for (id, listing) in [
            ("a", ctf.clone()),
            ("b", ctf.clone()),
            ("dm", listed(&[("mode", "dm")], false)),
            ("hidden", listed(&[("mode", "ctf")], true)),
        ] {
            pool.open(id, "", id, listing).unwrap();
        }
        let b = pool.room("b").unwrap();
        join(&pool, "b", "", 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.shared.members.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "the join was not handled");
            std::thread::sleep(Duration::from_millis(1));
        }
        let nothing = |_: &RoomShared| false;
        // The fullest first, then the other: every seat once, then none.
        let mut picked = Vec::new();
        while let Some(room) = pool.pick("", &ctf.metadata, &nothing) {
            picked.push(room.shared.id.to_string());
        }
        assert_eq!(picked.len(), 2 * 64 - 1);
        assert!(picked[..63].iter().all(|id| id == "b") && picked[63..].iter().all(|id| id == "a"));
        assert!(pool.pick("relay", &ctf.metadata, &nothing).is_none());
        // A reserved join handled gives its reservation back as a member.
        pool.send(
            &b,
            Command::Join {
                room: b.key,
                room_id: b.shared.id.clone(),
                member: 2,
                user_id: "u".into(),
                member_data: Bytes::new(),
                outbox: Arc::new(Outbox::new(OutboxLimits::default())),
                request_id: 1,
                join_seq: 1,
                reserved: true,
            },
        )
        .unwrap();
        while b.shared.members.load(Ordering::Relaxed) == 1 {
            assert!(Instant::now() < deadline, "the join was not handled");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(b.shared.reserved.load(Ordering::Relaxed), 62);
        // Skipped rooms (the session is in them, or its token forbids them) are not picked.
        b.shared.reserved.store(0, Ordering::Relaxed);
        let not_b = |room: &RoomShared| &*room.id == "b";
        assert!(pool.pick("", &ctf.metadata, &not_b).is_none());
    }

    /// A filtered page looks at so many rooms at most, and says where it stopped; a
    /// quick join looks at as many of those that match.
    #[test]
    fn a_filtered_listing_or_a_quick_join_looks_at_so_many_rooms() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        let ctf = listed(&[("mode", "ctf")], false);
        let rare = RoomFilter {
            metadata: &ctf.metadata,
            ..RoomFilter::all()
        };
        // More rooms than one page looks at; the one that matches comes after them.
        let ids: Vec<String> = (0..=LIST_SCAN).map(|i| format!("r{i}")).collect();
        for id in &ids {
            pool.create_persistent(id, "relay", &Metadata::new()).unwrap();
        }
        pool.open("z", "relay", "x", ctf.clone()).unwrap();
        let (page, next) = pool.list_rooms(&rare, "", 10, usize::MAX);
        assert!(page.is_empty());
        assert_eq!(next.as_deref(), Some(ids[LIST_SCAN - 1].as_str()), "where it stopped");
        let (page, next) = pool.list_rooms(&rare, &ids[LIST_SCAN - 1], 10, usize::MAX);
        assert_eq!((page.len(), page[0].room.as_str(), next), (1, "z", None));
        // A quick join looks at that many of the rooms whose metadata matches: the
        // others, however many, hide none (nor once one changed to match).
        let nothing = |_: &RoomShared| false;
        let pick = || {
            let picked = pool.pick("relay", &ctf.metadata, &nothing)?;
            picked.shared.reserved.store(0, Ordering::Relaxed); // its seat given back
            Some(picked.shared.id.to_string())
        };
        let set_metadata = |id: &str, metadata: &Metadata| {
            let room = pool.room(id).unwrap();
            room.shared.listing.merge_metadata(metadata).unwrap();
        };
        for _ in 0..10 {
            assert_eq!(pick().as_deref(), Some("z"));
        }
        set_metadata("z", &listed(&[("mode", "race")], false).metadata);
        assert_eq!(pick(), None);
        set_metadata(&ids[2], &ctf.metadata);
        assert_eq!(pick(), Some(ids[2].clone()));
        // With more that match than it looks at, that many from a random one on: the
        // picks vary.
        for id in &ids {
            set_metadata(id, &ctf.metadata);
        }
        let picks: HashSet<Option<String>> = (0..100).map(|_| pick()).collect();
        assert!(picks.len() > 1, "{picks:?}");
    }

    /// Rooms a quick join could never pick (private, locked or full), however many
    /// sort before an open one, take nothing of its scan; nor do rooms of other types.
    #[test]
    fn rooms_a_quick_join_cannot_pick_do_not_hide_one_it_can() {
        let (gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        // Dropped before the pool, which waits for its thread, should an assertion fail.
        let _gate = gate;
        let ctf = listed(&[("mode", "ctf")], false);
        let mut full_rooms = Vec::new();
        for i in 0..=LIST_SCAN {
            let (private, locked, full) = (format!("a-private-{i}"), format!("b-locked-{i}"), format!("c-full-{i}"));
            pool.open(&private, "relay", &private, listed(&[("mode", "ctf")], true))
                .unwrap();
            let locked = pool.open(&locked, "relay", &locked, ctf.clone()).unwrap();
            locked.shared.listing.set_locked(true);
            full_rooms.push(pool.open(&full, "relay", &full, ctf.clone()).unwrap());
        }
        for i in 0..2 {
            pool.create_persistent(&format!("0-arena-{i}"), "arena", &ctf.metadata)
                .unwrap();
        }
        pool.open("z", "relay", "x", ctf.clone()).unwrap();
        // The rooms are made full only once the thread is stuck in a room's step (the
        // arenas' ticks stop): its passes over the rooms set their counts back to their
        // members, none.
        let _blocked = join(&pool, "stuck", "blocking", 1);
        assert_eq!(fill_until_refused(&pool, "stuck"), PoolError::Busy);
        for full in &full_rooms {
            full.shared.members.store(full.shared.max_members, Ordering::Relaxed);
        }
        let nothing = |_: &RoomShared| false;
        for _ in 0..10 {
            let picked = pool.pick("relay", &ctf.metadata, &nothing);
            assert_eq!(picked.map(|r| r.shared.id.to_string()).as_deref(), Some("z"));
        }
    }

    /// Seats a restored room keeps for the members of its checkpoint count as taken:
    /// a room whose kept seats fill it is not open.
    #[test]
    fn kept_seats_of_a_restored_room_count_as_taken_until_they_lapse() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let mut config = config(1, rx);
        let grace = Duration::from_secs(2);
        config.checkpoints = Some(Checkpoints {
            every_ticks: 0,
            seat_grace: grace,
            rewrite_after: Duration::from_secs(60),
            bytes_per_second: u64::MAX,
            sink: Arc::new(|_| {}),
        });
        // Configured: an empty room that never closes.
        config.configured_rooms.insert("restored".into());
        let pool = SimPool::start(config).unwrap();
        let restored_at = Instant::now();
        let state = proto::StateFrame {
            room: "restored".into(),
            tick: 1,
            ..Default::default()
        };
        let seat = |member_id| proto::Seat {
            member_id,
            user_id: format!("u{member_id}"),
            last_input_seq: 0,
            member_data: Default::default(),
            ..Default::default()
        };
        let checkpoint = proto::RoomCheckpoint {
            room: "restored".into(),
            room_type: "relay".into(),
            tick: 1,
            state: prost::Message::encode_to_vec(&state).into(),
            seats: (1..=64).map(seat).collect(),
            ..Default::default()
        };
        let room = pool.restore(&checkpoint).unwrap().unwrap();
        assert_eq!(room.shared.occupied(), 64);
        assert!(pool.restore(&checkpoint).unwrap().is_none(), "open already");
        let nothing = |_: &RoomShared| false;
        assert!(
            pool.pick("relay", &Metadata::new(), &nothing).is_none(),
            "full of kept seats"
        );
        let open = RoomFilter {
            open_only: true,
            ..RoomFilter::all()
        };
        assert_eq!(pool.list_rooms(&open, "", 10, usize::MAX), (vec![], None));
        assert!(restored_at.elapsed() < grace, "checked within the grace");
        // Nobody came back: the empty room ticks until the seats lapse, then has room.
        let deadline = Instant::now() + grace + Duration::from_secs(5);
        while room.shared.occupied() > 0 {
            assert!(Instant::now() < deadline, "kept seats never lapsed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(pool.pick("relay", &Metadata::new(), &nothing).is_some());
    }

    /// Waits until `room` is closed (10 s at most).
    fn wait_closed(pool: &SimPool, room: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.room(room).is_some() {
            assert!(Instant::now() < deadline, "the room was not closed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The first `Left` waiting in `outbox`: (reason, message).
    fn left_of(outbox: &Outbox) -> Option<(i32, String)> {
        last_frame_and_left(outbox).1
    }

    /// What a member of a closed room takes in two writes (its `Left` waits for the
    /// room's last frame): the tick of the last state frame before the `Left`, and
    /// the `Left`'s reason and message.
    fn last_frame_and_left(outbox: &Outbox) -> (Option<Tick>, Option<(i32, String)>) {
        use prost::Message;
        let mut batch = Batch::default();
        let mut last = None;
        for _ in 0..2 {
            outbox.drain(&mut batch);
            last = batch.states.iter().map(|s| s.tick).max().or(last);
            let left = (batch.reliable.iter()).find_map(|m| match proto::ServerMessage::decode(&m[..]).unwrap().kind {
                Some(server_message::Kind::Left(l)) => Some((l.reason, l.message)),
                _ => None,
            });
            if left.is_some() {
                return (last, left);
            }
        }
        (last, None)
    }

    #[test]
    fn a_panicking_simulation_closes_only_its_room() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        let doomed = join(&pool, "doomed", "panicking", 1);
        let healthy = join(&pool, "fine", "arena", 2);
        wait_closed(&pool, "doomed");
        let left = left_of(&doomed).map(|(reason, _)| reason);
        assert_eq!(
            left,
            Some(ErrorCode::RoomClosed as i32),
            "members are told the room closed"
        );
        // The same thread keeps ticking the healthy room.
        wait_for_frames(&healthy, 20);
        assert_eq!(pool.metrics().room_panics.get(), 1);
    }

    #[test]
    fn a_simulation_ends_its_room_and_the_members_are_told_why() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        pool.open("final", "ending", "x", ListingState::default()).unwrap();
        let member = join(&pool, "final", "ending", 1);
        wait_closed(&pool, "final");
        let (last, left) = last_frame_and_left(&member);
        assert_eq!(last, Some(3), "the closing tick's state, before the Left");
        assert_eq!(left, Some((ErrorCode::RoomClosed as i32, "match over".to_string())));
        // Its creator's slot came back: two more rooms for "x".
        pool.open("a", "relay", "x", ListingState::default()).unwrap();
        pool.open("b", "relay", "x", ListingState::default()).unwrap();
        assert_eq!(pool.metrics().room_panics.get(), 0);
    }

    #[test]
    fn a_simulation_that_panics_as_its_room_opens_refuses_that_join_only() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        for _ in 0..3 {
            // More than the creator's two rooms: each refusal gave its slot back.
            let refused = pool.open("bad", "broken", "x", ListingState::default()).unwrap_err();
            assert_eq!(refused.code(), ErrorCode::RoomClosed, "{refused}");
        }
        assert_eq!(pool.metrics().room_panics.get(), 3);
        assert!(pool.room("bad").is_none());
        pool.open("b", "relay", "x", ListingState::default()).unwrap();
        wait_for_frames(&join(&pool, "fine", "arena", 2), 5);
    }

    #[test]
    fn a_creator_has_so_many_rooms_open_and_gets_a_slot_back_when_one_closes() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = pool(1, rx);
        pool.open("doomed", "panicking", "x", ListingState::default()).unwrap();
        pool.open("b", "relay", "x", ListingState::default()).unwrap();
        let refused = pool.open("c", "relay", "x", ListingState::default()).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::LimitExceeded);
        assert!(refused.to_string().contains("2 rooms open"), "{refused}");
        // Joining a room that exists creates nothing; other creators are unaffected.
        pool.open("b", "relay", "x", ListingState::default()).unwrap();
        pool.open("d", "relay", "y", ListingState::default()).unwrap();
        // A member makes the panicking room tick, and it closes.
        let _member = join(&pool, "doomed", "panicking", 1);
        wait_closed(&pool, "doomed");
        pool.open("c", "relay", "x", ListingState::default()).unwrap();
    }

    /// A creator whose rooms close as soon as they open (a game closing rooms as they
    /// empty) does not start again with a whole burst: its rate is remembered while
    /// its bucket refills.
    #[test]
    fn a_creators_rate_outlives_its_rooms() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let mut config = config(1, rx);
        config.creation = CreationLimits {
            max_open: 10,
            per_second: 0.001,
            burst: 2.0,
        };
        let pool = SimPool::start(config).unwrap();
        for _ in 0..2 {
            let key = pool.take_creation("x").unwrap();
            release_creation(&pool.creators, &key);
        }
        let refused = pool.take_creation("x").unwrap_err();
        assert!(refused.to_string().contains("too fast"), "{refused}");
    }

    /// With no rooms to create, a creator is refused without being remembered.
    #[test]
    fn no_creations_at_all_remember_no_creator() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let mut config = config(1, rx);
        config.creation.max_open = 0;
        let pool = SimPool::start(config).unwrap();
        pool.create_persistent("lobby", "relay", &Metadata::new()).unwrap();
        let refused = pool.open("c", "relay", "x", ListingState::default()).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::LimitExceeded);
        assert!(refused.to_string().contains("create no rooms"), "{refused}");
        assert!(pool.creators.lock().is_empty());
        pool.open("lobby", "relay", "x", ListingState::default()).unwrap();
    }

    /// A room the configuration keeps open carries its metadata: quick joins with
    /// filters find it before anyone joined it.
    #[test]
    fn a_configured_rooms_metadata_is_matched_by_quick_joins() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let pool = SimPool::start(config(1, rx)).unwrap();
        let canyon: Metadata = [("map".to_string(), "canyon".to_string())].into();
        pool.create_persistent("lobby", "relay", &canyon).unwrap();
        let picked = pool.pick("relay", &canyon, &|_| false).map(|h| h.shared.id.to_string());
        assert_eq!(picked.as_deref(), Some("lobby"));
        let desert: Metadata = [("map".to_string(), "desert".to_string())].into();
        assert!(pool.pick("relay", &desert, &|_| false).is_none());
    }

    /// A room's simulation is built outside the directory's lock: a slow factory holds
    /// up no other join. Of two joins racing to open one id, the one that finishes
    /// second joins the other's room and gives its creation slot back.
    #[test]
    fn a_room_is_built_outside_the_directory_lock() {
        let (_gate, rx) = crossbeam_channel::bounded(0);
        let mut config = config(1, rx);
        let (started_tx, started) = crossbeam_channel::bounded(1);
        let (go, go_rx) = crossbeam_channel::bounded::<()>(1);
        let first = std::sync::atomic::AtomicBool::new(true);
        let slow = RoomType {
            config: RoomConfig::default(),
            factory: Arc::new(move || {
                if first.swap(false, Ordering::Relaxed) {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                }
                Box::new(Relay::new())
            }),
        };
        config.room_types.insert("slow".into(), slow);
        let pool = Arc::new(SimPool::start(config).unwrap());
        let opening = std::thread::spawn({
            let pool = pool.clone();
            move || pool.open("r", "slow", "x", ListingState::default())
        });
        started.recv().unwrap();
        assert!(
            pool.directory.try_lock().is_some(),
            "the directory is locked while a room is built"
        );
        pool.get_or_create("other", "relay").unwrap();
        let opened = pool.open("r", "slow", "y", ListingState::default()).unwrap();
        go.send(()).unwrap();
        let joined = opening.join().unwrap().unwrap();
        assert_eq!(joined.key, opened.key, "one room r");
        assert_eq!(pool.all_rooms().len(), 2);
        // Both of x's slots are free: the room x built was dropped.
        pool.open("x1", "relay", "x", ListingState::default()).unwrap();
        pool.open("x2", "relay", "x", ListingState::default()).unwrap();
    }
}
