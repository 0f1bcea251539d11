//! What a room shows in listings and quick joins: its metadata, whether it is locked
//! or private, and who may change them (its owner: the member whose join created it,
//! until ownership passes on; the room's simulation may too). Shared between the room's simulation thread, the
//! room directory and the sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::proto::{self, ErrorCode, RoomLock};
use crate::state::MemberId;

/// Metadata entries a room holds at most.
pub const MAX_METADATA_ENTRIES: usize = 16;

/// Changed metadata keys a listing remembers between two takes, at most (see
/// `Listing::take_changed_keys`).
const MAX_CHANGED_KEYS: usize = 2 * MAX_METADATA_ENTRIES;
/// The longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 64;
/// The longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 256;

/// The largest `RoomUpdated` (as framed): the metadata at its limits (with each
/// entry's map framing) and a room id at its longest.
pub const MAX_ROOM_UPDATED_BYTES: usize = MAX_METADATA_ENTRIES
    * (MAX_METADATA_KEY_BYTES + MAX_METADATA_VALUE_BYTES + 8)
    + crate::engine::room::MAX_ROOM_ID_BYTES
    + 16;

/// The answer (`NOT_OWNER`) to an `UpdateRoom` from a member that does not own the room.
pub const NOT_OWNER: &str = "only the room's owner may change it (see Joined.owner and presence OWNER)";

/// Metadata as rooms hold it (in key order, as it is listed).
pub type Metadata = BTreeMap<String, String>;

/// Why metadata was refused (answered `BAD_REQUEST` with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// More than [`MAX_METADATA_ENTRIES`] entries.
    #[error("a room holds at most {MAX_METADATA_ENTRIES} metadata entries")]
    TooMany,
    /// A key empty, over [`MAX_METADATA_KEY_BYTES`] or holding a control character.
    #[error("metadata keys must be 1-{MAX_METADATA_KEY_BYTES} bytes, without control characters")]
    Key,
    /// A value over [`MAX_METADATA_VALUE_BYTES`] or holding a control character.
    #[error("metadata values must be at most {MAX_METADATA_VALUE_BYTES} bytes, without control characters")]
    Value,
}

/// A room's listing (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingState {
    /// Listed with the room and matched by filters.
    pub metadata: Metadata,
    /// Listed, joinable by id, never picked by a quick join.
    pub locked: bool,
    /// Never listed, never picked by a quick join.
    pub private: bool,
    /// The member whose join created the room, or the one ownership passed to
    /// when its owner left or was away (0: none).
    pub owner: MemberId,
}

impl ListingState {
    /// Neither private nor locked: a quick join may pick the room.
    fn pickable(&self) -> bool {
        !self.private && !self.locked
    }

    /// A room's listing of this metadata, neither locked nor private, without an
    /// owner (a room the configuration keeps open).
    pub fn listed_as(metadata: &Metadata) -> Self {
        Self {
            metadata: metadata.clone(),
            ..Self::default()
        }
    }

    /// A new room's listing, from the creating join's options (`private` honoured
    /// only when `allow_private`: quick joins create public rooms).
    pub fn created(options: Option<&proto::RoomOptions>, owner: MemberId, allow_private: bool) -> Self {
        Self {
            metadata: options.map(|o| o.metadata.clone()).unwrap_or_default(),
            locked: false,
            private: allow_private && options.is_some_and(|o| o.private),
            owner,
        }
    }

    /// Merges `changes` into the metadata (an empty value removes its key), all or
    /// nothing.
    pub fn merge(&mut self, changes: &Metadata) -> Result<(), MetadataError> {
        let mut merged = self.metadata.clone();
        for (key, value) in changes {
            if value.is_empty() {
                merged.remove(key);
            } else {
                merged.insert(key.clone(), value.clone());
            }
        }
        check(&merged)?;
        self.metadata = merged;
        Ok(())
    }

