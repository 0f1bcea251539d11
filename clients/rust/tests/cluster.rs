//! The client against relay nodes of one cluster (a real `redis-server`): it follows
//! redirects by itself, and when the node holding its room stops, it joins the room
//! again through the node it was configured with.

use std::time::Duration;

use tickrelay_client::{Backoff, Client, ClientConfig, Event, Trust, proto};
use tickrelay_testkit::cluster::{Killable, TestCluster, jwt_replacing, user_token, user_token_for};
use tickrelay_testkit::{TestServer, Transport, create_entity};
use tokio::sync::mpsc::Receiver;

mod common;
use common::until;

fn config(relay: &TestServer) -> ClientConfig {
    let mut config = ClientConfig::new(relay.url(Transport::WebSocket), Trust::CertPem(relay.cert_pem.clone()));
    config.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        max_attempts: Some(5),
    };
    config
}

/// Waits for `room`'s `Joined`; an error fails the test, except `UNAVAILABLE` (a join
/// while the room's dead node still holds its lease: the client joins again).
async fn joined(events: &mut Receiver<Event>, room: &str) {
    until(events, |e| match e {
        Event::Joined(j) if j.room == room => Some(()),
        Event::Error(e) if e.code != proto::ErrorCode::Unavailable as i32 => panic!("{e:?}"),
        _ => None,
    })
    .await;
}

/// Waits for `room`'s redirect: the URL the client followed.
async fn redirected(events: &mut Receiver<Event>, room: &str) -> String {
    until(events, |e| match e {
        Event::Redirected { room: redirected, url } if redirected == room => Some(url.clone()),
        _ => None,
    })
    .await
}

