//! One simulation thread's rooms on a hand-moved clock: when rooms tick, expire and
//! are checkpointed, and when the thread wakes, without a thread or a sleep.

use std::sync::atomic::AtomicU32;

use bytes::Bytes;
use crossbeam_channel::Receiver;

use super::*;
use crate::engine::outbox::{Batch, OutboxLimits};
use crate::engine::room::RoomConfig;
use crate::engine::rooms::RoomHandle;
use crate::engine::simulation::{Arena, ArenaConfig, Relay, SimContext, SimError, Simulation};
use crate::proto::input;
use crate::state::MemberId;

/// A clock the test moves by hand.
#[derive(Clone)]
struct Hands(Arc<Mutex<Now>>);

impl Clock for Hands {
    fn now(&self) -> Now {
        *self.0.lock()
    }
}

impl Hands {
    fn set(&self, at: Instant) {
        let mut now = self.0.lock();
        let ahead = at.saturating_duration_since(now.instant);
        *now = Now {
            instant: at,
            unix_us: now.unix_us + ahead.as_micros() as u64,
        };
    }
}

const MS: Duration = Duration::from_millis(1);

/// A shard on a hand-moved clock, with what it shares with the pool.
struct Bench {
    shard: Shard,
    hands: Hands,
    start: Instant,
    next_key: RoomKey,
    checkpoints: Receiver<Checkpoint>,
    /// Turns the driver took (ticks asked for) in [`Bench::run_until`].
    turns: u32,
}

impl Bench {
    /// Rooms expire `empty_room_ttl` after they empty; they are checkpointed every
    /// `every_ticks` ticks (none: not in cluster mode; 0: on hand-off only).
    fn new(empty_room_ttl: Duration, every_ticks: Option<u32>) -> Self {
        let start = Instant::now();
        let hands = Hands(Arc::new(Mutex::new(Now {
            instant: start,
            unix_us: 1_700_000_000_000_000,
        })));
        let (sink, checkpoints) = crossbeam_channel::unbounded();
        let checkpoints_config = every_ticks.map(|every_ticks| Checkpoints {
            every_ticks,
            seat_grace: Duration::from_secs(10),
            rewrite_after: Duration::from_secs(60),
            bytes_per_second: u64::MAX,
            sink: Arc::new(move |c| sink.send(c).unwrap()),
        });
        let pool = PoolSide {
            room_count: Arc::new(AtomicU32::new(0)),
            directory: Arc::new(Mutex::new(RoomsById::new())),
            creators: Arc::new(Creators::default()),
            metrics: Arc::new(SimMetrics::default()),
            load: Arc::new(AtomicU32::new(0)),
        };
        let shard = Shard::new(pool, 3, empty_room_ttl, checkpoints_config, Box::new(hands.clone()));
        Self {
            shard,
            hands,
            start,
            next_key: 1,
            checkpoints,
            turns: 0,
        }
    }

    fn at(&self, after: Duration) -> Instant {
        self.start + after
    }

    /// Opens room `id` at 100 Hz with `sim`, as the pool does.
    fn open(&mut self, id: &str, sim: Box<dyn Simulation>) -> RoomHandle {
        let key = self.next_key;
        self.next_key += 1;
        let config = RoomConfig {
            tick_rate: 100,
            ..Default::default()
        };
        let room = Room::new(key, id.into(), "test".into(), config, sim);
        let shared = Arc::new(RoomShared::of(id.into(), "test".into(), &room, None));
        let handle = RoomHandle {
            key,
            shared: shared.clone(),
            thread: 0,
        };
        self.shard.pool.directory.lock().insert(id.into(), handle.clone());
        self.shard.pool.room_count.fetch_add(1, Ordering::Relaxed);
        self.shard.handle(Command::Create(Box::new(room), shared, false));
        handle
    }

