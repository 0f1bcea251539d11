//! Calls between nodes over Redis pub/sub: the HTTP API's publish, close and remove
//! for rooms held elsewhere, and this node's inbox.

use super::*;

impl Cluster {
    /// Hands a room event for a room not open here to the node that holds it: that
    /// node's id, `None` when no node does, or `Unavailable` when that node does not
    /// listen.
    pub async fn publish_elsewhere(&self, event: &SendEvent) -> Result<Option<String>, PoolError> {
        let bus = &self.bus;
        self.deliver_elsewhere(&event.room, async |node: String| bus.send_event(&node, event).await)
            .await
    }

    /// [`Cluster::publish_elsewhere`] for a close of the room (`DELETE /rooms/{room}`).
    pub async fn close_elsewhere(&self, close: &RoomClose) -> Result<Option<String>, PoolError> {
        let bus = &self.bus;
        self.deliver_elsewhere(&close.room, async |node: String| bus.send_close(&node, close).await)
            .await
    }

    /// The base URL (`https://host:port`, from its public URL) of `node` while it is
    /// live.
    pub async fn node_base(&self, node: &str) -> Result<Option<String>, PoolError> {
        let url = self.call(self.directory.node_url(node)).await?;
        Ok(url.and_then(|url| http_base(&url)))
    }

    /// The node a call for `room` (the HTTP API's) goes to: the one holding it (this
    /// one, while it opens the room). When no node does and Redis keeps its checkpoint
    /// (its node stopped or died), with `restore` this node, having restored it as a
    /// join would; without, `Unavailable` (retry). None: no such room (it closed, or
    /// never was).
    pub async fn route_call(&self, room: &str, restore: bool) -> Result<Option<String>, PoolError> {
        match self.call(self.directory.locate(room)).await? {
            Some(node) if node != self.node.id => return Ok(Some(node)),
            // The lease says here: the room is opening (a join is restoring it), or it
            // just closed.
            Some(_) => return Ok((self.room_state(room) != RoomState::Gone).then(|| self.node.id.clone())),
            None => {}
        }
        if !restore {
            return match self.call(self.directory.has_checkpoint(room)).await? {
                true => Err(between_nodes()),
                false => Ok(None),
            };
        }
        let Some(checkpoint) = self.checkpoint(room).await? else {
            return Ok(None);
        };
        let listing = ListingState {
            private: true,
            ..ListingState::default()
        };
        match self.claim(room, &checkpoint.room_type, listing).await? {
            Claim::Ours if self.pool.room(room).is_some() => Ok(Some(self.node.id.clone())),
            // Claimed, but the room did not open (the checkpoint went meanwhile, or
            // this node has no room for it): not held for nothing.
            Claim::Ours => {
                // (Unless a join here opened it meanwhile, or is opening it.)
                self.release_unless_open(room, 0).await;
                Err(PoolError::Unavailable(
                    "the room could not be restored on this node; retry".into(),
                ))
            }
            Claim::Theirs { node, .. } => Ok(Some(node)),
            Claim::Settling => Err(PoolError::Unavailable(
                "the room directory is settling after a Redis outage; retry".into(),
            )),
            Claim::Superseded => Err(PoolError::Unavailable(ANOTHER_START.into())),
        }
    }

    /// [`Cluster::publish_elsewhere`] for a removal of a user from the room (`DELETE
    /// /rooms/{room}/users/{user}`).
    pub async fn remove_elsewhere(&self, removal: &UserRemoval) -> Result<Option<String>, PoolError> {
        let bus = &self.bus;
        self.deliver_elsewhere(&removal.room, async |node: String| {
            bus.send_removal(&node, removal).await
        })
        .await
    }

    async fn deliver_elsewhere(
        &self,
        room: &str,
        send: impl AsyncFnOnce(String) -> Result<bool, DirectoryError>,
    ) -> Result<Option<String>, PoolError> {
        // (Here: the room is opening, or was just restored, and this node's inbox holds
        // the call until it is open.)
        let Some(node) = self.route_call(room, true).await? else {
            return Ok(None);
        };
        if self.call(send(node.clone())).await? {
            Ok(Some(node))
        } else {
            Err(PoolError::Unavailable(format!(
                "node `{node}` holds the room but is not listening (or runs a version without this call)"
            )))
        }
    }

