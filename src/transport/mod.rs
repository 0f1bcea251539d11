//! Transports: how bytes reach a session. Each transport is a driver (`Transport`)
//! that moves bytes between its socket and the session's outbox; the connection loop
//! (`connection`) around the session is shared by all of them. The WebSocket
//! transport also reads the client's inputs into the session and writes the rooms'
//! frames on its I/O thread without waking the loop (`ws`). Dependencies run one way: the server starts the
//! listeners (`http` for WebSocket, [`quic`]), they hand authenticated connections
//! to `connection::serve`, and that loop reaches the rest of the server only through
//! its `context::Context`.
//!
//! - `connection` — the loop every transport shares.
//! - `context` — what a connection may use of the server.
//! - `io_threads` — the threads that serve WebSocket connections, paced by the ticks.
//! - `http` — HTTP/1.1 routes (`/ws`, `/healthz`, `/metrics`) and the WebSocket upgrade.
//! - `jwks` — fetching an identity provider's signing keys (`[auth] jwks_url`).
//! - `ws` — the WebSocket transport; `frame`: its frame reader and writer (RFC
//!   6455); [`quic`]: the QUIC transport.
//! - `api` — the HTTP API for game backends (`/rooms/...`: publish an event, close a
//!   room, remove a user, room details and lists).
//! - `metered` — a connection's inbound bytes metered before they are parsed (floods
//!   of frames that never complete a message).
//! - [`gate`] — connection caps and handshake rate at the upgrade.
//! - [`origin`] — the `Origin` allowlist.
//! - [`tls`] — certificates, including the generated development certificate, and
//!   the accepted TLS stream ([`tls::ServerTls`]).
//! - [`registry`] — sessions parked for resume; live sessions per user; stop signals.

pub(crate) mod api;
pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod frame;
pub mod gate;
pub(crate) mod http;
pub(crate) mod io_threads;
pub(crate) mod jwks;
pub(crate) mod metered;
pub mod origin;
pub mod quic;
pub mod registry;
pub mod tls;
pub(crate) mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Waker;

use crate::clock::unix_micros;
use crate::engine::outbox::{Batch, Delivery, Outbox, PendingState};
use crate::error::CloseReason;
use crate::log_budget::LogBudget;
use crate::metrics::Metrics;
use crate::session::Inbound;

/// What a transport read from the peer.
pub(crate) enum Received {
    /// One binary message (one `ClientEnvelope`).
    Binary(bytes::Bytes),
    /// Anything else the session judges ([`Inbound::Text`], [`Inbound::TooBig`],
    /// [`Inbound::Control`]).
    Other(Inbound<'static>),
    /// The peer broke the transport's framing.
    ProtocolError,
    /// The peer sent bytes its framing forbids (a text frame that is not UTF-8).
    InvalidPayload,
    /// The peer closed normally: it is done, nothing to resume.
    ClientClosed,
    /// The peer closed with another code (1001 going away, as a browser leaving the
    /// page does, or an error of its own): answer its close, and keep the seat for
    /// resume.
    ClientLeft(u16),
    /// The connection was lost or closed abnormally: keep the seat for resume.
    Lost,
    /// The peer sent more raw bytes than the limits allow for longer than the flood
    /// window, below the level of messages (frames that never make one): close 1008.
    Flood,
    /// A message the transport's reader handed to the session (see
    /// [`Transport::reader`]) ended it, or the reader failed (a panic: 1011): close
    /// with this reason.
    Ended(CloseReason),
}

/// A written batch, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sent {
    /// Transport messages written (WebSocket messages, QUIC stream frames and datagrams).
    pub messages: u64,
    /// Bytes written.
    pub bytes: u64,
    /// State frames the transport dropped rather than queue behind older ones
    /// (QUIC, while a connection's datagrams wait).
    pub superseded: u64,
}

impl Sent {
    /// Counts a written batch: its messages and bytes, the frames the transport
    /// dropped, and the send delay of its state frames `states` (none when it dropped
    /// some: their datagrams never left).
    pub(crate) fn record(self, metrics: &Metrics, states: &[PendingState]) {
        metrics.messages_out.inc_by(self.messages);
        metrics.bytes_out.inc_by(self.bytes);
        metrics.frames_superseded.inc_by(self.superseded);
        if !states.is_empty() && self.superseded == 0 {
            let now_us = unix_micros();
            for state in states {
                let delay_us = now_us.saturating_sub(state.server_time_us);
                metrics.state_send_delay.observe(delay_us as f64 / 1e6);
            }
        }
    }
}

