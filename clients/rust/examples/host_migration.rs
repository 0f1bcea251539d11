//! Host migration in a `relay` room: the member whose join creates the room owns it
//! and creates entities of the room (`create_for_room`), which it moves; when it
//! leaves, the member there longest owns the room (presence `OWNER`) and moves the
//! same entities on. Two clients in one program, the host and a guest.
//!
//! ```sh
//! cargo run -p tickrelay-client --example host_migration -- --url wss://127.0.0.1:7443/ws --cert tickrelay-dev-cert.pem
//! ```

use std::time::Duration;

use tickrelay_client::proto::{self, EntityUpdate, EntityWrites, PresenceChange, field::Value, input::Payload};
use tickrelay_client::state::Value as StateValue;
use tickrelay_client::{Client, ClientConfig, Event, Trust};
use tokio::sync::mpsc::Receiver;

/// Two members of a relay room: the host leaves, the guest takes the room over.
#[derive(clap::Parser)]
struct Args {
    /// The relay's WebSocket (or QUIC) URL.
    #[arg(long, default_value = "wss://127.0.0.1:7443/ws")]
    url: String,
    /// PEM file of the certificate to trust (the relay's development certificate).
    #[arg(long, default_value = "tickrelay-dev-cert.pem")]
    cert: String,
    /// The relay room to play in (a new one: its creator is its first owner).
    #[arg(long, default_value = "host-demo")]
    room: String,
}

type Error = Box<dyn std::error::Error>;

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
    Payload::Writes(EntityWrites {
        update: vec![update],
        ..Default::default()
    })
}

/// Waits for the first event `pick` takes; a refusal or a give-up ends the example.
async fn until<T>(events: &mut Receiver<Event>, mut pick: impl FnMut(&Event) -> Option<T>) -> Result<T, Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Error(error))) => return Err(format!("{error:?}").into()),
            Ok(Some(Event::GaveUp { reason, .. })) => return Err(reason.into()),
            Ok(Some(event)) => {
                if let Some(t) = pick(&event) {
                    return Ok(t);
                }
            }
            Ok(None) => return Err("the client stopped".into()),
            Err(_) => return Err("nothing within 10 s".into()),
        }
    }
}

/// Joins `room`; returns this member's id and the room's owner (`Joined.owner`).
async fn join(client: &Client, events: &mut Receiver<Event>, room: &str) -> Result<(u64, u64), Error> {
    client.join(room, "relay");
    until(events, |e| match e {
        Event::Joined(joined) => Some((joined.member_id, joined.owner)),
        _ => None,
    })
    .await
}

/// Sends `input` and waits until the room applied it (a refusal comes as an error).
async fn apply(client: &Client, events: &mut Receiver<Event>, room: &str, input: Payload) -> Result<(), Error> {
    let seq = client.send_input(room, input);
    while client.with_mirror(room, |m| m.last_input_seq()) < seq {
        until(events, |e| matches!(e, Event::State { .. }).then_some(())).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Args = clap::Parser::parse();
    let config = || ClientConfig::new(&args.url, Trust::CertFile(args.cert.clone().into()));
    let room = args.room.as_str();
    let (host, mut host_events) = Client::connect(config())?;
    let (host_id, owner) = join(&host, &mut host_events, room).await?;
    if owner != host_id {
        return Err(format!("{room} is owned by member {owner} already: name a new room with --room").into());
    }
    let (guest, mut guest_events) = Client::connect(config())?;
    let (guest_id, _) = join(&guest, &mut guest_events, room).await?;

    // The host creates the ball for the room (owner 0 in every member's mirror) and
    // moves it (while the host owns the room, the guest's writes to it are refused).
    let ball = proto::Entity {
        id: BALL,
        kind: 1,
        fields: vec![],
        ..Default::default()
    };
    let create = Payload::Writes(EntityWrites {
        create_for_room: vec![ball],
        ..Default::default()
    });
    apply(&host, &mut host_events, room, create).await?;
    apply(&host, &mut host_events, room, moved_to(1.0)).await?;

    // The host leaves; the guest, here longest of those left, is told it owns the
    // room, and moves the ball on.
    host.close().await;
    until(&mut guest_events, |e| match e {
        Event::Presence(p) if p.change == PresenceChange::Owner as i32 => {
            p.member.as_ref().filter(|m| m.member_id == guest_id).map(|_| ())
        }
        _ => None,
    })
    .await?;
    apply(&guest, &mut guest_events, room, moved_to(2.0)).await?;
    let ball = guest.with_mirror(room, |m| m.world().get(BALL).map(|e| (e.owner(), e.get(1).cloned())));
    match ball.flatten() {
        Some((0, Some(StateValue::Float(x)))) => {
            println!("member {guest_id} owns {room} now (member {host_id} left) and moved the room's ball to x = {x}")
        }
        other => return Err(format!("the ball: {other:?}").into()),
    }
    guest.close().await;
    Ok(())
}
