//! Sessions between connections: parked sessions waiting to be resumed, and the live
//! sessions of each user (for the "newest replaces oldest" policy).
//!
//! Parking is sans IO (`now` is passed in): a dropped connection's session is parked
//! under its resume token until `now + grace`; a reconnect presenting the token takes
//! it back; [`Registry::expire`] hands out the ones whose grace ended so the caller
//! can end them (their members leave their rooms).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Poll, Waker};
use std::time::Instant;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::engine::pacer::{self, Poker};
use crate::session::limits::AddressCounts;

struct Parked<T> {
    item: T,
    user: Arc<str>,
    /// Its client's sessions (see [`Registry::go_live`]).
    family: u64,
    /// When it went live: a newer client of the user replaces it, an older not.
    since_us: u64,
    /// The client's address, as per-address limits count it.
    address: IpAddr,
    until: Instant,
}

/// The parked sessions, and how many each address has.
struct ParkedSet<T> {
    by_token: HashMap<String, Parked<T>>,
    per_address: AddressCounts,
}

impl<T> ParkedSet<T> {
    fn insert(&mut self, token: String, parked: Parked<T>) {
        self.per_address.add(parked.address);
        if let Some(old) = self.by_token.insert(token, parked) {
            self.per_address.remove(old.address);
        }
    }

    fn remove(&mut self, token: &str) -> Option<Parked<T>> {
        let parked = self.by_token.remove(token)?;
        self.per_address.remove(parked.address);
        Some(parked)
    }

    /// Removes the session of `address` whose grace ends first.
    fn evict_oldest_of(&mut self, address: IpAddr) -> Option<T> {
        let token = (self.by_token.iter())
            .filter(|(_, p)| p.address == address)
            .min_by_key(|(_, p)| p.until)
            .map(|(token, _)| token.clone())?;
        self.remove(&token).map(|p| p.item)
    }
}

/// Whose session [`Registry::park`] parks.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Its user.
    pub user: Arc<str>,
    /// Its client's sessions (see [`Registry::go_live`]).
    pub family: u64,
    /// The client's address, as per-address limits count it.
    pub address: IpAddr,
    /// The session as [`Registry::go_live`] recorded it: its id and when it went live
    /// (none: it never went live).
    pub live: Option<(u64, u64)>,
}

/// Why a live connection was asked to stop (see [`Stop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The server is shutting down.
    Shutdown,
    /// A newer session of the same user replaced this one.
    Replaced,
    /// A resume on another connection took this session over.
    TakenOver,
}

/// Tells one live connection to stop, and why: one signal per connection, so the
/// connection loop waits on a single, cheap poll whatever the reason (shutdown reaches
/// every live connection through [`Registry::stop_all`]). The first reason given wins.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<StopState>);

#[derive(Debug, Default)]
struct StopState {
    /// 0 while running, else the reason's code (see [`Stop::stop`]).
    reason: AtomicU8,
    waker: AtomicWaker,
    /// The connection's I/O thread, woken from its sleep between ticks by a stop.
    poker: OnceLock<Poker>,
}

