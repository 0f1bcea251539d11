//! The client against fake relays that misbehave (a broken or compromised relay, or a
//! man in the middle of a `ws://` deployment): it stays bounded in what it holds,
//! sends and retries, and says what happened. (The seventh outside attack,
//! `bench/attacks/seventh/`, found each of these.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use proto::client_message::Kind as Out;
use proto::server_message::Kind as In;
use tickrelay_client::{Backoff, Client, ClientConfig, Event, Trust, proto};
use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

mod common;
use common::{FakeSocket, fake_envelope, fake_relay, fake_server_message, next_messages, send_welcome, until};

fn config(url: String) -> ClientConfig {
    let mut config = ClientConfig::new(url, Trust::CertFile("/nonexistent/cert.pem".into()));
    config.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(40),
        max_attempts: Some(3),
    };
    config
}

fn welcome(token: &str) -> proto::Welcome {
    proto::Welcome {
        resume_token: token.into(),
        heartbeat_interval_ms: 10_000,
        heartbeat_timeout_ms: 10_000,
        ..Default::default()
    }
}

async fn close(mut ws: FakeSocket, code: u16) {
    let frame = CloseFrame {
        code: code.into(),
        reason: "fake relay".into(),
    };
    let _ = ws.close(Some(frame)).await;
    while next_messages(&mut ws).await.is_some() {}
}

/// The answer to join `request_id` of relay room `room`.
fn joined_relay(request_id: u64, room: &str) -> proto::Joined {
    proto::Joined {
        request_id,
        room: room.into(),
        room_type: "relay".into(),
        ..Default::default()
    }
}

/// An `Error` with `code` answering `request_id` about `room`.
fn error(code: proto::ErrorCode, request_id: u64, room: &str) -> proto::Error {
    proto::Error {
        code: code as i32,
        request_id,
        room: room.into(),
        ..Default::default()
    }
}

/// A fake relay's `Welcome` to its `n`th connection: the first starts the session,
/// the later ones resume it.
fn welcome_resuming_after_first(n: u32) -> proto::Welcome {
    proto::Welcome {
        resumed: n > 1,
        ..welcome("t")
    }
}

/// Reads until the client joins a room, answers it as a relay room, and returns the
/// room's name.
async fn answer_join(ws: &mut FakeSocket, last_input_seq: u64) -> String {
    loop {
        for message in next_messages(ws).await.expect("the client joins") {
            if let Out::Join(join) = message {
                let joined = proto::Joined {
                    last_input_seq,
                    ..joined_relay(join.request_id, &join.room)
                };
                ws.send(fake_server_message(In::Joined(joined))).await.unwrap();
                return join.room;
            }
        }
    }
}

/// The client's next `JoinRoom` (what comes before it is read and dropped).
async fn next_join(ws: &mut FakeSocket) -> proto::JoinRoom {
    loop {
        let messages = next_messages(ws).await.expect("the client joins");
        if let Some(join) = messages.into_iter().find_map(|m| match m {
            Out::Join(join) => Some(join),
            _ => None,
        }) {
            return join;
        }
    }
}

/// A client joined to room `r`, and its events.
fn joined_client(url: String) -> (Client, Receiver<Event>) {
    let (client, events) = Client::connect(config(url)).unwrap();
    client.join("r", "relay");
    (client, events)
}

/// A relay that welcomes and then closes at once: every such connection is a failed
/// attempt, and the client gives up after `max_attempts` (it used to start counting
/// again at each upgrade, and retry for ever). A 4504 (resume failed) is followed at
/// once, by a new session, only when the connection presented a resume token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_closes_right_after_welcoming_is_a_failed_attempt() {
    let connections = Arc::new(AtomicU32::new(0));
    let counted = connections.clone();
    let url = fake_relay(move |_, asked, mut ws| {
        counted.fetch_add(1, Ordering::Relaxed);
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            close(ws, if asked.contains("resume=") { 4504 } else { 1001 }).await;
        }
    })
    .await;
    let (_client, mut events) = Client::connect(config(url)).unwrap();
    let mut attempts = Vec::new();
    let gave_up = until(&mut events, |e| match e {
        Event::Reconnecting { attempt, .. } => {
            attempts.push(*attempt);
            None
        }
        Event::GaveUp { attempts, .. } => Some(*attempts),
        _ => None,
    })
    .await;
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(gave_up, 4);
    // 1001, then a resume refused with 4504 and a new session at once, three times;
    // then the fourth 1001.
    assert_eq!(connections.load(Ordering::Relaxed), 7);
}

/// A relay of another protocol version (its checksums differ) is said so once and not
/// tried again: every frame would be a desync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_of_another_protocol_version_is_left_at_once() {
    let connections = Arc::new(AtomicU32::new(0));
    let counted = connections.clone();
    let url = fake_relay(move |_, _, mut ws| {
        counted.fetch_add(1, Ordering::Relaxed);
        async move {
            let older = proto::Welcome {
                protocol_version: proto::PROTOCOL_VERSION - 1,
                session_id: 1,
                ..welcome("t")
            };
            ws.send(fake_server_message(In::Welcome(older))).await.unwrap();
            while next_messages(&mut ws).await.is_some() {}
        }
    })
    .await;
    let (_client, mut events) = Client::connect(config(url)).unwrap();
    let reason = until(&mut events, |e| match e {
        Event::GaveUp { attempts: 0, reason } => Some(reason.clone()),
        Event::Reconnecting { .. } => panic!("tried again: {e:?}"),
        _ => None,
    })
    .await;
    assert!(reason.contains("protocol version 1"), "{reason}");
    assert_eq!(connections.load(Ordering::Relaxed), 1);
}

/// 1014 (Bad Gateway, which proxies send) is a close to come back from; the
/// WebSocket library reports it as a protocol error, which ended the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_gateway_close_is_retried() {
    let url = fake_relay(|_, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        close(ws, 1014).await;
    })
    .await;
    let (_client, mut events) = Client::connect(config(url)).unwrap();
    let retried = until(&mut events, |e| match e {
        Event::Reconnecting { .. } => Some(true),
        Event::GaveUp { .. } => Some(false),
        _ => None,
    })
    .await;
    assert!(retried);
}

/// A flood of pings: one pong waits at most (the newest), and an input sent after
/// the flood goes out at once rather than behind ten thousand pongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_answered_once_and_starves_nothing() {
    let (seen, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let seen = seen.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let room = answer_join(&mut ws, 0).await;
            let mut pings: Vec<In> = (0..10_000)
                .map(|nonce| {
                    In::Ping(proto::Ping {
                        nonce,
                        ..Default::default()
                    })
                })
                .collect();
            // A frame that fails its checksum between them: its resync request may
            // be sent at once, from the middle of the envelope.
            let broken = proto::StateFrame {
                room: room.clone(),
                tick: 1,
                checksum: Some(12_345),
                ..Default::default()
            };
            pings.insert(5_000, In::State(broken));
            ws.send(fake_envelope(pings, 0)).await.unwrap();
            let event = proto::RoomEvent {
                room,
                kind: "flooded".into(),
                ..Default::default()
            };
            ws.send(fake_server_message(In::Event(event))).await.unwrap();
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    let _ = seen.send(message);
                }
            }
        }
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::RoomEvent(_)).then_some(())).await;
    client.send_input("r", proto::input::Payload::Intent(Bytes::from_static(&[1])));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut pongs, mut inputs) = (Vec::new(), 0);
    while let Ok(message) = seen_rx.try_recv() {
        match message {
            Out::Pong(pong) => pongs.push(pong.nonce),
            Out::Input(_) => inputs += 1,
            _ => {}
        }
    }
    assert_eq!(pongs, [9_999], "one pong, for the newest ping");
    assert_eq!(inputs, 1, "the input went out within the second");
}

/// A message numbered far beyond the last one received is no gap a relay makes: the
/// connection and its session go (the next connection presents no resume token), and
/// the new session's messages are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_number_no_relay_sends_starts_a_new_session() {
    let (asked_tx, mut asked_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |n, asked, mut ws| {
        let _ = asked_tx.send(asked);
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let event = |kind: &str| {
                In::Event(proto::RoomEvent {
                    kind: kind.into(),
                    ..Default::default()
                })
            };
            let (kind, seq) = if n == 1 { ("jump", 1 << 63) } else { ("after", 1) };
            ws.send(fake_envelope(vec![event(kind)], seq)).await.unwrap();
            while next_messages(&mut ws).await.is_some() {}
        }
    })
    .await;
    let (_client, mut events) = Client::connect(config(url)).unwrap();
    let kind = until(&mut events, |e| match e {
        Event::RoomEvent(event) => Some(event.kind.clone()),
        _ => None,
    })
    .await;
    assert_eq!(kind, "after");
    asked_rx.recv().await.unwrap();
    let second = asked_rx.recv().await.unwrap();
    assert!(!second.contains("resume="), "{second}");
}

