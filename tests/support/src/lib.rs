//! The harness every tickrelay test over real sockets shares: the relay's own tests
//! (`tests/`), the client's (`clients/rust/tests`) and the soak (`clients/bots/tests`).
//!
//! # Layout
//!
//! - [`server`] — the real server on 127.0.0.1:0 with its generated dev certificate:
//!   its addresses and URLs, a TLS configuration trusting exactly that certificate,
//!   its metrics, and its shutdown.
//! - [`client`] — a raw protocol client over WebSocket-over-TLS or QUIC that checks
//!   what it receives (mirrors every room, checks message numbering).
//! - [`quic`] — the QUIC connection: handshake, `Hello`, the control-stream read loop.
//! - [`redis`] — a real `redis-server` on a free port; [`directory`] — the checks
//!   every room directory must pass; [`cluster`] — relay nodes sharing a Redis and
//!   a certificate.
//! - [`both_transports!`] runs one scenario body over each [`Transport`].
//! - [`eventually`] waits for a condition with a deadline, instead of a fixed sleep;
//!   [`rss_bytes`] reads this process's resident memory; [`create_entity`] is the
//!   simplest input that changes a room's state.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod cluster;
pub mod directory;
pub mod quic;
pub mod redis;
pub mod server;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tickrelay::proto;

pub use client::{Conn, Incoming, TestClient};
pub use server::{TestServer, many_searches, serve, start, start_config, start_with, start_with_simulations};

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long [`eventually`] keeps trying: twice [`WAIT`].
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Which transport a test client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket over TLS (`wss://`).
    WebSocket,
    /// QUIC (`quic://`).
    Quic,
}

/// Runs each scenario `async fn name(transport: Transport)` of the calling module as
/// two tests, `websocket::name` and `quic::name`. The calling crate needs `tokio` (for
/// `#[tokio::test]`).
#[macro_export]
macro_rules! both_transports {
    ($($scenario:ident),* $(,)?) => {
        mod websocket {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::Transport::WebSocket).await;
                }
            )*
        }
        mod quic {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::Transport::Quic).await;
                }
            )*
        }
    };
}

/// Runs `attempt` every 10 ms until it returns `Ok`, and returns that. After
/// [`DEADLINE`] the test fails with `what` and the last `Err`. The way to wait for a
/// metric, a state or a freed slot: as long as needed, never a fixed guess.
pub async fn eventually<T, E: Debug, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match attempt().await {
            Ok(t) => return t,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: still {last:?} after {DEADLINE:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An input that creates entity `id` (kind 1, no fields).
pub fn create_entity(id: u64) -> proto::input::Payload {
    proto::input::Payload::Writes(Box::new(proto::EntityWrites {
        create: vec![proto::Entity {
            id,
            owner: 0,
            kind: 1,
            fields: vec![],
        }],
        ..Default::default()
    }))
}

/// This process's resident memory, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}
