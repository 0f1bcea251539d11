//! The room engine, sans IO: members, input queues, events, and the tick that turns
//! inputs into state frames in every member's [`Outbox`].
//!
//! A tick runs: presence and `Joined` for the joins and leaves since the last tick →
//! the simulation's joins and leaves → each member's queued inputs (join order,
//! sequence order) → [`Simulation::step`] → checksum → relay events → fan out state.
//! The fan-out encodes one body per distinct delta content (in practice: one for the
//! in-sync members, one full snapshot for members that need it) and hands every
//! member a cheap clone of it. With [`RoomConfig::naive_fanout`] (a benchmark baseline)
//! every member instead gets its own full snapshot, encoded for it alone, every tick.
//! Nothing here blocks, sleeps or reads a clock: the
//! driver ([`crate::engine::sim_pool`]) calls [`Room::tick`] when the tick is due.

mod bans;
mod config;
mod member;

pub use bans::{Bans, MAX_BANS, user_digest};
pub use config::{ConfigError, RoomConfig};

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use prost::Message;
use rustc_hash::FxHashMap;

use crate::delta::{self, FrameMeta, View};
use crate::engine::listing::{Listing, ListingState};
use crate::engine::outbox::{Delivery, Outbox, PendingState, RoomKey};
use crate::engine::simulation::{
    MAX_EVENT_KIND_BYTES, MAX_EVENT_PAYLOAD_BYTES, Requests, Roster, SimContext, Simulation, valid_event_kind,
};
use crate::frame::encode_message;
use crate::log_budget::LogBudget;
use crate::mirror::StateMirror;
use crate::packed::Values;
use crate::proto::{
    self, ErrorCode, MemberInfo, Presence, PresenceChange, RoomEvent, SendEvent, input, server_message::Kind,
};
use crate::state::{MemberId, Own, SERVER, Tick, World, chained_entity_hash};

/// The simulation's events over the size limits: one log line a second at most.
static DROPPED_EVENTS: LogBudget = LogBudget::new("room_events_dropped", 1);

/// Server events (published, or sent by the simulation) a room dropped at its bound:
/// one log line a second at most.
static DROPPED_PUBLISHES: LogBudget = LogBudget::new("room_publishes_dropped", 1);

/// Bans not kept (a room at [`MAX_BANS`]): at most one line a second.
static BANS_NOT_KEPT: LogBudget = LogBudget::new("bans_not_kept", 1);
use member::{InputVerdict, Member};

/// Counters of one room, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// Ticks run.
    pub ticks: u64,
    /// Inputs applied without error.
    pub inputs_applied: u64,
    /// Inputs the simulation refused (ownership, limits, malformed).
    pub inputs_rejected: u64,
    /// Inputs ignored as duplicates (sequence number not above the last accepted).
    pub inputs_duplicate: u64,
    /// Inputs refused because the member's queue was full.
    pub inputs_overflowed: u64,
    /// State frames handed to outboxes.
    pub frames: u64,
    /// Of which full snapshots.
    pub full_frames: u64,
    /// Bodies encoded (one per distinct delta content per tick).
    pub encodes: u64,
    /// Bytes of encoded bodies and members' own parts.
    pub bytes_encoded: u64,
    /// Room events relayed.
    pub events: u64,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// The tick number.
    pub tick: Tick,
    /// State frames handed to outboxes.
    pub frames: u32,
    /// Of which full snapshots.
    pub full_frames: u32,
    /// Bodies encoded this tick.
    pub encodes: u32,
    /// Size of the delta body sent to in-sync members (0 if none was sent).
    pub delta_bytes: usize,
    /// Size of the full snapshot body (0 if none was sent).
    pub full_bytes: usize,
    /// Bytes of members' own parts (their entities of owner-only kinds), all
    /// together.
    pub own_bytes: usize,
    /// Inputs the simulation refused this tick.
    pub inputs_refused: u32,
}

/// Who is in a room ([`Room::roll`]), as the HTTP API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Roll {
    /// Its members, in join order.
    pub members: Vec<Seated>,
    /// Seats it keeps for members of its checkpoint that have not come back yet.
    pub kept_seats: Vec<Seated>,
    /// The users banned from it, by user id.
    pub bans: Vec<Banned>,
}

/// A ban in a [`Roll`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Banned {
    /// The user id.
    pub user_id: String,
    /// Seconds until the ban ends (rounded up).
    pub remaining_secs: u64,
}

/// A member (or a kept seat) in a [`Roll`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Seated {
    /// The member id (its session's id).
    pub member_id: MemberId,
    /// Its user id.
    pub user_id: String,
}

/// Who joins a room ([`Room::admit`]).
#[derive(Debug, Clone)]
pub struct Joiner {
    /// The member id (its session's id, or a redirected member's).
    pub member: MemberId,
    /// Its user id.
    pub user_id: Arc<str>,
    /// What it told the room's game about itself (`JoinRoom.member_data`).
    pub data: Bytes,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The room is at its member cap.
    #[error("room is full")]
    Full,
    /// The member joins again less than a second after its last full snapshot, having
    /// left a room others are in.
    #[error("joined again too soon")]
    TooSoon,
    /// The game's backend banned the user from the room ([`Room::remove_user`]).
    #[error("banned from the room")]
    Banned,
}

enum SimCall {
    Join(MemberId, Arc<str>, Bytes),
    Leave(MemberId),
    Away(MemberId, bool),
}

/// The simulation's view of `room` for a callback at `tick` (a macro, so that the
/// room's other fields stay free to borrow meanwhile).
macro_rules! sim_context {
    ($room:expr, $tick:expr) => {
        SimContext {
            room: &$room.id,
            world: &mut $room.world,
            tick: $tick,
            dt: 1.0 / $room.config.tick_rate as f32,
            limits: $room.config.limits,
            listing: &$room.listing,
            requests: &mut $room.requests,
            members: &$room.roster,
        }
    };
}

struct QueuedEvent {
    sender: MemberId,
    /// Numbered as it is queued: each member gets its events in the queue's order,
    /// so with ascending numbers, whenever each goes.
    seq: u64,
    /// What relaying it costs a member's share (its payload, kind and targets).
    cost: usize,
    /// The members still owed it (sorted): its addressees, less those it went to and
    /// those that left. A broadcast's are taken at its first relay (every member but
    /// the sender then: one that joined since it was queued gets it too).
    owed: Option<Vec<MemberId>>,
    /// The event, until it first goes out (emptied then).
    event: SendEvent,
    /// Its message, once it went to some of those owed it.
    message: Option<Bytes>,
}

/// Events still owed to `member` (it left, or gave up a seat a restore kept) are
/// not, should it join again.
fn forget_owed(events: &mut [QueuedEvent], member: MemberId) {
    for queued in events {
        if let Some(owed) = &mut queued.owed
            && let Ok(at) = owed.binary_search(&member)
        {
            owed.remove(at);
        }
    }
}

/// A broadcast's addressees (see [`QueuedEvent::owed`]): the members but its sender,
/// sorted.
fn everyone_but(members: &[Member], sender: MemberId) -> Vec<MemberId> {
    let mut all: Vec<MemberId> = (members.iter().map(|m| m.id)).filter(|&id| id != sender).collect();
    all.sort_unstable();
    all
}

/// What relaying `event` costs a member's share of a tick.
fn event_cost(kind: &str, payload: &[u8], targets: &[MemberId]) -> usize {
    payload.len() + kind.len() + 8 * targets.len()
}

/// Events owed to one member may cost up to this many times its reliable queue's
/// bounds: past that, an event naming it is refused (it takes them a quarter of its
/// bounds a tick).
const OWED_QUEUES: usize = 2;

/// Which body a member's frame uses: every member whose delta would hold the same
/// changes shares one encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKey {
    Full,
    /// Number of change ticks after the baseline: deltas against two baselines with no
    /// change between them are identical, so they share this key (if their numbers
    /// are sent the same way).
    Delta(usize, Values),
}

