//! One simulation thread, the driver of its [`Shard`]: sleeps until the shard's next
//! wake-up (or a command that unparks it), takes the commands queued meanwhile, has
//! the shard tick its due rooms, and tells the pacer when it ticks next.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};

use super::shard::Shard;
use super::{Queued, Queuing};
use crate::engine::pacer::Pacer;
use crate::engine::rooms::Command;

/// Commands handled per turn before ticking again, so a command flood cannot starve
/// the ticks.
const COMMANDS_PER_TURN: usize = 4096;

pub(super) struct SimThread {
    pub(super) rx: Receiver<Queuing>,
    /// Shared with the senders: decremented for every command received.
    pub(super) queued: Arc<Queued>,
    pub(super) shard: Shard,
    /// Told when this thread ticks next; holds each turn's wake-ups.
    pub(super) pacer: Option<Arc<Pacer>>,
    /// This thread's number in the pool (and the pacer).
    pub(super) number: usize,
}

impl SimThread {
    pub(super) fn run(mut self) {
        self.serve();
        // Gone (shutdown): I/O threads wait for no tick of this thread's.
        if let Some(pacer) = &self.pacer {
            pacer.next_tick(self.number, None);
        }
    }

    fn serve(&mut self) {
        let (mut backlog, mut received) = (false, None);
        // No rooms yet: nothing to wake for.
        let mut wake_at = None;
        loop {
            match wake_at {
                // More commands wait than one turn takes: take them before sleeping.
                _ if backlog => {}
                // No rooms, only empty persistent ones, or rooms handed off: nothing to
                // do until a command (a new room, a join; shutdown) arrives.
                None => match self.rx.recv() {
                    Ok(command) => received = Some(command),
                    Err(_) => return,
                },
                // Sleep until the next tick (or an empty room's expiry). Senders do not
                // wake the thread (one wake-up per input was a quarter of the relay's
                // CPU): what they queue is taken at the tick, so a command waits at
                // most one period while a room on the thread has members (with none, it
                // sleeps until an empty room expires). Only a join or a close (its room
                // may be empty), a checkpoint request and shutdown unpark it early.
                Some(deadline) => {
                    let now = Instant::now();
                    if deadline > now {
                        std::thread::park_timeout(deadline - now);
                    }
                }
            }
            // What the turn leaves in outboxes reaches each I/O thread in one batch.
            let pacer = self.pacer.clone();
            let _turn = pacer.as_deref().map(Pacer::defer);
            if let Some(command) = received.take()
                && !self.take(command)
            {
                return;
            }
            match self.take_queued() {
                Some(more) => backlog = more,
                None => return,
            }
            self.shard.tick_due_rooms();
            let next_tick;
            (wake_at, next_tick) = self.shard.next_wakes();
            // Before the turn's wake-ups go: the woken I/O threads then sleep until
            // just before the next tick.
            if let Some(pacer) = &pacer {
                pacer.next_tick(self.number, next_tick);
            }
        }
    }

    /// Handles the commands waiting, at most [`COMMANDS_PER_TURN`]; whether more
    /// wait, or `None` on shutdown.
    fn take_queued(&mut self) -> Option<bool> {
        for _ in 0..COMMANDS_PER_TURN {
            match self.rx.try_recv() {
                Ok(command) => {
                    if !self.take(command) {
                        return None;
                    }
                }
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => return Some(false),
            }
        }
        Some(true)
    }

    /// Hands one received command to the shard; false on shutdown.
    fn take(&mut self, (command, bytes): Queuing) -> bool {
        self.queued.commands.fetch_sub(1, Ordering::AcqRel);
        if bytes > 0 {
            self.queued.bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
        if matches!(command, Command::Shutdown) {
            return false;
        }
        self.shard.handle(command);
        true
    }
}
