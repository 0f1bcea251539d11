//! Test harness: the real server on 127.0.0.1:0 with a generated certificate, and a
//! real client over WebSocket-over-TLS or QUIC that trusts exactly that certificate.
//! [`both_transports!`] runs one scenario body over each transport.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tickrelay::config::Config;
use tickrelay::frame::{decode_server, split_stream_frame};
use tickrelay::metrics::Metrics;
use tickrelay::mirror::StateMirror;
use tickrelay::proto::{self, ClientEnvelope, ClientMessage, ServerMessage, client_message, server_message::Kind};
use tickrelay::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// Which transport a test client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Quic,
}

/// Runs each scenario `fn name(transport: Transport)` as two tests,
/// `websocket::name` and `quic::name`.
#[macro_export]
macro_rules! both_transports {
    ($($scenario:ident),* $(,)?) => {
        mod websocket {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::common::Transport::WebSocket).await;
                }
            )*
        }
        mod quic {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::common::Transport::Quic).await;
                }
            )*
        }
    };
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub quic_addr: SocketAddr,
    pub cert_pem: String,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The server with test defaults: 60 Hz rooms, a relay and an arena type, two
/// simulation threads; `adjust` may change anything.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::loopback(60);
    adjust(&mut config);
    let server = Server::bind(config).await.expect("server starts");
    let addr = server.local_addr();
    let quic_addr = server.quic_addr().expect("QUIC is on by default");
    let cert_pem = server.dev_certificate().expect("dev certificate").to_string();
    let metrics = server.metrics();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone(), Duration::from_secs(5)));
    TestServer {
        addr,
        quic_addr,
        cert_pem,
        metrics,
        shutdown,
        task: Some(task),
    }
}

/// The value of one labelled sample in the metrics text, 0 if absent.
pub fn metric(server: &TestServer, sample: &str) -> u64 {
    let text = server.metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (at most 10 s) until `sample` reaches `at_least`; returns how long it took.
pub async fn wait_for_metric(server: &TestServer, sample: &str, at_least: u64) -> std::time::Duration {
    let start = std::time::Instant::now();
    while metric(server, sample) < at_least {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{sample} stayed below {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// A TLS client configuration that trusts only the test server's certificate.
pub fn tls_config(server: &TestServer) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A TLS connection that trusts only the test server's certificate.
pub async fn tls_connect(server: &TestServer) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    TlsConnector::from(Arc::new(tls_config(server)))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the dev certificate")
}

/// A plain HTTP/1.1 GET over TLS; returns (status, body).
pub async fn https_get(server: &TestServer, path: &str) -> (u16, String) {
    let mut tls = tls_connect(server).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, tls.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// A QUIC connection with its control stream.
pub struct QuicConn {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    recv: quinn::RecvStream,
    inbound: BytesMut,
}

impl QuicConn {
    /// Handshake, control stream and `Hello`, through `via` (the server's address, or
    /// a forwarder in front of it).
    pub async fn open(server: &TestServer, via: SocketAddr, token: &str, resume: &str, received: u64) -> Self {
        let mut crypto = tls_config(server);
        crypto.alpn_protocols = vec![tickrelay::frame::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = tokio::time::timeout(WAIT, endpoint.connect(via, "localhost").unwrap())
            .await
            .expect("QUIC handshake within the wait time")
            .expect("QUIC handshake");
        let (mut send, recv) = conn.open_bi().await.unwrap();
        let hello = proto::Hello {
            token: token.into(),
            resume_token: resume.into(),
            received_seq: (!resume.is_empty()).then_some(received),
        };
        send.write_all(&hello.encode_length_delimited_to_vec()).await.unwrap();
        Self {
            endpoint,
            conn,
            send,
            recv,
            inbound: BytesMut::new(),
        }
    }
}

pub enum Conn {
    WebSocket(Box<WebSocketStream<TlsStream<TcpStream>>>),
    Quic(Box<QuicConn>),
}

/// What arrived from the server.
#[derive(Debug)]
pub enum Incoming {
    /// One envelope (a WebSocket binary message, a QUIC stream frame or datagram).
    Envelope(Bytes),
    /// The server closed with this code and reason.
    Closed(u16, String),
    /// The connection ended without a close code.
    Ended(String),
}

impl Conn {
    /// The next thing from the server, or `None` after `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Option<Incoming> {
        tokio::time::timeout(wait, self.recv_forever()).await.ok()
    }

    async fn recv_forever(&mut self) -> Incoming {
        match self {
            Conn::WebSocket(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(bytes))) => return Incoming::Envelope(bytes),
                    Some(Ok(Message::Close(Some(frame)))) => {
                        return Incoming::Closed(frame.code.into(), frame.reason.to_string());
                    }
                    Some(Ok(Message::Close(None))) => return Incoming::Ended("close without a code".into()),
                    Some(Ok(Message::Text(_))) => panic!("the server sent text"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Incoming::Ended(e.to_string()),
                    None => return Incoming::Ended("stream ended".into()),
                }
            },
            Conn::Quic(q) => loop {
                if let Some(frame) =
                    split_stream_frame(&mut q.inbound, tickrelay::frame::MAX_SERVER_FRAME_BYTES).unwrap()
                {
                    return Incoming::Envelope(frame);
                }
                let closed = |e: quinn::ConnectionError| match e {
                    quinn::ConnectionError::ApplicationClosed(c) => Incoming::Closed(
                        c.error_code.into_inner() as u16,
                        String::from_utf8_lossy(&c.reason).into_owned(),
                    ),
                    e => Incoming::Ended(e.to_string()),
                };
                tokio::select! {
                    chunk = q.recv.read_chunk(64 * 1024, true) => match chunk {
                        Ok(Some(chunk)) => q.inbound.extend_from_slice(&chunk.bytes),
                        Ok(None) => return closed(q.conn.closed().await),
                        Err(quinn::ReadError::ConnectionLost(e)) => return closed(e),
                        Err(e) => return Incoming::Ended(e.to_string()),
                    },
                    datagram = q.conn.read_datagram() => match datagram {
                        Ok(bytes) => return Incoming::Envelope(bytes),
                        Err(e) => return closed(e),
                    },
                }
            },
        }
    }

    /// Sends one binary message (WebSocket) or control-stream frame (QUIC).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Conn::WebSocket(ws) => ws
                .send(Message::Binary(Bytes::copy_from_slice(bytes)))
                .await
                .map_err(|e| e.to_string()),
            Conn::Quic(q) => {
                let mut frame = Vec::new();
                prost::encoding::encode_varint(bytes.len() as u64, &mut frame);
                frame.extend_from_slice(bytes);
                q.send.write_all(&frame).await.map_err(|e| e.to_string())
            }
        }
    }
}

