//! Joining rooms: joins (here, or through the directory's claim in cluster mode) and
//! quick joins (an open room that fits, here or elsewhere, or a new one), with the
//! room cap, the seats a redirect's ticket carries and what waits for a claim.

use super::*;

/// How long a room this session left is not picked by its quick joins.
const JUST_LEFT: Duration = Duration::from_secs(1);

/// A room this session is in, or asked to join.
#[derive(Debug, Clone)]
pub(super) struct Membership {
    pub(super) handle: RoomHandle,
    pub(super) join_seq: u64,
    /// This session's member id in the room: its own id, or the one a redirected
    /// member's seat ticket carried.
    pub(super) member: MemberId,
}

/// A join waiting for the directory's claim, with what the client sent the room
/// meanwhile (delivered in order once the room is open here).
#[derive(Debug)]
pub(super) struct PendingJoin {
    pub(super) request_id: u64,
    pub(super) room_type: String,
    pub(super) create: Option<proto::RoomOptions>,
    pub(super) member_data: Bytes,
    pub(super) waiting: Vec<Waiting>,
}

/// Why `data` cannot be a join's `member_data`, if it cannot.
fn member_data_too_long(data: &[u8]) -> Option<String> {
    (data.len() > MAX_MEMBER_DATA_BYTES)
        .then(|| format!("member_data is {} bytes; at most {MAX_MEMBER_DATA_BYTES}", data.len()))
}

/// Quick joins whose request ids a session remembers (see `Session::quick_join_ids`).
const RECENT_QUICK_JOINS: usize = 64;

/// A quick join waiting for the directory: what it creates if no room is found.
#[derive(Debug)]
pub(super) struct PendingQuickJoin {
    pub(super) room_type: String,
    pub(super) metadata: Metadata,
    pub(super) member_data: Bytes,
}

#[derive(Debug)]
pub(super) enum Waiting {
    Input { seq: u64, payload: input::Payload },
    Event(SendEvent),
}

impl Session {
    /// Why the session may not join one more room, if it may not.
    fn room_cap(&self) -> Option<String> {
        let cap = self.ctx.settings.max_rooms_per_session;
        let joining = self.rooms.len() + self.claims.len() + self.quick_joins.len();
        (joining >= cap).then(|| format!("a session may be in at most {cap} rooms"))
    }

    pub(super) fn join(&mut self, join: proto::JoinRoom) {
        let refuse = |code, message: &str| self.reply(error_message(code, message, join.request_id, &join.room));
        if !valid_room_id(&join.room) {
            return refuse(
                ErrorCode::BadRequest,
                "room id must be 1-128 bytes, without control characters",
            );
        }
        if let Err(message) = check_room_type(&join.room_type) {
            return refuse(ErrorCode::BadRequest, &message);
        }
        if !self.identity.may_join(&join.room) {
            return refuse(ErrorCode::Forbidden, "the token does not allow this room");
        }
        if self.claims.contains_key(&join.room) {
            return refuse(
                ErrorCode::AlreadyMember,
                "a join of this room is already waiting for the room directory",
            );
        }
        if !self.rooms.contains_key(&join.room)
            && let Some(message) = self.room_cap()
        {
            return refuse(ErrorCode::LimitExceeded, &message);
        }
        if let Some(Err(e)) = join.create.as_ref().map(|c| listing::check(&c.metadata)) {
            return refuse(ErrorCode::BadRequest, &e.to_string());
        }
        if let Some(message) = member_data_too_long(&join.member_data) {
            return refuse(ErrorCode::LimitExceeded, &message);
        }
        // A room open here is this node's; one that is not may live on another node.
        // A seat ticket is checked in the directory too, unless the session is in the
        // room already (the room answers that join as any other).
        let needs_directory = || {
            !self.rooms.contains_key(&join.room) && (!join.seat.is_empty() || self.ctx.rooms.find(&join.room).is_none())
        };
        if self.ctx.clustered && needs_directory() {
            // Claims of rooms left before they answered still run: bounded too.
            let is_claim = |op: &&DirectoryOp| matches!(op, DirectoryOp::Claim { .. });
            let claiming = self
                .directory_ops
                .iter()
                .chain(&self.in_flight)
                .filter(is_claim)
                .count();
            if claiming >= self.ctx.settings.max_rooms_per_session {
                return refuse(
                    ErrorCode::LimitExceeded,
                    "too many joins waiting for the room directory; wait for their answers",
                );
            }
            self.directory_ops.push(DirectoryOp::Claim {
                room: join.room.clone(),
                room_type: join.room_type.clone(),
                seat: join.seat,
                member: self.seat(),
                listing: ListingState::created(join.create.as_ref(), self.id, true),
                request_id: join.request_id,
            });
            let pending = PendingJoin {
                request_id: join.request_id,
                room_type: join.room_type,
                create: join.create,
                member_data: join.member_data,
                waiting: Vec::new(),
            };
            self.claims.insert(join.room, pending);
            return;
        }
        let joiner = self.joiner(join.member_data);
        let listing = ListingState::created(join.create.as_ref(), joiner.member, true);
        self.open_and_join(join.room, &join.room_type, join.request_id, joiner, listing);
    }

