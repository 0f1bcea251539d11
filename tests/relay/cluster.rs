//! Cluster mode. The room directory (`tickrelay::cluster`): the same checks on the
//! memory directory (manual clock) and on a real `redis-server` (real time, short
//! leases), and a claim race between nodes on Redis. Then relay nodes sharing one
//! Redis: redirects, listings across nodes, racing joins, a node stopping, Redis lost
//! and back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tickrelay::cluster::{
    Claim, Directory, MemoryDirectory, RedisAddress, RedisDirectory, RoomEntry, SessionTake, SessionsKept,
};
use tickrelay::engine::listing::Metadata;
use tickrelay::proto::{self, ErrorCode, server_message::Kind};
use tickrelay_testkit::cluster::{LEASE, TestCluster, jwt_replacing, user_token};
use tickrelay_testkit::directory::{self, entry, listed, node};
use tickrelay_testkit::redis::RedisServer;
use tickrelay_testkit::{TestClient, TestServer, Transport, eventually, many_searches};

/// Leases a test waits out (renewed seldom or never): short, so the wait is short.
const REDIS_LEASE: Duration = Duration::from_millis(600);
/// Leases a test renews and needs kept meanwhile: renewed every quarter of one, a
/// renewal may come 1.5 s late (a loaded machine) before a live lease lapses, where
/// one of `REDIS_LEASE` lapsed 450 ms late. Waiting one out takes that much longer.
const RENEWED_LEASE: Duration = Duration::from_secs(2);
const MEMORY_LEASE: Duration = Duration::from_secs(3);

/// Nodes "a" and "b" of one memory directory on a manual clock, and its `elapse`.
fn memory() -> (MemoryDirectory, MemoryDirectory, impl AsyncFn(Duration)) {
    let start = Instant::now();
    let elapsed_ms = Arc::new(AtomicU64::new(0));
    let reading = elapsed_ms.clone();
    let clock = Arc::new(move || start + Duration::from_millis(reading.load(Ordering::Relaxed)));
    let a = MemoryDirectory::new(node("a"), MEMORY_LEASE, clock);
    let b = a.handle(node("b"));
    let elapse = async move |by: Duration| {
        elapsed_ms.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    };
    (a, b, elapse)
}

async fn redis_node(redis: &RedisServer, id: &str) -> RedisDirectory {
    redis_node_with(redis, id, REDIS_LEASE).await
}

async fn redis_node_with(redis: &RedisServer, id: &str, lease: Duration) -> RedisDirectory {
    redis_node_under(redis, id, lease, "test:").await
}

async fn redis_node_under(redis: &RedisServer, id: &str, lease: Duration, prefix: &str) -> RedisDirectory {
    RedisDirectory::connect(&RedisAddress::new(redis.url()), node(id), lease, prefix)
        .await
        .unwrap()
}

/// A plain connection to the test Redis, for what a test does behind the nodes' backs.
async fn raw_connection(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Winds the node-start counter under `prefix` to where the next node start draws
/// `number` (unless it is held or in use).
async fn next_start_draws(redis: &mut redis::aio::MultiplexedConnection, prefix: &str, number: u64) {
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}node-starts"))
        .arg(number - 1)
        .query_async(redis)
        .await
        .unwrap();
}

/// Nodes "a" and "b" on a fresh Redis, with leases of `REDIS_LEASE`; real time passes.
async fn redis() -> (RedisServer, RedisDirectory, RedisDirectory) {
    redis_with(REDIS_LEASE).await
}

/// The same with leases of `lease`.
async fn redis_with(lease: Duration) -> (RedisServer, RedisDirectory, RedisDirectory) {
    let server = RedisServer::start();
    let a = redis_node_with(&server, "a", lease).await;
    let b = redis_node_with(&server, "b", lease).await;
    (server, a, b)
}

#[tokio::test]
async fn memory_a_room_has_one_owner() {
    let (a, b, _) = memory();
    directory::a_room_has_one_owner(&a, &b).await;
}

#[tokio::test]
async fn memory_leases_lapse_unless_renewed() {
    let (a, b, elapse) = memory();
    directory::leases_lapse_unless_renewed(&a, &b, MEMORY_LEASE, elapse).await;
}

#[tokio::test]
async fn memory_listings_page_and_expire() {
    let (a, b, elapse) = memory();
    directory::listings_page_and_expire(&a, &b, MEMORY_LEASE, elapse).await;
}

#[tokio::test]
async fn redis_a_room_has_one_owner() {
    // (No lease is waited out: one that lasts whatever a loaded machine takes.)
    let (_redis, a, b) = redis_with(RENEWED_LEASE).await;
    directory::a_room_has_one_owner(&a, &b).await;
}

#[tokio::test]
async fn redis_leases_lapse_unless_renewed() {
    let (_redis, a, b) = redis_with(RENEWED_LEASE).await;
    directory::leases_lapse_unless_renewed(&a, &b, RENEWED_LEASE, async |d| tokio::time::sleep(d).await).await;
}

#[tokio::test]
async fn redis_listings_page_and_expire() {
    let (_redis, a, b) = redis_with(RENEWED_LEASE).await;
    directory::listings_page_and_expire(&a, &b, RENEWED_LEASE, async |d| tokio::time::sleep(d).await).await;
}

#[tokio::test]
async fn memory_open_rooms_are_the_fullest_open_ones() {
    let (a, b, elapse) = memory();
    directory::open_rooms_are_the_fullest_open_ones(&a, &b, MEMORY_LEASE, elapse).await;
}

#[tokio::test]
async fn redis_open_rooms_are_the_fullest_open_ones() {
    let (_redis, a, b) = redis_with(RENEWED_LEASE).await;
    let elapse = async |d| tokio::time::sleep(d).await;
    directory::open_rooms_are_the_fullest_open_ones(&a, &b, RENEWED_LEASE, elapse).await;
}

#[tokio::test]
async fn memory_node_loads_follow_renewals() {
    let (a, b, elapse) = memory();
    directory::node_loads_follow_renewals(&a, &b, MEMORY_LEASE, elapse).await;
}

#[tokio::test]
async fn redis_node_loads_follow_renewals() {
    let (_redis, a, b) = redis_with(RENEWED_LEASE).await;
    let elapse = async |d| tokio::time::sleep(d).await;
    directory::node_loads_follow_renewals(&a, &b, RENEWED_LEASE, elapse).await;
    // A stopping node withdraws its load while its lease still runs: a placement
    // counted on it then does not bring it back.
    a.withdraw_load(&[]).await.unwrap();
    b.count_placement("a").await.unwrap();
    assert_eq!(b.node_loads().await.unwrap(), []);
}

/// A stopping node's rooms leave the quick joins' open sets as it withdraws, and
/// its renewals until it releases them (they keep its rooms' leases) do not put them
/// back: no quick join is sent to a room about to move.
#[tokio::test]
async fn a_withdrawn_nodes_rooms_are_not_open_to_quick_joins() {
    let (_redis, a, b) = redis_with(RENEWED_LEASE).await;
    let rooms = [entry("one", 1), entry("two", 1)];
    for room in &rooms {
        assert_eq!(a.claim(room).await.unwrap(), Claim::Ours);
    }
    a.renew(&rooms).await.unwrap();
    let open = async || {
        let open = b.open_rooms(&rooms[0].room_type, 10).await.unwrap();
        open.into_iter().map(|r| r.room).collect::<Vec<_>>()
    };
    assert_eq!(open().await.len(), 2);
    a.withdraw_load(&rooms[..1]).await.unwrap();
    assert_eq!(open().await, ["two"], "one left as a withdrew");
    assert_eq!(a.renew_held(&rooms).await.unwrap(), Vec::<String>::new());
    assert_eq!(open().await, Vec::<String>::new(), "and its renewals list none");
    assert_eq!(b.locate("two").await.unwrap().as_deref(), Some("a"), "still held");
}

/// The rooms of a node that died leave their ids in the indexes (`rooms`, `open:`)
/// until a listing or a quick join meets them; a sweep forgets them, and only them,
/// and one node sweeps per period.
#[tokio::test]
async fn a_sweep_forgets_the_ids_of_rooms_whose_node_died() {
    let (server, a, b) = redis().await;
    let c = redis_node_with(&server, "c", Duration::from_secs(30)).await;
    // More than one `ZSCAN` round trip's worth, and in the set of the entry mode=ctf
    // more than one sweep script looks at; ten in a small entry set each too.
    for n in 0..2_100 {
        let mut room = listed(&format!("gone-{n:04}"), 1, "ctf", false);
        if n < 10 {
            room.listing.metadata.insert("map".into(), format!("map-{n}"));
        }
        assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    }
    assert_eq!(c.claim(&entry("kept", 1)).await.unwrap(), Claim::Ours);
    tokio::time::sleep(2 * REDIS_LEASE).await; // a's leases lapse: a "died"
    let mut redis = raw_connection(&server).await;
    let mut read = async |command: &str, key: &str| -> Vec<String> {
        let mut command = redis::cmd(command);
        command.arg(key);
        if key.contains("open:") || key.ends_with("rooms") || key.contains("open-entry:") {
            command.arg(0).arg(-1);
        }
        command.query_async(&mut redis).await.unwrap()
    };
    assert_eq!(
        read("ZRANGE", "test:rooms").await.len(),
        2_101,
        "the dead node's ids are still listed"
    );
    assert_eq!(read("ZRANGE", "test:open:arena").await.len(), 2_101);
    assert_eq!(
        read("SMEMBERS", "test:open-entries:arena").await.len(),
        11,
        "mode=ctf, ten maps"
    );

    let period = Duration::from_secs(60);
    assert_eq!(b.sweep(&["arena", "lobby"], period).await.unwrap(), 3 * 2_100 + 10);
    assert_eq!(read("ZRANGE", "test:rooms").await, ["kept"]);
    assert_eq!(read("ZRANGE", "test:open:arena").await, ["kept"]);
    assert_eq!(read("SMEMBERS", "test:open-entries:arena").await, Vec::<String>::new());
    // Within the period another node does not sweep again.
    assert_eq!(a.claim(&entry("gone-again", 1)).await.unwrap(), Claim::Ours);
    tokio::time::sleep(2 * REDIS_LEASE).await;
    assert_eq!(c.sweep(&["arena"], period).await.unwrap(), 0);
    assert_eq!(read("ZRANGE", "test:rooms").await, ["gone-again", "kept"]);
}

/// A room's entry sets follow its metadata: one whose metadata changes again and
/// again is in its current entries' sets only, and the registry of entry sets the
/// sweep reads names only sets that hold a room (so churning metadata grows nothing).
#[tokio::test]
async fn entry_sets_hold_open_rooms_under_their_current_metadata_only() {
    let (server, a, b) = redis().await;
    let mut redis = raw_connection(&server).await;
    let mut registry = async || -> usize {
        redis::cmd("SCARD")
            .arg("test:open-entries:arena")
            .query_async(&mut redis)
            .await
            .unwrap()
    };
    let mut room = listed("churned", 1, "mode-0", false);
    room.listing.metadata.insert("map".into(), "dust".into());
    assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    for n in 1..50 {
        room.listing.metadata.insert("mode".into(), format!("mode-{n}"));
        a.renew(std::slice::from_ref(&room)).await.unwrap();
    }
    assert_eq!(registry().await, 2, "mode-49 and map=dust");
    let only = |mode: &str| -> Metadata { [("mode".to_string(), mode.to_string())].into() };
    assert_eq!(
        b.open_room_ids("arena", &only("mode-49"), 10).await.unwrap(),
        ["churned"]
    );
    assert!(b.open_room_ids("arena", &only("mode-48"), 10).await.unwrap().is_empty());
    a.release("churned").await.unwrap();
    assert_eq!(registry().await, 0, "released: no entry set left");
}

/// Redis stalls past a lease (every lease lapses, the nodes' too) while a room
/// with a checkpoint runs on a: a claim through b as Redis comes back does not take
/// it (the renewals have not settled), a takes it back at its next renewal, and then
/// b is told a holds it. Had a died, b takes the room a lease after the renewals
/// resumed.
#[tokio::test]
async fn a_redis_stall_does_not_hand_a_live_room_to_another_node() {
    // (b's renewals settle the directory only without a gap of half a lease.)
    let (server, a, b) = redis_with(RENEWED_LEASE).await;
    let room = entry("world", 1);
    assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    a.renew(std::slice::from_ref(&room)).await.unwrap();
    assert_eq!(
        a.save_checkpoints(&[("world".into(), vec![1])], Duration::from_secs(60))
            .await
            .unwrap(),
        1
    );

    server.freeze();
    tokio::time::sleep(RENEWED_LEASE + RENEWED_LEASE / 4).await;
    server.thaw();
    assert_eq!(b.claim(&room).await.unwrap(), Claim::Settling, "b first");
    assert_eq!(a.renew(std::slice::from_ref(&room)).await.unwrap(), ["world"], "lapsed");
    assert_eq!(a.retake(&room).await.unwrap(), Claim::Ours);
    assert!(matches!(b.claim(&room).await.unwrap(), Claim::Theirs { node, .. } if node == "a"));

    // a dies: once renewals (b's) have gone on for a lease, b takes the room.
    server.freeze();
    tokio::time::sleep(RENEWED_LEASE + RENEWED_LEASE / 4).await;
    server.thaw();
    assert_eq!(b.claim(&room).await.unwrap(), Claim::Settling);
    let settled = renew_until_ours(&b, &room).await;
    // (Redis's clock counts whole milliseconds.)
    let lease = RENEWED_LEASE - Duration::from_millis(10);
    assert!(settled >= lease, "taken {settled:?} after renewals resumed");
}

/// Room "world" claimed by `node`, with a checkpoint (`[1]`, kept a minute).
async fn world_with_checkpoint(node: &RedisDirectory) -> tickrelay::cluster::RoomEntry {
    let room = entry("world", 1);
    assert_eq!(node.claim(&room).await.unwrap(), Claim::Ours);
    node.save_checkpoints(&[("world".into(), vec![1])], Duration::from_secs(60))
        .await
        .unwrap();
    room
}