impl Stop {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the connection to stop for `reason` (a second request keeps the first
    /// reason, except that being replaced outranks being taken over: the session a
    /// resume was taking over is ended, as the newer client's replacing it says).
    pub fn stop(&self, reason: StopReason) {
        let code = match reason {
            StopReason::Shutdown => 1,
            StopReason::Replaced => 2,
            StopReason::TakenOver => 3,
        };
        let replaced_take_over = |now: u8| (now == 0 || (now == 3 && code == 2)).then_some(code);
        let _ = (self.0.reason).fetch_update(Ordering::AcqRel, Ordering::Acquire, replaced_take_over);
        self.0.waker.wake();
        if let Some(poker) = self.0.poker.get() {
            poker.poke();
        }
    }

    /// Registers the waker `stop` wakes (once): the connection loop's, which does not
    /// change. One loop waits on a signal (a later registration replaces this one).
    pub fn register(&self, waker: &Waker) {
        self.0.waker.register(waker);
        if let Some(poker) = pacer::poker() {
            let _ = self.0.poker.set(poker);
        }
    }

    /// Ready once the connection should stop: an atomic load at each poll, for the
    /// loop that [`Stop::register`]ed (which polls it when that waker was woken).
    pub fn registered(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|_| {
            if self.is_stopped() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Whether the connection was asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.0.reason.load(Ordering::Acquire) != 0
    }

    /// Why the connection was asked to stop (meaningful once [`Stop::is_stopped`]).
    pub fn reason(&self) -> StopReason {
        match self.0.reason.load(Ordering::Acquire) {
            2 => StopReason::Replaced,
            3 => StopReason::TakenOver,
            _ => StopReason::Shutdown,
        }
    }
}

/// A live session: its id, its client's family (see [`Registry::go_live`]), when it
/// went live, and the signal that tells it to stop.
struct Live {
    session: u64,
    family: u64,
    since_us: u64,
    stop: Stop,
}

/// See the module documentation. `T` is the parked session.
pub struct Registry<T> {
    parked: Mutex<ParkedSet<T>>,
    live: Mutex<HashMap<Arc<str>, Vec<Live>>>,
    /// Live sessions by resume token: a resume that arrives before the server noticed
    /// the old connection died takes the session over (see [`Registry::take_over`]).
    live_tokens: Mutex<HashMap<String, (Arc<str>, Stop)>>,
    /// Resumes looking for their session, by token (and user): the newest one's number (see
    /// [`Registry::resume_begins`]).
    resuming: Mutex<HashMap<String, u64>>,
    next_resume: AtomicU64,
    /// When the last session went live (written under `live`'s lock).
    last_live_us: AtomicU64,
    /// Set by [`Registry::stop_all`] (under `live`'s lock): sessions going live after
    /// it are stopped at once.
    stopping: AtomicBool,
    max_parked: usize,
    max_parked_per_address: usize,
}

impl<T> std::fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("parked", &self.parked.lock().by_token.len())
            .finish()
    }
}

impl<T> Registry<T> {
    /// An empty registry holding at most `max_parked` parked sessions, and at most
    /// `max_parked_per_address` of one address.
    pub fn new(max_parked: usize, max_parked_per_address: usize) -> Self {
        Self {
            parked: Mutex::new(ParkedSet {
                by_token: HashMap::new(),
                per_address: AddressCounts::default(),
            }),
            live: Mutex::new(HashMap::new()),
            live_tokens: Mutex::new(HashMap::new()),
            resuming: Mutex::new(HashMap::new()),
            next_resume: AtomicU64::new(0),
            last_live_us: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            max_parked,
            max_parked_per_address: max_parked_per_address.max(1),
        }
    }

    /// Parks `item` of `user`, whose client is at `address`, under `token` until
    /// `until`. Room is made, when needed, by evicting the session of the same address
    /// whose grace ends first (the address holds its share), or, when the registry is
    /// full, that of the address holding the most: one address dropping connections on
    /// purpose cannot keep other clients' sessions from being parked. Returns what the
    /// caller must end now: the evicted session, or `item` itself when nothing may be
    /// parked at all.
    ///
    /// `owner.live`: the session as [`Registry::go_live`] recorded it, forgotten as
    /// live as it is parked, under one lock: a newer client of
    /// the user that went live meanwhile (`replace`) took it off the live sessions,
    /// and it is then returned to be ended, not parked (parked a moment later, it
    /// would have escaped that client's replacing it).
    pub fn park(&self, token: String, owner: Owner, item: T, until: Instant) -> Option<T> {
        let Owner {
            user,
            family,
            address,
            live,
        } = owner;
        let mut live_sessions = self.live.lock();
        let since_us = match live {
            Some((session, since_us)) => {
                if !forget_live(&mut live_sessions, &user, session) {
                    return Some(item); // replaced
                }
                since_us
            }
            None => 0,
        };
        if self.max_parked == 0 {
            return Some(item);
        }
        let mut parked = self.parked.lock();
        drop(live_sessions);
        let own = parked.per_address.get(address);
        let evicted = if own >= self.max_parked_per_address {
            parked.evict_oldest_of(address)
        } else if parked.by_token.len() >= self.max_parked {
            // Ties (every address holding as many) go to the session whose grace ends
            // first of all, not to one parked a moment ago.
            let most = parked.per_address.most();
            let oldest_of_heaviest = (parked.by_token.values())
                .filter(|p| parked.per_address.get(p.address) == most)
                .min_by_key(|p| p.until)
                .map(|p| p.address);
            oldest_of_heaviest.and_then(|address| parked.evict_oldest_of(address))
        } else {
            None
        };
        parked.insert(
            token,
            Parked {
                item,
                user,
                family,
                since_us,
                address,
                until,
            },
        );
        evicted
    }

