//! The I/O threads: one single-threaded tokio runtime per thread, each owning the
//! WebSocket connections handed to it, for their whole life. The [`Pacer`] holds each
//! thread asleep between the ticks while rooms tick (see [`crate::engine::pacer`]),
//! and simulation threads hand each thread its connections' wake-ups in one batch per
//! turn, which its draining task delivers on the thread itself. A WebSocket
//! connection's wake-up is its outbox's flusher (see `transport::ws`), which writes
//! the connection's frames then and there: one pass of the draining task writes every
//! frame of the turn. Its socket's wake-up is its reader, which hands the session the
//! inputs the client sent: one turn of the I/O driver reads every input of the tick.
//! The connections' tasks are polled only for what the flusher and the reader leave
//! them (joins, pings, timers, a client that does not read).
//!
//! Everything else (accepting, QUIC, `/metrics` on its own listener, the cluster's
//! Redis connections and their commands, whichever task asks) runs on the runtime
//! that runs the server.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::engine::pacer::{Home, Pacer, Poker};

/// See the module documentation. Dropping it stops the threads (each drops what it
/// still runs).
#[derive(Debug)]
pub(crate) struct IoThreads {
    /// Each thread's runtime, and what wakes the thread from its sleep between ticks.
    threads: Vec<(Handle, Poker)>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl IoThreads {
    /// Starts one thread per I/O thread of `pacer`.
    pub fn start(pacer: &Arc<Pacer>) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        // Threads started before one that failed stop too.
        let stopping = stop.clone().drop_guard();
        let mut threads = Vec::with_capacity(pacer.io_threads());
        for i in 0..pacer.io_threads() {
            let home = Home::try_from(i).map_err(std::io::Error::other)?;
            let poker = pacer.poker(home);
            let (pacer, stop) = (pacer.clone(), stop.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("tickrelay-io-{i}"))
                .spawn(move || {
                    pacer.enter(home);
                    let parking = pacer.clone();
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .on_thread_park(move || parking.before_park(home))
                        .build();
                    let runtime = match runtime {
                        Ok(runtime) => runtime,
                        Err(e) => return drop(tx.send(Err(e))),
                    };
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    runtime.spawn(drain(pacer, home));
                    runtime.block_on(stop.cancelled());
                })?;
            let handle = rx.recv().map_err(std::io::Error::other)??;
            threads.push((handle, poker));
        }
        stopping.disarm();
        Ok(Self {
            threads,
            next: AtomicUsize::new(0),
            stop,
        })
    }

    /// Runs `task` on the next thread (round robin), at once even if it sleeps
    /// between ticks.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let (handle, poker) = &self.threads[self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len()];
        handle.spawn(task);
        poker.poke();
    }
}

impl Drop for IoThreads {
    fn drop(&mut self) {
        self.stop.cancel();
        // A thread asleep between ticks would see it only at its next window.
        for (_, poker) in &self.threads {
            poker.poke();
        }
    }
}

/// The thread's draining task: delivers the wake-ups simulation threads hand over.
async fn drain(pacer: Arc<Pacer>, home: Home) {
    let mut spare = Vec::new();
    std::future::poll_fn(|cx| {
        pacer.drain(home, cx.waker(), &mut spare);
        Poll::<()>::Pending
    })
    .await;
}
