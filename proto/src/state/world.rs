use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use indexmap::IndexMap;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::entity::NEVER;
use super::{
    Entity, EntityId, Field, FieldId, FieldProblem, KindSchema, MemberId, Schema, Tick, Value, field_hash, head_hash,
    same_value,
};

/// Why a world mutation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// An entity with this id already exists.
    #[error("entity {0} already exists")]
    Exists(EntityId),
    /// No entity has this id.
    #[error("entity {0} does not exist")]
    NotFound(EntityId),
    /// A value does not fit the field the kind declares.
    #[error("field {field} of entity {entity} {problem}")]
    Field {
        /// The entity.
        entity: EntityId,
        /// The field.
        field: FieldId,
        /// What is wrong with the value.
        problem: FieldProblem,
    },
}

/// A removal remembered for delta encoding.
#[derive(Debug, Clone, Copy)]
pub struct Removal {
    /// Tick in which the entity was removed.
    pub tick: Tick,
    /// The removed entity.
    pub id: EntityId,
}

/// What the entities of owner-only kinds one member sees add up to: those it owns
/// and those shown to it (see [`World::own`], [`World::show`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Own {
    /// How many it sees.
    pub count: u32,
    /// The wrapping sum of their hashes: their share of the checksum.
    pub checksum: u64,
    /// The last tick in which one was created, written, given or taken away, shown
    /// or hidden, or removed.
    pub changed: Tick,
}

/// The entities of owner-only kinds one member sees, and [`Own`]'s sums.
#[derive(Debug, Clone, Default)]
struct Owned {
    /// Their ids, in order, each with the tick since which the member has it as it
    /// is: created, given to it, or shown to it (its deltas send it whole when that
    /// is after their baseline).
    ids: BTreeMap<EntityId, Tick>,
    /// Those it lost (removed, given to another, or hidden from it) within the
    /// window.
    lost: VecDeque<Removal>,
    checksum: u64,
    changed: Tick,
}

impl Owned {
    fn gain(&mut self, id: EntityId, tick: Tick) {
        // Held before, and sent whole again now: should it go again within this tick,
        // its removal is the one recorded here (the encoder skips it while the
        // member still holds the entity).
        if self.ids.insert(id, tick).is_some_and(|since| since != tick) {
            self.lost.push_back(Removal { tick, id });
        }
        self.changed = tick;
    }

    fn lose(&mut self, id: EntityId, tick: Tick) {
        // One it gained in this same tick it was never sent: its id is none of its
        // business.
        if self.ids.remove(&id).is_some_and(|since| since != tick) {
            self.lost.push_back(Removal { tick, id });
        }
        self.changed = tick;
    }
}

/// The world's running sums: the checksum (and its part per member that sees
/// entities of owner-only kinds) and when what every member sees last changed.
#[derive(Debug, Clone, Default)]
struct Tally {
    /// Wrapping sum of the hashes of all clean entities.
    checksum: u64,
    /// The part of `checksum` from entities of owner-only kinds.
    own_checksum: u64,
    own: FxHashMap<MemberId, Owned>,
    /// The members other than its owner an entity of an owner-only kind is shown to.
    shown: FxHashMap<EntityId, Vec<MemberId>>,
    /// Entries in `shown`, all entities together.
    shown_count: usize,
    /// The last tick in which an entity every member sees was created, changed or
    /// removed.
    last_shared_change: Tick,
}

impl Tally {
    /// Counts a clean entity's hash in.
    fn put(&mut self, e: &Entity) {
        self.add(e, e.hash);
    }

    /// Takes a clean entity's hash out (it is about to change, change hands or go).
    fn take(&mut self, e: &Entity) {
        self.add(e, e.hash.wrapping_neg());
    }

    fn add(&mut self, e: &Entity, hash: u64) {
        self.checksum = self.checksum.wrapping_add(hash);
        if e.owner_only {
            self.own_checksum = self.own_checksum.wrapping_add(hash);
            let Self { own, shown, .. } = self;
            for member in viewers(shown, e) {
                let own = own.entry(member).or_default();
                own.checksum = own.checksum.wrapping_add(hash);
            }
        }
    }

    /// Records a write to `e` in `tick`.
    fn touch(&mut self, e: &Entity, tick: Tick) {
        if e.owner_only {
            let Self { own, shown, .. } = self;
            for member in viewers(shown, e) {
                own.entry(member).or_default().changed = tick;
            }
        } else {
            self.last_shared_change = tick;
        }
    }

    /// Takes the list of those entity `id` is shown to (it is shown to nobody now).
    fn take_viewers(&mut self, id: EntityId) -> std::vec::IntoIter<MemberId> {
        let viewers = self.shown.remove(&id).unwrap_or_default();
        self.shown_count -= viewers.len();
        viewers.into_iter()
    }

