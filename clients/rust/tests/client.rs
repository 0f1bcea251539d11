//! The client against the real relay on 127.0.0.1:0. Every scenario runs over both
//! transports (`wss://` and `quic://`) from one test body.

use std::time::Duration;

use bytes::Bytes;
use tickrelay::config::Config;
use tickrelay::server::Server;
use tickrelay_client::{Backoff, Client, ClientConfig, ClientError, Event, Trust, proto};
use tickrelay_testkit::{TestServer, Transport, both_transports, create_entity, start};
use tokio::sync::mpsc::Receiver;

mod common;
use common::{accept_and_welcome, fake_server_message, until};
use tokio_util::sync::CancellationToken;

both_transports!(
    joins_mirrors_verified_state_and_measures_rtt,
    reconnects_resumes_and_replays_inputs_sent_while_disconnected,
    gives_up_after_the_configured_attempts,
    trusts_a_pinned_fingerprint_and_nothing_else,
    an_awaited_close_leaves_no_member_behind,
    inputs_are_paced_to_the_byte_rate_too,
    inputs_larger_than_a_seconds_bytes_are_paced_not_refused,
    events_the_pacer_held_back_go_out_after_a_reconnect,
    envelopes_stay_within_the_servers_message_size,
    a_message_too_big_for_any_envelope_is_refused_not_sent,
    a_full_send_queue_refuses_what_the_application_adds,
    a_refused_join_is_forgotten,
    a_new_process_takes_over_its_crashed_predecessors_session,
);

fn config(relay: &TestServer, transport: Transport) -> ClientConfig {
    let mut config = ClientConfig::new(relay.url(transport), Trust::CertPem(relay.cert_pem.clone()));
    config.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        max_attempts: Some(5),
    };
    config.ping_interval = Duration::from_millis(100);
    // Nothing answers a QUIC handshake to a closed port: fail attempts fast.
    config.connect_timeout = Duration::from_millis(500);
    config
}

async fn joins_mirrors_verified_state_and_measures_rtt(transport: Transport) {
    let relay = start().await;
    let (client, mut events) = Client::connect(config(&relay, transport)).unwrap();
    client.join("arena-1", "arena");
    let joined = until(&mut events, |e| match e {
        Event::Joined(j) => Some(j.clone()),
        _ => None,
    })
    .await;
    assert_eq!(joined.room, "arena-1");
    client.send_input("arena-1", proto::input::Payload::Intent(Bytes::from_static(&[127, 0])));
    let mut frames = 0;
    until(&mut events, |e| {
        assert!(
            !matches!(e, Event::Joined(_)),
            "joined once, not again from an offline buffer"
        );
        frames += matches!(e, Event::State { .. }) as u32;
        (frames >= 30).then_some(())
    })
    .await;
    assert!(client.with_mirror("arena-1", |m| m.is_synced()).unwrap());
    assert!(client.stats().checksums.load(std::sync::atomic::Ordering::Relaxed) >= 29);
    // One full snapshot, the join's, applied as it came: over QUIC its datagram does
    // not overtake the `Joined` on the stream (a frame for a room not joined yet is
    // dropped, and the server sends full snapshots until one is acknowledged).
    assert_eq!(relay.metric("tickrelay_full_snapshots_total"), 1);
    assert!(client.rtt().is_some(), "pings measured a round trip");
    let response = client
        .request(proto::request::Kind::ListRooms(proto::ListRooms::default()))
        .await
        .unwrap();
    assert!(matches!(response.kind, Some(proto::response::Kind::Rooms(ref r)) if r.rooms.len() == 1));
    client.close().await;
}

/// A dropped connection resumes the session; inputs sent while disconnected are
/// buffered and applied once after the reconnect, and a room joined meanwhile is
/// joined at the resume.
async fn reconnects_resumes_and_replays_inputs_sent_while_disconnected(transport: Transport) {
    let relay = start().await;
    let (client, mut events) = Client::connect(config(&relay, transport)).unwrap();
    client.join("r", "relay");
    client.send_input("r", create_entity(1));
    until(&mut events, |e| matches!(e, Event::State { .. }).then_some(())).await;

    client.drop_connection();
    // Sent while the connection is down.
    for id in 2..=5 {
        client.send_input("r", create_entity(id));
    }
    client.join("late", "relay");
    let told = until(&mut events, |e| match e {
        Event::Disconnected {
            code, will_reconnect, ..
        } => Some((*code, *will_reconnect)),
        Event::Connected { .. } => panic!("connected again before the drop was told"),
        _ => None,
    })
    .await;
    assert_eq!(told, (1006, true), "told as a network failure");
    let resumed = until(&mut events, |e| match e {
        Event::Connected { resumed, .. } => Some(*resumed),
        Event::Error(err) => panic!("unexpected error {err:?}"),
        _ => None,
    })
    .await;
    assert!(resumed, "the server kept the session");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let caught_up = client.with_mirror("r", |m| m.world().len() == 5 && m.last_input_seq() == 5);
        if caught_up == Some(true) && client.with_mirror("late", |m| m.is_synced()) == Some(true) {
            break;
        }
        let event = tokio::time::timeout_at(deadline, events.recv()).await.unwrap().unwrap();
        assert!(!matches!(event, Event::Error(_) | Event::Desync { .. }), "{event:?}");
    }
    let stats = client.stats();
    assert_eq!(stats.resumes.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.desyncs.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// A game process that crashes: it quick-joins a lobby, joins `r`, creates entities
/// 1 to 3 there, and dies (its runtime dropped, no close frame) once the room
/// applied them, leaving its session id and resume token behind.
fn crashing_process(config: ClientConfig) -> (u64, String) {
    let process = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (client, mut events) = Client::connect(config).unwrap();
            // Its first request.
            client.quick_join("relay", lobby(), proto::RoomOptions::default());
            until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
            client.join("r", "relay");
            let session = until(&mut events, |e| match e {
                Event::Joined(joined) if joined.room == "r" => Some(joined.member_id),
                _ => None,
            })
            .await;
            for id in 1..=3 {
                client.send_input("r", create_entity(id));
            }
            until(&mut events, |_| {
                let applied = client.with_mirror("r", |m| m.world().len() == 3 && m.last_input_seq() == 3);
                (applied == Some(true)).then_some(())
            })
            .await;
            let token = client.resume_token().expect("a resume token once connected");
            // Kept alive until the runtime goes: dropping the handle is not the crash.
            std::mem::forget(client);
            (session, token)
        })
    });
    process.join().unwrap()
}

fn lobby() -> std::collections::BTreeMap<String, String> {
    [("mode".to_string(), "lobby".to_string())].into()
}

