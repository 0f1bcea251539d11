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
//! the control stream (so do full snapshots written with reliable messages, and a
//! closed room's last frame: see `send`). Datagrams may be lost or reordered, so the
//! outbox runs with [`Delivery::Acknowledged`]: the client acknowledges frames it
//! applied (`Ack`, in a datagram or with its next control-stream message) and its
//! next delta is against the newest acknowledged tick.
//! A frame written on the control stream counts as acknowledged from the moment its
//! write begins (the stream is reliable and ordered).
//!
//! The connection closes with an application error code equal to the WebSocket
//! close code for the same [`CloseReason`], and the same reason string.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::{Fuse, FusedFuture};
use prost::Message;
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{
    AckFrequencyConfig, Connection, ConnectionError, Endpoint, IdleTimeout, Incoming, ReadError, RecvStream,
    SendStream, TransportConfig, VarInt,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::ReusableBoxFuture;

use crate::clock::unix_micros;
use crate::engine::envelope::{
    Reliable, SPLIT_ENVELOPE_BYTES, encode_envelope, encode_stream_frame, encode_stream_frame_sharing, split_envelopes,
    state_envelope_len,
};
use crate::engine::outbox::{Batch, Delivery, Outbox, PendingState};
use crate::error::{CloseReason, fit_close_reason};
use crate::frame::{FrameError, encode_message, split_stream_frame};
use crate::proto::{Hello, Ping, server_message::Kind};
use crate::session::auth::AuthError;
use crate::session::{Inbound, SessionSettings};
use crate::transport::connection::{self, Start};
use crate::transport::context::Context;
use crate::transport::tls::Tls;
use crate::transport::{Broken, Received, Sent, Transport};

pub use crate::frame::{ALPN, MAX_SERVER_FRAME_BYTES};

/// QUIC settings (`[quic]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// Serve QUIC (needs TLS: off with `tls.insecure_plain`).
    pub enabled: bool,
    /// UDP address; unset means the same address and port as `listen`.
    #[serde(deserialize_with = "crate::config::optional_socket_address")]
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

/// Starts the QUIC endpoint on an already bound UDP `socket` (see [`udp_socket`]),
/// with the listener's certificate.
pub(crate) fn endpoint(
    socket: std::net::UdpSocket,
    config: &QuicConfig,
    session: &SessionSettings,
    tls: &Tls,
) -> std::io::Result<Endpoint> {
    let mut crypto = (*tls.config).clone();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(crypto).map_err(std::io::Error::other)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(config, session)));
    Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
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

/// Accepts QUIC connections until shutdown.
pub(crate) async fn accept(endpoint: Endpoint, ctx: Arc<Context>) {
    loop {
        let incoming = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let peer = incoming.remote_address();
        // A first Initial from an address not yet validated gets a Retry (one round
        // trip more): the client must echo its token from that address, so packets
        // with a spoofed source never reach the caps below (they would hold a slot of
        // the victim's address, or of the server, for the handshake's timeout).
        if !incoming.remote_address_validated() {
            // Guaranteed retryable when not validated (quinn's contract).
            let _ = incoming.retry();
            continue;
        }
        // The same caps and handshake rate as the WebSocket listener, checked before
        // the handshake costs anything.
        let permit = match ctx.gate.admit(peer.ip(), std::time::Instant::now()) {
            Ok(permit) => permit,
            Err(refusal) => {
                ctx.metrics.count_refused_upgrade(refusal.status);
                crate::transport::log_refusal(peer, "quic", &refusal.message);
                incoming.refuse();
                continue;
            }
        };
        let task_ctx = ctx.clone();
        ctx.tracker.spawn(async move {
            // A handshake under way at shutdown is dropped (the peer learns it from
            // the endpoint's close), not waited for.
            let handshake = tokio::select! {
                biased;
                () = task_ctx.shutdown.cancelled() => None,
                done = handshake(incoming, peer, &task_ctx) => done,
            };
            if let Some((transport, start)) = handshake {
                connection::serve(transport, peer, task_ctx, start, permit).await;
            }
        });
    }
    // Every session closes itself with 1001 on shutdown, after its last words (a
    // cluster node's `GoingAway`): the endpoint is closed only once they are done
    // (`close_endpoint`), or it would cut them off. Until then, connections that
    // arrive are refused at once rather than left to time out.
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            incoming.refuse();
        }
    });
}

