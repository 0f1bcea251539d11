//! What a connection may use of the server: the session side (rooms, auth, limits),
//! the registry of live and parked sessions, the listener gate, the metrics and the
//! shutdown signal. The server builds one and shares it; nothing here reaches back
//! into the listener or the configuration.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::engine::outbox::OutboxLimits;
use crate::metrics::Metrics;
use crate::session::auth::DuplicateSessions;
use crate::session::limits::address_key;
use crate::session::{Session, SessionContext};
use crate::state::MemberId;
use crate::transport::gate::Gate;
use crate::transport::registry::Registry;

/// How connections behave, beyond what the session itself enforces.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Bounds of each session's reliable outbox.
    pub outbox: OutboxLimits,
    /// A write blocked this long closes the connection as a slow consumer.
    pub slow_consumer: Duration,
    /// What writes blocked on clients that do not read may hold together (see
    /// [`BlockedWrites`]).
    pub max_blocked_write_bytes: usize,
    /// What a second live session of the same user does to the first.
    pub duplicate_sessions: DuplicateSessions,
    /// Benchmark baseline: write each message separately instead of one batch.
    pub naive_fanout: bool,
}

/// See the module documentation.
pub struct Context {
    /// Rooms, authentication and the limits every session enforces.
    pub session: SessionContext,
    /// Connection behaviour.
    pub settings: ConnectionSettings,
    /// Sessions parked for resume and live sessions per user.
    pub registry: Registry<Session>,
    /// Connection caps and handshake rate.
    pub gate: Arc<Gate>,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down; cancel it only through
    /// [`Context::shut_down`], which also stops the live connections.
    pub shutdown: CancellationToken,
    /// Every connection task, for shutdown to wait on.
    pub tracker: TaskTracker,
    /// Cluster mode: this node's part (runs the sessions' directory work).
    pub cluster: Option<Arc<Cluster>>,
    /// Asked to stop, and draining: still serving, but `/readyz` answers 503 so that
    /// load balancers send new clients elsewhere first (see `Server::drain`).
    pub draining: std::sync::atomic::AtomicBool,
    /// What writes blocked on clients that do not read hold, together.
    pub blocked_writes: BlockedWrites,
    next_session: AtomicU64,
}

/// What the writes to clients that do not read hold, together: a write that blocks
/// keeps its message (a full snapshot of a large room is megabytes) until it is
/// written or its connection closes as a slow consumer, and a few hundred clients
/// that ask for snapshots and stop reading would otherwise hold gigabytes. A write
/// still blocked after a moment (see the connection loop) when these hold their limit
/// (`[session] max_blocked_write_bytes`), or those of its client's address an eighth
/// of it, closes its connection as a slow consumer.
#[derive(Debug)]
pub struct BlockedWrites {
    held: Mutex<Held>,
    /// The bytes they may hold together (messages counted whole, though connections
    /// share the snapshots in them).
    limit: usize,
    /// What they hold, for `/metrics`.
    gauge: Gauge,
}

/// What blocked writes hold: together, and by address ([`address_key`]).
#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// The share of [`BlockedWrites`]'s limit one address may hold: a client, however many
/// connections it opens, leaves most of it to the others.
const ADDRESS_SHARE: usize = 8;

impl BlockedWrites {
    /// None held yet, at most `limit` bytes; `gauge` shows what is.
    pub fn new(limit: usize, gauge: Gauge) -> Self {
        Self {
            held: Mutex::default(),
            limit,
            gauge,
        }
    }

    /// Counts `bytes` a blocked write to a client at `ip` holds, for as long as the
    /// guard lives; `None` when that would pass the limit, or the address's share.
    pub fn hold(&self, ip: IpAddr, bytes: usize) -> Option<HeldWrite<'_>> {
        let address = address_key(ip);
        let mut held = self.held.lock();
        let of_address = held.by_address.get(&address).copied().unwrap_or(0);
        let fits = |held: usize, limit: usize| held.checked_add(bytes).is_some_and(|total| total <= limit);
        if !fits(held.total, self.limit) || !fits(of_address, self.limit / ADDRESS_SHARE) {
            return None;
        }
        held.total += bytes;
        held.by_address.insert(address, of_address + bytes);
        self.gauge.inc_by(bytes as i64);
        Some(HeldWrite {
            of: self,
            address,
            bytes,
        })
    }
}

