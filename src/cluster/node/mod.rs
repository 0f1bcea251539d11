//! This node's part in the cluster: it answers its sessions' directory work (claims
//! before joins of rooms not open here, listings) and keeps the leases of the rooms
//! open here.
//!
//! Rooms checkpoint their state every `[cluster] checkpoint_ticks` ticks; one task
//! writes the checkpoints to Redis (batched: one round trip for what is waiting). A
//! claim that takes a room not open here restores it from its checkpoint, if one is
//! kept: that is how a room survives its node. A node that stops hands its rooms off
//! ([`Cluster::hand_off`]): a checkpoint of every room, written, then its leases
//! released, before its sessions are told to go.
//!
//! The same task drops the rooms that close here from the directory, with their
//! checkpoints, trying again while Redis fails (until the checkpoint has lapsed
//! anyway); a claim of such a room here waits for its close (see
//! [`crate::cluster::closing`]).
//!
//! Leases are kept by another task: every third of the lease period it renews the
//! leases of the rooms open here, with their member counts. A room whose lease
//! lapsed (a Redis outage longer than a lease, or a round that came too late) is
//! claimed again; if another node took it meanwhile, the room closes here and its
//! members are told to join again (which redirects them to the new owner). The
//! sessions' records are kept by a third, at the same pace, so that writing many of
//! them again does not delay a renewal.
//!
//! Here: the [`Cluster`] and what the rest share; in `claims`: claims, quick joins and
//! listings across nodes; `sessions`: session records and ids; `checkpoints`: writing,
//! restoring and handing off rooms; `calls`: calls between nodes; `leases`: the
//! tasks that keep leases and records alive.

mod calls;
mod checkpoints;
mod claims;
mod leases;
mod sessions;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::Notify;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, BusMessage};
use super::directory::{Directory, DirectoryError, Node, RoomEntry};
use super::held::{HOLD_FOR, HOLD_POLL, Held, RoomState};
use super::redis_directory::{RedisDirectory, SessionTake, SessionsKept};
use crate::clock::unix_micros;
use crate::cluster::closing::Closing;
use crate::config::Placement;
use crate::config::urls::http_base;
use crate::engine::listing::{ListingState, Metadata};
use crate::engine::outbox::RoomKey;
use crate::engine::pacer;
use crate::engine::rooms::{Command, PoolError, RoomFilter, RoomShared, Rooms};
use crate::engine::sim_pool::{Checkpoint, SimPool};
use crate::error::CloseReason;
use crate::log_budget::LogBudget;
use crate::metrics::Metrics;
use crate::proto::{self, ErrorCode, RoomClose, SendEvent, UserLive, UserRemoval};
use crate::session::auth::room_allowed;
use crate::session::directory::{ANOTHER_START, Claim, DirectoryOp, DirectoryReply, Found, Opening, closed_as_joined};
use crate::state::SERVER;

/// How long a resume waits for the session's node to be gone (see
/// [`Cluster::take_session`]): less than the clients' 5 s for an answer.
const TAKE_SESSION_WAIT: Duration = Duration::from_secs(4);

/// The open rooms of other nodes a quick join reads per round trip (the fullest
/// first): each entry may hold kilobytes of metadata.
const QUICK_JOIN_SCAN: usize = 64;

/// ... and at most (their ids in one round trip, their entries in eight), among those
/// whose metadata matches the quick join's filters (the directory's index of open rooms
/// by metadata entry: rooms of other metadata take nothing of this): matching rooms
/// that do not fit otherwise (this node's, rooms banning the user or that its token
/// does not allow) hide one that does only past this many.
const QUICK_JOIN_SCAN_MAX: usize = 8 * QUICK_JOIN_SCAN;

/// How long a node's quick joins share what they read of the directory's open rooms
/// (its member counts are a renewal old anyway): however many quick joins a second
/// come, a node reads the open rooms of a type matching the same filters at most this
/// often.
const OPEN_ROOMS_FRESH: Duration = Duration::from_millis(500);

/// A quick join's search of other nodes' rooms answers within this (else
/// `UNAVAILABLE`), under the clients' 5 s wait for an answer.
const FIND_OPEN_WAIT: Duration = Duration::from_secs(4);

/// What a node read of the directory's open rooms of a type matching some filters, for
/// its quick joins (see [`OPEN_ROOMS_FRESH`]).
struct OpenRooms {
    read_at: Instant,
    /// The fullest open rooms' ids, fullest first.
    ids: Vec<String>,
    /// How many of them were read on.
    read: usize,
    /// The entries of those read, in order (those still open).
    entries: Vec<RoomEntry>,
    /// The URLs of the nodes looked up (`None`: dead).
    urls: HashMap<String, Option<String>>,
}