/// Renews `node`'s (empty) lease every 50 ms for `span`: the renewals of a node that
/// stays in touch with Redis, which settle the directory (see `Claim::Settling`: a
/// gap of half the node's lease between two unsettles it, so the node's lease should
/// be `RENEWED_LEASE`, which leaves a renewal 950 ms to be late).
async fn keep_renewing(node: &RedisDirectory, span: Duration) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        node.renew(&[]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Renews `node`'s (empty) lease every 50 ms, as [`keep_renewing`] does, until its
/// claim of `room` is answered `Ours` (a loaded machine's late renewal may unsettle
/// the directory for one more lease); returns how long that took.
async fn renew_until_ours(node: &RedisDirectory, room: &tickrelay::cluster::RoomEntry) -> Duration {
    let started = Instant::now();
    loop {
        node.renew(&[]).await.unwrap();
        match node.claim(room).await.unwrap() {
            Claim::Ours => return started.elapsed(),
            other => assert!(
                started.elapsed() < 5 * RENEWED_LEASE,
                "still {other:?} after {:?}",
                started.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node cut off from Redis past its lease, whose room another node took, ran and
/// handed off meanwhile: coming back, it cannot take the room back (nobody holds it,
/// but its copy is older than the checkpoint there), nor overwrite or delete that
/// checkpoint; its copy must close.
#[tokio::test]
async fn a_node_cut_off_does_not_take_back_a_room_claimed_since() {
    // a's lease is waited out; b's renewals must keep the directory settled.
    let server = RedisServer::start();
    let a = redis_node(&server, "a").await;
    let b = redis_node_with(&server, "b", RENEWED_LEASE).await;
    let room = entry("world", 1);
    let ttl = Duration::from_secs(60);
    assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    assert_eq!(a.save_checkpoints(&[("world".into(), vec![1])], ttl).await.unwrap(), 1);
    // a is cut off; b renews on, and takes the room once its lease lapsed.
    renew_until_ours(&b, &room).await;
    assert_eq!(b.save_checkpoints(&[("world".into(), vec![2])], ttl).await.unwrap(), 1);
    b.release("world").await.unwrap();

    assert_eq!(a.renew(std::slice::from_ref(&room)).await.unwrap(), ["world"], "lapsed");
    assert_eq!(a.retake(&room).await.unwrap(), Claim::Superseded);
    assert_eq!(a.locate("world").await.unwrap(), None, "not taken");
    assert_eq!(a.save_checkpoints(&[("world".into(), vec![3])], ttl).await.unwrap(), 0);
    a.close("world").await.unwrap();
    assert_eq!(
        a.load_checkpoint("world").await.unwrap(),
        Some(vec![2]),
        "b's checkpoint stays"
    );
    // Claimed afresh (as a join of the closed room would), it is a's again.
    assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    assert_eq!(a.save_checkpoints(&[("world".into(), vec![4])], ttl).await.unwrap(), 1);
}

/// A node whose room's lease lapsed takes it back under its own claim when Redis
/// lost the later claim numbers it had written (a failover to a replica that lagged,
/// a restart from an older snapshot): its number is not below the one Redis holds.
#[tokio::test]
async fn a_room_is_taken_back_when_redis_holds_an_older_claim_number() {
    let (server, a, _b) = redis().await;
    let room = entry("world", 1);
    assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    let mut redis = raw_connection(&server).await;
    let number: u64 = redis::cmd("GET")
        .arg("test:claim:world")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("test:claim:world")
        .arg(999) // (fewer digits: a comparison of strings would find it larger)
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::sleep(2 * REDIS_LEASE).await;
    assert_eq!(a.renew(std::slice::from_ref(&room)).await.unwrap(), ["world"], "lapsed");
    assert_eq!(a.retake(&room).await.unwrap(), Claim::Ours);
    let now: u64 = redis::cmd("GET")
        .arg("test:claim:world")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(now, number, "its own number again");
}

/// A node cut off from Redis for longer than a checkpoint's time to live still knows
/// its claims of the rooms it runs: it does not take a room back over a later claim,
/// and the close of a room nobody claimed since takes the room's checkpoint with it.
#[tokio::test]
async fn a_node_cut_off_past_the_checkpoint_ttl_keeps_its_claim_numbers() {
    // a's lease is waited out; b's renewals must keep the directory settled.
    let server = RedisServer::start();
    let b = redis_node_with(&server, "b", RENEWED_LEASE).await;
    let ttl = Duration::from_millis(700);
    let a = redis_node(&server, "a").await.with_checkpoint_ttl(ttl);
    let rooms = [entry("world", 1), entry("own", 1)];
    for room in &rooms {
        assert_eq!(a.claim(room).await.unwrap(), Claim::Ours);
    }
    let checkpoints = [("world".to_string(), vec![1]), ("own".to_string(), vec![1])];
    a.save_checkpoints(&checkpoints, Duration::from_secs(60)).await.unwrap();
    keep_renewing(&b, 2 * ttl).await;
    assert_eq!(b.claim(&rooms[0]).await.unwrap(), Claim::Ours);
    b.release("world").await.unwrap();
    assert_eq!(a.renew(&rooms).await.unwrap(), ["world", "own"], "lapsed");
    assert_eq!(a.retake(&rooms[0]).await.unwrap(), Claim::Superseded);
    a.close("own").await.unwrap();
    assert!(
        !a.has_checkpoint("own").await.unwrap(),
        "its own claim's checkpoint went"
    );
}

/// A room released and then closed (a join's claim given back as the room closed)
/// takes its checkpoint with it: the next room of its id starts empty.
#[tokio::test]
async fn a_room_released_then_closed_leaves_no_checkpoint() {
    let (_server, a, _b) = redis().await;
    world_with_checkpoint(&a).await;
    a.release("world").await.unwrap();
    a.close("world").await.unwrap();
    assert!(!a.has_checkpoint("world").await.unwrap());
}

/// Joins of one new room racing on one node (its players arriving together) claim it
/// for that node alike.
#[tokio::test]
async fn claims_racing_on_one_node_are_all_its_own() {
    let (_server, a, _b) = redis().await;
    let room = entry("world", 1);
    let claims = futures_util::future::join_all((0..8).map(|_| a.claim(&room))).await;
    assert!(claims.iter().all(|c| c == &Ok(Claim::Ours)), "{claims:?}");
}

/// Two starts of one node id (the first cut off from Redis past its lease, the
/// second started meanwhile) own their claims apart: the second's claim is not
/// the first's to renew, checkpoint or release.
#[tokio::test]
async fn a_second_start_of_a_node_id_owns_its_claims_alone() {
    let server = RedisServer::start();
    let first = redis_node(&server, "a").await;
    let second = redis_node(&server, "a").await;
    let room = entry("world", 1);
    let ttl = Duration::from_secs(60);
    assert_eq!(first.claim(&room).await.unwrap(), Claim::Ours);
    assert_eq!(second.claim(&room).await.unwrap(), Claim::Superseded, "the first's");
    tokio::time::sleep(2 * REDIS_LEASE).await;
    assert_eq!(second.claim(&room).await.unwrap(), Claim::Ours);

    assert_eq!(first.renew(std::slice::from_ref(&room)).await.unwrap(), ["world"]);
    assert_eq!(first.retake(&room).await.unwrap(), Claim::Superseded);
    assert_eq!(
        first.save_checkpoints(&[("world".into(), vec![1])], ttl).await.unwrap(),
        0
    );
    first.release("world").await.unwrap();
    assert_eq!(
        second.renew(std::slice::from_ref(&room)).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        second
            .save_checkpoints(&[("world".into(), vec![2])], ttl)
            .await
            .unwrap(),
        1
    );
    first.close("world").await.unwrap();
    assert_eq!(
        second.load_checkpoint("world").await.unwrap(),
        Some(vec![2]),
        "the second's stays"
    );
    assert_eq!(second.locate("world").await.unwrap().as_deref(), Some("a"));
}

/// A room that closed while its lease had lapsed (Redis away longer than a lease)
/// takes its checkpoint with it when the close reaches Redis: the next room of its
/// id starts empty, not as the closed one was.
#[tokio::test]
async fn a_room_closed_after_its_lease_lapsed_leaves_no_checkpoint() {
    let (_server, a, b) = redis().await;
    let room = world_with_checkpoint(&a).await;
    tokio::time::sleep(2 * REDIS_LEASE).await;
    a.close("world").await.unwrap();
    assert!(!a.has_checkpoint("world").await.unwrap());
    // A room another node holds keeps its checkpoint when a late close comes.
    assert_eq!(b.claim(&room).await.unwrap(), Claim::Ours);
    b.save_checkpoints(&[("world".into(), vec![2])], Duration::from_secs(60))
        .await
        .unwrap();
    a.close("world").await.unwrap();
    assert!(b.has_checkpoint("world").await.unwrap());
}

/// A room held keeps its checkpoint past the checkpoint's time to live while its
/// node renews its lease (an empty room does not tick, nor write one); once nobody
/// renews it, it goes after that time.
#[tokio::test]
async fn a_held_rooms_checkpoint_lives_while_its_lease_is_renewed() {
    let server = RedisServer::start();
    // As long as the lease: renewed every quarter of it, both outlive a late renewal.
    let ttl = RENEWED_LEASE;
    let a = redis_node_with(&server, "a", RENEWED_LEASE)
        .await
        .with_checkpoint_ttl(ttl);
    let room = entry("world", 1);
    assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    a.save_checkpoints(&[("world".into(), vec![1])], ttl).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(ttl / 4).await;
        a.renew(std::slice::from_ref(&room)).await.unwrap();
    }
    assert!(a.has_checkpoint("world").await.unwrap(), "kept by the renewals");
    tokio::time::sleep(ttl + ttl / 4).await;
    assert!(!a.has_checkpoint("world").await.unwrap(), "gone without them");
}

/// A renewal of some of a node's rooms (one just restored, a stopping node's) keeps
/// their leases and leaves the node's load as its last whole renewal said.
#[tokio::test]
async fn a_partial_renewal_leaves_the_nodes_load_alone() {
    let server = RedisServer::start();
    let a = redis_node(&server, "a").await;
    let rooms = [entry("one", 5), entry("two", 7)];
    for room in &rooms {
        assert_eq!(a.claim(room).await.unwrap(), Claim::Ours);
    }
    a.renew(&rooms).await.unwrap();
    let load = async || {
        a.node_loads()
            .await
            .unwrap()
            .into_iter()
            .map(|(n, m)| (n.id, m))
            .collect::<Vec<_>>()
    };
    assert_eq!(load().await, [("a".to_string(), 12)]);
    assert_eq!(a.renew_held(&rooms[..1]).await.unwrap(), Vec::<String>::new());
    assert_eq!(load().await, [("a".to_string(), 12)], "not the one room's 5");
}

/// A claim by a node that found no checkpoint of the room is refused when, by the
/// time it reaches Redis, nobody holds the room and it has one (its node handed it
/// off meanwhile): the room must not open empty over it. Claimed again knowing of
/// it, it is taken; a room another node holds is answered as such either way.
#[tokio::test]
async fn a_claim_that_found_no_checkpoint_does_not_take_a_room_handed_off_since() {
    let (_server, a, b) = redis().await;
    let fresh = entry("fresh", 1);
    assert_eq!(
        b.claim_unless_checkpointed(&fresh, true, true, false).await.unwrap(),
        Some(Claim::Ours)
    );
    let room = world_with_checkpoint(&a).await;
    let held = b.claim_unless_checkpointed(&room, true, true, false).await.unwrap();
    assert!(
        matches!(&held, Some(Claim::Theirs { node, .. }) if node == "a"),
        "{held:?}"
    );
    a.release("world").await.unwrap();
    assert_eq!(
        b.claim_unless_checkpointed(&room, true, true, false).await.unwrap(),
        None
    );
    // Refused before the renewals' settling is looked at: a plain claim of the
    // room, which may wait for that, is refused all the same.
    assert_eq!(
        b.claim_unless_checkpointed(&room, false, true, false).await.unwrap(),
        None
    );
    assert_eq!(
        b.claim(&room).await.unwrap(),
        Claim::Settling,
        "no renewal recorded yet"
    );
    assert_eq!(b.locate("world").await.unwrap(), None, "not taken");
    assert_eq!(
        b.claim_unless_checkpointed(&room, true, false, false).await.unwrap(),
        Some(Claim::Ours)
    );
}

/// `call` until it succeeds (a connection broken by a Redis restart reconnects).
async fn retried<T>(call: impl AsyncFn() -> Result<T, tickrelay::cluster::DirectoryError>) -> T {
    for _ in 0..40 {
        if let Ok(value) = call().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Redis did not come back");
}

/// Redis restarts empty under live nodes: for a lease no room without a lease is
/// claimed through b (which renewed before, so it sees that Redis lost the
/// directory), a takes its room back at its next renewal, and then b is told a holds
/// it. A room nobody held opens once that lease has passed.
#[tokio::test]
async fn a_redis_restart_does_not_hand_a_live_room_to_another_node() {
    // (b's claims below must come within its lease of the first: longer than
    // `REDIS_LEASE`, which a few retries on a loaded machine could outlast.)
    let (mut server, a, b) = redis_with(RENEWED_LEASE).await;
    let room = entry("world", 1);
    assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    a.renew(std::slice::from_ref(&room)).await.unwrap();
    b.renew(&[]).await.unwrap();
    server.restart();
    // The first call of each node after the restart may meet its broken connection.
    let claim = async |node: &RedisDirectory, room: &tickrelay::cluster::RoomEntry| {
        retried(async || node.claim(room).await).await
    };
    assert_eq!(claim(&b, &room).await, Claim::Settling, "b first");
    let new = entry("new", 1);
    assert_eq!(claim(&b, &new).await, Claim::Settling, "nor a new room, for a lease");
    let renewed = retried(async || a.renew(std::slice::from_ref(&room)).await).await;
    assert_eq!(renewed, ["world"], "lapsed");
    assert_eq!(a.retake(&room).await.unwrap(), Claim::Ours);
    assert!(matches!(claim(&b, &room).await, Claim::Theirs { node, .. } if node == "a"));
    tokio::time::sleep(RENEWED_LEASE + RENEWED_LEASE / 4).await;
    assert_eq!(claim(&b, &new).await, Claim::Ours);
}

/// A renewal writes a room's listing only when it changed since the last one
/// written, and every tenth renewal all the same (metadata may be kilobytes a room).
#[tokio::test]
async fn renewals_write_a_listing_only_when_it_changed() {
    use tickrelay_testkit::directory::listed;
    let (server, a, _b) = redis().await;
    let mut redis = raw_connection(&server).await;
    let mut stored = async || -> Vec<u8> {
        let listing: Option<Vec<u8>> = (redis::cmd("HGET").arg("test:room:world").arg("listing"))
            .query_async(&mut redis)
            .await
            .unwrap();
        listing.unwrap_or_default()
    };
    let room = listed("world", 1, "ctf", false);
    assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    a.renew(std::slice::from_ref(&room)).await.unwrap();
    let written = stored().await;
    assert!(!written.is_empty());
    // Overwritten behind the node's back: an unchanged listing is not written again.
    let mut direct = raw_connection(&server).await;
    let _: () = (redis::cmd("HSET").arg("test:room:world").arg("listing").arg("stale"))
        .query_async(&mut direct)
        .await
        .unwrap();
    a.renew(std::slice::from_ref(&room)).await.unwrap();
    assert_eq!(stored().await, b"stale");
    let changed = listed("world", 2, "koth", false);
    a.renew(std::slice::from_ref(&changed)).await.unwrap();
    let written = stored().await;
    assert_ne!(written, b"stale");
    let _: () = (redis::cmd("HSET").arg("test:room:world").arg("listing").arg("stale"))
        .query_async(&mut direct)
        .await
        .unwrap();
    for _ in 0..9 {
        a.renew(std::slice::from_ref(&changed)).await.unwrap();
    }
    assert_eq!(stored().await, b"stale", "nine unchanged renewals");
    a.renew(std::slice::from_ref(&changed)).await.unwrap();
    assert_eq!(stored().await, written, "the tenth writes it");
}

/// The same checks on a Redis Cluster of three, each under a prefix of its own: every
/// key a script names or computes is under the prefix's hash tag, so in one slot (a
/// script touching two slots fails with `CROSSSLOT`), wherever the cluster put it.
#[tokio::test]
async fn redis_cluster_directory_checks() {
    let server = RedisServer::start_cluster();
    let pair = async |prefix: &str, lease: Duration| {
        let a = redis_node_under(&server, "a", lease, prefix).await;
        let b = redis_node_under(&server, "b", lease, prefix).await;
        assert_eq!(a.key_prefix(), format!("{{{prefix}}}"), "a hash tag");
        (a, b)
    };
    let elapse = async |d| tokio::time::sleep(d).await;
    let (a, b) = pair("owner:", RENEWED_LEASE).await;
    directory::a_room_has_one_owner(&a, &b).await;
    // At once (each has a prefix of its own): each spends most of its time waiting
    // for leases to lapse.
    let leases = pair("leases:", RENEWED_LEASE).await;
    let listings = pair("listings:", RENEWED_LEASE).await;
    let open = pair("open:", RENEWED_LEASE).await;
    let loads = pair("loads:", RENEWED_LEASE).await;
    tokio::join!(
        directory::leases_lapse_unless_renewed(&leases.0, &leases.1, RENEWED_LEASE, elapse),
        directory::listings_page_and_expire(&listings.0, &listings.1, RENEWED_LEASE, elapse),
        directory::open_rooms_are_the_fullest_open_ones(&open.0, &open.1, RENEWED_LEASE, elapse),
        directory::node_loads_follow_renewals(&loads.0, &loads.1, RENEWED_LEASE, elapse),
    );

    let (a, b) = pair("sweep:", REDIS_LEASE).await;
    let c = redis_node_under(&server, "c", Duration::from_secs(30), "sweep:").await;
    for room in ["gone-1", "gone-2", "gone-3"] {
        assert_eq!(a.claim(&entry(room, 1)).await.unwrap(), Claim::Ours);
    }
    assert_eq!(c.claim(&entry("kept", 1)).await.unwrap(), Claim::Ours);
    tokio::time::sleep(2 * REDIS_LEASE).await;
    let removed = b.sweep(&["arena"], Duration::from_secs(60)).await.unwrap();
    assert_eq!(removed, 6, "each id from `rooms` and from `open:arena`");
}

/// Three nodes claim the same 200 rooms at the same moment, each over its own
/// connection: every room ends with exactly one owner, and every node agrees which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_leave_exactly_one_owner() {
    let redis = RedisServer::start();
    // Leases far longer than the race: none lapses on a loaded machine.
    let lease = Duration::from_secs(30);
    let nodes = [
        redis_node_with(&redis, "a", lease).await,
        redis_node_with(&redis, "b", lease).await,
        redis_node_with(&redis, "c", lease).await,
    ];
    let rooms: Vec<String> = (0..200).map(|i| format!("race-{i}")).collect();
    let start = Arc::new(tokio::sync::Barrier::new(nodes.len()));
    let claims: Vec<_> = nodes
        .iter()
        .map(|directory| {
            let (directory, rooms, start) = (directory.clone(), rooms.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut outcomes = Vec::new();
                for room in &rooms {
                    outcomes.push(directory.claim(&entry(room, 0)).await.unwrap());
                }
                outcomes
            })
        })
        .collect();
    let mut outcomes: Vec<Vec<Claim>> = Vec::new();
    for claim in claims {
        outcomes.push(claim.await.unwrap());
    }
    for (i, room) in rooms.iter().enumerate() {
        let owners: Vec<&str> = ["a", "b", "c"]
            .into_iter()
            .zip(&outcomes)
            .filter(|(_, o)| o[i] == Claim::Ours)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(owners.len(), 1, "{room}: {owners:?}");
        for o in &outcomes {
            if let Claim::Theirs { node, url } = &o[i] {
                assert_eq!(node, owners[0], "{room}");
                assert_eq!(url.as_deref(), Some(&*format!("wss://{}.test/ws", owners[0])));
            }
        }
    }
    let (listed, more) = nodes[0].list("", 500).await.unwrap();
    assert!(!more);
    assert_eq!(listed.len(), 200);
}

/// Node numbers cycle after 8,191 starts, but one still held (its node running, or
/// its sessions still resumable) is skipped: two live nodes never share one.
#[tokio::test]
async fn a_node_number_in_use_is_not_given_again() {
    let (server, a, b) = redis().await;
    let hold = Duration::from_secs(30);
    let first = a.register_node(hold).await.unwrap();
    let mut connection = raw_connection(&server).await;
    next_start_draws(&mut connection, "test:", first).await;
    let second = b.register_node(hold).await.unwrap();
    assert_eq!(second, first % 8191 + 1, "the held number skipped");
    // Redis loses the hold (restarted without persistence, say): the node's next
    // renewal takes it again, and says so; one held by another node is an error.
    let held = format!("test:node-number:{first}");
    assert_eq!(a.keep_sessions(first, &[], hold).await.unwrap(), SessionsKept::Kept);
    let _: () = redis::cmd("DEL").arg(&held).query_async(&mut connection).await.unwrap();
    assert_eq!(a.keep_sessions(first, &[], hold).await.unwrap(), SessionsKept::Retaken);
    let holder: String = redis::cmd("GET").arg(&held).query_async(&mut connection).await.unwrap();
    assert_eq!(holder, "a");
    assert!(b.keep_sessions(first, &[], hold).await.is_err(), "a's number, not b's");
}

/// Taking a session of a dead node start keeps that start's number in use at once
/// (not only from the taking node's next renewal): a node starting in between does
/// not get it, though the dead start's own hold has lapsed.
#[tokio::test]
async fn a_taken_session_keeps_its_number_in_use() {
    let (server, a, b) = redis().await;
    let hold = Duration::from_secs(30);
    let dead = a.register_node(hold).await.unwrap();
    a.save_session(dead, "t", b"record", "ann", hold).await.unwrap();
    let mut connection = raw_connection(&server).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("test:node-number:{dead}"))
        .arg("test:node:a")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(matches!(
        b.take_session(dead, "t", None, hold).await.unwrap(),
        tickrelay::cluster::SessionTake::Taken(_)
    ));
    next_start_draws(&mut connection, "test:", dead).await;
    let c = redis_node(&server, "c").await;
    assert_ne!(c.register_node(hold).await.unwrap(), dead);
}

/// How long the session tests' node numbers and records are held.
const SESSION_HOLD: Duration = Duration::from_secs(30);

/// Registers `node` and records a session of user "ann" under `token`; returns the
/// node start's number.
async fn start_with_session(node: &RedisDirectory, token: &str) -> u64 {
    let number = node.register_node(SESSION_HOLD).await.unwrap();
    (node.save_session(number, token, b"record", "ann", SESSION_HOLD))
        .await
        .unwrap();
    number
}

/// A node restarted in place (stopped, then started again under its id) holds a new
/// number: the earlier start's sessions are taken by the node their clients reach,
/// not refused as live while the id's lease lives again; the running start's are.
#[tokio::test]
async fn a_restarted_nodes_earlier_sessions_are_taken_elsewhere() {
    let (server, a, b) = redis().await;
    let earlier = start_with_session(&a, "old").await;
    assert_eq!(
        b.take_session(earlier, "old", None, SESSION_HOLD).await.unwrap(),
        SessionTake::Live
    );
    a.release_all(&[]).await.unwrap();
    let again = redis_node(&server, "a").await;
    let later = start_with_session(&again, "new").await;
    again.renew(&[]).await.unwrap();
    assert_eq!(
        b.take_session(earlier, "old", None, SESSION_HOLD).await.unwrap(),
        SessionTake::Taken(b"record".to_vec())
    );
    assert_eq!(
        b.take_session(later, "new", None, SESSION_HOLD).await.unwrap(),
        SessionTake::Live
    );
}

/// A node start cut off from Redis past its lease, whose id a new start took, does
/// not name itself the id's running start when it renews again, nor renew or claim a
/// room from then on, nor delete the new start's keys when it stops: the new start's
/// sessions stay live.
#[tokio::test]
async fn a_start_cut_off_past_its_lease_leaves_its_ids_new_start_alone() {
    let (server, old, b) = redis().await;
    old.register_node(SESSION_HOLD).await.unwrap();
    let world = entry("world", 1);
    assert_eq!(old.claim(&world).await.unwrap(), Claim::Ours);
    let mut connection = raw_connection(&server).await;
    // Its lease lapses (cut off).
    let _: () = redis::cmd("DEL")
        .arg("test:node:a")
        .query_async(&mut connection)
        .await
        .unwrap();
    let new = redis_node(&server, "a").await;
    let number = start_with_session(&new, "t").await;
    new.renew(&[]).await.unwrap();
    assert_eq!(old.renew(std::slice::from_ref(&world)).await.unwrap(), ["world"]);
    assert_eq!(old.claim(&entry("lobby", 1)).await.unwrap(), Claim::Superseded);
    assert_eq!(new.claim(&entry("lobby", 1)).await.unwrap(), Claim::Ours);
    assert_eq!(
        b.take_session(number, "t", None, SESSION_HOLD).await.unwrap(),
        SessionTake::Live
    );
    // Nor does it take the id's keys or load with it when it stops.
    old.withdraw_load(&[]).await.unwrap();
    old.release_all(&[]).await.unwrap();
    assert_eq!(
        b.take_session(number, "t", None, SESSION_HOLD).await.unwrap(),
        SessionTake::Live
    );
    let loads = b.node_loads().await.unwrap();
    assert!(loads.iter().any(|(node, _)| node.id == "a"), "{loads:?}");
}

/// A session of a dead node is taken by its own user only: another user's attempt
/// leaves it in place, in one step (no moment in which its user would find it gone).
#[tokio::test]
async fn a_session_is_taken_by_its_own_user_only() {
    let (server, a, b) = redis().await;
    let dead = start_with_session(&a, "t").await;
    a.release_all(&[]).await.unwrap();
    let mut connection = raw_connection(&server).await;
    let fields = async |connection: &mut redis::aio::MultiplexedConnection| -> Vec<String> {
        let key = format!("test:sessions:{dead}");
        redis::cmd("HKEYS").arg(key).query_async(connection).await.unwrap()
    };
    assert_eq!(
        b.take_session(dead, "t", Some("bob"), SESSION_HOLD).await.unwrap(),
        SessionTake::OtherUser
    );
    assert_eq!(fields(&mut connection).await.len(), 2, "left in place");
    assert_eq!(
        b.take_session(dead, "t", Some("ann"), SESSION_HOLD).await.unwrap(),
        SessionTake::Taken(b"record".to_vec())
    );
    assert!(fields(&mut connection).await.is_empty(), "its user taken with it");
}

/// A number whose sessions another node continues (its own node start died) is not
/// given to a new node start while that node keeps it in use, even after Redis
/// forgot everything else: the renewals after an empty restart hold it again.
#[tokio::test]
async fn a_number_whose_sessions_live_on_is_not_given_again() {
    let (server, a, b) = redis().await;
    let hold = Duration::from_secs(30);
    let own = a.register_node(hold).await.unwrap();
    let dead = own % 8191 + 1;
    let mut connection = raw_connection(&server).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut connection).await.unwrap();
    assert_eq!(
        a.keep_sessions(own, &[dead], hold).await.unwrap(),
        SessionsKept::Retaken
    );
    next_start_draws(&mut connection, "test:", dead).await;
    let number = b.register_node(hold).await.unwrap();
    assert_eq!(number, dead % 8191 + 1, "the number in use skipped");
    // Once nobody keeps it in use, it is given again.
    let _: () = redis::cmd("ZADD")
        .arg("test:numbers-in-use")
        .arg(1)
        .arg(dead)
        .query_async(&mut connection)
        .await
        .unwrap();
    next_start_draws(&mut connection, "test:", dead).await;
    let c = redis_node(&server, "c").await;
    assert_eq!(c.register_node(hold).await.unwrap(), dead);
}

/// Redis unreachable at start is a clear error naming where it was looked for.
#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let error = RedisDirectory::connect(&RedisAddress::new(url.as_str()), node("a"), REDIS_LEASE, "test:")
        .await
        .err()
        .expect("nothing listens there");
    assert!(
        error.to_string().contains(&format!("cannot reach Redis at {url}")),
        "{error}"
    );
}