    /// Takes back the session parked under `token`, if its grace has not ended and it
    /// belongs to `user` (`None` for `user` skips that check: anonymous sessions are
    /// identified by the token alone), for the connection that `stop` stops: the
    /// token is recorded as that connection's (see [`Registry::register_token`]) under
    /// the same lock, so a resume never finds it neither parked nor live.
    pub fn take(&self, token: &str, user: Option<&str>, now: Instant, stop: &Stop) -> Option<T> {
        let mut parked = self.parked.lock();
        let entry = parked.by_token.get(token)?;
        if now >= entry.until || user.is_some_and(|u| u != &*entry.user) {
            return None;
        }
        let taken = parked.remove(token)?;
        self.register_token(token, taken.user, stop.clone());
        Some(taken.item)
    }

    /// Removes and returns every session whose grace ended by `now`.
    pub fn expire(&self, now: Instant) -> Vec<T> {
        let mut parked = self.parked.lock();
        let expired: Vec<String> = (parked.by_token.iter())
            .filter(|(_, p)| now >= p.until)
            .map(|(token, _)| token.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|token| parked.remove(&token).map(|p| p.item))
            .collect()
    }

    /// Removes and returns every parked session (at shutdown).
    pub fn expire_all(&self) -> Vec<T> {
        let mut parked = self.parked.lock();
        parked.per_address.clear();
        parked.by_token.drain().map(|(_, p)| p.item).collect()
    }

    /// Number of parked sessions.
    pub fn parked(&self) -> usize {
        self.parked.lock().by_token.len()
    }

    /// Records a live session of `user`, of the client whose sessions share `family`
    /// (one client following redirects holds a session on each node it plays on),
    /// going live at `now_us` (later than every session recorded before, here). With
    /// `replace`, every live session of the user of another family is told to close
    /// ([`StopReason::Replaced`]), and every parked one ends (at the next
    /// [`Registry::expire`]; a resume of it is refused). Returns when it went live, for
    /// other nodes.
    pub fn go_live(&self, user: &Arc<str>, session: u64, family: u64, now_us: u64, stop: Stop, replace: bool) -> u64 {
        let mut live = self.live.lock();
        let since_us = now_us.max(self.last_live_us.load(Ordering::Relaxed) + 1);
        self.last_live_us.store(since_us, Ordering::Relaxed);
        let sessions = live.entry(user.clone()).or_default();
        if replace {
            // Every session recorded here went live before this one.
            stop_other_clients(sessions, family, since_us);
            self.end_parked_of_other_clients(user, family, since_us);
        }
        if self.stopping.load(Ordering::Relaxed) {
            stop.stop(StopReason::Shutdown);
        }
        sessions.push(Live {
            session,
            family,
            since_us,
            stop,
        });
        since_us
    }

    /// Tells every live session of `user` of another family than `family` that went
    /// live before `since_us` to close (a newer client of the user went live on
    /// another node; a session newer than that stays; node clocks are compared).
    pub fn replace(&self, user: &str, family: u64, since_us: u64) {
        let mut live = self.live.lock();
        if let Some(sessions) = live.get_mut(user) {
            stop_other_clients(sessions, family, since_us);
        }
        self.end_parked_of_other_clients(user, family, since_us);
    }

