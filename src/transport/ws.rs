//! The WebSocket transport: one binary message per envelope, tungstenite's own
//! ping/pong for liveness, and RFC 6455 close frames carrying the [`CloseReason`].

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tickrelay_proto::bucket::TokenBucket;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::engine::envelope::encode_batch;
use crate::engine::outbox::{Batch, Delivery, Outbox};
use crate::error::{CloseReason, fit_close_reason};
use crate::session::Inbound;
use crate::session::limits::RateLimits;
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

    /// Closes with `code` and `reason` (cut to 123 bytes), lingering until the client
    /// answers.
    pub(crate) async fn close_with(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: fit_close_reason(reason).into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.send(Message::Close(Some(frame)))).await;
        // A lingering close: a TCP socket closed with input unread, or that input reaches
        // after it closed, is reset, and the client's system then discards what the
        // client had not read yet, the close frame included (1006 instead of this
        // code). So read and drop what arrives until the client answers the close, a
        // second at most.
        let answered = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), answered).await;
        self.finish().await;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for WebSocket<S> {
    const DELIVERY: Delivery = Delivery::Reliable;
    const NAME: &'static str = "websocket";

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
            Some(Ok(Message::Ping(payload) | Message::Pong(payload))) => {
                Received::Other(Inbound::Control(payload.len()))
            }
            Some(Ok(Message::Frame(frame))) => Received::Other(Inbound::Control(frame.len())),
            Some(Err(WsError::Capacity(_))) => Received::Other(Inbound::TooBig),
            Some(Err(WsError::Protocol(_))) => Received::ProtocolError,
            Some(Err(WsError::Utf8(_))) => Received::InvalidPayload,
            Some(Err(WsError::Io(e))) if e.get_ref().is_some_and(|e| e.is::<Flooded>()) => Received::Flood,
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
        self.close_with(reason.code(), reason.reason()).await;
    }

    async fn finish(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), SinkExt::close(&mut self.ws)).await;
    }
}

/// The raw bytes a WebSocket peer sends, metered before they are parsed: frames that
/// never complete a message (empty continuation frames, say) cost the server as much
/// as messages, and the message limits never see them. Reads beyond twice the byte
/// limits are delayed until the bucket refills; a peer over them for longer than the
/// flood window gets a [`Flooded`] error (the connection closes with 1008).
pub(crate) struct Metered<S> {
    inner: S,
    bucket: TokenBucket,
    burst: f64,
    flood_window: Duration,
    over_since: Option<Instant>,
    throttle: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error a [`Metered`] stream reads once the peer flooded it.
#[derive(Debug, thiserror::Error)]
#[error("inbound byte flood")]
pub(crate) struct Flooded;

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, limits: &RateLimits) -> Self {
        // Twice the message-level allowance: framing overhead never trips it.
        let (rate, burst) = (2.0 * limits.bytes_per_second, 2.0 * limits.byte_burst);
        Self {
            inner,
            bucket: TokenBucket::new(rate, burst, Instant::now()),
            burst,
            flood_window: limits.flood_window,
            over_since: None,
            throttle: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(throttle) = &mut this.throttle {
            ready!(throttle.as_mut().poll(cx));
            this.throttle = None;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = (buf.filled().len() - before) as f64;
        let now = Instant::now();
        match this.bucket.try_take(read, now) {
            // Back under only with slack: a flood throttled to the refill rate is
            // still a flood.
            Ok(()) if this.bucket.tokens() >= this.burst / 2.0 => this.over_since = None,
            Ok(()) => {}
            Err(wait) => {
                let since = *this.over_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= this.flood_window {
                    return Poll::Ready(Err(std::io::Error::other(Flooded)));
                }
                // Let these bytes through, and read no more until the bucket refilled.
                this.bucket.take_up_to(u64::MAX, now);
                this.throttle = Some(Box::pin(tokio::time::sleep(wait)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
