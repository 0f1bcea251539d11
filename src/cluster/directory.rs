//! The room directory: which node owns each room, where clients reach that node, and
//! which rooms are open with how many members.
//!
//! A room lives on exactly one node. Opening a room that no node owns *claims* it: an
//! atomic take of a lease that the owner renews (with its member count) every third
//! of the lease period. A node that stops renewing (it died, or lost its connection
//! to the directory) loses its rooms one lease period later, and the next claim takes
//! them; listings show a room only while its lease lives, so they are never stale by
//! more than one lease period.
//!
//! [`MemoryDirectory`] is the directory of one process (and the reference the Redis
//! directory is tested against); [`super::redis_directory::RedisDirectory`] is the cluster's.
//! Both pass the same checks (`tickrelay_testkit::directory`, run by `tests/relay/cluster.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::engine::listing::{ListingState, Metadata};
use crate::engine::room::user_digest;
use crate::proto;
use crate::session::directory::Claim;

/// A node of the cluster, as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node's id (`[cluster] node_id`).
    pub id: String,
    /// The URL clients connect to (`[cluster] public_url`).
    pub url: String,
}

/// A room as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEntry {
    /// The room id.
    pub room: String,
    /// Its room type.
    pub room_type: String,
    /// The owning node's id.
    pub node: String,
    /// Members at the owner's last renewal.
    pub members: u32,
    /// Its member cap.
    pub max_members: u32,
    /// Its listing (metadata, locked, private) at the owner's last renewal.
    pub listing: ListingState,
    /// The users it banned at the owner's last renewal, as ascending
    /// [`user_digest`]s.
    pub banned: Vec<u64>,
    /// The metadata keys whose values changed since the owner's renewal before: the
    /// room is not found by quick joins filtering on them until they hold through a
    /// renewal period (so that a room whose metadata matches but for the moments of
    /// its renewals is not sent quick joins it would refuse).
    pub unsettled_keys: BTreeSet<String>,
}

impl RoomEntry {
    /// Whether a quick join may pick the room: not locked, not private, with a free
    /// seat (as of the owner's last renewal).
    pub fn is_open(&self) -> bool {
        !self.listing.locked && !self.listing.private && self.members < self.max_members
    }

    /// Whether quick joins with these filters find the room: its metadata holds each,
    /// none of them on an unsettled key.
    pub fn found_by(&self, filters: &Metadata) -> bool {
        self.listing.matches(filters) && filters.keys().all(|key| !self.unsettled_keys.contains(key))
    }

