//! The WebSocket transport: one binary message per envelope, pings for liveness,
//! and RFC 6455 close frames carrying the [`CloseReason`]. Frames are read and
//! written here ([`crate::transport::frame`]) straight on the upgraded stream.
//!
//! The frames a connection's rooms send at each tick are written by its [`Flusher`],
//! the waker its outbox wakes: on the connection's own I/O thread (where the thread's
//! draining task hands over a simulation turn's wake-ups) it drains the outbox and
//! writes the frame itself, without waking and polling the connection's task, so one
//! pass of the draining task writes every connection's frame of that turn. What it
//! cannot finish at once (a client that does not read, several messages, large
//! bodies) it leaves to the connection loop, which it then wakes. In the same way the
//! socket's waker is the connection's [`Reader`]: it reads what the client sent and
//! hands the inputs to the session (through the loop's [`Inputs`]) without waking the
//! loop, and leaves it anything else, which the loop takes even while a write of its
//! own is held up by a client that does not read (`Handoff::take_left`).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::task::{ArcWake, waker_ref};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::engine::envelope::{
    Reliable, SHARED_BODY_BYTES, SPLIT_ENVELOPE_BYTES, encode_envelope, encode_envelope_sharing, split_envelopes,
};
use crate::engine::outbox::{Batch, Delivery, Outbox, PendingState};
use crate::error::{CloseReason, fit_close_reason};
use crate::metrics::Metrics;
use crate::session::Inbound;
use crate::transport::frame::{
    FrameError, FrameReader, Incoming, MAX_HEADER_BYTES, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, close_payload,
    control_frame, put_header,
};
use crate::transport::metered::Flooded;
use crate::transport::{Broken, Handoff, Inputs, Received, Sent, Transport};

/// One upgraded WebSocket connection: the [`Stream`], which the connection's task,
/// its [`Flusher`] and its [`Reader`] read and write through. All three run on the
/// connection's thread and lock it for one poll at a time (never across an `.await`),
/// so the lock is never waited for.
pub(crate) struct WebSocket<S> {
    stream: Arc<Mutex<Stream<S>>>,
    /// The [`Reader`]'s waker, once there is one: every read registers it, whichever
    /// task reads.
    reader: Option<Waker>,
}

/// The stream, what the server reads from it and what it writes to it.
struct Stream<S> {
    io: S,
    reader: FrameReader,
    /// What the [`Reader`] read and left to the loop: the next thing `recv` returns.
    left: Option<Received>,
    /// What the server writes: a frame of ours, or control frames (pongs, a close).
    out: BytesMut,
    /// Where the unwritten rest of `out` starts (`out.len()`: all written). A write
    /// given up half way (a slow reader, a stop) leaves a rest that must go out
    /// before any other frame, or the stream would be garbage.
    unwritten: usize,
    /// What goes out after `out`, in order: the large state bodies of the message
    /// under way, written from the room's own copy (see `encode_envelope_sharing`),
    /// and the bytes between and after them.
    shared: VecDeque<Bytes>,
    /// Control frames queued while `shared` holds a message's parts: they go out
    /// after them.
    after_shared: BytesMut,
    /// Bytes of `out` may still sit unflushed (in the TLS layer).
    needs_flush: bool,
    /// The server has queued its close frame: nothing may follow it.
    close_sent: bool,
    /// Bytes of the pongs queued since everything was last written (behind a message
    /// of ours under way, say: the reader reads pings during a write).
    pongs: usize,
    /// A write by the flusher failed: the connection is gone.
    broken: bool,
    /// The bytes of a message the flusher began and left to the loop, until it is
    /// written and flushed (what the TLS layer took of it is no longer in `out`).
    begun: usize,
    /// What the flusher drained from the outbox; when `handed`, left for the loop to
    /// write (empty when what is left is the rest of a message it began).
    hand: Batch,
    handed: bool,
    /// The connection loop is over: the flusher writes nothing more, the reader
    /// reads nothing more.
    retired: bool,
}

/// Bytes of pongs that may wait for a client that does not read them.
const MAX_UNWRITTEN_PONGS: usize = 1024;

/// Buffers given to one write of a message with shared parts: the rest of its start
/// and the next parts (the bytes between large bodies are small).
const WRITE_PARTS: usize = 8;