    /// Takes `member` off the list of those entity `id` is shown to. Returns whether
    /// it was on it.
    fn unshow(&mut self, id: EntityId, member: MemberId) -> bool {
        let Some(viewers) = self.shown.get_mut(&id) else {
            return false;
        };
        let Some(at) = viewers.iter().position(|&m| m == member) else {
            return false;
        };
        viewers.swap_remove(at);
        self.shown_count -= 1;
        if viewers.is_empty() {
            self.shown.remove(&id);
        }
        true
    }
}

/// Who sees an entity of an owner-only kind: its owner, and those it is shown to.
fn viewers<'a>(shown: &'a FxHashMap<EntityId, Vec<MemberId>>, e: &Entity) -> impl Iterator<Item = MemberId> + 'a {
    // (No lookup in a room that shows nothing: most.)
    let others = if shown.is_empty() { None } else { shown.get(&e.id) };
    std::iter::once(e.owner).chain(others.into_iter().flatten().copied())
}

/// The entities of a room, with the change bookkeeping that delta encoding and the
/// checksum need.
///
/// Mutations are stamped with the current tick (set by [`World::begin_tick`]);
/// [`World::finish_tick`] brings the checksum up to date, puts the entities in id order
/// and trims the removal log to the history window.
///
/// Entities of a kind the world's [`Schema`] declares take only declared fields with
/// values that fit them; floats are stored snapped to their declared grid.
#[derive(Debug, Clone)]
pub struct World {
    entities: IndexMap<EntityId, Entity, FxBuildHasher>,
    /// False when a spawn or removal may have broken the id order.
    sorted: bool,
    schema: Arc<Schema>,
    tick: Tick,
    window: Tick,
    removals: VecDeque<Removal>,
    tally: Tally,
    dirty: Vec<EntityId>,
}

impl World {
    /// An empty world that remembers removals for `window` ticks, with no declared
    /// kinds.
    pub fn new(window: Tick) -> Self {
        Self::with_schema(window, Arc::default())
    }

    /// An empty world whose entities of declared kinds must fit `schema`.
    pub fn with_schema(window: Tick, schema: Arc<Schema>) -> Self {
        Self {
            entities: IndexMap::default(),
            sorted: true,
            schema,
            tick: 0,
            window,
            removals: VecDeque::new(),
            tally: Tally::default(),
            dirty: Vec::new(),
        }
    }

    /// The tick being built (mutations are stamped with it).
    pub fn tick(&self) -> Tick {
        self.tick
    }

    /// The last tick in which an entity every member sees (not of an owner-only
    /// kind) was created, changed or removed.
    pub fn last_shared_change(&self) -> Tick {
        self.tally.last_shared_change
    }

    /// Starts building `tick`; mutations from now on are stamped with it.
    pub fn begin_tick(&mut self, tick: Tick) {
        self.tick = tick;
    }

    /// The declared kinds.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Brings the checksum up to date, sorts the entities by id and forgets removals
    /// older than the window.
    pub fn finish_tick(&mut self) {
        if !self.sorted {
            self.entities.sort_unstable_keys();
            self.sorted = true;
        }
        for id in self.dirty.drain(..) {
            // An id can be listed twice (created, removed and created again).
            // (Its hash is up to date: each write and owner change moved it.)
            if let Some(e) = self.entities.get_mut(&id).filter(|e| e.dirty) {
                debug_assert_eq!(
                    e.hash,
                    super::entity_hash(e.id, e.owner, e.kind, e.fields()),
                    "entity {}",
                    e.id
                );
                e.dirty = false;
                self.tally.put(e);
            }
        }
        let oldest = self.tick.saturating_sub(self.window);
        forget_before(&mut self.removals, oldest);
        if !self.tally.own.is_empty() {
            self.tally.own.retain(|_, own| {
                forget_before(&mut own.lost, oldest);
                !own.ids.is_empty() || !own.lost.is_empty()
            });
        }
    }

    /// Checksum of the whole state as of the last [`World::finish_tick`].
    pub fn checksum(&self) -> u64 {
        debug_assert!(self.dirty.is_empty(), "checksum read mid-tick");
        self.tally.checksum
    }

    /// Checksum of what every member sees: the state without the entities of
    /// owner-only kinds. A member's own are [`World::own`]`.checksum` more.
    pub fn shared_checksum(&self) -> u64 {
        debug_assert!(self.dirty.is_empty(), "checksum read mid-tick");
        self.tally.checksum.wrapping_sub(self.tally.own_checksum)
    }

