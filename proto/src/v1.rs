//! Generated protobuf types of the `tickrelay.v1` package (`tickrelay/v1/tickrelay.proto`).
//!
//! `docs/PROTOCOL.md` documents every message; the schema is the source of truth.

#![allow(missing_docs, clippy::doc_lazy_continuation, clippy::large_enum_variant)]

include!(concat!(env!("OUT_DIR"), "/tickrelay.v1.rs"));

/// The protocol version announced in [`Welcome::protocol_version`]: 2 since the state
/// checksum hashes each field on its own (docs/PROTOCOL.md, "State checksum"); 1
/// hashed each entity in one chain.
pub const PROTOCOL_VERSION: u32 = 2;

/// Rooms a [`QuickJoin`] may exclude, at most (the relay refuses more).
pub const MAX_QUICK_JOIN_EXCLUDED: usize = 64;

/// The longest [`JoinRoom::member_data`] (and [`QuickJoin::member_data`]) the relay
/// takes, in bytes.
pub const MAX_MEMBER_DATA_BYTES: usize = 1024;
