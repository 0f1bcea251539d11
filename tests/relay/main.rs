//! The relay over real sockets, in one test binary: TLS with the generated
//! certificate, real tokio-tungstenite and quinn clients, real protobuf (the harness
//! is `tickrelay-testkit`, in `tests/support`).
//!
//! - [`server`] — the session over both transports: welcome, join, state, presence,
//!   events, requests, errors, closes, shutdown, the HTTP endpoints.
//! - [`protection`] — authentication, Origin, connection caps, rate limits,
//!   heartbeats, token expiry, replacement and resume.
//! - [`quic_loss`] — QUIC through a lossy forwarder.
//! - [`binary`] — the `tickrelay` binary itself: where and how it logs.
//! - [`cluster`] — the room directory in memory and on a real `redis-server`.
//! - [`simulations`] — a game's own simulation (the Tag example's), registered by
//!   the program.
//!
//! The slow-reader test measures the process's memory, so it is a binary of its own
//! (`tests/slow_readers.rs`).

mod binary;
mod cluster;
mod matchmaking;
mod protection;
mod quic_loss;
mod server;
mod simulations;