    /// Ends the grace of every parked session of `user` of another family than
    /// `family` that went live before `since_us`: a newer client of the user replaced
    /// them (a session newer than that, parked here, stays).
    fn end_parked_of_other_clients(&self, user: &str, family: u64, since_us: u64) {
        let now = Instant::now();
        for parked in self.parked.lock().by_token.values_mut() {
            if *parked.user == *user && parked.family != family && parked.since_us < since_us {
                parked.until = parked.until.min(now);
            }
        }
    }

    /// Records the resume token of a live connection; a take-over stops it with
    /// [`StopReason::TakenOver`], so that it ends and parks its session.
    pub fn register_token(&self, token: &str, user: Arc<str>, stop: Stop) {
        self.live_tokens.lock().insert(token.to_string(), (user, stop));
    }

    /// Forgets a live connection's resume token (after parking its session), unless
    /// a newer connection registered it since (it resumed the session at once): only
    /// the connection whose `stop` it is.
    pub fn unregister_token(&self, token: &str, stop: &Stop) {
        let mut live = self.live_tokens.lock();
        if live
            .get(token)
            .is_some_and(|(_, registered)| Arc::ptr_eq(&registered.0, &stop.0))
        {
            live.remove(token);
        }
    }

    /// If a live connection holds `token` (and belongs to `user`, when given), asks
    /// it to end and park its session, and returns true: the caller then waits for
    /// the session to appear in [`Registry::take`].
    pub fn take_over(&self, token: &str, user: Option<&str>) -> bool {
        let live = self.live_tokens.lock();
        match live.get(token) {
            Some((owner, stop)) if user.is_none_or(|u| u == &**owner) => {
                stop.stop(StopReason::TakenOver);
                true
            }
            _ => false,
        }
    }

    /// A resume begins, of the session `key` names (its token, with the user under
    /// JWT): from now on it is that session's newest, and older ones still looking for
    /// the session have lost it. It ends when dropped.
    pub fn resume_begins(&self, key: String) -> Resume<'_, T> {
        let n = self.next_resume.fetch_add(1, Ordering::Relaxed) + 1;
        self.resuming.lock().insert(key.clone(), n);
        Resume { registry: self, key, n }
    }

    /// Tells every live session, and every one that goes live from now on, to stop
    /// ([`StopReason::Shutdown`]).
    pub fn stop_all(&self) {
        let live = self.live.lock();
        self.stopping.store(true, Ordering::Relaxed);
        for session in live.values().flatten() {
            session.stop.stop(StopReason::Shutdown);
        }
    }

    /// Forgets a live session.
    pub fn leave_live(&self, user: &Arc<str>, session: u64) {
        forget_live(&mut self.live.lock(), user, session);
    }
}

/// A resume looking for its session (see [`Registry::resume_begins`]): it takes the
/// session, or asks the connection holding it to give it up, only while it is the
/// session's newest resume (checked under the lock a newer one's beginning takes, so
/// an older resume never takes the session from a newer one).
pub struct Resume<'a, T> {
    registry: &'a Registry<T>,
    key: String,
    n: u64,
}

/// A newer resume of the session began: this one lost it.
#[derive(Debug, PartialEq, Eq)]
pub struct Superseded;

impl<T> Resume<'_, T> {
    /// Whether this is the newest resume of its session (`resuming` locked).
    fn is_newest(&self, resuming: &HashMap<String, u64>) -> bool {
        resuming.get(&self.key) == Some(&self.n)
    }

    /// [`Registry::take`], while this is the newest resume of the session.
    pub fn take(&self, token: &str, user: Option<&str>, now: Instant, stop: &Stop) -> Result<Option<T>, Superseded> {
        let resuming = self.registry.resuming.lock();
        if !self.is_newest(&resuming) {
            return Err(Superseded);
        }
        Ok(self.registry.take(token, user, now, stop))
    }

    /// [`Registry::take_over`], while this is the newest resume of the session (false
    /// when it is not).
    pub fn take_over(&self, token: &str, user: Option<&str>) -> bool {
        let resuming = self.registry.resuming.lock();
        self.is_newest(&resuming) && self.registry.take_over(token, user)
    }
}

