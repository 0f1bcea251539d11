//! Rooms that closed on this node and whose close has not reached Redis yet.
//!
//! A room that closes here (it stayed empty, or its simulation ended it) is gone from
//! the node at once; its close (which drops its directory entry and its checkpoint,
//! so the next room of its id starts empty) is written to Redis later, with the
//! node's other checkpoint writes, and tried again while Redis fails (until the
//! checkpoint it would drop has lapsed anyway). A claim of the same id on this node in
//! between would find the closed room's entry (still this node's) and checkpoint, and
//! restore the room as it closed; and the late close would then drop the entry of the
//! room opened again. So a claim of a room not open here waits until no close of it
//! is pending ([`Closing::settled`]). Closes are marked by the pool's checkpoint sink
//! ([`Closing::sink`]), which the pool calls before the room leaves its directory;
//! releases of claims that opened no room, as they are written
//! ([`Closing::releasing`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;

use crate::engine::sim_pool::Checkpoint;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Closing {
    /// Closes received and not written, by room.
    pending: Mutex<HashMap<Arc<str>, u32>>,
    /// Woken whenever closes were written.
    written: Notify,
}

impl Closing {
    /// The pool's checkpoint sink in cluster mode: hands every checkpoint to the
    /// writer (`to`), marking each close first. The pool calls it before the room
    /// leaves its directory, so whoever finds the room gone finds its close pending.
    pub fn sink(self: &Arc<Self>, to: UnboundedSender<Checkpoint>) -> impl Fn(Checkpoint) + Send + Sync + 'static {
        let closing = self.clone();
        move |checkpoint| {
            if let Checkpoint::Closed(room, _) = &checkpoint {
                closing.closed(room);
            }
            let _ = to.send(checkpoint);
        }
    }

    /// A room closed here.
    fn closed(&self, room: &Arc<str>) {
        *self.pending.lock().entry(room.clone()).or_default() += 1;
    }

    /// Marks a release of `room`'s claim (a claim no room here followed) as a
    /// pending close until the guard drops: a claim of the room beginning meanwhile
    /// waits for the release to be written, so that it does not take the room's entry
    /// (still this node's) just before the release drops it.
    pub fn releasing<'a>(&'a self, room: &'a str) -> Releasing<'a> {
        self.closed(&Arc::from(room));
        Releasing { closing: self, room }
    }

    /// `closes` closes of `room` were written (or given up).
    pub fn written(&self, room: &str, closes: u32) {
        let mut pending = self.pending.lock();
        if let Some(n) = pending.get_mut(room) {
            *n = n.saturating_sub(closes);
            if *n == 0 {
                pending.remove(room);
            }
        }
        drop(pending);
        self.written.notify_waiters();
    }

    /// Waits (at most `wait`) until no close of `room` is pending; false when the wait
    /// ran out.
    pub async fn settled(&self, room: &str, wait: Duration) -> bool {
        let settled = async {
            loop {
                let written = self.written.notified();
                if !self.pending.lock().contains_key(room) {
                    return;
                }
                written.await;
            }
        };
        tokio::time::timeout(wait, settled).await.is_ok()
    }
}

/// A release under way ([`Closing::releasing`]).
#[must_use]
pub struct Releasing<'a> {
    closing: &'a Closing,
    room: &'a str,
}

impl Drop for Releasing<'_> {
    fn drop(&mut self) {
        self.closing.written(self.room, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(50);

    fn id(room: &str) -> Arc<str> {
        room.into()
    }

    #[tokio::test]
    async fn a_room_never_closed_is_settled_at_once() {
        assert!(Closing::default().settled("world", WAIT).await);
    }

    #[tokio::test]
    async fn a_claim_waits_for_the_close_to_be_written() {
        let closing = Arc::new(Closing::default());
        closing.closed(&id("world"));
        assert!(!closing.settled("world", WAIT).await, "still pending");
        assert!(closing.settled("lobby", WAIT).await, "other rooms go on");
        let waiter = tokio::spawn({
            let closing = closing.clone();
            async move { closing.settled("world", Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        closing.written("world", 1);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn a_claim_waits_for_a_release_under_way() {
        let closing = Closing::default();
        let releasing = closing.releasing("world");
        assert!(!closing.settled("world", WAIT).await, "released meanwhile");
        drop(releasing);
        assert!(closing.settled("world", WAIT).await);
    }

    #[tokio::test]
    async fn every_close_received_must_be_written() {
        let closing = Closing::default();
        closing.closed(&id("world"));
        closing.closed(&id("world"));
        closing.written("world", 1);
        assert!(!closing.settled("world", WAIT).await, "one close still pending");
        closing.written("world", 1);
        assert!(closing.settled("world", WAIT).await);
        assert!(closing.pending.lock().is_empty());
    }
}
