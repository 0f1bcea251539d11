//! Users the game's backend banned from a room (`DELETE /rooms/{room}/users/{user}
//! ?ban_secs=N`), and until when. The room's thread writes them; quick joins read them
//! (through the room's `RoomShared`) to pass over a room that would refuse the user.
//! Times are µs since the Unix epoch, passed in (nothing here reads a clock).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::proto;

/// The most users a room keeps banned: a ban beyond it replaces the one that ends
/// soonest. (With user ids of up to 256 bytes, at most 70 KB of a checkpoint's
/// default 1 MiB.)
pub const MAX_BANS: usize = 256;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Bans {
    until_us: Mutex<FxHashMap<Arc<str>, u64>>,
}

impl Bans {
    /// The bans a checkpoint holds (at most [`MAX_BANS`] of them).
    pub fn from_proto(bans: &[proto::RoomBan]) -> Self {
        let bans = bans.iter().take(MAX_BANS);
        let until_us = bans.map(|ban| (ban.user_id.as_str().into(), ban.until_us)).collect();
        Self {
            until_us: Mutex::new(until_us),
        }
    }

    /// The bans still on at `now_us`, for a checkpoint.
    pub fn to_proto(&self, now_us: u64) -> Vec<proto::RoomBan> {
        (self.until_us.lock().iter())
            .filter(|&(_, &until_us)| until_us > now_us)
            .map(|(user, &until_us)| proto::RoomBan {
                user_id: user.to_string(),
                until_us,
            })
            .collect()
    }

    /// Bans `user_id` for `secs` from `now_us`; 0 lifts its ban. Beyond [`MAX_BANS`],
    /// the bans over by `now_us` go, then the one that ends soonest, which may be this
    /// one: then it is not kept, and `false` says so (a short ban never pushes out a
    /// longer one).
    pub fn set(&self, user_id: &str, secs: u32, now_us: u64) -> bool {
        let mut bans = self.until_us.lock();
        if secs == 0 {
            bans.remove(user_id);
            return true;
        }
        let until_us = now_us + u64::from(secs) * 1_000_000;
        if bans.len() >= MAX_BANS && !bans.contains_key(user_id) {
            bans.retain(|_, &mut until_us| until_us > now_us);
            if bans.len() >= MAX_BANS {
                let soonest = (bans.iter()).min_by_key(|(_, until)| **until);
                match soonest.map(|(user, &until)| (user.clone(), until)) {
                    Some((_, soonest)) if soonest >= until_us => return false,
                    Some((user, _)) => {
                        bans.remove(&user);
                    }
                    None => {}
                }
            }
        }
        bans.insert(user_id.into(), until_us);
        true
    }

    /// How long (µs) `user_id` stays banned after `now_us`, if it is.
    pub fn remaining_us(&self, user_id: &str, now_us: u64) -> Option<u64> {
        let until_us = *self.until_us.lock().get(user_id)?;
        (until_us > now_us).then(|| until_us - now_us)
    }

    /// The [`user_digest`]s of the users banned at `now_us`, in ascending order: what
    /// a cluster's room directory lists, so that a quick join on another node passes
    /// over a room that would refuse its user.
    pub fn digests(&self, now_us: u64) -> Vec<u64> {
        let mut digests: Vec<u64> = (self.until_us.lock().iter())
            .filter(|&(_, &until_us)| until_us > now_us)
            .map(|(user, _)| user_digest(user))
            .collect();
        digests.sort_unstable();
        digests
    }

    /// Feeds the bans, in a stable order, to `hasher` (a checkpoint's fingerprint).
    pub fn hash_into(&self, hasher: &mut impl Hasher) {
        let bans = self.until_us.lock();
        let mut sorted: Vec<_> = bans.iter().collect();
        sorted.sort_unstable();
        sorted.hash(hasher);
    }
}

/// A user id as the room directory names a banned user: the first 8 bytes of its
/// SHA-256, big-endian. Stable across builds and nodes; two users sharing one (a
/// chance of about n²/2⁶⁵) only make a quick join pass over a room one of them is
/// banned from.
pub fn user_digest(user_id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(user_id.as_bytes());
    u64::from_be_bytes(hash[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_name_the_users_banned_now() {
        let bans = Bans::default();
        bans.set("ann", 10, 0);
        bans.set("bob", 20, 0);
        let mut both = vec![user_digest("ann"), user_digest("bob")];
        both.sort_unstable();
        assert_eq!(bans.digests(5_000_000), both);
        assert_eq!(bans.digests(15_000_000), [user_digest("bob")], "ann's ban is over");
        bans.set("bob", 0, 15_000_000);
        assert_eq!(bans.digests(15_000_000), Vec::<u64>::new(), "lifted");
    }

    #[test]
    fn beyond_the_cap_the_ban_ending_soonest_goes_even_a_new_one() {
        let bans = Bans::default();
        for i in 0..MAX_BANS {
            assert!(bans.set(&format!("long{i}"), 1_000 + i as u32, 0));
        }
        assert!(!bans.set("short", 5, 0), "shorter than every ban kept");
        assert_eq!(bans.remaining_us("short", 0), None);
        assert_eq!(bans.remaining_us("long0", 0), Some(1_000_000_000), "kept");
        assert!(bans.set("longer", 2_000, 0));
        assert_eq!(bans.remaining_us("long0", 0), None, "the soonest to end went");
        assert!(bans.remaining_us("longer", 0).is_some());
        // Bans that are over make room first.
        assert!(bans.set("later", 5, 1_001 * 1_000_000));
        assert!(bans.remaining_us("long2", 1_001 * 1_000_000).is_some());
    }

    #[test]
    fn a_users_digest_is_the_head_of_its_sha256() {
        // SHA-256("ann") = 49915e0d 7d4b402e …
        assert_eq!(user_digest("ann"), 0x4991_5e0d_7d4b_402e);
        assert_ne!(user_digest("ann"), user_digest("Ann"));
    }
}