    fn join(&mut self, room: &RoomHandle, member: MemberId) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        self.shard.handle(Command::Join {
            room: room.key,
            room_id: room.shared.id.clone(),
            member,
            user_id: format!("user{member}").into(),
            member_data: Bytes::new(),
            outbox: outbox.clone(),
            request_id: 0,
            join_seq: 1,
            reserved: false,
        });
        outbox
    }

    fn leave(&mut self, room: &RoomHandle, member: MemberId, outbox: &Arc<Outbox>) {
        self.shard.handle(Command::Leave {
            room: room.key,
            room_id: room.shared.id.clone(),
            member,
            outbox: outbox.clone(),
            request_id: 0,
        });
    }

    fn ban(&mut self, room: &RoomHandle, user: &str) {
        self.shard.handle(Command::RemoveUser {
            room: room.key,
            user_id: user.into(),
            message: String::new(),
            ban_secs: 60,
        });
    }

    /// Runs the shard as its thread would until `until`: a turn at each wake-up it
    /// asks for, on the clock.
    fn run_until(&mut self, until: Instant) {
        while let (Some(wake), _) = self.shard.next_wakes() {
            if wake > until {
                break;
            }
            self.hands.set(wake);
            self.turns += 1;
            self.shard.tick_due_rooms();
        }
        self.hands.set(until);
    }

    fn is_open(&self, room: &RoomHandle) -> bool {
        let open = self.shard.index.contains_key(&room.key);
        assert_eq!(open, self.shard.pool.directory.lock().contains_key(&room.shared.id));
        open
    }

    /// Ticks `room` has run.
    fn ticks_of(&self, room: &RoomHandle) -> u64 {
        self.shard.rooms[self.shard.index[&room.key]].room.stats().ticks
    }

    /// Ticks run on the shard.
    fn ticks(&self) -> u64 {
        self.shard.pool.metrics.ticks.get()
    }

    /// The checkpoints of rooms written so far, not yet taken.
    fn written(&self) -> Vec<proto::RoomCheckpoint> {
        (self.checkpoints.try_iter())
            .filter_map(|c| match c {
                Checkpoint::Room(room) => Some(*room),
                _ => None,
            })
            .collect()
    }
}

fn relay() -> Box<dyn Simulation> {
    Box::new(Relay::new())
}

fn arena() -> Box<dyn Simulation> {
    Box::new(Arena::new(ArenaConfig::default()))
}

/// Whether a state frame waits in `outbox` (taking what waits).
fn has_frame(outbox: &Outbox) -> bool {
    let mut batch = Batch::default();
    outbox.drain(&mut batch) && !batch.states.is_empty()
}

/// With no wait for empty rooms, a new room still waits a second for its creator's
/// join (sent just after it was created, and taken by its thread maybe a tick
/// later); once its members have left, it closes at the next turn.
#[test]
fn a_new_room_waits_a_second_for_its_first_join_whatever_the_empty_room_ttl() {
    let mut bench = Bench::new(Duration::ZERO, None);
    let unjoined = bench.open("unjoined", relay());
    bench.run_until(bench.at(999 * MS));
    assert!(bench.is_open(&unjoined), "closed before its creator could join");
    bench.run_until(bench.at(1000 * MS));
    assert!(!bench.is_open(&unjoined), "a room nobody joined stayed open");

    let left = bench.open("left", relay());
    let outbox = bench.join(&left, 1);
    bench.run_until(bench.at(1100 * MS));
    bench.leave(&left, 1, &outbox);
    // The simulation hears of the leave at the room's next tick; it closes then.
    let wake = bench.shard.next_wakes().0.unwrap();
    assert!(wake <= bench.at(1110 * MS), "waits {:?}", wake - bench.at(1100 * MS));
    bench.run_until(wake);
    assert!(!bench.is_open(&left), "an emptied room waited as a new one");
    assert_eq!(bench.shard.pool.room_count.load(Ordering::Relaxed), 0);
}

/// An empty room closes `empty_room_ttl` after it emptied, however many commands
/// that leave it empty reach it meanwhile (leaves of nobody: each used to start the
/// wait again, so that a client could keep an empty room open for ever); its thread
/// sleeps until then.
#[test]
fn an_empty_room_closes_its_ttl_after_it_emptied_whatever_reaches_it() {
    let mut bench = Bench::new(300 * MS, None);
    let room = bench.open("r", relay());
    let outbox = bench.join(&room, 1);
    bench.run_until(bench.at(50 * MS));
    bench.leave(&room, 1, &outbox);
    // Its next tick tells the simulation; then it sleeps.
    bench.run_until(bench.at(60 * MS));
    assert_eq!(bench.shard.next_wakes(), (Some(bench.at(350 * MS)), None));
    for t in (70..350).step_by(20) {
        bench.run_until(bench.at(t * MS));
        bench.leave(&room, 99, &outbox);
    }
    bench.run_until(bench.at(349 * MS));
    assert!(bench.is_open(&room), "closed early");
    bench.run_until(bench.at(350 * MS));
    assert!(!bench.is_open(&room), "the empty room stayed open");
    assert_eq!(bench.shard.next_wakes(), (None, None), "nothing left to wake for");
}

