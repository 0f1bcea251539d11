//! One connection to the relay over either transport, as the driver sees it: send an
//! envelope, receive the next envelope, acknowledge state frames, close.
//!
//! - `wss://host:port/path`: WebSocket over TLS; the token goes in the
//!   `Authorization` header and the resume token in the `resume` query parameter.
//! - `ws://host:port/path`: the same without TLS, only when the URL says so (a relay
//!   behind a TLS-terminating proxy, or on this machine); never a fallback from `wss://`.
//! - `quic://host:port`: QUIC (ALPN `tickrelay/1`); a control stream carries a `Hello`
//!   (token, resume token) and then length-delimited envelopes both ways; state frames
//!   arrive as datagrams, and applied ones are acknowledged (see [`Link::ack`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{AckFrequencyConfig, ConnectionError, IdleTimeout, ReadError, TransportConfig, VarInt};
use rustls_pki_types::ServerName;
use tickrelay_proto::frame::split_stream_frame;
use tickrelay_proto::frame::{ALPN, MAX_SERVER_FRAME_BYTES};
use tickrelay_proto::v1::{self as proto, ClientEnvelope, ClientMessage, client_message::Kind as Out};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::either::Either;
use tokio_util::sync::ReusableBoxFuture;

use crate::ClientError;
use crate::trust::Tls;

/// How long a QUIC client waits for the close code after the server finished the
/// control stream.
const CLOSE_CODE_WAIT: Duration = Duration::from_secs(1);

/// The most one WebSocket read asks for: a typical state frame (about 200 bytes to
/// 2 KiB in the benchmarks' rooms); larger messages (full snapshots) take several
/// reads, from rustls's buffer over TLS.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// What a query value percent-encodes: all but RFC 3986's unreserved characters
/// (a relay's own tokens, `<node>.<hex>`, go as they are).
const UNRESERVED_KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Which transport a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `wss://`: WebSocket over TLS.
    WebSocket,
    /// `ws://`: WebSocket without TLS.
    PlainWebSocket,
    /// `quic://`.
    Quic,
}

impl Scheme {
    /// Whether the transport authenticates the server with TLS.
    pub fn uses_tls(self) -> bool {
        self != Scheme::PlainWebSocket
    }
}

/// Where to connect.
pub(crate) struct Target {
    pub scheme: Scheme,
    pub host: String,
    pub authority: String,
    pub url: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::Url(url.to_string());
        let (scheme, rest, default_port) = if let Some(rest) = url.strip_prefix("wss://") {
            (Scheme::WebSocket, rest, 443)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (Scheme::PlainWebSocket, rest, 80)
        } else if let Some(rest) = url.strip_prefix("quic://") {
            (Scheme::Quic, rest, 443)
        } else {
            return Err(bad());
        };
        let authority = rest
            .split(['/', '?'])
            .next()
            .filter(|a| !a.is_empty())
            .ok_or_else(bad)?;
        if scheme != Scheme::Quic && !rest[authority.len()..].starts_with('/') {
            let scheme = &url[..url.len() - rest.len()];
            return Err(ClientError::Url(format!(
                "{url}` has no path; the relay's WebSocket endpoint is /ws, as in `{scheme}{authority}/ws"
            )));
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => authority,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        };
        Ok(Self {
            scheme,
            host: host.to_string(),
            authority,
            url: url.to_string(),
        })
    }
}

/// Why a WebSocket connection was lost, in words for the application: a connection
/// cut without a close (a relay killed, a machine gone; rustls words it as a missing
/// `close_notify`, with a link to its manual) is "connection lost".
fn ws_lost(error: &WsError) -> String {
    match error {
        WsError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "connection lost: closed without a close frame".into()
        }
        WsError::Protocol(tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            "connection lost: closed without a close frame".into()
        }
        WsError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "connection lost: reset".into(),
        e => e.to_string(),
    }
}

/// A failed connection attempt, and whether trying again could help.
pub(crate) struct Failure {
    pub reason: String,
    pub fatal: bool,
    /// The server was not reached, or gave no answer (an HTTP status refusing the
    /// upgrade, or a QUIC handshake it closed, is one: the node is alive).
    pub unreached: bool,
}

fn retry(reason: String) -> Failure {
    Failure {
        reason,
        fatal: false,
        unreached: true,
    }
}

