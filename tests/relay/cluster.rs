//! The room directory (`tickrelay::cluster`): the same checks on the memory directory
//! (manual clock) and on a real `redis-server` (real time, short leases), and a claim
//! race between nodes on Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tickrelay::cluster::{Claim, Directory, MemoryDirectory, RedisDirectory};
use tickrelay_testkit::directory::{self, entry, node};
use tickrelay_testkit::redis::RedisServer;

/// Long enough that a loaded machine renews in time, short enough to wait out.
const REDIS_LEASE: Duration = Duration::from_millis(600);
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
    RedisDirectory::connect(&redis.url(), node(id), lease, "test:")
        .await
        .unwrap()
}

/// Nodes "a" and "b" on a fresh Redis; real time passes.
async fn redis() -> (RedisServer, RedisDirectory, RedisDirectory) {
    let server = RedisServer::start();
    let a = redis_node(&server, "a").await;
    let b = redis_node(&server, "b").await;
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
    let (_redis, a, b) = redis().await;
    directory::a_room_has_one_owner(&a, &b).await;
}

#[tokio::test]
async fn redis_leases_lapse_unless_renewed() {
    let (_redis, a, b) = redis().await;
    directory::leases_lapse_unless_renewed(&a, &b, REDIS_LEASE, async |d| tokio::time::sleep(d).await).await;
}

#[tokio::test]
async fn redis_listings_page_and_expire() {
    let (_redis, a, b) = redis().await;
    directory::listings_page_and_expire(&a, &b, REDIS_LEASE, async |d| tokio::time::sleep(d).await).await;
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

/// Redis unreachable at start is a clear error naming where it was looked for.
#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let error = RedisDirectory::connect(&url, node("a"), REDIS_LEASE, "test:")
        .await
        .err()
        .expect("nothing listens there");
    assert!(
        error.to_string().contains(&format!("cannot reach Redis at {url}")),
        "{error}"
    );
}