impl OpenRooms {
    /// Read within [`OPEN_ROOMS_FRESH`].
    fn fresh(&self) -> bool {
        self.read_at.elapsed() < OPEN_ROOMS_FRESH
    }
}

/// One key's read (none yet, or being made), locked by the search using it.
type OpenRoomsSlot = Arc<tokio::sync::Mutex<Option<OpenRooms>>>;

/// Directory entries a listing page reads, at most (one round trip): each may hold
/// kilobytes of metadata, and a search that matches nothing must not read the
/// whole directory.
const LIST_CHUNK: usize = 200;

/// A directory operation taking longer than this is answered `UNAVAILABLE`.
const DIRECTORY_TIMEOUT: Duration = Duration::from_secs(2);

/// Events from other nodes a room did not take: at most one line a second.
static CALLS_NOT_TAKEN: LogBudget = LogBudget::new("calls_not_taken", 1);

/// Directory failure lines: at most one a second (`suppressed` counts the rest).
static DIRECTORY_LOGS: LogBudget = LogBudget::new("directory", 1);

/// See the module documentation.
pub struct Cluster {
    directory: RedisDirectory,
    bus: Bus,
    pool: Arc<SimPool>,
    metrics: Arc<Metrics>,
    node: Node,
    settings: NodeSettings,
    /// Set when the node starts stopping: no more claims.
    stopping: AtomicBool,
    /// Stops the lease task before the hand-off releases the rooms.
    leases_stop: CancellationToken,
    /// Held through each renewal: the hand-off's release waits for one under way.
    /// Holds each room's [`Listing::closings`](crate::engine::listing::Listing::closings)
    /// as of the last renewal, and whether it was locked (or private) then.
    renewing: tokio::sync::Mutex<HashMap<String, (u64, bool)>>,
    /// Rooms closed here whose close has not reached Redis.
    closing: Arc<Closing>,
    /// [`Checkpoint::Flushed`] markers written, and a wake-up for each.
    flushed: AtomicUsize,
    flush: Notify,
    /// Where this node's clients go when it stops: set by [`Cluster::hand_off`].
    destinations: OnceLock<Destinations>,
    /// Keys of the seat tickets' hashes (see [`Cluster::seat_ticket`]), drawn at start.
    seat_keys: [std::hash::RandomState; 2],
    /// The records of this node's sessions, live or parked, by resume token: written
    /// again when Redis lost them, and the node numbers of the ones continued from
    /// other nodes kept in use (see [`RedisDirectory::keep_sessions`]).
    sessions: parking_lot::Mutex<HashMap<String, proto::SessionRecord>>,
    /// A session record's write failed: every record is written again at the next
    /// renewal.
    rewrite_sessions: AtomicBool,
    /// Ended sessions whose record Redis did not forget (it was away): tried again at
    /// each renewal (the records' hash lives on with the node's, and a record left
    /// there could be continued on another node once this one died).
    unforgotten: parking_lot::Mutex<Vec<String>>,
    /// Rooms not open here that claims are under way for (a restore among them), and
    /// how many: calls from other nodes for them wait (see `cluster::held`).
    opening: Arc<parking_lot::Mutex<HashMap<String, usize>>>,
    /// Set when the inbox took [`BusMessage::CallsStopped`]: every call other nodes
    /// published before this node stopped taking them has reached its room.
    calls_drained: AtomicBool,
    calls_drained_notify: Notify,
    /// What this node's quick joins read of other nodes' open rooms, by room type and
    /// filters: one read at a time per key, searches of other keys not waiting for it
    /// (older than [`OPEN_ROOMS_FRESH`] and not in use, they go as searches come).
    open_rooms: parking_lot::Mutex<HashMap<(String, Metadata), OpenRoomsSlot>>,
}

/// How this node takes part in the cluster.
#[derive(Debug, Clone, Copy)]
pub struct NodeSettings {
    /// Room leases (`[cluster] lease_ms`).
    pub lease: Duration,
    /// Checkpoints larger than this are not written.
    pub max_checkpoint_bytes: usize,
    /// How long Redis keeps a checkpoint after its last write.
    pub checkpoint_ttl: Duration,
    /// This node start's number (see [`RedisDirectory::register_node`]).
    pub number: u64,
    /// The sessions' resume grace: session records outlive the node's last renewal
    /// by a lease plus this.
    pub resume_grace: Duration,
    /// Where rooms that no node owns open (`[cluster] placement`).
    pub placement: Placement,
}

