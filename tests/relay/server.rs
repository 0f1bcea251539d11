//! The server over real sockets. Every scenario but the HTTP one and the naive
//! baseline runs over both transports from one body.

use bytes::Bytes;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use prost::Message as _;
use tickrelay::proto::{
    self, EntityUpdate, EntityWrites, ErrorCode, Field, PresenceChange, client_message, input, request, response,
    server_message::Kind,
};
use tickrelay::state::Value;
use tickrelay_testkit::{Incoming, TestClient, Transport, WAIT, both_transports, start, start_with};
use tokio_tungstenite::tungstenite::Message;

both_transports!(
    welcome_join_full_snapshot_then_deltas_and_the_mirror_matches,
    arena_members_see_the_same_verified_state,
    rooms_are_isolated,
    presence_announces_joins_and_leaves,
    a_lost_connection_keeps_its_seat_for_the_grace_period_only,
    a_member_away_is_announced_and_back_after_its_resume,
    events_reach_exactly_their_targets,
    requests_are_answered_with_their_correlation_ids,
    mistakes_get_typed_errors_and_the_session_continues,
    declared_kinds_travel_packed_and_writes_that_do_not_fit_are_refused,
    entities_of_an_owner_only_kind_reach_their_owner_only,
    bad_input_closes_only_the_offender,
    shutdown_closes_every_session_with_1001,
);

/// A `JoinRoom` message, to send as it is (the testkit's `join` also waits for the
/// answer).
fn join_request(request_id: u64, room: &str, room_type: &str) -> client_message::Kind {
    client_message::Kind::Join(proto::JoinRoom {
        request_id,
        room: room.into(),
        room_type: room_type.into(),
        ..Default::default()
    })
}

fn int_field(id: u32, v: i64) -> Field {
    Field {
        id,
        value: Some(Value::Int(v)),
    }
}

fn create(id: u64, value: i64) -> input::Payload {
    input::Payload::Writes(Box::new(EntityWrites {
        create: vec![proto::Entity {
            id,
            owner: 0,
            kind: 1,
            fields: vec![int_field(1, value)],
        }],
        ..Default::default()
    }))
}

fn set(id: u64, value: i64) -> input::Payload {
    input::Payload::Writes(Box::new(EntityWrites {
        update: vec![EntityUpdate {
            id,
            fields: vec![int_field(1, value)],
        }],
        ..Default::default()
    }))
}

async fn welcome_join_full_snapshot_then_deltas_and_the_mirror_matches(transport: Transport) {
    let server = start().await;
    let mut a = TestClient::connect_over(&server, transport).await;
    assert_eq!(a.welcome.protocol_version, proto::PROTOCOL_VERSION);
    assert_eq!(a.welcome.limits.unwrap().max_message_bytes, 16 * 1024);
    let joined = a.join("r1", "relay").await;
    assert_eq!((joined.member_id, joined.tick_rate), (a.welcome.session_id, 60));

    a.input("r1", create(1, 0)).await;
    let mut last = 0;
    for v in 1..=20 {
        last = a.input("r1", set(1, v)).await;
    }
    a.applied("r1", last).await;
    let frames = &a.frames["r1"];
    // The first frame is a full snapshot; over QUIC it is repeated until the client's
    // acknowledgement of one arrives (a tick or more later under load).
    let full = frames.iter().take_while(|f| f.baseline_tick == 0).count();
    assert!(full >= 1, "the first frame is a full snapshot");
    if transport == Transport::WebSocket {
        assert_eq!(full, 1, "one full snapshot over an ordered stream");
    }
    assert!(frames[full..].iter().all(|f| f.baseline_tick != 0), "then deltas");
    let mirror = &a.mirrors["r1"];
    assert_eq!(mirror.world().get(1).unwrap().get(1), Some(&Value::Int(20)));
    assert!(mirror.checksums_verified() as usize >= frames.len() - 1);
}

async fn arena_members_see_the_same_verified_state(transport: Transport) {
    let server = start().await;
    let mut a = TestClient::connect_over(&server, transport).await;
    let mut b = TestClient::connect_over(&server, transport).await;
    a.join("arena-1", "arena").await;
    b.join("arena-1", "arena").await;
    a.input("arena-1", input::Payload::Intent(Bytes::from_static(&[127, 0])))
        .await;
    a.frames_in("arena-1", 30).await;
    b.frames_in("arena-1", 30).await;
    for client in [&a, &b] {
        let mirror = &client.mirrors["arena-1"];
        assert!(mirror.is_synced());
        assert!(mirror.checksums_verified() >= 30);
        // 16 NPCs and two avatars.
        assert_eq!(mirror.world().len(), 18);
    }
}

/// Every message a client sends is counted once in `tickrelay_messages_in_total`, and
/// its bytes in `tickrelay_bytes_in_total`, whether the connection loop read it (a
/// join) or the I/O thread's reader handed it to the session (inputs, over WebSocket).
#[tokio::test]
async fn every_message_in_is_counted_once_with_its_bytes() {
    let server = start().await;
    let mut client = TestClient::connect_over(&server, Transport::WebSocket).await;
    client.join("counted", "arena").await;
    let (messages, bytes) = (
        server.metric("tickrelay_messages_in_total"),
        server.metric("tickrelay_bytes_in_total"),
    );
    let mut sent = 0;
    for _ in 0..20 {
        let payload = input::Payload::Intent(Bytes::from_static(&[1, 1]));
        let seq = client.input("counted", payload.clone()).await;
        let input = proto::Input {
            room: "counted".into(),
            seq,
            payload: Some(payload),
        };
        let message = proto::ClientMessage {
            kind: Some(client_message::Kind::Input(input)),
        };
        sent += proto::ClientEnvelope {
            messages: vec![message],
            first_event_seq: 0,
        }
        .encoded_len() as u64;
    }
    client.applied("counted", 20).await;
    assert_eq!(server.metric("tickrelay_messages_in_total") - messages, 20);
    assert_eq!(server.metric("tickrelay_bytes_in_total") - bytes, sent);
}

async fn rooms_are_isolated(transport: Transport) {
    let server = start().await;
    let mut a = TestClient::connect_over(&server, transport).await;
    let mut b = TestClient::connect_over(&server, transport).await;
    a.join("left", "relay").await;
    b.join("right", "relay").await;
    let seq = a.input("left", create(5, 1)).await;
    a.applied("left", seq).await;
    assert_eq!(a.mirrors["left"].world().len(), 1);
    // b's room stays empty; its idle frame (once a second) carries a checksum.
    b.frames_in("right", 2).await;
    assert!(b.mirrors["right"].world().is_empty());
    assert!(!b.mirrors.contains_key("left"));
}

