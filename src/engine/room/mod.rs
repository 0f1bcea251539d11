//! The room engine, sans IO: members, input queues, events, and the tick that turns
//! inputs into state frames in every member's [`Outbox`](crate::engine::outbox::Outbox).
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
//!
//! Here: the room and its tick. In `fan_out`: the state frames; in `membership`:
//! joins, leaves, removals, resyncs; in `presence`: what members are told of each
//! other and of the listing; in `events`: events queued, owed and relayed; in
//! `checkpoint`: checkpoints and restores; `member`, `bans` and `config` as named.

mod bans;
mod config;
mod member;

pub use bans::{Bans, MAX_BANS, user_digest};
pub use config::{ConfigError, RoomConfig};

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustc_hash::FxHashMap;

use crate::delta;
use crate::engine::listing::{Listing, ListingState};
use crate::engine::outbox::RoomKey;
use crate::engine::simulation::{
    MAX_EVENT_KIND_BYTES, MAX_EVENT_PAYLOAD_BYTES, Requests, Roster, SimContext, Simulation, valid_event_kind,
};
use crate::frame::encode_message;
use crate::log_budget::LogBudget;
use crate::proto::{self, ErrorCode, MemberInfo, input, server_message::Kind};
use crate::state::{MemberId, SERVER, Tick, World};

/// The simulation's events over the size limits: one log line a second at most.
static DROPPED_EVENTS: LogBudget = LogBudget::new("room_events_dropped", 1);

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

mod checkpoint;
mod events;
mod fan_out;
mod membership;
mod presence;

pub use checkpoint::RestoreError;
use events::{QueuedEvent, forget_owed};
use fan_out::{BodyKey, FULL_BURST_BYTES, RecentFull};

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
    /// Full snapshot bytes the room may encode now (see `fan_out::FULL_BYTES_PER_SECOND`;
    /// below zero after a large one: none until it is paid back).
    full_budget: i64,
    /// The size of the last full snapshot encoded (see `fan_out::KEEP_FULL_BYTES`).
    full_size: usize,
    /// Members whose waiting untaken frame was kept this tick (see `Room::fan_out`);
    /// kept between ticks (no allocation).
    kept: Vec<usize>,
    /// The bodies of the deltas kept this tick (see `Room::fan_out`); kept between
    /// ticks likewise.
    kept_bodies: Vec<(usize, usize)>,
    /// The last full snapshot encoded if the budget could not pay for another then,
    /// while joiners may still get it (see `Room::send_state`).
    recent_full: Option<RecentFull>,
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
            full_budget: FULL_BURST_BYTES,
            full_size: 0,
            kept: Vec::new(),
            kept_bodies: Vec::new(),
            recent_full: None,
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

    /// Whether the simulation panicked saving its state ([`Room::game_state`]): the
    /// room must close, and its checkpoint not be written.
    pub fn failed(&self) -> bool {
        self.failed
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

    /// Closes the room: every member is told it left, with `reason`, after the state
    /// of the room's last tick ([`Outbox::close_room`](crate::engine::outbox::Outbox::close_room)).
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
        // The room starts before its first `Joined`s go: the listing the simulation
        // sets then is in them.
        if !self.started {
            self.started = true;
            self.world.begin_tick(tick);
            self.sim.start(&mut sim_context!(self, tick));
        }
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
