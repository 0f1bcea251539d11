//! One QUIC connection, driven by the task that serves its session: packets the
//! router hands over are taken in, timers fire, and what the connection has to send
//! is built and sent on the shared socket, all on that task ([`Driver::drive`]). A
//! connection dropped before it drained gets a task of its own for the rest (its
//! close, answered until the peer has it).
//!
//! The connection loop polls the transport's read and its writes with wakers of
//! their own (it polls only the branch that was woken), so the connection keeps
//! both: whatever arrives wakes the reader and a writer waiting for the client's
//! window alike.

use std::future::poll_fn;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use quinn_proto::{ConnectionError, ConnectionHandle, Event, StreamEvent, VarInt};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_util::sync::ReusableBoxFuture;

use super::endpoint::Shared;
use crate::error::{CloseReason, fit_close_reason};

/// What the router sends a connection.
pub(crate) enum ToConn {
    /// Packets (or an endpoint's answer) for it.
    Proto(quinn_proto::ConnectionEvent),
    /// The relay stops: close with 1001.
    Close,
}

/// A connection that drives itself to its end once dropped (see [`Driver`]).
pub(crate) struct Conn(Option<Driver>);

impl Conn {
    pub(crate) fn new(
        inner: quinn_proto::Connection,
        handle: ConnectionHandle,
        events: mpsc::UnboundedReceiver<ToConn>,
        shared: Arc<Shared>,
    ) -> Self {
        let wakers = Arc::new(Wakers::default());
        Self(Some(Driver {
            waker: Waker::from(wakers.clone()),
            wakers,
            inner,
            handle,
            events,
            writable: ReusableBoxFuture::new(writable(shared.clone())),
            shared,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            timer_deadline: None,
            buffer: Vec::new(),
            blocked: None,
            ended: None,
            connected: false,
            stream_settled: false,
        }))
    }
}

impl Deref for Conn {
    type Target = Driver;
    fn deref(&self) -> &Driver {
        self.0.as_ref().expect("taken only when dropped")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Driver {
        self.0.as_mut().expect("taken only when dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(mut driver) = self.0.take() else { return };
        if driver.done() {
            return;
        }
        // Dropped without a close (a handshake given up): closed as lost, as
        // PROTOCOL.md says of code 0.
        if !driver.inner.is_closed() {
            driver.inner.close(Instant::now(), VarInt::from_u32(0), Bytes::new());
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                poll_fn(|cx| {
                    driver.drive(cx);
                    if driver.done() { Poll::Ready(()) } else { Poll::Pending }
                })
                .await;
            });
        }
    }
}

/// A `quinn_proto::Connection` and what drives it.
pub(crate) struct Driver {
    pub(crate) inner: quinn_proto::Connection,
    handle: ConnectionHandle,
    events: mpsc::UnboundedReceiver<ToConn>,
    shared: Arc<Shared>,
    /// The connection's next timeout (`timer_deadline`).
    timer: Pin<Box<Sleep>>,
    timer_deadline: Option<Instant>,
    /// Packets `poll_transmit` built.
    buffer: Vec<u8>,
    /// A send the socket refused (its packets still in `buffer`): sent first once
    /// the socket is writable again.
    blocked: Option<quinn_proto::Transmit>,
    writable: ReusableBoxFuture<'static, ()>,
    /// Who waits for the connection, and the waker that wakes them all.
    wakers: Arc<Wakers>,
    waker: Waker,
    /// Why the connection ended, once it has.
    pub(crate) ended: Option<ConnectionError>,
    /// The handshake completed.
    pub(crate) connected: bool,
    /// Every byte written on the control stream was acknowledged (after a finish),
    /// or the peer stopped the stream.
    pub(crate) stream_settled: bool,
}

/// The reader (the transport's `recv`, or whoever drives the connection alone) and a
/// writer waiting for the client's window.
#[derive(Default)]
struct Wakers {
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.reader.wake();
        self.writer.wake();
    }
}

async fn writable(shared: Arc<Shared>) {
    shared.socket.writable().await;
}

/// Packets sent per [`Driver::drive`] before it yields (a connection with a large
/// backlog would hold its worker thread).
const MAX_DATAGRAMS_PER_DRIVE: usize = 32;

/// Packets one send may carry with GSO.
const MAX_SEGMENTS: usize = 10;

impl Driver {
    /// Nothing more to do: drained, or the router (so the socket's reads) is gone.
    fn done(&self) -> bool {
        self.inner.is_drained() || self.events.is_closed()
    }

