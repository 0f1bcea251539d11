//! What a room runs each tick. A [`Simulation`] receives member joins and leaves and
//! each member's inputs, and advances the room's [`World`] in [`Simulation::step`].
//!
//! Two ship with tickrelay: [`Relay`] (members write the entities they own; the server
//! only checks ownership and limits) and [`Arena`] (authoritative: inputs are
//! movement intents and the server moves everything). A game plugs in its own by
//! implementing the trait.

mod arena;
mod relay;
mod sight;

pub use arena::{Arena, ArenaConfig};
pub use relay::{GIVEN_BYTES_PER_SECOND, Relay};
pub use sight::{Sight, SightChanges};

use std::sync::Arc;

use crate::engine::listing::Listing;
use crate::proto::{ErrorCode, SendEvent, input};
use crate::state::{EntityId, FieldId, FieldProblem, KindSchema, MemberId, Schema, Tick, Value, World, WorldError};

/// Per-room caps on what members may put into the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityLimits {
    /// Entities one member may own at once.
    pub max_entities_per_member: usize,
    /// Fields per entity.
    pub max_fields_per_entity: usize,
    /// Bytes per bytes/string field value.
    pub max_field_bytes: usize,
    /// Bytes of the whole room state (every entity, as [`state_cost`] counts it): a
    /// bound on the room's state in memory, and so on its full snapshot, which always
    /// fits one message.
    pub max_state_bytes: usize,
}

/// What an entity counts against [`EntityLimits::max_state_bytes`]: its size in the
/// room's memory ([`ENTITY_COST`] plus [`field_cost`] per field), which is more than
/// its size in a full snapshot.
pub fn state_cost(entity: &crate::state::Entity) -> usize {
    ENTITY_COST + entity.fields().map(|(_, v)| field_cost(v)).sum::<usize>()
}

/// An entity in memory without its fields: the entity itself, and its map entry
/// (hash, key and index) in the world (in a full snapshot its framing is at most 32).
pub const ENTITY_COST: usize = std::mem::size_of::<crate::state::Entity>() + 48;

/// What showing an entity of an owner-only kind to one more member counts
/// ([`World::show`]): the room's record of it, in memory.
pub const VIEWER_COST: usize = 64;

/// What one field counts: the field in memory plus its value's length (in a full
/// snapshot: at most 8 bytes of framing plus that length). A one-byte value counts
/// as what it takes, not as one byte.
pub fn field_cost(value: &crate::state::Value) -> usize {
    std::mem::size_of::<crate::state::Field>() + crate::state::value_len(value)
}

impl Default for EntityLimits {
    fn default() -> Self {
        Self {
            max_entities_per_member: 64,
            max_fields_per_entity: 32,
            max_field_bytes: 1024,
            max_state_bytes: 4 * 1024 * 1024,
        }
    }
}

/// What a simulation may touch during a callback.
///
/// A game's own tests can drive its simulation without a room: a world with the
/// simulation's schema, begun at a tick, and the rest from their defaults.
///
/// ```
/// use tickrelay::engine::listing::Listing;
/// use tickrelay::engine::simulation::{Arena, ArenaConfig, EntityLimits, Requests, Roster, SimContext, Simulation};
/// use tickrelay::state::World;
///
/// let mut arena = Arena::new(ArenaConfig::default());
/// let mut world = World::with_schema(32, arena.schema());
/// let (listing, mut requests, mut members) = (Listing::unlisted(), Requests::default(), Roster::new());
/// members.insert(7, "ada".into());
/// world.begin_tick(1);
/// let mut ctx = SimContext {
///     room: "test",
///     world: &mut world,
///     tick: 1,
///     dt: 1.0 / 30.0,
///     limits: EntityLimits::default(),
///     listing: &listing,
///     requests: &mut requests,
///     members: &members,
/// };
/// arena.join(&mut ctx, 7);
/// arena.step(&mut ctx);
/// world.finish_tick();
/// assert_eq!(world.entities().filter(|e| e.owner() == 7).count(), 1, "ada's avatar");
/// assert!(requests.events().is_empty() && requests.close().is_none());
/// ```
#[derive(Debug)]
pub struct SimContext<'a> {
    /// The room's id.
    pub room: &'a str,
    /// The room's state; mutations are stamped with the tick being built.
    pub world: &'a mut World,
    /// The tick being built.
    pub tick: Tick,
    /// Simulated seconds per tick (1 / tick rate).
    pub dt: f32,
    /// The room's entity limits.
    pub limits: EntityLimits,
    /// What the room shows in listings and quick joins: a simulation may set
    /// metadata (say, the map or the round) with [`Listing::merge_metadata`], refused
    /// beyond [`crate::engine::listing::check`]'s limits, and lock the room (say, once
    /// a match started) with [`Listing::set_locked`]; the members are told of a
    /// change at the next tick (`RoomUpdated`, at most four a second). Its `owner` is the room's
    /// owner of the moment (0: none), which passes on when the owner leaves or is
    /// away (see docs/PROTOCOL.md, "Room ownership").
    pub listing: &'a Listing,
    /// What the simulation asks of the room beside changing the world: events to
    /// send, members to remove, the room to close ([`SimContext::send_event`],
    /// [`SimContext::remove_member`], [`SimContext::close_room`]). The room does it
    /// after the callback.
    pub requests: &'a mut Requests,
    /// The members the simulation was told of and not yet told left, with their
    /// user ids (a member being told it left is still in it).
    pub members: &'a Roster,
}

