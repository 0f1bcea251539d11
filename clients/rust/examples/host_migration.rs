//! Host migration in a `relay` room: the member whose join creates the room owns it
//! and creates entities of the room (`create_for_room`), which it moves; when it
//! leaves, the member there longest owns the room (presence `OWNER`) and moves the
//! same entities on. Two clients in one program, the host and a guest.
//!
//! ```sh
//! cargo run --release -p tickrelay-client --example host_migration -- --url wss://127.0.0.1:7443/ws --cert tickrelay-dev-cert.pem
//! ```

mod common;

use common::{Error, RelayArgs, apply, host_and_guest, until};
use tickrelay_client::Event;
use tickrelay_client::proto::{self, EntityUpdate, EntityWrites, PresenceChange, field::Value, input::Payload};
use tickrelay_client::state::Value as StateValue;

/// Two members of a relay room: the host leaves, the guest takes the room over.
#[derive(clap::Parser)]
struct Args {
    #[command(flatten)]
    relay: RelayArgs,
    /// The relay room to play in (a new one: its creator is its first owner).
    #[arg(long, default_value = "host-demo")]
    room: String,
}

/// The room's entity: its id (the game's own) and field 1, its x position.
const BALL: u64 = 1;

fn moved_to(x: f32) -> Payload {
    let update = EntityUpdate {
        id: BALL,
        fields: vec![proto::Field {
            id: 1,
            value: Some(Value::Float(x)),
        }],
    };
    Payload::Writes(Box::new(EntityWrites {
        update: vec![update],
        ..Default::default()
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Args = clap::Parser::parse();
    let config = || args.relay.config();
    let room = args.room.as_str();
    let (mut host, mut guest) = host_and_guest(config, room).await?;
    let (host_id, guest_id) = (host.joined.member_id, guest.joined.member_id);

    // The host creates the ball for the room (owner 0 in every member's mirror) and
    // moves it (while the host owns the room, the guest's writes to it are refused).
    let ball = proto::Entity {
        id: BALL,
        kind: 1,
        fields: vec![],
        ..Default::default()
    };
    let create = Payload::Writes(Box::new(EntityWrites {
        create_for_room: vec![ball],
        ..Default::default()
    }));
    apply(&host.client, &mut host.events, room, create).await?;
    apply(&host.client, &mut host.events, room, moved_to(1.0)).await?;

    // The host leaves; the guest, here longest of those left, is told it owns the
    // room, and moves the ball on.
    host.client.close().await;
    until(&mut guest.events, |e| match e {
        Event::Presence(p) if p.change == PresenceChange::Owner as i32 => {
            p.member.as_ref().filter(|m| m.member_id == guest_id).map(|_| ())
        }
        _ => None,
    })
    .await?;
    apply(&guest.client, &mut guest.events, room, moved_to(2.0)).await?;
    let ball = guest
        .client
        .with_mirror(room, |m| m.world().get(BALL).map(|e| (e.owner(), e.get(1).cloned())));
    match ball.flatten() {
        Some((0, Some(StateValue::Float(x)))) => {
            println!("member {guest_id} owns {room} now (member {host_id} left) and moved the room's ball to x = {x}")
        }
        other => return Err(format!("the ball: {other:?}").into()),
    }
    guest.client.close().await;
    Ok(())
}
