//! Every rule the session enforces, on a manual clock against a fake room side: no
//! threads, no sockets.

use std::sync::atomic::AtomicU32;

use parking_lot::Mutex;
use prost::Message;

use super::*;
use crate::engine::listing::Listing;
use crate::engine::outbox::{Batch, Keep, OutboxLimits, RoomKey};
use crate::engine::rooms::RoomShared;
use crate::proto::{RoomLock, ServerMessage, client_message::Kind as Out};
use crate::session::auth::{AuthConfig, Claims, mint_hs256};
use crate::session::directory::{Claim, DirectoryReply, Found};

const SECRET: &str = "test-secret";
/// The manual clock's Unix time at `t0`, in seconds.
const UNIX0: u64 = 1_800_000_000;

/// What the session asked of the rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Join {
        room: RoomKey,
        join_seq: u64,
    },
    QuickJoin {
        room: RoomKey,
        join_seq: u64,
    },
    Leave {
        room: RoomKey,
        request_id: u64,
    },
    Input {
        room: RoomKey,
        seq: u64,
    },
    Event {
        room: RoomKey,
    },
    Resync {
        room: RoomKey,
        request_id: u64,
        joined_too: bool,
    },
}

/// A listing asked for: after, limit, room type, filters, open only.
type Listed = (String, usize, String, Metadata, bool);

/// The room side: opens any room (unless told to refuse), records every command.
#[derive(Default)]
struct FakeRooms {
    opened: Mutex<HashMap<String, RoomHandle>>,
    sent: Mutex<Vec<Sent>>,
    listed: Mutex<Vec<Listed>>,
    refuse_open: Mutex<Option<PoolError>>,
    refuse_send: Mutex<Option<PoolError>>,
    /// The member id of every join and input sent.
    members: Mutex<Vec<MemberId>>,
    /// As after `SimPool::hand_off`.
    handed_off: std::sync::atomic::AtomicBool,
}

impl Rooms for FakeRooms {
    fn open(&self, id: &str, room_type: &str, _creator: &str, listing: ListingState) -> Result<RoomHandle, PoolError> {
        if let Some(e) = self.refuse_open.lock().clone() {
            return Err(e);
        }
        let mut opened = self.opened.lock();
        let key = opened.len() as RoomKey + 1;
        let handle = opened.entry(id.to_string()).or_insert_with(|| {
            let shared = RoomShared {
                id: id.into(),
                room_type: room_type.into(),
                max_members: 8,
                members: AtomicU32::new(0),
                creator: None,
                listing: Arc::new(Listing::new(listing)),
                reserved: AtomicU32::new(0),
                kept: AtomicU32::new(0),
                bans: Arc::default(),
            };
            RoomHandle::standalone(key, Arc::new(shared))
        });
        Ok(handle.clone())
    }

    fn pick(&self, room_type: &str, filters: &Metadata, skip: &dyn Fn(&RoomShared) -> bool) -> Option<RoomHandle> {
        let filter = RoomFilter {
            room_type,
            metadata: filters,
            open_only: true,
        };
        let opened = self.opened.lock();
        let mut open = opened.values().filter(|h| !skip(&h.shared) && h.shared.listed(&filter));
        let handle = open.next()?;
        handle.shared.reserved.fetch_add(1, Ordering::Relaxed);
        Some(handle.clone())
    }

    fn handed_off(&self) -> bool {
        self.handed_off.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn find(&self, id: &str) -> Option<RoomHandle> {
        self.opened.lock().get(id).cloned()
    }

    fn send(&self, _: &RoomHandle, command: Command) -> Result<(), PoolError> {
        if let Some(e) = self.refuse_send.lock().clone() {
            return Err(e);
        }
        if let Command::Join { member, .. } | Command::Input { member, .. } = &command {
            self.members.lock().push(*member);
        }
        let sent = match command {
            Command::Join {
                room,
                join_seq,
                reserved: false,
                ..
            } => Sent::Join { room, join_seq },
            Command::Join { room, join_seq, .. } => Sent::QuickJoin { room, join_seq },
            Command::Leave { room, request_id, .. } => Sent::Leave { room, request_id },
            Command::Input { room, seq, .. } => Sent::Input { room, seq },
            Command::Event { room, .. } => Sent::Event { room },
            Command::Resync {
                room,
                request_id,
                joined_too,
                ..
            } => Sent::Resync {
                room,
                request_id,
                joined_too,
            },
            _ => unreachable!("sessions send no other command"),
        };
        self.sent.lock().push(sent);
        Ok(())
    }

    fn list(
        &self,
        filter: &RoomFilter<'_>,
        after: &str,
        limit: usize,
        _max_bytes: usize,
    ) -> (Vec<proto::RoomInfo>, Option<String>) {
        let RoomFilter {
            room_type,
            metadata,
            open_only,
        } = *filter;
        self.listed
            .lock()
            .push((after.to_string(), limit, room_type.into(), metadata.clone(), open_only));
        let room = proto::RoomInfo {
            room: "b".into(),
            ..Default::default()
        };
        (vec![room], Some("b".into()))
    }
}

/// A session on a manual clock, with its fake rooms and outbox.
struct Harness {
    session: Session,
    rooms: Arc<FakeRooms>,
    outbox: Arc<Outbox>,
    t0: Instant,
    /// Time since `t0` on the manual clock.
    elapsed: Duration,
    batch: Batch,
}

/// Limits loose enough that only the test about a rule meets it.
fn settings() -> SessionSettings {
    SessionSettings {
        max_rooms_per_session: 2,
        heartbeat_interval: Duration::from_secs(600),
        rate: RateLimits {
            messages_per_second: 1000.0,
            message_burst: 1000.0,
            ..RateLimits::default()
        },
        ..SessionSettings::default()
    }
}

/// A burst of 4 messages and 10 per second.
fn strict() -> SessionSettings {
    SessionSettings {
        rate: RateLimits {
            messages_per_second: 10.0,
            message_burst: 4.0,
            bytes_per_second: 10_000.0,
            byte_burst: 10_000.0,
            flood_window: Duration::from_secs(1),
        },
        ..settings()
    }
}

fn jwt_auth() -> Authenticator {
    Authenticator::new(&AuthConfig {
        mode: AuthMode::Jwt,
        hs256_secret: Some(SECRET.into()),
        leeway_secs: 0,
        ..AuthConfig::default()
    })
    .unwrap()
}

fn token(sub: &str, exp: u64, rooms: Option<Vec<String>>) -> String {
    let claims = Claims {
        sub: sub.into(),
        exp,
        rooms,
    };
    mint_hs256(SECRET, &claims)
}

impl Harness {
    fn new() -> Self {
        Self::anonymous(settings())
    }

    fn anonymous(settings: SessionSettings) -> Self {
        Self::anonymous_on(settings, false)
    }

    /// An anonymous session on a node of a cluster.
    fn clustered() -> Self {
        Self::anonymous_on(settings(), true)
    }

    fn anonymous_on(settings: SessionSettings, clustered: bool) -> Self {
        let identity = Identity {
            user_id: "anonymous-1".into(),
            expires_at: None,
            rooms: None,
            creator: "127.0.0.1".into(),
        };
        let auth = Authenticator::new(&AuthConfig::default()).unwrap();
        Self::with(identity, auth, settings, clustered)
    }

    /// A JWT session whose token names `rooms` and expires `ttl` seconds after `t0`.
    fn jwt(ttl: u64, rooms: Option<Vec<String>>) -> Self {
        let auth = jwt_auth();
        let identity = auth
            .authenticate(Some(&token("alice", UNIX0 + ttl, rooms)), UNIX0)
            .unwrap();
        Self::with(identity, auth, settings(), false)
    }

    fn with(identity: Identity, auth: Authenticator, settings: SessionSettings, clustered: bool) -> Self {
        let rooms = Arc::new(FakeRooms::default());
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        let ctx = SessionContext {
            rooms: rooms.clone(),
            auth: Arc::new(auth),
            settings: Arc::new(settings),
            clustered,
            room_ids: Arc::new(|| "r4nd0m".into()),
            searches: Arc::new(limits::SharedRate::new(1000.0, 1000.0)),
            refreshes: Arc::new(limits::refresh_rate()),
        };
        let t0 = Instant::now();
        let now = Now {
            instant: t0,
            unix_us: UNIX0 * 1_000_000,
        };
        let session = Session::new(7, identity, "resume-me".into(), outbox.clone(), ctx, now);
        Self {
            session,
            rooms,
            outbox,
            t0,
            elapsed: Duration::ZERO,
            batch: Batch::default(),
        }
    }

    fn now(&self) -> Now {
        Now {
            instant: self.t0 + self.elapsed,
            unix_us: UNIX0 * 1_000_000 + self.elapsed.as_micros() as u64,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.elapsed += by;
    }

    /// Sends one envelope holding `messages`.
    fn send(&mut self, messages: Vec<Out>) -> Result<(), CloseReason> {
        self.send_numbered(0, messages)
    }

    /// Sends one envelope holding `messages`, its events numbered from `first`.
    fn send_numbered(&mut self, first: u64, messages: Vec<Out>) -> Result<(), CloseReason> {
        let now = self.now();
        self.session.handle(Inbound::Binary(&envelope(first, messages)), now)
    }

    fn one(&mut self, message: Out) -> Result<(), CloseReason> {
        self.send(vec![message])
    }

    /// The reliable messages the session queued since the last call (the `Welcome`
    /// included).
    fn replies(&mut self) -> Vec<Kind> {
        self.outbox.drain(&mut self.batch);
        (self.batch.welcome.iter().chain(&self.batch.reliable))
            .map(|m| ServerMessage::decode(&m[..]).unwrap().kind.unwrap())
            .collect()
    }

    /// The error replies since the last call, as (code, request id).
    fn errors(&mut self) -> Vec<(ErrorCode, u64)> {
        self.replies()
            .into_iter()
            .filter_map(|k| match k {
                Kind::Error(e) => Some((ErrorCode::try_from(e.code).unwrap(), e.request_id)),
                _ => None,
            })
            .collect()
    }

    fn sent(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.rooms.sent.lock())
    }