fn fatal(reason: String) -> Failure {
    Failure {
        reason,
        fatal: true,
        unreached: true,
    }
}

/// What a TLS handshake's `error` most often means, for the reason a client reports
/// (rustls names the certificate errors in its messages, over both transports);
/// `trusted` says what the client trusts ([`Tls::trusted`]).
fn certificate_hint(error: &str, trusted: &str) -> String {
    if ["UnknownIssuer", "BadSignature", "FingerprintMismatch"]
        .iter()
        .any(|e| error.contains(e))
    {
        format!(
            ": the relay's certificate is not the one this client trusts ({trusted}); a development certificate \
             another start of the relay wrote, say: trust the tickrelay-dev-cert.pem the running relay wrote, or \
             the SHA-256 fingerprint it logs at start"
        )
    } else if ["NotValidForName", "not valid for name"]
        .iter()
        .any(|e| error.contains(e))
    {
        ": the URL's host is not one of the names the certificate was made for (the development certificate's \
         are localhost, 127.0.0.1 and ::1)"
            .into()
    } else {
        String::new()
    }
}

/// Whether a QUIC handshake failed because this side rejected the server's
/// certificate (a TLS alert about the certificate): trying again cannot help.
fn certificate_rejected(error: &quinn::ConnectionError) -> bool {
    // TLS alerts 42 (bad_certificate) to 49 (access_denied), as QUIC crypto errors.
    matches!(error, quinn::ConnectionError::TransportError(e)
        if (42..=49).any(|alert| e.code == quinn::TransportErrorCode::crypto(alert)))
}

/// Receive buffer asked for a shared endpoint's socket: a bot fleet's frames arrive
/// in bursts (every member of the rooms on one tick phase at once), which overflow
/// the kernel's default of about 200 KiB; the kernel caps it at `net.core.rmem_max`.
const SHARED_RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// A QUIC endpoint on a UDP socket bound to `local` (port 0: any), for
/// [`crate::ClientConfig::quic_endpoint`]: connections opened from it share its socket
/// and the one task that reads it. An IPv6 socket (`[::]:0`) reaches IPv4 relays too;
/// from an IPv4 one, a connection to an IPv6 relay binds its own. Needs a Tokio
/// runtime. A client's `close().await` does not wait for a shared endpoint: before
/// the process exits, await its `wait_idle()` so the last closes go out.
pub fn quic_endpoint(local: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    if local.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // Best effort: a smaller buffer drops datagrams in bursts, which QUIC survives.
    let _ = socket.set_recv_buffer_size(SHARED_RECEIVE_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket.into(), runtime)
}

/// The unspecified address of `addr`'s family, any port: where a connection to
/// `addr` binds its own endpoint.
fn unspecified(addr: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = if addr.is_ipv6() {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(ip, 0)
}

/// What the server sent.
pub(crate) enum Received {
    /// One `ServerEnvelope`.
    Envelope(Bytes),
    /// The server closed the connection with this code and reason.
    Closed { code: u16, reason: String },
    /// The connection broke.
    Lost(String),
    /// Nothing for the driver (a WebSocket ping or pong).
    Nothing,
}

/// The connection broke while writing.
#[derive(Debug)]
pub(crate) struct Broken(pub String);

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WebSocket's byte stream: TLS (`wss://`) or plain TCP (`ws://`).
type WsStream = Either<TlsStream<TcpStream>, TcpStream>;

pub(crate) enum Link {
    WebSocket(Box<WebSocketStream<WsStream>>),
    Quic(Box<QuicLink>),
}

pub(crate) struct QuicLink {
    /// The endpoint this connection's own (waited for at close), or None when it
    /// was opened from a shared one (which outlives it).
    endpoint: Option<quinn::Endpoint>,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    inbound: BytesMut,
    /// The next datagram's read, kept from one `recv` to the next: quinn's read
    /// waits on a `Notify`, which forgets a waiter whose future is dropped, and the
    /// driver polls `recv` again only once its waker was woken (see `Link::recv`).
    datagram: ReusableBoxFuture<'static, Result<Bytes, ConnectionError>>,
    /// Once the server finished the control stream: the wait for its close code,
    /// kept like `datagram` (quinn's `closed()` is a `Notify` too).
    closing: Option<Pin<Box<dyn Future<Output = Received> + Send>>>,
    /// Acknowledgements waiting to ride on the next control-stream write (one per
    /// room), so that they cost no packet of their own (see [`Link::ack`]).
    pending_acks: Vec<proto::Ack>,
    /// Bytes of acknowledgements sent as datagrams since the driver last asked (the
    /// server counts them against its byte rate; see [`Link::take_datagram_ack_bytes`]).
    datagram_ack_bytes: usize,
}

/// A message's framing in an envelope beyond its own encoding (the `messages` key, its
/// length, and `ClientMessage`'s oneof key and length), at most.
pub(crate) const MESSAGE_FRAMING: usize = 8;

/// Sends `acks` as one datagram (a lost one is harmless); returns its size.
fn send_acks(conn: &quinn::Connection, acks: impl IntoIterator<Item = proto::Ack>) -> usize {
    let messages = (acks.into_iter())
        .map(|ack| ClientMessage {
            kind: Some(Out::Ack(ack)),
        })
        .collect();
    let envelope = ClientEnvelope {
        messages,
        first_event_seq: 0,
    };
    let datagram = envelope.encode_to_vec();
    let len = datagram.len();
    let _ = conn.send_datagram(datagram.into());
    len
}

/// Reads the next datagram of `conn`.
async fn read_datagram(conn: quinn::Connection) -> Result<Bytes, ConnectionError> {
    conn.read_datagram().await
}

/// What a reconnecting client presents to resume its session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resume<'a> {
    /// The resume token of the session's last `Welcome`.
    pub token: &'a str,
    /// The last numbered server message received (the server sends the later ones
    /// again); none for a session an earlier process started (nothing is sent
    /// again, and every room sends its `Joined` again).
    pub received: Option<u64>,
}