/// One room: see the module documentation.
pub struct Room {
    key: RoomKey,
    id: Arc<str>,
    room_type: Arc<str>,
    config: RoomConfig,
    sim: Box<dyn Simulation>,
    world: World,
    /// Members in join order (the order inputs are applied in).
    members: Vec<Member>,
    /// Member id → position in `members`.
    index: FxHashMap<MemberId, usize>,
    sim_calls: Vec<SimCall>,
    events: Vec<QueuedEvent>,
    /// What the simulation asked during a callback, done after it (kept between
    /// ticks: no allocation).
    requests: Requests,
    /// Why the simulation closed the room ([`Room::closing`]).
    closing: Option<String>,
    /// The simulation panicked saving its state for a checkpoint ([`Room::failed`]).
    failed: bool,
    /// The members the simulation knows of ([`SimContext::members`]).
    roster: Roster,
    /// Reliable messages and bytes each member (by position) got from this tick's
    /// presence and events, which together stay within a quarter of its queue's
    /// bounds when events wait (see [`Room::relay_events`]); kept between ticks (no
    /// allocation).
    sent_this_tick: Vec<(usize, usize)>,
    event_seq: u64,
    /// Ticks within the history window at which the world changed, ascending.
    change_ticks: VecDeque<Tick>,
    bodies: Vec<(BodyKey, Bytes)>,
    encoder: delta::Encoder,
    buf: BytesMut,
    stats: RoomStats,
    /// A restored room's members, by member id: their seats (and entities) are kept
    /// until the tick given, for their sessions to take back.
    reserved: FxHashMap<MemberId, Reserved>,
    /// Members that left less than a second after their last full snapshot, and its
    /// tick: joining again then is refused until the second is over (while others
    /// are in the room).
    left_recently: FxHashMap<MemberId, Tick>,
    /// Announced members that left since the last tick (see [`Room::announce`]).
    departed: Vec<MemberInfo>,
    /// A join, a leave of an announced member or a `Joined` owed since the last tick.
    presence_due: bool,
    /// The room's owner left since the last tick (it may be back already, as a new
    /// member): its ownership passes on ([`Room::pass_ownership`]).
    owner_left: bool,
    /// The tick a checkpoint restored the room at: the owner's seat kept since then
    /// counts as away a second after it.
    restored_at: Option<Tick>,
    /// The member its owner handed the room to since the last tick, to announce.
    handed_to: Option<MemberId>,
    /// The tick of the last handover (0: none): at most one a second, as each costs
    /// every member a presence message.
    handed_at: Tick,
    /// The simulation was told the room opened ([`Simulation::start`]) or restored.
    started: bool,
    /// What the room shows in listings (shared with the room directory).
    listing: Arc<Listing>,
    /// The listing's changes last looked at ([`Listing::changes`]) and the tick they
    /// were (see [`Room::tell_listing`]).
    listing_seen: (u64, Tick),
    /// What members are told of the listing as last looked at: its digest and its
    /// `RoomUpdated` (none before a change).
    listing_now: Option<(u64, Bytes)>,
    /// A member was not told the listing as it is (its connection lost).
    listing_behind: bool,
    /// Users whose joins are refused, and until when (shared with quick joins).
    bans: Arc<Bans>,
}

/// A seat a restored room keeps for a member of its checkpoint.
struct Reserved {
    user_id: Arc<str>,
    last_applied: u64,
    until: Tick,
}

/// Why a checkpoint could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot restore room from its checkpoint: {0}")]
pub struct RestoreError(String);

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("id", &self.id)
            .field("type", &self.room_type)
            .field("tick", &self.world.tick())
            .field("members", &self.members.len())
            .field("entities", &self.world.len())
            .finish()
    }
}

impl Room {
    /// A new, empty room. `key` must be unique among the rooms sharing outboxes.
    pub fn new(key: RoomKey, id: Arc<str>, room_type: Arc<str>, config: RoomConfig, sim: Box<dyn Simulation>) -> Self {
        Self {
            key,
            id,
            room_type,
            world: World::with_schema(config.history, sim.schema()),
            config,
            sim,
            members: Vec::new(),
            index: FxHashMap::default(),
            sim_calls: Vec::new(),
            events: Vec::new(),
            requests: Requests::default(),
            closing: None,
            failed: false,
            roster: Roster::default(),
            sent_this_tick: Vec::new(),
            event_seq: 0,
            change_ticks: VecDeque::new(),
            bodies: Vec::new(),
            encoder: delta::Encoder::default(),
            buf: BytesMut::new(),
            stats: RoomStats::default(),
            reserved: FxHashMap::default(),
            left_recently: FxHashMap::default(),
            departed: Vec::new(),
            presence_due: false,
            owner_left: false,
            restored_at: None,
            handed_to: None,
            handed_at: 0,
            started: false,
            listing: Arc::default(),
            listing_seen: (0, 0),
            listing_now: None,
            listing_behind: false,
            bans: Arc::default(),
        }
    }

    /// A room as `checkpoint` left it: its entities at the checkpoint's tick (checked
    /// against the snapshot's checksum), its event numbering, its shows, and its
    /// members' seats, kept for `seat_ticks` ticks for their sessions to take back
    /// (with the inputs the room had applied). The simulation rebuilds what it keeps beside the world
    /// ([`Simulation::restore`]).
    pub fn restore(
        key: RoomKey,
        config: RoomConfig,
        sim: Box<dyn Simulation>,
        checkpoint: &proto::RoomCheckpoint,
        seat_ticks: Tick,
    ) -> Result<Self, RestoreError> {
        let failed = |e: String| RestoreError(e);
        let (id, room_type) = (checkpoint.room.as_str().into(), checkpoint.room_type.as_str().into());
        let mut room = Self::new(key, id, room_type, config, sim);
        let mut frame = proto::StateFrame::decode(&checkpoint.state[..]).map_err(|e| failed(e.to_string()))?;
        // A node of protocol version 1 (before a rolling upgrade reached it) wrote
        // its checkpoints' checksums by that version's definition: either is taken.
        let checksum = frame.checksum.take();
        let mut mirror = StateMirror::with_schema(room.world.schema().clone());
        mirror.apply(&frame).map_err(|e| failed(e.to_string()))?;
        if let Some(expected) = checksum {
            let world = mirror.world();
            let chained = || {
                (world.entities()).fold(0u64, |sum, e| {
                    sum.wrapping_add(chained_entity_hash(e.id(), e.owner(), e.kind(), e.fields()))
                })
            };
            if world.checksum() != expected && chained() != expected {
                return Err(failed(format!("checksum mismatch at tick {}", frame.tick)));
            }
        }
        let tick = checkpoint.tick;
        room.world.begin_tick(tick);
        for e in mirror.world().entities() {
            let fields = e.fields().map(|(f, v)| (f, v.clone()));
            (room.world.spawn(e.id(), e.owner(), e.kind(), fields)).map_err(|e| failed(e.to_string()))?;
        }
        room.world.finish_tick();
        room.event_seq = checkpoint.event_seq;
        room.restored_at = Some(tick);
        // A room checkpointed before its first tick (an empty room kept open by the
        // configuration, moved by a rolling restart) has not been started: it is, at
        // its first tick here.
        room.started = tick > 0;
        if let Some(listing) = &checkpoint.listing {
            room.listing = Arc::new(Listing::new(ListingState::from_proto(listing)));
        }
        room.bans = Arc::new(Bans::from_proto(&checkpoint.bans));
        for seat in &checkpoint.seats {
            let reserved = Reserved {
                user_id: seat.user_id.as_str().into(),
                last_applied: seat.last_input_seq,
                until: tick + seat_ticks,
            };
            room.roster.insert(seat.member_id, reserved.user_id.clone());
            room.roster.set_data(seat.member_id, seat.member_data.clone());
            // Its connection is elsewhere until it joins again (told back then).
            room.roster.set_away(seat.member_id, true);
            room.reserved.insert(seat.member_id, reserved);
        }
        // Events a stopping node still owed to members over their share: relayed to
        // them once they take back their seats.
        for pending in &checkpoint.pending_events {
            let Some(relayed) = &pending.event else { continue };
            let mut owed: Vec<MemberId> = (pending.owed.iter().copied())
                .filter(|member| room.reserved.contains_key(member))
                .collect();
            owed.sort_unstable();
            owed.dedup();
            if owed.is_empty() {
                continue;
            }
            // Relayed to some already (numbered and encoded on the node that stopped):
            // encoded here again, as it was.
            let cost = event_cost(&relayed.kind, &relayed.payload, &relayed.targets);
            let event = RoomEvent {
                room: room.id.to_string(),
                ..relayed.clone()
            };
            room.events.push(QueuedEvent {
                sender: relayed.sender,
                seq: relayed.seq,
                cost,
                owed: Some(owed),
                event: SendEvent::default(),
                message: Some(encode_message(Kind::Event(event))),
            });
        }
        // (A show of an entity the snapshot lacks is dropped, not the room.)
        for shown in (checkpoint.shown.iter()).filter(|v| room.reserved.contains_key(&v.member)) {
            let _ = room.world.show(shown.id, shown.member);
        }
        let members: Vec<MemberId> = room.reserved.keys().copied().collect();
        room.sim.load(&checkpoint.game_state);
        room.sim.restore(&mut sim_context!(room, tick), &members);
        room.do_requests();
        room.remove_members();
        // Again: what the simulation wrote as it restored is hashed and in id order
        // before a checkpoint (a hand-off may come before the first tick) reads it.
        room.world.finish_tick();
        Ok(room)
    }

