//! The delta codec: encodes a room's state at its current tick as a `StateFrame`
//! against a baseline tick, straight from the [`World`] into a reused buffer.
//!
//! A delta against baseline `B` holds the entities created after `B` in full
//! (`added`), the entities removed after `B` (`removed`), and
//! for the other entities only the fields that changed after `B` (`changed`). Baseline
//! 0 means a full snapshot. The encoded bytes are the "shared" part of a state frame:
//! every member whose delta holds the same changes receives the same bytes; the
//! per-member fields (`baseline_tick`, `last_input_seq`) are appended by
//! [`crate::frame`] without re-encoding.
//!
//! Entities of a kind the world's schema declares travel in packed blocks (one per
//! kind, see [`crate::packed`]); the others field by field in `added` and `changed`.
//!
//! The bytes are canonical protobuf for `tickrelay.v1.StateFrame` and decode with any
//! protobuf library; the encoder is hand-written only to skip the intermediate
//! message structs (no allocation per entity on the tick path).

use bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::packed::{self, BlockScratch, Values};
use crate::state::{Entity, Field, MemberId, Removal, Tick, Value, World};

/// Whose view of a world a frame's body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every entity: a checkpoint, a room with no owner-only kinds.
    Whole,
    /// What every member sees: all but the entities of owner-only kinds (a state
    /// frame's shared body; a member's own follow it, [`Encoder::encode_own`]).
    Shared,
}

/// Whose removals a delta lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sight {
    View(View),
    /// Only the entities of owner-only kinds this member sees (its own, and those
    /// shown to it).
    Own(MemberId),
}

impl Sight {
    fn sees(self, world: &World, entity: &Entity) -> bool {
        match self {
            Self::View(View::Whole) => true,
            Self::View(View::Shared) => !entity.is_owner_only(),
            Self::Own(member) => world.sees(member, entity.id()),
        }
    }

    /// The removals of entities the sight held, within the world's window.
    fn removals(self, world: &World) -> impl Iterator<Item = &Removal> {
        let (shared, own) = match self {
            Self::View(View::Whole) => (true, Some(None)),
            Self::View(View::Shared) => (true, None),
            Self::Own(member) => (false, Some(Some(member))),
        };
        let shared = shared.then(|| world.removals()).into_iter().flatten();
        shared.chain(own.into_iter().flat_map(|owner| world.own_removals(owner)))
    }
}

/// Frame-wide metadata that is the same for every member.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta<'a> {
    /// Room id.
    pub room: &'a str,
    /// Server time of the tick, microseconds since the Unix epoch.
    pub server_time_us: u64,
    /// Checksum of the state, when this tick carries one.
    pub checksum: Option<u64>,
}

/// `StateFrame` field numbers.
mod tag {
    pub const ROOM: u32 = 1;
    pub const TICK: u32 = 2;
    pub const BASELINE: u32 = 3;
    pub const REMOVED: u32 = 4;
    pub const ADDED: u32 = 5;
    pub const CHANGED: u32 = 6;
    pub const CHECKSUM: u32 = 7;
    pub const SERVER_TIME: u32 = 8;
    pub const LAST_INPUT_SEQ: u32 = 15;
}

/// Encodes state frames, keeping scratch space between them.
#[derive(Debug, Default)]
pub struct Encoder {
    scratch: BlockScratch,
}

/// Encodes the world's current state as a delta against `baseline` (0: full snapshot)
/// with numbers relative to the baseline (for an ordered transport) and appends it to
/// `buf`; see [`Encoder::encode`].
pub fn encode_state(world: &World, baseline: Tick, meta: FrameMeta<'_>, buf: &mut impl BufMut) {
    Encoder::default().encode(world, baseline, Values::AgainstBaseline, View::Whole, meta, buf);
}

impl Encoder {
    /// Encodes the world's current state as `view` sees it (whole or shared), as a
    /// delta against `baseline` (0: full snapshot), and appends it to `buf`. The
    /// caller guarantees that `baseline` is 0 or inside the world's history window
    /// (the server's room falls back to a full snapshot otherwise) and that the tick
    /// is finished ([`World::finish_tick`]).
    pub fn encode(
        &mut self,
        world: &World,
        baseline: Tick,
        values: Values,
        view: View,
        meta: FrameMeta<'_>,
        buf: &mut impl BufMut,
    ) {
        encode_header(world, meta, buf);
        encode_removed(world, baseline, Sight::View(view), buf);
        encode_generic(world, baseline, buf);
        for (position, kind) in world.schema().kinds().iter().enumerate() {
            if view == View::Whole || !kind.is_owner_only() {
                let want = Some(position as u16);
                let entities = (world.entities().filter(|e| e.schema == want)).map(|e| (e, e.created));
                packed::encode_block(kind, entities, baseline, values, &mut self.scratch, buf);
            }
        }
        encode_checksum(meta.checksum, buf);
        if meta.server_time_us != 0 {
            encode_key(tag::SERVER_TIME, WireType::Varint, buf);
            encode_varint(meta.server_time_us, buf);
        }
    }