/// A node that stops taking calls ([`Bus::stop_calls`]) gets every call published
/// before, then the marker; one published after counts no listener (its API
/// answers 503), so no call answered 202 is dropped by a node handing its rooms off.
#[tokio::test]
async fn a_node_that_stops_taking_calls_gets_those_sent_before_and_no_later_one() {
    stop_taking_calls(RedisServer::start()).await;
}

/// The same on a Redis Cluster (sharded pub/sub: `SUNSUBSCRIBE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_taking_calls_on_a_redis_cluster() {
    stop_taking_calls(RedisServer::start_cluster()).await;
}

async fn stop_taking_calls(redis: RedisServer) {
    use tickrelay::cluster::bus::{Bus, BusMessage};
    let config = tickrelay::config::ClusterConfig {
        redis_url: Some(redis.url()),
        ..Default::default()
    };
    let address = RedisAddress::from_config(&config).unwrap().unwrap();
    let (stopping, mut inbox) = Bus::connect(&address, "stop:", "a").await.unwrap();
    let (other, _) = Bus::connect(&address, "stop:", "b").await.unwrap();
    let removal = |i: u32| proto::UserRemoval {
        room: "lobby".into(),
        user_id: format!("u{i}"),
        ..Default::default()
    };
    // Calls published while the node stops taking them: each one that counted a
    // listener must come before the marker, none after.
    let under_way = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn({
        let under_way = under_way.clone();
        async move {
            let mut counted = Vec::new();
            for i in 0.. {
                match other.send_removal("a", &removal(i)).await.unwrap() {
                    true => counted.push(format!("u{i}")),
                    false => break,
                }
                under_way.store(counted.len() as u64, Ordering::Release);
            }
            (counted, other)
        }
    });
    eventually("the publisher under way", || {
        let sent = under_way.load(Ordering::Acquire);
        std::future::ready(if sent > 10 { Ok(()) } else { Err(sent) })
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    stopping.stop_calls(deadline).await.unwrap();
    let (counted, other) = publisher.await.unwrap();
    let mut received = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), inbox.recv())
            .await
            .unwrap()
            .unwrap()
        {
            BusMessage::Removal(r) => received.push(r.user_id),
            BusMessage::CallsStopped => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        received, counted,
        "every call that counted a listener, before the marker"
    );
    // The renewals' check does not subscribe it again.
    stopping.keep_listening().await.unwrap();
    assert!(!other.send_removal("a", &removal(0)).await.unwrap());
}

/// Over TLS (`rediss://`), a Redis that asks for a client certificate is reached
/// with the CA and the certificate configured, and refused, with the reason, to a
/// node that does not trust its certificate or presents none.
#[tokio::test]
async fn redis_over_tls_needs_its_ca_and_a_client_certificate() {
    let redis = RedisServer::start_tls();
    let tls = redis.tls.clone().unwrap();
    let mut config = tickrelay::config::ClusterConfig {
        redis_url: Some(redis.url()),
        ..Default::default()
    };
    let connect = async |config: &tickrelay::config::ClusterConfig| {
        let redis = RedisAddress::from_config(config).unwrap().unwrap();
        RedisDirectory::connect(&redis, node("a"), REDIS_LEASE, "tls:").await
    };
    let untrusted = connect(&config)
        .await
        .err()
        .expect("the system's CAs do not know this one");
    assert!(untrusted.to_string().contains("certificate"), "{untrusted}");
    config.redis_ca_file = Some(tls.ca.clone());
    let anonymous = connect(&config)
        .await
        .err()
        .expect("Redis asks for a client certificate");
    assert!(anonymous.to_string().contains("CertificateRequired"), "{anonymous}");
    (config.redis_cert_file, config.redis_key_file) = (Some(tls.cert), Some(tls.key));
    let directory = connect(&config).await.unwrap();
    assert_eq!(directory.claim(&entry("r", 1)).await.unwrap(), Claim::Ours);
    config.redis_ca_file = Some("/nonexistent/ca.pem".into());
    let missing = RedisAddress::from_config(&config).err().expect("no such file");
    assert!(
        missing.to_string().contains("redis_ca_file /nonexistent/ca.pem"),
        "{missing}"
    );
}

