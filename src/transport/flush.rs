//! Flushers: one task per runtime worker writes the state frames of every connection
//! assigned to it, so a tick wakes one task per worker instead of one per member.
//!
//! A connection whose transport can be written from another task ([`Flushable`]:
//! WebSocket) gets a [`Writer`]. Its outbox's waker is the writer's: a room pushing a
//! frame puts the writer on its flusher's queue and wakes the flusher only if it was
//! idle. The flusher then writes each queued connection's whole outbox in one message,
//! as far as the socket takes it without waiting. What it cannot finish — a socket
//! whose buffer is full, a broken connection, an overflowed outbox — it hands over to
//! the connection's own task (which waits for the slow write within the slow-consumer
//! bound, or closes), and takes the connection back once the task has dealt with it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;

use crate::clock::unix_micros;
use crate::engine::outbox::{Batch, Outbox};
use crate::metrics::Metrics;
use crate::transport::{Broken, Sent};

/// What a flusher's attempt to write an outbox came to.
pub(crate) enum TrySend {
    /// Nothing was waiting: the outbox now wakes the writer when something is.
    Idle,
    /// One message was written in full.
    Sent(Sent),
    /// The transport cannot take a message now; nothing was taken from the outbox.
    Full,
    /// One message was taken and partly written; the rest waits in the transport.
    Partial(Sent),
    /// The outbox overflowed: the session must close as a slow consumer.
    Overflowed,
    /// The connection is gone.
    Broken,
}

/// A transport another task can write without waiting.
pub(crate) trait Flushable: Send + Sync + 'static {
    /// If the transport can take a message now, takes everything waiting in `outbox`
    /// (registering `outbox_waker` with it when nothing is) and writes it as one
    /// message, as far as the socket takes it. Never waits: the socket's write
    /// readiness wakes `task` (the connection's task, which may itself be waiting to
    /// write a ping or a close: a flusher's own waker there would take the wake-up
    /// from it).
    fn try_send(&self, outbox: &Outbox, batch: &mut Batch, outbox_waker: &Waker, task: &Waker) -> TrySend;

    /// Waits until the transport can take a message and has written everything it
    /// holds (after [`TrySend::Full`] or [`TrySend::Partial`]).
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), Broken>>;
}

/// Who writes the connection now, and why the flusher gave it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Handover {
    /// The flusher writes it.
    Flusher = 0,
    /// The socket took no more: the task waits for it.
    Blocked = 1,
    /// The connection is gone.
    Broken = 2,
    /// The outbox overflowed.
    Overflowed = 3,
    /// The connection ended: nobody writes it any more.
    Closed = 4,
}

impl Handover {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Flusher,
            1 => Self::Blocked,
            2 => Self::Broken,
            3 => Self::Overflowed,
            _ => Self::Closed,
        }
    }
}

/// One connection as its flusher sees it. The connection's task holds it too.
pub(crate) struct Writer {
    transport: Arc<dyn Flushable>,
    outbox: Arc<Outbox>,
    /// Weak: a queue holds writers, and ends its flusher when the server drops it.
    queue: Weak<Queue>,
    /// A [`Handover`].
    state: AtomicU8,
    /// The connection's task, woken by a handover.
    task: Mutex<Option<Waker>>,
    /// Queues this writer (held by the outbox while it waits for content).
    waker: Waker,
}

impl Writer {
    /// A writer for `transport` and `outbox`, on one of `flushers`' queues. It is the
    /// task's until [`Writer::resume`].
    pub(crate) fn new(transport: Arc<dyn Flushable>, outbox: Arc<Outbox>, flushers: &Flushers, id: u64) -> Arc<Self> {
        let queue = Arc::downgrade(&flushers.queue_for(id));
        Arc::new_cyclic(|me| Self {
            transport,
            outbox,
            queue,
            state: AtomicU8::new(Handover::Blocked as u8),
            task: Mutex::new(None),
            waker: Waker::from(Arc::new(Enqueue(me.clone()))),
        })
    }

    /// Gives the connection (back) to the flusher, which writes whatever is waiting.
    pub(crate) fn resume(self: &Arc<Self>) {
        self.state.store(Handover::Flusher as u8, Ordering::Release);
        self.enqueue();
    }

    fn enqueue(self: &Arc<Self>) {
        if let Some(queue) = self.queue.upgrade() {
            queue.push(self.clone());
        }
    }

    /// The connection ended: the flusher leaves it alone from now on.
    pub(crate) fn close(&self) {
        self.state.store(Handover::Closed as u8, Ordering::Release);
    }

    /// Ready with the reason when the flusher handed the connection to its task.
    pub(crate) fn poll_handover(&self, cx: &mut Context<'_>) -> Poll<Handover> {
        let mut task = self.task.lock();
        // Checked under the lock the handover takes to wake: no lost wake-up.
        match Handover::from_u8(self.state.load(Ordering::Acquire)) {
            Handover::Flusher | Handover::Closed => {
                if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *task = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            handover => Poll::Ready(handover),
        }
    }

    /// Waits until the transport has written what the flusher left in it.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), Broken>> {
        self.transport.poll_flush(cx)
    }

