//! What one simulation thread does, sans IO: the rooms it owns, ticked on their
//! phases; the commands its driver (`thread`) hands it; rooms opened, closed and
//! checkpointed. It reads the time from a [`Clock`] (the system's on a thread, a
//! hand-moved one in tests) and never sleeps or receives.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use super::checkpoints::{Checkpoint, Checkpoints, PeriodicCheckpoints, sooner};
use super::creation::Creators;
use super::{ROOM_LOGS, RoomsById};
use crate::clock::Now;
use crate::engine::outbox::{Outbox, RoomKey};
use crate::engine::room::{Joiner, Room, error_message};
use crate::engine::rooms::{Command, RoomShared};
use crate::engine::schedule::TickSchedule;
use crate::metrics::SimMetrics;
use crate::proto::{self, ErrorCode};

/// Why a room whose simulation panicked was closed (its members' `Left`).
const PANICKED: &str = "room closed after an internal error";

/// Logs and counts a simulation that panicked in a running room (which then closes).
fn room_panicked(metrics: &SimMetrics, room: &str) {
    tracing::error!(room, "simulation panicked; closing the room");
    metrics.room_panics.inc();
}

/// How long a new room waits for its first member at least, whatever
/// `empty_room_ttl`: its creator's join follows its creation.
const FIRST_JOIN_WAIT: Duration = Duration::from_secs(1);

pub(super) struct OwnedRoom {
    room: Room,
    shared: Arc<RoomShared>,
    /// Created from the configuration: stays open while empty.
    persistent: bool,
    schedule: TickSchedule,
    empty_since: Option<Instant>,
    /// Someone has joined it (until then it waits at least [`FIRST_JOIN_WAIT`] for
    /// its creator's join).
    joined: bool,
    /// Its periodic checkpoints.
    checkpoints: PeriodicCheckpoints,
}

impl OwnedRoom {
    /// When the room ticks next, if it ticks (it has members).
    fn next_tick(&self) -> Option<Instant> {
        (!self.room.is_vacant()).then(|| self.schedule.next_deadline())
    }

    /// When the thread must wake for this room: its next tick, or, while it is empty,
    /// when it expires (never for a persistent room).
    /// A checkpoint written soon may be due before either (while the room has work
    /// pending, its ticks write it once that is done: waking for it sooner would find
    /// it still not writable, again and again).
    fn wake_at(&self, empty_room_ttl: Duration) -> Option<Instant> {
        let pending = self.room.has_pending_work();
        let wake = match self.empty_since {
            Some(_) if self.room.is_vacant() && !pending => self.expires_at(empty_room_ttl),
            _ => Some(self.schedule.next_deadline()),
        };
        sooner(wake, self.checkpoints.soon_at.filter(|_| !pending))
    }

    /// When the room closes if it stays empty: none while it has members or kept
    /// seats, or when it is persistent.
    fn expires_at(&self, empty_room_ttl: Duration) -> Option<Instant> {
        let since = self.empty_since.filter(|_| !self.persistent && self.room.is_vacant())?;
        let ttl = if self.joined {
            empty_room_ttl
        } else {
            empty_room_ttl.max(FIRST_JOIN_WAIT)
        };
        Some(since + ttl)
    }
}

/// Where a shard reads the time.
pub(super) trait Clock: Send {
    /// The current moment.
    fn now(&self) -> Now;
}

/// The system's clocks: what a simulation thread's shard reads.
pub(super) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now::system()
    }
}

/// What a shard shares with the pool and the other threads.
pub(super) struct PoolSide {
    /// This thread's open rooms, as the pool counts them (it places new rooms on the
    /// thread with fewest).
    pub(super) room_count: Arc<AtomicU32>,
    pub(super) directory: Arc<Mutex<RoomsById>>,
    pub(super) creators: Arc<Creators>,
    pub(super) metrics: Arc<SimMetrics>,
    /// The share of its time the thread spent ticking over its last second with
    /// rooms to tick, in thousandths (the pool places new rooms on the least busy).
    pub(super) load: Arc<AtomicU32>,
}

/// Time spent ticking, summed over windows of [`LOAD_WINDOW`].
struct Busy {
    since: Instant,
    spent: Duration,
}

/// How long a thread's load is measured over before it is published.
const LOAD_WINDOW: Duration = Duration::from_secs(1);

