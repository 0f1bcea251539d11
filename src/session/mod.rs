//! One client session, sans IO: what to do with each inbound message, and when to
//! close. Transports are thin drivers around it: they feed it inbound messages and
//! timer events with the time (`now`), and write whatever appears in its [`Outbox`].
//! It reaches rooms only through the [`Rooms`] trait, draws no randomness (the driver
//! passes the resume token in) and reads no clock, so every rule it enforces is
//! unit-tested on a manual clock against a fake room side.
//!
//! Everything the session answers goes through the same outbox as room output, so a
//! driver has exactly one thing to drain and every write carries all that is pending.
//!
//! - [`limits`] — token-bucket rate limits and flood detection.
//! - [`heartbeat`] — ping and timeout decisions.
//! - [`auth`] — JWT at the upgrade, token refresh, room restrictions, resume tokens.
//! - [`directory`] — what a clustered session asks of the room directory (claims,
//!   quick joins elsewhere, listings) and its answers; the cluster runs them.
//! - `joins` — joining rooms: joins, quick joins, the room cap, what waits for a claim.
//! - [`inputs`] — the common envelope (intent inputs only) read in place.

pub mod auth;
pub mod directory;
pub mod heartbeat;
pub mod inputs;
mod joins;
pub mod limits;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use rustc_hash::FxHashMap;

use crate::clock::Now;
use crate::engine::listing::{self, ListingState, Metadata};
use crate::engine::outbox::{Delivery, Left, Outbox, Replay};
use crate::engine::room::{Joiner, error_message, valid_room_id};
use crate::engine::rooms::{Command, MAX_ROOMS_PER_PAGE, PoolError, RoomFilter, RoomHandle, RoomShared, Rooms};
use crate::engine::simulation::{MAX_EVENT_KIND_BYTES, valid_event_kind};
use crate::error::CloseReason;
use crate::frame::{encode_message, validate_client};
use crate::proto::{
    self, ClientEnvelope, ClientMessage, ErrorCode, PROTOCOL_VERSION, SendEvent, client_message, input, request,
    response, server_message::Kind,
};
use crate::session::auth::{AuthError, AuthMode, Authenticator, Identity, KEYS_REFETCH};
use crate::session::directory::DirectoryOp;
use crate::session::heartbeat::{Beat, Heartbeat};
use crate::session::limits::{RateLimiter, RateLimits, Verdict};
use crate::state::MemberId;
use joins::{Membership, PendingJoin, PendingQuickJoin, Waiting};

/// What a driver received from the peer.
#[derive(Debug, Clone, Copy)]
pub enum Inbound<'a> {
    /// A binary message: one `ClientEnvelope`.
    Binary(&'a [u8]),
    /// A text message (not part of the protocol).
    Text,
    /// A message over the size limit (the driver refused to buffer it).
    TooBig,
    /// A transport-level control frame (ping, pong) of this many payload bytes: proves
    /// liveness, and counts against the rate limits like a message.
    Control(usize),
}

/// A binary message, read: most envelopes are intent inputs (and acks) only, read in
/// place (see `inputs`).
enum Read<'a> {
    InPlace(inputs::InPlace<'a>),
    Envelope(ClientEnvelope),
}

/// The largest input sequence number (and event number) accepted: 2^53 - 1, exact in
/// JavaScript.
pub const MAX_INPUT_SEQ: u64 = (1 << 53) - 1;

/// Settings announced in `Welcome` and enforced by the session.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Largest inbound message in bytes (enforced by the driver's transport).
    pub max_message_bytes: u32,
    /// Message and byte rate limits.
    pub rate: RateLimits,
    /// Ping after this long without inbound traffic.
    pub heartbeat_interval: Duration,
    /// Drop the peer if nothing arrives this long after a ping.
    pub heartbeat_timeout: Duration,
    /// How long a dropped session is held for resume.
    pub resume_grace: Duration,
    /// Rooms one session may be in at once.
    pub max_rooms_per_session: usize,
    /// Cluster mode: a session over QUIC is sent to other nodes at `quic://` URLs
    /// (the host and port of their public `wss://` URLs), not over WebSocket.
    pub quic_redirects: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024,
            rate: RateLimits::default(),
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(5),
            resume_grace: Duration::from_secs(20),
            max_rooms_per_session: 16,
            quic_redirects: false,
        }
    }
}

pub use crate::engine::room::MAX_ROOM_ID_BYTES;

/// The longest room type a join or quick join names, in bytes (the room a quick join
/// creates has an id of this type, a dash and 16 characters).
pub const MAX_ROOM_TYPE_BYTES: usize = 64;