// ---------------------------------------------------------------------------
// Relay nodes sharing the directory
// ---------------------------------------------------------------------------

/// The join request's answer on a raw client: the redirect's URL, or `None` when
/// joined.
async fn join_or_redirect(client: &mut TestClient, room: &str) -> Option<String> {
    join_typed_or_redirect(client, room, "").await
}

/// [`join_or_redirect`] with a room type.
async fn join_typed_or_redirect(client: &mut TestClient, room: &str, room_type: &str) -> Option<String> {
    join_answer(client, room, room_type)
        .await
        .unwrap_or_else(|| panic!("join refused: UNAVAILABLE"))
}

/// The answer to a join of `room`: `Some(None)` when joined, `Some(Some(url))` when
/// redirected, `None` when UNAVAILABLE (try again); any other error fails the test.
async fn join_answer(client: &mut TestClient, room: &str, room_type: &str) -> Option<Option<String>> {
    let request_id = client.send_join(room, room_type, "").await;
    client
        .until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(Some(None)),
            Kind::Redirect(r) if r.request_id == request_id => Some(Some(Some(r.url.clone()))),
            Kind::Error(e) if e.request_id == request_id && e.code == ErrorCode::Unavailable as i32 => Some(None),
            Kind::Error(e) if e.request_id == request_id => panic!("join refused: {e:?}"),
            _ => None,
        })
        .await
}

/// [`join_or_redirect`] of a room another node handed off as it stopped, asked again
/// while the answer is UNAVAILABLE: a claim of a room with a checkpoint and no lease
/// waits for renewals to settle, and after a hand-off one renewal late on a loaded
/// machine reads as a Redis stall (a gap of half a lease), for a lease.
async fn join_handed_off(client: &mut TestClient, room: &str, room_type: &str) -> Option<String> {
    let started = Instant::now();
    loop {
        if let Some(answer) = join_answer(client, room, room_type).await {
            return answer;
        }
        assert!(
            started.elapsed() < 5 * LEASE,
            "still UNAVAILABLE after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(LEASE / 10).await;
    }
}

fn node_url(node: &TestServer) -> String {
    format!("wss://{}/ws", node.addr)
}

/// A join on a node that does not own the room is redirected to the one that does;
/// listings on any node show every node's rooms with their member counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_elsewhere_is_redirected_to_the_owner_and_listings_span_the_nodes() {
    redirects_and_listings(TestCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_elsewhere_is_redirected_to_the_owner_and_listings_span_the_nodes_on_a_redis_cluster() {
    redirects_and_listings(TestCluster::start_on_redis_cluster()).await;
}

async fn redirects_and_listings(cluster: TestCluster) {
    // b is asked for its listing again and again below, from one address.
    let (a, b) = (cluster.node().await, cluster.node_with(many_searches).await);
    let mut on_a = TestClient::connect(&a).await;
    assert_eq!(join_or_redirect(&mut on_a, "lobby").await, None);
    let mut on_b = TestClient::connect(&b).await;
    assert_eq!(join_or_redirect(&mut on_b, "lobby").await, Some(node_url(&a)));
    // Redirected again, not followed: the same seat ticket (one key in Redis).
    let mut tickets = Vec::new();
    for _ in 0..2 {
        let request_id = on_b.send_join("lobby", "", "").await;
        let ticket = on_b
            .until(|k| match k {
                Kind::Redirect(r) if r.request_id == request_id => Some(r.seat.clone()),
                _ => None,
            })
            .await;
        tickets.push(ticket);
    }
    assert_eq!(tickets[0].len(), 32);
    assert_eq!(tickets[0], tickets[1]);
    assert_eq!(
        join_or_redirect(&mut on_b, "dungeon").await,
        None,
        "b owns a room of its own"
    );
    assert_eq!(b.metric("tickrelay_redirects_total"), 3);
    // Followed by hand, as a client library does.
    let mut moved = TestClient::connect(&a).await;
    assert_eq!(join_or_redirect(&mut moved, "lobby").await, None);
    // Member counts reach the directory at the next renewal.
    eventually("both rooms listed on b with their members", || {
        let on_b = TestClient::connect(&b);
        async move {
            let listed = on_b.await.list_rooms(1).await;
            let counts: Vec<(String, u32)> = listed.into_iter().map(|r| (r.room, r.members)).collect();
            let expected = [("dungeon".to_string(), 1), ("lobby".to_string(), 2)];
            if counts == expected { Ok(()) } else { Err(counts) }
        }
    })
    .await;
    assert_eq!(a.metric("tickrelay_rooms"), 1, "the room lives on one node only");
}

/// With `placement = "least_loaded"`, a room that no node owns opens on the node
/// with clearly fewer members: the join is redirected there, and that node keeps it
/// (it does not send the join back). Rooms that exist are joined where they live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_room_opens_on_the_least_loaded_node() {
    use tickrelay::config::Placement;
    let cluster = TestCluster::start();
    let least_loaded = |c: &mut tickrelay::config::Config| c.cluster.placement = Placement::LeastLoaded;
    // b renews slowly, so that the burst below, on a loaded machine too, places
    // rooms faster than b's renewals.
    let (a, b) = (
        cluster.node_with(least_loaded).await,
        cluster
            .node_with(|c| {
                least_loaded(c);
                renewing_slowly(c);
            })
            .await,
    );
    let mut crowd = Vec::new();
    for _ in 0..12 {
        let mut member = TestClient::connect(&a).await;
        assert_eq!(
            join_or_redirect(&mut member, "crowd").await,
            None,
            "a's room, joined on a"
        );
        crowd.push(member);
    }
    // a's 12 members reach the directory at its next renewal; until then a new room
    // may still open on a (each attempt names a new room).
    let mut attempt = 0;
    let (room, url) = eventually("a new room joined on a redirected to b", || {
        attempt += 1;
        let room = format!("fresh-{attempt}");
        let a = &a;
        async move {
            let mut client = TestClient::connect(a).await;
            match join_or_redirect(&mut client, &room).await {
                Some(url) => Ok((room, url)),
                None => Err(format!("{room} opened on a")),
            }
        }
    })
    .await;
    assert_eq!(url, node_url(&b));
    let mut moved = TestClient::connect(&b).await;
    assert_eq!(join_or_redirect(&mut moved, &room).await, None, "b keeps the room");
    assert_eq!(b.metric("tickrelay_rooms"), 1);
    assert_eq!(b.metric("tickrelay_redirects_total"), 0, "b sent nothing back");
    // A burst of new rooms does not all go to b before b's renewals show them: each
    // placement counts one member on b until b's next renewal, so a burst faster
    // than renewals soon finds b no longer clearly lighter than a, and a room opens
    // on a. Without that count every one would go to b (b's renewals show only the
    // one member that followed a redirect).
    let mut attempt = 0;
    eventually("a room of a burst opened on a", || {
        attempt += 1;
        let room = format!("burst-{attempt}");
        let a = &a;
        async move {
            let mut client = TestClient::connect(a).await;
            match join_or_redirect(&mut client, &room).await {
                Some(_) => Err(format!("{room} went to b")),
                None => Ok(()),
            }
        }
    })
    .await;
    // A join that creates its room with options (here private) opens it on the node
    // asked: the options would not follow a redirect.
    let mut private = TestClient::connect(&a).await;
    let request_id = private.request_id();
    private
        .send(vec![proto::client_message::Kind::Join(proto::JoinRoom {
            request_id,
            room: "hideout".into(),
            create: Some(proto::RoomOptions {
                private: true,
                ..Default::default()
            }),
            ..Default::default()
        })])
        .await;
    let joined = private
        .until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(true),
            Kind::Redirect(r) if r.request_id == request_id => Some(false),
            _ => None,
        })
        .await;
    assert!(joined, "a private room opens on the node asked");
    // A room that exists is joined where it lives, whatever the loads.
    let mut late = TestClient::connect(&a).await;
    assert_eq!(join_or_redirect(&mut late, "crowd").await, None);
}

/// Anonymous players on two nodes never share a user id (which would make them one
/// user to presence and to the `replace` policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_users_are_unique_across_nodes() {
    let cluster = TestCluster::start();
    let (a, b) = (cluster.node().await, cluster.node().await);
    let on_a = TestClient::connect(&a).await;
    let on_b = TestClient::connect(&b).await;
    let users = [&on_a.welcome.user_id, &on_b.welcome.user_id];
    assert!(users.iter().all(|u| u.starts_with("anonymous-")), "{users:?}");
    assert_ne!(users[0], users[1]);
}

/// Two nodes racing to open the same rooms end with one owner each: every join is
/// answered by exactly one node, and the other redirects to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_racing_on_two_nodes_open_each_room_once() {
    let cluster = TestCluster::start();
    let roomy = |c: &mut tickrelay::config::Config| c.session.max_rooms_per_session = 64;
    let nodes = [cluster.node_with(roomy).await, cluster.node_with(roomy).await];
    let urls = [node_url(&nodes[0]), node_url(&nodes[1])];
    let rooms: Vec<String> = (0..40).map(|i| format!("race-{i}")).collect();
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let mut racers = Vec::new();
    for node in &nodes {
        let mut client = TestClient::connect(node).await;
        let (rooms, start) = (rooms.clone(), start.clone());
        racers.push(tokio::spawn(async move {
            start.wait().await;
            let mut answers = Vec::new();
            for room in &rooms {
                answers.push(join_or_redirect(&mut client, room).await);
            }
            answers
        }));
    }
    let answers = [racers.remove(0).await.unwrap(), racers.remove(0).await.unwrap()];
    for (i, room) in rooms.iter().enumerate() {
        match (&answers[0][i], &answers[1][i]) {
            (None, Some(url)) => assert_eq!(url, &urls[0], "{room}"),
            (Some(url), None) => assert_eq!(url, &urls[1], "{room}"),
            other => panic!("{room}: {other:?}"),
        }
    }
    let open = nodes[0].metric("tickrelay_rooms") + nodes[1].metric("tickrelay_rooms");
    assert_eq!(open, rooms.len() as u64);
}

/// A node holding its maximum of rooms claims no new one in Redis (the claim would
/// outlive the room that cannot open), and still sends joins of rooms open elsewhere
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_claims_no_room_and_still_redirects() {
    let cluster = TestCluster::start();
    let full = cluster.node_with(|c| c.max_rooms = 1).await;
    let other = cluster.node().await;
    let mut there = TestClient::connect(&other).await;
    assert_eq!(join_or_redirect(&mut there, "elsewhere").await, None);
    let mut here = TestClient::connect(&full).await;
    assert_eq!(join_or_redirect(&mut here, "mine").await, None);
    assert_eq!(join_or_redirect(&mut here, "elsewhere").await, Some(node_url(&other)));
    let request_id = here.send_join("new", "", "").await;
    let error = here
        .until(|k| match k {
            Kind::Error(e) if e.request_id == request_id => Some(e.clone()),
            Kind::Joined(j) if j.request_id == request_id => panic!("joined a room past max_rooms"),
            _ => None,
        })
        .await;
    assert_eq!(error.code, ErrorCode::ServerBusy as i32, "{error:?}");
    let mut redis = raw_connection(&cluster.redis).await;
    let claims: Vec<String> = redis::cmd("KEYS")
        .arg("*claim:*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(claims.iter().all(|key| !key.ends_with(":new")), "{claims:?}");
    assert!(claims.iter().any(|key| key.ends_with(":mine")), "{claims:?}");
}

/// Under `placement = "least_loaded"`, a node holding its maximum of rooms still
/// places a new room on a clearly lighter node rather than refusing the join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_places_a_new_room_on_a_lighter_node() {
    use tickrelay::config::Placement;
    let cluster = TestCluster::start();
    let full = (cluster.node_with(|c| {
        c.max_rooms = 1;
        c.cluster.placement = Placement::LeastLoaded;
    }))
    .await;
    let light = cluster.node().await;
    let mut crowd = Vec::new();
    for _ in 0..10 {
        let mut member = TestClient::connect(&full).await;
        assert_eq!(join_or_redirect(&mut member, "crowd").await, None);
        crowd.push(member);
    }
    // Until its next renewal shows its members, the full node refuses new rooms.
    let mut attempt = 0;
    let url = eventually("a new room on the full node redirected", || {
        attempt += 1;
        let room = format!("fresh-{attempt}");
        let full = &full;
        async move {
            let mut client = TestClient::connect(full).await;
            let request_id = client.send_join(&room, "", "").await;
            client
                .until(|k| match k {
                    Kind::Redirect(r) if r.request_id == request_id => Some(Ok(r.url.clone())),
                    Kind::Error(e) if e.request_id == request_id => Some(Err(format!("{room}: {e:?}"))),
                    Kind::Joined(j) if j.request_id == request_id => panic!("joined a room past max_rooms"),
                    _ => None,
                })
                .await
        }
    })
    .await;
    assert_eq!(url, node_url(&light));
}

/// A node that stops releases its rooms: the next join elsewhere opens them at once
/// (no lease to wait out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_releases_its_rooms() {
    let cluster = TestCluster::start();
    let (mut a, b) = (cluster.node().await, cluster.node().await);
    let mut on_a = TestClient::connect(&a).await;
    join_or_redirect(&mut on_a, "lobby").await;
    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();
    let observer = cluster.directory_as("observer", "").await;
    assert_eq!(observer.locate("lobby").await.unwrap(), None, "no lease to wait out");
    let mut on_b = TestClient::connect(&b).await;
    assert_eq!(join_handed_off(&mut on_b, "lobby", "").await, None);
}