/// Closes what connections are left with 1001 and waits, until `deadline` but at
/// least a second, for the endpoint to be idle: QUIC closes are datagrams, so the
/// endpoint must stay up until every connection has drained (a client whose close
/// was lost gets it again when it next sends), or clients see a timeout instead.
pub(crate) async fn close_endpoint(endpoint: &Endpoint, deadline: tokio::time::Instant) {
    endpoint.close(
        VarInt::from_u32(CloseReason::ShuttingDown.code().into()),
        b"server shutting down",
    );
    let drained = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
    let _ = tokio::time::timeout_at(drained, endpoint.wait_idle()).await;
}

/// Completes the QUIC handshake, accepts the control stream and checks the `Hello`.
async fn handshake(incoming: Incoming, peer: SocketAddr, ctx: &Context) -> Option<(Quic, Start)> {
    let max_message = ctx.session.settings.max_message_bytes as usize;
    // Bounded like the TLS handshake: a peer that stops half way holds its slot for
    // this long, not for the idle timeout.
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let conn = tokio::time::timeout_at(deadline, incoming).await.ok()?.ok()?;
    let (send, recv) = match tokio::time::timeout_at(deadline, conn.accept_bi()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(_)) => return None,
        Err(_) => {
            let reason = CloseReason::HeartbeatTimeout;
            ctx.metrics.count_close(reason);
            close_with(&conn, reason.code(), "no control stream in time");
            return None;
        }
    };
    // The `Hello` carries the token: it may be as large as a WebSocket upgrade's head.
    let mut quic = Quic::new(conn, send, recv, max_message.max(MAX_HELLO_BYTES));
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
    quic.awaiting_hello = false;
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
            // Absent: as `?received=` absent over WebSocket (see `Session::resume`).
            received: hello.received_seq,
            client,
        }
    };
    Some((quic, start))
}

/// One QUIC connection with its control stream.
pub(crate) struct Quic {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    /// Control-stream bytes read but not yet a whole frame.
    inbound: BytesMut,
    outbound: BytesMut,
    max_message: usize,
    /// State frames too big for a datagram, written on the stream instead.
    on_stream: Vec<PendingState>,
    /// The next datagram's read, kept from one `recv` to the next: quinn's read
    /// waits on a `Notify`, which forgets a waiter whose future is dropped, so a read
    /// made anew by each `recv` would only wake the connection while a `recv` is
    /// pending (see [`Transport::recv`]).
    datagram: ReusableBoxFuture<'static, Result<Bytes, ConnectionError>>,
    /// quinn's free datagram buffer space with nothing queued (its configured size).
    datagram_space: usize,
    /// Buffer space the state datagrams of the last `send` took in quinn's queue.
    last_datagrams: usize,
    /// A stream write was dropped half done (a `send` cancelled by a stop): quinn's
    /// writes are not cancel-safe, so what follows on the stream would be read as the
    /// rest of that frame. Nothing more is written.
    cut: bool,
    /// The `Hello` has not been read yet (datagrams are dropped until it is).
    awaiting_hello: bool,
    /// Once the client finished its control stream: the wait for its close (see
    /// [`CLOSE_AFTER_FINISH`]), kept from one `recv` to the next as `datagram` is (a
    /// wait made anew by each `recv` began again whenever the loop wrote a frame, and
    /// its timer woke nothing once dropped: the connection stayed until its heartbeat
    /// ran out). Ready once.
    finishing: Option<Fuse<Pin<Box<dyn Future<Output = Received> + Send>>>>,
}

/// How long a connection whose client finished its control stream is given for the
/// close that follows.
const CLOSE_AFTER_FINISH: Duration = Duration::from_secs(1);

/// Reads the next datagram of `conn`.
async fn read_datagram(conn: Connection) -> Result<Bytes, ConnectionError> {
    conn.read_datagram().await
}

