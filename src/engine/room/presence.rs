//! What members are told of each other and of the room: presence once a tick,
//! `Joined` answers, the listing's changes, the room's ownership passing on.

use bytes::Bytes;

use super::Room;
use super::member::Member;
use crate::frame::encode_message;
use crate::proto::{self, ErrorCode, MemberInfo, Presence, PresenceChange, server_message::Kind};
use crate::state::{MemberId, SERVER, Tick};

impl Room {
    /// Tells each member the room's metadata and lock (`RoomUpdated`) when they are
    /// not what it was last told, looking at most four times a second (every quarter
    /// of a second of ticks): each costs every member up to 5 KiB, and an owner may
    /// change them at its request rate, a simulation every tick. A member whose
    /// `Joined` is owed learns them from it; one whose connection is lost is told
    /// once it is back (however often they changed meanwhile, its queue holds none of
    /// it).
    pub(super) fn tell_listing(&mut self, tick: Tick) {
        let (seen, at) = self.listing_seen;
        let changes = self.listing.changes();
        let interval = Tick::from(self.config.tick_rate).div_ceil(4);
        if (changes == seen && !self.listing_behind) || (at != 0 && tick < at + interval) {
            return;
        }
        self.listing_seen = (changes, tick);
        if changes != seen || self.listing_now.is_none() {
            self.listing_now = Some(self.listing.with(|l| {
                let message = encode_message(Kind::RoomUpdated(proto::RoomUpdated {
                    room: self.id.to_string(),
                    metadata: l.metadata.clone(),
                    locked: l.locked,
                }));
                (l.told_digest(), message)
            }));
        }
        let Some((digest, message)) = &self.listing_now else {
            return;
        };
        self.listing_behind = false;
        self.sent_this_tick.resize(self.members.len(), (0, 0));
        for (m, sent) in self.members.iter_mut().zip(&mut self.sent_this_tick) {
            if !m.announced || m.joined_reply.is_some() || m.listing_told == *digest {
                continue;
            }
            if m.outbox.is_away() {
                self.listing_behind = true;
                continue;
            }
            m.listing_told = *digest;
            *sent = (sent.0 + 1, sent.1 + message.len());
            let _ = m.outbox.push_reliable(message.clone());
        }
    }

    /// Sends `message` to every announced member but `except`, counted in
    /// `sent_this_tick`.
    fn tell_announced(&mut self, message: &Bytes, except: Option<MemberId>) {
        self.sent_this_tick.resize(self.members.len(), (0, 0));
        for (m, sent) in self.members.iter().zip(&mut self.sent_this_tick) {
            if m.announced && Some(m.id) != except {
                *sent = (sent.0 + 1, sent.1 + message.len());
                let _ = m.outbox.push_reliable(message.clone());
            }
        }
    }

    /// Sends `m` the `Joined` its join is owed, if any; returns its size (0: none)
    /// and the digest of the listing it told.
    pub(super) fn answer_join(&self, m: &Member) -> (usize, u64) {
        let Some(request_id) = m.joined_reply else {
            return (0, m.listing_told);
        };
        let (joined, digest) = self.joined_message(m, request_id);
        let len = joined.len();
        let _ = m.outbox.push_reliable(joined);
        (len, digest)
    }

    /// Tells the members what changed in the room since the last tick, as one net
    /// change: those who knew of a member that left get its leave, those here before
    /// get the joins and the members whose connection was lost (`AWAY`, their seat
    /// held) or resumed (`BACK`; not told to the member itself), and each new member its `Joined` with everyone here
    /// now, then a new owner if ownership passed. A member that joined and left in
    /// between is never announced, so presence per tick is bounded by the room's size
    /// (at most twice `max_members` messages per member, and one `OWNER`), however
    /// many sessions join, leave, drop and resume.
    pub(super) fn announce(&mut self) {
        if !self.presence_due {
            return;
        }
        self.presence_due = false;
        let departed = std::mem::take(&mut self.departed);
        let arrived = self.members.iter().filter(|m| !m.announced).map(Member::info);
        let turned = (self.members.iter())
            .filter(|m| m.announced && m.away != m.away_told)
            .map(|m| {
                (
                    m.info(),
                    if m.away {
                        PresenceChange::Away
                    } else {
                        PresenceChange::Back
                    },
                )
            });
        let mut changes = (departed.into_iter().map(|info| (info, PresenceChange::Left)))
            .chain(arrived.map(|info| (info, PresenceChange::Joined)))
            .chain(turned)
            .collect::<Vec<_>>();
        // Handed over by its owner, unless it passed on since (the new owner left).
        let owner = self.listing.with(|l| l.owner);
        let handed = (self.handed_to.take())
            .filter(|&to| to == owner)
            .and_then(|to| self.member(to));
        let handed = handed.map(Member::info);
        if let Some(heir) = self.pass_ownership().or(handed) {
            changes.push((heir, PresenceChange::Owner));
        }
        self.sent_this_tick.resize(self.members.len(), (0, 0));
        for (info, change) in changes {
            // A member is not told it was away: it learns that from its own connection
            // (and would read these only after its resume).
            let except = matches!(change, PresenceChange::Away | PresenceChange::Back).then_some(info.member_id);
            let message = encode_message(Kind::Presence(Presence {
                room: self.id.to_string(),
                member: Some(info),
                change: change as i32,
            }));
            self.tell_announced(&message, except);
        }
        // A resume's `Joined` (request id 0) goes with the full snapshot the resume
        // earned, which the fan-out holds until a second after the member's last:
        // resumes in a loop get one of each a second, not the room's member list
        // each time.
        let mut held = Vec::new();
        for i in 0..self.members.len() {
            let m = &self.members[i];
            if m.joined_reply == Some(0) && self.snapshot_wait(m.last_full).is_some() {
                held.push(i);
                continue;
            }
            let len;
            (len, self.members[i].listing_told) = self.answer_join(m);
            if len > 0 {
                let sent = &mut self.sent_this_tick[i];
                *sent = (sent.0 + 1, sent.1 + len);
            }
        }
        for m in &mut self.members {
            m.announced = true;
            m.away_told = m.away;
            m.joined_reply = None;
        }
        for &i in &held {
            self.members[i].joined_reply = Some(0);
        }
        self.presence_due |= !held.is_empty();
    }