/// Redis lost: rooms open here keep running and their members keep playing; what
/// needs the directory (a new room, a listing) is refused with `UNAVAILABLE`, and
/// counted. Redis back (empty, as after a restart without persistence): the node
/// claims its rooms again at the next renewal and serves new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_and_back() {
    let mut cluster = TestCluster::start();
    let with_api = |c: &mut tickrelay::config::Config| c.api.token = Some("backend-secret".into());
    let a = cluster.node_with(with_api).await;
    let mut player = TestClient::connect(&a).await;
    // An arena: its NPCs move every tick, so frames keep coming.
    join_typed_or_redirect(&mut player, "lobby", "arena").await;
    cluster.redis.stop();
    player.frames_in("lobby", 30).await;
    let mut newcomer = TestClient::connect(&a).await;
    let request_id = newcomer.send_join("new", "", "").await;
    let code = newcomer
        .until(|k| match k {
            Kind::Error(e) if e.request_id == request_id => Some(e.code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::Unavailable as i32);
    // A member joining a room open here needs no directory.
    assert_eq!(join_or_redirect(&mut newcomer, "lobby").await, None);
    assert!(a.metric("tickrelay_directory_errors_total") >= 1);
    assert_eq!(a.metric("tickrelay_directory_up"), 0);
    // Every node would be out alike: still ready (its rooms play on), saying why not
    // all is well.
    let (status, why) = a.https_get("/readyz").await;
    assert_eq!((status, why.contains("Redis")), (200, true), "{why}");

    cluster.redis.restart();
    let b = cluster.node_with(with_api).await;
    // The renewal finds the lobby's lease gone and claims it again.
    eventually("a claims its room again", || {
        let on_b = TestClient::connect(&b);
        async move {
            let listed: Vec<String> = on_b.await.list_rooms(100).await.into_iter().map(|r| r.room).collect();
            if listed == ["lobby"] { Ok(()) } else { Err(listed) }
        }
    })
    .await;
    let mut on_b = TestClient::connect(&b).await;
    assert_eq!(join_or_redirect(&mut on_b, "lobby").await, Some(node_url(&a)));
    // a creates rooms again, once a lease has passed since it found Redis empty.
    join_until_open(&mut newcomer, "new").await;
    // (Set again at a's next renewal that reaches Redis.)
    a.wait_for_metric("tickrelay_directory_up", 1).await;
    assert_eq!(a.https_get("/readyz").await, (200, "ready\n".into()));
    player.frames_in("lobby", 5).await;
    // a subscribes to its inbox again (within a renewal; until then b answers 503):
    // events published on b reach the lobby.
    publish_to_lobby_until_heard(&b, "back").await;
    assert_eq!(player.next_event().await.kind, "back");
}

/// Publishes an event of `kind` to the lobby through `node`'s HTTP API until the
/// lobby's node is listening (202; 503 until then).
async fn publish_to_lobby_until_heard(node: &TestServer, kind: &str) {
    let auth = "Authorization: Bearer backend-secret\r\n";
    let path = format!("/rooms/lobby/events?kind={kind}");
    eventually("the lobby's node listening to its inbox", || async {
        match node.https_request("POST", &path, auth, b"").await {
            (202, _) => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// A sentinel that names a replica as the primary (one that lags, or sits in a
/// minority) is not followed: the node asks the next sentinel, and writes go to the
/// real primary. (The first sentinel here is a fake that names the replica to every
/// question.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_naming_a_replica_is_not_followed() {
    let server = tokio::task::block_in_place(RedisServer::start_with_sentinel);
    let liar = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar_port = liar.local_addr().unwrap().port();
    let replica = server.replica_port().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = liar.accept().await {
            tokio::spawn(answer_naming(tcp, replica.clone()));
        }
    });
    let real = server.url();
    let (_, name) = real.rsplit_once('#').unwrap();
    let sentinels = real.trim_start_matches("redis-sentinel://").split('#').next().unwrap();
    let url = format!("redis-sentinel://127.0.0.1:{liar_port},{sentinels}#{name}");
    let a = RedisDirectory::connect(&RedisAddress::new(url), node("a"), REDIS_LEASE, "liar:")
        .await
        .unwrap();
    assert_eq!(
        a.claim(&entry("room", 1)).await.unwrap(),
        Claim::Ours,
        "written to the primary"
    );
}

/// A fake sentinel on `tcp`: every command is answered with the address
/// `127.0.0.1:port` (RESP), whatever it asked.
async fn answer_naming(mut tcp: tokio::net::TcpStream, port: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n", port.len());
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = tcp.read(&mut chunk).await
        && n > 0
    {
        buffer.extend_from_slice(&chunk[..n]);
        // Each complete command (an array of bulk strings) gets the answer.
        while let Some(used) = resp_command_len(&buffer) {
            buffer.drain(..used);
            if tcp.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// The length of the RESP command at the start of `data`, once it is complete.
fn resp_command_len(data: &[u8]) -> Option<usize> {
    let line = |from: usize| -> Option<(&[u8], usize)> {
        let end = from + data.get(from..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((&data[from..end], end + 2))
    };
    let (header, mut at) = line(0)?;
    let count: usize = std::str::from_utf8(header.strip_prefix(b"*")?).ok()?.parse().ok()?;
    for _ in 0..count {
        let (len, next) = line(at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?).ok()?.parse().ok()?;
        at = next + len + 2;
        if at > data.len() {
            return None;
        }
    }
    Some(at)
}

/// On a primary that Redis Sentinel watches: the primary killed, the sentinel makes
/// the replica the primary and the nodes follow it. The room on a stays a's (b is
/// redirected there), its member keeps playing, new rooms open, and an event
/// published on b reaches a's room (a subscribes to its inbox on the new primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_follow_a_sentinel_failover() {
    follow_a_failover(TestCluster::start_with_sentinel()).await;
}

/// The same with the sentinel, the primary and the replica speaking TLS, and the
/// sentinel asking for a password (a node without it is refused at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_follow_a_sentinel_failover_over_tls() {
    let cluster = TestCluster::start_with_sentinel_tls();
    let no_password = tickrelay::server::Server::bind(cluster.config(|c| c.cluster.sentinel_password = None)).await;
    let Err(refused) = no_password else {
        panic!("started, though the sentinel asks for a password")
    };
    let refused = refused.to_string();
    assert!(refused.contains("sentinel") && refused.contains("NOAUTH"), "{refused}");
    follow_a_failover(cluster).await;
}

async fn follow_a_failover(mut cluster: TestCluster) {
    let with_api = |c: &mut tickrelay::config::Config| c.api.token = Some("backend-secret".into());
    let (a, b) = (cluster.node_with(with_api).await, cluster.node_with(with_api).await);
    let mut player = TestClient::connect(&a).await;
    join_typed_or_redirect(&mut player, "lobby", "arena").await;
    tokio::task::block_in_place(|| cluster.redis.fail_over());
    player.frames_in("lobby", 30).await;
    let mut on_b = TestClient::connect(&b).await;
    join_until_open(&mut on_b, "new").await;
    assert_eq!(join_or_redirect(&mut on_b, "lobby").await, Some(node_url(&a)));
    publish_to_lobby_until_heard(&b, "failed-over").await;
    assert_eq!(player.next_event().await.kind, "failed-over");
    a.wait_for_metric("tickrelay_directory_up", 1).await;
}

/// The HTTP API on any node publishes to a room wherever it lives (over Redis
/// pub/sub to the owning node); a room no node holds is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_any_node_reaches_the_room() {
    publish_anywhere(TestCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_any_node_reaches_the_room_on_a_redis_cluster() {
    publish_anywhere(TestCluster::start_on_redis_cluster()).await;
}

/// The same, the nodes reaching Redis over TLS with a client certificate: one Redis,
/// and a Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_any_node_reaches_the_room_over_redis_tls() {
    publish_anywhere(TestCluster::start_tls()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_any_node_reaches_the_room_on_a_redis_cluster_over_tls() {
    publish_anywhere(TestCluster::start_on_redis_cluster_tls()).await;
}

async fn publish_anywhere(cluster: TestCluster) {
    let with_api = |c: &mut tickrelay::config::Config| c.api.token = Some("backend-secret".into());
    let (a, b) = (cluster.node_with(with_api).await, cluster.node_with(with_api).await);
    let mut member = TestClient::connect(&a).await;
    join_or_redirect(&mut member, "lobby").await;
    let auth = "Authorization: Bearer backend-secret\r\n";
    let (status, answer) = b
        .https_request("POST", "/rooms/lobby/events?kind=round-start", auth, b"round 7")
        .await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("on node"), "{answer}");
    let event = member.next_event().await;
    assert_eq!(
        (event.sender, &*event.kind, &event.payload[..]),
        (0, "round-start", &b"round 7"[..])
    );
    // Counted where it was delivered (just after it is handed to the room).
    a.wait_for_metric("tickrelay_events_published_total", 1).await;
    assert_eq!(a.metric("tickrelay_events_published_total"), 1);
    let (status, _) = b.https_request("POST", "/rooms/nowhere/events?kind=x", auth, b"").await;
    assert_eq!(status, 404);
    // So is a user's removal.
    let mut other = TestClient::connect(&a).await;
    join_or_redirect(&mut other, "lobby").await;
    let path = format!("/rooms/lobby/users/{}?reason=out", other.welcome.user_id);
    let (status, answer) = b.https_request("DELETE", &path, auth, b"").await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("on node"), "{answer}");
    assert_eq!(
        other.left("lobby").await,
        (ErrorCode::Forbidden as i32, "out".to_string())
    );
    // Asked on b, who is in the room is answered on a: a redirect there.
    let (status, answer) = b.https_request("GET", "/rooms/lobby", auth, b"").await;
    assert_eq!(status, 307, "{answer}");
    assert!(answer.contains(&format!("https://{}/rooms/lobby", a.addr)), "{answer}");
    assert_eq!(a.https_request("GET", "/rooms/lobby", auth, b"").await.0, 200);
    // Listed from the directory on any node.
    let (status, page) = b.https_request("GET", "/rooms", auth, b"").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#""room":"lobby""#), "{page}");
    // So is a close.
    let (status, answer) = b.https_request("DELETE", "/rooms/lobby?reason=done", auth, b"").await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("on node"), "{answer}");
    let left = member.left("lobby").await;
    assert_eq!(left, (ErrorCode::RoomClosed as i32, "done".to_string()));
    assert_eq!(b.https_request("DELETE", "/rooms/nowhere", auth, b"").await.0, 404);
}

/// Creates entity `id` in `room` (a relay room) and waits until the room applied it.
async fn create_and_wait(client: &mut TestClient, room: &str, id: u64) {
    let seq = client.input(room, tickrelay_testkit::create_entity(id)).await;
    client.applied(room, seq).await;
}

/// Joins `room` until a node answers `Joined` (not redirected, not UNAVAILABLE), as
/// a client retrying after its node died would; fails the test after five leases
/// (a failover takes one or two: the dead node's leases lapse, then renewals settle,
/// and a loaded machine's late renewals may add one).
async fn join_until_open(client: &mut TestClient, room: &str) {
    let started = Instant::now();
    loop {
        if join_answer(client, room, "").await == Some(None) {
            return;
        }
        assert!(started.elapsed() < 5 * LEASE, "the room never opened again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node that stops hands its rooms off: the next join on another node opens the
/// room where it was, its entities included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_moves_with_its_state_when_its_node_stops() {
    let cluster = TestCluster::start();
    let (mut a, b) = (cluster.node().await, cluster.node().await);
    let mut player = TestClient::connect(&a).await;
    join_or_redirect(&mut player, "world").await;
    create_and_wait(&mut player, "world", 5).await;
    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();
    let mut back = TestClient::connect(&b).await;
    assert_eq!(join_handed_off(&mut back, "world", "").await, None);
    back.frames_in("world", 1).await;
    let entities: Vec<u64> = back.mirrors["world"].world().entities().map(|e| e.id()).collect();
    assert_eq!(entities, [5], "the entity moved with the room");
    assert_eq!(b.metric("tickrelay_rooms_restored_total"), 1);
}

/// A backend's calls for a room whose node stops reach the room wherever it goes: a
/// call relayed to the stopping node after it handed the room off is sent on to a
/// live node, and one for a room no node holds (Redis keeps its checkpoint) restores
/// the room on the node asked. Every ban answered 202 holds in the restored room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_calls_follow_a_room_whose_node_stops() {
    let cluster = TestCluster::start();
    let with_api = |c: &mut tickrelay::config::Config| c.api.token = Some("backend-secret".into());
    let (mut a, b) = (cluster.node_with(with_api).await, cluster.node_with(with_api).await);
    let b = Arc::new(b);
    let mut player = TestClient::connect(&a).await;
    assert_eq!(join_or_redirect(&mut player, "world").await, None);
    create_and_wait(&mut player, "world", 5).await;
    // Bans through b, one after the other, until a has stopped and ten more.
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let accepted_so_far = Arc::new(AtomicU64::new(0));
    let banning = tokio::spawn({
        let (b, stopped, accepted_so_far) = (b.clone(), stopped.clone(), accepted_so_far.clone());
        async move {
            let auth = "Authorization: Bearer backend-secret\r\n";
            let (mut accepted, mut after_stop) = (Vec::new(), 0);
            for i in 0.. {
                let path = format!("/rooms/world/users/u{i}?ban_secs=600");
                let (status, answer) = b.https_request("DELETE", &path, auth, b"").await;
                match status {
                    202 => {
                        accepted.push(format!("u{i}"));
                        accepted_so_far.fetch_add(1, Ordering::Release);
                    }
                    503 => {}
                    _ => panic!("{status}: {answer}"),
                }
                // (A room keeps 256 bans.)
                tokio::time::sleep(Duration::from_millis(20)).await;
                if stopped.load(Ordering::Acquire) {
                    after_stop += 1;
                    if after_stop == 10 {
                        break;
                    }
                }
            }
            accepted
        }
    });
    // Not before a ban was accepted: were every ban refused (503), none could be lost.
    eventually("a ban accepted before a stops", || {
        let accepted = accepted_so_far.load(Ordering::Acquire);
        std::future::ready(if accepted > 0 { Ok(()) } else { Err(accepted) })
    })
    .await;
    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();
    stopped.store(true, Ordering::Release);
    let accepted = banning.await.unwrap();
    let auth = "Authorization: Bearer backend-secret\r\n";
    // (503 while b's claim of the handed-off room waits for renewals to settle: see
    // `join_handed_off`.)
    let body = eventually("b opens the room", || async {
        match b.https_request("GET", "/rooms/world", auth, b"").await {
            (200, body) => Ok(body),
            other => Err(other),
        }
    })
    .await;
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    let banned: Vec<&str> = (view["bans"].as_array().unwrap().iter())
        .map(|ban| ban["user_id"].as_str().unwrap())
        .collect();
    assert!(
        accepted.len() <= tickrelay::engine::room::MAX_BANS,
        "{}",
        accepted.len()
    );
    let lost: Vec<&String> = accepted.iter().filter(|u| !banned.contains(&u.as_str())).collect();
    assert!(
        lost.is_empty(),
        "bans answered 202 and lost: {lost:?} of {}",
        accepted.len()
    );
    assert_eq!(b.metric("tickrelay_rooms_restored_total"), 1);
}

/// Node `a` of `cluster` (checkpointing every tick, closing empty rooms at once, then
/// `adjust`) and a player in its relay room "world" holding entity 5, the room's
/// checkpoint written.
async fn player_in_checkpointed_world(
    cluster: &TestCluster,
    adjust: impl FnOnce(&mut tickrelay::config::Config),
) -> (TestServer, TestClient) {
    let a = cluster
        .node_with(|c| {
            c.cluster.checkpoint_ticks = 1;
            c.empty_room_ttl_secs = 0;
            adjust(c);
        })
        .await;
    let mut player = TestClient::connect(&a).await;
    assert_eq!(join_or_redirect(&mut player, "world").await, None);
    create_and_wait(&mut player, "world", 5).await;
    two_more_checkpoints(&a).await;
    (a, player)
}

/// Waits until `node` has written two more checkpoints (the last then holds what
/// was applied before the call).
async fn two_more_checkpoints(node: &TestServer) {
    let written = node.metric("tickrelay_checkpoints_written_total");
    node.wait_for_metric("tickrelay_checkpoints_written_total", written + 2)
        .await;
}

/// Leaves `room` and waits for the `Left`.
async fn leave(player: &mut TestClient, room: &str) {
    let leave = proto::LeaveRoom {
        request_id: 1,
        room: room.into(),
    };
    player.send(vec![proto::client_message::Kind::Leave(leave)]).await;
    player
        .until(|k| matches!(k, Kind::Left(l) if l.room == room).then_some(()))
        .await;
}

/// Asserts that `room`, joined again, opened empty on `node`: not restored.
async fn assert_opened_empty(player: &mut TestClient, node: &TestServer, room: &str) {
    player.frames_in(room, 1).await;
    let entities: Vec<u64> = player.mirrors[room].world().entities().map(|e| e.id()).collect();
    assert_eq!(entities, [0u64; 0], "the closed room's state stays closed");
    assert_eq!(node.metric("tickrelay_rooms_restored_total"), 0);
}

/// Has Redis hold every write command (scripts included) back for `pause`; reads go on.
async fn pause_redis_writes(redis: &RedisServer, pause: Duration) {
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .arg("WRITE")
        .query_async(&mut raw_connection(redis).await)
        .await
        .unwrap();
}

/// Waits until Redis holds back (see [`pause_redis_writes`]) a command of a client
/// that `held` picks by the command's name. (A client held is held whole: its later
/// commands wait behind that one, unread.)
async fn until_held(redis: &RedisServer, what: &str, held: impl Fn(&str) -> bool) {
    eventually(what, || async {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut raw_connection(redis).await)
            .await
            .unwrap();
        let field = |client: &str, name: &str| {
            let mut fields = client.split(' ');
            fields
                .find_map(|field| field.strip_prefix(name))
                .unwrap_or_default()
                .to_string()
        };
        // Flag `b`: blocked, as a client held by a pause is.
        let commands: Vec<String> = (clients.lines())
            .filter(|client| field(client, "flags=").contains('b'))
            .map(|client| field(client, "cmd="))
            .collect();
        if commands.iter().any(|command| held(command)) {
            Ok(())
        } else {
            Err(commands)
        }
    })
    .await;
}

/// A room joined again on its node while its close is on its way to Redis (held back
/// here: Redis pauses writes, so the node's checkpoint write waits and the close
/// queues behind it) opens empty and listed: the claim waits for the close, so it
/// neither restores the closed room from its last checkpoint nor has its new entry
/// dropped by the late close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_joined_again_while_its_close_is_on_its_way_opens_empty_and_listed() {
    let cluster = TestCluster::start();
    // Leases long enough that Redis may pause for 1.8 s without the node's own
    // renewals lapsing.
    let (a, mut player) = player_in_checkpointed_world(&cluster, |c| c.cluster.lease_ms = 6_000).await;

    // Not longer: a join waits at most 2 s for the close (and the node as long for
    // Redis's answer to the write held), so the close must be written by then.
    let pause = Duration::from_millis(1_800);
    pause_redis_writes(&cluster.redis, pause).await;
    let paused = Instant::now();
    // An unchanged room checkpoints every tenth tick: the node's write waits soon.
    until_held(&cluster.redis, "a write of the node held", |_| true).await;
    leave(&mut player, "world").await;
    eventually("the room closed", || {
        let open = a.metric("tickrelay_rooms");
        std::future::ready(if open == 0 { Ok(()) } else { Err(open) })
    })
    .await;
    assert!(
        paused.elapsed() < pause - Duration::from_millis(200),
        "joined again too late to race the close"
    );
    assert_eq!(join_or_redirect(&mut player, "world").await, None);
    assert_opened_empty(&mut player, &a, "world").await;
    // Long before the next renewal (every third of a lease) could list it again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let listed = player.list_rooms(100).await;
    assert!(listed.iter().any(|r| r.room == "world"), "{listed:?}");
}

/// A room that closed while Redis did not answer has its close tried again once
/// Redis is back: a join of it there opens it empty, not restored from the checkpoint
/// the failed close left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_that_failed_is_tried_again_before_the_room_opens_again() {
    let cluster = TestCluster::start();
    let (a, mut player) = player_in_checkpointed_world(&cluster, |_| {}).await;

    cluster.redis.freeze();
    leave(&mut player, "world").await;
    // The close (and whatever write it queued behind) fails: 2 s for an answer.
    let errors = a.metric("tickrelay_directory_errors_total");
    a.wait_for_metric("tickrelay_directory_errors_total", errors + 1).await;
    cluster.redis.thaw();
    join_until_open(&mut player, "world").await;
    assert_opened_empty(&mut player, &a, "world").await;
}

/// A claim that reaches Redis as its node begins to stop (held back here: Redis
/// pauses writes, the node is told to stop meanwhile) is given back: the stopping
/// node must not own a room it never runs until the lease lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_landing_as_its_node_stops_is_given_back() {
    let cluster = TestCluster::start();
    // A lease far longer than the test: the entry would not lapse by itself.
    let mut a = cluster.node_with(|c| c.cluster.lease_ms = 20_000).await;
    let mut player = TestClient::connect(&a).await;
    // The player's session recorded (written in the background, by the connection
    // the claim takes): the one write of the node that Redis holds below is then the
    // claim's. (The node renews next 6.7 s after it started.)
    let prefix = cluster.config(|_| {}).cluster.key_prefix;
    eventually("the session recorded", || async {
        let mut redis = raw_connection(&cluster.redis).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}sessions:*"))
            .query_async(&mut redis)
            .await
            .unwrap();
        for key in &keys {
            // (Its time to live is the pipeline's second write.)
            let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut redis).await.unwrap();
            if ttl > 0 {
                return Ok(());
            }
        }
        Err(keys)
    })
    .await;
    pause_redis_writes(&cluster.redis, Duration::from_secs(1)).await;
    player.send_join("late", "", "").await;
    // The claim's script held: the node stops with the claim on its way.
    until_held(&cluster.redis, "the claim held", |command| command.starts_with("eval")).await;
    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();
    let observer = redis_node_under(&cluster.redis, "observer", LEASE, &prefix).await;
    assert_eq!(
        observer.locate("late").await.unwrap(),
        None,
        "left claimed by a stopped node"
    );
}