/// The largest write buffer a connection keeps between writes: room for a state
/// frame of a busy room. A larger one, grown for a full snapshot, is released once
/// it is written, or every member of a room with a large state would hold a copy of
/// it for the connection's life.
const MAX_KEPT_WRITE_BUFFER: usize = 16 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Stream<S> {
    /// Nothing of ours waits to be written or flushed (a message the loop is
    /// writing in several, or bytes the TLS layer took but has not yet written), and
    /// more may be: a frame can go out now.
    fn is_idle(&self) -> bool {
        self.unwritten == self.out.len()
            && !self.needs_flush
            && self.shared.is_empty()
            && self.after_shared.is_empty()
            && !self.close_sent
            && !self.broken
    }

    /// Writes the rest of `out`, then of `shared`, then the control frames queued
    /// behind `shared`, if any, and flushes. Progress is kept in `unwritten` and
    /// `shared`: a write given up while pending goes on where it stopped.
    fn poll_write_rest(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            while self.unwritten < self.out.len() || !self.shared.is_empty() {
                let n = ready!(self.poll_write_some(cx))?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                let in_out = n.min(self.out.len() - self.unwritten);
                self.unwritten += in_out;
                self.advance_shared(n - in_out);
            }
            if self.after_shared.is_empty() {
                break;
            }
            // The message is out: the control frames queued behind it follow.
            std::mem::swap(&mut self.out, &mut self.after_shared);
            self.after_shared.clear();
            self.unwritten = 0;
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        (self.needs_flush, self.begun, self.pongs) = (false, 0, 0);
        Poll::Ready(Ok(()))
    }

    /// After a failed write: nothing is left to write, and reading goes on to what
    /// the client sent before the connection broke (a close, say).
    fn drop_unwritten(&mut self) {
        (self.unwritten, self.needs_flush, self.begun, self.pongs) = (self.out.len(), false, 0, 0);
        self.shared.clear();
        self.after_shared.clear();
    }

    /// One write of what waits: the rest of `out`, with the next parts of `shared`
    /// if there are any.
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let rest = &self.out[self.unwritten..];
        if self.shared.is_empty() {
            return Pin::new(&mut self.io).poll_write(cx, rest);
        }
        let parts: [IoSlice<'_>; WRITE_PARTS] = std::array::from_fn(|i| match i {
            0 => IoSlice::new(rest),
            i => IoSlice::new(self.shared.get(i - 1).map_or(&[][..], |part| part)),
        });
        Pin::new(&mut self.io).poll_write_vectored(cx, &parts)
    }

    /// Drops `n` written bytes from the front of `shared`.
    fn advance_shared(&mut self, mut n: usize) {
        while n > 0 {
            let part = self.shared.front_mut().expect("no more written than queued");
            let taken = n.min(part.len());
            part.advance(taken);
            n -= taken;
            if part.is_empty() {
                self.shared.pop_front();
            }
        }
    }

    /// Queues one binary message whose payload `encode` appends, after room left for
    /// its frame header (written in place once the length is known), continued with
    /// the parts it leaves shared (see `shared`).
    fn queue_message(&mut self, encode: impl FnOnce(&mut BytesMut, &mut VecDeque<Bytes>)) -> Sent {
        debug_assert!(self.shared.is_empty(), "the message before is written");
        self.out.clear();
        self.out.resize(MAX_HEADER_BYTES, 0);
        encode(&mut self.out, &mut self.shared);
        let len = self.out.len() - MAX_HEADER_BYTES + self.shared.iter().map(Bytes::len).sum::<usize>();
        let room: &mut [u8; MAX_HEADER_BYTES] = (&mut self.out[..MAX_HEADER_BYTES]).try_into().expect("header room");
        self.unwritten = put_header(room, OP_BINARY, len);
        self.needs_flush = true;
        Sent {
            messages: 1,
            bytes: len as u64,
            ..Sent::default()
        }
    }

    /// Queues the one message of `reliable` and `states`, encoded in one piece when
    /// no state body is large (every frame of a room in play), else with the large
    /// bodies written from the room's copy (see `shared`).
    fn queue_envelope(&mut self, reliable: Reliable<'_>, states: &[PendingState]) -> Sent {
        if states.iter().all(|state| state.body.len() < SHARED_BODY_BYTES) {
            // Rather than through `encode_envelope_sharing`'s own fallback, which
            // measured about 120 more instructions a frame (`bench/instructions.sh`,
            // BENCHMARKS.md).
            self.queue_message(|out, _| encode_envelope(reliable, states, out))
        } else {
            self.queue_message(|out, shared| encode_envelope_sharing(reliable, states, out, shared))
        }
    }

    /// A large batch went out: its buffer is not kept for the connection's life.
    fn shrink_after_large(&mut self) {
        if self.out.capacity() > MAX_KEPT_WRITE_BUFFER && self.unwritten == self.out.len() {
            (self.out, self.unwritten) = (BytesMut::with_capacity(MAX_KEPT_WRITE_BUFFER), 0);
        }
    }

    /// Queues a control frame after whatever is still unwritten.
    fn queue_control(&mut self, opcode: u8, payload: &[u8]) {
        if self.close_sent {
            return;
        }
        if !self.shared.is_empty() {
            // After the parts of the message under way.
            control_frame(&mut self.after_shared, opcode, payload);
            self.needs_flush = true;
            self.close_sent = opcode == OP_CLOSE;
            return;
        }
        if self.unwritten == self.out.len() {
            self.out.clear();
            self.unwritten = 0;
        } else if self.unwritten > 0 {
            // What went out goes: a client that reads its pongs a little slower than
            // it pings, so that some are always partly written, would otherwise grow
            // the buffer for the connection's life.
            self.out.advance(self.unwritten);
            self.unwritten = 0;
        }
        control_frame(&mut self.out, opcode, payload);
        self.needs_flush = true;
        self.close_sent = opcode == OP_CLOSE;
    }

    /// The next message or control frame, reading what the socket has when the
    /// reader's buffer holds none whole (registering `read_waker`, else `cx`'s waker); a
    /// message the [`Reader`] left first. The loop (`flush`) first writes what waits
    /// (answers to pings) as far as the socket takes it now, with its own waker, and
    /// without holding up reading (a client that does not read is still read; the
    /// rest goes at the next message read or frame sent). The reader never writes:
    /// its waker would then stand in for the loop's as the one a blocked write wakes.
    fn poll_recv(&mut self, cx: &mut Context<'_>, flush: bool, read_waker: Option<&Waker>) -> Poll<Received> {
        if let Some(left) = self.left.take() {
            return Poll::Ready(left);
        }
        loop {
            match self.reader.next() {
                Ok(Some(incoming)) => return Poll::Ready(self.received(incoming)),
                Ok(None) => {}
                Err(FrameError::TooBig) => return Poll::Ready(Received::Other(Inbound::TooBig)),
                Err(FrameError::Protocol(why)) => {
                    tracing::debug!("websocket protocol error: {why}");
                    return Poll::Ready(Received::ProtocolError);
                }
            }
            let read = if flush
                && self.needs_flush
                && let Poll::Ready(Err(e)) = self.poll_write_rest(cx)
            {
                self.drop_unwritten();
                Err(e)
            } else {
                let (io, buf) = (Pin::new(&mut self.io), self.reader.buf());
                ready!(match read_waker {
                    Some(waker) => tokio_util::io::poll_read_buf(io, &mut Context::from_waker(waker), buf),
                    None => tokio_util::io::poll_read_buf(io, cx, buf),
                })
            };
            match read {
                Ok(0) => return Poll::Ready(Received::Lost),
                Ok(_) => {}
                Err(e) if e.get_ref().is_some_and(|e| e.is::<Flooded>()) => return Poll::Ready(Received::Flood),
                Err(e) => {
                    tracing::debug!("connection error: {e}");
                    return Poll::Ready(Received::Lost);
                }
            }
        }
    }

    /// What a whole message or control frame means to the session; pings and closes
    /// are answered (the answer goes out before the next frame of ours).
    fn received(&mut self, incoming: Incoming) -> Received {
        match incoming {
            Incoming::Binary(bytes) => Received::Binary(bytes),
            Incoming::Text { utf8: true } => Received::Other(Inbound::Text),
            Incoming::Text { utf8: false } => Received::InvalidPayload,
            // Any frame proves liveness; pings cost a pong and are charged for it.
            Incoming::Ping(payload) => {
                // A client that pings without reading the pongs gets no more of them
                // while a few are waiting (RFC 6455 §5.5.3 allows answering only the
                // latest ping): what waits for it stays bounded.
                if self.pongs <= MAX_UNWRITTEN_PONGS {
                    self.queue_control(OP_PONG, &payload);
                    self.pongs += 2 + payload.len();
                }
                Received::Other(Inbound::Control(payload.len()))
            }
            Incoming::Pong(len) => Received::Other(Inbound::Control(len)),
            // The reply echoes the code, with a reason as every close of ours has;
            // `finish` sends it.
            Incoming::Close(code) => {
                let reason = match code {
                    Some(1000) => CloseReason::Normal.reason(),
                    _ => "closed by the client",
                };
                let payload = code.map(|code| close_payload(code, reason)).unwrap_or_default();
                self.queue_control(OP_CLOSE, &payload);
                match code {
                    Some(code) if code != 1000 => Received::ClientLeft(code),
                    _ => Received::ClientClosed,
                }
            }
        }
    }

    /// The flusher's write of `hand`, drained just now: written at once, or left to
    /// the loop: a batch of several messages or with large bodies (written by the
    /// loop, one message at a time), an overflowed outbox (closed by the loop), or a
    /// message the socket did not take whole (the loop writes the rest, within its
    /// bounds for a slow reader).
    fn write_hand(&mut self, hand: &Batch, cx: &mut Context<'_>) -> Flushed {
        if hand.overflowed {
            return Flushed::Left;
        }
        let mut envelopes = split_envelopes(hand.reliable_part(), &hand.states, SPLIT_ENVELOPE_BYTES);
        let Some((reliable, states)) = envelopes.next() else {
            return Flushed::Written(Sent::default());
        };
        if envelopes.next().is_some() || states.iter().any(|state| state.body.len() >= SHARED_BODY_BYTES) {
            return Flushed::Left;
        }
        let sent = self.queue_envelope(reliable, states);
        // Outside tokio's budget: it counts every write of the task polled (the I/O
        // thread's draining task, which runs every connection's flusher), and would
        // turn all but the first hundred or so writes of a turn into wake-ups of their
        // connections' tasks.
        let mut write = std::pin::pin!(tokio::task::unconstrained(std::future::poll_fn(|cx| {
            self.poll_write_rest(cx)
        })));
        match write.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => Flushed::Written(sent),
            Poll::Ready(Err(_)) => Flushed::Failed,
            Poll::Pending => Flushed::Begun(sent),
        }
    }
}

