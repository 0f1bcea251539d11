//! I/O in step with the ticks: the threads that serve connections sleep between tick
//! instants instead of waking for every message a client sends.
//!
//! A relay's inputs only matter at its rooms' ticks, and its frames leave right after
//! them. Waking an I/O thread for each arriving message (a few thousand times a second
//! at 200 clients) cost more CPU than anything the relay did with the message: the
//! kernel's switch to and from the sleeping thread, the poll of readiness, the task's
//! wake-up. While rooms tick, the [`Pacer`] lets an I/O thread sleep until whichever
//! comes first:
//!
//! - shortly before the next tick of any simulation thread, so the inputs that
//!   arrived meanwhile are read and queued for that tick: twice as long before it as
//!   the thread's last such reading took, and 0.25 ms more ([`MIN_LEAD`] to
//!   [`MAX_LEAD`]);
//! - a simulation thread finishing a turn that left frames or messages for this
//!   thread's connections (the turn's wake-ups are handed over in one batch, see
//!   [`Deferral`]);
//! - `max_wait` after it fell asleep: the longest anything else (a ping, a request, a
//!   handshake, a timer) waits for the thread.
//!
//! With no room ticking, or `max_wait` zero, or while a connection on the thread is
//! being set up ([`hurry`]), I/O threads park as usual: woken by each message.
//!
//! Plain threads and atomics: the I/O threads' runtime calls [`Pacer::before_park`]
//! and [`Pacer::drain`] (see `transport::io_threads`); nothing here imports tokio.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long before a tick an I/O thread wakes to read the inputs for it, at least ...
pub const MIN_LEAD: Duration = Duration::from_millis(1);

/// ... and at most (the inputs that arrive in that time wait for the tick after).
pub const MAX_LEAD: Duration = Duration::from_millis(5);

/// Sleeps shorter than this are not taken (the thread parks as usual instead).
const MIN_SLEEP: Duration = Duration::from_micros(200);

/// A deadline slot with no tick in it.
const NO_TICK: u64 = u64::MAX;

/// Which I/O thread a connection's task runs on (an index into the pacer's threads).
pub type Home = u16;

/// Not an I/O thread of the pacer's (a QUIC connection, a test's runtime).
pub const NO_HOME: Home = Home::MAX;

thread_local! {
    /// Set during a simulation thread's turn ([`Deferral`]).
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// Wake-ups the turn deferred (kept allocated between turns).
    static DEFERRED: RefCell<Vec<(Home, Waker)>> = const { RefCell::new(Vec::new()) };
    /// [`Hurry`] guards alive on this I/O thread.
    static HURRIED: Cell<u32> = const { Cell::new(0) };
    /// This I/O thread as its pacer sees it ([`Pacer::enter`]).
    static IO: RefCell<Option<Arc<IoThread>>> = const { RefCell::new(None) };
}

/// Wakes one I/O thread from its sleep between ticks ([`poker`]).
#[derive(Debug, Clone)]
pub struct Poker(Arc<IoThread>);

impl Poker {
    /// Wakes the thread if it sleeps: a task on it was woken from another thread
    /// (told to stop, say), which its runtime alone would not notice before the next
    /// window.
    pub fn poke(&self) {
        self.0.poke();
    }
}

/// The calling I/O thread's [`Poker`] (none on other threads).
pub fn poker() -> Option<Poker> {
    IO.with(|io| io.borrow().clone().map(Poker))
}

/// Awaits `work`, which another thread finishes (a Redis command another runtime
/// runs), so that the wake-up reaches the calling I/O thread at once even while it
/// sleeps between ticks: the task's waker is wrapped in one that also pokes the
/// thread. On other threads, `work` as it is.
pub async fn poked<F: Future>(work: F) -> F::Output {
    let Some(poker) = poker() else {
        return work.await;
    };
    let mut work = std::pin::pin!(work);
    // The wrapping waker, made again only when the task's waker changes.
    let mut wrapped: Option<(Waker, Waker)> = None;
    std::future::poll_fn(|cx| {
        if !wrapped.as_ref().is_some_and(|(task, _)| task.will_wake(cx.waker())) {
            let poking = Arc::new(Poking {
                task: cx.waker().clone(),
                poker: poker.clone(),
            });
            wrapped = Some((cx.waker().clone(), Waker::from(poking)));
        }
        let (_, poking) = wrapped.as_ref().expect("set above");
        work.as_mut().poll(&mut std::task::Context::from_waker(poking))
    })
    .await
}

