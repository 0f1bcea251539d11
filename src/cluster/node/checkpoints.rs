//! Rooms' checkpoints: written to Redis in batches, restored on another node, and the
//! hand-off of every room when this node stops.

use super::*;

impl Cluster {
    /// The room's last checkpoint, if Redis keeps a readable one; an error when
    /// Redis could not be read.
    pub(super) async fn checkpoint(&self, room: &str) -> Result<Option<proto::RoomCheckpoint>, PoolError> {
        let Some(data) = self.call(self.directory.load_checkpoint(room)).await? else {
            return Ok(None);
        };
        match proto::RoomCheckpoint::decode(&data[..]) {
            Ok(checkpoint) => Ok(Some(checkpoint)),
            Err(e) => {
                tracing::warn!(room, "room checkpoint unreadable, the room starts empty: {e}");
                Ok(None)
            }
        }
    }

    /// Opens the room here from its checkpoint. A checkpoint that cannot be restored
    /// (it does not decode, or names a room type this node does not have) is logged,
    /// and the room starts empty; a simulation that panicked restoring it, or a
    /// refusal that may pass (a simulation thread's full queue, the room limit,
    /// shutdown), refuses the join (the checkpoint stays for a later one: the room
    /// opened empty would overwrite it).
    pub(super) fn restore(&self, checkpoint: proto::RoomCheckpoint) -> Result<(), PoolError> {
        let room = checkpoint.room.as_str();
        match self.pool.restore(&checkpoint) {
            Ok(None) => {} // another join restored it a moment ago
            Ok(Some(_)) => {
                self.metrics.rooms_restored.inc();
                let age_ms = unix_micros().saturating_sub(checkpoint.time_us) / 1_000;
                let seats = checkpoint.seats.len();
                tracing::info!(
                    room,
                    tick = checkpoint.tick,
                    seats,
                    age_ms,
                    "room restored from its checkpoint"
                );
            }
            Err(
                e @ (PoolError::Busy
                | PoolError::TooManyRooms
                | PoolError::ShutDown
                | PoolError::SimulationFailed
                | PoolError::Unavailable(_)),
            ) => return Err(e),
            Err(e) => tracing::warn!(room, "room checkpoint not restored, the room starts empty: {e}"),
        }
        Ok(())
    }

