//! The QUIC transport (quinn): the same sessions as over WebSocket, with state frames
//! as datagrams.
//!
//! A client opens one bidirectional **control stream**. Its first frame is a
//! [`Hello`] (token and optional resume token), checked before anything else; then
//! both directions carry length-delimited envelopes (a protobuf varint length, then
//! the envelope), exactly what a WebSocket binary message carries. Everything
//! reliable travels there, in order.
//!
//! State frames travel as **datagrams** (one `ServerEnvelope` holding one
//! `StateFrame`) when they fit the connection's maximum datagram size, otherwise on
//! the control stream. Datagrams may be lost or reordered, so the outbox runs with
//! [`Delivery::Acknowledged`]: the client acknowledges frames it applied (`Ack`, in a
//! datagram or with its next control-stream message) and its next delta is against
//! the newest acknowledged tick.
//! A frame written on the control stream counts as acknowledged once written (the
//! stream is reliable).
//!
//! The connection closes with an application error code equal to the WebSocket
//! close code for the same [`CloseReason`], and the same reason string.

mod conn;
mod endpoint;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use quinn_proto::crypto::rustls::QuicServerConfig;
use quinn_proto::{
    AckFrequencyConfig, ConnectionError, Dir, IdleTimeout, ReadError, ReadableError, StreamId, TransportConfig,
    VarInt, WriteError,
};
use serde::{Deserialize, Serialize};

use crate::clock::unix_micros;
use crate::engine::envelope::{
    Reliable, SPLIT_ENVELOPE_BYTES, encode_envelope, encode_stream_frame, split_envelopes, state_envelope_len,
};
use crate::engine::outbox::{Batch, Delivery, Outbox, PendingState};
use crate::error::CloseReason;
use crate::frame::{FrameError, encode_message, split_stream_frame};
use crate::proto::{Hello, Ping, server_message::Kind};
use crate::session::auth::AuthError;
use crate::session::{Inbound, SessionSettings};
use crate::transport::connection::{self, Start};
use crate::transport::context::Context;
use crate::transport::gate::Permit;
use crate::transport::tls::Tls;
use crate::transport::{Broken, Received, Sent, Transport};

use self::conn::Conn;
pub(crate) use self::endpoint::Endpoint;
use self::endpoint::Admission;

pub use crate::frame::{ALPN, MAX_SERVER_FRAME_BYTES};

/// QUIC settings (`[quic]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// Serve QUIC (needs TLS: off with `tls.insecure_plain`).
    pub enabled: bool,
    /// UDP address; unset means the same address and port as `listen`.
    pub listen: Option<SocketAddr>,
    /// Outbound datagram bytes a connection may buffer; older datagrams are dropped
    /// first when it is full (they hold superseded state anyway). State datagrams that
    /// would wait behind an earlier batch are not queued at all.
    pub datagram_send_buffer_bytes: usize,
    /// Bytes a client may have in flight on its control stream.
    pub stream_receive_window_bytes: u32,
    /// Outbound control-stream bytes that may wait for the client; a write blocked
    /// longer than `session.slow_consumer_secs` closes it as a slow consumer.
    pub send_window_bytes: u32,
    /// Kernel receive and send buffer of the UDP socket that carries every QUIC
    /// connection (capped by `net.core.rmem_max` / `wmem_max`).
    pub socket_buffer_bytes: usize,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            datagram_send_buffer_bytes: 64 * 1024,
            stream_receive_window_bytes: 64 * 1024,
            send_window_bytes: 1024 * 1024,
            socket_buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

/// How long a client has to complete the QUIC handshake, open its control stream
/// and send its `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest `Hello`: room for a token as large as a WebSocket upgrade's head
/// allows, whatever `max_message_bytes` says.
const MAX_HELLO_BYTES: usize = 32 * 1024;