    /// What the entities of owner-only kinds `member` sees add up to (all zero when
    /// it sees none and lost none within the history window).
    pub fn own(&self, member: MemberId) -> Own {
        self.tally.own.get(&member).map_or_else(Own::default, |own| Own {
            count: own.ids.len() as u32,
            checksum: own.checksum,
            changed: own.changed,
        })
    }

    /// The entities of owner-only kinds `member` sees (its own and those shown to
    /// it), in id order, each with the tick since which it has the entity as it is
    /// (created, given to it, or shown to it).
    pub fn own_entities(&self, member: MemberId) -> impl Iterator<Item = (&Entity, Tick)> {
        let ids = self.tally.own.get(&member).map(|own| &own.ids);
        (ids.into_iter().flatten()).filter_map(|(id, &since)| Some((self.entities.get(id)?, since)))
    }

    /// True when `member` sees entity `id` of an owner-only kind: it owns it, or it
    /// is shown to it.
    pub fn sees(&self, member: MemberId, id: EntityId) -> bool {
        self.tally.own.get(&member).is_some_and(|own| own.ids.contains_key(&id))
    }

    /// The members an entity of an owner-only kind is shown to besides its owner
    /// ([`World::show`]), in no particular order.
    pub fn shown_to(&self, id: EntityId) -> &[MemberId] {
        self.tally.shown.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Every (entity, member) pair [`World::show`] made, in no particular order.
    pub fn shows(&self) -> impl Iterator<Item = (EntityId, MemberId)> + '_ {
        (self.tally.shown.iter()).flat_map(|(&id, viewers)| viewers.iter().map(move |&member| (id, member)))
    }

    /// How many (entity, member) pairs [`World::show`] made, all entities together:
    /// what showing costs the room's memory.
    pub fn shown_count(&self) -> usize {
        self.tally.shown_count
    }

    /// Shows an entity of an owner-only kind to `member` as well as to its owner: its
    /// next frames carry it whole, then its changes, until [`World::hide`] (or the
    /// entity is removed, or given away). Returns whether it was hidden from `member`
    /// before; an entity every member sees, or `member`'s own, is left as it is.
    /// Show to members of the room only: the room hides everything from a member
    /// that leaves, and nothing shown to an id that is not a member's.
    pub fn show(&mut self, id: EntityId, member: MemberId) -> Result<bool, WorldError> {
        let e = self.entities.get(&id).ok_or(WorldError::NotFound(id))?;
        if !e.owner_only || e.owner == member {
            return Ok(false);
        }
        let Tally {
            own,
            shown,
            shown_count,
            ..
        } = &mut self.tally;
        let viewers = shown.entry(id).or_default();
        if viewers.contains(&member) {
            return Ok(false);
        }
        viewers.push(member);
        *shown_count += 1;
        let own = own.entry(member).or_default();
        own.gain(id, self.tick);
        // A dirty entity's hash is counted in for every viewer when the tick finishes.
        if !e.dirty {
            own.checksum = own.checksum.wrapping_add(e.hash);
        }
        Ok(true)
    }

    /// Hides an entity [`World::show`] showed to `member` again: its next frames
    /// remove it. Returns whether it was shown to `member`.
    pub fn hide(&mut self, id: EntityId, member: MemberId) -> Result<bool, WorldError> {
        let e = self.entities.get(&id).ok_or(WorldError::NotFound(id))?;
        if !self.tally.unshow(id, member) {
            return Ok(false);
        }
        let own = self.tally.own.entry(member).or_default();
        own.lose(id, self.tick);
        if !e.dirty {
            own.checksum = own.checksum.wrapping_sub(e.hash);
        }
        Ok(true)
    }

    /// Hides from `member` every entity shown to it (it left the room). Returns how
    /// many were.
    pub fn hide_all_from(&mut self, member: MemberId) -> usize {
        let ids = self.tally.own.get(&member).map(|own| own.ids.keys());
        let shown: Vec<EntityId> = (ids.into_iter().flatten())
            .filter(|id| self.entities.get(*id).is_some_and(|e| e.owner != member))
            .copied()
            .collect();
        for &id in &shown {
            let _ = self.hide(id, member);
        }
        shown.len()
    }

