//! The cluster's room directory in Redis (redis-rs with its connection manager, which
//! reconnects by itself). Claims, renewals and releases are one Lua script each, so
//! each is atomic on the server; a listing page takes two or three round trips (the
//! ids, their entries, and pruning ids whose entry lapsed). Leases are Redis key
//! expiries, so they lapse on Redis's clock even when the owning node is gone.
//!
//! Keys, under the configured prefix (default `tickrelay:`):
//!
//! | key | value | expires |
//! |---|---|---|
//! | `room:<id>` | a hash: `node`, `start` (the token of the node start holding it: see `CLAIM`), `type`, `members`, `max`, `listing` (`Listing`, protobuf: metadata, locked, private), `bans` (the banned users' digests, 8 bytes each: see `user_digest`), `entries` (its metadata's entry digests: see [`entry_digests`]) | with the owner's lease |
//! | `open:<type>` | a sorted set of the rooms of that type a quick join may pick (not locked, not private, with a free seat), scored by member count, as of the owners' renewals; ids whose `room:` key lapsed are removed as quick joins meet them, and by the sweep | never |
//! | `open-entry:<digest>:<type>` | the same, of the rooms whose metadata holds the entry with that digest (see [`entry_digests`]): a quick join with filters reads the intersection of its filters' sets (`OPEN_MATCHING`); the rooms of nodes of an earlier version, which write no `entries`, are in `open:<type>` only | never (empty: gone) |
//! | `open-entries:<type>` | a set of the digests of that type's entry sets (while not empty), for the sweep | never |
//! | `node:<id>` | the node's public URL | with the node's lease |
//! | `claim:<id>` | the number of the room's latest claim (a take of the room when no node held it): a node whose copy of the room was claimed before it does not take it back | like the checkpoint |
//! | `checkpoint:<id>` | the room's last checkpoint (`RoomCheckpoint`, protobuf) | `[cluster] checkpoint_ttl_secs` after its last write or its owner's last renewal |
//! | `node:<id>:inbox`, `:closes`, `:removals` | (pub/sub channels: room events, closes and user removals for the node's rooms, which a stopping node leaves before it hands them off) | — |
//! | `sessions:<n>` | a hash: the live sessions of node start `n` (resume token → `SessionRecord`, protobuf; `user:<token>` → its user) | `lease_ms` plus the resume grace after the node's last renewal |
//! | `node-starts` | a counter numbering node starts (from a random value when Redis has none) | never |
//! | `node-number:<n>` | the id of the node start holding number `n` | like `sessions:<n>` |
//! | `node-start:<id>` | the number of the node start running under the id now (a later start of the id leaves an earlier one's sessions to other nodes) | with the node's lease |
//! | `numbers-in-use` | a sorted set: numbers of dead node starts whose sessions other nodes continue, scored by when they may be given again (Unix ms) | entries pruned as nodes start |
//! | `seat:<ticket>` | a redirected member's seat ticket (`Seat`, protobuf: member id, user, room) | a minute, or when used |
//! | `rooms` | a sorted set of the room ids claimed (score 0, so ids sort by bytes), for listings; ids whose `room:` key lapsed are removed as listings meet them (and by a sweep every minute: [`RedisDirectory::sweep`]) | never |
//! | `sweep` | the node sweeping the indexes this minute | a minute |
//!
//! The scripts touch keys they compute from the prefix, which a single Redis (or a
//! replicated one) allows, and a Redis Cluster too: there every key is under one hash
//! tag (see `redis_connection`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use redis::{Cmd, FromRedisValue, Script, Value};

use prost::Message;

use super::directory::{Directory, DirectoryError, Node, RoomEntry};
use super::redis_connection::{Connection, RedisAddress};
use crate::engine::listing::{ListingState, Metadata};
use crate::proto;
use crate::session::directory::Claim;

/// Lua functions for the scripts that deal with a node id's running start (its
/// number in `node-start:<id>`, see [`RENEW`]): whether `number` is it (or none is
/// named: a node of an earlier version, or one that stopped); and, for a claim or a
/// renewal, the id's URL lease and `node-start:<id>` refreshed for start `number`
/// ('0': not numbered yet) unless another start is named (then false).
const NODE_START_LUA: &str = r"
local function start_is(prefix, id, number)
  local current = redis.call('GET', prefix .. 'node-start:' .. id)
  return not current or current == number
end
local function hold_id(prefix, id, number, url, lease)
  if number ~= '0' then
    if not start_is(prefix, id, number) then
      return false
    end
    redis.call('SET', prefix .. 'node-start:' .. id, number, 'PX', lease)
  end
  redis.call('SET', prefix .. 'node:' .. id, url, 'PX', lease)
  return true
end
";

/// Lua functions for the scripts that list a room as open or take it out: while
/// open, a room is in `open:<type>` and in one `open-entry:<digest>:<type>` set per
/// entry of its metadata (the digests, see [`entry_digests`], are the `entries` field
/// of its `room:` hash, space-separated), all scored by its member count; the digests
/// of a type's entry sets are in `open-entries:<type>` while their set is not empty,
/// for the sweep.
const OPEN_LUA: &str = r"
local function entry_set(prefix, room_type, digest)
  return prefix .. 'open-entry:' .. digest .. ':' .. room_type
end
local function leave_set(prefix, room_type, digest, id)
  local set = entry_set(prefix, room_type, digest)
  if redis.call('ZREM', set, id) == 1 and redis.call('EXISTS', set) == 0 then
    redis.call('SREM', prefix .. 'open-entries:' .. room_type, digest)
  end
end
local function leave_entries(prefix, room_type, id, entries)
  for digest in string.gmatch(entries or '', '%S+') do
    leave_set(prefix, room_type, digest, id)
  end
end
local function leave_open(prefix, room_type, id, entries)
  redis.call('ZREM', prefix .. 'open:' .. room_type, id)
  leave_entries(prefix, room_type, id, entries)
end
local function be_open(prefix, room_type, id, members, entries)
  redis.call('ZADD', prefix .. 'open:' .. room_type, members, id)
  for digest in string.gmatch(entries or '', '%S+') do
    redis.call('ZADD', entry_set(prefix, room_type, digest), members, id)
    redis.call('SADD', prefix .. 'open-entries:' .. room_type, digest)
  end
end
";

/// A script whose body uses [`NODE_START_LUA`]'s and [`OPEN_LUA`]'s functions.
fn with_functions(body: &str) -> Script {
    Script::new(&format!("{NODE_START_LUA}{OPEN_LUA}{body}"))
}

/// The digests under which a room with this metadata is listed while open, as the
/// `entries` field holds them: per entry the first 8 bytes of the SHA-256 of its key,
/// a zero byte and its value, in hex, space-separated (a quick join's filters are
/// looked up by the same digests: see `OPEN_MATCHING`).
pub fn entry_digests(metadata: &Metadata) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let mut digests = String::with_capacity(metadata.len() * 17);
    for (key, value) in metadata {
        let hash = Sha256::new()
            .chain_update(key.as_bytes())
            .chain_update([0])
            .chain_update(value.as_bytes())
            .finalize();
        if !digests.is_empty() {
            digests.push(' ');
        }
        for byte in &hash[..8] {
            let _ = write!(digests, "{byte:02x}"); // (writing to a String cannot fail)
        }
    }
    digests
}