/// One simulation thread's rooms and what it knows of the pool, sans IO: its driver
/// hands it commands ([`Shard::handle`]) and asks it to tick ([`Shard::tick_due_rooms`])
/// and when to wake next ([`Shard::next_wakes`]).
pub(super) struct Shard {
    rooms: Vec<OwnedRoom>,
    /// Position in `rooms` by room key.
    index: FxHashMap<RoomKey, usize>,
    pool: PoolSide,
    max_catch_up: u32,
    empty_room_ttl: Duration,
    checkpoints: Option<Checkpoints>,
    /// The grid the rooms' schedules on this thread are laid on: rooms of one tick
    /// rate are due in [`TICK_PHASES`] phases, so the thread wakes at most that many
    /// times per period, not once per room.
    epoch: Instant,
    /// The phase the next room created gets (round robin).
    next_phase: u32,
    /// Set by [`Command::HandOff`]: the rooms stay as checkpointed.
    handed_off: bool,
    /// Time spent ticking in the current window (see [`PoolSide::load`]).
    busy: Busy,
    clock: Box<dyn Clock>,
}

/// Answers a leave or a resync (if it asks for an answer) of a session not seated in
/// the room: refused before (a full room, say) or taken over by another session
/// (`NOT_A_MEMBER`), or the room closed meanwhile (`ROOM_CLOSED`; the session got
/// `Left` for it too).
fn answer_not_seated(outbox: &Outbox, room_open: bool, request_id: u64, room_id: &str) {
    if request_id == 0 {
        return;
    }
    let error = if room_open {
        error_message(ErrorCode::NotAMember, "not a member of this room", request_id, room_id)
    } else {
        error_message(ErrorCode::RoomClosed, "room closed", request_id, room_id)
    };
    let _ = outbox.push_reliable(error);
}

/// Rooms on a thread tick in this many phases spread evenly over the period. One phase
/// for all would wake the thread least, but then every member of every room gets its
/// frame in the same instant and the transports write them in one burst (the relay
/// spends about 22 µs of CPU per frame it delivers, TLS and kernel included): in the
/// T4 load run (2,000 members on two cores) the median frame went out 15–25 ms after
/// its tick, and under 15 ms with eight phases. Eight phases cost at most eight
/// wake-ups per period.
const TICK_PHASES: u32 = 8;

impl Shard {
    /// A shard with no rooms yet, whose schedules start now; with the pool's
    /// `max_catch_up`, `empty_room_ttl` and `checkpoints` (see [`PoolConfig`](super::PoolConfig)).
    pub(super) fn new(
        pool: PoolSide,
        max_catch_up: u32,
        empty_room_ttl: Duration,
        checkpoints: Option<Checkpoints>,
        clock: Box<dyn Clock>,
    ) -> Self {
        Self {
            rooms: Vec::new(),
            index: FxHashMap::default(),
            pool,
            max_catch_up,
            empty_room_ttl,
            checkpoints,
            epoch: clock.now().instant,
            next_phase: 0,
            handed_off: false,
            busy: Busy {
                since: clock.now().instant,
                spent: Duration::ZERO,
            },
            clock,
        }
    }

    /// When the thread must wake next (see `OwnedRoom::wake_at`), and when one of
    /// its rooms ticks next: none for rooms handed off.
    pub(super) fn next_wakes(&self) -> (Option<Instant>, Option<Instant>) {
        if self.handed_off {
            return (None, None);
        }
        (self.rooms.iter()).fold((None, None), |(wake, tick), r| {
            (
                sooner(wake, r.wake_at(self.empty_room_ttl)),
                sooner(tick, r.next_tick()),
            )
        })
    }

    fn room_mut(&mut self, key: RoomKey) -> Option<&mut OwnedRoom> {
        let i = *self.index.get(&key)?;
        Some(&mut self.rooms[i])
    }