    fn key(&self, room: &str) -> RoomKey {
        self.rooms.opened.lock()[room].key
    }
}

/// One envelope holding `messages`, its events numbered from `first`, encoded.
fn envelope(first: u64, messages: Vec<Out>) -> Vec<u8> {
    let messages = messages.into_iter().map(|k| ClientMessage { kind: Some(k) }).collect();
    ClientEnvelope {
        messages,
        first_event_seq: first,
    }
    .encode_to_vec()
}

fn join(room: &str, request_id: u64) -> Out {
    Out::Join(proto::JoinRoom {
        room: room.into(),
        request_id,
        ..Default::default()
    })
}

fn leave(room: &str, request_id: u64) -> Out {
    Out::Leave(proto::LeaveRoom {
        room: room.into(),
        request_id,
    })
}

fn meta(entries: &[(&str, &str)]) -> Metadata {
    entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn quick_join(room_type: &str, filters: &[(&str, &str)], create: &[(&str, &str)], request_id: u64) -> Out {
    Out::QuickJoin(proto::QuickJoin {
        request_id,
        room_type: room_type.into(),
        filters: meta(filters),
        create: Some(proto::RoomOptions {
            metadata: meta(create),
            private: true,
        }),
        exclude: Vec::new(),
        member_data: Default::default(),
        local_only: false,
    })
}

fn update_room(room: &str, metadata: &[(&str, &str)], lock: RoomLock, request_id: u64) -> Out {
    Out::Request(proto::Request {
        request_id,
        kind: Some(request::Kind::UpdateRoom(proto::UpdateRoom {
            room: room.into(),
            metadata: meta(metadata),
            lock: lock as i32,
            owner: 0,
        })),
    })
}

fn input(room: &str, seq: u64) -> Out {
    Out::Input(proto::Input {
        room: room.into(),
        seq,
        payload: Some(proto::input::Payload::Intent(Default::default())),
    })
}

fn ping(nonce: u64) -> Out {
    Out::Ping(proto::Ping {
        nonce,
        ..Default::default()
    })
}

fn ack(room: &str, tick: u64) -> Out {
    Out::Ack(proto::Ack {
        room: room.into(),
        tick,
    })
}

#[test]
fn the_welcome_comes_first_with_the_token_and_limits() {
    let mut h = Harness::new();
    let replies = h.replies();
    let Kind::Welcome(w) = &replies[0] else {
        panic!("expected a Welcome, got {replies:?}");
    };
    assert_eq!(
        (w.session_id, w.resume_token.as_str(), w.resumed),
        (7, "resume-me", false)
    );
    assert_eq!(w.limits.as_ref().unwrap().message_burst, 1000);
    assert_eq!(w.server_time_us, UNIX0 * 1_000_000);
}

#[test]
fn room_ids_must_be_1_to_128_bytes() {
    let mut h = Harness::new();
    h.replies();
    h.send(vec![join("", 1), join(&"x".repeat(129), 2)]).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 1), (ErrorCode::BadRequest, 2)]);
    assert!(h.sent().is_empty());
    h.one(join(&"x".repeat(128), 3)).unwrap();
    assert_eq!(h.sent().len(), 1);
}

#[test]
fn room_ids_have_no_control_characters_and_room_types_are_bounded() {
    let mut h = Harness::new();
    h.replies();
    let long_type = Out::Join(proto::JoinRoom {
        room: "r".into(),
        room_type: "t".repeat(65),
        request_id: 3,
        ..Default::default()
    });
    h.send(vec![join("a\nERROR forged", 1), join("a\u{1b}[31m", 2), long_type])
        .unwrap();
    assert_eq!(
        h.errors(),
        [
            (ErrorCode::BadRequest, 1),
            (ErrorCode::BadRequest, 2),
            (ErrorCode::BadRequest, 3)
        ]
    );
    assert!(h.sent().is_empty());
}

#[test]
fn a_room_id_longer_than_any_or_with_a_control_character_is_not_echoed_back() {
    let mut h = Harness::new();
    h.replies();
    let long = "x".repeat(16_000);
    h.send(vec![input(&long, 1), join("bad\u{1}\n", 2), input("not-joined", 3)])
        .unwrap();
    let rooms: Vec<(i32, String)> = (h.replies().into_iter())
        .filter_map(|k| match k {
            Kind::Error(e) => Some((e.code, e.room)),
            _ => None,
        })
        .collect();
    let (not_a_member, bad) = (ErrorCode::NotAMember as i32, ErrorCode::BadRequest as i32);
    assert_eq!(
        rooms,
        [
            (not_a_member, String::new()),
            (bad, String::new()),
            (not_a_member, "not-joined".into())
        ]
    );
}

#[test]
fn a_session_is_in_at_most_its_room_cap() {
    let mut h = Harness::new();
    h.replies();
    h.send(vec![join("a", 1), join("b", 2), join("c", 3)]).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::LimitExceeded, 3)]);
    assert_eq!(h.sent().len(), 2);
    // Joining a room it is in again is not a new room.
    h.one(join("a", 4)).unwrap();
    assert_eq!(h.errors(), []);
    let a = h.key("a");
    assert_eq!(h.sent(), [Sent::Join { room: a, join_seq: 3 }]);
    // Leaving frees a slot.
    h.one(Out::Leave(proto::LeaveRoom {
        room: "b".into(),
        request_id: 5,
    }))
    .unwrap();
    h.one(join("c", 6)).unwrap();
    assert_eq!(h.errors(), []);
}

#[test]
fn a_refused_join_frees_its_slot_and_later_requests_are_answered() {
    let mut h = Harness::new();
    h.replies();
    h.send(vec![join("a", 1), join("b", 2)]).unwrap();
    let (a, b) = (h.key("a"), h.key("b"));
    h.sent();
    // Room `a` refuses join 1 (full, say), through the outbox as a room does.
    h.outbox.leave_room(a, 1);
    h.one(input("a", 1)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::NotAMember, 1)]);
    assert!(h.sent().is_empty(), "nothing goes to a room the session is not in");
    h.one(join("c", 3)).unwrap();
    assert_eq!(h.errors(), []);
    // A notice about an earlier join of a room joined again since changes nothing
    // (the room carries on the membership under the newest join's number, even when
    // it refuses that join).
    h.one(join("b", 4)).unwrap();
    h.outbox.leave_room(b, 2);
    h.one(input("b", 1)).unwrap();
    assert_eq!(h.errors(), []);
    assert!(h.sent().contains(&Sent::Input { room: b, seq: 1 }));
}

#[test]
fn requests_for_rooms_the_session_is_not_in_are_answered() {
    let mut h = Harness::new();
    h.replies();
    let resync = Out::Request(proto::Request {
        request_id: 9,
        kind: Some(request::Kind::Resync(proto::Resync { room: "x".into() })),
    });
    let leave = Out::Leave(proto::LeaveRoom {
        room: "x".into(),
        request_id: 8,
    });
    let event = Out::Event(proto::SendEvent {
        room: "x".into(),
        ..Default::default()
    });
    h.send(vec![input("x", 5), leave, event, resync]).unwrap();
    let expected = [
        (ErrorCode::NotAMember, 5),
        (ErrorCode::NotAMember, 8),
        (ErrorCode::NotAMember, 0),
        (ErrorCode::NotAMember, 9),
    ];
    assert_eq!(h.errors(), expected);
    assert!(h.sent().is_empty());
}

#[test]
fn room_side_refusals_are_answered_and_not_recorded() {
    let mut h = Harness::new();
    h.replies();
    *h.rooms.refuse_open.lock() = Some(PoolError::unknown_room_type("nope", []));
    h.one(join("a", 1)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::UnknownRoomType, 1)]);
    *h.rooms.refuse_open.lock() = None;
    *h.rooms.refuse_send.lock() = Some(PoolError::Busy);
    h.one(join("a", 2)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::ServerBusy, 2)]);
    // Neither join counts against the cap.
    *h.rooms.refuse_send.lock() = None;
    h.send(vec![join("b", 3), join("c", 4)]).unwrap();
    assert_eq!(h.errors(), []);
}

#[test]
fn a_token_may_restrict_the_rooms() {
    let mut h = Harness::jwt(600, Some(vec!["match-*".into()]));
    h.replies();
    h.send(vec![join("lobby", 1), join("match-3", 2)]).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::Forbidden, 1)]);
    assert_eq!(h.sent().len(), 1);
}

#[test]
fn an_envelope_over_the_burst_is_answered_not_applied() {
    let mut h = Harness::anonymous(strict());
    h.replies();
    // The burst is 4 messages: five in one envelope are refused as a whole.
    h.send((1..=5).map(ping).collect()).unwrap();
    let replies = h.replies();
    assert!(
        matches!(&replies[..], [Kind::Error(e)] if e.code == ErrorCode::LimitExceeded as i32),
        "{replies:?}"
    );
    // It was charged (a burst's worth), not ignored.
    h.one(ping(6)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::RateLimited, 0)]);
}

#[test]
fn an_envelope_over_the_burst_is_told_so_when_the_bucket_is_not_full() {
    let mut h = Harness::anonymous(strict());
    h.one(ping(0)).unwrap();
    h.replies();
    h.send((1..=5).map(ping).collect()).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::LimitExceeded, 0)]);
}

#[test]
fn acks_riding_with_a_burst_of_inputs_are_not_counted_against_it() {
    let mut h = Harness::anonymous(strict());
    h.one(join("a", 1)).unwrap();
    h.replies();
    h.sent();
    h.advance(Duration::from_secs(1)); // the bucket full again
    // A burst's worth of inputs (4) and an ack per room, as the Rust client sends
    // them over QUIC: read in place, every input applied, nothing refused.
    let mut envelope: Vec<Out> = (1..=4).map(|seq| input("a", seq)).collect();
    envelope.extend([ack("a", 1), ack("b", 1)]);
    h.send(envelope).unwrap();
    assert_eq!(h.errors(), []);
    assert_eq!(h.sent().len(), 4);
}