/// Takes a room unless another node's lease on it lives; refreshes this node's URL
/// lease (and the room's, when it was this node's already: its entry is the renewals'
/// to keep). A room with a checkpoint and no lease is not taken (`{2}`) while the
/// renewals are not settled (see [`RENEW`]): after a Redis stall or outage its node,
/// alive, takes it back at its next renewal; nor is any room without a lease for a
/// lease after Redis came back empty (`restarted`): its node, alive, had it. A node
/// that has renewed before and finds no renewal recorded is the first to see that
/// Redis lost the directory, and starts that lease. A retake (the room runs on this
/// node) does not wait.
///
/// A room's entry names the node start holding it (`node`, its id, and `start`, a
/// token drawn as the node started), so that its renewals, checkpoints, releases and
/// closes are its own, not those of another start of its id. And each take of a room
/// nobody held is numbered (`claim:<id>`: at least Redis's time in ms, above the last
/// number): a room that runs on the claimer is taken back under its own number,
/// unless a later claim came since, or the claimer knows of none and Redis does
/// (`{4}`: the copy there is out of date, even if that claim's node has let the room
/// go since); a node cut off from Redis past its lease
/// cannot take back a room another node claimed meanwhile, nor its close delete that
/// claim's checkpoint.
///
/// KEYS: room, node, rooms, open rooms of its type, checkpoint, claim number. ARGV:
/// node id, lease ms, type, max, url, room id, prefix, listing, open (1 or 0), retake
/// (1 or 0), this node has renewed before (1 or 0), the claimer found no checkpoint
/// (1 or 0), the node start's token, the number of its claim of the room ('' for
/// none), whether the room runs on the claimer (1 or 0: a number it has is otherwise
/// not its copy's), how long a checkpoint is kept (ms: the claim number is kept as
/// long), the node start's number (0: none yet; its URL lease and `node-start:<id>` are
/// refreshed as [`RENEW`] does, unless another start of the id runs), the digests of
/// its metadata's entries (see [`OPEN_LUA`]). Returns `{1, claim number}` when taken
/// (or held already: a new number if Redis lost it), `{0, owner, owner's url or
/// false}` when another node holds it, `{2}` when it is not settled,
/// `{3}` when nobody holds it and it has a checkpoint the claimer did not find (its
/// node handed it off since the claimer looked): not taken, so that it is not opened
/// empty; `{4}` when the claimer's copy is out of date, or another start of its node
/// id holds the room, or runs (the claimer was cut off past its lease: it takes no
/// room from then on).
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    with_functions(
        r"
if not hold_id(ARGV[7], ARGV[1], ARGV[17], ARGV[5], ARGV[2]) then
  return {4}
end
local entry = redis.call('HMGET', KEYS[1], 'node', 'start')
local owner = entry[1]
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
if owner == ARGV[1] and entry[2] == ARGV[13] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local held = redis.call('GET', KEYS[6])
  if not held then
    held = tostring(now)
    redis.call('SET', KEYS[6], held, 'PX', ARGV[16])
  end
  return {1, held}
end
if owner == ARGV[1] then
  return {4}
end
if owner then
  return {0, owner, redis.call('GET', ARGV[7] .. 'node:' .. owner)}
end
local latest = tonumber(redis.call('GET', KEYS[6]))
local mine = ARGV[15] == '1' and tonumber(ARGV[14])
if ARGV[15] == '1' and latest and (not mine or latest > mine) then
  return {4}
end
if ARGV[12] == '1' and redis.call('EXISTS', KEYS[5]) == 1 then
  return {3}
end
if ARGV[10] ~= '1' then
  local last = tonumber(redis.call('GET', ARGV[7] .. 'renewed-at'))
  local lease = tonumber(ARGV[2])
  if not last and ARGV[11] == '1' then
    redis.call('SET', ARGV[7] .. 'restarted', 1, 'PX', lease)
    redis.call('SET', ARGV[7] .. 'renewing-since', now)
    redis.call('SET', ARGV[7] .. 'renewed-at', now)
  end
  if redis.call('EXISTS', ARGV[7] .. 'restarted') == 1 then
    return {2}
  end
  if redis.call('EXISTS', KEYS[5]) == 1 then
    local since = tonumber(redis.call('GET', ARGV[7] .. 'renewing-since'))
    if not last or not since or now - last > lease / 2 or now - since < lease then
      return {2}
    end
  end
end
local claim = mine
if not claim then
  claim = now
  if latest and latest >= now then
    claim = latest + 1
  end
end
claim = tostring(claim)
redis.call('SET', KEYS[6], claim, 'PX', ARGV[16])
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'start', ARGV[13], 'type', ARGV[3], 'max', ARGV[4], 'listing', ARGV[8],
  'members', 0, 'entries', ARGV[18])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[6])
if ARGV[9] == '1' then
  be_open(ARGV[7], ARGV[3], ARGV[6], 0, ARGV[18])
end
return {1, claim}
",
    )
});

/// Banned users' digests as a renewal writes them (8 bytes each, big-endian), in
/// ascending order (a trailing partial digest is ignored).
fn digests(bytes: &[u8]) -> Vec<u64> {
    let mut digests: Vec<u64> = (bytes.chunks_exact(8))
        .map(|digest| u64::from_be_bytes(digest.try_into().expect("chunks of 8")))
        .collect();
    digests.sort_unstable();
    digests
}

/// Renews this node's URL lease (KEYS[1]) and the leases of the rooms it owns
/// (KEYS[2..]), with their member counts and listings, and keeps the open-room sets
/// current (see [`OPEN_LUA`]: a room's entry sets are written when its member count or
/// its listing was, or it was not open), and records the members of the rooms it holds
/// in the `load` set. ARGV: node id, lease ms, url, prefix, then per room its id, type,
/// member count, whether its listing, bans and entries are written (1 or 0:
/// unchanged), the listing, whether it is open (1 or 0), its bans (8 bytes per banned
/// user's digest), and the digests of its metadata's entries. Returns the
/// (1-based) positions of the rooms this node start no longer holds (see [`CLAIM`]).
///
/// It also keeps the time of the last renewal by any node (`renewed-at`, Redis's
/// clock) and since when renewals have come without a gap of half a lease
/// (`renewing-since`). Such a gap means Redis stalled or was away (or every node
/// was): a room lease can lapse only in a gap of two thirds of a lease, as each owner
/// renews every third. Renewals are settled a lease after the gap: every live owner
/// has renewed (and taken back its lapsed rooms) by then. A directory without a
/// renewal yet is new (settled), unless this node has renewed before: then Redis
/// restarted empty under it, and no room without a lease is claimed for a lease
/// (`restarted`, see [`CLAIM`]). ARGV\[5\]: whether this node has renewed before
/// (1 or 0); ARGV\[6\]: how long a checkpoint is kept (ms): each room held keeps its
/// checkpoint that long from now (a room that does not change, or an empty one, which
/// does not tick, is not checkpointed again for a while), and its claim number as
/// long; ARGV\[7\]: whether the rooms are all the node holds, so their members are
/// its load (1 or 0: a room just restored, or a stopping node's, whose load is
/// withdrawn); ARGV\[8\]: the node start's token; ARGV\[9\]: its number (see
/// [`RedisDirectory::register_node`]; 0: none yet), kept in `node-start:<id>` as long
/// as the node's lease unless another start of the id holds it (a node cut off past
/// its lease, whose id a new start took: position 0 in the answer says so, every
/// room is lost, and the id's URL lease and load are left to that start); ARGV\[10\]:
/// the members of the rooms earlier calls of the same renewal kept (a node's rooms are
/// renewed [`RENEW_CHUNK`] to a call, so that no call keeps Redis long; the load the
/// last call writes counts them); the rooms' arguments follow it.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    with_functions(
        r"
local lost = {}
local superseded = not hold_id(ARGV[4], ARGV[1], ARGV[9], ARGV[3], ARGV[2])
if superseded then
  table.insert(lost, 0)
end
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local last = tonumber(redis.call('GET', ARGV[4] .. 'renewed-at'))
if not last and ARGV[5] == '1' then
  redis.call('SET', ARGV[4] .. 'restarted', 1, 'PX', ARGV[2])
  redis.call('SET', ARGV[4] .. 'renewing-since', now)
elseif not last then
  redis.call('SET', ARGV[4] .. 'renewing-since', 0)