/// A restarted game continues its predecessor's session from the resume token the
/// predecessor stored: same member id, each room's `Joined` again (the client did not
/// know them), the seat's entities, and its inputs numbered on from the last
/// applied; no message is reported lost, and its own requests are answered (not
/// taken for the predecessor's). The other member never sees it leave. A token the
/// relay does not know starts a new session.
async fn a_new_process_takes_over_its_crashed_predecessors_session(transport: Transport) {
    let relay = start().await;
    let (watcher, mut watched) = joined_to_relay_room(&relay, transport).await;
    let (session, token) = crashing_process(config(&relay, transport));

    let mut restarted = config(&relay, transport);
    restarted.resume_token = Some(token.clone());
    let (client, mut events) = Client::connect(restarted).unwrap();
    let welcome = until(&mut events, |e| match e {
        Event::Connected {
            session_id, resumed, ..
        } => Some((*session_id, *resumed)),
        _ => None,
    })
    .await;
    assert_eq!(welcome, (session, true));
    let mut rooms = Vec::new();
    while rooms.len() < 2 {
        let joined = until(&mut events, |e| match e {
            Event::Joined(joined) => Some(joined.clone()),
            Event::MessagesLost { count } => panic!("{count} messages reported lost"),
            _ => None,
        })
        .await;
        assert_eq!((joined.request_id, joined.member_id), (0, session));
        rooms.push((joined.room.clone(), joined.last_input_seq));
    }
    rooms.sort_by_key(|(room, _)| room != "r");
    assert_eq!(rooms[0], ("r".to_string(), 3));
    let lobby_room = rooms[1].0.clone();
    assert_eq!(client.resume_token(), Some(token), "the same session, the same token");
    // Its first request would have the id of the predecessor's quick join if ids
    // started where the predecessor's did: the relay would take it for that one and
    // not answer.
    client.quick_join("relay", lobby(), proto::RoomOptions::default());
    let answer = until(&mut events, |e| match e {
        Event::Joined(joined) if joined.request_id != 0 => Some(Ok(joined.room.clone())),
        Event::Error(error) => Some(Err(error.clone())),
        _ => None,
    })
    .await;
    // Answered with another lobby: a quick join passes over the rooms the member is in.
    let answer = answer.map_err(|e| e.code);
    assert!(answer.as_ref().is_ok_and(|room| *room != lobby_room), "{answer:?}");
    until(&mut events, |_| {
        (client.with_mirror("r", |m| m.world().len()) == Some(3)).then_some(())
    })
    .await;
    assert_eq!(client.send_input("r", create_entity(4)), Some(4), "numbered on");
    until(&mut events, |_| {
        let applied = client.with_mirror("r", |m| m.world().len() == 4 && m.last_input_seq() == 4);
        (applied == Some(true)).then_some(())
    })
    .await;
    assert_eq!(client.stats().desyncs.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(
        client.stats().messages_lost.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    until(&mut watched, |event| {
        let left = matches!(&event, Event::Presence(p) if p.change == proto::PresenceChange::Left as i32);
        assert!(!left, "the other member saw the crashed one leave: {event:?}");
        (watcher.with_mirror("r", |m| m.world().len()) == Some(4)).then_some(())
    })
    .await;
    client.close().await;

    let mut unknown = config(&relay, transport);
    unknown.resume_token = Some("not-a-token".into());
    let (client, mut events) = Client::connect(unknown).unwrap();
    let resumed = until(&mut events, |e| match e {
        Event::Connected { resumed, .. } => Some(*resumed),
        _ => None,
    })
    .await;
    assert!(!resumed, "a new session");
    client.close().await;
}

/// A join the server refuses for good (here: an unknown room type) is forgotten: not
/// sent again when the connection comes back, and leaving the room asks nothing (the
/// server would answer `NotAMember`).
async fn a_refused_join_is_forgotten(transport: Transport) {
    let relay = start().await;
    let (client, mut events) = Client::connect(config(&relay, transport)).unwrap();
    client.join("ghost", "nosuchtype");
    let refused = until(&mut events, |e| match e {
        Event::Error(error) => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(refused.code, proto::ErrorCode::UnknownRoomType as i32);
    assert_eq!(refused.room, "ghost");
    assert_eq!(
        client.send_input("ghost", create_entity(1)),
        None,
        "forgotten: not sent"
    );

    client.drop_connection();
    until(&mut events, |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    client.join("r", "relay");
    client.leave("ghost");
    until(&mut events, |e| match e {
        Event::Error(error) => panic!("asked again: {error:?}"),
        Event::Joined(joined) => (joined.room == "r").then_some(()),
        _ => None,
    })
    .await;
    // What the leave would have brought comes before this answer.
    client
        .request(proto::request::Kind::ListRooms(proto::ListRooms::default()))
        .await
        .unwrap();
    while let Ok(event) = events.try_recv() {
        assert!(!matches!(event, Event::Error(_)), "{event:?}");
    }
    assert_eq!(relay.metric("tickrelay_rooms"), 1, "only r");
    // A room's inputs are numbered on after a leave: a seat that outlived it (a
    // restored room's) drops the numbers it applied, never the new ones.
    assert_eq!(client.send_input("r", create_entity(1)), Some(1));
    client.leave("r");
    assert_eq!(client.send_input("r", create_entity(2)), None, "left: not sent");
    client.join("r", "relay");
    assert_eq!(client.send_input("r", create_entity(3)), Some(2));
    let applied = async {
        while client.with_mirror("r", |m| m.last_input_seq()) != Some(2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), applied)
        .await
        .expect("the input numbered 2 applied in the new seat");
}

/// A token source is asked before every connection: a session closed at its token's
/// expiry (4500) comes back with a fresh token, and a source that fails is a failed
/// attempt, retried at the same URL (no node was asked: the fallback is not tried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_source_replaces_an_expired_token() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use tickrelay::session::auth::{AuthMode, Claims, mint_hs256};
    const SECRET: &str = "a-secret-of-thirty-two-bytes-abc";
    let relay = tickrelay_testkit::start_with(|c| {
        c.auth.mode = AuthMode::Jwt;
        c.auth.hs256_secret = Some(SECRET.into());
        c.auth.leeway_secs = 0;
    })
    .await;
    let asked = std::sync::Arc::new(AtomicU32::new(0));
    let counter = asked.clone();
    let mut config = config(&relay, Transport::WebSocket);
    config.fallback_urls = vec!["wss://127.0.0.1:9/ws".into()];
    config.token_source = Some(tickrelay_client::TokenSource::new(move || {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let now = tickrelay::clock::unix_micros() / 1_000_000;
            match n {
                2 => Err("backend down".to_string()),
                // The first lives two seconds, the others a minute.
                _ => Ok(mint_hs256(
                    SECRET,
                    &Claims {
                        sub: "ann".into(),
                        exp: now + if n == 1 { 2 } else { 60 },
                        rooms: None,
                    },
                )),
            }
        }
    }));
    let (client, mut events) = Client::connect(config).unwrap();
    let mut seen = Vec::new();
    until(&mut events, |e| {
        match e {
            Event::Connected { .. } => seen.push("connected".to_string()),
            Event::Disconnected { code, .. } => seen.push(format!("closed {code}")),
            Event::Reconnecting { reason, .. } => seen.push(reason.clone()),
            Event::GaveUp { reason, .. } => panic!("gave up: {reason}"),
            _ => {}
        }
        (seen.iter().filter(|s| *s == "connected").count() == 2).then_some(())
    })
    .await;
    assert_eq!(seen[..2], ["connected", "closed 4500"], "{seen:?}");
    assert!(
        seen.iter().any(|s| s.contains("token source: backend down")),
        "{seen:?}"
    );
    // A new session at once: the one whose token expired is over (no 4504 first).
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(asked.load(Ordering::Relaxed), 3, "{seen:?}");
    client.close().await;
}

async fn gives_up_after_the_configured_attempts(transport: Transport) {
    let relay = start().await;
    let (client, mut events) = Client::connect(config(&relay, transport)).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    relay.shutdown.cancel();
    let disconnect = until(&mut events, |e| match e {
        Event::Disconnected {
            code, will_reconnect, ..
        } => Some((*code, *will_reconnect)),
        _ => None,
    })
    .await;
    assert_eq!(disconnect, (1001, true), "shutdown says: come back later");
    let mut attempts = Vec::new();
    let gave_up = until(&mut events, |e| match e {
        Event::Reconnecting { attempt, delay, reason } => {
            assert!(!reason.is_empty());
            assert!(*delay <= Duration::from_millis(200));
            attempts.push(*attempt);
            None
        }
        Event::GaveUp { attempts, .. } => Some(*attempts),
        _ => None,
    })
    .await;
    assert_eq!(attempts, vec![1, 2, 3, 4, 5]);
    assert_eq!(gave_up, 6);
}

async fn trusts_a_pinned_fingerprint_and_nothing_else(transport: Transport) {
    use rustls_pki_types::pem::PemObject;
    use sha2::Digest;
    let relay = start().await;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(relay.cert_pem.as_bytes()).unwrap();
    let fingerprint: String = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut good = config(&relay, transport);
    good.trust = Trust::Fingerprint(fingerprint);
    let (_client, mut events) = Client::connect(good).unwrap();
    until(&mut events, |e| matches!(e, Event::Connected { .. }).then_some(())).await;

    // A certificate other than the trusted one is a permanent failure: the client gives
    // up at the first attempt, with the reason, whatever attempts it was allowed.
    let mut bad = config(&relay, transport);
    bad.trust = Trust::Fingerprint("00".repeat(32));
    let (_client, mut events) = Client::connect(bad).unwrap();
    let (attempts, reason) = until(&mut events, |e| match e {
        Event::Connected { .. } | Event::Reconnecting { .. } => panic!("retried an untrusted certificate: {e:?}"),
        Event::GaveUp { attempts, reason } => Some((*attempts, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(attempts, 1);
    assert!(reason.contains("TLS") && reason.contains("certificate"), "{reason}");
    assert!(
        reason.contains("not the one this client trusts (the certificate of SHA-256 fingerprint 0000"),
        "with a hint naming what it trusts: {reason}"
    );
}

/// Once `close().await` returns, the server has ended the session: the member has
/// left its room, not been kept for a resume (20 s by default).
async fn an_awaited_close_leaves_no_member_behind(transport: Transport) {
    let relay = start().await;
    let (watcher, mut watcher_events) = Client::connect(config(&relay, transport)).unwrap();
    watcher.join("r", "relay");
    until(&mut watcher_events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    // A program that exits right after `close().await`: its runtime (and with it the
    // client's task and socket) is dropped as soon as the close returns.
    let closing = config(&relay, transport);
    let program = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, mut events) = Client::connect(closing).unwrap();
            client.join("r", "relay");
            until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
            // Its last words reach the room before its close (over QUIC: the stream
            // read to its end first).
            client.send_event("r", "bye", Bytes::from_static(b"!"), vec![]);
            client.close().await;
        });
    });
    tokio::task::spawn_blocking(move || program.join().unwrap())
        .await
        .unwrap();
    let members = async {
        loop {
            let rooms = watcher.request(proto::request::Kind::ListRooms(proto::ListRooms::default()));
            if let Some(proto::response::Kind::Rooms(r)) = rooms.await.unwrap().kind
                && r.rooms[0].members == 1
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), members)
        .await
        .expect("the closed member left the room within 2 s");
    until(&mut watcher_events, |e| match e {
        Event::RoomEvent(event) if event.kind == "bye" => Some(()),
        _ => None,
    })
    .await;
}

/// An application that hands the client more input bytes at once than the server's
/// byte rate allows is paced, not closed for flooding: 12 inputs of 10 KB against 32
/// KiB/s all arrive, none refused.
async fn inputs_are_paced_to_the_byte_rate_too(transport: Transport) {
    let relay = tickrelay_testkit::start_with(|c| {
        c.session.bytes_per_second = 32.0 * 1024.0;
        c.session.byte_burst = 64.0 * 1024.0;
    })
    .await;
    // 5 entities of 2 fields of 1,000 bytes each (the relay's default per-field and
    // per-member limits allow 60 in all).
    send_big_inputs_and_see_them_applied(&relay, transport, 12, 5, Duration::from_secs(15)).await;
}

/// Against a server whose byte rate is below one message's size (4,000 bytes/s, a
/// burst of 8 KiB, inputs of about 6.1 KB) every input arrives and none is refused:
/// each is charged its whole size, not a second's worth of bytes (which let the third
/// input through before the server's bucket had refilled: `RATE_LIMITED`).
async fn inputs_larger_than_a_seconds_bytes_are_paced_not_refused(transport: Transport) {
    let relay = tickrelay_testkit::start_with(|c| {
        c.session.max_message_bytes = 8192;
        c.session.bytes_per_second = 4000.0;
        c.session.byte_burst = 8192.0;
    })
    .await;
    send_big_inputs_and_see_them_applied(&relay, transport, 3, 3, Duration::from_secs(10)).await;
}

/// Joins relay room "r", sends `inputs` inputs at once, each creating `entities`
/// entities of two 1,000-byte fields, and waits `within` for the last to be applied,
/// failing on any `Error` or disconnection on the way; meanwhile the client shows
/// inputs waiting for the pacer, and none once they are all applied.
async fn send_big_inputs_and_see_them_applied(
    relay: &TestServer,
    transport: Transport,
    inputs: u64,
    entities: u64,
    within: Duration,
) {
    let (client, mut events) = Client::connect(config(relay, transport)).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    let fields: Vec<proto::Field> = (1..=2)
        .map(|f| proto::Field {
            id: f,
            value: Some(proto::field::Value::Bytes(vec![7; 1_000].into())),
        })
        .collect();
    for id in 1..=inputs {
        let create = (0..entities)
            .map(|i| proto::Entity {
                id: id * 100 + i,
                owner: 0,
                kind: 1,
                fields: fields.clone(),
            })
            .collect();
        let writes = proto::EntityWrites {
            create,
            ..Default::default()
        };
        assert_eq!(
            client.send_input("r", proto::input::Payload::Writes(Box::new(writes))),
            Some(id)
        );
    }
    let deadline = tokio::time::Instant::now() + within;
    let mut most_queued = 0;
    while client.with_mirror("r", |m| m.last_input_seq()) != Some(inputs) {
        let event = tokio::time::timeout_at(deadline, events.recv()).await.unwrap().unwrap();
        most_queued = most_queued.max(client.queued_messages());
        assert!(
            !matches!(event, Event::Error(_) | Event::Disconnected { .. }),
            "{event:?}"
        );
    }
    assert!(most_queued > 0, "inputs waited for the pacer and were shown waiting");
    // The inputs and at most one ping (not one per ping interval) ever waited.
    assert!(most_queued <= inputs + 1, "{most_queued} waited for {inputs} inputs");
    // At most one ping waits behind them (not one per ping interval), and goes at once.
    let sent = async {
        while client.queued_messages() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), sent)
        .await
        .expect("nothing waits once every input is applied");
}

/// Waits for the client to give up and returns why; panics with `never` if it connects.
async fn gave_up(events: &mut Receiver<Event>, never: &str) -> String {
    until(events, |e| match e {
        Event::Connected { .. } => panic!("{never}"),
        Event::GaveUp { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// A relay serving plain `ws://` (`tls.insecure_plain`) is reached only through a
/// `ws://` URL, without reading any certificate; a `wss://` client fails at TLS
/// instead of falling back to plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ws_only_when_the_url_says_so() {
    let mut relay = Config::loopback(60);
    relay.tls.insecure_plain = true;
    relay.quic.enabled = false;
    let relay = Server::bind(relay).await.unwrap();
    let port = relay.local_addr().port();
    let shutdown = CancellationToken::new();
    tokio::spawn(relay.run(shutdown.clone(), Duration::from_secs(5)));

    let mut plain = ClientConfig::new(
        format!("ws://127.0.0.1:{port}/ws"),
        Trust::CertFile("/nonexistent/cert.pem".into()),
    );
    plain.backoff.max_attempts = Some(1);
    let (client, mut events) = Client::connect(plain).unwrap();
    client.join("arena-1", "arena");
    let mut frames = 0;
    until(&mut events, |e| {
        assert!(!matches!(e, Event::GaveUp { .. } | Event::Desync { .. }), "{e:?}");
        frames += matches!(e, Event::State { .. }) as u32;
        (frames >= 5).then_some(())
    })
    .await;
    assert!(client.with_mirror("arena-1", |m| m.is_synced()).unwrap());
    let stats = client.stats();
    // The full snapshot adds the arena's NPCs and the avatar; later frames move them.
    assert!(stats.entity_updates.load(std::sync::atomic::Ordering::Relaxed) >= 5);
    client.close().await;

    let mut tls = ClientConfig::new(
        format!("wss://127.0.0.1:{port}/ws"),
        Trust::Fingerprint("00".repeat(32)),
    );
    tls.backoff.max_attempts = Some(1);
    let (_client, mut events) = Client::connect(tls).unwrap();
    let reason = gave_up(&mut events, "a wss:// client connected without TLS").await;
    assert!(reason.contains("TLS"), "{reason}");
    shutdown.cancel();

    // The other way round: a ws:// URL for a TLS relay gives up at once, saying so.
    let relay = start().await;
    let mut plain = config(&relay, Transport::WebSocket);
    plain.url = plain.url.replace("wss://", "ws://");
    plain.backoff.max_attempts = Some(5);
    let (_client, mut events) = Client::connect(plain).unwrap();
    let reason = gave_up(&mut events, "a ws:// client connected to a TLS relay").await;
    assert!(reason.contains("use wss://"), "{reason}");
}

/// Leaving a room others are in and joining it again at once is refused for up to a
/// second (one full snapshot per second); the client joins again by itself when told
/// it may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_again_right_after_leaving_is_retried_when_allowed() {
    let relay = start().await;
    let joined = |e: &Event| matches!(e, Event::Joined(j) if j.room == "r").then_some(());
    // Someone stays in the room (an empty room stands still, and costs little to join).
    let (other, mut other_events) = Client::connect(config(&relay, Transport::WebSocket)).unwrap();
    other.join("r", "relay");
    until(&mut other_events, joined).await;
    let (client, mut events) = Client::connect(config(&relay, Transport::WebSocket)).unwrap();
    client.join("r", "relay");
    until(&mut events, joined).await;
    client.leave("r");
    client.join("r", "relay");
    let retry_after_ms = until(&mut events, |e| match e {
        Event::Error(e) if e.room == "r" => {
            assert_eq!(e.code, proto::ErrorCode::RateLimited as i32, "{e:?}");
            Some(e.retry_after_ms)
        }
        Event::Joined(j) if j.room == "r" => panic!("joined again at once"),
        _ => None,
    })
    .await;
    assert!((1..=1000).contains(&retry_after_ms), "{retry_after_ms}");
    until(&mut events, joined).await;
    until(&mut events, |e| {
        matches!(e, Event::State { room, .. } if room == "r").then_some(())
    })
    .await;
    assert!(client.with_mirror("r", |m| m.is_synced()).unwrap());
    client.close().await;
    other.close().await;
}

/// The path of the client crate's example `name`: `cargo test` builds the examples
/// next to the tests.
fn example(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let example = deps.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(
        example.exists(),
        "{} not built: run `cargo test` without --test",
        example.display()
    );
    example
}

/// The `follow` example answers `--help` (with the same options as the server's
/// `watch` example) and names a certificate file it cannot read.
#[test]
fn the_follow_example_explains_itself_and_names_a_missing_certificate_file() {
    let follow = example("follow");
    let help = std::process::Command::new(&follow).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{help:?}");
    for option in ["--url", "--cert", "--token", "--room", "--seconds"] {
        assert!(text.contains(option), "{option} in {text}");
    }
    let missing = std::process::Command::new(&follow)
        .args(["--cert", "/nonexistent/relay-cert.pem", "--seconds", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && stderr.contains("/nonexistent/relay-cert.pem"),
        "{stderr}"
    );
}

/// The `relay_writes` example (README, "The Rust client") creates an entity in a relay
/// room, moves it and reads it back, against a real relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_writes_example_writes_and_reads_back_an_entity() {
    let stdout = run_example_against_a_relay("relay_writes", &start().await).await;
    assert!(stdout.contains("at x = 2.5"), "{stdout}");
}

/// Runs example `name` with `--url` and `--cert` of `relay`, started for it; returns
/// what it printed, once it succeeded.
async fn run_example_against_a_relay(name: &str, relay: &TestServer) -> String {
    let program = example(name);
    let cert = std::env::temp_dir().join(format!("tickrelay-{name}-{}.pem", std::process::id()));
    std::fs::write(&cert, &relay.cert_pem).unwrap();
    let mut command = std::process::Command::new(&program);
    command.args([
        "--url",
        &relay.url(Transport::WebSocket),
        "--cert",
        cert.to_str().unwrap(),
    ]);
    // The relay runs in this test's runtime: the example is waited for on another thread.
    let run = tokio::task::spawn_blocking(move || command.output());
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_file(&cert);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `host_migration` example (README, "The Rust client"): the guest takes the room
/// over when the host leaves, and moves the room's entity on, against a real relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_migration_example_hands_the_room_to_the_guest() {
    let stdout = run_example_against_a_relay("host_migration", &start().await).await;
    assert!(
        stdout.contains("owns host-demo now") && stdout.contains("x = 2"),
        "{stdout}"
    );
}

/// The `hidden_hands` example (README, "Hidden state"): the host deals a card of a
/// kind the relay declares owner-only to the guest and one to itself, and each
/// client's mirror holds its own card only (until the guest shows its card to the
/// host, and hides it again), against a relay configured as the example's
/// documentation says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hidden_hands_example_deals_cards_each_member_alone_sees() {
    // The `--set` flag the example's documentation gives, read as the binary reads it.
    let set = r#"room_types.relay.kinds=[{kind=2, name="card", owner_only=true, fields=[{id=1, name="rank", type="int", min=1, max=13}]}]"#;
    let source = include_str!("../examples/hidden_hands.rs");
    assert!(source.contains(&format!("--set '{set}'")), "the documented flag");
    let set = tickrelay::config::Override::from_set(set).unwrap();
    let declared = Config::load(None, &[set], &tickrelay::config::Simulations::new()).unwrap();
    let relay = tickrelay_testkit::start_with(|c| {
        c.room_types
            .insert("relay".into(), declared.room_types["relay"].clone());
    })
    .await;
    // Twice in a row: the first run puts its deck away.
    for _ in 0..2 {
        let stdout = run_example_against_a_relay("hidden_hands", &relay).await;
        assert!(stdout.contains("neither sees the other's card"), "{stdout}");
        assert!(stdout.contains("the guest showed its card to the host"), "{stdout}");
    }
}

/// `room_owner` follows the room's owner: `Joined.owner`, then presence `OWNER` when
/// the owner leaves; `None` once the client left the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_owner_follows_the_rooms_owner() {
    let relay = start().await;
    let join = async |relay: &TestServer| {
        let (client, mut events) = Client::connect(config(relay, Transport::WebSocket)).unwrap();
        client.join("r", "relay");
        let id = until(&mut events, |e| match e {
            Event::Joined(joined) => Some(joined.member_id),
            _ => None,
        })
        .await;
        (client, events, id)
    };
    let (host, _host_events, host_id) = join(&relay).await;
    let (guest, mut guest_events, guest_id) = join(&relay).await;
    assert_eq!(host.room_owner("r"), Some(host_id), "the creating member");
    assert_eq!(guest.room_owner("r"), Some(host_id));
    host.leave("r");
    let owner_told = |e: &Event| matches!(e, Event::Presence(p) if p.change == proto::PresenceChange::Owner as i32);
    until(&mut guest_events, |e| owner_told(e).then_some(())).await;
    assert_eq!(guest.room_owner("r"), Some(guest_id), "passed to the guest");
    assert_eq!(host.room_owner("r"), None, "the host left");
    host.close().await;
    guest.close().await;
}

/// `room_listing` follows the room's metadata and lock: `Joined`, then
/// `RoomUpdated` when the owner changes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_listing_follows_the_owners_changes() {
    let relay = start().await;
    let (host, mut host_events) = Client::connect(config(&relay, Transport::WebSocket)).unwrap();
    let mode = |mode: &str| [("mode".to_string(), mode.to_string())].into();
    let create = proto::RoomOptions {
        metadata: mode("ctf"),
        ..Default::default()
    };
    host.join_with("r", "relay", create);
    until(&mut host_events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    let (guest, mut guest_events) = joined_to_relay_room(&relay, Transport::WebSocket).await;
    let listing = |metadata, locked| proto::RoomUpdated {
        room: "r".into(),
        metadata,
        locked,
    };
    assert_eq!(guest.room_listing("r"), Some(listing(mode("ctf"), false)));
    let update = proto::UpdateRoom {
        room: "r".into(),
        metadata: mode("dm"),
        lock: proto::RoomLock::Locked as i32,
        owner: 0,
    };
    host.request(proto::request::Kind::UpdateRoom(update)).await.unwrap();
    let told = until(&mut guest_events, |e| match e {
        Event::RoomUpdated(u) => Some(u.clone()),
        _ => None,
    })
    .await;
    assert_eq!(told, listing(mode("dm"), true));
    assert_eq!(guest.room_listing("r"), Some(told.clone()));
    until(&mut host_events, |e| matches!(e, Event::RoomUpdated(_)).then_some(())).await;
    assert_eq!(host.room_listing("r"), Some(told), "the owner is told too");
    guest.leave("r");
    until(&mut guest_events, |e| matches!(e, Event::Left(_)).then_some(())).await;
    assert_eq!(guest.room_listing("r"), None, "left");
    host.close().await;
    guest.close().await;
}

/// A client of `relay` joined to the relay room `r`, with its events.
async fn joined_to_relay_room(relay: &TestServer, transport: Transport) -> (Client, Receiver<Event>) {
    let (client, mut events) = Client::connect(config(relay, transport)).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    (client, events)
}

/// Events survive a dropped connection exactly once: those the pacer had not sent
/// go out after the reconnect, in order, and so do those sent that the session had
/// not acknowledged (it may have taken them or not: it skips the numbers it took).
async fn events_the_pacer_held_back_go_out_after_a_reconnect(transport: Transport) {
    let relay = tickrelay_testkit::start_with(|c| {
        c.session.messages_per_second = 2.0;
        c.session.message_burst = 2.0;
    })
    .await;
    let ((_listener, mut heard), (talker, _events)) = (
        joined_to_relay_room(&relay, transport).await,
        joined_to_relay_room(&relay, transport).await,
    );
    for i in 0..6u8 {
        talker.send_event("r", "line", Bytes::from(vec![i]), Vec::new());
    }
    // Paced at 1.6 a second (80 % of 2): the first goes at once, the rest are still
    // queued when it drops, right after, with the first in flight or just taken.
    talker.drop_connection();
    let line = |e: &Event| match e {
        Event::RoomEvent(event) if event.kind == "line" => Some(event.payload[0]),
        _ => None,
    };
    let mut lines = Vec::new();
    while lines.len() < 6 {
        lines.push(until(&mut heard, line).await);
    }
    assert_eq!(lines, [0, 1, 2, 3, 4, 5]);
    // And none twice: one sent again would come before a seventh sent now.
    talker.send_event("r", "line", Bytes::from(vec![6]), Vec::new());
    assert_eq!(until(&mut heard, line).await, 6, "an event relayed twice");
}

/// Messages sent together go in envelopes no larger than the server's
/// `max_message_bytes` (16 KiB by default), however many the pacer lets through at
/// once: eight events of 3 KiB buffered while offline are delivered after the
/// reconnect, and the connection is not closed as too big (1009).
async fn envelopes_stay_within_the_servers_message_size(transport: Transport) {
    let relay = start().await;
    let ((_listener, mut heard), (talker, mut events)) = (
        joined_to_relay_room(&relay, transport).await,
        joined_to_relay_room(&relay, transport).await,
    );
    talker.drop_connection();
    for i in 0..8u8 {
        talker.send_event("r", "big", Bytes::from(vec![i; 3 * 1024]), Vec::new());
    }
    let mut heard_events = Vec::new();
    while heard_events.len() < 8 {
        heard_events.push(
            until(&mut heard, |e| match e {
                Event::RoomEvent(event) if event.kind == "big" => Some(event.payload[0]),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(heard_events, [0, 1, 2, 3, 4, 5, 6, 7]);
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, Event::Disconnected { code: 1009, .. }),
            "closed as too big: {event:?}"
        );
    }
}

/// A message larger than an envelope may carry would have the server close the
/// connection (1009, after which the client gives up): it is refused locally with a
/// typed error, and the connection goes on.
async fn a_message_too_big_for_any_envelope_is_refused_not_sent(transport: Transport) {
    let relay = start().await;
    let ((_listener, mut heard), (talker, mut events)) = (
        joined_to_relay_room(&relay, transport).await,
        joined_to_relay_room(&relay, transport).await,
    );
    talker.send_event("r", "huge", Bytes::from(vec![0; 17 * 1024]), Vec::new());
    talker.send_event("r", "small", Bytes::from_static(&[1]), Vec::new());
    let refused = until(&mut events, |e| match e {
        Event::Error(error) => Some(error.clone()),
        Event::Disconnected { .. } => panic!("{e:?}"),
        _ => None,
    })
    .await;
    assert_eq!(refused.code, proto::ErrorCode::LimitExceeded as i32, "{refused:?}");
    assert_eq!(refused.room, "r");
    let kind = until(&mut heard, |e| match e {
        Event::RoomEvent(event) => Some(event.kind.clone()),
        _ => None,
    })
    .await;
    assert_eq!(kind, "small", "the huge one was not sent; the next one was");
    // An input too: its refusal carries the number `send_input` returned.
    let huge = proto::input::Payload::Intent(Bytes::from(vec![0; 17 * 1024]));
    let seq = talker.send_input("r", huge).expect("joined");
    let refused = until(&mut events, |e| match e {
        Event::Error(error) => Some(error.clone()),
        Event::Disconnected { .. } => panic!("{e:?}"),
        _ => None,
    })
    .await;
    assert_eq!(
        (refused.code, refused.request_id),
        (proto::ErrorCode::LimitExceeded as i32, seq)
    );
}

/// An application that sends faster than the server's limits (here 5 messages a
/// second) into a small send queue (4): what does not fit (inputs, an event, a
/// request) is refused at once with a typed error (an input's carrying the number
/// `send_input` returned), what fits is paced and applied, and the connection goes
/// on.
async fn a_full_send_queue_refuses_what_the_application_adds(transport: Transport) {
    let relay = tickrelay_testkit::start_with(|c| {
        c.session.messages_per_second = 5.0;
        c.session.message_burst = 5.0;
    })
    .await;
    let mut config = config(&relay, transport);
    config.send_queue_limit = 4;
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    for id in 1..=20 {
        assert_eq!(client.send_input("r", create_entity(id)), Some(id), "numbered from 1");
    }
    client.send_event("r", "refused", Bytes::from_static(&[1]), Vec::new());
    let request = client.request(proto::request::Kind::ListRooms(proto::ListRooms::default()));
    let answer = tokio::time::timeout(Duration::from_secs(5), request).await.unwrap();
    assert!(
        matches!(&answer, Err(ClientError::Server(e)) if e.code == proto::ErrorCode::RateLimited as i32),
        "{answer:?}"
    );
    // Refusals come at once; a second is plenty.
    let (mut refused, counted) = (0, tokio::time::Instant::now() + Duration::from_secs(1));
    let mut refused_inputs = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout_at(counted, events.recv()).await {
        match event {
            Event::Error(error) => {
                assert_eq!(error.code, proto::ErrorCode::RateLimited as i32, "{error:?}");
                // The request's has no room.
                assert!(error.room == "r" || error.room.is_empty(), "{error:?}");
                if error.request_id != 0 {
                    refused_inputs.push(error.request_id);
                }
                refused += 1;
            }
            Event::Disconnected { .. } => panic!("{event:?}"),
            _ => {}
        }
    }
    // The event and the request among them.
    let sent = 20 + 2 - refused;
    assert!(refused > 2 && sent >= 4, "{refused} refused");
    assert_eq!(refused_inputs.len(), refused as usize - 2, "{refused_inputs:?}");
    let last = (1..=20).filter(|seq| !refused_inputs.contains(seq)).max();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.with_mirror("r", |m| m.last_input_seq()) != last {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Error(error))) => panic!("{error:?}"),
            Ok(Some(_)) => {}
            _ => panic!("the {sent} inputs that fitted were not all applied"),
        }
    }
}

