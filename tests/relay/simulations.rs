//! A game's own simulation on the relay: the Tag example's game (`examples/tag`),
//! registered the way its `main` does and configured the way a studio would, played
//! over real sockets.

use bytes::Bytes;
use tickrelay::config::{Config, PrecreatedRoom, RoomTypeConfig, SimulationKind, Simulations};
use tickrelay::proto::{
    self, ErrorCode, PresenceChange, client_message::Kind as ClientKind, input, server_message::Kind,
};
use tickrelay::state::Value;
use tickrelay_testkit::{TestClient, TestServer, Transport, WAIT, both_transports, start_with_simulations};

#[path = "../../examples/tag/game.rs"]
mod game;

both_transports!(
    a_game_registered_by_the_program_runs_its_rooms_and_sends_its_events,
    a_game_ends_its_room_when_it_is_won,
    a_configured_room_opens_again_when_its_game_ends,
    a_game_removes_the_players_it_wants_gone,
    a_game_in_the_dark_shows_each_player_those_near_it,
    a_game_names_players_by_what_they_told_as_they_joined,
);

/// The relay with Tag registered as the example's `main` does, a `tag` room type at
/// 60 Hz with these params (as `[room_types.tag.params]` would give them), and these
/// rooms of it configured (as `[[rooms]]` would).
async fn tag_server(params: &str, configured: &[&str]) -> TestServer {
    let simulations = Simulations::new().add_with_params("tag", game::Tag::new);
    let mut config = Config::loopback(60);
    let tag = RoomTypeConfig {
        simulation: SimulationKind::Registered("tag".into()),
        tick_rate: 60,
        params: params.parse().unwrap(),
        ..RoomTypeConfig::default()
    };
    config.room_types.insert("tag".into(), tag);
    config.rooms = (configured.iter())
        .map(|&id| PrecreatedRoom {
            id: id.into(),
            room_type: "tag".into(),
            metadata: Default::default(),
        })
        .collect();
    start_with_simulations(config, &simulations).await
}

/// Two players in room `yard`: the first is "it", on the left, the other on the
/// right; their member ids.
async fn two_players(server: &TestServer, transport: Transport) -> (TestClient, u64, TestClient, u64) {
    let mut a = TestClient::connect_over(server, transport).await;
    let a_id = a.join("yard", "tag").await.member_id;
    let mut b = TestClient::connect_over(server, transport).await;
    let b_id = b.join("yard", "tag").await.member_id;
    (a, a_id, b, b_id)
}

/// The `Left` that `client` gets from `yard`: (reason, message).
async fn left_yard(client: &mut TestClient) -> (i32, String) {
    client.left("yard").await
}

/// Whether `member`'s player in `room` is "it", as `client` mirrors the room.
fn is_it(client: &TestClient, room: &str, member: u64) -> Option<bool> {
    let mirror = client.mirrors.get(room)?;
    let player = mirror.world().entities().find(|e| e.owner() == member)?;
    Some(player.get(game::FIELD_IT) == Some(&Value::Bool(true)))
}

/// Reads until `member`'s player in `room` is "it" as `client` mirrors the room.
async fn until_it(client: &mut TestClient, room: &str, member: u64) {
    let deadline = tokio::time::Instant::now() + 2 * WAIT;
    while is_it(client, room, member) != Some(true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "member {member} never became it"
        );
        client.next().await;
    }
}

/// Reads until `client` mirrors exactly the players of `members` in `yard`.
async fn until_sees(client: &mut TestClient, members: &[u64]) {
    let deadline = tokio::time::Instant::now() + 2 * WAIT;
    loop {
        let mirror = client.mirrors.get("yard");
        let mut seen: Vec<u64> = (mirror.into_iter())
            .flat_map(|m| m.world().entities().map(|e| e.owner()))
            .collect();
        seen.sort_unstable();
        if seen == members {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "saw {seen:?}, never {members:?}"
        );
        client.next().await;
    }
}