    /// What the simulation keeps beside the world ([`Simulation::save`]). A panic
    /// there (a bug in the game, as in any callback) marks the room failed: the
    /// driver closes it as after a tick that panics.
    pub fn game_state(&mut self) -> Bytes {
        let sim = &self.sim;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.save())) {
            Ok(saved) => saved.into(),
            Err(_) => {
                self.failed = true;
                Bytes::new()
            }
        }
    }

    /// Whether the simulation panicked saving its state ([`Room::game_state`]): the
    /// room must close, and its checkpoint not be written.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The room's state for a checkpoint (call between ticks): every entity as a full
    /// snapshot, the event numbering, the members' seats (seats still kept from a
    /// restore included) and what is shown to whom, stamped `time_us`, and what the
    /// simulation saves ([`Room::game_state`]: check [`Room::failed`] before writing
    /// it).
    pub fn checkpoint(&mut self, time_us: u64) -> proto::RoomCheckpoint {
        let game_state = self.game_state();
        self.checkpoint_with(time_us, game_state)
    }

    /// [`Room::checkpoint`] with the simulation's state already asked.
    pub fn checkpoint_with(&mut self, time_us: u64, game_state: Bytes) -> proto::RoomCheckpoint {
        let meta = FrameMeta {
            room: &self.id,
            server_time_us: time_us,
            checksum: Some(self.world.checksum()),
        };
        self.encoder.encode(
            &self.world,
            0,
            Values::AgainstBaseline,
            View::Whole,
            meta,
            &mut self.buf,
        );
        let state = self.buf.split().freeze();
        let members = self.members.iter().map(|m| proto::Seat {
            member_id: m.id,
            user_id: m.user_id.to_string(),
            last_input_seq: m.last_applied,
            member_data: self.roster.data(m.id).clone(),
            ..Default::default()
        });
        let reserved = self.reserved.iter().map(|(&id, r)| proto::Seat {
            member_id: id,
            user_id: r.user_id.to_string(),
            last_input_seq: r.last_applied,
            member_data: self.roster.data(id).clone(),
            ..Default::default()
        });
        proto::RoomCheckpoint {
            room: self.id.to_string(),
            room_type: self.room_type.to_string(),
            tick: self.world.tick(),
            event_seq: self.event_seq,
            state,
            seats: members.chain(reserved).collect(),
            time_us,
            listing: Some(self.listing.with(ListingState::to_proto)),
            bans: self.bans.to_proto(time_us),
            game_state,
            shown: self.shows(),
            // (A hand-off's hold every event still owed: see `Room::pending_events`.)
            pending_events: self.owed_to_kept_seats(),
        }
    }

    /// The events not yet relayed to every addressee, in order, with the members
    /// still owed each: for the checkpoint of a hand-off, after which the room ticks no
    /// more ([`Room::finish_pending`] first leaves only those owed to members over
    /// their share). A restore relays them to those members once they take back their
    /// seats.
    pub fn pending_events(&self) -> Vec<proto::PendingEvent> {
        self.events_owed_to(|_| true)
    }

    /// The events still owed to seats a restore keeps for members not back yet: in
    /// every checkpoint, so that the room's node dying before they come back loses
    /// none of them. (None owed to members here: they may get them any moment, and
    /// a room restored after a node died would relay them twice.)
    fn owed_to_kept_seats(&self) -> Vec<proto::PendingEvent> {
        if self.reserved.is_empty() {
            return Vec::new();
        }
        self.events_owed_to(|member| self.reserved.contains_key(&member))
    }

    /// [`Room::pending_events`] owed to the members `owed_to` names.
    fn events_owed_to(&self, owed_to: impl Fn(MemberId) -> bool) -> Vec<proto::PendingEvent> {
        // (Without the room's id: the checkpoint's.)
        let relayed = |queued: &QueuedEvent| match &queued.message {
            // (Encoded here: decoding it gives the event back.)
            Some(message) => match proto::ServerMessage::decode(&message[..]).ok()?.kind? {
                Kind::Event(event) => Some(RoomEvent {
                    room: String::new(),
                    ..event
                }),
                _ => None,
            },
            None => Some(RoomEvent {
                room: String::new(),
                seq: queued.seq,
                sender: queued.sender,
                kind: queued.event.kind.clone(),
                payload: queued.event.payload.clone(),
                targets: queued.event.targets.clone(),
            }),
        };
        (self.events.iter())
            .filter_map(|queued| {
                // A broadcast not relayed yet: as at its first relay.
                let mut owed = (queued.owed.clone()).unwrap_or_else(|| everyone_but(&self.members, queued.sender));
                owed.retain(|&member| owed_to(member));
                if owed.is_empty() {
                    return None;
                }
                Some(proto::PendingEvent {
                    event: Some(relayed(queued)?),
                    owed,
                })
            })
            .collect()
    }

    /// What [`World::shows`] holds, in order.
    fn shows(&self) -> Vec<proto::Viewer> {
        let mut shows: Vec<_> = (self.world.shows())
            .map(|(id, member)| proto::Viewer { id, member })
            .collect();
        shows.sort_unstable_by_key(|v| (v.id, v.member));
        shows
    }

    /// A hash of what a checkpoint holds but its tick and time: the state (its
    /// checksum), the event numbering, the seats (and the events kept ones are owed),
    /// the shows, the listing and
    /// `game_state` (what the simulation saves beside the world). Equal between two checkpoints when
    /// nothing a restore would bring back changed.
    pub fn checkpoint_fingerprint(&self, game_state: &[u8]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        (self.world.checksum(), self.world.len(), self.event_seq).hash(&mut hasher);
        for member in &self.members {
            let data = &self.roster.data(member.id)[..];
            (member.id, &*member.user_id, member.last_applied, data).hash(&mut hasher);
        }
        let mut reserved: Vec<_> = self.reserved.iter().map(|(&id, r)| (id, r.last_applied)).collect();
        reserved.sort_unstable();
        reserved.hash(&mut hasher);
        // What those seats are owed (see `owed_to_kept_seats`).
        if !reserved.is_empty() {
            for queued in &self.events {
                let kept = (queued.owed.iter().flatten()).filter(|member| self.reserved.contains_key(member));
                (queued.seq, kept.collect::<Vec<_>>()).hash(&mut hasher);
            }
        }
        self.bans.hash_into(&mut hasher);
        for shown in self.shows() {
            (shown.id, shown.member).hash(&mut hasher);
        }
        self.listing
            .with(|listing| listing.to_proto().encode_to_vec())
            .hash(&mut hasher);
        game_state.hash(&mut hasher);
        hasher.finish()
    }

    /// What the room shows in listings.
    pub fn listing(&self) -> &Arc<Listing> {
        &self.listing
    }

    /// Sets what a new room shows in listings (its creating join's options).
    pub fn set_listing(&mut self, state: ListingState) {
        self.listing.update(|l| *l = state);
        // Its members learn it from their `Joined`.
        self.listing_seen.0 = self.listing.changes();
    }

    /// The room key.
    pub fn key(&self) -> RoomKey {
        self.key
    }

    /// The room id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The room's configuration.
    pub fn config(&self) -> &RoomConfig {
        &self.config
    }

    /// The current state.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// Cumulative counters.
    pub fn stats(&self) -> RoomStats {
        self.stats
    }

    /// Seats a restored room keeps for members of its checkpoint (they count against
    /// the member cap until taken back or lapsed).
    pub fn kept_seats(&self) -> usize {
        self.reserved.len()
    }

    /// Who is in the room: its members in join order, then the seats it keeps (by
    /// member id), each with its user id; and whom it bans at `now_us`.
    pub fn roll(&self, now_us: u64) -> Roll {
        let seated = |member_id, user_id: &Arc<str>| Seated {
            member_id,
            user_id: user_id.to_string(),
        };
        let mut kept_seats: Vec<Seated> = (self.reserved.iter())
            .map(|(&id, seat)| seated(id, &seat.user_id))
            .collect();
        kept_seats.sort_unstable_by_key(|s| s.member_id);
        let mut bans: Vec<Banned> = (self.bans.to_proto(now_us).into_iter())
            .map(|ban| Banned {
                user_id: ban.user_id,
                remaining_secs: (ban.until_us - now_us).div_ceil(1_000_000),
            })
            .collect();
        bans.sort_unstable_by(|a, b| a.user_id.cmp(&b.user_id));
        Roll {
            members: self.members.iter().map(|m| seated(m.id, &m.user_id)).collect(),
            kept_seats,
            bans,
        }
    }

    /// Whether nobody is in the room and no seat is kept for anyone: then nobody
    /// would see its ticks (kept seats lapse in ticks).
    pub fn is_vacant(&self) -> bool {
        self.members.is_empty() && self.reserved.is_empty()
    }

    /// Number of members (seats held for resume included).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Whether a tick has work to do though nobody would see its frame: calls to
    /// the simulation (leaves it has not heard of), events waiting, or removals the
    /// game's backend asked for ([`Room::remove_user`]). A room that
    /// emptied ticks until it has none, so that its simulation hears of the leaves
    /// at once and what it sends then goes to nobody, not to whoever joins next.
    pub fn has_pending_work(&self) -> bool {
        !self.sim_calls.is_empty() || !self.events.is_empty() || !self.requests.removals.is_empty()
    }

    /// Whether `member` is in the room.
    pub fn is_member(&self, member: MemberId) -> bool {
        self.member(member).is_some()
    }

    fn member(&self, id: MemberId) -> Option<&Member> {
        self.index.get(&id).map(|&i| &self.members[i])
    }

    fn member_mut(&mut self, id: MemberId) -> Option<&mut Member> {
        self.index.get(&id).map(|&i| &mut self.members[i])
    }

    /// [`Room::join`] unless the game's backend banned `user_id` from the room and the
    /// ban lasts past `now_us` (µs since the Unix epoch): then the join is refused
    /// with `FORBIDDEN`, saying for how long.
    pub fn admit(
        &mut self,
        joiner: Joiner,
        outbox: Arc<Outbox>,
        request_id: u64,
        join_seq: u64,
        now_us: u64,
    ) -> Result<(), JoinError> {
        match self.bans.remaining_us(&joiner.user_id, now_us) {
            Some(remaining_us) => {
                let secs = remaining_us.div_ceil(1_000_000);
                let message = format!("banned from this room by the game's server for {secs} more s");
                let error = proto::Error {
                    code: ErrorCode::Forbidden as i32,
                    message,
                    request_id,
                    room: self.id.to_string(),
                    retry_after_ms: u32::try_from(secs * 1000).unwrap_or(u32::MAX),
                };
                outbox.leave_room(self.key, join_seq);
                let _ = outbox.push_reliable(encode_message(Kind::Error(error)));
                Err(JoinError::Banned)
            }
            None => self.seat(joiner, outbox, request_id, join_seq),
        }
    }

    /// The game's backend removes `user_id` from the room: each of its members (and a
    /// seat kept for it) goes as a member the simulation removes does (after the next
    /// tick's events, with `Left`, `FORBIDDEN` and `why`), and its joins are refused
    /// for `ban_secs` from `now_us` (0: a ban it had is lifted). At most [`MAX_BANS`]
    /// bans are kept: one more replaces the ban that ends soonest, unless it is the
    /// soonest itself (then it is not kept, and logged).
    pub fn remove_user(&mut self, user_id: &str, why: &str, ban_secs: u32, now_us: u64) {
        let members = self.members.iter().filter(|m| &*m.user_id == user_id).map(|m| m.id);
        let seats = (self.reserved.iter()).filter(|(_, seat)| &*seat.user_id == user_id);
        let removed: Vec<MemberId> = members.chain(seats.map(|(&id, _)| id)).collect();
        for member in removed {
            self.requests.removals.push((member, why.to_string()));
        }
        if !self.bans.set(user_id, ban_secs, now_us)
            && let Some(suppressed) = BANS_NOT_KEPT.take(std::time::Instant::now())
        {
            tracing::warn!(
                room = %self.id,
                user = user_id,
                ban_secs,
                suppressed,
                "ban not kept: the room holds {MAX_BANS} bans, each ending later than this one"
            );
        }
    }

    /// The users banned from the room (shared with quick joins, which pass over it
    /// for them).
    pub fn bans(&self) -> &Arc<Bans> {
        &self.bans
    }

    /// Adds a member. At the next tick it is answered with `Joined`, the other
    /// members get presence and the simulation learns of it; its first frame is a
    /// full snapshot. A refusal (an `Error`) goes out at once.
    /// Joining again while a member is answered like a join, with `Joined` and a full
    /// snapshot, at most once per second (counted with resyncs); so is joining again
    /// after leaving a room others are in. Sooner, both are refused (`RATE_LIMITED`,
    /// with when to retry; a member stays one). (Sessions join through
    /// [`Room::admit`]: this, after the room's bans, with the member's data.)
    pub fn join(
        &mut self,
        member: MemberId,
        user_id: Arc<str>,
        outbox: Arc<Outbox>,
        request_id: u64,
        join_seq: u64,
    ) -> Result<(), JoinError> {
        let joiner = Joiner {
            member,
            user_id,
            data: Bytes::new(),
        };
        self.seat(joiner, outbox, request_id, join_seq)
    }

    /// [`Room::join`] with the joiner's `member_data` (the simulation's roster keeps
    /// it for a new member; a member joining again, or taking back a seat a restore
    /// kept, keeps its own).
    fn seat(&mut self, joiner: Joiner, outbox: Arc<Outbox>, request_id: u64, join_seq: u64) -> Result<(), JoinError> {
        let Joiner { member, user_id, data } = joiner;
        if let Some(&i) = self.index.get(&member) {
            let same_session = Arc::ptr_eq(&self.members[i].outbox, &outbox);
            // The membership goes on under this join's number, granted or refused: the
            // session forgets it only when told about its newest join.
            let old_join_seq = std::mem::replace(&mut self.members[i].join_seq, join_seq);
            let existing = &self.members[i];
            if same_session {
                // Joining a room it is in: its `Joined` (the whole member list) and a
                // full snapshot again, as a resync: at most once a second, and one
                // join answered at a time.
                if existing.joined_reply.is_some() {
                    let error = self.error(
                        ErrorCode::AlreadyMember,
                        "a join of this room is being answered",
                        request_id,
                    );
                    let _ = outbox.push_reliable(error);
                    return Err(JoinError::TooSoon);
                }
                if let Some(wait) = self.snapshot_wait(existing.last_full) {
                    let error = self.rate_limited("joined a room it is in within a second", wait, request_id);
                    let _ = outbox.push_reliable(error);
                    return Err(JoinError::TooSoon);
                }
            }
            // A join of the old session still waiting for its `Joined` is answered: a
            // newer session takes the seat.
            // (A resume's `Joined`, request id 0, answers nothing.)
            if !same_session && let Some(waiting) = self.members[i].joined_reply.filter(|&id| id != 0) {
                let message = "a newer session of this member took the seat";
                let error = self.error(ErrorCode::NotAMember, message, waiting);
                let _ = self.members[i].outbox.push_reliable(error);
            }
            let existing = &mut self.members[i];
            if !same_session {
                // A new session with this member id (continued from another node):
                // its first full snapshot, not one more for the old one, which is told
                // it left (its inputs and events are no longer the seat's).
                existing.outbox.leave_room(self.key, old_join_seq);
                existing.outbox = outbox;
                existing.last_full = 0;
            }
            existing.needs_full = true;
            existing.joined_reply = Some(request_id);
        } else if let Some(seat) = self.take_reserved(member, &user_id) {
            // Back after a restore: the simulation kept what it had for this member.
            let mut seated = Member::new(member, seat.user_id, outbox, join_seq, self.config.input_queue);
            seated.events_from = self.event_seq;
            seated.resume_after(seat.last_applied);
            seated.last_input_tick = self.world.tick();
            // The simulation knew it away since the restore: back at the next tick.
            seated.away_simulated = true;
            seated.joined_reply = Some(request_id);
            // A seat checkpointed without data (by an older relay) takes the join's.
            if self.roster.data(member).is_empty() {
                self.roster.set_data(member, data);
            }
            self.index.insert(member, self.members.len());
            self.members.push(seated);
        } else if let Some(wait) = (self.left_recently.get(&member)).and_then(|&last| self.snapshot_wait(last)) {
            // (`left_recently` is empty while the room is: an empty room does not tick.)
            let error = self.rate_limited("joined again within a second of leaving", wait, request_id);
            outbox.leave_room(self.key, join_seq);
            let _ = outbox.push_reliable(error);
            return Err(JoinError::TooSoon);
        } else if self.members.len() + self.reserved.len() >= self.config.max_members {
            let error = self.error(ErrorCode::RoomFull, "room is full", request_id);
            outbox.leave_room(self.key, join_seq);
            let _ = outbox.push_reliable(error);
            return Err(JoinError::Full);
        } else {
            self.sim_calls.push(SimCall::Join(member, user_id.clone(), data));
            let mut joining = Member::new(member, user_id, outbox, join_seq, self.config.input_queue);
            joining.events_from = self.event_seq;
            joining.joined_tick = self.world.tick() + 1;
            joining.last_input_tick = self.world.tick();
            joining.joined_reply = Some(request_id);
            self.index.insert(member, self.members.len());
            self.members.push(joining);
        }
        self.presence_due = true;
        Ok(())
    }

    /// The `Joined` answering `m`'s join `request_id`: the room's members as they
    /// are now; and the digest of the listing it tells.
    fn joined_message(&self, m: &Member, request_id: u64) -> (Bytes, u64) {
        let (owner, metadata, locked, digest) =
            (self.listing).with(|l| (l.owner, l.metadata.clone(), l.locked, l.told_digest()));
        let joined = encode_message(Kind::Joined(proto::Joined {
            request_id,
            room: self.id.to_string(),
            room_type: self.room_type.to_string(),
            member_id: m.id,
            tick_rate: self.config.tick_rate,
            max_members: self.config.max_members as u32,
            members: self.members.iter().map(Member::info).collect(),
            last_input_seq: m.last_applied,
            schema: self.world.schema().to_proto(),
            owner,
            metadata,
            locked,
        }));
        (joined, digest)
    }

    /// Tells each member the room's metadata and lock (`RoomUpdated`) when they are
    /// not what it was last told, looking at most four times a second (every quarter
    /// of a second of ticks): each costs every member up to 5 KiB, and an owner may
    /// change them at its request rate, a simulation every tick. A member whose
    /// `Joined` is owed learns them from it; one whose connection is lost is told
    /// once it is back (however often they changed meanwhile, its queue holds none of
    /// it).
    fn tell_listing(&mut self, tick: Tick) {
        let (seen, at) = self.listing_seen;
        let changes = self.listing.changes();
        let interval = Tick::from(self.config.tick_rate).div_ceil(4);
        if (changes == seen && !self.listing_behind) || (at != 0 && tick < at + interval) {
            return;
        }
        self.listing_seen = (changes, tick);
        if changes != seen || self.listing_now.is_none() {
            self.listing_now = Some(self.listing.with(|l| {
                let message = encode_message(Kind::RoomUpdated(proto::RoomUpdated {
                    room: self.id.to_string(),
                    metadata: l.metadata.clone(),
                    locked: l.locked,
                }));
                (l.told_digest(), message)
            }));
        }
        let Some((digest, message)) = &self.listing_now else {
            return;
        };
        self.listing_behind = false;
        self.sent_this_tick.resize(self.members.len(), (0, 0));
        for (m, sent) in self.members.iter_mut().zip(&mut self.sent_this_tick) {
            if !m.announced || m.joined_reply.is_some() || m.listing_told == *digest {
                continue;
            }
            if m.outbox.is_away() {
                self.listing_behind = true;
                continue;
            }
            m.listing_told = *digest;
            *sent = (sent.0 + 1, sent.1 + message.len());
            let _ = m.outbox.push_reliable(message.clone());
        }
    }

    /// Sends `message` to every announced member but `except`, counted in
    /// `sent_this_tick`.
    fn tell_announced(&mut self, message: &Bytes, except: Option<MemberId>) {
        self.sent_this_tick.resize(self.members.len(), (0, 0));
        for (m, sent) in self.members.iter().zip(&mut self.sent_this_tick) {
            if m.announced && Some(m.id) != except {
                *sent = (sent.0 + 1, sent.1 + message.len());
                let _ = m.outbox.push_reliable(message.clone());
            }
        }
    }

    /// Sends `m` the `Joined` its join is owed, if any; returns its size (0: none)
    /// and the digest of the listing it told.
    fn answer_join(&self, m: &Member) -> (usize, u64) {
        let Some(request_id) = m.joined_reply else {
            return (0, m.listing_told);
        };
        let (joined, digest) = self.joined_message(m, request_id);
        let len = joined.len();
        let _ = m.outbox.push_reliable(joined);
        (len, digest)
    }

    /// Tells the members what changed in the room since the last tick, as one net
    /// change: those who knew of a member that left get its leave, those here before
    /// get the joins and the members whose connection was lost (`AWAY`, their seat
    /// held) or resumed (`BACK`; not told to the member itself), and each new member its `Joined` with everyone here
    /// now, then a new owner if ownership passed. A member that joined and left in
    /// between is never announced, so presence per tick is bounded by the room's size
    /// (at most twice `max_members` messages per member, and one `OWNER`), however
    /// many sessions join, leave, drop and resume.
    fn announce(&mut self) {
        if !self.presence_due {
            return;
        }
        self.presence_due = false;
        let departed = std::mem::take(&mut self.departed);
        let arrived = self.members.iter().filter(|m| !m.announced).map(Member::info);
        let turned = (self.members.iter())
            .filter(|m| m.announced && m.away != m.away_told)
            .map(|m| {
                (
                    m.info(),
                    if m.away {
                        PresenceChange::Away
                    } else {
                        PresenceChange::Back
                    },
                )
            });
        let mut changes = (departed.into_iter().map(|info| (info, PresenceChange::Left)))
            .chain(arrived.map(|info| (info, PresenceChange::Joined)))
            .chain(turned)
            .collect::<Vec<_>>();
        // Handed over by its owner, unless it passed on since (the new owner left).
        let owner = self.listing.with(|l| l.owner);
        let handed = (self.handed_to.take())
            .filter(|&to| to == owner)
            .and_then(|to| self.member(to));
        let handed = handed.map(Member::info);
        if let Some(heir) = self.pass_ownership().or(handed) {
            changes.push((heir, PresenceChange::Owner));
        }
        self.sent_this_tick.resize(self.members.len(), (0, 0));
        for (info, change) in changes {
            // A member is not told it was away: it learns that from its own connection
            // (and would read these only after its resume).
            let except = matches!(change, PresenceChange::Away | PresenceChange::Back).then_some(info.member_id);
            let message = encode_message(Kind::Presence(Presence {
                room: self.id.to_string(),
                member: Some(info),
                change: change as i32,
            }));
            self.tell_announced(&message, except);
        }
        // A resume's `Joined` (request id 0) goes with the full snapshot the resume
        // earned, which the fan-out holds until a second after the member's last:
        // resumes in a loop get one of each a second, not the room's member list
        // each time.
        let mut held = Vec::new();
        for i in 0..self.members.len() {
            let m = &self.members[i];
            if m.joined_reply == Some(0) && self.snapshot_wait(m.last_full).is_some() {
                held.push(i);
                continue;
            }
            let len;
            (len, self.members[i].listing_told) = self.answer_join(m);
            if len > 0 {
                let sent = &mut self.sent_this_tick[i];
                *sent = (sent.0 + 1, sent.1 + len);
            }
        }
        for m in &mut self.members {
            m.announced = true;
            m.away_told = m.away;
            m.joined_reply = None;
        }
        for &i in &held {
            self.members[i].joined_reply = Some(0);
        }
        self.presence_due |= !held.is_empty();
    }

    /// The owner's `UpdateRoom` handing the room to member `update.owner`, with its
    /// other listing changes, all or nothing: refused when `to` is not in the room or
    /// is away (it would pass on at once), and within a second of the last handover
    /// (each costs every member a presence message). The members are told at the next
    /// tick. A refusal is the `Error` to answer `request_id` with.
    pub fn update_listing(
        &mut self,
        member: MemberId,
        update: &proto::UpdateRoom,
        request_id: u64,
    ) -> Result<(), Bytes> {
        let to = update.owner;
        if self.listing.with(|l| l.owner) != member {
            return Err(self.error(ErrorCode::NotOwner, crate::engine::listing::NOT_OWNER, request_id));
        }
        let refuse = |message: String| self.error(ErrorCode::BadRequest, &message, request_id);
        match self.member(to) {
            None => return Err(refuse(format!("member {to} is not in the room"))),
            Some(m) if m.away => return Err(refuse(format!("member {to} is away"))),
            // It would give the room back at once.
            Some(m) if !self.lively(m) => {
                return Err(refuse(format!(
                    "member {to} sent no input within the room's owner_quiet_ms"
                )));
            }
            Some(_) => {}
        }
        if let Some(wait) = self.snapshot_wait(self.handed_at) {
            return Err(self.rate_limited("the room was handed over less than a second ago", wait, request_id));
        }
        (self.listing.update(|l| {
            l.apply_update(member, update)?;
            l.owner = to;
            Ok(())
        }))
        .map_err(|(code, message)| self.error(code, &message, request_id))?;
        self.handed_to = Some(to);
        self.handed_at = self.world.tick() + 1;
        self.presence_due = true;
        Ok(())
    }

    /// Passes the room's ownership on when its owner left, or has been away for a
    /// second while another member is not: to the member here longest that is not
    /// away (when the owner left and every member is away, to the one here longest;
    /// in an empty room, to the next member to join). A seat a restore keeps for the
    /// owner counts as away a second after the restore, and as gone once it lapses.
    /// With `owner_quiet`, an owner that sent no input for that long counts as away
    /// too, and members that did are preferred (a quiet owner gives way only to
    /// them). A room without an owner (one the configuration keeps open) keeps none.
    /// Returns the new owner, to announce.
    fn pass_ownership(&mut self) -> Option<MemberInfo> {
        let left = std::mem::take(&mut self.owner_left);
        let owner = self.listing.with(|l| l.owner);
        if owner == SERVER {
            return None;
        }
        let second = Tick::from(self.config.tick_rate);
        let restored_a_second_ago = (self.restored_at).is_some_and(|at| self.world.tick() + 1 >= at + second);
        // Whether the owner is away (`None`: gone), and whether only quiet.
        let (away, quiet) = match self.member(owner) {
            _ if left => (None, false),
            Some(m) => (Some(m.away || self.quiet(m)), !m.away),
            None if self.reserved.contains_key(&owner) => (Some(restored_a_second_ago), false),
            None => (None, false),
        };
        if away == Some(false) {
            return None;
        }
        // Members sending inputs first (with `owner_quiet` on), then any not away.
        let lively = self.members.iter().find(|m| !m.away && self.lively(m) && m.id != owner);
        let present = || self.members.iter().find(|m| !m.away && m.id != owner);
        let heir = match away {
            // A quiet owner gives way only to a member that is not.
            Some(_) if quiet => lively?,
            Some(_) => lively.or_else(present)?,
            // Gone: one that left and joined again since gets the room back only
            // when every other member is away.
            None => (lively.or_else(present))
                .or_else(|| self.members.iter().find(|m| !m.away))
                .or_else(|| self.members.first())?,
        };
        let info = heir.info();
        self.listing.update(|l| l.owner = info.member_id);
        Some(info)
    }

    /// Whether `m` has sent no input for the room's `owner_quiet` ticks (never, when
    /// that is 0; a member's join counts as an input, so an owner has that long).
    fn quiet(&self, m: &Member) -> bool {
        let quiet = self.config.owner_quiet;
        quiet > 0 && self.world.tick() + 1 > m.last_input_tick + quiet
    }

    /// Whether `m` may take over from a quiet owner: with `owner_quiet` on, it sent
    /// an input within it (always, when that is 0).
    fn lively(&self, m: &Member) -> bool {
        self.config.owner_quiet == 0 || (m.sent_input && !self.quiet(m))
    }

    /// The seat a restore kept for `member`, if it is `user_id`'s. Another user's (a
    /// member id reused: node numbers cycle) is given up: the simulation drops what it
    /// kept for it before this member joins.
    fn take_reserved(&mut self, member: MemberId, user_id: &str) -> Option<Reserved> {
        let seat = self.reserved.remove(&member)?;
        if *seat.user_id == *user_id {
            return Some(seat);
        }
        forget_owed(&mut self.events, member);
        // Another user under the owner's member id does not own the room.
        self.owner_left |= self.listing.with(|l| l.owner) == member;
        self.sim_calls.push(SimCall::Leave(member));
        None
    }

    /// [`Room::leave`] for the session whose outbox is `outbox`: a seat another session
    /// took over since (continued on this node under the same member id, see
    /// [`Room::join`]) stays with it. Whether the member left.
    pub fn leave_session(&mut self, member: MemberId, outbox: &Arc<Outbox>, request_id: u64) -> bool {
        self.seated(member, outbox) && self.leave(member, request_id)
    }

    /// Whether `member` is in the room with the session whose outbox is `outbox`.
    pub fn seated(&self, member: MemberId, outbox: &Arc<Outbox>) -> bool {
        self.member(member).is_some_and(|m| Arc::ptr_eq(&m.outbox, outbox))
    }

    /// Removes a member (a leave request, or its resume grace period ended). It is
    /// answered with `Left` when `request_id` is set; the others get presence; the
    /// simulation learns of it at the next tick.
    pub fn leave(&mut self, member: MemberId, request_id: u64) -> bool {
        let Some(index) = self.index.remove(&member) else {
            return false;
        };
        // A join answered before its leave, in order (with the member list as it was).
        self.answer_join(&self.members[index]);
        let gone = self.members.remove(index);
        for later in &self.members[index..] {
            self.index.insert(later.id, self.index[&later.id] - 1);
        }
        gone.outbox.leave_room(self.key, gone.join_seq);
        forget_owed(&mut self.events, member);
        if self.listing.with(|l| l.owner) == member {
            self.owner_left = true;
            self.presence_due = true;
        }
        // Ticks measure the second; an empty room stands still (and holds nothing
        // its members made: joining it again costs little).
        let last = gone.last_full.max(gone.joined_tick);
        if self.members.is_empty() {
            self.left_recently.clear();
        } else if self.snapshot_wait(last).is_some() {
            self.left_recently.insert(gone.id, last);
        }
        if request_id != 0 {
            let left = Kind::Left(proto::Left {
                request_id,
                room: self.id.to_string(),
                ..Default::default()
            });
            let _ = gone.outbox.push_reliable(encode_message(left));
        }
        if self.members.is_empty() {
            self.departed.clear();
        } else if gone.announced {
            self.departed.push(gone.info());
            self.presence_due = true;
        }
        self.sim_calls.push(SimCall::Leave(member));
        true
    }

    /// Queues an input for the next tick. Duplicates (sequence number not above the
    /// last accepted one, as after a reconnect replay) are ignored; a full queue is
    /// answered with an `INPUT_QUEUE_FULL` error and the input is not applied.
    pub fn push_input(&mut self, member: MemberId, seq: u64, payload: input::Payload) {
        let now = self.world.tick();
        let Some(m) = self.member_mut(member) else {
            return;
        };
        m.last_input_tick = now;
        m.sent_input = true;
        match m.accept(seq, payload) {
            InputVerdict::Queued => {}
            InputVerdict::Duplicate => self.stats.inputs_duplicate += 1,
            InputVerdict::QueueFull => {
                self.stats.inputs_overflowed += 1;
                let error = self.error(ErrorCode::InputQueueFull, "input queue full; input dropped", seq);
                self.send_to(member, error);
            }
        }
    }

    /// Queues a room event for relay at the next tick. Events from non-members are
    /// ignored. A refused one (see `event_refusal`) gets its sender a
    /// `SERVER_BUSY` error (the server's own is dropped and logged).
    pub fn push_event(&mut self, sender: MemberId, mut event: SendEvent) {
        // A room the simulation closed relays what was queued before, then closes.
        if (sender != SERVER && !self.is_member(sender)) || self.closing.is_some() {
            return;
        }
        // Each target is looked up for every member (sorted: by halves), and at most
        // one per seat names anyone.
        event.targets.sort_unstable();
        event.targets.dedup();
        if sender != SERVER && event.targets.len() > self.config.max_members {
            let error = self.error(
                ErrorCode::BadRequest,
                "an event names more targets than the room has seats",
                0,
            );
            self.send_to(sender, error);
            return;
        }
        // The server's (the HTTP API's are bounded only by the URL's length): the
        // members among them, as each recipient is sent the list. None: to nobody.
        if sender == SERVER && !event.targets.is_empty() {
            event.targets.retain(|&target| self.index.contains_key(&target));
            if event.targets.is_empty() {
                return;
            }
        }
        // Its targets in the room (a broadcast's: see `QueuedEvent::owed`).
        let owed: Option<Vec<MemberId>> = (!event.targets.is_empty()).then(|| {
            (event.targets.iter().copied())
                .filter(|target| self.index.contains_key(target))
                .collect()
        });
        let cost = event_cost(&event.kind, &event.payload, &event.targets);
        let refusal = self.event_refusal(sender, owed.as_deref(), cost);
        if let Some(why) = refusal {
            if sender == SERVER {
                if let Some(suppressed) = DROPPED_PUBLISHES.take(std::time::Instant::now()) {
                    tracing::warn!(room = %self.id, suppressed, "server event dropped: {why}");
                }
                return;
            }
            let error = self.error(ErrorCode::ServerBusy, why, 0);
            self.send_to(sender, error);
            return;
        }
        for m in &mut self.members {
            let addressed = match &owed {
                Some(targets) => targets.binary_search(&m.id).is_ok(),
                None => m.id != sender,
            };
            if addressed {
                m.events_owed.0 += 1;
                m.events_owed.1 += cost;
            }
        }
        self.event_seq += 1;
        self.events.push(QueuedEvent {
            sender,
            seq: self.event_seq,
            cost,
            owed,
            event,
            message: None,
        });
    }

    /// Why an event is refused, if it is: past twice the room's bound on waiting
    /// events, any; one naming its targets, when one of them is already owed
    /// [`OWED_QUEUES`] times its reliable queue's bounds (a flood aimed at a member
    /// is refused at that member, and delays no one else's events); past the bound,
    /// a member's with an event of its own not yet relayed to anyone (a member with
    /// none still gets one in: other members' bursts cannot get an honest member's
    /// events refused). The server's (the HTTP API, the simulation) only at twice
    /// the bound.
    fn event_refusal(&self, sender: MemberId, targets: Option<&[MemberId]>, cost: usize) -> Option<&'static str> {
        let (waiting, bound) = (self.events.len(), self.config.max_pending_events);
        if waiting >= 2 * bound {
            return Some("too many events pending in this room");
        }
        if sender == SERVER {
            return None;
        }
        let over = |m: &Member| {
            let limits = m.outbox.limits();
            m.events_owed.0 >= OWED_QUEUES * limits.max_messages
                || m.events_owed.1 + cost > OWED_QUEUES * limits.max_bytes
        };
        if targets.is_some_and(|targets| targets.iter().any(|&id| self.member(id).is_some_and(over))) {
            return Some("too many events waiting for a member it names");
        }
        // (The scan runs only past the bound, for events the rate limits let through.)
        let own_waiting = || (self.events.iter()).any(|queued| queued.sender == sender && queued.message.is_none());
        (waiting >= bound && own_waiting()).then_some("too many events pending in this room")
    }

    /// Schedules a full snapshot for `member` at the next tick and answers the request
    /// (unless `request_id` is 0).
    pub fn resync(&mut self, member: MemberId, request_id: u64) {
        let Some(&Member {
            needs_full, last_full, ..
        }) = self.member(member)
        else {
            return;
        };
        // One full snapshot per member per second at most: a 20-byte request must not
        // buy a full snapshot every tick. A request while one is pending costs nothing.
        // A resume's (request id 0) is owed: marked now, it goes once the second is up
        // (the fan-out holds it till then), not at the next full snapshot a change
        // brings (in an idle room, a second later still).
        if request_id != 0
            && !needs_full
            && let Some(wait) = self.snapshot_wait(last_full)
        {
            let error = self.rate_limited("at most one resync per second", wait, request_id);
            self.send_to(member, error);
            return;
        }
        if let Some(m) = self.member_mut(member) {
            m.needs_full = true;
        }
        if request_id == 0 {
            return;
        }
        let response = Kind::Response(proto::Response {
            request_id,
            kind: Some(proto::response::Kind::Resync(proto::ResyncScheduled {
                room: self.id.to_string(),
            })),
        });
        self.send_to(member, encode_message(response));
    }

    /// Sends `member` its `Joined` again (request id 0), with who is in the room and
    /// who owns it now: a resumed session that missed presence (or a new process that
    /// took the session over). At the next tick, or with the full snapshot the resume
    /// earned when that waits (at most one a second per member). One already owed (a
    /// join being answered) serves.
    pub fn send_joined(&mut self, member: MemberId) {
        if let Some(m) = self.member_mut(member)
            && m.joined_reply.is_none()
        {
            m.joined_reply = Some(0);
            self.presence_due = true;
        }
    }

    /// How many ticks from now a member whose last full snapshot went out at
    /// `last_full` (0: none) waits for its next: none after a second. The frame a
    /// request earns goes out at the next tick.
    fn snapshot_wait(&self, last_full: Tick) -> Option<Tick> {
        let rate = Tick::from(self.config.tick_rate);
        let wait = (last_full + rate).saturating_sub(self.world.tick() + 1);
        (last_full != 0 && wait > 0).then_some(wait)
    }

    /// A `RATE_LIMITED` error for a full snapshot asked for `wait` ticks too soon.
    fn rate_limited(&self, message: &str, wait: Tick, request_id: u64) -> Bytes {
        let rate = Tick::from(self.config.tick_rate);
        encode_message(Kind::Error(proto::Error {
            code: ErrorCode::RateLimited as i32,
            message: message.into(),
            request_id,
            room: self.id.to_string(),
            retry_after_ms: (wait * 1000).div_ceil(rate) as u32,
        }))
    }

    /// Closes the room: every member is told it left, with `reason`, after the state
    /// of the room's last tick ([`Outbox::close_room`]).
    pub fn close(self, reason: ErrorCode, message: &str) {
        let left = self.left_message(reason, message);
        for m in &self.members {
            self.answer_join(m);
            let _ = m.outbox.close_room(self.key, m.join_seq, left.clone());
        }
    }

    /// Whether the simulation has joins or leaves it has not heard of yet (they are
    /// told at the next tick): a checkpoint taken now would hold a member without
    /// its simulation's join, or the entities of a member gone.
    pub fn has_pending_sim_calls(&self) -> bool {
        !self.sim_calls.is_empty()
    }

    /// Ticks (at most four times) until the simulation has heard of every
    /// join and leave and every waiting event is relayed: before a hand-off's
    /// checkpoint, after which the room ticks no more.
    pub fn finish_pending(&mut self, server_time_us: u64) {
        for _ in 0..FINISH_TICKS {
            if !self.has_pending_work() {
                break;
            }
            self.tick(server_time_us);
        }
    }

    /// Runs one tick; `server_time_us` is stamped on the frames. Members whose
    /// session is gone (closed outbox) are removed first.
    pub fn tick(&mut self, server_time_us: u64) -> TickReport {
        let mut gone = Vec::new();
        let (now, second) = (self.world.tick() + 1, Tick::from(self.config.tick_rate));
        for m in &mut self.members {
            if m.outbox.is_closed() {
                gone.push(m.id);
                continue;
            }
            // Away once its connection has been lost for a second: a resume sooner is
            // no news, so dropping and resuming a connection again and again (each
            // change costs every member a presence message) gets a member at most one
            // AWAY and one BACK a second, as leaving and joining again does.
            m.away_since = match (m.outbox.is_away(), m.away_since) {
                (true, since) => since.or(Some(now)),
                (false, _) => None,
            };
            m.away = m.away_since.is_some_and(|since| now >= since + second);
            if m.away != m.away_told {
                self.presence_due = true;
            }
            // Once the simulation knows of the member (its join told).
            if m.away != m.away_simulated && self.roster.user(m.id).is_some() {
                m.away_simulated = m.away;
                self.sim_calls.push(SimCall::Away(m.id, m.away));
            }
        }
        for member in gone {
            self.leave(member, 0);
        }
        let tick = now;
        // Seats kept from a restore whose members did not come back in time (the
        // owner's, a second after the restore, counts as away: see `pass_ownership`).
        if !self.reserved.is_empty() {
            let owner = self.listing.with(|l| l.owner);
            let (sim_calls, presence_due, events) = (&mut self.sim_calls, &mut self.presence_due, &mut self.events);
            *presence_due |=
                self.restored_at.is_some_and(|at| tick == at + second) && self.reserved.contains_key(&owner);
            self.reserved.retain(|&member, seat| {
                let kept = seat.until > tick;
                if !kept {
                    sim_calls.push(SimCall::Leave(member));
                    *presence_due |= member == owner;
                    forget_owed(events, member);
                }
                kept
            });
        }
        // A quiet owner gives way as soon as a member sends inputs. (An owner's or a
        // member's going away or coming back is presence: checked then.)
        if self.config.owner_quiet > 0 && !self.presence_due {
            let owner = self.listing.with(|l| l.owner);
            let quiet = self.member(owner).is_some_and(|m| !m.away && self.quiet(m));
            self.presence_due = quiet && (self.members.iter()).any(|m| m.id != owner && !m.away && self.lively(m));
        }
        self.sent_this_tick.clear();
        self.tell_listing(tick);
        self.announce();
        if !self.left_recently.is_empty() {
            let rate = Tick::from(self.config.tick_rate);
            self.left_recently.retain(|_, last| *last + rate > tick);
        }
        self.world.begin_tick(tick);
        let refused_before = self.stats.inputs_rejected;
        self.run_simulation(tick);
        self.world.finish_tick();
        self.stats.ticks += 1;

        // What every member sees changed (a change of a member's own entities of an
        // owner-only kind is that member's news alone).
        let changed = self.world.last_shared_change() == tick;
        if changed {
            self.change_ticks.push_back(tick);
        }
        let oldest = tick.saturating_sub(self.config.history);
        while self.change_ticks.front().is_some_and(|&t| t <= oldest) {
            self.change_ticks.pop_front();
        }

        self.relay_events();
        // After the events: a member the simulation removes gets what it was sent.
        self.remove_members();
        let inputs_refused = (self.stats.inputs_rejected - refused_before) as u32;
        TickReport {
            inputs_refused,
            ..self.fan_out(tick, changed, server_time_us)
        }
    }

    fn run_simulation(&mut self, tick: Tick) {
        if !self.started {
            self.started = true;
            self.sim.start(&mut sim_context!(self, tick));
        }
        // The roster changes between these calls: a member is in it for its join and
        // its leave.
        for call in self.sim_calls.drain(..) {
            match call {
                SimCall::Join(m, user, data) => {
                    self.roster.insert(m, user);
                    self.roster.set_data(m, data);
                    self.sim.join(&mut sim_context!(self, tick), m);
                }
                SimCall::Leave(m) => {
                    self.sim.leave(&mut sim_context!(self, tick), m);
                    self.roster.remove(m);
                    self.world.hide_all_from(m);
                }
                SimCall::Away(m, away) => {
                    self.roster.set_away(m, away);
                    self.sim.away(&mut sim_context!(self, tick), m, away);
                }
            }
        }
        let mut ctx = sim_context!(self, tick);
        for member in &mut self.members {
            while let Some((seq, payload)) = member.inputs.pop_front() {
                member.last_applied = seq;
                match self.sim.input(&mut ctx, member.id, &payload) {
                    Ok(()) => self.stats.inputs_applied += 1,
                    Err(e) => {
                        self.stats.inputs_rejected += 1;
                        let error = encode_message(Kind::Error(proto::Error {
                            code: e.code() as i32,
                            message: e.to_string(),
                            request_id: seq,
                            room: self.id.to_string(),
                            retry_after_ms: e.retry_after_ms(),
                        }));
                        let _ = member.outbox.push_reliable(error);
                    }
                }
            }
        }
        self.sim.step(&mut ctx);
        self.do_requests();
    }

    /// Does what the simulation asked but its removals ([`Room::remove_members`], after
    /// the tick's events): queues its events (as the server's), marks the room closing.
    fn do_requests(&mut self) {
        let mut events = std::mem::take(&mut self.requests.events);
        for event in events.drain(..) {
            if !valid_event_kind(&event.kind) || event.payload.len() > MAX_EVENT_PAYLOAD_BYTES {
                if let Some(suppressed) = DROPPED_EVENTS.take(std::time::Instant::now()) {
                    tracing::warn!(room = %self.id, kind_bytes = event.kind.len(), payload_bytes = event.payload.len(), suppressed,
                        "the simulation's event dropped: a kind over {MAX_EVENT_KIND_BYTES} bytes or with control characters, or over {MAX_EVENT_PAYLOAD_BYTES} bytes of payload");
                }
                continue;
            }
            self.push_event(SERVER, event);
        }
        self.requests.events = events;
        if let Some(why) = self.requests.close.take() {
            self.closing.get_or_insert(why);
        }
    }

    /// Removes the members the simulation asked to (after this tick's events):
    /// `Left` with `FORBIDDEN` and its reason. A seat kept from a restore is given up
    /// (the simulation is told at the next tick, as when it lapses).
    fn remove_members(&mut self) {
        let mut removals = std::mem::take(&mut self.requests.removals);
        for (member, why) in removals.drain(..) {
            let Some(outbox) = self.member(member).map(|m| m.outbox.clone()) else {
                if self.reserved.remove(&member).is_some() {
                    self.sim_calls.push(SimCall::Leave(member));
                    forget_owed(&mut self.events, member);
                }
                continue;
            };
            self.leave(member, 0);
            let _ = outbox.push_reliable(self.left_message(ErrorCode::Forbidden, &why));
        }
        self.requests.removals = removals;
    }

    /// `Left` of this room with a reason (the server removed the member).
    fn left_message(&self, reason: ErrorCode, message: &str) -> Bytes {
        encode_message(Kind::Left(proto::Left {
            request_id: 0,
            room: self.id.to_string(),
            reason: reason as i32,
            message: message.to_string(),
        }))
    }

    /// Why the simulation closed the room ([`SimContext::close_room`]), once the
    /// events queued before are relayed: the driver then closes it with that reason.
    pub fn closing(&self) -> Option<&str> {
        self.closing.as_deref().filter(|_| self.events.is_empty())
    }

    /// Relays the queued events in order, each member getting at most a quarter of
    /// its reliable queue's bounds per tick, this tick's presence included (and at
    /// least one event when it had nothing else): the rest wait in the room for the
    /// next tick. Senders are each rate-limited, but several of them aiming at one
    /// member within one tick could otherwise fill its queue before it could read
    /// any of it (and close it as a slow consumer).
    ///
    /// A member over its share holds back only what is addressed to it: an event
    /// goes now to its other addressees (encoded once) and waits for it
    /// alone, and nothing later goes to it this tick, so each member still gets its
    /// events in order. Events aimed at one member cannot delay everyone else's.
    fn relay_events(&mut self) {
        if self.events.is_empty() {
            return;
        }
        // Per member (by position): what it got this tick so far, and whether an
        // event waits for it (nothing later goes to it this tick).
        let mut took = std::mem::take(&mut self.sent_this_tick);
        took.resize(self.members.len(), (0, 0));
        let mut held = vec![false; self.members.len()];
        let mut events = std::mem::take(&mut self.events);
        events.retain_mut(|queued| {
            let owed = (queued.owed).get_or_insert_with(|| everyone_but(&self.members, queued.sender));
            let (mut still_owed, mut sending) = (Vec::new(), 0);
            for ((m, &(messages, bytes)), held) in self.members.iter().zip(&took).zip(&mut held) {
                if owed.binary_search(&m.id).is_err() {
                    continue;
                }
                let limits = m.outbox.limits();
                *held |=
                    messages > 0 && (messages >= limits.max_messages / 4 || bytes + queued.cost > limits.max_bytes / 4);
                if *held {
                    still_owed.push(m.id);
                } else {
                    sending += 1;
                }
            }
            // Seats a restore keeps: their members are owed it once back (not once
            // the room closes: it waits for nobody away).
            if !self.reserved.is_empty() && self.closing.is_none() {
                still_owed.extend(owed.iter().filter(|&id| self.reserved.contains_key(id)));
            }
            // Members are in join order, not by id.
            still_owed.sort_unstable();
            // Not encoded while it can go to none of those owed it.
            if sending == 0 {
                *owed = still_owed;
                return !owed.is_empty();
            }
            let message = queued.message.get_or_insert_with(|| {
                self.stats.events += 1;
                let event = std::mem::take(&mut queued.event);
                encode_message(Kind::Event(RoomEvent {
                    room: self.id.to_string(),
                    seq: queued.seq,
                    sender: queued.sender,
                    kind: event.kind,
                    payload: event.payload,
                    targets: event.targets,
                }))
            });
            for ((m, took), &held) in self.members.iter_mut().zip(&mut took).zip(&held) {
                if !held && owed.binary_search(&m.id).is_ok() {
                    *took = (took.0 + 1, took.1 + message.len());
                    let _ = m.outbox.push_reliable(message.clone());
                    if queued.seq > m.events_from {
                        m.events_owed.0 = m.events_owed.0.saturating_sub(1);
                        m.events_owed.1 = m.events_owed.1.saturating_sub(queued.cost);
                    }
                }
            }
            *owed = still_owed;
            !owed.is_empty()
        });
        self.events = events;
        self.sent_this_tick = took;
    }

    fn fan_out(&mut self, tick: Tick, changed: bool, server_time_us: u64) -> TickReport {
        let mut report = TickReport {
            tick,
            ..Default::default()
        };
        let idle_frame = tick.is_multiple_of(self.config.idle_frame_interval());
        // A member whose baseline advances only when it acknowledges (QUIC datagrams)
        // gets them twice as often: an idle frame still unacknowledged when the window
        // moves past the one before would cost it a full snapshot at the next change.
        let idle_frame_acknowledged = tick.is_multiple_of((self.config.idle_frame_interval() / 2).max(1));
        let with_checksum = idle_frame || tick.is_multiple_of(self.config.checksum_interval);
        let checksum = self.world.shared_checksum();
        let views = self.world.has_owner_only_kinds();
        let oldest_baseline = tick.saturating_sub(self.config.history).max(1);
        let naive = self.config.naive_fanout;
        let rate = Tick::from(self.config.tick_rate);
        self.bodies.clear();

        for m in &mut self.members {
            let own = if views { self.world.own(m.id) } else { Own::default() };
            let news = m.needs_full || m.last_applied != m.last_sent_seq || own.changed == tick;
            // The outbox's delivery (a lock) is asked only when nothing else sends a frame.
            let idle_acknowledged = || idle_frame_acknowledged && m.outbox.delivery() == Delivery::Acknowledged;
            if !(naive || changed || news || idle_frame || idle_acknowledged()) {
                continue;
            }
            let found = m.outbox.supersede_state(self.key);
            let delivered = found.tick;
            let full = naive || m.needs_full || delivered < oldest_baseline;
            // A new full snapshot (not one sent again until the client has it) at
            // most once a second per member, however it was asked for: resumes reset
            // what was delivered, and one a second cannot buy a room's state per tick.
            // The first is never held back.
            let new_full = full && !naive && (m.needs_full || found.fresh);
            if new_full && m.last_full != 0 && tick < m.last_full + rate {
                continue;
            }
            // Numbers relative to the baseline need a client whose state is the
            // baseline's; over QUIC datagrams it may be ahead of it.
            let values = match found.delivery {
                Delivery::Reliable => Values::AgainstBaseline,
                Delivery::Acknowledged => Values::Absolute,
            };
            let checksum_sent = full || with_checksum;
            let (key, baseline) = if full {
                (BodyKey::Full, 0)
            } else {
                let changes = self.change_ticks.iter().rev().take_while(|&&t| t > delivered).count();
                (BodyKey::Delta(changes, values), delivered)
            };
            // The naive baseline shares nothing: one encoding per member.
            let shared = if naive {
                None
            } else {
                self.bodies.iter().find(|(k, _)| *k == key)
            };
            let body = match shared {
                Some((_, body)) => body.clone(),
                None => {
                    let meta = FrameMeta {
                        room: &self.id,
                        server_time_us,
                        checksum: checksum_sent.then_some(checksum),
                    };
                    self.encoder
                        .encode(&self.world, baseline, values, View::Shared, meta, &mut self.buf);
                    let body = self.buf.split().freeze();
                    report.encodes += 1;
                    self.stats.bytes_encoded += body.len() as u64;
                    match key {
                        BodyKey::Full => report.full_bytes = body.len(),
                        BodyKey::Delta(..) => report.delta_bytes = report.delta_bytes.max(body.len()),
                    }
                    self.bodies.push((key, body.clone()));
                    body
                }
            };
            // What this member sees beyond the shared body: its own entities of
            // owner-only kinds (added, changed or lost since the baseline), and its
            // view's checksum when the frame carries one.
            let own_part = if own.changed > baseline || (own.count > 0 && checksum_sent) {
                let checksum = checksum_sent.then(|| checksum.wrapping_add(own.checksum));
                (self.encoder).encode_own(&self.world, m.id, baseline, values, checksum, &mut self.buf);
                report.own_bytes += self.buf.len();
                self.stats.bytes_encoded += self.buf.len() as u64;
                self.buf.split().freeze()
            } else {
                Bytes::new()
            };
            let pushed = m.outbox.push_state(
                PendingState {
                    room: self.key,
                    tick,
                    baseline,
                    body,
                    own: own_part,
                    last_input_seq: m.last_applied,
                    server_time_us,
                },
                found,
            );
            if !pushed {
                // The session was reset (resumed) meanwhile: a full snapshot next tick.
                m.needs_full = true;
                continue;
            }
            m.last_sent_seq = m.last_applied;
            m.needs_full = false;
            if new_full {
                m.last_full = tick;
            }
            report.frames += 1;
            report.full_frames += u32::from(full);
        }
        self.stats.frames += u64::from(report.frames);
        self.stats.full_frames += u64::from(report.full_frames);
        self.stats.encodes += u64::from(report.encodes);
        report
    }

    fn send_to(&self, member: MemberId, message: Bytes) {
        if let Some(m) = self.member(member) {
            let _ = m.outbox.push_reliable(message);
        }
    }

    fn error(&self, code: ErrorCode, message: &str, request_id: u64) -> Bytes {
        error_message(code, message, request_id, &self.id)
    }
}