async fn presence_announces_joins_and_leaves(transport: Transport) {
    let server = start().await;
    let mut a = TestClient::connect_over(&server, transport).await;
    a.join("lobby", "relay").await;
    let mut b = TestClient::connect_over(&server, transport).await;
    let joined = b.join("lobby", "relay").await;
    assert_eq!(joined.members.len(), 2);
    let b_id = b.welcome.session_id;
    let change = |k: &Kind| match k {
        Kind::Presence(p) if p.member.as_ref().unwrap().member_id == b_id => Some(p.change),
        _ => None,
    };
    assert_eq!(a.until(change).await, PresenceChange::Joined as i32);
    // A normal close leaves at once.
    b.close_normally().await;
    assert_eq!(a.until(change).await, PresenceChange::Left as i32);
}

/// A lost connection keeps its seat for the grace period (here 1.5 s), shown away
/// after a second, and then leaves.
async fn a_lost_connection_keeps_its_seat_for_the_grace_period_only(transport: Transport) {
    let server = start_with(|c| c.session.resume_grace_secs = 1.5).await;
    let mut a = TestClient::connect_over(&server, transport).await;
    a.join("lobby", "relay").await;
    let mut b = TestClient::connect_over(&server, transport).await;
    b.join("lobby", "relay").await;
    let b_id = b.welcome.session_id;
    let left = |k: &Kind| match k {
        Kind::Presence(p)
            if p.member.as_ref().unwrap().member_id == b_id && p.change == PresenceChange::Left as i32 =>
        {
            Some(())
        }
        _ => None,
    };
    let changes = |k: &Kind| match k {
        Kind::Presence(p) if p.member.as_ref().unwrap().member_id == b_id => Some(p.change),
        _ => None,
    };
    assert_eq!(a.until(changes).await, PresenceChange::Joined as i32);
    let dropped = std::time::Instant::now();
    drop(b); // no close frame: the connection is simply lost
    assert_eq!(a.until(changes).await, PresenceChange::Away as i32, "its seat held");
    let away_after = dropped.elapsed();
    assert!(
        away_after >= std::time::Duration::from_secs(1),
        "away after {away_after:?}"
    );
    a.until(left).await;
    let held = dropped.elapsed();
    assert!(
        held >= std::time::Duration::from_millis(1500),
        "seat released after {held:?}"
    );
}

/// The others see a member whose connection was lost as away (a player's avatar
/// frozen, say, is explained), then back once it resumed; and a member joining
/// meanwhile sees it away in its `Joined`.
async fn a_member_away_is_announced_and_back_after_its_resume(transport: Transport) {
    let server = start().await;
    let mut a = TestClient::connect_over(&server, transport).await;
    a.join("lobby", "relay").await;
    let mut b = TestClient::connect_over(&server, transport).await;
    b.join("lobby", "relay").await;
    let (b_id, token) = (b.welcome.session_id, b.welcome.resume_token.clone());
    let changes = |k: &Kind| match k {
        Kind::Presence(p) if p.member.as_ref().unwrap().member_id == b_id => Some(p.change),
        _ => None,
    };
    assert_eq!(a.until(changes).await, PresenceChange::Joined as i32);
    drop(b);
    assert_eq!(a.until(changes).await, PresenceChange::Away as i32);
    let mut c = TestClient::connect_over(&server, transport).await;
    let joined = c.join("lobby", "relay").await;
    let b_info = joined.members.iter().find(|m| m.member_id == b_id).unwrap();
    assert!(b_info.away, "{:?}", joined.members);
    let _b = TestClient::resume_over(&server, transport, &token).await.unwrap();
    assert_eq!(a.until(changes).await, PresenceChange::Back as i32);
    assert_eq!(c.until(changes).await, PresenceChange::Back as i32);
}

async fn events_reach_exactly_their_targets(transport: Transport) {
    let server = start().await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = TestClient::connect_over(&server, transport).await;
        c.join("ev", "relay").await;
        clients.push(c);
    }
    let ids: Vec<u64> = clients.iter().map(|c| c.welcome.session_id).collect();
    let event = |kind: &str, targets: Vec<u64>| {
        client_message::Kind::Event(proto::SendEvent {
            room: "ev".into(),
            kind: kind.into(),
            payload: Bytes::from_static(b"boom"),
            targets,
        })
    };
    // A whisper to the third client, then a broadcast, in one envelope.
    clients[0]
        .send(vec![event("whisper", vec![ids[2]]), event("shout", vec![])])
        .await;
    let first_event = |k: &Kind| match k {
        Kind::Event(e) => Some((e.kind.clone(), e.seq, e.sender)),
        _ => None,
    };
    // Events are ordered per room, so the second client's first event being the
    // shout proves it never got the whisper.
    let got_b = clients[1].until(first_event).await;
    let got_c1 = clients[2].until(first_event).await;
    let got_c2 = clients[2].until(first_event).await;
    assert_eq!(got_b.0, "shout");
    assert_eq!(got_c1, ("whisper".to_string(), got_b.1 - 1, ids[0]));
    assert_eq!(got_c2, got_b);
}

async fn requests_are_answered_with_their_correlation_ids(transport: Transport) {
    let server = start().await;
    let mut a = TestClient::connect_over(&server, transport).await;
    a.join("req", "arena").await;
    // Wait for the join's own full snapshot, so the resync's is a second one, and a
    // second more (60 ticks): one full snapshot a second per member.
    a.frames_in("req", 1).await;
    let first_tick = a.frames["req"][0].tick;
    a.until(|k| matches!(k, Kind::State(s) if s.tick >= first_tick + 60).then_some(()))
        .await;
    a.send(vec![
        client_message::Kind::Request(proto::Request {
            request_id: 77,
            kind: Some(request::Kind::ListRooms(proto::ListRooms::default())),
        }),
        client_message::Kind::Request(proto::Request {
            request_id: 78,
            kind: Some(request::Kind::Resync(proto::Resync { room: "req".into() })),
        }),
        client_message::Kind::Ping(proto::Ping {
            nonce: 9,
            sent_time_us: 1234,
            received_seq: 0,
        }),
    ])
    .await;
    // The three answers come from different places (the session, the room's thread),
    // and the resync's full snapshot may overtake them (a QUIC datagram), so their
    // relative order is not fixed: collect all of them.
    let (mut rooms, mut resync, mut pong, mut snapshot) = (None, false, None, false);
    a.until(|k| {
        match k {
            Kind::Response(r) if r.request_id == 77 => rooms = r.kind.clone(),
            Kind::Response(r) if r.request_id == 78 => resync = true,
            Kind::Pong(p) => pong = Some(*p),
            // The resync produces a second full snapshot.
            Kind::State(s) if s.baseline_tick == 0 && s.tick > first_tick => snapshot = true,
            _ => {}
        }
        (rooms.is_some() && resync && pong.is_some() && snapshot).then_some(())
    })
    .await;
    let Some(response::Kind::Rooms(list)) = rooms else {
        panic!("a room list")
    };
    assert_eq!(list.rooms[0].room, "req");
    assert_eq!(list.rooms[0].members, 1);
    assert_eq!(server.metric("tickrelay_resyncs_total"), 1, "counted for /metrics");
    let pong = pong.unwrap();
    assert_eq!((pong.nonce, pong.ping_sent_time_us), (9, 1234));
    assert!(pong.time_us > 0);
}

