//! How sessions, the cluster and the HTTP API reach rooms, wherever rooms run: the
//! [`Rooms`] trait (the simulation pool implements it, a test a fake), the
//! [`RoomHandle`] and [`RoomShared`] facts of an open room, the [`Command`]s a room
//! takes, and [`PoolError`], why a call was refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use crate::engine::listing::{Listing, ListingState, Metadata};
use crate::engine::outbox::{Outbox, RoomKey};
use crate::engine::room::{Bans, Roll, Room, encode_error};
use crate::proto::{self, ErrorCode, SendEvent, input};
use crate::state::MemberId;

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
    /// A join's room type is not one of the `known` names: the error names the
    /// nearest, if one is near, and them all.
    pub fn unknown_room_type<'a>(name: &str, known: impl IntoIterator<Item = &'a String>) -> Self {
        let mut names: Vec<&str> = known.into_iter().map(String::as_str).collect();
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
    /// [`Checkpoint::Flushed`](crate::engine::sim_pool::Checkpoint::Flushed), and tick no room any more.
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
    /// Who created it, when counted against a creator's [`CreationLimits`](crate::engine::sim_pool::CreationLimits).
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
    /// What the pool and its thread share of `room` (named `id`, of type
    /// `room_type`), opened by `creator` when counted against one.
    pub(in crate::engine) fn of(id: Arc<str>, room_type: Arc<str>, room: &Room, creator: Option<Arc<str>>) -> Self {
        Self {
            id,
            room_type,
            max_members: room.config().max_members as u32,
            members: AtomicU32::new(0),
            creator,
            listing: room.listing().clone(),
            reserved: AtomicU32::new(0),
            kept: AtomicU32::new(room.kept_seats() as u32),
            bans: room.bans().clone(),
        }
    }

    /// Members plus reserved seats.
    pub(in crate::engine) fn seats_taken(&self) -> u32 {
        // The thread counts a reserved join (or a kept seat taken back) as a member
        // before it gives the reservation (or the kept seat) back: read in the other
        // order, a seat is never missed (at worst counted twice for a moment).
        let reserved = self.reserved.load(Ordering::Acquire);
        let kept = self.kept.load(Ordering::Acquire);
        self.members.load(Ordering::Acquire) + kept + reserved
    }

    /// Whether a quick join may pick the room, but for its metadata: neither private
    /// nor locked, with a free seat. Without a lock.
    pub(in crate::engine) fn pickable(&self) -> bool {
        self.listing.pickable() && self.seats_taken() < self.max_members
    }

    /// Reserves a seat for a quick join, if one is free.
    pub(in crate::engine) fn reserve_seat(&self) -> bool {
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
    pub(in crate::engine) thread: usize,
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
/// [`SimPool`](crate::engine::sim_pool::SimPool) is the real thing; sessions are unit-tested against a fake.
pub trait Rooms: Send + Sync {
    /// The room with this id, created with `room_type` (or the default type when
    /// empty) and `listing` if it does not exist, counted against `creator`'s
    /// [`CreationLimits`](crate::engine::sim_pool::CreationLimits).
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
    /// [`listing::listed_bytes`](crate::engine::listing::listed_bytes)).
    fn list(
        &self,
        filter: &RoomFilter<'_>,
        after: &str,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<proto::RoomInfo>, Option<String>);
}
