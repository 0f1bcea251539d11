//! Follows a room with the client library: joins, steers, and prints what the mirror
//! holds once a second, reconnecting by itself if the connection drops.
//!
//! ```sh
//! cargo run -p tickrelay-client --example follow -- wss://127.0.0.1:7443/ws tickrelay-dev-cert.pem 10
//! ```

use std::time::Duration;

use bytes::Bytes;
use tickrelay_client::{Client, ClientConfig, Event, Trust, proto};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "wss://127.0.0.1:7443/ws".into());
    let cert = args.next().unwrap_or_else(|| "tickrelay-dev-cert.pem".into());
    let seconds: u64 = args.next().map_or(Ok(10), |s| s.parse())?;

    let (client, mut events) = Client::connect(ClientConfig::new(url, Trust::CertFile(cert.into())))?;
    client.join("demo", "arena");
    let mut second = tokio::time::interval(Duration::from_secs(1));
    for elapsed in 0..=seconds {
        second.tick().await;
        // Drain what happened since the last second.
        while let Ok(event) = events.try_recv() {
            match event {
                Event::State { .. } => {}
                Event::GaveUp { reason, .. } => return Err(reason.into()),
                other => println!("{other:?}"),
            }
        }
        let angle = elapsed as f32;
        let intent = [(angle.cos() * 127.0) as i8 as u8, (angle.sin() * 127.0) as i8 as u8];
        client.send_input("demo", proto::input::Payload::Intent(Bytes::copy_from_slice(&intent)));
        let summary = client.with_mirror("demo", |m| (m.tick(), m.world().len(), m.checksums_verified()));
        println!(
            "t={elapsed}s (tick, entities, checksums ok) = {summary:?}, rtt = {:?}",
            client.rtt()
        );
    }
    client.close();
    Ok(())
}
