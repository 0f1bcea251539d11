//! The state checksum: a wrapping sum of per-entity hashes, so it can be updated
//! incrementally for only the entities that changed in a tick. An entity's hash is
//! itself a wrapping sum, of a hash of its id, owner and kind and one hash per field,
//! so a change to one field costs the hashing of that field only, however large the
//! others (a small write to an entity of many large fields would otherwise cost the
//! hashing of all of them, every tick it is made). The exact algorithm is specified in
//! `docs/PROTOCOL.md` ("State checksum") for clients in other languages.

use super::{EntityId, FieldId, MemberId, Value};

const SEED: u64 = 0x7469_636b_7265_6c61; // "tickrela"

/// The SplitMix64 finalizer: a fast, well-distributed 64-bit mix.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The number of a value's type in the hash: 1 int, 2 float, 3 bool, 4 bytes, 5 string.
fn type_number(value: &Value) -> u64 {
    match value {
        Value::Int(_) => 1,
        Value::Float(_) => 2,
        Value::Bool(_) => 3,
        Value::Bytes(_) => 4,
        Value::String(_) => 5,
    }
}

struct Hasher(u64);

impl Hasher {
    fn word(&mut self, w: u64) {
        self.0 = mix(self.0 ^ w);
    }

    /// A value's words (after its type's number, see [`type_number`]).
    fn value(&mut self, value: &Value) {
        match value {
            Value::Int(v) => self.word(*v as u64),
            Value::Float(v) => self.word(u64::from(v.to_bits())),
            Value::Bool(v) => self.word(u64::from(*v)),
            Value::Bytes(v) => self.bytes(v),
            Value::String(v) => self.bytes(v.as_bytes()),
        }
    }

    fn bytes(&mut self, data: &[u8]) {
        self.word(data.len() as u64);
        for chunk in data.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
    }
}

/// Hash of one entity's canonical state: [`head_hash`] plus the [`field_hash`] of
/// each field, wrapping.
pub fn entity_hash<'a>(
    id: EntityId,
    owner: MemberId,
    kind: u32,
    fields: impl Iterator<Item = (FieldId, &'a Value)>,
) -> u64 {
    fields.fold(head_hash(id, owner, kind), |sum, (field, value)| {
        sum.wrapping_add(field_hash(id, field, value))
    })
}

/// Hash of one entity by protocol version 1's definition: one chain over its id,
/// owner, kind and fields (fields in ascending id order). Only for checking a room
/// checkpoint a version-1 node wrote (a rolling upgrade across the change).
pub fn chained_entity_hash<'a>(
    id: EntityId,
    owner: MemberId,
    kind: u32,
    fields: impl Iterator<Item = (FieldId, &'a Value)>,
) -> u64 {
    let mut h = Hasher(head_hash(id, owner, kind));
    for (field, value) in fields {
        h.word(u64::from(field));
        h.word(type_number(value));
        h.value(value);
    }
    h.0
}

/// The part of an entity's hash that is not its fields': its id, owner and kind.
pub fn head_hash(id: EntityId, owner: MemberId, kind: u32) -> u64 {
    let mut h = Hasher(SEED);
    h.word(id);
    h.word(owner);
    h.word(u64::from(kind));
    h.0
}