/// Waits for the next connection: its session id and whether it was resumed.
async fn connected(events: &mut Receiver<Event>) -> (u64, bool) {
    until(events, |e| match e {
        Event::Connected {
            session_id, resumed, ..
        } => Some((*session_id, *resumed)),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_redirects_and_moves_with_its_room() {
    let cluster = TestCluster::start();
    let (mut a, b) = (cluster.node().await, cluster.node().await);
    let (owner, mut owner_events) = Client::connect(config(&a)).unwrap();
    let owner_session = connected(&mut owner_events).await;
    owner.join("lobby", "");
    joined(&mut owner_events, "lobby").await;

    // Configured with b: the join is redirected to a and joined there, and an event
    // sent before the join is answered goes with it (not to b, which would refuse it).
    let (client, mut events) = Client::connect(config(&b)).unwrap();
    client.join("lobby", "");
    client.send_event("lobby", "hello", bytes::Bytes::from_static(b"hi"), Vec::new());
    let url = redirected(&mut events, "lobby").await;
    assert_eq!(url, format!("wss://{}/ws", a.addr));
    joined(&mut events, "lobby").await;
    let hello = until(&mut owner_events, |e| match e {
        Event::RoomEvent(event) => Some(event.clone()),
        _ => None,
    })
    .await;
    assert_eq!((hello.kind.as_str(), &hello.payload[..]), ("hello", &b"hi"[..]));
    // Inputs follow the room: the entity appears in both members' mirrors.
    client.send_input("lobby", create_entity(7));
    let has_entity = |c: &Client| c.with_mirror("lobby", |m| m.world().len()) == Some(1);
    eventually_true(|| has_entity(&client) && has_entity(&owner)).await;
    assert_eq!(a.metric("tickrelay_members"), 2);
    assert_eq!(b.metric("tickrelay_members"), 0);

    // a stops: its rooms are checkpointed and released, and the client joins the room
    // again through b, which opens it where it was. The owner, configured with a
    // alone, is told to go to b (`GoingAway`): its session continues there.
    cluster.wait_for_live_nodes(2).await;
    a.shutdown.cancel();
    a.task.take().unwrap().await.unwrap();
    joined(&mut events, "lobby").await;
    assert_eq!(
        connected(&mut owner_events).await,
        (owner_session.0, false),
        "the owner's session, on b"
    );
    joined(&mut owner_events, "lobby").await;
    // The simulation thread counts the member just after it sends `Joined`.
    b.wait_for_metric("tickrelay_members", 2).await;
    assert_eq!(b.metric("tickrelay_members"), 2);
    assert_eq!(b.metric("tickrelay_rooms_restored_total"), 1);
    client.send_input("lobby", create_entity(8));
    let ids = |c: &Client| c.with_mirror("lobby", |m| m.world().entities().map(|e| e.id()).collect::<Vec<_>>());
    eventually_true(|| ids(&client) == Some(vec![7, 8]) && ids(&owner) == Some(vec![7, 8])).await;
    client.close().await;
    owner.close().await;
}

/// A client over QUIC is redirected to the owner's `quic://` URL (nodes serving QUIC
/// at their public URL's port, the default) and plays the room there over QUIC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_client_follows_redirects_over_quic() {
    let cluster = TestCluster::start();
    let (a, b) = (cluster.node().await, cluster.node().await);
    assert_eq!(a.quic_addr.port(), a.addr.port(), "QUIC on the TCP port, as by default");
    let (owner, mut owner_events) = Client::connect(config(&a)).unwrap();
    owner.join("lobby", "");
    joined(&mut owner_events, "lobby").await;

    let mut settings = config(&b);
    settings.url = b.url(Transport::Quic);
    let endpoint = tickrelay_client::quic_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    settings.quic_endpoint = Some(endpoint.clone());
    let (client, mut events) = Client::connect(settings).unwrap();
    client.join("lobby", "");
    let url = redirected(&mut events, "lobby").await;
    assert_eq!(url, format!("quic://{}", a.addr));
    joined(&mut events, "lobby").await;
    client.send_input("lobby", create_entity(7));
    let has_entity = |c: &Client| c.with_mirror("lobby", |m| m.world().len()) == Some(1);
    eventually_true(|| has_entity(&client) && has_entity(&owner)).await;
    assert_eq!(
        endpoint.open_connections(),
        2,
        "home (b) and the room's node, over QUIC"
    );
    client.close().await;
    owner.close().await;
}

/// The node the client was configured with is killed: the client reconnects to the
/// fallback node, continues its session there (same session id), joins its room
/// again once its lease lapsed, and finds the room restored with its own entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_another_node_and_keeps_its_seat() {
    let cluster = TestCluster::start();
    let mut a = cluster.killable_node(|c| c.cluster.checkpoint_ticks = 6).await;
    let b = cluster.node().await;
    let mut settings = config(&a.server);
    settings.fallback_urls = vec![b.url(Transport::WebSocket)];
    settings.ping_interval = Duration::from_millis(100);
    let (client, mut events) = Client::connect(settings).unwrap();
    let (session_id, _) = connected(&mut events).await;
    client.join("world", "");
    joined(&mut events, "world").await;
    client.send_input("world", create_entity(7));
    let ids = |c: &Client| {
        c.with_mirror("world", |m| {
            m.world().entities().map(|e| (e.id(), e.owner())).collect::<Vec<_>>()
        })
    };
    eventually_true(|| ids(&client) == Some(vec![(7, session_id)])).await;
    let written = a.server.metric("tickrelay_checkpoints_written_total");
    a.server
        .wait_for_metric("tickrelay_checkpoints_written_total", written + 2)
        .await;

    a.kill();
    assert_eq!(
        connected(&mut events).await,
        (session_id, false),
        "the same session id, on b"
    );
    joined(&mut events, "world").await;
    eventually_true(|| ids(&client) == Some(vec![(7, session_id)])).await;
    client.send_input("world", create_entity(8));
    eventually_true(|| ids(&client) == Some(vec![(7, session_id), (8, session_id)])).await;
    assert_eq!(b.metric("tickrelay_rooms_restored_total"), 1);
    client.close().await;
}

/// A client at home on node `b` whose room "world" lives on node `a` (reached by a
/// redirect): the client's entity 7 is in two of a's checkpoints since, and the
/// room's first member has left.
struct RoomElsewhere {
    a: Killable,
    b: TestServer,
    client: Client,
    events: Receiver<Event>,
    /// The client's member id (its home session's).
    member: u64,
}

async fn room_elsewhere(cluster: &TestCluster) -> RoomElsewhere {
    let a = cluster.killable_node(|c| c.cluster.checkpoint_ticks = 6).await;
    let b = cluster.node().await;
    let (owner, mut owner_events) = Client::connect(config(&a.server)).unwrap();
    owner.join("world", "");
    joined(&mut owner_events, "world").await;
    let mut settings = config(&b);
    settings.backoff.initial = Duration::from_millis(10);
    settings.backoff.max = Duration::from_millis(20);
    let (client, mut events) = Client::connect(settings).unwrap();
    let (member, _) = connected(&mut events).await;
    client.join("world", "");
    redirected(&mut events, "world").await;
    joined(&mut events, "world").await;
    client.send_input("world", create_entity(7));
    eventually_true(|| owners(&client) == Some(vec![(7, member)])).await;
    let written = a.server.metric("tickrelay_checkpoints_written_total");
    a.server
        .wait_for_metric("tickrelay_checkpoints_written_total", written + 2)
        .await;
    drop(owner);
    RoomElsewhere {
        a,
        b,
        client,
        events,
        member,
    }
}

/// The entities of the client's mirror of "world", with their owners.
fn owners(client: &Client) -> Option<Vec<(u64, u64)>> {
    client.with_mirror("world", |m| {
        m.world().entities().map(|e| (e.id(), e.owner())).collect::<Vec<_>>()
    })
}

/// The node holding the client's room (not the client's own node) is killed: the
/// room comes back home, and the redirects home answers while the dead node's lease
/// lasts are waited out, not followed (a fast backoff gives the room back within a
/// fraction of the lease: followed, they were more than the client's hop limit), so
/// the client ends in the room restored at home, with its entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_node_killed_the_room_comes_home_and_is_joined_again() {
    let cluster = TestCluster::start();
    let RoomElsewhere {
        mut a,
        b,
        client,
        mut events,
        ..
    } = room_elsewhere(&cluster).await;
    let ids = |c: &Client| c.with_mirror("world", |m| m.world().entities().map(|e| e.id()).collect::<Vec<_>>());
    a.kill();
    joined(&mut events, "world").await;
    eventually_true(|| ids(&client) == Some(vec![7])).await;
    assert_eq!(b.metric("tickrelay_rooms_restored_total"), 1);
    client.close().await;
}

