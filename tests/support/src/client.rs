//! A raw protocol client of the test server, over WebSocket-over-TLS or QUIC: it
//! mirrors every room it is in (a desync fails the test) and checks that numbered
//! server messages arrive without gap or repeat.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tickrelay::frame::decode_server;
use tickrelay::mirror::StateMirror;
use tickrelay::proto::{self, ClientEnvelope, ClientMessage, ServerMessage, client_message, server_message::Kind};
use tickrelay::state::Schema;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::quic::QuicConn;
use crate::{TestServer, Transport, WAIT};

/// A connection to the server.
pub enum Conn {
    /// WebSocket over TLS.
    WebSocket(Box<WebSocketStream<TlsStream<TcpStream>>>),
    /// QUIC.
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
            Conn::Quic(q) => q.recv().await,
        }
    }

    /// Sends one binary message (WebSocket) or control-stream frame (QUIC).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Conn::WebSocket(ws) => ws
                .send(Message::Binary(Bytes::copy_from_slice(bytes)))
                .await
                .map_err(|e| e.to_string()),
            Conn::Quic(q) => q.send_frame(bytes).await,
        }
    }
}

/// A session of the test server.
pub struct TestClient {
    /// The connection.
    pub conn: Conn,
    pending: VecDeque<ServerMessage>,
    /// The state of every room joined, from the state frames applied.
    pub mirrors: HashMap<String, StateMirror>,
    /// The session's `Welcome`.
    pub welcome: proto::Welcome,
    next_request: u64,
    seqs: HashMap<String, u64>,
    /// State frames applied, per room.
    pub frames: HashMap<String, Vec<proto::StateFrame>>,
    /// State frames received (applied or skipped).
    pub frames_received: usize,
    /// Full snapshots among the state frames received.
    pub full_snapshots: usize,
    /// The last numbered server message received (`ServerEnvelope.first_seq`); `None`
    /// until the first one when the starting point is unknown. A gap or a repeat in
    /// the numbers fails the test.
    pub received_seq: Option<u64>,
}