/// Where a stopping node sends its clients (`GoingAway`): the members of one room all
/// to one live node, so the room opens there from its checkpoint without redirects.
/// Rooms are dealt out largest first, each to the node with the fewest members
/// counting those already sent to it; a session in no room goes to the node left
/// with the fewest.
#[derive(Debug, Default, PartialEq)]
struct Destinations {
    /// The live nodes' URLs.
    urls: Vec<String>,
    /// Each room's node, an index into `urls`.
    rooms: HashMap<String, usize>,
    /// The node for sessions in no room (`None`: no live node).
    fewest: Option<usize>,
}

impl Destinations {
    /// Deals `rooms` (id, members) out to the live `nodes` (node, members).
    fn plan(rooms: impl IntoIterator<Item = (String, u64)>, nodes: impl IntoIterator<Item = (Node, u64)>) -> Self {
        let (urls, mut loads): (Vec<String>, Vec<u64>) = nodes.into_iter().map(|(node, load)| (node.url, load)).unzip();
        let lightest = |loads: &[u64]| (0..loads.len()).min_by_key(|&i| loads[i]);
        let mut rooms: Vec<(String, u64)> = rooms.into_iter().collect();
        rooms.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut dealt = HashMap::with_capacity(rooms.len());
        for (room, members) in rooms {
            let Some(node) = lightest(&loads) else { break };
            loads[node] += members.max(1);
            dealt.insert(room, node);
        }
        Self {
            fewest: lightest(&loads),
            urls,
            rooms: dealt,
        }
    }

    /// The node for a session in `rooms`: the first one's that has a node.
    fn for_rooms<'a>(&self, rooms: impl IntoIterator<Item = &'a str>) -> Option<&str> {
        let mut rooms = rooms.into_iter();
        let node = rooms.find_map(|room| self.rooms.get(room).copied()).or(self.fewest)?;
        Some(&self.urls[node])
    }
}

/// Under [`Placement::LeastLoaded`], a room opens elsewhere only on a node with at
/// least this many members fewer than the node asked (and a fifth fewer): nodes
/// about equally loaded keep their own rooms, and two nodes never send a join back
/// and forth on figures that moved between their renewals.
const PLACEMENT_MARGIN: u64 = 8;

/// Session ids are this node start's number shifted by this many bits, plus a
/// counter: below 2^53 (exact in JavaScript) with numbers up to 8191.
const SESSION_ID_BITS: u32 = 40;

/// What the checkpoint writer has received and not written yet.
#[derive(Default)]
struct Pending {
    /// The latest checkpoint of each room.
    rooms: HashMap<Arc<str>, proto::RoomCheckpoint>,
    /// Rooms that closed since (their checkpoints and entries go).
    closed: HashMap<Arc<str>, Closes>,
    /// [`Checkpoint::Flushed`] markers: done once this batch is written.
    flushed: usize,
}

impl Pending {
    fn add(&mut self, checkpoint: Checkpoint) {
        match checkpoint {
            Checkpoint::Room(room) => {
                let id: Arc<str> = room.room.as_str().into();
                self.rooms.insert(id, *room);
            }
            Checkpoint::Closed(id, key) => {
                self.rooms.remove(&id);
                self.close(
                    id,
                    Closes {
                        received: 1,
                        failing_since: None,
                        key,
                    },
                );
            }
            Checkpoint::Flushed => self.flushed += 1,
        }
    }

    /// Adds closes of `room` to write (new, or failed and tried again).
    fn close(&mut self, room: Arc<str>, more: Closes) {
        let closes = self.closed.entry(room).or_default();
        closes.received += more.received;
        closes.failing_since = closes.failing_since.or(more.failing_since);
        closes.key = closes.key.max(more.key);
    }

    fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.closed.is_empty() && self.flushed == 0
    }
}

/// The closes of one room a batch received.
#[derive(Default)]
struct Closes {
    /// How many (each marked in [`Closing`]).
    received: u32,
    /// When writing it first failed.
    failing_since: Option<Instant>,
    /// The key of the last room closed (keys grow: a room open under the id with a
    /// larger one opened since).
    key: RoomKey,
}

impl Closes {
    /// Whether the room open under the id now (its key, if one is) opened after the
    /// last close (a join found the room gone and opened it anew): its entry stays.
    /// The room that closed may still be in the pool's directory (it leaves it after
    /// it sent its close): that one's close is written.
    fn opened_since(&self, open: Option<RoomKey>) -> bool {
        open.is_some_and(|key| key > self.key)
    }
}

