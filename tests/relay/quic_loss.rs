//! QUIC paths: under packet loss, a lossy UDP forwarder on loopback between a client
//! and the server drops a fixed share of packets in both directions (state
//! datagrams, stream packets, acknowledgements); the client's mirror must stay
//! correct through acknowledged-baseline deltas, with full snapshots rare and
//! counted. A path that stalls, and a client that moves to another address.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickrelay::proto::input;
use tickrelay::proto::server_message::Kind;
use tickrelay_proto::clock::unix_micros;
use tickrelay_testkit::quic::lossy_forwarder;
use tickrelay_testkit::{TestClient, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_stay_correct_under_five_percent_loss() {
    lossy_session(0.05, 7, 85).await;
}

/// Heavy loss: handshakes, full snapshots and acknowledgements get lost too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_stay_correct_under_twenty_five_percent_loss() {
    lossy_session(0.25, 11, 60).await;
}

/// Runs an arena member through the forwarder for 4 s; at least `min_applied_pct`
/// of the ticks must be applied.
async fn lossy_session(loss: f64, seed: u64, min_applied_pct: u64) {
    let server = start().await;
    let forwarder = lossy_forwarder(server.quic_addr, loss, seed).await;
    let mut c = TestClient::connect_quic_via(&server, forwarder.addr, "", "")
        .await
        .expect("a session through the forwarder");
    let joined = c.join("lossy", "arena").await;
    let tick_rate = u64::from(joined.tick_rate);
    // Keep the avatar moving so every tick changes state.
    c.input("lossy", input::Payload::Intent(Bytes::from_static(&[127, 64])))
        .await;
    c.frames_in("lossy", 1).await;
    let first_tick = c.frames["lossy"][0].tick;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        // Every applied frame was checked by the mirror (a desync fails the test),
        // including its checksum when it carried one.
        c.next().await;
    }
    let mirror = &c.mirrors["lossy"];
    assert!(mirror.is_synced());
    let applied = c.frames["lossy"].len() as u64;
    let last_tick = c.frames["lossy"].last().unwrap().tick;
    let ticks = last_tick - first_tick + 1;
    let counters = &forwarder.counters;
    let dropped = counters.down_dropped.load(Ordering::Relaxed);
    let forwarded = counters.down.load(Ordering::Relaxed);
    assert!(dropped > 0, "the forwarder dropped packets");
    let bytes_per_tick = counters.down_bytes.load(Ordering::Relaxed) / ticks;
    eprintln!(
        "{:.0} % loss: {ticks} ticks at {tick_rate} Hz; {} frames received, {applied} applied, {} full snapshots; \
         {} checksums verified; server->client packets {forwarded} forwarded, {dropped} dropped; \
         client->server {} forwarded, {} dropped; {bytes_per_tick} bytes per tick on the wire",
        loss * 100.0,
        c.frames_received,
        c.full_snapshots,
        mirror.checksums_verified(),
        counters.up.load(Ordering::Relaxed),
        counters.up_dropped.load(Ordering::Relaxed),
    );
    // Lost datagrams are not resent (the next delta covers them), so about the loss
    // share of ticks is missing, and the rest applied.
    assert!(
        applied * 100 >= ticks * min_applied_pct,
        "{applied} of {ticks} ticks applied"
    );
    assert!(mirror.checksums_verified() >= applied / 2);
    // Full snapshots are the exception: the join's, and one more each time a full
    // snapshot or its acknowledgement is lost.
    assert!(
        c.full_snapshots * 20 <= c.frames_received.max(20),
        "{} full snapshots in {} frames",
        c.full_snapshots,
        c.frames_received
    );
}

