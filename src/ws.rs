//! The WebSocket driver: a thin loop around a [`Session`]. It feeds inbound binary
//! messages to the session, writes everything pending in the session's outbox as one
//! WebSocket message per write, and closes with the session's [`CloseReason`].

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::clock::unix_micros;
use crate::error::CloseReason;
use crate::frame::encode_batch;
use crate::outbox::{Batch, Outbox};
use crate::server::Shared;
use crate::session::{Inbound, Session, SessionLimits};

/// Runs one WebSocket session to its end.
pub(crate) async fn serve<S>(ws: WebSocketStream<S>, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let outbox = Arc::new(Outbox::new(shared.config.outbox_limits()));
    let limits = SessionLimits {
        max_message_bytes: shared.config.websocket.max_message_bytes as u32,
    };
    let user_id: Arc<str> = format!("anonymous-{id}").into();
    let mut session = Session::new(
        id,
        user_id,
        outbox.clone(),
        shared.pool.clone(),
        &limits,
        unix_micros(),
    );
    let metrics = &shared.metrics;
    metrics.connections.inc();
    metrics.connections_accepted.inc();
    tracing::debug!(%peer, session = id, "session started");

    let (mut sink, mut stream) = ws.split();
    let mut batch = Batch::default();
    let mut buf = BytesMut::new();
    let mut superseded = 0;
    let close = loop {
        tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => break Some(CloseReason::ShuttingDown),
            () = poll_fn(|cx| outbox.poll_drain(cx, &mut batch)) => {
                if outbox.is_overflowed() {
                    break Some(CloseReason::SlowConsumer);
                }
                buf.clear();
                encode_batch(&batch, &mut buf);
                let message = buf.split().freeze();
                metrics.messages_out.inc();
                metrics.bytes_out.inc_by(message.len() as u64);
                let now_superseded = outbox.superseded();
                metrics.frames_superseded.inc_by(now_superseded - superseded);
                superseded = now_superseded;
                if sink.send(Message::Binary(message)).await.is_err() {
                    break None;
                }
            }
            inbound = stream.next() => {
                let inbound = match inbound {
                    None | Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(Message::Binary(bytes))) => {
                        metrics.messages_in.inc();
                        metrics.bytes_in.inc_by(bytes.len() as u64);
                        session.handle(Inbound::Binary(&bytes), unix_micros())
                    }
                    Some(Ok(Message::Text(_))) => session.handle(Inbound::Text, unix_micros()),
                    // tungstenite answers pings itself; pongs only prove liveness.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
                    Some(Err(WsError::Capacity(_))) => session.handle(Inbound::TooBig, unix_micros()),
                    Some(Err(WsError::Protocol(_))) => Err(CloseReason::ProtocolError),
                    Some(Err(e)) => {
                        tracing::debug!(%peer, session = id, "connection error: {e}");
                        break None;
                    }
                };
                if let Err(reason) = inbound {
                    break Some(reason);
                }
            }
        }
    };
    if let Some(reason) = close {
        metrics.count_close(reason);
        tracing::debug!(%peer, session = id, code = reason.code(), reason = reason.reason(), "closing session");
        let frame = CloseFrame {
            code: reason.code().into(),
            reason: reason.reason().into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    session.close();
    metrics.connections.dec();
}
