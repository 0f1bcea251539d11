//! A room's checkpoint (cluster mode): what it holds, its fingerprint, and a room
//! restored from one on another node.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use super::events::{QueuedEvent, event_cost, everyone_but};
use super::{Bans, Reserved, Room, RoomConfig};
use crate::delta::{FrameMeta, View};
use crate::engine::listing::{Listing, ListingState};
use crate::engine::outbox::RoomKey;
use crate::engine::simulation::{SimContext, Simulation};
use crate::frame::encode_message;
use crate::mirror::StateMirror;
use crate::packed::Values;
use crate::proto::{self, RoomEvent, SendEvent, server_message::Kind};
use crate::state::{MemberId, Tick, chained_entity_hash};

/// Why a checkpoint could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot restore room from its checkpoint: {0}")]
pub struct RestoreError(String);

impl Room {
    /// A room as `checkpoint` left it: its entities at the checkpoint's tick (checked
    /// against the snapshot's checksum), its event numbering, its shows, and its
    /// members' seats, kept for `seat_ticks` ticks for their sessions to take back
    /// (with the inputs the room had applied). The simulation rebuilds what it keeps beside the world
    /// ([`Simulation::restore`]).
    pub fn restore(
        key: RoomKey,
        config: RoomConfig,
        sim: Box<dyn Simulation>,
        checkpoint: &proto::RoomCheckpoint,
        seat_ticks: Tick,
    ) -> Result<Self, RestoreError> {
        let failed = |e: String| RestoreError(e);
        let (id, room_type) = (checkpoint.room.as_str().into(), checkpoint.room_type.as_str().into());
        let mut room = Self::new(key, id, room_type, config, sim);
        let mut frame = proto::StateFrame::decode(&checkpoint.state[..]).map_err(|e| failed(e.to_string()))?;
        // A node of protocol version 1 (before a rolling upgrade reached it) wrote
        // its checkpoints' checksums by that version's definition: either is taken.
        let checksum = frame.checksum.take();
        let mut mirror = StateMirror::with_schema(room.world.schema().clone());
        mirror.apply(&frame).map_err(|e| failed(e.to_string()))?;
        if let Some(expected) = checksum {
            let world = mirror.world();
            let chained = || {
                (world.entities()).fold(0u64, |sum, e| {
                    sum.wrapping_add(chained_entity_hash(e.id(), e.owner(), e.kind(), e.fields()))
                })
            };
            if world.checksum() != expected && chained() != expected {
                return Err(failed(format!("checksum mismatch at tick {}", frame.tick)));
            }
        }
        let tick = checkpoint.tick;
        room.world.begin_tick(tick);
        for e in mirror.world().entities() {
            let fields = e.fields().map(|(f, v)| (f, v.clone()));
            (room.world.spawn(e.id(), e.owner(), e.kind(), fields)).map_err(|e| failed(e.to_string()))?;
        }
        room.world.finish_tick();
        room.event_seq = checkpoint.event_seq;
        room.restored_at = Some(tick);
        // A room checkpointed before its first tick (an empty room kept open by the
        // configuration, moved by a rolling restart) has not been started: it is, at
        // its first tick here.
        room.started = tick > 0;
        if let Some(listing) = &checkpoint.listing {
            room.listing = Arc::new(Listing::new(ListingState::from_proto(listing)));
        }
        room.bans = Arc::new(Bans::from_proto(&checkpoint.bans));
        for seat in &checkpoint.seats {
            let reserved = Reserved {
                user_id: seat.user_id.as_str().into(),
                last_applied: seat.last_input_seq,
                until: tick + seat_ticks,
            };
            room.roster.insert(seat.member_id, reserved.user_id.clone());
            room.roster.set_data(seat.member_id, seat.member_data.clone());
            // Its connection is elsewhere until it joins again (told back then).
            room.roster.set_away(seat.member_id, true);
            room.reserved.insert(seat.member_id, reserved);
        }
        // Events a stopping node still owed to members over their share: relayed to
        // them once they take back their seats.
        for pending in &checkpoint.pending_events {
            let Some(relayed) = &pending.event else { continue };
            let mut owed: Vec<MemberId> = (pending.owed.iter().copied())
                .filter(|member| room.reserved.contains_key(member))
                .collect();
            owed.sort_unstable();
            owed.dedup();
            if owed.is_empty() {
                continue;
            }
            // Relayed to some already (numbered and encoded on the node that stopped):
            // encoded here again, as it was.
            let cost = event_cost(&relayed.kind, &relayed.payload, &relayed.targets);
            let event = RoomEvent {
                room: room.id.to_string(),
                ..relayed.clone()
            };
            room.events.push(QueuedEvent {
                sender: relayed.sender,
                seq: relayed.seq,
                cost,
                owed: Some(owed),
                event: SendEvent::default(),
                message: Some(encode_message(Kind::Event(event))),
            });
        }
        // (A show of an entity the snapshot lacks is dropped, not the room.)
        for shown in (checkpoint.shown.iter()).filter(|v| room.reserved.contains_key(&v.member)) {
            let _ = room.world.show(shown.id, shown.member);
        }
        let members: Vec<MemberId> = room.reserved.keys().copied().collect();
        room.sim.load(&checkpoint.game_state);
        room.sim.restore(&mut sim_context!(room, tick), &members);
        room.do_requests();
        room.remove_members();
        // Again: what the simulation wrote as it restored is hashed and in id order
        // before a checkpoint (a hand-off may come before the first tick) reads it.
        room.world.finish_tick();
        Ok(room)
    }