    /// Appends what `member` sees beyond a frame's shared body (encoded with
    /// [`View::Shared`] against the same baseline): its own entities of owner-only
    /// kinds and those shown to it, as packed blocks, those it lost since the
    /// baseline, in `removed`, and
    /// `checksum` (its view's: the shared one plus its own entities'), which replaces
    /// the shared body's. Protobuf merges repeated fields and keeps the last of a
    /// field sent twice, so the frame decodes as one.
    pub fn encode_own(
        &mut self,
        world: &World,
        member: MemberId,
        baseline: Tick,
        values: Values,
        checksum: Option<u64>,
        buf: &mut impl BufMut,
    ) {
        // A full snapshot, or something of its own changed since the baseline; else
        // the checksum alone.
        if baseline == 0 || world.own(member).changed > baseline {
            encode_removed(world, baseline, Sight::Own(member), buf);
            for (position, kind) in world.schema().kinds().iter().enumerate() {
                if kind.is_owner_only() {
                    let want = Some(position as u16);
                    let entities = world.own_entities(member).filter(|(e, _)| e.schema == want);
                    packed::encode_block(kind, entities, baseline, values, &mut self.scratch, buf);
                }
            }
        }
        encode_checksum(checksum, buf);
    }
}

fn encode_header(world: &World, meta: FrameMeta<'_>, buf: &mut impl BufMut) {
    if !meta.room.is_empty() {
        encode_len_delimited(tag::ROOM, meta.room.as_bytes(), buf);
    }
    encode_key(tag::TICK, WireType::Varint, buf);
    encode_varint(world.tick(), buf);
}

fn encode_checksum(checksum: Option<u64>, buf: &mut impl BufMut) {
    if let Some(checksum) = checksum {
        encode_key(tag::CHECKSUM, WireType::SixtyFourBit, buf);
        buf.put_u64_le(checksum);
    }
}

/// `removed`: packed varints of the view's entities removed after the baseline and
/// not there again (one there again is sent in `added`, which replaces it). This
/// includes entities created after the baseline, so the delta also applies to a
/// mirror that is ahead of the baseline (acknowledged-baseline deltas over QUIC
/// datagrams).
fn encode_removed(world: &World, baseline: Tick, sight: Sight, buf: &mut impl BufMut) {
    // Not those the sight holds again (there again, or another entity under the same
    // id): they are sent whole, which replaces them.
    let removed = || {
        (sight.removals(world))
            .filter(move |r| baseline != 0 && r.tick > baseline)
            .filter(move |r| !world.get(r.id).is_some_and(|e| sight.sees(world, e)))
            .map(|r| r.id)
    };
    let removed_len: usize = removed().map(encoded_len_varint).sum();
    if removed_len > 0 {
        encode_key(tag::REMOVED, WireType::LengthDelimited, buf);
        encode_varint(removed_len as u64, buf);
        removed().for_each(|id| encode_varint(id, buf));
    }
}

/// The entities of undeclared kinds (which every member sees).
fn encode_generic(world: &World, baseline: Tick, buf: &mut impl BufMut) {
    for entity in world.entities().filter(|e| e.schema.is_none()) {
        if baseline != 0 && entity.changed <= baseline {
            continue;
        }
        if baseline == 0 || entity.created > baseline {
            encode_key(tag::ADDED, WireType::LengthDelimited, buf);
            encode_varint(entity_len(entity) as u64, buf);
            encode_entity(entity, buf);
        } else {
            let changed = || entity.fields.iter().filter(|f| f.changed > baseline);
            let len = id_len(entity.id) + changed().map(|f| nested_len(2, field_len(f))).sum::<usize>();
            encode_key(tag::CHANGED, WireType::LengthDelimited, buf);
            encode_varint(len as u64, buf);
            encode_id(entity.id, buf);
            for field in changed() {
                encode_nested_field(2, field, buf);
            }
        }
    }
}

/// Encoded length of the per-member part of a state frame.
pub fn member_part_len(baseline: Tick, last_input_seq: u64) -> usize {
    let varint = |tag, v| {
        if v == 0 {
            0
        } else {
            key_len(tag) + encoded_len_varint(v)
        }
    };
    varint(tag::BASELINE, baseline) + varint(tag::LAST_INPUT_SEQ, last_input_seq)
}