/// A blocked write's share of [`BlockedWrites`], given back when dropped.
#[derive(Debug)]
pub struct HeldWrite<'a> {
    of: &'a BlockedWrites,
    address: IpAddr,
    bytes: usize,
}

impl Drop for HeldWrite<'_> {
    fn drop(&mut self) {
        let mut held = self.of.held.lock();
        held.total -= self.bytes;
        if let Some(of_address) = held.by_address.get_mut(&self.address) {
            *of_address -= self.bytes;
            if *of_address == 0 {
                held.by_address.remove(&self.address);
            }
        }
        self.of.gauge.dec_by(self.bytes as i64);
    }
}

impl Context {
    /// A context with no session started yet.
    pub fn new(
        session: SessionContext,
        settings: ConnectionSettings,
        registry: Registry<Session>,
        gate: Arc<Gate>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let blocked_writes = BlockedWrites::new(settings.max_blocked_write_bytes, metrics.blocked_write_bytes.clone());
        Self {
            session,
            settings,
            registry,
            gate,
            metrics,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            cluster: None,
            draining: std::sync::atomic::AtomicBool::new(false),
            blocked_writes,
            next_session: AtomicU64::new(1),
        }
    }

    /// Shuts the server down: every task waiting on [`Context::shutdown`] and every
    /// live connection is told to stop (connections close with 1001).
    pub fn shut_down(&self) {
        self.shutdown.cancel();
        self.registry.stop_all();
    }

    /// A fresh session id (also the member id in every room).
    pub fn next_session_id(&self) -> MemberId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Session ids start at `id` (cluster mode: ids unique in the cluster).
    pub fn set_first_session_id(&mut self, id: MemberId) {
        self.next_session = AtomicU64::new(id);
    }

    /// A new resume token (cluster mode: one that names this node start).
    pub fn new_resume_token(&self) -> String {
        match &self.cluster {
            Some(cluster) => cluster.resume_token(),
            None => crate::session::auth::resume_token(),
        }
    }

    /// Ends a session for good (it leaves its rooms). In cluster mode its record goes
    /// too, unless the node is stopping: then its client may continue it on another
    /// node.
    pub fn end_session(&self, session: &mut Session) {
        session.close();
        if let Some(cluster) = &self.cluster {
            // Claims the session may have been granted, given up (not waited for).
            while let Some(op) = session.poll_directory() {
                let cluster = cluster.clone();
                self.tracker.spawn(async move { cluster.run(op).await });
            }
            if !self.shutdown.is_cancelled() {
                cluster.forget_session(session.resume_token());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_writes_hold_up_to_their_limit_an_eighth_of_it_per_address_and_give_back_what_they_held() {
        let gauge = Gauge::default();
        let writes = BlockedWrites::new(800, gauge.clone());
        let ip = |last: u8| IpAddr::from([127, 0, 0, last]);
        let a = writes.hold(ip(1), 60).unwrap();
        assert!(writes.hold(ip(1), 41).is_none(), "past the address's share");
        let b = writes.hold(ip(1), 40).unwrap();
        let others: Vec<_> = (2..=8).map(|i| writes.hold(ip(i), 100).unwrap()).collect();
        assert!(writes.hold(ip(9), 1).is_none(), "past the limit");
        assert_eq!(gauge.get(), 800);
        drop(a);
        assert_eq!(gauge.get(), 740);
        assert!(writes.hold(ip(9), 60).is_some());
        drop((b, others));
        assert_eq!(gauge.get(), 0);
        assert!(writes.hold(ip(1), usize::MAX).is_none(), "no overflow");
        // IPv6: one share per /64, as connection caps count.
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, last]);
        let _held = writes.hold(v6(1), 100).unwrap();
        assert!(writes.hold(v6(2), 1).is_none());
    }
}