/// The quiet timer: every message from the server pushes it back (a client that left
/// at the first quiet deadline fails here), and a server that stops sending (here one
/// that never answers pings) is left for a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_when_the_server_goes_quiet() {
    use futures_util::{SinkExt, StreamExt};
    use proto::server_message::Kind;

    let quiet = Duration::from_millis(500);
    let chatty = Duration::from_secs(2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let message = fake_server_message;
    // A fake server: a Welcome, a Pong every 100 ms for `chatty`, then silence until
    // the client hangs up; returns how long the client stayed, once it came back.
    let server = tokio::spawn(async move {
        let welcome = proto::Welcome {
            resume_token: "quiet".into(),
            heartbeat_interval_ms: 100,
            heartbeat_timeout_ms: 500,
            ..Default::default()
        };
        let mut ws = accept_and_welcome(&listener, welcome).await;
        let started = tokio::time::Instant::now();
        while started.elapsed() < chatty {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if ws.send(message(Kind::Pong(proto::Pong::default()))).await.is_err() {
                break; // the client left early: the assertion below says so
            }
        }
        // Read (and ignore) the client's pings until it hangs up.
        while let Some(Ok(_)) = ws.next().await {}
        let stayed = started.elapsed();
        let (_again, _) = listener.accept().await.unwrap();
        stayed
    });

    let mut config = ClientConfig::new(
        format!("ws://127.0.0.1:{port}/ws"),
        Trust::CertFile("/nonexistent/cert.pem".into()),
    );
    config.quiet_timeout = quiet;
    config.ping_interval = Duration::from_millis(100);
    let (client, mut events) = Client::connect(config).unwrap();
    let reason = until(&mut events, |e| match e {
        Event::Reconnecting { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("quiet"), "{reason}");
    let stayed = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    // Pushed back by every Pong (a Pong every 100 ms, four quiet periods long), then
    // left within about one quiet period of the silence.
    assert!(stayed >= chatty, "left after {stayed:?} while the server still sent");
    assert!(
        stayed < chatty + Duration::from_secs(3),
        "stayed {stayed:?} on a silent server"
    );
    client.close().await;
}

/// Against a fake server: a join answered with `last_input_seq` (a resumed or
/// restored seat that applied inputs up to 500) has the next input numbered 501, not
/// 1 (which the room would drop as a repeat); and request ids are above every input
/// number, so an input's `Error` (its `request_id` is the input's `seq`) is never
/// taken for a request's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_continue_above_the_seats_last_input_and_requests_never_share_their_ids() {
    use futures_util::{SinkExt, StreamExt};
    use prost::Message as _;
    use proto::client_message::Kind as Out;
    use proto::server_message::Kind;
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let welcome = proto::Welcome {
            resume_token: "seat".into(),
            heartbeat_interval_ms: 10_000,
            heartbeat_timeout_ms: 10_000,
            ..Default::default()
        };
        let mut ws = accept_and_welcome(&listener, welcome).await;
        let (mut join_id, mut input_seq, mut request_id) = (None, None, None);
        while input_seq.is_none() || request_id.is_none() {
            let Some(Ok(Message::Binary(bytes))) = ws.next().await else {
                break;
            };
            for message in proto::ClientEnvelope::decode(&bytes[..]).unwrap().messages {
                match message.kind {
                    Some(Out::Join(join)) => {
                        join_id = Some(join.request_id);
                        let joined = proto::Joined {
                            request_id: join.request_id,
                            room: join.room,
                            room_type: "relay".into(),
                            last_input_seq: 500,
                            ..Default::default()
                        };
                        ws.send(fake_server_message(Kind::Joined(joined))).await.unwrap();
                    }
                    Some(Out::Input(input)) => input_seq = Some(input.seq),
                    Some(Out::Request(request)) => request_id = Some(request.request_id),
                    _ => {}
                }
            }
        }
        (join_id, input_seq, request_id)
    });
    let config = ClientConfig::new(
        format!("ws://127.0.0.1:{port}/ws"),
        Trust::CertFile("/nonexistent/cert.pem".into()),
    );
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    let intent = || proto::input::Payload::Intent(Bytes::from_static(&[1]));
    assert_eq!(
        client.send_input("r", intent()),
        Some(501),
        "the number sent is the one returned"
    );
    assert_eq!(client.send_input("not-joined", intent()), None, "nothing sent");
    let request = client.request(proto::request::Kind::ListRooms(proto::ListRooms::default()));
    let _ = tokio::time::timeout(Duration::from_millis(200), request).await;
    let (join_id, input_seq, request_id) = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(input_seq, Some(501), "numbered above the seat's last input");
    let max_input_seq = (1u64 << 53) - 1;
    assert!(join_id.unwrap() > max_input_seq, "{join_id:?}");
    assert!(request_id.unwrap() > max_input_seq, "{request_id:?}");
    client.close().await;
}

