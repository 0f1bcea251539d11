//! The background task behind a [`crate::Client`]: connects, runs one connection at a
//! time, and reconnects with backoff, resuming the session when the server kept it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use rustls_pki_types::ServerName;
use tickrelay::clock::unix_micros;
use tickrelay::error::reconnect_allowed;
use tickrelay::frame::decode_server;
use tickrelay::limits::TokenBucket;
use tickrelay::mirror::StateMirror;
use tickrelay::proto::{self, ClientEnvelope, ClientMessage, client_message::Kind as Out, server_message::Kind as In};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::{ClientConfig, ClientError, Command, Event, Shared};

type Ws = WebSocketStream<TlsStream<TcpStream>>;
type Reply = oneshot::Sender<Result<proto::Response, proto::Error>>;

/// Where to connect.
pub(crate) struct Target {
    host: String,
    authority: String,
    url: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::Url(url.to_string());
        let rest = url.strip_prefix("wss://").ok_or_else(bad)?;
        let authority = rest
            .split(['/', '?'])
            .next()
            .filter(|a| !a.is_empty())
            .ok_or_else(bad)?;
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => authority,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else {
            format!("{authority}:443")
        };
        Ok(Self {
            host: host.to_string(),
            authority,
            url: url.to_string(),
        })
    }
}

struct RoomState {
    room_type: String,
    /// Whether the current server session knows this member is in the room.
    joined: bool,
    next_seq: u64,
    unacked: VecDeque<(u64, proto::input::Payload)>,
}

/// How a connection ended.
enum End {
    /// Reconnect (after backoff unless `now`).
    Reconnect { reason: String, now: bool },
    /// Stop the client.
    Stop,
}

/// Why a connection attempt failed, and whether to keep trying.
struct Failure {
    reason: String,
    fatal: bool,
}

struct Driver {
    config: ClientConfig,
    target: Target,
    tls: Arc<rustls::ClientConfig>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    rooms: BTreeMap<String, RoomState>,
    /// Non-input messages sent while disconnected, in order.
    buffer: VecDeque<Out>,
    requests: HashMap<u64, Reply>,
    next_request: u64,
    /// (session id, resume token) of the last session.
    session: Option<(u64, String)>,
    connected_before: bool,
    /// When a full snapshot was last requested, per room.
    resync_asked: HashMap<String, Instant>,
    /// Messages waiting to be sent on the live connection, paced to the server's
    /// announced rate limits so that a replay after a reconnect is never refused.
    queue: VecDeque<Out>,
    pacer: TokenBucket,
    /// Most messages per envelope (the server's burst).
    max_batch: u64,
    rng: fastrand::Rng,
}

pub(crate) async fn run(
    config: ClientConfig,
    target: Target,
    tls: Arc<rustls::ClientConfig>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
) {
    let mut d = Driver {
        config,
        target,
        tls,
        commands,
        events,
        shared,
        rooms: BTreeMap::new(),
        buffer: VecDeque::new(),
        requests: HashMap::new(),
        next_request: 0,
        session: None,
        connected_before: false,
        resync_asked: HashMap::new(),
        queue: VecDeque::new(),
        pacer: TokenBucket::new(40.0, 80.0, std::time::Instant::now()),
        max_batch: 80,
        rng: fastrand::Rng::new(),
    };
    let mut attempt = 0u32;
    loop {
        let reason = match d.connect().await {
            Ok(ws) => {
                attempt = 0;
                match d.serve(ws).await {
                    End::Stop => return,
                    End::Reconnect { now: true, .. } => continue,
                    End::Reconnect { reason, .. } => reason,
                }
            }
            Err(failure) if failure.fatal => {
                d.emit(Event::GaveUp {
                    attempts: attempt + 1,
                    reason: failure.reason,
                })
                .await;
                return;
            }
            Err(failure) => failure.reason,
        };
        attempt += 1;
        if !d.config.backoff.allows(attempt) {
            d.emit(Event::GaveUp {
                attempts: attempt,
                reason,
            })
            .await;
            return;
        }
        let delay = d.config.backoff.delay(attempt, &mut d.rng);
        d.emit(Event::Reconnecting { attempt, delay }).await;
        if !d.wait_offline(delay).await {
            return;
        }
    }
}