async fn mistakes_get_typed_errors_and_the_session_continues(transport: Transport) {
    let server = start_with(|c| c.room_types.get_mut("relay").unwrap().max_members = 1).await;
    let mut a = TestClient::connect_over(&server, transport).await;
    let error = |k: &Kind| match k {
        Kind::Error(e) => Some((e.code, e.request_id)),
        _ => None,
    };
    a.input("nowhere", set(1, 1)).await;
    assert_eq!(a.until(error).await, (ErrorCode::NotAMember as i32, 1));
    a.send(vec![join_request(5, "x", "chess")]).await;
    assert_eq!(a.until(error).await, (ErrorCode::UnknownRoomType as i32, 5));
    a.join("solo", "relay").await;
    a.input("solo", create(1, 0)).await;
    a.input("solo", create(1, 0)).await;
    assert_eq!(a.until(error).await, (ErrorCode::EntityExists as i32, 2));
    let mut b = TestClient::connect_over(&server, transport).await;
    b.send(vec![join_request(3, "solo", "")]).await;
    assert_eq!(b.until(error).await, (ErrorCode::RoomFull as i32, 3));
    // The room exists as a relay room: joining it as an arena is a typed mistake.
    b.send(vec![join_request(4, "solo", "arena")]).await;
    assert_eq!(b.until(error).await, (ErrorCode::RoomTypeMismatch as i32, 4));
    // An envelope with no messages is a bad request, not a close.
    a.send(vec![]).await;
    assert_eq!(a.until(error).await, (ErrorCode::BadRequest as i32, 0));
    a.frames_in("solo", 1).await;
}

/// A relay room type with a declared kind (from TOML, as a user writes it): members
/// learn the schema from `Joined`, positions travel packed and snapped to their grid,
/// every checksum verifies, and a write outside the declaration is refused whole.
async fn declared_kinds_travel_packed_and_writes_that_do_not_fit_are_refused(transport: Transport) {
    let declared = tickrelay::config::Config::from_toml(
        r#"
[room_types.shapes]
simulation = "relay"
[[room_types.shapes.kinds]]
kind = 3
name = "dot"
fields = [
  { id = 1, name = "x", type = "float", min = 0, max = 10, precision = 0.5 },
  { id = 2, name = "hp", type = "int", min = 0, max = 9 },
]
"#,
    )
    .unwrap();
    let server = start_with(|c| {
        c.room_types
            .insert("shapes".into(), declared.room_types["shapes"].clone());
    })
    .await;
    let mut a = TestClient::connect_over(&server, transport).await;
    let mut b = TestClient::connect_over(&server, transport).await;
    let joined = a.join("dots", "shapes").await;
    assert_eq!(joined.schema.len(), 1);
    assert_eq!((joined.schema[0].kind, joined.schema[0].fields.len()), (3, 2));
    b.join("dots", "shapes").await;

    let dot = |id, x: f32, hp: i64| {
        input::Payload::Writes(Box::new(EntityWrites {
            create: vec![proto::Entity {
                id,
                owner: 0,
                kind: 3,
                fields: vec![
                    Field {
                        id: 1,
                        value: Some(Value::Float(x)),
                    },
                    int_field(2, hp),
                ],
            }],
            ..Default::default()
        }))
    };
    let error = |k: &Kind| match k {
        Kind::Error(e) => Some((e.code, e.request_id)),
        _ => None,
    };
    // The refusal names the kind, the field, the value and the declaration.
    let refusal = |k: &Kind| match k {
        Kind::Error(e) => Some((e.code, e.request_id, e.message.clone())),
        _ => None,
    };
    let refused = a.input("dots", dot(1, 3.3, 10)).await;
    let shown = "entity 1 (kind dot (3)): field hp (2) = 10 is outside its declared range (int 0..=9)";
    assert_eq!(
        a.until(refusal).await,
        (ErrorCode::InvalidField as i32, refused, shown.to_string())
    );
    let refused = a.input("dots", dot(1, f32::NAN, 1)).await;
    let shown =
        "entity 1 (kind dot (3)): field x (1) = NaN is outside its declared range (float 0..=10 in steps of 0.5)";
    assert_eq!(
        a.until(refusal).await,
        (ErrorCode::InvalidField as i32, refused, shown.to_string())
    );
    let refused = a.input("dots", dot(1, 11.0, 1)).await;
    assert_eq!(a.until(error).await, (ErrorCode::InvalidField as i32, refused));
    let last = a.input("dots", dot(1, 3.3, 9)).await;
    a.applied("dots", last).await;
    let moved = a
        .input(
            "dots",
            input::Payload::Writes(Box::new(EntityWrites {
                update: vec![EntityUpdate {
                    id: 1,
                    fields: vec![Field {
                        id: 1,
                        value: Some(Value::Float(4.1)),
                    }],
                }],
                ..Default::default()
            })),
        )
        .await;
    a.applied("dots", moved).await;
    // b follows (over QUIC its frame with the change may be a full snapshot).
    let at = |c: &TestClient| c.mirrors.get("dots").and_then(|m| m.world().get(1)?.get(1).cloned());
    for _ in 0..500 {
        if at(&b) == Some(Value::Float(4.0)) {
            break;
        }
        b.next().await;
    }
    for client in [&a, &b] {
        let mirror = &client.mirrors["dots"];
        let dot = mirror.world().get(1).expect("the dot reached every member");
        // Snapped to the 0.5 grid: 4.1 is stored as 4.0.
        assert_eq!(dot.get(1), Some(&Value::Float(4.0)));
        assert_eq!(dot.get(2), Some(&Value::Int(9)));
        assert!(mirror.checksums_verified() >= 1);
    }
    // Only packed blocks carried the dot.
    let frames = &b.frames["dots"];
    assert!(frames.iter().all(|f| f.added.is_empty() && f.changed.is_empty()));
    assert!(frames.iter().any(|f| !f.packed.is_empty()));
}

