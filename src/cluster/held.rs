//! Calls another node hands this one for a room that is not open here yet: the
//! directory named this node because it has just claimed the room and is restoring
//! it from its checkpoint. The caller's API already answered 202, so the call is held,
//! in arrival order, until the room opens, for at most [`HOLD_FOR`]; a later call for a
//! room with calls held waits behind them, so a room's calls keep their order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::bus::Delivery;

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
    calls: VecDeque<(Instant, Delivery)>,
}

/// What [`Held::take_due`] returns: calls to deliver now, and calls given up.
#[derive(Debug, Default, PartialEq)]
pub struct Due {
    pub deliver: Vec<Delivery>,
    pub dropped: Vec<Delivery>,
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
    pub fn hold(&mut self, call: Delivery, now: Instant) -> Result<(), Delivery> {
        if self.calls.len() >= MAX_HELD {
            return Err(call);
        }
        self.calls.push_back((now, call));
        Ok(())
    }

    /// Takes, in arrival order, the calls whose room `is_open` and those held past
    /// [`HOLD_FOR`] at `now`; the others wait on.
    pub fn take_due(&mut self, now: Instant, is_open: impl Fn(&str) -> bool) -> Due {
        let mut due = Due::default();
        let mut waiting = VecDeque::with_capacity(self.calls.len());
        for (since, call) in self.calls.drain(..) {
            let open = call.room().is_none_or(&is_open);
            if open {
                due.deliver.push(call);
            } else if now >= since + HOLD_FOR {
                due.dropped.push(call);
            } else {
                waiting.push_back((since, call));
            }
        }
        self.calls = waiting;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{RoomClose, SendEvent};

    fn event(room: &str, kind: &str) -> Delivery {
        Delivery::Event(SendEvent {
            room: room.into(),
            kind: kind.into(),
            ..SendEvent::default()
        })
    }

    /// Calls wait for their room in order, go once it opens, and are given up after
    /// [`HOLD_FOR`]; a full hold gives a call back.
    #[test]
    fn calls_wait_for_their_room_in_order_for_a_while() {
        let start = Instant::now();
        let mut held = Held::default();
        held.hold(event("a", "1"), start).unwrap();
        let close = Delivery::Close(RoomClose {
            room: "b".into(),
            reason: String::new(),
        });
        held.hold(close.clone(), start).unwrap();
        held.hold(event("a", "2"), start + HOLD_FOR / 2).unwrap();
        assert!(held.holds("a") && held.holds("b") && !held.holds("c"));

        let none_open = held.take_due(start + HOLD_FOR / 4, |_| false);
        assert_eq!(none_open, Due::default());
        let a_open = held.take_due(start + HOLD_FOR / 2, |room| room == "a");
        assert_eq!(a_open.deliver, [event("a", "1"), event("a", "2")]);
        assert!(held.holds("b") && !held.holds("a"));
        let late = held.take_due(start + HOLD_FOR, |_| false);
        assert_eq!(late.dropped, [close]);
        assert!(held.is_empty());

        for n in 0..MAX_HELD {
            held.hold(event("c", &n.to_string()), start).unwrap();
        }
        assert_eq!(held.hold(event("c", "more"), start), Err(event("c", "more")));
    }
}