/// A driver hands over inputs-only messages (`handle_inputs`): they are charged and
/// applied as `handle` does; any other message is left to it untouched (nothing
/// charged, nothing answered).
#[test]
fn only_inputs_and_acks_are_handled_in_place_and_nothing_else_is_touched() {
    let mut h = Harness::anonymous(strict());
    h.one(join("a", 1)).unwrap();
    h.replies();
    h.sent();
    h.advance(Duration::from_secs(1)); // the bucket full again: 4 messages
    let encode = |messages| envelope(0, messages);
    let now = h.now();
    for _ in 0..10 {
        let other = encode(vec![join("b", 2)]);
        assert_eq!(h.session.handle_inputs(&other, now), None);
        assert_eq!(
            h.session.handle_inputs(&encode(vec![input("a", 1), ping(1)]), now),
            None
        );
    }
    assert_eq!(h.replies(), []);
    for seq in 1..=4 {
        let inputs = encode(vec![input("a", seq), ack("a", seq)]);
        assert_eq!(h.session.handle_inputs(&inputs, now), Some(Ok(())));
    }
    assert_eq!(h.sent().len(), 4);
    assert_eq!(h.errors(), []);
    let over = encode(vec![input("a", 5)]);
    assert_eq!(h.session.handle_inputs(&over, now), Some(Ok(())));
    assert_eq!(h.errors(), [(ErrorCode::RateLimited, 0)]);
    assert_eq!(h.sent().len(), 0);

    // Once pinged, the next message is the driver's (its timer may move sooner).
    h.advance(Duration::from_secs(601));
    assert_eq!(h.session.handle_timeout(h.now().instant), Ok(Beat::Ping));
    let inputs = encode(vec![input("a", 6)]);
    assert_eq!(h.session.handle_inputs(&inputs, h.now()), None);
    assert_eq!(h.sent().len(), 0);
    h.session.handle(Inbound::Binary(&inputs), h.now()).unwrap();
    assert_eq!(h.sent().len(), 1);
    let inputs = encode(vec![input("a", 7)]);
    assert_eq!(h.session.handle_inputs(&inputs, h.now()), Some(Ok(())));
}

#[test]
fn acknowledgements_cost_bytes_only() {
    let mut h = Harness::anonymous(strict());
    h.replies();
    h.one(join("a", 1)).unwrap();
    // Far more acks than the message burst, at one instant.
    for tick in 1..=50 {
        h.one(ack("a", tick)).unwrap();
    }
    assert_eq!(h.errors(), []);
    // The message bucket is untouched: three more messages fit the burst of four.
    h.send(vec![ping(1), ping(2), ping(3)]).unwrap();
    assert_eq!(h.errors(), []);
}

#[test]
fn over_the_rate_limit_is_refused_then_a_flood_is_closed() {
    let mut h = Harness::anonymous(strict());
    h.replies();
    for n in 0..4 {
        h.one(ping(n)).unwrap();
    }
    h.one(ping(4)).unwrap();
    let replies = h.replies();
    let refused = replies.iter().find_map(|k| match k {
        Kind::Error(e) if e.code == ErrorCode::RateLimited as i32 => Some(e.retry_after_ms),
        _ => None,
    });
    assert_eq!(refused, Some(100), "one token every 100 ms: {replies:?}");
    // Staying over the limit for the flood window closes the session.
    let mut end = Ok(());
    for _ in 0..40 {
        h.advance(Duration::from_millis(50));
        end = h.send(vec![ping(0), ping(0)]);
        if end.is_err() {
            break;
        }
    }
    assert_eq!(end, Err(CloseReason::RateLimited));
    assert!(h.elapsed >= Duration::from_secs(1));
}

/// A resume continues the session's rate limit: a client cannot refill its buckets by
/// dropping its connection and resuming (its flood window starts afresh: a time
/// offline is not time over the limit, and a client paced to the limits is never
/// closed for it).
#[test]
fn a_resume_keeps_the_rate_limit() {
    let mut h = Harness::anonymous(strict());
    h.replies();
    for n in 0..4 {
        h.one(ping(n)).unwrap();
    }
    let now = h.now();
    h.session.resume(None, Delivery::Reliable, None, now);
    h.replies();
    h.one(ping(4)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::RateLimited, 0)], "the bucket is as it was");
    // Resuming every 50 ms with two pings each, for two seconds: held to the rate
    // (10 a second), not closed.
    let mut answered = 0;
    for _ in 0..40 {
        h.advance(Duration::from_millis(50));
        let now = h.now();
        h.session.resume(None, Delivery::Reliable, None, now);
        h.send(vec![ping(0), ping(0)]).unwrap();
        answered += h.replies().iter().filter(|k| matches!(k, Kind::Pong(_))).count();
    }
    assert!((19..=21).contains(&answered), "{answered} pings answered in 2 s");
}

#[test]
fn frames_outside_the_protocol_close_with_their_code() {
    let mut h = Harness::new();
    let now = h.now();
    let s = &mut h.session;
    assert_eq!(s.handle(Inbound::Text, now), Err(CloseReason::TextFrame));
    assert_eq!(s.handle(Inbound::TooBig, now), Err(CloseReason::MessageTooBig));
    assert_eq!(
        s.handle(Inbound::Binary(&[0xff, 0xff]), now),
        Err(CloseReason::Undecodable)
    );
    assert_eq!(s.handle(Inbound::Control(0), now), Ok(()));
}

#[test]
fn empty_envelopes_and_unknown_kinds_are_bad_requests_not_closes() {
    let mut h = Harness::new();
    h.replies();
    let now = h.now();
    h.session.handle(Inbound::Binary(&[]), now).unwrap();
    // One message with no kind set.
    h.session.handle(Inbound::Binary(&[0x0a, 0x00]), now).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 0), (ErrorCode::BadRequest, 0)]);
}

#[test]
fn the_heartbeat_pings_when_quiet_and_times_out() {
    let mut h = Harness::new();
    let interval = h.session.ctx.settings.heartbeat_interval;
    let timeout = h.session.ctx.settings.heartbeat_timeout;
    assert_eq!(h.session.poll_timeout(), h.t0 + interval);
    // Inbound traffic of any kind pushes the ping back.
    h.advance(interval / 2);
    let now = h.now();
    h.session.handle(Inbound::Control(0), now).unwrap();
    assert_eq!(h.session.poll_timeout(), now.instant + interval);
    h.advance(interval);
    assert_eq!(h.session.handle_timeout(h.now().instant), Ok(Beat::Ping));
    h.advance(timeout);
    assert_eq!(
        h.session.handle_timeout(h.now().instant),
        Err(CloseReason::HeartbeatTimeout)
    );
}

#[test]
fn an_expired_token_closes_the_session_unless_refreshed() {
    let mut h = Harness::jwt(60, None);
    h.replies();
    assert_eq!(h.session.poll_timeout(), h.t0 + Duration::from_secs(60));
    // A refresh at 50 s with a token valid until 120 s moves the deadline.
    h.advance(Duration::from_secs(50));
    let refresh = |token: String, request_id| Out::RefreshToken(proto::RefreshToken { token, request_id });
    h.one(refresh(token("alice", UNIX0 + 120, None), 1)).unwrap();
    assert!(matches!(&h.replies()[..], [Kind::TokenRefreshed(r)] if r.expires_at_unix == UNIX0 + 120));
    // Another user's token, or one already expired on the session's clock, is refused.
    h.one(refresh(token("mallory", UNIX0 + 600, None), 2)).unwrap();
    h.one(refresh(token("alice", UNIX0 + 40, None), 3)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::Forbidden, 2), (ErrorCode::Forbidden, 3)]);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.session.handle_timeout(h.now().instant), Ok(Beat::Idle));
    h.advance(Duration::from_secs(10));
    assert_eq!(
        h.session.handle_timeout(h.now().instant),
        Err(CloseReason::TokenExpired)
    );
}

/// Each refresh checks a signature: a user's sessions together get 3 at once, then
/// one every 5 s, refused `RATE_LIMITED` with when to retry before the check.
#[test]
fn token_refreshes_are_rate_limited_per_user() {
    let mut h = Harness::jwt(600, None);
    h.replies();
    let refresh = |request_id| {
        Out::RefreshToken(proto::RefreshToken {
            token: token("alice", UNIX0 + 900, None),
            request_id,
        })
    };
    for id in 1..=4 {
        h.one(refresh(id)).unwrap();
    }
    let replies = h.replies();
    assert_eq!(
        replies.iter().filter(|k| matches!(k, Kind::TokenRefreshed(_))).count(),
        3
    );
    let refused = replies.iter().find_map(|k| match k {
        Kind::Error(e) => Some((e.code, e.request_id, e.retry_after_ms)),
        _ => None,
    });
    assert_eq!(refused, Some((ErrorCode::RateLimited as i32, 4, 5000)));
    h.advance(Duration::from_secs(5));
    h.one(refresh(5)).unwrap();
    assert!(matches!(&h.replies()[..], [Kind::TokenRefreshed(r)] if r.request_id == 5));
}

#[test]
fn token_refresh_is_refused_in_anonymous_mode() {
    let mut h = Harness::new();
    h.replies();
    h.one(Out::RefreshToken(proto::RefreshToken {
        token: token("alice", UNIX0 + 60, None),
        request_id: 4,
    }))
    .unwrap();
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 4)]);
}

#[test]
fn ping_is_answered_with_both_time_stamps_and_confirms_what_the_client_got() {
    let mut h = Harness::new();
    h.replies();
    h.one(join("a", 1)).unwrap();
    // Three numbered replies go out; the client confirms the first two.
    h.send(vec![input("nowhere", 1), input("nowhere", 2), input("nowhere", 3)])
        .unwrap();
    h.replies();
    h.one(Out::Ping(proto::Ping {
        nonce: 42,
        sent_time_us: 1234,
        received_seq: 2,
    }))
    .unwrap();
    let now_us = h.now().unix_us;
    assert!(matches!(&h.replies()[..],
        [Kind::Pong(p)] if (p.nonce, p.ping_sent_time_us, p.time_us) == (42, 1234, now_us)));
    // What the client did not confirm (the third reply and the pong) is kept for a
    // resume; the first two are forgotten.
    assert_eq!(h.outbox.replay_after(0).sent_again, 2);
}