/// What writing one batch of checkpoints did.
struct Written {
    /// Its [`Checkpoint::Flushed`] markers.
    flushed: usize,
    /// The closes that failed, to be tried again.
    failed: Vec<(Arc<str>, Closes)>,
}

/// How long a seat ticket is good for.
const SEAT_TICKET_TTL: Duration = Duration::from_secs(60);

/// Checkpoints taken from the channel at once, at most.
const CHECKPOINTS_PER_WRITE: usize = 256;

/// Bytes of checkpoints one write to Redis carries, at most (one larger checkpoint
/// goes alone).
const CHECKPOINT_WRITE_BYTES: usize = 8 << 20;

/// Ended sessions' tokens kept for their records to be forgotten once Redis is back,
/// at most (beyond, a record stays until the node's own records expire).
const MAX_UNFORGOTTEN: usize = 65_536;

/// Of those, how many a renewal tries again.
const FORGETS_PER_RENEWAL: usize = 64;

/// How often one node of the cluster sweeps the room indexes.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Whether a join creating a room with `listing` may be sent to another node: one
/// with options (metadata, private) opens here, since the join sent again would not
/// carry them all (a quick join's metadata is the server's).
fn placeable(listing: &ListingState) -> bool {
    listing.metadata.is_empty() && !listing.private
}

/// The answer to a claim on a stopping node.
fn stopping() -> PoolError {
    PoolError::Unavailable("this node is stopping; join through another".into())
}

/// How long a stopping node waits for its rooms' checkpoints to be written.
const HAND_OFF_WAIT: Duration = Duration::from_secs(3);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish()
    }
}

impl Cluster {
    /// This node of the cluster whose directory is `directory` and whose nodes talk
    /// over `bus`; `closing` is marked by the pool's checkpoint sink as rooms close.
    pub fn new(
        directory: RedisDirectory,
        bus: Bus,
        pool: Arc<SimPool>,
        closing: Arc<Closing>,
        metrics: Arc<Metrics>,
        settings: NodeSettings,
    ) -> Self {
        let node = directory.node().clone();
        metrics.directory_up.set(1);
        Self {
            directory,
            bus,
            pool,
            metrics,
            node,
            settings,
            stopping: AtomicBool::new(false),
            leases_stop: CancellationToken::new(),
            renewing: tokio::sync::Mutex::default(),
            closing,
            flushed: AtomicUsize::new(0),
            flush: Notify::new(),
            destinations: OnceLock::new(),
            seat_keys: [std::hash::RandomState::new(), std::hash::RandomState::new()],
            sessions: parking_lot::Mutex::default(),
            rewrite_sessions: AtomicBool::new(false),
            unforgotten: parking_lot::Mutex::default(),
            opening: Arc::default(),
            calls_drained: AtomicBool::new(false),
            calls_drained_notify: Notify::new(),
            open_rooms: parking_lot::Mutex::default(),
        }
    }

    /// This node, as clients reach it.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The directory entry of a room open here, as it is now.
    fn entry_of(&self, room: &RoomShared) -> RoomEntry {
        RoomEntry {
            room: room.id.to_string(),
            room_type: room.room_type.to_string(),
            node: self.node.id.clone(),
            members: room.occupied(),
            max_members: room.max_members,
            listing: room.listing.get(),
            banned: room.bans.digests(unix_micros()),
            unsettled_keys: Default::default(),
        }
    }

    /// The directory entry of a room of `room_type` (empty: the default) opened here.
    fn entry(&self, room: &str, room_type: &str, listing: ListingState) -> Result<RoomEntry, PoolError> {
        let config = self.pool.config();
        let type_name = if room_type.is_empty() {
            config.default_room_type.as_str()
        } else {
            room_type
        };
        let spec = (config.room_types.get(type_name))
            .ok_or_else(|| PoolError::unknown_room_type(type_name, config.room_types.keys()))?;
        Ok(RoomEntry {
            room: room.to_string(),
            room_type: type_name.to_string(),
            node: self.node.id.clone(),
            members: 0,
            max_members: spec.config.max_members as u32,
            listing,
            // The renewals list a restored room's bans.
            banned: Vec::new(),
            unsettled_keys: Default::default(),
        })
    }

