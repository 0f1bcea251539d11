//! [`Woken`]: one source of a connection loop's wake-ups, polled only when it woke
//! the loop. The relay's connection loop and the client's driver both select over a
//! socket, a queue and timers at every wake-up; most wake-ups come from one of them,
//! and polling the others again (a socket's readiness check and waker registration,
//! a lock, a timer's registration) was a tenth of the work per message. Plain `std`:
//! no runtime.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// A waker of its own for one source of a task's wake-ups: it notes it was woken and
/// wakes the task. [`Woken::poll`] polls the source only when it was woken since its
/// last poll returned `Pending`.
///
/// This relies on the source, once pending, waking the waker of its last poll when
/// it can go on, even after the future that polled it was dropped (as a socket's
/// readiness, a tokio channel's receiver or a `Sleep` kept across polls do; not a
/// `Notify` waited on by a future made anew each time). After changing the source
/// outside a poll (a timer reset), call [`Woken::set`].
pub struct Woken {
    flag: Arc<Flag>,
    waker: Waker,
}

struct Flag {
    woken: AtomicBool,
    /// The task the loop runs in (spawned for it: its waker does not change).
    task: Waker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl Woken {
    /// A source of the task whose waker is `task`; woken to begin with, so the first
    /// poll registers the waker.
    pub fn new(task: &Waker) -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: task.clone(),
        });
        let waker = Waker::from(flag.clone());
        Self { flag, waker }
    }

    /// The waker of the task the loop runs in (call it from that task).
    pub async fn task() -> Waker {
        std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
    }

    /// The waker that marks this source woken, for a source that keeps a waker
    /// registered once rather than the one of each poll (a stop signal).
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Marks the source woken: its next poll happens (and registers the waker).
    pub fn set(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }

    /// `source`, polled through this waker when it was woken. The flag is cleared
    /// before the poll (a wake during it sets it again) and set again when the source
    /// was ready: it may be ready again at once (more bytes read than one message).
    pub async fn poll<F: Future>(&self, source: F) -> F::Output {
        let mut source = std::pin::pin!(source);
        std::future::poll_fn(|cx| {
            debug_assert!(cx.waker().will_wake(&self.flag.task), "the loop moved to another task");
            // A load first: most polls find the flag clear, and a swap writes its line.
            if !self.flag.woken.load(Ordering::Acquire) || !self.flag.woken.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
            let ready = source.as_mut().poll(&mut Context::from_waker(&self.waker));
            if ready.is_ready() {
                self.flag.woken.store(true, Ordering::Release);
            }
            ready
        })
        .await
    }
}