/// Members and their user ids (the token's `sub`, or the anonymous id the server
/// gave): who is who, for a game that shows names or keeps scores per player.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    users: rustc_hash::FxHashMap<MemberId, Arc<str>>,
    /// What members told the game about themselves at joining (`JoinRoom.member_data`),
    /// for those that told anything.
    data: rustc_hash::FxHashMap<MemberId, bytes::Bytes>,
    /// Members whose connection is lost, their seats held (see [`Simulation::away`]).
    away: rustc_hash::FxHashSet<MemberId>,
}

impl Roster {
    /// No members.
    pub const fn new() -> Self {
        Self {
            users: std::collections::HashMap::with_hasher(rustc_hash::FxBuildHasher),
            data: std::collections::HashMap::with_hasher(rustc_hash::FxBuildHasher),
            away: std::collections::HashSet::with_hasher(rustc_hash::FxBuildHasher),
        }
    }

    /// Whether `member`'s connection is lost and its seat held for it (its inputs
    /// stopped; it may resume, or leave when the grace period ends).
    pub fn is_away(&self, member: MemberId) -> bool {
        self.away.contains(&member)
    }

    /// Marks `member` away or back (the room does; a simulation's tests may too).
    pub fn set_away(&mut self, member: MemberId, away: bool) {
        if away {
            self.away.insert(member);
        } else {
            self.away.remove(&member);
        }
    }

    /// The user id of `member`.
    pub fn user(&self, member: MemberId) -> Option<&str> {
        self.users.get(&member).map(|u| &**u)
    }

    /// What `member` told the game about itself as it joined (`JoinRoom.member_data`:
    /// a display name, a chosen character; at most
    /// [`MAX_MEMBER_DATA_BYTES`](crate::proto::MAX_MEMBER_DATA_BYTES)), empty if
    /// nothing (or not a member). The client chose it: check it as any input. Other
    /// members are not sent it; a game shows what it wants of it in the state.
    pub fn data(&self, member: MemberId) -> &bytes::Bytes {
        static NONE: bytes::Bytes = bytes::Bytes::new();
        self.data.get(&member).unwrap_or(&NONE)
    }

    /// Sets what `member` told about itself (the room does; a simulation's tests may
    /// too). Empty: nothing.
    pub fn set_data(&mut self, member: MemberId, data: bytes::Bytes) {
        if data.is_empty() {
            self.data.remove(&member);
        } else {
            self.data.insert(member, data);
        }
    }

    /// Every member with its user id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (MemberId, &str)> {
        self.users.iter().map(|(&m, u)| (m, &**u))
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Adds (or renames) `member` (the room does; a simulation's tests may too).
    pub fn insert(&mut self, member: MemberId, user: Arc<str>) {
        self.users.insert(member, user);
    }

    /// Removes `member`.
    pub fn remove(&mut self, member: MemberId) {
        self.users.remove(&member);
        self.data.remove(&member);
        self.away.remove(&member);
    }
}

impl SimContext<'_> {
    /// Sends a room event from the server (sender 0) to `targets` (empty: every
    /// member), reliably and in order with the members' events: it is relayed after
    /// the events members sent before it, at the end of this tick unless those fill
    /// a member's share of its queue for the tick (then at the next ticks, in order).
    /// A member removed in the same tick gets it before its `Left`. Over twice the
    /// room's bound on pending events it is dropped (and logged), like an event the HTTP API
    /// publishes; so is one with a `kind` over [`MAX_EVENT_KIND_BYTES`] or with
    /// control characters ([`valid_event_kind`]), or a payload over
    /// [`MAX_EVENT_PAYLOAD_BYTES`].
    pub fn send_event(&mut self, kind: &str, payload: impl Into<bytes::Bytes>, targets: &[MemberId]) {
        self.requests.events.push(SendEvent {
            room: String::new(),
            kind: kind.to_string(),
            payload: payload.into(),
            targets: targets.to_vec(),
        });
    }

