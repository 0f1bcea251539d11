//! Writes entities in a `relay` room (no server-side game logic: each member creates
//! and updates the entities it owns), and reads them back from the verified mirror.
//!
//! ```sh
//! cargo run --release -p tickrelay-client --example relay_writes -- --url wss://127.0.0.1:7443/ws --cert tickrelay-dev-cert.pem
//! ```

use std::time::Duration;

use tickrelay_client::proto::{self, EntityUpdate, EntityWrites, field::Value, input::Payload};
use tickrelay_client::state::Value as StateValue;
use tickrelay_client::{Client, ClientConfig, Event, Trust};

/// Create an entity in a relay room, move it, and read it back from the mirror.
#[derive(clap::Parser)]
struct Args {
    /// The relay's WebSocket (or QUIC) URL.
    #[arg(long, default_value = "wss://127.0.0.1:7443/ws")]
    url: String,
    /// PEM file of the certificate to trust (the relay's development certificate).
    #[arg(long, default_value = "tickrelay-dev-cert.pem")]
    cert: String,
    /// JWT for a relay with `--auth jwt`; also read from TICKRELAY_TOKEN.
    #[arg(long, env = "TICKRELAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The relay room to write in (created if it does not exist).
    #[arg(long, default_value = "relay-demo")]
    room: String,
}

/// Field 1 of the entity: its x position.
fn x(v: f32) -> proto::Field {
    proto::Field {
        id: 1,
        value: Some(Value::Float(v)),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Args = clap::Parser::parse();
    let mut config = ClientConfig::new(&args.url, Trust::CertFile(args.cert.into()));
    config.token = args.token;
    let (client, mut events) = Client::connect(config)?;
    let room = args.room.as_str();
    client.join(room, "relay");
    // Entity ids are the game's own, unique in the room (a taken one is refused with
    // ENTITY_EXISTS): here the member id the join gave, times 1,000, plus a counter
    // below 1,000 (ids are 64-bit). Ids of hidden kinds must be unpredictable instead:
    // see the hidden_hands example.
    let id = loop {
        match events.recv().await {
            Some(Event::Joined(joined)) => break joined.member_id * 1000 + 1,
            Some(Event::Error(error)) => return Err(format!("{error:?}").into()),
            Some(Event::GaveUp { reason, .. }) => return Err(reason.into()),
            Some(_) => {}
            None => return Err("the client stopped".into()),
        }
    };
    // Created with the fields it has (kind 1 is declared nowhere here: free-form).
    let create = proto::Entity {
        id,
        owner: 0, // the server sets it: the member that creates it
        kind: 1,
        fields: vec![x(0.0)],
    };
    let writes = |writes: EntityWrites| Payload::Writes(Box::new(writes));
    client.send_input(
        room,
        writes(EntityWrites {
            create: vec![create],
            ..Default::default()
        }),
    );
    // Then, once a tick, only the fields that changed.
    let mut last = None;
    for step in 1..=5 {
        let update = EntityUpdate {
            id,
            fields: vec![x(step as f32 / 2.0)],
        };
        last = client.send_input(
            room,
            writes(EntityWrites {
                update: vec![update],
                ..Default::default()
            }),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Applied once a state frame says so; a refusal comes as an `Error` carrying the
    // input's number.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while client.with_mirror(room, |m| m.last_input_seq()) < last {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Error(error))) => return Err(format!("{error:?}").into()),
            Ok(Some(_)) => {}
            _ => return Err("the inputs were not applied within 5 s".into()),
        }
    }
    let held = client.with_mirror(room, |m| m.world().get(id).and_then(|e| e.get(1).cloned()));
    match held.flatten() {
        Some(StateValue::Float(x)) => println!("entity {id} at x = {x}, as every member of {room} sees it"),
        other => return Err(format!("entity {id} holds {other:?}").into()),
    }
    client.close().await;
    Ok(())
}
