//! The fan-out, the last step of a tick: each member's state frame, one encoding per
//! distinct body, shared by every member it fits.

use bytes::Bytes;

use super::member::Member;
use super::{Room, TickReport};
use crate::delta::{FrameMeta, View};
use crate::engine::outbox::{Baseline, Delivery, Keep, Kept, PendingState};
use crate::packed::Values;
use crate::state::{MemberId, Own, Tick};

/// A room encodes this many bytes of full snapshots a second on average at most (see
/// `Room::fan_out`): a room of the default `max_state_bytes` once a second, one of
/// up to about 140 KB at 30 Hz at every tick, after a burst of
/// [`FULL_BURST_BYTES`].
const FULL_BYTES_PER_SECOND: i64 = 4 << 20;

/// Full snapshot bytes a room may encode at once (four of the largest room): joins
/// now and then get theirs at once, and only a steady demand is paced.
pub(super) const FULL_BURST_BYTES: i64 = 16 << 20;

/// What waits untaken for a member (its connection lost, or not reading) in a room
/// whose full snapshots are larger than this stays as it is when replacing it would
/// cost a full snapshot (a full snapshot, or a delta whose baseline left the window),
/// until a full snapshot the room encodes replaces it, or one encoded because what
/// its members keep outgrew one (see `Room::fan_out`).
const KEEP_FULL_BYTES: usize = 16 << 10;

/// Which body a member's frame uses: every member whose delta would hold the same
/// changes shares one encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKey {
    Full,
    /// Number of change ticks after the baseline: deltas against two baselines with no
    /// change between them are identical, so they share this key (if their numbers
    /// are sent the same way).
    Delta(usize, Values),
}

/// What a tick's fan-out knows before it looks at any member.
struct Pass {
    tick: Tick,
    server_time_us: u64,
    checksum: u64,
    /// Whether frames that are not full snapshots carry the checksum.
    with_checksum: bool,
    /// The world has kinds of entities only their owner sees.
    views: bool,
    oldest_baseline: Tick,
    naive: bool,
    /// A full snapshot may be encoded this tick (the room's budget is not spent).
    full_allowed: bool,
    /// Which waiting untaken frames stay as they are.
    keep: Keep,
}

