//! Calls another node hands this one for a room that is not open here yet: the
//! directory named this node because it has just claimed the room and is restoring
//! it from its checkpoint. The caller's API already answered 202, so the call is held,
//! in arrival order, while the room opens, for at most [`HOLD_FOR`]; a later call for a
//! room with calls held waits behind them, so a room's calls keep their order. A call
//! for a room neither open nor opening here (it closed) is not held: a new room of
//! that id opened later must not get it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::bus::BusMessage;

/// How long a call waits for its room to open (a restore takes milliseconds; the
/// claim that precedes it, a few Redis round trips).
pub const HOLD_FOR: Duration = Duration::from_secs(2);

/// How often the held calls look for their rooms.
pub const HOLD_POLL: Duration = Duration::from_millis(25);

/// The most calls held at once: more are dropped (and logged) at once.
const MAX_HELD: usize = 1024;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Held {
    calls: VecDeque<(Instant, BusMessage)>,
}

/// Where a room of held calls stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomState {
    /// Open: its calls go.
    Open,
    /// Being claimed or restored: its calls wait.
    Opening,
    /// Neither (its claim went elsewhere, or it closed): its calls are dropped.
    Gone,
}

/// What [`Held::take_due`] returns: calls to deliver now, and calls given up.
#[derive(Debug, Default, PartialEq)]
pub struct Due {
    pub deliver: Vec<BusMessage>,
    pub dropped: Vec<BusMessage>,
}

impl Held {
    /// Whether a call for `room` waits (a new call for it must wait behind).
    pub fn holds(&self, room: &str) -> bool {
        self.calls.iter().any(|(_, call)| call.room() == Some(room))
    }

    /// Whether any call waits.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Holds `call` from `now`; gives it back when [`MAX_HELD`] calls already wait.
    pub fn hold(&mut self, call: BusMessage, now: Instant) -> Result<(), BusMessage> {
        if self.calls.len() >= MAX_HELD {
            return Err(call);
        }
        self.calls.push_back((now, call));
        Ok(())
    }

    /// Takes, in arrival order, the calls whose room is open (by `state`) and those
    /// whose room is gone or that waited past [`HOLD_FOR`] at `now`; the others wait
    /// on. Each room's state is asked once a pass: a room that opens during it has all
    /// its calls wait for the next, not its later ones go first.
    pub fn take_due(&mut self, now: Instant, state: impl Fn(&str) -> RoomState) -> Due {
        let mut due = Due::default();
        let mut states: HashMap<String, RoomState> = HashMap::new();
        let mut waiting = VecDeque::with_capacity(self.calls.len());
        for (since, call) in self.calls.drain(..) {
            let room_state = match call.room() {
                None => RoomState::Open,
                Some(room) => *states.entry(room.to_string()).or_insert_with(|| state(room)),
            };
            match room_state {
                RoomState::Open => due.deliver.push(call),
                RoomState::Opening if now < since + HOLD_FOR => waiting.push_back((since, call)),
                RoomState::Opening | RoomState::Gone => due.dropped.push(call),
            }
        }
        self.calls = waiting;
        due
    }

    /// How many calls wait.
    pub fn len(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{RoomClose, SendEvent};

    fn event(room: &str, kind: &str) -> BusMessage {
        BusMessage::Event(SendEvent {
            room: room.into(),
            kind: kind.into(),
            ..SendEvent::default()
        })
    }

    /// Calls wait for their room in order, go once it opens, and are given up after
    /// [`HOLD_FOR`] or once their room is gone; a full hold gives a call back.
    #[test]
    fn calls_wait_for_their_room_in_order_for_a_while() {
        let start = Instant::now();
        let mut held = Held::default();
        held.hold(event("a", "1"), start).unwrap();
        let close = BusMessage::Close(RoomClose {
            room: "b".into(),
            reason: String::new(),
        });
        held.hold(close.clone(), start).unwrap();
        held.hold(event("a", "2"), start + HOLD_FOR / 2).unwrap();
        assert!(held.holds("a") && held.holds("b") && !held.holds("c"));

        let opening = |_: &str| RoomState::Opening;
        assert_eq!(held.take_due(start + HOLD_FOR / 4, opening), Due::default());
        // A room that opens during a pass (asked again, it would say open): all its
        // calls wait for the next pass.
        let asked = std::cell::Cell::new(0);
        let a_opens_midway = |room: &str| {
            if room != "a" {
                return RoomState::Opening;
            }
            asked.set(asked.get() + 1);
            if asked.get() == 1 {
                RoomState::Opening
            } else {
                RoomState::Open
            }
        };
        assert_eq!(held.take_due(start + HOLD_FOR / 4, a_opens_midway), Due::default());
        let a_open = |room: &str| {
            if room == "a" {
                RoomState::Open
            } else {
                RoomState::Opening
            }
        };
        let due = held.take_due(start + HOLD_FOR / 2, a_open);
        assert_eq!(due.deliver, [event("a", "1"), event("a", "2")]);
        assert!(held.holds("b") && !held.holds("a"));
        let late = held.take_due(start + HOLD_FOR, opening);
        assert_eq!(late.dropped, std::slice::from_ref(&close));
        assert!(held.is_empty());
        held.hold(close.clone(), start).unwrap();
        let gone = held.take_due(start, |_| RoomState::Gone);
        assert_eq!(gone.dropped, [close]);

        for n in 0..MAX_HELD {
            held.hold(event("c", &n.to_string()), start).unwrap();
        }
        assert_eq!(held.hold(event("c", "more"), start), Err(event("c", "more")));
    }
}