/// How [`Stream::write_hand`] went.
enum Flushed {
    /// All of it went out.
    Written(Sent),
    /// Nothing was written: the loop writes the batch.
    Left,
    /// Its message was begun (and is counted): the loop writes the rest.
    Begun(Sent),
    /// The write failed.
    Failed,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> WebSocket<S> {
    /// A connection over `io`, which has already received `read` (bytes that came
    /// with the upgrade request), taking messages of up to `max_message` bytes and
    /// with a read buffer of `read_chunk` bytes between messages.
    pub(crate) fn new(io: S, read: &[u8], max_message: usize, read_chunk: usize) -> Self {
        Self {
            reader: None,
            stream: Arc::new(Mutex::new(Stream {
                io,
                reader: FrameReader::new(max_message, read_chunk, read),
                left: None,
                out: BytesMut::new(),
                unwritten: 0,
                shared: VecDeque::new(),
                after_shared: BytesMut::new(),
                needs_flush: false,
                close_sent: false,
                pongs: 0,
                broken: false,
                begun: 0,
                hand: Batch::default(),
                handed: false,
                retired: false,
            })),
        }
    }

    /// Writes everything queued and flushes (see [`Stream::poll_write_rest`]).
    /// Cancel-safe.
    async fn write_rest(&mut self) -> std::io::Result<()> {
        let written = std::future::poll_fn(|cx| self.stream.lock().poll_write_rest(cx)).await;
        if written.is_err() {
            self.stream.lock().drop_unwritten();
        }
        written
    }

    /// Queues one message (see [`Stream::queue_envelope`]) and writes it.
    async fn write_envelope(&mut self, reliable: Reliable<'_>, states: &[PendingState]) -> Result<Sent, Broken> {
        let sent = self.stream.lock().queue_envelope(reliable, states);
        self.write_rest().await.map_err(|_| Broken)?;
        Ok(sent)
    }

    /// Shuts the stream down.
    async fn shutdown(&mut self) -> std::io::Result<()> {
        std::future::poll_fn(|cx| Pin::new(&mut self.stream.lock().io).poll_shutdown(cx)).await
    }

    /// Closes with `code` and `reason` (cut to 123 bytes), lingering until the client
    /// answers.
    pub(crate) async fn close_with(&mut self, code: u16, reason: &str) {
        (self.stream.lock()).queue_control(OP_CLOSE, &close_payload(code, fit_close_reason(reason)));
        // A frame of ours cut off half way goes out first; if it cannot, the close
        // frame cannot follow it.
        if !matches!(
            tokio::time::timeout(Duration::from_secs(1), self.write_rest()).await,
            Ok(Ok(()))
        ) {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.shutdown()).await;
            return;
        }
        // A lingering close: a TCP socket closed with input unread, or that input reaches
        // after it closed, is reset, and the client's system then discards what the
        // client had not read yet, the close frame included (1006 instead of this
        // code). So read and drop what arrives until the client answers the close, a
        // second at most.
        let answered = async {
            loop {
                match self.recv().await {
                    // (`Ended`: the reader's end, left to the loop: not the client's answer.)
                    Received::Binary(_)
                    | Received::InvalidPayload
                    | Received::Ended(_)
                    | Received::Other(Inbound::Control(_) | Inbound::Text) => {}
                    // A refused frame (the reason for this close, often) stays refused:
                    // the frames after it cannot be found. What the client still sends
                    // is read as bytes and dropped, until it closes.
                    Received::ProtocolError | Received::Other(Inbound::TooBig) => {
                        // On the heap: in the future, 4 KiB held by every connection.
                        let mut scratch = vec![0u8; 4096];
                        while self.read_dropping(&mut scratch).await {}
                        return;
                    }
                    _ => return,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), answered).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.shutdown()).await;
    }

    /// Reads into `scratch` and drops it: false at the stream's end or an error.
    async fn read_dropping(&mut self, scratch: &mut [u8]) -> bool {
        let mut buf = ReadBuf::new(scratch);
        let read = std::future::poll_fn(|cx| Pin::new(&mut self.stream.lock().io).poll_read(cx, &mut buf)).await;
        read.is_ok() && !buf.filled().is_empty()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for WebSocket<S> {
    const DELIVERY: Delivery = Delivery::Reliable;
    const NAME: &'static str = "websocket";

    async fn recv(&mut self) -> Received {
        std::future::poll_fn(|cx| self.stream.lock().poll_recv(cx, true, self.reader.as_ref())).await
    }

    /// One binary message, framed here: the envelope is encoded after room for the
    /// frame header, which is then written in place, so the message is copied once
    /// more only into the TLS record; a large state body not even once (it is written
    /// from the room's copy, see `shared`). Control frames still unwritten go out first. A
    /// batch over the split size (rare: full snapshots of several large rooms) goes
    /// out as several messages, each written before the next is encoded, so a
    /// connection whose client does not read holds one of them, not all.
    async fn send(&mut self, batch: &Batch, _: &Outbox) -> Result<Sent, Broken> {
        if self.stream.lock().broken {
            return Err(Broken);
        }
        self.write_rest().await.map_err(|_| Broken)?;
        if self.stream.lock().close_sent {
            return Err(Broken);
        }
        if batch.is_empty() {
            // What the flusher began is out.
            self.stream.lock().shrink_after_large();
            return Ok(Sent::default());
        }
        // One envelope, or several when the batch is over the split size.
        let mut sent = Sent::default();
        for (reliable, states) in split_envelopes(batch.reliable_part(), &batch.states, SPLIT_ENVELOPE_BYTES) {
            // The reader may have answered the client's close while one was written.
            if self.stream.lock().close_sent {
                return Err(Broken);
            }
            let one = self.write_envelope(reliable, states).await?;
            sent.messages += one.messages;
            sent.bytes += one.bytes;
        }
        self.stream.lock().shrink_after_large();
        Ok(sent)
    }

    async fn ping(&mut self) -> Result<(), Broken> {
        self.stream.lock().queue_control(OP_PING, &[]);
        self.write_rest().await.map_err(|_| Broken)
    }

    async fn close(&mut self, reason: CloseReason) {
        self.close_with(reason.code(), reason.reason()).await;
    }

    /// Sends the close reply queued when the client's close arrived, and ends the
    /// stream.
    async fn finish(&mut self) {
        let finished = async {
            let _ = self.write_rest().await;
            let _ = self.shutdown().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), finished).await;
    }

    /// None off a single-threaded runtime (see [`on_one_thread`]).
    fn flusher(
        &self,
        loop_waker: &Waker,
        outbox: &Arc<Outbox>,
        metrics: &Arc<Metrics>,
    ) -> Option<(Waker, Arc<dyn Handoff>)> {
        if !on_one_thread() {
            return None;
        }
        let flusher = Arc::new(Flusher {
            stream: Arc::downgrade(&self.stream),
            outbox: Arc::downgrade(outbox),
            loop_waker: loop_waker.clone(),
            thread: thread_key(),
            metrics: metrics.clone(),
        });
        Some((futures_util::task::waker(flusher), self.stream.clone()))
    }

    /// Not off a single-threaded runtime (see [`on_one_thread`]): there the loop reads everything.
    fn reader(&mut self, loop_waker: &Waker, inputs: Arc<dyn Inputs>) -> Option<Waker> {
        if on_one_thread() {
            self.reader = Some(futures_util::task::waker(Arc::new(Reader {
                stream: Arc::downgrade(&self.stream),
                inputs,
                loop_waker: loop_waker.clone(),
                thread: thread_key(),
            })));
        }
        self.reader.clone()
    }
}

/// Whether the calling task stays on its thread (it runs on a single-threaded
/// runtime): a task that may move between threads could run its loop at the same
/// time as a flusher or reader woken on the thread it started on.
fn on_one_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

impl<S: Send> Handoff for Mutex<Stream<S>> {
    fn take(&self, batch: &mut Batch) -> bool {
        let mut writer = self.lock();
        if !writer.handed {
            return false;
        }
        writer.handed = false;
        std::mem::swap(&mut writer.hand, batch);
        true
    }