/// The same for a session taken over from an earlier process (its numbering unknown):
/// a first number no session reaches is not taken as where the numbering stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_message_number_no_session_reaches_starts_a_new_session() {
    let (asked_tx, mut asked_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |n, asked, mut ws| {
        let _ = asked_tx.send(asked);
        async move {
            let resumed = proto::Welcome {
                resumed: n == 1,
                ..welcome("t")
            };
            send_welcome(&mut ws, resumed).await;
            let (kind, seq) = if n == 1 { ("jump", (1 << 53) + 1) } else { ("after", 1) };
            let event = In::Event(proto::RoomEvent {
                kind: kind.into(),
                ..Default::default()
            });
            ws.send(fake_envelope(vec![event], seq)).await.unwrap();
            while next_messages(&mut ws).await.is_some() {}
        }
    })
    .await;
    let config = ClientConfig {
        resume_token: Some("earlier".into()),
        ..config(url)
    };
    let (_client, mut events) = Client::connect(config).unwrap();
    let kind = until(&mut events, |e| match e {
        Event::RoomEvent(event) => Some(event.kind.clone()),
        _ => None,
    })
    .await;
    assert_eq!(kind, "after");
    let first = asked_rx.recv().await.unwrap();
    assert!(
        first.contains("resume=earlier") && !first.contains("received="),
        "{first}"
    );
    let second = asked_rx.recv().await.unwrap();
    assert!(!second.contains("resume="), "{second}");
}

/// A join's answer that acknowledges inputs beyond any input number is ignored: the
/// next input is numbered 1 (the count used to wrap to 0, or panic). And a frame that
/// acknowledges inputs never sent acknowledges none: the input is sent again when the
/// session resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_of_inputs_never_sent_are_ignored() {
    let (seq_tx, mut seq_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |n, _, mut ws| {
        let seq_tx = seq_tx.clone();
        async move {
            let resumed = proto::Welcome {
                resumed: n > 1,
                ..welcome("t")
            };
            send_welcome(&mut ws, resumed).await;
            if n == 1 {
                answer_join(&mut ws, u64::MAX).await;
            }
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    let Out::Input(input) = message else { continue };
                    let _ = seq_tx.send(input.seq);
                    if n == 1 {
                        let frame = proto::StateFrame {
                            room: input.room,
                            tick: 1,
                            last_input_seq: 1_000,
                            ..Default::default()
                        };
                        ws.send(fake_server_message(In::State(frame))).await.unwrap();
                        return; // dropped: the client resumes
                    }
                }
            }
        }
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    client.send_input("r", proto::input::Payload::Intent(Bytes::from_static(&[1])));
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), seq_rx.recv())
            .await
            .unwrap()
    };
    assert_eq!(next().await, Some(1), "numbered from 1");
    assert_eq!(next().await, Some(1), "sent again on the resumed session");
}

/// Only a connection's first `GoingAway` counts: after a flood of them the client
/// goes to the first URL named, not the last (nor through thousands of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_going_away_counts() {
    let (reached, mut reached_rx) = tokio::sync::mpsc::unbounded_channel();
    let next_node = fake_relay(move |_, _, mut ws| {
        let _ = reached.send(());
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            while next_messages(&mut ws).await.is_some() {}
        }
    })
    .await;
    let url = fake_relay(move |_, _, mut ws| {
        let next_node = next_node.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let nowhere = (0..10_000).map(|n| format!("ws://127.0.0.1:9/ws?n={n}"));
            let away = std::iter::once(next_node)
                .chain(nowhere)
                .map(|url| In::GoingAway(proto::GoingAway { url }))
                .collect();
            ws.send(fake_envelope(away, 0)).await.unwrap();
            close(ws, 1001).await;
        }
    })
    .await;
    let (_client, _events) = Client::connect(config(url)).unwrap();
    let reached = tokio::time::timeout(Duration::from_secs(5), reached_rx.recv()).await;
    assert!(reached.is_ok(), "the first URL named was not tried");
}

/// Frames whose checksum never matches: a full snapshot is asked for at most once a
/// second (it used to be once per frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resyncs_are_asked_for_at_most_once_a_second() {
    let (resyncs_tx, mut resyncs_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let resyncs_tx = resyncs_tx.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let room = answer_join(&mut ws, 0).await;
            let (mut frames, mut resyncs) = (tokio::time::interval(Duration::from_millis(20)), 0);
            let until = tokio::time::Instant::now() + Duration::from_millis(2_500);
            for tick in 1.. {
                tokio::select! {
                    _ = frames.tick() => {
                        let frame = proto::StateFrame {
                            room: room.clone(),
                            tick,
                            checksum: Some(1),
                            ..Default::default()
                        };
                        ws.send(fake_server_message(In::State(frame))).await.unwrap();
                    }
                    messages = next_messages(&mut ws) => {
                        let resync = |m: &Out| matches!(m, Out::Request(r) if matches!(r.kind, Some(proto::request::Kind::Resync(_))));
                        resyncs += messages.unwrap_or_default().iter().filter(|m| resync(m)).count();
                    }
                    () = tokio::time::sleep_until(until) => break,
                }
            }
            let _ = resyncs_tx.send(resyncs);
        }
    })
    .await;
    let (_client, _events) = joined_client(url);
    let resyncs = tokio::time::timeout(Duration::from_secs(10), resyncs_rx.recv())
        .await
        .unwrap();
    let resyncs = resyncs.unwrap();
    assert!((1..=3).contains(&resyncs), "{resyncs} resyncs in 2.5 s");
}

/// A message larger than any a relay sends (a full snapshot of a big room, at most
/// 16 MiB) ends the connection before it is read whole (the WebSocket library's own
/// limit is 64 MiB, in frames of up to 16 MiB: here two of 8.5 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_any_relay_sends_is_not_read() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let url = fake_relay(|_, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        let event = proto::RoomEvent {
            kind: "huge".into(),
            payload: vec![0; 17 << 20].into(),
            ..Default::default()
        };
        let Message::Binary(mut bytes) = fake_server_message(In::Event(event)) else {
            unreachable!()
        };
        let rest = bytes.split_off(bytes.len() / 2);
        let first = Frame::message(bytes, OpCode::Data(Data::Binary), false);
        let _ = ws.send(Message::Frame(first)).await;
        let _ = ws
            .send(Message::Frame(Frame::message(rest, OpCode::Data(Data::Continue), true)))
            .await;
        while next_messages(&mut ws).await.is_some() {}
    })
    .await;
    let (_client, mut events) = Client::connect(config(url)).unwrap();
    let refused = until(&mut events, |e| match e {
        Event::RoomEvent(_) => Some(false),
        Event::Reconnecting { .. } => Some(true),
        _ => None,
    })
    .await;
    assert!(refused, "the 17 MiB message was delivered");
}

/// A `Welcome` whose limits are all 0 (not said) leaves the defaults: the client's
/// join goes out and twenty inputs follow at once (it used to refuse every message
/// as larger than a 0-byte envelope, and to pace at under a message a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_of_zero_are_not_announced_ones() {
    let (inputs_tx, mut inputs_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let inputs_tx = inputs_tx.clone();
        async move {
            let welcome = proto::Welcome {
                limits: Some(proto::Limits::default()),
                ..welcome("t")
            };
            send_welcome(&mut ws, welcome).await;
            answer_join(&mut ws, 0).await;
            while let Some(messages) = next_messages(&mut ws).await {
                let inputs = messages.iter().filter(|m| matches!(m, Out::Input(_))).count();
                let _ = inputs_tx.send(inputs);
            }
        }
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    for _ in 0..20 {
        client.send_input("r", proto::input::Payload::Intent(Bytes::from_static(&[1])));
    }
    let mut inputs = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while inputs < 20 {
        match tokio::time::timeout_at(deadline, inputs_rx.recv()).await {
            Ok(Some(n)) => inputs += n,
            _ => panic!("{inputs} of 20 inputs within a second"),
        }
    }
}

