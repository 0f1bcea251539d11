//! Room state: a set of entities with typed fields, versioned by tick.
//!
//! Every entity and every field remembers the tick at which it last changed, and the
//! world keeps a short log of removals. That is all the delta codec needs to produce
//! a delta against any baseline inside the history window without keeping copies of
//! old snapshots (see `docs/PROTOCOL.md`, "Deltas and baselines").

mod checksum;
mod entity;
mod schema;
mod world;

pub use checksum::{chained_entity_hash, entity_hash, field_hash, head_hash};
pub use entity::{Entity, Field, same_value, value_len};
pub use schema::{
    FieldProblem, FieldSpec, FieldType, KindSchema, MAX_FIELDS_PER_KIND, MAX_FLOAT_STEPS, Quantizer, Schema,
    SchemaError,
};
pub use world::{EntityMut, Own, Removal, World, WorldError};

/// A room tick number. Tick 0 is "before the first tick"; a baseline of 0 means "full".
pub type Tick = u64;
/// Identifies an entity within a room.
pub type EntityId = u64;
/// Identifies a field within an entity; ids below 16 encode in one byte.
pub type FieldId = u32;
/// Identifies a member; equal to the session id, so it survives a resume.
pub type MemberId = u64;
/// The owner of server-owned entities.
pub const SERVER: MemberId = 0;

/// A typed field value (the protobuf `Field.value` oneof).
pub use crate::v1::field::Value;