    /// Applies `member`'s `UpdateRoom` (metadata and lock; its `owner`, a handover,
    /// is the room's to check), all or nothing: refused unless `member` owns the room.
    pub fn apply_update(&mut self, member: MemberId, update: &proto::UpdateRoom) -> Result<(), (ErrorCode, String)> {
        if self.owner != member {
            return Err((ErrorCode::NotOwner, NOT_OWNER.into()));
        }
        let Ok(lock) = RoomLock::try_from(update.lock) else {
            return Err((ErrorCode::BadRequest, "unknown lock value".into()));
        };
        self.merge(&update.metadata)
            .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?;
        self.set_lock(lock);
        Ok(())
    }

    /// Applies an `UpdateRoom`'s lock change.
    pub fn set_lock(&mut self, lock: RoomLock) {
        match lock {
            RoomLock::Unchanged => {}
            RoomLock::Locked => self.locked = true,
            RoomLock::Unlocked => self.locked = false,
        }
    }

    /// A digest of what members are told of the listing (`RoomUpdated`): the metadata
    /// and the lock.
    pub(crate) fn told_digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        (&self.metadata, self.locked).hash(&mut hasher);
        hasher.finish()
    }

    /// Whether the metadata holds every entry of `filters`.
    pub fn matches(&self, filters: &Metadata) -> bool {
        filters.iter().all(|(k, v)| self.metadata.get(k) == Some(v))
    }

    /// As checkpointed.
    pub fn to_proto(&self) -> proto::Listing {
        proto::Listing {
            metadata: self.metadata.clone(),
            locked: self.locked,
            private: self.private,
            owner: self.owner,
        }
    }

    /// From a checkpoint.
    pub fn from_proto(listing: &proto::Listing) -> Self {
        Self {
            metadata: listing.metadata.clone(),
            locked: listing.locked,
            private: listing.private,
            owner: listing.owner,
        }
    }
}

/// What one room adds to a `ListRooms` answer, in bytes (its `RoomInfo` and framing).
pub fn listed_bytes(room: &proto::RoomInfo) -> usize {
    use prost::Message as _;
    room.encoded_len() + 4
}

/// Checks metadata as a room would hold it: at most [`MAX_METADATA_ENTRIES`] entries,
/// keys of 1-[`MAX_METADATA_KEY_BYTES`] bytes, values of at most
/// [`MAX_METADATA_VALUE_BYTES`], neither with a control character (other clients
/// see them in listings, as they see room ids, which refuse them too).
pub fn check(metadata: &Metadata) -> Result<(), MetadataError> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(MetadataError::TooMany);
    }
    for (key, value) in metadata {
        let control = |s: &str| s.chars().any(char::is_control);
        if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES || control(key) {
            return Err(MetadataError::Key);
        }
        if value.len() > MAX_METADATA_VALUE_BYTES || control(value) {
            return Err(MetadataError::Value);
        }
    }
    Ok(())
}

/// A room's listing, shared (see the module documentation).
#[derive(Debug)]
pub struct Listing {
    state: Mutex<ListingState>,
    /// Changes of the metadata or the lock so far (the room tells its members of
    /// them: `RoomUpdated`).
    changes: AtomicU64,
    /// Neither private nor locked (see [`Listing::pickable`]).
    pickable: AtomicBool,
    /// Times `pickable` went from true to false (see [`Listing::closings`]).
    closings: AtomicU64,
    /// The metadata keys changed since [`Listing::take_changed_keys`] last took them;
    /// `None`: more than [`MAX_CHANGED_KEYS`] (then every key the metadata holds
    /// counts as changed). Bounded: only a cluster node's renewals take them, and a
    /// room whose metadata keys keep changing must not keep every name it ever had.
    changed_keys: Mutex<Option<BTreeSet<String>>>,
    /// [`entry_hash`] of each metadata entry, the first `entry_count` (see
    /// [`Listing::may_match`]).
    entries: [AtomicU64; MAX_METADATA_ENTRIES],
    /// How many of `entries` hold the metadata's ([`UNCOUNTED`]: more entries than
    /// there is room for, which only the server's own changes can set).
    entry_count: AtomicUsize,
    /// Bit `hash % 64` of each entry's hash set: most rooms that do not match are
    /// told by this one word.
    entry_bits: AtomicU64,
}

/// An `entry_count` meaning: the entries are not all in `entries`.
const UNCOUNTED: usize = usize::MAX;