/// A task's waker that also pokes its I/O thread ([`poked`]).
struct Poking {
    task: Waker,
    poker: Poker,
}

impl Wake for Poking {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The task is queued on its runtime first: the poked thread finds it there.
        self.task.wake_by_ref();
        self.poker.poke();
    }
}

/// While it lives, the I/O thread that made it is not held (see [`hurry`]).
#[derive(Debug)]
#[must_use]
pub struct Hurry {
    on_io_thread: bool,
}

/// Keeps the calling I/O thread from being held while the guard lives: a connection
/// being set up (its TLS handshake and its first HTTP request, an upgrade, takes a
/// few round trips) does not wait for a window at each. A no-op on other threads.
/// Drop it on the thread that made it (a task on an I/O thread stays there).
pub fn hurry() -> Hurry {
    let on_io_thread = home() != NO_HOME;
    if on_io_thread {
        HURRIED.with(|h| h.set(h.get() + 1));
    }
    Hurry { on_io_thread }
}

impl Drop for Hurry {
    fn drop(&mut self) {
        if self.on_io_thread {
            HURRIED.with(|h| h.set(h.get().saturating_sub(1)));
        }
    }
}

/// The I/O thread the calling thread is, if it is one ([`NO_HOME`] otherwise): a
/// connection's task records it with its waker, so wake-ups from simulation threads
/// reach its thread in batches.
pub fn home() -> Home {
    IO.with(|io| io.borrow().as_ref().map_or(NO_HOME, |io| io.home))
}

/// Wakes `waker`, or, during a simulation thread's turn ([`Deferral`]), leaves the
/// wake-up for the end of the turn when the task lives on an I/O thread (`home`).
pub fn wake(waker: Waker, home: Home) {
    if home != NO_HOME && DEFERRING.with(Cell::get) {
        DEFERRED.with(|d| d.borrow_mut().push((home, waker)));
    } else {
        waker.wake();
    }
}

/// What an I/O thread about to park does ([`Pacer::before_park`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// Park as usual (no room ticks, or the pacer holds no thread).
    Park,
    /// Look for I/O now, without blocking.
    Poll,
    /// Sleep until then; whether that is before a tick (else `max_wait` from when
    /// the thread first parked).
    Sleep(Instant, bool),
}

/// One I/O thread as the pacer sees it.
#[derive(Debug)]
struct IoThread {
    /// Its index among the pacer's threads.
    home: Home,
    /// Wake-ups handed over by simulation threads, not yet delivered.
    woken: Mutex<Vec<Waker>>,
    /// The thread's draining task ([`Pacer::drain`]), woken when `woken` fills.
    drainer: Mutex<Option<Waker>>,
    /// While the thread sleeps in [`Pacer::before_park`]: until when, in nanoseconds
    /// after the pacer's epoch (0: awake).
    until: AtomicU64,
    /// How long before a tick the thread wakes, in nanoseconds (see the module
    /// documentation).
    lead: AtomicU64,
    /// When the thread woke for a tick's window, until it next parks (0: it did not).
    woke: AtomicU64,
    /// When the thread last left [`Pacer::before_park`] (its runtime then looks for
    /// I/O), in nanoseconds after the pacer's epoch.
    polled: AtomicU64,
    /// Set by [`Pacer::poke`]: work arrived from another thread.
    poked: AtomicBool,
    /// Set by [`Pacer::enter`].
    thread: OnceLock<Thread>,
}