impl Quic {
    fn new(conn: Connection, send: SendStream, recv: RecvStream, max_message: usize) -> Self {
        Self {
            datagram: ReusableBoxFuture::new(read_datagram(conn.clone())),
            send,
            recv,
            inbound: BytesMut::new(),
            outbound: BytesMut::new(),
            max_message,
            on_stream: Vec::new(),
            datagram_space: conn.datagram_send_buffer_space(),
            last_datagrams: 0,
            cut: false,
            awaiting_hello: true,
            finishing: None,
            conn,
        }
    }

    /// Writes `reliable` and the states in `on_stream` on the control stream: one
    /// frame, or several when large (a member of several large rooms). The stream is
    /// reliable and ordered, so those states count as acknowledged, from now on: the
    /// frames the rooms encode while a large snapshot is written to a slow client are
    /// deltas against it, which the client applies once it has it, not more full
    /// snapshots (each of which took as long to write: the client got nothing else).
    async fn write_stream(&mut self, reliable: Reliable<'_>, outbox: &Outbox, sent: &mut Sent) -> Result<(), Broken> {
        if self.cut {
            return Err(Broken);
        }
        for state in &self.on_stream {
            outbox.ack(state.room, state.tick);
        }
        let mut parts = VecDeque::new();
        for (reliable, states) in split_envelopes(reliable, &self.on_stream, SPLIT_ENVELOPE_BYTES) {
            // A large state body goes to quinn as the room's bytes, not a copy (quinn
            // keeps the chunks it is given until the peer acknowledges them).
            encode_stream_frame_sharing(reliable, states, &mut self.outbound, &mut parts);
            let frame = self.outbound.split().freeze();
            sent.bytes += (frame.len() + parts.iter().map(Bytes::len).sum::<usize>()) as u64;
            sent.messages += 1;
            self.cut = true;
            let written = if parts.is_empty() {
                self.send.write_chunk(frame).await
            } else {
                parts.push_front(frame);
                self.send.write_all_chunks(parts.make_contiguous()).await
            };
            written.map_err(|_| Broken)?;
            self.cut = false;
            parts.clear();
        }
        Ok(())
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
        let reason = format!("authentication failed: {error}");
        close_with(&self.conn, close.code(), &reason);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.conn.closed()).await;
        None
    }
}

fn close_with(conn: &Connection, code: u16, reason: &str) {
    // Like a WebSocket close reason: at most 123 bytes.
    conn.close(VarInt::from_u32(code.into()), fit_close_reason(reason).as_bytes());
}

impl Transport for Quic {
    const DELIVERY: Delivery = Delivery::Acknowledged;
    const NAME: &'static str = "quic";

    fn moved_to(&self) -> Option<SocketAddr> {
        Some(self.conn.remote_address())
    }

    async fn recv(&mut self) -> Received {
        loop {
            match split_stream_frame(&mut self.inbound, self.max_message) {
                Ok(Some(frame)) => return Received::Binary(frame),
                Ok(None) => {}
                Err(FrameError::TooBig) => return Received::Other(Inbound::TooBig),
                Err(FrameError::BadLength) => return Received::ProtocolError,
            }
            if let Some(finishing) = &mut self.finishing {
                // (Once it ended the connection, the connection stays lost.)
                return if finishing.is_terminated() {
                    Received::Lost
                } else {
                    finishing.await
                };
            }
            // Both reads are cancel-safe: a dropped read consumes nothing. The stream
            // first: what the client sent on it before its close is read before the
            // close that the datagram read reports at once.
            tokio::select! {
                biased;
                chunk = self.recv.read_chunk(64 * 1024, true) => match chunk {
                    Ok(Some(chunk)) => self.inbound.extend_from_slice(&chunk.bytes),
                    // The client finished its control stream: its close follows (a
                    // normal close is an application close with 1000, once the client
                    // knows its last messages were read); without one, it is lost.
                    Ok(None) => {
                        let conn = self.conn.clone();
                        let finishing: Pin<Box<dyn Future<Output = Received> + Send>> = Box::pin(async move {
                            match tokio::time::timeout(CLOSE_AFTER_FINISH, conn.closed()).await {
                                Ok(e) => lost(e),
                                Err(_) => Received::Lost,
                            }
                        });
                        self.finishing = Some(finishing.fuse());
                    }
                    Err(ReadError::ConnectionLost(e)) => return lost(e),
                    Err(_) => return Received::Lost,
                },
                datagram = std::future::poll_fn(|cx| self.datagram.poll(cx)) => {
                    self.datagram.set(read_datagram(self.conn.clone()));
                    match datagram {
                        // The `Hello` is the control stream's first frame: a datagram
                        // before it is not read as one (nor kept).
                        Ok(_) if self.awaiting_hello => {}
                        // The same bound as the stream's (quinn's own is the path's).
                        Ok(datagram) if datagram.len() > self.max_message => return Received::Other(Inbound::TooBig),
                        Ok(datagram) => return Received::Binary(datagram),
                        Err(e) => return lost(e),
                    }
                }
            }
        }
    }

