//! Events members and the server send: queued with what relaying them costs, owed
//! to their addressees, relayed within each member's share of a tick.

use bytes::Bytes;

use super::Room;
use super::member::Member;
use crate::frame::encode_message;
use crate::log_budget::LogBudget;
use crate::proto::{ErrorCode, RoomEvent, SendEvent, server_message::Kind};
use crate::state::{MemberId, SERVER};

/// Server events (published, or sent by the simulation) a room dropped at its bound:
/// one log line a second at most.
static DROPPED_PUBLISHES: LogBudget = LogBudget::new("room_publishes_dropped", 1);

pub(super) struct QueuedEvent {
    pub(super) sender: MemberId,
    /// Numbered as it is queued: each member gets its events in the queue's order,
    /// so with ascending numbers, whenever each goes.
    pub(super) seq: u64,
    /// What relaying it costs a member's share (its payload, kind and targets).
    pub(super) cost: usize,
    /// The members still owed it (sorted): its addressees, less those it went to and
    /// those that left. A broadcast's are taken at its first relay (every member but
    /// the sender then: one that joined since it was queued gets it too).
    pub(super) owed: Option<Vec<MemberId>>,
    /// The event, until it first goes out (emptied then).
    pub(super) event: SendEvent,
    /// Its message, once it went to some of those owed it.
    pub(super) message: Option<Bytes>,
}

/// Events still owed to `member` (it left, or gave up a seat a restore kept) are
/// not, should it join again.
pub(super) fn forget_owed(events: &mut [QueuedEvent], member: MemberId) {
    for queued in events {
        if let Some(owed) = &mut queued.owed
            && let Ok(at) = owed.binary_search(&member)
        {
            owed.remove(at);
        }
    }
}

/// A broadcast's addressees (see [`QueuedEvent::owed`]): the members but its sender,
/// sorted.
pub(super) fn everyone_but(members: &[Member], sender: MemberId) -> Vec<MemberId> {
    let mut all: Vec<MemberId> = (members.iter().map(|m| m.id)).filter(|&id| id != sender).collect();
    all.sort_unstable();
    all
}

/// What relaying `event` costs a member's share of a tick.
pub(super) fn event_cost(kind: &str, payload: &[u8], targets: &[MemberId]) -> usize {
    payload.len() + kind.len() + 8 * targets.len()
}

/// Events owed to one member may cost up to this many times its reliable queue's
/// bounds: past that, an event naming it is refused (it takes them a quarter of its
/// bounds a tick).
const OWED_QUEUES: usize = 2;

impl Room {
    /// Queues a room event for relay at the next tick. Events from non-members are
    /// ignored. A refused one (see `event_refusal`) gets its sender a
    /// `SERVER_BUSY` error (the server's own is dropped and logged).
    pub fn push_event(&mut self, sender: MemberId, mut event: SendEvent) {
        // A room the simulation closed relays what was queued before, then closes.
        if (sender != SERVER && !self.is_member(sender)) || self.closing.is_some() {
            return;
        }
        // Each target is looked up for every member (sorted: by halves), and at most
        // one per seat names anyone.
        event.targets.sort_unstable();
        event.targets.dedup();
        if sender != SERVER && event.targets.len() > self.config.max_members {
            let error = self.error(
                ErrorCode::BadRequest,
                "an event names more targets than the room has seats",
                0,
            );
            self.send_to(sender, error);
            return;
        }
        // The server's (the HTTP API's are bounded only by the URL's length): the
        // members among them, as each recipient is sent the list. None: to nobody.
        if sender == SERVER && !event.targets.is_empty() {
            event.targets.retain(|&target| self.index.contains_key(&target));
            if event.targets.is_empty() {
                return;
            }
        }
        // Its targets in the room (a broadcast's: see `QueuedEvent::owed`).
        let owed: Option<Vec<MemberId>> = (!event.targets.is_empty()).then(|| {
            (event.targets.iter().copied())
                .filter(|target| self.index.contains_key(target))
                .collect()
        });
        let cost = event_cost(&event.kind, &event.payload, &event.targets);
        let refusal = self.event_refusal(sender, owed.as_deref(), cost);
        if let Some(why) = refusal {
            if sender == SERVER {
                if let Some(suppressed) = DROPPED_PUBLISHES.take(std::time::Instant::now()) {
                    tracing::warn!(room = %self.id, suppressed, "server event dropped: {why}");
                }
                return;
            }
            let error = self.error(ErrorCode::ServerBusy, why, 0);
            self.send_to(sender, error);
            return;
        }
        for m in &mut self.members {
            let addressed = match &owed {
                Some(targets) => targets.binary_search(&m.id).is_ok(),
                None => m.id != sender,
            };
            if addressed {
                m.events_owed.0 += 1;
                m.events_owed.1 += cost;
            }
        }
        self.event_seq += 1;
        self.events.push(QueuedEvent {
            sender,
            seq: self.event_seq,
            cost,
            owed,
            event,
            message: None,
        });
    }