    /// What the simulation keeps beside the world ([`Simulation::save`]). A panic
    /// there (a bug in the game, as in any callback) marks the room failed: the
    /// driver closes it as after a tick that panics.
    pub fn game_state(&mut self) -> Bytes {
        let sim = &self.sim;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.save())) {
            Ok(saved) => saved.into(),
            Err(_) => {
                self.failed = true;
                Bytes::new()
            }
        }
    }

    /// The room's state for a checkpoint (call between ticks): every entity as a full
    /// snapshot, the event numbering, the members' seats (seats still kept from a
    /// restore included) and what is shown to whom, stamped `time_us`, and what the
    /// simulation saves ([`Room::game_state`]: check [`Room::failed`] before writing
    /// it).
    pub fn checkpoint(&mut self, time_us: u64) -> proto::RoomCheckpoint {
        let game_state = self.game_state();
        self.checkpoint_with(time_us, game_state)
    }

    /// [`Room::checkpoint`] with the simulation's state already asked.
    pub fn checkpoint_with(&mut self, time_us: u64, game_state: Bytes) -> proto::RoomCheckpoint {
        let meta = FrameMeta {
            room: &self.id,
            server_time_us: time_us,
            checksum: Some(self.world.checksum()),
        };
        self.encoder.encode(
            &self.world,
            0,
            Values::AgainstBaseline,
            View::Whole,
            meta,
            &mut self.buf,
        );
        let state = self.buf.split().freeze();
        let members = self.members.iter().map(|m| proto::Seat {
            member_id: m.id,
            user_id: m.user_id.to_string(),
            last_input_seq: m.last_applied,
            member_data: self.roster.data(m.id).clone(),
            ..Default::default()
        });
        let reserved = self.reserved.iter().map(|(&id, r)| proto::Seat {
            member_id: id,
            user_id: r.user_id.to_string(),
            last_input_seq: r.last_applied,
            member_data: self.roster.data(id).clone(),
            ..Default::default()
        });
        proto::RoomCheckpoint {
            room: self.id.to_string(),
            room_type: self.room_type.to_string(),
            tick: self.world.tick(),
            event_seq: self.event_seq,
            state,
            seats: members.chain(reserved).collect(),
            time_us,
            listing: Some(self.listing.with(ListingState::to_proto)),
            bans: self.bans.to_proto(time_us),
            game_state,
            shown: self.shows(),
            // (A hand-off's hold every event still owed: see `Room::pending_events`.)
            pending_events: self.owed_to_kept_seats(),
        }
    }

    /// The events not yet relayed to every addressee, in order, with the members
    /// still owed each: for the checkpoint of a hand-off, after which the room ticks no
    /// more ([`Room::finish_pending`] first leaves only those owed to members over
    /// their share). A restore relays them to those members once they take back their
    /// seats.
    pub fn pending_events(&self) -> Vec<proto::PendingEvent> {
        self.events_owed_to(|_| true)
    }

    /// The events still owed to seats a restore keeps for members not back yet: in
    /// every checkpoint, so that the room's node dying before they come back loses
    /// none of them. (None owed to members here: they may get them any moment, and
    /// a room restored after a node died would relay them twice.)
    fn owed_to_kept_seats(&self) -> Vec<proto::PendingEvent> {
        if self.reserved.is_empty() {
            return Vec::new();
        }
        self.events_owed_to(|member| self.reserved.contains_key(&member))
    }

    /// [`Room::pending_events`] owed to the members `owed_to` names.
    fn events_owed_to(&self, owed_to: impl Fn(MemberId) -> bool) -> Vec<proto::PendingEvent> {
        // (Without the room's id: the checkpoint's.)
        let relayed = |queued: &QueuedEvent| match &queued.message {
            // (Encoded here: decoding it gives the event back.)
            Some(message) => match proto::ServerMessage::decode(&message[..]).ok()?.kind? {
                Kind::Event(event) => Some(RoomEvent {
                    room: String::new(),
                    ..event
                }),
                _ => None,
            },
            None => Some(RoomEvent {
                room: String::new(),
                seq: queued.seq,
                sender: queued.sender,
                kind: queued.event.kind.clone(),
                payload: queued.event.payload.clone(),
                targets: queued.event.targets.clone(),
            }),
        };
        (self.events.iter())
            .filter_map(|queued| {
                // A broadcast not relayed yet: as at its first relay.
                let mut owed = (queued.owed.clone()).unwrap_or_else(|| everyone_but(&self.members, queued.sender));
                owed.retain(|&member| owed_to(member));
                if owed.is_empty() {
                    return None;
                }
                Some(proto::PendingEvent {
                    event: Some(relayed(queued)?),
                    owed,
                })
            })
            .collect()
    }

    /// What [`World::shows`] holds, in order.
    fn shows(&self) -> Vec<proto::Viewer> {
        let mut shows: Vec<_> = (self.world.shows())
            .map(|(id, member)| proto::Viewer { id, member })
            .collect();
        shows.sort_unstable_by_key(|v| (v.id, v.member));
        shows
    }

    /// A hash of what a checkpoint holds but its tick and time: the state (its
    /// checksum), the event numbering, the seats (and the events kept ones are owed),
    /// the shows, the listing and
    /// `game_state` (what the simulation saves beside the world). Equal between two checkpoints when
    /// nothing a restore would bring back changed.
    pub fn checkpoint_fingerprint(&self, game_state: &[u8]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        (self.world.checksum(), self.world.len(), self.event_seq).hash(&mut hasher);
        for member in &self.members {
            let data = &self.roster.data(member.id)[..];
            (member.id, &*member.user_id, member.last_applied, data).hash(&mut hasher);
        }
        let mut reserved: Vec<_> = self.reserved.iter().map(|(&id, r)| (id, r.last_applied)).collect();
        reserved.sort_unstable();
        reserved.hash(&mut hasher);
        // What those seats are owed (see `owed_to_kept_seats`).
        if !reserved.is_empty() {
            for queued in &self.events {
                let kept = (queued.owed.iter().flatten()).filter(|member| self.reserved.contains_key(member));
                (queued.seq, kept.collect::<Vec<_>>()).hash(&mut hasher);
            }
        }
        self.bans.hash_into(&mut hasher);
        for shown in self.shows() {
            (shown.id, shown.member).hash(&mut hasher);
        }
        self.listing
            .with(|listing| listing.to_proto().encode_to_vec())
            .hash(&mut hasher);
        game_state.hash(&mut hasher);
        hasher.finish()
    }
}