    /// Takes in what the router handed over, fires due timers, sends what is ready
    /// and notes what happened (`ended`, `connected`, `stream_settled`); `cx` (the
    /// reader) is woken when there is more (packets, a timer, a writable socket).
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) {
        self.wakers.reader.register(cx.waker());
        self.run();
    }

    /// [`Driver::drive`] for a writer, woken as the reader is, until
    /// [`Driver::writer_done`].
    pub(crate) fn drive_writer(&mut self, cx: &mut Context<'_>) {
        self.wakers.writer.register(cx.waker());
        self.run();
    }

    /// The writer waits no more.
    pub(crate) fn writer_done(&self) {
        self.wakers.writer.take();
    }

    /// Sends what the caller just wrote (and takes in what arrived meanwhile).
    pub(crate) fn flush(&mut self) {
        self.run();
    }

    fn run(&mut self) {
        let waker = self.waker.clone();
        let cx = &mut Context::from_waker(&waker);
        loop {
            while let Poll::Ready(event) = self.events.poll_recv(cx) {
                match event {
                    Some(ToConn::Proto(event)) => self.inner.handle_event(event),
                    Some(ToConn::Close) => self.close(CloseReason::ShuttingDown.code(), CloseReason::ShuttingDown.reason()),
                    // The relay stopped serving QUIC: nothing arrives or leaves any more.
                    None => {
                        self.ended.get_or_insert(ConnectionError::LocallyClosed);
                        return;
                    }
                }
            }
            let now = Instant::now();
            if self.inner.poll_timeout().is_some_and(|deadline| deadline <= now) {
                self.inner.handle_timeout(now);
            }
            let more = self.transmit(cx, now);
            while let Some(event) = self.inner.poll_endpoint_events() {
                let _ = self.shared.endpoint_events.send((self.handle, event));
            }
            while let Some(event) = self.inner.poll() {
                match event {
                    Event::Connected => self.connected = true,
                    Event::ConnectionLost { reason } => {
                        self.ended.get_or_insert(reason);
                    }
                    Event::Stream(StreamEvent::Finished { .. } | StreamEvent::Stopped { .. }) => {
                        self.stream_settled = true;
                    }
                    _ => {}
                }
            }
            if more {
                // The rest after the worker's other tasks had a turn.
                cx.waker().wake_by_ref();
                return;
            }
            let Some(deadline) = self.inner.poll_timeout() else {
                self.timer_deadline = None;
                return;
            };
            if self.timer_deadline != Some(deadline) {
                self.timer.as_mut().reset(deadline.into());
                self.timer_deadline = Some(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return;
            }
            // Due between the clock read above and now (the timer rounds to a
            // millisecond, so the deadline itself is passed, never an earlier time).
            self.inner.handle_timeout(Instant::now().max(deadline));
            self.timer_deadline = None;
        }
    }

    /// Sends what the connection has ready; true when it stopped at
    /// [`MAX_DATAGRAMS_PER_DRIVE`] with more to send.
    fn transmit(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let segments = self.shared.socket.max_segments(MAX_SEGMENTS);
        let mut datagrams = 0;
        loop {
            let transmit = match self.blocked.take() {
                Some(transmit) => transmit,
                None => {
                    self.buffer.clear();
                    match self.inner.poll_transmit(now, segments, &mut self.buffer) {
                        Some(transmit) => transmit,
                        None => return false,
                    }
                }
            };
            if self
                .shared
                .socket
                .try_send(&transmit, &self.buffer[..transmit.size])
                .is_err()
            {
                // The kernel's buffer is full: again once the socket is writable.
                self.blocked = Some(transmit);
                match self.writable.poll(cx) {
                    Poll::Ready(()) => {
                        self.writable.set(writable(self.shared.clone()));
                        continue;
                    }
                    Poll::Pending => return false,
                }
            }
            datagrams += match transmit.segment_size {
                Some(size) => transmit.size.div_ceil(size),
                None => 1,
            };
            if datagrams >= MAX_DATAGRAMS_PER_DRIVE {
                return true;
            }
        }
    }

    /// Closes the connection with `code` and `reason` (cut to fit, like a WebSocket
    /// close reason); the next [`Driver::drive`] sends it.
    pub(crate) fn close(&mut self, code: u16, reason: &str) {
        let reason = Bytes::copy_from_slice(fit_close_reason(reason).as_bytes());
        self.inner.close(Instant::now(), VarInt::from_u32(code.into()), reason);
    }

}