/// The QUIC endpoint on an already bound UDP `socket` (see [`udp_socket`]), with the
/// listener's certificate; [`accept`] serves it.
pub(crate) fn endpoint(
    socket: std::net::UdpSocket,
    config: &QuicConfig,
    session: &SessionSettings,
    tls: &Tls,
) -> std::io::Result<Endpoint> {
    let mut crypto = (*tls.config).clone();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(crypto).map_err(std::io::Error::other)?;
    let mut server = quinn_proto::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(config, session)));
    Endpoint::new(socket, server)
}

/// One UDP socket carries every QUIC connection: with the kernel's default buffer
/// (about 200 KiB, a few hundred small packets) a busy moment overflows it, and the
/// dropped packets (handshakes, inputs, acks) come back only after retransmission
/// timeouts. The kernel caps the size at `net.core.rmem_max` / `wmem_max`.
pub(crate) fn udp_socket(addr: SocketAddr, buffer_bytes: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_recv_buffer_size(buffer_bytes)?;
    socket.set_send_buffer_size(buffer_bytes)?;
    let granted = socket.recv_buffer_size()?;
    // Linux reports twice the usable size it granted.
    if granted < buffer_bytes {
        tracing::warn!(
            requested = buffer_bytes,
            granted,
            "the kernel limits the QUIC socket's receive buffer (raise net.core.rmem_max)"
        );
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn transport_config(quic: &QuicConfig, session: &SessionSettings) -> TransportConfig {
    let mut transport = TransportConfig::default();
    // Consistent with the WebSocket heartbeat: a peer silent for a heartbeat interval
    // plus its timeout is gone (the session's own heartbeat pings before that).
    let idle = session.heartbeat_interval + session.heartbeat_timeout;
    transport.max_idle_timeout(IdleTimeout::try_from(idle).ok());
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.stream_receive_window(VarInt::from_u32(quic.stream_receive_window_bytes));
    transport.receive_window(VarInt::from_u32(quic.stream_receive_window_bytes));
    transport.send_window(quic.send_window_bytes as u64);
    transport.datagram_receive_buffer_size(Some(session.max_message_bytes as usize * 4));
    transport.datagram_send_buffer_size(quic.datagram_send_buffer_bytes);
    // Clients acknowledge the relay's packets on their own (their inputs), not in
    // packets of their own: QUIC's ACK frequency extension, asked of them with its
    // default delay (see BENCHMARKS.md, "QUIC at W1a: two packets for every message").
    let mut acks = AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(VarInt::from_u32(4));
    transport.ack_frequency_config(Some(acks));
    transport
}

/// Serves QUIC connections until [`Closer::close`] (which `Server` calls after every
/// session closed itself with 1001, after its last words: a cluster node's
/// `GoingAway`). From shutdown on, new connections are refused at once rather than
/// left to time out.
pub(crate) async fn accept(endpoint: Endpoint, ctx: Arc<Context>) {
    endpoint.serve(ctx, admit).await;
}

/// Whether a new connection is taken.
fn admit(incoming: &quinn_proto::Incoming, ctx: &Context) -> Admission {
    if ctx.shutdown.is_cancelled() {
        return Admission::Refuse;
    }
    let peer = incoming.remote_address();
    // A first Initial from an address not yet validated gets a Retry (one round
    // trip more): the client must echo its token from that address, so packets
    // with a spoofed source never reach the caps below (they would hold a slot of
    // the victim's address, or of the server, for the handshake's timeout).
    if !incoming.remote_address_validated() {
        return Admission::Retry;
    }
    // The same caps and handshake rate as the WebSocket listener, checked before
    // the handshake costs anything.
    match ctx.gate.admit(peer.ip(), std::time::Instant::now()) {
        Ok(permit) => Admission::Accept(permit),
        Err(refusal) => {
            ctx.metrics.count_refused_upgrade(refusal.status);
            crate::transport::log_refusal(peer, "quic", &refusal.message);
            Admission::Refuse
        }
    }
}

/// Serves one accepted connection: its handshake, then its session.
async fn serve(conn: Conn, ctx: Arc<Context>, permit: Permit) {
    let peer = conn.inner.remote_address();
    // A handshake under way at shutdown is dropped (the peer learns it from the
    // endpoint's close), not waited for.
    let handshake = tokio::select! {
        biased;
        () = ctx.shutdown.cancelled() => None,
        done = handshake(conn, peer, &ctx) => done,
    };
    if let Some((transport, start)) = handshake {
        connection::serve(transport, peer, ctx, start, permit).await;
    }
}

/// Completes the QUIC handshake, accepts the control stream and checks the `Hello`.
async fn handshake(mut conn: Conn, peer: SocketAddr, ctx: &Context) -> Option<(Quic, Start)> {
    let max_message = ctx.session.settings.max_message_bytes as usize;
    // Bounded like the TLS handshake: a peer that stops half way holds its slot for
    // this long, not for the idle timeout.
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let opened = poll_fn(|cx| {
        conn.drive(cx);
        if conn.ended.is_some() {
            return Poll::Ready(None);
        }
        if !conn.connected {
            return Poll::Pending;
        }
        match conn.inner.streams().accept(Dir::Bi) {
            Some(stream) => Poll::Ready(Some(stream)),
            None => Poll::Pending,
        }
    });
    let stream = match tokio::time::timeout_at(deadline, opened).await {
        Ok(Some(stream)) => stream,
        Ok(None) => return None,
        // A handshake that did not complete is dropped (closed as lost).
        Err(_) if !conn.connected => return None,
        Err(_) => {
            let reason = CloseReason::HeartbeatTimeout;
            ctx.metrics.count_close(reason);
            conn.close(reason.code(), "no control stream in time");
            return None;
        }
    };
    // The `Hello` carries the token: it may be as large as a WebSocket upgrade's head.
    let mut quic = Quic::new(conn, stream, max_message.max(MAX_HELLO_BYTES));
    let hello = match tokio::time::timeout_at(deadline, quic.recv()).await {
        Ok(Received::Binary(bytes)) => Hello::decode(bytes),
        Ok(Received::Other(Inbound::TooBig)) => return quic.refuse(ctx, CloseReason::MessageTooBig).await,
        Ok(Received::ProtocolError) => return quic.refuse(ctx, CloseReason::ProtocolError).await,
        Ok(_) => return None,
        Err(_) => return quic.refuse(ctx, CloseReason::HeartbeatTimeout).await,
    };
    let Ok(hello) = hello else {
        return quic.refuse(ctx, CloseReason::Undecodable).await;
    };
    quic.max_message = max_message;
    let token = (!hello.token.is_empty()).then_some(hello.token.as_str());
    let identity = match ctx.session.auth.authenticate(token, unix_micros() / 1_000_000) {
        Ok(identity) => identity.with_address(peer.ip()),
        Err(e) => {
            ctx.metrics.count_auth_failure(e.kind());
            crate::transport::log_refusal(peer, "quic", &format_args!("authentication failed: {e}"));
            return quic.refuse_auth(ctx, &e).await;
        }
    };
    let client = connection::client_id(&hello.client_id);
    let start = if hello.resume_token.is_empty() {
        Start::New { identity, client }
    } else {
        Start::Resume {
            token: hello.resume_token,
            identity,
            // Absent: a client that does not track the numbers; send nothing again.
            received: hello.received_seq.unwrap_or(u64::MAX),
            client,
        }
    };
    Some((quic, start))
}

/// One QUIC connection with its control stream.
pub(crate) struct Quic {
    conn: Conn,
    stream: StreamId,
    /// Control-stream bytes read but not yet a whole frame.
    inbound: BytesMut,
    outbound: BytesMut,
    max_message: usize,
    /// State frames too big for a datagram, written on the stream instead.
    on_stream: Vec<PendingState>,
    /// The part of a control-stream frame not yet taken by the connection (its
    /// send window was full). A write cancelled half way (a `send` dropped by a
    /// stop) leaves its rest here, and the next write sends it first, so the
    /// stream never holds half a frame followed by another.
    unsent: Bytes,
    /// The client finished its control stream at this time (its close follows).
    finished: Option<tokio::time::Instant>,
    /// Waits for the close after `finished`.
    finish_wait: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// The datagram buffer space with nothing queued (its configured size).
    datagram_space: usize,
    /// Buffer space the state datagrams of the last `send` took in the connection's queue.
    last_datagrams: usize,
}

/// How long a connection whose client finished its control stream is given for the
/// close that follows.
const CLOSE_AFTER_FINISH: Duration = Duration::from_secs(1);

/// The most control-stream bytes one read takes.
const READ_CHUNK_BYTES: usize = 64 * 1024;

impl Quic {
    fn new(mut conn: Conn, stream: StreamId, max_message: usize) -> Self {
        Self {
            datagram_space: conn.inner.datagrams().send_buffer_space(),
            conn,
            stream,
            inbound: BytesMut::new(),
            outbound: BytesMut::new(),
            max_message,
            on_stream: Vec::new(),
            unsent: Bytes::new(),
            finished: None,
            finish_wait: None,
            last_datagrams: 0,
        }
    }

    /// Reads what the control stream holds into `inbound`: `Ready` with what the
    /// read says the connection is when the stream ended or failed.
    fn read_stream(&mut self) -> Option<Received> {
        if self.finished.is_some() {
            return None;
        }
        let mut stream = self.conn.inner.recv_stream(self.stream);
        let mut chunks = match stream.read(true) {
            Ok(chunks) => chunks,
            Err(ReadableError::ClosedStream) => return Some(Received::Lost),
            Err(ReadableError::IllegalOrderedRead) => unreachable!("only ordered reads"),
        };
        let mut outcome = None;
        loop {
            match chunks.next(READ_CHUNK_BYTES) {
                Ok(Some(chunk)) => self.inbound.extend_from_slice(&chunk.bytes),
                Ok(None) => {
                    // The client finished its control stream: its close follows (a
                    // normal close is an application close with 1000, once the client
                    // knows its last messages were read); without one, it is lost.
                    self.finished = Some(tokio::time::Instant::now());
                    break;
                }
                Err(ReadError::Blocked) => break,
                Err(ReadError::Reset(_)) => {
                    outcome = Some(Received::Lost);
                    break;
                }
            }
        }
        // The credit the read gave back is sent with the next drive.
        let _ = chunks.finalize();
        outcome
    }

    /// Writes `reliable` and the states in `on_stream` on the control stream: one
    /// frame, or several when large (a member of several large rooms). The stream is
    /// reliable and ordered, so those states count as acknowledged.
    async fn write_stream(&mut self, reliable: Reliable<'_>, outbox: &Outbox, sent: &mut Sent) -> Result<(), Broken> {
        let on_stream = std::mem::take(&mut self.on_stream);
        for (reliable, states) in split_envelopes(reliable, &on_stream, SPLIT_ENVELOPE_BYTES) {
            encode_stream_frame(reliable, states, &mut self.outbound);
            let frame = self.outbound.split().freeze();
            sent.bytes += frame.len() as u64;
            sent.messages += 1;
            self.write_frame(frame).await?;
        }
        for state in &on_stream {
            outbox.ack(state.room, state.tick);
        }
        self.on_stream = on_stream;
        Ok(())
    }

    /// Writes one frame on the control stream (after the rest of an earlier one),
    /// waiting while the client's window is full.
    async fn write_frame(&mut self, frame: Bytes) -> Result<(), Broken> {
        let mut frame = (!frame.is_empty()).then_some(frame);
        poll_fn(|cx| {
            let mut drove = false;
            loop {
                if self.unsent.is_empty() {
                    match frame.take() {
                        Some(next) => self.unsent = next,
                        None => {
                            self.conn.writer_done();
                            self.conn.flush();
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
                if self.conn.ended.is_some() {
                    return Poll::Ready(Err(Broken));
                }
                let mut chunk = [std::mem::take(&mut self.unsent)];
                let written = self.conn.inner.send_stream(self.stream).write_chunks(&mut chunk);
                self.unsent = std::mem::take(&mut chunk[0]);
                match written {
                    Ok(_) => drove = false,
                    // Acknowledgements from the client open the window: take in what
                    // arrived, once, then wait for more.
                    Err(WriteError::Blocked) if !drove => {
                        self.conn.drive_writer(cx);
                        drove = true;
                    }
                    Err(WriteError::Blocked) => return Poll::Pending,
                    Err(_) => return Poll::Ready(Err(Broken)),
                }
            }
        })
        .await
    }

    /// Closes a connection refused before its session (counted like a session's close).
    async fn refuse<T>(&mut self, ctx: &Context, reason: CloseReason) -> Option<T> {
        ctx.metrics.count_close(reason);
        self.close(reason).await;
        None
    }

    async fn refuse_auth<T>(&mut self, ctx: &Context, error: &AuthError) -> Option<T> {
        // A key the relay does not hold yet (see the WebSocket upgrade's 503): try again.
        let close = match error {
            AuthError::UnknownKey => CloseReason::TryAgainLater,
            _ => CloseReason::AuthFailed,
        };
        ctx.metrics.count_close(close);
        self.conn.close(close.code(), &format!("authentication failed: {error}"));
        self.conn.flush();
        None
    }
}

impl Transport for Quic {
    const DELIVERY: Delivery = Delivery::Acknowledged;
    const NAME: &'static str = "quic";

    async fn recv(&mut self) -> Received {
        poll_fn(|cx| {
            loop {
                match split_stream_frame(&mut self.inbound, self.max_message) {
                    Ok(Some(frame)) => return Poll::Ready(Received::Binary(frame)),
                    Ok(None) => {}
                    Err(FrameError::TooBig) => return Poll::Ready(Received::Other(Inbound::TooBig)),
                    Err(FrameError::BadLength) => return Poll::Ready(Received::ProtocolError),
                }
                self.conn.drive(cx);
                // The stream first: what the client sent on it before its close is
                // read before the close.
                let before = self.inbound.len();
                if let Some(outcome) = self.read_stream() {
                    return Poll::Ready(outcome);
                }
                if self.inbound.len() > before {
                    continue;
                }
                if let Some(datagram) = self.conn.inner.datagrams().recv() {
                    return Poll::Ready(Received::Binary(datagram));
                }
                if let Some(error) = &self.conn.ended {
                    return Poll::Ready(lost(error));
                }
                if let Some(finished) = self.finished {
                    let wait = self
                        .finish_wait
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(finished + CLOSE_AFTER_FINISH)));
                    if wait.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Received::Lost);
                    }
                }
                return Poll::Pending;
            }
        })
        .await
    }

    async fn send(&mut self, batch: &Batch, outbox: &Outbox) -> Result<Sent, Broken> {
        if self.conn.ended.is_some() {
            return Err(Broken);
        }
        let mut sent = Sent::default();
        let max_datagram = self.conn.inner.datagrams().max_size().unwrap_or(0);
        // On the stream: frames too big for a datagram, and full snapshots written
        // with reliable messages, which they must not overtake (a room's first frame
        // is useless to a client before its `Joined`, a resume's before its
        // `Welcome`; a packet carries datagrams ahead of stream data).
        let reliable = batch.welcome.is_some() || !batch.reliable.is_empty();
        let on_stream =
            |state: &PendingState| (reliable && state.baseline == 0) || state_envelope_len(state) > max_datagram;
        self.on_stream.clear();
        self.on_stream
            .extend(batch.states.iter().filter(|s| on_stream(s)).cloned());
        if reliable || !self.on_stream.is_empty() {
            self.write_stream(batch.reliable_part(), outbox, &mut sent).await?;
        }
        // State datagrams wait in the connection's queue while the path (its
        // congestion window) or this process cannot send them, and its buffer holds
        // hundreds. When what the last `send` queued is not all that waits, the
        // connection is behind: this batch's datagrams are dropped as superseded
        // (each frame is a delta against what the client acknowledged, so a frame
        // dropped costs nothing later), and a frame waits behind at most one send's.
        // (A batch with no datagram leaves the last send's figure as it was.)
        if batch.states.iter().all(on_stream) {
            return Ok(sent);
        }
        let space = self.conn.inner.datagrams().send_buffer_space();
        let behind = self.datagram_space.saturating_sub(space) > self.last_datagrams;
        for state in batch.states.iter().filter(|s| !on_stream(s)) {
            if behind {
                sent.superseded += 1;
                continue;
            }
            encode_envelope(Reliable::default(), std::slice::from_ref(state), &mut self.outbound);
            let datagram = self.outbound.split().freeze();
            sent.bytes += datagram.len() as u64;
            sent.messages += 1;
            if self.conn.inner.datagrams().send(datagram, true).is_err() {
                // The peer's limit shrank meanwhile: the stream takes it.
                self.on_stream.clear();
                self.on_stream.push(state.clone());
                self.write_stream(Reliable::default(), outbox, &mut sent).await?;
            }
        }
        self.last_datagrams = space.saturating_sub(self.conn.inner.datagrams().send_buffer_space());
        self.conn.flush();
        Ok(sent)
    }

    async fn ping(&mut self) -> Result<(), Broken> {
        // QUIC has no application-visible ping: an application `Ping` the client
        // answers with a `Pong` (any inbound traffic counts as liveness).
        let ping = encode_message(Kind::Ping(Ping {
            nonce: 0,
            sent_time_us: unix_micros(),
            received_seq: 0,
        }));
        let unnumbered = Reliable {
            messages: std::slice::from_ref(&ping),
            ..Reliable::default()
        };
        encode_stream_frame(unnumbered, &[], &mut self.outbound);
        let frame = self.outbound.split().freeze();
        self.write_frame(frame).await
    }

    async fn close(&mut self, reason: CloseReason) {
        // Let what was already written reach the client before the close: the rest
        // of a frame, then the stream's end, acknowledged (half a second at most).
        let settled = async {
            let _ = self.write_frame(Bytes::new()).await;
            let _ = self.conn.inner.send_stream(self.stream).finish();
            poll_fn(|cx| {
                self.conn.drive_writer(cx);
                if self.conn.stream_settled || self.conn.ended.is_some() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), settled).await;
        self.conn.writer_done();
        self.conn.close(reason.code(), reason.reason());
        self.conn.flush();
    }

    async fn finish(&mut self) {
        self.conn.close(CloseReason::Normal.code(), CloseReason::Normal.reason());
        self.conn.flush();
    }
}

/// A closed connection: normal when the client closed it with 1000, left (its seat
/// kept) with another code, lost otherwise.
fn lost(error: &ConnectionError) -> Received {
    match error {
        ConnectionError::ApplicationClosed(close) if close.error_code == VarInt::from_u32(1000) => {
            Received::ClientClosed
        }
        // (PROTOCOL.md: code 0 counts as a lost connection.)
        ConnectionError::ApplicationClosed(close) if close.error_code == VarInt::from_u32(0) => Received::Lost,
        // A code beyond WebSocket's range is no close code of ours: counted as other.
        ConnectionError::ApplicationClosed(close) => {
            Received::ClientLeft(u16::try_from(close.error_code.into_inner()).unwrap_or(u16::MAX))
        }
        _ => Received::Lost,
    }
}