/// Appends the per-member part of a state frame (after the shared bytes): the
/// baseline the member's delta is against and its last applied input. The baseline is
/// per member because members on different baselines with no change between them
/// share one body.
pub fn encode_member_part(baseline: Tick, last_input_seq: u64, buf: &mut impl BufMut) {
    for (tag, value) in [(tag::BASELINE, baseline), (tag::LAST_INPUT_SEQ, last_input_seq)] {
        if value != 0 {
            encode_key(tag, WireType::Varint, buf);
            encode_varint(value, buf);
        }
    }
}

fn encode_len_delimited(tag: u32, data: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(data.len() as u64, buf);
    buf.put_slice(data);
}

/// Length of a length-delimited field with a payload of `len` bytes.
fn nested_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn id_len(id: u64) -> usize {
    if id == 0 { 0 } else { 1 + encoded_len_varint(id) }
}

fn encode_id(id: u64, buf: &mut impl BufMut) {
    if id != 0 {
        encode_key(1, WireType::Varint, buf);
        encode_varint(id, buf);
    }
}

/// `Entity` fields: 1 id, 2 owner, 3 kind, 4 fields.
fn entity_len(e: &Entity) -> usize {
    id_len(e.id)
        + id_len(e.owner)
        + id_len(u64::from(e.kind))
        + e.fields.iter().map(|f| nested_len(4, field_len(f))).sum::<usize>()
}

fn encode_entity(e: &Entity, buf: &mut impl BufMut) {
    encode_id(e.id, buf);
    if e.owner != 0 {
        encode_key(2, WireType::Varint, buf);
        encode_varint(e.owner, buf);
    }
    if e.kind != 0 {
        encode_key(3, WireType::Varint, buf);
        encode_varint(u64::from(e.kind), buf);
    }
    for field in &e.fields {
        encode_nested_field(4, field, buf);
    }
}

/// Protobuf's `sint64` mapping: 0, -1, 1, -2 … → 0, 1, 2, 3 …
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// `Field` fields: 1 id, then the value oneof (2 int, 3 float, 4 bool, 5 bytes, 6 string).
fn field_len(f: &Field) -> usize {
    let value = match &f.value {
        Value::Int(v) => 1 + encoded_len_varint(zigzag(*v)),
        Value::Float(_) => 1 + 4,
        Value::Bool(_) => 1 + 1,
        Value::Bytes(b) => nested_len(5, b.len()),
        Value::String(s) => nested_len(6, s.len()),
    };
    id_len(u64::from(f.id)) + value
}