/// The share of field `field` holding `value` in the hash of entity `entity` (the
/// entity's id is in it: the same value in another entity hashes differently). The
/// field id and the value's type make one word: a number is three rounds in all.
pub fn field_hash(entity: EntityId, field: FieldId, value: &Value) -> u64 {
    let mut h = Hasher(SEED);
    h.word(entity);
    h.word((u64::from(field) << 8) | type_number(value));
    h.value(value);
    h.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned values, computed by an independent Python implementation of the
    /// algorithm in docs/PROTOCOL.md: a client in another language can
    /// check itself against these, and a change to the algorithm fails here first.
    #[test]
    fn known_answers() {
        assert_eq!(entity_hash(0, 0, 0, std::iter::empty()), 0xe443_fe8a_bfe9_a4f7);
        let fields = [
            (1, Value::Int(-5)),
            (2, Value::Float(1.5)),
            (3, Value::Bool(true)),
            (4, Value::String("hello, world".into())),
        ];
        let h = entity_hash(42, 7, 3, fields.iter().map(|(f, v)| (*f, v)));
        assert_eq!(h, 0xa9c3_b24c_7f56_b61f);
    }

    /// Field ids of 2^24 and more: the top bits of the word of field id and type
    /// (where an implementation on 32-bit halves would go wrong).
    #[test]
    fn large_field_ids_have_known_answers() {
        let h = |field, value: Value| entity_hash(1, 0, 0, [(field, &value)].into_iter());
        assert_eq!(h(0xffff_ffff, Value::Int(1)), 0x3531_d6ef_3f08_a717);
        assert_eq!(h(0x0100_0000, Value::Bool(true)), 0xab7e_7ca1_53b1_ceb2);
    }

    /// Protocol version 1's definition still gives its documented answer (checkpoints
    /// of version-1 nodes are checked with it).
    #[test]
    fn the_chained_definition_keeps_its_known_answer() {
        let fields = [
            (1, Value::Int(-5)),
            (2, Value::Float(1.5)),
            (3, Value::Bool(true)),
            (4, Value::String("hello, world".into())),
        ];
        let h = chained_entity_hash(42, 7, 3, fields.iter().map(|(f, v)| (*f, v)));
        assert_eq!(h, 0xea4f_fe67_1149_b47d);
    }

    /// A NaN hashes as its bits: the world holds every NaN as `0x7fc00000` (see
    /// `World::spawn`), whose answer is pinned here (and in the browser client's tests).
    #[test]
    fn a_nan_hashes_as_its_bits() {
        let nan = [(1, Value::Float(f32::from_bits(0x7fc0_0000)))];
        let h = entity_hash(1, 0, 0, nan.iter().map(|(f, v)| (*f, v)));
        assert_eq!(h, 0xfcdd_d5df_a9f7_ba04);
    }

    /// An entity's hash is its head's plus each field's (so one field's change is one
    /// field's hashing), and a field's share names its entity: two entities that swap
    /// values do not keep the checksum.
    #[test]
    fn an_entity_hash_is_its_head_plus_its_fields() {
        let fields = [(1, Value::Int(3)), (2, Value::Bytes(vec![7; 1024].into()))];
        let whole = entity_hash(9, 1, 2, fields.iter().map(|(f, v)| (*f, v)));
        let parts = fields
            .iter()
            .fold(head_hash(9, 1, 2), |sum, (f, v)| sum.wrapping_add(field_hash(9, *f, v)));
        assert_eq!(whole, parts);
        let (a, b) = (Value::Int(1), Value::Int(2));
        let before = field_hash(1, 1, &a).wrapping_add(field_hash(2, 1, &b));
        let swapped = field_hash(1, 1, &b).wrapping_add(field_hash(2, 1, &a));
        assert_ne!(before, swapped);
    }

    #[test]
    fn field_type_and_byte_boundaries_matter() {
        let int = [(1, Value::Int(1))];
        let boolean = [(1, Value::Bool(true))];
        let a = entity_hash(1, 0, 0, int.iter().map(|(f, v)| (*f, v)));
        let b = entity_hash(1, 0, 0, boolean.iter().map(|(f, v)| (*f, v)));
        assert_ne!(a, b);
        let s1 = [(1, Value::String("ab".into())), (2, Value::String("c".into()))];
        let s2 = [(1, Value::String("a".into())), (2, Value::String("bc".into()))];
        let a = entity_hash(1, 0, 0, s1.iter().map(|(f, v)| (*f, v)));
        let b = entity_hash(1, 0, 0, s2.iter().map(|(f, v)| (*f, v)));
        assert_ne!(a, b);
    }
}