/// Numbered events against a fake server that reports what it took: an event the
/// session did not take goes out again after the reconnect with its number, one it
/// took (per `Welcome.events_received` or `Pong.events_received`) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_not_acknowledged_go_out_again_with_their_numbers() {
    use futures_util::{SinkExt, StreamExt};
    use prost::Message as _;
    use proto::server_message::Kind;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;

    type Ws = WebSocketStream<tokio::net::TcpStream>;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let send = fake_server_message;
    let accept = async |listener: &tokio::net::TcpListener, resumed: bool, events_received: u64| -> Ws {
        let welcome = proto::Welcome {
            resume_token: "events".into(),
            limits: Some(proto::Limits {
                max_message_bytes: 16 * 1024,
                messages_per_second: 100,
                message_burst: 20,
                bytes_per_second: 64 * 1024,
                byte_burst: 128 * 1024,
            }),
            heartbeat_interval_ms: 10_000,
            heartbeat_timeout_ms: 10_000,
            resumed,
            events_received,
            ..Default::default()
        };
        accept_and_welcome(listener, welcome).await
    };
    // The events the client sends within `wait`, as (number, payload byte).
    let events = async |ws: &mut Ws, wait: Duration| {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(Message::Binary(bytes)))) = tokio::time::timeout_at(deadline, ws.next()).await {
            let envelope = proto::ClientEnvelope::decode(&bytes[..]).unwrap();
            let mut n = envelope.first_event_seq;
            for m in envelope.messages {
                if let Some(proto::client_message::Kind::Event(e)) = m.kind {
                    got.push((n, e.payload[0]));
                    n += 1;
                }
            }
        }
        got
    };

    let mut config = ClientConfig::new(
        format!("ws://127.0.0.1:{port}/ws"),
        Trust::CertFile("/nonexistent/cert.pem".into()),
    );
    config.backoff.initial = Duration::from_millis(20);
    config.backoff.max = Duration::from_millis(50);
    config.ping_interval = Duration::from_secs(60);
    let (client, _events) = Client::connect(config).unwrap();
    let mut ws = accept(&listener, false, 0).await;
    for i in 0..3u8 {
        client.send_event("r", "line", Bytes::from(vec![i]), Vec::new());
    }
    assert_eq!(
        events(&mut ws, Duration::from_millis(500)).await,
        [(1, 0), (2, 1), (3, 2)]
    );
    drop(ws);
    // The session took only the first (no pong said so before the connection died).
    let mut ws = accept(&listener, true, 1).await;
    assert_eq!(events(&mut ws, Duration::from_millis(500)).await, [(2, 1), (3, 2)]);
    let pong = proto::Pong {
        events_received: 3,
        ..Default::default()
    };
    ws.send(send(Kind::Pong(pong))).await.unwrap();
    client.send_event("r", "line", Bytes::from(vec![3]), Vec::new());
    assert_eq!(events(&mut ws, Duration::from_millis(500)).await, [(4, 3)]);
    drop(ws);
    // A new session (the old one expired): what it never acknowledged goes out again,
    // numbered from 1; what the pong acknowledged does not.
    let mut ws = accept(&listener, false, 0).await;
    assert_eq!(events(&mut ws, Duration::from_millis(500)).await, [(1, 3)]);
    drop(ws);
    client.drop_connection();
}