elseif now - last > tonumber(ARGV[2]) / 2 then
  redis.call('SET', ARGV[4] .. 'renewing-since', now)
end
redis.call('SET', ARGV[4] .. 'renewed-at', now)
local load = tonumber(ARGV[10])
for i = 2, #KEYS do
  local a = 11 + (i - 2) * 8
  local id, room_type, members = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local entry = redis.call('HMGET', KEYS[i], 'node', 'start', 'entries')
  if not superseded and entry[1] == ARGV[1] and entry[2] == ARGV[8] then
    load = load + tonumber(members)
    local entries = entry[3]
    local written = ARGV[a + 3] == '1'
    if written then
      if entries ~= ARGV[a + 7] then
        leave_entries(ARGV[4], room_type, id, entries)
        entries = ARGV[a + 7]
      end
      redis.call('HSET', KEYS[i], 'members', members, 'listing', ARGV[a + 4], 'bans', ARGV[a + 6], 'entries', entries)
    else
      redis.call('HSET', KEYS[i], 'members', members)
    end
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    redis.call('PEXPIRE', ARGV[4] .. 'checkpoint:' .. id, ARGV[6])
    redis.call('PEXPIRE', ARGV[4] .. 'claim:' .. id, ARGV[6])
    if ARGV[a + 5] == '1' then
      local score = redis.call('ZSCORE', ARGV[4] .. 'open:' .. room_type, id)
      if written or not score or tonumber(score) ~= tonumber(members) then
        be_open(ARGV[4], room_type, id, members, entries)
      end
    else
      leave_open(ARGV[4], room_type, id, entries)
    end
  else
    table.insert(lost, i - 1)
  end
end
if ARGV[7] == '1' and not superseded then
  redis.call('ZADD', ARGV[4] .. 'load', load, ARGV[1])
end
return lost
",
    )
});

/// The live nodes' loads, fewest members first: each node of the `load` set whose
/// own lease lives, with its URL; the others (dead: a node that stops removes itself)
/// leave the set. KEYS: the `load` set. ARGV: the prefix. Returns {id, url, members}
/// triples.
static NODE_LOADS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local index = KEYS[1]
local loads = redis.call('ZRANGE', index, 0, -1, 'WITHSCORES')
local live = {}
for i = 1, #loads, 2 do
  local url = redis.call('GET', ARGV[1] .. 'node:' .. loads[i])
  if url then
    table.insert(live, {loads[i], url, tonumber(loads[i + 1])})
  else
    redis.call('ZREM', index, loads[i])
  end
end
return live
",
    )
});

/// Forgets the ids of an index (`rooms`, or an `open:` set) whose room key lapsed,
/// unless a claim brought it back since. KEYS: the index, then one room key per id in
/// ARGV. Returns how many it forgot.
static PRUNE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return removed
",
    )
});

/// Forgets the ids in some entry sets of a type (see [`OPEN_LUA`]) whose room lapsed,
/// a set left empty (or found empty) leaving the type's registry; as many sets, from
/// the first, as hold a budget of ids together (so that one call keeps Redis a
/// millisecond or two). KEYS: `open-entries:<type>`. ARGV: prefix, type, the budget,
/// then the digests. Returns `{ids forgotten, sets done}`: none done means the first
/// set alone holds more than the budget (see [`RedisDirectory::sweep`]).
static PRUNE_ENTRY_SETS: LazyLock<Script> = LazyLock::new(|| {
    with_functions(
        r"
local prefix, room_type, budget = ARGV[1], ARGV[2], tonumber(ARGV[3])
local removed, done, checked = 0, 0, 0
for i = 4, #ARGV do
  local set = entry_set(prefix, room_type, ARGV[i])
  local size = redis.call('ZCARD', set)
  if checked + size > budget then
    break
  end
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    if redis.call('EXISTS', prefix .. 'room:' .. id) == 0 then
      leave_set(prefix, room_type, ARGV[i], id)
      removed = removed + 1
    end
  end
  if redis.call('EXISTS', set) == 0 then
    redis.call('SREM', KEYS[1], ARGV[i])
  end
  checked = checked + size
  done = done + 1
end
return {removed, done}
",
    )
});

/// Ids a call of [`PRUNE_ENTRY_SETS`] looks at, at most.
const PRUNE_ENTRY_BUDGET: usize = 2_048;

/// A large entry set, pruned a page at a time by [`RedisDirectory::sweep`], leaves
/// the type's registry if it is empty now. KEYS: the set, `open-entries:<type>`.
/// ARGV: the digest.
static FORGET_EMPTY_ENTRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 0
",
    )
});

/// Takes a session record: HGET and HDEL in one step, so one node only continues a
/// session; not while the node start holding it lives (its id's URL lease, with its
/// number in `node-start:<id>`: a later start of the id, restarted in place, leaves
/// the earlier one's sessions to whichever node its clients reach), which has the
/// session live or parked (answers `1`), unless that node's id is this node's (an
/// earlier start of it, dead). (A node of an earlier version, which writes no
/// `node-start:`, counts as the start holding the number while its id's lease lives.)
/// Nor for another user than the session's (answers `2`, the record left in place: a
/// stolen token does not end its session). (A record a node of an earlier version
/// wrote has no user beside it: it is taken whoever presents it, and the taking node
/// refuses another user then, the session lost; during an upgrade from such a
/// version only.) A record taken keeps its node's number in
/// use for `ttl` (the taking node keeps it so from its next renewal on: see
/// [`RedisDirectory::keep_sessions`]). KEYS: the sessions hash, the node number, the
/// numbers in use. ARGV: the resume token, the prefix, this node's id, the number,
/// ttl ms, the presenting user ('': any).
static TAKE_SESSION: LazyLock<Script> = LazyLock::new(|| {
    with_functions(
        r"
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[3] and redis.call('EXISTS', ARGV[2] .. 'node:' .. holder) == 1
  and start_is(ARGV[2], holder, ARGV[4]) then
  return 1
end
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record then
  local user = redis.call('HGET', KEYS[1], 'user:' .. ARGV[1])
  if ARGV[6] ~= '' and user and user ~= ARGV[6] then
    return 2
  end
  redis.call('HDEL', KEYS[1], ARGV[1], 'user:' .. ARGV[1])
  local time = redis.call('TIME')
  local hold_until = time[1] * 1000 + math.floor(time[2] / 1000) + tonumber(ARGV[5])
  local held = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[4]))
  if not held or held < hold_until then
    redis.call('ZADD', KEYS[3], hold_until, ARGV[4])
  end
end
return record
",
    )
});

/// Saves checkpoints of rooms this node start holds (one that lost a room must not
/// overwrite what a later claim holds), and keeps their claim numbers as long. KEYS:
/// room key, checkpoint key, claim number key, per room. ARGV: node id, ttl ms, the
/// node start's token, then one checkpoint per room. Returns how many were saved.
static SAVE_CHECKPOINTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local saved = 0
for i = 1, #KEYS / 3 do
  local entry = redis.call('HMGET', KEYS[3 * i - 2], 'node', 'start')
  if entry[1] == ARGV[1] and entry[2] == ARGV[3] then
    redis.call('SET', KEYS[3 * i - 1], ARGV[i + 3], 'PX', ARGV[2])
    redis.call('PEXPIRE', KEYS[3 * i], ARGV[2])
    saved = saved + 1
  end
end
return saved
",
    )
});

/// A room closed on its node: its checkpoint and entry go if this node start holds
/// it, or if no node does and no claim came after this node's (its lease lapsed
/// while Redis was away: a join would restore the closed room from the checkpoint
/// otherwise; a later claim's checkpoint is that claim's). The claim number stays, so
/// that no copy of the room claimed before it is taken back. KEYS: room, checkpoint,
/// rooms, claim number. ARGV: node id, room id, prefix, the node start's token, its
/// claim number ('' for none).
static CLOSE: LazyLock<Script> = LazyLock::new(|| {
    with_functions(
        r"
local entry = redis.call('HMGET', KEYS[1], 'node', 'start', 'type', 'entries')
local ours = entry[1] == ARGV[1] and entry[2] == ARGV[4]
if ours then
  leave_open(ARGV[3], entry[3], ARGV[2], entry[4])
end
local latest = tonumber(redis.call('GET', KEYS[4]))
local mine = tonumber(ARGV[5])
if ours or (not entry[1] and (not latest or (mine and latest <= mine))) then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return 0
",
    )
});