#[test]
fn inputs_and_events_go_to_the_room() {
    let mut h = Harness::new();
    h.replies();
    h.one(join("a", 1)).unwrap();
    let a = h.key("a");
    let event = Out::Event(proto::SendEvent {
        room: "a".into(),
        ..Default::default()
    });
    let kind = |kind: String| {
        Out::Event(proto::SendEvent {
            room: "a".into(),
            kind,
            ..Default::default()
        })
    };
    h.send(vec![
        input("a", 10),
        event,
        kind("k".repeat(257)),
        kind("shot\nfired".into()),
    ])
    .unwrap();
    assert_eq!(
        h.sent(),
        [
            Sent::Join { room: a, join_seq: 1 },
            Sent::Input { room: a, seq: 10 },
            Sent::Event { room: a }
        ]
    );
    // An event's kind is bounded as a simulation's and the HTTP API's are, and holds
    // no control characters.
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 0), (ErrorCode::BadRequest, 0)]);
    // An input without a payload never reaches the room.
    h.one(Out::Input(proto::Input {
        room: "a".into(),
        seq: 11,
        payload: None,
    }))
    .unwrap();
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 11)]);
    assert!(h.sent().is_empty());
    // Nor does one numbered 0, which would never be applied, or one whose seq would
    // swallow every later input; the next one is applied.
    h.send(vec![input("a", 0), input("a", u64::MAX), input("a", 12)])
        .unwrap();
    assert_eq!(
        h.errors(),
        [(ErrorCode::BadRequest, 0), (ErrorCode::BadRequest, u64::MAX)]
    );
    assert_eq!(h.sent(), [Sent::Input { room: a, seq: 12 }]);
}

#[test]
fn room_listings_are_paged() {
    let mut h = Harness::new();
    h.replies();
    let list = |after: &str, limit| {
        Out::Request(proto::Request {
            request_id: 3,
            kind: Some(request::Kind::ListRooms(proto::ListRooms {
                after: after.into(),
                limit,
                room_type: "arena".into(),
                filters: meta(&[("mode", "ctf")]),
                open_only: limit > 0,
            })),
        })
    };
    h.send(vec![list("", 0), list("a", 7)]).unwrap();
    let (arena, ctf) = (String::from("arena"), meta(&[("mode", "ctf")]));
    assert_eq!(
        *h.rooms.listed.lock(),
        [
            (String::new(), DEFAULT_ROOMS_PER_PAGE, arena.clone(), ctf.clone(), false),
            ("a".to_string(), 7, arena, ctf, true)
        ]
    );
    let replies = h.replies();
    let Kind::Response(proto::Response {
        kind: Some(response::Kind::Rooms(page)),
        ..
    }) = &replies[0]
    else {
        panic!("expected a room list, got {replies:?}");
    };
    assert!(page.more);
    assert_eq!(page.next_after, "b", "the last room listed");
}

/// Numbered events are taken once each: those a resumed client sends again (it had
/// no acknowledgement for them) are skipped, and the last number taken is reported
/// in every `Pong` and in the resume's `Welcome`.
#[test]
fn numbered_events_are_taken_once_and_acknowledged() {
    let mut h = Harness::new();
    h.replies();
    h.one(join("a", 1)).unwrap();
    let a = h.key("a");
    h.sent();
    let event = || {
        Out::Event(proto::SendEvent {
            room: "a".into(),
            ..Default::default()
        })
    };
    // Events 1 and 2, an input between them (not numbered), then a ping.
    h.send_numbered(1, vec![event(), input("a", 1), event(), ping(5)])
        .unwrap();
    assert_eq!(
        h.sent(),
        [
            Sent::Event { room: a },
            Sent::Input { room: a, seq: 1 },
            Sent::Event { room: a }
        ]
    );
    assert!(matches!(&h.replies()[..], [Kind::Pong(p)] if p.events_received == 2));
    // The connection dies; the resumed client sends 2 and 3 again (it never saw the
    // pong): only 3 is new.
    let now = h.now();
    h.session.resume(None, Delivery::Reliable, Some(0), now);
    assert!(matches!(&h.replies()[0], Kind::Welcome(w) if w.resumed && w.events_received == 2));
    h.sent();
    h.send_numbered(2, vec![event(), event()]).unwrap();
    assert_eq!(h.sent(), [Sent::Event { room: a }]);
    // Unnumbered events are always taken; a number beyond 2^53 - 1 is refused.
    h.send(vec![event()]).unwrap();
    assert_eq!(h.sent(), [Sent::Event { room: a }]);
    h.send_numbered(MAX_INPUT_SEQ + 1, vec![event()]).unwrap();
    assert!(h.sent().is_empty());
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 0)]);
    // So is an envelope whose later events would be numbered beyond it; one that
    // ends at it is taken.
    h.send_numbered(MAX_INPUT_SEQ, vec![event(), event()]).unwrap();
    assert!(h.sent().is_empty());
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 0)]);
    h.send_numbered(MAX_INPUT_SEQ - 1, vec![event(), event()]).unwrap();
    assert_eq!(h.sent(), [Sent::Event { room: a }, Sent::Event { room: a }]);
    assert_eq!(h.errors(), []);
    h.one(ping(6)).unwrap();
    assert!(matches!(&h.replies()[..], [Kind::Pong(p)] if p.events_received == MAX_INPUT_SEQ));
    // An envelope with no event numbers none: its first number is not looked at.
    h.send_numbered(u64::MAX, vec![ping(7)]).unwrap();
    assert!(
        matches!(&h.replies()[..], [Kind::Pong(p)] if p.nonce == 7),
        "answered, no error"
    );
}

/// Once the node's rooms are handed off (the node stopping), events are not taken:
/// not sent to the room, not counted, so the client sends them again where it goes.
#[test]
fn events_are_not_taken_once_the_rooms_are_handed_off() {
    let mut h = Harness::new();
    h.replies();
    h.one(join("a", 1)).unwrap();
    h.sent();
    let event = || {
        Out::Event(proto::SendEvent {
            room: "a".into(),
            ..Default::default()
        })
    };
    h.send_numbered(1, vec![event()]).unwrap();
    h.rooms.handed_off.store(true, std::sync::atomic::Ordering::Relaxed);
    h.send_numbered(2, vec![event(), ping(5)]).unwrap();
    assert_eq!(h.sent().len(), 1, "the first event only");
    assert!(matches!(&h.replies()[..], [Kind::Pong(p)] if p.events_received == 1));
}

#[test]
fn a_resume_welcomes_again_and_resyncs_every_room() {
    let mut h = Harness::new();
    h.replies();
    h.send(vec![join("a", 1), join("b", 2)]).unwrap();
    let (a, b) = (h.key("a"), h.key("b"));
    h.sent();
    h.replies();
    h.advance(Duration::from_secs(3));
    let now = h.now();
    h.session.resume(None, Delivery::Acknowledged, Some(0), now);
    let mut sent = h.sent();
    sent.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        sent,
        [
            Sent::Resync {
                room: a,
                request_id: 0,
                joined_too: false
            },
            Sent::Resync {
                room: b,
                request_id: 0,
                joined_too: false
            }
        ]
    );
    assert!(matches!(&h.replies()[0], Kind::Welcome(w) if w.resumed));
    // The timers restarted at the resume.
    assert_eq!(
        h.session.poll_timeout(),
        now.instant + h.session.ctx.settings.heartbeat_interval
    );
}

#[test]
fn a_resume_that_misses_messages_no_longer_kept_asks_its_rooms_for_joined() {
    let mut h = Harness::new();
    h.replies();
    h.one(join("a", 1)).unwrap();
    let a = h.key("a");
    h.sent();
    // More presence than is kept for a resume went to the dropped connection.
    let kept = OutboxLimits::default().max_messages / 2;
    for _ in 0..kept + 3 {
        h.outbox.push_reliable(Bytes::from_static(b"presence")).unwrap();
    }
    h.outbox.drain(&mut h.batch);
    let now = h.now();
    let replay = h.session.resume(None, Delivery::Reliable, Some(1), now);
    assert_eq!((replay.sent_again, replay.missing), (kept, 2));
    let resync = Sent::Resync {
        room: a,
        request_id: 0,
        joined_too: true,
    };
    assert_eq!(h.sent(), [resync]);
    // Resumed again having received everything: a snapshot, no `Joined`.
    let replay = h.session.resume(None, Delivery::Reliable, Some(kept as u64 + 3), now);
    assert_eq!((replay.sent_again, replay.missing), (0, 0));
    assert!(matches!(&h.sent()[..], [Sent::Resync { joined_too: false, .. }]));
}

#[test]
fn a_resume_that_does_not_say_what_it_received_gets_every_room_joined_again() {
    // A new process with its predecessor's resume token: it knows none of the rooms.
    let mut h = Harness::new();
    h.replies();
    h.send(vec![join("a", 1), join("b", 2)]).unwrap();
    let (a, b) = (h.key("a"), h.key("b"));
    h.sent();
    h.outbox.push_reliable(Bytes::from_static(b"presence")).unwrap();
    h.outbox.drain(&mut h.batch);
    let now = h.now();
    let replay = h.session.resume(None, Delivery::Reliable, None, now);
    assert_eq!((replay.sent_again, replay.missing), (0, 0), "nothing is sent again");
    let mut sent = h.sent();
    sent.sort_by_key(|s| format!("{s:?}"));
    let resync = |room| Sent::Resync {
        room,
        request_id: 0,
        joined_too: true,
    };
    assert_eq!(sent, [resync(a), resync(b)]);
}

#[test]
fn closing_leaves_every_room_once() {
    let mut h = Harness::new();
    h.send(vec![join("a", 1), join("b", 2)]).unwrap();
    h.sent();
    h.session.close();
    let mut sent = h.sent();
    sent.sort_by_key(|s| format!("{s:?}"));
    let (a, b) = (h.key("a"), h.key("b"));
    assert_eq!(
        sent,
        [
            Sent::Leave { room: a, request_id: 0 },
            Sent::Leave { room: b, request_id: 0 }
        ]
    );
    assert!(h.outbox.is_closed() && h.session.is_closed());
    h.session.close();
    assert!(h.sent().is_empty());
}

