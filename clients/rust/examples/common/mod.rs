//! What the two-client examples (`host_migration`, `hidden_hands`) share: a host and
//! a guest joining a new relay room, waiting for an event, and for an input to be
//! applied.

use std::time::Duration;

use tickrelay_client::proto::{Joined, input::Payload};
use tickrelay_client::{Client, ClientConfig, Event, Trust};
use tokio::sync::mpsc::Receiver;

pub type Error = Box<dyn std::error::Error>;

/// Where the relay is, and the certificate to trust.
#[derive(clap::Args)]
pub struct RelayArgs {
    /// The relay's WebSocket (or QUIC) URL.
    #[arg(long, default_value = "wss://127.0.0.1:7443/ws")]
    url: String,
    /// PEM file of the certificate to trust (the relay's development certificate).
    #[arg(long, default_value = "tickrelay-dev-cert.pem")]
    cert: String,
}

impl RelayArgs {
    /// A client's configuration for this relay.
    pub fn config(&self) -> ClientConfig {
        ClientConfig::new(&self.url, Trust::CertFile(self.cert.clone().into()))
    }
}

/// Waits for the first event `pick` takes; a refusal or a give-up ends the example.
pub async fn until<T>(events: &mut Receiver<Event>, mut pick: impl FnMut(&Event) -> Option<T>) -> Result<T, Error> {
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

/// Sends `input` and waits until the room applied it (a refusal comes as an error).
pub async fn apply(client: &Client, events: &mut Receiver<Event>, room: &str, input: Payload) -> Result<(), Error> {
    let seq = client.send_input(room, input);
    while client.with_mirror(room, |m| m.last_input_seq()) < seq {
        until(events, |e| matches!(e, Event::State { .. }).then_some(())).await?;
    }
    Ok(())
}

/// One member: its client, its events and what its join was answered.
pub struct Player {
    pub client: Client,
    pub events: Receiver<Event>,
    pub joined: Joined,
}

/// A host, whose join creates relay room `room` (its first owner), then a guest.
pub async fn host_and_guest(config: impl Fn() -> ClientConfig, room: &str) -> Result<(Player, Player), Error> {
    let join = async || -> Result<Player, Error> {
        let (client, mut events) = Client::connect(config())?;
        client.join(room, "relay");
        let joined = until(&mut events, |e| match e {
            Event::Joined(joined) => Some(joined.clone()),
            _ => None,
        })
        .await?;
        Ok(Player { client, events, joined })
    };
    let host = join().await?;
    let owner = host.joined.owner;
    if owner != host.joined.member_id {
        return Err(format!("{room} is owned by member {owner} already: name a new room with --room").into());
    }
    Ok((host, join().await?))
}