/// A connection on which a state frame was applied was a healthy one, however short
/// (a rolling restart may close several in a row): the client does not give up after
/// `max_attempts` of them, as it does for connections that never played.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_played_are_no_failed_attempts() {
    let connections = Arc::new(AtomicU32::new(0));
    let counted = connections.clone();
    let url = fake_relay(move |_, _, mut ws| {
        counted.fetch_add(1, Ordering::Relaxed);
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let room = answer_join(&mut ws, 0).await;
            let frame = proto::StateFrame {
                room,
                tick: 1,
                ..Default::default()
            };
            ws.send(fake_server_message(In::State(frame))).await.unwrap();
            close(ws, 1001).await;
        }
    })
    .await;
    let (_client, mut events) = joined_client(url);
    let mut played = 0;
    until(&mut events, |e| match e {
        Event::State { .. } => {
            played += 1;
            (played == 8).then_some(())
        }
        Event::GaveUp { .. } => panic!("gave up after {played} connections that played"),
        _ => None,
    })
    .await;
    assert!(connections.load(Ordering::Relaxed) >= 8);
}

/// Sends `count` state frames of `room`, 50 ms apart.
async fn send_frames(ws: &mut FakeSocket, room: &str, count: u64) {
    for tick in 1..=count {
        let frame = proto::StateFrame {
            room: room.to_string(),
            tick,
            ..Default::default()
        };
        ws.send(fake_server_message(In::State(frame))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A relay whose frames stop and which answers nothing more (killed without its
/// connections closed: QUIC gets no close from the kernel, a machine that went gets
/// none at all) is left within a second plus `stall_timeout`, not `quiet_timeout`;
/// one whose room merely went idle answers the ping and is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_gone_silent_mid_game_is_left_within_the_stall_timeout() {
    let url = fake_relay(move |n, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        let room = answer_join(&mut ws, 0).await;
        send_frames(&mut ws, &room, 20).await;
        // The first connection goes silent (and reads on, unanswered); the second
        // stops its frames but answers pings.
        while let Some(messages) = next_messages(&mut ws).await {
            for message in messages {
                if let (2.., Out::Ping(ping)) = (n, message) {
                    let pong = proto::Pong {
                        ping_sent_time_us: ping.sent_time_us,
                        ..Default::default()
                    };
                    ws.send(fake_server_message(In::Pong(pong))).await.unwrap();
                }
            }
        }
    })
    .await;
    let mut config = config(url);
    config.quiet_timeout = Duration::from_secs(30);
    config.stall_timeout = Duration::from_millis(500);
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("r", "relay");
    let mut last_frame = None;
    let (code, reason) = until(&mut events, |e| match e {
        Event::State { .. } => {
            last_frame = Some(std::time::Instant::now());
            None
        }
        Event::Disconnected { code, reason, .. } => Some((*code, reason.clone())),
        _ => None,
    })
    .await;
    let silent_for = last_frame.expect("frames before the silence").elapsed();
    assert_eq!(code, 1006, "reported as a lost connection");
    assert!(reason.contains("state frames stopped"), "{reason}");
    assert!(
        silent_for < Duration::from_secs(3),
        "left after {silent_for:?} of silence"
    );
    let mut frames = 0;
    until(&mut events, |e| {
        frames += u32::from(matches!(e, Event::State { .. }));
        (frames == 20).then_some(())
    })
    .await;
    let kept = tokio::time::timeout(Duration::from_secs(3), async {
        until(&mut events, |e| {
            matches!(e, Event::Reconnecting { .. } | Event::Disconnected { .. }).then_some(())
        })
        .await
    })
    .await;
    assert!(kept.is_err(), "an idle room's relay that answers its ping is kept");
}

/// A join sent again while the session's first join of the room is still being
/// answered (as after a resume while the room directory is slow) is answered
/// `ALREADY_MEMBER`, then the first join's `Joined` comes: the client tells the
/// application of the join, not of an error (the soak of the fourteenth session saw
/// bots count it as one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_already_being_answered_is_no_error() {
    let url = fake_relay(|_, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        let join = loop {
            let messages = next_messages(&mut ws).await.expect("the client joins");
            if let Some(Out::Join(join)) = messages.into_iter().find(|m| matches!(m, Out::Join(_))) {
                break join;
            }
        };
        let already = proto::Error {
            code: proto::ErrorCode::AlreadyMember as i32,
            message: "a join of this room is already waiting for the room directory".into(),
            request_id: join.request_id + 1,
            room: join.room.clone(),
            ..Default::default()
        };
        let joined = proto::Joined {
            request_id: join.request_id,
            room: join.room,
            room_type: "relay".into(),
            ..Default::default()
        };
        ws.send(fake_envelope(vec![In::Error(already), In::Joined(joined)], 1))
            .await
            .unwrap();
        while next_messages(&mut ws).await.is_some() {}
    })
    .await;
    let (_client, mut events) = joined_client(url);
    let first = until(&mut events, |e| match e {
        Event::Error(e) => Some(format!("error {e:?}")),
        Event::Joined(j) => Some(format!("joined {}", j.room)),
        _ => None,
    })
    .await;
    assert_eq!(first, "joined r");
}

/// A new process that joins a room its predecessor was still joining: the new join is
/// answered `ALREADY_MEMBER`, then the predecessor's join its `Joined` (with the
/// predecessor's request id, below any this client gives): the room is joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predecessors_join_answered_after_a_new_processs_join_joins_the_room() {
    let url = fake_relay(|_, _, mut ws| async move {
        let resumed = proto::Welcome {
            resumed: true,
            ..welcome("t")
        };
        send_welcome(&mut ws, resumed).await;
        let join = next_join(&mut ws).await;
        let already = error(proto::ErrorCode::AlreadyMember, join.request_id, &join.room);
        let predecessors = joined_relay(5, &join.room);
        ws.send(fake_envelope(vec![In::Error(already), In::Joined(predecessors)], 1))
            .await
            .unwrap();
        while next_messages(&mut ws).await.is_some() {}
    })
    .await;
    let config = ClientConfig {
        resume_token: Some("earlier".into()),
        ..config(url)
    };
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("r", "relay");
    let first = until(&mut events, |e| match e {
        Event::Error(e) => Some(format!("error {e:?}")),
        Event::Joined(j) => Some(format!("joined {} {}", j.room, j.request_id)),
        _ => None,
    })
    .await;
    assert_eq!(first, "joined r 5");
}

/// A relay that answers a join again and again (`Joined` a thousand times) makes
/// the client send its unacknowledged input again at most a few times, not once per
/// `Joined`; and a join retry set before the room was joined is not sent after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_again_and_again_does_not_multiply_the_inputs_sent() {
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let seen_tx = seen_tx.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            // The first join is told to wait (a retry in 1 s), the next answered.
            let join = loop {
                let messages = next_messages(&mut ws).await.expect("the client joins");
                if let Some(Out::Join(join)) = messages.into_iter().find(|m| matches!(m, Out::Join(_))) {
                    break join;
                }
            };
            let wait = proto::Error {
                code: proto::ErrorCode::Unavailable as i32,
                request_id: join.request_id,
                room: join.room.clone(),
                retry_after_ms: 1_000,
                ..Default::default()
            };
            ws.send(fake_server_message(In::Error(wait))).await.unwrap();
            let joined = proto::Joined {
                room: join.room.clone(),
                room_type: "relay".into(),
                ..Default::default()
            };
            ws.send(fake_server_message(In::Joined(joined.clone()))).await.unwrap();
            let mut again_and_again = true;
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    let _ = seen_tx.send(message.clone());
                    if matches!(message, Out::Input(_)) && std::mem::take(&mut again_and_again) {
                        let kinds = vec![In::Joined(joined.clone()); 1_000];
                        ws.send(fake_envelope(kinds, 0)).await.unwrap();
                    }
                }
            }
        }
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    client.send_input("r", proto::input::Payload::Intent(Bytes::from_static(&[1])));
    let (mut inputs, mut joins) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, seen_rx.recv()).await {
        match message {
            Out::Input(_) => inputs += 1,
            Out::Join(_) => joins += 1,
            _ => {}
        }
    }
    assert!((1..=3).contains(&inputs), "{inputs} inputs sent for one");
    assert_eq!(joins, 0, "no join retried once joined");
}

/// A relay that closes before its `Welcome` (1013: try again later) is a failed
/// attempt at that URL: the next attempt tries the next one, as a refused connection
/// would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_before_the_welcome_moves_on_to_the_next_url() {
    let busy = fake_relay(|_, _, ws| close(ws, 1013)).await;
    let fallback = fake_relay(|_, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        while next_messages(&mut ws).await.is_some() {}
    })
    .await;
    let mut config = config(busy);
    config.fallback_urls = vec![fallback.clone()];
    let (_client, mut events) = Client::connect(config).unwrap();
    let connected = until(&mut events, |e| match e {
        Event::Connected { .. } => Some(true),
        Event::GaveUp { .. } => Some(false),
        _ => None,
    })
    .await;
    assert!(connected, "the fallback was tried");
}

