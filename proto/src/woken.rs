//! [`Woken`]: one source of a connection loop's wake-ups, polled only when it woke
//! the loop. The relay's connection loop and the client's driver both select over a
//! socket, a queue and timers at every wake-up; most wake-ups come from one of them,
//! and polling the others again (a socket's readiness check and waker registration,
//! a lock, a timer's registration) was a tenth of the work per message. Plain `std`:
//! no runtime.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// A waker of its own for one source of a task's wake-ups: it notes it was woken and
/// wakes the task. [`Woken::poll`] polls the source only when it was woken since its
/// last poll returned `Pending`.
///
/// The sources of one loop are made together ([`Woken::group`]) and keep their flags
/// in one word, so a wake-up that checks every source reads one cache line: with a
/// few hundred connections on a thread, each flag of its own allocation was a cache
/// miss per source per wake-up.
///
/// This relies on the source, once pending, waking the waker of its last poll when
/// it can go on, even after the future that polled it was dropped (as a socket's
/// readiness, a tokio channel's receiver or a `Sleep` kept across polls do; not a
/// `Notify` waited on by a future made anew each time). After changing the source
/// outside a poll (a timer reset), call [`Woken::set`].
pub struct Woken {
    flags: Arc<Flags>,
    bit: u8,
    waker: Waker,
}

/// The flags of a group of sources, one bit each.
struct Flags {
    woken: AtomicU8,
    /// The task the loop runs in (spawned for it: its waker does not change).
    task: Waker,
}

/// What one source's waker holds: the group's flags and its bit.
struct Source {
    flags: Arc<Flags>,
    bit: u8,
}

impl Wake for Source {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flags.woken.fetch_or(self.bit, Ordering::Release);
        self.flags.task.wake_by_ref();
    }
}

impl Woken {
    /// `N` sources (at most 8) of the task whose waker is `task`; each woken to begin
    /// with, so its first poll registers its waker.
    pub fn group<const N: usize>(task: &Waker) -> [Woken; N] {
        const { assert!(N <= 8, "a group's flags are one byte") };
        let flags = Arc::new(Flags {
            woken: AtomicU8::new(u8::MAX),
            task: task.clone(),
        });
        std::array::from_fn(|i| {
            let bit = 1 << i;
            let waker = Waker::from(Arc::new(Source {
                flags: flags.clone(),
                bit,
            }));
            Woken {
                flags: flags.clone(),
                bit,
                waker,
            }
        })
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
        self.flags.woken.fetch_or(self.bit, Ordering::Release);
    }

    /// `source`, polled through this waker when it was woken. The flag is cleared
    /// before the poll (a wake during it sets it again) and set again when the source
    /// was ready: it may be ready again at once (more bytes read than one message).
    pub async fn poll<F: Future>(&self, source: F) -> F::Output {
        let mut source = std::pin::pin!(source);
        std::future::poll_fn(|cx| {
            debug_assert!(cx.waker().will_wake(&self.flags.task), "the loop moved to another task");
            // A load first: most polls find the flag clear, and a write takes the line.
            let woken = &self.flags.woken;
            if woken.load(Ordering::Acquire) & self.bit == 0
                || woken.fetch_and(!self.bit, Ordering::AcqRel) & self.bit == 0
            {
                return Poll::Pending;
            }
            let ready = source.as_mut().poll(&mut Context::from_waker(&self.waker));
            if ready.is_ready() {
                self.set();
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
        let [a, b, c] = Woken::group::<3>(&task);
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
        let [ready, other] = Woken::group::<2>(&task);
        assert!(poll_once(ready.poll(std::future::ready(())), &task).is_ready());
        assert!(poll_once(ready.poll(std::future::ready(())), &task).is_ready());
        // The other source's flag was not touched by the ready one's.
        let polled = Cell::new(false);
        let source = std::future::poll_fn(|_| {
            polled.set(true);
            Poll::<()>::Pending
        });
        assert!(poll_once(other.poll(source), &task).is_pending());
        assert!(polled.get());
    }
}