/// A node stops: releases every room it holds (this start), its own URL lease and
/// its load entry (unless another start of its id runs: see [`RENEW`]). KEYS: the
/// rooms set, this node's key, then one room key per room. ARGV: node id, prefix, the
/// node start's token, its number, then the room ids.
static RELEASE_ALL: LazyLock<Script> = LazyLock::new(|| {
    with_functions(
        r"
for i = 3, #KEYS do
  local entry = redis.call('HMGET', KEYS[i], 'node', 'start', 'type', 'entries')
  if entry[1] == ARGV[1] and entry[2] == ARGV[3] then
    leave_open(ARGV[2], entry[3], ARGV[i + 2], entry[4])
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i + 2])
  end
end
if start_is(ARGV[2], ARGV[1], ARGV[4]) then
  redis.call('DEL', KEYS[2], ARGV[2] .. 'node-start:' .. ARGV[1])
  redis.call('ZREM', ARGV[2] .. 'load', ARGV[1])
end
return 0
",
    )
});

/// A stopping node's withdrawal ([`RedisDirectory::withdraw_load`]): its load entry
/// goes (unless another start of its id runs: see [`RENEW`]), and its rooms leave
/// the open sets. KEYS: the load set. ARGV: node id, prefix, the node start's number,
/// then per room its type and id.
static WITHDRAW_LOAD: LazyLock<Script> = LazyLock::new(|| {
    with_functions(
        r"
if start_is(ARGV[2], ARGV[1], ARGV[3]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
for i = 4, #ARGV, 2 do
  leave_open(ARGV[2], ARGV[i], ARGV[i + 1], redis.call('HGET', ARGV[2] .. 'room:' .. ARGV[i + 1], 'entries'))
end
return 0
",
    )
});

/// Keeps a node start's session records and its number's hold `ttl` longer, taking
/// the hold again when it went (Redis lost it: restarted, or unreachable for longer
/// than the hold), and keeps the numbers of other (dead) node starts whose sessions
/// it continues from being given again for as long. KEYS: sessions, node number,
/// numbers in use. ARGV: ttl ms, node id, then those numbers. Returns 0 when another
/// node holds the number now, 2 when the hold was taken again, else 1.
static KEEP_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if #ARGV > 2 then
  local time = redis.call('TIME')
  local hold_until = time[1] * 1000 + math.floor(time[2] / 1000) + tonumber(ARGV[1])
  for i = 3, #ARGV do
    local held = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[i]))
    if not held or held < hold_until then
      redis.call('ZADD', KEYS[3], hold_until, ARGV[i])
    end
  end
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
if holder then
  return 1
end
return 2
",
    )
});

/// A number for a node start (see [`RedisDirectory::register_node`]): the counter's
/// next, skipping numbers held by a node start or in use by sessions other nodes
/// continue. The counter starts from a random value when Redis has none (a first
/// start, or a restart that emptied Redis: the numbers of node starts Redis forgot
/// are then not given again in order). KEYS: the counter, the numbers in use (a
/// Redis Cluster routes the script by them). ARGV: prefix, node id, hold ms, the
/// counter's random start, the count of numbers. Returns 0 when every number is
/// held.
static NEXT_NUMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local prefix = ARGV[1]
redis.call('SET', KEYS[1], ARGV[4], 'NX')
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local in_use = KEYS[2]
redis.call('ZREMRANGEBYSCORE', in_use, '-inf', now)
local numbers = tonumber(ARGV[5])
for _ = 1, numbers do
  local number = (redis.call('INCR', KEYS[1]) - 1) % numbers + 1
  if not redis.call('ZSCORE', in_use, number)
    and redis.call('SET', prefix .. 'node-number:' .. number, ARGV[2], 'NX', 'PX', ARGV[3]) then
    return number
  end
end
return 0
",
    )
});

/// Deletes a room's entry if this node start holds it. KEYS: room, rooms. ARGV:
/// node id, room id, prefix, the node start's token.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    with_functions(
        r"
local entry = redis.call('HMGET', KEYS[1], 'node', 'start', 'type', 'entries')
if entry[1] == ARGV[1] and entry[2] == ARGV[4] then
  leave_open(ARGV[3], entry[3], ARGV[2], entry[4])
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 0
",
    )
});

/// The ids of the fullest rooms of a type open at their owners' last renewals whose
/// metadata holds every one of some entries (see [`OPEN_LUA`]), fullest first (ties
/// by id, descending): the one entry's set, or the intersection of the entries' sets
/// (`ZINTER`: as costly as the smallest set times the number of entries, whatever the
/// others hold). Each id is checked against its room's `entries` (an id whose room
/// lapsed, or was taken again with other metadata, leaves the sets it should not be
/// in). KEYS: `open:<type>`. ARGV: prefix, type, how many ids at most, how many ids
/// to look at at most, then the entries' digests (at least one).
static OPEN_MATCHING: LazyLock<Script> = LazyLock::new(|| {
    with_functions(
        r"
local prefix, room_type = ARGV[1], ARGV[2]
local count, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local digests, sets = {}, {}
for i = 5, #ARGV do
  table.insert(digests, ARGV[i])
  table.insert(sets, entry_set(prefix, room_type, ARGV[i]))
end
local ids = {}
if #sets == 1 then
  ids = redis.call('ZRANGE', sets[1], 0, budget - 1, 'REV')
else
  local ascending = redis.call('ZINTER', #sets, unpack(sets))
  for i = #ascending, math.max(1, #ascending - budget + 1), -1 do
    table.insert(ids, ascending[i])
  end
end
local found = {}
for _, id in ipairs(ids) do
  if #found == count then
    break
  end
  local entries = redis.call('HGET', prefix .. 'room:' .. id, 'entries')
  local held = entries and (' ' .. entries .. ' ')
  local fits = true
  for i, digest in ipairs(digests) do
    if not held or not string.find(held, ' ' .. digest .. ' ', 1, true) then
      leave_set(prefix, room_type, digest, id)
      fits = false
    end
  end
  if fits then
    table.insert(found, id)
  end
end
return found
",
    )
});

/// Ids a search of the open rooms by metadata looks at, at most (see
/// [`OPEN_MATCHING`]): those of rooms that lapsed or changed their metadata without
/// their sets being told (their node died; taken again from an older checkpoint) are
/// passed over, and leave the sets.
const OPEN_MATCHING_BUDGET: usize = 2_048;

/// What [`RedisDirectory::take_session`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionTake {
    /// The session's record (`SessionRecord`, protobuf), now taken.
    Taken(Vec<u8>),
    /// The node holding the session is alive: the client is to resume there.
    Live,
    /// No such session (ended, taken already, or never).
    Unknown,
    /// The session is another user's: left in place.
    OtherUser,
}