/// A kind declared `owner_only` (in TOML, as a user writes it): each member's mirror
/// holds its own cards and every member's dots, never another's cards, and verifies
/// its checksums; to another member a card does not exist.
async fn entities_of_an_owner_only_kind_reach_their_owner_only(transport: Transport) {
    let declared = tickrelay::config::Config::from_toml(
        r#"
[room_types.cards]
simulation = "relay"
[[room_types.cards.kinds]]
kind = 1
name = "dot"
fields = [{ id = 1, name = "hp", type = "int", min = 0, max = 9 }]
[[room_types.cards.kinds]]
kind = 2
name = "card"
owner_only = true
fields = [{ id = 1, name = "rank", type = "int", min = 0, max = 9 }]
"#,
    )
    .unwrap();
    let server = start_with(|c| {
        c.room_types
            .insert("cards".into(), declared.room_types["cards"].clone());
    })
    .await;
    let mut a = TestClient::connect_over(&server, transport).await;
    let mut b = TestClient::connect_over(&server, transport).await;
    let joined = a.join("table", "cards").await;
    assert!(!joined.schema[0].owner_only && joined.schema[1].owner_only);
    let b_id = b.join("table", "cards").await.member_id;
    let entity = |id, kind, rank| proto::Entity {
        id,
        owner: 0,
        kind,
        fields: vec![int_field(1, rank)],
    };
    let writes = |create: Vec<proto::Entity>| {
        input::Payload::Writes(Box::new(EntityWrites {
            create,
            ..Default::default()
        }))
    };
    let dealt = a.input("table", writes(vec![entity(1, 1, 5), entity(10, 2, 7)])).await;
    a.applied("table", dealt).await;
    let dealt = b.input("table", writes(vec![entity(20, 2, 3)])).await;
    b.applied("table", dealt).await;
    let peek = b.input("table", set(10, 9)).await;
    let error = |k: &Kind| match k {
        Kind::Error(e) => Some((e.code, e.request_id)),
        _ => None,
    };
    assert_eq!(b.until(error).await, (ErrorCode::EntityNotFound as i32, peek));
    let ids = |c: &TestClient| {
        let mirror = &c.mirrors["table"];
        mirror.world().entities().map(|e| e.id()).collect::<Vec<_>>()
    };
    for (client, mine) in [(&mut a, 10), (&mut b, 20)] {
        for _ in 0..500 {
            if ids(client) == [1, mine] {
                break;
            }
            client.next().await;
        }
        assert_eq!(ids(client), [1, mine]);
    }
    // Checksums verify from frames that carry one, full snapshots among them.
    let last = a.input("table", set(1, 6)).await;
    a.applied("table", last).await;
    for client in [&mut a, &mut b] {
        for _ in 0..500 {
            if client.mirrors["table"].checksums_verified() >= 2 {
                break;
            }
            client.next().await;
        }
        assert!(client.mirrors["table"].checksums_verified() >= 2);
    }
    assert_eq!(ids(&a), [1, 10]);
    assert_eq!(ids(&b), [1, 20]);

    // Shown to b: b's mirror holds it, then its change, and verifies its checksums;
    // hidden again, it is gone. Only its owner shows it, and to a member only.
    let viewer = |id, member| vec![proto::Viewer { id, member }];
    let show = |id, member| {
        input::Payload::Writes(Box::new(EntityWrites {
            show: viewer(id, member),
            ..Default::default()
        }))
    };
    let shown = a.input("table", show(10, b_id)).await;
    a.applied("table", shown).await;
    let rank = |c: &TestClient| c.mirrors["table"].world().get(10).and_then(|e| e.get(1).cloned());
    let verified = |c: &TestClient| c.mirrors["table"].checksums_verified();
    let before = verified(&b);
    for _ in 0..500 {
        if ids(&b) == [1, 10, 20] && verified(&b) > before {
            break;
        }
        b.next().await;
    }
    assert_eq!((ids(&b), rank(&b)), (vec![1, 10, 20], Some(Value::Int(7))));
    assert!(verified(&b) > before, "b's checksum counts in the card shown to it");
    let turned = a.input("table", set(10, 2)).await;
    a.applied("table", turned).await;
    for _ in 0..500 {
        if rank(&b) == Some(Value::Int(2)) {
            break;
        }
        b.next().await;
    }
    assert_eq!(rank(&b), Some(Value::Int(2)));
    let steal = b.input("table", show(10, b_id)).await;
    assert_eq!(b.until(error).await, (ErrorCode::NotOwner as i32, steal));
    let stranger = a.input("table", show(10, 999)).await;
    assert_eq!(a.until(error).await, (ErrorCode::BadRequest as i32, stranger));
    let hidden = a
        .input(
            "table",
            input::Payload::Writes(Box::new(EntityWrites {
                hide: viewer(10, b_id),
                ..Default::default()
            })),
        )
        .await;
    a.applied("table", hidden).await;
    for _ in 0..500 {
        if ids(&b) == [1, 20] {
            break;
        }
        b.next().await;
    }
    assert_eq!(ids(&b), [1, 20]);
    assert_eq!(ids(&a), [1, 10]);
}

/// `/metrics` tells how connections end: closed by the client (with 1000, 1001 or
/// another code), lost without a close, closed by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_ends_are_counted_by_how() {
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
    let server = start().await;
    let end = |how: &str| format!("tickrelay_connection_ends_total{{end=\"{how}\"}}");
    for how in tickrelay::metrics::CONNECTION_ENDS {
        assert_eq!(server.metric(&end(how)), 0, "{how} exported at zero");
    }
    TestClient::connect(&server).await.close_normally().await;
    server.wait_for_metric(&end("client_normal"), 1).await;
    let mut leaving = TestClient::connect(&server).await;
    let frame = CloseFrame {
        code: CloseCode::Library(4100),
        reason: "back to the menu".into(),
    };
    leaving.send_raw(Message::Close(Some(frame))).await;
    server.wait_for_metric(&end("client_other_code"), 1).await;
    // A browser leaving the page closes with 1001: going away.
    let mut leaving = TestClient::connect(&server).await;
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    };
    leaving.send_raw(Message::Close(Some(frame))).await;
    server.wait_for_metric(&end("client_going_away"), 1).await;
    // Over QUIC, an application close with a code other than 1000 too.
    let quic = TestClient::connect_over(&server, Transport::Quic).await;
    let tickrelay_testkit::Conn::Quic(q) = &quic.conn else {
        unreachable!()
    };
    q.conn.close(4100u32.into(), b"back to the menu");
    server.wait_for_metric(&end("client_other_code"), 2).await;
    drop(TestClient::connect(&server).await);
    server.wait_for_metric(&end("lost"), 1).await;
    let mut bad = TestClient::connect(&server).await;
    bad.send_raw(Message::Text("hello".into())).await;
    assert_eq!(bad.close_frame().await.0, 1003);
    server.wait_for_metric(&end("server"), 1).await;
    // A resume while the old connection is open takes the session over.
    let mut old = TestClient::connect(&server).await;
    let token = old.welcome.resume_token.clone();
    let _new = TestClient::resume_over(&server, Transport::WebSocket, &token)
        .await
        .unwrap();
    assert_eq!(old.close_frame().await.0, 4002);
    server.wait_for_metric(&end("taken_over"), 1).await;
    assert_eq!(server.metric(&end("client_normal")), 1, "each end counted once");
    assert_eq!(server.metric(&end("lost")), 1);
    assert_eq!(server.metric(&end("client_other_code")), 2, "1001 counted apart");
}

