//! Soak: the relay plus a few hundred bots with churn for 30 seconds, in one process.
//!
//! Asserts every invariant the bots check (no desync, no input lost or applied twice,
//! no unexpected close, no client giving up) and that memory does not grow over the
//! run. The server and the bots share this process, so the memory figure covers both;
//! flat memory for both implies a flat server.

use std::time::Duration;

use tickrelay::config::Config;
use tickrelay::server::Server;
use tickrelay_bots::{Scenario, run_scenario};
use tickrelay_client::Trust;
use tokio_util::sync::CancellationToken;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

async fn relay() -> (String, String, CancellationToken) {
    let config = Config::loopback(30);
    let server = Server::bind(config).await.unwrap();
    let url = format!("wss://localhost:{}/ws", server.local_addr().port());
    let cert = server.dev_certificate().unwrap().to_string();
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(shutdown.clone(), Duration::from_secs(5)));
    (url, cert, shutdown)
}

fn scenario(url: &str, cert: &str, room_type: &str, rooms: usize) -> Scenario {
    Scenario {
        url: url.into(),
        trust: Trust::CertPem(cert.into()),
        token: None,
        rooms,
        members: 20,
        room_type: room_type.into(),
        room_prefix: format!("soak-{room_type}"),
        input_rate: 10.0,
        duration: Duration::from_secs(30),
        ramp_up: Duration::from_secs(3),
        // A fifth of the bots churn per minute: half resume, half are replaced.
        churn_per_minute: 0.2,
        churn_resume_share: 0.5,
        progress: None,
        worker: 0,
        workers: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_churn_keeps_every_invariant_and_flat_memory() {
    let (url, cert, shutdown) = relay().await;
    // 200 arena bots and 100 relay bots (relay inputs detect double application).
    let arena = tokio::spawn(run_scenario(scenario(&url, &cert, "arena", 10)));
    let relay = tokio::spawn(run_scenario(scenario(&url, &cert, "relay", 5)));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let early = rss_bytes();
    let arena = arena.await.unwrap();
    let relay = relay.await.unwrap();
    let late = rss_bytes();
    shutdown.cancel();
    for (name, report) in [("arena", &arena), ("relay", &relay)] {
        println!("{name}:\n{}", report.table());
        assert!(report.violations().is_empty(), "{name}: {:?}", report.violations());
        assert!(report.frames > 0 && report.inputs_sent > 0, "{name} did play");
    }
    assert!(arena.reconnects + relay.reconnects > 0, "churn happened");
    let growth = late.saturating_sub(early);
    println!("memory: {} MiB at 10 s, {} MiB at the end", early >> 20, late >> 20);
    assert!(growth < 48 << 20, "memory grew by {} MiB", growth >> 20);
}