/// The directory in Redis, seen from one node.
#[derive(Clone)]
pub struct RedisDirectory {
    connection: Connection,
    /// Per room held, a hash of the listing last written and the renewals since:
    /// renewals write a listing when it changed, and every tenth time all the same.
    listings: Arc<Mutex<HashMap<String, (u64, u8)>>>,
    /// This node start's token (random), which the entries of the rooms it holds
    /// name (see [`CLAIM`]).
    start: String,
    /// Per room this node start claimed, the number of its claim (see [`CLAIM`]) and
    /// when it last claimed the room or ran it (renewed it, held or not): kept a
    /// checkpoint's time to live after that (a close written after a release names
    /// it; the room's number in Redis lapses by then).
    claims: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    /// Set once a renewal succeeded: a directory with no renewal recorded is then
    /// one Redis lost (see [`CLAIM`]).
    renewed: Arc<AtomicBool>,
    /// Set once the node withdrew ([`RedisDirectory::withdraw_load`]): its renewals
    /// list none of its rooms as open.
    withdrawn: Arc<AtomicBool>,
    /// This node start's number, once registered ([`RedisDirectory::register_node`]);
    /// 0 before.
    number: Arc<AtomicU64>,
    /// Set once a renewal found another start of this node id running (logged once).
    superseded: Arc<AtomicBool>,
    node: Node,
    lease_ms: u64,
    /// How long a checkpoint is kept (see [`RedisDirectory::with_checkpoint_ttl`]).
    checkpoint_ttl_ms: u64,
    prefix: String,
}

/// How long a checkpoint is kept unless [`RedisDirectory::with_checkpoint_ttl`] says.
const DEFAULT_CHECKPOINT_TTL: Duration = Duration::from_secs(600);

impl RedisDirectory {
    /// Connects to `redis` (`redis://host:port/db`, a Redis Cluster's seed nodes,
    /// comma-separated, or sentinels; see [`RedisAddress`]); an unreachable Redis is
    /// an error here, at start. Later
    /// outages are retried in the background, and operations fail with a
    /// [`DirectoryError`] meanwhile. `prefix`: as configured (on a cluster it becomes
    /// a hash tag).
    pub async fn connect(
        redis: &RedisAddress,
        node: Node,
        lease: Duration,
        prefix: &str,
    ) -> Result<Self, DirectoryError> {
        let connection = Connection::open(redis, None).await?;
        Ok(Self {
            prefix: connection.key_prefix(prefix),
            connection,
            listings: Arc::default(),
            start: format!("{:016x}", fastrand::u64(..)),
            claims: Arc::default(),
            renewed: Arc::default(),
            withdrawn: Arc::default(),
            number: Arc::default(),
            superseded: Arc::default(),
            node,
            lease_ms: lease.as_millis().max(1) as u64,
            checkpoint_ttl_ms: DEFAULT_CHECKPOINT_TTL.as_millis() as u64,
        })
    }

    /// Each renewal keeps the checkpoints of the rooms it renews `ttl` from then
    /// (`[cluster] checkpoint_ttl_secs`; 10 minutes unless said), as their writes do.
    pub fn with_checkpoint_ttl(mut self, ttl: Duration) -> Self {
        self.checkpoint_ttl_ms = ttl.as_millis().max(1) as u64;
        self
    }

    /// [`Directory::renew`], telling the node's load (the members of `rooms`) when
    /// `whole`.
    async fn renew_leases(&self, rooms: &[RoomEntry], whole: bool) -> Result<Vec<String>, DirectoryError> {
        let chunks: Vec<&[RoomEntry]> = if rooms.is_empty() {
            vec![rooms]
        } else {
            rooms.chunks(RENEW_CHUNK).collect()
        };
        let mut hashes = Vec::with_capacity(rooms.len());
        let (mut lost, mut kept_members, mut superseded) = (Vec::new(), 0u64, false);
        for (n, chunk) in chunks.iter().enumerate() {
            let last = n + 1 == chunks.len();
            let positions = self
                .renew_chunk(chunk, whole && last, kept_members, &mut hashes)
                .await?;
            superseded |= positions.contains(&0);
            for (i, room) in chunk.iter().enumerate() {
                if positions.contains(&(i + 1)) {
                    lost.push(room.room.clone());
                } else {
                    kept_members += u64::from(room.members);
                }
            }
        }
        if superseded && !self.superseded.swap(true, Ordering::Relaxed) {
            tracing::error!(
                node = %self.node.id,
                "another start of this node id runs (this one was cut off from Redis past its lease): \
                 its sessions and rooms are its own; stop this process"
            );
        }
        let mut written = self.listings.lock();
        for (room, (hash, sent)) in rooms.iter().zip(hashes) {
            let renewals = written.get(&room.room).map_or(0, |&(_, renewals)| renewals + 1);
            written.insert(room.room.clone(), (hash, if sent { 0 } else { renewals }));
        }
        for room in &lost {
            written.remove(room);
        }
        drop(written);
        self.held_now(rooms, whole);
        Ok(lost)
    }