    /// Why an event is refused, if it is: past twice the room's bound on waiting
    /// events, any; one naming its targets, when one of them is already owed
    /// [`OWED_QUEUES`] times its reliable queue's bounds (a flood aimed at a member
    /// is refused at that member, and delays no one else's events); past the bound,
    /// a member's with an event of its own not yet relayed to anyone (a member with
    /// none still gets one in: other members' bursts cannot get an honest member's
    /// events refused). The server's (the HTTP API, the simulation) only at twice
    /// the bound.
    fn event_refusal(&self, sender: MemberId, targets: Option<&[MemberId]>, cost: usize) -> Option<&'static str> {
        let (waiting, bound) = (self.events.len(), self.config.max_pending_events);
        if waiting >= 2 * bound {
            return Some("too many events pending in this room");
        }
        if sender == SERVER {
            return None;
        }
        let over = |m: &Member| {
            let limits = m.outbox.limits();
            m.events_owed.0 >= OWED_QUEUES * limits.max_messages
                || m.events_owed.1 + cost > OWED_QUEUES * limits.max_bytes
        };
        if targets.is_some_and(|targets| targets.iter().any(|&id| self.member(id).is_some_and(over))) {
            return Some("too many events waiting for a member it names");
        }
        // (The scan runs only past the bound, for events the rate limits let through.)
        let own_waiting = || (self.events.iter()).any(|queued| queued.sender == sender && queued.message.is_none());
        (waiting >= bound && own_waiting()).then_some("too many events pending in this room")
    }

    /// Relays the queued events in order, each member getting at most a quarter of
    /// its reliable queue's bounds per tick, this tick's presence included (and at
    /// least one event when it had nothing else): the rest wait in the room for the
    /// next tick. Senders are each rate-limited, but several of them aiming at one
    /// member within one tick could otherwise fill its queue before it could read
    /// any of it (and close it as a slow consumer).
    ///
    /// A member over its share holds back only what is addressed to it: an event
    /// goes now to its other addressees (encoded once) and waits for it
    /// alone, and nothing later goes to it this tick, so each member still gets its
    /// events in order. Events aimed at one member cannot delay everyone else's.
    pub(super) fn relay_events(&mut self) {
        if self.events.is_empty() {
            return;
        }
        // Per member (by position): what it got this tick so far, and whether an
        // event waits for it (nothing later goes to it this tick).
        let mut took = std::mem::take(&mut self.sent_this_tick);
        took.resize(self.members.len(), (0, 0));
        let mut held = vec![false; self.members.len()];
        let mut events = std::mem::take(&mut self.events);
        events.retain_mut(|queued| {
            let owed = (queued.owed).get_or_insert_with(|| everyone_but(&self.members, queued.sender));
            let (mut still_owed, mut sending) = (Vec::new(), 0);
            for ((m, &(messages, bytes)), held) in self.members.iter().zip(&took).zip(&mut held) {
                if owed.binary_search(&m.id).is_err() {
                    continue;
                }
                let limits = m.outbox.limits();
                *held |=
                    messages > 0 && (messages >= limits.max_messages / 4 || bytes + queued.cost > limits.max_bytes / 4);
                if *held {
                    still_owed.push(m.id);
                } else {
                    sending += 1;
                }
            }
            // Seats a restore keeps: their members are owed it once back (not once
            // the room closes: it waits for nobody away).
            if !self.reserved.is_empty() && self.closing.is_none() {
                still_owed.extend(owed.iter().filter(|&id| self.reserved.contains_key(id)));
            }
            // Members are in join order, not by id.
            still_owed.sort_unstable();
            // Not encoded while it can go to none of those owed it.
            if sending == 0 {
                *owed = still_owed;
                return !owed.is_empty();
            }
            let message = queued.message.get_or_insert_with(|| {
                self.stats.events += 1;
                let event = std::mem::take(&mut queued.event);
                encode_message(Kind::Event(RoomEvent {
                    room: self.id.to_string(),
                    seq: queued.seq,
                    sender: queued.sender,
                    kind: event.kind,
                    payload: event.payload,
                    targets: event.targets,
                }))
            });
            for ((m, took), &held) in self.members.iter_mut().zip(&mut took).zip(&held) {
                if !held && owed.binary_search(&m.id).is_ok() {
                    *took = (took.0 + 1, took.1 + message.len());
                    let _ = m.outbox.push_reliable(message.clone());
                    if queued.seq > m.events_from {
                        m.events_owed.0 = m.events_owed.0.saturating_sub(1);
                        m.events_owed.1 = m.events_owed.1.saturating_sub(queued.cost);
                    }
                }
            }
            *owed = still_owed;
            !owed.is_empty()
        });
        self.events = events;
        self.sent_this_tick = took;
    }
}