/// An event sent while the room's node is down (its connection offline, the room not
/// yet back home) goes with the room: it is relayed once the room is joined again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_while_the_rooms_node_is_down_goes_home_with_the_room() {
    let cluster = TestCluster::start();
    let RoomElsewhere {
        mut a,
        b: _home,
        client,
        mut events,
        member,
    } = room_elsewhere(&cluster).await;
    a.kill();
    let redirected = until(&mut events, |e| match e {
        Event::Disconnected { redirected, .. } => Some(*redirected),
        _ => None,
    })
    .await;
    assert!(redirected, "the connection to the room's node, not the client's own");
    client.send_event("world", "hello", bytes::Bytes::from_static(b"still here"), vec![member]);
    let heard = until(&mut events, |e| match e {
        Event::RoomEvent(event) if event.kind == "hello" => Some(event.payload.clone()),
        _ => None,
    })
    .await;
    assert_eq!(&heard[..], b"still here");
    client.close().await;
}

/// The room's node is killed and another node starts at its address before the
/// client's connection there gives up: that connection reconnects to a new session
/// (continuing its old one), which holds none of the client's seats. Its rooms go
/// home, and the client plays on as the member it was (its entity still its own),
/// not as that connection's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_where_the_rooms_node_was_sends_its_rooms_home() {
    let cluster = TestCluster::start();
    let RoomElsewhere {
        mut a,
        b: _home,
        client,
        mut events,
        member,
    } = room_elsewhere(&cluster).await;
    let address = a.server.addr;
    a.kill();
    // Another node at the same address (and public URL), as soon as it is free.
    while std::net::TcpListener::bind(address).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _again = cluster
        .node_with(|c| {
            c.listen = address;
            c.cluster.node_id = Some("a-again".into());
        })
        .await;
    let joined_as = until(&mut events, |e| match e {
        Event::Joined(j) if j.room == "world" => Some(j.member_id),
        _ => None,
    })
    .await;
    assert_eq!(joined_as, member, "joined again as the member that had the seat");
    eventually_true(|| owners(&client) == Some(vec![(7, member)])).await;
    client.close().await;
}