/// A room type a client names: at most [`MAX_ROOM_TYPE_BYTES`], no control characters
/// (a quick join makes a room id of it).
pub(crate) fn check_room_type(room_type: &str) -> Result<(), String> {
    if room_type.len() > MAX_ROOM_TYPE_BYTES || room_type.chars().any(char::is_control) {
        return Err(format!(
            "room type must be at most {MAX_ROOM_TYPE_BYTES} bytes, without control characters"
        ));
    }
    Ok(())
}

pub use crate::proto::{MAX_MEMBER_DATA_BYTES, MAX_QUICK_JOIN_EXCLUDED};

/// Rooms listed per page of `ListRooms` when the client does not say.
pub const DEFAULT_ROOMS_PER_PAGE: usize = 100;

/// The most bytes of rooms one `ListRooms` answer holds (or half of what the reliable
/// queue may still take, if less): a page of rooms with large metadata is cut short
/// there (its `next_after` says where the rest starts), so answers do not close the
/// asking session as a slow consumer, nor make a small request a large answer.
pub const MAX_PAGE_BYTES: usize = 64 * 1024;

/// What a session needs from the server.
#[derive(Clone)]
pub struct SessionContext {
    /// The rooms.
    pub rooms: Arc<dyn Rooms>,
    /// Verifies refreshed tokens.
    pub auth: Arc<Authenticator>,
    /// Limits and timers.
    pub settings: Arc<SessionSettings>,
    /// Cluster mode: rooms not open here are claimed in the shared directory before
    /// a join (see [`DirectoryOp`]), and listings come from it.
    pub clustered: bool,
    /// Draws the random part of the id of a room a quick join creates.
    pub room_ids: Arc<dyn Fn() -> String + Send + Sync>,
    /// Room searches (`ListRooms`, `QuickJoin`), per creator: each looks at many
    /// rooms, so one client opening many sessions must not multiply them.
    pub searches: Arc<limits::SharedRate>,
    /// Token refreshes (`RefreshToken`), per user: each checks a signature, which
    /// costs far more than the message it comes in ([`limits::refresh_rate`]).
    pub refreshes: Arc<limits::SharedRate>,
}

/// Listings one session may have waiting for the directory at once.
const MAX_PENDING_LISTS: usize = 4;

/// See the module documentation.
pub struct Session {
    id: MemberId,
    /// The client this session belongs to (from `Hello.client_id`; without one, the
    /// session's own id): the `replace` policy spares a user's sessions of the same
    /// family (one client following redirects holds a session per node).
    family: u64,
    identity: Identity,
    /// When the token expires, on the driver's clock.
    expires_at: Option<Instant>,
    resume_token: String,
    outbox: Arc<Outbox>,
    ctx: SessionContext,
    heartbeat: Heartbeat,
    limiter: RateLimiter,
    /// Rooms this session joined (or asked to join), by room id, with the number of
    /// the last join sent.
    /// (FxHash: looked up for every input, and at most `max_rooms_per_session` long,
    /// so no key choice can make it slow.)
    rooms: FxHashMap<String, Membership>,
    /// Cluster mode: joins waiting for the directory, by room id.
    claims: HashMap<String, PendingJoin>,
    /// Cluster mode: quick joins waiting for the directory, by request id.
    quick_joins: HashMap<u64, PendingQuickJoin>,
    /// The request ids of this session's last quick joins: one sent again (a client
    /// after a resume, not knowing whether the lost connection delivered it) is not
    /// run again; its answer was sent, and a resume sends it again.
    quick_join_ids: VecDeque<u64>,
    /// Rooms this session left in the last second, and when: a quick join does not
    /// pick them (joining one again so soon is refused, see
    /// [`crate::engine::room::Room::join`]).
    just_left: Vec<(String, Instant)>,
    /// Directory work for the driver, not taken yet.
    directory_ops: Vec<DirectoryOp>,
    /// Directory work the driver took and has not answered (asked again after a
    /// resume: the connection that ran it is gone).
    in_flight: Vec<DirectoryOp>,
    /// The number of the next join (see [`Outbox::leave_room`]).
    next_join: u64,
    /// The last numbered event taken (`ClientEnvelope.first_event_seq`): a number
    /// not above it is one sent again after a resume, and skipped.
    events_received: u64,
    /// Scratch for [`Outbox::take_left`].
    left: Vec<Left>,
    closed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.identity.user_id)
            .field("rooms", &self.rooms.len())
            .finish()
    }
}

fn is_ack(message: &ClientMessage) -> bool {
    matches!(message.kind, Some(client_message::Kind::Ack(_)))
}

