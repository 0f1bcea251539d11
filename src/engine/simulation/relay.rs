use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::{ENTITY_COST, EntityLimits, SimContext, SimError, Simulation, VIEWER_COST, field_cost, state_cost};
use crate::proto::{self, EntityWrites, Field, input};
use crate::state::{Entity, EntityId, FieldProblem, MemberId, SERVER, Schema, Tick, Value, World, value_len};

/// The built-in relay simulation: each member creates, updates, removes and gives
/// away (to the room's owner) only the entities it owns, and the room's owner those of
/// the room (to any member); the server checks ownership, limits and the declared
/// kinds, and relays the result. A member's entities are removed when it leaves; the
/// room's stay, for its next owner.
#[derive(Debug, Default)]
pub struct Relay {
    owned: FxHashMap<MemberId, usize>,
    /// What each member gave away or showed in the current second: its first tick,
    /// and the entities' bytes ([`GIVEN_BYTES_PER_SECOND`]).
    given: FxHashMap<MemberId, (Tick, usize)>,
    schema: Arc<Schema>,
    /// The room state's [`state_cost`], kept up to date with every write.
    state_bytes: usize,
    /// The room's entities a room owner showed to itself: hidden from it again when
    /// it no longer owns the room (unless shown to it since by another).
    self_shown: FxHashSet<(EntityId, MemberId)>,
}

/// The entity bytes (as the room counts them, [`state_cost`]) a member may give away
/// or show per second. A give sends the entity whole to every member, as its creation
/// did, and a show to the member shown it, so they are bounded as the writes that
/// make entities are (the session's default byte rate, 64 KiB/s): without it, a few
/// bytes of input handing large entities back and forth (or hiding and showing them)
/// every tick made members receive megabytes a second.
pub const GIVEN_BYTES_PER_SECOND: usize = 64 * 1024;

impl Relay {
    /// A relay simulation with no declared kinds.
    pub fn new() -> Self {
        Self::default()
    }

    /// A relay simulation whose entities of declared kinds must fit `schema`.
    pub fn with_schema(schema: Arc<Schema>) -> Self {
        Self {
            schema,
            ..Self::default()
        }
    }

