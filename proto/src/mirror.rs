//! The client-side state mirror: applies full and delta state frames in order and
//! verifies the server's checksum, so a client detects a desync instead of drifting.
//!
//! The client crate and the bots use it; the server's tests use it to check that what
//! members receive reproduces the room's state exactly.

use std::sync::Arc;

use crate::packed::{self, BlockError};
use crate::state::{EntityId, FieldId, Schema, Tick, Value, World, WorldError};
use crate::v1::{self, StateFrame};

/// Why a frame could not be applied. After any of these the mirror is out of sync:
/// it refuses deltas until a full snapshot arrives (ask for one with a `Resync`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Desync {
    /// A delta against a baseline the mirror does not hold.
    #[error("delta against tick {baseline} but the mirror is at tick {mirror}")]
    BaselineMismatch {
        /// The frame's baseline tick.
        baseline: Tick,
        /// The mirror's tick.
        mirror: Tick,
    },
    /// A delta arrived before any full snapshot, or after a desync.
    #[error("waiting for a full snapshot")]
    AwaitingSnapshot,
    /// A delta changed an entity the mirror does not have.
    #[error("delta changes unknown entity {0}")]
    UnknownEntity(EntityId),
    /// A field without a value.
    #[error("field {field} of entity {entity} has no value")]
    EmptyField {
        /// Entity id.
        entity: EntityId,
        /// Field id.
        field: FieldId,
    },
    /// A packed block could not be decoded.
    #[error(transparent)]
    Packed(#[from] BlockError),
    /// A value does not fit the room's schema.
    #[error(transparent)]
    Field(#[from] WorldError),
    /// The frame would give the room more entities than the mirror takes (see
    /// [`StateMirror::limit_entities`]): no relay configured within that sends it.
    #[error("the frame would give the room more than {0} entities, this client's limit")]
    TooManyEntities(usize),
    /// The state after applying the frame does not match the server's checksum.
    #[error("checksum mismatch at tick {tick}: server {server:#018x}, mirror {mirror:#018x}")]
    Checksum {
        /// The frame's tick.
        tick: Tick,
        /// Checksum the server sent.
        server: u64,
        /// Checksum of the mirror's state.
        mirror: u64,
    },
}

/// A room's state as a client sees it.
#[derive(Debug, Clone)]
pub struct StateMirror {
    world: World,
    /// False: follow ticks, baselines and input acknowledgements only.
    contents: bool,
    synced: bool,
    last_input_seq: u64,
    checksums_verified: u64,
    /// Most entities the room may hold.
    max_entities: usize,
    /// Scratch space for decoding packed blocks.
    fields: Vec<(FieldId, Value)>,
}

impl Default for StateMirror {
    fn default() -> Self {
        Self::new()
    }
}

impl StateMirror {
    /// An empty mirror of a room that declares no kinds, waiting for its first full
    /// snapshot.
    pub fn new() -> Self {
        Self::with_schema(Arc::default())
    }

    /// An empty mirror of a room with this schema (`Joined.schema`, see
    /// [`Schema::from_proto`]), waiting for its first full snapshot.
    pub fn with_schema(schema: Arc<Schema>) -> Self {
        Self {
            world: World::with_schema(0, schema),
            contents: true,
            synced: false,
            last_input_seq: 0,
            checksums_verified: 0,
            max_entities: usize::MAX,
            fields: Vec::new(),
        }
    }

    /// A frame that would give the room more than `max` entities is refused
    /// ([`Desync::TooManyEntities`]; one that alone claims more, before anything is
    /// allocated for it): a client bounds what a broken or hostile relay can make it
    /// hold, at most `max` entities plus one frame's. (A few bytes on the wire become
    /// an entity of some hundred bytes here.)
    pub fn limit_entities(mut self, max: usize) -> Self {
        self.max_entities = max;
        self
    }

    /// A mirror that follows the frames' ticks, baselines and input acknowledgements
    /// (so it accepts, skips and acknowledges exactly the frames a full mirror would)
    /// but keeps no entities and verifies no checksum: for a load generator that
    /// verifies a sample of its clients and cannot afford a real client's work for
    /// every one of them. Its [`StateMirror::world`] stays empty.
    pub fn headers_only() -> Self {
        Self {
            contents: false,
            ..Self::new()
        }
    }

    /// The mirrored state.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The tick of the last applied frame.
    pub fn tick(&self) -> Tick {
        self.world.tick()
    }

    /// True once a full snapshot was applied and no desync happened since.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The last input sequence number the server reported applied.
    pub fn last_input_seq(&self) -> u64 {
        self.last_input_seq
    }

    /// How many frames carried a checksum that matched, since this mirror began: a
    /// client starts a room's mirror again at each `Joined` (a resume's included), so
    /// for a running count over connections use the client's statistics (the Rust
    /// client's `Stats::checksums`).
    pub fn checksums_verified(&self) -> u64 {
        self.checksums_verified
    }

    /// Applies one state frame from an ordered, reliable transport (WebSocket). A full
    /// snapshot (baseline 0) is always accepted; a delta must be against the mirror's
    /// current tick.
    pub fn apply(&mut self, frame: &StateFrame) -> Result<(), Desync> {
        if frame.baseline_tick != 0 {
            if !self.synced {
                return Err(Desync::AwaitingSnapshot);
            }
            if frame.baseline_tick != self.world.tick() {
                self.synced = false;
                return Err(Desync::BaselineMismatch {
                    baseline: frame.baseline_tick,
                    mirror: self.world.tick(),
                });
            }
        }
        self.apply_checked(frame)
    }

    /// Applies one state frame from a transport that may lose and reorder frames (QUIC
    /// datagrams), where deltas are against the last tick the client acknowledged.
    /// Returns `Ok(true)` when applied and `Ok(false)` when skipped: a frame not newer
    /// than the mirror (late or duplicated), or a delta the mirror cannot use yet (its
    /// baseline is newer than the mirror, or no full snapshot arrived yet; the server
    /// repeats full snapshots until one is acknowledged). A delta against any tick at
    /// or before the mirror's applies: it holds every change since its baseline.
    /// Acknowledge a tick only when this returned `Ok(true)`.
    pub fn apply_unordered(&mut self, frame: &StateFrame) -> Result<bool, Desync> {
        let usable = if frame.baseline_tick == 0 {
            !self.synced || frame.tick > self.world.tick()
        } else {
            self.synced && frame.baseline_tick <= self.world.tick() && frame.tick > self.world.tick()
        };
        if !usable {
            return Ok(false);
        }
        self.apply_checked(frame).map(|()| true)
    }

    fn apply_checked(&mut self, frame: &StateFrame) -> Result<(), Desync> {
        let result = self.apply_contents(frame);
        if result.is_err() {
            self.synced = false;
        }
        result
    }

    fn apply_contents(&mut self, frame: &StateFrame) -> Result<(), Desync> {
        if !self.contents {
            self.world.begin_tick(frame.tick);
            self.synced = true;
            self.last_input_seq = frame.last_input_seq;
            return Ok(());
        }
        // A frame that alone claims more than the limit is refused before anything is
        // allocated for it. (Its entities may already be here: over QUIC a delta
        // against an older baseline lists again those added since. The world is
        // counted once the frame is applied, below.)
        if added(frame) > self.max_entities {
            return Err(Desync::TooManyEntities(self.max_entities));
        }
        if frame.baseline_tick == 0 {
            self.world.clear();
        }
        self.world.begin_tick(frame.tick);
        for &id in &frame.removed {
            // A removal of an unknown entity is harmless; the checksum still guards.
            let _ = self.world.despawn(id);
        }
        for entity in &frame.added {
            let fields = fields(entity.id, &entity.fields)?;
            self.world.replace(entity.id, entity.owner, entity.kind, fields)?;
        }
        for update in &frame.changed {
            let mut target = self
                .world
                .entity_mut(update.id)
                .ok_or(Desync::UnknownEntity(update.id))?;
            for field in &update.fields {
                let value = field.value.as_ref().ok_or(Desync::EmptyField {
                    entity: update.id,
                    field: field.id,
                })?;
                target.set(field.id, value.clone())?;
            }
        }
        for block in &frame.packed {
            packed::apply_block(&mut self.world, block, &mut self.fields)?;
        }
        self.world.finish_tick();
        if self.world.len() > self.max_entities {
            return Err(Desync::TooManyEntities(self.max_entities));
        }
        self.synced = true;
        self.last_input_seq = frame.last_input_seq;
        if let Some(server) = frame.checksum {
            let mirror = self.world.checksum();
            if server != mirror {
                return Err(Desync::Checksum {
                    tick: frame.tick,
                    server,
                    mirror,
                });
            }
            self.checksums_verified += 1;
        }
        Ok(())
    }
}

/// How many entities `frame` adds (a packed block that does not decode adds none
/// here: applying it fails).
fn added(frame: &StateFrame) -> usize {
    let packed = (frame.packed.iter())
        .filter_map(|block| packed::header(block).ok())
        .map(|(_, added, _)| added as usize);
    packed.fold(frame.added.len(), usize::saturating_add)
}

fn fields(entity: EntityId, fields: &[v1::Field]) -> Result<Vec<(FieldId, Value)>, Desync> {
    fields
        .iter()
        .map(|f| match &f.value {
            Some(v) => Ok((f.id, v.clone())),
            None => Err(Desync::EmptyField { entity, field: f.id }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn frame(tick: Tick, baseline: Tick, added: &[EntityId], removed: &[EntityId]) -> StateFrame {
        StateFrame {
            room: "r".into(),
            tick,
            baseline_tick: baseline,
            added: (added.iter())
                .map(|&id| v1::Entity {
                    id,
                    kind: 1,
                    ..Default::default()
                })
                .collect(),
            removed: removed.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_frame_over_the_entity_limit_is_refused() {
        let mut mirror = StateMirror::new().limit_entities(3);
        mirror.apply(&frame(1, 0, &[1, 2, 3], &[])).unwrap();
        assert_eq!(mirror.apply(&frame(2, 1, &[4], &[])), Err(Desync::TooManyEntities(3)));
        assert!(!mirror.is_synced());
        // At the limit, an entity may take another's place.
        mirror.apply(&frame(3, 0, &[1, 2, 3], &[])).unwrap();
        mirror.apply(&frame(4, 3, &[4], &[1])).unwrap();
        assert_eq!(mirror.world().len(), 3);
        // Removing an entity it does not have makes no room.
        assert_eq!(mirror.apply(&frame(5, 4, &[5], &[99])), Err(Desync::TooManyEntities(3)));
        assert_eq!(
            mirror.apply(&frame(6, 0, &[1, 2, 3, 4], &[])),
            Err(Desync::TooManyEntities(3))
        );
        // Refused before it is applied: a packed block's header claiming a million
        // entities in five bytes.
        mirror.apply(&frame(7, 0, &[1, 2], &[])).unwrap();
        let mut claims = frame(8, 7, &[], &[]);
        claims.packed = vec![Bytes::from_static(&[1, 0xc0, 0x84, 0x3d, 0])];
        assert_eq!(mirror.apply(&claims), Err(Desync::TooManyEntities(3)));
        assert_eq!(mirror.world().len(), 2, "nothing of it applied");
    }

    /// Over QUIC a delta against an older baseline lists again the entities added
    /// since: at the limit, they are not counted twice.
    #[test]
    fn a_delta_listing_again_entities_the_mirror_has_is_within_the_limit() {
        let mut mirror = StateMirror::new().limit_entities(3);
        assert_eq!(mirror.apply_unordered(&frame(1, 0, &[1], &[])), Ok(true));
        assert_eq!(mirror.apply_unordered(&frame(2, 1, &[2, 3], &[])), Ok(true));
        // Against tick 1 (2 and 3 were added after it), applied at tick 2.
        assert_eq!(mirror.apply_unordered(&frame(3, 1, &[2, 3], &[])), Ok(true));
        assert_eq!(mirror.world().len(), 3);
    }
}