/// Each kind of bad input closes the offender with its documented code; another
/// client of the same room keeps receiving ticks.
async fn bad_input_closes_only_the_offender(transport: Transport) {
    let server = start().await;
    let mut good = TestClient::connect_over(&server, transport).await;
    good.join("shared", "arena").await;
    let mut cases: Vec<(Option<Message>, &[u8], u16)> =
        vec![(None, &[0xff, 0xff, 0xff], 1007), (None, &[0; 17 * 1024], 1009)];
    if transport == Transport::WebSocket {
        cases.push((Some(Message::Text("hello".into())), &[], 1003));
    }
    for (ws_message, bytes, code) in cases {
        let mut bad = TestClient::connect_over(&server, transport).await;
        bad.join("shared", "arena").await;
        match ws_message {
            Some(message) => bad.send_raw(message).await,
            None => bad.conn.send_bytes(bytes).await.unwrap(),
        }
        let (got, reason) = bad.close_frame().await;
        assert_eq!(got, code, "{reason}");
        assert!(!reason.is_empty(), "every close carries a reason");
        good.frames_in("shared", 10).await;
    }
    assert!(good.mirrors["shared"].is_synced());
    let closes = server.metrics.render(tickrelay::metrics::Format::Prometheus);
    let codes: &[&str] = match transport {
        Transport::WebSocket => &["1003", "1007", "1009"],
        Transport::Quic => &["1007", "1009"],
    };
    for code in codes {
        assert!(
            closes.contains(&format!("tickrelay_closes_total{{code=\"{code}\"}} 1")),
            "{closes}"
        );
    }
}

/// The metrics listener is outside the connection caps, so it holds at most 8
/// connections of one address and 64 in all: a newer one closes the oldest of its
/// address, or of the address holding the most (one client could otherwise take every
/// file descriptor through it, or shut the scraper out by holding its slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_holds_a_bounded_number_of_connections() {
    let with_metrics = |c: &mut tickrelay::config::Config| c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let (server, fresh) = (start_with(with_metrics).await, start_with(with_metrics).await);
    let connect_to = |addr, host: u8| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, host], 0))).unwrap();
        socket.connect(addr).await.unwrap()
    };
    let connect_from = |host| connect_to(server.metrics_addr.unwrap(), host);
    let closed_soon = |tcp| closed_within(tcp, std::time::Duration::from_secs(3));
    let kept = |tcp| async move { !closed_within(tcp, std::time::Duration::from_millis(300)).await };
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from(1).await);
    }
    // A 9th of one address: its oldest goes.
    held.push(connect_from(1).await);
    assert!(closed_soon(held.remove(0)).await, "the oldest of the address");
    for host in 2..=8 {
        for _ in 0..8 {
            held.push(connect_from(host).await);
        }
    }
    // A 65th in all, of an address holding none: the oldest of those holding the most.
    held.push(connect_from(9).await);
    assert!(closed_soon(held.remove(0)).await, "the oldest of the heaviest");
    assert!(kept(held.pop().unwrap()).await, "the newest is served");
    assert!(kept(held.pop().unwrap()).await);
    // 64 addresses holding one each: a 65th address's connection is the one closed
    // (on a server of its own, which no connection closed above may still count).
    let connect_from = |host| connect_to(fresh.metrics_addr.unwrap(), host);
    let mut one_each = Vec::new();
    for host in 10..74 {
        one_each.push(connect_from(host).await);
    }
    assert!(closed_soon(connect_from(74).await).await, "the newcomer");
    assert!(kept(one_each.remove(0)).await, "the oldest stays");
}

/// TLS key exchange: a client that offers the post-quantum hybrid X25519MLKEM768 (as
/// current browsers do) gets it; one that offers only a classical group still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_prefers_the_post_quantum_key_exchange_and_keeps_the_classical_ones() {
    use rustls::NamedGroup;
    use rustls::crypto::aws_lc_rs::kx_group;
    let server = start().await;
    let negotiated = |config: rustls::ClientConfig| {
        let server = &server;
        async move {
            let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            tls.get_ref()
                .1
                .negotiated_key_exchange_group()
                .map(|group| group.name())
        }
    };
    assert_eq!(negotiated(server.tls_config()).await, Some(NamedGroup::X25519MLKEM768));
    for classical in [kx_group::X25519, kx_group::SECP256R1] {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.kx_groups = vec![classical];
        let config = server.tls_config_with(provider);
        assert_eq!(negotiated(config).await, Some(classical.name()));
    }
}

/// Whether the server closes `tcp` within `wait`.
async fn closed_within(mut tcp: tokio::net::TcpStream, wait: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let read = tokio::time::timeout(wait, tcp.read(&mut [0u8; 16])).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

/// `[metrics] listen` moves `/metrics` to a plain-HTTP listener of its own, and
/// `[metrics] token` guards it; the format follows `Accept`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_a_listener_of_their_own_behind_a_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_with(|c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics.token = Some("scrape-me".into());
    })
    .await;
    let (status, body) = server.https_get("/metrics").await;
    assert_eq!(status, 404, "not on the main listener");
    assert!(body.contains("[metrics] listen"), "the answer says where: {body}");
    let (status, body) = server.https_get("/demo/").await;
    assert_eq!(status, 404, "no demo without --demo");
    assert!(body.contains("--demo"), "{body}");
    let addr = server.metrics_addr.unwrap();
    let get = |path: &'static str, headers: &'static str| async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        let status: u16 = response[9..12].parse().unwrap();
        (status, response)
    };
    assert_eq!(get("/metrics", "").await.0, 401);
    assert_eq!(get("/metrics", "Authorization: Bearer scrape-you\r\n").await.0, 401);
    let (status, classic) = get("/metrics", "Authorization: bearer scrape-me\r\n").await;
    assert_eq!(status, 200, "{classic}");
    assert!(classic.contains("text/plain; version=0.0.4") && classic.contains("# TYPE tickrelay_ticks_total counter"));
    let (_, open) = get(
        "/metrics",
        "Authorization: Bearer scrape-me\r\nAccept: application/openmetrics-text; version=1.0.0\r\n",
    )
    .await;
    assert!(
        open.contains("application/openmetrics-text") && open.ends_with("# EOF\n"),
        "{open}"
    );
    assert_eq!(get("/healthz", "").await.0, 200);
    assert_eq!(get("/ws", "").await.0, 404, "no WebSocket on the metrics listener");
}

/// The header the test API token asks for.
const API_AUTH: &str = "Authorization: Bearer backend-secret\r\n";

/// A server with the HTTP API on (`API_AUTH`) and two members in relay room `room`.
async fn two_in_a_room_with_the_api(room: &str) -> (tickrelay_testkit::TestServer, TestClient, TestClient) {
    let server = start_with(|c| c.api.token = Some("backend-secret".into())).await;
    let mut a = TestClient::connect(&server).await;
    let mut b = TestClient::connect(&server).await;
    a.join(room, "relay").await;
    b.join(room, "relay").await;
    (server, a, b)
}