    /// Drops the rooms left more than [`JUST_LEFT`] ago from `just_left`.
    pub(super) fn forget_left(&mut self, now: Now) {
        self.just_left.retain(|(_, at)| now.instant < *at + JUST_LEFT);
    }

    /// A quick join: the fullest open room that matches, or a new one (see
    /// `QuickJoin` in the schema).
    /// Whether this session ran a quick join with `request_id` already (see
    /// `quick_join_ids`).
    pub(super) fn quick_join_ran(&self, request_id: u64) -> bool {
        // (0: a client that does not number its requests; each is a new one.)
        request_id != 0 && self.quick_join_ids.contains(&request_id)
    }

    /// Notes that the quick join with `request_id` runs (it is answered, whatever the
    /// answer).
    pub(super) fn remember_quick_join(&mut self, request_id: u64) {
        if request_id == 0 {
            return;
        }
        if self.quick_join_ids.len() == RECENT_QUICK_JOINS {
            self.quick_join_ids.pop_front();
        }
        self.quick_join_ids.push_back(request_id);
    }

    pub(super) fn quick_join(&mut self, quick: proto::QuickJoin, now: Now) {
        let refuse = |code, message: &str| self.reply(error_message(code, message, quick.request_id, ""));
        if let Err(message) = check_room_type(&quick.room_type) {
            return refuse(ErrorCode::BadRequest, &message);
        }
        let mut metadata = quick.create.map(|c| c.metadata).unwrap_or_default();
        metadata.extend(quick.filters.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Err(e) = listing::check(&quick.filters).and_then(|()| listing::check(&metadata)) {
            return refuse(ErrorCode::BadRequest, &e.to_string());
        }
        if let Some(message) = self.room_cap() {
            return refuse(ErrorCode::LimitExceeded, &message);
        }
        if quick.exclude.len() > MAX_QUICK_JOIN_EXCLUDED {
            let message = format!("a quick join may exclude at most {MAX_QUICK_JOIN_EXCLUDED} rooms");
            return refuse(ErrorCode::BadRequest, &message);
        }
        if let Some(message) = member_data_too_long(&quick.member_data) {
            return refuse(ErrorCode::LimitExceeded, &message);
        }
        let excluded: HashSet<&str> = quick.exclude.iter().map(String::as_str).collect();
        let skip = |room: &RoomShared| {
            let id = &*room.id;
            self.just_left.iter().any(|(left, _)| left == id)
                || self.rooms.contains_key(id)
                || self.claims.contains_key(id)
                || excluded.contains(id)
                || !self.identity.may_join(id)
                || room.bans.remaining_us(&self.identity.user_id, now.unix_us).is_some()
        };
        // A room open here first; in a cluster, then the fullest elsewhere (unless
        // `local_only`), then a new one here.
        if let Some(handle) = self.ctx.rooms.pick(&quick.room_type, &quick.filters, &skip) {
            let joiner = self.joiner(quick.member_data);
            let id = handle.shared.id.to_string();
            self.join_open(id, handle, quick.request_id, joiner, true);
            return;
        }
        if !self.ctx.clustered || quick.local_only {
            let pending = PendingQuickJoin {
                room_type: quick.room_type,
                metadata,
                member_data: quick.member_data,
            };
            return self.create_for_quick_join(quick.request_id, pending);
        }
        // Each waiting quick join counts against the room cap by its request id.
        if self.quick_joins.contains_key(&quick.request_id) {
            let message = "a quick join with this request_id is waiting for the room directory";
            return self.reply(error_message(ErrorCode::BadRequest, message, quick.request_id, ""));
        }
        self.directory_ops.push(DirectoryOp::QuickJoin {
            request_id: quick.request_id,
            room_type: quick.room_type.clone(),
            filters: quick.filters,
            skip: (self.rooms.keys().chain(self.claims.keys()))
                .chain(self.just_left.iter().map(|(room, _)| room))
                .chain(&quick.exclude)
                .cloned()
                .collect(),
            allowed: self.identity.rooms.clone(),
            member: self.seat(),
        });
        let pending = PendingQuickJoin {
            room_type: quick.room_type,
            metadata,
            member_data: quick.member_data,
        };
        self.quick_joins.insert(quick.request_id, pending);
    }

    /// No open room fits a quick join: a new one, with its metadata, joined like any.
    pub(super) fn create_for_quick_join(&mut self, request_id: u64, quick: PendingQuickJoin) {
        let PendingQuickJoin {
            room_type,
            metadata,
            member_data,
        } = quick;
        let prefix = if room_type.is_empty() { "room" } else { &room_type };
        let room = format!("{prefix}-{}", (self.ctx.room_ids)());
        if !self.identity.may_join(&room) {
            let message = format!("no open room matches, and the token does not allow creating `{room}`");
            return self.reply(error_message(ErrorCode::Forbidden, &message, request_id, ""));
        }
        self.join(proto::JoinRoom {
            request_id,
            room,
            room_type,
            seat: String::new(),
            create: Some(proto::RoomOptions {
                metadata,
                private: false,
            }),
            member_data,
        });
    }

    /// This session's member joining a room, telling its game `data`.
    fn joiner(&self, data: Bytes) -> Joiner {
        Joiner {
            member: self.id,
            user_id: self.identity.user_id.clone(),
            data,
        }
    }

    /// Whether a quick join whose redirect gave `seat` may still take `room`, open
    /// here: any room, for a seat not from a quick join; one not open here is not
    /// listed (being opened or restored for this join) and is taken as the directory
    /// listed it.
    pub(super) fn still_picks(&self, room: &str, seat: &proto::Seat) -> bool {
        let Some(handle) = self.ctx.rooms.find(room).filter(|_| seat.quick_join) else {
            return true;
        };
        let filter = RoomFilter {
            room_type: "",
            metadata: &seat.quick_join_filters,
            open_only: true,
        };
        handle.shared.listed(&filter)
    }

    /// This session's member, as a redirect's seat ticket carries it on.
    fn seat(&self) -> proto::Seat {
        proto::Seat {
            member_id: self.id,
            user_id: self.identity.user_id.to_string(),
            last_input_seq: 0,
            // (The client's join on the room's node says it.)
            member_data: Bytes::new(),
            ..Default::default()
        }
    }

    /// Opens the room here (creating it with `listing` if needed) and sends the join
    /// as `member` (this session's id, or a redirected member's); the room's handle
    /// when the session is now a member (or about to be).
    pub(super) fn open_and_join(
        &mut self,
        room: String,
        room_type: &str,
        request_id: u64,
        joiner: Joiner,
        listing: ListingState,
    ) -> Option<RoomHandle> {
        let handle = match self.ctx.rooms.open(&room, room_type, &self.identity.creator, listing) {
            Ok(handle) => handle,
            Err(e) => {
                self.pool_error(&e, request_id, &room);
                return None;
            }
        };
        self.join_open(room, handle, request_id, joiner, false)
    }

    /// Sends the join of a room open here (`reserved`: into a seat a quick join
    /// reserved).
    fn join_open(
        &mut self,
        room: String,
        handle: RoomHandle,
        request_id: u64,
        joiner: Joiner,
        reserved: bool,
    ) -> Option<RoomHandle> {
        let join_seq = self.next_join;
        self.next_join += 1;
        let Joiner { member, user_id, data } = joiner;
        let command = Command::Join {
            room: handle.key,
            room_id: handle.shared.id.clone(),
            member,
            user_id,
            member_data: data,
            outbox: self.outbox.clone(),
            request_id,
            join_seq,
            reserved,
        };
        if !self.send(&handle, command, request_id) {
            if reserved {
                handle.shared.reserved.fetch_sub(1, Ordering::Relaxed);
            }
            return None;
        }
        self.rooms.insert(
            room,
            Membership {
                handle: handle.clone(),
                join_seq,
                member,
            },
        );
        Some(handle)
    }
}
