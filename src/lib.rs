//! tickrelay: a multiplayer game state relay.
//!
//! # Layout
//!
//! Dependencies run one way, top to bottom: the server builds the transports, a
//! transport drives sessions, a session sends commands to the room engine, and
//! everything shares the wire protocol. The room (`engine::room`) and the session
//! are sans IO (no sockets, no clock reads: time is passed in); the simulation
//! threads, the pacer and the transports are the drivers around them.
//!
//! - [`server`] — builds everything from the [`config`], accepts connections, shuts down.
//! - [`transport`] — the connection loop every transport shares and its
//!   `transport::context::Context`; the I/O threads that own the WebSocket
//!   connections; WebSocket over HTTP/1.1 and TLS, QUIC; the listener gate, the
//!   `Origin` allowlist, certificates, the session registry.
//! - [`session`] — one client session, sans IO: inbound messages to room commands and
//!   replies, rate limits, heartbeat, authentication, close decisions.
//! - [`engine`] — rooms and their simulations on dedicated simulation threads, tick
//!   scheduling, the outboxes where rooms leave frames for transports, and the pacer
//!   that holds the I/O threads between ticks.
//! - [`cluster`] — scale-out over Redis (`[cluster]`): the room directory (leases,
//!   owners, listings, checkpoints) in memory and in Redis, redirects, cross-node
//!   publish, rooms restored from checkpoints on another node.
//! - [`config`] — the TOML/env/flags configuration, and [`config::Simulations`]: a
//!   game's own simulations, by name; `cli` (the `cli` feature): the `tickrelay`
//!   command line, which a game's own server binary runs with its simulations;
//!   [`metrics`]: the Prometheus registry;
//!   [`fd_limit`]: raising the open-file limit at start; [`log_budget`]: rate-limited
//!   log lines.
//!
//! The wire protocol lives in the `tickrelay-proto` crate, which clients link alone;
//! its modules are re-exported here: [`proto`] (the generated `tickrelay.v1` types),
//! [`frame`], [`error`], [`state`], [`delta`], [`packed`], [`mirror`], [`bucket`],
//! [`clock`].
//!
//! `docs/PROTOCOL.md` is the wire reference.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod fd_limit;
pub mod log_budget;
pub mod metrics;
pub mod server;
pub mod session;
pub mod transport;

pub use tickrelay_proto::v1 as proto;
pub use tickrelay_proto::{bucket, clock, delta, error, frame, mirror, packed, state};
