//! Matchmaking on one node over real sockets: quick joins, room metadata, locked
//! and private rooms, filtered listings.

use std::collections::BTreeMap;

use tickrelay::proto::{self, ErrorCode, RoomLock};
use tickrelay_testkit::{TestClient, Transport, both_transports, many_searches, start_with};

both_transports!(
    quick_joins_fill_matching_rooms_and_skip_full_locked_and_private_ones,
    a_rooms_owner_hands_over_its_listing_and_entities_when_it_leaves
);

fn meta(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn quick(filters: &[(&str, &str)]) -> proto::QuickJoin {
    proto::QuickJoin {
        room_type: "duel".into(),
        filters: meta(filters),
        create: Some(proto::RoomOptions {
            metadata: meta(&[("map", "dust")]),
            private: false,
        }),
        ..Default::default()
    }
}

fn ids(rooms: &[proto::RoomInfo]) -> Vec<&str> {
    rooms.iter().map(|r| r.room.as_str()).collect()
}

async fn quick_joins_fill_matching_rooms_and_skip_full_locked_and_private_ones(transport: Transport) {
    let server = start_with(|c| {
        let mut duel = c.room_types["relay"].clone();
        duel.max_members = 2;
        c.room_types.insert("duel".into(), duel);
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(TestClient::connect_over(&server, transport).await);
    }
    let [a, b, c, d, e] = &mut clients[..] else {
        unreachable!()
    };
    let ctf = [("mode", "ctf")];

    // Nothing open: a new room, named after its type, holding the filters and the
    // creation metadata; the second quick join fills it.
    let first = a.quick_join(quick(&ctf)).await.unwrap().room;
    assert!(first.starts_with("duel-"), "{first}");
    assert_eq!(b.quick_join(quick(&ctf)).await.unwrap().room, first);
    // Full: the third opens another.
    let second = c.quick_join(quick(&ctf)).await.unwrap().room;
    assert_ne!(second, first);

    let all = c.list_rooms_where(proto::ListRooms::default()).await;
    assert_eq!(ids(&all).len(), 2);
    assert!(
        all.iter()
            .all(|r| r.metadata == meta(&[("map", "dust"), ("mode", "ctf")]))
    );
    let open = proto::ListRooms {
        room_type: "duel".into(),
        filters: meta(&ctf),
        open_only: true,
        ..Default::default()
    };
    assert_eq!(ids(&c.list_rooms_where(open.clone()).await), [second.as_str()]);

    // Its owner locks the second: listed as locked, never picked; others may not.
    let lock = |room: &str, lock: RoomLock| proto::UpdateRoom {
        room: room.into(),
        metadata: meta(&[("round", "1")]),
        lock: lock as i32,
        owner: 0,
    };
    let locked = c.update_room(lock(&second, RoomLock::Locked)).await.unwrap();
    assert!(locked.locked && locked.metadata["round"] == "1");
    let refused = b.update_room(lock(&first, RoomLock::Locked)).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotOwner as i32);
    assert!(c.list_rooms_where(open.clone()).await.is_empty());
    let third = d.quick_join(quick(&ctf)).await.unwrap().room;
    assert!(third != first && third != second);

    // A private room is joined by id only: not listed, not picked.
    let secret = proto::JoinRoom {
        request_id: 99,
        room: "secret".into(),
        room_type: "duel".into(),
        create: Some(proto::RoomOptions {
            metadata: meta(&ctf),
            private: true,
        }),
        ..Default::default()
    };
    e.send(vec![proto::client_message::Kind::Join(secret)]).await;
    e.until(|k| matches!(k, proto::server_message::Kind::Joined(j) if j.room == "secret").then_some(()))
        .await;
    let listed = e.list_rooms_where(proto::ListRooms::default()).await;
    assert!(!ids(&listed).contains(&"secret"));
    // Other filters, another room: the one D opened still has a seat, but not `dm`.
    let dm = e.quick_join(quick(&[("mode", "dm")])).await.unwrap().room;
    assert!(![&first, &second, &third, "secret"].contains(&dm.as_str()));
    assert_eq!(ids(&d.list_rooms_where(open).await), [third.as_str()]);
}

/// Rooms with the largest metadata allowed (about 5 KB each) are listed in pages cut
/// by bytes: a default page of 100 of them (over 300 KB) once went out as one message
/// past the reliable queue's 256 KiB and closed the asking session as a slow consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_with_large_metadata_are_listed_in_pages_within_the_byte_bound() {
    // 60 rooms made by quick joins from one address, at once.
    let server = start_with(many_searches).await;
    let large: Vec<(String, String)> = (0..15).map(|i| (format!("{i:064}"), "v".repeat(256))).collect();
    let mut makers = Vec::new();
    for m in 0..4 {
        let mut maker = TestClient::connect(&server).await;
        for r in 0..15 {
            let n = format!("{m}-{r}");
            let mut metadata: BTreeMap<String, String> = large.iter().cloned().collect();
            metadata.insert("n".into(), n.clone());
            let made = maker
                .quick_join(proto::QuickJoin {
                    room_type: "relay".into(),
                    filters: meta(&[("n", &n)]),
                    create: Some(proto::RoomOptions {
                        metadata,
                        private: false,
                    }),
                    ..Default::default()
                })
                .await;
            made.unwrap();
        }
        makers.push(maker);
    }
    let mut honest = TestClient::connect(&server).await;
    let listed = honest.list_rooms_where(proto::ListRooms::default()).await;
    assert_eq!(listed.len(), 60);
    assert!(listed.iter().all(|r| r.metadata.len() == 16));
    // Five listings in one envelope: each page takes at most half of what the reliable
    // queue may still hold, so all five are answered.
    let asks = (100..105)
        .map(|request_id| {
            proto::client_message::Kind::Request(proto::Request {
                request_id,
                kind: Some(proto::request::Kind::ListRooms(proto::ListRooms::default())),
            })
        })
        .collect();
    honest.send(asks).await;
    for request_id in 100..105 {
        honest
            .until(|k| match k {
                proto::server_message::Kind::Response(r) if r.request_id == request_id => Some(()),
                _ => None,
            })
            .await;
    }
    // Still connected and answered.
    honest.join(&listed[0].room, "").await;
}