/// Who connects: the token, the session to resume, and the client's id (the same on
/// every connection of one client: see `Hello.client_id`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Presented<'a> {
    /// The JWT (none in anonymous mode).
    pub token: Option<&'a str>,
    /// The session to resume.
    pub resume: Option<Resume<'a>>,
    /// The client's id.
    pub client_id: &'a str,
}

/// Opens a connection: TLS (unless the URL is `ws://`) and the WebSocket upgrade, or
/// the QUIC handshake, control stream and `Hello`. `tls` is the configuration for the
/// schemes that use TLS ([`Scheme::uses_tls`]).
pub(crate) async fn connect(
    target: &Target,
    tls: Option<&Tls>,
    presented: Presented<'_>,
    idle_timeout: Duration,
    shared_endpoint: Option<&quinn::Endpoint>,
) -> Result<Link, Failure> {
    let tls_for = |scheme: Scheme| tls.ok_or_else(|| fatal(format!("{scheme:?} needs a TLS configuration")));
    match target.scheme {
        Scheme::WebSocket => connect_ws(target, Some(tls_for(target.scheme)?), presented).await,
        Scheme::PlainWebSocket => connect_ws(target, None, presented).await,
        Scheme::Quic => {
            let tls = tls_for(target.scheme)?;
            connect_quic(target, tls, presented, idle_timeout, shared_endpoint).await
        }
    }
}

/// Why a TLS handshake with `target` failed (`trusted`: what the client trusts).
fn tls_failure(e: &std::io::Error, target: &Target, trusted: &str) -> Failure {
    let rustls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    // Not the certificate we trust: trying again cannot help. Nor can a server that
    // answers in plain HTTP (a relay run with --insecure-plain).
    let rejected = rustls.is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    let plain = rustls.is_some_and(|e| {
        matches!(
            e,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
        )
    });
    let hint = if plain {
        format!(
            ": the server does not speak TLS; if it is a relay run with --insecure-plain, use {}",
            target.url.replacen("wss://", "ws://", 1)
        )
    } else {
        certificate_hint(&e.to_string(), trusted)
    };
    Failure {
        reason: format!("TLS: {e}{hint}"),
        fatal: rejected || plain,
        unreached: true,
    }
}