/// Game backends publish room events over HTTP (`[api] token`): every member gets
/// them from sender 0 (the server), or only the targets; a bad token, an unknown room,
/// a missing kind and an oversized payload are refused; without a token the API is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_publish_room_events_over_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, mut a, mut b) = two_in_a_room_with_the_api("pub lobby").await;
    let auth = API_AUTH;
    let post = async |path: &str, headers: &str, body: &[u8]| server.https_request("POST", path, headers, body).await;

    let (status, answer) = post("/rooms/pub%20lobby/events?kind=round-start", auth, b"round 7").await;
    assert_eq!(status, 202, "{answer}");
    for client in [&mut a, &mut b] {
        let event = client.next_event().await;
        assert_eq!(
            (event.sender, &*event.kind, &event.payload[..]),
            (0, "round-start", &b"round 7"[..])
        );
    }
    let only_b = format!(
        "/rooms/pub%20lobby/events?kind=whisper&targets={}",
        b.welcome.session_id
    );
    assert_eq!(post(&only_b, auth, b"psst").await.0, 202);
    let whisper = b.next_event().await;
    assert_eq!(&*whisper.kind, "whisper");

    assert_eq!(
        post(
            "/rooms/pub%20lobby/events?kind=x",
            "Authorization: Bearer guess\r\n",
            b""
        )
        .await
        .0,
        401
    );
    assert_eq!(post("/rooms/pub%20lobby/events?kind=x", "", b"").await.0, 401);
    assert_eq!(post("/rooms/nowhere/events?kind=x", auth, b"").await.0, 404);
    assert_eq!(post("/rooms/pub%20lobby/events", auth, b"").await.0, 400);
    assert_eq!(
        post("/rooms/pub%20lobby/events?kind=x", auth, &[0; 64 * 1024]).await.0,
        413
    );
    // A declared length over the bound is refused before the upload (a client that
    // waits for `100 Continue` is not asked for it).
    let mut tls = server.tls_connect().await;
    let request = format!(
        "POST /rooms/pub%20lobby/events?kind=x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Length: 100000000\r\nExpect: 100-continue\r\n{auth}\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Events of a room arrive in order: a's next one is this broadcast, not the whisper.
    assert_eq!(post("/rooms/pub%20lobby/events?kind=after", auth, b"").await.0, 202);
    let next = a.next_event().await;
    assert_eq!(&*next.kind, "after", "the whisper was for b only");
    assert_eq!(server.metric("tickrelay_events_published_total"), 3);

    let off = start().await;
    let (status, body) = off.https_request("POST", "/rooms/x/events?kind=x", auth, b"").await;
    assert_eq!(status, 404, "{body}");
}

/// Game backends close rooms over HTTP (`DELETE /rooms/{room}`): every member gets
/// `Left` with `ROOM_CLOSED` and the reason given; the room is gone; a bad token or
/// reason and an unknown room are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_close_rooms_over_http() {
    let (server, mut a, mut b) = two_in_a_room_with_the_api("match 7").await;
    let auth = API_AUTH;
    let delete = async |path: &str, headers: &str| server.https_request("DELETE", path, headers, b"").await;

    assert_eq!(delete("/rooms/match%207", "").await.0, 401);
    assert_eq!(delete("/rooms/match%207?reason=a%0Ab", auth).await.0, 400);
    let (status, answer) = delete("/rooms/match%207?reason=match%20over", auth).await;
    assert_eq!(status, 202, "{answer}");
    for client in [&mut a, &mut b] {
        let left = client.left("match 7").await;
        assert_eq!(left, (ErrorCode::RoomClosed as i32, "match over".to_string()));
    }
    tickrelay_testkit::eventually("the room closed", || async {
        match delete("/rooms/match%207", auth).await.0 {
            404 => Ok(()),
            status => Err(status),
        }
    })
    .await;
    // Without a reason, the default one; one too long is refused.
    a.join("match 8", "relay").await;
    let too_long = format!("/rooms/match%208?reason={}", "x".repeat(257));
    assert_eq!(delete(&too_long, auth).await.0, 400);
    assert_eq!(delete("/rooms/match%208?reason=", auth).await.0, 202);
    let left = a.left("match 8").await;
    assert_eq!(
        left,
        (ErrorCode::RoomClosed as i32, "closed by the game's server".to_string())
    );
    let off = start().await;
    assert_eq!(
        off.https_request("DELETE", "/rooms/x", auth, b"").await.0,
        404,
        "the API is off"
    );
}

/// Game backends remove a user from a room over HTTP (`DELETE
/// /rooms/{room}/users/{user}`): its member gets `Left` with `FORBIDDEN` and the
/// reason, the others see it leave; with `ban_secs` its joins are refused
/// (`FORBIDDEN`, saying for how long) until a removal without a ban lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_remove_users_over_http() {
    let (server, mut a, mut b) = two_in_a_room_with_the_api("arena 3").await;
    let delete = async |path: &str, headers: &str| server.https_request("DELETE", path, headers, b"").await;
    let user = utf8_percent_encode(&a.welcome.user_id, NON_ALPHANUMERIC).to_string();
    let path = |query: &str| format!("/rooms/arena%203/users/{user}?{query}");

    // Who is in the room, as the backend sees it.
    let get = async |path: &str, headers: &str| server.https_request("GET", path, headers, b"").await;
    assert_eq!(get("/rooms/arena%203", "").await.0, 401);
    assert_eq!(get("/rooms/nowhere", API_AUTH).await.0, 404);
    let (status, body) = get("/rooms/arena%203", API_AUTH).await;
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    let members: Vec<(u64, &str)> = (view["members"].as_array().unwrap().iter())
        .map(|m| (m["member_id"].as_u64().unwrap(), m["user_id"].as_str().unwrap()))
        .collect();
    let expected = [&a, &b].map(|c| (c.welcome.session_id, &*c.welcome.user_id));
    assert_eq!(members, expected);
    assert_eq!(
        (view["room"].as_str(), view["room_type"].as_str()),
        (Some("arena 3"), Some("relay"))
    );

    // The rooms open, as a client's `ListRooms` lists them.
    assert_eq!(get("/rooms", "").await.0, 401);
    let (status, body) = get("/rooms?limit=10&room_type=relay", API_AUTH).await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["rooms"][0]["room"].as_str(), Some("arena 3"), "{body}");
    assert_eq!(page["rooms"][0]["members"].as_u64(), Some(2), "{body}");
    assert!(page["next_after"].is_null(), "{body}");
    let (_, body) = get("/rooms?filter.mode=ctf", API_AUTH).await;
    assert_eq!(body.trim(), r#"{"rooms":[],"next_after":null}"#);
    assert_eq!(get("/rooms?limit=0", API_AUTH).await.0, 400);

    assert_eq!(delete(&path(""), "").await.0, 401);
    assert_eq!(delete(&path("ban_secs=soon"), API_AUTH).await.0, 400);
    assert_eq!(delete(&path("ban_secs=2592001"), API_AUTH).await.0, 400);
    assert_eq!(delete(&path("ban_secs=%2B5"), API_AUTH).await.0, 400, "digits only");
    assert_eq!(delete("/rooms/nowhere/users/x", API_AUTH).await.0, 404);
    let too_long = format!("/rooms/arena%203/users/{}", "u".repeat(257));
    assert_eq!(delete(&too_long, API_AUTH).await.0, 400);
    let (status, answer) = delete(&path("reason=cheating&ban_secs=600"), API_AUTH).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        a.left("arena 3").await,
        (ErrorCode::Forbidden as i32, "cheating".into())
    );
    let gone = b
        .until(|k| match k {
            Kind::Presence(p) if p.change == PresenceChange::Left as i32 => p.member.clone(),
            _ => None,
        })
        .await;
    assert_eq!(gone.member_id, a.welcome.session_id);

    let rejoin = async |a: &mut TestClient| {
        let request_id = a.send_join("arena 3", "relay", "").await;
        a.until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(Ok(())),
            Kind::Error(e) if e.request_id == request_id => Some(Err((e.code, e.retry_after_ms))),
            _ => None,
        })
        .await
    };
    let (code, retry_after_ms) = rejoin(&mut a).await.unwrap_err();
    assert_eq!(code, ErrorCode::Forbidden as i32);
    // (600 s less the time since the ban: a loaded machine may take seconds.)
    assert!((590_000..=600_000).contains(&retry_after_ms), "{retry_after_ms}");
    let (status, body) = get("/rooms/arena%203", API_AUTH).await;
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["bans"][0]["user_id"].as_str(), Some(&*a.welcome.user_id), "{body}");
    let remaining = view["bans"][0]["remaining_secs"].as_u64();
    assert!(remaining.is_some_and(|secs| (590..=600).contains(&secs)), "{body}");
    // A user may be called `events`.
    assert_eq!(delete("/rooms/arena%203/users/events", API_AUTH).await.0, 202);
    assert_eq!(
        server.https_request("PUT", "/rooms/arena%203", API_AUTH, b"").await.0,
        405
    );
    let (status, body) = delete("/rooms/arena%203/users/%FF", API_AUTH).await;
    assert_eq!((status, body.contains("not UTF-8")), (400, true), "{body}");
    // Lifted: a removal without a ban (from a room it is not in).
    assert_eq!(delete(&path(""), API_AUTH).await.0, 202);
    // (Only the second after its last snapshot may hold it back now.)
    while let Err((code, retry_after_ms)) = rejoin(&mut a).await {
        assert_eq!(code, ErrorCode::RateLimited as i32);
        tokio::time::sleep(std::time::Duration::from_millis(retry_after_ms.into())).await;
    }
}