    /// Handles one command (the driver has taken `Shutdown` itself).
    pub(super) fn handle(&mut self, command: Command) {
        match command {
            Command::Create(room, shared, persistent) => {
                let now = self.clock.now().instant;
                let rate = room.config().tick_rate;
                let phase = self.next_phase;
                self.next_phase = (phase + 1) % TICK_PHASES;
                let offset = Duration::from_secs(1) * phase / (rate.max(1) * TICK_PHASES);
                let schedule = TickSchedule::on_grid(self.epoch + offset, now, rate, self.max_catch_up);
                self.index.insert(room.key(), self.rooms.len());
                self.rooms.push(OwnedRoom {
                    room: *room,
                    shared,
                    persistent,
                    schedule,
                    empty_since: Some(now),
                    joined: false,
                    checkpoints: PeriodicCheckpoints::default(),
                });
                self.pool.metrics.rooms.inc();
            }
            Command::Join {
                room,
                room_id,
                member,
                user_id,
                member_data,
                outbox,
                request_id,
                join_seq,
                reserved,
            } => match self.index.get(&room).map(|&i| &mut self.rooms[i]) {
                Some(r) => {
                    let joiner = Joiner {
                        member,
                        user_id,
                        data: member_data,
                    };
                    let now = self.clock.now();
                    let _ = (r.room).admit(joiner, outbox, request_id, join_seq, now.unix_us);
                    r.sync_members(&self.pool.metrics, now.instant);
                    if reserved {
                        r.shared.reserved.fetch_sub(1, Ordering::Release);
                    }
                }
                None => {
                    let error = error_message(ErrorCode::RoomClosed, "room closed; join again", request_id, &room_id);
                    outbox.leave_room(room, join_seq);
                    let _ = outbox.push_reliable(error);
                }
            },
            Command::Leave {
                room,
                room_id,
                member,
                outbox,
                request_id,
            } => {
                let (metrics, now) = (self.pool.metrics.clone(), self.clock.now().instant);
                let left = self.room_mut(room).map(|r| {
                    let left = r.room.leave_session(member, &outbox, request_id);
                    r.sync_members(&metrics, now);
                    left
                });
                if left != Some(true) {
                    answer_not_seated(&outbox, left.is_some(), request_id, &room_id);
                }
            }
            Command::Input {
                room,
                member,
                seq,
                payload,
            } => {
                if let Some(r) = self.room_mut(room) {
                    r.room.push_input(member, seq, payload);
                }
            }
            Command::Event { room, member, event } => {
                if let Some(r) = self.room_mut(room) {
                    r.room.push_event(member, event);
                }
            }
            Command::Resync {
                room,
                room_id,
                member,
                outbox,
                request_id,
                joined_too,
            } => match self.room_mut(room) {
                Some(r) if r.room.seated(member, &outbox) => {
                    r.room.resync(member, request_id);
                    if joined_too {
                        r.room.send_joined(member);
                    }
                    self.pool.metrics.resyncs.inc();
                }
                r => answer_not_seated(&outbox, r.is_some(), request_id, &room_id),
            },
            Command::UpdateRoom {
                room,
                room_id,
                member,
                outbox,
                request_id,
                update,
            } => match self.room_mut(room) {
                Some(r) if r.room.seated(member, &outbox) => {
                    let answer = match r.room.update_listing(member, &update, request_id) {
                        Ok(()) => {
                            crate::frame::encode_message(proto::server_message::Kind::Response(proto::Response {
                                request_id,
                                kind: Some(proto::response::Kind::Room(r.shared.info())),
                            }))
                        }
                        Err(refused) => refused,
                    };
                    let _ = outbox.push_reliable(answer);
                }
                r => answer_not_seated(&outbox, r.is_some(), request_id, &room_id),
            },
            Command::CheckpointAgain { room } => {
                if let Some(r) = self.room_mut(room) {
                    r.checkpoints.written = None;
                }
            }
            Command::HandOff => {
                if let Some(sink) = self.checkpoints.as_ref().map(|c| c.sink.clone()) {
                    let now = self.clock.now().unix_us;
                    let mut i = 0;
                    while i < self.rooms.len() {
                        // What the room was told before is done first, inputs
                        // included (they are in the checkpoint, so acknowledging
                        // them loses nothing).
                        let owned = &mut self.rooms[i];
                        let finished = catch_unwind(AssertUnwindSafe(|| owned.room.finish_pending(now)));
                        if finished.is_ok() {
                            let mut checkpoint = owned.room.checkpoint(now);
                            // What members over their share are still owed goes with it.
                            checkpoint.pending_events = owned.room.pending_events();
                            if !owned.room.failed() {
                                sink(Checkpoint::Room(Box::new(checkpoint)));
                                i += 1;
                                continue;
                            }
                        }
                        // Closed, as after any tick that panics (and its checkpoint
                        // with it: restoring an older one would lose what was
                        // acknowledged since).
                        room_panicked(&self.pool.metrics, owned.room.id());
                        let closed = self.remove_room(i);
                        self.close_room(closed, Some((ErrorCode::RoomClosed, PANICKED)));
                    }
                    sink(Checkpoint::Flushed);
                }
                // Nothing after the checkpoints: an input applied now would be
                // acknowledged to its member and lost with this node.
                self.handed_off = true;
            }
            Command::Close { room, code, message } => {
                if let Some(&i) = self.index.get(&room) {
                    let closed = self.remove_room(i);
                    self.close_room(closed, Some((code, &message)));
                }
            }
            Command::RemoveUser {
                room,
                user_id,
                message,
                ban_secs,
            } => {
                if let Some(&i) = self.index.get(&room) {
                    let (owned, now) = (&mut self.rooms[i], self.clock.now());
                    owned.room.remove_user(&user_id, &message, ban_secs, now.unix_us);
                    if let Some(c) = &self.checkpoints {
                        owned.checkpoints.write_soon(&mut owned.room, now, c);
                    }
                }
            }
            Command::Roll { room, reply } => {
                let now = self.clock.now().unix_us;
                if let Some(r) = self.room_mut(room) {
                    let _ = reply.try_send(r.room.roll(now));
                }
            }
            Command::Shutdown => {}
        }
    }