    fn apply(&mut self, ctx: &mut SimContext<'_>, member: MemberId, writes: &EntityWrites) -> Result<(), SimError> {
        // The room's entities are written by its owner of the moment (a room without
        // an owner has owner 0, which no member is). Read only when one is written.
        let listing = ctx.listing;
        let room_owner = || listing.with(|l| l.owner);
        // Another's entity of an owner-only kind not shown to this member is, to it,
        // no entity at all: every answer about it is the one an absent id gets.
        let may_write = |world: &World, entity: &Entity| match entity.owner() {
            owner if owner == member => Ok(()),
            SERVER if room_owner() == member => Ok(()),
            _ if entity.is_owner_only() && !world.sees(member, entity.id()) => {
                Err(SimError::EntityNotFound(entity.id()))
            }
            SERVER => Err(SimError::NotRoomOwner(entity.id())),
            _ => Err(SimError::NotOwner(entity.id())),
        };
        // Checked up front, so that a write that does not fit changes nothing.
        let world = &*ctx.world;
        check_declared(world, writes, |e| may_write(world, e).is_ok() || !e.is_owner_only())?;
        for create in &writes.create {
            self.create(ctx, member, create)?;
        }
        for create in &writes.create_for_room {
            if room_owner() != member {
                return Err(SimError::NotRoomOwner(create.id));
            }
            self.create(ctx, SERVER, create)?;
        }
        let limits = ctx.limits;
        for update in &writes.update {
            let used = self.state_in_use(ctx.world);
            let entity = ctx.world.get(update.id).ok_or(SimError::EntityNotFound(update.id))?;
            may_write(ctx.world, entity)?;
            let mut target = ctx.world.entity_mut(update.id).expect("found above");
            let entity = target.get();
            let new_fields = update.fields.iter().filter(|f| entity.get(f.id).is_none()).count();
            if entity.fields().len() + new_fields > limits.max_fields_per_entity {
                return Err(SimError::LimitExceeded("fields per entity"));
            }
            update
                .fields
                .iter()
                .try_for_each(|f| check_value(limits, f.value.as_ref()))?;
            let before = state_cost(entity);
            let growth: usize = (update.fields.iter())
                .map(|f| {
                    let old = entity.get(f.id).map_or(0, field_cost);
                    f.value.as_ref().map_or(0, field_cost).saturating_sub(old)
                })
                .sum();
            if used + growth > limits.max_state_bytes {
                return Err(SimError::LimitExceeded("bytes of room state"));
            }
            let set = (update.fields.iter())
                .filter_map(|f| Some((f.id, f.value.as_ref()?)))
                .try_for_each(|(id, value)| target.set(id, value.clone()).map(drop));
            // Counted as written, also when a field was refused after others were set.
            self.state_bytes = self.state_bytes + state_cost(target.get()) - before;
            set?;
        }
        for &id in &writes.remove {
            let entity = ctx.world.get(id).ok_or(SimError::EntityNotFound(id))?;
            may_write(ctx.world, entity)?;
            let owner = entity.owner();
            self.state_bytes -= state_cost(&ctx.world.despawn(id)?);
            if let Some(owned) = self.owned.get_mut(&owner) {
                *owned -= 1;
            }
        }
        for give in &writes.give {
            let entity = ctx.world.get(give.id).ok_or(SimError::EntityNotFound(give.id))?;
            may_write(ctx.world, entity)?;
            let from = entity.owner();
            // Entities change hands through the room's owner (no other member fills
            // another's or the room's entity quota); in a room without one, never.
            let host = room_owner();
            if host == SERVER || (member != host && give.to != host) {
                return Err(SimError::GiveRefused(give.id));
            }
            if give.to != SERVER && ctx.members.user(give.to).is_none() {
                return Err(SimError::NotInRoom(give.to));
            }
            if give.to == from {
                continue;
            }
            let cost = state_cost(entity);
            self.may_send_whole(member, ctx.tick, ctx.dt, cost)?;
            if self.owned.get(&give.to).copied().unwrap_or(0) >= limits.max_entities_per_member {
                return Err(SimError::LimitExceeded(entities_of(give.to)));
            }
            ctx.world.set_owner(give.id, give.to)?;
            self.sent_whole(member, cost);
            *self.owned.entry(give.to).or_default() += 1;
            if let Some(owned) = self.owned.get_mut(&from) {
                *owned -= 1;
            }
        }
        for hide in &writes.hide {
            let entity = ctx.world.get(hide.id).ok_or(SimError::EntityNotFound(hide.id))?;
            may_write(ctx.world, entity)?;
            ctx.world.hide(hide.id, hide.member)?;
        }
        for show in &writes.show {
            let entity = ctx.world.get(show.id).ok_or(SimError::EntityNotFound(show.id))?;
            may_write(ctx.world, entity)?;
            if ctx.members.user(show.member).is_none() {
                return Err(SimError::NotInRoom(show.member));
            }
            let to_itself = entity.owner() == SERVER && show.member == member;
            if !to_itself {
                self.self_shown.remove(&(show.id, show.member));
            }
            // Seen already (every member sees its kind, it is the member's own, or
            // shown to it): nothing to count.
            if !entity.is_owner_only() || ctx.world.sees(show.member, show.id) {
                continue;
            }
            if self.state_in_use(ctx.world) + VIEWER_COST > limits.max_state_bytes {
                return Err(SimError::LimitExceeded("bytes of room state"));
            }
            // Sent whole to the member shown it: counted as a give is (a hide and a
            // show each tick would send it every tick).
            let cost = state_cost(entity);
            self.may_send_whole(member, ctx.tick, ctx.dt, cost)?;
            ctx.world.show(show.id, show.member)?;
            self.sent_whole(member, cost);
            if to_itself {
                self.self_shown.insert((show.id, member));
            }
        }
        Ok(())
    }

    /// What the room's state bound counts now: the entities, and each member an
    /// entity is shown to.
    fn state_in_use(&self, world: &World) -> usize {
        self.state_bytes + world.shown_count() * VIEWER_COST
    }

    /// Refuses entities of `cost` bytes that `member`'s write would send whole (a give,
    /// a show) beyond [`GIVEN_BYTES_PER_SECOND`] in the current second.
    fn may_send_whole(&mut self, member: MemberId, tick: Tick, dt: f32, cost: usize) -> Result<(), SimError> {
        let ticks_a_second = (1.0 / dt).round() as Tick;
        let given = self.given.entry(member).or_insert((tick, 0));
        if tick >= given.0 + ticks_a_second {
            *given = (tick, 0);
        }
        // (One entity larger than the budget goes alone, in a second of its own.)
        if given.1 > 0 && given.1 + cost > GIVEN_BYTES_PER_SECOND {
            let wait = given.0 + ticks_a_second - tick;
            return Err(SimError::RateLimited {
                what: "gives and shows over 64 KiB of entities a second",
                retry_after_ms: (wait as f32 * dt * 1000.0).ceil() as u32,
            });
        }
        Ok(())
    }