    /// True when some kind is seen by its owner only.
    pub fn has_owner_only_kinds(&self) -> bool {
        self.schema.kinds().iter().any(KindSchema::is_owner_only)
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// True when there are no entities.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// One entity.
    pub fn get(&self, id: EntityId) -> Option<&Entity> {
        self.entities.get(&id)
    }

    /// All entities, in id order as of the last [`World::finish_tick`] (entities
    /// created since may come out of order).
    pub fn entities(&self) -> impl ExactSizeIterator<Item = &Entity> {
        self.entities.values()
    }

    /// Removals of entities every member saw, within the window.
    pub(crate) fn removals(&self) -> &VecDeque<Removal> {
        &self.removals
    }

    /// The entities of owner-only kinds `member` lost (removed, or given to another)
    /// within the window; `None`: every owner's.
    pub(crate) fn own_removals(&self, member: Option<MemberId>) -> impl Iterator<Item = &Removal> {
        let one = member.and_then(|member| self.tally.own.get(&member));
        let all = member.is_none().then(|| self.tally.own.values()).into_iter().flatten();
        one.into_iter().chain(all).flat_map(|own| &own.lost)
    }

    /// Creates an entity. Duplicate field ids keep the last value.
    pub fn spawn(
        &mut self,
        id: EntityId,
        owner: MemberId,
        kind: u32,
        fields: impl IntoIterator<Item = (FieldId, Value)>,
    ) -> Result<(), WorldError> {
        if self.entities.contains_key(&id) {
            return Err(WorldError::Exists(id));
        }
        let tick = self.tick;
        let mut fields: Vec<Field> = fields
            .into_iter()
            .map(|(id, value)| Field {
                id,
                value: canonical(value),
                changed: tick,
                slot: 0,
                code: 0,
                before: 0,
                before_tick: NEVER,
                hash: 0,
            })
            .collect();
        // Stable sort, then keep the last of each run of equal ids.
        fields.sort_by_key(|f| f.id);
        fields.reverse();
        fields.dedup_by_key(|f| f.id);
        fields.reverse();
        // What the entity holds is what a room's state bound counts: no room left
        // over from the duplicates (a create may name one field many times).
        fields.shrink_to_fit();
        let schema = self.schema.position(kind);
        let owner_only = schema.is_some_and(|p| self.schema.kinds()[p].is_owner_only());
        if let Some(position) = schema {
            let declared = &self.schema.kinds()[position];
            for f in &mut fields {
                let value = std::mem::replace(&mut f.value, Value::Bool(false));
                let (value, slot, code) = admit(declared, f.id, value).map_err(|problem| WorldError::Field {
                    entity: id,
                    field: f.id,
                    problem,
                })?;
                (f.value, f.slot, f.code) = (value, slot, code);
            }
        }
        let mut hash = head_hash(id, owner, kind);
        for f in &mut fields {
            f.hash = field_hash(id, f.id, &f.value);
            hash = hash.wrapping_add(f.hash);
        }
        if self.entities.last().is_some_and(|(&last, _)| last > id) {
            self.sorted = false;
        }
        let entity = Entity {
            id,
            owner,
            kind,
            schema: schema.map(|p| p as u16),
            owner_only,
            fields,
            created: tick,
            changed: tick,
            hash,
            dirty: true,
        };
        if owner_only {
            self.tally.own.entry(owner).or_default().gain(id, tick);
        } else {
            self.tally.last_shared_change = tick;
        }
        self.entities.insert(id, entity);
        self.dirty.push(id);
        Ok(())
    }

    /// Sets one field, creating it if absent. Returns whether the value changed;
    /// writing the same value again is not a change and costs no bytes on the wire.
    pub fn set(&mut self, id: EntityId, field: FieldId, value: Value) -> Result<bool, WorldError> {
        self.entity_mut(id).ok_or(WorldError::NotFound(id))?.set(field, value)
    }

    /// A handle to write several fields of one entity with a single lookup.
    pub fn entity_mut(&mut self, id: EntityId) -> Option<EntityMut<'_>> {
        let World {
            entities,
            schema,
            tick,
            tally,
            dirty,
            ..
        } = self;
        let entity = entities.get_mut(&id)?;
        Some(EntityMut {
            declared: entity.schema.map(|p| &schema.kinds()[usize::from(p)]),
            entity,
            tick: *tick,
            tally,
            dirty,
        })
    }

