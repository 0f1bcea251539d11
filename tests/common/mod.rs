//! Test harness: the real server on 127.0.0.1:0 with a generated certificate, and a
//! real WebSocket-over-TLS client that trusts exactly that certificate.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tickrelay::config::Config;
use tickrelay::frame::decode_server;
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

pub struct TestServer {
    pub addr: SocketAddr,
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
    let cert_pem = server.dev_certificate().expect("dev certificate").to_string();
    let metrics = server.metrics();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone(), Duration::from_secs(5)));
    TestServer {
        addr,
        cert_pem,
        metrics,
        shutdown,
        task: Some(task),
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// A TLS connection that trusts only the test server's certificate.
pub async fn tls_connect(server: &TestServer) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
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

pub struct TestClient {
    pub ws: WebSocketStream<TlsStream<TcpStream>>,
    pending: VecDeque<ServerMessage>,
    pub mirrors: HashMap<String, StateMirror>,
    pub welcome: proto::Welcome,
    next_request: u64,
    seqs: HashMap<String, u64>,
    /// State frames received, per room.
    pub frames: HashMap<String, Vec<proto::StateFrame>>,
}

impl TestClient {
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_with(server, "", &[]).await.expect("upgrade")
    }

    /// Connects with a query string (`token=...`, `resume=...`) and extra request
    /// headers; a refused upgrade returns its HTTP status.
    pub async fn connect_with(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
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
        let mut client = Self {
            ws,
            pending: VecDeque::new(),
            mirrors: HashMap::new(),
            welcome: proto::Welcome::default(),
            next_request: 0,
            seqs: HashMap::new(),
            frames: HashMap::new(),
        };
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

    pub async fn send(&mut self, kinds: Vec<client_message::Kind>) {
        let envelope = ClientEnvelope {
            messages: kinds.into_iter().map(|k| ClientMessage { kind: Some(k) }).collect(),
        };
        self.send_raw(Message::Binary(envelope.encode_to_vec().into())).await;
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    pub fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// The next server message; state frames are applied to the room's mirror first
    /// (a desync fails the test).
    pub async fn next(&mut self) -> ServerMessage {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return m;
            }
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait time")
                .expect("connection open")
                .expect("no connection error");
            let Message::Binary(bytes) = message else {
                panic!("unexpected message {message:?}");
            };
            for m in decode_server(&bytes).expect("server envelope decodes").messages {
                if let Some(Kind::State(frame)) = &m.kind {
                    let mirror = self.mirrors.entry(frame.room.clone()).or_default();
                    mirror.apply(frame).expect("state frame applies to the mirror");
                    self.frames.entry(frame.room.clone()).or_default().push(frame.clone());
                }
                self.pending.push_back(m);
            }
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

    /// Reads until `n` more state frames of `room` arrived.
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
        let seq = self.seqs.entry(room.into()).or_default();
        *seq += 1;
        let seq = *seq;
        self.send(vec![client_message::Kind::Input(proto::Input {
            room: room.into(),
            seq,
            payload: Some(payload),
        })])
        .await;
        seq
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn close_frame(&mut self) -> (u16, String) {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a close within the wait time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code.into(), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => panic!("close without a code"),
                Some(Ok(_)) => continue,
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    }
}
