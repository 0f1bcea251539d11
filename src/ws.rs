//! The WebSocket driver: a thin loop around a [`Session`]. It feeds inbound messages
//! to the session, sleeps until the session's next timer, writes everything pending in
//! the session's outbox as one WebSocket message per write, and closes with the
//! session's [`CloseReason`]. A connection that drops without a close is parked for
//! resume.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthMode, DuplicateSessions, Identity};
use crate::clock::Now;
use crate::error::CloseReason;
use crate::frame::encode_batch;
use crate::gate::Permit;
use crate::heartbeat::Beat;
use crate::outbox::{Batch, Outbox};
use crate::server::Shared;
use crate::session::{Inbound, Session};

/// How a session starts, decided at the upgrade.
pub(crate) enum Start {
    /// A new session for this identity.
    New(Identity),
    /// Resume the session with this resume token.
    Resume {
        /// The resume token.
        token: String,
        /// Who is connecting (with JWT, must be the session's user).
        identity: Identity,
    },
}

/// How long a resume waits for a connection it takes over to park its session.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(2);

/// Finds the session for a resume token: parked, or still held by a connection the
/// server has not yet noticed is dead (that connection is told to end and park it).
async fn find_session(shared: &Shared, token: &str, identity: &Identity) -> Option<Session> {
    // Anonymous sessions are identified by the resume token alone.
    let user = (shared.session_ctx.auth.mode() == AuthMode::Jwt).then_some(&*identity.user_id);
    if let Some(session) = shared.registry.take(token, user, Instant::now()) {
        return Some(session);
    }
    if !shared.registry.take_over(token, user) {
        return None;
    }
    let deadline = Instant::now() + TAKE_OVER_WAIT;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if let Some(session) = shared.registry.take(token, user, Instant::now()) {
            return Some(session);
        }
    }
    None
}

/// How the connection ended.
enum End {
    /// The server closes with this reason.
    Close(CloseReason),
    /// The client closed normally (1000): it is done, nothing to resume.
    ClientClosed,
    /// The connection was lost or the client went away: keep the seat for resume.
    Lost,
    /// Another connection resumed this session: tell this one (4002), keep the
    /// session for the new connection.
    TakenOver,
}

