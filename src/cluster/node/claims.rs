//! Rooms claimed, found and listed across nodes: what a session's directory work runs
//! (claims, quick joins on other nodes, listings), seat tickets, placement.

use super::*;

impl Cluster {
    /// Runs one piece of a session's directory work.
    pub async fn run(&self, op: DirectoryOp) -> DirectoryReply {
        match op {
            DirectoryOp::Claim {
                room,
                room_type,
                seat,
                member,
                listing,
                request_id,
            } => {
                let was_open = self.pool.room(&room).is_some();
                let (mut outcome, mut opening) = match self.claim_opening(&room, &room_type, listing).await {
                    // Held on (see `Opening`) only for a room this node is to open.
                    Ok((claim @ Claim::Ours, opening)) => (Ok(claim), opening),
                    Ok((claim, _)) => (Ok(claim), None),
                    Err(e) => (Err(e), None),
                };
                // Closed while the claim ran (the claim renewed its entry, which the
                // close takes away): not opened anew without it (see the session's
                // `was_open`), and the claim given back.
                if was_open && matches!(outcome, Ok(Claim::Ours)) && self.pool.room(&room).is_none() {
                    outcome = Err(closed_as_joined());
                    opening = None;
                    self.release_unless_open(&room, 0).await;
                }
                // A redirected member's ticket: join with the member id it carries.
                // Taken (it is good once) only when the join goes on, here or at the
                // owner: a join refused for now is tried again with it.
                let goes_on = matches!(outcome, Ok(Claim::Ours | Claim::Theirs { url: Some(_), .. }));
                let carried = if seat.is_empty() || !goes_on {
                    None
                } else {
                    self.take_seat(&room, &seat).await
                };
                let ticket = match &outcome {
                    Ok(Claim::Theirs { url: Some(_), .. }) => {
                        self.seat_ticket(&room, carried.as_ref().unwrap_or(&member)).await
                    }
                    _ => String::new(),
                };
                DirectoryReply::Claim {
                    room,
                    outcome,
                    was_open,
                    ticket,
                    seat: carried,
                    request_id,
                    opening,
                }
            }
            DirectoryOp::Release { room } => {
                self.release_unless_open(&room, 0).await;
                DirectoryReply::Released { room }
            }
            DirectoryOp::List {
                request_id,
                after,
                limit,
                room_type,
                filters,
                open_only,
            } => {
                let filter = RoomFilter {
                    room_type: &room_type,
                    metadata: &filters,
                    open_only,
                };
                let outcome = self.list(&filter, after, limit).await;
                DirectoryReply::List { request_id, outcome }
            }
            DirectoryOp::QuickJoin {
                request_id,
                room_type,
                filters,
                skip,
                allowed,
                member,
            } => {
                let found = self
                    .find_open(&room_type, &filters, &skip, &member, allowed.as_deref())
                    .await;
                let outcome = match found {
                    Ok(Some((room, url))) => {
                        self.metrics.redirects.inc();
                        // The room's node checks that it still fits (see `Seat.quick_join`).
                        let picked = proto::Seat {
                            quick_join: true,
                            quick_join_filters: filters,
                            ..member
                        };
                        let seat = self.seat_ticket(&room, &picked).await;
                        Ok(Some(Found { room, url, seat }))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                DirectoryReply::QuickJoin { request_id, outcome }
            }
        }
    }

    /// One page of the cluster's rooms that `filter` admits: at most `limit` after
    /// `after`, and where the next page starts (none: the last). Reads one page of
    /// `LIST_CHUNK` (200) directory entries: a selective filter may answer a short page
    /// (even an empty one) that is not the last.
    pub async fn list(
        &self,
        filter: &RoomFilter<'_>,
        mut after: String,
        limit: usize,
    ) -> Result<(Vec<proto::RoomInfo>, Option<String>), PoolError> {
        let mut rooms = Vec::new();
        let (page, more) = self.call(self.directory.list(&after, LIST_CHUNK)).await?;
        for entry in page {
            after.clone_from(&entry.room);
            if filter.admits(&entry.room_type, entry.members, entry.max_members, &entry.listing) {
                rooms.push(entry.info());
                if rooms.len() == limit {
                    return Ok((rooms, Some(after)));
                }
            }
        }
        Ok((rooms, more.then_some(after)))
    }

    /// The fullest open room of `room_type` (empty: the default) on another live node
    /// whose metadata holds `filters`, not in `skip_rooms`, not banning `member`'s
    /// user and allowed by the token's room `patterns`; with its node's URL. Looks at
    /// the [`QUICK_JOIN_SCAN_MAX`] fullest at most, as read within
    /// [`OPEN_ROOMS_FRESH`] (by this search or an earlier one).
    async fn find_open(
        &self,
        room_type: &str,
        filters: &Metadata,
        skip_rooms: &[String],
        member: &proto::Seat,
        patterns: Option<&[String]>,
    ) -> Result<Option<(String, String)>, PoolError> {
        let room_type = match room_type {
            "" => self.pool.config().default_room_type.as_str(),
            named => named,
        };
        let search = async {
            let slot = {
                let mut slots = self.open_rooms.lock();
                slots.retain(|_, slot| {
                    Arc::strong_count(slot) > 1
                        || (slot.try_lock()).is_ok_and(|read| read.as_ref().is_some_and(OpenRooms::fresh))
                });
                let key = (room_type.to_string(), filters.clone());
                slots.entry(key).or_default().clone()
            };
            let mut read = slot.lock().await;
            if !read.as_ref().is_some_and(OpenRooms::fresh) {
                let ids = self
                    .call(self.directory.open_room_ids(room_type, filters, QUICK_JOIN_SCAN_MAX))
                    .await?;
                *read = Some(OpenRooms {
                    read_at: Instant::now(),
                    ids,
                    read: 0,
                    entries: Vec::new(),
                    urls: HashMap::new(),
                });
            }
            let open = read.as_mut().expect("read just now");
            let mut next = 0;
            loop {
                // The entries in the ids' order, QUICK_JOIN_SCAN a round trip, as far as
                // a search needs them (most find a fit in the first).
                if next == open.entries.len() {
                    let chunk = &open.ids[open.read..(open.read + QUICK_JOIN_SCAN).min(open.ids.len())];
                    if chunk.is_empty() {
                        return Ok(None);
                    }
                    let entries = self.call(self.directory.open_room_entries(room_type, chunk)).await?;
                    open.read += chunk.len();
                    open.entries.extend(entries);
                    continue;
                }
                let entry = &open.entries[next];
                next += 1;
                let fits = entry.node != self.node.id
                    && !skip_rooms.contains(&entry.room)
                    && !entry.bans(&member.user_id)
                    && room_allowed(patterns, &entry.room)
                    && entry.listing.matches(filters);
                if !fits {
                    continue;
                }
                let (room, node) = (entry.room.clone(), entry.node.clone());
                if !open.urls.contains_key(&node) {
                    let url = self.call(self.directory.node_url(&node)).await?;
                    open.urls.insert(node.clone(), url);
                }
                // A node whose own lease lapsed is dead: its rooms come back elsewhere.
                if let Some(url) = &open.urls[&node] {
                    return Ok(Some((room, url.clone())));
                }
            }
        };
        let slow = || PoolError::Unavailable("the room directory answers too slowly; try again".into());
        tokio::time::timeout(FIND_OPEN_WAIT, search)
            .await
            .unwrap_or_else(|_| Err(slow()))
    }

    /// A seat ticket for a member redirected to `room`'s node: it joins there with
    /// this member id (empty when Redis failed: it joins with the id of its session
    /// there). One member redirected to one room again and again gets the same
    /// ticket (a keyed hash of the two, 128 bits, unguessable without this node's
    /// keys), so Redis holds one key for them, not one per redirect.
    async fn seat_ticket(&self, room: &str, member: &proto::Seat) -> String {
        use std::hash::BuildHasher;
        let [a, b] = self
            .seat_keys
            .each_ref()
            .map(|keys| keys.hash_one((member.member_id, &member.user_id, room)));
        let ticket = format!("{a:016x}{b:016x}");
        let seat = member.encode_to_vec();
        // The ticket (hex) first: a room id may hold any byte, `/` too.
        let key = format!("{ticket}/{room}");
        match self.call(self.directory.save_seat(&key, &seat, SEAT_TICKET_TTL)).await {
            Ok(()) => ticket,
            Err(_) => String::new(),
        }
    }

    /// The member a seat ticket for `room` carries, if the ticket is valid (it is
    /// taken: used once).
    async fn take_seat(&self, room: &str, ticket: &str) -> Option<proto::Seat> {
        if ticket.len() != 32 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let seat = self
            .call(self.directory.take_seat(&format!("{ticket}/{room}")))
            .await
            .ok()??;
        proto::Seat::decode(&seat[..]).ok()
    }

    /// [`Cluster::claim`] of a configured room as the node starts: the first node to
    /// start takes it. Like any claim it waits for renewals to settle after a Redis
    /// outage ([`Claim::Settling`]: its node, alive, may be about to take it back);
    /// the caller then leaves it to [`Cluster::reopen_configured`].
    pub async fn claim_configured(&self, room: &str, room_type: &str, metadata: &Metadata) -> Result<Claim, PoolError> {
        self.claim(room, room_type, ListingState::listed_as(metadata)).await
    }

    /// Opens a configured room here again when no node holds it (its simulation
    /// closed it, or its node died or stopped and its lease lapsed), from its
    /// checkpoint when it has one. Asks the directory only about a room not open here.
    pub async fn reopen_configured(&self, room: &str, room_type: &str, metadata: &Metadata) -> Result<(), PoolError> {
        if self.pool.room(room).is_some() || self.call(self.directory.locate(room)).await?.is_some() {
            return Ok(());
        }
        if let Claim::Ours = self.claim_configured(room, room_type, metadata).await?
            && let Err(e) = self.pool.create_persistent(room, room_type, metadata)
        {
            // Not left claimed for a room that runs nowhere (the room cap is full, say).
            self.release_unless_open(room, 0).await;
            return Err(e);
        }
        Ok(())
    }

    /// Claims a room for this node, or learns who owns it. An unknown room type is
    /// refused before the directory is asked.
    pub async fn claim(&self, room: &str, room_type: &str, listing: ListingState) -> Result<Claim, PoolError> {
        Ok(self.claim_opening(room, room_type, listing).await?.0)
    }

    /// [`Cluster::claim`], and the claim counted as opening the room (when it was not
    /// open here) for as long as the caller keeps it.
    async fn claim_opening(
        &self,
        room: &str,
        room_type: &str,
        listing: ListingState,
    ) -> Result<(Claim, Option<Opening>), PoolError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(stopping());
        }
        // A room open here lists as it is (its entry may have lapsed meanwhile). One
        // that the claim may restore enters the directory unlisted (a private room is
        // never listed), and as itself once restored. A room that closed here is
        // claimed again once its close is written (see `Closing`).
        // (Counted as opening before it looks for a close or a release of the room
        // under way: see `release_unless_open`.)
        let mut opening = Some(Opening::new(&self.opening, room));
        let open_here = match self.pool.room(room) {
            Some(handle) => Some(handle),
            None if !pacer::poked(self.closing.settled(room, DIRECTORY_TIMEOUT)).await => {
                return Err(PoolError::Unavailable("the room is closing; join again".into()));
            }
            None => self.pool.room(room),
        };
        if open_here.is_some() {
            opening = None;
        } else if self.pool.is_full() {
            // No room for it here: not claimed (a claim of a room that cannot open
            // would keep its number in Redis for as long as a checkpoint). One open
            // on another node is joined there, as a claim would say; a new one is
            // placed on a lighter node if the placement policy places rooms.
            return match self.call(self.directory.locate(room)).await? {
                Some(node) if node != self.node.id => {
                    let url = self.call(self.directory.node_url(&node)).await?;
                    Ok((self.redirect(node, url), None))
                }
                Some(_) => Err(PoolError::TooManyRooms),
                None if self.settings.placement == Placement::LeastLoaded && placeable(&listing) => {
                    let placed = self.place(room).await?;
                    let placed = placed.map(|node| (self.redirect(node.id, Some(node.url)), None));
                    placed.ok_or(PoolError::TooManyRooms)
                }
                None => Err(PoolError::TooManyRooms),
            };
        }
        // A failed read is an error, not "no checkpoint": the room would open empty,
        // and its checkpoint be overwritten by the empty room's. A checkpoint written
        // between that read and the claim (its node handed the room off meanwhile)
        // has the claim refused, and made again to restore it.
        let mut may_restore = open_here.is_none() && self.call(self.directory.has_checkpoint(room)).await?;
        let claim = loop {
            let listing = match &open_here {
                Some(handle) => handle.shared.listing.get(),
                None if may_restore => ListingState {
                    private: true,
                    ..ListingState::default()
                },
                None => listing.clone(),
            };
            let placed = self.settings.placement == Placement::LeastLoaded
                && open_here.is_none()
                && !may_restore
                && placeable(&listing);
            let entry = self.entry(room, room_type, listing)?;
            if placed && let Some(node) = self.place(room).await? {
                return Ok((self.redirect(node.id, Some(node.url)), None));
            }
            // Refused at most once: the second claim knows of the checkpoint.
            let none_found = open_here.is_none() && !may_restore;
            let claim = self
                .directory
                .claim_unless_checkpointed(&entry, false, none_found, open_here.is_some());
            match self.call(claim).await? {
                Some(claim) => break claim,
                None => may_restore = true,
            }
        };
        // The node began stopping while the claim ran: what it took goes back (its
        // rooms are released, or about to be), or it would own a room it never runs.
        if matches!(claim, Claim::Ours) && self.stopping.load(Ordering::Acquire) {
            let _ = self.call(self.directory.release(room)).await;
            return Err(stopping());
        }
        match &claim {
            Claim::Theirs { url: Some(_), .. } => {
                self.metrics.redirects.inc();
            }
            // The copy open here is out of date: it closes, and the join, made again,
            // claims the room afresh (restoring it from the later claim's checkpoint).
            // (With nothing open here, another process with this node's id holds the
            // room: the caller says what it does of that.)
            Claim::Superseded if open_here.is_some() => {
                self.close_lost(room, SUPERSEDED);
                return Err(PoolError::Unavailable(SUPERSEDED.into()));
            }
            // Read after the claim: the owner writes its last checkpoint before it
            // releases the room.
            Claim::Ours if may_restore && self.pool.room(room).is_none() => {
                let restored = match self.checkpoint(room).await {
                    Ok(Some(checkpoint)) => self.restore(checkpoint),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                // Not opened empty over a checkpoint Redis holds but did not give, or
                // that the room's simulation failed to restore: the claim lapses (or
                // is released) and a later join restores it.
                if let Err(e) = restored {
                    // Unless another join restored it meanwhile (or is restoring it).
                    self.release_unless_open(room, 1).await;
                    return Err(e);
                }
                if let Some(restored) = self.pool.room(room) {
                    let _ = self
                        .call(self.directory.renew_held(&[self.entry_of(&restored.shared)]))
                        .await;
                }
            }
            _ => {}
        }
        Ok((claim, opening))
    }

    /// Gives a claim of `room` back unless the room is open here (a claim that no
    /// room follows, or another join opened it meanwhile), or another join's claim is
    /// opening it (restoring it from its checkpoint, say: it would open without its
    /// lease). `mine`: the caller's own claims under way (counted in `opening`).
    pub(super) async fn release_unless_open(&self, room: &str, mine: usize) {
        // Marked first, counted second, while a claim counts itself first and looks
        // for marks second (both under locks): a claim that began before this look is
        // counted, one that begins after it waits until the release is written.
        let _releasing = self.closing.releasing(room);
        let opening = self.opening.lock().get(room).copied().unwrap_or(0);
        if self.pool.room(room).is_none() && opening <= mine {
            let _ = self.call(self.directory.release(room)).await;
        }
    }

    /// A join sent to `node`, counted when its URL is known (a node whose own lease
    /// lapsed has none).
    fn redirect(&self, node: String, url: Option<String>) -> Claim {
        if url.is_some() {
            self.metrics.redirects.inc();
        }
        Claim::Theirs { node, url }
    }

    /// Where a room should open under [`Placement::LeastLoaded`], when not here: a
    /// live node with at least [`PLACEMENT_MARGIN`] and a fifth fewer members than
    /// this one at the last renewals (plus the rooms placed on it since, one member
    /// each), drawn at random among those, so that a burst of new rooms does not all
    /// go to one node until its next renewal shows them. None for a room
    /// that a node owns (the claim finds it).
    async fn place(&self, room: &str) -> Result<Option<Node>, PoolError> {
        let loads = self.call(self.directory.node_loads()).await?;
        let own = (loads.iter())
            .find(|(node, _)| node.id == self.node.id)
            .map_or(0, |(_, load)| *load);
        let margin = PLACEMENT_MARGIN.max(own / 5);
        let mut lighter: Vec<Node> = (loads.into_iter())
            .filter(|(node, load)| node.id != self.node.id && load + margin <= own)
            .map(|(node, _)| node)
            .collect();
        if lighter.is_empty() || self.call(self.directory.locate(room)).await?.is_some() {
            return Ok(None);
        }
        let chosen = lighter.swap_remove(fastrand::usize(..lighter.len()));
        // Not waited for (the join goes on at once), and failing to count it only
        // makes the next placements less even.
        let (directory, id) = (self.directory.clone(), chosen.id.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(DIRECTORY_TIMEOUT, directory.count_placement(&id)).await;
        });
        Ok(Some(chosen))
    }
}
