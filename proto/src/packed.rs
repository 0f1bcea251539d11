//! Packed blocks: the compact encoding of entities whose kind the room's [`Schema`](crate::state::Schema)
//! declares, one block per kind in `StateFrame.packed`.
//!
//! ```text
//! block         = kind n_added n_changed added* changed*  (every number a varint)
//! added         = id-step owner mask value*                (values absolute)
//! changed       = id-step mask value*                      (values absolute or relative)
//! value         = v                                        int, float, bool
//!               | length byte*                             bytes, string
//! ```
//!
//! Entity ids ascend within each list: the first `id-step` is the id, each next one is
//! added to the previous id (and is at least 1). Bit `i` of `mask` stands for the
//! kind's `i`-th declared field (ascending field id); a value follows for each set bit,
//! lowest bit first: every field of an added entity it has, the fields of a changed
//! one that changed. A number travels as its code `c` (int: `value - min`; float: the
//! grid index `q`; bool: 0 or 1), either absolute, `v = c·2 + 1`, or relative to the
//! code `b` the field had at the frame's baseline, `v = zigzag(c - b)·2`. The server
//! sends relative values only when the receiver holds the baseline's values (ordered
//! transports) and only when shorter. docs/PROTOCOL.md ("Packed blocks") is the
//! byte-by-byte reference; `proto/testdata/packed.json` holds test vectors.

use bytes::{BufMut, Bytes};
use prost::encoding::{encode_varint, encoded_len_varint};

use crate::delta::zigzag;
use crate::state::{Entity, EntityId, FieldId, FieldType, KindSchema, Tick, Value, World, WorldError};

/// How a delta's numbers are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Values {
    /// Relative to the baseline's value where the world still knows it and that is
    /// shorter. Only for a receiver whose state is exactly the baseline's (an ordered,
    /// reliable transport).
    AgainstBaseline,
    /// Always absolute: the frame applies to any state at or after its baseline (the
    /// unordered-apply rule over QUIC datagrams).
    Absolute,
}

/// `StateFrame.packed`'s field number.
const PACKED_TAG: u32 = 9;

/// Scratch space for [`encode_block`], reused across frames.
#[derive(Debug, Default)]
pub struct BlockScratch {
    added: Vec<u8>,
    changed: Vec<u8>,
}