#[test]
fn a_session_dropped_without_closing_only_marks_its_outbox() {
    let h = Harness::new();
    let (outbox, rooms) = (h.outbox.clone(), h.rooms.clone());
    drop(h);
    assert!(outbox.is_closed(), "rooms drop the seat at their next tick");
    assert!(rooms.sent.lock().is_empty());
}

/// Cluster mode: the directory's answer to the claim the session asked for (a
/// redirect carries the seat ticket "ticket").
fn claimed(h: &mut Harness, room: &str, outcome: Result<Claim, PoolError>) {
    claimed_with(h, room, outcome, "", None);
}

/// [`claimed`] for a join that presented `seat`, whose ticket carried `carried`.
fn claimed_with(
    h: &mut Harness,
    room: &str,
    outcome: Result<Claim, PoolError>,
    seat: &str,
    carried: Option<proto::Seat>,
) {
    let op = h.session.poll_directory();
    let request_id = match &op {
        Some(DirectoryOp::Claim { request_id, .. }) => *request_id,
        _ => 0,
    };
    let member = proto::Seat {
        member_id: 7,
        user_id: "anonymous-1".into(),
        last_input_seq: 0,
        member_data: Default::default(),
        ..Default::default()
    };
    let expected = DirectoryOp::Claim {
        room: room.into(),
        room_type: String::new(),
        seat: seat.into(),
        member,
        listing: ListingState {
            owner: 7,
            ..ListingState::default()
        },
        request_id,
    };
    assert_eq!(op, Some(expected));
    let redirected = matches!(outcome, Ok(Claim::Theirs { url: Some(_), .. }));
    let reply = DirectoryReply::Claim {
        room: room.into(),
        outcome,
        was_open: false,
        ticket: if redirected { "ticket".into() } else { String::new() },
        seat: carried,
        request_id,
        opening: None,
    };
    h.session.on_directory(reply);
}

/// Over QUIC with `quic_redirects`, a redirect and `GoingAway` name the other node's
/// `quic://` URL (its public URL's host and port); over WebSocket, or without the
/// setting, its public URL.
#[test]
fn clustered_a_session_over_quic_is_sent_on_over_quic() {
    let urls = |quic_redirects: bool, delivery: Delivery| {
        let mut h = Harness::anonymous_on(
            SessionSettings {
                quic_redirects,
                ..settings()
            },
            true,
        );
        h.outbox.reset_delivered(delivery);
        h.replies();
        h.one(join("b", 1)).unwrap();
        let theirs = Claim::Theirs {
            node: "b".into(),
            url: Some("wss://node-b:7443/ws".into()),
        };
        claimed(&mut h, "b", Ok(theirs));
        h.session.going_away("wss://node-c:7443/ws?x=1".into());
        h.replies()
            .into_iter()
            .filter_map(|kind| match kind {
                Kind::Redirect(r) => Some(r.url),
                Kind::GoingAway(g) => Some(g.url),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        urls(true, Delivery::Acknowledged),
        ["quic://node-b:7443", "quic://node-c:7443"]
    );
    let public = ["wss://node-b:7443/ws", "wss://node-c:7443/ws?x=1"];
    assert_eq!(urls(true, Delivery::Reliable), public, "over WebSocket");
    assert_eq!(urls(false, Delivery::Acknowledged), public, "not asked");
}

#[test]
fn clustered_a_room_open_here_is_joined_without_the_directory() {
    let mut h = Harness::clustered();
    h.replies();
    h.rooms.open("here", "", "", ListingState::default()).unwrap();
    h.one(join("here", 1)).unwrap();
    assert_eq!(h.session.poll_directory(), None);
    let here = h.key("here");
    assert_eq!(
        h.sent(),
        [Sent::Join {
            room: here,
            join_seq: 1
        }]
    );
}

#[test]
fn clustered_a_claimed_room_opens_here_with_what_was_sent_meanwhile() {
    let mut h = Harness::clustered();
    h.replies();
    h.send(vec![join("new", 1), input("new", 1), input("new", 2)]).unwrap();
    assert_eq!(h.sent(), [], "nothing reaches a room before the claim");
    h.one(join("new", 2)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::AlreadyMember, 2)], "one join at a time");
    claimed(&mut h, "new", Ok(Claim::Ours));
    let new = h.key("new");
    let expected = [
        Sent::Join { room: new, join_seq: 1 },
        Sent::Input { room: new, seq: 1 },
        Sent::Input { room: new, seq: 2 },
    ];
    assert_eq!(h.sent(), expected);
    assert_eq!(h.errors(), []);
    // A member now: inputs go straight to the room.
    h.one(input("new", 3)).unwrap();
    assert_eq!(h.sent(), [Sent::Input { room: new, seq: 3 }]);
}

#[test]
fn clustered_a_room_owned_elsewhere_redirects_and_frees_the_slot() {
    let mut h = Harness::clustered();
    h.replies();
    h.send(vec![join("a", 1), join("b", 2), join("c", 3)]).unwrap();
    assert_eq!(
        h.errors(),
        [(ErrorCode::LimitExceeded, 3)],
        "waiting joins count against the cap"
    );
    let url = "wss://node-b:7443/ws".to_string();
    let theirs = Claim::Theirs {
        node: "b".into(),
        url: Some(url.clone()),
    };
    // Ops are taken last first.
    claimed(&mut h, "b", Ok(theirs));
    let redirect = proto::Redirect {
        request_id: 2,
        room: "b".into(),
        url,
        seat: "ticket".into(),
    };
    assert_eq!(h.replies(), [Kind::Redirect(redirect)]);
    h.one(input("b", 1)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::NotAMember, 1)]);
    h.one(join("c", 4)).unwrap();
    assert_eq!(h.errors(), [], "the redirected join's slot is free");
}

#[test]
fn clustered_directory_trouble_and_unreachable_owners_are_typed_errors() {
    let mut h = Harness::clustered();
    h.replies();
    h.one(join("a", 1)).unwrap();
    claimed(&mut h, "a", Err(PoolError::Unavailable("down".into())));
    h.one(join("a", 2)).unwrap();
    let dead_owner = Claim::Theirs {
        node: "b".into(),
        url: None,
    };
    claimed(&mut h, "a", Ok(dead_owner));
    assert_eq!(h.errors(), [(ErrorCode::Unavailable, 1), (ErrorCode::Unavailable, 2)]);
    assert_eq!(h.sent(), []);
}

#[test]
fn clustered_a_leave_before_the_claim_answers_is_final() {
    let mut h = Harness::clustered();
    h.replies();
    h.one(join("a", 1)).unwrap();
    h.one(Out::Leave(proto::LeaveRoom {
        room: "a".into(),
        request_id: 2,
    }))
    .unwrap();
    let replies = h.replies();
    assert!(
        matches!(&replies[..], [Kind::Left(l)] if l.request_id == 2),
        "{replies:?}"
    );
    claimed(&mut h, "a", Ok(Claim::Ours));
    assert_eq!(h.sent(), [], "the claim finds no join to finish");
    let release = DirectoryOp::Release { room: "a".into() };
    assert_eq!(h.session.poll_directory(), Some(release), "its claim given up");
}

/// Joined, left and joined again while the first join's claim runs: the first claim's
/// answer finishes nothing (nor gives the room up: the second claim, for this node
/// too, decides); the second's finishes the second join.
#[test]
fn clustered_a_claim_answers_its_own_join_not_a_later_one() {
    let mut h = Harness::clustered();
    h.replies();
    h.one(join("a", 1)).unwrap();
    let first = h.session.poll_directory();
    assert!(
        matches!(first, Some(DirectoryOp::Claim { request_id: 1, .. })),
        "{first:?}"
    );
    h.one(Out::Leave(proto::LeaveRoom {
        room: "a".into(),
        request_id: 2,
    }))
    .unwrap();
    h.one(join("a", 3)).unwrap();
    let second = h.session.poll_directory();
    assert!(
        matches!(second, Some(DirectoryOp::Claim { request_id: 3, .. })),
        "{second:?}"
    );
    let ours = |request_id| DirectoryReply::Claim {
        room: "a".into(),
        outcome: Ok(Claim::Ours),
        was_open: false,
        ticket: String::new(),
        seat: None,
        request_id,
        opening: None,
    };
    h.session.on_directory(ours(1));
    assert_eq!(h.sent(), []);
    assert_eq!(h.session.poll_directory(), None, "not given up");
    h.session.on_directory(ours(3));
    let a = h.key("a");
    assert_eq!(h.sent(), [Sent::Join { room: a, join_seq: 1 }]);
}

/// A session that ends while a claim is under way gives the room up (the claim may
/// have been granted, and nobody would open it); one not yet sent, or a listing,
/// needs nothing.
#[test]
fn clustered_a_session_ending_during_a_claim_gives_the_room_up() {
    let mut h = Harness::clustered();
    h.replies();
    h.one(join("a", 1)).unwrap();
    assert!(matches!(h.session.poll_directory(), Some(DirectoryOp::Claim { .. })));
    h.one(join("b", 2)).unwrap();
    h.session.close();
    let release = DirectoryOp::Release { room: "a".into() };
    assert_eq!(h.session.poll_directory(), Some(release));
    assert_eq!(h.session.poll_directory(), None, "b was never claimed");
}

/// A claimed room the join then cannot open (the creator's limit, say) is given up:
/// its directory entry would list a room that runs nowhere. One open here meanwhile
/// is kept.
#[test]
fn clustered_a_claimed_room_that_does_not_open_is_released() {
    let mut h = Harness::clustered();
    h.replies();
    *h.rooms.refuse_open.lock() = Some(PoolError::TooManyRooms);
    h.one(join("a", 1)).unwrap();
    claimed(&mut h, "a", Ok(Claim::Ours));
    assert_eq!(h.errors(), [(ErrorCode::ServerBusy, 1)]);
    let release = DirectoryOp::Release { room: "a".into() };
    assert_eq!(h.session.poll_directory(), Some(release));

    *h.rooms.refuse_open.lock() = None;
    h.one(join("b", 2)).unwrap();
    h.rooms.open("b", "", "", ListingState::default()).unwrap();
    *h.rooms.refuse_open.lock() = Some(PoolError::TooManyRooms);
    claimed(&mut h, "b", Ok(Claim::Ours));
    assert_eq!(h.session.poll_directory(), None, "open here: kept");
}

