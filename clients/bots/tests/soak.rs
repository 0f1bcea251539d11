//! Soak: the relay plus a few hundred bots with churn for 30 seconds over WebSocket,
//! then 60 bots with churn for 20 seconds over QUIC, in one process; a cluster of
//! two nodes, one killed mid-run; and bots whose room a game backend closes.
//!
//! Asserts every invariant the bots check (no desync, no input lost or applied twice,
//! no unexpected close, no client giving up) and that memory does not grow over the
//! run. The server and the bots share this process, so the memory figure covers both;
//! flat memory for both implies a flat server.

use std::time::Duration;

use tickrelay::config::Config;
use tickrelay_bots::{Scenario, run_scenario};
use tickrelay_client::Trust;
use tickrelay_testkit::cluster::TestCluster;
use tickrelay_testkit::{Transport, rss_bytes, start_config};

fn scenario(url: &str, cert: &str, room_type: &str, rooms: usize) -> Scenario {
    let transport = url.split(':').next().unwrap_or_default();
    Scenario {
        urls: vec![url.into()],
        node_loss_expected: false,
        refusals_expected: false,
        trust: Trust::CertPem(cert.into()),
        token: None,
        rooms,
        members: 20,
        room_type: room_type.into(),
        writes: room_type == "relay",
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

/// Bots whose room the game's backend closes (HTTP API) report it as a violation,
/// by reason, and stop playing: the inputs they sent after it are not counted lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_removed_from_their_room_say_so() {
    let server = tickrelay_testkit::start_with(|c| c.api.token = Some("backend".into())).await;
    let mut bots = scenario(&server.url(Transport::WebSocket), &server.cert_pem, "relay", 1);
    (bots.members, bots.churn_per_minute) = (3, 0.0);
    (bots.duration, bots.ramp_up) = (Duration::from_secs(4), Duration::from_millis(300));
    let run = tokio::spawn(run_scenario(bots));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let auth = "Authorization: Bearer backend\r\n";
    let (status, answer) = server
        .https_request("DELETE", "/rooms/soak-wss-relay-0?reason=over", auth, b"")
        .await;
    assert_eq!(status, 202, "{answer}");
    let report = run.await.unwrap();
    let closed = tickrelay::proto::ErrorCode::RoomClosed as i32;
    assert_eq!(report.removed, [(closed, 3)].into());
    assert_eq!(report.lost_inputs, 0);
    assert_eq!(
        report.violations(),
        ["3 bots removed from their room by the server {ROOM_CLOSED: 3}"]
    );
}

/// Bots whose joins are refused (their room is open as another type) count as never
/// joined however short the run: a refusal is an answer (only a join still waiting
/// at the end of a run is given the benefit of the doubt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_refused_their_room_count_as_never_joined_in_a_short_run() {
    let server = tickrelay_testkit::start_with(|c| {
        c.rooms.push(tickrelay::config::PrecreatedRoom {
            id: "soak-wss-relay-0".into(),
            room_type: "arena".into(),
            metadata: Default::default(),
        })
    })
    .await;
    let mut bots = scenario(&server.url(Transport::WebSocket), &server.cert_pem, "relay", 1);
    (bots.members, bots.churn_per_minute) = (3, 0.0);
    (bots.duration, bots.ramp_up) = (Duration::from_secs(3), Duration::from_secs(2));
    let report = run_scenario(bots).await;
    assert_eq!(report.never_joined, 3, "{}", report.table());
}

/// Two nodes of a cluster, 40 arena bots spread over both, one node killed mid-run:
/// every invariant holds (no desync, no input lost, no client giving up), the lost
/// node's connections and the joins refused while its leases lapse are counted
/// apart, and its rooms are restored on the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_soak_survives_a_node_killed() {
    let cluster = TestCluster::start();
    // Checkpoints every 100 ms at 30 Hz.
    let mut a = cluster
        .killable_node(|c| {
            c.cluster.checkpoint_ticks = 3;
            for t in c.room_types.values_mut() {
                t.tick_rate = 30;
            }
        })
        .await;
    let b = cluster
        .node_with(|c| {
            for t in c.room_types.values_mut() {
                t.tick_rate = 30;
            }
        })
        .await;
    let mut scenario = scenario(&a.server.url(Transport::WebSocket), &b.cert_pem, "arena", 4);
    scenario.urls.push(b.url(Transport::WebSocket));
    scenario.members = 10;
    scenario.room_prefix = "cluster".into();
    scenario.duration = Duration::from_secs(16);
    scenario.ramp_up = Duration::from_secs(2);
    scenario.churn_per_minute = 0.0;
    scenario.node_loss_expected = true;
    let run = tokio::spawn(run_scenario(scenario));
    // The kill, 7 s into the run: this sleep is the scenario.
    tokio::time::sleep(Duration::from_secs(7)).await;
    a.kill();
    let report = run.await.unwrap();
    println!("cluster soak, node a killed at 7 s:\n{}", report.table());
    // Inputs applied after a room's last checkpoint are lost with its node: at 10
    // inputs a second and a checkpoint every 100 ms, about one per bot at most.
    let violations: Vec<String> = (report.violations().into_iter())
        .filter(|v| !v.ends_with("inputs never acknowledged"))
        .collect();
    assert!(violations.is_empty(), "{violations:?}");
    assert!(report.lost_inputs <= report.bots, "{} inputs lost", report.lost_inputs);
    assert!(report.node_losses > 0, "bots on the killed node lost their connections");
    assert!(
        b.metric("tickrelay_rooms_restored_total") > 0,
        "a's rooms were restored on b"
    );
    assert!(
        b.metric("tickrelay_sessions_moved_total") > 0,
        "a's sessions continued on b"
    );
}