    /// Removes `member` from the room after this callback: it gets `Left` with
    /// reason `FORBIDDEN` and `why` as the message, the others a presence change, and
    /// the simulation [`Simulation::leave`] at the next tick. The member may join
    /// again (a game that bans refuses it in its own way, say by removing it again).
    pub fn remove_member(&mut self, member: MemberId, why: &str) {
        self.requests.removals.push((member, why.to_string()));
    }

    /// Closes the room (a match that ended) once the events sent before are relayed
    /// (normally at the end of this tick; events sent after are dropped): every
    /// member gets the state of the room's last tick, then `Left` with reason
    /// `ROOM_CLOSED` and `why` as the message (over QUIC the state is a datagram,
    /// which may be lost: what must arrive goes in an event or in `why`), and the room
    /// is gone (a join of its id opens a new one; a room configured in `[[rooms]]`
    /// opens again, empty, within a second). The first reason wins.
    pub fn close_room(&mut self, why: &str) {
        self.requests.close.get_or_insert_with(|| why.to_string());
    }
}

/// The longest `kind` of a simulation's event (as for the HTTP API's).
pub const MAX_EVENT_KIND_BYTES: usize = 256;

/// Whether `kind` may name an event, from any source (a member, a simulation, the
/// HTTP API): at most [`MAX_EVENT_KIND_BYTES`] bytes, without control characters
/// (every member's client holds it, and games show and log it).
pub fn valid_event_kind(kind: &str) -> bool {
    kind.len() <= MAX_EVENT_KIND_BYTES && !kind.chars().any(char::is_control)
}
/// The largest payload of a simulation's event (the default largest client message).
pub const MAX_EVENT_PAYLOAD_BYTES: usize = 16 * 1024;

/// What a simulation asked of its room during a callback (see
/// [`SimContext::requests`]): a simulation's own tests may read it.
#[derive(Debug, Default)]
pub struct Requests {
    pub(crate) events: Vec<SendEvent>,
    pub(crate) removals: Vec<(MemberId, String)>,
    pub(crate) close: Option<String>,
}

impl Requests {
    /// The events to send, in order.
    pub fn events(&self) -> &[SendEvent] {
        &self.events
    }

    /// The members to remove, with why.
    pub fn removals(&self) -> &[(MemberId, String)] {
        &self.removals
    }

    /// Why the room is to close, if it is.
    pub fn close(&self) -> Option<&str> {
        self.close.as_deref()
    }
}

/// A declared kind or field as messages name it: `hp (3)`, or `3` without a name.
pub(crate) fn named(name: &str, id: u32) -> String {
    match name {
        "" => format!("{id}"),
        name => format!("{name} ({id})"),
    }
}

/// A written value as an error message shows it: numbers as they are, bytes and text
/// by their length (a message is no place to echo a kilobyte).
fn shown_value(value: &Value) -> String {
    match value {
        Value::Int(v) => v.to_string(),
        Value::Float(v) => v.to_string(),
        Value::Bool(v) => v.to_string(),
        Value::Bytes(b) => format!("{} bytes", b.len()),
        Value::String(s) => format!("a string of {} bytes", s.len()),
    }
}

