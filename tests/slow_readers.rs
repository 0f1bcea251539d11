//! Slow readers: clients that stop reading must not grow the server's memory. Alone in
//! its own test binary (so its own process) because it measures the process's
//! resident memory, which tests running beside it would add to.

use std::time::Duration;

use tickrelay_testkit::{TestClient, rss_bytes, start_with};

/// 100 clients join a busy room and stop reading. Their state frames are replaced,
/// not queued; they are closed as slow consumers; memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_do_not_grow_server_memory() {
    let server = start_with(|c| {
        c.session.slow_consumer_secs = 1.0;
        let arena = c.room_types.get_mut("arena").unwrap();
        arena.arena_npcs = 2_000; // about 25 KB of changes per tick, 60 ticks per second
        arena.max_members = 200;
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut c = TestClient::connect(&server).await;
        c.join("flood", "arena").await;
        stalled.push(c); // never read again
    }
    // Elapsed time is what this test is about (memory growth over a stretch of the
    // flood), so these sleeps stay: 1 s for the stalled connections' buffers to fill,
    // then the 3 s measured.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes();
    // Without superseding, 100 readers × 1.5 MB/s would queue 450 MB in 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    assert!(growth < 40 << 20, "memory grew by {} MiB", growth >> 20);
    server.wait_for_metric("tickrelay_closes_total{code=\"4501\"}", 1).await;
    assert!(server.metric("tickrelay_frames_superseded_total") > 0);
    drop(stalled);
}