/// Host migration over real sockets: the member whose join created the room creates
/// entities of the room; when it leaves, the member here longest owns the room (told
/// by presence), writes those entities and changes the listing.
async fn a_rooms_owner_hands_over_its_listing_and_entities_when_it_leaves(transport: Transport) {
    use proto::server_message::Kind;
    let server = start_with(|_| {}).await;
    let mut host = TestClient::connect_over(&server, transport).await;
    let mut guest = TestClient::connect_over(&server, transport).await;
    let joined = host.join("match", "relay").await;
    let host_id = joined.member_id;
    assert_eq!(joined.owner, host_id, "the creating member owns the room");
    let joined = guest.join("match", "relay").await;
    let guest_id = joined.member_id;
    assert_eq!(joined.owner, host_id);
    let ball = |fields| {
        proto::input::Payload::Writes(Box::new(proto::EntityWrites {
            create_for_room: vec![proto::Entity {
                id: 7,
                kind: 1,
                fields,
                ..Default::default()
            }],
            ..Default::default()
        }))
    };
    let x = |v: f32| proto::Field {
        id: 1,
        value: Some(proto::field::Value::Float(v)),
    };
    let seq = host.input("match", ball(vec![x(1.0)])).await;
    host.applied("match", seq).await;
    let moved = |v| {
        proto::input::Payload::Writes(Box::new(proto::EntityWrites {
            update: vec![proto::EntityUpdate {
                id: 7,
                fields: vec![x(v)],
            }],
            ..Default::default()
        }))
    };
    // Not the guest's to write while the host owns the room.
    let seq = guest.input("match", moved(2.0)).await;
    let refused = guest
        .until(|k| match k {
            Kind::Error(e) if e.request_id == seq => Some(e.code),
            _ => None,
        })
        .await;
    assert_eq!(refused, ErrorCode::NotOwner as i32);

    let leave = proto::LeaveRoom {
        request_id: host.request_id(),
        room: "match".into(),
    };
    host.send(vec![proto::client_message::Kind::Leave(leave)]).await;
    let owner = guest
        .until(|k| match k {
            Kind::Presence(p) if p.change == proto::PresenceChange::Owner as i32 => p.member.clone(),
            _ => None,
        })
        .await;
    assert_eq!(owner.member_id, guest_id);
    let seq = guest.input("match", moved(3.0)).await;
    guest.applied("match", seq).await;
    let ball = guest.mirrors["match"]
        .world()
        .get(7)
        .cloned()
        .expect("the room's entity stayed");
    assert_eq!(
        (ball.owner(), ball.get(1)),
        (0, Some(&tickrelay::state::Value::Float(3.0)))
    );
    let update = |host: &str, owner: u64| proto::UpdateRoom {
        room: "match".into(),
        metadata: meta(&[("host", host)]),
        lock: RoomLock::Unchanged as i32,
        owner,
    };
    let listed = guest
        .update_room(update("guest", 0))
        .await
        .expect("the new owner changes the listing");
    assert_eq!((listed.metadata["host"].as_str(), listed.owner), ("guest", guest_id));

    // The owner hands the room to a member of its choice; not to one not in it.
    let mut third = TestClient::connect_over(&server, transport).await;
    let third_id = third.join("match", "relay").await.member_id;
    let refused = guest.update_room(update("nobody", 999_999)).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadRequest as i32, "{refused:?}");
    let handed = guest.update_room(update("third", third_id)).await.unwrap();
    assert_eq!((handed.metadata["host"].as_str(), handed.owner), ("third", third_id));
    let told = |k: &Kind| match k {
        Kind::Presence(p) if p.change == proto::PresenceChange::Owner as i32 => p.member.as_ref().map(|m| m.member_id),
        _ => None,
    };
    assert_eq!(third.until(told).await, third_id);
    assert_eq!(guest.until(told).await, third_id);
    let seq = guest.input("match", moved(4.0)).await;
    let refused = guest
        .until(|k| match k {
            Kind::Error(e) if e.request_id == seq => Some(e.code),
            _ => None,
        })
        .await;
    assert_eq!(refused, ErrorCode::NotOwner as i32, "no longer the room's owner");
    let seq = third.input("match", moved(5.0)).await;
    third.applied("match", seq).await;
    // The guest's two refused writes, in the metrics.
    server.wait_for_metric("tickrelay_inputs_refused_total", 2).await;
}