/// Runs one WebSocket connection to its end.
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    start: Start,
    permit: Permit,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let now = Now::system();
    let metrics = &shared.metrics;
    let mut session = match start {
        Start::New(identity) => {
            let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
            let outbox = Arc::new(Outbox::new(shared.config.outbox_limits()));
            Session::new(id, identity, outbox, shared.session_ctx.clone(), now)
        }
        Start::Resume { token, identity } => match find_session(&shared, &token, &identity).await {
            Some(mut session) => {
                let identity = (shared.session_ctx.auth.mode() == AuthMode::Jwt).then_some(identity);
                session.resume(identity, crate::outbox::Delivery::Reliable, Now::system());
                metrics.resumes.inc();
                session
            }
            None => {
                let reason = CloseReason::ResumeFailed;
                metrics.count_close(reason);
                send_close(&mut sink, reason).await;
                return;
            }
        },
    };
    let id = session.id();
    let user = session.identity().user_id.clone();
    let replaced = CancellationToken::new();
    let replace = shared.config.auth.duplicate_sessions == DuplicateSessions::Replace;
    shared.registry.go_live(&user, id, replaced.clone(), replace);
    let take_over = CancellationToken::new();
    let resume_token = session.resume_token().to_string();
    shared
        .registry
        .register_token(&resume_token, user.clone(), take_over.clone());
    metrics.connections.inc();
    metrics.connections_accepted.inc();
    tracing::debug!(%peer, session = id, user = %user, "session started");

    let outbox = session.outbox().clone();
    let slow = shared.slow_consumer;
    let mut batch = Batch::default();
    let mut buf = BytesMut::new();
    let mut rate_limited = session.rate_limited();
    let end = loop {
        let timer = tokio::time::Instant::from_std(session.poll_timeout());
        // Biased: shutdown and timers first, then inbound before outbound, so a
        // client whose writes back up is still read (and its inputs applied).
        tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => break End::Close(CloseReason::ShuttingDown),
            _ = replaced.cancelled() => break End::Close(CloseReason::Replaced),
            // A resume on another connection: this one is dead to the client.
            _ = take_over.cancelled() => break End::TakenOver,
            _ = tokio::time::sleep_until(timer) => match session.handle_timeout(Instant::now()) {
                Ok(Beat::Ping) => {
                    if let Some(end) = send(&mut sink, Message::Ping(Bytes::new()), slow).await {
                        break end;
                    }
                }
                Ok(_) => {}
                Err(reason) => break End::Close(reason),
            },
            inbound = stream.next() => {
                let now = Now::system();
                let result = match inbound {
                    None => break End::Lost,
                    Some(Ok(Message::Close(frame))) => {
                        let normal = frame.is_none_or(|f| u16::from(f.code) == 1000);
                        break if normal { End::ClientClosed } else { End::Lost };
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        metrics.messages_in.inc();
                        metrics.bytes_in.inc_by(bytes.len() as u64);
                        session.handle(Inbound::Binary(&bytes), now)
                    }
                    Some(Ok(Message::Text(_))) => session.handle(Inbound::Text, now),
                    // tungstenite answers pings itself; any frame proves liveness.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                        session.handle(Inbound::Control, now)
                    }
                    Some(Err(WsError::Capacity(_))) => session.handle(Inbound::TooBig, now),
                    Some(Err(WsError::Protocol(_))) => Err(CloseReason::ProtocolError),
                    Some(Err(e)) => {
                        tracing::debug!(%peer, session = id, "connection error: {e}");
                        break End::Lost;
                    }
                };
                let now_limited = session.rate_limited();
                metrics.messages_rate_limited.inc_by(now_limited - rate_limited);
                rate_limited = now_limited;
                if let Err(reason) = result {
                    break End::Close(reason);
                }
            }
            () = poll_fn(|cx| outbox.poll_drain(cx, &mut batch)) => {
                if outbox.is_overflowed() {
                    break End::Close(CloseReason::SlowConsumer);
                }
                buf.clear();
                encode_batch(&batch, &mut buf);
                let message = buf.split().freeze();
                metrics.messages_out.inc();
                metrics.bytes_out.inc_by(message.len() as u64);
                metrics.frames_superseded.inc_by(outbox.take_superseded());
                if let Some(end) = send(&mut sink, Message::Binary(message), slow).await {
                    break end;
                }
            }
        }
    };
    shared.registry.leave_live(&user, id);
    shared.registry.unregister_token(&resume_token);
    metrics.connections.dec();
    metrics.frames_superseded.inc_by(outbox.take_superseded());
    drop(permit);
    let park = match end {
        End::Close(reason) => {
            metrics.count_close(reason);
            tracing::debug!(%peer, session = id, code = reason.code(), reason = reason.reason(), "closing");
            send_close(&mut sink, reason).await;
            // The peer stopped answering or reading but lost nothing: it may come back
            // on another connection.
            matches!(reason, CloseReason::HeartbeatTimeout | CloseReason::SlowConsumer)
        }
        End::ClientClosed => {
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
            false
        }
        End::Lost => true,
        End::TakenOver => {
            send_close(&mut sink, CloseReason::Replaced).await;
            true
        }
    };
    let grace = shared.session_ctx.settings.resume_grace;
    if park && !grace.is_zero() && !outbox.is_overflowed() && !shared.shutdown.is_cancelled() {
        let token = session.resume_token().to_string();
        match shared.registry.park(token, user, session, Instant::now() + grace) {
            Ok(()) => tracing::debug!(session = id, "parked for resume"),
            // The registry is full: end the session now (it leaves its rooms).
            Err(session) => drop(session),
        }
    }
}

/// Sends one message. `Some(end)` ends the connection: a write error means the
/// connection is lost; a write still blocked after `limit` means the client is not
/// reading (slow consumer).
async fn send<S>(sink: &mut SplitSink<WebSocketStream<S>, Message>, message: Message, limit: Duration) -> Option<End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(limit, sink.send(message)).await {
        Ok(Ok(())) => None,
        Ok(Err(_)) => Some(End::Lost),
        Err(_) => Some(End::Close(CloseReason::SlowConsumer)),
    }
}

async fn send_close<S>(sink: &mut SplitSink<WebSocketStream<S>, Message>, reason: CloseReason)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: reason.code().into(),
        reason: reason.reason().into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}