/// A configured room whose node stops opens again on a live node from its checkpoint,
/// listed, with no one joining it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_room_opens_again_on_a_live_node_when_its_node_stops() {
    let cluster = TestCluster::start();
    let lobby = |config: &mut tickrelay::config::Config| {
        config.rooms.push(tickrelay::config::PrecreatedRoom {
            id: "lobby".into(),
            room_type: "relay".into(),
            metadata: Default::default(),
        })
    };
    let mut a = cluster.node_with(lobby).await;
    let b = cluster.node_with(lobby).await;
    let mut player = TestClient::connect(&a).await;
    assert_eq!(
        join_or_redirect(&mut player, "lobby").await,
        None,
        "the first node took it"
    );
    create_and_wait(&mut player, "lobby", 5).await;
    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();
    eventually("lobby restored on the live node", async || {
        match b.metric("tickrelay_rooms_restored_total") {
            1 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    let mut back = TestClient::connect(&b).await;
    assert_eq!(join_or_redirect(&mut back, "lobby").await, None);
    back.frames_in("lobby", 1).await;
    let entities: Vec<u64> = back.mirrors["lobby"].world().entities().map(|e| e.id()).collect();
    assert_eq!(entities, [5], "the entity moved with the room");
}

/// A node that starts just after Redis came back from a stall (every lease lapsed)
/// does not take a configured room that a live node runs: it waits for the directory
/// to settle, as any claim does, and the room's node takes it back at its next
/// renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starting_after_a_redis_stall_leaves_a_live_nodes_configured_room_alone() {
    let cluster = TestCluster::start();
    // Long leases: the stall's aftermath below lasts until a's next renewal (a third
    // of one), and b's wait for the directory to settle (a whole one) outlasts it.
    let lobby = |config: &mut tickrelay::config::Config| {
        config.cluster.checkpoint_ticks = 1;
        config.cluster.lease_ms = 20_000;
        config.rooms.push(tickrelay::config::PrecreatedRoom {
            id: "lobby".into(),
            room_type: "relay".into(),
            metadata: Default::default(),
        })
    };
    let a = cluster.node_with(lobby).await;
    let mut player = TestClient::connect(&a).await;
    assert_eq!(join_or_redirect(&mut player, "lobby").await, None);
    create_and_wait(&mut player, "lobby", 5).await;
    two_more_checkpoints(&a).await;
    let prefix = cluster.config(|_| {}).cluster.key_prefix;
    let observer = redis_node_under(&cluster.redis, "observer", LEASE, &prefix).await;
    let owner = observer.locate("lobby").await.unwrap();
    assert!(owner.is_some());
    // As a stall leaves Redis: the room's lease lapsed, the last renewal long ago.
    let mut redis = raw_connection(&cluster.redis).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}room:lobby"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let long_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        - Duration::from_secs(60);
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}renewed-at"))
        .arg(long_ago.as_millis() as u64)
        .query_async(&mut redis)
        .await
        .unwrap();
    let b = cluster.node_with(lobby).await;
    eventually("a takes its room back", async || {
        match observer.locate("lobby").await.unwrap() {
            taken if taken == owner => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(b.metric("tickrelay_rooms_restored_total"), 0, "b took the room");
    assert_eq!(a.metric("tickrelay_rooms_lost_total"), 0, "a lost the room");
}

/// A checkpoint Redis holds but does not give (here a key of another type) is not
/// taken for none: the join is refused `UNAVAILABLE`, the room does not open empty
/// over it, and its claim is released, so once the checkpoint reads again a join on
/// any node restores the room. A seat ticket presented in the refused join is not
/// spent: the join that succeeds takes the seat with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_cannot_be_read_keeps_its_room_closed() {
    let cluster = TestCluster::start();
    let (mut a, b, c) = (cluster.node().await, cluster.node().await, cluster.node().await);
    let mut player = TestClient::connect(&a).await;
    join_or_redirect(&mut player, "world").await;
    create_and_wait(&mut player, "world", 5).await;
    // A client of b's is redirected to a, with a ticket it does not use yet.
    let mut on_b = TestClient::connect(&b).await;
    let member = on_b.welcome.session_id;
    let request_id = on_b.send_join("world", "", "").await;
    let ticket = on_b
        .until(|k| match k {
            Kind::Redirect(r) if r.request_id == request_id => Some(r.seat.clone()),
            _ => None,
        })
        .await;
    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();

    let mut redis = raw_connection(&cluster.redis).await;
    let key = "tickrelay:checkpoint:world";
    let saved: Vec<u8> = redis::cmd("GET").arg(key).query_async(&mut redis).await.unwrap();
    assert!(!saved.is_empty(), "a checkpoint at the hand-off");
    let _: () = redis::cmd("DEL").arg(key).query_async(&mut redis).await.unwrap();
    let _: () = (redis::cmd("HSET").arg(key).arg("not").arg("a checkpoint"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let request_id = on_b.send_join("world", "", &ticket).await;
    let code = on_b
        .until(|k| match k {
            Kind::Error(e) if e.request_id == request_id => Some(e.code),
            Kind::Joined(_) | Kind::Redirect(_) => panic!("answered {k:?}"),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::Unavailable as i32);
    assert_eq!(b.metric("tickrelay_rooms"), 0, "not opened empty");

    let _: () = redis::cmd("DEL").arg(key).query_async(&mut redis).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(saved)
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut on_c = TestClient::connect(&c).await;
    let request_id = on_c.send_join("world", "", &ticket).await;
    let joined = on_c
        .until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(j.clone()),
            _ if matches!(k, Kind::Error(_) | Kind::Redirect(_)) => panic!("answered {k:?}: b kept its claim"),
            _ => None,
        })
        .await;
    assert_eq!(
        joined.member_id, member,
        "the ticket's member: not spent on the refused join"
    );
    on_c.frames_in("world", 1).await;
    let entities: Vec<u64> = on_c.mirrors["world"].world().entities().map(|e| e.id()).collect();
    assert_eq!(entities, [5], "restored");
}

/// A session's resume token is not continued on another node while the session's
/// node lives (the session is live or parked there): 1013, try again later, and the
/// session goes on untouched. Once its node stops, it continues elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_is_not_continued_on_another_node() {
    let cluster = TestCluster::start();
    let (mut a, b) = (cluster.node().await, cluster.node().await);
    let mut player = TestClient::connect(&a).await;
    let (session_id, token) = (player.welcome.session_id, player.welcome.resume_token.clone());
    join_or_redirect(&mut player, "world").await;
    let refused = TestClient::resume_over(&b, Transport::WebSocket, &token).await.err();
    assert_eq!(refused, Some(1013));
    assert_eq!(b.metric("tickrelay_sessions_moved_total"), 0);
    create_and_wait(&mut player, "world", 5).await;

    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();
    let back = TestClient::resume_over(&b, Transport::WebSocket, &token).await.unwrap();
    assert_eq!(back.welcome.session_id, session_id);
}

/// Redis restarted empty while the nodes run: each writes its session records again
/// at its next renewal (a session begun before the restart continues on another node
/// when its node stops), and keeps in use the number of a dead node whose session it
/// continues (a node started after the restart does not hand out that session's id
/// again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_outlive_an_empty_redis_restart() {
    let mut cluster = TestCluster::start();
    let (moved_id, token) = player_of_a_killed_node(&cluster).await;
    let b = cluster.node().await;
    let moved = loop {
        match TestClient::resume_over(&b, Transport::WebSocket, &token).await {
            Ok(moved) => break moved,
            Err(code) => assert_eq!(code, 1013),
        }
        tokio::time::sleep(LEASE / 10).await;
    };
    assert_eq!(moved.welcome.session_id, moved_id);
    let mut c = cluster.node().await;
    let before = TestClient::connect(&c).await;
    let dead_number = moved_id >> 40;
    let c_number = before.welcome.session_id >> 40;

    tokio::task::block_in_place(|| cluster.redis.restart());
    let mut redis = raw_connection(&cluster.redis).await;
    tickrelay_testkit::eventually("the nodes' renewals after the restart", || {
        let mut redis = redis.clone();
        async move {
            let in_use: Option<u64> = redis::cmd("ZSCORE")
                .arg("tickrelay:numbers-in-use")
                .arg(dead_number)
                .query_async(&mut redis)
                .await
                .map_err(|e| e.to_string())?;
            let records: u64 = redis::cmd("HLEN")
                .arg(format!("tickrelay:sessions:{c_number}"))
                .query_async(&mut redis)
                .await
                .map_err(|e| e.to_string())?;
            // One session: its record and its user.
            if in_use.is_some() && records == 2 {
                Ok(())
            } else {
                Err(format!("{in_use:?}, {records}"))
            }
        }
    })
    .await;
    // The next node start would get the dead node's number, if it were free.
    next_start_draws(&mut redis, "tickrelay:", dead_number).await;
    let d = cluster.node().await;
    let on_d = TestClient::connect(&d).await;
    assert_ne!(
        on_d.welcome.session_id >> 40,
        dead_number,
        "the moved session's number is in use"
    );
    drop(moved);

    c.shutdown.cancel();
    c.task.take().unwrap().await.unwrap();
    let after = TestClient::resume_over(&b, Transport::WebSocket, &before.welcome.resume_token).await;
    let after = after.expect("the session begun before the restart continues");
    assert_eq!(after.welcome.session_id, before.welcome.session_id);
}

/// A player on a node that is killed once the player's entity 5 (its input 1) of room
/// "world" is in a checkpoint; returns its session id and resume token.
async fn player_of_a_killed_node(cluster: &TestCluster) -> (u64, String) {
    // A checkpoint every 100 ms at 60 Hz.
    let mut a = cluster.killable_node(|c| c.cluster.checkpoint_ticks = 6).await;
    let mut player = TestClient::connect(&a.server).await;
    let (session_id, token) = (player.welcome.session_id, player.welcome.resume_token.clone());
    join_or_redirect(&mut player, "world").await;
    create_and_wait(&mut player, "world", 5).await;
    // The entity is in a checkpoint once two more were written after it.
    let written = a.server.metric("tickrelay_checkpoints_written_total");
    a.server
        .wait_for_metric("tickrelay_checkpoints_written_total", written + 2)
        .await;
    a.kill();
    (session_id, token)
}