    /// Hands an entity to another owner. Its next deltas list it whole (in `added`,
    /// which replaces a receiver's copy), as if it were created again now: a client's
    /// mirror learns owners from entities added. An entity of an owner-only kind is
    /// removed for its old owner and for those it was shown to, and added for its new
    /// owner.
    pub fn set_owner(&mut self, id: EntityId, owner: MemberId) -> Result<(), WorldError> {
        let tick = self.tick;
        let entity = self.entities.get_mut(&id).ok_or(WorldError::NotFound(id))?;
        if entity.owner == owner {
            return Ok(());
        }
        if !entity.dirty {
            self.tally.take(entity);
            entity.dirty = true;
            self.dirty.push(id);
        }
        let before = std::mem::replace(&mut entity.owner, owner);
        let heads = (head_hash(id, before, entity.kind), head_hash(id, owner, entity.kind));
        entity.hash = entity.hash.wrapping_sub(heads.0).wrapping_add(heads.1);
        entity.created = tick;
        entity.changed = tick;
        if entity.owner_only {
            // Those it was shown to see it no longer: its new owner shows it, if it
            // wants to (a card peeked at, then dealt to another, tells the peeker
            // nothing of its new hand). (Their share of the checksum lost its hash
            // as it became dirty.)
            for member in self.tally.take_viewers(id).chain([before]).filter(|&m| m != owner) {
                self.tally.own.entry(member).or_default().lose(id, tick);
            }
            self.tally.own.entry(owner).or_default().gain(id, tick);
        } else {
            self.tally.last_shared_change = tick;
        }
        Ok(())
    }

    /// Removes an entity and returns it.
    pub fn despawn(&mut self, id: EntityId) -> Result<Entity, WorldError> {
        let (index, _, entity) = self.entities.swap_remove_full(&id).ok_or(WorldError::NotFound(id))?;
        if index != self.entities.len() {
            self.sorted = false; // the last entity moved into the gap
        }
        if !entity.dirty {
            self.tally.take(&entity);
        }
        if entity.owner_only {
            for member in std::iter::once(entity.owner).chain(self.tally.take_viewers(id)) {
                self.tally.own.entry(member).or_default().lose(id, self.tick);
            }
        } else {
            self.tally.last_shared_change = self.tick;
            self.removals.push_back(Removal { tick: self.tick, id });
        }
        Ok(entity)
    }

    /// Replaces (or creates) an entity wholesale; used by the client mirror. Fails
    /// only when a field does not fit the schema (the entity is then absent).
    pub fn replace(
        &mut self,
        id: EntityId,
        owner: MemberId,
        kind: u32,
        fields: impl IntoIterator<Item = (FieldId, Value)>,
    ) -> Result<(), WorldError> {
        let _ = self.despawn(id);
        self.spawn(id, owner, kind, fields)
    }

    /// Removes every entity; used by the client mirror before a full snapshot.
    pub fn clear(&mut self) {
        self.entities.clear();
        self.sorted = true;
        self.removals.clear();
        self.dirty.clear();
        self.tally = Tally::default();
    }

    /// True when both worlds hold the same entities with the same values.
    pub fn same_state(&self, other: &World) -> bool {
        self.len() == other.len()
            && self
                .entities()
                .all(|e| other.get(e.id).is_some_and(|o| e.same_state(o)))
    }
}

/// Forgets the removals at or before `oldest`.
fn forget_before(removals: &mut VecDeque<Removal>, oldest: Tick) {
    while removals.front().is_some_and(|r| r.tick <= oldest) {
        removals.pop_front();
    }
}

/// Checks a value against its declared field: the value to store, the field's slot
/// and the value's code.
fn admit(declared: &KindSchema, field: FieldId, value: Value) -> Result<(Value, u8, u64), FieldProblem> {
    let slot = declared.slot(field).ok_or(FieldProblem::Undeclared)?;
    let (value, code) = declared.fields()[slot].ty.admit(value)?;
    Ok((value, slot as u8, code))
}

/// Writes fields of one entity of a [`World`] (see [`World::entity_mut`]).
pub struct EntityMut<'w> {
    entity: &'w mut Entity,
    declared: Option<&'w KindSchema>,
    tick: Tick,
    tally: &'w mut Tally,
    dirty: &'w mut Vec<EntityId>,
}

/// `value`, a NaN float as the quiet NaN `0x7fc00000`: a NaN's payload does not survive
/// every client's decoding (a JavaScript engine may quiet or drop it), and the
/// checksum hashes the bits.
fn canonical(value: Value) -> Value {
    match value {
        Value::Float(v) if v.is_nan() => Value::Float(f32::from_bits(0x7fc0_0000)),
        value => value,
    }
}