/// The WebSocket upgrade over TLS with `tls`, or over plain TCP without it.
async fn connect_ws(target: &Target, tls: Option<&Tls>, presented: Presented<'_>) -> Result<Link, Failure> {
    let tcp = TcpStream::connect(&target.authority)
        .await
        .map_err(|e| retry(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let stream = match tls {
        Some(tls) => {
            let name = ServerName::try_from(target.host.clone()).map_err(|e| fatal(format!("server name: {e}")))?;
            let connecting = TlsConnector::from(tls.config.clone()).connect(name, tcp);
            Either::Left(connecting.await.map_err(|e| tls_failure(&e, target, &tls.trusted))?)
        }
        None => Either::Right(tcp),
    };
    let mut url = target.url.clone();
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!("client={}", presented.client_id));
    if let Some(resume) = presented.resume {
        // Percent-encoded: a stored token comes from the application.
        let token = percent_encoding::utf8_percent_encode(resume.token, UNRESERVED_KEPT);
        url.push_str(&format!("&resume={token}"));
        if let Some(received) = resume.received {
            url.push_str(&format!("&received={received}"));
        }
    }
    let mut request = url.into_client_request().map_err(|e| fatal(e.to_string()))?;
    if let Some(token) = presented.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| fatal(format!("token: {e}")))?;
        request.headers_mut().insert("authorization", value);
    }
    // tungstenite zeroes the part of its buffer a read may fill before every read:
    // the default (128 KiB) costs microseconds per state frame, and 16 KiB was still
    // 2.7 % of the bots' CPU at W2 (memset).
    // Nothing a relay sends is larger than a frame on its QUIC control stream may be
    // (a big room's full snapshot): a larger message ends the connection before it is
    // read whole (tungstenite's own default is 64 MiB).
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_SERVER_FRAME_BYTES))
        .max_frame_size(Some(MAX_SERVER_FRAME_BYTES));
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((ws, _)) => Ok(Link::WebSocket(Box::new(ws))),
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            // The relay says why in the body ("token expired", "origin not allowed").
            let why = (response.body().as_deref())
                .map(|body| String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string())
                .filter(|why| !why.is_empty())
                .map_or_else(String::new, |why| format!(": {why}"));
            // Refused for who we are (401, 403): retrying cannot help.
            Err(Failure {
                reason: format!("upgrade refused with HTTP {status}{why}"),
                fatal: matches!(status, 400 | 401 | 403 | 404),
                // A proxy's 502 or 504: it found no relay behind it.
                unreached: matches!(status, 502 | 504),
            })
        }
        // A TLS listener's answer to plain HTTP is a TLS alert, which reads as a
        // response with a bad version: the URL should say wss://.
        Err(e) if !target.scheme.uses_tls() && e.to_string().contains("invalid HTTP version") => Err(fatal(format!(
            "{}: the server answered in TLS, not plain HTTP: use wss://",
            target.url
        ))),
        Err(e) => Err(retry(format!("upgrade: {e}"))),
    }
}

async fn connect_quic(
    target: &Target,
    tls: &Tls,
    presented: Presented<'_>,
    idle_timeout: Duration,
    shared_endpoint: Option<&quinn::Endpoint>,
) -> Result<Link, Failure> {
    let addr: SocketAddr = tokio::net::lookup_host(&target.authority)
        .await
        .map_err(|e| retry(format!("resolve: {e}")))?
        .next()
        .ok_or_else(|| retry(format!("resolve: no address for {}", target.authority)))?;
    let mut crypto = (*tls.config).clone();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(crypto).map_err(|e| fatal(format!("QUIC TLS: {e}")))?;
    let mut transport = TransportConfig::default();
    transport.max_idle_timeout(IdleTimeout::try_from(idle_timeout).ok());
    transport.keep_alive_interval(Some(idle_timeout / 3));
    transport.datagram_receive_buffer_size(Some(256 * 1024));
    // The relay sends a state datagram every tick: ask it (QUIC's ACK frequency
    // extension) to acknowledge this client's packets on those rather than in packets
    // of its own. quinn caps the delay asked for at the path's round trip (25 ms at
    // least), so on a path slower than a tick each ACK waits for the next frame.
    let mut acks = AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(VarInt::from_u32(4));
    acks.max_ack_delay(Some(Duration::from_millis(200)));
    transport.ack_frequency_config(Some(acks));
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    // An IPv4 socket cannot reach an IPv6 relay: such a connection binds its own.
    let reaches = |e: &quinn::Endpoint| e.local_addr().is_ok_and(|local| local.is_ipv6() || addr.is_ipv4());
    let (endpoint, own) = match shared_endpoint.filter(|e| reaches(e)) {
        Some(shared) => (shared.clone(), None),
        None => {
            let local = unspecified(addr);
            let endpoint = quinn::Endpoint::client(local).map_err(|e| retry(format!("UDP socket: {e}")))?;
            (endpoint.clone(), Some(endpoint))
        }
    };
    let conn = endpoint
        .connect_with(config, addr, &target.host)
        .map_err(|e| fatal(format!("QUIC: {e}")))?
        .await
        .map_err(|e| Failure {
            reason: format!(
                "QUIC handshake (TLS): {e}{}",
                certificate_hint(&e.to_string(), &tls.trusted)
            ),
            fatal: certificate_rejected(&e),
            // Refused by the relay (at its connection cap, say): it answered.
            unreached: !matches!(
                e,
                quinn::ConnectionError::ConnectionClosed(_) | quinn::ConnectionError::ApplicationClosed(_)
            ),
        })?;
    let (mut send, recv) = conn.open_bi().await.map_err(|e| retry(format!("QUIC stream: {e}")))?;
    let Presented {
        token,
        resume,
        client_id,
    } = presented;
    let hello = proto::Hello {
        token: token.unwrap_or_default().to_string(),
        resume_token: resume.map(|r| r.token.to_string()).unwrap_or_default(),
        received_seq: resume.and_then(|r| r.received),
        client_id: client_id.to_string(),
    };
    send.write_all(&hello.encode_length_delimited_to_vec())
        .await
        .map_err(|e| retry(format!("QUIC hello: {e}")))?;
    Ok(Link::Quic(Box::new(QuicLink {
        endpoint: own,
        datagram: ReusableBoxFuture::new(read_datagram(conn.clone())),
        closing: None,
        conn,
        send,
        recv,
        inbound: BytesMut::new(),
        pending_acks: Vec::new(),
        datagram_ack_bytes: 0,
    })))
}