impl IoThread {
    fn new(home: Home) -> Self {
        Self {
            home,
            woken: Mutex::default(),
            drainer: Mutex::default(),
            until: AtomicU64::new(0),
            lead: AtomicU64::new(MIN_LEAD.as_nanos() as u64),
            woke: AtomicU64::new(0),
            polled: AtomicU64::new(0),
            poked: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    fn lead(&self) -> Duration {
        Duration::from_nanos(self.lead.load(Ordering::Relaxed))
    }

    /// Sets the lead from how long the thread's reading before a tick took.
    fn learn_lead(&self, reading: Duration) {
        let target = (2 * reading + Duration::from_micros(250)).clamp(MIN_LEAD, MAX_LEAD);
        let lead = self.lead();
        // At once when longer; an eighth of the way each time when shorter.
        let lead = if target >= lead {
            target
        } else {
            lead - (lead - target) / 8
        };
        self.lead.store(lead.as_nanos() as u64, Ordering::Relaxed);
    }

    fn unpark(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    fn poke(&self) {
        self.poked.store(true, Ordering::SeqCst);
        self.unpark_if_asleep();
    }

    /// Unparks the thread if it sleeps in [`Pacer::before_park`].
    fn unpark_if_asleep(&self) {
        if self.until.load(Ordering::SeqCst) != 0 {
            self.unpark();
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Pacer {
    epoch: Instant,
    max_wait: Duration,
    /// Each simulation thread's next tick, in nanoseconds after `epoch` ([`NO_TICK`]:
    /// none of its rooms ticks).
    ticks: Box<[AtomicU64]>,
    io: Box<[Arc<IoThread>]>,
}

impl Pacer {
    /// A pacer for `sim_threads` simulation threads and `io_threads` I/O threads whose
    /// sleeps last at most `max_wait` (zero: I/O threads are never held).
    pub fn new(sim_threads: usize, io_threads: usize, max_wait: Duration) -> Self {
        assert!(io_threads < usize::from(NO_HOME), "too many I/O threads");
        Self {
            epoch: Instant::now(),
            max_wait,
            ticks: (0..sim_threads).map(|_| AtomicU64::new(NO_TICK)).collect(),
            io: (0..io_threads as Home)
                .map(|home| Arc::new(IoThread::new(home)))
                .collect(),
        }
    }

    /// The number of I/O threads.
    pub fn io_threads(&self) -> usize {
        self.io.len()
    }

    /// Called by simulation thread `sim` at the end of each turn: when it ticks next
    /// (none: no room of its ticks). I/O threads asleep past that tick's window wake
    /// to sleep until it instead.
    pub fn next_tick(&self, sim: usize, at: Option<Instant>) {
        let nanos = at.map_or(NO_TICK, |at| self.nanos(at));
        let Some(slot) = self.ticks.get(sim) else {
            return;
        };
        if slot.swap(nanos, Ordering::SeqCst) == nanos || nanos == NO_TICK {
            return;
        }
        for io in &self.io {
            let window = nanos.saturating_sub(io.lead.load(Ordering::Relaxed));
            if io.until.load(Ordering::SeqCst) > window {
                io.unpark();
            }
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(NO_TICK - 1)
    }

    /// Starts deferring the calling simulation thread's wake-ups of tasks on I/O
    /// threads; the returned guard hands them over when dropped.
    pub fn defer(&self) -> Deferral<'_> {
        DEFERRING.with(|d| d.set(true));
        Deferral { pacer: self }
    }

    /// Called once on I/O thread `home`, before its runtime starts.
    pub fn enter(&self, home: Home) {
        let io = &self.io[usize::from(home)];
        let _ = io.thread.set(std::thread::current());
        IO.with(|me| *me.borrow_mut() = Some(io.clone()));
    }

    /// Called by I/O thread `home`'s runtime before it parks: sleeps until the next
    /// window (see the module documentation) while rooms tick, then wakes the
    /// thread's draining task, so the runtime looks for I/O without blocking.
    pub fn before_park(&self, home: Home) {
        let io = &self.io[usize::from(home)];
        let woke = io.woke.swap(0, Ordering::Relaxed);
        if woke != 0 {
            io.learn_lead(Duration::from_nanos(self.nanos(Instant::now()).saturating_sub(woke)));
        }
        let (latest, lead) = (Instant::now() + self.max_wait, io.lead());
        let polled = self.epoch + Duration::from_nanos(io.polled.load(Ordering::Relaxed));
        let mut poll = false;
        while HURRIED.with(Cell::get) == 0 && !io.poked.swap(false, Ordering::SeqCst) {
            let (until, before_tick) = match self.window(Instant::now(), lead, polled, latest) {
                Window::Park => break,
                Window::Poll => {
                    poll = true;
                    break;
                }
                Window::Sleep(until, before_tick) => (until, before_tick),
            };
            io.until.store(self.nanos(until).max(1), Ordering::SeqCst);
            // A poke while this thread chose its window found no sleeper to unpark: it
            // read `until` before the store above (each side stores its flag, then
            // reads the other's, both `SeqCst`: one of them sees the other). Without
            // this, a new connection's task or a stop waited out the whole window.
            if io.poked.swap(false, Ordering::SeqCst) {
                break;
            }
            // A tick published while this thread chose its window (`next_tick` saw no
            // sleeper to wake), or a hand-over meanwhile (its drainer was woken): look
            // again.
            if !io.woken.lock().is_empty() {
                break;
            }
            if self.window(Instant::now(), lead, polled, latest) != Window::Sleep(until, before_tick) {
                io.until.store(0, Ordering::SeqCst);
                continue;
            }
            std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
            poll = true;
            let now = Instant::now();
            if now >= until {
                if before_tick {
                    io.woke.store(self.nanos(now).max(1), Ordering::Relaxed);
                }
                break;
            }
            // Woken early to sleep until a nearer window (see `next_tick`), or for
            // nothing: sleep on.
            if !io.woken.lock().is_empty() {
                break;
            }
        }
        io.until.store(0, Ordering::SeqCst);
        io.polled.store(self.nanos(Instant::now()), Ordering::Relaxed);
        if poll && let Some(drainer) = io.drainer.lock().as_ref() {
            drainer.wake_by_ref();
        }
    }

    /// I/O thread `home`'s [`Poker`].
    pub fn poker(&self, home: Home) -> Poker {
        Poker(self.io[usize::from(home)].clone())
    }

    /// What an I/O thread that parks at `now`, reads `lead` before a tick, last
    /// looked for I/O at `polled` and sleeps until `latest` at the most should do.
    fn window(&self, now: Instant, lead: Duration, polled: Instant, latest: Instant) -> Window {
        if self.max_wait.is_zero() {
            return Window::Park;
        }
        let mut ticking = false;
        let mut next: Option<Instant> = None;
        for slot in &self.ticks {
            let tick = slot.load(Ordering::SeqCst);
            if tick == NO_TICK {
                continue;
            }
            ticking = true;
            let at = (self.epoch + Duration::from_nanos(tick))
                .checked_sub(lead)
                .unwrap_or(self.epoch);
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
            } else if polled < at {
                // Inside this tick's window, not read since it opened: read now.
                return Window::Poll;
            }
            // (Read since: its simulation thread wakes this one when it is done.)
        }
        if !ticking {
            return Window::Park;
        }
        let (until, before_tick) = match next {
            Some(at) if at <= latest => (at, true),
            _ => (latest, false),
        };
        if until > now + MIN_SLEEP {
            Window::Sleep(until, before_tick)
        } else {
            Window::Park
        }
    }

    /// Called by I/O thread `home`'s draining task whenever it is polled: registers
    /// `waker` for the next hand-over and wakes every task handed over so far.
    pub fn drain(&self, home: Home, waker: &Waker, spare: &mut Vec<Waker>) {
        let io = &self.io[usize::from(home)];
        {
            let mut drainer = io.drainer.lock();
            if !drainer.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *drainer = Some(waker.clone());
            }
        }
        std::mem::swap(&mut *io.woken.lock(), spare);
        spare.drain(..).for_each(Waker::wake);
    }

    /// Hands the deferred wake-ups to their I/O threads (`deferred` is left empty)
    /// and wakes those threads.
    fn hand_over(&self, deferred: &mut Vec<(Home, Waker)>) {
        deferred.sort_unstable_by_key(|&(home, _)| home);
        let mut wakes = deferred.drain(..).peekable();
        while let Some((home, first)) = wakes.next() {
            let Some(io) = self.io.get(usize::from(home)) else {
                first.wake();
                continue;
            };
            {
                let mut woken = io.woken.lock();
                woken.push(first);
                while let Some((_, waker)) = wakes.next_if(|&(h, _)| h == home) {
                    woken.push(waker);
                }
            }
            if let Some(drainer) = io.drainer.lock().as_ref() {
                drainer.wake_by_ref();
            }
            io.unpark_if_asleep();
        }
    }
}

/// A simulation thread's turn during which wake-ups of tasks on I/O threads wait
/// ([`Pacer::defer`]); dropping it hands them over.
#[must_use]
pub struct Deferral<'a> {
    pacer: &'a Pacer,
}

impl Drop for Deferral<'_> {
    fn drop(&mut self) {
        DEFERRING.with(|d| d.set(false));
        let mut deferred = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
        if !deferred.is_empty() {
            self.pacer.hand_over(&mut deferred);
        }
        // Keep the allocation for the next turn.
        DEFERRED.with(|d| *d.borrow_mut() = deferred);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// Equal but for the pacer's nanosecond rounding.
    fn near(a: Instant, b: Instant) -> bool {
        a.max(b) - a.min(b) < Duration::from_micros(1)
    }

    #[test]
    fn io_threads_park_as_usual_while_no_room_ticks_or_when_not_held() {
        let pacer = Pacer::new(2, 1, 50 * MS);
        let now = Instant::now();
        assert_eq!(pacer.window(now, MIN_LEAD, now, now + 50 * MS), Window::Park);
        let held_not = Pacer::new(1, 1, Duration::ZERO);
        held_not.next_tick(0, Some(now + 20 * MS));
        assert_eq!(held_not.window(now, MIN_LEAD, now, now + 50 * MS), Window::Park);
    }

    #[test]
    fn an_io_thread_sleeps_until_just_before_the_next_tick_and_no_longer_than_max_wait() {
        let pacer = Pacer::new(2, 1, 50 * MS);
        let (now, lead) = (Instant::now(), 2 * MS);
        let window = |now, latest| pacer.window(now, lead, now, latest);
        pacer.next_tick(0, Some(now + 30 * MS));
        pacer.next_tick(1, Some(now + 20 * MS));
        assert!(matches!(window(now, now + 50 * MS), Window::Sleep(u, true) if near(u, now + 18 * MS)));
        // A tick further than max_wait: max_wait from when the thread first parked.
        pacer.next_tick(1, Some(now + 90 * MS));
        assert!(matches!(window(now, now + 50 * MS), Window::Sleep(u, true) if near(u, now + 28 * MS)));
        pacer.next_tick(0, Some(now + 200 * MS));
        assert_eq!(window(now, now + 50 * MS), Window::Sleep(now + 50 * MS, false));
        assert_eq!(
            window(now + 10 * MS, now + 50 * MS),
            Window::Sleep(now + 50 * MS, false)
        );
        // Inside a tick's window and read since it opened: until its thread hands
        // over, at most max_wait; a thread that has not read since reads at once.
        pacer.next_tick(0, Some(now + MS));
        assert_eq!(window(now, now + 50 * MS), Window::Sleep(now + 50 * MS, false));
        assert_eq!(pacer.window(now, lead, now - 2 * MS, now + 50 * MS), Window::Poll);
        // Another thread's tick past: the next one of a thread still ticking counts.
        pacer.next_tick(1, Some(now + 10 * MS));
        assert!(matches!(window(now, now + 50 * MS), Window::Sleep(u, true) if near(u, now + 8 * MS)));
        // A window closer than the shortest sleep: parked as usual.
        let pacer = Pacer::new(1, 1, Duration::from_micros(100));
        pacer.next_tick(0, Some(now + 20 * MS));
        assert_eq!(
            pacer.window(now, lead, now, now + Duration::from_micros(100)),
            Window::Park
        );
    }

    #[test]
    fn the_lead_grows_at_once_with_the_reading_before_a_tick_and_shrinks_slowly() {
        let io = IoThread::new(0);
        assert_eq!(io.lead(), MIN_LEAD);
        io.learn_lead(Duration::from_micros(100));
        assert_eq!(io.lead(), MIN_LEAD, "never shorter than MIN_LEAD");
        io.learn_lead(Duration::from_micros(1500));
        assert_eq!(io.lead(), Duration::from_micros(3250));
        io.learn_lead(Duration::from_micros(100));
        assert_eq!(io.lead(), Duration::from_micros(3250) - Duration::from_micros(2250) / 8);
        io.learn_lead(Duration::from_millis(40));
        assert_eq!(io.lead(), MAX_LEAD);
    }

    #[test]
    fn a_turn_hands_its_wake_ups_to_each_io_thread_at_its_end() {
        let pacer = Pacer::new(1, 2, 50 * MS);
        let (on_0, on_1, elsewhere) = (
            Arc::new(Count::default()),
            Arc::new(Count::default()),
            Arc::new(Count::default()),
        );
        // Outside a turn: at once.
        wake(Waker::from(on_0.clone()), 0);
        assert_eq!(on_0.get(), 1);
        {
            let _turn = pacer.defer();
            wake(Waker::from(on_0.clone()), 0);
            wake(Waker::from(on_1.clone()), 1);
            wake(Waker::from(on_0.clone()), 0);
            wake(Waker::from(elsewhere.clone()), NO_HOME);
            assert_eq!(
                (on_0.get(), on_1.get(), elsewhere.get()),
                (1, 0, 1),
                "not an I/O thread's: at once"
            );
        }
        assert_eq!((on_0.get(), on_1.get()), (1, 0), "handed over, not delivered");
        let (drainer_0, drainer_1) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let mut spare = Vec::new();
        pacer.drain(0, &Waker::from(drainer_0.clone()), &mut spare);
        assert_eq!((on_0.get(), on_1.get()), (3, 0));
        pacer.drain(1, &Waker::from(drainer_1.clone()), &mut spare);
        assert_eq!(on_1.get(), 1);
        // The next turn's hand-over wakes the registered drainers.
        {
            let _turn = pacer.defer();
            wake(Waker::from(on_1.clone()), 1);
        }
        assert_eq!((drainer_0.get(), drainer_1.get()), (0, 1));
        pacer.drain(1, &Waker::from(drainer_1.clone()), &mut spare);
        assert_eq!(on_1.get(), 2);
    }

    /// The thread sleeps for up to a minute: only a hand-over or a nearer tick ends
    /// its sleep before the test's harness gives up on it.
    #[test]
    fn a_sleeping_io_thread_wakes_for_a_hand_over_and_for_a_nearer_tick() {
        let pacer = Arc::new(Pacer::new(1, 1, Duration::from_secs(60)));
        pacer.next_tick(0, Some(Instant::now() + Duration::from_secs(50)));
        let delivered = Arc::new(Count::default());
        let io = std::thread::spawn({
            let (pacer, delivered) = (pacer.clone(), delivered.clone());
            move || {
                pacer.enter(0);
                let drainer = Arc::new(Count::default());
                let mut spare = Vec::new();
                pacer.drain(0, &Waker::from(drainer.clone()), &mut spare);
                pacer.before_park(0);
                pacer.drain(0, &Waker::from(drainer.clone()), &mut spare);
                assert_eq!(delivered.get(), 1, "woken by the hand-over");
                assert!(drainer.get() >= 1, "its drainer woken");
                let started = Instant::now();
                pacer.before_park(0);
                started.elapsed()
            }
        });
        while pacer.io[0].until.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        {
            let _turn = pacer.defer();
            wake(Waker::from(delivered.clone()), 0);
        }
        // Asleep again, until just before the tick in 50 s; a tick in 30 ms moves it.
        while delivered.get() == 0 {
            std::thread::yield_now();
        }
        while pacer.io[0].until.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        pacer.next_tick(0, Some(Instant::now() + 30 * MS));
        let slept = io.join().expect("the I/O thread");
        assert!(slept < Duration::from_secs(10), "woke for the nearer tick: {slept:?}");
    }

    /// Work another thread finishes, awaited through [`poked`] on an I/O thread
    /// asleep until a tick in 50 s: its completion wakes the task and the thread.
    #[test]
    fn work_finished_on_another_thread_wakes_a_sleeping_io_thread_when_poked() {
        let pacer = Arc::new(Pacer::new(1, 1, Duration::from_secs(60)));
        pacer.next_tick(0, Some(Instant::now() + Duration::from_secs(50)));
        // The work: done once `done` is set, waking the waker it was polled with.
        let done: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
        let task = Arc::new(Count::default());
        let io = std::thread::spawn({
            let (pacer, done, task) = (pacer.clone(), done.clone(), task.clone());
            move || {
                pacer.enter(0);
                let work = std::future::poll_fn(|cx| {
                    let mut done = done.lock();
                    if done.0 {
                        return std::task::Poll::Ready(());
                    }
                    done.1 = Some(cx.waker().clone());
                    std::task::Poll::Pending
                });
                let mut awaited = std::pin::pin!(poked(work));
                let waker = Waker::from(task.clone());
                let mut cx = std::task::Context::from_waker(&waker);
                assert!(awaited.as_mut().poll(&mut cx).is_pending());
                let started = Instant::now();
                pacer.before_park(0);
                let slept = started.elapsed();
                assert!(awaited.as_mut().poll(&mut cx).is_ready());
                slept
            }
        });
        while pacer.io[0].until.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let waker = {
            let mut done = done.lock();
            done.0 = true;
            done.1.take().expect("polled once")
        };
        waker.wake();
        let slept = io.join().expect("the I/O thread");
        assert!(slept < Duration::from_secs(10), "woke for the work: {slept:?}");
        assert_eq!(task.get(), 1, "the task woken");
    }
}