/// The write failed: the connection is gone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Broken;

/// One transport's connection. Every method is called from one task; `recv` must be
/// cancel-safe (it races the timers and the outbox).
pub(crate) trait Transport {
    /// How state frames reach the client over this transport.
    const DELIVERY: Delivery;
    /// The transport's name in logs.
    const NAME: &'static str;

    /// The next thing the peer sent. A `recv` dropped while pending must still have
    /// the waker of its last poll woken when something arrives, as a socket's
    /// readiness does: the connection loop polls `recv` again only after that waker
    /// was woken (QUIC keeps its datagram read from one `recv` to the next for this).
    async fn recv(&mut self) -> Received;

    /// Writes `batch` (everything pending for the session) with as few writes as the
    /// transport allows. `outbox` is the session's, for transports that learn
    /// delivery from the write.
    async fn send(&mut self, batch: &Batch, outbox: &Outbox) -> Result<Sent, Broken>;

    /// Sends a liveness probe the peer must answer.
    async fn ping(&mut self) -> Result<(), Broken>;

    /// Closes with `reason` (a bounded wait for the peer).
    async fn close(&mut self, reason: CloseReason);

    /// Completes a close the peer started.
    async fn finish(&mut self);

    /// Where the peer is now, when it can move (a QUIC connection migrates to a
    /// new address with the client); none: where it connected from.
    fn moved_to(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// For a transport that writes what the outbox holds without the connection loop
    /// when it can (WebSocket: see `ws`): the waker the loop registers with `outbox`,
    /// which wakes `loop_waker` for what it leaves, and where the loop finds that.
    /// None (the default): the loop writes everything.
    fn flusher(
        &self,
        _loop_waker: &Waker,
        _outbox: &Arc<Outbox>,
        _metrics: &Arc<Metrics>,
    ) -> Option<(Waker, Arc<dyn Handoff>)> {
        None
    }

    /// For a transport that hands what the client sends to the session without the
    /// connection loop when it can (WebSocket: see `ws`): from now on what arrives
    /// wakes the transport's reader, which offers each message it reads to `inputs`
    /// and wakes `loop_waker` (the waker `recv` is polled with) for the first one
    /// `inputs` does not take, or anything else the peer sends (`recv` returns that
    /// next). Returns the reader's waker: woken, it reads on (after the loop took
    /// what it left through [`Handoff::take_left`]). By default nothing: the loop
    /// reads everything.
    fn reader(&mut self, _loop_waker: &Waker, _inputs: Arc<dyn Inputs>) -> Option<Waker> {
        None
    }
}

/// Where a transport's reader (see [`Transport::reader`]) hands the client's messages.
pub(crate) trait Inputs: Send + Sync {
    /// Handles `message` as the loop would, or nothing when it is not a message the
    /// reader may hand over (None: the loop reads it). `Err`: the session ends with
    /// this reason.
    fn offer(&self, message: &bytes::Bytes) -> Option<Result<(), CloseReason>>;
}

/// What a transport's flusher (see [`Transport::flusher`]) left to the connection loop.
pub(crate) trait Handoff: Send + Sync {
    /// Moves into `batch` what the flusher drained from the outbox and left to the
    /// loop to write: a batch, or none (`batch` empty) when what it left is the rest
    /// of a message it began. False when it left nothing.
    fn take(&self, batch: &mut Batch) -> bool;

    /// Bytes queued on the connection and not yet written, or not yet flushed: what
    /// a write the flusher began and left to the loop still holds (a message the TLS
    /// layer took whole, but could not yet send, counted whole).
    fn unwritten(&self) -> usize;

    /// The loop is over: from now on the flusher leaves everything to it (and the
    /// transport's reader, when it has one, reads nothing more).
    fn retire(&self);

    /// What the transport's reader (see [`Transport::reader`]) left to the loop,
    /// taken (`recv` would return it next): for a loop busy with a write.
    fn take_left(&self) -> Option<Received>;
}

/// Refused connections' lines: at most 5 a second (`suppressed` counts the rest), so
/// an operator sees why clients are turned away without a flood filling the log.
static REFUSAL_LOGS: LogBudget = LogBudget::new("refusals", 5);

/// Logs (at info) that a connection from `peer` over `transport` was refused, and why.
pub(crate) fn log_refusal(peer: SocketAddr, transport: &str, why: &dyn std::fmt::Display) {
    if let Some(suppressed) = REFUSAL_LOGS.take(std::time::Instant::now()) {
        tracing::info!(%peer, transport, suppressed, "connection refused: {why}");
    }
}