    /// Writes the rooms' checkpoints to Redis as they come, until `shutdown`: one
    /// write at a time, of the latest checkpoint of each room received since the last
    /// one (so a slow or absent Redis holds at most one checkpoint per room here), and
    /// the checkpoints and entries of the rooms that closed.
    pub async fn write_checkpoints(
        self: Arc<Self>,
        mut checkpoints: mpsc::UnboundedReceiver<Checkpoint>,
        shutdown: CancellationToken,
    ) {
        let mut received = Vec::with_capacity(CHECKPOINTS_PER_WRITE);
        let mut pending = Pending::default();
        let mut writing: Option<Pin<Box<dyn Future<Output = Written> + Send>>> = None;
        // Failed closes, tried again a third of a lease later.
        let mut retry = Vec::new();
        let mut retry_at = tokio::time::Instant::now();
        loop {
            if writing.is_none() && !pending.is_empty() {
                let this = self.clone();
                let batch = std::mem::take(&mut pending);
                writing = Some(Box::pin(async move { this.write(batch).await }));
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                n = checkpoints.recv_many(&mut received, CHECKPOINTS_PER_WRITE) => {
                    if n == 0 {
                        return;
                    }
                    for checkpoint in received.drain(..) {
                        pending.add(checkpoint);
                    }
                }
                written = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                    writing = None;
                    if written.flushed > 0 {
                        self.flushed.fetch_add(written.flushed, Ordering::AcqRel);
                        self.flush.notify_waiters();
                    }
                    if retry.is_empty() {
                        retry_at = tokio::time::Instant::now() + self.settings.lease / 3;
                    }
                    retry.extend(written.failed);
                }
                () = tokio::time::sleep_until(retry_at), if !retry.is_empty() => {
                    for (room, closes) in retry.drain(..) {
                        pending.close(room, closes);
                    }
                }
            }
        }
    }

    /// Writes one batch.
    async fn write(&self, batch: Pending) -> Written {
        let mut writes = Vec::with_capacity(batch.rooms.len());
        for (room, mut checkpoint) in batch.rooms {
            let mut data = checkpoint.encode_to_vec();
            // Without the events still owed to members (a hand-off's, or a restored
            // room's kept seats') rather than not at all.
            if data.len() > self.settings.max_checkpoint_bytes && !checkpoint.pending_events.is_empty() {
                let events = std::mem::take(&mut checkpoint.pending_events).len();
                if let Some(suppressed) = DIRECTORY_LOGS.take(Instant::now()) {
                    tracing::warn!(%room, events, suppressed, "the events still owed to members make the room's checkpoint larger than [cluster] max_checkpoint_bytes; written without them");
                }
                data = checkpoint.encode_to_vec();
            }
            if data.len() > self.settings.max_checkpoint_bytes {
                self.metrics.checkpoints_skipped.inc();
                if let Some(suppressed) = DIRECTORY_LOGS.take(Instant::now()) {
                    tracing::warn!(%room, bytes = data.len(), suppressed, "room checkpoint over [cluster] max_checkpoint_bytes; not written");
                }
                continue;
            }
            writes.push((room.to_string(), data));
        }
        // A few megabytes a round trip: Redis reads a command whole (and refuses one
        // over its query buffer's limit) before the renewals queued behind it.
        let mut rest = &writes[..];
        let mut failed = false;
        while !rest.is_empty() {
            let mut bytes = 0;
            let n = (rest.iter())
                .take_while(|(_, data)| {
                    bytes += data.len();
                    bytes <= CHECKPOINT_WRITE_BYTES
                })
                .count()
                .max(1);
            let (chunk, later) = rest.split_at(n);
            rest = later;
            // After a failure the rest wait for the rooms' next checkpoints: a Redis
            // that does not answer must not hold this write up for each chunk. Those
            // rooms write their next one even if they have not changed since.
            if failed {
                self.metrics.checkpoints_skipped.inc_by(chunk.len() as u64);
                chunk.iter().for_each(|(room, _)| self.pool.checkpoint_again(room));
                continue;
            }
            let saved = self.directory.save_checkpoints(chunk, self.settings.checkpoint_ttl);
            match self.call(saved).await {
                Ok(saved) => {
                    self.metrics.checkpoints_written.inc_by(saved as u64);
                    // The others' rooms belong to another node now.
                    self.metrics.checkpoints_skipped.inc_by((chunk.len() - saved) as u64);
                }
                Err(_) => {
                    self.metrics.checkpoints_skipped.inc_by(chunk.len() as u64);
                    chunk.iter().for_each(|(room, _)| self.pool.checkpoint_again(room));
                    failed = true;
                }
            }
        }
        // A close that failed is tried again (its room is not claimed here meanwhile),
        // until the checkpoint it would drop has lapsed anyway. After one failure the
        // batch's other closes wait for the next try too: a Redis that does not
        // answer must not hold the checkpoints of live rooms up for each of them.
        let mut failed = Vec::new();
        for (room, closes) in batch.closed {
            let opened_since = closes.opened_since(self.pool.room(&room).map(|open| open.key));
            let done = opened_since || (failed.is_empty() && self.call(self.directory.close(&room)).await.is_ok());
            // (A close not tried, after an earlier failure, counts from now too.)
            let since = closes.failing_since.unwrap_or_else(Instant::now);
            if done || since.elapsed() >= self.settings.checkpoint_ttl {
                self.closing.written(&room, closes.received);
            } else {
                failed.push((
                    room,
                    Closes {
                        failing_since: Some(since),
                        ..closes
                    },
                ));
            }
        }
        Written {
            flushed: batch.flushed,
            failed,
        }
    }

    /// A stopping node hands its rooms off: a checkpoint of every room (which then
    /// stops: nothing its members are told after it is lost), written to Redis
    /// (waiting at most a few seconds), then every lease released, so the next join on
    /// another node restores each room where it is now.
    pub async fn hand_off(&self) {
        // No more claims; renewals go on (the last checkpoints are written only while
        // this node holds the rooms, and what comes before them may take longer than
        // a lease) but take nothing back, until the rooms are released below.
        {
            // No renewal under way: none puts the load back after it is withdrawn.
            let _renewing = self.renewing.lock().await;
            self.stopping.store(true, Ordering::Release);
            // No node sends new rooms, nor quick joins, here any more (`release_all`
            // below does it too, seconds later, if Redis answers then).
            let rooms: Vec<RoomEntry> = self.pool.all_rooms().iter().map(|r| self.entry_of(r)).collect();
            let _ = self.call(self.directory.withdraw_load(&rooms)).await;
        }
        self.stop_calls().await;
        let before = self.flushed.load(Ordering::Acquire);
        let skipped_before = self.metrics.checkpoints_skipped.get();
        let asked = self.pool.hand_off();
        let written = async {
            loop {
                let notified = self.flush.notified();
                if self.flushed.load(Ordering::Acquire) >= before + asked {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(HAND_OFF_WAIT, written).await.is_err() {
            tracing::warn!("stopping: not every room's checkpoint was written in time");
        }
        // (Counted from the hand-off on: a periodic write finishing meanwhile counts
        // too, which errs towards the warning.)
        let unsaved = self.metrics.checkpoints_skipped.get() - skipped_before;
        if unsaved > 0 {
            tracing::warn!(
                checkpoints = unsaved,
                "stopping: checkpoints not written (Redis failed them, their leases had lapsed, or over \
                 [cluster] max_checkpoint_bytes): those rooms come back from an older checkpoint, or empty"
            );
        }
        let rooms = self.pool.all_rooms();
        if let Ok(loads) = self.call(self.directory.node_loads()).await {
            let members = rooms
                .iter()
                .map(|room| (room.id.to_string(), u64::from(room.occupied())));
            let others = loads.into_iter().filter(|(node, _)| node.id != self.node.id);
            let _ = self.destinations.set(Destinations::plan(members, others));
        }
        let rooms: Vec<String> = rooms.iter().map(|r| r.id.to_string()).collect();
        // No renewal under way, nor after: none reaches Redis after the release.
        self.leases_stop.cancel();
        let _renewing = self.renewing.lock().await;
        match self.call(self.directory.release_all(&rooms)).await {
            Ok(()) => tracing::info!(rooms = rooms.len(), "stopping: rooms checkpointed and released"),
            Err(_) => tracing::warn!(
                rooms = rooms.len(),
                "stopping: rooms not released; they move when their leases lapse"
            ),
        }
    }

    /// Stops taking calls from other nodes ([`Bus::stop_calls`]) and waits (a moment
    /// at most) until those published before have reached their rooms: then the
    /// rooms' last checkpoints hold them, and a call published later is answered 503
    /// by its node's API (retried, it finds the room where it went).
    async fn stop_calls(&self) {
        // Claims are refused from now on: the rooms still opening here open (or not)
        // first, so the calls held for them are delivered before the rooms' last
        // checkpoints (the inbox signals only once it holds none).
        let opened = async {
            while !self.opening.lock().is_empty() {
                tokio::time::sleep(HOLD_POLL).await;
            }
        };
        let _ = tokio::time::timeout(HOLD_FOR, opened).await;
        let deadline = tokio::time::Instant::now() + DIRECTORY_TIMEOUT;
        if let Err(e) = self.bus.stop_calls(deadline).await {
            tracing::warn!("stopping: calls from other nodes not stopped ({e}): some may be lost");
            return;
        }
        let drained = async {
            loop {
                let notified = self.calls_drained_notify.notified();
                if self.calls_drained.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(DIRECTORY_TIMEOUT + HOLD_FOR, drained)
            .await
            .is_err()
        {
            tracing::warn!("stopping: calls from other nodes still on their way may be lost");
        }
    }

    /// Where a client of this stopping node goes (see `Destinations`), given the
    /// rooms its session is in: none before the hand-off, or when no other node is live.
    pub fn destination<'a>(&self, rooms: impl IntoIterator<Item = &'a str>) -> Option<String> {
        self.destinations.get()?.for_rooms(rooms).map(str::to_string)
    }
}
