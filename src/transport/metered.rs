//! A connection's inbound bytes metered before they are parsed ([`Metered`]): a
//! flood of frames that never complete a message is throttled, then refused
//! ([`Flooded`]), whatever the stream (TLS, plain TCP).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::bucket::TokenBucket;
use crate::session::limits::RateLimits;

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
            Err(_) => {
                let since = *this.over_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= this.flood_window {
                    return Poll::Ready(Err(std::io::Error::other(Flooded)));
                }
                // Let these bytes through, charged in full (the bucket goes below
                // zero: emptying it only let every other read through unpaid, twice
                // the rate), and read no more until it is back at zero.
                this.bucket.charge(read, now);
                let wait = this.bucket.wait_for(0.0, now);
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