fn encode_nested_field(tag: u32, f: &Field, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(field_len(f) as u64, buf);
    encode_id(u64::from(f.id), buf);
    match &f.value {
        Value::Int(v) => {
            encode_key(2, WireType::Varint, buf);
            encode_varint(zigzag(*v), buf);
        }
        Value::Float(v) => {
            encode_key(3, WireType::ThirtyTwoBit, buf);
            buf.put_f32_le(*v);
        }
        Value::Bool(v) => {
            encode_key(4, WireType::Varint, buf);
            encode_varint(u64::from(*v), buf);
        }
        Value::Bytes(b) => encode_len_delimited(5, b, buf),
        Value::String(s) => encode_len_delimited(6, s.as_bytes(), buf),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::v1;

    fn meta() -> FrameMeta<'static> {
        FrameMeta {
            room: "lobby",
            server_time_us: 1_700_000_000_000_000,
            checksum: Some(0xdead_beef),
        }
    }

    fn decode(world: &World, baseline: Tick) -> v1::StateFrame {
        let mut buf = Vec::new();
        encode_state(world, baseline, meta(), &mut buf);
        encode_member_part(baseline, 77, &mut buf);
        v1::StateFrame::decode(&buf[..]).unwrap()
    }

    /// A member's own part of a full snapshot holds its hidden entities, also those
    /// made before the first tick (a world built at tick 0).
    #[test]
    fn a_full_snapshots_own_part_holds_entities_made_at_tick_0() {
        use std::sync::Arc;

        use crate::state::{KindSchema, Schema};
        let hidden = KindSchema::new(3, "hidden", vec![]).unwrap().seen_by_owner_only();
        let mut w = World::with_schema(8, Arc::new(Schema::new(vec![hidden]).unwrap()));
        w.spawn(9, 5, 3, []).unwrap();
        w.finish_tick();
        let mut buf = Vec::new();
        Encoder::default().encode_own(&w, 5, 0, Values::Absolute, None, &mut buf);
        let own = v1::StateFrame::decode(&buf[..]).unwrap();
        assert_eq!(own.packed.len(), 1, "the hidden entity, in its block");
    }

    #[test]
    fn full_snapshot_matches_prost_encoding() {
        let mut w = World::new(32);
        w.begin_tick(3);
        w.spawn(
            9,
            4,
            2,
            [
                (0, Value::Int(-300)),
                (1, Value::Float(2.5)),
                (2, Value::Bool(false)),
                (20, Value::Bytes(vec![1, 2, 3].into())),
                (21, Value::String("hi".into())),
            ],
        )
        .unwrap();
        w.spawn(0, 0, 0, []).unwrap();
        w.finish_tick();

        let mut ours = Vec::new();
        encode_state(&w, 0, meta(), &mut ours);
        encode_member_part(0, 77, &mut ours);
        let frame = v1::StateFrame::decode(&ours[..]).unwrap();
        // Re-encoding with prost gives the same bytes: ours is canonical protobuf.
        assert_eq!(frame.encode_to_vec(), ours);
        assert_eq!(frame.tick, 3);
        assert_eq!(frame.baseline_tick, 0);
        assert_eq!(frame.added.len(), 2);
        // In id order.
        assert_eq!(frame.added[1].fields.len(), 5);
        assert_eq!(frame.added[1].fields[0].value, Some(Value::Int(-300)));
        assert_eq!(frame.checksum, Some(0xdead_beef));
        assert_eq!(frame.last_input_seq, 77);
    }

    #[test]
    fn delta_holds_only_changes_since_the_baseline() {
        let mut w = World::new(32);
        w.begin_tick(1);
        for id in 1..=4 {
            w.spawn(id, 0, 1, [(1, Value::Int(0)), (2, Value::Int(0))]).unwrap();
        }
        w.finish_tick();
        w.begin_tick(2);
        w.set(1, 2, Value::Int(5)).unwrap();
        w.despawn(2).unwrap();
        w.spawn(5, 0, 1, []).unwrap();
        w.finish_tick();
        w.begin_tick(3);
        w.set(3, 1, Value::Int(7)).unwrap();
        w.despawn(4).unwrap();
        w.spawn(4, 1, 1, []).unwrap(); // re-created: replaces, not removed
        w.finish_tick();

        let d = decode(&w, 2);
        assert_eq!(d.baseline_tick, 2);
        assert!(d.removed.is_empty());
        let added: Vec<_> = d.added.iter().map(|e| e.id).collect();
        assert_eq!(added, vec![4]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].id, 3);
        assert_eq!(d.changed[0].fields.len(), 1);

        let d = decode(&w, 1);
        assert_eq!(d.removed, vec![2]);
        let mut added: Vec<_> = d.added.iter().map(|e| e.id).collect();
        added.sort();
        assert_eq!(added, vec![4, 5]);
        let mut changed: Vec<_> = d.changed.iter().map(|e| e.id).collect();
        changed.sort();
        assert_eq!(changed, vec![1, 3]);
    }

    #[test]
    fn an_entity_given_to_another_owner_is_listed_whole() {
        let mut w = World::new(32);
        w.begin_tick(1);
        w.spawn(1, 3, 1, [(1, Value::Int(9))]).unwrap();
        w.spawn(2, 3, 1, [(1, Value::Int(9))]).unwrap();
        w.finish_tick();
        let before = w.checksum();
        w.begin_tick(2);
        w.set_owner(1, 4).unwrap();
        w.finish_tick();
        let d = decode(&w, 1);
        assert!(d.removed.is_empty() && d.changed.is_empty());
        assert_eq!(d.added.len(), 1);
        assert_eq!((d.added[0].id, d.added[0].owner), (1, 4));
        assert_eq!(d.added[0].fields.len(), 1, "with its fields");
        assert_ne!(w.checksum(), before);
        assert!(decode(&w, 2).added.is_empty(), "listed once");
    }

    #[test]
    fn entities_created_and_removed_after_the_baseline_are_listed_as_removed() {
        // A mirror that is ahead of the baseline may hold such an entity.
        let mut w = World::new(32);
        w.begin_tick(1);
        w.finish_tick();
        w.begin_tick(2);
        w.spawn(9, 0, 1, []).unwrap();
        w.finish_tick();
        w.begin_tick(3);
        w.despawn(9).unwrap();
        w.finish_tick();
        let d = decode(&w, 1);
        assert_eq!(d.removed, vec![9]);
        assert!(d.added.is_empty());
    }

    #[test]
    fn unchanged_world_encodes_an_empty_delta() {
        let mut w = World::new(32);
        w.begin_tick(1);
        w.spawn(1, 0, 0, [(1, Value::Int(1))]).unwrap();
        w.finish_tick();
        w.begin_tick(2);
        w.set(1, 1, Value::Int(1)).unwrap();
        w.finish_tick();
        let d = decode(&w, 1);
        assert!(d.added.is_empty() && d.changed.is_empty() && d.removed.is_empty());
    }
}
