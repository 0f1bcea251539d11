//! A UDP relay that delays every datagram, for measuring QUIC at a round trip longer
//! than loopback's (this machine's kernel has no `netem`). It listens on `LISTEN`,
//! opens one socket towards `TARGET` per client address (so the target sees one peer
//! per client, as it would across a network), and sends each datagram on after
//! `DELAY_MS` (one way: the round trip grows by twice that). Loopback only.
//!
//! ```text
//! cargo run --release --example udp_delay -- LISTEN TARGET DELAY_MS
//! cargo run --release --example udp_delay -- 127.0.0.1:7500 127.0.0.1:7443 20
//! ```
//! It runs until killed. Used by `bench/transport_cost.sh --rtt-ms`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep_until};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, delay_ms] = &args[..] else {
        eprintln!("usage: udp_delay LISTEN TARGET DELAY_MS (one-way delay, loopback addresses)");
        std::process::exit(2);
    };
    let (listen, target): (SocketAddr, SocketAddr) = (parse(listen), parse(target));
    for address in [listen, target] {
        if !address.ip().is_loopback() {
            eprintln!("udp_delay: {address} is not a loopback address");
            std::process::exit(2);
        }
    }
    let delay = Duration::from_millis(delay_ms.parse().expect("DELAY_MS: whole milliseconds"));
    let front = Arc::new(UdpSocket::bind(listen).await?);
    let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (len, client) = front.recv_from(&mut buffer).await?;
        let back = match backs.get(&client) {
            Some(back) => back.clone(),
            None => {
                let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
                back.connect(target).await?;
                tokio::spawn(answers(back.clone(), front.clone(), client, delay));
                backs.insert(client, back.clone());
                back
            }
        };
        let datagram = buffer[..len].to_vec();
        let due = Instant::now() + delay;
        tokio::spawn(async move {
            sleep_until(due).await;
            let _ = back.send(&datagram).await;
        });
    }
}

/// Sends what the target answers on `back` to `client`, `delay` later.
async fn answers(back: Arc<UdpSocket>, front: Arc<UdpSocket>, client: SocketAddr, delay: Duration) {
    let mut buffer = vec![0u8; 65_536];
    while let Ok(len) = back.recv(&mut buffer).await {
        let datagram = buffer[..len].to_vec();
        let (front, due) = (front.clone(), Instant::now() + delay);
        tokio::spawn(async move {
            sleep_until(due).await;
            let _ = front.send_to(&datagram, client).await;
        });
    }
}

fn parse(address: &str) -> SocketAddr {
    address.parse().unwrap_or_else(|e| {
        eprintln!("udp_delay: {address}: {e}");
        std::process::exit(2);
    })
}