/// Converts a Unix expiry to a deadline on the monotonic clock.
fn deadline(expires_at_unix: Option<u64>, now: Now) -> Option<Instant> {
    let remaining_us = expires_at_unix?.saturating_mul(1_000_000).saturating_sub(now.unix_us);
    Some(now.instant + Duration::from_micros(remaining_us))
}

impl Session {
    /// Starts a session and queues its `Welcome`. `resume_token` must be
    /// unguessable (the driver draws it from the operating system).
    pub fn new(
        id: MemberId,
        identity: Identity,
        resume_token: String,
        outbox: Arc<Outbox>,
        ctx: SessionContext,
        now: Now,
    ) -> Self {
        let settings = &ctx.settings;
        let session = Self {
            id,
            family: id,
            expires_at: deadline(identity.expires_at, now),
            identity,
            resume_token,
            outbox,
            heartbeat: Heartbeat::new(settings.heartbeat_interval, settings.heartbeat_timeout, now.instant),
            limiter: RateLimiter::new(settings.rate, now.instant),
            ctx,
            rooms: FxHashMap::default(),
            claims: HashMap::new(),
            quick_joins: HashMap::new(),
            quick_join_ids: VecDeque::new(),
            just_left: Vec::new(),
            directory_ops: Vec::new(),
            in_flight: Vec::new(),
            next_join: 1,
            events_received: 0,
            left: Vec::new(),
            closed: false,
        };
        session.outbox.push_welcome(session.welcome(false, now));
        session
    }

    fn welcome(&self, resumed: bool, now: Now) -> Bytes {
        let s = &self.ctx.settings;
        encode_message(Kind::Welcome(proto::Welcome {
            protocol_version: PROTOCOL_VERSION,
            session_id: self.id,
            resume_token: self.resume_token.clone(),
            limits: Some(proto::Limits {
                max_message_bytes: s.max_message_bytes,
                messages_per_second: s.rate.messages_per_second as u32,
                message_burst: s.rate.message_burst as u32,
                bytes_per_second: s.rate.bytes_per_second as u32,
                byte_burst: s.rate.byte_burst as u32,
            }),
            heartbeat_interval_ms: s.heartbeat_interval.as_millis() as u32,
            heartbeat_timeout_ms: s.heartbeat_timeout.as_millis() as u32,
            resume_grace_ms: s.resume_grace.as_millis() as u32,
            server_time_us: now.unix_us,
            user_id: self.identity.user_id.to_string(),
            resumed,
            events_received: self.events_received,
        }))
    }

    /// Continues this session on a new connection: a fresh heartbeat (the rate limit
    /// goes on), a
    /// `Welcome` with `resumed` set ahead of anything that waited in the outbox, the
    /// reliable messages after `received` (the last one the client got) again, and a
    /// full snapshot of every room (at its next tick, or, within a second of the last
    /// one it sent the member, a second after that). `delivery` is the new
    /// connection's (a session may resume over another transport). When some of
    /// the messages the client missed are no longer kept, or the client does not say
    /// what it received (`None`: one that does not number messages, or a new process
    /// taking over its session with a stored resume token), every room sends its
    /// `Joined` again too (who is in it, who owns it: presence the client may have
    /// missed; the room itself, to a client that did not know it).
    pub fn resume(
        &mut self,
        identity: Option<Identity>,
        delivery: Delivery,
        received: Option<u64>,
        now: Now,
    ) -> Replay {
        if let Some(identity) = identity {
            self.expires_at = deadline(identity.expires_at, now);
            self.identity = identity;
        }
        let s = &self.ctx.settings;
        self.heartbeat = Heartbeat::new(s.heartbeat_interval, s.heartbeat_timeout, now.instant);
        // A resume refills no bucket (its flood window starts afresh).
        self.limiter.resume();
        self.outbox.reset_delivered(delivery);
        self.outbox.set_away(false);
        self.outbox.push_welcome(self.welcome(true, now));
        // Without a number nothing is sent again: what the connection took is forgotten.
        let replay = self.outbox.replay_after(received.unwrap_or(u64::MAX));
        self.forget_rooms_left();
        // The old connection's driver dropped what it was running for the directory.
        self.directory_ops.append(&mut self.in_flight);
        // A full snapshot of every room, as soon as the room sends one (request id 0:
        // no answer).
        for room in self.rooms.values() {
            let command = Command::Resync {
                room: room.handle.key,
                room_id: room.handle.shared.id.clone(),
                member: room.member,
                outbox: self.outbox.clone(),
                request_id: 0,
                joined_too: replay.missing > 0 || received.is_none(),
            };
            self.ctx.rooms.send_owed(&room.handle, command);
        }
        replay
    }