/// Tag in the dark: the game shows each player only the players near it, and its
/// checksums (each over what its player sees) verify.
async fn a_game_in_the_dark_shows_each_player_those_near_it(transport: Transport) {
    // Slow enough that b, seeing the others for 40 units of its way (x 45 to 5),
    // is told to stop while it does, on a loaded machine too.
    let server = tag_server("speed = 20.0\nsight = 20.0\n", &[]).await;
    // a at (25, 50), b at (75, 50), c at (25, 57).
    let (mut a, a_id, mut b, b_id) = two_players(&server, transport).await;
    let mut c = TestClient::connect_over(&server, transport).await;
    let c_id = c.join("yard", "tag").await.member_id;
    until_sees(&mut a, &[a_id, c_id]).await;
    until_sees(&mut c, &[a_id, c_id]).await;
    until_sees(&mut b, &[b_id]).await;
    // b runs left until it sees the others, and stops there.
    let left = input::Payload::Intent(Bytes::from_static(&[(-127i8) as u8, 0]));
    b.input("yard", left).await;
    until_sees(&mut b, &[a_id, b_id, c_id]).await;
    b.input("yard", input::Payload::Intent(Bytes::from_static(&[0, 0])))
        .await;
    until_sees(&mut a, &[a_id, b_id, c_id]).await;
    until_sees(&mut c, &[a_id, b_id, c_id]).await;
    for client in [&a, &b, &c] {
        assert!(client.mirrors["yard"].checksums_verified() > 0);
    }
    // b runs back to the right, out of their sight.
    let right = input::Payload::Intent(Bytes::from_static(&[127, 0]));
    b.input("yard", right).await;
    until_sees(&mut b, &[b_id]).await;
    until_sees(&mut a, &[a_id, c_id]).await;
    // One who leaves is gone for the others.
    c.close_normally().await;
    until_sees(&mut a, &[a_id]).await;
}

async fn a_game_registered_by_the_program_runs_its_rooms_and_sends_its_events(transport: Transport) {
    // Fast players and no pause after the first join: the first tag comes within
    // half a second.
    let server = tag_server("speed = 100.0\ncooldown_secs = 0.0\n", &[]).await;
    let (mut a, a_id, mut b, b_id) = two_players(&server, transport).await;
    let schema = &b.mirrors["yard"].world().schema().kinds()[0];
    assert_eq!(schema.name(), "player", "the game declares its kind");
    until_it(&mut b, "yard", a_id).await;
    assert_eq!(is_it(&b, "yard", b_id), Some(false));

    // A bad intent gets the game's typed error; then "it" runs right, into the other.
    let bad = a
        .input("yard", input::Payload::Intent(Bytes::from_static(&[1, 2, 3])))
        .await;
    let refused = a.until(|k| match k {
        Kind::Error(e) if e.request_id == bad => Some(e.clone()),
        _ => None,
    });
    let refused = refused.await;
    assert_eq!(refused.code, ErrorCode::InvalidIntent as i32, "{refused:?}");
    a.input("yard", input::Payload::Intent(Bytes::from_static(&[127, 0])))
        .await;
    let tagged = format!("{{\"from\":{a_id},\"to\":{b_id}}}");
    for client in [&mut a, &mut b] {
        let event = client.next_event().await;
        assert_eq!((event.kind.as_str(), event.sender), ("tagged", 0), "{event:?}");
        assert_eq!(event.payload, tagged.as_bytes());
    }
    until_it(&mut b, "yard", b_id).await;
    assert_eq!(is_it(&b, "yard", a_id), Some(false));
}

/// What a player tells as it joins (`JoinRoom.member_data`) reaches the game, which
/// shows it as the player's name; a player that tells nothing is named by its user
/// id; too much is refused with a typed error.
async fn a_game_names_players_by_what_they_told_as_they_joined(transport: Transport) {
    let server = tag_server("", &[]).await;
    let join = |request_id, member_data: &'static [u8]| {
        ClientKind::Join(proto::JoinRoom {
            request_id,
            room: "yard".into(),
            room_type: "tag".into(),
            member_data: Bytes::from_static(member_data),
            ..Default::default()
        })
    };
    let mut a = TestClient::connect_over(&server, transport).await;
    a.send(vec![join(1, &[b'x'; 1025])]).await;
    let refused = a.until(|k| match k {
        Kind::Error(e) if e.request_id == 1 => Some(e.clone()),
        _ => None,
    });
    assert_eq!(refused.await.code, ErrorCode::LimitExceeded as i32);
    a.send(vec![join(2, "  Ada Lovelace  ".as_bytes())]).await;
    let a_id = a
        .until(|k| match k {
            Kind::Joined(j) if j.request_id == 2 => Some(j.member_id),
            _ => None,
        })
        .await;
    let mut b = TestClient::connect_over(&server, transport).await;
    let b_joined = b.join("yard", "tag").await;
    let name_of = |client: &TestClient, member: u64| {
        let mirror = client.mirrors.get("yard")?;
        let player = mirror.world().entities().find(|e| e.owner() == member)?;
        player.get(game::FIELD_NAME).cloned()
    };
    let deadline = tokio::time::Instant::now() + 2 * WAIT;
    while name_of(&b, a_id).is_none() || name_of(&b, b_joined.member_id).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no names");
        b.next().await;
    }
    assert_eq!(name_of(&b, a_id), Some(Value::String("Ada Lovelace".into())));
    let b_user = &b_joined
        .members
        .iter()
        .find(|m| m.member_id == b_joined.member_id)
        .unwrap()
        .user_id;
    assert_eq!(name_of(&b, b_joined.member_id), Some(Value::String(b_user.clone())));
}

