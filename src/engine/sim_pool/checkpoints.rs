//! Rooms' checkpoints in cluster mode: what a simulation thread hands the sink
//! ([`Checkpoint`]), how often ([`Checkpoints`]), and when a room's next one is due
//! ([`PeriodicCheckpoints`]: every `every_ticks` ticks, fewer for a large or unchanged
//! room, and soon after a change that must not wait).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Now;
use crate::engine::outbox::RoomKey;
use crate::engine::room::Room;
use crate::proto::{self};

/// Cluster mode: rooms checkpoint their state every `every_ticks` ticks (and on
/// [`SimPool::hand_off`](super::SimPool::hand_off)) into `sink`; a restored room keeps its members' seats
/// for `seat_grace`.
#[derive(Clone)]
pub struct Checkpoints {
    /// Ticks between two checkpoints of a room (0: only on demand).
    pub every_ticks: u32,
    /// How long a restored room keeps the seats of its checkpoint's members.
    pub seat_grace: Duration,
    /// A room that did not change is checkpointed again after this long at the
    /// latest (well within how long Redis keeps a checkpoint).
    pub rewrite_after: Duration,
    /// A room's periodic checkpoints write at most this many bytes a second: a
    /// large room's come less often than every `every_ticks` (its checkpoint's size
    /// over this rate apart, at most `rewrite_after`), so a small change to it does
    /// not cost Redis its whole state every interval.
    pub bytes_per_second: u64,
    /// Called on the simulation thread with each checkpoint; must not block.
    pub sink: Arc<dyn Fn(Checkpoint) + Send + Sync>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("every_ticks", &self.every_ticks)
            .field("seat_grace", &self.seat_grace)
            .finish_non_exhaustive()
    }
}

/// Checkpoints of an unchanged room not written in a row, at most (see
/// `Shard::tick_due_rooms`).
pub(super) const UNCHANGED_CHECKPOINTS: u32 = 9;

/// What a simulation thread hands the checkpoint sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Checkpoint {
    /// A room's state.
    Room(Box<proto::RoomCheckpoint>),
    /// The thread has sent the checkpoints [`SimPool::hand_off`](super::SimPool::hand_off) asked of it.
    Flushed,
    /// The room with this id and key closed (it emptied out, or failed): its
    /// checkpoint must go, so that the next room with its id starts empty. (Sent
    /// before the room leaves the pool's directory: the key tells it from a room
    /// opened under the id since.)
    Closed(Arc<str>, RoomKey),
}

/// When a room's periodic checkpoints are written.
#[derive(Default)]
pub(super) struct PeriodicCheckpoints {
    /// The fingerprint of the last checkpoint written, when, and how many since were
    /// not written because it had not changed.
    pub(super) written: Option<(u64, Instant, u32)>,
    /// A checkpoint is due.
    pub(super) due: bool,
    /// When a change written soon (see [`PeriodicCheckpoints::write_soon`]) is
    /// written, at the latest.
    pub(super) soon_at: Option<Instant>,
    /// Periodic checkpoints wait until then (see [`Checkpoints::bytes_per_second`]).
    pub(super) paced_until: Option<Instant>,
}

/// Changes written soon (bans) make at most one checkpoint of a room this often: a
/// backend banning many users in a row costs Redis one write a second, not one each.
pub(super) const SOON_INTERVAL: Duration = Duration::from_secs(1);

impl PeriodicCheckpoints {
    /// Hands the sink `room`'s checkpoint after its tick `tick` when one is due. A
    /// checkpoint due while the simulation has yet to hear of joins or leaves (the
    /// members this tick removed) is taken at the next tick that leaves none. A room
    /// that did not change since its last checkpoint is not written again (an idle
    /// room of a megabyte would cost Redis a megabyte each time), but every tenth time
    /// all the same (a write Redis failed is made good then), and before Redis lets
    /// the last one expire. One that comes due sooner than the last one's size allows
    /// ([`Checkpoints::bytes_per_second`]) waits for the first tick after that.
    pub(super) fn after_tick(&mut self, room: &mut Room, tick: u64, now: Now, c: &Checkpoints) {
        self.due |= c.every_ticks > 0 && tick.is_multiple_of(u64::from(c.every_ticks));
        if !self.due || room.has_pending_sim_calls() || self.paced_until.is_some_and(|until| now.instant < until) {
            return;
        }
        self.write(room, now, c);
    }

    /// Between ticks: a change the room's ticks would not bring to a checkpoint soon
    /// (a ban, which an empty room keeps without ticking) is written now, or after the
    /// next tick when the room has work pending, or [`SOON_INTERVAL`] after the last
    /// checkpoint when that was less than that ago (periodic checkpoints only).
    pub(super) fn write_soon(&mut self, room: &mut Room, now: Now, c: &Checkpoints) {
        if c.every_ticks == 0 {
            return;
        }
        let last = self.written.as_ref().map(|&(_, at, _)| at);
        let soon = last.map_or(now.instant, |at| at + SOON_INTERVAL);
        self.soon_at = Some(self.soon_at.map_or(soon, |at| at.min(soon)));
        self.when_due(room, now, c);
    }

    /// Writes what [`PeriodicCheckpoints::write_soon`] left for later, once its time
    /// came and the room has no work pending (its ticks, which do that work, call
    /// this again after each).
    pub(super) fn when_due(&mut self, room: &mut Room, now: Now, c: &Checkpoints) {
        if self.soon_at.is_some_and(|at| now.instant >= at) && !room.has_pending_work() {
            self.write(room, now, c);
        }
    }

    pub(super) fn write(&mut self, room: &mut Room, now: Now, c: &Checkpoints) {
        self.due = false;
        self.soon_at = None;
        // (A simulation that panics saving its state fails the room: not written.)
        let game_state = room.game_state();
        if room.failed() {
            return;
        }
        let fingerprint = room.checkpoint_fingerprint(&game_state);
        match &mut self.written {
            Some((last, at, skipped))
                if *last == fingerprint && *skipped < UNCHANGED_CHECKPOINTS && now.instant - *at < c.rewrite_after =>
            {
                *skipped += 1;
            }
            written => {
                *written = Some((fingerprint, now.instant, 0));
                let checkpoint = room.checkpoint_with(now.unix_us, game_state);
                // (At most `rewrite_after` apart all the same: what the room would lose.)
                let bytes = prost::Message::encoded_len(&checkpoint) as f64;
                let apart = Duration::from_secs_f64(bytes / c.bytes_per_second.max(1) as f64);
                self.paced_until = Some(now.instant + apart.min(c.rewrite_after));
                (c.sink)(Checkpoint::Room(Box::new(checkpoint)));
            }
        }
    }
}

/// The sooner of two instants, either of which may be none.
pub(super) fn sooner(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
