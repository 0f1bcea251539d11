//! The tickrelay wire protocol, sans IO: everything both ends of the wire share, with
//! no sockets, runtime or TLS. Game clients link this crate, never the server.
//!
//! # Layout
//!
//! - [`v1`] — the generated `tickrelay.v1` protobuf types (`tickrelay/v1/tickrelay.proto`).
//! - [`frame`] — envelopes on the wire; typed decoding of arbitrary bytes; the QUIC
//!   control stream's length-delimited framing and ALPN id.
//! - [`error`] — [`error::CloseReason`] (every way a session ends, one close code each)
//!   and the wire [`error::ErrorCode`]s.
//! - [`state`] — entities, typed fields, the [`state::World`] with change ticks and the
//!   incremental checksum.
//! - [`delta`] — the delta codec: a state frame against any recent baseline, encoded
//!   straight from the world.
//! - [`packed`] — packed blocks: entities of declared kinds, quantized, with numbers
//!   relative to the baseline.
//! - [`mirror`] — the client-side [`mirror::StateMirror`] that applies frames and
//!   detects desyncs.
//! - [`bucket`] — the token bucket both ends rate-limit with.
//! - [`clock`] — wall-clock time stamps as they travel on the wire.
//! - [`woken`] — [`woken::Woken`]: a connection loop polls the source that woke it,
//!   not every source (both ends' loops use it).
//!
//! `docs/PROTOCOL.md` (in the repository) is the wire reference.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bucket;
pub mod clock;
pub mod delta;
pub mod error;
pub mod frame;
pub mod mirror;
pub mod packed;
pub mod state;
pub mod v1;
pub mod woken;
