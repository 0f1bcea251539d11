//! Soak: the relay plus a few hundred bots with churn for 30 seconds over WebSocket,
//! then 60 bots with churn for 20 seconds over QUIC, in one process.
//!
//! Asserts every invariant the bots check (no desync, no input lost or applied twice,
//! no unexpected close, no client giving up) and that memory does not grow over the
//! run. The server and the bots share this process, so the memory figure covers both;
//! flat memory for both implies a flat server.

use std::time::Duration;

use tickrelay::config::Config;
use tickrelay_bots::{Scenario, run_scenario};
use tickrelay_client::Trust;
use tickrelay_testkit::{Transport, rss_bytes, start_config};

fn scenario(url: &str, cert: &str, room_type: &str, rooms: usize) -> Scenario {
    let transport = url.split(':').next().unwrap_or_default();
    Scenario {
        url: url.into(),
        trust: Trust::CertPem(cert.into()),
        token: None,
        rooms,
        members: 20,
        room_type: room_type.into(),
        room_prefix: format!("soak-{transport}-{room_type}"),
        input_rate: 10.0,
        duration: Duration::from_secs(30),
        ramp_up: Duration::from_secs(3),
        warm_up: Duration::ZERO,
        // A fifth of the bots churn per minute: half resume, half are replaced.
        churn_per_minute: 0.2,
        churn_resume_share: 0.5,
        progress: None,
        worker: 0,
        workers: 1,
        verify_share: 1.0,
    }
}

/// Runs scenarios `(url, room type, rooms, seconds)` at once and checks every
/// invariant; returns the reconnects.
async fn soak(cert: &str, runs: &[(&str, &str, usize, u64)]) -> u64 {
    let runs: Vec<_> = runs
        .iter()
        .map(|&(url, room_type, rooms, secs)| {
            let mut scenario = scenario(url, cert, room_type, rooms);
            scenario.duration = Duration::from_secs(secs);
            (format!("{room_type} over {url}"), tokio::spawn(run_scenario(scenario)))
        })
        .collect();
    let mut reconnects = 0;
    for (name, run) in runs {
        let report = run.await.unwrap();
        println!("{name}:\n{}", report.table());
        assert!(report.violations().is_empty(), "{name}: {:?}", report.violations());
        assert!(report.frames > 0 && report.inputs_sent > 0, "{name} did play");
        reconnects += report.reconnects;
    }
    reconnects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_churn_keeps_every_invariant_and_flat_memory() {
    let server = start_config(Config::loopback(30)).await;
    let (wss, quic) = (server.url(Transport::WebSocket), server.url(Transport::Quic));
    // 200 arena bots and 100 relay bots over WebSocket (relay inputs detect double
    // application), with memory sampled 10 s in and at the end.
    let runs = [(wss.as_str(), "arena", 10, 30), (wss.as_str(), "relay", 5, 30)];
    // A sample at a point in the run's time: this sleep is the measurement.
    let sample = async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        rss_bytes()
    };
    let (mut reconnects, early) = tokio::join!(soak(&server.cert_pem, &runs), sample);
    let late = rss_bytes();
    // Then 60 bots over QUIC, alone: every QUIC connection shares the relay's one UDP
    // socket, read by one task, which here competes with the bots for the test's two
    // threads (a few hundred QUIC bots at once overflow the socket in this debug
    // build; release-build load runs are in BENCHMARKS.md).
    let runs = [(quic.as_str(), "arena", 2, 20), (quic.as_str(), "relay", 1, 20)];
    reconnects += soak(&server.cert_pem, &runs).await;
    server.shutdown.cancel();
    assert!(reconnects > 0, "churn happened");
    let growth = late.saturating_sub(early);
    println!("memory: {} MiB at 10 s, {} MiB at the end", early >> 20, late >> 20);
    assert!(growth < 48 << 20, "memory grew by {} MiB", growth >> 20);
}