/// Waits (up to 10 s) for `condition`.
async fn eventually_true(mut condition: impl FnMut() -> bool) {
    tickrelay_testkit::eventually("the mirrors to show the entities", || {
        std::future::ready(if condition() { Ok(()) } else { Err(()) })
    })
    .await
}

/// A quick join on one node finds the open room on another: the client follows the
/// redirect over a second connection whose session accompanies its first, so the
/// relay's `replace` policy keeps both (one client), and the room is its like any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_join_follows_its_redirect_as_one_client_under_replace() {
    let cluster = TestCluster::start();
    let (a, b) = (
        cluster.node_with(jwt_replacing).await,
        cluster.node_with(jwt_replacing).await,
    );
    let connect = |node: &TestServer, user: &str| {
        let mut settings = config(node);
        settings.token = Some(user_token(user));
        Client::connect(settings).unwrap()
    };
    let (owner, mut owner_events) = connect(&a, "olga");
    let ctf: std::collections::BTreeMap<String, String> = [("mode".to_string(), "ctf".to_string())].into();
    let create = proto::RoomOptions {
        metadata: ctf.clone(),
        private: false,
    };
    owner.join_with("match-1", "", create);
    joined(&mut owner_events, "match-1").await;

    let (client, mut events) = connect(&b, "erin");
    client.quick_join("", ctf.clone(), proto::RoomOptions::default());
    let url = until(&mut events, |e| match e {
        Event::Redirected { room, url } if room == "match-1" => Some(url.clone()),
        _ => None,
    })
    .await;
    assert_eq!(url, format!("wss://{}/ws", a.addr));
    joined(&mut events, "match-1").await;
    // Home (b) is still this client's: a join there is answered, nothing was closed.
    client.join("on-b", "");
    until(&mut events, |e| match e {
        Event::Joined(j) if j.room == "on-b" => Some(()),
        Event::Disconnected { code, .. } => panic!("a session was closed with {code}"),
        _ => None,
    })
    .await;
    // Another quick join with the same filters passes over the room it is in there.
    client.quick_join("", ctf, proto::RoomOptions::default());
    let second = until(&mut events, |e| match e {
        Event::Joined(j) if j.room != "on-b" && j.room != "match-1" => Some(j.room.clone()),
        Event::Redirected { room, .. } => panic!("redirected to {room} again"),
        _ => None,
    })
    .await;
    assert!(second.starts_with("room-"), "{second}");
    client.send_input("match-1", create_entity(3));
    let has_entity = |c: &Client| c.with_mirror("match-1", |m| m.world().len()) == Some(1);
    eventually_true(|| has_entity(&client) && has_entity(&owner)).await;
    client.close().await;
    owner.close().await;
}

/// A quick join for `filters` the client sends and resends by itself: the room it
/// ended in, and those it was redirected to on the way (each refused it, or it would
/// have ended there). The application sees no refusal.
async fn quick_join_through_refusals(
    client: &Client,
    events: &mut Receiver<Event>,
    filters: &std::collections::BTreeMap<String, String>,
) -> (String, Vec<String>) {
    client.quick_join("", filters.clone(), proto::RoomOptions::default());
    let mut redirected_to = Vec::new();
    let ended_in = until(events, |e| match e {
        Event::Redirected { room, .. } => {
            redirected_to.push(room.clone());
            None
        }
        Event::Joined(j) => Some(j.room.clone()),
        Event::Error(e) => panic!("the application saw {e:?}"),
        _ => None,
    })
    .await;
    (ended_in, redirected_to)
}

