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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;

    /// Counts the task's wake-ups.
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A source that is pending and counts its polls, keeping the last waker.
    struct Counted<'a> {
        polls: &'a Cell<u32>,
        waker: &'a std::cell::RefCell<Option<Waker>>,
    }

    impl Future for Counted<'_> {
        type Output = ();
        fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.set(self.polls.get() + 1);
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn poll_once<F: Future>(future: F, task: &Waker) -> Poll<F::Output> {
        std::pin::pin!(future).poll(&mut Context::from_waker(task))
    }

    #[test]
    fn a_source_is_polled_only_after_its_own_waker_woke_the_task() {
        let counter = Arc::new(Task(AtomicUsize::new(0)));
        let task = Waker::from(counter.clone());
        let [a, b, c] = std::array::from_fn(|_| Woken::new(&task));
        let polls = [Cell::new(0), Cell::new(0), Cell::new(0)];
        let wakers: [std::cell::RefCell<Option<Waker>>; 3] = Default::default();
        let round = |sources: [&Woken; 3]| {
            for (i, woken) in sources.into_iter().enumerate() {
                let source = Counted {
                    polls: &polls[i],
                    waker: &wakers[i],
                };
                assert!(poll_once(woken.poll(source), &task).is_pending());
            }
        };
        // Every source is polled once to begin with (its waker registered), then none.
        round([&a, &b, &c]);
        round([&a, &b, &c]);
        assert_eq!(polls.iter().map(Cell::get).collect::<Vec<_>>(), [1, 1, 1]);
        // The second source's waker: the task wakes, and only that source is polled.
        wakers[1].borrow().as_ref().unwrap().wake_by_ref();
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        round([&a, &b, &c]);
        assert_eq!(polls.iter().map(Cell::get).collect::<Vec<_>>(), [1, 2, 1]);
        // `set` (a timer reset) and the kept waker (a stop signal) mark their own.
        c.set();
        a.waker().wake_by_ref();
        round([&a, &b, &c]);
        assert_eq!(polls.iter().map(Cell::get).collect::<Vec<_>>(), [2, 2, 2]);
    }

    #[test]
    fn a_ready_source_is_polled_again_at_the_next_wake_up() {
        let task = Waker::from(Arc::new(Task(AtomicUsize::new(0))));
        let [ready, other] = std::array::from_fn(|_| Woken::new(&task));
        assert!(poll_once(ready.poll(std::future::ready(())), &task).is_ready());
        assert!(poll_once(ready.poll(std::future::ready(())), &task).is_ready());
        // The other source is polled on its own flag.
        let polled = Cell::new(false);
        let source = std::future::poll_fn(|_| {
            polled.set(true);
            Poll::<()>::Pending
        });
        assert!(poll_once(other.poll(source), &task).is_pending());
        assert!(polled.get());
    }
}
