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
//! [`super::closing`]).
//!
//! Leases are kept by another task: every third of the lease period it renews the
//! leases of the rooms open here, with their member counts. A room whose lease
//! lapsed (a Redis outage longer than a lease, or a round that came too late) is
//! claimed again; if another node took it meanwhile, the room closes here and its
//! members are told to join again (which redirects them to the new owner). The
//! sessions' records are kept by a third, at the same pace, so that writing many of
//! them again does not delay a renewal.

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
use super::closing::Closing;
use super::directory::{Directory, DirectoryError, Node, RoomEntry};
use super::held::{HOLD_FOR, HOLD_POLL, Held, RoomState};
use super::redis_directory::{RedisDirectory, SessionTake, SessionsKept};
use crate::clock::unix_micros;
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

    /// The first session id of this node: ids are unique in the cluster, so a session
    /// can continue on another node as the same member.
    pub fn first_session_id(&self) -> u64 {
        (self.settings.number << SESSION_ID_BITS) + 1
    }

    /// A new resume token: this node start's number, a dot, 32 random hex digits.
    pub fn resume_token(&self) -> String {
        format!("{}.{}", self.settings.number, crate::session::auth::resume_token())
    }

    /// Records a new session, so that it can continue on another node (written to
    /// Redis in the background).
    pub fn save_session(self: &Arc<Self>, token: &str, session_id: u64, user_id: &str) {
        let record = proto::SessionRecord {
            session_id,
            user_id: user_id.to_string(),
        };
        let encoded = record.encode_to_vec();
        self.sessions.lock().insert(token.to_string(), record);
        let (cluster, token, user) = (self.clone(), token.to_string(), user_id.to_string());
        tokio::spawn(async move {
            let (number, ttl) = (cluster.settings.number, cluster.session_ttl());
            let saved = cluster.directory.save_session(number, &token, &encoded, &user, ttl);
            if cluster.call(saved).await.is_err() {
                cluster.rewrite_sessions.store(true, Ordering::Relaxed);
            }
            // Ended meanwhile, its forgetting perhaps written first: forgotten again.
            if !cluster.sessions.lock().contains_key(&token) {
                let _ = cluster.call(cluster.directory.forget_session(number, &token)).await;
            }
        });
    }

    /// Tells every node that a client (`family`) of `user` went live at `since_us`
    /// (with the `replace` duplicate-session policy): they close the user's sessions
    /// of other clients that went live before.
    pub async fn announce_live(&self, user: &str, family: u64, since_us: u64) {
        let _ = self.call(self.bus.announce_live(user, family, since_us)).await;
    }

    /// Forgets a session that ended (in Redis in the background).
    pub fn forget_session(self: &Arc<Self>, token: &str) {
        self.sessions.lock().remove(token);
        let (cluster, token) = (self.clone(), token.to_string());
        tokio::spawn(async move { cluster.forget_in_redis(token).await });
    }

    /// Forgets an ended session's record in Redis, or keeps its token for the next
    /// renewal to try again. Returns whether Redis forgot it.
    async fn forget_in_redis(&self, token: String) -> bool {
        let forgotten = self.directory.forget_session(self.settings.number, &token);
        if self.call(forgotten).await.is_ok() {
            return true;
        }
        let mut unforgotten = self.unforgotten.lock();
        if unforgotten.len() < MAX_UNFORGOTTEN {
            unforgotten.push(token);
        }
        false
    }

    /// Forgets `tokens` in Redis in turn until one fails: that one and the rest wait
    /// in `unforgotten` for the next renewal (they used to be dropped).
    async fn forget_all(&self, tokens: Vec<String>) {
        let mut tokens = tokens.into_iter();
        while let Some(token) = tokens.next() {
            if !self.forget_in_redis(token).await {
                let mut unforgotten = self.unforgotten.lock();
                let room = MAX_UNFORGOTTEN.saturating_sub(unforgotten.len());
                unforgotten.extend(tokens.take(room));
                return;
            }
        }
    }

    /// Keeps this node's sessions resumable elsewhere (every third of a lease, see
    /// [`Cluster::keep_session_records`]); writes their
    /// records again when Redis lost them (restarted empty, say) or a write failed.
    async fn keep_sessions(&self) {
        // A few a round (the leases wait behind them), until one fails.
        let retry: Vec<String> = {
            let mut unforgotten = self.unforgotten.lock();
            let n = unforgotten.len().min(FORGETS_PER_RENEWAL);
            unforgotten.drain(..n).collect()
        };
        self.forget_all(retry).await;
        let continued: Vec<u64> = {
            let sessions = self.sessions.lock();
            let numbers = sessions.values().map(|r| r.session_id >> SESSION_ID_BITS);
            let others: HashSet<u64> = numbers.filter(|&n| n != self.settings.number).collect();
            others.into_iter().collect()
        };
        let kept = self
            .directory
            .keep_sessions(self.settings.number, &continued, self.session_ttl());
        let rewrite = self.rewrite_sessions.swap(false, Ordering::Relaxed);
        if self.call(kept).await != Ok(SessionsKept::Retaken) && !rewrite {
            return;
        }
        let records: Vec<(String, Vec<u8>, String)> = (self.sessions.lock().iter())
            .map(|(token, record)| (token.clone(), record.encode_to_vec(), record.user_id.clone()))
            .collect();
        if records.is_empty() {
            return;
        }
        let saved = self
            .directory
            .save_sessions(self.settings.number, &records, self.session_ttl());
        match self.call(saved).await {
            Ok(()) => {
                tracing::warn!(
                    sessions = records.len(),
                    "session records written again (Redis had lost them, or a write failed)"
                );
                // A session that ended while they were written came back with them.
                let ended: Vec<String> = {
                    let sessions = self.sessions.lock();
                    (records.into_iter())
                        .map(|(token, ..)| token)
                        .filter(|token| !sessions.contains_key(token))
                        .collect()
                };
                self.forget_all(ended).await;
            }
            Err(e) => {
                self.rewrite_sessions.store(true, Ordering::Relaxed);
                tracing::warn!("writing the session records again failed ({e}); tried again at the next renewal");
            }
        }
    }

    /// Takes the record of a session of another node (it died, or stopped), to
    /// continue it here: its id and user. `Ok(None)` for a token of this node, an
    /// unknown one, or one already taken. While the session's node lives (a session
    /// is continued on one node at a time) it waits, up to a lease but at most
    /// 4 s (`TAKE_SESSION_WAIT`): a node that died a moment ago is live in the directory
    /// until its own lease lapses, and its clients reconnect at once.
    /// `Err(CloseReason::TryAgainLater)` when the node still lives then (the client
    /// is to resume there, or try again), or Redis does not answer. With `user`, a
    /// session of another user is `Ok(None)`, and left in place: a token presented by
    /// someone else (stolen) does not end its session.
    pub async fn take_session(
        &self,
        token: &str,
        user: Option<&str>,
    ) -> Result<Option<proto::SessionRecord>, CloseReason> {
        let Some(number) = token_node(token).filter(|&number| number != self.settings.number) else {
            return Ok(None);
        };
        let deadline = Instant::now() + (self.settings.lease + self.settings.lease / 4).min(TAKE_SESSION_WAIT);
        loop {
            match self
                .call(self.directory.take_session(number, token, user, self.session_ttl()))
                .await
            {
                Ok(SessionTake::Taken(record)) => {
                    let decoded = proto::SessionRecord::decode(&record[..]).ok();
                    // (A record an earlier version wrote names no user in Redis.)
                    return Ok(decoded.filter(|taken| user.is_none_or(|user| taken.user_id == user)));
                }
                Ok(SessionTake::Unknown | SessionTake::OtherUser) => return Ok(None),
                Ok(SessionTake::Live) if Instant::now() < deadline => {
                    tokio::time::sleep(self.settings.lease / 12).await;
                }
                Ok(SessionTake::Live) | Err(_) => return Err(CloseReason::TryAgainLater),
            }
        }
    }

    /// Runs one piece of a session's directory work.
    pub async fn run(&self, op: DirectoryOp) -> DirectoryReply {
        match op {
            DirectoryOp::Claim {
                room,
                room_type,
                seat,
                member,
                listing,
                request_id,
            } => {
                let was_open = self.pool.room(&room).is_some();
                let (mut outcome, mut opening) = match self.claim_opening(&room, &room_type, listing).await {
                    // Held on (see `Opening`) only for a room this node is to open.
                    Ok((claim @ Claim::Ours, opening)) => (Ok(claim), opening),
                    Ok((claim, _)) => (Ok(claim), None),
                    Err(e) => (Err(e), None),
                };
                // Closed while the claim ran (the claim renewed its entry, which the
                // close takes away): not opened anew without it (see the session's
                // `was_open`), and the claim given back.
                if was_open && matches!(outcome, Ok(Claim::Ours)) && self.pool.room(&room).is_none() {
                    outcome = Err(closed_as_joined());
                    opening = None;
                    self.release_unless_open(&room, 0).await;
                }
                // A redirected member's ticket: join with the member id it carries.
                // Taken (it is good once) only when the join goes on, here or at the
                // owner: a join refused for now is tried again with it.
                let goes_on = matches!(outcome, Ok(Claim::Ours | Claim::Theirs { url: Some(_), .. }));
                let carried = if seat.is_empty() || !goes_on {
                    None
                } else {
                    self.take_seat(&room, &seat).await
                };
                let ticket = match &outcome {
                    Ok(Claim::Theirs { url: Some(_), .. }) => {
                        self.seat_ticket(&room, carried.as_ref().unwrap_or(&member)).await
                    }
                    _ => String::new(),
                };
                DirectoryReply::Claim {
                    room,
                    outcome,
                    was_open,
                    ticket,
                    seat: carried,
                    request_id,
                    opening,
                }
            }
            DirectoryOp::Release { room } => {
                self.release_unless_open(&room, 0).await;
                DirectoryReply::Released { room }
            }
            DirectoryOp::List {
                request_id,
                after,
                limit,
                room_type,
                filters,
                open_only,
            } => {
                let filter = RoomFilter {
                    room_type: &room_type,
                    metadata: &filters,
                    open_only,
                };
                let outcome = self.list(&filter, after, limit).await;
                DirectoryReply::List { request_id, outcome }
            }
            DirectoryOp::QuickJoin {
                request_id,
                room_type,
                filters,
                skip,
                allowed,
                member,
            } => {
                let found = self
                    .find_open(&room_type, &filters, &skip, &member, allowed.as_deref())
                    .await;
                let outcome = match found {
                    Ok(Some((room, url))) => {
                        self.metrics.redirects.inc();
                        // The room's node checks that it still fits (see `Seat.quick_join`).
                        let picked = proto::Seat {
                            quick_join: true,
                            quick_join_filters: filters,
                            ..member
                        };
                        let seat = self.seat_ticket(&room, &picked).await;
                        Ok(Some(Found { room, url, seat }))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                DirectoryReply::QuickJoin { request_id, outcome }
            }
        }
    }

    /// One page of the cluster's rooms that `filter` admits: at most `limit` after
    /// `after`, and where the next page starts (none: the last). Reads one page of
    /// `LIST_CHUNK` (200) directory entries: a selective filter may answer a short page
    /// (even an empty one) that is not the last.
    pub async fn list(
        &self,
        filter: &RoomFilter<'_>,
        mut after: String,
        limit: usize,
    ) -> Result<(Vec<proto::RoomInfo>, Option<String>), PoolError> {
        let mut rooms = Vec::new();
        let (page, more) = self.call(self.directory.list(&after, LIST_CHUNK)).await?;
        for entry in page {
            after.clone_from(&entry.room);
            if filter.admits(&entry.room_type, entry.members, entry.max_members, &entry.listing) {
                rooms.push(entry.info());
                if rooms.len() == limit {
                    return Ok((rooms, Some(after)));
                }
            }
        }
        Ok((rooms, more.then_some(after)))
    }

    /// The fullest open room of `room_type` (empty: the default) on another live node
    /// whose metadata holds `filters`, not in `skip_rooms`, not banning `member`'s
    /// user and allowed by the token's room `patterns`; with its node's URL. Looks at
    /// the [`QUICK_JOIN_SCAN_MAX`] fullest at most, as read within
    /// [`OPEN_ROOMS_FRESH`] (by this search or an earlier one).
    async fn find_open(
        &self,
        room_type: &str,
        filters: &Metadata,
        skip_rooms: &[String],
        member: &proto::Seat,
        patterns: Option<&[String]>,
    ) -> Result<Option<(String, String)>, PoolError> {
        let room_type = match room_type {
            "" => self.pool.config().default_room_type.as_str(),
            named => named,
        };
        let search = async {
            let slot = {
                let mut slots = self.open_rooms.lock();
                slots.retain(|_, slot| {
                    Arc::strong_count(slot) > 1
                        || (slot.try_lock()).is_ok_and(|read| read.as_ref().is_some_and(OpenRooms::fresh))
                });
                let key = (room_type.to_string(), filters.clone());
                slots.entry(key).or_default().clone()
            };
            let mut read = slot.lock().await;
            if !read.as_ref().is_some_and(OpenRooms::fresh) {
                let ids = self
                    .call(self.directory.open_room_ids(room_type, filters, QUICK_JOIN_SCAN_MAX))
                    .await?;
                *read = Some(OpenRooms {
                    read_at: Instant::now(),
                    ids,
                    read: 0,
                    entries: Vec::new(),
                    urls: HashMap::new(),
                });
            }
            let open = read.as_mut().expect("read just now");
            let mut next = 0;
            loop {
                // The entries in the ids' order, QUICK_JOIN_SCAN a round trip, as far as
                // a search needs them (most find a fit in the first).
                if next == open.entries.len() {
                    let chunk = &open.ids[open.read..(open.read + QUICK_JOIN_SCAN).min(open.ids.len())];
                    if chunk.is_empty() {
                        return Ok(None);
                    }
                    let entries = self.call(self.directory.open_room_entries(room_type, chunk)).await?;
                    open.read += chunk.len();
                    open.entries.extend(entries);
                    continue;
                }
                let entry = &open.entries[next];
                next += 1;
                let fits = entry.node != self.node.id
                    && !skip_rooms.contains(&entry.room)
                    && !entry.bans(&member.user_id)
                    && room_allowed(patterns, &entry.room)
                    && entry.listing.matches(filters);
                if !fits {
                    continue;
                }
                let (room, node) = (entry.room.clone(), entry.node.clone());
                if !open.urls.contains_key(&node) {
                    let url = self.call(self.directory.node_url(&node)).await?;
                    open.urls.insert(node.clone(), url);
                }
                // A node whose own lease lapsed is dead: its rooms come back elsewhere.
                if let Some(url) = &open.urls[&node] {
                    return Ok(Some((room, url.clone())));
                }
            }
        };
        let slow = || PoolError::Unavailable("the room directory answers too slowly; try again".into());
        tokio::time::timeout(FIND_OPEN_WAIT, search)
            .await
            .unwrap_or_else(|_| Err(slow()))
    }

    /// How long a session record outlives its node's last renewal: a lease (the node
    /// may be dead), then the resume grace.
    fn session_ttl(&self) -> Duration {
        self.settings.lease + self.settings.resume_grace
    }

    /// A seat ticket for a member redirected to `room`'s node: it joins there with
    /// this member id (empty when Redis failed: it joins with the id of its session
    /// there). One member redirected to one room again and again gets the same
    /// ticket (a keyed hash of the two, 128 bits, unguessable without this node's
    /// keys), so Redis holds one key for them, not one per redirect.
    async fn seat_ticket(&self, room: &str, member: &proto::Seat) -> String {
        use std::hash::BuildHasher;
        let [a, b] = self
            .seat_keys
            .each_ref()
            .map(|keys| keys.hash_one((member.member_id, &member.user_id, room)));
        let ticket = format!("{a:016x}{b:016x}");
        let seat = member.encode_to_vec();
        // The ticket (hex) first: a room id may hold any byte, `/` too.
        let key = format!("{ticket}/{room}");
        match self.call(self.directory.save_seat(&key, &seat, SEAT_TICKET_TTL)).await {
            Ok(()) => ticket,
            Err(_) => String::new(),
        }
    }

    /// The member a seat ticket for `room` carries, if the ticket is valid (it is
    /// taken: used once).
    async fn take_seat(&self, room: &str, ticket: &str) -> Option<proto::Seat> {
        if ticket.len() != 32 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let seat = self
            .call(self.directory.take_seat(&format!("{ticket}/{room}")))
            .await
            .ok()??;
        proto::Seat::decode(&seat[..]).ok()
    }

    /// [`Cluster::claim`] of a configured room as the node starts: the first node to
    /// start takes it. Like any claim it waits for renewals to settle after a Redis
    /// outage ([`Claim::Settling`]: its node, alive, may be about to take it back);
    /// the caller then leaves it to [`Cluster::reopen_configured`].
    pub async fn claim_configured(&self, room: &str, room_type: &str, metadata: &Metadata) -> Result<Claim, PoolError> {
        self.claim(room, room_type, ListingState::listed_as(metadata)).await
    }

    /// Opens a configured room here again when no node holds it (its simulation
    /// closed it, or its node died or stopped and its lease lapsed), from its
    /// checkpoint when it has one. Asks the directory only about a room not open here.
    pub async fn reopen_configured(&self, room: &str, room_type: &str, metadata: &Metadata) -> Result<(), PoolError> {
        if self.pool.room(room).is_some() || self.call(self.directory.locate(room)).await?.is_some() {
            return Ok(());
        }
        if let Claim::Ours = self.claim_configured(room, room_type, metadata).await?
            && let Err(e) = self.pool.create_persistent(room, room_type, metadata)
        {
            // Not left claimed for a room that runs nowhere (the room cap is full, say).
            self.release_unless_open(room, 0).await;
            return Err(e);
        }
        Ok(())
    }

    /// Claims a room for this node, or learns who owns it. An unknown room type is
    /// refused before the directory is asked.
    pub async fn claim(&self, room: &str, room_type: &str, listing: ListingState) -> Result<Claim, PoolError> {
        Ok(self.claim_opening(room, room_type, listing).await?.0)
    }

    /// [`Cluster::claim`], and the claim counted as opening the room (when it was not
    /// open here) for as long as the caller keeps it.
    async fn claim_opening(
        &self,
        room: &str,
        room_type: &str,
        listing: ListingState,
    ) -> Result<(Claim, Option<Opening>), PoolError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(stopping());
        }
        // A room open here lists as it is (its entry may have lapsed meanwhile). One
        // that the claim may restore enters the directory unlisted (a private room is
        // never listed), and as itself once restored. A room that closed here is
        // claimed again once its close is written (see `Closing`).
        // (Counted as opening before it looks for a close or a release of the room
        // under way: see `release_unless_open`.)
        let mut opening = Some(Opening::new(&self.opening, room));
        let open_here = match self.pool.room(room) {
            Some(handle) => Some(handle),
            None if !pacer::poked(self.closing.settled(room, DIRECTORY_TIMEOUT)).await => {
                return Err(PoolError::Unavailable("the room is closing; join again".into()));
            }
            None => self.pool.room(room),
        };
        if open_here.is_some() {
            opening = None;
        } else if self.pool.is_full() {
            // No room for it here: not claimed (a claim of a room that cannot open
            // would keep its number in Redis for as long as a checkpoint). One open
            // on another node is joined there, as a claim would say; a new one is
            // placed on a lighter node if the placement policy places rooms.
            return match self.call(self.directory.locate(room)).await? {
                Some(node) if node != self.node.id => {
                    let url = self.call(self.directory.node_url(&node)).await?;
                    Ok((self.redirect(node, url), None))
                }
                Some(_) => Err(PoolError::TooManyRooms),
                None if self.settings.placement == Placement::LeastLoaded && placeable(&listing) => {
                    let placed = self.place(room).await?;
                    let placed = placed.map(|node| (self.redirect(node.id, Some(node.url)), None));
                    placed.ok_or(PoolError::TooManyRooms)
                }
                None => Err(PoolError::TooManyRooms),
            };
        }
        // A failed read is an error, not "no checkpoint": the room would open empty,
        // and its checkpoint be overwritten by the empty room's. A checkpoint written
        // between that read and the claim (its node handed the room off meanwhile)
        // has the claim refused, and made again to restore it.
        let mut may_restore = open_here.is_none() && self.call(self.directory.has_checkpoint(room)).await?;
        let claim = loop {
            let listing = match &open_here {
                Some(handle) => handle.shared.listing.get(),
                None if may_restore => ListingState {
                    private: true,
                    ..ListingState::default()
                },
                None => listing.clone(),
            };
            let placed = self.settings.placement == Placement::LeastLoaded
                && open_here.is_none()
                && !may_restore
                && placeable(&listing);
            let entry = self.entry(room, room_type, listing)?;
            if placed && let Some(node) = self.place(room).await? {
                return Ok((self.redirect(node.id, Some(node.url)), None));
            }
            // Refused at most once: the second claim knows of the checkpoint.
            let none_found = open_here.is_none() && !may_restore;
            let claim = self
                .directory
                .claim_unless_checkpointed(&entry, false, none_found, open_here.is_some());
            match self.call(claim).await? {
                Some(claim) => break claim,
                None => may_restore = true,
            }
        };
        // The node began stopping while the claim ran: what it took goes back (its
        // rooms are released, or about to be), or it would own a room it never runs.
        if matches!(claim, Claim::Ours) && self.stopping.load(Ordering::Acquire) {
            let _ = self.call(self.directory.release(room)).await;
            return Err(stopping());
        }
        match &claim {
            Claim::Theirs { url: Some(_), .. } => {
                self.metrics.redirects.inc();
            }
            // The copy open here is out of date: it closes, and the join, made again,
            // claims the room afresh (restoring it from the later claim's checkpoint).
            // (With nothing open here, another process with this node's id holds the
            // room: the caller says what it does of that.)
            Claim::Superseded if open_here.is_some() => {
                self.close_lost(room, SUPERSEDED);
                return Err(PoolError::Unavailable(SUPERSEDED.into()));
            }
            // Read after the claim: the owner writes its last checkpoint before it
            // releases the room.
            Claim::Ours if may_restore && self.pool.room(room).is_none() => {
                let restored = match self.checkpoint(room).await {
                    Ok(Some(checkpoint)) => self.restore(checkpoint),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                // Not opened empty over a checkpoint Redis holds but did not give, or
                // that the room's simulation failed to restore: the claim lapses (or
                // is released) and a later join restores it.
                if let Err(e) = restored {
                    // Unless another join restored it meanwhile (or is restoring it).
                    self.release_unless_open(room, 1).await;
                    return Err(e);
                }
                if let Some(restored) = self.pool.room(room) {
                    let _ = self
                        .call(self.directory.renew_held(&[self.entry_of(&restored.shared)]))
                        .await;
                }
            }
            _ => {}
        }
        Ok((claim, opening))
    }

    /// Gives a claim of `room` back unless the room is open here (a claim that no
    /// room follows, or another join opened it meanwhile), or another join's claim is
    /// opening it (restoring it from its checkpoint, say: it would open without its
    /// lease). `mine`: the caller's own claims under way (counted in `opening`).
    async fn release_unless_open(&self, room: &str, mine: usize) {
        // Marked first, counted second, while a claim counts itself first and looks
        // for marks second (both under locks): a claim that began before this look is
        // counted, one that begins after it waits until the release is written.
        let _releasing = self.closing.releasing(room);
        let opening = self.opening.lock().get(room).copied().unwrap_or(0);
        if self.pool.room(room).is_none() && opening <= mine {
            let _ = self.call(self.directory.release(room)).await;
        }
    }

    /// A join sent to `node`, counted when its URL is known (a node whose own lease
    /// lapsed has none).
    fn redirect(&self, node: String, url: Option<String>) -> Claim {
        if url.is_some() {
            self.metrics.redirects.inc();
        }
        Claim::Theirs { node, url }
    }

    /// Where a room should open under [`Placement::LeastLoaded`], when not here: a
    /// live node with at least [`PLACEMENT_MARGIN`] and a fifth fewer members than
    /// this one at the last renewals (plus the rooms placed on it since, one member
    /// each), drawn at random among those, so that a burst of new rooms does not all
    /// go to one node until its next renewal shows them. None for a room
    /// that a node owns (the claim finds it).
    async fn place(&self, room: &str) -> Result<Option<Node>, PoolError> {
        let loads = self.call(self.directory.node_loads()).await?;
        let own = (loads.iter())
            .find(|(node, _)| node.id == self.node.id)
            .map_or(0, |(_, load)| *load);
        let margin = PLACEMENT_MARGIN.max(own / 5);
        let mut lighter: Vec<Node> = (loads.into_iter())
            .filter(|(node, load)| node.id != self.node.id && load + margin <= own)
            .map(|(node, _)| node)
            .collect();
        if lighter.is_empty() || self.call(self.directory.locate(room)).await?.is_some() {
            return Ok(None);
        }
        let chosen = lighter.swap_remove(fastrand::usize(..lighter.len()));
        // Not waited for (the join goes on at once), and failing to count it only
        // makes the next placements less even.
        let (directory, id) = (self.directory.clone(), chosen.id.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(DIRECTORY_TIMEOUT, directory.count_placement(&id)).await;
        });
        Ok(Some(chosen))
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

    /// The room's last checkpoint, if Redis keeps a readable one; an error when
    /// Redis could not be read.
    async fn checkpoint(&self, room: &str) -> Result<Option<proto::RoomCheckpoint>, PoolError> {
        let Some(data) = self.call(self.directory.load_checkpoint(room)).await? else {
            return Ok(None);
        };
        match proto::RoomCheckpoint::decode(&data[..]) {
            Ok(checkpoint) => Ok(Some(checkpoint)),
            Err(e) => {
                tracing::warn!(room, "room checkpoint unreadable, the room starts empty: {e}");
                Ok(None)
            }
        }
    }

    /// Opens the room here from its checkpoint. A checkpoint that cannot be restored
    /// (it does not decode, or names a room type this node does not have) is logged,
    /// and the room starts empty; a simulation that panicked restoring it, or a
    /// refusal that may pass (a simulation thread's full queue, the room limit,
    /// shutdown), refuses the join (the checkpoint stays for a later one: the room
    /// opened empty would overwrite it).
    fn restore(&self, checkpoint: proto::RoomCheckpoint) -> Result<(), PoolError> {
        let room = checkpoint.room.as_str();
        match self.pool.restore(&checkpoint) {
            Ok(None) => {} // another join restored it a moment ago
            Ok(Some(_)) => {
                self.metrics.rooms_restored.inc();
                let age_ms = unix_micros().saturating_sub(checkpoint.time_us) / 1_000;
                let seats = checkpoint.seats.len();
                tracing::info!(
                    room,
                    tick = checkpoint.tick,
                    seats,
                    age_ms,
                    "room restored from its checkpoint"
                );
            }
            Err(
                e @ (PoolError::Busy
                | PoolError::TooManyRooms
                | PoolError::ShutDown
                | PoolError::SimulationFailed
                | PoolError::Unavailable(_)),
            ) => return Err(e),
            Err(e) => tracing::warn!(room, "room checkpoint not restored, the room starts empty: {e}"),
        }
        Ok(())
    }

    /// Writes the rooms' checkpoints to Redis as they come, until `shutdown`: one
    /// write at a time, of the latest checkpoint of each room received since the last
    /// one (so a slow or absent Redis holds at most one checkpoint per room here), and
    /// the checkpoints and entries of the rooms that closed.
    pub async fn write_checkpoints(
        self: Arc<Self>,
        mut checkpoints: mpsc::UnboundedReceiver<Checkpoint>,
        shutdown: CancellationToken,
    ) {
        let mut received = Vec::with_capacity(CHECKPOINTS_PER_WRITE);
        let mut pending = Pending::default();
        let mut writing: Option<Pin<Box<dyn Future<Output = Written> + Send>>> = None;
        // Failed closes, tried again a third of a lease later.
        let mut retry = Vec::new();
        let mut retry_at = tokio::time::Instant::now();
        loop {
            if writing.is_none() && !pending.is_empty() {
                let this = self.clone();
                let batch = std::mem::take(&mut pending);
                writing = Some(Box::pin(async move { this.write(batch).await }));
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                n = checkpoints.recv_many(&mut received, CHECKPOINTS_PER_WRITE) => {
                    if n == 0 {
                        return;
                    }
                    for checkpoint in received.drain(..) {
                        pending.add(checkpoint);
                    }
                }
                written = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                    writing = None;
                    if written.flushed > 0 {
                        self.flushed.fetch_add(written.flushed, Ordering::AcqRel);
                        self.flush.notify_waiters();
                    }
                    if retry.is_empty() {
                        retry_at = tokio::time::Instant::now() + self.settings.lease / 3;
                    }
                    retry.extend(written.failed);
                }
                () = tokio::time::sleep_until(retry_at), if !retry.is_empty() => {
                    for (room, closes) in retry.drain(..) {
                        pending.close(room, closes);
                    }
                }
            }
        }
    }

    /// Writes one batch.
    async fn write(&self, batch: Pending) -> Written {
        let mut writes = Vec::with_capacity(batch.rooms.len());
        for (room, mut checkpoint) in batch.rooms {
            let mut data = checkpoint.encode_to_vec();
            // Without the events still owed to members (a hand-off's, or a restored
            // room's kept seats') rather than not at all.
            if data.len() > self.settings.max_checkpoint_bytes && !checkpoint.pending_events.is_empty() {
                let events = std::mem::take(&mut checkpoint.pending_events).len();
                if let Some(suppressed) = DIRECTORY_LOGS.take(Instant::now()) {
                    tracing::warn!(%room, events, suppressed, "the events still owed to members make the room's checkpoint larger than [cluster] max_checkpoint_bytes; written without them");
                }
                data = checkpoint.encode_to_vec();
            }
            if data.len() > self.settings.max_checkpoint_bytes {
                self.metrics.checkpoints_skipped.inc();
                if let Some(suppressed) = DIRECTORY_LOGS.take(Instant::now()) {
                    tracing::warn!(%room, bytes = data.len(), suppressed, "room checkpoint over [cluster] max_checkpoint_bytes; not written");
                }
                continue;
            }
            writes.push((room.to_string(), data));
        }
        // A few megabytes a round trip: Redis reads a command whole (and refuses one
        // over its query buffer's limit) before the renewals queued behind it.
        let mut rest = &writes[..];
        let mut failed = false;
        while !rest.is_empty() {
            let mut bytes = 0;
            let n = (rest.iter())
                .take_while(|(_, data)| {
                    bytes += data.len();
                    bytes <= CHECKPOINT_WRITE_BYTES
                })
                .count()
                .max(1);
            let (chunk, later) = rest.split_at(n);
            rest = later;
            // After a failure the rest wait for the rooms' next checkpoints: a Redis
            // that does not answer must not hold this write up for each chunk. Those
            // rooms write their next one even if they have not changed since.
            if failed {
                self.metrics.checkpoints_skipped.inc_by(chunk.len() as u64);
                chunk.iter().for_each(|(room, _)| self.pool.checkpoint_again(room));
                continue;
            }
            let saved = self.directory.save_checkpoints(chunk, self.settings.checkpoint_ttl);
            match self.call(saved).await {
                Ok(saved) => {
                    self.metrics.checkpoints_written.inc_by(saved as u64);
                    // The others' rooms belong to another node now.
                    self.metrics.checkpoints_skipped.inc_by((chunk.len() - saved) as u64);
                }
                Err(_) => {
                    self.metrics.checkpoints_skipped.inc_by(chunk.len() as u64);
                    chunk.iter().for_each(|(room, _)| self.pool.checkpoint_again(room));
                    failed = true;
                }
            }
        }
        // A close that failed is tried again (its room is not claimed here meanwhile),
        // until the checkpoint it would drop has lapsed anyway. After one failure the
        // batch's other closes wait for the next try too: a Redis that does not
        // answer must not hold the checkpoints of live rooms up for each of them.
        let mut failed = Vec::new();
        for (room, closes) in batch.closed {
            let opened_since = closes.opened_since(self.pool.room(&room).map(|open| open.key));
            let done = opened_since || (failed.is_empty() && self.call(self.directory.close(&room)).await.is_ok());
            // (A close not tried, after an earlier failure, counts from now too.)
            let since = closes.failing_since.unwrap_or_else(Instant::now);
            if done || since.elapsed() >= self.settings.checkpoint_ttl {
                self.closing.written(&room, closes.received);
            } else {
                failed.push((
                    room,
                    Closes {
                        failing_since: Some(since),
                        ..closes
                    },
                ));
            }
        }
        Written {
            flushed: batch.flushed,
            failed,
        }
    }

    /// A stopping node hands its rooms off: a checkpoint of every room (which then
    /// stops: nothing its members are told after it is lost), written to Redis
    /// (waiting at most a few seconds), then every lease released, so the next join on
    /// another node restores each room where it is now.
    pub async fn hand_off(&self) {
        // No more claims; renewals go on (the last checkpoints are written only while
        // this node holds the rooms, and what comes before them may take longer than
        // a lease) but take nothing back, until the rooms are released below.
        {
            // No renewal under way: none puts the load back after it is withdrawn.
            let _renewing = self.renewing.lock().await;
            self.stopping.store(true, Ordering::Release);
            // No node sends new rooms, nor quick joins, here any more (`release_all`
            // below does it too, seconds later, if Redis answers then).
            let rooms: Vec<RoomEntry> = self.pool.all_rooms().iter().map(|r| self.entry_of(r)).collect();
            let _ = self.call(self.directory.withdraw_load(&rooms)).await;
        }
        self.stop_calls().await;
        let before = self.flushed.load(Ordering::Acquire);
        let skipped_before = self.metrics.checkpoints_skipped.get();
        let asked = self.pool.hand_off();
        let written = async {
            loop {
                let notified = self.flush.notified();
                if self.flushed.load(Ordering::Acquire) >= before + asked {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(HAND_OFF_WAIT, written).await.is_err() {
            tracing::warn!("stopping: not every room's checkpoint was written in time");
        }
        // (Counted from the hand-off on: a periodic write finishing meanwhile counts
        // too, which errs towards the warning.)
        let unsaved = self.metrics.checkpoints_skipped.get() - skipped_before;
        if unsaved > 0 {
            tracing::warn!(
                checkpoints = unsaved,
                "stopping: checkpoints not written (Redis failed them, their leases had lapsed, or over \
                 [cluster] max_checkpoint_bytes): those rooms come back from an older checkpoint, or empty"
            );
        }
        let rooms = self.pool.all_rooms();
        if let Ok(loads) = self.call(self.directory.node_loads()).await {
            let members = rooms
                .iter()
                .map(|room| (room.id.to_string(), u64::from(room.occupied())));
            let others = loads.into_iter().filter(|(node, _)| node.id != self.node.id);
            let _ = self.destinations.set(Destinations::plan(members, others));
        }
        let rooms: Vec<String> = rooms.iter().map(|r| r.id.to_string()).collect();
        // No renewal under way, nor after: none reaches Redis after the release.
        self.leases_stop.cancel();
        let _renewing = self.renewing.lock().await;
        match self.call(self.directory.release_all(&rooms)).await {
            Ok(()) => tracing::info!(rooms = rooms.len(), "stopping: rooms checkpointed and released"),
            Err(_) => tracing::warn!(
                rooms = rooms.len(),
                "stopping: rooms not released; they move when their leases lapse"
            ),
        }
    }

    /// Stops taking calls from other nodes ([`Bus::stop_calls`]) and waits (a moment
    /// at most) until those published before have reached their rooms: then the
    /// rooms' last checkpoints hold them, and a call published later is answered 503
    /// by its node's API (retried, it finds the room where it went).
    async fn stop_calls(&self) {
        // Claims are refused from now on: the rooms still opening here open (or not)
        // first, so the calls held for them are delivered before the rooms' last
        // checkpoints (the inbox signals only once it holds none).
        let opened = async {
            while !self.opening.lock().is_empty() {
                tokio::time::sleep(HOLD_POLL).await;
            }
        };
        let _ = tokio::time::timeout(HOLD_FOR, opened).await;
        let deadline = tokio::time::Instant::now() + DIRECTORY_TIMEOUT;
        if let Err(e) = self.bus.stop_calls(deadline).await {
            tracing::warn!("stopping: calls from other nodes not stopped ({e}): some may be lost");
            return;
        }
        let drained = async {
            loop {
                let notified = self.calls_drained_notify.notified();
                if self.calls_drained.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(DIRECTORY_TIMEOUT + HOLD_FOR, drained)
            .await
            .is_err()
        {
            tracing::warn!("stopping: calls from other nodes still on their way may be lost");
        }
    }

    /// Where a client of this stopping node goes (see `Destinations`), given the
    /// rooms its session is in: none before the hand-off, or when no other node is live.
    pub fn destination<'a>(&self, rooms: impl IntoIterator<Item = &'a str>) -> Option<String> {
        self.destinations.get()?.for_rooms(rooms).map(str::to_string)
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

    /// Hands a room event for a room not open here to the node that holds it: that
    /// node's id, `None` when no node does, or `Unavailable` when that node does not
    /// listen.
    pub async fn publish_elsewhere(&self, event: &SendEvent) -> Result<Option<String>, PoolError> {
        let bus = &self.bus;
        self.deliver_elsewhere(&event.room, async |node: String| bus.send_event(&node, event).await)
            .await
    }

    /// [`Cluster::publish_elsewhere`] for a close of the room (`DELETE /rooms/{room}`).
    pub async fn close_elsewhere(&self, close: &RoomClose) -> Result<Option<String>, PoolError> {
        let bus = &self.bus;
        self.deliver_elsewhere(&close.room, async |node: String| bus.send_close(&node, close).await)
            .await
    }

    /// The base URL (`https://host:port`, from its public URL) of `node` while it is
    /// live.
    pub async fn node_base(&self, node: &str) -> Result<Option<String>, PoolError> {
        let url = self.call(self.directory.node_url(node)).await?;
        Ok(url.and_then(|url| http_base(&url)))
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

    /// The node a call for `room` (the HTTP API's) goes to: the one holding it (this
    /// one, while it opens the room). When no node does and Redis keeps its checkpoint
    /// (its node stopped or died), with `restore` this node, having restored it as a
    /// join would; without, `Unavailable` (retry). None: no such room (it closed, or
    /// never was).
    pub async fn route_call(&self, room: &str, restore: bool) -> Result<Option<String>, PoolError> {
        match self.call(self.directory.locate(room)).await? {
            Some(node) if node != self.node.id => return Ok(Some(node)),
            // The lease says here: the room is opening (a join is restoring it), or it
            // just closed.
            Some(_) => return Ok((self.room_state(room) != RoomState::Gone).then(|| self.node.id.clone())),
            None => {}
        }
        if !restore {
            return match self.call(self.directory.has_checkpoint(room)).await? {
                true => Err(between_nodes()),
                false => Ok(None),
            };
        }
        let Some(checkpoint) = self.checkpoint(room).await? else {
            return Ok(None);
        };
        let listing = ListingState {
            private: true,
            ..ListingState::default()
        };
        match self.claim(room, &checkpoint.room_type, listing).await? {
            Claim::Ours if self.pool.room(room).is_some() => Ok(Some(self.node.id.clone())),
            // Claimed, but the room did not open (the checkpoint went meanwhile, or
            // this node has no room for it): not held for nothing.
            Claim::Ours => {
                // (Unless a join here opened it meanwhile, or is opening it.)
                self.release_unless_open(room, 0).await;
                Err(PoolError::Unavailable(
                    "the room could not be restored on this node; retry".into(),
                ))
            }
            Claim::Theirs { node, .. } => Ok(Some(node)),
            Claim::Settling => Err(PoolError::Unavailable(
                "the room directory is settling after a Redis outage; retry".into(),
            )),
            Claim::Superseded => Err(PoolError::Unavailable(ANOTHER_START.into())),
        }
    }

    /// [`Cluster::publish_elsewhere`] for a removal of a user from the room (`DELETE
    /// /rooms/{room}/users/{user}`).
    pub async fn remove_elsewhere(&self, removal: &UserRemoval) -> Result<Option<String>, PoolError> {
        let bus = &self.bus;
        self.deliver_elsewhere(&removal.room, async |node: String| {
            bus.send_removal(&node, removal).await
        })
        .await
    }

    async fn deliver_elsewhere(
        &self,
        room: &str,
        send: impl AsyncFnOnce(String) -> Result<bool, DirectoryError>,
    ) -> Result<Option<String>, PoolError> {
        // (Here: the room is opening, or was just restored, and this node's inbox holds
        // the call until it is open.)
        let Some(node) = self.route_call(room, true).await? else {
            return Ok(None);
        };
        if self.call(send(node.clone())).await? {
            Ok(Some(node))
        } else {
            Err(PoolError::Unavailable(format!(
                "node `{node}` holds the room but is not listening (or runs a version without this call)"
            )))
        }
    }

    /// Publishes what other nodes send for rooms open here, until `shutdown`. A call
    /// for a room not open here yet waits for it a moment (see `cluster::held`).
    pub async fn serve_inbox(
        self: Arc<Self>,
        mut inbox: mpsc::UnboundedReceiver<BusMessage>,
        on_user_live: impl Fn(UserLive) + Send,
        shutdown: CancellationToken,
    ) {
        let mut held = Held::default();
        // The calls stopped (see `Cluster::stop_calls`), and some wait for their rooms:
        // drained once they are delivered (or given up).
        let mut stopped_behind_held = false;
        // One timer for the loop (a sleep made per turn would never end while
        // deliveries keep coming).
        let mut poll = tokio::time::interval(HOLD_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => {
                    if !held.is_empty() {
                        tracing::warn!(calls = held.len(), "stopping: calls from other nodes still waiting for their rooms dropped");
                    }
                    return;
                }
                delivery = inbox.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => return,
                },
                _ = poll.tick(), if !held.is_empty() => {
                    let due = held.take_due(Instant::now(), |room| self.room_state(room));
                    for call in due.deliver {
                        self.deliver(call, &on_user_live);
                    }
                    for call in due.dropped {
                        tracing::debug!(room = ?call.room(), "call from another node for a room that did not open here; dropped");
                    }
                    if stopped_behind_held && held.is_empty() {
                        stopped_behind_held = false;
                        self.mark_calls_drained();
                    }
                    continue;
                }
            };
            if delivery == BusMessage::CallsStopped {
                match held.is_empty() {
                    true => self.mark_calls_drained(),
                    false => stopped_behind_held = true,
                }
                continue;
            }
            match delivery.room() {
                Some(room) if held.holds(room) || self.room_state(room) == RoomState::Opening => {
                    if let Err(call) = held.hold(delivery, Instant::now()) {
                        tracing::warn!(room = ?call.room(), "too many calls from other nodes wait for their rooms; dropped");
                    }
                }
                _ => self.deliver(delivery, &on_user_live),
            }
        }
    }

    /// Every call other nodes sent before this node stopped taking them reached its
    /// room (see `Cluster::stop_calls`).
    fn mark_calls_drained(&self) {
        self.calls_drained.store(true, Ordering::Release);
        self.calls_drained_notify.notify_waiters();
    }

    /// Where `room` stands here, for the calls other nodes send for it.
    fn room_state(&self, room: &str) -> RoomState {
        if self.pool.room(room).is_some() {
            RoomState::Open
        } else if self.opening.lock().contains_key(room) {
            RoomState::Opening
        } else {
            RoomState::Gone
        }
    }

    /// Does what another node sent: a room that closed meanwhile takes nothing.
    fn deliver(&self, delivery: BusMessage, on_user_live: &impl Fn(UserLive)) {
        match delivery {
            BusMessage::Event(event) => {
                let Some(room) = self.pool.room(&event.room) else {
                    tracing::debug!(room = %event.room, "event from another node for a room not open here; dropped");
                    return;
                };
                let command = Command::Event {
                    room: room.key,
                    member: SERVER,
                    event,
                };
                match self.pool.send(&room, command) {
                    Ok(()) => {
                        self.metrics.events_published.inc();
                    }
                    Err(e) => {
                        if let Some(suppressed) = CALLS_NOT_TAKEN.take(Instant::now()) {
                            tracing::warn!(room = %room.shared.id, suppressed, "event from the HTTP API on another node not taken: {e}");
                        }
                    }
                }
            }
            BusMessage::Close(close) => {
                let taken = self.pool.close(&close.room, ErrorCode::RoomClosed, &close.reason);
                log_call_from_elsewhere(taken, "close", &close.room);
            }
            BusMessage::Removal(r) => {
                let taken = self.pool.remove_user(&r.room, &r.user_id, &r.reason, r.ban_secs);
                log_call_from_elsewhere(taken, "user removal", &r.room);
            }
            BusMessage::UserLive(live) => on_user_live(live),
            // (`serve_inbox` takes it.)
            BusMessage::CallsStopped => {}
        }
    }

    /// Keeps the leases of the rooms open here until `shutdown` (by then
    /// [`Cluster::hand_off`] released them).
    pub async fn keep_leases(self: Arc<Self>, shutdown: CancellationToken) {
        self.every_third_of_a_lease(shutdown, || self.renew()).await;
    }

    /// Keeps this node's session records (see `keep_sessions`) every third of a
    /// lease until `shutdown`, or until the node stops (its hand-off leaves them to
    /// the nodes its sessions go to). A task of its own: writing many records again,
    /// or a Redis slow to answer them, must not hold up the leases.
    pub async fn keep_session_records(self: Arc<Self>, shutdown: CancellationToken) {
        let keep = || async {
            if !self.stopping.load(Ordering::Acquire) {
                self.keep_sessions().await;
            }
        };
        self.every_third_of_a_lease(shutdown, keep).await;
    }

    /// Runs `round` every third of a lease (the next one a third after the last ended,
    /// if it ran late) until `shutdown`, or until the hand-off stops the leases.
    async fn every_third_of_a_lease<F: Future<Output = ()>>(&self, shutdown: CancellationToken, round: impl Fn() -> F) {
        let mut every = tokio::time::interval(self.settings.lease / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = self.leases_stop.cancelled() => return,
                _ = every.tick() => round().await,
            }
        }
    }

    /// Every minute, until `shutdown`, forgets the listed ids of rooms whose
    /// node died (see [`RedisDirectory::sweep`]; one node of the cluster does it per
    /// period; the `open:` sets of the room types this node knows, which nodes sharing
    /// one configuration all know). A task of its own: a slow sweep must not hold up
    /// the leases.
    pub async fn sweep_indexes(self: Arc<Self>, shutdown: CancellationToken) {
        let types: Vec<String> = self.pool.config().room_types.keys().cloned().collect();
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let sweep = tokio::time::timeout(SWEEP_EVERY / 2, self.directory.sweep(&types, SWEEP_EVERY));
            let swept = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                swept = sweep => swept,
            };
            match swept {
                Ok(Ok(0)) => {}
                Ok(Ok(forgotten)) => {
                    tracing::info!(forgotten, "directory swept: ids of rooms whose node died forgotten")
                }
                Ok(Err(e)) => tracing::debug!("directory sweep failed: {e}"),
                Err(_) => tracing::debug!("directory sweep took too long; the next one goes on"),
            }
        }
    }

    /// Closes the copy of a room this node no longer holds (`message`: why, and
    /// what its members do), counted as lost.
    fn close_lost(&self, room: &str, message: &str) {
        self.metrics.rooms_lost.inc();
        if let Some(Err(e)) = self.pool.close(room, ErrorCode::RoomClosed, message) {
            tracing::debug!(%room, "the room's close was not taken: {e}");
        }
    }

    /// One round: renews the leases of the open rooms and takes back (or closes) the
    /// ones whose lease lapsed. (The rooms that closed are dropped from the directory
    /// by their closes, see [`Cluster::write_checkpoints`].)
    async fn renew(&self) {
        let mut closings = self.renewing.lock().await;
        if self.leases_stop.is_cancelled() {
            return; // released
        }
        // What held through the whole period since the last renewal only: a room
        // locked (or made private) at that renewal or at any moment since is listed
        // locked in this one, and the metadata keys changed since are not indexed; so
        // that one locked, or not matching, but for the moments of its renewals is
        // never open to quick joins its node would refuse.
        let all = self.pool.all_rooms();
        let mut seen = HashMap::with_capacity(all.len());
        let rooms: Vec<RoomEntry> = (all.iter())
            .map(|room| {
                let mut entry = self.entry_of(room);
                let now = room.listing.closings();
                let before = closings.get(&*room.id);
                let closed = before.is_some_and(|&(then, locked)| locked || then != now);
                seen.insert(room.id.to_string(), (now, !room.listing.pickable()));
                entry.listing.locked |= closed;
                // (A room new since the last renewal was claimed as it is now.)
                let changed = room.listing.take_changed_keys();
                if before.is_some() {
                    entry.unsettled_keys = changed;
                }
                entry
            })
            .collect();
        *closings = seen;
        if self.stopping.load(Ordering::Acquire) {
            // Held until the hand-off releases them (its last checkpoints are written
            // only while this node holds the rooms), with the node's load withdrawn,
            // and nothing taken back.
            let _ = self.call(self.directory.renew_held(&rooms)).await;
            return;
        }
        // The leases first: nothing below may delay them past their lapse.
        let renewed = self.call(self.directory.renew(&rooms)).await;
        let _ = self.call(self.bus.keep_listening()).await;
        // On failure the rooms keep running; the next round tries again.
        let Ok(lapsed) = renewed else {
            return;
        };
        if self.stopping.load(Ordering::Acquire) {
            return; // the hand-off released them
        }
        // A room that closed since it was listed above is not claimed again (its entry
        // went with it: claiming would list a room that runs nowhere).
        for room in rooms
            .iter()
            .filter(|r| lapsed.contains(&r.room) && self.pool.room(&r.room).is_some())
        {
            // (A room that closes just after this check, and whose close reaches Redis
            // before the retake, stays listed until the retaken lease lapses; a join
            // of it here meanwhile opens it empty. Releasing it here instead could drop
            // the entry of a join that claimed it again.)
            match self.call(self.directory.retake(room)).await {
                Ok(Claim::Ours) => tracing::info!(room = %room.room, "room lease had lapsed; taken back"),
                Ok(Claim::Theirs { node, .. }) => {
                    tracing::warn!(room = %room.room, owner = %node, "room lease lapsed and another node took the room; closing it here");
                    self.close_lost(&room.room, &format!("the room moved to node `{node}`; join it again"));
                }
                Ok(Claim::Superseded) => {
                    tracing::warn!(room = %room.room, "room lease lapsed and another claim took the room since; closing it here");
                    self.close_lost(&room.room, SUPERSEDED);
                }
                Ok(Claim::Settling) | Err(_) => {}
            }
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
