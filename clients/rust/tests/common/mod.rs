//! What the client's test binaries share (each uses part of it).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tickrelay_client::{Event, proto};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// Waits for the first event `pick` accepts.
pub async fn until<T>(events: &mut Receiver<Event>, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the expected event within 10 s")
            .expect("the client is running");
        if let Some(t) = pick(&event) {
            return t;
        }
    }
}

// ---------------------------------------------------------------------------
// Fake relays (not every test binary uses them all)
// ---------------------------------------------------------------------------

/// The server side of a fake relay's connection.
pub type FakeSocket = WebSocketStream<TcpStream>;

/// A fake relay's side of the next connection on `listener`, once it sent `welcome`
/// (see [`welcome`]).
pub async fn accept_and_welcome(listener: &TcpListener, welcome: proto::Welcome) -> FakeSocket {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    send_welcome(&mut ws, welcome).await;
    ws
}

/// Sends `welcome` with the protocol version and session id 1 filled in.
pub async fn send_welcome(ws: &mut FakeSocket, welcome: proto::Welcome) {
    let welcome = proto::Welcome {
        protocol_version: proto::PROTOCOL_VERSION,
        session_id: 1,
        ..welcome
    };
    let kind = proto::server_message::Kind::Welcome(welcome);
    ws.send(fake_server_message(kind)).await.unwrap();
}

/// One message from a fake relay, as a WebSocket message.
pub fn fake_server_message(kind: proto::server_message::Kind) -> Message {
    fake_envelope(vec![kind], 0)
}

/// An envelope of `kinds` from a fake relay, numbered from `first_seq` (0: not).
pub fn fake_envelope(kinds: Vec<proto::server_message::Kind>, first_seq: u64) -> Message {
    let envelope = proto::ServerEnvelope {
        messages: kinds
            .into_iter()
            .map(|kind| proto::ServerMessage { kind: Some(kind) })
            .collect(),
        first_seq,
    };
    Message::Binary(envelope.encode_to_vec().into())
}

/// A fake relay on 127.0.0.1: each connection it accepts goes to `script`, on a task
/// of its own, with its number (from 1) and the path and query the client asked for.
/// Returns its `ws://` URL.
pub async fn fake_relay<F, Fut>(script: F) -> String
where
    F: Fn(u32, String, FakeSocket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let script = Arc::new(script);
    tokio::spawn(async move {
        for n in 1.. {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let script = script.clone();
            tokio::spawn(async move {
                let mut asked = String::new();
                // tungstenite's callback type fixes its error type.
                #[allow(clippy::result_large_err)]
                let note = |request: &Request, response: Response| {
                    asked = request.uri().to_string();
                    Ok(response)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, note).await {
                    script(n, asked, ws).await;
                }
            });
        }
    });
    url
}

/// The client messages of the next envelope, or `None` once the connection ended.
pub async fn next_messages(ws: &mut FakeSocket) -> Option<Vec<proto::client_message::Kind>> {
    loop {
        match ws.next().await? {
            Ok(Message::Binary(bytes)) => {
                let envelope = proto::ClientEnvelope::decode(&bytes[..]).unwrap();
                return Some(envelope.messages.into_iter().filter_map(|m| m.kind).collect());
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}
