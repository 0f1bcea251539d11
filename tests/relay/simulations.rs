//! A game's own simulation on the relay: the Tag example's game (`examples/tag`),
//! registered the way its `main` does and configured the way a studio would, played
//! over real sockets.

use bytes::Bytes;
use tickrelay::config::{Config, RoomTypeConfig, SimulationKind, Simulations};
use tickrelay::proto::{ErrorCode, input, server_message::Kind};
use tickrelay::state::Value;
use tickrelay_testkit::{TestClient, Transport, WAIT, both_transports, start_with_simulations};

#[path = "../../examples/tag/game.rs"]
mod game;

both_transports!(a_game_registered_by_the_program_runs_its_rooms_and_sends_its_events);

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

async fn a_game_registered_by_the_program_runs_its_rooms_and_sends_its_events(transport: Transport) {
    let simulations = Simulations::new().add_with_params("tag", game::Tag::new);
    let mut config = Config::loopback(60);
    // What `[room_types.tag]` with `[room_types.tag.params]` gives: fast players and no
    // pause after the first join, so the first tag comes within half a second.
    let params = "speed = 100.0\ncooldown_secs = 0.0\n".parse().unwrap();
    let tag = RoomTypeConfig {
        simulation: SimulationKind::Registered("tag".into()),
        tick_rate: 60,
        params,
        ..RoomTypeConfig::default()
    };
    config.room_types.insert("tag".into(), tag);
    let server = start_with_simulations(config, &simulations).await;

    // The first to join is "it", on the left; the second joins on the right.
    let mut a = TestClient::connect_over(&server, transport).await;
    let a_id = a.join("yard", "tag").await.member_id;
    let mut b = TestClient::connect_over(&server, transport).await;
    let joined = b.join("yard", "tag").await;
    let b_id = joined.member_id;
    assert_eq!(joined.schema.len(), 1, "the game declares its kind");
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
