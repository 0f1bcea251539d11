//! Members coming and going: joins (admitted, refused, seats a restore kept),
//! leaves, a backend's removals and bans, resyncs and `Joined` sent again.

use std::sync::Arc;

use bytes::Bytes;

use super::events::forget_owed;
use super::member::Member;
use super::{Bans, JoinError, Joiner, MAX_BANS, Reserved, Room, SimCall};
use crate::engine::outbox::Outbox;
use crate::frame::encode_message;
use crate::log_budget::LogBudget;
use crate::proto::{self, ErrorCode, server_message::Kind};
use crate::state::{MemberId, Tick};

/// Bans not kept (a room at [`MAX_BANS`]): at most one line a second.
static BANS_NOT_KEPT: LogBudget = LogBudget::new("bans_not_kept", 1);

impl Room {
    /// [`Room::join`] unless the game's backend banned `user_id` from the room and the
    /// ban lasts past `now_us` (µs since the Unix epoch): then the join is refused
    /// with `FORBIDDEN`, saying for how long.
    pub fn admit(
        &mut self,
        joiner: Joiner,
        outbox: Arc<Outbox>,
        request_id: u64,
        join_seq: u64,
        now_us: u64,
    ) -> Result<(), JoinError> {
        match self.bans.remaining_us(&joiner.user_id, now_us) {
            Some(remaining_us) => {
                let secs = remaining_us.div_ceil(1_000_000);
                let message = format!("banned from this room by the game's server for {secs} more s");
                let error = proto::Error {
                    code: ErrorCode::Forbidden as i32,
                    message,
                    request_id,
                    room: self.id.to_string(),
                    retry_after_ms: u32::try_from(secs * 1000).unwrap_or(u32::MAX),
                };
                outbox.leave_room(self.key, join_seq);
                let _ = outbox.push_reliable(encode_message(Kind::Error(error)));
                Err(JoinError::Banned)
            }
            None => self.seat(joiner, outbox, request_id, join_seq),
        }
    }

    /// The game's backend removes `user_id` from the room: each of its members (and a
    /// seat kept for it) goes as a member the simulation removes does (after the next
    /// tick's events, with `Left`, `FORBIDDEN` and `why`), and its joins are refused
    /// for `ban_secs` from `now_us` (0: a ban it had is lifted). At most [`MAX_BANS`]
    /// bans are kept: one more replaces the ban that ends soonest, unless it is the
    /// soonest itself (then it is not kept, and logged).
    pub fn remove_user(&mut self, user_id: &str, why: &str, ban_secs: u32, now_us: u64) {
        let members = self.members.iter().filter(|m| &*m.user_id == user_id).map(|m| m.id);
        let seats = (self.reserved.iter()).filter(|(_, seat)| &*seat.user_id == user_id);
        let removed: Vec<MemberId> = members.chain(seats.map(|(&id, _)| id)).collect();
        for member in removed {
            self.requests.removals.push((member, why.to_string()));
        }
        if !self.bans.set(user_id, ban_secs, now_us)
            && let Some(suppressed) = BANS_NOT_KEPT.take(std::time::Instant::now())
        {
            tracing::warn!(
                room = %self.id,
                user = user_id,
                ban_secs,
                suppressed,
                "ban not kept: the room holds {MAX_BANS} bans, each ending later than this one"
            );
        }
    }

    /// The users banned from the room (shared with quick joins, which pass over it
    /// for them).
    pub fn bans(&self) -> &Arc<Bans> {
        &self.bans
    }

    /// Adds a member. At the next tick it is answered with `Joined`, the other
    /// members get presence and the simulation learns of it; its first frame is a
    /// full snapshot. A refusal (an `Error`) goes out at once.
    /// Joining again while a member is answered like a join, with `Joined` and a full
    /// snapshot, at most once per second (counted with resyncs); so is joining again
    /// after leaving a room others are in. Sooner, both are refused (`RATE_LIMITED`,
    /// with when to retry; a member stays one). (Sessions join through
    /// [`Room::admit`]: this, after the room's bans, with the member's data.)
    pub fn join(
        &mut self,
        member: MemberId,
        user_id: Arc<str>,
        outbox: Arc<Outbox>,
        request_id: u64,
        join_seq: u64,
    ) -> Result<(), JoinError> {
        let joiner = Joiner {
            member,
            user_id,
            data: Bytes::new(),
        };
        self.seat(joiner, outbox, request_id, join_seq)
    }