/// A node killed mid-game (no hand-off): its rooms open again on another node once
/// their leases lapse, from their last checkpoint, and its sessions continue there
/// with their session ids, taking back their seats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_and_its_members_survive_their_node_being_killed() {
    survive_a_kill(TestCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_and_its_members_survive_their_node_being_killed_on_a_redis_cluster() {
    survive_a_kill(TestCluster::start_on_redis_cluster()).await;
}

async fn survive_a_kill(cluster: TestCluster) {
    let (session_id, token) = player_of_a_killed_node(&cluster).await;
    let b = cluster.node().await;

    // The player comes back on b with its resume token: the same session id, a new
    // session (its rooms to join again). Until a's own lease lapses, b cannot tell a
    // dead and answers 1013 (try again later), as a client reconnecting does.
    let mut back = loop {
        match TestClient::resume_over(&b, Transport::WebSocket, &token).await {
            Ok(back) => break back,
            Err(code) => assert_eq!(code, 1013),
        }
        tokio::time::sleep(LEASE / 10).await;
    };
    assert_eq!((back.welcome.session_id, back.welcome.resumed), (session_id, false));
    assert_ne!(back.welcome.resume_token, token, "a token of b's");
    assert_eq!(b.metric("tickrelay_sessions_moved_total"), 1);
    join_until_open(&mut back, "world").await;
    back.frames_in("world", 1).await;
    let world = back.mirrors["world"].world();
    let entities: Vec<(u64, u64)> = world.entities().map(|e| (e.id(), e.owner())).collect();
    assert_eq!(entities, [(5, session_id)], "restored, and still the player's");
    assert_eq!(
        back.mirrors["world"].last_input_seq(),
        1,
        "its seat, with its applied input"
    );
    assert_eq!(b.metric("tickrelay_rooms_restored_total"), 1);
    // It goes on playing: its next input (seq 2) creates an entity it owns.
    let seq = back
        .input_with_seq("world", 2, tickrelay_testkit::create_entity(6))
        .await;
    back.applied("world", seq).await;
    back.frames_in("world", 1).await;
    assert_eq!(
        back.mirrors["world"].world().get(6).map(|e| e.owner()),
        Some(session_id)
    );
    // A token is taken once.
    assert!(TestClient::resume_over(&b, Transport::WebSocket, &token).await.is_err());
}

/// A session of a dead node presented by another user is refused (4504) without
/// ending it: its own user continues it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_resume_token_does_not_end_its_session() {
    let cluster = TestCluster::start();
    let mut a = cluster.killable_node(jwt_replacing).await;
    let b = cluster.node_with(jwt_replacing).await;
    let alice = TestClient::connect_quic(&a.server, &user_token("alice"), "")
        .await
        .unwrap();
    let (session_id, token) = (alice.welcome.session_id, alice.welcome.resume_token.clone());
    a.kill();
    // Until a's lease lapses, b answers 1013 (a may live).
    let resume_as = async |user: &str| loop {
        match TestClient::connect_quic(&b, &user_token(user), &token).await {
            Err((1013, _)) => tokio::time::sleep(LEASE / 10).await,
            other => return other.map(|c| c.welcome.session_id).map_err(|(code, _)| code),
        }
    };
    assert_eq!(resume_as("mallory").await, Err(4504));
    assert_eq!(resume_as("alice").await, Ok(session_id), "alice's session, still there");
}

/// A rolling restart loses nothing: the stopping node checkpoints its rooms with
/// every input applied, tells its sessions where to go, and they continue on that
/// node with their seats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing() {
    rolling_restart(TestCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing_on_a_redis_cluster() {
    rolling_restart(TestCluster::start_on_redis_cluster()).await;
}

async fn rolling_restart(cluster: TestCluster) {
    // No periodic checkpoints: only the one taken when the node stops.
    let mut a = cluster.node_with(|c| c.cluster.checkpoint_ticks = 0).await;
    let b = cluster.node().await;
    let mut player = TestClient::connect(&a).await;
    let (session_id, token) = (player.welcome.session_id, player.welcome.resume_token.clone());
    join_or_redirect(&mut player, "world").await;
    for id in 1..=5 {
        create_and_wait(&mut player, "world", id).await;
    }
    let mut over_quic = TestClient::connect_over(&a, Transport::Quic).await;
    join_or_redirect(&mut over_quic, "world").await;
    cluster.wait_for_live_nodes(2).await;
    a.shutdown.cancel();
    // Told where to continue (the one live node), then closed: over either transport.
    // Both read at once, as clients do (a QUIC connection closes half a second after
    // its last words whether or not they were read).
    let told = async |client: &mut TestClient| {
        let going = loop {
            if let Some(Kind::GoingAway(going)) = client.next().await.kind {
                break going;
            }
        };
        (going.url, client.close_frame().await.0)
    };
    let (ws, quic) = tokio::join!(told(&mut player), told(&mut over_quic));
    // Over QUIC, to b's QUIC endpoint (`[cluster] quic_redirects`, on by default).
    let expected = [format!("wss://{}/ws", b.addr), format!("quic://{}", b.addr)];
    assert_eq!([ws, quic], expected.map(|url| (url, 1001)));
    a.task.take().unwrap().await.unwrap();

    let mut back = TestClient::resume_over(&b, Transport::WebSocket, &token).await.unwrap();
    assert_eq!(back.welcome.session_id, session_id);
    assert_eq!(join_handed_off(&mut back, "world", "").await, None, "restored on b");
    back.frames_in("world", 1).await;
    let mirror = &back.mirrors["world"];
    let owned: Vec<u64> = (mirror.world().entities())
        .filter(|e| e.owner() == session_id)
        .map(|e| e.id())
        .collect();
    assert_eq!(owned, [1, 2, 3, 4, 5], "every input applied before the stop");
    assert_eq!(mirror.last_input_seq(), 5);
}

/// Events a stopping node still owes a member flooded past its per-tick share go with
/// the room: the member gets every one, once and in order, part from the node that
/// stopped and the rest from the node its room moved to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_owed_at_a_hand_off_follow_the_room() {
    let cluster = TestCluster::start();
    let setup = |c: &mut tickrelay::config::Config| {
        c.api.token = Some("backend-secret".into());
        // A tick a second: the flood outlasts the hand-off's last ticks.
        let mut slow = c.room_types["relay"].clone();
        slow.tick_rate = 1;
        c.room_types.insert("slow".into(), slow);
    };
    let (mut a, b) = (cluster.node_with(setup).await, cluster.node_with(setup).await);
    let mut player = TestClient::connect(&a).await;
    let token = player.welcome.resume_token.clone();
    assert_eq!(join_typed_or_redirect(&mut player, "hall", "slow").await, None);
    player.frames_in("hall", 1).await;
    cluster.wait_for_live_nodes(2).await;
    // 30 of 16 KB, to the one member: four a tick fit its share.
    const EVENTS: usize = 30;
    let auth = "Authorization: Bearer backend-secret\r\n";
    for n in 0..EVENTS {
        let path = format!("/rooms/hall/events?kind=e{n}");
        let (status, answer) = a.https_request("POST", &path, auth, &[b'x'; 16 * 1024]).await;
        assert_eq!(status, 202, "{answer}");
    }
    a.shutdown.cancel();
    let mut kinds = Vec::new();
    loop {
        match player.next().await.kind {
            Some(Kind::Event(event)) => kinds.push(event.kind),
            Some(Kind::GoingAway(_)) => break,
            _ => {}
        }
    }
    let before = kinds.len();
    a.task.take().unwrap().await.unwrap();
    let mut back = TestClient::resume_over(&b, Transport::WebSocket, &token).await.unwrap();
    assert_eq!(join_handed_off(&mut back, "hall", "slow").await, None);
    while kinds.len() < EVENTS {
        kinds.push(back.next_event().await.kind);
    }
    assert!(
        before < EVENTS,
        "some were still owed at the hand-off ({before} came before)"
    );
    let expected: Vec<String> = (0..EVENTS).map(|n| format!("e{n}")).collect();
    assert_eq!(kinds, expected);
}

/// Entities of an owner-only kind move with their room when its node stops: each
/// member, resumed on the next node, holds its own again and never the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_entities_move_with_their_room_and_stay_hidden() {
    let cluster = TestCluster::start();
    let hidden = |c: &mut tickrelay::config::Config| {
        let relay = c.room_types.get_mut("relay").unwrap();
        relay.kinds.push(tickrelay::config::KindConfig {
            kind: 1,
            name: "card".into(),
            fields: vec![],
            owner_only: true,
        });
        c.cluster.checkpoint_ticks = 0; // only the one taken when the node stops
    };
    let mut a = cluster.node_with(hidden).await;
    let b = cluster.node_with(hidden).await;
    let mut players = [TestClient::connect(&a).await, TestClient::connect(&a).await];
    for (player, card) in players.iter_mut().zip([7, 8]) {
        join_or_redirect(player, "table").await;
        create_and_wait(player, "table", card).await;
    }
    let tokens = players
        .each_ref()
        .map(|p| (p.welcome.session_id, p.welcome.resume_token.clone()));
    cluster.wait_for_live_nodes(2).await;
    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();
    for ((session_id, token), card) in tokens.into_iter().zip([7, 8]) {
        let mut back = TestClient::resume_over(&b, Transport::WebSocket, &token).await.unwrap();
        assert_eq!(back.welcome.session_id, session_id);
        assert_eq!(join_handed_off(&mut back, "table", "").await, None, "restored on b");
        back.frames_in("table", 1).await;
        let mirror = &back.mirrors["table"];
        let held: Vec<u64> = mirror.world().entities().map(|e| e.id()).collect();
        assert_eq!(held, [card], "its own card, and not the other's");
    }
    assert_eq!(b.metric("tickrelay_rooms_restored_total"), 1);
}

/// Two live nodes with one id would take each other's rooms for their own: the second
/// is refused at start, saying why. So is a node other machines could not reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_in_use_or_an_unreachable_public_url_is_refused_at_start() {
    let cluster = TestCluster::start();
    let _first = cluster.node_with(|c| c.cluster.node_id = Some("relay-1".into())).await;
    let mut config = tickrelay::config::Config::loopback(60);
    config.cluster.redis_url = Some(cluster.redis.url());
    config.cluster.node_id = Some("relay-1".into());
    let error = tickrelay::server::Server::bind(config.clone())
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("another node with id `relay-1`"), "{error}");

    config.cluster.node_id = None;
    config.listen = "0.0.0.0:0".parse().unwrap();
    let error = tickrelay::server::Server::bind(config).await.expect_err("refused");
    assert!(error.to_string().contains("public_url"), "{error}");
}

/// A member whose session continued on one node while its room was restored on
/// another is redirected there with a seat ticket, and takes its seat back: the same
/// member id, its entities, its applied inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_member_takes_its_kept_seat_back_with_its_ticket() {
    let cluster = TestCluster::start();
    let (session_id, token) = player_of_a_killed_node(&cluster).await;
    let (b, c) = (cluster.node().await, cluster.node().await);
    // Someone on c opens the room there first.
    let mut other = TestClient::connect(&c).await;
    join_until_open(&mut other, "world").await;
    // The player continues on b, is redirected to c with a ticket, and joins there.
    let mut on_b = TestClient::resume_over(&b, Transport::WebSocket, &token).await.unwrap();
    let request_id = on_b.send_join("world", "", "").await;
    let redirect = on_b
        .until(|k| match k {
            Kind::Redirect(r) if r.request_id == request_id => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(redirect.url, node_url(&c));
    assert!(!redirect.seat.is_empty(), "a seat ticket");
    let mut on_c = TestClient::connect(&c).await;
    assert_ne!(on_c.welcome.session_id, session_id, "a session of c's own");
    let request_id = on_c.send_join("world", "", &redirect.seat).await;
    let joined = on_c
        .until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(j.clone()),
            Kind::Error(e) if e.request_id == request_id => panic!("{e:?}"),
            _ => None,
        })
        .await;
    assert_eq!(
        (joined.member_id, joined.last_input_seq),
        (session_id, 1),
        "its kept seat"
    );
    on_c.frames_in("world", 1).await;
    let owned: Vec<u64> = (on_c.mirrors["world"].world().entities())
        .filter(|e| e.owner() == session_id)
        .map(|e| e.id())
        .collect();
    assert_eq!(owned, [5]);
    // Its next input (seq 2) is applied as that member.
    let seq = on_c
        .input_with_seq("world", 2, tickrelay_testkit::create_entity(6))
        .await;
    on_c.applied("world", seq).await;
    // A ticket is used once: presented again, it is a join as c's own session.
    let mut again = TestClient::connect(&c).await;
    let id = again.welcome.session_id;
    again.send_join("world", "", &redirect.seat).await;
    let joined = again
        .until(|k| match k {
            Kind::Joined(j) => Some(j.member_id),
            _ => None,
        })
        .await;
    assert_eq!(joined, id);
}

/// A configured room stays open while empty on whichever node holds it: also when a
/// join restores it on another node after its first node stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_room_stays_persistent_when_it_moves() {
    let cluster = TestCluster::start();
    let configured = |c: &mut tickrelay::config::Config| {
        c.empty_room_ttl_secs = 1;
        c.rooms = vec![tickrelay::config::PrecreatedRoom {
            id: "lobby".into(),
            room_type: "relay".into(),
            metadata: Default::default(),
        }];
    };
    let mut a = cluster.node_with(configured).await;
    let b = cluster.node_with(configured).await;
    // The room thread counts the room when it opens it, just after the start.
    a.wait_for_metric("tickrelay_rooms", 1).await;
    assert_eq!(
        (a.metric("tickrelay_rooms"), b.metric("tickrelay_rooms")),
        (1, 0),
        "one node holds it"
    );
    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();
    let mut player = TestClient::connect(&b).await;
    assert_eq!(join_handed_off(&mut player, "lobby", "").await, None);
    player.close_normally().await;
    // Empty for twice its empty-room TTL: this sleep is the scenario.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(b.metric("tickrelay_rooms"), 1, "still open");
}

fn ids(rooms: &[proto::RoomInfo]) -> Vec<&str> {
    rooms.iter().map(|r| r.room.as_str()).collect()
}

/// A quick join's answer on a raw client: the room joined, or the redirect.
async fn quick_join_or_redirect(client: &mut TestClient, mode: &str) -> Result<String, proto::Redirect> {
    let request_id = client.request_id();
    let quick = proto::QuickJoin {
        request_id,
        filters: [("mode".to_string(), mode.to_string())].into(),
        ..Default::default()
    };
    client.send(vec![proto::client_message::Kind::QuickJoin(quick)]).await;
    client
        .until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(Ok(j.room.clone())),
            Kind::Redirect(r) if r.request_id == request_id => Some(Err(r.clone())),
            Kind::Error(e) if e.request_id == request_id => panic!("quick join refused: {e:?}"),
            _ => None,
        })
        .await
}

/// A client of `node` that quick-joined `mode=ctf` there (none open: it created the
/// room, and owns it), and the room.
async fn ctf_room_on(node: &TestServer) -> (TestClient, String) {
    let mut owner = TestClient::connect(node).await;
    let quick = proto::QuickJoin {
        filters: [("mode".to_string(), "ctf".to_string())].into(),
        ..Default::default()
    };
    let room = owner.quick_join(quick).await.unwrap().room;
    (owner, room)
}