    /// Runs a directory operation with a deadline, counting failures.
    async fn call<T>(&self, operation: impl Future<Output = Result<T, DirectoryError>>) -> Result<T, PoolError> {
        let error = match tokio::time::timeout(DIRECTORY_TIMEOUT, operation).await {
            Ok(Ok(value)) => {
                if self.metrics.directory_up.set(1) == 0 {
                    tracing::info!("room directory reachable again");
                }
                return Ok(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer from the room directory within {DIRECTORY_TIMEOUT:?}"),
        };
        self.metrics.directory_errors.inc();
        self.metrics.directory_up.set(0);
        if let Some(suppressed) = DIRECTORY_LOGS.take(Instant::now()) {
            tracing::warn!(suppressed, "{error}");
        }
        Err(PoolError::Unavailable(format!(
            "the room directory is unavailable; retry shortly ({error})"
        )))
    }

    /// Why this node should get no new clients, if it should not (`Err`): it is
    /// stopping. `Ok` with a warning when it serves, but its last directory call
    /// failed: rooms open here play on and take joins, rooms elsewhere and new ones
    /// wait for Redis, on every node alike (so no node is taken out for it).
    pub fn readiness(&self) -> Result<Option<&'static str>, &'static str> {
        if self.stopping.load(Ordering::Acquire) {
            Err("stopping: its rooms are moving to other nodes")
        } else if self.metrics.directory_up.get() == 0 {
            Ok(Some(
                "the room directory (Redis) is unreachable: new rooms and rooms on other nodes wait for it",
            ))
        } else {
            Ok(None)
        }
    }
}

/// Why a room whose copy here is out of date ([`Claim::Superseded`]) closes.
const SUPERSEDED: &str = "this node's copy of the room is out of date: the room was claimed again while the node was cut off from Redis; join it again";

/// A room no node holds, whose checkpoint Redis keeps.
fn between_nodes() -> PoolError {
    PoolError::Unavailable(
        "no node runs the room now, and Redis keeps its checkpoint: a member's join (or a call that changes the room) brings it back; retry"
            .into(),
    )
}

/// Logs what became of an HTTP API `call` another node handed to this one.
fn log_call_from_elsewhere(taken: Option<Result<(), PoolError>>, call: &str, room: &str) {
    match taken {
        Some(Ok(())) => tracing::info!(%room, "{call} from the HTTP API on another node taken"),
        Some(Err(e)) => tracing::warn!(%room, "{call} from the HTTP API on another node not taken: {e}"),
        None => tracing::debug!(%room, "{call} from another node for a room not open here; dropped"),
    }
}

/// The number of the node that issued a resume token (`<node>.<random>`).
fn token_node(token: &str) -> Option<u64> {
    token.split_once('.').and_then(|(number, _)| number.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(url: &str) -> Node {
        Node {
            id: url.to_string(),
            url: url.to_string(),
        }
    }

    fn rooms(rooms: &[(&str, u64)]) -> Vec<(String, u64)> {
        rooms
            .iter()
            .map(|(room, members)| (room.to_string(), *members))
            .collect()
    }

    /// A close is written unless the room opened again since: the room that closed
    /// may still be found under its id (its close is sent before it leaves the
    /// pool), and a backend's close of a room restored here was dropped for it.
    #[test]
    fn a_close_is_written_unless_the_room_opened_again_since() {
        let mut pending = Pending::default();
        pending.add(Checkpoint::Closed("r".into(), 4));
        pending.add(Checkpoint::Closed("r".into(), 7));
        let closes = &pending.closed["r"];
        assert_eq!(closes.received, 2);
        assert!(!closes.opened_since(None), "gone");
        assert!(!closes.opened_since(Some(7)), "the room that closed, still found");
        assert!(closes.opened_since(Some(8)), "opened anew");
    }

    #[test]
    fn rooms_are_dealt_to_the_least_loaded_nodes_largest_first() {
        let nodes = [(node("b"), 10), (node("c"), 4)];
        let plan = Destinations::plan(rooms(&[("small", 2), ("big", 8), ("empty", 0), ("mid", 5)]), nodes);
        // big → c (4 → 12); mid → b (10 → 15); small → c (12 → 14); empty → c (14 → 15).
        let of = |room| plan.for_rooms([room]);
        assert_eq!(
            [of("big"), of("mid"), of("small"), of("empty")],
            [Some("c"), Some("b"), Some("c"), Some("c")]
        );
        // A session in no room (or only in rooms not dealt) goes to the lightest node
        // left: b and c both hold 15, the first wins.
        assert_eq!(plan.for_rooms([]), Some("b"));
        assert_eq!(plan.for_rooms(["gone", "mid"]), Some("b"));
        assert_eq!(plan.for_rooms(["gone", "small"]), Some("c"));
    }

    #[test]
    fn without_a_live_node_no_client_is_sent_anywhere() {
        let plan = Destinations::plan(rooms(&[("room", 3)]), []);
        assert_eq!((plan.for_rooms(["room"]), plan.for_rooms([])), (None, None));
    }
}