    /// The resume token announced in `Welcome`.
    pub fn resume_token(&self) -> &str {
        &self.resume_token
    }

    /// Who this session is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Inbound messages refused by the rate limiter so far.
    pub fn rate_limited(&self) -> u64 {
        self.limiter.refused()
    }

    /// When [`Session::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Instant {
        let heartbeat = self.heartbeat.deadline();
        self.expires_at.map_or(heartbeat, |e| e.min(heartbeat))
    }

    /// Advances the timers. `Ok(Beat::Ping)`: send a transport-level ping now.
    /// `Err`: close the connection with this reason.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<Beat, CloseReason> {
        if self.expires_at.is_some_and(|e| now >= e) {
            return Err(CloseReason::TokenExpired);
        }
        match self.heartbeat.poll(now) {
            Beat::TimedOut => Err(CloseReason::HeartbeatTimeout),
            beat => Ok(beat),
        }
    }

    /// The session id (also the member id in every room).
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// The client this session belongs to (see the field's documentation).
    pub fn family(&self) -> u64 {
        self.family
    }

    /// Sets the client this session belongs to.
    pub fn set_family(&mut self, family: u64) {
        self.family = family;
    }

    /// The session's outbox, for the driver to drain.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Handles one inbound message. `Err` means: close the connection with this reason.
    pub fn handle(&mut self, inbound: Inbound<'_>, now: Now) -> Result<(), CloseReason> {
        let bytes = match inbound {
            Inbound::Binary(bytes) => bytes,
            Inbound::Text => return Err(CloseReason::TextFrame),
            Inbound::TooBig => return Err(CloseReason::MessageTooBig),
            // A ping costs the server a pong: charged like a message, refused ones are
            // dropped silently (the transport has answered it already) and a flood of
            // them is closed like any other.
            Inbound::Control(len) => {
                self.on_inbound(now);
                return match self.limiter.check(1, len, now.instant) {
                    Verdict::Flood => Err(CloseReason::RateLimited),
                    Verdict::Allow | Verdict::Refuse { .. } => Ok(()),
                };
            }
        };
        let read = match inputs::read(bytes) {
            Some(in_place) => Read::InPlace(in_place),
            None => match ClientEnvelope::decode(bytes) {
                Ok(envelope) => Read::Envelope(envelope),
                Err(_) => return Err(CloseReason::Undecodable),
            },
        };
        self.handle_read(read, bytes.len(), now)
    }

    /// Handles one binary message if it holds inputs and acks only (what a client in a
    /// room sends at every tick), as [`Session::handle`] would; None, having done
    /// nothing, for any other message, and for the first message after a ping (the
    /// heartbeat's next deadline may come sooner then). What it handles makes no
    /// directory work and brings no timer sooner, so a driver may hand such messages
    /// over without looking at either again (see `Transport::reader`).
    pub fn handle_inputs(&mut self, bytes: &[u8], now: Now) -> Option<Result<(), CloseReason>> {
        if self.heartbeat.pinged() {
            return None;
        }
        let in_place = inputs::read(bytes)?;
        Some(self.handle_read(Read::InPlace(in_place), bytes.len(), now))
    }

    /// Any message proves liveness; the rooms the session was removed from are
    /// forgotten before it is read.
    fn on_inbound(&mut self, now: Now) {
        self.heartbeat.on_inbound(now.instant);
        self.forget_rooms_left();
    }

    /// [`Session::handle`] of a binary message of `len` bytes, read.
    fn handle_read(&mut self, read: Read<'_>, len: usize, now: Now) -> Result<(), CloseReason> {
        self.on_inbound(now);
        let (counted, acks) = match &read {
            Read::InPlace(in_place) => (in_place.inputs(), in_place.acks()),
            Read::Envelope(envelope) => {
                let acks = envelope.messages.iter().filter(|m| is_ack(m)).count();
                (envelope.messages.len() - acks, acks)
            }
        };
        // Every envelope is charged, even one that is then refused, and at most a
        // burst's worth, so an oversized envelope is refused below instead of never
        // fitting the bucket. Acknowledgements (one per state frame on an unreliable
        // transport) are charged their bytes only.
        let burst = self.limiter.limits().message_burst as usize;
        let charged = if counted == 0 && acks > 0 {
            0
        } else {
            counted.clamp(1, burst.max(1))
        };
        // Acks are bounded by the envelope's bytes only (a client appends one per room
        // it is in to whatever it sends). An envelope over the burst would never fit:
        // it is told so, whatever the bucket holds (at most once per notice, as a
        // refusal is).
        let verdict = self.limiter.check(charged, len, now.instant);
        match verdict {
            Verdict::Flood => return Err(CloseReason::RateLimited),
            Verdict::Refuse { notify: false, .. } => return Ok(()),
            Verdict::Allow | Verdict::Refuse { notify: true, .. } => {}
        }
        if counted > burst {
            let message = format!("an envelope may hold at most {burst} messages besides acks");
            self.reply(error_message(ErrorCode::LimitExceeded, &message, 0, ""));
            return Ok(());
        }
        if let Verdict::Refuse { retry_after, .. } = verdict {
            self.refuse_rate_limited("over the rate limit; messages dropped", 0, retry_after);
            return Ok(());
        }
        let envelope = match read {
            Read::InPlace(in_place) => {
                for item in in_place.iter() {
                    match item {
                        inputs::Item::Input(input) => {
                            let payload = input.intent.map(|i| input::Payload::Intent(Bytes::copy_from_slice(i)));
                            self.input(input.room, input.seq, payload);
                        }
                        inputs::Item::Ack { room, tick } => self.ack(room, tick),
                    }
                }
                return self.check_overflow();
            }
            Read::Envelope(envelope) => envelope,
        };
        if let Err(e) = validate_client(&envelope) {
            self.reply(error_message(ErrorCode::BadRequest, &e.to_string(), 0, ""));
            return Ok(());
        }
        // Like an input's `seq`: one huge number would swallow every later event. So
        // would the numbers the envelope's events take after it. (An envelope with no
        // event numbers nothing.)
        let events = (envelope.messages.iter())
            .filter(|m| matches!(m.kind, Some(client_message::Kind::Event(_))))
            .count() as u64;
        if events > 0 && envelope.first_event_seq.saturating_add(events - 1) > MAX_INPUT_SEQ {
            let message = format!("events must be numbered at most {MAX_INPUT_SEQ} (2^53 - 1)");
            self.reply(error_message(ErrorCode::BadRequest, &message, 0, ""));
            return Ok(());
        }
        let mut event_seq = envelope.first_event_seq;
        for ClientMessage { kind } in envelope.messages {
            let is_event = matches!(kind, Some(client_message::Kind::Event(_)));
            // A stopping node's rooms relay no more events: none is taken (nor counted,
            // so the client sends it again where it continues).
            if is_event && self.ctx.rooms.handed_off() {
                continue;
            }
            let mut taken_before = None;
            if is_event && event_seq != 0 {
                let n = event_seq;
                event_seq += 1;
                if n <= self.events_received {
                    continue; // taken before the connection it came on died
                }
                taken_before = Some(std::mem::replace(&mut self.events_received, n));
            }
            if let Some(kind) = kind {
                self.handle_message(kind, now);
            }
            // Handed off meanwhile: the event may have been refused (see
            // `Rooms::handed_off`), so it is not counted (sent again: at least once).
            if let Some(before) = taken_before
                && self.ctx.rooms.handed_off()
            {
                self.events_received = before;
            }
        }
        self.check_overflow()
    }

    /// A session whose outbox overflowed is closed (slow consumer).
    fn check_overflow(&self) -> Result<(), CloseReason> {
        if self.outbox.is_overflowed() {
            return Err(CloseReason::SlowConsumer);
        }
        Ok(())
    }

    /// An input for `room`: to the room, or held until the room's claim is answered.
    fn input(&mut self, room_id: &str, seq: u64, payload: Option<input::Payload>) {
        let room = self.rooms.get(room_id);
        if room.is_none() && !self.claims.contains_key(room_id) {
            return self.not_a_member(room_id, seq);
        }
        let Some(payload) = payload else {
            let error = error_message(ErrorCode::BadRequest, "input without payload", seq, room_id);
            return self.reply(error);
        };
        // A room applies each member's inputs in increasing `seq` and drops the rest
        // (replays after a resume): 0 would never be applied (a client that does not
        // number its inputs would see none applied, and no error), and one huge `seq`
        // would silently swallow every later input. JavaScript numbers are exact below
        // 2^53.
        if seq == 0 {
            let error = error_message(ErrorCode::BadRequest, "input seq must be at least 1", seq, room_id);
            return self.reply(error);
        }
        if seq > MAX_INPUT_SEQ {
            let message = format!("input seq must be at most {MAX_INPUT_SEQ} (2^53 - 1)");
            return self.reply(error_message(ErrorCode::BadRequest, &message, seq, room_id));
        }
        let Some(room) = room else {
            return self.wait_for_claim(room_id, Waiting::Input { seq, payload }, seq);
        };
        let command = Command::Input {
            room: room.handle.key,
            member: room.member,
            seq,
            payload,
        };
        self.send(&room.handle, command, seq);
    }

    fn handle_message(&mut self, kind: client_message::Kind, now: Now) {
        use client_message::Kind as K;
        match kind {
            K::Join(join) => self.join(join),
            K::QuickJoin(quick) => {
                self.forget_left(now);
                // One sent again is ignored before it costs a search (a refusal of it
                // would look like the answer to the quick join that did run). One the
                // search rate refused did not run: its id may come again after the wait.
                if self.quick_join_ran(quick.request_id) {
                    return;
                }
                if self.searched(quick.request_id, now) {
                    self.remember_quick_join(quick.request_id);
                    self.quick_join(quick, now);
                }
            }
            K::Leave(leave) => {
                if self.claims.remove(&leave.room).is_some() {
                    // Not in the room yet: the claim's answer will find no join to finish.
                    let left = Kind::Left(proto::Left {
                        request_id: leave.request_id,
                        room: leave.room,
                        ..Default::default()
                    });
                    return self.reply(encode_message(left));
                }
                let Some((room, member)) = self.room(&leave.room) else {
                    return self.not_a_member(&leave.room, leave.request_id);
                };
                let command = Command::Leave {
                    room: room.key,
                    room_id: room.shared.id.clone(),
                    member,
                    outbox: self.outbox.clone(),
                    request_id: leave.request_id,
                };
                // Forget the room only once the leave is on its way.
                if self.send(&room, command, leave.request_id) {
                    self.rooms.remove(&leave.room);
                    self.forget_left(now);
                    self.just_left.push((leave.room, now.instant));
                }
            }
            K::Input(input) => self.input(&input.room, input.seq, input.payload),
            K::Event(event) => {
                // The bound every other source of events has (a simulation's, the
                // HTTP API's): every member's client holds the kind.
                if !valid_event_kind(&event.kind) {
                    let message = format!(
                        "an event's kind may be at most {MAX_EVENT_KIND_BYTES} bytes, without control characters"
                    );
                    return self.reply(error_message(ErrorCode::BadRequest, &message, 0, &event.room));
                }
                let Some((room, member)) = self.room(&event.room) else {
                    if self.claims.contains_key(&event.room) {
                        let room = event.room.clone();
                        return self.wait_for_claim(&room, Waiting::Event(event), 0);
                    }
                    return self.not_a_member(&event.room, 0);
                };
                let command = Command::Event {
                    room: room.key,
                    member,
                    event,
                };
                self.send(&room, command, 0);
            }
            K::Request(request) => {
                let search = matches!(request.kind, Some(request::Kind::ListRooms(_)));
                if !search || self.searched(request.request_id, now) {
                    self.request(request);
                }
            }
            K::Ping(ping) => {
                self.outbox.confirm(ping.received_seq);
                let pong = Kind::Pong(proto::Pong {
                    nonce: ping.nonce,
                    ping_sent_time_us: ping.sent_time_us,
                    time_us: now.unix_us,
                    events_received: self.events_received,
                });
                self.reply(encode_message(pong));
            }
            // Answers to server pings; liveness is tracked by the driver.
            K::Pong(_) => {}
            K::Ack(ack) => self.ack(&ack.room, ack.tick),
            K::RefreshToken(refresh) => self.refresh(refresh, now),
        }
    }

    /// A state frame of `room` the client applied (on a reliable transport the outbox
    /// ignores it).
    fn ack(&mut self, room: &str, tick: u64) {
        if let Some(room) = self.rooms.get(room) {
            self.outbox.ack(room.handle.key, tick);
        }
    }

    /// Whether a room search (`ListRooms`, `QuickJoin`) may run now: its creator's
    /// sessions share a rate (each search looks at up to [`LIST_SCAN`] rooms). If
    /// not, it is answered `RATE_LIMITED` with when to retry.
    fn searched(&mut self, request_id: u64, now: Now) -> bool {
        let Err(wait) = self.ctx.searches.take(&self.identity.creator, now.instant) else {
            return true;
        };
        let message = "too many room searches (ListRooms, QuickJoin) from this user or address";
        self.refuse_rate_limited(message, request_id, wait);
        false
    }

    /// Answers `RATE_LIMITED`, with when to retry.
    fn refuse_rate_limited(&mut self, message: &str, request_id: u64, retry_after: Duration) {
        self.reply(encode_message(Kind::Error(proto::Error {
            code: ErrorCode::RateLimited as i32,
            message: message.into(),
            request_id,
            retry_after_ms: retry_after.as_millis().max(1) as u32,
            ..Default::default()
        })));
    }

    fn refresh(&mut self, refresh: proto::RefreshToken, now: Now) {
        if self.ctx.auth.mode() == AuthMode::Anonymous {
            let message = "token refresh needs JWT authentication; this server runs in anonymous mode";
            return self.reply(error_message(ErrorCode::BadRequest, message, refresh.request_id, ""));
        }
        if let Err(wait) = self.ctx.refreshes.take(&self.identity.creator, now.instant) {
            let message = "too many token refreshes from this user (3 at once, then one every 5 s)";
            return self.refuse_rate_limited(message, refresh.request_id, wait);
        }
        match self
            .ctx
            .auth
            .refresh(&self.identity.user_id, &refresh.token, now.unix_us / 1_000_000)
        {
            Ok(identity) => {
                self.expires_at = deadline(identity.expires_at, now);
                let expires_at_unix = identity.expires_at.unwrap_or_default();
                self.identity = identity;
                self.reply(encode_message(Kind::TokenRefreshed(proto::TokenRefreshed {
                    request_id: refresh.request_id,
                    expires_at_unix,
                })));
            }
            // Signed by a key the relay does not hold yet (its identity provider's new
            // one, fetched within `KEYS_REFETCH`): send it again then.
            Err(e @ AuthError::UnknownKey) => self.reply(encode_message(Kind::Error(proto::Error {
                code: ErrorCode::Unavailable as i32,
                message: format!("token refused for now: {e}"),
                request_id: refresh.request_id,
                retry_after_ms: KEYS_REFETCH.as_millis() as u32,
                ..Default::default()
            }))),
            Err(e) => self.reply(error_message(
                ErrorCode::Forbidden,
                &format!("token refused: {e}"),
                refresh.request_id,
                "",
            )),
        }
    }

    /// The rooms this session is in (or asked to join), in no particular order.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// Cluster mode, this node stopping: tells the client to continue on the node at
    /// `url` (the driver writes it, then closes with 1001).
    pub fn going_away(&self, url: String) {
        let url = self.url_to_follow(url);
        self.reply(encode_message(Kind::GoingAway(proto::GoingAway { url })));
    }

    /// The bytes of rooms a `ListRooms` answer may hold now (see [`MAX_PAGE_BYTES`]).
    fn page_bytes(&self) -> usize {
        MAX_PAGE_BYTES.min(self.outbox.reliable_room() / 2)
    }

    /// Answers a listing: a page, and where the next starts (none: the last page).
    fn reply_rooms(&self, request_id: u64, mut rooms: Vec<proto::RoomInfo>, mut next: Option<String>) {
        let budget = self.page_bytes();
        // At least one room (its metadata is bounded: a few KiB), so paging goes on.
        let mut bytes = rooms.first().map_or(0, listing::listed_bytes);
        let over = rooms.iter().skip(1).position(|room| {
            bytes += listing::listed_bytes(room);
            bytes > budget
        });
        if let Some(over) = over {
            rooms.truncate(over + 1);
            next = rooms.last().map(|room| room.room.clone());
        }
        let list = proto::RoomList {
            rooms,
            more: next.is_some(),
            next_after: next.unwrap_or_default(),
        };
        let response = Kind::Response(proto::Response {
            request_id,
            kind: Some(response::Kind::Rooms(list)),
        });
        self.reply(encode_message(response));
    }

    fn request(&mut self, request: proto::Request) {
        let id = request.request_id;
        match request.kind {
            Some(request::Kind::ListRooms(list)) => {
                let limit = match list.limit {
                    0 => DEFAULT_ROOMS_PER_PAGE,
                    n => n as usize,
                };
                if !self.ctx.clustered {
                    let filter = RoomFilter {
                        room_type: &list.room_type,
                        metadata: &list.filters,
                        open_only: list.open_only,
                    };
                    let (rooms, next) = self.ctx.rooms.list(&filter, &list.after, limit, self.page_bytes());
                    return self.reply_rooms(id, rooms, next);
                }
                let is_list = |op: &&DirectoryOp| matches!(op, DirectoryOp::List { .. });
                let pending = self.directory_ops.iter().chain(&self.in_flight).filter(is_list).count();
                if pending >= MAX_PENDING_LISTS {
                    let message = format!("at most {MAX_PENDING_LISTS} listings may wait for the room directory");
                    return self.reply(error_message(ErrorCode::LimitExceeded, &message, id, ""));
                }
                let limit = limit.min(MAX_ROOMS_PER_PAGE);
                self.directory_ops.push(DirectoryOp::List {
                    request_id: id,
                    after: list.after,
                    limit,
                    room_type: list.room_type,
                    filters: list.filters,
                    open_only: list.open_only,
                });
            }
            Some(request::Kind::UpdateRoom(update)) => self.update_room(id, update),
            Some(request::Kind::Resync(resync)) => {
                let Some((room, member)) = self.room(&resync.room) else {
                    return self.not_a_member(&resync.room, id);
                };
                let command = Command::Resync {
                    room: room.key,
                    room_id: room.shared.id.clone(),
                    member,
                    outbox: self.outbox.clone(),
                    request_id: id,
                    joined_too: false,
                };
                self.send(&room, command, id);
            }
            None => self.reply(error_message(ErrorCode::BadRequest, "request of unknown kind", id, "")),
        }
    }

    /// The room's owner changes its listing (here), or hands the room to another
    /// member (on the room's thread, which knows who is in the room and answers).
    fn update_room(&mut self, request_id: u64, update: proto::UpdateRoom) {
        let Some((room, member)) = self.room(&update.room) else {
            return self.not_a_member(&update.room, request_id);
        };
        // The node stopping: the rooms' checkpoints went already, and a change now
        // would be answered and lost with them.
        if self.ctx.rooms.handed_off() {
            let message = "this node is stopping; update the room where the relay sends you";
            return self.reply(error_message(ErrorCode::Unavailable, message, request_id, &update.room));
        }
        if update.owner != 0 && update.owner != member {
            let command = Command::UpdateRoom {
                room: room.key,
                room_id: room.shared.id.clone(),
                member,
                outbox: self.outbox.clone(),
                request_id,
                update,
            };
            self.send(&room, command, request_id);
            return;
        }
        let updated = room.shared.listing.update(|l| l.apply_update(member, &update));
        match updated {
            Ok(()) => {
                let response = Kind::Response(proto::Response {
                    request_id,
                    kind: Some(response::Kind::Room(room.shared.info())),
                });
                self.reply(encode_message(response));
            }
            Err((code, message)) => self.reply(error_message(code, &message, request_id, &update.room)),
        }
    }

    /// The handle of a room this session is in, and its member id there.
    fn room(&self, id: &str) -> Option<(RoomHandle, MemberId)> {
        self.rooms.get(id).map(|r| (r.handle.clone(), r.member))
    }

    /// Forgets the rooms the session is no longer in: refused joins, closed rooms,
    /// seats the room dropped. A notice about an earlier join of a room joined again
    /// since is ignored.
    fn forget_rooms_left(&mut self) {
        self.outbox.take_left(&mut self.left);
        for left in &self.left {
            self.rooms
                .retain(|_, r| r.handle.key != left.room || r.join_seq != left.join_seq);
        }
    }

    /// Sends a command to a room's thread; a refusal is answered with an error.
    fn send(&self, room: &RoomHandle, command: Command, request_id: u64) -> bool {
        match self.ctx.rooms.send(room, command) {
            Ok(()) => true,
            Err(e) => {
                self.pool_error(&e, request_id, &room.shared.id);
                false
            }
        }
    }

    fn pool_error(&self, error: &PoolError, request_id: u64, room: &str) {
        self.reply(error.message(request_id, room));
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

    /// Ends the session for good: leaves every room. The outbox is closed first, so
    /// a room whose queue is full still evicts the member at its next tick. A driver
    /// calls this exactly when the session will not be resumed (calling it again does
    /// nothing).
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        self.outbox.close();
        self.claims.clear();
        // What the directory may have done for this session is undone by the driver
        // (see `poll_directory`): a claim that was under way may have been granted,
        // and a release under way may not have been made. Work not started yet never
        // happened.
        let in_flight = std::mem::take(&mut self.in_flight);
        self.directory_ops
            .retain(|op| matches!(op, DirectoryOp::Release { .. }));
        for op in in_flight {
            match op {
                op @ DirectoryOp::Release { .. } => self.directory_ops.push(op),
                DirectoryOp::Claim { room, .. } => self.release_unopened(room),
                _ => {}
            }
        }
        for (_, room) in self.rooms.drain() {
            let command = Command::Leave {
                room: room.handle.key,
                room_id: room.handle.shared.id.clone(),
                member: room.member,
                outbox: self.outbox.clone(),
                request_id: 0,
            };
            let _ = self.ctx.rooms.send(&room.handle, command);
        }
    }

    /// Whether [`Session::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests;

impl Drop for Session {
    /// A safety net for a session dropped without [`Session::close`] (a driver that
    /// panicked): its outbox is marked closed, so every room it was in drops its seat
    /// at the next tick. Nothing is sent from here.
    fn drop(&mut self) {
        self.outbox.close();
    }
}