/// The longest room id, in bytes.
pub const MAX_ROOM_ID_BYTES: usize = 128;

/// Whether `id` may name a room: 1 to [`MAX_ROOM_ID_BYTES`] bytes, no control
/// characters (room ids reach logs and listings: a newline would forge a log line).
pub fn valid_room_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ROOM_ID_BYTES && !id.chars().any(char::is_control)
}

/// The most ticks [`Room::finish_pending`] runs: each relays up to a quarter of a
/// member's queue of events, so four relay as much as the queue holds.
const FINISH_TICKS: usize = 4;

/// Encodes an `Error` message. A `room` that is no valid room id is not echoed: one
/// longer than any (a client naming a huge one in every message would make the server
/// queue copies), or holding a control character (a client showing or logging the
/// answer's room would print it).
pub fn error_message(code: ErrorCode, message: &str, request_id: u64, room: &str) -> Bytes {
    encode_error(proto::Error {
        code: code as i32,
        message: message.to_string(),
        request_id,
        room: room.to_string(),
        retry_after_ms: 0,
    })
}

/// `error` as a `ServerMessage`, its room left empty unless it is a valid room id (as
/// [`error_message`]).
pub fn encode_error(mut error: proto::Error) -> Bytes {
    if !valid_room_id(&error.room) {
        error.room.clear();
    }
    encode_message(Kind::Error(error))
}

#[cfg(test)]
mod tests;
