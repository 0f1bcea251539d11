//! Hidden state in a `relay` room: cards are an entity kind the relay declares
//! `owner_only`, so each card reaches its owner only. The host creates a deck for the
//! room (owned by the room: no member sees it), deals one card to the guest and one to
//! itself, and each client's verified mirror then holds its own card and not the
//! other's. Then the guest shows its card to the host (a peek) and hides it again.
//! Two clients in one program, the host and a guest.
//!
//! The relay needs the kind declared (in a configuration file, or as here). From the
//! repository's root, the relay in one terminal and the example in another (the
//! example trusts the development certificate the relay writes there,
//! `tickrelay-dev-cert.pem`; `--url` and `--cert` say otherwise):
//!
//! ```sh
//! cargo run --release -- --set 'room_types.relay.kinds=[{kind=2, name="card", owner_only=true, fields=[{id=1, name="rank", type="int", min=1, max=13}]}]'
//! cargo run --release -p tickrelay-client --example hidden_hands
//! ```
//!
//! The host knows the deck it made and every card it dealt: in a relay room hidden
//! state hides hands from the other players, not from the host. For a deck no player
//! sees, a game's own simulation holds it (README, "Your own game logic").

mod common;

use common::{Error, RelayArgs, apply, host_and_guest, until};
use tickrelay_client::proto::{self, EntityWrites, Give, Viewer, field::Value, input::Payload};
use tickrelay_client::{Client, Event};

/// A host deals one hidden card to a guest and one to itself.
#[derive(clap::Parser)]
struct Args {
    #[command(flatten)]
    relay: RelayArgs,
    /// The relay room to play in (a new one: its creator is its first owner).
    #[arg(long, default_value = "cards-demo")]
    room: String,
}

/// The card kind the relay declares `owner_only`, and its one field.
const CARD: u32 = 2;
const RANK: u32 = 1;

/// The cards `client`'s mirror of `room` holds: (id, owner, rank).
fn hand(client: &Client, room: &str) -> Vec<(u64, u64, Option<i64>)> {
    let cards = client.with_mirror(room, |m| {
        (m.world().entities())
            .filter(|e| e.kind() == CARD)
            .map(|e| {
                let rank = match e.get(RANK) {
                    Some(Value::Int(rank)) => Some(*rank),
                    _ => None,
                };
                (e.id(), e.owner(), rank)
            })
            .collect()
    });
    cards.unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Args = clap::Parser::parse();
    let config = || args.relay.config();
    let room = args.room.as_str();
    let (mut host, mut guest) = host_and_guest(config, room).await?;
    if !(host.joined.schema.iter()).any(|k| k.kind == CARD && k.owner_only) {
        return Err(
            "the relay does not declare kind 2 owner_only: start it as this example's documentation says".into(),
        );
    }
    let (host_id, guest_id) = (host.joined.member_id, guest.joined.member_id);

    // A deck of the room's own (owner 0: no member sees it). Hidden entities get
    // unpredictable 64-bit ids (from the system's cryptographic generator): an id
    // another member could guess could be probed for with creates (a taken id is
    // refused with ENTITY_EXISTS).
    let deck = (1..=13).map(|rank| Ok((getrandom::u64()?.max(1), rank)));
    let deck: Vec<(u64, i64)> = deck.collect::<Result<_, getrandom::Error>>()?;
    let cards = deck.iter().map(|&(id, rank)| proto::Entity {
        id,
        kind: CARD,
        fields: vec![proto::Field {
            id: RANK,
            value: Some(Value::Int(rank)),
        }],
        ..Default::default()
    });
    let create = Payload::Writes(Box::new(EntityWrites {
        create_for_room: cards.collect(),
        ..Default::default()
    }));
    apply(&host.client, &mut host.events, room, create).await?;
    if !hand(&host.client, room).is_empty() {
        return Err("the host sees the room's deck".into());
    }
    // The room's owner deals: a card to the guest, one to itself.
    let deal = Payload::Writes(Box::new(EntityWrites {
        give: vec![
            Give {
                id: deck[0].0,
                to: guest_id,
            },
            Give {
                id: deck[1].0,
                to: host_id,
            },
        ],
        ..Default::default()
    }));
    apply(&host.client, &mut host.events, room, deal).await?;
    // The guest's mirror follows once its next frame arrives.
    while hand(&guest.client, room).is_empty() {
        until(&mut guest.events, |e| matches!(e, Event::State { .. }).then_some(())).await?;
    }
    let (host_hand, guest_hand) = (hand(&host.client, room), hand(&guest.client, room));
    if host_hand != [(deck[1].0, host_id, Some(deck[1].1))] || guest_hand != [(deck[0].0, guest_id, Some(deck[0].1))] {
        return Err(format!("host holds {host_hand:?}, guest {guest_hand:?}").into());
    }
    println!(
        "member {host_id} (the host) holds rank {}, member {guest_id} holds rank {}; neither sees the other's card \
         nor the 11 left in the deck",
        deck[1].1, deck[0].1
    );
    // A peek: the guest shows its card to the host, then hides it again.
    let guests_card = Viewer {
        id: deck[0].0,
        member: host_id,
    };
    let show = Payload::Writes(Box::new(EntityWrites {
        show: vec![guests_card],
        ..Default::default()
    }));
    apply(&guest.client, &mut guest.events, room, show).await?;
    let both = [
        (deck[0].0, guest_id, Some(deck[0].1)),
        (deck[1].0, host_id, Some(deck[1].1)),
    ];
    let sorted_hand = |client: &Client| {
        let mut cards = hand(client, room);
        cards.sort_unstable();
        cards
    };
    let mut expected = both.to_vec();
    expected.sort_unstable();
    while sorted_hand(&host.client) != expected {
        until(&mut host.events, |e| matches!(e, Event::State { .. }).then_some(())).await?;
    }
    println!(
        "the guest showed its card to the host: the host sees rank {}",
        deck[0].1
    );
    let hide = Payload::Writes(Box::new(EntityWrites {
        hide: vec![guests_card],
        ..Default::default()
    }));
    apply(&guest.client, &mut guest.events, room, hide).await?;
    while hand(&host.client, room) != [both[1]] {
        until(&mut host.events, |e| matches!(e, Event::State { .. }).then_some(())).await?;
    }
    // The room's entities outlive their creator (and count against the room's own
    // entity limit): the host puts the rest of the deck away. The players' cards go
    // with them.
    let put_away = Payload::Writes(Box::new(EntityWrites {
        remove: deck[2..].iter().map(|&(id, _)| id).collect(),
        ..Default::default()
    }));
    apply(&host.client, &mut host.events, room, put_away).await?;
    host.client.close().await;
    guest.client.close().await;
    Ok(())
}