    /// Ticks the rooms that are due, closes those that ended, failed or expired.
    pub(super) fn tick_due_rooms(&mut self) {
        if self.handed_off {
            return;
        }
        let turn = self.clock.now();
        let now = turn.instant;
        // Whether a room still on this thread after this turn has members.
        let mut occupied = false;
        let mut i = 0;
        while i < self.rooms.len() {
            let owned = &mut self.rooms[i];
            // A vacant room costs nothing: nobody would see its ticks (a join is a member
            // at once), once a tick has done what the last leaves left to do. (Seats
            // kept for a restored room's members lapse in ticks: it ticks till then.) Its
            // schedule stands still, and moves on without counting when one joins
            // (`sync_members`).
            let due = if owned.room.is_vacant() {
                u32::from(owned.room.has_pending_work())
            } else {
                let (overruns, dropped) = (owned.schedule.overruns(), owned.schedule.dropped());
                let due = owned.schedule.poll(now);
                self.pool.metrics.overruns.inc_by(owned.schedule.overruns() - overruns);
                self.pool
                    .metrics
                    .dropped_ticks
                    .inc_by(owned.schedule.dropped() - dropped);
                due
            };
            let mut healthy = true;
            for _ in 0..due {
                let started = self.clock.now();
                let result = catch_unwind(AssertUnwindSafe(|| owned.room.tick(started.unix_us)));
                match result {
                    Ok(report) => {
                        if let Some(c) = &self.checkpoints {
                            owned.checkpoints.after_tick(&mut owned.room, report.tick, turn, c);
                            if owned.room.failed() {
                                break; // its simulation panicked saving: no more ticks
                            }
                        }
                        let m = &self.pool.metrics;
                        m.ticks.inc();
                        m.tick_duration
                            .observe((self.clock.now().instant - started.instant).as_secs_f64());
                        m.frames.inc_by(u64::from(report.frames));
                        m.full_frames.inc_by(u64::from(report.full_frames));
                        m.bytes_encoded
                            .inc_by((report.delta_bytes + report.full_bytes + report.own_bytes) as u64);
                        m.inputs_refused.inc_by(u64::from(report.inputs_refused));
                        if owned.room.closing().is_some() {
                            break; // the simulation ended the room
                        }
                    }
                    Err(_) => {
                        room_panicked(&self.pool.metrics, owned.room.id());
                        healthy = false;
                        break;
                    }
                }
            }
            if healthy && let Some(c) = &self.checkpoints {
                owned.checkpoints.when_due(&mut owned.room, turn, c);
            }
            // A checkpoint (after a tick, or a ban's between ticks) found the
            // simulation panicking as it saved its state.
            if healthy && owned.room.failed() {
                room_panicked(&self.pool.metrics, owned.room.id());
                healthy = false;
            }
            // Ticks evict members whose session is gone, and kept seats lapse: keep the
            // counts current.
            if owned.room.member_count() as u32 != owned.shared.members.load(Ordering::Relaxed)
                || owned.room.kept_seats() as u32 != owned.shared.kept.load(Ordering::Relaxed)
            {
                owned.sync_members(&self.pool.metrics, now);
            }
            let expired = owned.expires_at(self.empty_room_ttl).is_some_and(|at| now >= at);
            let ended = owned.room.closing().map(str::to_string);
            if healthy && !expired && ended.is_none() {
                occupied |= !owned.room.is_vacant();
                i += 1;
                continue;
            }
            let closed = self.remove_room(i);
            let why = if healthy { ended.as_deref() } else { Some(PANICKED) };
            self.close_room(closed, why.map(|why| (ErrorCode::RoomClosed, why)));
        }
        self.measure_load(now, !occupied);
    }