/// An error naming a room whose join is still unanswered, but answering another
/// message (a request the application made meanwhile), does not refuse the join: the
/// `Joined` that follows is taken, and inputs for the room go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_for_another_message_about_a_joining_room_is_not_its_refusal() {
    let (inputs, mut inputs_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let inputs = inputs.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let join = next_join(&mut ws).await;
            let not_yet = proto::Error {
                code: proto::ErrorCode::NotAMember as i32,
                room: join.room.clone(),
                request_id: join.request_id + 1000,
                ..Default::default()
            };
            let joined = proto::Joined {
                request_id: join.request_id,
                room: join.room.clone(),
                room_type: "relay".into(),
                ..Default::default()
            };
            let answers = vec![In::Error(not_yet), In::Joined(joined)];
            ws.send(fake_envelope(answers, 1)).await.unwrap();
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    if let Out::Input(input) = message {
                        let _ = inputs.send(input.room);
                    }
                }
            }
        }
    })
    .await;
    let (client, mut events) = Client::connect(config(url)).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    client.send_input("r", proto::input::Payload::Intent(Bytes::from_static(&[1])));
    let room = tokio::time::timeout(Duration::from_secs(5), inputs_rx.recv()).await;
    assert_eq!(room.ok().flatten().as_deref(), Some("r"), "the room was kept");
}

/// A token refresh the relay refuses for now (UNAVAILABLE: it does not hold the
/// token's signing key yet) is sent again by itself after the wait the relay names,
/// with the same token; one refused for good is not sent again.
#[tokio::test]
async fn a_refresh_refused_for_now_is_sent_again_after_the_wait() {
    use tokio::time::Instant;
    let (seen, mut refreshes) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let seen = seen.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let mut asked_new = 0;
            while let Some(kinds) = next_messages(&mut ws).await {
                for kind in kinds {
                    let proto::client_message::Kind::RefreshToken(refresh) = kind else {
                        continue;
                    };
                    let _ = seen.send((refresh.token.clone(), Instant::now()));
                    let request_id = refresh.request_id;
                    let refused = |code: proto::ErrorCode| {
                        proto::server_message::Kind::Error(proto::Error {
                            code: code as i32,
                            request_id,
                            retry_after_ms: 1_000,
                            ..Default::default()
                        })
                    };
                    let answer = match refresh.token.as_str() {
                        "new" if asked_new == 0 => refused(proto::ErrorCode::Unavailable),
                        "new" => proto::server_message::Kind::TokenRefreshed(proto::TokenRefreshed {
                            request_id,
                            expires_at_unix: 0,
                        }),
                        _ => refused(proto::ErrorCode::Forbidden),
                    };
                    asked_new += usize::from(refresh.token == "new");
                    ws.send(fake_server_message(answer)).await.unwrap();
                }
            }
        }
    })
    .await;
    let (client, mut events) = Client::connect(config(url)).unwrap();
    until(&mut events, |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    let asked = Instant::now();
    client.set_token("new");
    async fn next<T>(refreshes: &mut tokio::sync::mpsc::UnboundedReceiver<T>, within: Duration) -> Option<T> {
        tokio::time::timeout(within, refreshes.recv()).await.ok().flatten()
    }
    let wait = Duration::from_secs(5);
    let first = next(&mut refreshes, wait).await.expect("the refresh");
    let again = next(&mut refreshes, wait).await.expect("the refresh, sent again");
    assert_eq!((&*first.0, &*again.0), ("new", "new"));
    assert!(again.1 >= asked + Duration::from_millis(1_000), "after the wait");
    let refused = until(&mut events, |e| match e {
        Event::Error(e) => Some(e.code),
        _ => None,
    })
    .await;
    assert_eq!(
        refused,
        proto::ErrorCode::Unavailable as i32,
        "each refusal is reported"
    );
    // Refused for good: not sent again.
    client.set_token("bad");
    let bad = next(&mut refreshes, wait).await.map(|(token, _)| token);
    assert_eq!(bad.as_deref(), Some("bad"));
    let quiet = next(&mut refreshes, Duration::from_millis(2_500)).await;
    assert!(quiet.is_none(), "sent again: {quiet:?}");
    client.close().await;
}

/// A `Joined` a relay sends again after a resume that lost messages (request id 0)
/// tells the room's owner and listing and sends nothing again (the resume did); a
/// reconnect to a new session forgets them until its join is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_sent_again_updates_the_owner_and_listing_and_a_new_session_forgets_them() {
    let (seen, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let answer = Arc::new(tokio::sync::Notify::new());
    let go = answer.clone();
    let url = fake_relay(move |n, _, mut ws| {
        let (seen, go) = (seen.clone(), go.clone());
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let join = next_join(&mut ws).await;
            if n == 2 {
                seen.send("join asked").unwrap();
                go.notified().await;
            }
            let joined = |request_id, owner| {
                In::Joined(proto::Joined {
                    request_id,
                    room: join.room.clone(),
                    room_type: "relay".into(),
                    owner,
                    // Locked as the owner changes to 7.
                    locked: owner == 7,
                    ..Default::default()
                })
            };
            ws.send(fake_server_message(joined(join.request_id, n as u64)))
                .await
                .unwrap();
            if n == 2 {
                while next_messages(&mut ws).await.is_some() {}
                return;
            }
            // The input, then the room's `Joined` again: the input is not sent again.
            while !(next_messages(&mut ws).await.unwrap())
                .iter()
                .any(|m| matches!(m, Out::Input(_)))
            {}
            ws.send(fake_server_message(joined(0, 7))).await.unwrap();
            let mut inputs = 0;
            let quiet = tokio::time::sleep(Duration::from_millis(300));
            tokio::pin!(quiet);
            loop {
                tokio::select! {
                    () = &mut quiet => break,
                    messages = next_messages(&mut ws) => {
                        let messages = messages.expect("connected");
                        inputs += messages.iter().filter(|m| matches!(m, Out::Input(_))).count();
                    }
                }
            }
            seen.send(if inputs == 0 {
                "no input again"
            } else {
                "an input again"
            })
            .unwrap();
            // Dropped without a close: the client reconnects, to a new session.
        }
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| {
        matches!(e, Event::Joined(j) if j.request_id != 0).then_some(())
    })
    .await;
    assert_eq!(client.room_owner("r"), Some(1));
    client.send_input("r", proto::input::Payload::Intent(Bytes::from_static(&[1])));
    until(&mut events, |e| {
        matches!(e, Event::Joined(j) if j.request_id == 0).then_some(())
    })
    .await;
    assert_eq!(client.room_owner("r"), Some(7));
    assert_eq!(client.room_listing("r").map(|l| l.locked), Some(true));
    assert_eq!(seen_rx.recv().await, Some("no input again"));
    assert_eq!(seen_rx.recv().await, Some("join asked"));
    assert_eq!(client.room_owner("r"), None, "a new session's join is not answered yet");
    assert_eq!(client.room_listing("r"), None);
    answer.notify_one();
    until(&mut events, |e| {
        matches!(e, Event::Joined(j) if j.request_id != 0).then_some(())
    })
    .await;
    assert_eq!(client.room_owner("r"), Some(2));
    client.close().await;
}

/// A relay that sends a second `Welcome` on one connection is broken: the client
/// drops the connection and starts a new session (no resume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_welcome_on_one_connection_starts_a_new_session() {
    let (asked, mut asked_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |n, query, mut ws| {
        let asked = asked.clone();
        async move {
            if n == 2 {
                asked.send(query).unwrap();
            }
            send_welcome(&mut ws, welcome("t")).await;
            if n == 1 {
                send_welcome(&mut ws, welcome("t")).await;
            }
            while next_messages(&mut ws).await.is_some() {}
        }
    })
    .await;
    let (client, _events) = Client::connect(config(url)).unwrap();
    let query = tokio::time::timeout(Duration::from_secs(10), asked_rx.recv())
        .await
        .unwrap();
    assert!(!query.unwrap().contains("resume="), "a new session");
    client.close().await;
}