    async fn send(&mut self, batch: &Batch, outbox: &Outbox) -> Result<Sent, Broken> {
        let mut sent = Sent::default();
        let max_datagram = self.conn.max_datagram_size().unwrap_or(0);
        // On the stream: frames too big for a datagram, and full snapshots written
        // with reliable messages, which they must not overtake (a room's first frame
        // is useless to a client before its `Joined`, a resume's before its
        // `Welcome`; quinn puts datagrams ahead of stream data in a packet), and a
        // closed room's last frame, which its `Left` on the stream must not overtake
        // (a client ignores frames of rooms it is not in).
        let reliable = batch.welcome.is_some() || !batch.reliable.is_empty();
        let on_stream = |state: &PendingState| {
            (reliable && state.baseline == 0) || state_envelope_len(state) > max_datagram || state.last
        };
        self.on_stream.clear();
        self.on_stream
            .extend(batch.states.iter().filter(|s| on_stream(s)).cloned());
        if reliable || !self.on_stream.is_empty() {
            self.write_stream(batch.reliable_part(), outbox, &mut sent).await?;
        }
        // State datagrams wait in quinn's queue while the path (its congestion
        // window) or this process cannot send them, and its buffer holds hundreds.
        // When what the last `send` queued is not all that waits, the connection is
        // behind: this batch's datagrams are dropped as superseded (each frame is a
        // delta against what the client acknowledged, so a frame dropped costs
        // nothing later), and a frame waits behind at most one send's.
        // (A batch with no datagram leaves the last send's figure as it was.)
        if batch.states.iter().all(on_stream) {
            return Ok(sent);
        }
        let space = self.conn.datagram_send_buffer_space();
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
            match self.conn.send_datagram(datagram) {
                Ok(()) => {}
                Err(quinn::SendDatagramError::ConnectionLost(_)) => return Err(Broken),
                // The peer's limit shrank meanwhile: the stream takes it.
                Err(_) => {
                    self.on_stream.clear();
                    self.on_stream.push(state.clone());
                    self.write_stream(Reliable::default(), outbox, &mut sent).await?;
                }
            }
        }
        self.last_datagrams = space.saturating_sub(self.conn.datagram_send_buffer_space());
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
        if self.cut {
            return Err(Broken);
        }
        encode_stream_frame(unnumbered, &[], &mut self.outbound);
        let frame = self.outbound.split().freeze();
        // Not cancel-safe either (see `cut`): a stop may drop it half written.
        self.cut = true;
        self.send.write_chunk(frame).await.map_err(|_| Broken)?;
        self.cut = false;
        Ok(())
    }

    async fn close(&mut self, reason: CloseReason) {
        // Let what was already written reach the client before the close; a frame cut
        // off half way is not finished (the client would read its end as a framing
        // error before the close): the stream is reset instead.
        if self.cut {
            let _ = self.send.reset(VarInt::from_u32(0));
        } else {
            let _ = self.send.finish();
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), self.send.stopped()).await;
        close_with(&self.conn, reason.code(), reason.reason());
    }

    async fn finish(&mut self) {
        close_with(&self.conn, CloseReason::Normal.code(), CloseReason::Normal.reason());
    }
}

/// A closed connection: normal when the client closed it with 1000, left (its seat
/// kept) with another code, lost otherwise.
fn lost(error: ConnectionError) -> Received {
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
