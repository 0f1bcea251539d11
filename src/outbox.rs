//! A session's bounded outbox: what rooms produce for one session, waiting for the
//! transport to write it.
//!
//! Two kinds of content with different rules:
//! - **Reliable messages** (joined, presence, events, responses, errors) keep their
//!   order and are never dropped. They are bounded in count and bytes; a push over the
//!   bound marks the outbox overflowed and the transport closes the session as a slow
//!   consumer.
//! - **State frames** are superseded, never queued: at most one per room is pending.
//!   A room replacing an untaken frame encodes the new one against the last frame the
//!   transport actually took (the client's real baseline), so memory stays flat for a
//!   client that stops reading.
//!
//! The lock is held only to move handles in or out (never during I/O or encoding), so
//! a simulation thread never waits on a transport.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;

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
/// field, appended at write time by [`crate::frame::encode_batch`].
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
    /// The member's last applied input sequence number.
    pub last_input_seq: u64,
}

/// What [`Outbox::supersede_state`] found: the tick to encode against, and the
/// outbox's epoch at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Baseline {
    /// The baseline tick (0: full snapshot).
    pub tick: Tick,
    epoch: u64,
}

/// Everything taken from an outbox in one go; the transport writes it as one message.
/// Reuse one per connection: [`Outbox::poll_drain`] clears it first.
#[derive(Debug, Default)]
pub struct Batch {
    /// Encoded `ServerMessage`s, in order.
    pub reliable: Vec<Bytes>,
    /// At most one state frame per room.
    pub states: Vec<PendingState>,
}

impl Batch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.reliable.is_empty() && self.states.is_empty()
    }
}

/// The reliable queue is over its bound; the session must be closed as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbox overflowed")]
pub struct Overflow;

#[derive(Debug, Default)]
struct Inner {
    reliable: VecDeque<Bytes>,
    reliable_bytes: usize,
    states: Vec<PendingState>,
    /// Per room: the tick of the last state frame the transport took.
    delivered: Vec<(RoomKey, Tick)>,
    overflowed: bool,
    superseded: u64,
    /// Incremented by [`Outbox::reset_delivered`]: a frame encoded against a baseline
    /// read before a reset must not be delivered after it.
    epoch: u64,
    waker: Option<Waker>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    limits: OutboxLimits,
    closed: AtomicBool,
}