impl Room {
    pub(super) fn fan_out(&mut self, tick: Tick, changed: bool, server_time_us: u64) -> TickReport {
        let mut report = TickReport {
            tick,
            ..Default::default()
        };
        let idle_frame = tick.is_multiple_of(self.config.idle_frame_interval());
        // A member whose baseline advances only when it acknowledges (QUIC datagrams)
        // gets them twice as often: an idle frame still unacknowledged when the window
        // moves past the one before would cost it a full snapshot at the next change.
        let idle_frame_acknowledged = tick.is_multiple_of((self.config.idle_frame_interval() / 2).max(1));
        let naive = self.config.naive_fanout;
        let closing = self.closing().is_some();
        // Full snapshots are paced by their size (`FULL_BYTES_PER_SECOND`, after a
        // burst): one encoding serves every member that needs one at that tick; while
        // the budget is spent the members that need one get nothing, except new
        // members, given the last one encoded (see `send_state`), and what waits
        // untaken is kept as in a room of large snapshots (`KEEP_FULL_BYTES`).
        let refill = FULL_BYTES_PER_SECOND / i64::from(self.config.tick_rate.max(1));
        self.full_budget = (self.full_budget + refill).min(FULL_BURST_BYTES);
        let full_allowed = naive || self.full_budget > 0;
        let oldest_baseline = tick.saturating_sub(self.config.history).max(1);
        let mut pass = Pass {
            tick,
            server_time_us,
            checksum: self.world.shared_checksum(),
            with_checksum: idle_frame || tick.is_multiple_of(self.config.checksum_interval),
            views: self.world.has_owner_only_kinds(),
            oldest_baseline,
            naive,
            full_allowed,
            keep: Keep::Nothing,
        };
        if !full_allowed || self.full_size > KEEP_FULL_BYTES {
            pass.keep = Keep::FullOrDeltaBefore(oldest_baseline);
        }
        self.bodies.clear();
        // A joiner's next frame is a delta against the snapshot it got: its tick must
        // still be in the window then.
        if self.recent_full.as_ref().is_some_and(|r| r.tick <= oldest_baseline) {
            self.recent_full = None;
        }

        let keeping = pass.keep != Keep::Nothing;
        let mut kept = std::mem::take(&mut self.kept);
        // The kept deltas' bodies (address, length), each counted once however many
        // members share it, and their own parts.
        let (mut kept_bodies, mut kept_own_bytes) = (std::mem::take(&mut self.kept_bodies), 0);
        // Visited from another member each tick, so that while the full snapshot
        // budget is spent, the members whose snapshots it holds back (see
        // `send_state`) are not always the same ones.
        let n = self.members.len();
        let first = if n == 0 { 0 } else { (tick % n as Tick) as usize };
        for i in (first..n).chain(0..first) {
            let m = &self.members[i];
            let own = self.own(&pass, m.id);
            let news = m.needs_full || m.behind || m.last_applied != m.last_sent_seq || own.changed == tick;
            // The outbox's delivery (a lock) is asked only when nothing else sends a frame.
            let idle_acknowledged = || idle_frame_acknowledged && m.outbox.delivery() == Delivery::Acknowledged;
            // A closing room sends everyone a frame, marked as its last (see
            // `push_state`), even when nothing changed since the one before.
            if !(naive || changed || news || idle_frame || closing || idle_acknowledged()) {
                continue;
            }
            // (What is kept for its own part stays kept: see below.)
            let replaceable = !self.own_keeps(m, own, &pass);
            match self.send_state(i, own, &pass, &mut report) {
                Some(Kept::Full) if replaceable => kept.push(i),
                Some(Kept::Delta { body, own }) if replaceable => {
                    kept.push(i);
                    kept_bodies.push((body.as_ptr() as usize, body.len()));
                    kept_own_bytes += own;
                }
                _ => {}
            }
        }
        // What is kept for members that take nothing is replaced by a full snapshot
        // when the tick encoded one anyway, or when their deltas together outgrow one
        // (a member's is as large as the changes since it stopped, and members that
        // stopped at different ticks hold different ones): they then hold one copy
        // of the room's state between them. So is an older full snapshot still
        // waiting for a member not visited this tick (the room did not change since:
        // members given one a tick apart that never read). Not what waits for a member
        // for its own part (see `own_keeps`): replacing it would share little and
        // cost an encoding of that part each time.
        let full_encoded = self.bodies.iter().any(|(key, _)| *key == BodyKey::Full);
        let mut outgrown = || {
            kept_bodies.sort_unstable();
            kept_bodies.dedup();
            kept_own_bytes + kept_bodies.iter().map(|&(_, len)| len).sum::<usize>() > self.full_size
        };
        if !naive && (full_encoded || (full_allowed && outgrown())) {
            // (The snapshot shared below: encoded this tick, or about to be.)
            if keeping {
                let visited = kept.len();
                kept.sort_unstable();
                for (i, m) in self.members.iter().enumerate() {
                    if (m.full_queued != 0 && m.full_queued < tick)
                        && !(pass.views && self.own_keeps(m, self.own(&pass, m.id), &pass))
                        && kept[..visited].binary_search(&i).is_err()
                        && m.outbox.waits_full(self.key)
                    {
                        kept.push(i);
                    }
                }
            }
            pass.keep = Keep::Nothing;
            for &i in &kept {
                let own = self.own(&pass, self.members[i].id);
                let _ = self.send_state(i, own, &pass, &mut report);
            }
        }
        kept.clear();
        self.kept = kept;
        kept_bodies.clear();
        self.kept_bodies = kept_bodies;
        self.stats.frames += u64::from(report.frames);
        self.stats.full_frames += u64::from(report.full_frames);
        self.stats.encodes += u64::from(report.encodes);
        report
    }

    /// What of the world only `member` sees (no lookup in a room without owner-only
    /// kinds: most).
    fn own(&self, pass: &Pass, member: MemberId) -> Own {
        if pass.views {
            self.world.own(member)
        } else {
            Own::default()
        }
    }