    /// [`Room::join`] with the joiner's `member_data` (the simulation's roster keeps
    /// it for a new member; a member joining again, or taking back a seat a restore
    /// kept, keeps its own).
    fn seat(&mut self, joiner: Joiner, outbox: Arc<Outbox>, request_id: u64, join_seq: u64) -> Result<(), JoinError> {
        let Joiner { member, user_id, data } = joiner;
        if let Some(&i) = self.index.get(&member) {
            let same_session = Arc::ptr_eq(&self.members[i].outbox, &outbox);
            // The membership goes on under this join's number, granted or refused: the
            // session forgets it only when told about its newest join.
            let old_join_seq = std::mem::replace(&mut self.members[i].join_seq, join_seq);
            let existing = &self.members[i];
            if same_session {
                // Joining a room it is in: its `Joined` (the whole member list) and a
                // full snapshot again, as a resync: at most once a second, and one
                // join answered at a time.
                if existing.joined_reply.is_some() {
                    let error = self.error(
                        ErrorCode::AlreadyMember,
                        "a join of this room is being answered",
                        request_id,
                    );
                    let _ = outbox.push_reliable(error);
                    return Err(JoinError::TooSoon);
                }
                if let Some(wait) = self.snapshot_wait(existing.last_full) {
                    let error = self.rate_limited("joined a room it is in within a second", wait, request_id);
                    let _ = outbox.push_reliable(error);
                    return Err(JoinError::TooSoon);
                }
            }
            // A join of the old session still waiting for its `Joined` is answered: a
            // newer session takes the seat.
            // (A resume's `Joined`, request id 0, answers nothing.)
            if !same_session && let Some(waiting) = self.members[i].joined_reply.filter(|&id| id != 0) {
                let message = "a newer session of this member took the seat";
                let error = self.error(ErrorCode::NotAMember, message, waiting);
                let _ = self.members[i].outbox.push_reliable(error);
            }
            let existing = &mut self.members[i];
            if !same_session {
                // A new session with this member id (continued from another node):
                // its first full snapshot, not one more for the old one, which is told
                // it left (its inputs and events are no longer the seat's).
                existing.outbox.leave_room(self.key, old_join_seq);
                existing.outbox = outbox;
                existing.last_full = 0;
            }
            existing.needs_full = true;
            existing.joined_reply = Some(request_id);
        } else if let Some(seat) = self.take_reserved(member, &user_id) {
            // Back after a restore: the simulation kept what it had for this member.
            let mut seated = Member::new(member, seat.user_id, outbox, join_seq, self.config.input_queue);
            seated.events_from = self.event_seq;
            seated.resume_after(seat.last_applied);
            seated.last_input_tick = self.world.tick();
            // The simulation knew it away since the restore: back at the next tick.
            seated.away_simulated = true;
            seated.joined_reply = Some(request_id);
            // A seat checkpointed without data (by an older relay) takes the join's.
            if self.roster.data(member).is_empty() {
                self.roster.set_data(member, data);
            }
            self.index.insert(member, self.members.len());
            self.members.push(seated);
        } else if let Some(wait) = (self.left_recently.get(&member)).and_then(|&last| self.snapshot_wait(last)) {
            // (`left_recently` is empty while the room is: an empty room does not tick.)
            let error = self.rate_limited("joined again within a second of leaving", wait, request_id);
            outbox.leave_room(self.key, join_seq);
            let _ = outbox.push_reliable(error);
            return Err(JoinError::TooSoon);
        } else if self.members.len() + self.reserved.len() >= self.config.max_members {
            let error = self.error(ErrorCode::RoomFull, "room is full", request_id);
            outbox.leave_room(self.key, join_seq);
            let _ = outbox.push_reliable(error);
            return Err(JoinError::Full);
        } else {
            self.sim_calls.push(SimCall::Join(member, user_id.clone(), data));
            let mut joining = Member::new(member, user_id, outbox, join_seq, self.config.input_queue);
            joining.events_from = self.event_seq;
            joining.joined_tick = self.world.tick() + 1;
            joining.last_input_tick = self.world.tick();
            joining.joined_reply = Some(request_id);
            self.index.insert(member, self.members.len());
            self.members.push(joining);
        }
        self.presence_due = true;
        Ok(())
    }

    /// The `Joined` answering `m`'s join `request_id`: the room's members as they
    /// are now; and the digest of the listing it tells.
    pub(super) fn joined_message(&self, m: &Member, request_id: u64) -> (Bytes, u64) {
        let (owner, metadata, locked, digest) =
            (self.listing).with(|l| (l.owner, l.metadata.clone(), l.locked, l.told_digest()));
        let joined = encode_message(Kind::Joined(proto::Joined {
            request_id,
            room: self.id.to_string(),
            room_type: self.room_type.to_string(),
            member_id: m.id,
            tick_rate: self.config.tick_rate,
            max_members: self.config.max_members as u32,
            members: self.members.iter().map(Member::info).collect(),
            last_input_seq: m.last_applied,
            schema: self.world.schema().to_proto(),
            owner,
            metadata,
            locked,
        }));
        (joined, digest)
    }

    /// The seat a restore kept for `member`, if it is `user_id`'s. Another user's (a
    /// member id reused: node numbers cycle) is given up: the simulation drops what it
    /// kept for it before this member joins.
    fn take_reserved(&mut self, member: MemberId, user_id: &str) -> Option<Reserved> {
        let seat = self.reserved.remove(&member)?;
        if *seat.user_id == *user_id {
            return Some(seat);
        }
        forget_owed(&mut self.events, member);
        // Another user under the owner's member id does not own the room.
        self.owner_left |= self.listing.with(|l| l.owner) == member;
        self.sim_calls.push(SimCall::Leave(member));
        None
    }

