//! One client session, sans IO: what to do with each inbound message, and when to
//! close. Transports (WebSocket now, QUIC later) are thin drivers around it: they feed
//! it inbound messages and write whatever appears in its [`Outbox`].
//!
//! Everything the session answers goes through the same outbox as room output, so a
//! driver has exactly one thing to drain and every write carries all that is pending.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::CloseReason;
use crate::frame::{DecodeError, decode_client, encode_message};
use crate::outbox::Outbox;
use crate::proto::{
    self, ClientMessage, ErrorCode, PROTOCOL_VERSION, client_message, request, response,
    server_message::Kind,
};
use crate::room::error_message;
use crate::sim_pool::{Command, PoolError, RoomHandle, SimPool};
use crate::state::MemberId;

/// What a driver received from the peer.
#[derive(Debug, Clone, Copy)]
pub enum Inbound<'a> {
    /// A binary message: one `ClientEnvelope`.
    Binary(&'a [u8]),
    /// A text message (not part of the protocol).
    Text,
    /// A message over the size limit (the driver refused to buffer it).
    TooBig,
}

/// Settings announced in `Welcome` and enforced by the session.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Largest inbound message in bytes.
    pub max_message_bytes: u32,
}

/// See the module documentation.
pub struct Session {
    id: MemberId,
    user_id: Arc<str>,
    outbox: Arc<Outbox>,
    pool: Arc<SimPool>,
    /// Rooms this session joined, by room id.
    rooms: HashMap<String, RoomHandle>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("rooms", &self.rooms.len())
            .finish()
    }
}

impl Session {
    /// Starts a session and queues its `Welcome`.
    pub fn new(
        id: MemberId,
        user_id: Arc<str>,
        outbox: Arc<Outbox>,
        pool: Arc<SimPool>,
        limits: &SessionLimits,
        now_us: u64,
    ) -> Self {
        let welcome = Kind::Welcome(proto::Welcome {
            protocol_version: PROTOCOL_VERSION,
            session_id: id,
            resume_token: String::new(),
            limits: Some(proto::Limits {
                max_message_bytes: limits.max_message_bytes,
                ..Default::default()
            }),
            server_time_us: now_us,
            user_id: user_id.to_string(),
            ..Default::default()
        });
        let _ = outbox.push_reliable(encode_message(welcome));
        Self {
            id,
            user_id,
            outbox,
            pool,
            rooms: HashMap::new(),
        }
    }

    /// The session id (also the member id in every room).
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// The session's outbox, for the driver to drain.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Handles one inbound message. `Err` means: close the connection with this reason.
    pub fn handle(&mut self, inbound: Inbound<'_>, now_us: u64) -> Result<(), CloseReason> {
        let bytes = match inbound {
            Inbound::Binary(bytes) => bytes,
            Inbound::Text => return Err(CloseReason::TextFrame),
            Inbound::TooBig => return Err(CloseReason::MessageTooBig),
        };
        let envelope = match decode_client(bytes) {
            Ok(envelope) => envelope,
            Err(DecodeError::Protobuf(_)) => return Err(CloseReason::Undecodable),
            Err(e) => {
                self.reply(error_message(ErrorCode::BadRequest, &e.to_string(), 0, ""));
                return Ok(());
            }
        };
        for ClientMessage { kind } in envelope.messages {
            if let Some(kind) = kind {
                self.handle_message(kind, now_us);
            }
        }
        if self.outbox.is_overflowed() {
            return Err(CloseReason::SlowConsumer);
        }
        Ok(())
    }