    /// The metadata entries quick joins find the room by: those on settled keys.
    pub fn indexed_metadata(&self) -> Metadata {
        (self.listing.metadata.iter())
            .filter(|(key, _)| !self.unsettled_keys.contains(*key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Whether the room banned `user_id` (as of the owner's last renewal).
    pub fn bans(&self, user_id: &str) -> bool {
        self.banned.binary_search(&user_digest(user_id)).is_ok()
    }

    /// The room as listed to clients.
    pub fn info(&self) -> proto::RoomInfo {
        proto::RoomInfo {
            room: self.room.clone(),
            room_type: self.room_type.clone(),
            members: self.members,
            max_members: self.max_members,
            metadata: self.listing.metadata.clone(),
            locked: self.listing.locked,
            owner: self.listing.owner,
        }
    }
}

/// The directory could not be reached or answered nonsense: what needs it is refused
/// (with a typed error) until it comes back. A full lease after the node's last
/// successful renewal, another node may have taken its rooms. The relay keeps serving
/// its rooms meanwhile (players on a node cut off from Redis but not from them keep
/// playing); when the directory answers again, a room another node took is closed here
/// (its members join it again there), and checkpoints of rooms this node no longer
/// holds are not written. During such a partition two nodes can run the same room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("room directory unavailable: {0}")]
pub struct DirectoryError(pub String);

/// What a node does with the directory.
pub trait Directory: Send + Sync {
    /// Takes the room for this node unless another node holds its lease. A claim of
    /// a room this node holds already only extends its lease (its entry is the
    /// renewals' to keep).
    fn claim(&self, room: &RoomEntry) -> impl Future<Output = Result<Claim, DirectoryError>> + Send;

    /// [`Directory::claim`] of a room that runs on this node (its lease lapsed):
    /// taken back at once unless another node holds it, never [`Claim::Settling`].
    fn retake(&self, room: &RoomEntry) -> impl Future<Output = Result<Claim, DirectoryError>> + Send {
        self.claim(room)
    }

    /// Renews this node's own lease (its URL) and the leases of `rooms`, with their
    /// member counts; returns the rooms whose lease this node no longer holds (it
    /// lapsed, whether or not another node has taken the room since): their members
    /// must go.
    fn renew(&self, rooms: &[RoomEntry]) -> impl Future<Output = Result<Vec<String>, DirectoryError>> + Send;

    /// [`Directory::renew`] of some of the node's rooms only (one just restored, or
    /// a stopping node's): the node's load, which counts all its rooms' members (and
    /// which a stopping node has withdrawn), is left as it is.
    fn renew_held(&self, rooms: &[RoomEntry]) -> impl Future<Output = Result<Vec<String>, DirectoryError>> + Send {
        self.renew(rooms)
    }

    /// The node holding the room's lease, if any (never takes it).
    fn locate(&self, room: &str) -> impl Future<Output = Result<Option<String>, DirectoryError>> + Send;

    /// Gives the room up (it closed, or the node stops), if this node holds it.
    fn release(&self, room: &str) -> impl Future<Output = Result<(), DirectoryError>> + Send;

    /// One page of the open rooms in id order: at most `limit` whose ids sort after
    /// `after`, and whether more may follow.
    fn list(
        &self,
        after: &str,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<RoomEntry>, bool), DirectoryError>> + Send;

    /// Rooms of `room_type` that were open ([`RoomEntry::is_open`]) at their owners'
    /// last renewals, fullest first: those among the `count` fullest that are still
    /// open.
    fn open_rooms(
        &self,
        room_type: &str,
        count: usize,
    ) -> impl Future<Output = Result<Vec<RoomEntry>, DirectoryError>> + Send {
        async move {
            let ids = self.open_room_ids(room_type, &Metadata::new(), count).await?;
            self.open_room_entries(room_type, &ids).await
        }
    }

    /// The ids of the `count` fullest rooms of `room_type` that were open at their
    /// owners' last renewals, fullest first, whose metadata held every entry of
    /// `filters` (in Redis: entries with the same digests; see
    /// [`super::redis_directory::entry_digests`]). Ids are small: read in one round
    /// trip, their entries a few at a time with [`Directory::open_room_entries`].
    fn open_room_ids(
        &self,
        room_type: &str,
        filters: &Metadata,
        count: usize,
    ) -> impl Future<Output = Result<Vec<String>, DirectoryError>> + Send;

    /// The entries of the rooms `ids` of `room_type` still open, in that order.
    fn open_room_entries(
        &self,
        room_type: &str,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<RoomEntry>, DirectoryError>> + Send;

    /// Where the node's clients connect, while its lease lives.
    fn node_url(&self, node: &str) -> impl Future<Output = Result<Option<String>, DirectoryError>> + Send;

    /// Every live node (its own lease unexpired) with the members of its rooms at its
    /// last renewal, fewest first.
    fn node_loads(&self) -> impl Future<Output = Result<Vec<(Node, u64)>, DirectoryError>> + Send;

    /// Counts one member more on a live node's load until its next renewal: a room
    /// was just placed there (its first member is on the way), so that the next
    /// placements, from any node, see it before that node renews.
    fn count_placement(&self, node: &str) -> impl Future<Output = Result<(), DirectoryError>> + Send;
}

/// A lease, in the memory directory.
#[derive(Debug, Clone)]
struct Lease<T> {
    value: T,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Leases {
    rooms: BTreeMap<String, Lease<RoomEntry>>,
    nodes: BTreeMap<String, Lease<String>>,
    /// Members of each node's rooms at its last renewal.
    loads: BTreeMap<String, u64>,
}

/// The directory of one process, on a clock the caller gives (a manual one in
/// tests). Several handles (one per simulated node) share it through
/// [`MemoryDirectory::handle`].
#[derive(Clone)]
pub struct MemoryDirectory {
    node: Node,
    lease: Duration,
    clock: Arc<dyn Fn() -> Instant + Send + Sync>,
    leases: Arc<Mutex<Leases>>,
}

impl MemoryDirectory {
    /// An empty directory seen from `node`, with leases of `lease`.
    pub fn new(node: Node, lease: Duration, clock: Arc<dyn Fn() -> Instant + Send + Sync>) -> Self {
        Self {
            node,
            lease,
            clock,
            leases: Arc::default(),
        }
    }

    /// The same directory seen from another node.
    pub fn handle(&self, node: Node) -> Self {
        Self { node, ..self.clone() }
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }
}

impl Directory for MemoryDirectory {
    async fn claim(&self, room: &RoomEntry) -> Result<Claim, DirectoryError> {
        let now = self.now();
        let mut leases = self.leases.lock();
        if let Some(lease) = leases.rooms.get(&room.room)
            && lease.expires > now
            && lease.value.node != self.node.id
        {
            let node = lease.value.node.clone();
            let url = (leases.nodes.get(&node))
                .filter(|l| l.expires > now)
                .map(|l| l.value.clone());
            return Ok(Claim::Theirs { node, url });
        }
        let expires = now + self.lease;
        match leases.rooms.get_mut(&room.room).filter(|l| l.expires > now) {
            // Ours already: its entry is the renewals' to keep.
            Some(lease) => lease.expires = expires,
            None => {
                let value = RoomEntry {
                    node: self.node.id.clone(),
                    members: 0,
                    ..room.clone()
                };
                leases.rooms.insert(room.room.clone(), Lease { value, expires });
            }
        }
        let url = self.node.url.clone();
        leases.nodes.insert(self.node.id.clone(), Lease { value: url, expires });
        Ok(Claim::Ours)
    }

    async fn renew(&self, rooms: &[RoomEntry]) -> Result<Vec<String>, DirectoryError> {
        let now = self.now();
        let expires = now + self.lease;
        let mut leases = self.leases.lock();
        let url = self.node.url.clone();
        leases.nodes.insert(self.node.id.clone(), Lease { value: url, expires });
        let (mut lost, mut load) = (Vec::new(), 0);
        for room in rooms {
            match leases.rooms.get_mut(&room.room) {
                Some(lease) if lease.value.node == self.node.id && lease.expires > now => {
                    lease.value.members = room.members;
                    lease.value.listing = room.listing.clone();
                    lease.value.banned.clone_from(&room.banned);
                    lease.expires = expires;
                    load += u64::from(room.members);
                }
                _ => lost.push(room.room.clone()),
            }
        }
        leases.loads.insert(self.node.id.clone(), load);
        Ok(lost)
    }

    async fn locate(&self, room: &str) -> Result<Option<String>, DirectoryError> {
        let now = self.now();
        let leases = self.leases.lock();
        let lease = leases.rooms.get(room).filter(|l| l.expires > now);
        Ok(lease.map(|l| l.value.node.clone()))
    }

    async fn release(&self, room: &str) -> Result<(), DirectoryError> {
        let mut leases = self.leases.lock();
        if leases.rooms.get(room).is_some_and(|l| l.value.node == self.node.id) {
            leases.rooms.remove(room);
        }
        Ok(())
    }

    async fn list(&self, after: &str, limit: usize) -> Result<(Vec<RoomEntry>, bool), DirectoryError> {
        let now = self.now();
        let mut leases = self.leases.lock();
        leases.rooms.retain(|_, l| l.expires > now);
        let mut page = (leases.rooms.range::<str, _>((Bound::Excluded(after), Bound::Unbounded)))
            .map(|(_, l)| l.value.clone())
            .take(limit + 1)
            .collect::<Vec<_>>();
        let more = page.len() > limit;
        page.truncate(limit);
        Ok((page, more))
    }

    async fn open_room_ids(
        &self,
        room_type: &str,
        filters: &Metadata,
        count: usize,
    ) -> Result<Vec<String>, DirectoryError> {
        let now = self.now();
        let leases = self.leases.lock();
        let mut open: Vec<&RoomEntry> = (leases.rooms.values())
            .filter(|l| l.expires > now && l.value.room_type == room_type && l.value.is_open())
            .filter(|l| l.value.found_by(filters))
            .map(|l| &l.value)
            .collect();
        open.sort_by_key(|r| std::cmp::Reverse(r.members));
        Ok(open.into_iter().take(count).map(|r| r.room.clone()).collect())
    }

    async fn open_room_entries(&self, room_type: &str, ids: &[String]) -> Result<Vec<RoomEntry>, DirectoryError> {
        let now = self.now();
        let leases = self.leases.lock();
        Ok((ids.iter())
            .filter_map(|id| leases.rooms.get(id))
            .filter(|l| l.expires > now && l.value.room_type == room_type && l.value.is_open())
            .map(|l| l.value.clone())
            .collect())
    }

    async fn node_url(&self, node: &str) -> Result<Option<String>, DirectoryError> {
        let now = self.now();
        let leases = self.leases.lock();
        Ok(leases
            .nodes
            .get(node)
            .filter(|l| l.expires > now)
            .map(|l| l.value.clone()))
    }

    async fn node_loads(&self) -> Result<Vec<(Node, u64)>, DirectoryError> {
        let now = self.now();
        let leases = self.leases.lock();
        // A node that has not renewed yet is not listed (as in Redis).
        let mut loads: Vec<(Node, u64)> = (leases.nodes.iter())
            .filter(|(_, l)| l.expires > now)
            .filter_map(|(id, l)| {
                let node = Node {
                    id: id.clone(),
                    url: l.value.clone(),
                };
                Some((node, *leases.loads.get(id)?))
            })
            .collect();
        loads.sort_by_key(|(_, load)| *load);
        Ok(loads)
    }

    async fn count_placement(&self, node: &str) -> Result<(), DirectoryError> {
        if let Some(load) = self.leases.lock().loads.get_mut(node) {
            *load += 1;
        }
        Ok(())
    }
}