/// A metadata entry's hash (keyed at random per process, so that no one chooses
/// entries that collide).
fn entry_hash(key: &str, value: &str) -> u64 {
    static KEYS: LazyLock<RandomState> = LazyLock::new(RandomState::new);
    KEYS.hash_one((key, value))
}

/// The bit of `hash` in `entry_bits`.
fn entry_bit(hash: u64) -> u64 {
    1 << (hash % 64)
}

/// What [`Listing::may_match`] looks for: the hashes of some filters' entries.
#[derive(Debug, Clone)]
pub struct Wanted {
    hashes: Vec<u64>,
    bits: u64,
}

impl Wanted {
    /// The entries of `filters`.
    pub fn of(filters: &Metadata) -> Self {
        let hashes: Vec<u64> = filters.iter().map(|(k, v)| entry_hash(k, v)).collect();
        let bits = hashes.iter().fold(0, |bits, &h| bits | entry_bit(h));
        Self { hashes, bits }
    }
}

impl Default for Listing {
    fn default() -> Self {
        Self::new(ListingState::default())
    }
}

impl Listing {
    /// An empty listing, for statics.
    pub const fn unlisted() -> Self {
        Self {
            state: Mutex::new(ListingState {
                metadata: BTreeMap::new(),
                locked: false,
                private: false,
                owner: 0,
            }),
            changes: AtomicU64::new(0),
            pickable: AtomicBool::new(true),
            closings: AtomicU64::new(0),
            changed_keys: Mutex::new(Some(BTreeSet::new())),
            entries: [const { AtomicU64::new(0) }; MAX_METADATA_ENTRIES],
            entry_count: AtomicUsize::new(0),
            entry_bits: AtomicU64::new(0),
        }
    }

    /// A listing holding `state`.
    pub fn new(state: ListingState) -> Self {
        let listing = Self {
            pickable: AtomicBool::new(state.pickable()),
            state: Mutex::new(state),
            changes: AtomicU64::new(0),
            closings: AtomicU64::new(0),
            changed_keys: Mutex::new(Some(BTreeSet::new())),
            entries: [const { AtomicU64::new(0) }; MAX_METADATA_ENTRIES],
            entry_count: AtomicUsize::new(0),
            entry_bits: AtomicU64::new(0),
        };
        listing.publish_entries(&listing.state.lock());
        listing
    }

    /// Sets `entries` to `state`'s metadata. A reader during the change may see a mix
    /// of the old and the new entries: a room whose metadata changes right then may
    /// or may not match (and [`Listing::may_match`] is only ever a first pass).
    fn publish_entries(&self, state: &ListingState) {
        if state.metadata.len() > MAX_METADATA_ENTRIES {
            self.entry_count.store(UNCOUNTED, Ordering::Release);
            self.entry_bits.store(u64::MAX, Ordering::Release);
            return;
        }
        self.entry_count.store(0, Ordering::Release);
        let mut bits = 0;
        for (slot, (key, value)) in self.entries.iter().zip(&state.metadata) {
            let hash = entry_hash(key, value);
            slot.store(hash, Ordering::Relaxed);
            bits |= entry_bit(hash);
        }
        self.entry_bits.store(bits, Ordering::Release);
        self.entry_count.store(state.metadata.len(), Ordering::Release);
    }

    /// Reads the listing.
    pub fn with<R>(&self, f: impl FnOnce(&ListingState) -> R) -> R {
        f(&self.state.lock())
    }