    /// Counts what [`Relay::may_send_whole`] let through.
    fn sent_whole(&mut self, member: MemberId, cost: usize) {
        if let Some(given) = self.given.get_mut(&member) {
            given.1 += cost;
        }
    }

    /// Creates one entity owned by `owner` (a member, or the room).
    fn create(&mut self, ctx: &mut SimContext<'_>, owner: MemberId, create: &proto::Entity) -> Result<(), SimError> {
        let limits = ctx.limits;
        let used = self.state_in_use(ctx.world);
        let owned = self.owned.entry(owner).or_default();
        if *owned >= limits.max_entities_per_member {
            return Err(SimError::LimitExceeded(entities_of(owner)));
        }
        if create.fields.len() > limits.max_fields_per_entity {
            return Err(SimError::LimitExceeded("fields per entity"));
        }
        create
            .fields
            .iter()
            .try_for_each(|f| check_value(limits, f.value.as_ref()))?;
        let cost = ENTITY_COST
            + create
                .fields
                .iter()
                .filter_map(|f| f.value.as_ref())
                .map(field_cost)
                .sum::<usize>();
        if used + cost > limits.max_state_bytes {
            return Err(SimError::LimitExceeded("bytes of room state"));
        }
        let fields = create.fields.iter().filter_map(|f| Some((f.id, f.value.clone()?)));
        ctx.world.spawn(create.id, owner, create.kind, fields)?;
        *owned += 1;
        self.state_bytes += ctx.world.get(create.id).map_or(0, state_cost);
        Ok(())
    }
}

/// The limit an owner's entities reach: a member's, or the room's own (which count
/// as a member's).
fn entities_of(owner: MemberId) -> &'static str {
    match owner {
        SERVER => "entities of the room (the room's own count as a member's: max_entities_per_member)",
        _ => "entities per member",
    }
}

/// Checks a written value against the per-field bound.
fn check_value(limits: EntityLimits, value: Option<&Value>) -> Result<(), SimError> {
    match value {
        Some(v) if value_len(v) > limits.max_field_bytes => Err(SimError::LimitExceeded("bytes per field")),
        Some(_) => Ok(()),
        None => Err(SimError::Malformed("a field must have a value")),
    }
}

/// Checks every written value of a declared kind against its declaration; an update
/// of an entity the writer may not know of (`known` false) is left to the ownership
/// check.
fn check_declared(world: &World, writes: &EntityWrites, known: impl Fn(&Entity) -> bool) -> Result<(), SimError> {
    let schema = world.schema();
    if schema.is_empty() {
        return Ok(());
    }
    let check = |entity: EntityId, kind: u32, fields: &[Field]| {
        let Some(declared) = schema.position(kind).map(|p| &schema.kinds()[p]) else {
            return Ok(());
        };
        for f in fields {
            let problem = match (declared.slot(f.id), &f.value) {
                (Some(slot), Some(v)) => declared.fields()[slot].ty.code(v).err(),
                (Some(_), None) => None, // refused as malformed later
                (None, _) => Some(FieldProblem::Undeclared),
            };
            if let Some(problem) = problem {
                return Err(SimError::invalid_field(
                    entity,
                    f.id,
                    problem,
                    Some(declared),
                    f.value.as_ref(),
                ));
            }
        }
        Ok(())
    };
    for create in writes.create.iter().chain(&writes.create_for_room) {
        check(create.id, create.kind, &create.fields)?;
    }
    // The kinds of the entities this input creates, by id (the first create of an id
    // counts), made once if an update needs it: not a scan of the creates per update.
    let mut created: Option<FxHashMap<EntityId, u32>> = None;
    for update in &writes.update {
        // Of an entity that exists, or that this input creates.
        if world.get(update.id).is_some_and(|e| !known(e)) {
            continue;
        }
        let kind = (world.get(update.id).map(Entity::kind)).or_else(|| {
            let created = created.get_or_insert_with(|| {
                let mut kinds = FxHashMap::default();
                for c in writes.create.iter().chain(&writes.create_for_room) {
                    kinds.entry(c.id).or_insert(c.kind);
                }
                kinds
            });
            created.get(&update.id).copied()
        });
        if let Some(kind) = kind {
            check(update.id, kind, &update.fields)?;
        }
    }
    Ok(())
}

impl Simulation for Relay {
    fn schema(&self) -> Arc<Schema> {
        self.schema.clone()
    }