impl TestClient {
    /// Connects over WebSocket.
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_with(server, "", &[]).await.expect("upgrade")
    }

    /// Connects over `transport`.
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
        // Check the numbers from `received` on (see `absorb`).
        let from = (received != u64::MAX).then_some(received);
        Self::resume_numbered_from(server, transport, resume_token, received, from).await
    }

    /// As [`Self::resume_after`], when the server may no longer hold every message
    /// after `received`: the numbers are checked from the first one that comes.
    pub async fn resume_after_loss(
        server: &TestServer,
        transport: Transport,
        resume_token: &str,
        received: u64,
    ) -> Result<Self, u16> {
        Self::resume_numbered_from(server, transport, resume_token, received, None).await
    }

    async fn resume_numbered_from(
        server: &TestServer,
        transport: Transport,
        resume_token: &str,
        received: u64,
        from: Option<u64>,
    ) -> Result<Self, u16> {
        let query = format!("resume={resume_token}&received={received}");
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

    /// Connects over QUIC through `via` (a forwarder in front of the server).
    pub async fn connect_quic_via(
        server: &TestServer,
        via: SocketAddr,
        token: &str,
        resume: &str,
    ) -> Result<Self, (u16, String)> {
        let conn = Conn::Quic(Box::new(QuicConn::open(server, via, token, resume, u64::MAX).await));
        Self::welcomed(conn, None).await
    }

    /// Connects over QUIC, anonymously, as a client on a slow path: it reads its
    /// control stream at `bytes_per_second`, through a receive window of 256 KiB, so a
    /// large message takes long to reach it.
    pub async fn connect_quic_slowly(server: &TestServer, bytes_per_second: f64) -> Self {
        let mut config = crate::quic::client_config(server);
        let mut transport = quinn::TransportConfig::default();
        transport.stream_receive_window((256u32 * 1024).into());
        config.transport_config(std::sync::Arc::new(transport));
        let mut conn = QuicConn::open_with(config, server.quic_addr, "", "", u64::MAX).await;
        conn.read_rate = Some(bytes_per_second);
        Self::welcomed(Conn::Quic(Box::new(conn)), None).await.expect("Welcome")
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

    /// Connects like [`Self::connect_with`] and expects the server to upgrade, then
    /// close before any `Welcome`; returns the close code and reason.
    pub async fn refused_after_upgrade(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let conn = Self::upgrade(server, query, headers)
            .await
            .unwrap_or_else(|status| panic!("HTTP {status} instead of an upgrade"));
        match Self::welcomed(conn, None).await {
            Err(close) => close,
            Ok(_) => panic!("welcomed instead of refused"),
        }
    }

    /// The WebSocket upgrade; a refused one returns its HTTP status.
    async fn upgrade(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Result<Conn, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let tls = server.tls_connect().await;
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

    /// Waits for the `Welcome` (a close instead returns its code and reason);
    /// `received`: the last numbered message of the session already received, if
    /// known (the numbers are checked from there).
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

    /// Connects over WebSocket with a TCP receive buffer of `bytes` (the kernel rounds
    /// it): the server's writes back up as soon as this client stops reading.
    pub async fn connect_with_receive_buffer(server: &TestServer, bytes: u32) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let tls = server.tls_over(socket.connect(server.addr).await.unwrap()).await;
        let url = format!("wss://localhost:{}/ws", server.addr.port());
        let (ws, _) = tokio_tungstenite::client_async(url, tls).await.expect("upgrade");
        Self::welcomed(Conn::WebSocket(Box::new(ws)), None)
            .await
            .expect("Welcome")
    }

    /// Connects without waiting for `Welcome` (for connections closed at once).
    pub async fn connect_raw(server: &TestServer, query: &str) -> WebSocketStream<TlsStream<TcpStream>> {
        let tls = server.tls_connect().await;
        let url = format!("wss://localhost:{}/ws?{query}", server.addr.port());
        tokio_tungstenite::client_async(url, tls).await.expect("upgrade").0
    }

    /// The transport of the connection.
    pub fn transport(&self) -> Transport {
        match self.conn {
            Conn::WebSocket(_) => Transport::WebSocket,
            Conn::Quic(_) => Transport::Quic,
        }
    }

    /// Sends `kinds` in one envelope.
    pub async fn send(&mut self, kinds: Vec<client_message::Kind>) {
        let envelope = ClientEnvelope {
            messages: kinds.into_iter().map(|k| ClientMessage { kind: Some(k) }).collect(),
            first_event_seq: 0,
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

    /// Finishes the control stream without closing the connection (QUIC only).
    pub fn finish_quic_stream(&mut self) {
        let Conn::Quic(q) = &mut self.conn else {
            panic!("finish_quic_stream is for QUIC clients");
        };
        q.send.finish().expect("the stream was open");
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

    /// A fresh request id.
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
                Some(Kind::Joined(joined)) => {
                    // The join's full snapshot goes to a mirror that knows the room's
                    // declared kinds. (`Joined` is numbered: fall through to the check.)
                    let schema = Schema::from_proto(&joined.schema).expect("the room's schema decodes");
                    self.mirrors
                        .insert(joined.room.clone(), StateMirror::with_schema(schema.into()));
                    self.check_numbering(&mut seq);
                }
                // A new session numbers from 1.
                Some(Kind::Welcome(w)) if !w.resumed => self.received_seq = Some(0),
                Some(Kind::Welcome(_)) => {}
                _ => self.check_numbering(&mut seq),
            }
            self.pending.push_back(m);
        }
    }

    /// A numbered message: its number follows the last one's.
    fn check_numbering(&mut self, seq: &mut u64) {
        if *seq == 0 {
            return;
        }
        if let Some(last) = self.received_seq {
            assert_eq!(*seq, last + 1, "server messages numbered without gap or repeat");
        }
        self.received_seq = Some(*seq);
        *seq += 1;
    }

    fn state(&mut self, frame: &proto::StateFrame) {
        self.frames_received += 1;
        self.full_snapshots += usize::from(frame.baseline_tick == 0);
        if !frame.packed.is_empty() && !self.mirrors.contains_key(&frame.room) {
            // A QUIC datagram that overtook the room's `Joined`: its packed blocks
            // cannot be decoded before the schema arrives. Not acknowledged, so the
            // server sends the full snapshot again.
            assert!(
                matches!(self.conn, Conn::Quic(_)),
                "a frame before its Joined over WebSocket"
            );
            return;
        }
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
                        first_event_seq: 0,
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

    /// Reads until `Left` from `room`: its reason code and message.
    pub async fn left(&mut self, room: &str) -> (i32, String) {
        self.until(|k| match k {
            Kind::Left(l) if l.room == room => Some((l.reason, l.message.clone())),
            _ => None,
        })
        .await
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

    /// Lists every room, `limit` per page, checking that pages hold at most the
    /// server's cap of 500.
    pub async fn list_rooms(&mut self, limit: u32) -> Vec<proto::RoomInfo> {
        self.list_rooms_where(proto::ListRooms {
            limit,
            ..Default::default()
        })
        .await
    }

    /// Lists every room `query` selects (its `after` ignored), page by page.
    pub async fn list_rooms_where(&mut self, query: proto::ListRooms) -> Vec<proto::RoomInfo> {
        use proto::{request, response};
        let (mut listed, mut after) = (Vec::<proto::RoomInfo>::new(), String::new());
        loop {
            let request_id = self.request_id();
            let list = proto::ListRooms {
                after: after.clone(),
                ..query.clone()
            };
            self.send(vec![client_message::Kind::Request(proto::Request {
                request_id,
                kind: Some(request::Kind::ListRooms(list)),
            })])
            .await;
            let page = self
                .until(|k| match k {
                    Kind::Response(proto::Response {
                        request_id: id,
                        kind: Some(response::Kind::Rooms(page)),
                    }) if *id == request_id => Some(page.clone()),
                    Kind::Error(e) if e.request_id == request_id => panic!("listing refused: {e:?}"),
                    _ => None,
                })
                .await;
            assert!(page.rooms.len() <= 500, "the server caps a page at 500 rooms");
            listed.extend(page.rooms);
            if !page.more {
                return listed;
            }
            after = page.next_after;
        }
    }

    /// Reads until `n` more state frames of `room` were applied.
    pub async fn frames_in(&mut self, room: &str, n: usize) {
        let start = self.frames.get(room).map_or(0, Vec::len);
        while self.frames.get(room).map_or(0, Vec::len) < start + n {
            self.next().await;
        }
    }

    /// Sends a join of `room` (created as `room_type` if it does not exist),
    /// presenting `seat` (a redirect's seat ticket; empty: none); returns its request
    /// id.
    pub async fn send_join(&mut self, room: &str, room_type: &str, seat: &str) -> u64 {
        let request_id = self.request_id();
        self.send(vec![client_message::Kind::Join(proto::JoinRoom {
            request_id,
            room: room.into(),
            room_type: room_type.into(),
            seat: seat.into(),
            ..Default::default()
        })])
        .await;
        request_id
    }

    /// The next room event, skipping the messages before it.
    pub async fn next_event(&mut self) -> proto::RoomEvent {
        self.until(|k| match k {
            Kind::Event(e) => Some(e.clone()),
            _ => None,
        })
        .await
    }

    /// Joins `room` (creating it as `room_type`); a refusal fails the test.
    pub async fn join(&mut self, room: &str, room_type: &str) -> proto::Joined {
        let request_id = self.send_join(room, room_type, "").await;
        self.until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(j.clone()),
            Kind::Error(e) if e.request_id == request_id => panic!("join refused: {e:?}"),
            _ => None,
        })
        .await
    }

    /// Sends `quick` (its request id assigned here) and waits for its answer.
    pub async fn quick_join(&mut self, quick: proto::QuickJoin) -> Result<proto::Joined, proto::Error> {
        let request_id = self.request_id();
        let quick = proto::QuickJoin { request_id, ..quick };
        self.send(vec![client_message::Kind::QuickJoin(quick)]).await;
        self.until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(Ok(j.clone())),
            Kind::Error(e) if e.request_id == request_id => Some(Err(e.clone())),
            _ => None,
        })
        .await
    }

    /// Sends `update` and waits for the room's listing or the refusal.
    pub async fn update_room(&mut self, update: proto::UpdateRoom) -> Result<proto::RoomInfo, proto::Error> {
        use proto::{request, response};
        let request_id = self.request_id();
        self.send(vec![client_message::Kind::Request(proto::Request {
            request_id,
            kind: Some(request::Kind::UpdateRoom(update)),
        })])
        .await;
        self.until(|k| match k {
            Kind::Response(proto::Response {
                request_id: id,
                kind: Some(response::Kind::Room(info)),
            }) if *id == request_id => Some(Ok(info.clone())),
            Kind::Error(e) if e.request_id == request_id => Some(Err(e.clone())),
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
