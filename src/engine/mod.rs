//! The room engine: rooms, their simulations and the simulation threads that tick
//! them, and the outboxes where rooms leave frames for transports. Plain threads and
//! channels: nothing here imports tokio or knows about sockets.
//!
//! - [`room`] — one room: members, input dedup, events, tick, fan-out.
//! - [`simulation`] — the [`simulation::Simulation`] trait and the built-in relay and
//!   arena games.
//! - [`outbox`] — a session's bounded outbox.
//! - [`envelope`] — an outbox batch laid out as one `ServerEnvelope`, without
//!   re-encoding.
//! - [`schedule`] — fixed-rate tick scheduling without drift, on an injected clock.
//! - [`listing`] — what a room shows in listings and quick joins.
//! - [`rooms`] — how sessions, the cluster and the HTTP API reach rooms: the
//!   [`rooms::Rooms`] trait, room handles, commands and refusals.
//! - [`sim_pool`] — the dedicated simulation threads that own and tick the rooms.
//! - [`pacer`] — I/O threads woken around the ticks rather than by every message.

pub mod envelope;
pub mod listing;
pub mod outbox;
pub mod pacer;
pub mod room;
pub mod rooms;
pub mod schedule;
pub mod sim_pool;
pub mod simulation;
