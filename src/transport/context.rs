//! What a connection may use of the server: the session side (rooms, auth, limits),
//! the registry of live and parked sessions, the listener gate, the metrics and the
//! shutdown signal. The server builds one and shares it; nothing here reaches back
//! into the listener or the configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    next_session: AtomicU64,
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