/// A room open here as its claim began (the claim renewed its entry) that closed
/// before the claim answered is not opened anew (it would run without its entry,
/// which its close takes away): the join is answered `UNAVAILABLE`, which clients
/// try again, and the claim is given back. Still open, it is joined.
#[test]
fn clustered_a_room_that_closed_while_its_claim_ran_is_not_opened_anew() {
    let mut h = Harness::clustered();
    h.replies();
    let renewed = |room: &str, request_id| DirectoryReply::Claim {
        room: room.into(),
        outcome: Ok(Claim::Ours),
        was_open: true,
        ticket: String::new(),
        seat: None,
        request_id,
        opening: None,
    };
    h.one(join("gone", 1)).unwrap();
    assert!(matches!(h.session.poll_directory(), Some(DirectoryOp::Claim { .. })));
    h.session.on_directory(renewed("gone", 1));
    assert_eq!(h.errors(), [(ErrorCode::Unavailable, 1)]);
    assert!(h.rooms.find("gone").is_none(), "opened anew");
    let release = DirectoryOp::Release { room: "gone".into() };
    assert_eq!(h.session.poll_directory(), Some(release));

    h.one(join("kept", 2)).unwrap();
    assert!(matches!(h.session.poll_directory(), Some(DirectoryOp::Claim { .. })));
    h.rooms.open("kept", "", "", ListingState::default()).unwrap();
    h.session.on_directory(renewed("kept", 2));
    let kept = h.key("kept");
    assert_eq!(
        h.sent(),
        [Sent::Join {
            room: kept,
            join_seq: 1
        }]
    );
    assert_eq!(h.errors(), []);
}

