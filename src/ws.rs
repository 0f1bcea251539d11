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
    /// A parked session taken back with its resume token.
    Resume(Box<Session>, Identity),
    /// The resume token was unknown or expired: close with 4504.
    ResumeFailed,
}

/// How the connection ended.
enum End {
    /// The server closes with this reason.
    Close(CloseReason),
    /// The client closed normally (1000): it is done, nothing to resume.
    ClientClosed,
    /// The connection was lost or the client went away: keep the seat for resume.
    Lost,
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
        Start::Resume(mut session, identity) => {
            let identity = (shared.session_ctx.auth.mode() == AuthMode::Jwt).then_some(identity);
            session.resume(identity, now);
            metrics.resumes.inc();
            *session
        }
        Start::ResumeFailed => {
            let reason = CloseReason::ResumeFailed;
            metrics.count_close(reason);
            send_close(&mut sink, reason).await;
            return;
        }
    };
    let id = session.id();
    let user = session.identity().user_id.clone();
    let replaced = CancellationToken::new();
    let replace = shared.config.auth.duplicate_sessions == DuplicateSessions::Replace;
    shared.registry.go_live(&user, id, replaced.clone(), replace);
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