    /// One call of [`RENEW`], for `rooms` (part of a renewal: `whole` when the last of
    /// a whole one, after rooms with `kept_members` members were kept); pushes each
    /// room's listing hash, and whether it was written, onto `hashes`. Returns the
    /// 1-based positions of the rooms this node start no longer holds (0: superseded).
    async fn renew_chunk(
        &self,
        rooms: &[RoomEntry],
        whole: bool,
        kept_members: u64,
        hashes: &mut Vec<(u64, bool)>,
    ) -> Result<Vec<usize>, DirectoryError> {
        let mut invocation = RENEW.key(self.key("node", &self.node.id));
        (invocation.arg(&self.node.id).arg(self.lease_ms))
            .arg(&self.node.url)
            .arg(&self.prefix)
            .arg(u8::from(self.renewed.load(Ordering::Relaxed)))
            .arg(self.checkpoint_ttl_ms)
            .arg(u8::from(whole))
            .arg(&self.start)
            .arg(self.number.load(Ordering::Relaxed))
            .arg(kept_members);
        let withdrawn = self.withdrawn.load(Ordering::Relaxed);
        {
            let written = self.listings.lock();
            for room in rooms {
                let listing = room.listing.to_proto().encode_to_vec();
                let bans: Vec<u8> = room.banned.iter().flat_map(|digest| digest.to_be_bytes()).collect();
                let mut hasher = std::hash::DefaultHasher::new();
                (&listing, &bans, &room.unsettled_keys).hash(&mut hasher);
                let hash = hasher.finish();
                let unchanged = written
                    .get(&room.room)
                    .is_some_and(|&(last, renewals)| last == hash && renewals < UNCHANGED_LISTING_RENEWALS);
                hashes.push((hash, !unchanged));
                (invocation.key(self.key("room", &room.room)).arg(&room.room))
                    .arg(&room.room_type)
                    .arg(room.members)
                    .arg(u8::from(!unchanged))
                    .arg(if unchanged { Vec::new() } else { listing })
                    .arg(u8::from(room.is_open() && !withdrawn))
                    .arg(if unchanged { Vec::new() } else { bans })
                    .arg(if unchanged {
                        String::new()
                    } else {
                        entry_digests(&room.indexed_metadata())
                    });
            }
        }
        let lost: Vec<usize> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)?;
        self.renewed.store(true, Ordering::Relaxed);
        Ok(lost)
    }

    /// The prefix of the keys in Redis (the configured one, inside a hash tag on a
    /// Redis Cluster).
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The node this directory is seen from.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Saves the checkpoints (room id, encoded `RoomCheckpoint`) of the rooms this
    /// node holds, each kept `ttl` after this write, in one round trip; returns how
    /// many were saved (the others' leases are another node's now).
    pub async fn save_checkpoints(
        &self,
        checkpoints: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<usize, DirectoryError> {
        let mut invocation = SAVE_CHECKPOINTS.prepare_invoke();
        (invocation.arg(&self.node.id).arg(ttl.as_millis() as u64)).arg(&self.start);
        for (room, data) in checkpoints {
            invocation
                .key(self.key("room", room))
                .key(self.key("checkpoint", room))
                .key(self.key("claim", room))
                .arg(data);
        }
        invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)
    }

    /// The node stops: releases `rooms` (those it holds) and its URL lease (unless
    /// another start of its id runs), in one round trip.
    pub async fn release_all(&self, rooms: &[String]) -> Result<(), DirectoryError> {
        let mut invocation = RELEASE_ALL.prepare_invoke();
        invocation
            .key(format!("{}rooms", self.prefix))
            .key(self.key("node", &self.node.id))
            .arg(&self.node.id)
            .arg(&self.prefix)
            .arg(&self.start)
            .arg(self.number.load(Ordering::Relaxed));
        for room in rooms {
            invocation.key(self.key("room", room)).arg(room);
        }
        invocation
            .invoke_async::<()>(&mut self.connection.clone())
            .await
            .map_err(failed)
    }

    /// The node stops taking new rooms and members: its load entry goes, so placement
    /// sends none here, and its `rooms` leave the quick joins' open sets (so that no
    /// quick join on another node is sent to a room about to move), as they stay in
    /// its renewals from now on.
    pub async fn withdraw_load(&self, rooms: &[RoomEntry]) -> Result<(), DirectoryError> {
        self.withdrawn.store(true, Ordering::Relaxed);
        let mut invocation = WITHDRAW_LOAD.key(format!("{}load", self.prefix));
        (invocation.arg(&self.node.id).arg(&self.prefix)).arg(self.number.load(Ordering::Relaxed));
        for room in rooms {
            invocation.arg(&room.room_type).arg(&room.room);
        }
        invocation
            .invoke_async::<()>(&mut self.connection.clone())
            .await
            .map_err(failed)
    }

    /// Keeps a seat ticket (see `Redirect.seat`) for `ttl`.
    pub async fn save_seat(&self, ticket: &str, seat: &[u8], ttl: Duration) -> Result<(), DirectoryError> {
        self.query(
            redis::cmd("SET")
                .arg(self.key("seat", ticket))
                .arg(seat)
                .arg("PX")
                .arg(ttl.as_millis() as u64),
        )
        .await
    }

    /// Takes a seat ticket (read and deleted: it is used once).
    pub async fn take_seat(&self, ticket: &str) -> Result<Option<Vec<u8>>, DirectoryError> {
        self.query(redis::cmd("GETDEL").arg(self.key("seat", ticket))).await
    }

    /// Whether a checkpoint of the room is kept.
    pub async fn has_checkpoint(&self, room: &str) -> Result<bool, DirectoryError> {
        self.query(redis::cmd("EXISTS").arg(self.key("checkpoint", room))).await
    }

    /// The room's last checkpoint, if one is kept.
    pub async fn load_checkpoint(&self, room: &str) -> Result<Option<Vec<u8>>, DirectoryError> {
        self.query(redis::cmd("GET").arg(self.key("checkpoint", room))).await
    }

    /// A room closed here (it emptied out): its checkpoint and directory entry go (if
    /// this node still holds it), so the next room with its id starts empty.
    pub async fn close(&self, room: &str) -> Result<(), DirectoryError> {
        self.listings.lock().remove(room);
        CLOSE
            .key(self.key("room", room))
            .key(self.key("checkpoint", room))
            .key(format!("{}rooms", self.prefix))
            .key(self.key("claim", room))
            .arg(&self.node.id)
            .arg(room)
            .arg(&self.prefix)
            .arg(&self.start)
            .arg(self.claim_of(room))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)
    }

    /// A number for this node start, from 1 to 8191, unique among the nodes running
    /// and those whose sessions may still be continued (numbers cycle, and one still
    /// held, `node-number:<n>`, or in use by sessions another node continues, is
    /// skipped): the high bits of its session ids and the prefix of its resume tokens.
    /// The number is held for `hold` and then for as long as
    /// [`RedisDirectory::keep_sessions`] renews it.
    ///
    /// Refused while another node with this node's id is alive (or died less than a
    /// lease ago): two nodes with one id would take each other's rooms for their own.
    pub async fn register_node(&self, hold: Duration) -> Result<u64, DirectoryError> {
        let taken: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.key("node", &self.node.id))
                    .arg(&self.node.url)
                    .arg("NX")
                    .arg("PX")
                    .arg(self.lease_ms),
            )
            .await?;
        if taken.is_none() {
            return Err(DirectoryError(format!(
                "another node with id `{}` is running (or stopped without handing off less than a lease ago); give each node its own --node-id or --public-url",
                self.node.id
            )));
        }
        let number: u64 = NEXT_NUMBER
            .key(format!("{}node-starts", self.prefix))
            .key(format!("{}numbers-in-use", self.prefix))
            .arg(&self.prefix)
            .arg(&self.node.id)
            .arg(hold.as_millis() as u64)
            .arg(fastrand::u64(..NODE_NUMBERS * 1_000_000))
            .arg(NODE_NUMBERS)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)?;
        if number == 0 {
            return Err(DirectoryError(format!(
                "all {NODE_NUMBERS} node numbers are held by running nodes (or nodes whose sessions may still resume)"
            )));
        }
        // Kept by the renewals from now on.
        self.number.store(number, Ordering::Relaxed);
        self.query::<()>(
            redis::cmd("SET")
                .arg(self.key("node-start", &self.node.id))
                .arg(number)
                .arg("PX")
                .arg(self.lease_ms),
        )
        .await?;
        Ok(number)
    }

    /// Records a live session of node `number` under its resume token, with its user
    /// (only that user may continue it elsewhere: see `TAKE_SESSION`).
    /// The records expire `ttl` after the last write or renewal (see
    /// [`RedisDirectory::keep_sessions`]), so a node that dies leaves none behind.
    pub async fn save_session(
        &self,
        number: u64,
        token: &str,
        record: &[u8],
        user: &str,
        ttl: Duration,
    ) -> Result<(), DirectoryError> {
        let key = self.key("sessions", &number.to_string());
        redis::pipe()
            .cmd("HSET")
            .arg(&key)
            .arg(token)
            .arg(record)
            .arg(format!("user:{token}"))
            .arg(user)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(failed)
    }

    /// Takes (reads and deletes) the record of a session of node `number` for `user`
    /// (`None`: whoever presents its token), keeping the number in use for `ttl` when
    /// there was one.
    pub async fn take_session(
        &self,
        number: u64,
        token: &str,
        user: Option<&str>,
        ttl: Duration,
    ) -> Result<SessionTake, DirectoryError> {
        let reply: Value = TAKE_SESSION
            .key(self.key("sessions", &number.to_string()))
            .key(self.key("node-number", &number.to_string()))
            .key(format!("{}numbers-in-use", self.prefix))
            .arg(token)
            .arg(&self.prefix)
            .arg(&self.node.id)
            .arg(number)
            .arg(ttl.as_millis() as u64)
            .arg(user.unwrap_or_default())
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)?;
        Ok(match reply {
            Value::Int(1) => SessionTake::Live,
            Value::Int(2) => SessionTake::OtherUser,
            Value::BulkString(record) => SessionTake::Taken(record),
            _ => SessionTake::Unknown,
        })
    }

    /// Forgets a session record (the session ended).
    pub async fn forget_session(&self, number: u64, token: &str) -> Result<(), DirectoryError> {
        self.query(
            redis::cmd("HDEL")
                .arg(self.key("sessions", &number.to_string()))
                .arg(token)
                .arg(format!("user:{token}")),
        )
        .await
    }

    /// Keeps node `number`'s session records `ttl` longer (every lease renewal): when
    /// the node dies they go this long after its last renewal.
    /// Its number's hold too (see [`RedisDirectory::register_node`]), taken again if
    /// Redis lost it ([`SessionsKept::Retaken`]: the records may be gone too); an
    /// error when another node took the number meanwhile. `continued`: the numbers of
    /// the other node starts whose sessions this node continues, which no node start
    /// is given for as long (their ids live on here).
    pub async fn keep_sessions(
        &self,
        number: u64,
        continued: &[u64],
        ttl: Duration,
    ) -> Result<SessionsKept, DirectoryError> {
        let held: i64 = KEEP_SESSIONS
            .key(self.key("sessions", &number.to_string()))
            .key(self.key("node-number", &number.to_string()))
            .key(format!("{}numbers-in-use", self.prefix))
            .arg(ttl.as_millis() as u64)
            .arg(&self.node.id)
            .arg(continued)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)?;
        match held {
            0 => Err(DirectoryError(format!(
                "node number {number} is held by another node (Redis lost this node's hold); session ids may collide until this node restarts"
            ))),
            2 => Ok(SessionsKept::Retaken),
            _ => Ok(SessionsKept::Kept),
        }
    }

    /// Writes node `number`'s session records again (token, record, user), after
    /// Redis lost them ([`SessionsKept::Retaken`]), in batches.
    pub async fn save_sessions(
        &self,
        number: u64,
        records: &[(String, Vec<u8>, String)],
        ttl: Duration,
    ) -> Result<(), DirectoryError> {
        let key = self.key("sessions", &number.to_string());
        for batch in records.chunks(SESSIONS_PER_WRITE) {
            let mut write = redis::pipe();
            write.cmd("HSET").arg(&key);
            for (token, record, user) in batch {
                write.arg(token).arg(record).arg(format!("user:{token}")).arg(user);
            }
            write
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl.as_millis() as u64)
                .ignore();
            write
                .query_async::<()>(&mut self.connection.clone())
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// The number of this node's claim of `room` ('' for none).
    fn claim_of(&self, room: &str) -> String {
        self.claims
            .lock()
            .get(room)
            .map(|(number, _)| number.clone())
            .unwrap_or_default()
    }

    /// `rooms` run here (a renewal named them, held or lost): their claim numbers
    /// are current, even for a room whose lease lapsed (its retake names its number).
    /// After a renewal of all the node's rooms (`whole`), the numbers of rooms no
    /// longer run here go once they may have lapsed in Redis.
    fn held_now(&self, rooms: &[RoomEntry], whole: bool) {
        let now = Instant::now();
        let mut claims = self.claims.lock();
        for room in rooms {
            if let Some((_, held)) = claims.get_mut(&room.room) {
                *held = now;
            }
        }
        if whole {
            let ttl = Duration::from_millis(self.checkpoint_ttl_ms);
            claims.retain(|_, (_, held)| now.duration_since(*held) < ttl);
        }
    }
}