pub struct TestClient {
    pub conn: Conn,
    pending: VecDeque<ServerMessage>,
    pub mirrors: HashMap<String, StateMirror>,
    pub welcome: proto::Welcome,
    next_request: u64,
    seqs: HashMap<String, u64>,
    /// State frames applied, per room.
    pub frames: HashMap<String, Vec<proto::StateFrame>>,
    /// State frames received (applied or skipped), and of those full snapshots.
    pub frames_received: usize,
    pub full_snapshots: usize,
    /// The last numbered server message received (`ServerEnvelope.first_seq`); `None`
    /// until the first one when the starting point is unknown. A gap or a repeat in
    /// the numbers fails the test.
    pub received_seq: Option<u64>,
}

impl TestClient {
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_with(server, "", &[]).await.expect("upgrade")
    }

    pub async fn connect_over(server: &TestServer, transport: Transport) -> Self {
        match transport {
            Transport::WebSocket => Self::connect(server).await,
            Transport::Quic => Self::connect_quic(server, "", "").await.expect("QUIC session"),
        }
    }

    /// Resumes a session over `transport`, claiming every message already arrived
    /// (nothing is sent again).
    pub async fn resume_over(server: &TestServer, transport: Transport, resume_token: &str) -> Result<Self, u16> {
        Self::resume_after(server, transport, resume_token, u64::MAX).await
    }

    /// Resumes a session over `transport` after receiving the numbered messages up to
    /// `received`: the server sends the later ones again.
    pub async fn resume_after(
        server: &TestServer,
        transport: Transport,
        resume_token: &str,
        received: u64,
    ) -> Result<Self, u16> {
        let query = format!("resume={resume_token}&received={received}");
        // Check the numbers from `received` on (see `absorb`).
        let from = (received != u64::MAX).then_some(received);
        let conn = match transport {
            Transport::WebSocket => Self::upgrade(server, &query, &[]).await?,
            Transport::Quic => Conn::Quic(Box::new(
                QuicConn::open(server, server.quic_addr, "", resume_token, received).await,
            )),
        };
        Self::welcomed(conn, from).await.map_err(|(code, _)| code)
    }

    /// Connects over QUIC with a token and resume token (empty: none); a refused
    /// session returns the close code and reason.
    pub async fn connect_quic(server: &TestServer, token: &str, resume: &str) -> Result<Self, (u16, String)> {
        Self::connect_quic_via(server, server.quic_addr, token, resume).await
    }

    pub async fn connect_quic_via(
        server: &TestServer,
        via: SocketAddr,
        token: &str,
        resume: &str,
    ) -> Result<Self, (u16, String)> {
        let conn = Conn::Quic(Box::new(QuicConn::open(server, via, token, resume, u64::MAX).await));
        Self::welcomed(conn, None).await
    }

    /// Connects with a query string (`token=...`, `resume=...`) and extra request
    /// headers; a refused upgrade returns its HTTP status, a session closed at once
    /// its close code.
    pub async fn connect_with(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
        let conn = Self::upgrade(server, query, headers).await?;
        // A session refused after the upgrade (4504 for an unknown resume token)
        // returns its close code.
        Self::welcomed(conn, None).await.map_err(|(code, _)| code)
    }

    /// The WebSocket upgrade; a refused one returns its HTTP status.
    async fn upgrade(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Result<Conn, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let tls = tls_connect(server).await;
        let url = format!("wss://localhost:{}/ws?{query}", server.addr.port());
        let mut request = url.into_client_request().unwrap();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            request
                .headers_mut()
                .append(name, HeaderValue::from_str(value).unwrap());
        }
        let ws = match tokio_tungstenite::client_async(request, tls).await {
            Ok((ws, _)) => ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => return Err(response.status().as_u16()),
            Err(e) => panic!("upgrade failed: {e}"),
        };
        Ok(Conn::WebSocket(Box::new(ws)))
    }

    /// Waits for `Welcome`; a close instead returns its code and reason.
    /// Waits for the `Welcome`; `received`: the last numbered message of the session
    /// already received, if known (the numbers are checked from there).
    async fn welcomed(mut conn: Conn, received: Option<u64>) -> Result<Self, (u16, String)> {
        let bytes = match conn.recv(WAIT).await.expect("Welcome or a close within the wait time") {
            Incoming::Envelope(bytes) => bytes,
            Incoming::Closed(code, reason) => return Err((code, reason)),
            Incoming::Ended(e) => panic!("connection ended before Welcome: {e}"),
        };
        let mut client = Self {
            conn,
            pending: VecDeque::new(),
            mirrors: HashMap::new(),
            welcome: proto::Welcome::default(),
            next_request: 0,
            seqs: HashMap::new(),
            frames: HashMap::new(),
            frames_received: 0,
            full_snapshots: 0,
            received_seq: received,
        };
        client.absorb(&bytes);
        client.welcome = client
            .until(|k| match k {
                Kind::Welcome(w) => Some(w.clone()),
                _ => None,
            })
            .await;
        Ok(client)
    }

    /// Connects without waiting for `Welcome` (for connections closed at once).
    pub async fn connect_raw(server: &TestServer, query: &str) -> WebSocketStream<TlsStream<TcpStream>> {
        let tls = tls_connect(server).await;
        let url = format!("wss://localhost:{}/ws?{query}", server.addr.port());
        tokio_tungstenite::client_async(url, tls).await.expect("upgrade").0
    }

    pub fn transport(&self) -> Transport {
        match self.conn {
            Conn::WebSocket(_) => Transport::WebSocket,
            Conn::Quic(_) => Transport::Quic,
        }
    }

    pub async fn send(&mut self, kinds: Vec<client_message::Kind>) {
        let envelope = ClientEnvelope {
            messages: kinds.into_iter().map(|k| ClientMessage { kind: Some(k) }).collect(),
        };
        self.conn.send_bytes(&envelope.encode_to_vec()).await.expect("send");
    }

    /// Sends a raw WebSocket message (WebSocket only).
    pub async fn send_raw(&mut self, message: Message) {
        let Conn::WebSocket(ws) = &mut self.conn else {
            panic!("send_raw is for WebSocket clients");
        };
        ws.send(message).await.expect("send");
    }

    /// Closes normally (1000).
    pub async fn close_normally(self) {
        match self.conn {
            Conn::WebSocket(mut ws) => ws.as_mut().close(None).await.unwrap(),
            Conn::Quic(q) => {
                q.conn.close(1000u32.into(), b"bye");
                let _ = tokio::time::timeout(WAIT, q.endpoint.wait_idle()).await;
            }
        }
    }

    pub fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// The next server message; state frames are applied to the room's mirror first
    /// (a desync fails the test). Over QUIC, frames arrive unordered and each applied
    /// one is acknowledged.
    pub async fn next(&mut self) -> ServerMessage {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return m;
            }
            match self.conn.recv(WAIT).await.expect("a message within the wait time") {
                Incoming::Envelope(bytes) => self.absorb(&bytes),
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// Queues an envelope's messages, applying state frames on the way and checking
    /// the numbers of the others.
    fn absorb(&mut self, bytes: &[u8]) {
        let envelope = decode_server(bytes).expect("server envelope decodes");
        let mut seq = envelope.first_seq;
        for m in envelope.messages {
            match &m.kind {
                Some(Kind::State(frame)) => self.state(frame),
                // A new session numbers from 1.
                Some(Kind::Welcome(w)) if !w.resumed => self.received_seq = Some(0),
                Some(Kind::Welcome(_)) => {}
                _ if seq != 0 => {
                    if let Some(last) = self.received_seq {
                        assert_eq!(seq, last + 1, "server messages numbered without gap or repeat");
                    }
                    self.received_seq = Some(seq);
                    seq += 1;
                }
                _ => {}
            }
            self.pending.push_back(m);
        }
    }

    fn state(&mut self, frame: &proto::StateFrame) {
        self.frames_received += 1;
        self.full_snapshots += usize::from(frame.baseline_tick == 0);
        let mirror = self.mirrors.entry(frame.room.clone()).or_default();
        let applied = match &mut self.conn {
            Conn::WebSocket(_) => mirror.apply(frame).map(|()| true),
            Conn::Quic(q) => {
                let applied = mirror.apply_unordered(frame);
                if let Ok(true) = applied {
                    let ack = ClientEnvelope {
                        messages: vec![ClientMessage {
                            kind: Some(client_message::Kind::Ack(proto::Ack {
                                room: frame.room.clone(),
                                tick: frame.tick,
                            })),
                        }],
                    };
                    let _ = q.conn.send_datagram(ack.encode_to_vec().into());
                }
                applied
            }
        };
        if applied.expect("state frame applies to the mirror") {
            self.frames.entry(frame.room.clone()).or_default().push(frame.clone());
        }
    }

    /// Reads until `pick` returns something (messages passed over are dropped); fails
    /// the test after twice the wait time even if other messages keep arriving.
    pub async fn until<T>(&mut self, mut pick: impl FnMut(&Kind) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + 2 * WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the expected message never came"
            );
            let message = self.next().await;
            if let Some(t) = message.kind.as_ref().and_then(&mut pick) {
                return t;
            }
        }
    }

    /// Reads until `n` more state frames of `room` were applied.
    pub async fn frames_in(&mut self, room: &str, n: usize) {
        let start = self.frames.get(room).map_or(0, Vec::len);
        while self.frames.get(room).map_or(0, Vec::len) < start + n {
            self.next().await;
        }
    }

    pub async fn join(&mut self, room: &str, room_type: &str) -> proto::Joined {
        let request_id = self.request_id();
        self.send(vec![client_message::Kind::Join(proto::JoinRoom {
            request_id,
            room: room.into(),
            room_type: room_type.into(),
        })])
        .await;
        self.until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(j.clone()),
            Kind::Error(e) if e.request_id == request_id => panic!("join refused: {e:?}"),
            _ => None,
        })
        .await
    }

    /// Sends an input with the next sequence number of that room; returns the seq.
    pub async fn input(&mut self, room: &str, payload: proto::input::Payload) -> u64 {
        let seq = self.seqs.get(room).copied().unwrap_or_default() + 1;
        self.input_with_seq(room, seq, payload).await
    }

    /// Sends an input with an explicit sequence number; returns it.
    pub async fn input_with_seq(&mut self, room: &str, seq: u64, payload: proto::input::Payload) -> u64 {
        self.seqs.insert(room.into(), seq);
        self.send(vec![client_message::Kind::Input(proto::Input {
            room: room.into(),
            seq,
            payload: Some(payload),
        })])
        .await;
        seq
    }

    /// Reads until the room's mirror reports input `seq` applied; an `Error` on the
    /// way fails the test.
    pub async fn applied(&mut self, room: &str, seq: u64) {
        let deadline = tokio::time::Instant::now() + 2 * WAIT;
        while self.mirrors.get(room).is_none_or(|m| m.last_input_seq() < seq) {
            assert!(tokio::time::Instant::now() < deadline, "input {seq} never applied");
            if let Some(Kind::Error(e)) = self.next().await.kind {
                panic!("error while waiting for input {seq}: {e:?}");
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason (the
    /// WebSocket close frame, or the QUIC application close).
    pub async fn close_frame(&mut self) -> (u16, String) {
        loop {
            match self.conn.recv(WAIT).await.expect("a close within the wait time") {
                Incoming::Closed(code, reason) => return (code, reason),
                Incoming::Envelope(_) => continue,
                Incoming::Ended(e) => panic!("connection ended without a close code: {e}"),
            }
        }
    }
}