/// Quick joins find open rooms on other nodes (redirected there with a seat ticket,
/// refused there when the room was locked since), create one on the node asked when
/// none matches, and skip rooms locked since; filtered listings span the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_joins_and_filtered_listings_span_the_nodes() {
    let cluster = TestCluster::start();
    let (a, b) = (cluster.node().await, cluster.node().await);
    let (mut owner, ctf) = ctf_room_on(&a).await;
    // On b: nothing open there, so a's room, through a redirect.
    let mut on_b = TestClient::connect(&b).await;
    let redirect = quick_join_or_redirect(&mut on_b, "ctf").await.unwrap_err();
    assert_eq!(
        (redirect.room.as_str(), redirect.url.clone()),
        (ctf.as_str(), node_url(&a))
    );
    let mut followed = TestClient::connect(&a).await;
    let request_id = followed.send_join(&ctf, "", &redirect.seat).await;
    let joined = followed
        .until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(j.member_id),
            _ => None,
        })
        .await;
    assert_eq!(joined, on_b.welcome.session_id, "the redirected member's id");
    // Other filters: created on b.
    let dm = quick_join_or_redirect(&mut on_b, "dm").await.unwrap();
    let listed = |mode: &str| proto::ListRooms {
        filters: [("mode".to_string(), mode.to_string())].into(),
        open_only: true,
        ..Default::default()
    };
    let rooms = on_b.list_rooms_where(listed("dm")).await;
    assert_eq!(ids(&rooms), [dm.as_str()]);
    let open = on_b.list_rooms_where(listed("ctf")).await;
    assert_eq!(ids(&open), [ctf.as_str()], "open before the lock");
    // A redirect to the room, then the owner locks it: the redirect is followed
    // before the directory knows, and refused as full (a locked room takes no quick
    // joiner); a plain join by id still goes in.
    let mut late = TestClient::connect(&b).await;
    let redirect = quick_join_or_redirect(&mut late, "ctf").await.unwrap_err();
    assert_eq!(redirect.room, ctf);
    let lock = proto::UpdateRoom {
        room: ctf.clone(),
        lock: proto::RoomLock::Locked as i32,
        ..Default::default()
    };
    assert!(owner.update_room(lock).await.unwrap().locked);
    let mut following = TestClient::connect(&a).await;
    let request_id = following.send_join(&ctf, "", &redirect.seat).await;
    let answer = following
        .until(|k| match k {
            Kind::Joined(j) if j.request_id == request_id => Some(Err(j.room.clone())),
            Kind::Error(e) if e.request_id == request_id => Some(Ok(e.code)),
            _ => None,
        })
        .await;
    assert_eq!(answer, Ok(proto::ErrorCode::RoomFull as i32));
    assert_eq!(join_or_redirect(&mut following, &ctf).await, None);
    // Once a renews it, quick joins pass it by.
    let deadline = Instant::now() + 4 * LEASE;
    while !on_b.list_rooms_where(listed("ctf")).await.is_empty() {
        assert!(Instant::now() < deadline, "the lock never reached the directory");
        tokio::time::sleep(LEASE / 10).await;
    }
    let created = created_past(&mut on_b, &ctf).await;
    assert_ne!(created, ctf);
}

/// How often a [`renewing_slowly`] node renews its rooms (a third of its lease).
const SLOW_RENEWALS: Duration = Duration::from_millis(1_500);

/// A node that renews every [`SLOW_RENEWALS`] rather than every 500 ms: what held
/// only between two renewals is in the directory from the next renewal to the one
/// after, and a test polling for it (a round trip and 75 ms a look) must not miss
/// that on a loaded machine.
fn renewing_slowly(config: &mut tickrelay::config::Config) {
    config.cluster.lease_ms = 3 * SLOW_RENEWALS.as_millis() as u64;
}

/// A room locked for a moment between two renewals of its node is listed locked at
/// the next (then open again): one locked but for the moments of its renewals is never
/// open in the directory, so quick joins elsewhere are not sent to a join it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_locked_between_renewals_is_listed_locked_at_the_next() {
    let cluster = TestCluster::start();
    let (a, b) = (cluster.node_with(renewing_slowly).await, cluster.node().await);
    let (mut owner, ctf) = ctf_room_on(&a).await;
    let mut on_b = TestClient::connect(&b).await;
    let mut locked_in_directory = async || -> bool {
        let rooms = on_b.list_rooms_where(proto::ListRooms::default()).await;
        rooms.iter().find(|r| r.room == ctf).expect("listed").locked
    };
    // Through a renewal at least.
    let settled = Instant::now() + SLOW_RENEWALS + SLOW_RENEWALS / 4;
    while Instant::now() < settled {
        assert!(!locked_in_directory().await, "never locked yet");
        tokio::time::sleep(LEASE / 10).await;
    }
    for lock in [proto::RoomLock::Locked, proto::RoomLock::Unlocked] {
        let update = proto::UpdateRoom {
            room: ctf.clone(),
            lock: lock as i32,
            ..Default::default()
        };
        owner.update_room(update).await.unwrap();
    }
    let deadline = Instant::now() + 3 * SLOW_RENEWALS;
    while !locked_in_directory().await {
        assert!(
            Instant::now() < deadline,
            "the moment's lock never reached the directory"
        );
        tokio::time::sleep(LEASE / 20).await;
    }
    let deadline = Instant::now() + 3 * SLOW_RENEWALS;
    while locked_in_directory().await {
        assert!(Instant::now() < deadline, "listed locked for good");
        tokio::time::sleep(LEASE / 20).await;
    }
}

/// A room whose metadata changes and changes back between two renewals of its node is
/// not found by that entry after the next (then found again): one that matches a
/// search but for the moments of its renewals is never sent quick joins it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_metadata_flickers_between_renewals_is_not_found_by_it() {
    let cluster = TestCluster::start();
    let a = cluster.node_with(renewing_slowly).await;
    let (mut owner, room) = ctf_room_on(&a).await;
    let ctf: Metadata = [("mode".to_string(), "ctf".to_string())].into();
    let observer = cluster.directory_as("observer", "").await;
    let found = async || observer.open_room_ids("relay", &ctf, 10).await.unwrap() == [room.as_str()];
    // Through a renewal at least.
    let settled = Instant::now() + SLOW_RENEWALS + SLOW_RENEWALS / 4;
    while Instant::now() < settled {
        assert!(found().await, "found while its metadata holds");
        tokio::time::sleep(LEASE / 10).await;
    }
    for mode in ["dm", "ctf"] {
        let update = proto::UpdateRoom {
            room: room.clone(),
            metadata: [("mode".to_string(), mode.to_string())].into(),
            ..Default::default()
        };
        owner.update_room(update).await.unwrap();
    }
    let deadline = Instant::now() + 3 * SLOW_RENEWALS;
    while found().await {
        assert!(Instant::now() < deadline, "still found by the entry that flickered");
        tokio::time::sleep(LEASE / 20).await;
    }
    let deadline = Instant::now() + 3 * SLOW_RENEWALS;
    while !found().await {
        assert!(Instant::now() < deadline, "never found again");
        tokio::time::sleep(LEASE / 20).await;
    }
}

/// Open rooms on other nodes that a quick join's filters do not match, fuller than
/// the one that does and more than a search looks at, do not hide it: the directory
/// finds open rooms by metadata entry, and intersects the entries of several filters
/// (rooms matching each filter but not all, thousands of each, hide none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_join_finds_a_match_behind_many_fuller_open_rooms_elsewhere() {
    let cluster = TestCluster::start();
    let (a, b) = (cluster.node().await, cluster.node().await);
    let mut owner = TestClient::connect(&a).await;
    let request_id = owner.request_id();
    let metadata = |mode: &str, map: &str| -> Metadata {
        [
            ("mode".to_string(), mode.to_string()),
            ("map".to_string(), map.to_string()),
        ]
        .into()
    };
    let create = proto::RoomOptions {
        metadata: metadata("ctf", "canyon"),
        ..Default::default()
    };
    let join = proto::JoinRoom {
        request_id,
        room: "a-ctf".into(),
        create: Some(create),
        ..Default::default()
    };
    owner.send(vec![proto::client_message::Kind::Join(join)]).await;
    owner.until(|k| matches!(k, Kind::Joined(_)).then_some(())).await;
    // On a third node (scenery in the directory: no relay behind it), five members
    // each: 2,100 open rooms of the mode on another map, 2,100 of the map in another
    // mode.
    let elsewhere = cluster.directory_as("x", "wss://x.test/ws").await;
    let rooms: Vec<RoomEntry> = (0..4_200)
        .map(|n| {
            let mut room = listed(&format!("x-{n:04}"), 5, "", false);
            room.room_type = "relay".into();
            room.listing.metadata = if n % 2 == 0 {
                metadata("ctf", "dust")
            } else {
                metadata("dm", "canyon")
            };
            room
        })
        .collect();
    for room in &rooms {
        assert_eq!(elsewhere.claim(room).await.unwrap(), Claim::Ours);
    }
    // (Renewed 250 rooms to a script: the node's load counts them all.)
    assert_eq!(elsewhere.renew(&rooms).await.unwrap(), Vec::<String>::new());
    let loads = elsewhere.node_loads().await.unwrap();
    let x = loads.iter().find(|(node, _)| node.id == "x").map(|(_, load)| *load);
    assert_eq!(x, Some(5 * 4_200));
    let mut on_b = TestClient::connect(&b).await;
    let quick_join = async |client: &mut TestClient, filters: Metadata| {
        let request_id = client.request_id();
        let quick = proto::QuickJoin {
            request_id,
            filters,
            ..Default::default()
        };
        client.send(vec![proto::client_message::Kind::QuickJoin(quick)]).await;
        client
            .until(|k| match k {
                Kind::Redirect(r) if r.request_id == request_id => Some(r.room.clone()),
                Kind::Joined(j) if j.request_id == request_id => panic!("created {}", j.room),
                Kind::Error(e) if e.request_id == request_id => panic!("quick join refused: {e:?}"),
                _ => None,
            })
            .await
    };
    assert_eq!(quick_join(&mut on_b, metadata("ctf", "canyon")).await, "a-ctf");
    let ctf: Metadata = [("mode".to_string(), "ctf".to_string())].into();
    assert!(quick_join(&mut on_b, ctf).await.starts_with("x-"), "the fullest first");
}

/// A quick join on one node passes over a room on another node that banned its user
/// (the ban reaches the directory with the owner's next renewal), and creates a room
/// instead of sending the user to a join that would be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_join_passes_over_a_room_elsewhere_that_banned_its_user() {
    let cluster = TestCluster::start();
    let with_api = |c: &mut tickrelay::config::Config| c.api.token = Some("backend-secret".into());
    let (a, b) = (cluster.node_with(with_api).await, cluster.node_with(with_api).await);
    let (_owner, ctf) = ctf_room_on(&a).await;
    let mut banned = TestClient::connect(&b).await;
    let redirect = quick_join_or_redirect(&mut banned, "ctf").await.unwrap_err();
    assert_eq!(redirect.room, ctf, "before the ban");
    let auth = "Authorization: Bearer backend-secret\r\n";
    let path = format!("/rooms/{ctf}/users/{}?ban_secs=600", banned.welcome.user_id);
    let (status, answer) = a.https_request("DELETE", &path, auth, b"").await;
    assert_eq!(status, 202, "{answer}");
    let created = created_past(&mut banned, &ctf).await;
    assert_ne!(created, ctf, "the ban reached the directory");
}

/// Quick-joins `ctf` rooms until one is created (not `passed` any more: the change
/// that rules it out reaches the directory with its owner's next renewal, and a
/// node's quick joins share what they read of the directory for half a second).
async fn created_past(client: &mut TestClient, passed: &str) -> String {
    let deadline = Instant::now() + 4 * LEASE;
    loop {
        match quick_join_or_redirect(client, "ctf").await {
            Ok(created) => return created,
            Err(redirect) => assert_eq!(redirect.room, passed),
        }
        assert!(Instant::now() < deadline, "a quick join still picks {passed}");
        tokio::time::sleep(LEASE / 10).await;
    }
}

/// With `replace`, a user's newer client closes the sessions of the user's older
/// client on every node; sessions presenting the same client id (`?client=`: one
/// client following a redirect to another node) are one client's and stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_closes_a_users_older_client_on_every_node_but_not_its_own_sessions() {
    use futures_util::StreamExt;
    let cluster = TestCluster::start();
    let replacing = |c: &mut tickrelay::config::Config| {
        jwt_replacing(c);
        c.api.token = Some("backend-secret".into());
    };
    let (a, b) = (cluster.node_with(replacing).await, cluster.node_with(replacing).await);
    // The nodes' announcements of sessions going live, heard as the nodes hear them.
    let prefix = cluster.config(|_| {}).cluster.key_prefix;
    let client = redis::Client::open(cluster.redis.url()).unwrap();
    let mut announcements = client.get_async_pubsub().await.unwrap();
    announcements.subscribe(format!("{prefix}users")).await.unwrap();
    let mut announcements = announcements.into_on_message();
    let bearer = format!("Bearer {}", user_token("erin"));
    let headers = [("authorization", bearer.as_str())];
    let mut home = TestClient::connect_with(&a, "client=phone", &headers).await.unwrap();
    home.join("here", "").await;
    let mut second = TestClient::connect_with(&b, "client=phone", &headers).await.unwrap();
    second.join("there", "").await;
    // b's announcement of `second` must reach a (which spares the same client's
    // session) before `home` joins again. Redis delivers to a subscriber in the order
    // of publishing, and a handles what it receives in order: once both announcements
    // are published (heard here), an event published through b reaches `home` only
    // after a handled them.
    for _ in 0..2 {
        let announced = tokio::time::timeout(tickrelay_testkit::WAIT, announcements.next()).await;
        announced.expect("a session's announcement").expect("subscribed");
    }
    let auth = "Authorization: Bearer backend-secret\r\n";
    let (status, answer) = b
        .https_request("POST", "/rooms/here/events?kind=after", auth, b"")
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(home.next_event().await.kind, "after");
    home.join("still-here", "").await;
    let mut newer = TestClient::connect_with(&b, "client=laptop", &headers).await.unwrap();
    assert_eq!(home.close_frame().await.0, 4002, "replaced from the other node");
    assert_eq!(second.close_frame().await.0, 4002, "the old client's other session too");
    newer.join("mine-now", "").await;
}

/// A private room whose node died is restored elsewhere as private: never listed, not
/// even between the claim that restores it and the first renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_room_restored_elsewhere_stays_unlisted() {
    let cluster = TestCluster::start();
    let mut a = cluster.killable_node(|c| c.cluster.checkpoint_ticks = 6).await;
    let mut owner = TestClient::connect(&a.server).await;
    let join = proto::JoinRoom {
        request_id: 1,
        room: "hideout".into(),
        create: Some(proto::RoomOptions {
            private: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    owner.send(vec![proto::client_message::Kind::Join(join)]).await;
    owner.until(|k| matches!(k, Kind::Joined(_)).then_some(())).await;
    let written = a.server.metric("tickrelay_checkpoints_written_total");
    a.server
        .wait_for_metric("tickrelay_checkpoints_written_total", written + 2)
        .await;
    a.kill();
    let b = cluster.node().await;
    let mut on_b = TestClient::connect(&b).await;
    join_until_open(&mut on_b, "hideout").await;
    assert_eq!(b.metric("tickrelay_rooms_restored_total"), 1);
    let listed = on_b.list_rooms(100).await;
    assert!(listed.iter().all(|r| r.room != "hideout"), "{listed:?}");
}