impl Link {
    /// Whether state frames arrive unordered and must be acknowledged.
    pub fn acknowledged(&self) -> bool {
        matches!(self, Link::Quic(_))
    }

    /// Sends one envelope of `messages`, its events numbered from `first_event_seq`
    /// (0: not numbered); a write the relay has not taken within `timeout` is a lost
    /// connection (`ClientConfig::write_timeout`).
    pub async fn send(
        &mut self,
        messages: impl IntoIterator<Item = Out>,
        first_event_seq: u64,
        timeout: Duration,
    ) -> Result<(), Broken> {
        let mut messages: Vec<ClientMessage> = messages.into_iter().map(|k| ClientMessage { kind: Some(k) }).collect();
        if let Link::Quic(q) = self {
            messages.extend(q.pending_acks.drain(..).map(|ack| ClientMessage {
                kind: Some(Out::Ack(ack)),
            }));
        }
        let envelope = ClientEnvelope {
            messages,
            first_event_seq,
        };
        let written = async {
            match self {
                Link::WebSocket(ws) => ws
                    .send(Message::Binary(envelope.encode_to_vec().into()))
                    .await
                    .map_err(|e| Broken(ws_lost(&e))),
                Link::Quic(q) => q
                    .send
                    .write_all(&envelope.encode_length_delimited_to_vec())
                    .await
                    .map_err(|e| Broken(e.to_string())),
            }
        };
        match tokio::time::timeout(timeout, written).await {
            Ok(written) => written,
            Err(_) => Err(Broken(format!("the relay took nothing written for {timeout:?}"))),
        }
    }

    /// The server's close code and reason when it closed this connection (QUIC: a write
    /// can fail on the close before a read returns it).
    pub fn closed_by_server(&self) -> Option<(u16, String)> {
        match self {
            Link::Quic(q) => match closed(q.conn.close_reason()?) {
                Received::Closed { code, reason } => Some((code, reason)),
                _ => None,
            },
            Link::WebSocket(_) => None,
        }
    }

    /// Acknowledges a state frame (QUIC only; a lost acknowledgement is harmless).
    /// The acknowledgement waits for the next write on the control stream (the
    /// client's next input, typically) and rides in its packet, unless it is wanted
    /// `at_once` (a full snapshot's, or a frame's after a gap) or the room already
    /// has one waiting (no write came since): then it goes now, as a datagram.
    pub fn ack(&mut self, room: &str, tick: u64, at_once: bool) {
        let Link::Quic(q) = self else { return };
        let ack = proto::Ack {
            room: room.into(),
            tick,
        };
        let waiting = q.pending_acks.iter().position(|p| p.room == room);
        if let Some(i) = waiting {
            q.pending_acks.swap_remove(i);
        }
        if at_once || waiting.is_some() {
            q.datagram_ack_bytes += send_acks(&q.conn, [ack]);
        } else {
            q.pending_acks.push(ack);
        }
    }

