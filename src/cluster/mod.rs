//! Scale-out over Redis (issue 17), being built: so far the room directory — one
//! owner per room through leases, where each room lives, listings that expire with
//! the leases — in memory ([`directory::MemoryDirectory`]) and in Redis
//! ([`redis_directory::RedisDirectory`]). Nothing in the server uses it yet: joins,
//! routing and checkpoints come next, and there is no `[cluster]` configuration until
//! they do.

pub mod directory;
pub mod redis_directory;

pub use directory::{Claim, Directory, DirectoryError, MemoryDirectory, Node, RoomEntry};
pub use redis_directory::RedisDirectory;
