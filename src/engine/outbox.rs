//! A session's bounded outbox: what rooms produce for one session, waiting for the
//! transport to write it.
//!
//! Two kinds of content with different rules:
//! - **Reliable messages** (joined, presence, events, responses, errors) keep their
//!   order and are never dropped. They are bounded in count and bytes; a push over the
//!   bound marks the outbox overflowed and the transport closes the session as a slow
//!   consumer. They are numbered per session (1, 2, …; the connection's `Welcome` is
//!   not numbered). Those the transport took are kept, within half the bounds, until
//!   the client reports it received them ([`Outbox::confirm`]), because a connection
//!   that dies may never deliver what it took: a resume sends them again
//!   ([`Outbox::replay_after`]).
//! - **State frames** are superseded, never queued: at most one per room is pending.
//!   A room replacing an untaken frame encodes the new one against the client's
//!   baseline, so memory stays flat for a client that stops reading.
//!
//! What counts as the client's baseline depends on the transport ([`Delivery`]): over
//! an ordered, reliable transport (WebSocket) every frame the transport took reaches
//! the client, so the last frame taken is the baseline. Over an unreliable one (QUIC
//! datagrams) frames may be lost or reordered, so the baseline is the last tick the
//! client acknowledged ([`Outbox::ack`]).
//!
//! The lock is held only to move handles in or out (never during I/O or encoding), so
//! a simulation thread never waits on a transport.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};

use crate::engine::pacer::{self, Home};
use crate::state::Tick;

/// Identifies a room instance within a server (unique for the server's lifetime).
pub type RoomKey = u64;

/// Bounds of an outbox's reliable queue.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// Maximum reliable messages waiting.
    pub max_messages: usize,
    /// Maximum bytes of reliable messages waiting.
    pub max_bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_messages: 1024,
            max_bytes: 256 * 1024,
        }
    }
}

/// A state frame waiting to be written: the shared encoded body plus the per-member
/// field, appended at write time by [`crate::engine::envelope::encode_envelope`].
#[derive(Debug, Clone)]
pub struct PendingState {
    /// The room the frame belongs to.
    pub room: RoomKey,
    /// The frame's tick.
    pub tick: Tick,
    /// The tick this frame is a delta against (0: full snapshot).
    pub baseline: Tick,
    /// Shared encoded `StateFrame` fields (everything but the per-member ones).
    pub body: Bytes,
    /// What only this member sees, after the body: its own entities of owner-only
    /// kinds and its view's checksum ([`tickrelay_proto::delta::Encoder::encode_own`]);
    /// empty for most frames.
    pub own: Bytes,
    /// The member's last applied input sequence number.
    pub last_input_seq: u64,
    /// The tick's server time stamp (microseconds since the Unix epoch), to measure
    /// how long the frame took to reach the transport.
    pub server_time_us: u64,
    /// The room closes after this frame: the member's `Left` follows it (a transport
    /// that could deliver it after the `Left`, QUIC datagrams, sends it in order
    /// instead). Set by the room on the frames of its closing tick, and by
    /// [`Outbox::close_room`] on a frame still waiting.
    pub last: bool,
}

/// What [`Outbox::supersede_state`] found: the tick to encode against, and the
/// outbox's epoch at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Baseline {
    /// The baseline tick (0: full snapshot).
    pub tick: Tick,
    /// How frames reach the client.
    pub delivery: Delivery,
    /// Nothing of the room was ever taken or is waiting on this connection (a new
    /// member, or a session reset by a resume): its next frame is a new full
    /// snapshot, not one sent again until the client has it.
    pub fresh: bool,
    epoch: u64,
}

/// Which waiting (untaken) state frame [`Outbox::supersede_state`] keeps as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every waiting frame is replaced.
    Nothing,
    /// A full snapshot, and a delta when the client's baseline is older than this
    /// tick: the client can still apply it, and its replacement would have to be a
    /// full snapshot.
    FullOrDeltaBefore(Tick),
}

/// The waiting frame [`Outbox::supersede_state`] kept (see [`Keep`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// A full snapshot.
    Full,
    /// A delta on a baseline older than [`Keep::FullOrDeltaBefore`]'s tick.
    Delta {
        /// Its body (which other members' frames may share).
        body: Bytes,
        /// Its own part's length.
        own: usize,
    },
}

/// How state frames reach the client, which decides what its baseline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Ordered and reliable: a frame the transport took is the client's baseline.
    #[default]
    Reliable,
    /// Possibly lost or reordered: the client's baseline is the last tick it
    /// acknowledged, and only acknowledgements at or after the last full snapshot
    /// taken count (the full snapshot restarts the client's mirror).
    Acknowledged,
}

/// Per room: what the client has, as far as the outbox knows.
#[derive(Debug, Clone, Copy)]
struct RoomDelivery {
    room: RoomKey,
    /// The client's baseline (0: none; the next frame is a full snapshot).
    baseline: Tick,
    /// The tick of the last frame taken.
    taken: Tick,
    /// The tick of the first full snapshot taken since the last delta (or since the
    /// record began): acknowledgements of older ticks are ignored. Full snapshots
    /// taken after it while no acknowledgement came back (a round trip longer than a
    /// tick) keep it, so an acknowledgement of any of them counts.
    floor: Tick,
}

/// Everything taken from an outbox in one go; the transport writes it as one message.
/// Reuse one per connection: [`Outbox::poll_drain`] clears it first.
#[derive(Debug, Default)]
pub struct Batch {
    /// The connection's `Welcome` (not numbered), written before everything else.
    pub welcome: Option<Bytes>,
    /// Encoded `ServerMessage`s, in order, numbered from `first_seq`.
    pub reliable: Vec<Bytes>,
    /// The sequence number of `reliable[0]`.
    pub first_seq: u64,
    /// At most one state frame per room.
    pub states: Vec<PendingState>,
    /// State frames replaced before they were taken, since the last drain.
    pub superseded: u64,
    /// The reliable queue went over its bound: close the session as a slow consumer.
    pub overflowed: bool,
}