    /// The bytes the acknowledgements waiting for a write add to its envelope.
    pub fn waiting_ack_bytes(&self) -> usize {
        match self {
            Link::Quic(q) => (q.pending_acks.iter())
                .map(|ack| ack.encoded_len() + MESSAGE_FRAMING)
                .sum(),
            Link::WebSocket(_) => 0,
        }
    }

    /// Sends the acknowledgements waiting for a write now, as one datagram.
    pub fn send_waiting_acks(&mut self) {
        if let Link::Quic(q) = self
            && !q.pending_acks.is_empty()
        {
            q.datagram_ack_bytes += send_acks(&q.conn, q.pending_acks.drain(..));
        }
    }

    /// The bytes of acknowledgements sent as datagrams since the last call.
    pub fn take_datagram_ack_bytes(&mut self) -> usize {
        match self {
            Link::Quic(q) => std::mem::take(&mut q.datagram_ack_bytes),
            Link::WebSocket(_) => 0,
        }
    }

    /// Whether an acknowledgement for `room` waits for a write (see [`Link::ack`]).
    pub fn ack_waiting(&self, room: &str) -> bool {
        matches!(self, Link::Quic(q) if q.pending_acks.iter().any(|p| p.room == room))
    }

    /// The next thing the server sent. Cancel-safe, and a `recv` dropped while
    /// pending still has the waker of its last poll woken when something arrives
    /// (the driver polls it again only then).
    pub async fn recv(&mut self) -> Received {
        match self {
            Link::WebSocket(ws) => match ws.next().await {
                None => Received::Lost("connection closed".into()),
                Some(Err(e)) => Received::Lost(ws_lost(&e)),
                Some(Ok(Message::Binary(bytes))) => Received::Envelope(bytes),
                // tungstenite reports a close code it does not allow (1014 Bad
                // Gateway, which proxies send, or a reserved one) as this: not the
                // server's verdict on the client, so not a reason to stop (which code
                // came is lost: taken as a lost connection).
                Some(Ok(Message::Close(Some(f))))
                    if f.code == CloseCode::Protocol && f.reason == "Protocol violation" =>
                {
                    Received::Lost(
                        "closed with a code the WebSocket library does not accept (1014, or a reserved one)".into(),
                    )
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) =
                        frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                    Received::Closed { code, reason }
                }
                Some(Ok(_)) => Received::Nothing,
            },
            Link::Quic(q) => q.recv().await,
        }
    }

    /// Sends the answer to the server's close frame, which the WebSocket library
    /// queued as it read the frame (a tenth of a second at most): the relay waits
    /// for it.
    pub async fn answer_close(&mut self) {
        if let Link::WebSocket(ws) = self {
            let _ = tokio::time::timeout(Duration::from_millis(100), ws.flush()).await;
        }
    }

    /// Closes normally (1000) and waits (at most a second) for the server's answer, so
    /// the server has ended the session before the caller goes on.
    pub async fn close(self) {
        match self {
            Link::WebSocket(mut ws) => {
                let frame = CloseFrame {
                    code: 1000.into(),
                    reason: "client closing".into(),
                };
                // What arrives before the server's close frame is dropped; a relay that
                // takes nothing written gets a second for it all.
                let answered = async {
                    let _ = ws.send(Message::Close(Some(frame))).await;
                    while let Some(Ok(_)) = ws.next().await {}
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), answered).await;
            }
            Link::Quic(mut q) => {
                // What was written goes first: the stream finished, and read to its
                // end by the relay (half a second at most), then the close (quinn
                // sends nothing after it, and the relay may drop what it has not read).
                let _ = q.send.finish();
                let _ = tokio::time::timeout(Duration::from_millis(500), q.send.stopped()).await;
                q.conn.close(1000u32.into(), b"client closing");
                if let Some(endpoint) = &q.endpoint {
                    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
                }
            }
        }
    }
}