impl EntityMut<'_> {
    /// The entity as it is now.
    pub fn get(&self) -> &Entity {
        self.entity
    }

    /// Sets one field, creating it if absent. Returns whether the value changed;
    /// writing the same value again is not a change and costs no bytes on the wire.
    /// A value that does not fit the declared field is refused.
    pub fn set(&mut self, field: FieldId, value: Value) -> Result<bool, WorldError> {
        let value = canonical(value);
        let (value, slot, code) = match self.declared {
            Some(declared) => admit(declared, field, value).map_err(|problem| WorldError::Field {
                entity: self.entity.id,
                field,
                problem,
            })?,
            None => (value, 0, 0),
        };
        Ok(self.write(field, value, slot, code))
    }

    /// Sets the numeric field in `slot` of the entity's declared kind to the value of
    /// `code` (what a packed block carries: no quantizing again). `None` when the
    /// kind is not declared, or the slot is not a numeric field's, or the code is out
    /// of its range.
    pub(crate) fn set_code(&mut self, slot: usize, code: u64) -> Option<bool> {
        let spec = self.declared?.fields().get(slot)?;
        let value = spec.ty.decode(code)?;
        Some(self.write(spec.id, value, slot as u8, code))
    }

    /// Writes an admitted value and its code (see [`EntityMut::set`]).
    fn write(&mut self, field: FieldId, value: Value, slot: u8, code: u64) -> bool {
        let tick = self.tick;
        let entity = &mut *self.entity;
        let moved_by = match entity.position(field) {
            Ok(i) if same_value(&entity.fields[i].value, &value) => return false,
            Ok(i) => {
                let hash = field_hash(entity.id, field, &value);
                let f = &mut entity.fields[i];
                if f.changed != tick {
                    (f.before, f.before_tick) = (f.code, f.changed);
                }
                let old = std::mem::replace(&mut f.hash, hash);
                (f.value, f.code, f.changed) = (value, code, tick);
                hash.wrapping_sub(old)
            }
            Err(i) => {
                let hash = field_hash(entity.id, field, &value);
                // Grown by one, not doubled: the room's state bound counts fields.
                entity.fields.reserve_exact(1);
                entity.fields.insert(
                    i,
                    Field {
                        id: field,
                        hash,
                        value,
                        changed: tick,
                        slot,
                        code,
                        before: 0,
                        before_tick: NEVER,
                    },
                );
                hash
            }
        };
        entity.changed = tick;
        self.tally.touch(entity, tick);
        if !entity.dirty {
            entity.dirty = true;
            self.tally.take(entity);
            self.dirty.push(entity.id);
        }
        // (After its old hash left the tallies.)
        entity.hash = entity.hash.wrapping_add(moved_by);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{FieldSpec, FieldType, entity_hash};

    fn full_checksum(world: &World) -> u64 {
        world.entities().fold(0u64, |sum, e| {
            sum.wrapping_add(entity_hash(e.id, e.owner, e.kind, e.fields()))
        })
    }

    #[test]
    fn incremental_checksum_matches_recomputation() {
        let mut w = World::new(8);
        w.begin_tick(1);
        w.spawn(1, 0, 1, [(1, Value::Int(1)), (2, Value::Float(0.5))]).unwrap();
        w.spawn(2, 5, 2, [(1, Value::Bool(true))]).unwrap();
        w.finish_tick();
        assert_eq!(w.checksum(), full_checksum(&w));

        w.begin_tick(2);
        assert!(w.set(1, 2, Value::Float(0.75)).unwrap());
        assert!(w.set(1, 3, Value::String("x".into())).unwrap());
        w.despawn(2).unwrap();
        w.spawn(3, 0, 1, []).unwrap();
        w.despawn(3).unwrap();
        w.spawn(3, 0, 2, []).unwrap();
        w.finish_tick();
        assert_eq!(w.checksum(), full_checksum(&w));
        assert_eq!(w.len(), 2);
    }

    /// The checksum's parts (shared, and each owner's entities of owner-only kinds)
    /// follow creates, writes, gives and removals, and add up to the whole.
    #[test]
    fn each_owners_share_of_the_checksum_is_kept_up_to_date() {
        let int = FieldSpec::new(1, "n", FieldType::int(0, 9).unwrap());
        let hidden = KindSchema::new(3, "hidden", vec![int]).unwrap().seen_by_owner_only();
        let mut w = World::with_schema(4, Arc::new(Schema::new(vec![hidden]).unwrap()));
        let part = |w: &World, member: Option<MemberId>| {
            let seen = |e: &&Entity| match member {
                Some(m) => e.owner_only && (e.owner == m || w.shown_to(e.id).contains(&m)),
                None => !e.owner_only,
            };
            (w.entities().filter(seen)).fold(0u64, |sum, e| {
                sum.wrapping_add(entity_hash(e.id, e.owner, e.kind, e.fields()))
            })
        };
        let check = |w: &World| {
            assert_eq!(w.shared_checksum(), part(w, None));
            for m in [1, 2, 3] {
                assert_eq!(w.own(m).checksum, part(w, Some(m)), "member {m}");
                let seen = |e: &&Entity| e.owner_only && (e.owner == m || w.shown_to(e.id).contains(&m));
                assert_eq!(w.own(m).count as usize, w.entities().filter(seen).count());
                assert!(w.entities().filter(seen).all(|e| w.sees(m, e.id)));
            }
            let shown: usize = w.entities().map(|e| w.shown_to(e.id).len()).sum();
            assert_eq!(w.shown_count(), shown);
            assert_eq!(w.checksum(), full_checksum(w));
        };
        w.begin_tick(1);
        w.spawn(1, 1, 3, [(1, Value::Int(1))]).unwrap();
        w.spawn(2, 2, 3, []).unwrap();
        w.spawn(3, 1, 1, []).unwrap();
        w.finish_tick();
        check(&w);
        assert_eq!((w.last_shared_change(), w.own(1).changed), (1, 1));
        w.begin_tick(2);
        w.set(1, 1, Value::Int(2)).unwrap();
        w.set_owner(1, 2).unwrap();
        w.finish_tick();
        check(&w);
        assert_eq!((w.last_shared_change(), w.own(1).changed, w.own(2).changed), (1, 2, 2));
        let lost: Vec<_> = w.own_removals(Some(1)).map(|r| (r.tick, r.id)).collect();
        assert_eq!(lost, [(2, 1)]);
        assert!(w.removals().is_empty() && w.own_removals(Some(2)).next().is_none());
        w.begin_tick(3);
        w.despawn(2).unwrap();
        w.set(3, 1, Value::Int(1)).unwrap();
        w.finish_tick();
        check(&w);
        assert_eq!(
            w.own(1),
            Own {
                count: 0,
                checksum: 0,
                changed: 2
            }
        );
        // An owner with nothing left is forgotten once its last change is out of the window.
        w.begin_tick(7);
        w.finish_tick();
        assert_eq!(w.own(1), Own::default());
        assert_eq!(w.own(2).count, 1);

        // Held for part of a tick only (given on, or removed, in the tick it was
        // gained): never sent, so not lost either.
        w.begin_tick(8);
        w.spawn(4, 1, 3, []).unwrap();
        w.finish_tick();
        w.begin_tick(9);
        w.set_owner(4, 2).unwrap();
        w.set_owner(4, 1).unwrap();
        w.set_owner(1, 1).unwrap();
        w.despawn(1).unwrap();
        w.finish_tick();
        check(&w);
        let lost = |w: &World, m| w.own_removals(Some(m)).map(|r| r.id).collect::<Vec<_>>();
        assert_eq!((lost(&w, 1), lost(&w, 2)), (vec![4], vec![1]));

        // Shown to others: counted in their share, written, hidden, given to one who
        // saw it, removed while shown.
        w.begin_tick(10);
        w.spawn(5, 1, 3, [(1, Value::Int(3))]).unwrap();
        w.finish_tick();
        w.begin_tick(11);
        assert!(w.show(5, 2).unwrap() && w.show(5, 3).unwrap());
        assert!(
            !w.show(5, 2).unwrap() && !w.show(5, 1).unwrap(),
            "shown already, or its owner's"
        );
        assert!(!w.show(3, 2).unwrap(), "every member sees entity 3 already");
        assert_eq!(w.show(99, 2), Err(WorldError::NotFound(99)));
        w.finish_tick();
        check(&w);
        assert_eq!(
            (w.own(2).changed, w.own(3).changed, w.last_shared_change()),
            (11, 11, 3)
        );
        let since = |w: &World, m| w.own_entities(m).map(|(e, since)| (e.id, since)).collect::<Vec<_>>();
        assert_eq!(since(&w, 3), [(5, 11)]);
        w.begin_tick(12);
        assert!(w.hide(5, 3).unwrap() && !w.hide(5, 3).unwrap());
        w.set(5, 1, Value::Int(4)).unwrap();
        w.finish_tick();
        check(&w);
        assert_eq!((w.own(1).changed, w.own(2).changed, w.own(3).changed), (12, 12, 12));
        assert_eq!(lost(&w, 3), [5]);
        w.begin_tick(13);
        w.show(5, 3).unwrap();
        w.set_owner(5, 2).unwrap();
        w.finish_tick();
        check(&w);
        assert_eq!(w.shown_to(5), [0; 0], "given away, it is shown to nobody");
        assert_eq!((since(&w, 2), since(&w, 3)), (vec![(5, 13)], vec![]));
        assert!(lost(&w, 1).contains(&5) && !w.sees(1, 5));
        assert_eq!(
            lost(&w, 3),
            [5],
            "hidden at 12 (shown and given away in 13: never sent)"
        );
        w.begin_tick(14);
        w.show(5, 1).unwrap();
        w.show(5, 3).unwrap();
        w.finish_tick();
        w.begin_tick(15);
        w.despawn(5).unwrap();
        w.finish_tick();
        check(&w);
        assert_eq!((w.shown_count(), w.own(3).count), (0, 0));
        assert_eq!(lost(&w, 3), [5, 5], "hidden at 12, removed at 15");
        // Seen before, given to it, then lost in the same tick: the removal is there.
        w.begin_tick(16);
        w.spawn(8, 1, 3, []).unwrap();
        w.show(8, 3).unwrap();
        w.finish_tick();
        w.begin_tick(17);
        w.set_owner(8, 3).unwrap();
        w.set_owner(8, 2).unwrap();
        w.finish_tick();
        check(&w);
        assert!(
            w.own_removals(Some(3)).any(|r| (r.tick, r.id) == (17, 8)),
            "member 3 held it since 16"
        );
        w.begin_tick(18);
        w.despawn(8).unwrap();
        w.finish_tick();
        // A member that leaves is hidden everything shown to it.
        w.begin_tick(19);
        w.spawn(6, 2, 3, []).unwrap();
        w.spawn(7, crate::state::SERVER, 3, []).unwrap();
        w.show(6, 3).unwrap();
        w.show(7, 3).unwrap();
        w.finish_tick();
        check(&w);
        w.begin_tick(20);
        assert_eq!(w.hide_all_from(3), 2);
        w.finish_tick();
        check(&w);
        assert_eq!((w.shown_count(), w.own(3).count, w.own(2).count), (0, 0, 1));
    }

    /// Every NaN is held as the quiet NaN `0x7fc00000` (a browser's engine may quiet a
    /// signalling one, or drop a payload, and the checksum hashes the bits).
    #[test]
    fn a_nan_is_held_as_the_one_quiet_nan() {
        let mut w = World::new(8);
        w.begin_tick(1);
        let signalling = Value::Float(f32::from_bits(0x7f80_0001));
        w.spawn(1, 0, 0, [(1, signalling.clone())]).unwrap();
        w.spawn(2, 0, 0, [(1, Value::Float(0.0))]).unwrap();
        w.set(2, 1, Value::Float(f32::from_bits(0xffc0_1234))).unwrap();
        let bits = |id| match w.get(id).unwrap().get(1) {
            Some(Value::Float(v)) => v.to_bits(),
            other => panic!("{other:?}"),
        };
        assert_eq!((bits(1), bits(2)), (0x7fc0_0000, 0x7fc0_0000));
    }

    #[test]
    fn rewriting_a_value_is_not_a_change() {
        let mut w = World::new(8);
        w.begin_tick(1);
        w.spawn(1, 0, 0, [(1, Value::Float(f32::NAN))]).unwrap();
        w.finish_tick();
        w.begin_tick(2);
        assert!(!w.set(1, 1, Value::Float(f32::NAN)).unwrap());
        assert_eq!(w.get(1).unwrap().changed, 1);
    }

    /// A room's state bound counts an entity's fields: the entity holds no more
    /// room for fields than it has (a create naming one field 32 times, fields added
    /// one by one).
    #[test]
    fn entities_hold_room_for_the_fields_they_have() {
        let mut w = World::new(8);
        w.spawn(1, 0, 0, (0..32).map(|_| (1, Value::Bool(true)))).unwrap();
        assert_eq!(w.get(1).unwrap().fields.capacity(), 1);
        for field in 2..=20 {
            w.set(1, field, Value::Bool(true)).unwrap();
        }
        assert_eq!(w.get(1).unwrap().fields.capacity(), 20);
    }

    #[test]
    fn spawn_keeps_last_duplicate_and_sorts_fields() {
        let mut w = World::new(8);
        w.spawn(1, 0, 0, [(3, Value::Int(3)), (1, Value::Int(1)), (3, Value::Int(4))])
            .unwrap();
        let fields: Vec<_> = w.get(1).unwrap().fields().map(|(f, v)| (f, v.clone())).collect();
        assert_eq!(fields, vec![(1, Value::Int(1)), (3, Value::Int(4))]);
        assert_eq!(w.spawn(1, 0, 0, []), Err(WorldError::Exists(1)));
        assert_eq!(w.set(9, 1, Value::Int(0)), Err(WorldError::NotFound(9)));
    }

    #[test]
    fn removal_log_is_trimmed_to_the_window() {
        let mut w = World::new(4);
        for tick in 1..=10 {
            w.begin_tick(tick);
            w.spawn(tick, 0, 0, []).unwrap();
            w.despawn(tick).unwrap();
            w.finish_tick();
        }
        let ticks: Vec<_> = w.removals().iter().map(|r| r.tick).collect();
        assert_eq!(ticks, vec![7, 8, 9, 10]);
    }
}