async fn a_game_ends_its_room_when_it_is_won(transport: Transport) {
    let server = tag_server("speed = 100.0\ncooldown_secs = 0.0\ntags = 1\n", &[]).await;
    let (mut a, _, mut b, b_id) = two_players(&server, transport).await;
    a.input("yard", input::Payload::Intent(Bytes::from_static(&[127, 0])))
        .await;
    for client in [&mut a, &mut b] {
        let why = (ErrorCode::RoomClosed as i32, "game over after tag 1".to_string());
        assert_eq!(left_yard(client).await, why);
        // The tag was the closing tick's: its state came before the Left (over QUIC
        // on the stream, not as a datagram that the Left could overtake).
        assert_eq!(is_it(client, "yard", b_id), Some(true), "the final state");
    }
    // The room is gone: joining its id opens a new game, with the joiner "it".
    let rejoined = a.join("yard", "tag").await;
    assert_eq!(rejoined.members.len(), 1);
    until_it(&mut a, "yard", rejoined.member_id).await;
}

async fn a_configured_room_opens_again_when_its_game_ends(transport: Transport) {
    let server = tag_server("speed = 100.0\ncooldown_secs = 0.0\ntags = 1\n", &["yard"]).await;
    let (mut a, _, mut b, _) = two_players(&server, transport).await;
    a.input("yard", input::Payload::Intent(Bytes::from_static(&[127, 0])))
        .await;
    for client in [&mut a, &mut b] {
        assert_eq!(left_yard(client).await.0, ErrorCode::RoomClosed as i32);
    }
    // Listed again, empty, with no one joining it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rooms = b.list_rooms(10).await;
        if rooms.iter().any(|r| r.room == "yard" && r.members == 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "yard not listed again: {rooms:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn a_game_removes_the_players_it_wants_gone(transport: Transport) {
    let server = tag_server("idle_secs = 1.5\n", &[]).await;
    let (mut a, _, mut b, b_id) = two_players(&server, transport).await;
    // The first player keeps playing; the second sends nothing and is removed.
    let stay = input::Payload::Intent(Bytes::from_static(&[0, 0]));
    let mut keep_playing = tokio::time::interval(std::time::Duration::from_millis(100));
    let removed = (ErrorCode::Forbidden as i32, "no input for 1.5 s".to_string());
    let mut b_left = std::pin::pin!(left_yard(&mut b));
    let told = loop {
        tokio::select! {
            told = &mut b_left => break told,
            _ = keep_playing.tick() => {
                a.input("yard", stay.clone()).await;
            }
        }
    };
    assert_eq!(told, removed);
    let gone = a.until(|k| match k {
        Kind::Presence(p) if p.change == PresenceChange::Left as i32 => p.member.as_ref().map(|m| m.member_id),
        _ => None,
    });
    assert_eq!(gone.await, b_id);
    assert_eq!(server.metric("tickrelay_rooms "), 1, "the game goes on");
}

/// Tag keeps its tag count beside the world (`save` / `load`): a room restored on
/// another node ends after the same number of tags.
#[test]
fn tag_saves_the_tags_so_far_for_a_restore() {
    use tickrelay::engine::simulation::Simulation;
    let mut moved = game::Tag::new(&game::TagParams::default());
    moved.load(&7u32.to_le_bytes());
    assert_eq!(moved.save(), 7u32.to_le_bytes());
    let fresh = game::Tag::new(&game::TagParams::default());
    assert_eq!(fresh.save(), 0u32.to_le_bytes());
}

/// `--check` lists the kinds a game's own simulation declares, as it lists the
/// arena's and the configuration's.
#[tokio::test]
async fn the_check_lists_the_kinds_a_game_declares() {
    let simulations = Simulations::new().add_with_params("tag", game::Tag::new);
    let lines = tickrelay::server::Server::check(Config::loopback(60), &simulations)
        .await
        .unwrap();
    let kinds = lines.iter().find(|l| l.starts_with("kinds of tag: "));
    assert!(kinds.is_some_and(|k| k.contains("player")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("kinds of arena: ")), "{lines:#?}");
}