impl Outbox {
    /// An empty outbox.
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
            closed: AtomicBool::new(false),
        }
    }

    /// Marks the session as gone for good: rooms evict members whose outbox is
    /// closed at their next tick, so a seat cannot leak even if a leave was lost.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether [`Outbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues a reliable message. Over the bound the message is dropped, the outbox is
    /// marked overflowed and the session must be closed ([`Outbox::is_overflowed`]).
    pub fn push_reliable(&self, message: Bytes) -> Result<(), Overflow> {
        let mut inner = self.inner.lock();
        if inner.overflowed
            || inner.reliable.len() >= self.limits.max_messages
            || inner.reliable_bytes + message.len() > self.limits.max_bytes
        {
            inner.overflowed = true;
            wake(&mut inner);
            return Err(Overflow);
        }
        inner.reliable_bytes += message.len();
        inner.reliable.push_back(message);
        wake(&mut inner);
        Ok(())
    }

    /// Queues a reliable message ahead of everything waiting (a resumed session's
    /// `Welcome`). Not bounded: at most one per connection.
    pub fn push_reliable_first(&self, message: Bytes) {
        let mut inner = self.inner.lock();
        inner.reliable_bytes += message.len();
        inner.reliable.push_front(message);
        wake(&mut inner);
    }

    /// First half of replacing a room's state frame: drops the room's pending
    /// (untaken) frame, if any, and returns the baseline the next frame must be
    /// encoded against: the tick of the last frame the transport took for that room,
    /// or 0 (a full snapshot) when there is none or when the dropped frame was itself a
    /// full snapshot (the client is waiting for one). Follow with
    /// [`Outbox::push_state`], passing the returned [`Baseline`].
    pub fn supersede_state(&self, room: RoomKey) -> Baseline {
        let mut inner = self.inner.lock();
        let mut dropped_full = false;
        if let Some(i) = inner.states.iter().position(|s| s.room == room) {
            dropped_full = inner.states.swap_remove(i).baseline == 0;
            inner.superseded += 1;
        }
        Baseline {
            tick: if dropped_full { 0 } else { delivered(&inner, room) },
            epoch: inner.epoch,
        }
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
        inner.states.push(state);
        wake(&mut inner);
        true
    }

    /// The tick of the last state frame the transport took for `room` (0: none).
    pub fn delivered(&self, room: RoomKey) -> Tick {
        delivered(&self.inner.lock(), room)
    }

    /// Forgets a room (after leaving it): a pending frame is dropped and the next
    /// join starts from a full snapshot.
    pub fn forget_room(&self, room: RoomKey) {
        let mut inner = self.inner.lock();
        inner.states.retain(|s| s.room != room);
        inner.delivered.retain(|(r, _)| *r != room);
    }

    /// Forgets what was delivered in every room, so each room's next frame is a full
    /// snapshot (after a reconnect, the new connection's mirror starts empty).
    pub fn reset_delivered(&self) {
        let mut inner = self.inner.lock();
        inner.delivered.clear();
        inner.states.clear();
        inner.epoch += 1;
    }

    /// True once a reliable push went over the bound.
    pub fn is_overflowed(&self) -> bool {
        self.inner.lock().overflowed
    }

    /// State frames replaced before the transport took them, since the last call.
    pub fn take_superseded(&self) -> u64 {
        std::mem::take(&mut self.inner.lock().superseded)
    }

    /// Moves everything pending into `batch` (cleared first) and returns `Ready`, or
    /// registers the waker and returns `Pending` when there is nothing. Also `Ready`
    /// when overflowed, so the transport notices promptly.
    pub fn poll_drain(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<()> {
        if self.drain(batch) || self.is_overflowed() {
            return Poll::Ready(());
        }
        let mut inner = self.inner.lock();
        // Re-check under the lock that registers the waker: no lost wake-up.
        if !inner.reliable.is_empty() || !inner.states.is_empty() || inner.overflowed {
            drop(inner);
            self.drain(batch);
            return Poll::Ready(());
        }
        inner.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Moves everything pending into `batch` (cleared first); returns whether anything
    /// was moved. Taking a state frame records its tick as the room's delivered tick.
    pub fn drain(&self, batch: &mut Batch) -> bool {
        batch.reliable.clear();
        batch.states.clear();
        let mut inner = self.inner.lock();
        batch.reliable.extend(inner.reliable.drain(..));
        inner.reliable_bytes = 0;
        std::mem::swap(&mut batch.states, &mut inner.states);
        for state in &batch.states {
            match inner.delivered.iter_mut().find(|(r, _)| *r == state.room) {
                Some(entry) => entry.1 = state.tick,
                None => inner.delivered.push((state.room, state.tick)),
            }
        }
        !batch.is_empty()
    }
}

fn delivered(inner: &Inner, room: RoomKey) -> Tick {
    inner.delivered.iter().find(|(r, _)| *r == room).map_or(0, |(_, t)| *t)
}

fn wake(inner: &mut Inner) {
    if let Some(waker) = inner.waker.take() {
        waker.wake();
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
            last_input_seq: 0,
        }
    }

    #[test]
    fn state_frames_are_superseded_against_the_delivered_tick() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1);
        assert_eq!(b.tick, 0);
        assert!(outbox.push_state(state(1, 1, 0), b));
        assert!(outbox.drain(&mut batch));
        assert_eq!(outbox.delivered(1), 1);

        // The client stops reading: ticks 2..=50 each replace the previous one.
        for tick in 2..=50 {
            let b = outbox.supersede_state(1);
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

    #[test]
    fn an_untaken_full_snapshot_is_only_replaced_by_a_full_snapshot() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1);
        assert!(outbox.push_state(state(1, 1, 0), b));
        outbox.drain(&mut batch);
        // A resync queues a full snapshot at tick 2, not taken before tick 3.
        let b = outbox.supersede_state(1);
        assert!(outbox.push_state(state(1, 2, 0), b));
        assert_eq!(outbox.supersede_state(1).tick, 0, "tick 3 must be full too");
    }

    #[test]
    fn a_reset_between_the_halves_refuses_a_stale_delta() {
        let outbox = Outbox::new(OutboxLimits::default());
        let mut batch = Batch::default();
        let b = outbox.supersede_state(1);
        assert!(outbox.push_state(state(1, 1, 0), b));
        outbox.drain(&mut batch);
        let stale = outbox.supersede_state(1);
        assert_eq!(stale.tick, 1);
        outbox.reset_delivered(); // a resume, on another thread
        assert!(!outbox.push_state(state(1, 2, 1), stale));
        assert_eq!(outbox.supersede_state(1).tick, 0);
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
}