/// Clients opened from one shared QUIC endpoint (one UDP socket) are separate
/// sessions that each get their own frames, and one closing leaves the others
/// playing: the endpoint outlives the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sharing_a_quic_endpoint_play_and_close_apart() {
    let relay = start().await;
    let endpoint = tickrelay_client::quic_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let connect = || {
        let mut config = config(&relay, Transport::Quic);
        config.quic_endpoint = Some(endpoint.clone());
        let (client, mut events) = Client::connect(config).unwrap();
        client.join("arena-1", "arena");
        async move {
            let session = until(&mut events, |e| match e {
                Event::Connected { session_id, .. } => Some(*session_id),
                _ => None,
            })
            .await;
            until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
            (client, events, session)
        }
    };
    let (first, _first_events, first_session) = connect().await;
    let (second, mut second_events, second_session) = connect().await;
    assert_ne!(first_session, second_session);
    assert_eq!(endpoint.open_connections(), 2, "both opened from the shared endpoint");
    first.close().await;
    let mut frames = 0;
    until(&mut second_events, |e| {
        frames += matches!(e, Event::State { .. }) as u32;
        (frames >= 10).then_some(())
    })
    .await;
    assert!(second.with_mirror("arena-1", |m| m.is_synced()).unwrap());
    let rooms = second.request(proto::request::Kind::ListRooms(proto::ListRooms::default()));
    let Some(proto::response::Kind::Rooms(list)) = rooms.await.unwrap().kind else {
        panic!("rooms listed")
    };
    assert_eq!(list.rooms[0].members, 1, "the closed client left; the other stayed");
    second.close().await;
}