    fn handle_message(&mut self, kind: client_message::Kind, now_us: u64) {
        use client_message::Kind as K;
        match kind {
            K::Join(join) => self.join(join),
            K::Leave(leave) => {
                let Some(room) = self.rooms.remove(&leave.room) else {
                    return self.not_a_member(&leave.room, leave.request_id);
                };
                let command = Command::Leave {
                    room: room.key,
                    member: self.id,
                    request_id: leave.request_id,
                };
                self.send(&room, command, leave.request_id);
            }
            K::Input(input) => {
                let Some(room) = self.rooms.get(&input.room).cloned() else {
                    return self.not_a_member(&input.room, input.seq);
                };
                let Some(payload) = input.payload else {
                    let error = error_message(
                        ErrorCode::BadRequest,
                        "input without payload",
                        input.seq,
                        &input.room,
                    );
                    return self.reply(error);
                };
                let command = Command::Input {
                    room: room.key,
                    member: self.id,
                    seq: input.seq,
                    payload,
                };
                self.send(&room, command, input.seq);
            }
            K::Event(event) => {
                let Some(room) = self.rooms.get(&event.room).cloned() else {
                    return self.not_a_member(&event.room, 0);
                };
                let command = Command::Event {
                    room: room.key,
                    member: self.id,
                    event,
                };
                self.send(&room, command, 0);
            }
            K::Request(request) => self.request(request),
            K::Ping(ping) => {
                let pong = Kind::Pong(proto::Pong {
                    nonce: ping.nonce,
                    ping_sent_time_us: ping.sent_time_us,
                    time_us: now_us,
                });
                self.reply(encode_message(pong));
            }
            // Answers to server pings; liveness is tracked by the driver.
            K::Pong(_) => {}
            // Acks matter only on unreliable transports.
            K::Ack(_) => {}
            K::RefreshToken(refresh) => self.reply(error_message(
                ErrorCode::BadRequest,
                "token refresh needs JWT authentication, which this server does not use",
                refresh.request_id,
                "",
            )),
        }
    }

    fn join(&mut self, join: proto::JoinRoom) {
        if join.room.is_empty() || join.room.len() > 128 {
            let error = error_message(
                ErrorCode::BadRequest,
                "room id must be 1-128 bytes",
                join.request_id,
                &join.room,
            );
            return self.reply(error);
        }
        let room = match self.pool.get_or_create(&join.room, &join.room_type) {
            Ok(room) => room,
            Err(e) => return self.pool_error(&e, join.request_id, &join.room),
        };
        let command = Command::Join {
            room: room.key,
            member: self.id,
            user_id: self.user_id.clone(),
            outbox: self.outbox.clone(),
            request_id: join.request_id,
        };
        if self.send(&room, command, join.request_id) {
            self.rooms.insert(join.room, room);
        }
    }

    fn request(&mut self, request: proto::Request) {
        let id = request.request_id;
        match request.kind {
            Some(request::Kind::ListRooms(_)) => {
                let rooms = self.pool.list_rooms();
                let response = Kind::Response(proto::Response {
                    request_id: id,
                    kind: Some(response::Kind::Rooms(proto::RoomList { rooms })),
                });
                self.reply(encode_message(response));
            }
            Some(request::Kind::Resync(resync)) => {
                let Some(room) = self.rooms.get(&resync.room).cloned() else {
                    return self.not_a_member(&resync.room, id);
                };
                let command = Command::Resync {
                    room: room.key,
                    member: self.id,
                    request_id: id,
                };
                self.send(&room, command, id);
            }
            None => self.reply(error_message(
                ErrorCode::BadRequest,
                "request of unknown kind",
                id,
                "",
            )),
        }
    }

    /// Sends a command to a room's thread; a refusal is answered with an error.
    fn send(&mut self, room: &RoomHandle, command: Command, request_id: u64) -> bool {
        match self.pool.send(room, command) {
            Ok(()) => true,
            Err(e) => {
                self.pool_error(&e, request_id, &room.shared.id);
                false
            }
        }
    }

    fn pool_error(&self, error: &PoolError, request_id: u64, room: &str) {
        self.reply(error_message(
            error.code(),
            &error.to_string(),
            request_id,
            room,
        ));
    }

    fn not_a_member(&self, room: &str, request_id: u64) {
        self.reply(error_message(
            ErrorCode::NotAMember,
            "not a member of this room",
            request_id,
            room,
        ));
    }

    fn reply(&self, message: Bytes) {
        // Over the bound the outbox is marked overflowed; `handle` closes the session.
        let _ = self.outbox.push_reliable(message);
    }

    /// Ends the session: leaves every room. The outbox is closed first, so a room
    /// whose queue is full still evicts the member at its next tick.
    pub fn close(&mut self) {
        self.outbox.close();
        for (_, room) in self.rooms.drain() {
            let command = Command::Leave {
                room: room.key,
                member: self.id,
                request_id: 0,
            };
            let _ = self.pool.send(&room, command);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}