impl Batch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.welcome.is_none() && self.reliable.is_empty() && self.states.is_empty()
    }

    /// The bytes of its messages (a state frame's shared body counted whole).
    pub fn bytes(&self) -> usize {
        let welcome = self.welcome.as_ref().map_or(0, Bytes::len);
        let reliable: usize = self.reliable.iter().map(Bytes::len).sum();
        let states: usize = self.states.iter().map(|s| s.body.len() + s.own.len()).sum();
        welcome + reliable + states
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.welcome = None;
        self.reliable.clear();
        self.first_seq = 0;
        self.states.clear();
        self.superseded = 0;
        self.overflowed = false;
    }
}

/// A member left a room (see [`Outbox::leave_room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// The room.
    pub room: RoomKey,
    /// The session's number of the join this membership came from.
    pub join_seq: u64,
}

/// What a resume sends again ([`Outbox::replay_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replay {
    /// Messages sent again, with their numbers.
    pub sent_again: usize,
    /// Messages the client did not receive that are no longer kept: the numbers skip
    /// them.
    pub missing: u64,
}

/// The reliable queue is over its bound; the session must be closed as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbox overflowed")]
pub struct Overflow;

#[derive(Debug, Default)]
struct Inner {
    welcome: Option<Bytes>,
    /// Waiting to be taken: numbered `next_seq - reliable.len()` up to `next_seq - 1`.
    reliable: VecDeque<Bytes>,
    reliable_bytes: usize,
    /// Taken but not confirmed by the client: numbered just below `reliable`.
    taken: VecDeque<Bytes>,
    taken_bytes: usize,
    /// Of `reliable`, how many (at the front) a resume put back: they do not count
    /// against the bounds, so a resume cannot overflow the queue it refills.
    replayed: usize,
    replayed_bytes: usize,
    /// The number the next reliable message gets.
    next_seq: u64,
    /// The highest number the client confirmed it received ([`Outbox::confirm`]).
    confirmed: u64,
    states: Vec<PendingState>,
    /// For each of `states` (same index), the number the next reliable message had
    /// when it was pushed.
    states_at: Vec<u64>,
    delivery: Delivery,
    rooms: Vec<RoomDelivery>,
    superseded: u64,
    /// Rooms left since the session last looked.
    left: Vec<Left>,
    /// Rooms closed while their last frame waited ([`Outbox::close_room`]), with the
    /// number of their `Left`: a drain that takes the frame takes no message from
    /// that number on.
    closing: Vec<(RoomKey, u64)>,
    /// Incremented by [`Outbox::reset_delivered`]: a frame encoded against a baseline
    /// read before a reset must not be delivered after it.
    epoch: u64,
    waker: Option<Waker>,
    /// The I/O thread of the task `waker` wakes (see [`crate::engine::pacer`]).
    waker_home: Home,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    limits: OutboxLimits,
    closed: AtomicBool,
    /// Outside the lock: the session checks it after every inbound message.
    overflowed: AtomicBool,
    /// Whether `left` holds anything: the session looks before every inbound message,
    /// and rooms are rarely left.
    left_pending: AtomicBool,
    /// The session's connection was lost and it waits for a resume: its rooms tell
    /// their members (presence `AWAY`, then `BACK` or `LEFT`).
    away: AtomicBool,
}