/// A QUIC client connected to `relay` through `forwarder` (no pings of its own),
/// joined to the arena room `arena-1`.
async fn joined_through(
    relay: &TestServer,
    forwarder: &tickrelay_testkit::quic::Forwarder,
) -> (Client, Receiver<Event>) {
    let mut config = config(relay, Transport::Quic);
    config.url = format!("quic://localhost:{}", forwarder.addr.port());
    config.ping_interval = Duration::from_secs(60);
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("arena-1", "arena");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    (client, events)
}

/// Over QUIC a client acknowledges state frames; with inputs flowing, the
/// acknowledgements ride in the inputs' packets instead of datagrams of their own.
/// Without inputs they still go (as datagrams), so the frames stay deltas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_acks_ride_on_inputs_and_go_alone_without_them() {
    let relay = start().await;
    let forwarder = tickrelay_testkit::quic::lossy_forwarder(relay.quic_addr, 0.0, 1).await;
    let (client, mut events) = joined_through(&relay, &forwarder).await;
    // Like a game loop: one input per frame received.
    let up = || forwarder.counters.up.load(std::sync::atomic::Ordering::Relaxed);
    let (mut frames, mut full) = (0u64, 0u64);
    let before = up();
    until(&mut events, |e| {
        if let Event::State { full: is_full, .. } = e {
            client.send_input("arena-1", proto::input::Payload::Intent(Bytes::from_static(&[127, 0])));
            frames += 1;
            full += *is_full as u64;
        }
        (frames >= 60).then_some(())
    })
    .await;
    let packets = up() - before;
    // One packet per input, and a few more (QUIC's own acknowledgements when an
    // input comes late); acknowledgements in datagrams of their own would add one
    // packet per two frames.
    assert!(
        packets <= frames + frames / 6,
        "{packets} packets up for {frames} inputs"
    );
    // No inputs now: the acknowledgements go alone, and frames stay deltas.
    frames = 0;
    until(&mut events, |e| {
        if let Event::State { full: is_full, .. } = e {
            frames += 1;
            full += *is_full as u64;
        }
        (frames >= 60).then_some(())
    })
    .await;
    assert!(full <= 1, "{full} full snapshots: only the join's");
    client.close().await;
}