    /// [`Room::leave`] for the session whose outbox is `outbox`: a seat another session
    /// took over since (continued on this node under the same member id, see
    /// [`Room::join`]) stays with it. Whether the member left.
    pub fn leave_session(&mut self, member: MemberId, outbox: &Arc<Outbox>, request_id: u64) -> bool {
        self.seated(member, outbox) && self.leave(member, request_id)
    }

    /// Whether `member` is in the room with the session whose outbox is `outbox`.
    pub fn seated(&self, member: MemberId, outbox: &Arc<Outbox>) -> bool {
        self.member(member).is_some_and(|m| Arc::ptr_eq(&m.outbox, outbox))
    }

    /// Removes a member (a leave request, or its resume grace period ended). It is
    /// answered with `Left` when `request_id` is set; the others get presence; the
    /// simulation learns of it at the next tick.
    pub fn leave(&mut self, member: MemberId, request_id: u64) -> bool {
        let Some(index) = self.index.remove(&member) else {
            return false;
        };
        // A join answered before its leave, in order (with the member list as it was).
        self.answer_join(&self.members[index]);
        let gone = self.members.remove(index);
        for later in &self.members[index..] {
            self.index.insert(later.id, self.index[&later.id] - 1);
        }
        gone.outbox.leave_room(self.key, gone.join_seq);
        forget_owed(&mut self.events, member);
        if self.listing.with(|l| l.owner) == member {
            self.owner_left = true;
            self.presence_due = true;
        }
        // Ticks measure the second; an empty room stands still (and holds nothing
        // its members made: joining it again costs little).
        let last = gone.last_full.max(gone.joined_tick);
        if self.members.is_empty() {
            self.left_recently.clear();
        } else if self.snapshot_wait(last).is_some() {
            self.left_recently.insert(gone.id, last);
        }
        if request_id != 0 {
            let left = Kind::Left(proto::Left {
                request_id,
                room: self.id.to_string(),
                ..Default::default()
            });
            let _ = gone.outbox.push_reliable(encode_message(left));
        }
        if self.members.is_empty() {
            self.departed.clear();
        } else if gone.announced {
            self.departed.push(gone.info());
            self.presence_due = true;
        }
        self.sim_calls.push(SimCall::Leave(member));
        true
    }

    /// Schedules a full snapshot for `member` at the next tick and answers the request
    /// (unless `request_id` is 0).
    pub fn resync(&mut self, member: MemberId, request_id: u64) {
        let Some(&Member {
            needs_full, last_full, ..
        }) = self.member(member)
        else {
            return;
        };
        // One full snapshot per member per second at most: a 20-byte request must not
        // buy a full snapshot every tick. A request while one is pending costs nothing.
        // A resume's (request id 0) is owed: marked now, it goes once the second is up
        // (the fan-out holds it till then), not at the next full snapshot a change
        // brings (in an idle room, a second later still).
        if request_id != 0
            && !needs_full
            && let Some(wait) = self.snapshot_wait(last_full)
        {
            let error = self.rate_limited("at most one resync per second", wait, request_id);
            self.send_to(member, error);
            return;
        }
        if let Some(m) = self.member_mut(member) {
            m.needs_full = true;
        }
        if request_id == 0 {
            return;
        }
        let response = Kind::Response(proto::Response {
            request_id,
            kind: Some(proto::response::Kind::Resync(proto::ResyncScheduled {
                room: self.id.to_string(),
            })),
        });
        self.send_to(member, encode_message(response));
    }

    /// Sends `member` its `Joined` again (request id 0), with who is in the room and
    /// who owns it now: a resumed session that missed presence (or a new process that
    /// took the session over). At the next tick, or with the full snapshot the resume
    /// earned when that waits (at most one a second per member). One already owed (a
    /// join being answered) serves.
    pub fn send_joined(&mut self, member: MemberId) {
        if let Some(m) = self.member_mut(member)
            && m.joined_reply.is_none()
        {
            m.joined_reply = Some(0);
            self.presence_due = true;
        }
    }

    /// How many ticks from now a member whose last full snapshot went out at
    /// `last_full` (0: none) waits for its next: none after a second. The frame a
    /// request earns goes out at the next tick.
    pub(super) fn snapshot_wait(&self, last_full: Tick) -> Option<Tick> {
        let rate = Tick::from(self.config.tick_rate);
        let wait = (last_full + rate).saturating_sub(self.world.tick() + 1);
        (last_full != 0 && wait > 0).then_some(wait)
    }

    /// A `RATE_LIMITED` error for a full snapshot asked for `wait` ticks too soon.
    pub(super) fn rate_limited(&self, message: &str, wait: Tick, request_id: u64) -> Bytes {
        let rate = Tick::from(self.config.tick_rate);
        encode_message(Kind::Error(proto::Error {
            code: ErrorCode::RateLimited as i32,
            message: message.into(),
            request_id,
            room: self.id.to_string(),
            retry_after_ms: (wait * 1000).div_ceil(rate) as u32,
        }))
    }
}