impl Outbox {
    /// An empty outbox.
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            inner: Mutex::new(Inner {
                next_seq: 1,
                waker_home: pacer::NO_HOME,
                ..Inner::default()
            }),
            limits,
            closed: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            left_pending: AtomicBool::new(false),
            away: AtomicBool::new(false),
        }
    }

    /// Its bounds.
    pub fn limits(&self) -> OutboxLimits {
        self.limits
    }

    /// Bytes of reliable messages it may still queue before it overflows.
    pub fn reliable_room(&self) -> usize {
        let inner = self.inner.lock();
        (self.limits.max_bytes).saturating_sub(inner.reliable_bytes - inner.replayed_bytes)
    }

    /// Marks the session as gone for good: rooms evict members whose outbox is
    /// closed at their next tick, so a seat cannot leak even if a leave was lost.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Marks the session as waiting for a resume (its connection lost, its seats
    /// held), or back: the rooms it is in tell their members at their next tick.
    pub fn set_away(&self, away: bool) {
        self.away.store(away, Ordering::Relaxed);
    }

    /// Whether the session waits for a resume (see [`Outbox::set_away`]).
    pub fn is_away(&self) -> bool {
        self.away.load(Ordering::Relaxed)
    }

    /// Whether [`Outbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues a reliable message. Over the bound the message is dropped, the outbox is
    /// marked overflowed and the session must be closed ([`Outbox::is_overflowed`]).
    pub fn push_reliable(&self, message: Bytes) -> Result<(), Overflow> {
        self.push_locked(self.inner.lock(), message)
    }

    fn push_locked(&self, mut inner: MutexGuard<'_, Inner>, message: Bytes) -> Result<(), Overflow> {
        if self.is_overflowed()
            || inner.reliable.len() - inner.replayed >= self.limits.max_messages
            || inner.reliable_bytes - inner.replayed_bytes + message.len() > self.limits.max_bytes
        {
            self.overflowed.store(true, Ordering::Release);
            wake(inner);
            return Err(Overflow);
        }
        inner.reliable_bytes += message.len();
        inner.reliable.push_back(message);
        inner.next_seq += 1;
        wake(inner);
        Ok(())
    }

    /// Sets the connection's `Welcome`, written ahead of everything waiting and not
    /// numbered (a resumed session's new connection gets a new one).
    pub fn push_welcome(&self, message: Bytes) {
        let mut inner = self.inner.lock();
        inner.welcome = Some(message);
        wake(inner);
    }

    /// The client received every reliable message up to `seq`: they need not be kept
    /// for a resume any more. A number beyond what was taken is ignored.
    pub fn confirm(&self, seq: u64) {
        let mut inner = self.inner.lock();
        if seq < inner.first_waiting() {
            inner.forget_taken_through(seq);
            inner.confirmed = inner.confirmed.max(seq);
        }
    }

    /// A resume: the client received reliable messages up to `received` (at least
    /// what it confirmed), so those taken after it go out again, ahead of what is
    /// waiting and with their numbers. When some were already forgotten (beyond the
    /// kept half of the bounds), the client sees the gap in the numbers.
    pub fn replay_after(&self, received: u64) -> Replay {
        let mut inner = self.inner.lock();
        // What the client has is forgotten; the rest goes back to the queue. (A
        // client claiming less than it confirmed missed nothing it confirmed.)
        let received = received.max(inner.confirmed).min(inner.first_waiting() - 1);
        // A resume confirms what it claims, as a ping does.
        inner.confirmed = received;
        inner.forget_taken_through(received);
        let replayed = inner.taken.len();
        let first_kept = inner.first_waiting() - replayed as u64;
        let missing = first_kept - 1 - received;
        while let Some(m) = inner.taken.pop_back() {
            inner.taken_bytes -= m.len();
            inner.reliable_bytes += m.len();
            inner.replayed_bytes += m.len();
            inner.replayed += 1;
            inner.reliable.push_front(m);
        }
        if replayed > 0 {
            wake(inner);
        }
        Replay {
            sent_again: replayed,
            missing,
        }
    }

    /// How the transport it writes to delivers state frames.
    pub fn delivery(&self) -> Delivery {
        self.inner.lock().delivery
    }

    /// Whether a full snapshot of `room` waits untaken.
    pub fn waits_full(&self, room: RoomKey) -> bool {
        let inner = self.inner.lock();
        inner.states.iter().any(|s| s.room == room && s.baseline == 0)
    }

    /// An empty outbox for a transport with the given delivery.
    pub fn with_delivery(limits: OutboxLimits, delivery: Delivery) -> Self {
        let outbox = Self::new(limits);
        outbox.inner.lock().delivery = delivery;
        outbox
    }

    /// First half of replacing a room's state frame: drops the room's pending
    /// (untaken) frame, if any, and returns the baseline the next frame must be
    /// encoded against: the client's baseline for that room (see [`Delivery`]), or 0
    /// (a full snapshot) when there is none or when the dropped frame was itself a
    /// full snapshot (the client is waiting for one). A waiting frame that `keep`
    /// names is kept instead, and `Err` returned: a connection that does not take it
    /// (lost, or not reading) would otherwise cost its room a new full snapshot at
    /// every change. Follow with [`Outbox::push_state`], passing the returned
    /// [`Baseline`].
    pub fn supersede_state(&self, room: RoomKey, keep: Keep) -> Result<Baseline, Kept> {
        let mut inner = self.inner.lock();
        let mut dropped_full = false;
        if let Some(i) = inner.states.iter().position(|s| s.room == room) {
            if let Keep::FullOrDeltaBefore(tick) = keep {
                let waiting = &inner.states[i];
                if waiting.baseline == 0 {
                    return Err(Kept::Full);
                }
                if inner.record(room).is_some_and(|r| r.baseline < tick) {
                    return Err(Kept::Delta {
                        body: waiting.body.clone(),
                        own: waiting.own.len(),
                    });
                }
            }
            dropped_full = inner.states.swap_remove(i).baseline == 0;
            inner.states_at.swap_remove(i);
            inner.superseded += 1;
        }
        let record = inner.record(room);
        Ok(Baseline {
            tick: if dropped_full {
                0
            } else {
                record.map_or(0, |r| r.baseline)
            },
            delivery: inner.delivery,
            fresh: !dropped_full && record.is_none(),
            epoch: inner.epoch,
        })
    }

    /// Second half: queues the room's new state frame, encoded against `baseline`. If
    /// the outbox was reset in between (a resume), the frame is dropped and `false`
    /// returned: the caller must send a full snapshot instead.
    pub fn push_state(&self, state: PendingState, baseline: Baseline) -> bool {
        let mut inner = self.inner.lock();
        if inner.epoch != baseline.epoch && state.baseline != 0 {
            return false;
        }
        debug_assert!(inner.states.iter().all(|s| s.room != state.room));
        let at = inner.next_seq;
        inner.states.push(state);
        inner.states_at.push(at);
        wake(inner);
        true
    }

    /// The client's baseline for `room` (0: none).
    pub fn delivered(&self, room: RoomKey) -> Tick {
        self.inner.lock().record(room).map_or(0, |r| r.baseline)
    }

    /// The client acknowledged `tick` of `room` (or the transport knows it arrived).
    /// Only counts with [`Delivery::Acknowledged`], for a tick between the last full
    /// snapshot taken and the last frame taken, and newer than the current baseline;
    /// anything else is ignored (a late, duplicate or made-up acknowledgement).
    pub fn ack(&self, room: RoomKey, tick: Tick) {
        let mut inner = self.inner.lock();
        if inner.delivery != Delivery::Acknowledged {
            return;
        }
        if let Some(r) = inner.rooms.iter_mut().find(|r| r.room == room)
            && tick >= r.floor
            && tick <= r.taken
            && tick > r.baseline
        {
            r.baseline = tick;
        }
    }

    /// The member is out of `room`: it left, was refused or removed (a room that
    /// closes calls [`Outbox::close_room`]). A pending frame is dropped, the next join
    /// starts from a full snapshot, and the session learns of it from
    /// [`Outbox::take_left`]. `join_seq` is the session's number of the join this
    /// ends, so a notice about an earlier join cannot undo a later one.
    pub fn leave_room(&self, room: RoomKey, join_seq: u64) {
        let mut inner = self.inner.lock();
        if let Some(i) = inner.states.iter().position(|s| s.room == room) {
            inner.states.swap_remove(i);
            inner.states_at.swap_remove(i);
        }
        inner.rooms.retain(|r| r.room != room);
        inner.left.push(Left { room, join_seq });
        self.left_pending.store(true, Ordering::Release);
    }

    /// The room closed: as [`Outbox::leave_room`] then [`Outbox::push_reliable`] of
    /// `left` (the member's `Left`), under one lock (nothing the session answers can
    /// go before the `Left`), except that the room's waiting frame (the state of its
    /// last tick, or an older one kept for a client that took nothing: see
    /// [`Keep`]) is still delivered, with the messages before the `Left` only, so the
    /// client has the room's latest state it was sent before it hears the room closed.
    pub fn close_room(&self, room: RoomKey, join_seq: u64, left: Bytes) -> Result<(), Overflow> {
        let mut inner = self.inner.lock();
        if let Some(waiting) = inner.states.iter_mut().find(|s| s.room == room) {
            waiting.last = true;
            let left_seq = inner.next_seq;
            inner.closing.push((room, left_seq));
        } else {
            inner.rooms.retain(|r| r.room != room);
        }
        inner.left.push(Left { room, join_seq });
        self.left_pending.store(true, Ordering::Release);
        self.push_locked(inner, left)
    }

    /// Moves the rooms left since the last call into `out` (cleared first).
    pub fn take_left(&self, out: &mut Vec<Left>) {
        out.clear();
        // Read before the swap: a swap writes, to a line the room's thread reads
        // every tick, and the session looks before every message it handles.
        if self.left_pending.load(Ordering::Relaxed) && self.left_pending.swap(false, Ordering::Acquire) {
            std::mem::swap(out, &mut self.inner.lock().left);
        }
    }

    /// Forgets what was delivered in every room, so each room's next frame is a full
    /// snapshot (after a reconnect, the new connection's mirror starts empty), and
    /// switches to the new connection's delivery (a session may resume over another
    /// transport).
    pub fn reset_delivered(&self, delivery: Delivery) {
        let mut inner = self.inner.lock();
        inner.closing.clear();
        inner.rooms.clear();
        inner.states.clear();
        inner.states_at.clear();
        inner.delivery = delivery;
        inner.epoch += 1;
    }

    /// True once a reliable push went over the bound.
    pub fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// State frames replaced before the transport took them, since the last call.
    pub fn take_superseded(&self) -> u64 {
        std::mem::take(&mut self.inner.lock().superseded)
    }

    /// Moves everything pending into `batch` (cleared first, with the superseded
    /// count and the overflow flag: everything the driver needs, in one lock) and
    /// returns `Ready`, or registers the waker and returns `Pending` when there is
    /// nothing: the next push wakes it. Also `Ready` when overflowed, so the transport
    /// notices promptly.
    pub fn poll_drain(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<()> {
        let mut inner = self.inner.lock();
        // Checked under the lock that registers the waker: no lost wake-up.
        if self.drain_locked(&mut inner, batch) {
            return Poll::Ready(());
        }
        if !inner.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            inner.waker = Some(cx.waker().clone());
            inner.waker_home = pacer::home();
        }
        Poll::Pending
    }

    /// Moves everything pending into `batch` (cleared first); returns whether anything
    /// was moved (or the outbox overflowed). Taking a state frame records its tick:
    /// with [`Delivery::Reliable`] it becomes the room's baseline; with
    /// [`Delivery::Acknowledged`] a full snapshot resets the baseline until the client
    /// acknowledges a tick at or after it.
    pub fn drain(&self, batch: &mut Batch) -> bool {
        self.drain_locked(&mut self.inner.lock(), batch)
    }

    fn drain_locked(&self, inner: &mut Inner, batch: &mut Batch) -> bool {
        batch.clear();
        batch.overflowed = self.is_overflowed();
        batch.welcome = inner.welcome.take();
        batch.first_seq = inner.first_waiting();
        // A closed room's last frame goes before its Left: while such a frame waits,
        // only the messages numbered before the Left are taken with it (the rest at
        // the next drain).
        let first_seq = batch.first_seq;
        let cut = (inner.closing.iter())
            .filter(|&&(room, _)| inner.states.iter().any(|s| s.room == room))
            .map(|&(_, seq)| seq.saturating_sub(first_seq) as usize)
            .min()
            .unwrap_or(usize::MAX)
            .min(inner.reliable.len());
        let holding = cut < inner.reliable.len();
        batch.reliable.extend(inner.reliable.drain(..cut));
        // (Replayed messages are the first ones.)
        let replayed_taken = inner.replayed.min(cut);
        inner.replayed -= replayed_taken;
        // Keep what was taken for a resume, within half the bounds (oldest out first).
        for (i, m) in batch.reliable.iter().enumerate() {
            inner.reliable_bytes -= m.len();
            if i < replayed_taken {
                inner.replayed_bytes -= m.len();
            }
            inner.taken_bytes += m.len();
            inner.taken.push_back(m.clone());
        }
        while inner.taken.len() > self.limits.max_messages / 2 || inner.taken_bytes > self.limits.max_bytes / 2 {
            match inner.taken.pop_front() {
                Some(m) => inner.taken_bytes -= m.len(),
                None => break,
            }
        }
        // A frame goes after every message queued before it: while a closed room's
        // `Left` is held back, the frames pushed after it wait too.
        let held_from = first_seq + cut as u64;
        if !holding || inner.states_at.iter().all(|&at| at <= held_from) {
            std::mem::swap(&mut batch.states, &mut inner.states);
            inner.states_at.clear();
        } else {
            let mut i = 0;
            while i < inner.states.len() {
                if inner.states_at[i] <= held_from {
                    batch.states.push(inner.states.swap_remove(i));
                    inner.states_at.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
        let reliable = inner.delivery == Delivery::Reliable;
        for state in &batch.states {
            let (i, fresh) = match inner.rooms.iter().position(|r| r.room == state.room) {
                Some(i) => (i, false),
                None => {
                    let fresh = RoomDelivery {
                        room: state.room,
                        baseline: 0,
                        taken: 0,
                        floor: 0,
                    };
                    inner.rooms.push(fresh);
                    (inner.rooms.len() - 1, true)
                }
            };
            let r = &mut inner.rooms[i];
            r.taken = state.tick;
            if reliable {
                r.baseline = state.tick;
            } else if state.baseline == 0 {
                // Only the first full snapshot of a run moves the floor (a baseline of
                // 0 means no acknowledgement came back since the last one).
                if fresh || r.baseline != 0 {
                    r.floor = state.tick;
                }
                r.baseline = 0;
            }
        }
        // Closed rooms whose last frame was taken (or dropped) are done with.
        if !inner.closing.is_empty() {
            let Inner {
                closing, rooms, states, ..
            } = &mut *inner;
            closing.retain(|&(room, _)| {
                let waiting = states.iter().any(|s| s.room == room);
                if !waiting {
                    rooms.retain(|r| r.room != room);
                }
                waiting
            });
        }
        let ready = !batch.is_empty() || batch.overflowed;
        if ready {
            batch.superseded = std::mem::take(&mut inner.superseded);
        }
        ready
    }
}

impl Inner {
    /// What was delivered of `room` on this connection, if anything was taken.
    fn record(&self, room: RoomKey) -> Option<&RoomDelivery> {
        self.rooms.iter().find(|r| r.room == room)
    }

    /// The number of the first reliable message waiting (`next_seq` if none is).
    fn first_waiting(&self) -> u64 {
        self.next_seq - self.reliable.len() as u64
    }

    /// Forgets the taken messages numbered up to `seq`.
    fn forget_taken_through(&mut self, seq: u64) {
        let first_taken = self.first_waiting() - self.taken.len() as u64;
        for _ in first_taken..=seq {
            match self.taken.pop_front() {
                Some(m) => self.taken_bytes -= m.len(),
                None => break,
            }
        }
    }
}

/// Wakes the driver waiting on the outbox, after releasing the lock: the woken task
/// may run at once on another core and take the lock itself. (On a simulation
/// thread, the wake-up waits for the end of its turn: see [`pacer::wake`].)
fn wake(mut inner: MutexGuard<'_, Inner>) {
    let waker = inner.waker.take();
    let home = inner.waker_home;
    drop(inner);
    if let Some(waker) = waker {
        pacer::wake(waker, home);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(room: RoomKey, tick: Tick, baseline: Tick) -> PendingState {
        PendingState {
            room,
            tick,
            baseline,
            body: Bytes::new(),
            own: Bytes::new(),
            last_input_seq: 0,
            server_time_us: 0,
            last: false,
        }
    }

    #[test]
    fn state_frames_are_superseded_against_the_delivered_tick() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert_eq!(b.tick, 0);
        assert!(outbox.push_state(state(1, 1, 0), b));
        assert!(outbox.drain(&mut batch));
        assert_eq!(outbox.delivered(1), 1);

        // The client stops reading: ticks 2..=50 each replace the previous one.
        for tick in 2..=50 {
            let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
            assert_eq!(b.tick, 1, "baseline stays at what was taken");
            assert!(outbox.push_state(state(1, tick, 1), b));
        }
        assert_eq!(outbox.take_superseded(), 48);
        assert_eq!(outbox.take_superseded(), 0);
        assert!(outbox.drain(&mut batch));
        assert_eq!(batch.states.len(), 1);
        assert_eq!(batch.states[0].tick, 50);
        assert_eq!(outbox.delivered(1), 50);
    }

    /// A full snapshot waiting untaken is kept when asked; a delta waiting is kept
    /// when the client's baseline is older than the tick asked, and replaced
    /// otherwise.
    #[test]
    fn a_waiting_frame_is_kept_when_asked() {
        let outbox = Outbox::new(OutboxLimits::default());
        let keep_full = Keep::FullOrDeltaBefore(0);
        let b = outbox.supersede_state(1, keep_full).unwrap();
        assert!(outbox.push_state(state(1, 10, 0), b));
        assert_eq!(outbox.supersede_state(1, keep_full), Err(Kept::Full));
        assert_eq!(outbox.take_superseded(), 0);
        let b = outbox.supersede_state(1, Keep::Nothing).expect("replaced");
        assert_eq!((b.tick, b.fresh), (0, false), "a full snapshot again, not a new one");
        assert!(outbox.push_state(state(1, 11, 0), b));
        let mut batch = Batch::default();
        assert!(outbox.drain(&mut batch));
        assert_eq!(batch.states[0].tick, 11);

        let keep_old_deltas = Keep::FullOrDeltaBefore(11);
        let b = outbox.supersede_state(1, keep_old_deltas).unwrap();
        assert!(outbox.push_state(state(1, 12, 11), b));
        let b = outbox
            .supersede_state(1, keep_old_deltas)
            .expect("a delta on a baseline asked is replaced");
        assert_eq!(b.tick, 11);
        let delta = PendingState {
            body: Bytes::from_static(b"delta"),
            ..state(1, 13, 11)
        };
        assert!(outbox.push_state(delta, b));
        let keep_old_deltas = Keep::FullOrDeltaBefore(12);
        assert_eq!(
            outbox.supersede_state(1, keep_old_deltas),
            Err(Kept::Delta {
                body: Bytes::from_static(b"delta"),
                own: 0
            })
        );
        assert!(outbox.drain(&mut batch));
        assert_eq!(batch.states[0].tick, 13, "the kept delta is taken");
    }

    /// With acknowledged delivery, what decides is the baseline acknowledgements
    /// moved to, not the one the waiting delta was encoded against.
    #[test]
    fn a_waiting_delta_is_kept_by_the_acknowledged_baseline() {
        let outbox = Outbox::with_delivery(OutboxLimits::default(), Delivery::Acknowledged);
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 10, 0), b));
        assert!(outbox.drain(&mut batch));
        outbox.ack(1, 10);
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 11, 10), b));
        assert!(outbox.drain(&mut batch));
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 12, 10), b));
        let keep_old_deltas = Keep::FullOrDeltaBefore(11);
        assert!(matches!(
            outbox.supersede_state(1, keep_old_deltas),
            Err(Kept::Delta { .. })
        ));
        outbox.ack(1, 11); // the frame taken before arrived
        let b = outbox
            .supersede_state(1, keep_old_deltas)
            .expect("its baseline moved: replaced");
        assert_eq!(b.tick, 11);
    }

    /// A room closed while its last frame waits: the frame is taken first, then the
    /// `Left` and what follows it, in the order queued; with no frame waiting, the
    /// `Left` at once.
    #[test]
    fn a_closed_rooms_last_frame_goes_before_its_left() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 7, 0), b));
        outbox.close_room(1, 3, Bytes::from_static(b"left 1")).unwrap();
        outbox.close_room(2, 4, Bytes::from_static(b"left 2")).unwrap();
        let mut left = Vec::new();
        outbox.take_left(&mut left);
        let rooms: Vec<RoomKey> = left.iter().map(|l| l.room).collect();
        assert_eq!(rooms, [1, 2], "the session learns of both at once");
        assert!(outbox.drain(&mut batch));
        assert_eq!((batch.states.len(), batch.states[0].tick), (1, 7));
        assert!(batch.states[0].last, "the room's last frame");
        assert!(batch.reliable.is_empty(), "nothing from the Left on");
        assert!(outbox.drain(&mut batch), "the Lefts wait for the next write");
        assert_eq!(
            (batch.first_seq, &batch.reliable[..]),
            (1, &[Bytes::from_static(b"left 1"), Bytes::from_static(b"left 2")][..])
        );
        assert_eq!(outbox.delivered(1), 0, "nothing kept of the closed room");
        assert!(!outbox.drain(&mut batch));
    }

    /// A room closes with its last frame waiting, and before the transport takes it
    /// another room answers a join of this member (its `Joined`, then its first
    /// frame): the drain that takes the closed room's frame, stopping the reliable
    /// messages at its `Left`, leaves the frames pushed after that `Left` too (the
    /// new room's snapshot must follow its `Joined`, or the client drops it while
    /// the outbox counts it delivered).
    #[test]
    fn a_frame_never_goes_before_the_joined_queued_before_it() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 7, 0), b));
        outbox.close_room(1, 3, Bytes::from_static(b"left 1")).unwrap();
        // Room 2's tick: the Joined, then the first full snapshot.
        outbox.push_reliable(Bytes::from_static(b"joined 2")).unwrap();
        let b = outbox.supersede_state(2, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(2, 40, 0), b));
        assert!(outbox.drain(&mut batch));
        let frames: Vec<RoomKey> = batch.states.iter().map(|s| s.room).collect();
        let joined_taken = batch.reliable.iter().any(|m| &m[..] == b"joined 2");
        assert!(
            joined_taken || !frames.contains(&2),
            "room 2's frame taken ({frames:?}) before its Joined ({:?})",
            batch.reliable
        );
    }

    /// The same with a room the member is already in: its event of tick 41 (queued
    /// after the closed room's `Left`) goes out before its frame of tick 41.
    #[test]
    fn a_rooms_event_never_goes_after_the_frame_of_its_tick() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(2, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(2, 40, 0), b));
        assert!(outbox.drain(&mut batch));
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 7, 0), b));
        outbox.close_room(1, 3, Bytes::from_static(b"left 1")).unwrap();
        outbox
            .push_reliable(Bytes::from_static(b"event of room 2, tick 41"))
            .unwrap();
        let b = outbox.supersede_state(2, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(2, 41, 40), b));
        assert!(outbox.drain(&mut batch));
        let frame_41 = batch.states.iter().any(|s| s.room == 2);
        let event_41 = !batch.reliable.is_empty();
        assert!(
            !frame_41 || event_41,
            "room 2's frame of tick 41 goes before its event of tick 41"
        );
    }

    /// A frame pushed as its room's last is taken as such however soon (before the
    /// room's close is queued, even), and only that frame.
    #[test]
    fn a_frame_marked_last_is_told_as_its_rooms_last() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        for room in [1, 2] {
            let b = outbox.supersede_state(room, Keep::Nothing).unwrap();
            let last = room == 2;
            assert!(outbox.push_state(
                PendingState {
                    last,
                    ..state(room, 7, 0)
                },
                b
            ));
        }
        assert!(outbox.drain(&mut batch));
        let marked: Vec<RoomKey> = batch.states.iter().filter(|s| s.last).map(|s| s.room).collect();
        assert_eq!((batch.states.len(), &marked[..]), (2, &[2][..]));
        outbox.close_room(2, 3, Bytes::from_static(b"left 2")).unwrap();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 8, 7), b));
        assert!(outbox.drain(&mut batch));
        let marked = batch.states.iter().filter(|s| s.last).count();
        assert_eq!((batch.states.len(), marked), (1, 0), "{:?}", batch.states);
    }

    /// A closed room's frame dropped without being taken (the member left it again,
    /// say) holds nothing back: its `Left` and what follows go at the next drain.
    #[test]
    fn a_closed_rooms_frame_dropped_holds_nothing_back() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 7, 0), b));
        outbox.close_room(1, 3, Bytes::from_static(b"left 1")).unwrap();
        outbox.push_reliable(Bytes::from_static(b"after")).unwrap();
        outbox.leave_room(1, 3);
        assert!(outbox.drain(&mut batch));
        assert!(batch.states.is_empty());
        assert_eq!(
            &batch.reliable[..],
            [Bytes::from_static(b"left 1"), Bytes::from_static(b"after")]
        );
    }

    /// A resume drops the closed room's last frame (the new connection's mirror starts
    /// empty): its `Left` is queued then.
    #[test]
    fn a_reset_queues_the_left_of_a_closed_room_at_once() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 7, 0), b));
        outbox.close_room(1, 3, Bytes::from_static(b"left")).unwrap();
        outbox.reset_delivered(Delivery::Reliable);
        assert!(outbox.drain(&mut batch));
        assert!(batch.states.is_empty());
        assert_eq!(&batch.reliable[..], [Bytes::from_static(b"left")]);
    }

    #[test]
    fn an_untaken_full_snapshot_is_only_replaced_by_a_full_snapshot() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 1, 0), b));
        outbox.drain(&mut batch);
        // A resync queues a full snapshot at tick 2, not taken before tick 3.
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 2, 0), b));
        assert_eq!(
            outbox.supersede_state(1, Keep::Nothing).unwrap().tick,
            0,
            "tick 3 must be full too"
        );
    }

    #[test]
    fn a_reset_between_the_halves_refuses_a_stale_delta() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 1, 0), b));
        outbox.drain(&mut batch);
        let stale = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert_eq!(stale.tick, 1);
        outbox.reset_delivered(Delivery::Reliable); // a resume, on another thread
        assert!(!outbox.push_state(state(1, 2, 1), stale));
        assert_eq!(outbox.supersede_state(1, Keep::Nothing).unwrap().tick, 0);
    }

    #[test]
    fn acknowledged_delivery_uses_the_last_acknowledged_tick() {
        let outbox = Outbox::with_delivery(OutboxLimits::default(), Delivery::Acknowledged);
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 10, 0), b));
        outbox.drain(&mut batch);
        // Taken but not acknowledged: still no baseline, the next frame is full too.
        assert_eq!(outbox.supersede_state(1, Keep::Nothing).unwrap().tick, 0);
        outbox.ack(1, 10);
        assert_eq!(outbox.delivered(1), 10);
        for tick in 11..=14 {
            let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
            assert_eq!(b.tick, 10);
            assert!(outbox.push_state(state(1, tick, 10), b));
            outbox.drain(&mut batch);
        }
        outbox.ack(1, 13);
        outbox.ack(1, 12); // late: older than the baseline
        assert_eq!(outbox.delivered(1), 13);
        outbox.ack(1, 99); // never sent
        assert_eq!(outbox.delivered(1), 13);
        outbox.ack(2, 13); // another room
        assert_eq!(outbox.delivered(2), 0);

        // A full snapshot (a resync) restarts the mirror: older acknowledgements
        // that arrive afterwards do not count.
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 15, 0), b));
        outbox.drain(&mut batch);
        assert_eq!(outbox.delivered(1), 0);
        outbox.ack(1, 14);
        assert_eq!(outbox.delivered(1), 0);
        outbox.ack(1, 15);
        assert_eq!(outbox.delivered(1), 15);

        // A round trip longer than a tick: full snapshots go out every tick until one
        // is acknowledged, and an acknowledgement of any of them counts (one of the
        // first only arrives after the next was taken).
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 20, 0), b));
        outbox.drain(&mut batch);
        for tick in 21..=23 {
            let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
            assert_eq!(b.tick, 0, "no baseline yet: another full snapshot");
            assert!(outbox.push_state(state(1, tick, 0), b));
            outbox.drain(&mut batch);
        }
        outbox.ack(1, 19); // before the run
        assert_eq!(outbox.delivered(1), 0);
        outbox.ack(1, 21);
        assert_eq!(outbox.delivered(1), 21);
    }

    #[test]
    fn reliable_delivery_ignores_acknowledgements() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 3, 0), b));
        outbox.drain(&mut batch);
        outbox.ack(1, 2);
        assert_eq!(outbox.delivered(1), 3);
        // A resume over a lossy transport switches the rule.
        outbox.reset_delivered(Delivery::Acknowledged);
        let b = outbox.supersede_state(1, Keep::Nothing).unwrap();
        assert!(outbox.push_state(state(1, 4, 0), b));
        outbox.drain(&mut batch);
        assert_eq!(outbox.delivered(1), 0);
    }

    #[test]
    fn reliable_queue_is_bounded() {
        let outbox = Outbox::new(OutboxLimits {
            max_messages: 2,
            max_bytes: 100,
        });
        outbox.push_reliable(Bytes::from_static(b"a")).unwrap();
        outbox.push_reliable(Bytes::from_static(b"b")).unwrap();
        assert_eq!(outbox.push_reliable(Bytes::from_static(b"c")), Err(Overflow));
        assert!(outbox.is_overflowed());
        let mut batch = Batch::default();
        outbox.drain(&mut batch);
        assert_eq!(batch.reliable, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        // Overflow is sticky: the session is closed, not resumed from a gap.
        assert_eq!(outbox.push_reliable(Bytes::from_static(b"d")), Err(Overflow));
    }

    fn numbered(outbox: &Outbox) -> (u64, Vec<Bytes>) {
        let mut batch = Batch::default();
        outbox.drain(&mut batch);
        (batch.first_seq, batch.reliable)
    }

    #[test]
    fn taken_messages_are_sent_again_after_what_the_client_received() {
        let outbox = Outbox::new(OutboxLimits::default());
        outbox.push_welcome(Bytes::from_static(b"w"));
        for m in [&b"a"[..], b"b", b"c"] {
            outbox.push_reliable(Bytes::from_static(m)).unwrap();
        }
        let mut batch = Batch::default();
        outbox.drain(&mut batch);
        assert_eq!(
            batch.welcome,
            Some(Bytes::from_static(b"w")),
            "the welcome is not numbered"
        );
        assert_eq!((batch.first_seq, batch.reliable.len()), (1, 3));
        outbox.push_reliable(Bytes::from_static(b"d")).unwrap();
        // The connection died; the client had received 1 ("a"). A new welcome goes
        // first, then 2 and 3 again, then 4, which was never taken.
        outbox.push_welcome(Bytes::from_static(b"w2"));
        assert_eq!(outbox.replay_after(1).sent_again, 2);
        outbox.drain(&mut batch);
        assert_eq!(batch.welcome, Some(Bytes::from_static(b"w2")));
        assert_eq!(batch.first_seq, 2);
        assert_eq!(
            batch.reliable,
            vec![
                Bytes::from_static(b"b"),
                Bytes::from_static(b"c"),
                Bytes::from_static(b"d")
            ]
        );
        // Confirmed messages are forgotten; a confirmation beyond what was taken is
        // ignored.
        outbox.confirm(3);
        outbox.confirm(99);
        let replay = outbox.replay_after(0);
        assert_eq!(replay.sent_again, 1, "only 4 is still kept");
        assert_eq!(replay.missing, 0, "what the client confirmed is not missing");
        assert_eq!(numbered(&outbox), (4, vec![Bytes::from_static(b"d")]));
        // A resume claiming more than was taken: everything arrived, nothing again.
        assert_eq!(outbox.replay_after(99).sent_again, 0);
        outbox.push_reliable(Bytes::from_static(b"e")).unwrap();
        assert_eq!(numbered(&outbox).0, 5, "numbering continues");
        assert_eq!(
            outbox.replay_after(4).sent_again,
            1,
            "5 is kept after a claim of everything before it"
        );
    }

    #[test]
    fn a_resume_does_not_overflow_the_queue_it_refills() {
        let outbox = Outbox::new(OutboxLimits {
            max_messages: 4,
            max_bytes: 1024,
        });
        for m in [&b"a"[..], b"b"] {
            outbox.push_reliable(Bytes::from_static(m)).unwrap();
        }
        numbered(&outbox);
        for m in [&b"c"[..], b"d", b"e"] {
            outbox.push_reliable(Bytes::from_static(m)).unwrap();
        }
        assert_eq!(outbox.replay_after(0).sent_again, 2);
        // Five waiting, two of them sent again: one more still fits the bound of four.
        outbox.push_reliable(Bytes::from_static(b"f")).unwrap();
        assert_eq!(outbox.push_reliable(Bytes::from_static(b"g")), Err(Overflow));
    }

    #[test]
    fn what_is_kept_for_a_resume_is_bounded_by_half_the_queue_bounds() {
        let outbox = Outbox::new(OutboxLimits {
            max_messages: 8,
            max_bytes: 1024,
        });
        for round in 0..3u8 {
            for i in 0..4u8 {
                outbox.push_reliable(Bytes::from(vec![round * 4 + i])).unwrap();
            }
            numbered(&outbox);
        }
        // 12 taken, the last 4 kept: a client that received only 2 sees a gap (3 to 8).
        assert_eq!(
            outbox.replay_after(2),
            Replay {
                sent_again: 4,
                missing: 6
            }
        );
        let (first, messages) = numbered(&outbox);
        assert_eq!(first, 9);
        assert_eq!(messages.iter().map(|m| m[0]).collect::<Vec<_>>(), vec![8, 9, 10, 11]);
    }

    #[test]
    fn byte_bound_applies() {
        let outbox = Outbox::new(OutboxLimits {
            max_messages: 100,
            max_bytes: 10,
        });
        outbox.push_reliable(Bytes::from(vec![0; 8])).unwrap();
        assert_eq!(outbox.push_reliable(Bytes::from(vec![0; 3])), Err(Overflow));
    }

    #[test]
    fn poll_drain_wakes_on_push() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::task::Wake;

        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        assert!(outbox.poll_drain(&mut cx, &mut batch).is_pending());
        outbox.push_reliable(Bytes::from_static(b"x")).unwrap();
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(outbox.poll_drain(&mut cx, &mut batch).is_ready());
        assert_eq!(batch.reliable.len(), 1);
    }

    /// A resume with `received=n` confirms every message up to n, as
    /// `Ping{received_seq}` does: a later resume claiming less counts none of them
    /// lost (or every room would send its `Joined` again).
    #[test]
    fn a_resume_confirms_as_a_ping_does() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        for m in [&b"a"[..], b"b", b"c"] {
            outbox.push_reliable(Bytes::from_static(m)).unwrap();
        }
        assert!(outbox.drain(&mut batch));
        // As after a Ping{received_seq: 3}, a resume claiming 0 misses nothing:
        let pinged = Outbox::new(OutboxLimits::default());
        for m in [&b"a"[..], b"b", b"c"] {
            pinged.push_reliable(Bytes::from_static(m)).unwrap();
        }
        assert!(pinged.drain(&mut batch));
        pinged.confirm(3);
        assert_eq!(pinged.replay_after(0).missing, 0);
        // A resume that received all three confirms them too; the next one claiming 0
        // should miss nothing either.
        assert_eq!(outbox.replay_after(3).missing, 0);
        assert_eq!(outbox.replay_after(0).missing, 0, "confirmed by the first resume");
    }
}