/// A quick join redirected to a room that was locked since the directory last listed
/// it is refused `ROOM_FULL` by the room's node; the client quick-joins again by
/// itself, leaving that room out, and the application only sees the room it ends in.
/// Rooms that refuse every try cannot keep it out of a room: after three refusals the
/// client's last try takes a room of the node asked, here a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_join_refused_by_rooms_locked_since_is_sent_again_then_stays_on_the_node_asked() {
    let cluster = TestCluster::start();
    // Renewals of a's rooms come every 20 s / 3: a lock stays unknown to the
    // directory that long (a renewal between the locks and the quick join, seldom,
    // sends the scenario round again with new rooms).
    let a = cluster.node_with(|c| c.cluster.lease_ms = 20_000).await;
    let b = cluster.node().await;
    let (owner, mut owner_events) = Client::connect(config(&a)).unwrap();
    let (client, mut events) = Client::connect(config(&b)).unwrap();
    let ctf: std::collections::BTreeMap<String, String> = [("mode".to_string(), "ctf".to_string())].into();
    // Every room locked so far: one the directory listed open in a round may be
    // picked in the next, from what node b read within the last half second.
    let mut locked = Vec::new();
    for attempt in 0..3 {
        for n in 0..4 {
            let room = format!("match-{attempt}-{n}");
            let create = proto::RoomOptions {
                metadata: ctf.clone(),
                private: false,
            };
            owner.join_with(&room, "", create);
            joined(&mut owner_events, &room).await;
            locked.push(room);
        }
        for room in &locked[locked.len() - 4..] {
            let lock = proto::UpdateRoom {
                room: room.clone(),
                lock: proto::RoomLock::Locked as i32,
                ..Default::default()
            };
            owner.request(proto::request::Kind::UpdateRoom(lock)).await.unwrap();
        }
        let (ended_in, refused_by) = quick_join_through_refusals(&client, &mut events, &ctf).await;
        assert!(ended_in.starts_with("room-"), "created on b: {ended_in}");
        assert!(refused_by.iter().all(|r| locked.contains(r)), "{refused_by:?}");
        if refused_by.len() == 3 {
            client.close().await;
            owner.close().await;
            return;
        }
        // A renewal told the directory of some locks: again, with new rooms, once
        // node b's read of the open rooms is stale (half a second).
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    panic!("the directory knew the locks before the quick join every time");
}

/// A token replaced with `set_token` is the one a connection opened later presents:
/// once the first token has expired, a join redirected to another node connects
/// there with the new one (with the first, the node refuses the connection and the
/// room is never joined).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_after_set_token_presents_the_new_token() {
    let cluster = TestCluster::start();
    let strict = |config: &mut tickrelay::config::Config| {
        jwt_replacing(config);
        config.auth.leeway_secs = 0;
    };
    let (a, b) = (cluster.node_with(strict).await, cluster.node_with(strict).await);
    let mut owner_config = config(&a);
    owner_config.token = Some(user_token("olga"));
    let (owner, mut owner_events) = Client::connect(owner_config).unwrap();
    owner.join("lobby", "");
    joined(&mut owner_events, "lobby").await;

    let mut settings = config(&b);
    // (At least two seconds to live: the connection comes first.)
    settings.token = Some(user_token_for("erin", 3));
    let (client, mut events) = Client::connect(settings).unwrap();
    until(&mut events, |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    client.set_token(&user_token("erin"));
    tokio::time::sleep(Duration::from_millis(4_100)).await; // the first token expired
    client.join("lobby", "");
    joined(&mut events, "lobby").await;
    client.close().await;
    owner.close().await;
}