/// A room ticks at its rate while it has members; an empty one does not tick (an
/// empty arena used to move its NPCs for nobody until it was reclaimed) though its
/// thread turns for another room, and a thread with only empty rooms sleeps until
/// the first expires; a room ticks again when someone joins, the slots passed
/// meanwhile neither late nor dropped.
#[test]
fn empty_rooms_do_not_tick_and_pick_up_their_rate_when_joined() {
    let mut bench = Bench::new(Duration::from_secs(60), None);
    let room = bench.open("quiet", arena());
    let outbox = bench.join(&room, 7);
    bench.run_until(bench.at(100 * MS));
    let ticks = bench.ticks_of(&room);
    assert!((10..=11).contains(&ticks), "{ticks} ticks in 100 ms at 100 Hz");
    assert!(has_frame(&outbox));
    bench.leave(&room, 7, &outbox);
    let busy = bench.open("busy", arena());
    let busy_member = bench.join(&busy, 1);
    bench.run_until(bench.at(5_000 * MS));
    assert!(bench.turns >= 490, "{} turns", bench.turns);
    assert!(bench.ticks_of(&room) <= ticks + 1, "an empty room ticked");
    bench.leave(&busy, 1, &busy_member);
    bench.run_until(bench.at(5_050 * MS));
    let (wake, tick) = bench.shard.next_wakes();
    assert_eq!(
        (wake, tick),
        (Some(bench.at(60_100 * MS)), None),
        "sleeps until the first expires"
    );
    let outbox = bench.join(&room, 8);
    let ticks = bench.ticks_of(&room);
    bench.run_until(bench.at(5_150 * MS));
    let ran = bench.ticks_of(&room) - ticks;
    assert!((9..=11).contains(&ran), "{ran} ticks in 100 ms after the join");
    assert!(has_frame(&outbox));
    let m = &bench.shard.pool.metrics;
    assert_eq!((m.overruns.get(), m.dropped_ticks.get()), (0, 0));
}

/// A thread that comes back late ticks each room at most `max_catch_up` times at
/// once, and counts the slots it runs late and those it drops.
#[test]
fn a_late_turn_catches_up_a_bounded_number_of_ticks() {
    let mut bench = Bench::new(Duration::from_secs(60), None);
    let room = bench.open("busy", arena());
    let _outbox = bench.join(&room, 1);
    bench.run_until(bench.at(10 * MS));
    let ticks = bench.ticks();
    // Half a second late: 50 slots passed.
    bench.hands.set(bench.at(510 * MS));
    bench.shard.tick_due_rooms();
    assert_eq!(bench.ticks() - ticks, 3, "max_catch_up ticks at once");
    let m = &bench.shard.pool.metrics;
    assert!(
        m.overruns.get() >= 1 && m.dropped_ticks.get() >= 40,
        "{} late, {} dropped",
        m.overruns.get(),
        m.dropped_ticks.get()
    );
    // Then back on its rate, on the grid.
    let (wake, _) = bench.shard.next_wakes();
    assert!(wake.unwrap() > bench.at(510 * MS) && wake.unwrap() <= bench.at(520 * MS));
}

/// Rooms of one rate on a thread are due in eight phases: the thread wakes eight
/// times a period however many rooms it has, and a ninth room shares a phase.
#[test]
fn rooms_tick_in_eight_phases() {
    let mut bench = Bench::new(Duration::from_secs(60), None);
    let _members: Vec<_> = (0..24)
        .map(|i| {
            let room = bench.open(&format!("room{i}"), relay());
            bench.join(&room, 1)
        })
        .collect();
    bench.run_until(bench.at(20 * MS));
    let (turns, ticks) = (bench.turns, bench.ticks());
    bench.run_until(bench.at(120 * MS));
    assert_eq!(bench.turns - turns, 80, "eight turns a period for 24 rooms");
    assert_eq!(bench.ticks() - ticks, 240, "each room once a period");
}

