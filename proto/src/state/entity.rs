use super::{EntityId, FieldId, MemberId, Tick, Value};

/// One typed field and the tick at which it last changed.
#[derive(Clone, Debug)]
pub struct Field {
    /// The field id.
    pub id: FieldId,
    /// The current value.
    pub value: Value,
    pub(crate) changed: Tick,
    /// Declared fields only: the position in the kind's schema (its mask bit) ...
    pub(crate) slot: u8,
    /// ... the numeric code of `value` (see [`super::FieldType::admit`]) ...
    pub(crate) code: u64,
    /// ... and the code of the value before the change at `changed`, which held
    /// from `before_tick` until then ([`Tick::MAX`]: unknown, the field is new).
    pub(crate) before: u64,
    pub(crate) before_tick: Tick,
    /// [`super::field_hash`] of `value` in its entity: kept with the value, so that
    /// the entity's hash after a change to another field takes no hashing of this one.
    pub(crate) hash: u64,
}

/// `Field::before_tick` of a field that had no value before.
pub(crate) const NEVER: Tick = Tick::MAX;

impl Field {
    /// The code of this field's value at `baseline`, if the world still knows it:
    /// the current one if it did not change since, the one before if it changed once.
    pub(crate) fn code_at(&self, baseline: Tick) -> Option<u64> {
        if self.changed <= baseline {
            Some(self.code)
        } else if self.before_tick <= baseline {
            Some(self.before)
        } else {
            None
        }
    }
}

/// An entity: id, owner, kind and its fields, sorted by field id.
#[derive(Clone, Debug)]
pub struct Entity {
    pub(crate) id: EntityId,
    pub(crate) owner: MemberId,
    pub(crate) kind: u32,
    /// The kind's position in the world's schema, if declared.
    pub(crate) schema: Option<u16>,
    /// Its kind is seen by its owner only ([`super::KindSchema::is_owner_only`]).
    pub(crate) owner_only: bool,
    pub(crate) fields: Vec<Field>,
    /// Tick at which this entity was created.
    pub(crate) created: Tick,
    /// Highest `changed` tick of any field (or `created`).
    pub(crate) changed: Tick,
    /// Its [`super::entity_hash`], kept up to date by every write and owner change
    /// (by the field's hash before and after: no other field is hashed again).
    pub(crate) hash: u64,
    /// Changed this tick: its hash is out of the checksum's sums until the tick ends.
    pub(crate) dirty: bool,
}

impl Entity {
    /// The entity id.
    pub fn id(&self) -> EntityId {
        self.id
    }

    /// The owning member, or [`super::SERVER`].
    pub fn owner(&self) -> MemberId {
        self.owner
    }

    /// The game-defined kind.
    pub fn kind(&self) -> u32 {
        self.kind
    }

    /// True when only its owner sees it (its kind is declared so).
    pub fn is_owner_only(&self) -> bool {
        self.owner_only
    }

    /// The tick at which any of its fields last changed (or it was created).
    pub fn changed(&self) -> Tick {
        self.changed
    }

    /// The fields, sorted by id.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (FieldId, &Value)> {
        self.fields.iter().map(|f| (f.id, &f.value))
    }

    /// The value of one field.
    pub fn get(&self, field: FieldId) -> Option<&Value> {
        self.position(field).ok().map(|i| &self.fields[i].value)
    }

    /// The numeric code of a declared field's value (see [`super::FieldType::admit`]).
    pub(crate) fn code(&self, field: FieldId) -> Option<u64> {
        self.position(field).ok().map(|i| self.fields[i].code)
    }

    pub(crate) fn position(&self, field: FieldId) -> Result<usize, usize> {
        self.fields.binary_search_by_key(&field, |f| f.id)
    }

    /// True when both entities hold the same id, owner, kind and field values.
    pub fn same_state(&self, other: &Entity) -> bool {
        self.id == other.id
            && self.owner == other.owner
            && self.kind == other.kind
            && self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| a.id == b.id && same_value(&a.value, &b.value))
    }
}

/// Value equality as the wire sees it: floats compare by bit pattern, so a NaN that is
/// written again is not a change, and `0.0` and `-0.0` are different values.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// Payload size of a value in bytes, as counted by per-field size limits.
pub fn value_len(value: &Value) -> usize {
    match value {
        Value::Int(_) | Value::Float(_) => 8,
        Value::Bool(_) => 1,
        Value::Bytes(b) => b.len(),
        Value::String(s) => s.len(),
    }
}
