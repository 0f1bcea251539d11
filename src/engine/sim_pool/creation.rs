//! How many rooms one creator (a user, or a client's address) may open, and how
//! fast: [`CreationLimits`], counted in [`Creators`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::bucket::TokenBucket;
use crate::engine::rooms::PoolError;

/// How many rooms one creator may make: a user (with JWT), or a client's address
/// (anonymous users are one per session). Joining a room that exists is not limited.
#[derive(Debug, Clone, PartialEq)]
pub struct CreationLimits {
    /// Rooms one creator may have open at once.
    pub max_open: usize,
    /// Sustained creations per second.
    pub per_second: f64,
    /// Creations in a burst.
    pub burst: f64,
}

impl Default for CreationLimits {
    fn default() -> Self {
        Self {
            max_open: 1_000,
            per_second: 2.0,
            burst: 60.0,
        }
    }
}

/// One creator's open rooms and creation rate.
struct Creator {
    open: usize,
    bucket: TokenBucket,
}

/// Creators with rooms open, or whose creation rate has not refilled, by key: shared
/// by the pool (which counts creations) and its threads (which give a slot back when
/// a room closes).
#[derive(Default)]
pub(super) struct Creators(Mutex<HashMap<Arc<str>, Creator>>);

impl Creators {
    /// Counts a creation against `creator`'s limits, or says which one it exceeds:
    /// the key to [`release`](Self::release) the slot with.
    pub(super) fn take(&self, limits: &CreationLimits, creator: &str, now: Instant) -> Result<Arc<str>, PoolError> {
        if limits.max_open == 0 {
            // Nothing to remember per creator: none may create.
            return Err(PoolError::CreationLimit(
                "this relay lets clients create no rooms: join one it keeps open".into(),
            ));
        }
        let key: Arc<str> = creator.into();
        let mut creators = self.0.lock();
        if creators.len() > 65_536 {
            // Forget creators with no room open whose bucket has refilled.
            creators.retain(|_, c| c.open > 0 || !c.bucket.is_full(now));
        }
        let state = creators.entry(key.clone()).or_insert_with(|| Creator {
            open: 0,
            bucket: TokenBucket::new(limits.per_second, limits.burst, now),
        });
        if state.open >= limits.max_open {
            return Err(PoolError::CreationLimit(format!(
                "you have {} rooms open, the most one user or address may create; join one of them",
                state.open
            )));
        }
        if state.bucket.try_take(1.0, now).is_err() {
            return Err(PoolError::CreationLimit(format!(
                "rooms created too fast (at most {} a second after a burst of {}); try again shortly",
                limits.per_second, limits.burst
            )));
        }
        state.open += 1;
        Ok(key)
    }

    /// Gives a creator's slot back (its room closed, or was never made). The record
    /// is kept while its bucket is not full: forgotten, a creator whose rooms close at
    /// once (a game closing rooms as they empty) would start each time with a whole
    /// burst.
    pub(super) fn release(&self, key: &str) {
        let mut creators = self.0.lock();
        if let Some(c) = creators.get_mut(key) {
            c.open -= 1;
            if c.open == 0 && c.bucket.is_full(Instant::now()) {
                creators.remove(key);
            }
        }
    }

    /// Whether no creator is remembered.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }
}