/// A room left and joined again while the connection is down is left, then joined,
/// once it is back (the other way round, the leave would undo the join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_left_and_joined_again_offline_is_left_then_joined() {
    let (sent, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |n, _, mut ws| {
        let sent = sent.clone();
        async move {
            if n == 1 {
                send_welcome(&mut ws, welcome("t")).await;
                answer_join(&mut ws, 0).await;
                return; // dropped without a close
            }
            let resumed = proto::Welcome {
                resumed: true,
                ..welcome("t")
            };
            send_welcome(&mut ws, resumed).await;
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    match message {
                        Out::Join(_) => sent.send("join").unwrap(),
                        Out::Leave(_) => sent.send("leave").unwrap(),
                        _ => {}
                    }
                }
            }
        }
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    until(&mut events, |e| matches!(e, Event::Disconnected { .. }).then_some(())).await;
    client.leave("r");
    client.join("r", "relay");
    let mut order = Vec::new();
    while order.len() < 2 {
        order.push(
            tokio::time::timeout(Duration::from_secs(10), sent_rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(order, ["leave", "join"]);
    client.close().await;
}

/// The answer to a join made before the room was left and joined again (the relay
/// answers a join before the leave that follows it) is not the new join's: the new
/// join, refused for now, is sent again once its wait is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_for_a_join_made_before_a_leave_is_not_the_new_joins() {
    let (seen, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let seen = seen.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let first = next_join(&mut ws).await;
            seen.send(0).unwrap();
            let second = next_join(&mut ws).await;
            let joined = proto::Joined {
                request_id: first.request_id,
                room: first.room.clone(),
                room_type: "relay".into(),
                owner: 7,
                ..Default::default()
            };
            let refused = proto::Error {
                code: proto::ErrorCode::RateLimited as i32,
                room: second.room.clone(),
                request_id: second.request_id,
                retry_after_ms: 300,
                ..Default::default()
            };
            let answers = fake_envelope(vec![In::Joined(joined), In::Error(refused)], 1);
            ws.send(answers).await.unwrap();
            let third = next_join(&mut ws).await;
            seen.send(third.request_id.saturating_sub(second.request_id)).unwrap();
            while next_messages(&mut ws).await.is_some() {}
        }
    })
    .await;
    let (client, _events) = joined_client(url);
    assert_eq!(seen_rx.recv().await, Some(0));
    client.leave("r");
    client.join("r", "relay");
    let again = tokio::time::timeout(Duration::from_secs(10), seen_rx.recv())
        .await
        .unwrap();
    assert!(again.is_some_and(|n| n > 0), "the new join sent again: {again:?}");
    assert_eq!(client.room_owner("r"), None, "not joined by the first join's answer");
    client.close().await;
}

/// The `Disconnected` of a connection whose node stops names that node, not the one
/// its `GoingAway` named for the next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_nodes_disconnect_names_that_node() {
    let next = fake_relay(|_, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        while next_messages(&mut ws).await.is_some() {}
    })
    .await;
    let named = next.clone();
    let stopping = fake_relay(move |_, _, mut ws| {
        let named = named.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let away = In::GoingAway(proto::GoingAway { url: named });
            ws.send(fake_server_message(away)).await.unwrap();
            close(ws, 1001).await;
        }
    })
    .await;
    let (client, mut events) = Client::connect(config(stopping.clone())).unwrap();
    let url = until(&mut events, |e| match e {
        Event::Disconnected { url, .. } => Some(url.clone()),
        _ => None,
    })
    .await;
    assert_eq!(url, stopping);
    client.close().await;
}

/// A relay that stops reading (its socket's buffer full) while it goes on sending
/// frames is a lost connection after `write_timeout`: the client does not stay in a
/// write for ever (frames keep arriving, so neither the stall nor the quiet timeout
/// would end it), and connects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stops_reading_is_left_after_the_write_timeout() {
    let url = fake_relay(move |n, _, mut ws| async move {
        let mut welcome = welcome("t");
        // Limits that do not pace the client: its writes fill the socket at once.
        welcome.limits = Some(proto::Limits {
            max_message_bytes: 64 * 1024,
            messages_per_second: 1_000_000,
            message_burst: 1_000_000,
            bytes_per_second: 1 << 30,
            byte_burst: 1 << 30,
        });
        send_welcome(&mut ws, welcome).await;
        if n == 1 {
            let room = answer_join(&mut ws, 0).await;
            // 20 s of frames, nothing read.
            send_frames(&mut ws, &room, 400).await;
        } else {
            while next_messages(&mut ws).await.is_some() {}
        }
    })
    .await;
    let mut config = config(url);
    config.write_timeout = Duration::from_millis(500);
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    // 15 MB of inputs: more than loopback's socket buffers at both ends hold.
    for _ in 0..1000 {
        let payload = proto::input::Payload::Intent(Bytes::from(vec![1; 15_000]));
        assert!(client.send_input("r", payload).is_some());
    }
    let started = std::time::Instant::now();
    let reason = until(&mut events, |e| match e {
        Event::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("took nothing written"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "left after {:?}",
        started.elapsed()
    );
    until(&mut events, |e| matches!(e, Event::Connected { .. }).then_some(())).await;
}

/// A leave and a quick join written on a connection that died before the relay
/// answered them are sent again after the resume, with their request ids (the relay
/// runs a quick join once per id): the lost connection may not have delivered them,
/// and the room would otherwise stay held, the quick join unanswered. A relay that
/// had the leave answers the second one `NOT_A_MEMBER`: its answer, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_and_a_quick_join_unanswered_on_a_lost_connection_are_sent_again() {
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |n, _, mut ws| {
        let sent = sent_tx.clone();
        async move {
            send_welcome(&mut ws, welcome_resuming_after_first(n)).await;
            if n == 1 {
                answer_join(&mut ws, 0).await;
            }
            let (mut leave, mut quick) = (None, None);
            while leave.is_none() || quick.is_none() {
                let Some(messages) = next_messages(&mut ws).await else {
                    return;
                };
                for message in messages {
                    match message {
                        Out::Leave(l) => leave = Some(l.request_id),
                        Out::QuickJoin(q) => quick = Some(q.request_id),
                        _ => {}
                    }
                }
            }
            let _ = sent.send((leave, quick));
            if n == 1 {
                return; // dropped without a close, unanswered
            }
            let refused = error(proto::ErrorCode::NotAMember, leave.unwrap(), "r");
            let marker = In::Event(proto::RoomEvent {
                kind: "marker".into(),
                ..Default::default()
            });
            ws.send(fake_envelope(vec![In::Error(refused), marker], 0))
                .await
                .unwrap();
            while next_messages(&mut ws).await.is_some() {}
        }
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    client.leave("r");
    client.quick_join("arena", Default::default(), proto::RoomOptions::default());
    let within = Duration::from_secs(10);
    let first = tokio::time::timeout(within, sent_rx.recv()).await;
    let first = first.expect("the first connection's leave and quick join");
    let again = tokio::time::timeout(within, sent_rx.recv()).await;
    let again = again.expect("the leave and quick join sent again after the resume");
    assert_eq!(first, again, "the same leave and quick join, sent again");
    until(&mut events, |e| {
        matches!(e, Event::Connected { resumed: true, .. }).then_some(())
    })
    .await;
    // The relay's next message comes after its answer: no error before it.
    let first = until(&mut events, |e| match e {
        Event::Error(error) => Some(Err(error.clone())),
        Event::RoomEvent(event) => Some(Ok(event.kind.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        first,
        Ok("marker".into()),
        "NOT_A_MEMBER for a leave sent again is its answer"
    );
}

/// A `Left` the relay sent for a membership that ended while the application left
/// and joined the room again is about the old membership: the new join's answer
/// that follows makes the room joined (the client used to forget the room at the
/// `Left`, and its inputs went nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_left_for_an_earlier_membership_does_not_undo_a_join_that_waits() {
    let url = fake_relay(move |_, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        answer_join(&mut ws, 0).await;
        let join = next_join(&mut ws).await;
        // The room removed the member before the relay read its leave.
        let left = proto::Left {
            room: "r".into(),
            reason: proto::ErrorCode::RoomClosed as i32,
            ..Default::default()
        };
        ws.send(fake_server_message(In::Left(left))).await.unwrap();
        let joined = joined_relay(join.request_id, "r");
        ws.send(fake_server_message(In::Joined(joined))).await.unwrap();
        while next_messages(&mut ws).await.is_some() {}
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    client.leave("r");
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Left(_)).then_some(())).await;
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    let payload = proto::input::Payload::Intent(Bytes::from_static(&[1]));
    assert!(client.send_input("r", payload).is_some(), "the room is joined");
}

/// A room the relay closes stays readable as its last state (which the relay sends
/// before the `Left`) after the `Left`, which the application reads after that
/// state's event, until it is joined again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_rooms_last_state_stays_readable_until_it_is_joined_again() {
    let url = fake_relay(move |_, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        let room = answer_join(&mut ws, 0).await;
        ws.send(fake_server_message(In::State(snapshot_of(&room, 7))))
            .await
            .unwrap();
        ws.send(fake_server_message(In::Left(room_closed(&room))))
            .await
            .unwrap();
        answer_join(&mut ws, 0).await;
        while next_messages(&mut ws).await.is_some() {}
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Left(_)).then_some(())).await;
    assert_eq!(entity_ids(&client), Some(vec![7]), "the room's last state");
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    assert_eq!(entity_ids(&client), Some(vec![]), "joined again: a new mirror");
}

