//! tickrelay: a multiplayer game state relay.
//!
//! # Layout
//!
//! The crate is a set of sans-IO cores (no sockets, no clock reads: time is passed in)
//! and thin drivers around them.
//!
//! - [`proto`]: the generated `tickrelay.v1` protobuf types.
//! - [`frame`]: envelopes on the wire; typed decoding of arbitrary bytes.
//! - [`error`]: [`error::CloseReason`] (every way a session ends, one close code each).
//! - [`state`]: entities, typed fields, the [`state::World`] with change ticks and the
//!   incremental checksum.
//! - [`delta`]: the delta codec: a state frame against any recent baseline, encoded
//!   straight from the world.
//! - [`mirror`]: the client-side [`mirror::StateMirror`] that applies frames and
//!   detects desyncs.
//! - [`simulation`]: the [`simulation::Simulation`] trait and the built-in relay and
//!   arena games.
//! - [`room`]: the room engine: members, input dedup, events, tick, fan-out.
//! - [`outbox`]: a session's bounded outbox, where rooms leave frames for transports.
//! - [`schedule`]: fixed-rate tick scheduling without drift, on an injected clock.
//! - [`sim_pool`]: the dedicated simulation threads that own and tick the rooms.
//! - [`session`]: one client session, sans IO: inbound messages to room commands
//!   and replies, and close decisions.
//! - [`limits`]: token-bucket rate limits and flood detection.
//! - [`heartbeat`]: ping and timeout decisions.
//! - [`auth`]: JWT at the upgrade, token refresh, room restrictions.
//! - [`origin`]: the `Origin` allowlist.
//! - [`registry`]: sessions parked for resume; live sessions per user.
//!
//! Drivers and operations:
//!
//! - [`server`]: TCP, TLS, HTTP (`/ws`, `/healthz`, `/metrics`), shutdown.
//! - `connection`: the loop around a session that every transport shares.
//! - `ws`: the WebSocket transport; [`quic`]: the QUIC transport.
//! - [`tls`]: certificates, including the generated development certificate.
//! - [`gate`]: connection caps and handshake rate at the upgrade.
//! - [`config`]: the TOML/env/flags configuration.
//! - [`metrics`]: the Prometheus registry.
//! - [`clock`]: wall-clock time for drivers.
//! - [`fd_limit`]: raising the open-file limit at start.
//!
//! `docs/PROTOCOL.md` is the wire reference.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod clock;
pub mod config;
mod connection;
pub mod delta;
pub mod error;
pub mod fd_limit;
pub mod frame;
pub mod gate;
pub mod heartbeat;
pub mod limits;
pub mod metrics;
pub mod mirror;
pub mod origin;
pub mod outbox;
pub mod proto;
pub mod quic;
pub mod registry;
pub mod room;
pub mod schedule;
pub mod server;
pub mod session;
pub mod sim_pool;
pub mod simulation;
pub mod state;
pub mod tls;
mod ws;