    /// Adds the turn that started at `started` to the thread's load, and publishes
    /// the load once its window is over, or at once as none when no room has members
    /// (`idle`: the thread may sleep for long, and would leave its last figure
    /// standing).
    fn measure_load(&mut self, started: Instant, idle: bool) {
        let now = self.clock.now().instant;
        let busy = &mut self.busy;
        busy.spent += now.saturating_duration_since(started);
        let window = now.saturating_duration_since(busy.since);
        if window >= LOAD_WINDOW || idle {
            let thousandths = if idle {
                0
            } else {
                (busy.spent.as_nanos() * 1000 / window.as_nanos()).min(1000) as u32
            };
            self.pool.load.store(thousandths, Ordering::Relaxed);
            *busy = Busy {
                since: now,
                spent: Duration::ZERO,
            };
        }
    }

    /// Takes the room at `i` off this thread.
    fn remove_room(&mut self, i: usize) -> OwnedRoom {
        let removed = self.rooms.swap_remove(i);
        self.index.remove(&removed.room.key());
        if let Some(moved) = self.rooms.get(i) {
            self.index.insert(moved.room.key(), i);
        }
        removed
    }

    /// Tells the members why (unless it closed empty), then unlists the room, so
    /// anyone who sees it gone from the directory also finds the `Left` in its outbox.
    fn close_room(&mut self, closed: OwnedRoom, why: Option<(ErrorCode, &str)>) {
        let OwnedRoom { room, shared, .. } = closed;
        let key = room.key();
        // (A simulation that panics as it is dropped takes no other room of the
        // thread with it.)
        let ended = catch_unwind(AssertUnwindSafe(move || match why {
            Some((code, message)) => room.close(code, message),
            None => drop(room),
        }));
        if ended.is_err() {
            room_panicked(&self.pool.metrics, &shared.id);
        }
        // The creator's slot and the close first: whoever sees the room gone may
        // count on the slot, and finds the close on its way (a cluster waits for it
        // before it claims the room again).
        if let Some(creator) = &shared.creator {
            self.pool.creators.release(creator);
        }
        if let Some(checkpoints) = &self.checkpoints {
            (checkpoints.sink)(Checkpoint::Closed(shared.id.clone(), key));
        }
        {
            let mut directory = self.pool.directory.lock();
            if directory.get(&shared.id).is_some_and(|h| h.key == key) {
                directory.remove(&shared.id);
            }
        }
        self.pool.room_count.fetch_sub(1, Ordering::Relaxed);
        self.pool.metrics.rooms.dec();
        if let Some(suppressed) = ROOM_LOGS.take(self.clock.now().instant) {
            let reason = why.map_or("empty", |(_, message)| message);
            tracing::info!(room = %shared.id, reason, suppressed, "room closed");
        }
        let members = shared.members.load(Ordering::Relaxed);
        self.pool.metrics.members.dec_by(i64::from(members));
    }
}

impl OwnedRoom {
    fn sync_members(&mut self, metrics: &SimMetrics, now: Instant) {
        let count = self.room.member_count() as u32;
        // Members first: a seat moves from kept to taken, and a reader that sees it no
        // longer kept sees it taken (see `RoomShared::seats_taken`).
        let before = self.shared.members.swap(count, Ordering::Release);
        self.shared.kept.store(self.room.kept_seats() as u32, Ordering::Release);
        metrics.members.inc_by(i64::from(count) - i64::from(before));
        if count > 0 && self.empty_since.is_some() {
            // The schedule stood still while the room was empty: it moves on without
            // counting the slots passed as late (or running them).
            self.schedule.skip_to(now);
        }
        // Since it emptied: a join refused or a leave of no member (the room still
        // empty) does not start the wait for its close again.
        self.empty_since = if count == 0 {
            self.empty_since.or(Some(now))
        } else {
            None
        };
        self.joined |= count > 0;
    }
}

#[cfg(test)]
mod tests;