/// A full snapshot of `room` at tick 1 holding entity `id`.
fn snapshot_of(room: &str, id: u64) -> proto::StateFrame {
    let entity = proto::Entity {
        id,
        kind: 1,
        ..Default::default()
    };
    proto::StateFrame {
        room: room.to_string(),
        tick: 1,
        added: vec![entity],
        ..Default::default()
    }
}

/// `Left` of `room`: the relay closed it.
fn room_closed(room: &str) -> proto::Left {
    proto::Left {
        room: room.to_string(),
        reason: proto::ErrorCode::RoomClosed as i32,
        message: "match over".into(),
        ..Default::default()
    }
}

/// The ids of the entities room "r" holds as `client` reads it.
fn entity_ids(client: &Client) -> Option<Vec<u64>> {
    client.with_mirror("r", |m| m.world().entities().map(|e| e.id()).collect())
}

/// After a reconnect a room reads as the client had it until the full snapshot
/// comes (a renderer does not go blank); closed before that snapshot, it stays
/// readable so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_reads_as_it_was_until_the_snapshot_after_a_reconnect() {
    let url = fake_relay(move |n, _, mut ws| async move {
        send_welcome(&mut ws, welcome_resuming_after_first(n)).await;
        if n == 1 {
            let room = answer_join(&mut ws, 0).await;
            ws.send(fake_server_message(In::State(snapshot_of(&room, 7))))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            close(ws, 1001).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws.send(fake_server_message(In::Left(room_closed("r")))).await.unwrap();
        while next_messages(&mut ws).await.is_some() {}
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::State { .. }).then_some(())).await;
    until(&mut events, |e| {
        matches!(e, Event::Connected { resumed: true, .. }).then_some(())
    })
    .await;
    assert_eq!(entity_ids(&client), Some(vec![7]), "what it had, until the snapshot");
    until(&mut events, |e| matches!(e, Event::Left(_)).then_some(())).await;
    assert_eq!(
        entity_ids(&client),
        Some(vec![7]),
        "closed before the snapshot: what it had"
    );
}

/// Answers every input with `NOT_A_MEMBER` (a relay that removed the member and
/// whose `Left` saying so was lost), until the client goes.
async fn answer_inputs_not_a_member(ws: &mut FakeSocket) {
    while let Some(messages) = next_messages(ws).await {
        for message in messages {
            if let Out::Input(input) = message {
                let refused = error(proto::ErrorCode::NotAMember, input.seq, &input.room);
                ws.send(fake_server_message(In::Error(refused))).await.unwrap();
            }
        }
    }
}

/// Inputs to a joined room answered `NOT_A_MEMBER`: the relay removed the member and
/// the `Left` saying so was lost (messages lost across a resume). The client tells
/// the application as that `Left`, and forgets the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_a_member_for_a_joined_room_is_told_as_its_lost_left() {
    let url = fake_relay(move |_, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        answer_join(&mut ws, 0).await;
        answer_inputs_not_a_member(&mut ws).await;
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    let payload = proto::input::Payload::Intent(Bytes::from_static(&[1]));
    assert!(client.send_input("r", payload.clone()).is_some());
    let left = until(&mut events, |e| match e {
        Event::Left(left) => Some(left.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (left.room.as_str(), left.reason),
        ("r", proto::ErrorCode::NotAMember as i32)
    );
    assert!(client.send_input("r", payload).is_none(), "the room is forgotten");
}

/// `close()` sends what the pacer still holds before the close frame (within a
/// second), and returns even when the application stopped reading its events (it
/// awaits `close()` in its event loop) while the relay fills the event channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_sends_what_the_pacer_holds_and_does_not_wait_for_events_read() {
    let (inputs_tx, mut inputs_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let inputs_tx = inputs_tx.clone();
        async move {
            let mut welcome = welcome("t");
            // Paced to 16 messages a second, 2 at once.
            welcome.limits = Some(proto::Limits {
                messages_per_second: 20,
                message_burst: 4,
                ..Default::default()
            });
            send_welcome(&mut ws, welcome).await;
            answer_join(&mut ws, 0).await;
            for _ in 0..64 {
                let event = proto::RoomEvent {
                    room: "r".into(),
                    kind: "noise".into(),
                    ..Default::default()
                };
                ws.send(fake_server_message(In::Event(event))).await.unwrap();
            }
            let mut inputs = 0;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(bytes))) => {
                        let envelope = <proto::ClientEnvelope as prost::Message>::decode(&bytes[..]).unwrap();
                        inputs += envelope
                            .messages
                            .iter()
                            .filter(|m| matches!(m.kind, Some(Out::Input(_))))
                            .count();
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
            let _ = inputs_tx.send(inputs);
        }
    })
    .await;
    let mut config = config(url);
    config.event_capacity = 4;
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    for _ in 0..10 {
        assert!(
            client
                .send_input("r", proto::input::Payload::Intent(Bytes::from_static(&[1])))
                .is_some()
        );
    }
    // The relay's 64 events fill the channel of 4, unread.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = tokio::time::timeout(Duration::from_secs(3), client.close()).await;
    assert!(closed.is_ok(), "close() returned");
    assert_eq!(inputs_rx.recv().await, Some(10), "every input before the close frame");
}

/// The relay's close frame is answered (the relay waits a second for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_close_frame_is_answered() {
    let (answer_tx, mut answer_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let answer_tx = answer_tx.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let frame = CloseFrame {
                code: 4002.into(),
                reason: "fake relay".into(),
            };
            ws.send(Message::Close(Some(frame))).await.unwrap();
            // Whatever the client sent just before it read the close comes first.
            let answer = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(Ok(message)) = ws.next().await {
                    if matches!(message, Message::Close(_)) {
                        return true;
                    }
                }
                false
            });
            let _ = answer_tx.send(answer.await.unwrap_or(false));
        }
    })
    .await;
    let (_client, mut events) = Client::connect(config(url)).unwrap();
    until(&mut events, |e| matches!(e, Event::Disconnected { .. }).then_some(())).await;
    assert_eq!(answer_rx.recv().await, Some(true), "a close frame came back");
}

/// A join refused for now (`UNAVAILABLE`, retry after 2 s), then joined again by the
/// next connection at its `Welcome`, is not sent a third time when the first wait
/// ends before that join's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_waiting_to_be_retried_is_not_sent_again_once_a_reconnect_joined_it() {
    let (joins_tx, mut joins_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |n, _, mut ws| {
        let joins_tx = joins_tx.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let join = next_join(&mut ws).await;
            if n == 1 {
                let later = proto::Error {
                    retry_after_ms: 2_000,
                    ..error(proto::ErrorCode::Unavailable, join.request_id, &join.room)
                };
                ws.send(fake_server_message(In::Error(later))).await.unwrap();
                return; // lost
            }
            // Answered after the first connection's wait has ended.
            let within = Duration::from_millis(2_500);
            if let Ok(again) = tokio::time::timeout(within, next_join(&mut ws)).await {
                let _ = joins_tx.send(again.request_id);
            }
            let joined = joined_relay(join.request_id, &join.room);
            ws.send(fake_server_message(In::Joined(joined))).await.unwrap();
            while next_messages(&mut ws).await.is_some() {}
        }
    })
    .await;
    let (_client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    assert_eq!(joins_rx.try_recv().ok(), None, "joined a second time");
}

/// Offline, events beyond `buffer_limit` are refused (`RATE_LIMITED`) rather than
/// pushing out what waited before them: a leave handed over first still goes out
/// when the session resumes (the oldest message used to be dropped, whatever it was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_a_full_buffer_refuses_events_and_keeps_the_leave() {
    let (leaves_tx, mut leaves_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |n, _, mut ws| {
        let leaves_tx = leaves_tx.clone();
        async move {
            send_welcome(&mut ws, welcome_resuming_after_first(n)).await;
            if n == 1 {
                answer_join(&mut ws, 0).await;
                let _ = leaves_tx.send(None);
                // Gone without a close once the client has been told to go offline.
                while next_messages(&mut ws).await.is_some() {}
                return;
            }
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    if let Out::Leave(leave) = message {
                        let _ = leaves_tx.send(Some(leave.room));
                    }
                }
            }
        }
    })
    .await;
    let mut config = config(url);
    config.buffer_limit = 4;
    config.backoff.initial = Duration::from_millis(300);
    config.backoff.max = Duration::from_millis(300);
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    assert_eq!(leaves_rx.recv().await, Some(None));
    client.drop_connection();
    until(&mut events, |e| matches!(e, Event::Reconnecting { .. }).then_some(())).await;
    client.send_event("r", "before", Bytes::new(), Vec::new());
    client.leave("r");
    for _ in 0..10 {
        client.send_event("r", "flood", Bytes::new(), Vec::new());
    }
    let refused = until(&mut events, |e| match e {
        Event::Error(e) if e.code == proto::ErrorCode::RateLimited as i32 => Some(e.message.clone()),
        _ => None,
    })
    .await;
    assert!(refused.contains("buffer_limit"), "{refused}");
    let left = tokio::time::timeout(Duration::from_secs(5), leaves_rx.recv()).await;
    assert_eq!(left.ok().flatten(), Some(Some("r".to_string())), "the leave went out");
}