    /// Changes the listing (unchecked: the server's own changes), counting a change
    /// of the metadata or the lock (see [`Listing::changes`]).
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut ListingState) -> R) -> R {
        let mut state = self.state.lock();
        let told = state.told_digest();
        let before = state.metadata.clone();
        let result = f(&mut state);
        if state.told_digest() != told {
            self.changes.fetch_add(1, Ordering::Relaxed);
            self.publish_entries(&state);
            let after = &state.metadata;
            let changed = (before.keys().chain(after.keys())).filter(|&k| before.get(k) != after.get(k));
            let mut changed_keys = self.changed_keys.lock();
            if let Some(keys) = changed_keys.as_mut() {
                keys.extend(changed.cloned());
                if keys.len() > MAX_CHANGED_KEYS {
                    *changed_keys = None;
                }
            }
        }
        let was_pickable = self.pickable.swap(state.pickable(), Ordering::Relaxed);
        if was_pickable && !state.pickable() {
            self.closings.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// The metadata keys whose values changed since the last call (a room's node
    /// indexes a room in the cluster's directory under the entries it held through a
    /// whole renewal period only: so that one whose metadata matches a search but for
    /// the moments of its renewals is not sent quick joins it refuses).
    /// `None`: more changed than a listing keeps: every key counts as changed (the
    /// caller's copy of the metadata says which it holds).
    pub fn take_changed_keys(&self) -> Option<BTreeSet<String>> {
        self.changed_keys.lock().replace(BTreeSet::new())
    }

    /// How many times the room was locked (or made private) so far: a room's node
    /// tells the cluster's directory it is locked if it was at any moment since its
    /// last renewal, so that a room locked but for the moments of its renewals is
    /// never listed open.
    pub fn closings(&self) -> u64 {
        self.closings.load(Ordering::Relaxed)
    }

    /// Whether a quick join may pick the room (seats and filters permitting):
    /// neither private nor locked. Without the listing's lock, for scans of many
    /// rooms.
    pub fn pickable(&self) -> bool {
        self.pickable.load(Ordering::Relaxed)
    }

    /// Whether the metadata may hold every entry `wanted` names:
    /// `false` means it does not (but while it changes); `true` is to be checked with
    /// [`ListingState::matches`]. Without the listing's lock, for scans of many
    /// rooms.
    pub fn may_match(&self, wanted: &Wanted) -> bool {
        if self.entry_bits.load(Ordering::Acquire) & wanted.bits != wanted.bits {
            return false;
        }
        let count = self.entry_count.load(Ordering::Acquire);
        let Some(entries) = self.entries.get(..count) else {
            return true; // UNCOUNTED
        };
        wanted
            .hashes
            .iter()
            .all(|w| entries.iter().any(|e| e.load(Ordering::Relaxed) == *w))
    }

    /// How many times the metadata or the lock changed: the room tells its members
    /// when this moves.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Merges `changes` into the metadata (an empty value removes its key), all or
    /// nothing: refused when the result would break [`check`]'s limits, as a client's
    /// `UpdateRoom` is.
    pub fn merge_metadata(&self, changes: &Metadata) -> Result<(), MetadataError> {
        self.update(|l| l.merge(changes))
    }

    /// Locks the room (listed, joinable by id, never picked by a quick join) or
    /// unlocks it.
    pub fn set_locked(&self, locked: bool) {
        self.update(|l| l.locked = locked);
    }

    /// A copy of the listing.
    pub fn get(&self) -> ListingState {
        self.state.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(entries: &[(&str, &str)]) -> Metadata {
        entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn may_match_passes_every_listing_holding_the_entries_and_follows_changes() {
        let listing = Listing::new(ListingState::listed_as(&meta(&[("map", "dust"), ("mode", "ctf")])));
        let wanted = |entries| Wanted::of(&meta(entries));
        assert!(listing.may_match(&wanted(&[])));
        assert!(listing.may_match(&wanted(&[("mode", "ctf")])));
        assert!(listing.may_match(&wanted(&[("mode", "ctf"), ("map", "dust")])));
        assert!(!listing.may_match(&wanted(&[("mode", "dm")])));
        assert!(!listing.may_match(&wanted(&[("mode", "ctf"), ("map", "mill")])));
        assert!(!listing.may_match(&wanted(&[("ctf", "mode")])));
        listing.merge_metadata(&meta(&[("mode", "dm")])).unwrap();
        assert!(listing.may_match(&wanted(&[("mode", "dm"), ("map", "dust")])));
        assert!(!listing.may_match(&wanted(&[("mode", "ctf")])));
        // More entries than it holds hashes of (only the server's own changes can set
        // them): every filter passes, to be checked exactly.
        let many: Metadata = (0..=MAX_METADATA_ENTRIES)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        listing.update(|l| l.metadata = many);
        assert!(listing.may_match(&wanted(&[("mode", "ctf")])));
    }

    #[test]
    fn an_update_by_another_than_the_owner_is_refused_first() {
        let mut listing = ListingState {
            owner: 1,
            ..ListingState::default()
        };
        let bad_lock = proto::UpdateRoom {
            lock: 99,
            ..Default::default()
        };
        assert_eq!(
            listing.apply_update(2, &bad_lock).map_err(|e| e.0),
            Err(ErrorCode::NotOwner)
        );
        assert_eq!(
            listing.apply_update(1, &bad_lock).map_err(|e| e.0),
            Err(ErrorCode::BadRequest)
        );
    }

    #[test]
    fn merge_sets_and_removes_all_or_nothing() {
        let mut listing = ListingState {
            metadata: meta(&[("mode", "ctf"), ("map", "dust")]),
            ..ListingState::default()
        };
        listing.merge(&meta(&[("map", ""), ("region", "eu")])).unwrap();
        assert_eq!(listing.metadata, meta(&[("mode", "ctf"), ("region", "eu")]));
        let too_long = "x".repeat(MAX_METADATA_VALUE_BYTES + 1);
        assert_eq!(
            listing.merge(&meta(&[("mode", "dm"), ("v", &too_long)])),
            Err(MetadataError::Value)
        );
        assert_eq!(
            listing.metadata,
            meta(&[("mode", "ctf"), ("region", "eu")]),
            "nothing applied"
        );
    }

    #[test]
    fn limits_count_entries_keys_and_values() {
        let many: Metadata = (0..=MAX_METADATA_ENTRIES)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert_eq!(check(&many), Err(MetadataError::TooMany));
        assert_eq!(check(&meta(&[("", "v")])), Err(MetadataError::Key));
        assert_eq!(check(&meta(&[(&"k".repeat(65), "v")])), Err(MetadataError::Key));
        assert_eq!(check(&meta(&[(&"k".repeat(64), &"v".repeat(256))])), Ok(()));
        assert_eq!(check(&meta(&[("a\nb", "v")])), Err(MetadataError::Key));
        assert_eq!(check(&meta(&[("k", "v\u{0}")])), Err(MetadataError::Value));
        assert_eq!(check(&meta(&[("ключ", "valeur é")])), Ok(()));
        // A removal brings a full room back under the cap.
        let mut full = ListingState {
            metadata: many
                .iter()
                .take(MAX_METADATA_ENTRIES)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..ListingState::default()
        };
        assert_eq!(full.merge(&meta(&[("k0", ""), ("new", "v")])), Ok(()));
    }

    #[test]
    fn a_simulations_changes_are_checked_like_an_owners() {
        let listing = Listing::new(ListingState::default());
        listing.merge_metadata(&meta(&[("map", "canyon")])).unwrap();
        assert_eq!(listing.merge_metadata(&meta(&[("k\n", "v")])), Err(MetadataError::Key));
        listing.set_locked(true);
        let state = listing.get();
        assert_eq!(
            state.metadata,
            meta(&[("map", "canyon")]),
            "the refused change left nothing"
        );
        assert!(state.locked);
    }

    #[test]
    fn only_changes_of_metadata_or_lock_are_counted() {
        let listing = Listing::new(ListingState::default());
        listing.merge_metadata(&meta(&[("map", "canyon")])).unwrap();
        assert_eq!(listing.changes(), 1);
        listing.merge_metadata(&meta(&[("map", "canyon")])).unwrap();
        let _ = listing.merge_metadata(&meta(&[("k\n", "v")]));
        listing.set_locked(false);
        listing.update(|l| l.owner = 7);
        assert_eq!(listing.changes(), 1, "the same values, a refusal, the owner: no change");
        listing.set_locked(true);
        listing.merge_metadata(&meta(&[("map", "")])).unwrap();
        assert_eq!(listing.changes(), 3);
    }

    #[test]
    fn closings_count_each_time_the_room_stops_being_pickable() {
        let listing = Listing::new(ListingState::default());
        listing.set_locked(false);
        assert_eq!(listing.closings(), 0);
        listing.set_locked(true);
        listing.set_locked(true);
        assert_eq!(listing.closings(), 1, "locked once");
        listing.set_locked(false);
        assert_eq!(listing.closings(), 1, "an unlock is no closing");
        listing.set_locked(true);
        assert_eq!(listing.closings(), 2);
    }

    #[test]
    fn changed_keys_are_those_whose_values_changed_since_last_taken() {
        let listing = Listing::new(ListingState::listed_as(&meta(&[("mode", "ctf"), ("map", "dust")])));
        listing.merge_metadata(&meta(&[("map", "dust")])).unwrap();
        listing.set_locked(true);
        assert!(
            listing.take_changed_keys().unwrap().is_empty(),
            "the same values, a lock"
        );
        listing
            .merge_metadata(&meta(&[("mode", "dm"), ("ready", "3")]))
            .unwrap();
        listing.merge_metadata(&meta(&[("mode", "ctf")])).unwrap();
        let keys: Vec<String> = listing.take_changed_keys().unwrap().into_iter().collect();
        assert_eq!(keys, ["mode", "ready"], "changed and back is changed");
        listing.merge_metadata(&meta(&[("ready", "")])).unwrap();
        assert_eq!(
            listing.take_changed_keys().unwrap().into_iter().collect::<Vec<_>>(),
            ["ready"],
            "removed"
        );
    }

    /// A room whose metadata keys keep changing (new names replacing old ones) keeps
    /// a bounded record of them between takes (a single node never takes them): past
    /// the bound, every key it holds counts as changed.
    #[test]
    fn changed_keys_are_bounded() {
        let listing = Listing::new(ListingState::default());
        for round in 0..1_000 {
            let previous = format!("key-{}", round);
            let next = format!("key-{}", round + 1);
            listing.merge_metadata(&meta(&[(&previous, ""), (&next, "x")])).unwrap();
            let kept = listing.changed_keys.lock().as_ref().map_or(0, BTreeSet::len);
            assert!(kept <= MAX_CHANGED_KEYS, "{kept} keys kept");
        }
        assert_eq!(listing.take_changed_keys(), None, "every key counts as changed");
        listing.merge_metadata(&meta(&[("mode", "ctf")])).unwrap();
        let keys: Vec<String> = listing.take_changed_keys().unwrap().into_iter().collect();
        assert_eq!(keys, ["mode"], "counted one by one again");
    }

    #[test]
    fn the_largest_room_updated_fits_its_bound() {
        let metadata: Metadata = (0..MAX_METADATA_ENTRIES)
            .map(|i| (format!("{i:0>64}"), "v".repeat(MAX_METADATA_VALUE_BYTES)))
            .collect();
        assert_eq!(check(&metadata), Ok(()));
        let message = crate::frame::encode_message(proto::server_message::Kind::RoomUpdated(proto::RoomUpdated {
            room: "r".repeat(crate::engine::room::MAX_ROOM_ID_BYTES),
            metadata,
            locked: true,
        }));
        assert!(message.len() <= MAX_ROOM_UPDATED_BYTES, "{} bytes", message.len());
    }

    #[test]
    fn filters_match_every_entry_exactly() {
        let listing = ListingState {
            metadata: meta(&[("mode", "ctf"), ("region", "eu")]),
            ..ListingState::default()
        };
        assert!(listing.matches(&Metadata::new()));
        assert!(listing.matches(&meta(&[("mode", "ctf")])));
        assert!(listing.matches(&meta(&[("mode", "ctf"), ("region", "eu")])));
        assert!(!listing.matches(&meta(&[("mode", "ctf"), ("region", "us")])));
        assert!(!listing.matches(&meta(&[("ranked", "1")])));
    }

    #[test]
    fn private_only_when_allowed_and_round_trips_through_a_checkpoint() {
        let options = proto::RoomOptions {
            metadata: meta(&[("mode", "ctf")]),
            private: true,
        };
        assert!(!ListingState::created(Some(&options), 7, false).private);
        let mut listing = ListingState::created(Some(&options), 7, true);
        listing.set_lock(RoomLock::Locked);
        assert_eq!(ListingState::from_proto(&listing.to_proto()), listing);
        assert!(listing.private && listing.locked && listing.owner == 7);
    }
}