/// Why a simulation refused an input. Sent to the member as an `Error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The member tried to change an entity it does not own.
    #[error("entity {0} is not owned by this member")]
    NotOwner(EntityId),
    /// A write to an entity of the room (owner 0) by a member that is not the room's
    /// owner, or a room without one (see `EntityWrites.create_for_room`).
    #[error("entity {0} belongs to the room: only the room's owner writes it")]
    NotRoomOwner(EntityId),
    /// A give the member may not make: only the room's owner gives entities to other
    /// members or to the room; any other member gives its own to the room's owner.
    /// A room without an owner has none to give.
    #[error(
        "entity {0} not given: a member gives its entities to the room's owner only, and only the room's owner gives them \
         to others or to the room"
    )]
    GiveRefused(EntityId),
    /// A write over a per-second bound (see [`GIVEN_BYTES_PER_SECOND`]).
    #[error("rate limited: {what}")]
    RateLimited {
        /// What is limited.
        what: &'static str,
        /// When the member may try again.
        retry_after_ms: u32,
    },
    /// An entity given to a member that is not in the room.
    #[error("member {0} is not in the room")]
    NotInRoom(MemberId),
    /// Create of an id that exists.
    #[error("entity {0} already exists")]
    EntityExists(EntityId),
    /// Update or remove of an unknown id.
    #[error("entity {0} does not exist")]
    EntityNotFound(EntityId),
    /// The payload kind does not fit this room (intent for relay, writes for arena).
    #[error("this room type takes inputs of {expected}")]
    WrongPayload {
        /// The payload kind the room expects.
        expected: &'static str,
    },
    /// A per-room limit was hit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// A write is malformed (for example a field without a value).
    #[error("malformed write: {0}")]
    Malformed(&'static str),
    /// The intent bytes are malformed.
    #[error("invalid intent: {0}")]
    InvalidIntent(&'static str),
    /// A value does not fit the field the entity's kind declares (made with
    /// [`SimError::invalid_field`]).
    #[error("{shown}")]
    #[non_exhaustive]
    InvalidField {
        /// The entity.
        entity: EntityId,
        /// The field.
        field: FieldId,
        /// What is wrong with the value.
        problem: FieldProblem,
        /// The message: the kind's and the field's names, the value and the
        /// declaration, where known.
        shown: String,
    },
    /// The game refuses the input by its own rules (a player out of the round
    /// moving, an action out of turn): sent as `INVALID_INTENT` with this text.
    #[error("{0}")]
    Refused(String),
}

impl SimError {
    /// A value that does not fit its declared field, told in the declaration's names
    /// where `declared` (the entity's kind) is known, with the `value` written where
    /// it is: `entity 6001 (kind player (1)): field hp (3) = 150 is outside its
    /// declared range (int 0..=100)`.
    pub fn invalid_field(
        entity: EntityId,
        field: FieldId,
        problem: FieldProblem,
        declared: Option<&KindSchema>,
        value: Option<&Value>,
    ) -> Self {
        let mut shown = format!("entity {entity}");
        let spec = declared.and_then(|kind| Some(&kind.fields()[kind.slot(field)?]));
        if let Some(kind) = declared {
            shown += &format!(" (kind {})", named(kind.name(), kind.kind()));
        }
        shown += &format!(": field {}", named(spec.map_or("", |s| &s.name), field));
        if let Some(value) = value {
            shown += &format!(" = {}", shown_value(value));
        }
        shown += &format!(" {problem}");
        match (spec, declared) {
            (Some(spec), _) if problem == FieldProblem::OutOfRange => shown += &format!(" ({})", spec.ty),
            (None, Some(kind)) => {
                let fields: Vec<String> = kind.fields().iter().map(|f| named(&f.name, f.id)).collect();
                shown += &if fields.is_empty() {
                    " (it declares none)".to_string()
                } else {
                    format!(" (it declares {})", fields.join(", "))
                };
            }
            _ => {}
        }
        Self::InvalidField {
            entity,
            field,
            problem,
            shown,
        }
    }

    /// When the member may try again (`Error.retry_after_ms`; 0: not said).
    pub fn retry_after_ms(&self) -> u32 {
        match self {
            Self::RateLimited { retry_after_ms, .. } => *retry_after_ms,
            _ => 0,
        }
    }

    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotOwner(_) | Self::NotRoomOwner(_) | Self::GiveRefused(_) => ErrorCode::NotOwner,
            Self::NotInRoom(_) => ErrorCode::BadRequest,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::EntityExists(_) => ErrorCode::EntityExists,
            Self::EntityNotFound(_) => ErrorCode::EntityNotFound,
            Self::WrongPayload { .. } => ErrorCode::WrongPayload,
            Self::LimitExceeded(_) => ErrorCode::LimitExceeded,
            Self::Malformed(_) => ErrorCode::BadRequest,
            Self::InvalidIntent(_) | Self::Refused(_) => ErrorCode::InvalidIntent,
            Self::InvalidField { .. } => ErrorCode::InvalidField,
        }
    }
}