impl<T> Drop for Resume<'_, T> {
    fn drop(&mut self) {
        let mut resuming = self.registry.resuming.lock();
        if self.is_newest(&resuming) {
            resuming.remove(&self.key);
        }
    }
}

/// Forgets `session` among `user`'s live sessions; whether it was one.
fn forget_live(live: &mut HashMap<Arc<str>, Vec<Live>>, user: &Arc<str>, session: u64) -> bool {
    let Some(sessions) = live.get_mut(user) else {
        return false;
    };
    let before = sessions.len();
    sessions.retain(|live| live.session != session);
    let forgot = sessions.len() < before;
    if sessions.is_empty() {
        live.remove(user);
    }
    forgot
}

/// Tells the sessions of `sessions` of another family than `family` that went live
/// before `since_us` to close, and forgets them.
fn stop_other_clients(sessions: &mut Vec<Live>, family: u64, since_us: u64) {
    sessions.retain(|older| {
        let replaced = older.family != family && older.since_us < since_us;
        if replaced {
            older.stop.stop(StopReason::Replaced);
        }
        !replaced
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const S: Duration = Duration::from_secs(1);
    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const M: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66));

    #[test]
    fn a_parked_session_is_resumable_within_its_grace_only() {
        let t0 = Instant::now();
        let r = Registry::new(10, 10);
        assert_eq!(
            r.park("tok".into(), owner("alice".into(), 1, A, None), 1, t0 + 20 * S),
            None
        );
        assert_eq!(r.take("nope", None, t0, &Stop::new()), None);
        assert_eq!(
            r.take("tok", Some("mallory"), t0 + S, &Stop::new()),
            None,
            "another user's token"
        );
        assert_eq!(r.take("tok", Some("alice"), t0 + 19 * S, &Stop::new()), Some(1));
        assert_eq!(
            r.take("tok", Some("alice"), t0 + 19 * S, &Stop::new()),
            None,
            "taken once"
        );

        assert_eq!(
            r.park("tok2".into(), owner("bob".into(), 1, A, None), 2, t0 + 20 * S),
            None
        );
        assert_eq!(r.take("tok2", None, t0 + 20 * S, &Stop::new()), None, "grace over");
        assert!(r.expire(t0 + 19 * S).is_empty());
        assert_eq!(r.expire(t0 + 20 * S), vec![2]);
        assert_eq!(r.parked(), 0);
    }

    /// Parking is bounded in all and per address; room is made by ending the session
    /// whose grace ends first of the same address, or, when full, of the address that
    /// holds the most: an address that drops connections on purpose cannot keep other
    /// clients' sessions from being parked.
    #[test]
    fn parking_is_bounded_and_shared_fairly_between_addresses() {
        let t0 = Instant::now();
        let r = Registry::new(4, 3);
        let park = |token: &str, address: IpAddr, item: u32, secs: u32| {
            r.park(token.into(), owner("u".into(), 1, address, None), item, t0 + secs * S)
        };
        assert_eq!(park("m1", M, 1, 1), None);
        assert_eq!(park("m2", M, 2, 2), None);
        assert_eq!(park("m3", M, 3, 3), None);
        assert_eq!(park("m4", M, 4, 4), Some(1), "M holds its share: its oldest goes");
        assert_eq!(park("a1", A, 5, 5), None);
        assert_eq!(r.parked(), 4);
        assert_eq!(
            park("a2", A, 6, 6),
            Some(2),
            "full: the oldest of M, which holds the most"
        );
        assert_eq!(r.take("a1", None, t0, &Stop::new()), Some(5));
        assert_eq!(r.take("m3", None, t0, &Stop::new()), Some(3));
        assert_eq!(r.expire_all().len(), 2);
        let none = Registry::new(0, 1);
        assert_eq!(
            none.park("x".into(), owner("u".into(), 1, A, None), 7, t0),
            Some(7),
            "nothing may be parked"
        );
    }

    #[test]
    fn replace_cancels_older_live_sessions() {
        let r: Registry<()> = Registry::new(1, 1);
        let user: Arc<str> = "carol".into();
        let (first, second, third) = (Stop::new(), Stop::new(), Stop::new());
        r.go_live(&user, 1, 1, 10, first.clone(), false);
        r.go_live(&user, 2, 2, 20, second.clone(), false);
        assert!(!first.is_stopped() && !second.is_stopped());
        r.go_live(&user, 3, 3, 30, third.clone(), true);
        assert!(first.is_stopped() && second.is_stopped() && !third.is_stopped());
        assert_eq!(first.reason(), StopReason::Replaced);
        // A later reason does not overwrite the first; shutdown stops the rest.
        first.stop(StopReason::TakenOver);
        assert_eq!(first.reason(), StopReason::Replaced);
        r.stop_all();
        assert!(third.is_stopped());
        assert_eq!(third.reason(), StopReason::Shutdown);
        r.leave_live(&user, 3);
        assert!(r.live.lock().is_empty());
        // A session going live while the server stops is stopped at once.
        let late = Stop::new();
        r.go_live(&user, 4, 4, 40, late.clone(), false);
        assert_eq!((late.is_stopped(), late.reason()), (true, StopReason::Shutdown));
    }

    #[test]
    fn replace_spares_the_sessions_of_the_same_client() {
        let r: Registry<()> = Registry::new(1, 1);
        let user: Arc<str> = "carol".into();
        let stops: Vec<Stop> = (0..4).map(|_| Stop::new()).collect();
        // Sessions 1 and 2 of one client (family 1, say on two nodes), then another
        // client's 3: here the later always replaces, whatever the clock says.
        r.go_live(&user, 1, 1, 10, stops[0].clone(), true);
        r.go_live(&user, 2, 1, 20, stops[1].clone(), true);
        assert!(!stops[0].is_stopped() && !stops[1].is_stopped());
        assert_eq!(
            r.go_live(&user, 3, 3, 5, stops[2].clone(), true),
            21,
            "after the others"
        );
        assert!(stops[0].is_stopped() && stops[1].is_stopped());
        // Another node says client 4 went live before 3 did: 3 stays (it is newer);
        // after 3: 3 goes, and nobody else's sessions.
        r.go_live(&"dave".into(), 5, 5, 40, stops[3].clone(), true);
        r.replace(&user, 4, 21);
        assert!(!stops[2].is_stopped());
        r.replace(&user, 4, 35);
        assert!(stops[2].is_stopped() && !stops[3].is_stopped());
    }

    /// With `replace`, a newer client of the user also ends the user's sessions parked
    /// for a resume (another client's): not resumed later, they do not hold seats
    /// meanwhile nor replace the newer one when they come back.
    #[test]
    fn a_replacing_client_ends_the_users_parked_sessions_of_other_clients() {
        let t0 = Instant::now();
        let r = Registry::new(10, 10);
        let later = t0 + 20 * S;
        assert_eq!(r.park("a".into(), owner("alice".into(), 1, A, None), 1, later), None);
        assert_eq!(r.park("b".into(), owner("alice".into(), 2, A, None), 2, later), None);
        assert_eq!(r.park("c".into(), owner("bob".into(), 1, A, None), 3, later), None);
        r.go_live(&"alice".into(), 9, 2, 10, Stop::new(), true);
        let now = Instant::now();
        let mut ended = r.expire(now);
        ended.sort_unstable();
        assert_eq!(ended, [1], "alice's other client's; not her own client's, nor bob's");
        assert_eq!(r.take("b", Some("alice"), now, &Stop::new()), Some(2));
        // Another node's newer client of bob's does the same here.
        r.replace("bob", 5, 10);
        assert_eq!(r.take("c", Some("bob"), Instant::now(), &Stop::new()), None);
        // Without `replace`, nothing ends.
        assert_eq!(r.park("d".into(), owner("carol".into(), 1, A, None), 4, later), None);
        r.go_live(&"carol".into(), 10, 2, 20, Stop::new(), false);
        assert_eq!(r.take("d", Some("carol"), Instant::now(), &Stop::new()), Some(4));
    }

    /// A session whose connection ended just as a newer client of the user went live
    /// (`replace`), or that a resume was taking over then, is not parked: the newer
    /// client took it off the live sessions, so parking it ends it. And another node's
    /// announcement of a client older than a session parked here does not end it.
    #[test]
    fn a_session_replaced_while_its_connection_ended_is_ended_not_parked() {
        let t0 = Instant::now();
        let r = Registry::new(10, 10);
        let later = t0 + 20 * S;
        let user: Arc<str> = "alice".into();
        let older = Stop::new();
        let since = r.go_live(&user, 1, 1, 10, older.clone(), true);
        older.stop(StopReason::TakenOver);
        r.go_live(&user, 2, 2, 20, Stop::new(), true);
        assert_eq!(older.reason(), StopReason::Replaced, "replaced outranks taken over");
        assert_eq!(
            r.park("a".into(), owner(user.clone(), 1, A, Some((1, since))), 1, later),
            Some(1)
        );
        assert_eq!(r.parked(), 0);
        // The newer one parks (its own live record), and an announcement from another
        // node of a client that went live before it leaves it parked.
        let newer = r.go_live(&user, 3, 3, 30, Stop::new(), true);
        assert_eq!(
            r.park("c".into(), owner(user.clone(), 3, A, Some((3, newer))), 3, later),
            None
        );
        r.replace(&user, 4, newer - 1);
        assert_eq!(r.take("c", Some("alice"), Instant::now(), &Stop::new()), Some(3));
    }

    #[test]
    fn a_resume_can_take_over_a_connection_not_yet_known_dead() {
        let t0 = Instant::now();
        let r = Registry::new(10, 10);
        let take_over = Stop::new();
        r.register_token("tok", "alice".into(), take_over.clone());
        assert!(!r.take_over("tok", Some("mallory")), "not another user's");
        assert!(!r.take_over("other", None));
        assert!(r.take_over("tok", Some("alice")));
        assert!(take_over.is_stopped());
        assert_eq!(take_over.reason(), StopReason::TakenOver);
        // The old connection parks its session; the new one takes it and registers
        // the token as its own before the old one forgets it: the new one's stays.
        assert_eq!(
            r.park("tok".into(), owner("alice".into(), 1, A, None), 7, t0 + 20 * S),
            None
        );
        let newer = Stop::new();
        assert_eq!(r.take("tok", Some("alice"), t0, &newer), Some(7));
        r.unregister_token("tok", &take_over);
        assert!(r.take_over("tok", Some("alice")), "the newer connection's token");
        assert!(newer.is_stopped());
        r.unregister_token("tok", &newer);
        assert!(!r.take_over("tok", None));
    }

    #[test]
    fn the_newest_resume_of_a_token_is_the_one_that_looks_for_it() {
        let t0 = Instant::now();
        let r: Registry<u32> = Registry::new(10, 10);
        let holder = Stop::new();
        r.register_token("tok", "alice".into(), holder.clone());
        let older = r.resume_begins("tok".into());
        assert!(older.take_over("tok", None));
        assert_eq!(older.take("tok", None, t0, &Stop::new()), Ok(None));
        let newer = r.resume_begins("tok".into());
        assert_eq!(older.take("tok", None, t0, &Stop::new()), Err(Superseded));
        assert!(!older.take_over("tok", None), "an older resume asks no more");
        assert_eq!(
            r.park("tok".into(), owner("alice".into(), 1, A, None), 7, t0 + 20 * S),
            None
        );
        drop(older); // an older one ending forgets nothing
        let taker = Stop::new();
        assert_eq!(newer.take("tok", None, t0, &taker), Ok(Some(7)));
        assert!(newer.take_over("tok", None), "the token is the taker's at once");
        assert!(taker.is_stopped());
        drop(newer);
        assert!(r.resuming.lock().is_empty(), "nothing kept");
    }

    fn owner(user: Arc<str>, family: u64, address: IpAddr, live: Option<(u64, u64)>) -> Owner {
        Owner {
            user,
            family,
            address,
            live,
        }
    }
}
