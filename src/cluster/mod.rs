//! Scale-out over Redis (issue 17). Several nodes share one room directory: each room
//! lives on the node holding its lease ([`directory`], in memory and in Redis); a join
//! of a room open elsewhere is redirected there, with a seat ticket that keeps the
//! player's member id; listings come from the directory; rooms checkpoint their state
//! to Redis and are restored on another node when theirs dies or stops, and sessions
//! continue on another node with their ids ([`node`]); room events published through
//! any node's HTTP API reach the room's node over Redis pub/sub ([`bus`]; held a
//! moment for a room the node is still opening, `held`). Matchmaking
//! (quick join, metadata, locked and private rooms) reads the same directory: a quick
//! join takes an open room of the node asked, else the fullest open one the directory
//! lists on another node (see `QuickJoin` in PROTOCOL.md).

pub mod bus;
pub mod closing;
pub mod directory;
mod held;
pub mod node;
mod redis_connection;
pub mod redis_directory;

pub use crate::session::directory::Claim;
pub use closing::Closing;
pub use directory::{Directory, DirectoryError, MemoryDirectory, Node, RoomEntry};
pub use node::{Cluster, NodeSettings};
pub use redis_connection::{RedisAddress, probe as probe_redis};
pub use redis_directory::{RedisDirectory, SessionTake, SessionsKept};
