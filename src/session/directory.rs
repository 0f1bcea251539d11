//! What a clustered session asks of the room directory, and what it is answered: the
//! session queues [`DirectoryOp`]s (see `Session::poll_directory`), its driver runs
//! them on the cluster and hands each [`DirectoryReply`] back (`Session::on_directory`).
//! The session owns this vocabulary; the cluster (`crate::cluster`) speaks it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::listing::{ListingState, Metadata};
use crate::engine::rooms::PoolError;
use crate::proto;

/// Work a clustered session needs from the room directory. The driver takes it from
/// [`Session::poll_directory`](super::Session::poll_directory), runs it (asynchronously) and hands the answer to
/// [`Session::on_directory`](super::Session::on_directory).
#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryOp {
    /// Take the room for this node, or learn which node holds it: a join of a room
    /// not open here.
    Claim {
        /// The room id.
        room: String,
        /// The room type the join named (empty: the default).
        room_type: String,
        /// The seat ticket the join presented (empty: none).
        seat: String,
        /// Who joins: the member id and user a redirect's ticket carries on.
        member: proto::Seat,
        /// The room's listing, should the claim create it.
        listing: ListingState,
        /// The join's request id: its answer finishes that join, not a later one.
        request_id: u64,
    },
    /// Find an open room for a quick join on another node (none fit here).
    QuickJoin {
        /// The quick join's request id.
        request_id: u64,
        /// The room type (empty: the default).
        room_type: String,
        /// The metadata the room must hold.
        filters: Metadata,
        /// Rooms the session is in (or joining): not these.
        skip: Vec<String>,
        /// The token's room patterns (none: any room).
        allowed: Option<Vec<String>>,
        /// Who joins: the member id and user the redirect's ticket carries on.
        member: proto::Seat,
    },
    /// Give up a room this node claimed and did not open (the join was refused, or
    /// left before the claim answered), unless it is open here by then: its entry
    /// would list a room that runs nowhere.
    Release {
        /// The room id.
        room: String,
    },
    /// One page of the cluster's rooms, for `ListRooms`.
    List {
        /// The request to answer.
        request_id: u64,
        /// List the ids after this one.
        after: String,
        /// At most this many.
        limit: usize,
        /// Only rooms of this type (empty: any).
        room_type: String,
        /// Only rooms whose metadata holds every one of these entries.
        filters: Metadata,
        /// Only rooms a quick join may pick.
        open_only: bool,
    },
}

/// Why a room that another process with this node's id holds is not joined here
/// ([`Claim::Superseded`] of a room not open here).
pub(crate) const ANOTHER_START: &str =
    "another process started with this node's id holds the room (it was cut off from Redis); retry shortly";

/// The answer to a join whose room, open here as its claim began, closed before the
/// claim answered.
pub(crate) fn closed_as_joined() -> PoolError {
    PoolError::Unavailable("the room closed as you joined; join again".into())
}

/// The directory's answer to a [`DirectoryOp`] (a refusal as the [`PoolError`] to
/// answer with).
#[derive(Debug)]
pub enum DirectoryReply {
    /// To [`DirectoryOp::Claim`].
    Claim {
        /// The room id.
        room: String,
        /// Whether this node owns it now, or which node does.
        outcome: Result<Claim, PoolError>,
        /// The room was open here as the claim began (the claim renewed its entry):
        /// the join must find it still open, not open it anew.
        was_open: bool,
        /// Redirected: the seat ticket for the owner (empty: none).
        ticket: String,
        /// The seat the join's ticket carried: join as that member.
        seat: Option<proto::Seat>,
        /// The claim's [`DirectoryOp::Claim::request_id`].
        request_id: u64,
        /// A claim of a room not open here: counted as opening it until the reply is
        /// done with (the room opened, or given up).
        opening: Option<Opening>,
    },
    /// To [`DirectoryOp::List`].
    List {
        /// The request.
        request_id: u64,
        /// A page of rooms, and where the next starts (none: this is the last).
        outcome: Result<(Vec<proto::RoomInfo>, Option<String>), PoolError>,
    },
    /// To [`DirectoryOp::QuickJoin`].
    QuickJoin {
        /// The quick join's request id.
        request_id: u64,
        /// The room found (none: create one), or the refusal.
        outcome: Result<Option<Found>, PoolError>,
    },
    /// To [`DirectoryOp::Release`] (done, or failed: the lease lapses then).
    Released {
        /// The room id.
        room: String,
    },
}

/// An open room on another node, for a quick join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The room id.
    pub room: String,
    /// Where the owning node's clients connect.
    pub url: String,
    /// The seat ticket for the join there.
    pub seat: String,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node owns the room now (or already did).
    Ours,
    /// Another node owns it; its URL, if the node is alive (a node whose own lease
    /// lapsed has no URL until it renews).
    Theirs {
        /// The owner's id.
        node: String,
        /// Where its clients connect.
        url: Option<String>,
    },
    /// Nobody holds the room's lease, but Redis has just come back from a stall or an
    /// outage (every lease lapsed) and the room has a checkpoint, or Redis came back
    /// empty: its node, if alive, takes it back at its next renewal. Ask again in a
    /// moment.
    Settling,
    /// The copy of the room this node runs is out of date: its lease lapsed (the node
    /// was cut off from the directory) and another claim took the room since, whether
    /// or not that claim's node still holds it. Or another start of this node's id
    /// holds the room. Not taken; the copy here must close. (Only the Redis directory
    /// numbers claims: one process's never answers this.)
    Superseded,
}

/// A claim of a room not open here, under way: counted in the cluster's rooms
/// opening while it lives. A join's claim is held until its session opened the room
/// (or gave up): until then the room is not released for another join that left
/// meanwhile, and calls for it wait for it to open.
pub struct Opening {
    rooms: Arc<parking_lot::Mutex<HashMap<String, usize>>>,
    room: String,
}

impl Opening {
    /// Counts `room` in `rooms` (by the claims opening it) while the guard lives.
    pub(crate) fn new(rooms: &Arc<parking_lot::Mutex<HashMap<String, usize>>>, room: &str) -> Self {
        *rooms.lock().entry(room.to_string()).or_default() += 1;
        Self {
            rooms: rooms.clone(),
            room: room.to_string(),
        }
    }
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Opening").field(&self.room).finish()
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        let mut rooms = self.rooms.lock();
        if let Some(claims) = rooms.get_mut(&self.room) {
            *claims -= 1;
            if *claims == 0 {
                rooms.remove(&self.room);
            }
        }
    }
}
