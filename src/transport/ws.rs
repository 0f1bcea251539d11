//! The WebSocket transport: one binary message per envelope, tungstenite's own
//! ping/pong for liveness, and RFC 6455 close frames carrying the [`CloseReason`].

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::engine::envelope::encode_batch;
use crate::engine::outbox::{Batch, Delivery, Outbox};
use crate::error::CloseReason;
use crate::session::Inbound;
use crate::transport::{Broken, Received, Sent, Transport};

/// One upgraded WebSocket connection. Not split into halves: the connection loop
/// never reads and writes at once (a read future is dropped before a write starts;
/// reading is cancel-safe), so the halves' lock would be pure cost.
pub(crate) struct WebSocket<S> {
    ws: WebSocketStream<S>,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    pub(crate) fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            buf: BytesMut::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for WebSocket<S> {
    const DELIVERY: Delivery = Delivery::Reliable;

    async fn recv(&mut self) -> Received {
        match self.ws.next().await {
            None => Received::Lost,
            // tungstenite has queued the close reply; `finish` sends it.
            Some(Ok(Message::Close(frame))) => match frame {
                Some(f) if u16::from(f.code) != 1000 => Received::ClientLeft,
                _ => Received::ClientClosed,
            },
            Some(Ok(Message::Binary(bytes))) => Received::Binary(bytes),
            Some(Ok(Message::Text(_))) => Received::Other(Inbound::Text),
            // tungstenite answers pings itself; any frame proves liveness.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Received::Other(Inbound::Control),
            Some(Err(WsError::Capacity(_))) => Received::Other(Inbound::TooBig),
            Some(Err(WsError::Protocol(_))) => Received::ProtocolError,
            Some(Err(WsError::Utf8(_))) => Received::InvalidPayload,
            Some(Err(e)) => {
                tracing::debug!("connection error: {e}");
                Received::Lost
            }
        }
    }

    async fn send(&mut self, batch: &Batch, _: &Outbox) -> Result<Sent, Broken> {
        self.buf.clear();
        encode_batch(batch, &mut self.buf);
        let message = self.buf.split().freeze();
        let bytes = message.len() as u64;
        self.ws.send(Message::Binary(message)).await.map_err(|_| Broken)?;
        Ok(Sent { messages: 1, bytes })
    }

    async fn ping(&mut self) -> Result<(), Broken> {
        self.ws.send(Message::Ping(Bytes::new())).await.map_err(|_| Broken)
    }

    async fn close(&mut self, reason: CloseReason) {
        let frame = CloseFrame {
            code: reason.code().into(),
            reason: reason.reason().into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.send(Message::Close(Some(frame)))).await;
        self.finish().await;
    }

    async fn finish(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), SinkExt::close(&mut self.ws)).await;
    }
}