impl QuicLink {
    async fn recv(&mut self) -> Received {
        loop {
            if let Some(closing) = &mut self.closing {
                let end = closing.as_mut().await;
                self.closing = None;
                return end;
            }
            match split_stream_frame(&mut self.inbound, MAX_SERVER_FRAME_BYTES) {
                Ok(Some(bytes)) => return Received::Envelope(bytes),
                Ok(None) => {}
                Err(e) => return Received::Lost(format!("control stream: {e}")),
            }
            // The stream first when both are ready: a room's `Joined` (or a resume's
            // `Welcome`) is written before the datagram of its first frame, which is
            // useless to the client ahead of it.
            tokio::select! {
                biased;
                chunk = self.recv.read_chunk(64 * 1024, true) => match chunk {
                    Ok(Some(chunk)) => self.inbound.extend_from_slice(&chunk.bytes),
                    // The server finishes the stream just before it closes the
                    // connection with a code (1001 at shutdown): wait briefly for it.
                    Ok(None) => {
                        let conn = self.conn.clone();
                        self.closing = Some(Box::pin(async move {
                            match tokio::time::timeout(CLOSE_CODE_WAIT, conn.closed()).await {
                                Ok(e) => closed(e),
                                Err(_) => Received::Lost("control stream finished".into()),
                            }
                        }));
                    }
                    Err(ReadError::ConnectionLost(e)) => return closed(e),
                    Err(e) => return Received::Lost(e.to_string()),
                },
                datagram = std::future::poll_fn(|cx| self.datagram.poll(cx)) => {
                    self.datagram.set(read_datagram(self.conn.clone()));
                    match datagram {
                        Ok(bytes) => return Received::Envelope(bytes),
                        Err(e) => return closed(e),
                    }
                }
            }
        }
    }
}

fn closed(error: ConnectionError) -> Received {
    match error {
        // Code 0: the server dropped the connection without saying why.
        ConnectionError::ApplicationClosed(close) if close.error_code.into_inner() != 0 => Received::Closed {
            code: u16::try_from(close.error_code.into_inner()).unwrap_or(1002),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        e => Received::Lost(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("wss://127.0.0.1:7443/ws").unwrap();
        assert_eq!((t.host.as_str(), t.authority.as_str()), ("127.0.0.1", "127.0.0.1:7443"));
        assert_eq!(t.scheme, Scheme::WebSocket);
        let t = Target::parse("wss://relay.example.com/ws?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("relay.example.com", "relay.example.com:443")
        );
        let t = Target::parse("quic://[::1]:7443").unwrap();
        assert_eq!((t.host.as_str(), t.authority.as_str()), ("::1", "[::1]:7443"));
        assert_eq!(t.scheme, Scheme::Quic);
        let no_path = Target::parse("ws://127.0.0.1:7080").err().unwrap().to_string();
        assert!(
            no_path.contains("has no path") && no_path.contains("`ws://127.0.0.1:7080/ws`"),
            "{no_path}"
        );
        assert!(Target::parse("wss://relay.test?token=t").is_err());
        let t = Target::parse("ws://127.0.0.1:7080/ws").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.scheme),
            ("127.0.0.1:7080", Scheme::PlainWebSocket)
        );
        assert!(!t.scheme.uses_tls());
        let t = Target::parse("ws://relay.internal/ws").unwrap();
        assert_eq!(t.authority, "relay.internal:80");
        assert!(Target::parse("http://plain/ws").is_err());
        assert!(Target::parse("WS://plain/ws").is_err());
        assert!(Target::parse("ws:///ws").is_err());
        assert!(Target::parse("wss:///ws").is_err());
    }

    #[test]
    fn a_certificate_error_says_what_it_most_often_means() {
        use rustls::CertificateError as E;
        let said = |e: E| {
            certificate_hint(
                &rustls::Error::InvalidCertificate(e).to_string(),
                "the certificate in a.pem",
            )
        };
        assert!(said(E::UnknownIssuer).contains("not the one this client trusts (the certificate in a.pem)"));
        let name = E::NotValidForNameContext {
            expected: rustls_pki_types::ServerName::try_from("192.168.1.5")
                .unwrap()
                .to_owned(),
            presented: vec!["DnsName(\"localhost\")".into()],
        };
        assert!(said(name).contains("not one of the names"));
        assert!(said(E::NotValidForName).contains("not one of the names"));
        assert_eq!(said(E::Expired), "");
    }
}