    /// Publishes what other nodes send for rooms open here, until `shutdown`. A call
    /// for a room not open here yet waits for it a moment (see `cluster::held`).
    pub async fn serve_inbox(
        self: Arc<Self>,
        mut inbox: mpsc::UnboundedReceiver<BusMessage>,
        on_user_live: impl Fn(UserLive) + Send,
        shutdown: CancellationToken,
    ) {
        let mut held = Held::default();
        // The calls stopped (see `Cluster::stop_calls`), and some wait for their rooms:
        // drained once they are delivered (or given up).
        let mut stopped_behind_held = false;
        // One timer for the loop (a sleep made per turn would never end while
        // deliveries keep coming).
        let mut poll = tokio::time::interval(HOLD_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => {
                    if !held.is_empty() {
                        tracing::warn!(calls = held.len(), "stopping: calls from other nodes still waiting for their rooms dropped");
                    }
                    return;
                }
                delivery = inbox.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => return,
                },
                _ = poll.tick(), if !held.is_empty() => {
                    let due = held.take_due(Instant::now(), |room| self.room_state(room));
                    for call in due.deliver {
                        self.deliver(call, &on_user_live);
                    }
                    for call in due.dropped {
                        tracing::debug!(room = ?call.room(), "call from another node for a room that did not open here; dropped");
                    }
                    if stopped_behind_held && held.is_empty() {
                        stopped_behind_held = false;
                        self.mark_calls_drained();
                    }
                    continue;
                }
            };
            if delivery == BusMessage::CallsStopped {
                match held.is_empty() {
                    true => self.mark_calls_drained(),
                    false => stopped_behind_held = true,
                }
                continue;
            }
            match delivery.room() {
                Some(room) if held.holds(room) || self.room_state(room) == RoomState::Opening => {
                    if let Err(call) = held.hold(delivery, Instant::now()) {
                        tracing::warn!(room = ?call.room(), "too many calls from other nodes wait for their rooms; dropped");
                    }
                }
                _ => self.deliver(delivery, &on_user_live),
            }
        }
    }

    /// Every call other nodes sent before this node stopped taking them reached its
    /// room (see `Cluster::stop_calls`).
    fn mark_calls_drained(&self) {
        self.calls_drained.store(true, Ordering::Release);
        self.calls_drained_notify.notify_waiters();
    }

    /// Where `room` stands here, for the calls other nodes send for it.
    fn room_state(&self, room: &str) -> RoomState {
        if self.pool.room(room).is_some() {
            RoomState::Open
        } else if self.opening.lock().contains_key(room) {
            RoomState::Opening
        } else {
            RoomState::Gone
        }
    }

    /// Does what another node sent: a room that closed meanwhile takes nothing.
    fn deliver(&self, delivery: BusMessage, on_user_live: &impl Fn(UserLive)) {
        match delivery {
            BusMessage::Event(event) => {
                let Some(room) = self.pool.room(&event.room) else {
                    tracing::debug!(room = %event.room, "event from another node for a room not open here; dropped");
                    return;
                };
                let command = Command::Event {
                    room: room.key,
                    member: SERVER,
                    event,
                };
                match self.pool.send(&room, command) {
                    Ok(()) => {
                        self.metrics.events_published.inc();
                    }
                    Err(e) => {
                        if let Some(suppressed) = CALLS_NOT_TAKEN.take(Instant::now()) {
                            tracing::warn!(room = %room.shared.id, suppressed, "event from the HTTP API on another node not taken: {e}");
                        }
                    }
                }
            }
            BusMessage::Close(close) => {
                let taken = self.pool.close(&close.room, ErrorCode::RoomClosed, &close.reason);
                log_call_from_elsewhere(taken, "close", &close.room);
            }
            BusMessage::Removal(r) => {
                let taken = self.pool.remove_user(&r.room, &r.user_id, &r.reason, r.ban_secs);
                log_call_from_elsewhere(taken, "user removal", &r.room);
            }
            BusMessage::UserLive(live) => on_user_live(live),
            // (`serve_inbox` takes it.)
            BusMessage::CallsStopped => {}
        }
    }
}