/// QUIC handshakes from a source that never gets the answers (a spoofed address) hold
/// no connection slot: the relay answers a first Initial with a Retry and admits only
/// an address that echoed it. With one connection allowed per address, an honest
/// client of the same address connects while the deaf one keeps trying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_from_a_source_that_never_answers_hold_no_slot() {
    let server = tickrelay_testkit::start_with(|c| c.connections.max_per_ip = 1).await;
    let forwarder = lossy_forwarder(server.quic_addr, 0.0, 5).await;
    forwarder.counters.deaf.store(true, Ordering::Relaxed);
    let (quic_addr, via) = (server.quic_addr, forwarder.addr);
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = tickrelay_testkit::quic::client_config(&server);
    let deaf = tokio::spawn(async move { endpoint.connect_with(config, via, "localhost").unwrap().await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while forwarder.counters.up.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "the deaf client's Initials were not sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let honest = TestClient::connect_quic_via(&server, quic_addr, "", "").await;
    assert!(honest.is_ok(), "the honest client was refused: {:?}", honest.err());
    assert!(!deaf.is_finished(), "the deaf client never completes its handshake");
    deaf.abort();
}

/// A path that stops acknowledging for 3 s (every packet from the client dropped)
/// fills the relay's congestion window, and state datagrams start to wait in quinn's
/// queue. Once the path recovers, the client gets fresh frames, not the stall's
/// backlog: the relay drops the datagrams that would wait behind others (counted as
/// superseded), so only what was in flight or first in the queue arrives late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_stalled_gets_fresh_frames_not_its_backlog() {
    let server = start().await;
    let forwarder = lossy_forwarder(server.quic_addr, 0.0, 3).await;
    let mut c = TestClient::connect_quic_via(&server, forwarder.addr, "", "")
        .await
        .expect("a session through the forwarder");
    c.join("stall", "arena").await;
    c.frames_in("stall", 5).await;
    let superseded_before = server.metric("tickrelay_frames_superseded_total");

    forwarder.counters.stalled.store(true, Ordering::Relaxed);
    let stall_ends = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::timeout_at(stall_ends, c.next()).await.is_ok() {}
    forwarder.counters.stalled.store(false, Ordering::Relaxed);
    let recovered_us = unix_micros();

    // Until 60 fresh frames came (the relay's next loss probe may come a second or
    // two after the path recovered, and with its acknowledgement its sending; a
    // loaded machine may take longer): frames made more than 250 ms before the path
    // recovered are the backlog.
    let (mut late, mut fresh) = (0, 0);
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while fresh < 60 {
        let Ok(message) = tokio::time::timeout_at(until, c.next()).await else {
            panic!("{fresh} fresh frames in 10 s");
        };
        if let Some(Kind::State(frame)) = message.kind {
            if frame.server_time_us + 250_000 < recovered_us {
                late += 1;
            } else {
                fresh += 1;
            }
        }
    }
    let superseded = server.metric("tickrelay_frames_superseded_total") - superseded_before;
    eprintln!("after the stall: {late} late frames, {fresh} fresh; {superseded} dropped as superseded");
    // At 60 Hz the stall's 180 ticks would otherwise arrive late, the most of them.
    assert!(late <= 12, "{late} frames of the stall's backlog arrived after it");
    assert!(superseded >= 60, "{superseded} datagrams dropped");
    assert!(c.mirrors["stall"].is_synced());
}

/// A client whose address changes (a phone moving from Wi-Fi to its mobile network:
/// here its socket rebound to another loopback address) keeps its session: the
/// relay follows the connection to the new address, frames keep coming and its
/// inputs are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_to_another_address_keeps_its_session() {
    let server = start().await;
    let mut c = TestClient::connect_quic(&server, "", "").await.expect("a QUIC session");
    c.join("moving", "arena").await;
    let seq = c
        .input("moving", input::Payload::Intent(Bytes::from_static(&[127, 64])))
        .await;
    c.applied("moving", seq).await;
    let tickrelay_testkit::Conn::Quic(quic) = &c.conn else {
        unreachable!("a QUIC session")
    };
    let before = quic.conn.stable_id();
    let moved = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let new_address = moved.local_addr().unwrap();
    quic.endpoint.rebind(moved).unwrap();
    let seq = c
        .input("moving", input::Payload::Intent(Bytes::from_static(&[0, 64])))
        .await;
    c.applied("moving", seq).await;
    c.frames_in("moving", 20).await;
    let tickrelay_testkit::Conn::Quic(quic) = &c.conn else {
        unreachable!("a QUIC session")
    };
    assert_eq!(quic.conn.stable_id(), before, "the same connection");
    assert_eq!(quic.endpoint.local_addr().unwrap(), new_address);
    assert!(c.mirrors["moving"].is_synced());
}