/// A leave then a join of the same room, written on a connection that died before
/// their answers: the resume joins the room again and does not send the leave again
/// (the join followed it on the connection; sent again, it would undo the join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_before_a_join_on_a_lost_connection_is_not_sent_again() {
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |n, _, mut ws| {
        let sent = sent_tx.clone();
        async move {
            // The leaves and joins of each envelope, in order.
            let leaves_and_joins = |messages: Vec<Out>| {
                messages.into_iter().filter_map(|m| match m {
                    Out::Leave(_) => Some("leave"),
                    Out::Join(_) => Some("join"),
                    _ => None,
                })
            };
            send_welcome(&mut ws, welcome_resuming_after_first(n)).await;
            let mut kinds = Vec::new();
            if n == 1 {
                answer_join(&mut ws, 0).await;
                while kinds.len() < 2 {
                    let Some(messages) = next_messages(&mut ws).await else {
                        return;
                    };
                    kinds.extend(leaves_and_joins(messages));
                }
                let _ = sent.send(kinds);
                return; // lost, unanswered
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Some(messages) = next_messages(&mut ws).await {
                    kinds.extend(leaves_and_joins(messages));
                }
            })
            .await;
            let _ = sent.send(kinds);
        }
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    client.leave("r");
    client.join("r", "relay");
    let within = Duration::from_secs(10);
    let first = tokio::time::timeout(within, sent_rx.recv()).await.unwrap();
    assert_eq!(first, Some(vec!["leave", "join"]));
    let again = tokio::time::timeout(within, sent_rx.recv()).await.unwrap();
    assert_eq!(again, Some(vec!["join"]), "joined again, not left again");
}

/// A client that gives up on its first URL (home) closes its connections to the
/// other nodes its rooms were redirected to: their rooms could not go home any more,
/// and a connection left open would hold the client's seat there for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_on_home_closes_the_connections_to_other_nodes() {
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel();
    let (joined_tx, joined_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let node = fake_relay(move |_, _, mut ws| {
        let (ended, joined) = (ended_tx.clone(), joined_tx.clone());
        async move {
            send_welcome(&mut ws, welcome("n")).await;
            answer_join(&mut ws, 0).await;
            let _ = joined.send(());
            while next_messages(&mut ws).await.is_some() {}
            let _ = ended.send(());
        }
    })
    .await;
    let joined_rx = Arc::new(tokio::sync::Mutex::new(joined_rx));
    let home = fake_relay(move |n, _, mut ws| {
        let (node, joined) = (node.clone(), joined_rx.clone());
        async move {
            if n > 1 {
                return; // gone: each later attempt fails
            }
            send_welcome(&mut ws, welcome("h")).await;
            let join = next_join(&mut ws).await;
            let redirect = In::Redirect(proto::Redirect {
                request_id: join.request_id,
                room: join.room,
                url: node,
                seat: String::new(),
            });
            ws.send(fake_server_message(redirect)).await.unwrap();
            // Lost once the room is joined on the other node.
            joined.lock().await.recv().await;
        }
    })
    .await;
    let (_client, mut events) = joined_client(home);
    until(&mut events, |e| matches!(e, Event::Redirected { .. }).then_some(())).await;
    until(&mut events, |e| matches!(e, Event::GaveUp { .. }).then_some(())).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), ended_rx.recv()).await;
    assert_eq!(
        ended.ok().flatten(),
        Some(()),
        "the other node's connection was left open"
    );
}

/// A node that answered a resume with 1013 (the session's own node was still alive
/// in the directory) is no dead node: when the room is restored there, a redirect to
/// it is followed at once. (It was taken for a dead node's for 20 s: after a node
/// died, its players whose first fallback said 1013 waited that long for their room.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_answered_try_again_later_is_not_taken_for_a_dead_one() {
    // b: says 1013 to the first resume, then serves the room redirected to it.
    let b = fake_relay(|n, _, mut ws| async move {
        if n == 1 {
            return close(ws, 1013).await;
        }
        send_welcome(&mut ws, welcome("b")).await;
        answer_join(&mut ws, 0).await;
        while next_messages(&mut ws).await.is_some() {}
    })
    .await;
    a_redirect_to_b_is_followed(b).await;
}

/// The same for a node that refused the upgrade with an HTTP status (503: at
/// capacity, say): it answered, so it is alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_refused_the_upgrade_is_not_taken_for_a_dead_one() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut first, _) = listener.accept().await.unwrap();
        let _ = first.read(&mut [0; 4096]).await;
        let refusal = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let _ = first.write_all(refusal.as_bytes()).await;
        drop(first);
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                send_welcome(&mut ws, welcome("b")).await;
                answer_join(&mut ws, 0).await;
                while next_messages(&mut ws).await.is_some() {}
            });
        }
    });
    a_redirect_to_b_is_followed(b).await;
}

/// A client whose home (a) dies after its room's join; its first fallback is `b`
/// (which does not continue the session), the second continues it and redirects the
/// room's join to `b`: the redirect is followed.
async fn a_redirect_to_b_is_followed(b: String) {
    // c: continues the session, and redirects the room's join to b.
    let b_url = b.clone();
    let c = fake_relay(move |_, _, mut ws| {
        let b = b_url.clone();
        async move {
            send_welcome(&mut ws, welcome("c")).await;
            loop {
                let join = next_join(&mut ws).await;
                let redirect = In::Redirect(proto::Redirect {
                    request_id: join.request_id,
                    room: join.room,
                    url: b.clone(),
                    seat: String::new(),
                });
                ws.send(fake_server_message(redirect)).await.unwrap();
            }
        }
    })
    .await;
    // a (home): the room's node, which dies after the join (later attempts: lost).
    let a = fake_relay(|n, _, mut ws| async move {
        if n > 1 {
            return;
        }
        send_welcome(&mut ws, welcome("a")).await;
        answer_join(&mut ws, 0).await;
    })
    .await;
    let mut config = config(a);
    config.fallback_urls = vec![b.clone(), c];
    config.backoff.max_attempts = Some(10);
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("r", "relay");
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    let url = until(&mut events, |e| match e {
        Event::Redirected { url, .. } => Some(url.clone()),
        _ => None,
    })
    .await;
    assert_eq!(url, b);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    client.close().await;
}

/// A relay that answers an input about a room the client is in with `NOT_A_MEMBER`
/// (the `Left` that removed it was lost, as across a resume that missed messages):
/// the application is told one `Left`, and the room's last state stays readable, as
/// after a `Left` that arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_left_told_by_not_a_member_keeps_the_last_state() {
    let url = fake_relay(move |_, _, mut ws| async move {
        send_welcome(&mut ws, welcome("t")).await;
        let room = answer_join(&mut ws, 0).await;
        ws.send(fake_server_message(In::State(snapshot_of(&room, 7))))
            .await
            .unwrap();
        answer_inputs_not_a_member(&mut ws).await;
    })
    .await;
    let (client, mut events) = joined_client(url);
    until(&mut events, |e| matches!(e, Event::State { .. }).then_some(())).await;
    let payload = proto::input::Payload::Intent(Bytes::from_static(&[1]));
    assert!(client.send_input("r", payload).is_some());
    let mut lefts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let Event::Left(left) = event {
            lefts.push(left.reason);
        }
    }
    assert_eq!(lefts, [proto::ErrorCode::NotAMember as i32], "one Left");
    assert_eq!(entity_ids(&client), Some(vec![7]), "the room's last state");
}