    fn unwritten(&self) -> usize {
        let writer = self.lock();
        let rest = writer.out.len() - writer.unwritten + writer.shared.iter().map(Bytes::len).sum::<usize>();
        rest.max(writer.begun)
    }

    fn retire(&self) {
        self.lock().retired = true;
    }

    fn take_left(&self) -> Option<Received> {
        self.lock().left.take()
    }
}

/// The waker of a WebSocket connection's outbox (see the module documentation).
/// Woken on the connection's thread, it writes what the outbox holds, as the loop
/// would; woken elsewhere, or when it cannot finish, it wakes the loop.
struct Flusher<S> {
    /// Weak, as `outbox`: the outbox holds this waker (and outlives the connection
    /// when its session is parked).
    stream: Weak<Mutex<Stream<S>>>,
    outbox: Weak<Outbox>,
    /// The loop's waker for its outbox.
    loop_waker: Waker,
    /// The thread the connection's task runs on ([`thread_key`]).
    thread: usize,
    metrics: Arc<Metrics>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ArcWake for Flusher<S> {
    fn wake_by_ref(me: &Arc<Self>) {
        if me.thread != thread_key() || !Self::flush(me) {
            me.loop_waker.wake_by_ref();
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Flusher<S> {
    /// Drains the outbox and writes what it held until it is empty (registering this
    /// waker again); false when the loop is to go on (something left to it, or the
    /// connection busy with a write of its own).
    fn flush(me: &Arc<Self>) -> bool {
        let (Some(writer), Some(outbox)) = (me.stream.upgrade(), me.outbox.upgrade()) else {
            return false;
        };
        // Locked otherwise only by the loop's task and the reader, on this thread, for
        // one poll of the stream at a time: never held while it wakes this (a reply the
        // session pushes to its outbox during the loop's poll, or as the reader hands it
        // a message, wakes it at once, with the lock free).
        let Some(mut writer) = writer.try_lock() else {
            return false;
        };
        if writer.retired || writer.handed || !writer.is_idle() {
            return false;
        }
        let own = waker_ref(me);
        loop {
            if (outbox.poll_drain(&mut Context::from_waker(&own), &mut writer.hand)).is_pending() {
                return true;
            }
            let mut hand = std::mem::take(&mut writer.hand);
            // The socket wakes the loop when it takes more.
            let flushed = writer.write_hand(&hand, &mut Context::from_waker(&me.loop_waker));
            if !matches!(flushed, Flushed::Left) {
                me.metrics
                    .frames_superseded
                    .inc_by(std::mem::take(&mut hand.superseded));
            }
            match flushed {
                Flushed::Written(sent) => {
                    sent.record(&me.metrics, &hand.states);
                    writer.shrink_after_large();
                    writer.hand = hand;
                    continue;
                }
                Flushed::Left => {}
                Flushed::Begun(sent) => {
                    // (Its delay: until the write began.)
                    sent.record(&me.metrics, &hand.states);
                    writer.begun = sent.bytes as usize;
                    hand.clear();
                }
                Flushed::Failed => {
                    writer.drop_unwritten();
                    writer.broken = true;
                    hand.clear();
                }
            }
            (writer.hand, writer.handed) = (hand, true);
            return false;
        }
    }
}

/// The waker a WebSocket connection's socket wakes when the client sent something
/// (the loop polls `recv` with it). Woken on the connection's thread (by the I/O
/// driver, which at every tick finds the inputs of the connections it serves), it
/// reads what the socket has and hands the session the messages that are inputs and
/// acks only, as the loop would, so one turn of the driver applies every
/// connection's inputs without waking and polling their tasks. It leaves anything
/// else (the first other message, a control frame, the stream's end) to the loop,
/// which it then wakes, and never writes.
struct Reader<S> {
    /// Weak: the socket holds this waker.
    stream: Weak<Mutex<Stream<S>>>,
    inputs: Arc<dyn Inputs>,
    /// The loop's waker for its socket.
    loop_waker: Waker,
    /// The thread the connection's task runs on ([`thread_key`]).
    thread: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ArcWake for Reader<S> {
    fn wake_by_ref(me: &Arc<Self>) {
        if me.thread == thread_key() {
            // Outside any task (in the I/O driver's turn): a panic here would end the
            // thread and every connection on it. It ends this connection (1011).
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::read(me))) {
                Ok(true) => return,
                Ok(false) => {}
                Err(_) => {
                    if let Some(stream) = me.stream.upgrade() {
                        stream.lock().left = Some(Received::Ended(CloseReason::InternalError));
                    }
                }
            }
        }
        me.loop_waker.wake_by_ref();
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Reader<S> {
    /// Reads and hands over messages until the socket has no more (registering this
    /// waker again); false when the loop is to go on (something left to it).
    fn read(me: &Arc<Self>) -> bool {
        let Some(stream) = me.stream.upgrade() else {
            return false;
        };
        let own = waker_ref(me);
        loop {
            // Unlocked before the message is handed over: a reply the session queues
            // wakes the flusher, which locks the stream.
            let received = {
                let Some(mut locked) = stream.try_lock() else {
                    return false;
                };
                if locked.retired || locked.left.is_some() {
                    return false;
                }
                match locked.poll_recv(&mut Context::from_waker(&own), false, None) {
                    Poll::Pending => return true,
                    Poll::Ready(received) => received,
                }
            };
            let left = match received {
                Received::Binary(message) => match me.inputs.offer(&message) {
                    Some(Ok(())) => continue,
                    Some(Err(reason)) => Received::Ended(reason),
                    None => Received::Binary(message),
                },
                other => other,
            };
            let mut locked = stream.lock();
            debug_assert!(locked.left.is_none(), "one thing left at a time");
            locked.left = Some(left);
            return false;
        }
    }
}

/// The calling thread, as a number no other living thread has.
fn thread_key() -> usize {
    thread_local! {
        static KEY: u8 = const { 0 };
    }
    KEY.with(|key| std::ptr::from_ref(key) as usize)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::StreamExt;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;
    use crate::engine::outbox::OutboxLimits;

    /// A tungstenite client and the server's end over an in-memory pipe holding
    /// `capacity` bytes each way.
    /// A full snapshot of `room` of `bytes` bytes, waiting in an outbox.
    fn snapshot(room: u64, bytes: usize) -> crate::engine::outbox::PendingState {
        crate::engine::outbox::PendingState {
            room,
            tick: 9,
            baseline: 0,
            body: Bytes::from(vec![0x0a; bytes]),
            own: Bytes::new(),
            last_input_seq: 0,
            server_time_us: 0,
            last: false,
        }
    }

    async fn pipe(capacity: usize) -> (WebSocketStream<DuplexStream>, WebSocket<DuplexStream>) {
        let (server_io, client_io) = tokio::io::duplex(capacity);
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        (client, WebSocket::new(server_io, &[], 1 << 16, 1024))
    }

    /// Counts the loop's wake-ups for its outbox.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A connection's flusher as the loop sets it up: registered with `outbox`,
    /// waking `wakes` for what it leaves (the flusher's waker, the loop's handoff, the
    /// metrics it counts in).
    fn flusher<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        ws: &WebSocket<S>,
        outbox: &Arc<Outbox>,
    ) -> (Arc<Wakes>, Flusher_) {
        let wakes = Arc::new(Wakes(0.into()));
        let metrics = Arc::new(Metrics::new(Default::default(), Default::default()));
        let (waker, handoff) = ws
            .flusher(&Waker::from(wakes.clone()), outbox, &metrics)
            .expect("a flusher");
        assert!((outbox.poll_drain(&mut Context::from_waker(&waker), &mut Batch::default())).is_pending());
        (wakes, (waker, handoff, metrics))
    }

    type Flusher_ = (Waker, Arc<dyn Handoff>, Arc<Metrics>);

    fn woken(wakes: &Wakes) -> usize {
        wakes.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What the outbox holds is written by its waker, on the connection's thread,
    /// message after message, without the loop being woken; the metrics count it.
    #[tokio::test]
    async fn the_flusher_writes_the_outbox_without_waking_the_loop() {
        let (mut client, ws) = pipe(1 << 16).await;
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        let (wakes, (_, handoff, metrics)) = flusher(&ws, &outbox);
        for text in [&b"first"[..], b"second"] {
            outbox.push_reliable(Bytes::copy_from_slice(text)).unwrap();
            let Some(Ok(Message::Binary(message))) = client.next().await else {
                panic!("expected a message");
            };
            assert!(message.windows(text.len()).any(|w| w == text), "{message:?}");
        }
        assert_eq!(woken(&wakes), 0, "the loop was not woken");
        assert!(!handoff.take(&mut Batch::default()), "nothing was left to it");
        assert_eq!(metrics.messages_out.get(), 2);
    }

    /// Woken on another thread, or while the loop has bytes of its own to write, or
    /// once the loop is over, the flusher leaves everything to the loop: it wakes it
    /// and takes nothing from the outbox.
    #[tokio::test]
    async fn the_flusher_leaves_the_outbox_to_the_loop_off_its_thread_busy_or_retired() {
        let (_client, ws) = pipe(1 << 16).await;
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        let (wakes, (_, handoff, _)) = flusher(&ws, &outbox);
        let from_elsewhere = outbox.clone();
        std::thread::spawn(move || from_elsewhere.push_reliable(Bytes::from_static(b"x")).unwrap())
            .join()
            .unwrap();
        assert_eq!(woken(&wakes), 1);
        let mut batch = Batch::default();
        assert!(!handoff.take(&mut batch));
        assert!(outbox.drain(&mut batch), "the message waits in the outbox");

        let leaves: [fn(&mut Stream<DuplexStream>); 2] = [|w| w.queue_control(OP_PONG, b"p"), |w| w.retired = true];
        for leave in leaves {
            let (_client, ws) = pipe(1 << 16).await;
            let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
            let (wakes, (_, handoff, _)) = flusher(&ws, &outbox);
            leave(&mut ws.stream.lock());
            outbox.push_reliable(Bytes::from_static(b"y")).unwrap();
            assert_eq!(woken(&wakes), 1);
            assert!(!handoff.take(&mut batch));
            assert!(outbox.drain(&mut batch), "the message waits in the outbox");
        }
    }

    /// Takes the messages that begin with `in` (ends the session at `end`, panics at
    /// `boom`), and keeps every message offered.
    #[derive(Default)]
    struct FakeInputs(Mutex<Vec<Bytes>>);

    impl Inputs for FakeInputs {
        fn offer(&self, message: &Bytes) -> Option<Result<(), CloseReason>> {
            self.0.lock().push(message.clone());
            match &message[..] {
                b"end" => Some(Err(CloseReason::RateLimited)),
                b"boom" => panic!("a defect in handling a message"),
                m if m.starts_with(b"in") => Some(Ok(())),
                _ => None,
            }
        }
    }

    /// A connection's reader as the loop sets it up, and `recv` polled once (the
    /// socket has nothing yet): the reader wakes `wakes`, the loop's waker (also
    /// returned), for what it leaves.
    fn reader(ws: &mut WebSocket<DuplexStream>, inputs: &Arc<FakeInputs>) -> (Arc<Wakes>, Waker) {
        let wakes = Arc::new(Wakes(0.into()));
        let waker = Waker::from(wakes.clone());
        ws.reader(&waker, inputs.clone());
        assert!(ws.reader.is_some(), "a reader");
        assert!(poll_recv(ws, &waker).is_pending());
        (wakes, waker)
    }

    fn poll_recv(ws: &mut WebSocket<DuplexStream>, waker: &Waker) -> Poll<Received> {
        std::pin::pin!(ws.recv()).poll(&mut Context::from_waker(waker))
    }

    /// What the client sends is read by the socket's waker, on the connection's
    /// thread: inputs are handed over without the loop being woken; the first other
    /// message is left for the loop's `recv` (and wakes it), as is a control frame and
    /// a message that ends the session. The reader never writes: the pong it leaves
    /// queued goes out with the loop's read.
    #[tokio::test]
    async fn the_reader_hands_inputs_over_without_waking_the_loop() {
        use futures_util::SinkExt;
        let (mut client, mut ws) = pipe(1 << 16).await;
        let inputs = Arc::new(FakeInputs::default());
        let (wakes, waker) = reader(&mut ws, &inputs);
        for message in [&b"in 1"[..], b"in 2"] {
            client.send(Message::binary(message.to_vec())).await.unwrap();
        }
        tokio::task::yield_now().await;
        assert_eq!(*inputs.0.lock(), [&b"in 1"[..], b"in 2"]);
        assert_eq!(woken(&wakes), 0, "the loop was not woken");

        client.send(Message::binary(&b"join"[..])).await.unwrap();
        client.send(Message::binary(&b"in 3"[..])).await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(woken(&wakes), 1);
        assert_eq!(inputs.0.lock().len(), 3);
        let Poll::Ready(Received::Binary(left)) = poll_recv(&mut ws, &waker) else {
            panic!("the loop reads what the reader left");
        };
        assert_eq!(left, &b"join"[..]);
        // (Sent once the reader had left the socket to the loop: the loop reads it.)
        let Poll::Ready(Received::Binary(next)) = poll_recv(&mut ws, &waker) else {
            panic!("the loop reads on");
        };
        assert_eq!(next, &b"in 3"[..]);
        assert!(poll_recv(&mut ws, &waker).is_pending());
        assert_eq!(inputs.0.lock().len(), 3);

        client.send(Message::Ping(vec![7].into())).await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(woken(&wakes), 2);
        assert!(
            ws.stream.lock().needs_flush,
            "the reader queued the pong, and did not write it"
        );
        assert!(matches!(
            poll_recv(&mut ws, &waker),
            Poll::Ready(Received::Other(Inbound::Control(1)))
        ));
        assert!(poll_recv(&mut ws, &waker).is_pending());
        assert!(matches!(client.next().await, Some(Ok(Message::Pong(p))) if *p == [7]));

        client.send(Message::binary(&b"end"[..])).await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(woken(&wakes), 3);
        assert!(matches!(
            poll_recv(&mut ws, &waker),
            Poll::Ready(Received::Ended(CloseReason::RateLimited))
        ));
    }

    /// Woken on another thread, or once the loop is over, the reader reads nothing:
    /// it wakes the loop.
    #[tokio::test]
    async fn the_reader_leaves_the_socket_to_the_loop_off_its_thread_or_retired() {
        let (_client, mut ws) = pipe(1 << 16).await;
        let inputs = Arc::new(FakeInputs::default());
        let (wakes, _) = reader(&mut ws, &inputs);
        let waker = ws.reader.clone().unwrap();
        std::thread::spawn(move || waker.wake()).join().unwrap();
        assert_eq!(woken(&wakes), 1);

        use futures_util::SinkExt;
        let (mut client, mut ws) = pipe(1 << 16).await;
        let (wakes, _) = reader(&mut ws, &inputs);
        ws.stream.lock().retired = true;
        client.send(Message::binary(&b"in 1"[..])).await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(woken(&wakes), 1);
        assert!(inputs.0.lock().is_empty(), "nothing was handed over");
    }

    /// A panic while the reader hands a message over (outside any task: it would end
    /// the thread and every connection on it) ends this connection only (1011).
    #[tokio::test]
    async fn a_panic_in_the_reader_ends_its_connection_only() {
        use futures_util::SinkExt;
        let (mut client, mut ws) = pipe(1 << 16).await;
        let inputs = Arc::new(FakeInputs::default());
        let (wakes, waker) = reader(&mut ws, &inputs);
        client.send(Message::binary(&b"boom"[..])).await.unwrap();
        assert_eq!(woken(&wakes), 1);
        assert!(matches!(
            poll_recv(&mut ws, &waker),
            Poll::Ready(Received::Ended(CloseReason::InternalError))
        ));
    }

    /// A pong the socket does not take at once is written by the loop (its `recv`
    /// flushes it), and the socket then wakes the loop to write the rest, not the
    /// reader (which never writes).
    #[tokio::test]
    async fn a_write_the_socket_holds_up_wakes_the_loop_not_the_reader() {
        use tokio::io::AsyncReadExt;
        let (server_io, mut client_io) = tokio::io::duplex(64);
        let mut ws = WebSocket::new(server_io, &[], 1 << 16, 1024);
        let inputs = Arc::new(FakeInputs::default());
        let (wakes, waker) = reader(&mut ws, &inputs);
        ws.stream.lock().queue_control(OP_PONG, &[0; 100]);
        assert!(poll_recv(&mut ws, &waker).is_pending());
        assert!(ws.stream.lock().needs_flush, "the socket took part of it");
        client_io.read_exact(&mut [0; 64]).await.unwrap();
        assert_eq!(woken(&wakes), 1, "the loop is woken to write the rest");
        assert!(poll_recv(&mut ws, &waker).is_pending());
        assert!(!ws.stream.lock().needs_flush);
    }

    /// A ping the reader reads while a frame of ours waits, partly written, is
    /// answered once the frame is out, however large the frame.
    #[tokio::test]
    async fn a_ping_read_during_a_write_is_answered_after_it() {
        use futures_util::SinkExt;
        let (mut client, mut ws) = pipe(1024).await;
        let inputs = Arc::new(FakeInputs::default());
        let (wakes, _) = reader(&mut ws, &inputs);
        let batch = Batch {
            states: vec![snapshot(1, 20 << 10)],
            ..Batch::default()
        };
        let outbox = Outbox::new(OutboxLimits::default());
        let mut send = Box::pin(ws.send(&batch, &outbox));
        let sent = tokio::time::timeout(Duration::from_millis(50), &mut send).await;
        assert!(sent.is_err(), "the client reads nothing yet: the write blocks");
        client.send(Message::Ping(vec![5].into())).await.unwrap();
        assert_eq!(woken(&wakes), 1, "the ping is left to the loop");
        let both = async { tokio::join!(send, client.next()) };
        let (sent, first) = tokio::time::timeout(Duration::from_secs(5), both)
            .await
            .expect("the write ends");
        assert!(sent.is_ok());
        assert!(matches!(first, Some(Ok(Message::Binary(m))) if m.len() > 20 << 10));
        let pong = tokio::time::timeout(Duration::from_secs(1), client.next()).await;
        assert!(
            matches!(&pong, Ok(Some(Ok(Message::Pong(p)))) if **p == [5]),
            "{pong:?}"
        );
    }

    /// A client's close the reader reads while the loop writes a batch of several
    /// messages is answered after the message under way, and nothing follows the
    /// answer: the write ends there.
    #[tokio::test]
    async fn nothing_follows_the_answer_to_a_close_read_during_a_write() {
        use futures_util::SinkExt;
        let (mut client, mut ws) = pipe(64 * 1024).await;
        let inputs = Arc::new(FakeInputs::default());
        let (wakes, _) = reader(&mut ws, &inputs);
        // Two snapshots over the split size: two messages.
        let batch = Batch {
            states: vec![snapshot(1, 700 << 10), snapshot(2, 700 << 10)],
            ..Batch::default()
        };
        let outbox = Outbox::new(OutboxLimits::default());
        let stream = ws.stream.clone();
        let mut send = Box::pin(ws.send(&batch, &outbox));
        let sent = tokio::time::timeout(Duration::from_millis(50), &mut send).await;
        assert!(sent.is_err(), "the client reads nothing yet: the write blocks");
        client.send(Message::Close(None)).await.unwrap();
        assert!(stream.lock().close_sent, "the reader answered the close");
        assert_eq!(woken(&wakes), 1);
        let both = async { tokio::join!(send, client.next()) };
        let (sent, first) = tokio::time::timeout(Duration::from_secs(5), both)
            .await
            .expect("the write ends");
        assert!(sent.is_err(), "the second message was not written");
        let Some(Ok(Message::Binary(message))) = first else {
            panic!("expected the first snapshot");
        };
        assert!(message.len() > 700 << 10 && message.len() < 800 << 10);
        assert!(matches!(client.next().await, Some(Ok(Message::Close(_)))));
    }

    /// A stream whose flush of bytes written waits while `hold` is set, as a TLS
    /// stream's does when it took a message's last bytes into its records but the
    /// socket is full.
    struct Unflushed {
        inner: DuplexStream,
        hold: Arc<std::sync::atomic::AtomicBool>,
        written: bool,
    }

    impl AsyncRead for Unflushed {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Unflushed {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
            self.written = true;
            Pin::new(&mut self.inner).poll_write(cx, data)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            if self.written && self.hold.load(std::sync::atomic::Ordering::SeqCst) {
                return Poll::Pending;
            }
            self.written = false;
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A tungstenite client and the server's end over a stream whose flushes of
    /// bytes written wait while the flag returned is set (set to begin with).
    async fn unflushed_pipe() -> (
        WebSocketStream<DuplexStream>,
        WebSocket<Unflushed>,
        Arc<std::sync::atomic::AtomicBool>,
    ) {
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let hold = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let io = Unflushed {
            inner: server_io,
            hold: hold.clone(),
            written: false,
        };
        (client, WebSocket::new(io, &[], 1 << 16, 1024), hold)
    }

    /// A message the flusher began and the TLS layer took whole, but could not send
    /// yet, counts whole in what the loop's blocked write holds.
    #[tokio::test]
    async fn a_begun_write_held_unflushed_counts_whole() {
        let (_client, ws, _hold) = unflushed_pipe().await;
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        let (wakes, (_, handoff, _)) = flusher(&ws, &outbox);
        outbox.push_reliable(Bytes::from(vec![6u8; 5000])).unwrap();
        assert_eq!(woken(&wakes), 1, "the flush waits: left to the loop");
        let mut batch = Batch::default();
        assert!(handoff.take(&mut batch) && batch.is_empty(), "the rest of a message");
        assert!(handoff.unwritten() > 5000, "holds {}", handoff.unwritten());
    }

    /// While a message the loop wrote is not flushed yet (one of several, say), the
    /// flusher writes nothing after it: the loop's messages go out first, in order.
    #[tokio::test]
    async fn the_flusher_waits_for_a_write_of_the_loops_to_be_flushed() {
        let (mut client, mut ws, hold) = unflushed_pipe().await;
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        let (wakes, (_, handoff, _)) = flusher(&ws, &outbox);
        let batch = Batch {
            first_seq: 1,
            reliable: vec![Bytes::from_static(b"loop's")],
            ..Batch::default()
        };
        let sent = tokio::time::timeout(Duration::from_millis(50), ws.send(&batch, &outbox)).await;
        assert!(sent.is_err(), "the flush waits");
        outbox.push_reliable(Bytes::from_static(b"flusher's")).unwrap();
        assert_eq!(woken(&wakes), 1, "left to the loop");
        assert!(!handoff.take(&mut Batch::default()));
        hold.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut next = Batch::default();
        assert!(outbox.drain(&mut next), "the message waits in the outbox");
        ws.send(&next, &outbox).await.unwrap();
        for text in [&b"loop's"[..], b"flusher's"] {
            let Some(Ok(Message::Binary(message))) = client.next().await else {
                panic!("expected a message");
            };
            assert!(message.windows(text.len()).any(|w| w == text), "{message:?}");
        }
    }

    /// Every connection of a thread is written by its flusher in one pass, however
    /// many there are: tokio's budget of the task that runs them (its I/O thread's
    /// draining task) does not turn the writes after the first hundred or so into
    /// wake-ups of the loops. A frame larger than the buffer a connection keeps
    /// leaves no such buffer behind.
    #[tokio::test]
    async fn the_flushers_of_a_pass_write_past_tokios_budget() {
        let mut connections = Vec::new();
        for _ in 0..300 {
            let (client, ws) = pipe(1 << 16).await;
            let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
            let (wakes, _) = flusher(&ws, &outbox);
            connections.push((client, ws, outbox, wakes));
        }
        for (_, _, outbox, _) in &connections {
            outbox.push_reliable(Bytes::from(vec![5u8; 20 * 1024])).unwrap();
        }
        for (client, ws, _, wakes) in &mut connections {
            assert_eq!(woken(wakes), 0, "the loop was not woken");
            assert!(matches!(client.next().await, Some(Ok(Message::Binary(b))) if b.len() > 20 * 1024));
            let kept = ws.stream.lock().out.capacity();
            assert!(kept <= MAX_KEPT_WRITE_BUFFER, "keeps {kept} bytes");
        }
    }

    /// A message the socket does not take whole is finished by the loop, and a batch
    /// of two messages is written by the loop, one after the other; while the loop
    /// has not taken that batch, the flusher writes nothing after it: the client
    /// reads every message whole and in order.
    #[tokio::test]
    async fn what_the_flusher_cannot_finish_the_loop_writes_in_order() {
        let (mut client, mut ws) = pipe(64).await;
        let limits = OutboxLimits {
            max_messages: 16,
            max_bytes: 4 << 20,
        };
        let outbox = Arc::new(Outbox::new(limits));
        let (wakes, (waker, handoff, _)) = flusher(&ws, &outbox);
        outbox.push_reliable(Bytes::from(vec![1u8; 1000])).unwrap();
        assert_eq!(woken(&wakes), 1, "the socket took 64 bytes: the loop is woken");
        let mut batch = Batch::default();
        assert!(handoff.take(&mut batch) && batch.is_empty(), "the rest of a message");
        let reading = tokio::spawn(async move {
            let mut lens = Vec::new();
            while let Some(Ok(Message::Binary(message))) = client.next().await {
                lens.push(message.len());
            }
            lens
        });
        ws.send(&batch, &outbox).await.unwrap();
        // Two messages over the split size (pushed in one turn, then handed over):
        // the flusher writes neither.
        outbox.push_reliable(Bytes::from(vec![2u8; 600 << 10])).unwrap();
        outbox.push_reliable(Bytes::from(vec![3u8; 600 << 10])).unwrap();
        waker.wake_by_ref();
        assert_eq!(woken(&wakes), 2);
        // A message after it, handed over before the loop took the batch: left too.
        outbox.push_reliable(Bytes::from(vec![4u8; 10])).unwrap();
        waker.wake_by_ref();
        assert_eq!(woken(&wakes), 3);
        assert!(
            handoff.take(&mut batch) && batch.reliable.len() == 2,
            "the batch, whole"
        );
        assert!(!handoff.take(&mut batch));
        assert_eq!(ws.send(&batch, &outbox).await.unwrap().messages, 2);
        assert!(outbox.drain(&mut batch), "the message after it waits in the outbox");
        ws.send(&batch, &outbox).await.unwrap();
        ws.close_with(1000, "bye").await;
        let lens = reading.await.unwrap();
        assert_eq!(lens.len(), 4, "{lens:?}");
        assert!(lens[0] > 1000 && lens[1] > 600 << 10 && lens[2] > 600 << 10, "{lens:?}");
        assert!(lens[3] < 100, "{lens:?}");
    }

    /// A write that fails because the client went away does not hide what the client
    /// sent before it went: its messages and its close are still read.
    #[tokio::test]
    async fn after_a_failed_write_what_the_client_sent_is_still_read() {
        use futures_util::SinkExt;
        let (mut client, mut ws) = pipe(1 << 16).await;
        client.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        client.send(Message::Close(None)).await.unwrap();
        drop(client);
        let batch = Batch {
            first_seq: 1,
            reliable: vec![Bytes::from(vec![7u8; 100])],
            ..Batch::default()
        };
        let outbox = Outbox::new(OutboxLimits::default());
        assert!(ws.send(&batch, &outbox).await.is_err(), "the client is gone");
        assert!(matches!(ws.recv().await, Received::Binary(b) if *b == [1, 2, 3]));
        assert!(matches!(ws.recv().await, Received::ClientClosed));
    }

    /// Full snapshots of several large rooms go out one message each, and a client
    /// that reads none of them leaves the connection holding one, not all of them.
    #[tokio::test]
    async fn a_split_batch_is_written_one_message_at_a_time() {
        let (_client, mut ws) = pipe(64 * 1024).await;
        let batch = Batch {
            states: (1..=3).map(|room| snapshot(room, 700 * 1024)).collect(),
            ..Batch::default()
        };
        let outbox = Outbox::new(OutboxLimits::default());
        let sent = tokio::time::timeout(Duration::from_millis(50), ws.send(&batch, &outbox)).await;
        assert!(sent.is_err(), "the client reads nothing yet: the write blocks");
        let w = ws.stream.lock();
        let waiting = w.out.len() - w.unwritten + w.shared.iter().map(Bytes::len).sum::<usize>();
        assert!(waiting < 1024 * 1024, "one message waits, of {waiting} bytes");
    }

    /// A full snapshot of `SHARED_BODY_BYTES` or more is written from the room's bytes:
    /// a connection whose client does not read holds the room's copy (shared with
    /// every member that gets it), not one of its own; pongs and a close queued
    /// meanwhile go out after it, and the client reads the whole message intact.
    #[tokio::test]
    async fn a_large_snapshot_is_written_from_the_rooms_bytes_not_a_copy() {
        let (mut client, mut ws) = pipe(64 * 1024).await;
        // Two large rooms and a small one, in one message.
        let states = vec![snapshot(1, 400 << 10), snapshot(2, 100), snapshot(3, 500 << 10)];
        let body = states[0].body.clone();
        let batch = Batch {
            states,
            ..Batch::default()
        };
        let outbox = Outbox::new(OutboxLimits::default());
        let sent = tokio::time::timeout(Duration::from_millis(50), ws.send(&batch, &outbox)).await;
        assert!(sent.is_err(), "the client reads nothing yet: the write blocks");
        {
            let w = ws.stream.lock();
            assert!(
                w.out.capacity() <= MAX_KEPT_WRITE_BUFFER,
                "holds {} bytes",
                w.out.capacity()
            );
            let rest = w.shared.front().expect("the snapshot's rest waits");
            let in_body = body.as_ptr_range();
            assert!(in_body.contains(&rest.as_ptr()), "the rest is the room's own bytes");
        }
        assert!(matches!(
            ws.stream.lock().received(Incoming::Ping(vec![9; 4].into())),
            Received::Other(_)
        ));
        let closing = tokio::spawn(async move { ws.close_with(4002, "replaced").await });
        let Some(Ok(Message::Binary(message))) = client.next().await else {
            panic!("expected the snapshot");
        };
        let mut expected = BytesMut::new();
        crate::engine::envelope::encode_envelope(Default::default(), &batch.states, &mut expected);
        assert_eq!(message, expected.freeze());
        assert!(matches!(client.next().await, Some(Ok(Message::Pong(p))) if *p == [9; 4]));
        let Some(Ok(Message::Close(Some(frame)))) = client.next().await else {
            panic!("expected the close frame");
        };
        assert_eq!(u16::from(frame.code), 4002);
        drop(client);
        closing.await.unwrap();
    }

    /// A close for a refused frame (here one over the size limit, refused from its
    /// header) still reads what the client sends after it, so the client is not
    /// stalled and its system does not reset the connection over unread bytes.
    #[tokio::test]
    async fn a_close_for_a_refused_frame_reads_on_until_the_client_closes() {
        use tokio::io::AsyncWriteExt;
        let (server_io, client_io) = tokio::io::duplex(4096);
        let mut ws = WebSocket::new(server_io, &[], 1 << 16, 1024);
        let (_client_read, mut client_write) = tokio::io::split(client_io);
        let writer = tokio::spawn(async move {
            let mut header = vec![0x82, 0x80 | 127];
            header.extend((1u64 << 20).to_be_bytes());
            header.extend([1, 2, 3, 4]);
            client_write.write_all(&header).await?;
            client_write.write_all(&vec![0u8; 200 * 1024]).await?;
            client_write.shutdown().await
        });
        assert!(matches!(ws.recv().await, Received::Other(Inbound::TooBig)));
        ws.close_with(1009, "message too big").await;
        let written = tokio::time::timeout(Duration::from_secs(1), writer).await;
        assert!(
            matches!(written, Ok(Ok(Ok(())))),
            "the client's writes were read: {written:?}"
        );
    }

    /// The buffer a full snapshot grew is not kept once the snapshot is written.
    #[tokio::test]
    async fn a_large_snapshot_leaves_no_large_buffer_behind() {
        let (mut client, mut ws) = pipe(1 << 20).await;
        let batch = Batch {
            states: vec![snapshot(1, 100 * 1024)],
            ..Batch::default()
        };
        ws.send(&batch, &Outbox::new(OutboxLimits::default())).await.unwrap();
        assert!(matches!(client.next().await, Some(Ok(Message::Binary(b))) if b.len() > 100 * 1024));
        let kept = ws.stream.lock().out.capacity();
        assert!(kept <= MAX_KEPT_WRITE_BUFFER, "keeps {kept} bytes");
    }

    /// A send given up half way (the client stopped reading) is finished before the
    /// close frame: the client reads the whole message, then the close code.
    #[tokio::test]
    async fn a_frame_cut_off_by_a_slow_reader_is_finished_before_the_close() {
        let (mut client, mut ws) = pipe(64).await;
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

    /// A client that pings but does not read the pongs is still read: its messages
    /// arrive though the pongs back up.
    #[tokio::test]
    async fn unread_pongs_do_not_hold_up_reading() {
        let (mut client, mut ws) = pipe(256).await;
        let server = tokio::spawn(async move {
            let mut pings = 0;
            loop {
                match ws.recv().await {
                    Received::Other(Inbound::Control(_)) => pings += 1,
                    Received::Binary(_) => return (pings, ws),
                    _ => panic!("unexpected"),
                }
            }
        });
        for _ in 0..20 {
            futures_util::SinkExt::send(&mut client, Message::Ping(Bytes::from(vec![1; 100])))
                .await
                .unwrap();
        }
        futures_util::SinkExt::send(&mut client, Message::Binary(Bytes::from_static(b"input")))
            .await
            .unwrap();
        let read = tokio::time::timeout(Duration::from_secs(2), server).await;
        let (pings, ws) = read.expect("the message is read").unwrap();
        assert_eq!(pings, 20);
        // What waits for the client stayed bounded (the rest was not answered).
        let w = ws.stream.lock();
        let waiting = w.out.len() - w.unwritten;
        assert!(waiting <= MAX_UNWRITTEN_PONGS + 102, "{waiting} bytes waiting");
    }

    /// Pongs queued behind one partly written do not keep what was written: the buffer
    /// holds what is still to go, however long a client keeps pinging a little faster
    /// than it reads.
    #[tokio::test]
    async fn pongs_queued_behind_a_partly_written_one_drop_what_was_written() {
        let (_client, ws) = pipe(4096).await;
        let mut w = ws.stream.lock();
        for _ in 0..1000 {
            w.queue_control(OP_PONG, &[7; 100]);
            // The socket took all but a few bytes of what waited.
            w.unwritten = w.out.len() - 3;
        }
        assert!(w.out.len() < 256, "holds {} bytes", w.out.len());
        assert_eq!(&w.out[w.unwritten..], &[7, 7, 7], "what is still to go is kept");
    }

    /// A client's pings are answered with pongs carrying their payload, and its close
    /// is echoed: tungstenite's client sees a clean close handshake.
    #[tokio::test]
    async fn pings_are_answered_and_a_close_is_echoed() {
        let (mut client, mut ws) = pipe(4096).await;
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                match ws.recv().await {
                    Received::Binary(b) => seen.push(format!("binary {}", b.len())),
                    Received::Other(Inbound::Control(n)) => seen.push(format!("control {n}")),
                    Received::ClientLeft(_) => break,
                    _ => panic!("unexpected"),
                }
            }
            ws.finish().await;
            seen
        });
        futures_util::SinkExt::send(&mut client, Message::Ping(Bytes::from_static(b"abc")))
            .await
            .unwrap();
        futures_util::SinkExt::send(&mut client, Message::Binary(Bytes::from_static(b"hello")))
            .await
            .unwrap();
        let pong = client.next().await.unwrap().unwrap();
        assert_eq!(pong, Message::Pong(Bytes::from_static(b"abc")));
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4000.into(),
            reason: "bye".into(),
        };
        futures_util::SinkExt::send(&mut client, Message::Close(Some(frame)))
            .await
            .unwrap();
        let Some(Ok(Message::Close(Some(echo)))) = client.next().await else {
            panic!("expected the close echo");
        };
        assert_eq!(
            (u16::from(echo.code), echo.reason.as_str()),
            (4000, "closed by the client")
        );
        assert!(client.next().await.is_none(), "the handshake completes");
        assert_eq!(server.await.unwrap(), ["control 3", "binary 5"]);
    }
}