/// Room searches look at many rooms each: a creator's sessions share a rate, and a
/// search over it is answered `RATE_LIMITED` with when to retry, not run.
#[test]
fn room_searches_share_a_rate_per_creator() {
    let mut h = Harness::new();
    h.replies();
    let searches = Arc::new(limits::SharedRate::new(1.0, 2.0));
    h.session.ctx.searches = searches.clone();
    let list = |request_id| {
        Out::Request(proto::Request {
            request_id,
            kind: Some(request::Kind::ListRooms(proto::ListRooms::default())),
        })
    };
    h.send(vec![list(1), quick_join("relay", &[], &[], 2), list(3)])
        .unwrap();
    assert_eq!(h.rooms.listed.lock().len(), 1, "the third search did not run");
    let replies = h.replies();
    let limited: Vec<_> = (replies.iter())
        .filter_map(|k| match k {
            Kind::Error(e) if e.code == ErrorCode::RateLimited as i32 => Some((e.request_id, e.retry_after_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(limited, [(3, 1000)]);
    // Another session of the same address shares the rate; a second later, one more.
    assert!(searches.take("127.0.0.1", h.now().instant).is_err());
    h.advance(Duration::from_secs(1));
    h.one(list(4)).unwrap();
    assert_eq!(h.rooms.listed.lock().len(), 2);
}

/// A quick join the search rate refused did not run: sent again with its request id
/// after the wait, it runs (only a quick join that ran is remembered by its id).
#[test]
fn a_quick_join_refused_for_the_search_rate_runs_when_sent_again_with_its_id() {
    let mut h = Harness::new();
    h.replies();
    h.session.ctx.searches = Arc::new(limits::SharedRate::new(1.0, 1.0));
    h.send(vec![quick_join("relay", &[], &[], 1), quick_join("relay", &[], &[], 2)])
        .unwrap();
    assert_eq!(h.sent().len(), 1, "the first ran");
    assert_eq!(h.errors(), [(ErrorCode::RateLimited, 2)]);
    h.advance(Duration::from_secs(1));
    h.one(quick_join("relay", &[], &[], 2)).unwrap();
    assert_eq!(h.sent().len(), 1, "sent again after the wait, it ran");
    // Once run, the same id again is ignored, as before.
    h.advance(Duration::from_secs(1));
    h.one(quick_join("relay", &[], &[], 2)).unwrap();
    assert_eq!(h.sent(), []);
    assert!(h.replies().is_empty());
}

#[test]
fn clustered_a_resume_asks_again_what_the_old_connection_was_running() {
    let mut h = Harness::clustered();
    h.replies();
    h.one(join("a", 1)).unwrap();
    let list = Out::Request(proto::Request {
        request_id: 2,
        kind: Some(request::Kind::ListRooms(proto::ListRooms::default())),
    });
    h.one(list).unwrap();
    let mut taken = vec![h.session.poll_directory().unwrap(), h.session.poll_directory().unwrap()];
    assert_eq!(h.session.poll_directory(), None);
    // The connection died with both under way.
    h.session.resume(None, Delivery::Reliable, Some(0), h.now());
    let mut again = vec![h.session.poll_directory().unwrap(), h.session.poll_directory().unwrap()];
    taken.sort_by_key(|op| format!("{op:?}"));
    again.sort_by_key(|op| format!("{op:?}"));
    assert_eq!(taken, again);
    let expected_list = DirectoryOp::List {
        request_id: 2,
        after: String::new(),
        limit: DEFAULT_ROOMS_PER_PAGE,
        room_type: String::new(),
        filters: Metadata::new(),
        open_only: false,
    };
    assert!(again.contains(&expected_list));
    h.replies();
    let page = vec![proto::RoomInfo {
        room: "elsewhere".into(),
        room_type: "relay".into(),
        members: 3,
        max_members: 8,
        ..Default::default()
    }];
    h.session.on_directory(DirectoryReply::List {
        request_id: 2,
        outcome: Ok((page.clone(), Some("elsewhere".into()))),
    });
    let replies = h.replies();
    let [Kind::Response(response)] = &replies[..] else {
        panic!("{replies:?}");
    };
    assert_eq!(
        response.kind,
        Some(response::Kind::Rooms(proto::RoomList {
            rooms: page,
            more: true,
            next_after: "elsewhere".into(),
        }))
    );
    assert!(h.rooms.listed.lock().is_empty(), "listings come from the directory");
}

#[test]
fn clustered_listings_waiting_for_the_directory_are_bounded() {
    let mut h = Harness::clustered();
    h.replies();
    let list = |request_id| {
        Out::Request(proto::Request {
            request_id,
            kind: Some(request::Kind::ListRooms(proto::ListRooms::default())),
        })
    };
    h.send((1..=5).map(list).collect()).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::LimitExceeded, 5)]);
}

#[test]
fn clustered_claims_under_way_are_bounded_even_for_rooms_left() {
    let mut h = Harness::clustered();
    h.replies();
    // Join and leave at once, again and again: each claim still runs.
    h.send(vec![join("a", 1), leave("a", 0), join("b", 2), leave("b", 0)])
        .unwrap();
    h.replies();
    h.one(join("c", 3)).unwrap();
    assert_eq!(
        h.errors(),
        [(ErrorCode::LimitExceeded, 3)],
        "two claims under way: the cap"
    );
}

/// The directory's answer to one claim ends that claim only: the same room joined and
/// left twice with the same request id is two claims under way, and one answer must
/// not free the bound of both.
#[test]
fn clustered_one_answer_ends_one_of_two_claims_with_the_same_request_id() {
    let mut h = Harness::clustered();
    h.replies();
    h.send(vec![join("a", 1), leave("a", 0), join("a", 1), leave("a", 0)])
        .unwrap();
    h.replies();
    for _ in 0..2 {
        assert!(matches!(
            h.session.poll_directory(),
            Some(DirectoryOp::Claim { request_id: 1, .. })
        ));
    }
    h.session.on_directory(DirectoryReply::Claim {
        room: "a".into(),
        outcome: Ok(Claim::Ours),
        was_open: false,
        ticket: String::new(),
        seat: None,
        request_id: 1,
        opening: None,
    });
    h.replies();
    // One claim still runs: one more fits under the bound of two, a second does not.
    h.send(vec![join("c", 3), leave("c", 0), join("d", 4)]).unwrap();
    assert_eq!(
        h.errors(),
        [(ErrorCode::LimitExceeded, 4)],
        "one claim of the two still under way"
    );
}

/// A join with a seat ticket of a room the session is in already does not go to the
/// directory: a leave right after it must find the member seated and leave.
#[test]
fn clustered_a_seat_ticket_for_a_room_the_session_is_in_is_not_claimed() {
    let mut h = Harness::clustered();
    h.replies();
    h.rooms.open("r", "", "", ListingState::default()).unwrap();
    h.one(join("r", 1)).unwrap();
    assert_eq!(h.session.poll_directory(), None, "open here");
    h.one(Out::Join(proto::JoinRoom {
        room: "r".into(),
        request_id: 2,
        seat: "t".into(),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(h.session.poll_directory(), None, "in it already");
    h.sent();
    h.one(Out::Leave(proto::LeaveRoom {
        room: "r".into(),
        request_id: 3,
    }))
    .unwrap();
    let r = h.key("r");
    assert!(
        h.sent()
            .iter()
            .any(|s| matches!(s, Sent::Leave { room, .. } if *room == r)),
        "the member leaves"
    );
}

#[test]
fn clustered_a_seat_ticket_joins_as_the_member_it_carries() {
    let mut h = Harness::clustered();
    h.replies();
    // Open here already: the ticket still goes to the directory.
    h.rooms.open("r", "", "", ListingState::default()).unwrap();
    h.one(Out::Join(proto::JoinRoom {
        room: "r".into(),
        request_id: 1,
        seat: "t".into(),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(h.sent(), []);
    let carried = proto::Seat {
        member_id: 42,
        user_id: "anonymous-9".into(),
        last_input_seq: 0,
        member_data: Default::default(),
        ..Default::default()
    };
    claimed_with(&mut h, "r", Ok(Claim::Ours), "t", Some(carried));
    let r = h.key("r");
    assert_eq!(h.sent(), [Sent::Join { room: r, join_seq: 1 }]);
    h.one(input("r", 3)).unwrap();
    assert_eq!(h.rooms.members.lock().last(), Some(&42), "inputs go in as member 42");
}

/// A quick join on another node picked the room as the directory last listed it: its
/// ticket joins only while the room is still one that quick join could pick.
#[test]
fn clustered_a_quick_join_ticket_joins_only_a_room_it_could_still_pick() {
    let mut h = Harness::clustered();
    h.replies();
    let listing = ListingState::listed_as(&meta(&[("mode", "ctf")]));
    let room = h.rooms.open("r", "", "", listing).unwrap();
    let picked = proto::Seat {
        member_id: 42,
        user_id: "anonymous-9".into(),
        last_input_seq: 0,
        member_data: Default::default(),
        quick_join: true,
        quick_join_filters: meta(&[("mode", "ctf")]),
    };
    let present = |h: &mut Harness, request_id| {
        h.one(Out::Join(proto::JoinRoom {
            room: "r".into(),
            request_id,
            seat: "t".into(),
            ..Default::default()
        }))
        .unwrap();
        claimed_with(h, "r", Ok(Claim::Ours), "t", Some(picked.clone()));
    };
    // Locked since the pick, then changed to other metadata, then filled: refused as
    // full.
    room.shared.listing.update(|l| l.locked = true);
    present(&mut h, 1);
    room.shared.listing.update(|l| {
        l.locked = false;
        l.metadata = meta(&[("mode", "dm")]);
    });
    present(&mut h, 2);
    room.shared.listing.update(|l| l.metadata = meta(&[("mode", "ctf")]));
    let members = &room.shared.members;
    members.store(room.shared.max_members, std::sync::atomic::Ordering::Relaxed);
    present(&mut h, 3);
    let full = ErrorCode::RoomFull;
    assert_eq!(h.errors(), [(full, 1), (full, 2), (full, 3)]);
    assert_eq!(h.sent(), []);
    // As it was picked: joined, as the member the ticket carries.
    members.store(0, std::sync::atomic::Ordering::Relaxed);
    present(&mut h, 4);
    let r = h.key("r");
    assert_eq!(h.sent(), [Sent::Join { room: r, join_seq: 1 }]);
    h.one(input("r", 4)).unwrap();
    assert_eq!(h.rooms.members.lock().last(), Some(&42));
}

#[test]
fn a_quick_join_with_nothing_open_creates_a_public_room_holding_its_filters() {
    let mut h = Harness::new();
    h.replies();
    h.one(quick_join("arena", &[("mode", "ctf")], &[("map", "dust")], 4))
        .unwrap();
    // Named after its type and the injected random part; created public (a quick
    // join's `private` is ignored), owned by this session's member.
    let room = h.key("arena-r4nd0m");
    assert_eq!(h.sent(), [Sent::Join { room, join_seq: 1 }]);
    let listing = h.rooms.opened.lock()["arena-r4nd0m"].shared.listing.get();
    assert_eq!(listing.metadata, meta(&[("map", "dust"), ("mode", "ctf")]));
    assert!(!listing.private && !listing.locked);
    assert_eq!(listing.owner, 7);
}

#[test]
fn a_quick_join_sent_again_with_its_request_id_is_not_run_twice() {
    let mut h = Harness::new();
    h.replies();
    h.one(quick_join("arena", &[], &[], 4)).unwrap();
    let room = h.key("arena-r4nd0m");
    assert_eq!(h.sent(), [Sent::Join { room, join_seq: 1 }]);
    // A client after a resume that does not know whether its quick join arrived: the
    // answer went already (a resume sends it again); no second room.
    h.one(quick_join("arena", &[], &[], 4)).unwrap();
    assert_eq!(h.sent(), []);
    assert!(h.replies().is_empty());
    // An unnumbered quick join (request id 0) is always a new one.
    h.one(quick_join("relay", &[], &[], 0)).unwrap();
    assert_eq!(h.sent().len(), 1);
    // One sent again costs no room search: with none left it is still not answered
    // (a RATE_LIMITED would read as the answer to the one that ran).
    h.session.ctx.searches = Arc::new(limits::SharedRate::new(0.001, 1.0));
    h.one(quick_join("arena", &[], &[], 4)).unwrap();
    h.one(quick_join("arena", &[], &[], 6)).unwrap();
    h.one(quick_join("arena", &[], &[], 7)).unwrap();
    let limited: Vec<u64> = (h.errors().into_iter())
        .filter(|(code, _)| *code == ErrorCode::RateLimited)
        .map(|(_, request_id)| request_id)
        .collect();
    assert_eq!(limited, [7], "the search went to 6, not to 4 sent again");
}

#[test]
fn a_quick_join_takes_a_reserved_seat_in_an_open_matching_room_it_is_not_in() {
    let mut h = Harness::new();
    h.replies();
    let open = |h: &Harness, id: &str, room_type: &str, metadata: &[(&str, &str)]| {
        let listing = ListingState {
            metadata: meta(metadata),
            ..ListingState::default()
        };
        h.rooms.open(id, room_type, "", listing).unwrap()
    };
    open(&h, "other-type", "relay", &[("mode", "ctf")]);
    open(&h, "other-mode", "arena", &[("mode", "dm")]);
    let locked = open(&h, "locked", "arena", &[("mode", "ctf")]);
    locked.shared.listing.update(|l| l.locked = true);
    let full = open(&h, "full", "arena", &[("mode", "ctf")]);
    full.shared.members.store(8, Ordering::Relaxed);
    let good = open(&h, "good", "arena", &[("mode", "ctf"), ("map", "dust")]);
    h.one(quick_join("arena", &[("mode", "ctf")], &[], 4)).unwrap();
    assert_eq!(
        h.sent(),
        [Sent::QuickJoin {
            room: good.key,
            join_seq: 1
        }]
    );
    assert_eq!(good.shared.reserved.load(Ordering::Relaxed), 1);
    // Not twice into the same room: with nothing else open, a new room.
    h.one(quick_join("arena", &[("mode", "ctf")], &[], 5)).unwrap();
    assert_eq!(
        h.sent(),
        [Sent::Join {
            room: h.key("arena-r4nd0m"),
            join_seq: 2
        }]
    );
}

#[test]
fn member_data_over_its_limit_refuses_the_join() {
    let mut h = Harness::new();
    h.replies();
    let told = |len: usize| Bytes::from(vec![b'x'; len]);
    let with_data = |out: Out, data: Bytes| match out {
        Out::Join(join) => Out::Join(proto::JoinRoom {
            member_data: data,
            ..join
        }),
        Out::QuickJoin(quick) => Out::QuickJoin(proto::QuickJoin {
            member_data: data,
            ..quick
        }),
        other => other,
    };
    let over = told(MAX_MEMBER_DATA_BYTES + 1);
    h.one(with_data(join("a", 1), over.clone())).unwrap();
    h.one(with_data(quick_join("arena", &[], &[], 2), over)).unwrap();
    assert_eq!(
        h.errors(),
        [(ErrorCode::LimitExceeded, 1), (ErrorCode::LimitExceeded, 2)]
    );
    assert!(h.sent().is_empty());
    h.one(with_data(join("a", 3), told(MAX_MEMBER_DATA_BYTES))).unwrap();
    assert_eq!(h.errors(), []);
    assert_eq!(h.sent().len(), 1, "the join goes to the room");
}

#[test]
fn quick_joins_are_refused_what_joins_are() {
    // Metadata over the limits, the session's room cap, a token that does not allow
    // the room a quick join would create.
    let mut h = Harness::new();
    h.replies();
    let many: Vec<(String, String)> = (0..17).map(|i| (format!("k{i}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    h.one(quick_join("arena", &many, &[], 1)).unwrap();
    h.one(quick_join("arena", &[("mode", "ctf")], &many[..16], 2)).unwrap();
    h.one(quick_join(&"t".repeat(65), &[], &[], 3)).unwrap();
    h.one(quick_join("arena\n", &[], &[], 9)).unwrap();
    assert_eq!(
        h.errors(),
        [
            (ErrorCode::BadRequest, 1),
            (ErrorCode::BadRequest, 2),
            (ErrorCode::BadRequest, 3),
            (ErrorCode::BadRequest, 9)
        ]
    );
    h.send(vec![join("a", 4), join("b", 5), quick_join("arena", &[], &[], 6)])
        .unwrap();
    assert_eq!(h.errors(), [(ErrorCode::LimitExceeded, 6)]);

    let mut h = Harness::jwt(3600, Some(vec!["lobby-*".into()]));
    h.replies();
    h.one(quick_join("arena", &[], &[], 7)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::Forbidden, 7)]);
    h.one(quick_join("lobby", &[], &[], 8)).unwrap();
    assert_eq!(
        h.sent(),
        [Sent::Join {
            room: h.key("lobby-r4nd0m"),
            join_seq: 1
        }]
    );
}

#[test]
fn a_join_that_creates_a_room_sets_its_listing_and_its_owner_changes_it() {
    let mut h = Harness::new();
    h.replies();
    let create = |metadata: &[(&str, &str)]| {
        Out::Join(proto::JoinRoom {
            request_id: 1,
            room: "r".into(),
            create: Some(proto::RoomOptions {
                metadata: meta(metadata),
                private: true,
            }),
            ..Default::default()
        })
    };
    h.one(create(&[("", "v")])).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 1)]);
    h.one(create(&[("mode", "ctf")])).unwrap();
    let listing = h.rooms.opened.lock()["r"].shared.listing.get();
    assert_eq!(
        (listing.metadata, listing.private, listing.owner),
        (meta(&[("mode", "ctf")]), true, 7)
    );
    h.replies();

    h.one(update_room("r", &[("mode", ""), ("round", "2")], RoomLock::Locked, 2))
        .unwrap();
    let replies = h.replies();
    let [
        Kind::Response(proto::Response {
            request_id: 2,
            kind: Some(response::Kind::Room(info)),
        }),
    ] = &replies[..]
    else {
        panic!("expected the room's listing, got {replies:?}");
    };
    assert_eq!((&info.metadata, info.locked), (&meta(&[("round", "2")]), true));
    // Values over the limit change nothing; unlocking works.
    let long = "v".repeat(257);
    h.one(update_room("r", &[("round", &long)], RoomLock::Unlocked, 3))
        .unwrap();
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 3)]);
    h.one(update_room("r", &[], RoomLock::Unlocked, 4)).unwrap();
    assert!(!h.rooms.opened.lock()["r"].shared.listing.get().locked);
    h.replies();
    // Only the owner, and only in a room it is in.
    h.rooms.opened.lock()["r"].shared.listing.update(|l| l.owner = 99);
    h.one(update_room("r", &[("x", "y")], RoomLock::Unchanged, 5)).unwrap();
    h.one(update_room("elsewhere", &[("x", "y")], RoomLock::Unchanged, 6))
        .unwrap();
    assert_eq!(h.errors(), [(ErrorCode::NotOwner, 5), (ErrorCode::NotAMember, 6)]);
}

#[test]
fn clustered_a_quick_join_with_nothing_open_here_asks_the_directory() {
    let mut h = Harness::clustered();
    h.replies();
    h.one(join("mine", 1)).unwrap();
    h.session.poll_directory();
    h.one(quick_join("arena", &[("mode", "ctf")], &[("map", "dust")], 2))
        .unwrap();
    let member = proto::Seat {
        member_id: 7,
        user_id: "anonymous-1".into(),
        last_input_seq: 0,
        member_data: Default::default(),
        ..Default::default()
    };
    let expected = DirectoryOp::QuickJoin {
        request_id: 2,
        room_type: "arena".into(),
        filters: meta(&[("mode", "ctf")]),
        skip: vec!["mine".into()],
        allowed: None,
        member,
    };
    assert_eq!(h.session.poll_directory(), Some(expected));
    // It counts against the room cap while it waits.
    h.one(join("third", 3)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::LimitExceeded, 3)]);
    let found = Found {
        room: "arena-elsewhere".into(),
        url: "wss://node-b/ws".into(),
        seat: "ticket".into(),
    };
    h.session.on_directory(DirectoryReply::QuickJoin {
        request_id: 2,
        outcome: Ok(Some(found)),
    });
    let redirect = proto::Redirect {
        request_id: 2,
        room: "arena-elsewhere".into(),
        url: "wss://node-b/ws".into(),
        seat: "ticket".into(),
    };
    assert_eq!(h.replies(), [Kind::Redirect(redirect)]);
}

