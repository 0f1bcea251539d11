use std::collections::VecDeque;
use std::sync::Arc;

use crate::engine::outbox::Outbox;
use crate::proto::{MemberInfo, input};
use crate::state::{MemberId, Tick};

/// What happened to a pushed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InputVerdict {
    Queued,
    /// Sequence number not above the last accepted one: already queued or applied.
    Duplicate,
    QueueFull,
}

/// A member's seat in a room.
pub(super) struct Member {
    pub id: MemberId,
    pub user_id: Arc<str>,
    pub outbox: Arc<Outbox>,
    /// The session's number of the join this seat came from (see
    /// [`Outbox::leave_room`]).
    pub join_seq: u64,
    pub inputs: VecDeque<(u64, input::Payload)>,
    capacity: usize,
    /// Highest sequence number queued or applied: the dedup watermark.
    last_accepted: u64,
    /// Highest sequence number applied.
    pub last_applied: u64,
    /// `last_applied` as of the last frame sent.
    pub last_sent_seq: u64,
    pub needs_full: bool,
    /// A frame is owed at the next tick, however little changes (see
    /// `Room::fan_out`): what waited for it untaken was kept, or its full snapshot
    /// waits for the room's budget, or it was given a snapshot of an earlier tick.
    pub behind: bool,
    /// The tick at which it was last sent a new full snapshot (whatever that
    /// snapshot's tick): its first, one a resync
    /// earned, or the first after its session was reset by a resume (0: none yet).
    /// Full snapshots sent again until an unreliable transport's client has one do
    /// not count.
    pub last_full: Tick,
    /// The tick at which a full snapshot was last queued for it, if no frame was
    /// queued since (0 otherwise): it may still wait untaken, and a full snapshot the
    /// room encodes later replaces it (see `Room::fan_out`).
    pub full_queued: Tick,
    /// The size of the own part (entities of owner-only kinds it sees) of the last
    /// full snapshot encoded for it: its full snapshot is that much larger than the
    /// room's, and the part is encoded for it alone (see `Room::fan_out`).
    pub own_full_bytes: usize,
    /// The tick of its first frame (0: seated by a restore): leaving sooner than a
    /// second after it counts like leaving after a full snapshot, so joining and
    /// leaving cannot be cycled (each costs every member a presence message).
    pub joined_tick: Tick,
    /// The other members were told it joined (or it was in the member list of their
    /// own `Joined`): presence of its leave is then owed to them.
    pub announced: bool,
    /// A `Joined` it is owed at the next tick, with the request id to answer.
    pub joined_reply: Option<u64>,
    /// The tick its session was first seen waiting for a resume ([`Outbox::is_away`]),
    /// if it still waits.
    pub away_since: Option<Tick>,
    /// It has waited a second or more, and whether the others were told so (presence
    /// `AWAY`, then `BACK`).
    pub away: bool,
    pub away_told: bool,
    /// Whether the simulation was told it is away ([`Simulation::away`]).
    pub away_simulated: bool,
    /// The tick its last input arrived before (its join's, before any).
    pub last_input_tick: Tick,
    /// It sent an input since it joined.
    pub sent_input: bool,
    /// The digest of the room's metadata and lock it was last told (its `Joined`, a
    /// `RoomUpdated`; see [`ListingState::told_digest`]).
    ///
    /// [`ListingState::told_digest`]: crate::engine::listing::ListingState::told_digest
    pub listing_told: u64,
    /// Room events queued and not yet relayed to it: how many, and what they cost
    /// its share (see `Room::push_event`).
    pub events_owed: (usize, usize),
    /// The room's last event number when it was seated: events numbered up to it
    /// (broadcasts queued before it came, which it may still get) were not counted
    /// in `events_owed`.
    pub events_from: u64,
}

impl Member {
    pub fn new(id: MemberId, user_id: Arc<str>, outbox: Arc<Outbox>, join_seq: u64, capacity: usize) -> Self {
        Self {
            id,
            user_id,
            outbox,
            join_seq,
            inputs: VecDeque::new(),
            capacity,
            last_accepted: 0,
            last_applied: 0,
            last_sent_seq: 0,
            needs_full: true,
            behind: false,
            last_full: 0,
            full_queued: 0,
            own_full_bytes: 0,
            joined_tick: 0,
            announced: false,
            joined_reply: None,
            away_since: None,
            away: false,
            away_told: false,
            away_simulated: false,
            last_input_tick: 0,
            sent_input: false,
            listing_told: 0,
            events_owed: (0, 0),
            events_from: 0,
        }
    }

    /// Its id and user id, as presence and `Joined` show them.
    pub fn info(&self) -> MemberInfo {
        MemberInfo {
            member_id: self.id,
            user_id: self.user_id.to_string(),
            away: self.away,
        }
    }

    /// Continues a seat whose inputs up to `last_applied` were applied (before a
    /// restore): later ones are taken, earlier ones are duplicates.
    pub fn resume_after(&mut self, last_applied: u64) {
        self.last_accepted = last_applied;
        self.last_applied = last_applied;
        self.last_sent_seq = last_applied;
    }

    /// Queues an input unless it is a duplicate or the queue is full. A refused input
    /// does not move the watermark, so the client may send it again.
    pub fn accept(&mut self, seq: u64, payload: input::Payload) -> InputVerdict {
        if seq <= self.last_accepted {
            return InputVerdict::Duplicate;
        }
        if self.inputs.len() >= self.capacity {
            return InputVerdict::QueueFull;
        }
        self.last_accepted = seq;
        self.inputs.push_back((seq, payload));
        InputVerdict::Queued
    }
}