/// Bans in a row make one checkpoint at once and one a second later holding the
/// rest, not one each; an empty room, which does not tick, wakes for it.
#[test]
fn bans_in_a_row_are_checkpointed_once_a_second() {
    let mut bench = Bench::new(Duration::from_secs(60), Some(100_000));
    let room = bench.open("field", relay());
    bench.ban(&room, "first");
    let first = bench.written();
    assert_eq!(first.len(), 1, "at once");
    assert_eq!(first[0].bans.len(), 1);
    bench.run_until(bench.at(100 * MS));
    for i in 0..20 {
        bench.ban(&room, &format!("user{i}"));
    }
    assert!(bench.written().is_empty(), "the second waits");
    assert_eq!(bench.shard.next_wakes().0, Some(bench.at(1000 * MS)), "wakes for it");
    bench.run_until(bench.at(999 * MS));
    assert!(bench.written().is_empty(), "written early");
    bench.run_until(bench.at(1000 * MS));
    let second = bench.written();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].bans.len(), 21);
    bench.run_until(bench.at(5_000 * MS));
    assert!(bench.written().is_empty(), "one checkpoint for the twenty");
}

/// A room that does not change is checkpointed every tenth time only (an idle room
/// of a megabyte would cost Redis a megabyte a second otherwise); one that changes
/// every tick, at every tick.
#[test]
fn an_unchanged_room_is_checkpointed_every_tenth_time() {
    let mut bench = Bench::new(Duration::from_secs(60), Some(1));
    let quiet = bench.open("quiet", relay());
    let _outbox = bench.join(&quiet, 7);
    bench.run_until(bench.at(10 * MS));
    bench.written();
    let ticks = bench.ticks();
    bench.run_until(bench.at(1_010 * MS));
    assert_eq!(bench.ticks() - ticks, 100);
    assert_eq!(bench.written().len(), 10, "of 100 ticks of an idle room");

    let moving = bench.open("moving", arena());
    let _outbox = bench.join(&moving, 8);
    bench.run_until(bench.at(1_110 * MS));
    let written = bench.written();
    let of_moving = written.iter().filter(|c| c.room == "moving").count();
    assert!(
        (9..=11).contains(&of_moving),
        "{of_moving} checkpoints in 10 ticks of a moving room"
    );
}

/// A node stopping hands its rooms off: each is checkpointed, then none ticks, so
/// no input is applied (and acknowledged to its member) after its checkpoint; the
/// thread has nothing to wake for.
#[test]
fn a_handed_off_room_stops_at_its_checkpoint() {
    let mut bench = Bench::new(Duration::from_secs(60), Some(0));
    let room = bench.open("world", arena());
    let _outbox = bench.join(&room, 7);
    bench.run_until(bench.at(50 * MS));
    bench.shard.handle(Command::HandOff);
    let handed: Vec<Checkpoint> = bench.checkpoints.try_iter().collect();
    assert!(
        matches!(&handed[..], [Checkpoint::Room(r), Checkpoint::Flushed] if r.room == "world"),
        "{handed:?}"
    );
    let ticks = bench.ticks();
    assert_eq!(bench.shard.next_wakes(), (None, None));
    bench.hands.set(bench.at(1_000 * MS));
    bench.shard.tick_due_rooms();
    assert_eq!(bench.ticks(), ticks, "a room ticked after its checkpoint");
}

/// Events a hand-off could not relay to a member over its share (four ticks of it,
/// five of these a tick) go with the room's checkpoint, owed to that member; one
/// tick of the room's own between the events and the hand-off relays five more.
#[test]
fn a_hand_off_checkpoints_the_events_still_owed() {
    for ticked_between in [false, true] {
        let mut bench = Bench::new(Duration::from_secs(60), Some(0));
        let room = bench.open("field", arena());
        let _sender = bench.join(&room, 7);
        let _flooded = bench.join(&room, 8);
        bench.run_until(bench.at(20 * MS));
        for n in 0..30 {
            let event = proto::SendEvent {
                room: "field".into(),
                kind: format!("e{n}"),
                payload: Bytes::from(vec![0; 12_000]),
                targets: vec![8],
            };
            bench.shard.handle(Command::Event {
                room: room.key,
                member: 7,
                event,
            });
        }
        if ticked_between {
            bench.run_until(bench.at(30 * MS));
        }
        bench.shard.handle(Command::HandOff);
        let pending = bench.written().remove(0).pending_events;
        let kinds: Vec<String> = pending.iter().map(|p| p.event.as_ref().unwrap().kind.clone()).collect();
        let relayed = if ticked_between { 25 } else { 20 };
        assert_eq!(kinds, (relayed..30).map(|n| format!("e{n}")).collect::<Vec<_>>());
        assert!(pending.iter().all(|p| p.owed == [8]));
    }
}

/// A simulation that panics saving what it keeps beside the world.
struct Unsavable;