/// A waiting quick join counts against the room cap by its request id: one sent
/// again with the same id is refused, not a second directory query the cap misses.
#[test]
fn clustered_a_quick_join_sent_again_while_it_waits_is_not_run_twice() {
    let mut h = Harness::clustered();
    h.replies();
    for _ in 0..3 {
        h.one(quick_join("arena", &[], &[], 5)).unwrap();
    }
    assert_eq!(h.errors(), []);
    assert!(matches!(
        h.session.poll_directory(),
        Some(DirectoryOp::QuickJoin { .. })
    ));
    assert_eq!(h.session.poll_directory(), None);
}

#[test]
fn clustered_a_quick_join_nothing_matches_claims_a_new_room_with_its_metadata() {
    let mut h = Harness::clustered();
    h.replies();
    h.one(quick_join("arena", &[("mode", "ctf")], &[("map", "dust")], 2))
        .unwrap();
    assert!(matches!(
        h.session.poll_directory(),
        Some(DirectoryOp::QuickJoin { .. })
    ));
    h.session.on_directory(DirectoryReply::QuickJoin {
        request_id: 2,
        outcome: Ok(None),
    });
    let Some(DirectoryOp::Claim { room, listing, .. }) = h.session.poll_directory() else {
        panic!("expected a claim of a new room");
    };
    assert_eq!(room, "arena-r4nd0m");
    assert_eq!(listing.metadata, meta(&[("map", "dust"), ("mode", "ctf")]));
    assert!(!listing.private);
    // The directory is down: the quick join is answered, not lost.
    h.one(quick_join("arena", &[], &[], 3)).unwrap();
    h.session.poll_directory();
    h.session.on_directory(DirectoryReply::QuickJoin {
        request_id: 3,
        outcome: Err(PoolError::Unavailable("down".into())),
    });
    assert_eq!(h.errors(), [(ErrorCode::Unavailable, 3)]);
}

/// A quick join sent `local_only` (a client's last try after refusals by rooms of
/// other nodes) takes an open room here, or creates one here: the directory is not
/// asked.
#[test]
fn clustered_a_local_only_quick_join_never_asks_the_directory() {
    let mut h = Harness::clustered();
    h.replies();
    let local_only = |request_id| match quick_join("arena", &[("mode", "ctf")], &[], request_id) {
        Out::QuickJoin(quick) => Out::QuickJoin(proto::QuickJoin {
            local_only: true,
            ..quick
        }),
        _ => unreachable!(),
    };
    h.one(local_only(2)).unwrap();
    let Some(DirectoryOp::Claim { room, listing, .. }) = h.session.poll_directory() else {
        panic!("expected a claim of a new room, not a directory search");
    };
    assert_eq!(room, "arena-r4nd0m");
    assert_eq!(listing.metadata, meta(&[("mode", "ctf")]));
    // An open room here that matches: taken.
    let mut h = Harness::clustered();
    h.replies();
    let listing = ListingState::listed_as(&meta(&[("mode", "ctf")]));
    h.rooms.open("here", "arena", "", listing).unwrap();
    h.one(local_only(3)).unwrap();
    assert_eq!(h.session.poll_directory(), None);
    let here = h.key("here");
    assert_eq!(
        h.sent(),
        [Sent::QuickJoin {
            room: here,
            join_seq: 1
        }]
    );
}

/// A room the session left a moment ago would refuse it (one full snapshot per
/// second): a quick join passes over it for a second.
#[test]
fn a_quick_join_passes_over_a_room_just_left() {
    let mut h = Harness::new();
    h.replies();
    let open = h.rooms.open("open", "arena", "", ListingState::default()).unwrap();
    h.one(quick_join("arena", &[], &[], 1)).unwrap();
    h.one(leave("open", 2)).unwrap();
    h.sent();
    h.one(quick_join("arena", &[], &[], 3)).unwrap();
    assert_eq!(
        h.sent(),
        [Sent::Join {
            room: h.key("arena-r4nd0m"),
            join_seq: 2
        }]
    );
    h.advance(Duration::from_secs(1));
    h.one(quick_join("arena", &[], &[], 4)).unwrap();
    assert_eq!(
        h.sent(),
        [Sent::QuickJoin {
            room: open.key,
            join_seq: 3
        }]
    );
}

/// A quick join passes over a room whose bans hold its user, until the ban ends.
#[test]
fn a_quick_join_passes_over_a_room_that_bans_its_user() {
    let mut h = Harness::new();
    h.replies();
    let banning = h.rooms.open("banning", "arena", "", ListingState::default()).unwrap();
    banning.shared.bans.set("anonymous-1", 60, h.now().unix_us);
    h.one(quick_join("arena", &[], &[], 1)).unwrap();
    let created = Sent::Join {
        room: h.key("arena-r4nd0m"),
        join_seq: 1,
    };
    assert_eq!(h.sent(), [created]);
    h.advance(Duration::from_secs(60));
    h.one(quick_join("arena", &[], &[], 2)).unwrap();
    let taken = Sent::QuickJoin {
        room: banning.key,
        join_seq: 2,
    };
    assert_eq!(h.sent(), [taken]);
}

#[test]
fn a_quick_join_passes_over_the_rooms_it_excludes() {
    let mut h = Harness::new();
    h.replies();
    h.rooms.open("elsewhere", "arena", "", ListingState::default()).unwrap();
    let Out::QuickJoin(mut quick) = quick_join("arena", &[], &[], 1) else {
        unreachable!()
    };
    quick.exclude = vec!["elsewhere".into()];
    h.one(Out::QuickJoin(quick.clone())).unwrap();
    assert_eq!(
        h.sent(),
        [Sent::Join {
            room: h.key("arena-r4nd0m"),
            join_seq: 1
        }]
    );
    quick.exclude = vec![String::new(); MAX_QUICK_JOIN_EXCLUDED + 1];
    quick.request_id = 2;
    h.one(Out::QuickJoin(quick)).unwrap();
    assert_eq!(h.errors(), [(ErrorCode::BadRequest, 2)]);
}

/// A room closed while its last frame waits for the transport
/// (`Outbox::close_room`): the session forgets the room at once, and its answers to
/// an input and a `LeaveRoom` for it (`NOT_A_MEMBER`) come after the room's `Left`
/// (PROTOCOL: "before the answer"); clients take a `NOT_A_MEMBER` for a room they
/// are in as a lost `Left`.
#[test]
fn answers_about_a_closed_room_come_after_its_left() {
    use crate::engine::outbox::PendingState;
    let mut h = Harness::new();
    h.replies();
    h.one(join("a", 1)).unwrap();
    let a = h.key("a");
    h.replies();
    // The room's last tick: its frame waits, then the room closes (Room::close).
    let baseline = h.outbox.supersede_state(a, Keep::Nothing).unwrap();
    let frame = PendingState {
        room: a,
        tick: 9,
        baseline: 0,
        body: Bytes::new(),
        own: Bytes::new(),
        last_input_seq: 0,
        server_time_us: 0,
        last: false,
    };
    assert!(h.outbox.push_state(frame, baseline));
    let left = encode_message(Kind::Left(proto::Left {
        request_id: 0,
        room: "a".into(),
        reason: ErrorCode::RoomClosed as i32,
        message: "match over".into(),
    }));
    h.outbox.close_room(a, 1, left).unwrap();
    // What the client sent before it heard: an input, and a leave.
    let leave = Out::Leave(proto::LeaveRoom {
        room: "a".into(),
        request_id: 8,
    });
    h.send(vec![input("a", 7), leave]).unwrap();
    let mut read = Vec::new();
    for _ in 0..3 {
        for kind in h.replies() {
            match kind {
                Kind::Left(l) => read.push(format!("Left {}", l.reason)),
                Kind::Error(e) => read.push(format!("Error {} for {}", e.code, e.request_id)),
                _ => {}
            }
        }
    }
    assert_eq!(
        read[0],
        format!("Left {}", ErrorCode::RoomClosed as i32),
        "the room's Left first: {read:?}"
    );
}