/// On a path whose round trip is longer than a tick, QUIC's own acknowledgements of a
/// client's inputs ride on the relay's next state datagram instead of packets of
/// their own (the client asks for it with QUIC's ACK frequency extension): one
/// packet down per frame, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_long_path_the_relays_quic_acks_ride_on_its_frames() {
    let relay = tickrelay_testkit::start_config(Config::loopback(20)).await;
    let forwarder = tickrelay_testkit::quic::slow_forwarder(relay.quic_addr, Duration::from_millis(35)).await;
    let (client, mut events) = joined_through(&relay, &forwarder).await;
    let down = || forwarder.counters.down.load(std::sync::atomic::Ordering::Relaxed);
    // Like a game loop: one input per frame received; the first frames let the
    // round-trip estimate settle.
    let mut frames = 0u64;
    let mut before = 0;
    until(&mut events, |e| {
        if matches!(e, Event::State { .. }) {
            client.send_input("arena-1", proto::input::Payload::Intent(Bytes::from_static(&[127, 0])));
            frames += 1;
            if frames == 20 {
                before = down();
            }
        }
        (frames >= 60).then_some(())
    })
    .await;
    let packets = down() - before;
    assert!(packets <= 40 + 40 / 4, "{packets} packets down for 40 frames");
    client.close().await;
}