/// Asked to stop with a drain period, the relay keeps serving (sessions play on,
/// `/healthz` answers) while `/readyz` answers 503, then stops as usual: a load
/// balancer takes it out of rotation before its sessions are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_relay_answers_not_ready_and_then_stops() {
    let server = tickrelay::server::Server::bind(tickrelay::config::Config::loopback(60))
        .await
        .unwrap()
        .drain(std::time::Duration::from_secs(5));
    let cert_pem = server.dev_certificate().unwrap().to_string();
    let mut server = tickrelay_testkit::serve(server, cert_pem);
    let mut client = TestClient::connect(&server).await;
    client.join("lobby", "arena").await;
    assert_eq!(server.https_get("/readyz").await.0, 200);
    server.shutdown.cancel();
    let started = std::time::Instant::now();
    while server.https_get("/readyz").await.0 != 503 {
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "never draining");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(server.https_get("/healthz").await.0, 200, "still serving");
    client.frames_in("lobby", 5).await;
    // Then the stop: the session closes with 1001.
    assert_eq!(client.close_frame().await.0, 1001);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(4900),
        "{:?}",
        started.elapsed()
    );
    server.task.take().unwrap().await.unwrap();
}

/// The browser demo is served only when asked for (`--demo`), from the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_is_served_only_with_demo() {
    let server = start().await;
    assert_eq!(server.https_get("/demo/").await.0, 404);
    let server = start_with(|c| c.demo = true).await;
    let (status, page) = server.https_get("/demo/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<script type=\"module\" src=\"/demo/demo.js\">"),
        "{page}"
    );
    assert_eq!(server.https_get("/demo").await, (200, page));
    let (status, script) = server.https_get("/demo/demo.js").await;
    assert_eq!(status, 200);
    assert!(script.len() > 10_000, "the bundled client");
    let (status, answer) = server.https_get("/demo/other.js").await;
    assert_eq!(status, 404);
    assert!(answer.contains("the browser demo is at /demo/"), "{answer}");
}