/// Renewals in a row that do not write a room's listing because it did not change,
/// at most: then it is written all the same (a write Redis lost is made good).
const UNCHANGED_LISTING_RENEWALS: u8 = 9;

/// Rooms a call of [`RENEW`] renews, at most: about 10 ms of Redis's time (rooms of
/// 16 metadata entries whose listings are written).
const RENEW_CHUNK: usize = 250;

/// Node numbers (see [`RedisDirectory::register_node`]): 13 bits of a session id.
const NODE_NUMBERS: u64 = 8191;

/// Session records written again in one round trip, at most.
const SESSIONS_PER_WRITE: usize = 1_000;

/// What [`RedisDirectory::keep_sessions`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionsKept {
    /// The node's number was still held.
    Kept,
    /// Redis had lost the hold (restarted empty, or unreachable for longer than the
    /// hold) and it was taken again: the session records may be gone too.
    Retaken,
}

fn failed(e: redis::RedisError) -> DirectoryError {
    DirectoryError(e.to_string())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

impl RedisDirectory {
    /// Runs one command on the shared connection.
    async fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, DirectoryError> {
        command.query_async(&mut self.connection.clone()).await.map_err(failed)
    }

    /// [`Directory::claim`] (or, `retake`, [`Directory::retake`]) of a room that its
    /// claimer found no checkpoint of (`none_found`): `None` when nobody holds the
    /// room and it has a checkpoint after all (its node handed it off since the
    /// claimer looked); not taken then, so that it is not opened empty. `runs_here`:
    /// the room runs on this node, under its claim, which is taken back unless
    /// another claim came since ([`Claim::Superseded`]); otherwise a claim is new.
    pub async fn claim_unless_checkpointed(
        &self,
        room: &RoomEntry,
        retake: bool,
        none_found: bool,
        runs_here: bool,
    ) -> Result<Option<Claim>, DirectoryError> {
        let reply: Vec<Value> = CLAIM
            .key(self.key("room", &room.room))
            .key(self.key("node", &self.node.id))
            .key(format!("{}rooms", self.prefix))
            .key(self.key("open", &room.room_type))
            .key(self.key("checkpoint", &room.room))
            .key(self.key("claim", &room.room))
            .arg(&self.node.id)
            .arg(self.lease_ms)
            .arg(&room.room_type)
            .arg(room.max_members)
            .arg(&self.node.url)
            .arg(&room.room)
            .arg(&self.prefix)
            .arg(room.listing.to_proto().encode_to_vec())
            .arg(u8::from(room.is_open()))
            .arg(u8::from(retake))
            .arg(u8::from(self.renewed.load(Ordering::Relaxed)))
            .arg(u8::from(none_found))
            .arg(&self.start)
            .arg(self.claim_of(&room.room))
            .arg(u8::from(runs_here))
            .arg(self.checkpoint_ttl_ms)
            .arg(self.number.load(Ordering::Relaxed))
            .arg(entry_digests(&room.indexed_metadata()))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)?;
        match reply.as_slice() {
            [Value::Int(1), number] => {
                let number = text(number).ok_or_else(|| DirectoryError("claim: malformed claim number".into()))?;
                (self.claims.lock()).insert(room.room.clone(), (number, Instant::now()));
                Ok(Some(Claim::Ours))
            }
            [Value::Int(2)] => Ok(Some(Claim::Settling)),
            [Value::Int(3)] => Ok(None),
            [Value::Int(4)] => Ok(Some(Claim::Superseded)),
            [Value::Int(0), owner, url] => Ok(Some(Claim::Theirs {
                node: text(owner).ok_or_else(|| DirectoryError("claim: malformed owner".into()))?,
                url: text(url),
            })),
            other => Err(DirectoryError(format!("claim: unexpected reply {other:?}"))),
        }
    }

    async fn claim_or_retake(&self, room: &RoomEntry, retake: bool) -> Result<Claim, DirectoryError> {
        let claim = self.claim_unless_checkpointed(room, retake, false, retake).await?;
        claim.ok_or_else(|| DirectoryError("claim: refused over a checkpoint not asked about".into()))
    }
}

impl Directory for RedisDirectory {
    async fn claim(&self, room: &RoomEntry) -> Result<Claim, DirectoryError> {
        self.claim_or_retake(room, false).await
    }

    async fn retake(&self, room: &RoomEntry) -> Result<Claim, DirectoryError> {
        self.claim_or_retake(room, true).await
    }

    async fn renew(&self, rooms: &[RoomEntry]) -> Result<Vec<String>, DirectoryError> {
        self.renew_leases(rooms, true).await
    }

    async fn renew_held(&self, rooms: &[RoomEntry]) -> Result<Vec<String>, DirectoryError> {
        self.renew_leases(rooms, false).await
    }

    async fn locate(&self, room: &str) -> Result<Option<String>, DirectoryError> {
        self.query(redis::cmd("HGET").arg(self.key("room", room)).arg("node"))
            .await
    }

    async fn release(&self, room: &str) -> Result<(), DirectoryError> {
        self.listings.lock().remove(room);
        let _: i64 = RELEASE
            .key(self.key("room", room))
            .key(format!("{}rooms", self.prefix))
            .arg(&self.node.id)
            .arg(room)
            .arg(&self.prefix)
            .arg(&self.start)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn list(&self, after: &str, limit: usize) -> Result<(Vec<RoomEntry>, bool), DirectoryError> {
        let mut connection = self.connection.clone();
        let index = format!("{}rooms", self.prefix);
        let start = if after.is_empty() {
            "-".to_string()
        } else {
            format!("({after}")
        };
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(start)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut connection)
            .await
            .map_err(failed)?;
        let more = ids.len() > limit;
        let ids = &ids[..ids.len().min(limit)];
        if ids.is_empty() {
            return Ok((Vec::new(), more));
        }
        // Their leases lapsed: forget them (a claim adds a room back).
        let page = self.entries(ids, &index).await?;
        Ok((page, more))
    }

