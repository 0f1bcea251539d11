//! This node's leases and records, kept alive: room leases renewed every third of a
//! lease, session records, the directory's indexes swept, rooms whose lease was lost
//! closed.

use super::*;

impl Cluster {
    /// Keeps the leases of the rooms open here until `shutdown` (by then
    /// [`Cluster::hand_off`] released them).
    pub async fn keep_leases(self: Arc<Self>, shutdown: CancellationToken) {
        self.every_third_of_a_lease(shutdown, || self.renew()).await;
    }

    /// Keeps this node's session records (see `keep_sessions`) every third of a
    /// lease until `shutdown`, or until the node stops (its hand-off leaves them to
    /// the nodes its sessions go to). A task of its own: writing many records again,
    /// or a Redis slow to answer them, must not hold up the leases.
    pub async fn keep_session_records(self: Arc<Self>, shutdown: CancellationToken) {
        let keep = || async {
            if !self.stopping.load(Ordering::Acquire) {
                self.keep_sessions().await;
            }
        };
        self.every_third_of_a_lease(shutdown, keep).await;
    }

    /// Runs `round` every third of a lease (the next one a third after the last ended,
    /// if it ran late) until `shutdown`, or until the hand-off stops the leases.
    async fn every_third_of_a_lease<F: Future<Output = ()>>(&self, shutdown: CancellationToken, round: impl Fn() -> F) {
        let mut every = tokio::time::interval(self.settings.lease / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = self.leases_stop.cancelled() => return,
                _ = every.tick() => round().await,
            }
        }
    }

    /// Every minute, until `shutdown`, forgets the listed ids of rooms whose
    /// node died (see [`RedisDirectory::sweep`]; one node of the cluster does it per
    /// period; the `open:` sets of the room types this node knows, which nodes sharing
    /// one configuration all know). A task of its own: a slow sweep must not hold up
    /// the leases.
    pub async fn sweep_indexes(self: Arc<Self>, shutdown: CancellationToken) {
        let types: Vec<String> = self.pool.config().room_types.keys().cloned().collect();
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let sweep = tokio::time::timeout(SWEEP_EVERY / 2, self.directory.sweep(&types, SWEEP_EVERY));
            let swept = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                swept = sweep => swept,
            };
            match swept {
                Ok(Ok(0)) => {}
                Ok(Ok(forgotten)) => {
                    tracing::info!(forgotten, "directory swept: ids of rooms whose node died forgotten")
                }
                Ok(Err(e)) => tracing::debug!("directory sweep failed: {e}"),
                Err(_) => tracing::debug!("directory sweep took too long; the next one goes on"),
            }
        }
    }

    /// Closes the copy of a room this node no longer holds (`message`: why, and
    /// what its members do), counted as lost.
    pub(super) fn close_lost(&self, room: &str, message: &str) {
        self.metrics.rooms_lost.inc();
        if let Some(Err(e)) = self.pool.close(room, ErrorCode::RoomClosed, message) {
            tracing::debug!(%room, "the room's close was not taken: {e}");
        }
    }

    /// One round: renews the leases of the open rooms and takes back (or closes) the
    /// ones whose lease lapsed. (The rooms that closed are dropped from the directory
    /// by their closes, see [`Cluster::write_checkpoints`].)
    async fn renew(&self) {
        let mut closings = self.renewing.lock().await;
        if self.leases_stop.is_cancelled() {
            return; // released
        }
        // What held through the whole period since the last renewal only: a room
        // locked (or made private) at that renewal or at any moment since is listed
        // locked in this one, and the metadata keys changed since are not indexed; so
        // that one locked, or not matching, but for the moments of its renewals is
        // never open to quick joins its node would refuse.
        let all = self.pool.all_rooms();
        let mut seen = HashMap::with_capacity(all.len());
        let rooms: Vec<RoomEntry> = (all.iter())
            .map(|room| {
                let mut entry = self.entry_of(room);
                let now = room.listing.closings();
                let before = closings.get(&*room.id);
                let closed = before.is_some_and(|&(then, locked)| locked || then != now);
                seen.insert(room.id.to_string(), (now, !room.listing.pickable()));
                entry.listing.locked |= closed;
                // (A room new since the last renewal was claimed as it is now.)
                let changed = room.listing.take_changed_keys();
                if before.is_some() {
                    // Too many changed to keep: every key of the metadata published.
                    entry.unsettled_keys = changed.unwrap_or_else(|| entry.listing.metadata.keys().cloned().collect());
                }
                entry
            })
            .collect();
        *closings = seen;
        if self.stopping.load(Ordering::Acquire) {
            // Held until the hand-off releases them (its last checkpoints are written
            // only while this node holds the rooms), with the node's load withdrawn,
            // and nothing taken back.
            let _ = self.call(self.directory.renew_held(&rooms)).await;
            return;
        }
        // The leases first: nothing below may delay them past their lapse.
        let renewed = self.call(self.directory.renew(&rooms)).await;
        let _ = self.call(self.bus.keep_listening()).await;
        // On failure the rooms keep running; the next round tries again.
        let Ok(lapsed) = renewed else {
            return;
        };
        if self.stopping.load(Ordering::Acquire) {
            return; // the hand-off released them
        }
        // A room that closed since it was listed above is not claimed again (its entry
        // went with it: claiming would list a room that runs nowhere).
        for room in rooms
            .iter()
            .filter(|r| lapsed.contains(&r.room) && self.pool.room(&r.room).is_some())
        {
            // (A room that closes just after this check, and whose close reaches Redis
            // before the retake, stays listed until the retaken lease lapses; a join
            // of it here meanwhile opens it empty. Releasing it here instead could drop
            // the entry of a join that claimed it again.)
            match self.call(self.directory.retake(room)).await {
                Ok(Claim::Ours) => tracing::info!(room = %room.room, "room lease had lapsed; taken back"),
                Ok(Claim::Theirs { node, .. }) => {
                    tracing::warn!(room = %room.room, owner = %node, "room lease lapsed and another node took the room; closing it here");
                    self.close_lost(&room.room, &format!("the room moved to node `{node}`; join it again"));
                }
                Ok(Claim::Superseded) => {
                    tracing::warn!(room = %room.room, "room lease lapsed and another claim took the room since; closing it here");
                    self.close_lost(&room.room, SUPERSEDED);
                }
                Ok(Claim::Settling) | Err(_) => {}
            }
        }
    }
}