    /// Writes what is waiting, as far as the socket takes it (the flusher's part).
    fn flush(&self, batch: &mut Batch, metrics: &Metrics) {
        let task = self.task.lock().clone().unwrap_or_else(|| Waker::noop().clone());
        loop {
            if self.state.load(Ordering::Acquire) != Handover::Flusher as u8 {
                return;
            }
            let handover = match self.transport.try_send(&self.outbox, batch, &self.waker, &task) {
                TrySend::Idle => return,
                TrySend::Sent(sent) => {
                    record_sent(metrics, batch, sent);
                    continue;
                }
                TrySend::Partial(sent) => {
                    record_sent(metrics, batch, sent);
                    Handover::Blocked
                }
                TrySend::Full => Handover::Blocked,
                TrySend::Overflowed => Handover::Overflowed,
                TrySend::Broken => Handover::Broken,
            };
            let task = {
                let mut task = self.task.lock();
                // The connection may have closed meanwhile: leave it closed.
                let _ = self.state.compare_exchange(
                    Handover::Flusher as u8,
                    handover as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                task.take()
            };
            if let Some(task) = task {
                task.wake();
            }
            return;
        }
    }
}

/// The metrics of one written batch (the flusher's and the connection task's writes
/// alike).
pub(crate) fn record_sent(metrics: &Metrics, batch: &Batch, sent: Sent) {
    metrics.frames_superseded.inc_by(batch.superseded);
    metrics.messages_out.inc_by(sent.messages);
    metrics.bytes_out.inc_by(sent.bytes);
    if !batch.states.is_empty() {
        let now_us = unix_micros();
        for state in &batch.states {
            let delay_us = now_us.saturating_sub(state.server_time_us);
            metrics.state_send_delay.observe(delay_us as f64 / 1e6);
        }
    }
}

/// The outbox's waker for a [`Writer`]: queues it with its flusher.
struct Enqueue(Weak<Writer>);

impl Wake for Enqueue {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(writer) = self.0.upgrade() {
            writer.enqueue();
        }
    }
}

/// One flusher's queue of connections with something to write.
#[derive(Default)]
struct Queue {
    inner: Mutex<QueueInner>,
}

#[derive(Default)]
struct QueueInner {
    writers: Vec<Arc<Writer>>,
    /// The flusher, when it waits for work.
    waker: Option<Waker>,
}

impl Drop for Queue {
    /// The server is gone: its flusher ends.
    fn drop(&mut self) {
        if let Some(waker) = self.inner.get_mut().waker.take() {
            waker.wake();
        }
    }
}

impl Queue {
    /// Queues `writer`; wakes the flusher only if it was waiting (once per round).
    fn push(&self, writer: Arc<Writer>) {
        let waker = {
            let mut inner = self.inner.lock();
            inner.writers.push(writer);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves the queued writers into `out`, or registers the flusher's waker.
    fn poll_take(&self, cx: &mut Context<'_>, out: &mut Vec<Arc<Writer>>) -> Poll<()> {
        let mut inner = self.inner.lock();
        if inner.writers.is_empty() {
            inner.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        std::mem::swap(out, &mut inner.writers);
        Poll::Ready(())
    }
}

/// The server's flushers, one per runtime worker, started on first use.
pub(crate) struct Flushers {
    queues: OnceLock<Vec<Arc<Queue>>>,
    metrics: Arc<Metrics>,
}

impl Flushers {
    /// Flushers that will count what they write in `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            queues: OnceLock::new(),
            metrics,
        }
    }

    /// The queue for connection `id` (spreads connections over the flushers). Must be
    /// called on the runtime, which the first call starts the flushers on.
    fn queue_for(&self, id: u64) -> Arc<Queue> {
        let queues = self.queues.get_or_init(|| {
            let workers = tokio::runtime::Handle::current().metrics().num_workers().max(1);
            (0..workers)
                .map(|_| {
                    let queue = Arc::new(Queue::default());
                    tokio::spawn(run(Arc::downgrade(&queue), self.metrics.clone()));
                    queue
                })
                .collect()
        });
        queues[(id % queues.len() as u64) as usize].clone()
    }
}

/// A flusher: writes every queued connection, then waits for more; ends with the
/// server (when its queue is dropped).
async fn run(queue: Weak<Queue>, metrics: Arc<Metrics>) {
    let mut work = Vec::new();
    let mut batch = Batch::default();
    loop {
        let taken = std::future::poll_fn(|cx| match queue.upgrade() {
            Some(queue) => queue.poll_take(cx, &mut work).map(|()| true),
            None => Poll::Ready(false),
        });
        if !taken.await {
            return;
        }
        for writer in work.drain(..) {
            writer.flush(&mut batch, &metrics);
        }
        // Connections queued again while this round ran: let other tasks run first.
        tokio::task::consume_budget().await;
    }
}
