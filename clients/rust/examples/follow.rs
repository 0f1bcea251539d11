//! Follows a room with the client library: joins, steers, and prints what the mirror
//! holds once a second, reconnecting by itself if the connection drops.
//!
//! ```sh
//! cargo run --release -p tickrelay-client --example follow -- --url wss://127.0.0.1:7443/ws --cert tickrelay-dev-cert.pem
//! ```
//!
//! The same options as the server's `watch` example: `--token JWT` (or
//! `TICKRELAY_TOKEN`) for a relay that requires one; `--help` for the rest.

use std::time::Duration;

use bytes::Bytes;
use tickrelay_client::{Client, ClientConfig, Event, Trust, proto};

/// Follow an arena room with the client library: join, steer, print the mirror once a
/// second.
#[derive(clap::Parser)]
struct Args {
    /// The relay's WebSocket (or QUIC) URL; given again, other nodes of the same
    /// cluster to try when it cannot be reached (`ClientConfig::fallback_urls`).
    #[arg(long, default_value = "wss://127.0.0.1:7443/ws")]
    url: Vec<String>,
    /// PEM file of the certificate to trust (the relay's development certificate).
    #[arg(long, default_value = "tickrelay-dev-cert.pem")]
    cert: String,
    /// JWT for a relay with `--auth jwt` (for example from `tickrelay token`); also read
    /// from TICKRELAY_TOKEN.
    #[arg(long, env = "TICKRELAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The room to join (an arena room; created if it does not exist).
    #[arg(long, default_value = "demo")]
    room: String,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args {
        url,
        cert,
        token,
        room,
        seconds,
    } = clap::Parser::parse();
    let mut urls = url.into_iter();
    let first = urls.next().expect("clap gives the default");
    let mut config = ClientConfig::new(first, Trust::CertFile(cert.into()));
    config.fallback_urls = urls.collect();
    config.token = token;
    let (client, mut events) = match Client::connect(config) {
        Ok(connected) => connected,
        Err(e @ tickrelay_client::ClientError::Trust(_)) => {
            eprintln!("{e} (run this where the relay runs, which writes it there, or pass --cert PATH)");
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    };
    client.join(&room, "arena");
    let mut second = tokio::time::interval(Duration::from_secs(1));
    for elapsed in 0..=seconds {
        second.tick().await;
        // Drain what happened since the last second.
        while let Ok(event) = events.try_recv() {
            match event {
                Event::State { .. } => {}
                Event::GaveUp { reason, .. } => return Err(reason.into()),
                other => println!("{}", describe(&other)),
            }
        }
        let angle = elapsed as f32;
        let intent = [(angle.cos() * 127.0) as i8 as u8, (angle.sin() * 127.0) as i8 as u8];
        client.send_input(&room, proto::input::Payload::Intent(Bytes::copy_from_slice(&intent)));
        let summary = client.with_mirror(&room, |m| (m.tick(), m.world().len(), m.checksums_verified()));
        println!(
            "t={elapsed}s (tick, entities, checksums ok) = {summary:?}, rtt = {:?}",
            client.rtt()
        );
    }
    client.close().await;
    Ok(())
}

/// One line for an event: a room's messages in words, the client's own (short) as Rust
/// prints them.
fn describe(event: &Event) -> String {
    let code = |code: i32| proto::ErrorCode::try_from(code).map_or("UNKNOWN", |c| c.as_str_name());
    match event {
        Event::Joined(j) => format!(
            "joined {} ({}, {} Hz): member {}, {} members, owner {}",
            j.room,
            j.room_type,
            j.tick_rate,
            j.member_id,
            j.members.len(),
            j.owner
        ),
        Event::Left(l) => format!("left {}: {} {}", l.room, code(l.reason), l.message),
        Event::Error(e) => format!("error in {}: {} {}", e.room, code(e.code), e.message),
        other => format!("{other:?}"),
    }
}