/// Appends the block of `entities` (of the `declared` kind, in id order: a world's,
/// as after [`World::finish_tick`]) as a `StateFrame.packed` field, for a delta
/// against `baseline` (0: full snapshot). Each comes with the tick since which the
/// receiver has it as it is (its creation, or when it was given or shown to the
/// receiver): after the baseline, it is sent whole. Appends nothing when none of
/// them is in the delta.
pub fn encode_block<'w>(
    declared: &KindSchema,
    entities: impl Iterator<Item = (&'w Entity, Tick)>,
    baseline: Tick,
    values: Values,
    scratch: &mut BlockScratch,
    buf: &mut impl BufMut,
) {
    let BlockScratch { added, changed } = scratch;
    added.clear();
    changed.clear();
    let (mut added_count, mut changed_count) = (0u64, 0u64);
    let (mut last_added, mut last_changed) = (0, 0);
    for (entity, since) in entities {
        if baseline == 0 || since > baseline {
            debug_assert!(added_count == 0 || entity.id > last_added, "entities out of id order");
            encode_varint(entity.id - last_added, added);
            encode_varint(entity.owner, added);
            encode_varint(entity.fields.iter().fold(0, |mask, f| mask | 1 << f.slot), added);
            for field in &entity.fields {
                put_value(field, None, added);
            }
            (last_added, added_count) = (entity.id, added_count + 1);
        } else if entity.changed > baseline {
            debug_assert!(
                changed_count == 0 || entity.id > last_changed,
                "entities out of id order"
            );
            let fields = || entity.fields.iter().filter(|f| f.changed > baseline);
            encode_varint(entity.id - last_changed, changed);
            encode_varint(fields().fold(0, |mask, f| mask | 1 << f.slot), changed);
            for field in fields() {
                let base = match values {
                    Values::AgainstBaseline => field.code_at(baseline),
                    Values::Absolute => None,
                };
                put_value(field, base, changed);
            }
            (last_changed, changed_count) = (entity.id, changed_count + 1);
        }
    }
    if added_count + changed_count == 0 {
        return;
    }
    let kind = u64::from(declared.kind());
    let len = encoded_len_varint(kind)
        + encoded_len_varint(added_count)
        + encoded_len_varint(changed_count)
        + added.len()
        + changed.len();
    prost::encoding::encode_key(PACKED_TAG, prost::encoding::WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    encode_varint(kind, buf);
    encode_varint(added_count, buf);
    encode_varint(changed_count, buf);
    buf.put_slice(added);
    buf.put_slice(changed);
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// One value: a number absolute, or relative to `base` when that is not longer.
fn put_value(field: &crate::state::Field, base: Option<u64>, out: &mut Vec<u8>) {
    match &field.value {
        Value::Bytes(b) => {
            encode_varint(b.len() as u64, out);
            out.put_slice(b);
        }
        Value::String(s) => {
            encode_varint(s.len() as u64, out);
            out.put_slice(s.as_bytes());
        }
        _ => {
            let absolute = field.code << 1 | 1;
            let relative = base.map(|b| zigzag(field.code.wrapping_sub(b) as i64) << 1);
            let v = match relative {
                Some(r) if encoded_len_varint(r) <= encoded_len_varint(absolute) => r,
                _ => absolute,
            };
            encode_varint(v, out);
        }
    }
}

/// Why a packed block could not be applied. The mirror is out of sync afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The block ends in the middle of a number, a value or a list.
    #[error("packed block truncated")]
    Truncated,
    /// Bytes after the last entry.
    #[error("bytes after the end of the packed block")]
    Trailing,
    /// The kind is not in the room's schema.
    #[error("packed block of undeclared kind {0}")]
    UnknownKind(u64),
    /// An id step of 0 after the first entry, or ids past 2^64.
    #[error("entity ids of a packed block do not ascend")]
    Order,
    /// A mask bit for a field the kind does not declare.
    #[error("field mask of entity {0} names an undeclared field")]
    Mask(EntityId),
    /// A number outside its field's range, or text that is not UTF-8.
    #[error("field {field} of entity {entity} holds an invalid value")]
    Value {
        /// The entity.
        entity: EntityId,
        /// The field.
        field: FieldId,
    },
    /// A relative value for a field without a value to be relative to.
    #[error("field {field} of entity {entity} is relative to a value the mirror does not hold")]
    NoBase {
        /// The entity.
        entity: EntityId,
        /// The field.
        field: FieldId,
    },
    /// A change to an entity the mirror does not hold, or holds with another kind.
    #[error("packed block changes unknown entity {0}")]
    UnknownEntity(EntityId),
}

/// Applies one packed block to `world` (whose schema must be the room's): its added
/// entities replace any with the same id, then its changes are set. `fields` is
/// scratch space, reused so that decoding allocates only each added entity's field
/// list (and text values).
pub fn apply_block(world: &mut World, block: &Bytes, fields: &mut Vec<(FieldId, Value)>) -> Result<(), BlockError> {
    let schema = world.schema().clone();
    let mut r = Reader { data: block, pos: 0 };
    let kind = r.varint()?;
    let declared = u32::try_from(kind)
        .ok()
        .and_then(|k| schema.position(k))
        .ok_or(BlockError::UnknownKind(kind))?;
    let declared = &schema.kinds()[declared];
    let (added, changed) = (r.varint()?, r.varint()?);

    let mut id = 0;
    for n in 0..added {
        id = r.next_id(id, n)?;
        let owner = r.varint()?;
        let mask = r.mask(declared, id)?;
        fields.clear();
        for slot in bits(mask) {
            let spec = &declared.fields()[slot];
            let value = match r.value(&spec.ty)? {
                // An added entity has no earlier value to be relative to.
                Read::Relative(_) => {
                    return Err(BlockError::NoBase {
                        entity: id,
                        field: spec.id,
                    });
                }
                read => read.into_value(&spec.ty),
            };
            fields.push((
                spec.id,
                value.ok_or(BlockError::Value {
                    entity: id,
                    field: spec.id,
                })?,
            ));
        }
        world
            .replace(id, owner, declared.kind(), fields.drain(..))
            .map_err(|e| invalid(e, id))?;
    }

    let mut id = 0;
    for n in 0..changed {
        id = r.next_id(id, n)?;
        let mask = r.mask(declared, id)?;
        let mut entity = world
            .entity_mut(id)
            .filter(|e| e.get().kind() == declared.kind())
            .ok_or(BlockError::UnknownEntity(id))?;
        for slot in bits(mask) {
            let spec = &declared.fields()[slot];
            let bad_value = BlockError::Value {
                entity: id,
                field: spec.id,
            };
            // Numbers are written as their codes, bytes and text as values.
            let code = match r.value(&spec.ty)? {
                Read::Code(code) => code,
                Read::Relative(delta) => {
                    let base = entity.get().code(spec.id).ok_or(BlockError::NoBase {
                        entity: id,
                        field: spec.id,
                    })?;
                    base.checked_add_signed(delta).ok_or(bad_value)?
                }
                read @ Read::Bytes(_) => {
                    let value = read.into_value(&spec.ty).ok_or(bad_value)?;
                    entity.set(spec.id, value).map_err(|e| invalid(e, id))?;
                    continue;
                }
            };
            entity.set_code(slot, code).ok_or(bad_value)?;
        }
    }
    if r.pos != block.len() {
        return Err(BlockError::Trailing);
    }
    Ok(())
}

/// The kind of a block and how many entities it adds and changes, read from its
/// header alone (no schema needed): for statistics.
pub fn header(block: &Bytes) -> Result<(u64, u64, u64), BlockError> {
    let mut r = Reader { data: block, pos: 0 };
    Ok((r.varint()?, r.varint()?, r.varint()?))
}

fn invalid(e: WorldError, entity: EntityId) -> BlockError {
    match e {
        WorldError::Field { field, .. } => BlockError::Value { entity, field },
        WorldError::Exists(_) | WorldError::NotFound(_) => BlockError::UnknownEntity(entity),
    }
}

/// The set bits of a mask, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let bit = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            bit
        })
    })
}