    /// Whether what waits untaken for `m` stays as it is for the sake of its own part
    /// (what it sees of owner-only kinds, `own`), in a room whose snapshots would not
    /// keep it: that part of its last full snapshot was over 16 KiB (encoded for it
    /// alone, so a new one costs as a large room's snapshot does), or the budget is
    /// spent (a new snapshot would wait anyway, see `send_state`).
    fn own_keeps(&self, m: &Member, own: Own, pass: &Pass) -> bool {
        !pass.naive && own.count > 0 && (self.full_budget <= 0 || m.own_full_bytes > KEEP_FULL_BYTES)
    }

    /// Hands the member at `i` this tick's state frame (or, while the budget is spent,
    /// the room's last full snapshot; or nothing, when its full snapshot must wait),
    /// encoding its body unless a member before it had the same; returns the waiting
    /// frame it kept instead, if any (see [`Keep`]).
    fn send_state(&mut self, i: usize, own: Own, pass: &Pass, report: &mut TickReport) -> Option<Kept> {
        let own_keeps = self.own_keeps(&self.members[i], own, pass);
        let m = &mut self.members[i];
        let keep = match pass.keep {
            _ if m.needs_full => Keep::Nothing,
            Keep::Nothing if own_keeps => Keep::FullOrDeltaBefore(pass.oldest_baseline),
            keep => keep,
        };
        let found = match m.outbox.supersede_state(self.key, keep) {
            Ok(found) => found,
            Err(kept) => {
                m.behind = true;
                return Some(kept);
            }
        };
        let delivered = found.tick;
        let full = pass.naive || m.needs_full || delivered < pass.oldest_baseline;
        // A new full snapshot (not one sent again until the client has it) at most
        // once a second per member, however it was asked for: resumes reset what was
        // delivered, and one a second cannot buy a room's state per tick. The first
        // is never held back.
        let new_full = full && !pass.naive && (m.needs_full || found.fresh);
        if new_full && m.last_full != 0 && pass.tick < m.last_full + Tick::from(self.config.tick_rate) {
            return None;
        }
        if full && !pass.full_allowed {
            // While the budget is spent, a member with nothing of the room on this
            // connection (a new one, or a session reset by a resume) gets the room's
            // last full snapshot (still within the window: see `fan_out`) and, if the
            // room changed since, a delta against it at the next tick: a steady
            // stream of joiners waits for nothing. Not one that sees entities of owner-only
            // kinds (`changed` is set when it gains one: its own part would be of
            // another tick), nor after an input was applied (the frame's
            // `last_input_seq` would be ahead of its state).
            let fits = found.fresh && m.last_applied == 0 && own.changed == 0;
            let Some(recent) = self.recent_full.as_ref().filter(|_| fits) else {
                m.behind = true;
                return None;
            };
            let frame = PendingState {
                room: self.key,
                tick: recent.tick,
                baseline: 0,
                body: recent.body.clone(),
                own: Bytes::new(),
                last_input_seq: 0,
                server_time_us: pass.server_time_us,
                last: false,
            };
            // Owed a frame at the next tick if the room changed since.
            let behind = recent.tick < self.world.last_shared_change();
            self.push_state(i, frame, found, new_full, behind, report);
            return None;
        }
        // A full snapshot's own part is encoded for its member alone: paced with the
        // room's snapshots, member by member (a member that entities of owner-only
        // kinds were shown to can be a room's worth; shown to every member, every
        // member's own part would be).
        if full && !pass.naive && own.count > 0 && self.full_budget <= 0 {
            m.behind = true;
            return None;
        }
        // Numbers relative to the baseline need a client whose state is the
        // baseline's; over QUIC datagrams it may be ahead of it.
        let values = match found.delivery {
            Delivery::Reliable => Values::AgainstBaseline,
            Delivery::Acknowledged => Values::Absolute,
        };
        let checksum_sent = full || pass.with_checksum;
        let (key, baseline) = if full {
            (BodyKey::Full, 0)
        } else {
            let changes = self.change_ticks.iter().rev().take_while(|&&t| t > delivered).count();
            (BodyKey::Delta(changes, values), delivered)
        };
        // The naive baseline shares nothing: one encoding per member.
        let shared = if pass.naive {
            None
        } else {
            self.bodies.iter().find(|(k, _)| *k == key)
        };
        let body = match shared {
            Some((_, body)) => body.clone(),
            None => {
                let meta = FrameMeta {
                    room: &self.id,
                    server_time_us: pass.server_time_us,
                    checksum: checksum_sent.then_some(pass.checksum),
                };
                (self.encoder).encode(&self.world, baseline, values, View::Shared, meta, &mut self.buf);
                let body = self.buf.split().freeze();
                report.encodes += 1;
                self.stats.bytes_encoded += body.len() as u64;
                match key {
                    BodyKey::Full => {
                        (report.full_bytes, self.full_size) = (body.len(), body.len());
                        self.full_budget -= body.len() as i64;
                        // Kept for joiners only once the budget could not pay for
                        // another: until then they get a new one.
                        self.recent_full = (!pass.naive && self.full_budget < body.len() as i64).then(|| RecentFull {
                            tick: pass.tick,
                            body: body.clone(),
                        });
                    }
                    BodyKey::Delta(..) => report.delta_bytes = report.delta_bytes.max(body.len()),
                }
                self.bodies.push((key, body.clone()));
                body
            }
        };
        // What this member sees beyond the shared body: its own entities of
        // owner-only kinds (added, changed or lost since the baseline), and its
        // view's checksum when the frame carries one.
        let own_part = if own.changed > baseline || (own.count > 0 && checksum_sent) {
            let checksum = checksum_sent.then(|| pass.checksum.wrapping_add(own.checksum));
            (self.encoder).encode_own(
                &self.world,
                self.members[i].id,
                baseline,
                values,
                checksum,
                &mut self.buf,
            );
            report.own_bytes += self.buf.len();
            self.stats.bytes_encoded += self.buf.len() as u64;
            if full && !pass.naive {
                self.full_budget -= self.buf.len() as i64;
                // Kept for joiners with no own part once the budget cannot pay for
                // another (as when the shared body was encoded, above).
                if self.full_budget < body.len() as i64 && self.recent_full.as_ref().is_none_or(|r| r.tick < pass.tick)
                {
                    self.recent_full = Some(RecentFull {
                        tick: pass.tick,
                        body: body.clone(),
                    });
                }
            }
            self.buf.split().freeze()
        } else {
            Bytes::new()
        };
        if full {
            self.members[i].own_full_bytes = own_part.len();
        }
        let frame = PendingState {
            room: self.key,
            tick: pass.tick,
            baseline,
            body,
            own: own_part,
            last_input_seq: self.members[i].last_applied,
            server_time_us: pass.server_time_us,
            last: false,
        };
        self.push_state(i, frame, found, new_full, false, report);
        None
    }

    /// Queues `frame` for the member at `i`, against the baseline
    /// `Outbox::supersede_state` found; `new_full`: it is a new full snapshot (see
    /// `Member::last_full`); `behind`: a frame is owed at the next tick however little
    /// changes.
    fn push_state(
        &mut self,
        i: usize,
        mut frame: PendingState,
        found: Baseline,
        new_full: bool,
        behind: bool,
        report: &mut TickReport,
    ) {
        // (While the events queued before the close wait, every frame may be the last.)
        frame.last = self.closing.is_some();
        let m = &mut self.members[i];
        let full = frame.baseline == 0;
        if !m.outbox.push_state(frame, found) {
            // The session was reset (resumed) meanwhile: a full snapshot next tick.
            m.needs_full = true;
            return;
        }
        m.last_sent_seq = m.last_applied;
        (m.needs_full, m.behind) = (false, behind);
        m.full_queued = if full { self.world.tick() } else { 0 };
        if new_full {
            m.last_full = self.world.tick();
        }
        report.frames += 1;
        report.full_frames += u32::from(full);
    }
}

/// The last full snapshot a room encoded, once its budget could not pay for another
/// (see `Room::send_state`).
pub(super) struct RecentFull {
    tick: Tick,
    body: Bytes,
}