    async fn open_room_ids(
        &self,
        room_type: &str,
        filters: &Metadata,
        count: usize,
    ) -> Result<Vec<String>, DirectoryError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let open = self.key("open", room_type);
        if filters.is_empty() {
            return self
                .query(redis::cmd("ZRANGE").arg(&open).arg(0).arg(count - 1).arg("REV"))
                .await;
        }
        let mut invocation = OPEN_MATCHING.key(open);
        (invocation.arg(&self.prefix).arg(room_type))
            .arg(count)
            .arg(OPEN_MATCHING_BUDGET);
        for digest in entry_digests(filters).split(' ') {
            invocation.arg(digest);
        }
        invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)
    }

    async fn open_room_entries(&self, room_type: &str, ids: &[String]) -> Result<Vec<RoomEntry>, DirectoryError> {
        // Lapsed rooms (their node died) leave the set as quick joins meet them.
        // An id reused by a room of another type may linger in this set until renewed.
        let entries = self.entries(ids, &self.key("open", room_type)).await?;
        Ok((entries.into_iter())
            .filter(|r| r.is_open() && r.room_type == room_type)
            .collect())
    }

    async fn node_url(&self, node: &str) -> Result<Option<String>, DirectoryError> {
        self.query(redis::cmd("GET").arg(self.key("node", node))).await
    }

    async fn node_loads(&self) -> Result<Vec<(Node, u64)>, DirectoryError> {
        let loads: Vec<(String, String, u64)> = NODE_LOADS
            .key(format!("{}load", self.prefix))
            .arg(&self.prefix)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(failed)?;
        Ok(loads
            .into_iter()
            .map(|(id, url, load)| (Node { id, url }, load))
            .collect())
    }

    async fn count_placement(&self, node: &str) -> Result<(), DirectoryError> {
        // XX: a node that left the index (dead, or stopping) is not brought back.
        redis::cmd("ZADD")
            .arg(format!("{}load", self.prefix))
            .arg("XX")
            .arg("INCR")
            .arg(1)
            .arg(node)
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(failed)
    }
}

/// Ids a sweep reads per round trip (`ZSCAN`'s hint).
const SWEEP_CHUNK: usize = 256;

impl RedisDirectory {
    /// Forgets the ids in the room indexes (`rooms`, and for each of `room_types` its
    /// `open:<type>` and entry sets, see `OPEN_LUA`) whose entry lapsed: the rooms of
    /// nodes that died, which no release or close removed, and which listings and
    /// quick joins meet only when they read that far; an entry set left empty leaves
    /// `open-entries:<type>`. One node sweeps per `every` (the first to ask); the
    /// others return at once. Returns the ids forgotten.
    pub async fn sweep(&self, room_types: &[impl AsRef<str>], every: Duration) -> Result<u64, DirectoryError> {
        let mut connection = self.connection.clone();
        let ours: Option<String> = redis::cmd("SET")
            .arg(format!("{}sweep", self.prefix))
            .arg(&self.node.id)
            .arg("NX")
            .arg("PX")
            .arg(every.as_millis() as u64)
            .query_async(&mut connection)
            .await
            .map_err(failed)?;
        if ours.is_none() {
            return Ok(0);
        }
        let mut forgotten = self.prune_index(&format!("{}rooms", self.prefix)).await?;
        for room_type in room_types {
            let room_type = room_type.as_ref();
            forgotten += self.prune_index(&self.key("open", room_type)).await?;
            let registry = self.key("open-entries", room_type);
            let mut cursor = 0u64;
            loop {
                let (next, digests) = self.scan_page("SSCAN", &registry, cursor).await?;
                let mut rest = &digests[..];
                while let Some(first) = rest.first() {
                    let mut invocation = PRUNE_ENTRY_SETS.key(&registry);
                    (invocation.arg(&self.prefix).arg(room_type))
                        .arg(PRUNE_ENTRY_BUDGET)
                        .arg(rest);
                    let (removed, mut done): (u64, usize) =
                        invocation.invoke_async(&mut connection).await.map_err(failed)?;
                    forgotten += removed;
                    if done == 0 {
                        // A set of more ids than a call looks at: a page at a time.
                        let set = format!("{}open-entry:{first}:{room_type}", self.prefix);
                        forgotten += self.prune_index(&set).await?;
                        let mut forget = FORGET_EMPTY_ENTRY.key(&set);
                        forget.key(&registry).arg(first);
                        let _: i64 = forget.invoke_async(&mut connection).await.map_err(failed)?;
                        done = 1;
                    }
                    rest = &rest[done..];
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(forgotten)
    }

    /// One page of `SSCAN` or `ZSCAN` (`command`) of `key` from `cursor`: the next
    /// cursor (0: done) and what the page holds.
    async fn scan_page(&self, command: &str, key: &str, cursor: u64) -> Result<(u64, Vec<String>), DirectoryError> {
        self.query(redis::cmd(command).arg(key).arg(cursor).arg("COUNT").arg(SWEEP_CHUNK))
            .await
    }

    /// Forgets the ids of `index` (a sorted set of room ids) whose entry lapsed, a
    /// `ZSCAN` round trip's worth at a time; returns how many.
    async fn prune_index(&self, index: &str) -> Result<u64, DirectoryError> {
        let mut connection = self.connection.clone();
        let mut forgotten = 0;
        let mut cursor = 0u64;
        loop {
            let (next, scanned) = self.scan_page("ZSCAN", index, cursor).await?;
            // Member, score, member, score…
            let ids: Vec<&String> = scanned.iter().step_by(2).collect();
            if !ids.is_empty() {
                let mut invocation = PRUNE.key(index);
                for id in ids {
                    invocation.key(self.key("room", id)).arg(id);
                }
                let removed: u64 = invocation.invoke_async(&mut connection).await.map_err(failed)?;
                forgotten += removed;
            }
            if next == 0 {
                return Ok(forgotten);
            }
            cursor = next;
        }
    }

    /// The entries of the rooms `ids`, in that order; the ids whose entry lapsed are
    /// dropped from `index` (the sorted set they came from).
    async fn entries(&self, ids: &[String], index: &str) -> Result<Vec<RoomEntry>, DirectoryError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.key("room", id));
        }
        let hashes: Vec<std::collections::HashMap<String, Vec<u8>>> =
            pipe.query_async(&mut connection).await.map_err(failed)?;
        let mut entries = Vec::with_capacity(ids.len());
        let mut lapsed = Vec::new();
        for (id, hash) in ids.iter().zip(hashes) {
            let field =
                |name: &str| String::from_utf8_lossy(hash.get(name).map_or(&[][..], Vec::as_slice)).into_owned();
            let listing = hash.get("listing").and_then(|b| proto::Listing::decode(&b[..]).ok());
            match hash.get("node") {
                None => lapsed.push(id.clone()),
                Some(_) => entries.push(RoomEntry {
                    room: id.clone(),
                    room_type: field("type"),
                    node: field("node"),
                    members: field("members").parse().unwrap_or(0),
                    max_members: field("max").parse().unwrap_or(0),
                    listing: listing.as_ref().map(ListingState::from_proto).unwrap_or_default(),
                    banned: hash.get("bans").map(|b| digests(b)).unwrap_or_default(),
                    unsettled_keys: Default::default(),
                }),
            }
        }
        if !lapsed.is_empty() {
            let mut invocation = PRUNE.key(index);
            for id in &lapsed {
                invocation.key(self.key("room", id)).arg(id);
            }
            let _: i64 = invocation.invoke_async(&mut connection).await.map_err(failed)?;
        }
        Ok(entries)
    }
}