/// One value as read, before its field's type makes it a [`Value`].
enum Read {
    /// Bytes or text.
    Bytes(Bytes),
    /// An absolute code.
    Code(u64),
    /// A code relative to the field's code at the baseline.
    Relative(i64),
}

impl Read {
    /// The value, if valid for `ty` (a relative number has none without its base).
    fn into_value(self, ty: &FieldType) -> Option<Value> {
        match self {
            Self::Bytes(b) => match ty {
                FieldType::String { .. } => String::from_utf8(b.to_vec()).ok().map(Value::String),
                _ => Some(Value::Bytes(b)),
            },
            Self::Code(code) => ty.decode(code),
            Self::Relative(_) => None,
        }
    }
}

struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, BlockError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.data.get(self.pos).ok_or(BlockError::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(BlockError::Truncated) // more than ten bytes: not a varint
    }

    /// The id of entry `n` of a list, after `previous`.
    fn next_id(&mut self, previous: EntityId, n: u64) -> Result<EntityId, BlockError> {
        let step = self.varint()?;
        if n > 0 && step == 0 {
            return Err(BlockError::Order);
        }
        previous.checked_add(step).ok_or(BlockError::Order)
    }

    fn mask(&mut self, declared: &KindSchema, entity: EntityId) -> Result<u64, BlockError> {
        let mask = self.varint()?;
        let declared_bits = declared.fields().len();
        if declared_bits < 64 && mask >> declared_bits != 0 {
            return Err(BlockError::Mask(entity));
        }
        Ok(mask)
    }

    /// One value of type `ty`.
    fn value(&mut self, ty: &FieldType) -> Result<Read, BlockError> {
        match ty {
            FieldType::Bytes { .. } | FieldType::String { .. } => {
                let len = usize::try_from(self.varint()?).map_err(|_| BlockError::Truncated)?;
                let end = self.pos.checked_add(len).filter(|&e| e <= self.data.len());
                let bytes = self.data.slice(self.pos..end.ok_or(BlockError::Truncated)?);
                self.pos += len;
                Ok(Read::Bytes(bytes))
            }
            _ => {
                let v = self.varint()?;
                Ok(if v & 1 == 1 {
                    Read::Code(v >> 1)
                } else {
                    Read::Relative(unzigzag(v >> 1))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::state::{Entity, FieldSpec, KindSchema, Schema};

    fn world() -> World {
        let position = |id, name| FieldSpec::new(id, name, FieldType::float(0.0, 100.0, 0.01).unwrap());
        let kind = KindSchema::new(
            1,
            "dot",
            vec![
                position(1, "x"),
                position(2, "y"),
                FieldSpec::new(3, "hp", FieldType::int(0, 100).unwrap()),
                FieldSpec::new(4, "tag", FieldType::String { max_len: 8 }),
            ],
        )
        .unwrap();
        World::with_schema(8, Arc::new(Schema::new(vec![kind]).unwrap()))
    }

    fn block(world: &World, baseline: Tick, values: Values) -> Bytes {
        let mut buf = Vec::new();
        let kind = &world.schema().kinds()[0];
        encode_block(
            kind,
            world.entities().map(|e| (e, e.created)),
            baseline,
            values,
            &mut BlockScratch::default(),
            &mut buf,
        );
        // Strip the field key and length: the block itself.
        let mut rest = &buf[1..];
        let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
        assert_eq!(rest.len(), len);
        Bytes::copy_from_slice(rest)
    }

    /// Two dots at ticks 1 and 2: the second moved by three steps in x.
    fn moved() -> (World, World) {
        let mut w = world();
        w.begin_tick(1);
        w.spawn(5, 0, 1, [(1, Value::Float(10.0)), (2, Value::Float(20.0))])
            .unwrap();
        w.spawn(7, 3, 1, [(1, Value::Float(50.0)), (3, Value::Int(100))])
            .unwrap();
        w.finish_tick();
        let at_1 = w.clone();
        w.begin_tick(2);
        w.set(7, 1, Value::Float(50.03)).unwrap();
        w.finish_tick();
        (at_1, w)
    }

    #[test]
    fn a_small_move_costs_one_byte_per_value() {
        let (_, w) = moved();
        // kind 1, none added, one changed: id 7, mask 0b1 (x), x +3 steps: zigzag 6, ·2.
        assert_eq!(&block(&w, 1, Values::AgainstBaseline)[..], [1, 0, 1, 7, 0b1, 12]);
        // Absolute: q = 5003, ·2 + 1 = 10007 = 0x2717.
        assert_eq!(&block(&w, 1, Values::Absolute)[..], [1, 0, 1, 7, 0b1, 0x97, 0x4e]);
        // Full: both added, in id order, owner and the mask of present fields.
        let full = block(&w, 0, Values::AgainstBaseline);
        assert_eq!(&full[..4], [1, 2, 0, 5]);
        assert_eq!(header(&full), Ok((1, 2, 0)));
    }

    #[test]
    fn blocks_apply_to_the_baseline_and_reproduce_the_state() {
        let (at_1, w) = moved();
        let mut fields = Vec::new();
        let mut mirror = world();
        mirror.begin_tick(1);
        apply_block(&mut mirror, &block(&at_1, 0, Values::Absolute), &mut fields).unwrap();
        mirror.finish_tick();
        assert!(mirror.same_state(&at_1));
        assert_eq!(mirror.checksum(), at_1.checksum());
        for values in [Values::AgainstBaseline, Values::Absolute] {
            let mut m = mirror.clone();
            m.begin_tick(2);
            apply_block(&mut m, &block(&w, 1, values), &mut fields).unwrap();
            m.finish_tick();
            assert!(m.same_state(&w));
            assert_eq!(m.checksum(), w.checksum());
        }
    }

    #[test]
    fn an_entity_given_to_another_owner_is_sent_whole_and_replaces_the_copy() {
        let (at_1, mut w) = moved();
        w.begin_tick(3);
        w.set_owner(7, 4).unwrap();
        w.set_owner(5, 0).unwrap(); // its owner already: no change
        w.finish_tick();
        assert_eq!(w.get(7).map(Entity::owner), Some(4));
        // Against tick 1 and 2, entity 7 is added (whole, with its new owner); 5 is
        // not listed against tick 2.
        assert_eq!(header(&block(&w, 2, Values::AgainstBaseline)), Ok((1, 1, 0)));
        let mut fields = Vec::new();
        for (baseline, at) in [(1, at_1.clone()), (2, moved().1)] {
            let mut m = at;
            m.begin_tick(3);
            apply_block(&mut m, &block(&w, baseline, Values::AgainstBaseline), &mut fields).unwrap();
            m.finish_tick();
            assert!(m.same_state(&w), "against tick {baseline}");
            assert_eq!(m.checksum(), w.checksum());
        }
        assert_ne!(w.checksum(), moved().1.checksum(), "the owner is part of the checksum");
    }

    #[test]
    fn malformed_blocks_are_typed_errors() {
        let (at_1, _) = moved();
        let mut fields = Vec::new();
        let apply = |bytes: &[u8]| apply_block(&mut at_1.clone(), &Bytes::copy_from_slice(bytes), &mut Vec::new());
        assert_eq!(apply(&[]), Err(BlockError::Truncated));
        assert_eq!(apply(&[2, 0, 0]), Err(BlockError::UnknownKind(2)));
        assert_eq!(apply(&[1, 0, 0, 0]), Err(BlockError::Trailing));
        assert_eq!(apply(&[1, 0, 2, 7, 1, 1, 0, 1, 1]), Err(BlockError::Order));
        assert_eq!(apply(&[1, 0, 2, 7, 1, 1]), Err(BlockError::Truncated));
        assert_eq!(apply(&[1, 0, 1, 7, 0b10000, 1]), Err(BlockError::Mask(7)));
        assert_eq!(apply(&[1, 0, 1, 9, 1, 1]), Err(BlockError::UnknownEntity(9)));
        // x of entity 7 relative -6000 steps: below the range.
        assert_eq!(
            apply(&[1, 0, 1, 7, 1, 0xbe, 0xbb, 0x01]),
            Err(BlockError::Value { entity: 7, field: 1 })
        );
        // hp is absent on entity 5: nothing to be relative to.
        assert_eq!(
            apply(&[1, 0, 1, 5, 0b100, 2]),
            Err(BlockError::NoBase { entity: 5, field: 3 })
        );
        // An added entity's value must be absolute.
        assert_eq!(
            apply(&[1, 1, 0, 9, 0, 1, 2]),
            Err(BlockError::NoBase { entity: 9, field: 1 })
        );
        let mut w = at_1.clone();
        assert!(
            apply_block(
                &mut w,
                &Bytes::from_static(&[1, 0, 1, 7, 0b1000, 2, 0xff, 0xfe]),
                &mut fields
            )
            .is_err()
        );
    }

    proptest! {
        /// Arbitrary bytes never panic the decoder, whatever they do to the world.
        #[test]
        fn arbitrary_blocks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let (mut w, _) = moved();
            let mut with_kind = vec![1u8];
            with_kind.extend(&bytes);
            let _ = apply_block(&mut w, &Bytes::from(with_kind), &mut Vec::new());
            let _ = apply_block(&mut w, &Bytes::from(bytes), &mut Vec::new());
        }
    }
}
