//! What a connection may use of the server: the session side (rooms, auth, limits),
//! the registry of live and parked sessions, the listener gate, the metrics and the
//! shutdown signal. The server builds one and shares it; nothing here reaches back
//! into the listener or the configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::engine::outbox::OutboxLimits;
use crate::metrics::Metrics;
use crate::session::auth::DuplicateSessions;
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
/// (`[session] max_blocked_write_bytes`) closes its connection as a slow consumer.
#[derive(Debug)]
pub struct BlockedWrites {
    held: AtomicUsize,
    /// The bytes they may hold together (messages counted whole, though connections
    /// share the snapshots in them).
    limit: usize,
    /// `held`, for `/metrics`.
    gauge: Gauge,
}

impl BlockedWrites {
    /// None held yet, at most `limit` bytes; `gauge` shows what is.
    pub fn new(limit: usize, gauge: Gauge) -> Self {
        Self {
            held: AtomicUsize::new(0),
            limit,
            gauge,
        }
    }

    /// Counts `bytes` a blocked write holds for as long as the guard lives; `None`
    /// when that would pass the limit.
    pub fn hold(&self, bytes: usize) -> Option<HeldWrite<'_>> {
        (self.held)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()?;
        self.gauge.inc_by(bytes as i64);
        Some(HeldWrite { of: self, bytes })
    }
}

/// A blocked write's share of [`BlockedWrites`], given back when dropped.
#[derive(Debug)]
pub struct HeldWrite<'a> {
    of: &'a BlockedWrites,
    bytes: usize,
}

impl Drop for HeldWrite<'_> {
    fn drop(&mut self) {
        self.of.held.fetch_sub(self.bytes, Ordering::AcqRel);
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
            None => crate::transport::registry::resume_token(),
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
    fn blocked_writes_hold_up_to_their_limit_and_give_back_what_they_held() {
        let gauge = Gauge::default();
        let writes = BlockedWrites::new(100, gauge.clone());
        let a = writes.hold(60).unwrap();
        assert!(writes.hold(41).is_none(), "past the limit");
        let b = writes.hold(40).unwrap();
        assert_eq!(gauge.get(), 100);
        drop(a);
        assert_eq!(gauge.get(), 40);
        assert!(writes.hold(60).is_some());
        drop(b);
        assert_eq!(gauge.get(), 0);
        assert!(writes.hold(usize::MAX).is_none(), "no overflow");
    }
}