fn envelope(kinds: impl IntoIterator<Item = Out>) -> Message {
    let messages = kinds.into_iter().map(|k| ClientMessage { kind: Some(k) }).collect();
    Message::Binary(ClientEnvelope { messages }.encode_to_vec().into())
}

impl Driver {
    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    async fn connect(&mut self) -> Result<Ws, Failure> {
        let retry = |reason: String| Failure { reason, fatal: false };
        let tcp = TcpStream::connect(&self.target.authority)
            .await
            .map_err(|e| retry(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.target.host.clone()).map_err(|e| Failure {
            reason: format!("server name: {e}"),
            fatal: true,
        })?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| retry(format!("TLS: {e}")))?;
        let mut url = self.target.url.clone();
        if let Some((_, token)) = &self.session {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("resume=");
            url.push_str(token);
        }
        let mut request = url.into_client_request().map_err(|e| Failure {
            reason: e.to_string(),
            fatal: true,
        })?;
        if let Some(token) = &self.config.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| Failure {
                reason: format!("token: {e}"),
                fatal: true,
            })?;
            request.headers_mut().insert("authorization", value);
        }
        match tokio_tungstenite::client_async(request, tls).await {
            Ok((ws, _)) => Ok(ws),
            Err(WsError::Http(response)) => {
                let status = response.status().as_u16();
                // Refused for who we are (401, 403): retrying cannot help.
                Err(Failure {
                    reason: format!("upgrade refused with HTTP {status}"),
                    fatal: matches!(status, 400 | 401 | 403 | 404),
                })
            }
            Err(e) => Err(retry(format!("upgrade: {e}"))),
        }
    }

    /// Handles commands while waiting to reconnect. Returns false if the client
    /// should stop.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return false,
                    Some(command) => {
                        if let Some(out) = self.command(command) {
                            self.buffer_offline(out);
                        }
                    }
                },
            }
        }
    }

    fn buffer_offline(&mut self, out: Out) {
        // Joins and inputs are restored from `rooms` (joins, unacknowledged inputs)
        // when the connection is up; buffering them too would send them twice.
        if matches!(out, Out::Join(_) | Out::Input(_)) {
            return;
        }
        if self.buffer.len() >= self.config.buffer_limit {
            self.buffer.pop_front();
        }
        self.buffer.push_back(out);
    }

    /// Applies a command to the local state; returns the message to send, if any.
    /// Inputs are not returned when offline-buffered: they are replayed from
    /// `unacked`.
    fn command(&mut self, command: Command) -> Option<Out> {
        match command {
            Command::Join { room, room_type } => {
                let state = self.rooms.entry(room.clone()).or_insert(RoomState {
                    room_type: room_type.clone(),
                    joined: false,
                    next_seq: 0,
                    unacked: VecDeque::new(),
                });
                state.joined = true;
                // The join's full snapshot goes to a fresh mirror.
                self.shared.mirrors.lock().insert(room.clone(), StateMirror::new());
                Some(self.join_message(&room, &room_type))
            }
            Command::Leave { room } => {
                self.rooms.remove(&room);
                self.shared.mirrors.lock().remove(&room);
                let request_id = self.request_id();
                Some(Out::Leave(proto::LeaveRoom { request_id, room }))
            }
            Command::Input { room, payload } => {
                let limit = self.config.unacked_input_limit;
                let state = self.rooms.get_mut(&room)?;
                state.next_seq += 1;
                if state.unacked.len() >= limit {
                    state.unacked.pop_front();
                }
                state.unacked.push_back((state.next_seq, payload.clone()));
                Some(Out::Input(proto::Input {
                    room,
                    seq: state.next_seq,
                    payload: Some(payload),
                }))
            }
            Command::Event(event) => Some(Out::Event(event)),
            Command::Request { kind, reply } => {
                let request_id = self.request_id();
                self.requests.insert(request_id, reply);
                Some(Out::Request(proto::Request {
                    request_id,
                    kind: Some(kind),
                }))
            }
            Command::SetToken(token) => {
                self.config.token = Some(token.clone());
                let request_id = self.request_id();
                Some(Out::RefreshToken(proto::RefreshToken { request_id, token }))
            }
            Command::DropConnection | Command::Close => None,
        }
    }

    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    fn join_message(&mut self, room: &str, room_type: &str) -> Out {
        let request_id = self.request_id();
        Out::Join(proto::JoinRoom {
            request_id,
            room: room.into(),
            room_type: room_type.into(),
        })
    }

    /// Runs one connection until it ends.
    async fn serve(&mut self, ws: Ws) -> End {
        let (mut sink, mut stream) = ws.split();
        let mut ping = tokio::time::interval(self.config.ping_interval);
        let mut last_inbound = Instant::now();
        let mut welcomed = false;
        self.queue.clear();
        loop {
            let quiet = last_inbound + self.config.quiet_timeout;
            let pace = Instant::now() + self.pacer.wait_for_one(std::time::Instant::now());
            let outcome = tokio::select! {
                _ = tokio::time::sleep_until(pace), if welcomed && !self.queue.is_empty() => {
                    self.flush(&mut sink).await
                }
                _ = tokio::time::sleep_until(quiet) => return End::Reconnect {
                    reason: "server went quiet".into(),
                    now: false,
                },
                _ = ping.tick(), if welcomed => {
                    self.queue.push_back(Out::Ping(proto::Ping { nonce: 0, sent_time_us: unix_micros() }));
                    self.flush(&mut sink).await
                }
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => {
                        let frame = CloseFrame { code: 1000.into(), reason: "client closing".into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        let _ = sink.close().await;
                        return End::Stop;
                    }
                    Some(Command::DropConnection) => return End::Reconnect {
                        reason: "connection dropped by the application".into(),
                        now: false,
                    },
                    Some(command) => match self.command(command) {
                        Some(out) if welcomed => {
                            self.queue.push_back(out);
                            self.flush(&mut sink).await
                        }
                        Some(out) => { self.buffer_offline(out); Ok(()) }
                        None => Ok(()),
                    },
                },
                inbound = stream.next() => {
                    last_inbound = Instant::now();
                    match self.inbound(inbound, &mut sink, &mut welcomed).await {
                        Ok(None) => Ok(()),
                        Ok(Some(end)) => return end,
                        Err(e) => Err(e),
                    }
                }
            };
            if let Err(e) = outcome {
                return self.lost(e.to_string()).await;
            }
        }
    }

    async fn lost(&mut self, reason: String) -> End {
        self.emit(Event::Disconnected {
            code: 1006,
            reason: reason.clone(),
            will_reconnect: true,
        })
        .await;
        End::Reconnect { reason, now: false }
    }

    async fn inbound(
        &mut self,
        inbound: Option<Result<Message, WsError>>,
        sink: &mut SplitSink<Ws, Message>,
        welcomed: &mut bool,
    ) -> Result<Option<End>, WsError> {
        let message = match inbound {
            None => return Ok(Some(self.lost("connection closed".into()).await)),
            Some(Err(e)) => return Ok(Some(self.lost(e.to_string()).await)),
            Some(Ok(message)) => message,
        };
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                return Ok(Some(self.closed_by_server(code, reason).await));
            }
            _ => return Ok(None),
        };
        let stats = self.shared.clone();
        let stats = &stats.stats;
        stats.messages_in.fetch_add(1, Ordering::Relaxed);
        stats.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let received_us = unix_micros();
        let envelope = match decode_server(&bytes) {
            Ok(envelope) => envelope,
            Err(e) => return Ok(Some(self.lost(format!("undecodable server message: {e}")).await)),
        };
        for message in envelope.messages {
            let Some(kind) = message.kind else { continue };
            match kind {
                In::Welcome(welcome) => {
                    *welcomed = true;
                    self.welcomed(welcome, sink).await?;
                }
                In::State(frame) => self.state(frame, received_us, sink).await?,
                In::Joined(joined) => self.emit(Event::Joined(joined)).await,
                In::Left(left) => {
                    if left.reason != 0 {
                        // The server removed us (room closed): forget the room.
                        self.rooms.remove(&left.room);
                        self.shared.mirrors.lock().remove(&left.room);
                    }
                    self.emit(Event::Left(left)).await;
                }
                In::Presence(p) => self.emit(Event::Presence(p)).await,
                In::Event(e) => self.emit(Event::RoomEvent(e)).await,
                In::Response(response) => {
                    if let Some(reply) = self.requests.remove(&response.request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
                In::Error(error) => {
                    if let Some(reply) = self.requests.remove(&error.request_id) {
                        let _ = reply.send(Err(error.clone()));
                    }
                    self.emit(Event::Error(error)).await;
                }
                In::Pong(pong) => {
                    let rtt = received_us.saturating_sub(pong.ping_sent_time_us);
                    stats.rtt_us.store(rtt.max(1), Ordering::Relaxed);
                }
                In::Ping(ping) => {
                    self.queue.push_back(Out::Pong(proto::Pong {
                        nonce: ping.nonce,
                        ping_sent_time_us: ping.sent_time_us,
                        time_us: received_us,
                    }));
                    self.flush(sink).await?;
                }
                In::TokenRefreshed(_) => {}
            }
        }
        Ok(None)
    }

    async fn closed_by_server(&mut self, code: u16, reason: String) -> End {
        let resume_failed = code == tickrelay::error::CloseReason::ResumeFailed.code();
        if resume_failed {
            // The server no longer has our session: start a new one and rejoin.
            self.session = None;
        }
        let will_reconnect = reconnect_allowed(code);
        self.emit(Event::Disconnected {
            code,
            reason: reason.clone(),
            will_reconnect,
        })
        .await;
        if !will_reconnect {
            self.emit(Event::GaveUp {
                attempts: 0,
                reason: format!("closed by the server with {code}: {reason}"),
            })
            .await;
            return End::Stop;
        }
        End::Reconnect {
            reason,
            now: resume_failed,
        }
    }

    /// A new connection is established: restore rooms, replay inputs, flush the
    /// buffer, in that order.
    async fn welcomed(&mut self, welcome: proto::Welcome, sink: &mut SplitSink<Ws, Message>) -> Result<(), WsError> {
        let resumed = welcome.resumed;
        if self.connected_before {
            self.shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            if resumed {
                self.shared.stats.resumes.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.connected_before = true;
        self.session = Some((welcome.session_id, welcome.resume_token.clone()));
        // Pace below the server's limits (a tenth of headroom for pings and timing).
        if let Some(limits) = &welcome.limits {
            let rate = f64::from(limits.messages_per_second.max(1)) * 0.9;
            let burst = f64::from(limits.message_burst.max(1)) * 0.9;
            self.pacer = TokenBucket::new(rate, burst.max(1.0), std::time::Instant::now());
            self.max_batch = burst.max(1.0) as u64;
        }
        // Never assume deltas suffice after a reconnect: every mirror waits for a
        // full snapshot (the server sends one on resume and on join).
        self.resync_asked.clear();
        {
            let mut mirrors = self.shared.mirrors.lock();
            mirrors.clear();
            for room in self.rooms.keys() {
                mirrors.insert(room.clone(), StateMirror::new());
            }
        }
        let mut out = Vec::new();
        let rooms: Vec<(String, String)> = self
            .rooms
            .iter()
            .filter(|(_, s)| !resumed || !s.joined)
            .map(|(r, s)| (r.clone(), s.room_type.clone()))
            .collect();
        for (room, room_type) in rooms {
            out.push(self.join_message(&room, &room_type));
        }
        for (room, state) in &mut self.rooms {
            state.joined = true;
            for (seq, payload) in &state.unacked {
                out.push(Out::Input(proto::Input {
                    room: room.clone(),
                    seq: *seq,
                    payload: Some(payload.clone()),
                }));
            }
        }
        out.extend(self.buffer.drain(..));
        self.emit(Event::Connected {
            session_id: welcome.session_id,
            user_id: welcome.user_id,
            resumed,
        })
        .await;
        self.queue.extend(out);
        self.flush(sink).await
    }

    async fn state(
        &mut self,
        frame: proto::StateFrame,
        received_us: u64,
        sink: &mut SplitSink<Ws, Message>,
    ) -> Result<(), WsError> {
        let applied = {
            let mut mirrors = self.shared.mirrors.lock();
            let Some(mirror) = mirrors.get_mut(&frame.room) else {
                return Ok(()); // a room we left
            };
            let verified = mirror.checksums_verified();
            let result = mirror.apply(&frame);
            if mirror.checksums_verified() > verified {
                self.shared.stats.checksums.fetch_add(1, Ordering::Relaxed);
            }
            result
        };
        if let Some(state) = self.rooms.get_mut(&frame.room) {
            while state
                .unacked
                .front()
                .is_some_and(|(seq, _)| *seq <= frame.last_input_seq)
            {
                state.unacked.pop_front();
            }
        }
        match applied {
            Ok(()) => {
                self.shared.stats.frames.fetch_add(1, Ordering::Relaxed);
                let event = Event::State {
                    room: frame.room,
                    tick: frame.tick,
                    full: frame.baseline_tick == 0,
                    server_time_us: frame.server_time_us,
                    received_us,
                };
                if self.events.try_send(event).is_err() {
                    self.shared.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Waiting for a snapshot: the server sends one after a join or resume; ask
            // again if it is slow to come (at most once a second).
            Err(tickrelay::mirror::Desync::AwaitingSnapshot) => {
                let due = self
                    .resync_asked
                    .get(&frame.room)
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due {
                    self.request_resync(&frame.room, sink).await?;
                }
            }
            Err(error) => {
                self.shared.stats.desyncs.fetch_add(1, Ordering::Relaxed);
                self.request_resync(&frame.room, sink).await?;
                self.emit(Event::Desync {
                    room: frame.room,
                    error,
                })
                .await;
            }
        }
        Ok(())
    }
}

impl Driver {
    async fn request_resync(&mut self, room: &str, sink: &mut SplitSink<Ws, Message>) -> Result<(), WsError> {
        self.resync_asked.insert(room.to_string(), Instant::now());
        let request_id = self.request_id();
        let resync = Out::Request(proto::Request {
            request_id,
            kind: Some(proto::request::Kind::Resync(proto::Resync { room: room.into() })),
        });
        self.queue.push_back(resync);
        self.flush(sink).await
    }

    /// Sends what the pacer allows now, as one envelope of at most `max_batch`.
    async fn flush(&mut self, sink: &mut SplitSink<Ws, Message>) -> Result<(), WsError> {
        let wanted = (self.queue.len() as u64).min(self.max_batch);
        let n = self.pacer.take_up_to(wanted, std::time::Instant::now()) as usize;
        if n == 0 {
            return Ok(());
        }
        let batch: Vec<Out> = self.queue.drain(..n).collect();
        send(sink, batch).await
    }
}

async fn send(sink: &mut SplitSink<Ws, Message>, out: impl IntoIterator<Item = Out>) -> Result<(), WsError> {
    sink.send(envelope(out)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("wss://127.0.0.1:7443/ws").unwrap();
        assert_eq!((t.host.as_str(), t.authority.as_str()), ("127.0.0.1", "127.0.0.1:7443"));
        let t = Target::parse("wss://relay.example.com/ws?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("relay.example.com", "relay.example.com:443")
        );
        assert!(Target::parse("ws://plain/ws").is_err());
        assert!(Target::parse("wss:///ws").is_err());
    }
}