/// HEAD is answered as GET without a body (load balancers' probes); other methods get
/// 405 naming the allowed ones; a WebSocket upgrade over HTTP/1.0 is refused with 400
/// (it used to get a 101 with no upgrade behind it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_get_without_a_body_and_upgrades_need_http_1_1() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start().await;
    let raw = async |request: &str| {
        let mut tls = server.tls_connect().await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut response)).await;
        String::from_utf8_lossy(&response).to_lowercase()
    };
    let head = raw("HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
    let post = raw("POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").await;
    assert!(post.starts_with("http/1.1 405"), "{post}");
    assert!(post.contains("allow: get, head"), "{post}");
    let old = raw(
        "GET /ws HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(old.starts_with("http/1.0 400"), "{old}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints() {
    let server = start().await;
    assert_eq!(server.https_get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(server.https_get("/readyz").await, (200, "ready\n".into()));
    let mut client = TestClient::connect(&server).await;
    client.join("metered", "arena").await;
    client.frames_in("metered", 3).await;
    let (status, metrics) = server.https_get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "tickrelay_connections 1",
        "tickrelay_ticks_total",
        "tickrelay_tick_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
    // Every state frame written is timed from its tick (just after the write, so
    // perhaps after the client read it): three frames arrived, so three are counted.
    server
        .wait_for_metric("tickrelay_state_send_delay_seconds_count", 3)
        .await;
    assert_eq!(server.https_get("/nope").await.0, 404);
    // A plain GET to /ws is not an upgrade.
    assert_eq!(server.https_get("/ws").await.0, 400);
}

/// A client that reads late and keeps sending through the shutdown still gets its
/// 1001. A TCP socket closed with input unread is reset, and a reset discards what
/// the server had not transmitted yet (here the events this client has not read, and
/// the close frame behind them); so the server reads and drops what arrives until the
/// client answers its close (a lingering close), and only then closes the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reading_late_at_shutdown_still_reads_its_1001() {
    let server = start().await;
    let mut late = TestClient::connect_with_receive_buffer(&server, 4096).await;
    late.join("late", "relay").await;
    let mut talker = TestClient::connect(&server).await;
    talker.join("late", "relay").await;
    // 96 KB of events for `late`, which reads nothing for now: they wait in the
    // server's socket and its WebSocket buffer.
    for _ in 0..8 {
        talker
            .send(vec![client_message::Kind::Event(proto::SendEvent {
                room: "late".into(),
                kind: "bulk".into(),
                payload: vec![7; 12_000].into(),
                targets: vec![],
            })])
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server.shutdown.cancel();
    let ping = proto::ClientEnvelope {
        messages: vec![proto::ClientMessage {
            kind: Some(client_message::Kind::Ping(proto::Ping::default())),
        }],
        first_event_seq: 0,
    }
    .encode_to_vec();
    for _ in 0..30 {
        // Fails once the connection is gone: the close below says why.
        let _ = late.conn.send_bytes(&ping).await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(late.close_frame().await, (1001, "server shutting down".to_string()));
}

async fn shutdown_closes_every_session_with_1001(transport: Transport) {
    let mut server = start().await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = TestClient::connect_over(&server, transport).await;
        c.join("bye", "arena").await;
        clients.push(c);
    }
    server.shutdown.cancel();
    for c in &mut clients {
        assert_eq!(c.close_frame().await, (1001, "server shutting down".to_string()));
    }
    tokio::time::timeout(WAIT, server.task.take().unwrap())
        .await
        .expect("the server stops within its deadline")
        .unwrap();
}

/// The naive baseline (benchmarks only): every frame is a full snapshot and every
/// message travels in a write of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_fanout_sends_full_snapshots_one_message_per_write() {
    let server = start_with(|c| c.naive_fanout = true).await;
    let mut a = TestClient::connect(&server).await;
    a.join("naive", "arena").await;
    // Five pings in one envelope: answered in one write normally, in five here.
    let ping = |nonce| {
        client_message::Kind::Ping(proto::Ping {
            nonce,
            ..Default::default()
        })
    };
    a.send((1..=5).map(ping).collect()).await;
    let (mut writes, mut pongs) = (0, 0);
    while writes < 20 || pongs < 5 {
        match a.conn.recv(WAIT).await.expect("a message") {
            Incoming::Envelope(bytes) => {
                let envelope = tickrelay::frame::decode_server(&bytes).unwrap();
                assert_eq!(envelope.messages.len(), 1, "one message per write");
                match &envelope.messages[0].kind {
                    Some(Kind::State(frame)) => assert_eq!(frame.baseline_tick, 0, "a full snapshot every tick"),
                    Some(Kind::Pong(_)) => pongs += 1,
                    _ => {}
                }
                writes += 1;
            }
            other => panic!("{other:?}"),
        }
    }
}

/// 3,500 rooms (a listing that once went out as one reliable message and closed the
/// asking session as a slow consumer) are listed page by page, in id order, and the
/// session carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_rooms_are_listed_in_pages() {
    const ROOMS: usize = 3_500;
    let server = start_with(|c| {
        // Rooms that tick once a second, so that 3,500 of them cost little.
        let mut slow = c.room_types["relay"].clone();
        slow.tick_rate = 1;
        c.room_types.insert("slow".into(), slow);
        c.rooms = (0..ROOMS)
            .map(|i| tickrelay::config::PrecreatedRoom {
                id: format!("room-{i:05}"),
                room_type: "slow".into(),
                metadata: Default::default(),
            })
            .collect();
    })
    .await;
    let mut a = TestClient::connect(&server).await;
    let listed: Vec<String> = a.list_rooms(1_000).await.into_iter().map(|r| r.room).collect();
    let expected: Vec<String> = (0..ROOMS).map(|i| format!("room-{i:05}")).collect();
    assert_eq!(listed, expected, "every room once, in id order");
    // Still connected and answered.
    a.join("room-00042", "").await;
}

/// A second relay started on the address of a running one fails at once, says which
/// address, protocol and option, and leaves the running relay's development
/// certificate alone (it used to write a new one before binding, breaking every
/// client of the first relay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_on_an_address_in_use_names_it_and_leaves_the_certificate_alone() {
    let mut config = tickrelay::config::Config::loopback(60);
    let cert_path = config.tls.dev_cert_path.clone();
    let first = tickrelay_testkit::start_config(config.clone()).await;
    let cert = std::fs::read(&cert_path).unwrap();

    config.listen = first.addr;
    let error = tickrelay::server::Server::bind(config.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("TCP {}", first.addr)) && error.contains("--listen"),
        "{error}"
    );
    assert_eq!(std::fs::read(&cert_path).unwrap(), cert, "the certificate is untouched");

    config.listen = "127.0.0.1:0".parse().unwrap();
    config.quic.listen = Some(first.quic_addr);
    let error = tickrelay::server::Server::bind(config).await.unwrap_err().to_string();
    assert!(
        error.contains("UDP (QUIC)") && error.contains("--quic-listen"),
        "{error}"
    );
    assert_eq!(std::fs::read(&cert_path).unwrap(), cert, "the certificate is untouched");

    // The first relay still serves its clients.
    let mut a = TestClient::connect(&first).await;
    a.join("still-here", "").await;
}

/// A renewed certificate written over the configured files is served to new
/// connections, WebSocket and QUIC, within `reload_secs` and without a restart, and
/// its expiry is in the metrics; a session opened before goes on; files that do not
/// load (a key that is not the certificate's) leave the certificate in use in place.
#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("tickrelay-cert-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    // Valid until the first of January of `year` (two and three years ahead).
    let issue = |year| {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let since_1970 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let year = 1972 + (since_1970.as_secs() / 31_556_952) as i32;
    let ((first, first_key), (renewed, renewed_key)) = (issue(year), issue(year + 1));
    let expiry = "tickrelay_tls_certificate_expiry_timestamp_seconds";
    std::fs::write(&cert_path, &first).unwrap();
    std::fs::write(&key_path, &first_key).unwrap();
    let mut config = tickrelay::config::Config::loopback(60);
    config.tls.cert = Some(cert_path.clone());
    config.tls.key = Some(key_path.clone());
    config.tls.reload_secs = 1;
    let server = tickrelay::server::Server::bind(config).await.unwrap();
    let reloader = server.tls_reloader().expect("configured files");
    let mut server = tickrelay_testkit::serve(server, first);
    assert_eq!(server.metric(expiry), new_year(year), "{year}-01-01");
    let mut before = TestClient::connect(&server).await;
    before.join("r", "relay").await;

    std::fs::write(&key_path, &renewed_key).unwrap();
    std::fs::write(&cert_path, &renewed).unwrap();
    // From now on clients trust the renewed certificate only.
    server.cert_pem = renewed;
    let server = server;
    tickrelay_testkit::eventually("the renewed certificate served", || async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        server.try_tls_over(tcp).await.map(drop)
    })
    .await;
    TestClient::connect_over(&server, Transport::Quic).await;
    assert_eq!(server.metric(expiry), new_year(year + 1));
    let seq = before.input("r", tickrelay_testkit::create_entity(1)).await;
    before.applied("r", seq).await;

    std::fs::write(&key_path, first_key).unwrap();
    assert!(reloader.reload().is_err());
    TestClient::connect(&server).await;
    TestClient::connect_over(&server, Transport::Quic).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first of January of `year` (from 1970), Unix seconds.
fn new_year(year: i32) -> u64 {
    let leap = |y: i32| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    days * 86_400
}