/// Reads a movement intent as the arena (and `tickrelay-bots`) sends it: two bytes,
/// `dx` and `dy` as signed 8-bit integers, returned each in `-1.0..=1.0`. A game whose
/// inputs are a stick's direction decodes them with this.
pub fn stick_intent(payload: &input::Payload) -> Result<(f32, f32), SimError> {
    let input::Payload::Intent(intent) = payload else {
        return Err(SimError::WrongPayload {
            expected: "intent (`Input.intent`)",
        });
    };
    let &[dx, dy] = intent.as_ref() else {
        return Err(SimError::InvalidIntent("expected 2 bytes: dx, dy as i8"));
    };
    // -128 is -1 too: no direction is faster than its opposite.
    let axis = |v: u8| (f32::from(v as i8) / 127.0).max(-1.0);
    Ok((axis(dx), axis(dy)))
}

impl From<WorldError> for SimError {
    fn from(e: WorldError) -> Self {
        match e {
            WorldError::Exists(id) => Self::EntityExists(id),
            WorldError::NotFound(id) => Self::EntityNotFound(id),
            WorldError::Field { entity, field, problem } => Self::invalid_field(entity, field, problem, None, None),
        }
    }
}

/// A room's game logic. Callbacks run on the room's simulation thread (the room's
/// making, [`Simulation::schema`], and a restore's [`Simulation::load`] and
/// [`Simulation::restore`] aside: those run on the I/O thread of the join that opens
/// the room, see [`crate::config::Simulations`]), in this order within a tick: joins and leaves since the last tick, then every member's queued
/// inputs (members in join order, inputs in sequence order), then [`Simulation::step`].
pub trait Simulation: Send + 'static {
    /// The entity kinds this room declares (none by default). Entities of declared
    /// kinds must fit their declaration and travel packed (quantized, with numbers
    /// relative to the baseline); members learn the schema from `Joined`. Called once,
    /// when the room is created.
    fn schema(&self) -> Arc<Schema> {
        Arc::default()
    }

    /// The room opened (one restored from a checkpoint gets [`Simulation::restore`]
    /// instead, unless the checkpoint was taken before the room's first tick: an empty
    /// room the configuration keeps open, moved by a rolling restart, is restored,
    /// then started): called once, at its first tick, before its first member's
    /// [`Simulation::join`]. `ctx.room` is its id and `ctx.listing` holds what the
    /// join that created it asked for (`RoomOptions.metadata`: the map or the mode a
    /// player chose; for a room the configuration keeps open, its `metadata`). A game
    /// sets its world up here; the listing it sets is in its first members' `Joined`.
    /// Nothing by default.
    ///
    /// A room is started once: one whose members all left stays open, empty, for
    /// `empty_room_ttl_secs` (30 s by default), and a join or a quick
    /// join in that time finds it as the last members left it, simulation and world
    /// alike. A game played in rounds resets itself in [`Simulation::join`] when the
    /// room was empty, or closes the room ([`SimContext::close_room`]) when a round
    /// ends, so the next players start a new one.
    fn start(&mut self, ctx: &mut SimContext<'_>) {
        let _ = ctx;
    }

    /// A member joined. Authoritative games typically spawn its avatar here.
    fn join(&mut self, ctx: &mut SimContext<'_>, member: MemberId);

    /// A member left (or its resume grace period ended).
    fn leave(&mut self, ctx: &mut SimContext<'_>, member: MemberId);

    /// Applies one input of `member`. An error is reported to the member and counted;
    /// the input still counts as applied (it is not retried).
    fn input(&mut self, ctx: &mut SimContext<'_>, member: MemberId, payload: &input::Payload) -> Result<(), SimError>;

    /// Advances the simulation by one tick.
    fn step(&mut self, ctx: &mut SimContext<'_>);

    /// `member`'s connection was lost (`away`: its seat is held for the resume grace
    /// period, and its inputs stop) or it resumed (`away` false): a game may pause
    /// its player or mark its avatar. Called once its connection has been lost for a
    /// second (a resume sooner is no change), and at the tick after it resumed; a
    /// member that does not come back gets [`Simulation::leave`] when the grace
    /// period ends. `ctx.members.is_away(member)` says the same at any time.
    /// Nothing by default.
    fn away(&mut self, ctx: &mut SimContext<'_>, member: MemberId, away: bool) {
        let _ = (ctx, member, away);
    }

    /// The room was restored from a checkpoint (cluster mode: its node died or
    /// stopped): `ctx.world` holds the checkpointed entities, and `members` were in the
    /// room then. Rebuild whatever the simulation keeps beside the world (what
    /// [`Simulation::save`] gave was handed to [`Simulation::load`] just before); those
    /// members' seats are held for them (no [`Simulation::join`] when they come back,
    /// but [`Simulation::away`] with `false`: they are away until then; a
    /// [`Simulation::leave`] if they do not within the resume grace). By default
    /// nothing is kept beside the world.
    fn restore(&mut self, ctx: &mut SimContext<'_>, members: &[MemberId]) {
        let _ = (ctx, members);
    }

    /// What the simulation keeps beside the world that a restored room needs (scores,
    /// a round timer, a departed player's points), in any encoding the game likes.
    /// Asked between ticks for each checkpoint (cluster mode, every `[cluster]
    /// checkpoint_ticks`; compared with the last one, so return the same
    /// bytes for the same state), stored with it and counted in
    /// `max_checkpoint_bytes`: keep it small (a checkpoint over that is not written,
    /// but logged and counted in `tickrelay_checkpoints_skipped_total`, and the room
    /// falls back to its last written one). A panic here closes only the room. Nothing by
    /// default.
    fn save(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Takes back what [`Simulation::save`] gave, as the room is restored from a
    /// checkpoint, before [`Simulation::restore`] (empty when the checkpoint holds
    /// none). A panic here, as in any callback, closes only the room.
    fn load(&mut self, saved: &[u8]) {
        let _ = saved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{FieldSpec, FieldType, Value};

    #[test]
    fn an_invalid_field_is_told_in_the_declarations_names_where_known() {
        let ty = FieldType::String { max_len: 4 };
        let kind = KindSchema::new(
            2,
            "ship",
            vec![FieldSpec::new(1, "nick", ty), FieldSpec::new(2, "", ty)],
        )
        .unwrap();
        let unnamed = KindSchema::new(5, "", vec![]).unwrap();
        let text = Value::String("arthur".into());
        for (error, shown) in [
            (
                SimError::invalid_field(7, 1, FieldProblem::TooLong(4), Some(&kind), Some(&text)),
                "entity 7 (kind ship (2)): field nick (1) = a string of 6 bytes is longer than its declared 4 bytes",
            ),
            (
                SimError::invalid_field(
                    7,
                    2,
                    FieldProblem::WrongType("string"),
                    Some(&kind),
                    Some(&Value::Int(3)),
                ),
                "entity 7 (kind ship (2)): field 2 = 3 must be of type string",
            ),
            (
                SimError::invalid_field(7, 9, FieldProblem::Undeclared, Some(&kind), Some(&Value::Bool(true))),
                "entity 7 (kind ship (2)): field 9 = true is not declared for its kind (it declares nick (1), 2)",
            ),
            (
                SimError::invalid_field(7, 9, FieldProblem::Undeclared, Some(&unnamed), None),
                "entity 7 (kind 5): field 9 is not declared for its kind (it declares none)",
            ),
            // What a world's own refusal knows (a simulation's write): ids.
            (
                WorldError::Field {
                    entity: 7,
                    field: 3,
                    problem: FieldProblem::OutOfRange,
                }
                .into(),
                "entity 7: field 3 is outside its declared range",
            ),
        ] {
            assert_eq!(error.to_string(), shown);
            assert_eq!(error.code(), ErrorCode::InvalidField);
        }
    }

    /// Each axis is in `-1.0..=1.0`, symmetric: -128 is as fast as 127.
    #[test]
    fn a_stick_intent_is_as_fast_either_way() {
        let read = |dx: i8, dy: i8| stick_intent(&input::Payload::Intent(vec![dx as u8, dy as u8].into())).unwrap();
        assert_eq!(read(127, -127), (1.0, -1.0));
        assert_eq!(read(-128, 0), (-1.0, 0.0));
        assert_eq!(read(64, -64).0, -read(64, -64).1);
    }

    /// The README and the configuration reference give these figures.
    #[test]
    fn what_an_entity_and_a_field_count_is_what_the_docs_say() {
        assert_eq!((ENTITY_COST, VIEWER_COST), (128, 64));
        assert_eq!(field_cost(&Value::Bool(true)), 88 + 1);
        assert_eq!(field_cost(&Value::String("x".repeat(100))), 88 + 100);
    }
}