    fn join(&mut self, _ctx: &mut SimContext<'_>, _member: MemberId) {}

    fn restore(&mut self, ctx: &mut SimContext<'_>, _members: &[MemberId]) {
        self.owned.clear();
        self.state_bytes = 0;
        for entity in ctx.world.entities() {
            *self.owned.entry(entity.owner()).or_default() += 1;
            self.state_bytes += state_cost(entity);
        }
        // Who showed what is not in a checkpoint: the room's entities shown to its
        // owner count as shown by itself (hidden from it when it hands the room on).
        let host = ctx.listing.with(|l| l.owner);
        let rooms = (ctx.world.own_entities(host)).filter(|(e, _)| host != SERVER && e.owner() == SERVER);
        self.self_shown = rooms.map(|(e, _)| (e.id(), host)).collect();
    }

    fn leave(&mut self, ctx: &mut SimContext<'_>, member: MemberId) {
        self.given.remove(&member);
        if self.owned.remove(&member).is_none() {
            return;
        }
        let owned: Vec<EntityId> = ctx
            .world
            .entities()
            .filter(|e| e.owner() == member)
            .map(|e| e.id())
            .collect();
        for id in owned {
            if let Ok(entity) = ctx.world.despawn(id) {
                self.state_bytes -= state_cost(&entity);
            }
        }
    }

    fn input(&mut self, ctx: &mut SimContext<'_>, member: MemberId, payload: &input::Payload) -> Result<(), SimError> {
        match payload {
            input::Payload::Writes(writes) => self.apply(ctx, member, writes),
            input::Payload::Intent(_) => Err(SimError::WrongPayload {
                expected: "entity writes (`Input.writes`)",
            }),
        }
    }

    /// The room's entities its owner showed to itself are the host's: a member that
    /// stops being the room's owner no longer sees them (unless another showed them
    /// to it since; what it showed to other members stays shown).
    fn step(&mut self, ctx: &mut SimContext<'_>) {
        // (The listing, a lock, is read only in a room where a host peeks.)
        if self.self_shown.is_empty() {
            return;
        }
        let host = ctx.listing.with(|l| l.owner);
        let world = &mut *ctx.world;
        self.self_shown.retain(|&(id, member)| {
            let room_s = world.get(id).is_some_and(|e| e.owner() == SERVER);
            if !room_s || !world.shown_to(id).contains(&member) {
                return false; // gone, given away or hidden since: nothing to undo
            }
            if member != host {
                let _ = world.hide(id, member);
                return false;
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::listing::{Listing, ListingState};
    use crate::engine::simulation::{Requests, Roster};
    use crate::state::KindSchema;

    /// What a host showed itself is forgotten once the entity is gone (or given
    /// away, or hidden), and a show that changed nothing is not counted: the set
    /// stays bounded by what is shown now, though a host that stays the host deals,
    /// peeks at and throws away cards for ever (`step` walks the set every tick).
    #[test]
    fn what_a_host_showed_itself_is_forgotten_once_gone() {
        let schema = Schema::new(vec![KindSchema::new(2, "public", vec![]).unwrap()]).unwrap();
        let mut relay = Relay::with_schema(Arc::new(schema.clone()));
        let mut world = World::with_schema(32, Arc::new(schema));
        let listing = Listing::new(ListingState {
            owner: 1,
            ..ListingState::default()
        });
        let mut roster = Roster::new();
        roster.insert(1, "user-1".into());
        let mut requests = Requests::default();
        let card = |id| proto::Entity {
            id,
            owner: 0,
            kind: 2,
            fields: vec![],
        };
        let mut tick = 0;
        for round in 0..100u64 {
            let ids: Vec<u64> = (0..10).map(|i| 1000 + round * 10 + i).collect();
            // Deal ten cards of the room's and peek at them; next input, throw them away.
            let deal = EntityWrites {
                create_for_room: ids.iter().map(|&id| card(id)).collect(),
                show: ids.iter().map(|&id| proto::Viewer { id, member: 1 }).collect(),
                ..Default::default()
            };
            let discard = EntityWrites {
                remove: ids.clone(),
                ..Default::default()
            };
            for writes in [deal, discard] {
                tick += 1;
                world.begin_tick(tick);
                let mut ctx = SimContext {
                    room: "room",
                    world: &mut world,
                    tick,
                    dt: 0.1,
                    limits: EntityLimits::default(),
                    listing: &listing,
                    requests: &mut requests,
                    members: &roster,
                };
                relay
                    .input(&mut ctx, 1, &input::Payload::Writes(Box::new(writes)))
                    .unwrap();
                relay.step(&mut ctx);
                world.finish_tick();
            }
        }
        assert_eq!(world.len(), 0, "every card was thrown away");
        assert_eq!(world.shown_count(), 0);
        assert_eq!(
            relay.self_shown.len(),
            0,
            "entries kept for entities that no longer exist"
        );
    }
}