impl Simulation for Unsavable {
    fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
    fn leave(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
    fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> {
        Ok(())
    }
    fn step(&mut self, _: &mut SimContext<'_>) {}
    fn save(&self) -> Vec<u8> {
        panic!("simulated game bug in save")
    }
}

/// A checkpoint asks the simulation what it saves: one that panics there closes
/// only its room, as a panic in a tick does, and its members are told; the thread's
/// other rooms go on. The checkpoint a ban asks between ticks, periodic ones after
/// ticks, and a hand-off's.
#[test]
fn a_simulation_that_panics_saving_closes_only_its_room() {
    // (Its `Left` waits for the room's last frame: two writes.)
    let left_of = |outbox: &Outbox| {
        let mut batch = Batch::default();
        (0..2).any(|_| {
            outbox.drain(&mut batch);
            (batch.reliable.iter()).any(|m| {
                let message = <proto::ServerMessage as prost::Message>::decode(&m[..]).unwrap();
                matches!(message.kind, Some(proto::server_message::Kind::Left(_)))
            })
        })
    };
    // A ban's, between ticks (the periodic ones too far apart).
    let mut bench = Bench::new(Duration::from_secs(60), Some(100_000));
    let bad = bench.open("bad", Box::new(Unsavable));
    let member = bench.join(&bad, 1);
    bench.run_until(bench.at(20 * MS));
    bench.ban(&bad, "someone");
    bench.run_until(bench.at(30 * MS));
    assert!(!bench.is_open(&bad), "closed");
    assert!(left_of(&member), "its member told");
    assert_eq!(bench.shard.pool.metrics.room_panics.get(), 1);

    // Periodic ones, after ticks.
    let mut bench = Bench::new(Duration::from_secs(60), Some(2));
    let bad = bench.open("bad", Box::new(Unsavable));
    let field = bench.open("field", arena());
    let (_bad_member, _member) = (bench.join(&bad, 1), bench.join(&field, 2));
    bench.run_until(bench.at(30 * MS));
    assert!(!bench.is_open(&bad));
    bench.written();
    bench.run_until(bench.at(130 * MS));
    let of_field = bench.written().into_iter().filter(|c| c.room == "field").count();
    assert!(
        (4..=6).contains(&of_field),
        "the other room goes on: {of_field} checkpoints"
    );

    // A hand-off's: the room is closed, not checkpointed, and the others are.
    let mut bench = Bench::new(Duration::from_secs(60), Some(0));
    let bad = bench.open("bad", Box::new(Unsavable));
    let field = bench.open("field", arena());
    let (_bad_member, _member) = (bench.join(&bad, 1), bench.join(&field, 2));
    bench.run_until(bench.at(20 * MS));
    bench.shard.handle(Command::HandOff);
    let handed: Vec<Checkpoint> = bench.checkpoints.try_iter().collect();
    assert!(
        matches!(&handed[..], [Checkpoint::Closed(id, _), Checkpoint::Room(r), Checkpoint::Flushed]
            if &**id == "bad" && r.room == "field"),
        "{handed:?}"
    );
    assert!(!bench.is_open(&bad) && bench.is_open(&field));
}

/// A simulation whose step takes `step` of the hand-moved clock.
struct Slow {
    hands: Hands,
    step: Duration,
}

impl Simulation for Slow {
    fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
    fn leave(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
    fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> {
        Ok(())
    }
    fn step(&mut self, _: &mut SimContext<'_>) {
        let now = self.hands.now().instant;
        self.hands.set(now + self.step);
    }
}

/// The thread publishes the share of its time spent ticking, each second (the pool
/// places new rooms by it), and none at once when its rooms empty.
#[test]
fn a_thread_publishes_how_busy_its_ticks_keep_it() {
    let mut bench = Bench::new(Duration::from_secs(60), None);
    let slow = Box::new(Slow {
        hands: bench.hands.clone(),
        step: 4 * MS,
    });
    let room = bench.open("slow", slow);
    let outbox = bench.join(&room, 1);
    let published = bench.shard.pool.load.clone();
    let load = || published.load(Ordering::Relaxed);
    bench.run_until(bench.at(500 * MS));
    assert_eq!(load(), 0, "nothing published within the first second");
    bench.run_until(bench.at(2_500 * MS));
    assert!(
        (380..=420).contains(&load()),
        "4 ms of every 10: {} thousandths",
        load()
    );
    bench.leave(&room, 1, &outbox);
    bench.run_until(bench.at(2_600 * MS));
    assert_eq!(load(), 0, "no room to tick");
}
