//! The WebSocket transport: one binary message per envelope, tungstenite's own
//! ping/pong for liveness, and RFC 6455 close frames carrying the [`CloseReason`].

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tickrelay_proto::bucket::TokenBucket;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
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
    /// tungstenite may hold a reply to a ping or a close that it has not written yet
    /// (it writes them when it next reads): written before a message of ours.
    replies_pending: bool,
    /// Where the unwritten rest of our last frame starts in `buf` (`buf.len()`: all
    /// written). A send given up half way (a slow reader, a stop) leaves a rest that
    /// must go out before any other frame, or the stream would be garbage.
    unwritten: usize,
}

/// The longest header of a frame the server sends (unmasked): two bytes, and eight
/// for a length over 65,535.
const MAX_HEADER_BYTES: usize = 10;

/// Writes the header of a final binary frame of `len` payload bytes at the end of
/// `room` (at most [`MAX_HEADER_BYTES`]); returns where it starts.
fn put_header(room: &mut [u8; MAX_HEADER_BYTES], len: usize) -> usize {
    const FIN_BINARY: u8 = 0x82;
    let start = match len {
        0..=125 => {
            room[9] = len as u8;
            8
        }
        126..=65_535 => {
            room[7] = 126;
            room[8..].copy_from_slice(&(len as u16).to_be_bytes());
            6
        }
        _ => {
            room[1] = 127;
            room[2..].copy_from_slice(&(len as u64).to_be_bytes());
            0
        }
    };
    room[start] = FIN_BINARY;
    start
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    pub(crate) fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            buf: BytesMut::new(),
            replies_pending: false,
            unwritten: 0,
        }
    }

    /// Writes the rest of our last frame, if any, and flushes. Cancel-safe: progress
    /// is kept in `unwritten`.
    async fn write_rest(&mut self) -> std::io::Result<()> {
        let stream = self.ws.get_mut();
        while self.unwritten < self.buf.len() {
            let n = stream.write(&self.buf[self.unwritten..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.unwritten += n;
        }
        stream.flush().await
    }

    /// Closes with `code` and `reason` (cut to 123 bytes), lingering until the client
    /// answers.
    pub(crate) async fn close_with(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: fit_close_reason(reason).into(),
        };
        // A frame of ours cut off half way goes out first; if it cannot, no close
        // frame can follow it (the client would read it as part of the frame).
        if !matches!(
            tokio::time::timeout(Duration::from_secs(1), self.write_rest()).await,
            Ok(Ok(()))
        ) {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.get_mut().shutdown()).await;
            return;
        }
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
        let received = self.ws.next().await;
        // tungstenite answers these itself, at its next read or write.
        if let Some(Ok(Message::Ping(_) | Message::Close(_))) = &received {
            self.replies_pending = true;
        }
        match received {
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

    /// One binary message, framed here and written straight to the stream under
    /// tungstenite (its `Sink` copies the message into a buffer of its own and goes
    /// through several layers of wakers per write): the envelope is encoded after room
    /// for the frame header, which is then written in place, so the message is copied
    /// once more only into the TLS record. tungstenite's own writes (pings, close and
    /// its answers) are always written out before (`replies_pending`), so frames never
    /// interleave: the connection loop finishes a send before it reads again.
    async fn send(&mut self, batch: &Batch, _: &Outbox) -> Result<Sent, Broken> {
        self.write_rest().await.map_err(|_| Broken)?;
        if self.replies_pending {
            SinkExt::flush(&mut self.ws).await.map_err(|_| Broken)?;
            self.replies_pending = false;
        }
        self.buf.clear();
        self.buf.resize(MAX_HEADER_BYTES, 0);
        encode_batch(batch, &mut self.buf);
        let len = self.buf.len() - MAX_HEADER_BYTES;
        let room: &mut [u8; MAX_HEADER_BYTES] = (&mut self.buf[..MAX_HEADER_BYTES]).try_into().expect("header room");
        self.unwritten = put_header(room, len);
        self.write_rest().await.map_err(|_| Broken)?;
        Ok(Sent {
            messages: 1,
            bytes: len as u64,
        })
    }

    async fn ping(&mut self) -> Result<(), Broken> {
        self.write_rest().await.map_err(|_| Broken)?;
        self.ws.send(Message::Ping(Bytes::new())).await.map_err(|_| Broken)
    }

    async fn close(&mut self, reason: CloseReason) {
        self.close_with(reason.code(), reason.reason()).await;
    }

    async fn finish(&mut self) {
        let finished = async {
            // tungstenite's close reply must not land inside a frame of ours.
            if self.write_rest().await.is_ok() {
                let _ = SinkExt::close(&mut self.ws).await;
            } else {
                let _ = self.ws.get_mut().shutdown().await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), finished).await;
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

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;
    use crate::engine::outbox::OutboxLimits;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A send given up half way (the client stopped reading) is finished before the
    /// close frame: the client reads the whole message, then the close code.
    #[tokio::test]
    async fn a_frame_cut_off_by_a_slow_reader_is_finished_before_the_close() {
        let (server_io, client_io) = tokio::io::duplex(64);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let mut ws = WebSocket::new(server);
        let batch = Batch {
            first_seq: 1,
            reliable: vec![Bytes::from(vec![7u8; 1000])],
            ..Batch::default()
        };
        let outbox = Outbox::new(OutboxLimits::default());
        let sent = tokio::time::timeout(Duration::from_millis(50), ws.send(&batch, &outbox)).await;
        assert!(sent.is_err(), "the client reads nothing yet: the write blocks");
        let closing = tokio::spawn(async move { ws.close_with(4002, "replaced").await });
        let first = client.next().await.unwrap().unwrap();
        assert!(matches!(&first, Message::Binary(b) if b.len() > 1000), "{first:?}");
        let Some(Ok(Message::Close(Some(frame)))) = client.next().await else {
            panic!("expected the close frame");
        };
        assert_eq!(u16::from(frame.code), 4002);
        drop(client);
        closing.await.unwrap();
    }

    /// The frames the server writes itself are byte for byte tungstenite's, at every
    /// length encoding's edges.
    #[test]
    fn frame_headers_are_tungstenites() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let payload = vec![0xab; len];
            let mut expected = Vec::new();
            let frame = Frame::message(payload.clone(), OpCode::Data(Data::Binary), true);
            frame.format(&mut expected).unwrap();
            let mut room = [0; MAX_HEADER_BYTES];
            let start = put_header(&mut room, len);
            let mut ours = room[start..].to_vec();
            ours.extend_from_slice(&payload);
            assert_eq!(ours, expected, "length {len}");
        }
    }
}