/// The configuration's `member_data` goes with every join and quick join (the relay
/// here only records them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_data_goes_with_every_join_and_quick_join() {
    let (told_tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let told = told_tx.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    match message {
                        Out::Join(join) => told.send(("join", join.member_data)).unwrap(),
                        Out::QuickJoin(quick) => told.send(("quick join", quick.member_data)).unwrap(),
                        _ => {}
                    }
                }
            }
        }
    })
    .await;
    let mut config = config(url);
    config.member_data = Bytes::from_static(b"Ada");
    let (client, _events) = Client::connect(config).unwrap();
    client.join("r", "tag");
    client.quick_join("tag", Default::default(), proto::RoomOptions::default());
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(10), told.recv()).await;
        seen.push(next.expect("within 10 s").expect("the relay runs"));
    }
    seen.sort();
    let ada = Bytes::from_static(b"Ada");
    assert_eq!(seen, [("join", ada.clone()), ("quick join", ada)]);
}

/// A request whose caller was told it timed out, while the client was offline, is not
/// sent once it reconnects: a lock sent then would lock the room after the game was
/// told it had not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_timed_out_offline_is_not_sent_later() {
    let (requests_tx, mut requests_rx) = tokio::sync::mpsc::unbounded_channel();
    let (timed_out, timed_out_rx) = tokio::sync::watch::channel(false);
    let url = fake_relay(move |n, _, mut ws| {
        let (requests_tx, mut timed_out) = (requests_tx.clone(), timed_out_rx.clone());
        async move {
            if n > 1 {
                // Welcomed only once the request has timed out.
                let _ = timed_out.wait_for(|&out| out).await;
            }
            send_welcome(&mut ws, welcome_resuming_after_first(n)).await;
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    let _ = requests_tx.send(matches!(message, Out::Request(_)));
                }
            }
        }
    })
    .await;
    let mut config = config(url);
    config.request_timeout = Duration::from_millis(200);
    let (client, mut events) = Client::connect(config).unwrap();
    until(&mut events, |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    client.drop_connection();
    until(&mut events, |e| matches!(e, Event::Reconnecting { .. }).then_some(())).await;
    let lock = proto::UpdateRoom {
        room: "r".into(),
        lock: proto::RoomLock::Locked as i32,
        ..Default::default()
    };
    let answer = client.request(proto::request::Kind::UpdateRoom(lock)).await;
    assert!(
        matches!(answer, Err(tickrelay_client::ClientError::Timeout)),
        "{answer:?}"
    );
    timed_out.send_replace(true);
    until(&mut events, |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    // A ping goes out within the heartbeat: whatever was to go with it went before.
    client.send_event("r", "after", Bytes::new(), vec![]);
    let mut sent = Vec::new();
    while let Ok(Some(request)) = tokio::time::timeout(Duration::from_millis(500), requests_rx.recv()).await {
        sent.push(request);
    }
    assert!(!sent.is_empty(), "nothing reached the relay after the reconnect");
    assert!(!sent.contains(&true), "the timed-out request was sent");
}

/// A game restarted with its earlier process's resume token joins its room and sends
/// inputs before the join is answered: the seat applied more inputs than this process
/// numbered (the earlier one's), and these, which never left the client, are sent
/// numbered above them instead of being taken as applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_sent_before_an_inherited_seats_joined_are_numbered_above_it() {
    let (inputs_tx, mut inputs_rx) = tokio::sync::mpsc::unbounded_channel();
    let (both_sent, both_sent_rx) = tokio::sync::watch::channel(false);
    let url = fake_relay(move |_, _, mut ws| {
        let (inputs_tx, mut both_sent) = (inputs_tx.clone(), both_sent_rx.clone());
        async move {
            send_welcome(
                &mut ws,
                proto::Welcome {
                    resumed: true,
                    ..welcome("t")
                },
            )
            .await;
            // Answered once both inputs wait for it.
            let _ = both_sent.wait_for(|&sent| sent).await;
            answer_join(&mut ws, 41).await;
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    if let Out::Input(input) = message {
                        let _ = inputs_tx.send(input.seq);
                    }
                }
            }
        }
    })
    .await;
    let mut config = config(url);
    config.resume_token = Some("earlier-process".into());
    let (client, mut events) = Client::connect(config).unwrap();
    client.join("r", "relay");
    let intent = || proto::input::Payload::Intent(Bytes::from_static(&[1]));
    assert_eq!(client.send_input("r", intent()), Some(1));
    assert_eq!(client.send_input("r", intent()), Some(2));
    both_sent.send_replace(true);
    until(&mut events, |e| matches!(e, Event::Joined(_)).then_some(())).await;
    assert_eq!(client.send_input("r", intent()), Some(44));
    let mut sent = Vec::new();
    while sent.len() < 3 {
        let seq = tokio::time::timeout(Duration::from_secs(5), inputs_rx.recv()).await;
        sent.push(seq.expect("the inputs are sent").unwrap());
    }
    assert_eq!(sent, [42, 43, 44]);
}

/// A quick join refused for now (`RATE_LIMITED` for the room-search rate) is sent
/// again by the client, as a new one, after the wait the relay gave; one refused for
/// good (`BAD_REQUEST`) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_join_refused_for_now_is_sent_again_after_the_wait() {
    let (quick_tx, mut quick_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let quick_tx = quick_tx.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    let Out::QuickJoin(quick) = message else { continue };
                    let _ = quick_tx.send((quick.request_id, quick.room_type.clone(), Instant::now()));
                    let code = match quick.room_type.as_str() {
                        "arena" => proto::ErrorCode::RateLimited,
                        _ => proto::ErrorCode::BadRequest,
                    };
                    let refused = proto::Error {
                        retry_after_ms: 300,
                        ..error(code, quick.request_id, "")
                    };
                    ws.send(fake_server_message(In::Error(refused))).await.unwrap();
                }
            }
        }
    })
    .await;
    let (client, mut events) = Client::connect(config(url)).unwrap();
    until(&mut events, |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    client.quick_join("bad", Default::default(), proto::RoomOptions::default());
    client.quick_join("arena", Default::default(), proto::RoomOptions::default());
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), quick_rx.recv())
            .await
            .unwrap()
            .unwrap()
    };
    let (bad, arena) = (next().await, next().await);
    assert_eq!((bad.1.as_str(), arena.1.as_str()), ("bad", "arena"));
    let again = next().await;
    assert_eq!(again.1, "arena");
    assert_ne!(again.0, arena.0, "a new id: the relay ignores an id it ran");
    assert!(again.2 - arena.2 >= Duration::from_millis(250), "after the wait");
    // Again and again while refused, never the one refused for good.
    assert_eq!(next().await.1, "arena");
}

/// A quick join answered `ROOM_FULL` (its pick filled before the join) is sent again
/// at once by the client, as a new one leaving out each room that refused it, the
/// last time for a room of the node asked only; the fourth refusal is the
/// application's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_join_refused_room_full_is_sent_again_without_that_room() {
    let (quick_tx, mut quick_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_relay(move |_, _, mut ws| {
        let quick_tx = quick_tx.clone();
        async move {
            send_welcome(&mut ws, welcome("t")).await;
            let mut picks = 0;
            while let Some(messages) = next_messages(&mut ws).await {
                for message in messages {
                    let Out::QuickJoin(quick) = message else { continue };
                    let _ = quick_tx.send((quick.request_id, quick.exclude.clone(), quick.local_only));
                    picks += 1;
                    let refused = error(proto::ErrorCode::RoomFull, quick.request_id, &format!("full-{picks}"));
                    ws.send(fake_server_message(In::Error(refused))).await.unwrap();
                }
            }
        }
    })
    .await;
    let (client, mut events) = Client::connect(config(url)).unwrap();
    until(&mut events, |e| matches!(e, Event::Connected { .. }).then_some(())).await;
    client.quick_join("arena", Default::default(), proto::RoomOptions::default());
    let answer = until(&mut events, |e| match e {
        Event::Error(e) => Some((e.code, e.room.clone())),
        _ => None,
    })
    .await;
    assert_eq!(answer, (proto::ErrorCode::RoomFull as i32, "full-4".to_string()));
    let mut sent = Vec::new();
    while let Ok(quick) = quick_rx.try_recv() {
        sent.push(quick);
    }
    let excluded: Vec<Vec<String>> = sent.iter().map(|(_, exclude, _)| exclude.clone()).collect();
    assert_eq!(
        excluded,
        [
            vec![],
            vec!["full-1"],
            vec!["full-1", "full-2"],
            vec!["full-1", "full-2", "full-3"]
        ]
    );
    let local_only: Vec<bool> = sent.iter().map(|(.., local_only)| *local_only).collect();
    assert_eq!(local_only, [false, false, false, true]);
    let ids: std::collections::BTreeSet<u64> = sent.iter().map(|(id, ..)| *id).collect();
    assert_eq!(ids.len(), 4, "each under a new id");
}