    /// The owner's `UpdateRoom` handing the room to member `update.owner`, with its
    /// other listing changes, all or nothing: refused when `to` is not in the room or
    /// is away (it would pass on at once), and within a second of the last handover
    /// (each costs every member a presence message). The members are told at the next
    /// tick. A refusal is the `Error` to answer `request_id` with.
    pub fn update_listing(
        &mut self,
        member: MemberId,
        update: &proto::UpdateRoom,
        request_id: u64,
    ) -> Result<(), Bytes> {
        let to = update.owner;
        if self.listing.with(|l| l.owner) != member {
            return Err(self.error(ErrorCode::NotOwner, crate::engine::listing::NOT_OWNER, request_id));
        }
        let refuse = |message: String| self.error(ErrorCode::BadRequest, &message, request_id);
        match self.member(to) {
            None => return Err(refuse(format!("member {to} is not in the room"))),
            Some(m) if m.away => return Err(refuse(format!("member {to} is away"))),
            // It would give the room back at once.
            Some(m) if !self.lively(m) => {
                return Err(refuse(format!(
                    "member {to} sent no input within the room's owner_quiet_ms"
                )));
            }
            Some(_) => {}
        }
        if let Some(wait) = self.snapshot_wait(self.handed_at) {
            return Err(self.rate_limited("the room was handed over less than a second ago", wait, request_id));
        }
        (self.listing.update(|l| {
            l.apply_update(member, update)?;
            l.owner = to;
            Ok(())
        }))
        .map_err(|(code, message)| self.error(code, &message, request_id))?;
        self.handed_to = Some(to);
        self.handed_at = self.world.tick() + 1;
        self.presence_due = true;
        Ok(())
    }

    /// Passes the room's ownership on when its owner left, or has been away for a
    /// second while another member is not: to the member here longest that is not
    /// away (when the owner left and every member is away, to the one here longest;
    /// in an empty room, to the next member to join). A seat a restore keeps for the
    /// owner counts as away a second after the restore, and as gone once it lapses.
    /// With `owner_quiet`, an owner that sent no input for that long counts as away
    /// too, and members that did are preferred (a quiet owner gives way only to
    /// them). A room without an owner (one the configuration keeps open) keeps none.
    /// Returns the new owner, to announce.
    fn pass_ownership(&mut self) -> Option<MemberInfo> {
        let left = std::mem::take(&mut self.owner_left);
        let owner = self.listing.with(|l| l.owner);
        if owner == SERVER {
            return None;
        }
        let second = Tick::from(self.config.tick_rate);
        let restored_a_second_ago = (self.restored_at).is_some_and(|at| self.world.tick() + 1 >= at + second);
        // Whether the owner is away (`None`: gone), and whether only quiet.
        let (away, quiet) = match self.member(owner) {
            _ if left => (None, false),
            Some(m) => (Some(m.away || self.quiet(m)), !m.away),
            None if self.reserved.contains_key(&owner) => (Some(restored_a_second_ago), false),
            None => (None, false),
        };
        if away == Some(false) {
            return None;
        }
        // Members sending inputs first (with `owner_quiet` on), then any not away.
        let lively = self.members.iter().find(|m| !m.away && self.lively(m) && m.id != owner);
        let present = || self.members.iter().find(|m| !m.away && m.id != owner);
        let heir = match away {
            // A quiet owner gives way only to a member that is not.
            Some(_) if quiet => lively?,
            Some(_) => lively.or_else(present)?,
            // Gone: one that left and joined again since gets the room back only
            // when every other member is away.
            None => (lively.or_else(present))
                .or_else(|| self.members.iter().find(|m| !m.away))
                .or_else(|| self.members.first())?,
        };
        let info = heir.info();
        self.listing.update(|l| l.owner = info.member_id);
        Some(info)
    }

    /// Whether `m` has sent no input for the room's `owner_quiet` ticks (never, when
    /// that is 0; a member's join counts as an input, so an owner has that long).
    pub(super) fn quiet(&self, m: &Member) -> bool {
        let quiet = self.config.owner_quiet;
        quiet > 0 && self.world.tick() + 1 > m.last_input_tick + quiet
    }

    /// Whether `m` may take over from a quiet owner: with `owner_quiet` on, it sent
    /// an input within it (always, when that is 0).
    pub(super) fn lively(&self, m: &Member) -> bool {
        self.config.owner_quiet == 0 || (m.sent_input && !self.quiet(m))
    }
}
