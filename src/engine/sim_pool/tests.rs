use std::time::Duration;

use super::checkpoints::PeriodicCheckpoints;
use super::*;
use crate::clock::Now;
use crate::engine::outbox::{Batch, Outbox, OutboxLimits};
use crate::engine::simulation::{Arena, ArenaConfig, Relay, SimContext, SimError};
use crate::proto::ErrorCode;
use crate::proto::{SendEvent, server_message};
use crate::state::MemberId;
use bytes::Bytes;

/// The test's end of a gate: holds the steps of "blocking" rooms until dropped, and
/// tells when one is held.
struct Held {
    _release: crossbeam_channel::Sender<()>,
    stuck: crossbeam_channel::Receiver<()>,
}

impl Held {
    /// Waits until a "blocking" room's thread is stuck in its step.
    fn wait_stuck(&self) {
        (self.stuck.recv_timeout(Duration::from_secs(10))).expect("no thread got stuck in a step");
    }
}

/// The rooms' end of a gate.
#[derive(Clone)]
struct Gate {
    hold: crossbeam_channel::Receiver<()>,
    stuck: crossbeam_channel::Sender<()>,
}

fn gate() -> (Held, Gate) {
    let (release, hold) = crossbeam_channel::bounded(0);
    let (stuck_tx, stuck) = crossbeam_channel::unbounded();
    let held = Held {
        _release: release,
        stuck,
    };
    (held, Gate { hold, stuck: stuck_tx })
}

/// A simulation whose step blocks while the gate holds, or panics on demand.
struct Gated {
    gate: Gate,
    panic_on_step: bool,
}

impl Simulation for Gated {
    fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
    fn leave(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
    fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> {
        Ok(())
    }
    fn step(&mut self, _: &mut SimContext<'_>) {
        assert!(!self.panic_on_step, "simulated game bug");
        // Blocks until the test drops its end.
        let _ = self.gate.stuck.send(());
        let _ = self.gate.hold.recv();
    }
}

/// A simulation that ends its room at its third tick (writing an entity then).
struct Ending;

impl Simulation for Ending {
    fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
    fn leave(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
    fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> {
        Ok(())
    }
    fn step(&mut self, ctx: &mut SimContext<'_>) {
        if ctx.tick == 3 {
            ctx.world.spawn(1, 0, 1, [(1, crate::state::Value::Int(3))]).unwrap();
            ctx.close_room("match over");
        }
    }
}

/// Leaves its simulation has heard of (only the farewell test makes them).
static FAREWELLS: AtomicU32 = AtomicU32::new(0);

/// A simulation that says farewell to everyone at each leave.
struct Farewell;

impl Simulation for Farewell {
    fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
    fn leave(&mut self, ctx: &mut SimContext<'_>, member: MemberId) {
        FAREWELLS.fetch_add(1, Ordering::SeqCst);
        ctx.send_event("farewell", member.to_string(), &[]);
    }
    fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> {
        Ok(())
    }
    fn step(&mut self, _: &mut SimContext<'_>) {}
}

fn pool(threads: usize, gate: Gate) -> SimPool {
    SimPool::start(config(threads, gate)).unwrap()
}

fn config(threads: usize, gate: Gate) -> PoolConfig {
    let fast = RoomConfig {
        tick_rate: 100,
        ..Default::default()
    };
    let mut room_types = HashMap::new();
    room_types.insert(
        "relay".to_string(),
        RoomType {
            config: fast.clone(),
            factory: Arc::new(|| Box::new(Relay::new())),
        },
    );
    // Arena rooms change every tick, so they send a frame every tick.
    room_types.insert(
        "arena".to_string(),
        RoomType {
            config: fast.clone(),
            factory: Arc::new(|| Box::new(Arena::new(ArenaConfig::default()))),
        },
    );
    let blocking_gate = gate.clone();
    room_types.insert(
        "blocking".to_string(),
        RoomType {
            config: fast.clone(),
            factory: Arc::new(move || {
                Box::new(Gated {
                    gate: blocking_gate.clone(),
                    panic_on_step: false,
                })
            }),
        },
    );
    room_types.insert(
        "ending".to_string(),
        RoomType {
            config: fast.clone(),
            factory: Arc::new(|| Box::new(Ending)),
        },
    );
    room_types.insert(
        "farewell".to_string(),
        RoomType {
            config: fast.clone(),
            factory: Arc::new(|| Box::new(Farewell)),
        },
    );
    room_types.insert(
        "broken".to_string(),
        RoomType {
            config: fast.clone(),
            factory: Arc::new(|| panic!("simulated game bug in a factory")),
        },
    );
    room_types.insert(
        "panicking".to_string(),
        RoomType {
            config: fast,
            factory: Arc::new(move || {
                Box::new(Gated {
                    gate: gate.clone(),
                    panic_on_step: true,
                })
            }),
        },
    );
    PoolConfig {
        threads,
        channel_capacity: 1024,
        max_rooms: 20,
        max_catch_up: 3,
        empty_room_ttl: Duration::from_secs(60),
        default_room_type: "relay".into(),
        room_types,
        creation: CreationLimits {
            max_open: 2,
            per_second: 1000.0,
            burst: 1000.0,
        },
        checkpoints: None,
        configured_rooms: HashSet::new(),
        pacer: None,
    }
}

fn join(pool: &SimPool, room: &str, room_type: &str, member: MemberId) -> Arc<Outbox> {
    let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
    let handle = pool.get_or_create(room, room_type).unwrap();
    pool.send(
        &handle,
        Command::Join {
            room: handle.key,
            room_id: handle.shared.id.clone(),
            member,
            user_id: "u".into(),
            member_data: Bytes::new(),
            outbox: outbox.clone(),
            request_id: 1,
            join_seq: 1,
            reserved: false,
        },
    )
    .unwrap();
    outbox
}

/// Waits (bounded) until `outbox` has delivered `frames` state frames; returns the
/// reliable messages seen on the way.
fn wait_for_frames(outbox: &Outbox, frames: usize) -> Vec<server_message::Kind> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut seen, mut reliable) = (0, Vec::new());
    let mut batch = Batch::default();
    while seen < frames {
        assert!(Instant::now() < deadline, "only {seen} of {frames} frames arrived");
        if outbox.drain(&mut batch) {
            seen += batch.states.len();
            for m in &batch.reliable {
                use prost::Message;
                reliable.push(proto::ServerMessage::decode(&m[..]).unwrap().kind.unwrap());
            }
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    reliable
}

#[test]
fn rooms_tick_and_answer_through_outboxes() {
    let (_gate, rx) = gate();
    let pool = pool(2, rx);
    let outbox = join(&pool, "lobby", "", 7);
    let messages = wait_for_frames(&outbox, 1);
    assert!(matches!(messages[0], server_message::Kind::Joined(ref j) if j.room == "lobby"));
    let (rooms, next) = pool.list_rooms(&RoomFilter::all(), "", 10, usize::MAX);
    assert_eq!(
        (rooms[0].members, rooms[0].room_type.as_str(), next),
        (1, "relay", None)
    );
    assert_eq!(
        pool.get_or_create("x", "nope").unwrap_err(),
        PoolError::unknown_room_type("nope", pool.config.room_types.keys())
    );
    let told = pool.get_or_create("x", "Relay").unwrap_err().to_string();
    assert!(
        told.starts_with("unknown room type `Relay`; did you mean `relay`? (this relay has: arena, blocking,"),
        "{told}"
    );
}

/// The last members leave together: the simulation hears of it at once, though
/// nobody is left to tick for, and what it sends then goes to nobody, not to the
/// next member to join.
#[test]
fn a_room_left_empty_finishes_its_tick_for_nobody() {
    let (_gate, rx) = gate();
    let pool = pool(1, rx);
    let first = join(&pool, "f", "farewell", 1);
    let second = join(&pool, "f", "farewell", 2);
    wait_for_frames(&first, 1);
    wait_for_frames(&second, 1);
    let handle = pool.room("f").unwrap();
    for (member, outbox) in [(1, &first), (2, &second)] {
        let leave = Command::Leave {
            room: handle.key,
            room_id: handle.shared.id.clone(),
            member,
            outbox: outbox.clone(),
            request_id: 0,
        };
        pool.send(&handle, leave).unwrap();
    }
    // The leaves are taken at the thread's next turn; an arena's frames (one a
    // tick) pace the wait for them.
    let other = join(&pool, "busy", "arena", 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while FAREWELLS.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the simulation never heard of the leaves");
        wait_for_frames(&other, 1);
    }
    let newcomer = join(&pool, "f", "farewell", 4);
    let mut seen = wait_for_frames(&newcomer, 1);
    seen.extend(wait_for_frames(&newcomer, 3));
    let events: Vec<_> = seen
        .iter()
        .filter(|k| matches!(k, server_message::Kind::Event(_)))
        .collect();
    assert!(events.is_empty(), "the newcomer got {events:?}");
}

/// A leave or a resync from a session that is not in the room (its join was
/// refused, or another session took its seat over) is answered `NOT_A_MEMBER` with
/// the room's id, and the member that is in it stays.
#[test]
fn a_leave_or_resync_of_a_session_not_seated_is_answered() {
    let (_gate, rx) = gate();
    let pool = pool(1, rx);
    let seated = join(&pool, "r", "relay", 7);
    wait_for_frames(&seated, 1);
    let handle = pool.room("r").unwrap();
    let other = Arc::new(Outbox::new(OutboxLimits::default()));
    let room_id = handle.shared.id.clone();
    let leave = Command::Leave {
        room: handle.key,
        room_id: room_id.clone(),
        member: 7,
        outbox: other.clone(),
        request_id: 41,
    };
    pool.send(&handle, leave).unwrap();
    let resync = Command::Resync {
        room: handle.key,
        room_id,
        member: 7,
        outbox: other.clone(),
        request_id: 42,
        joined_too: false,
    };
    pool.send(&handle, resync).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answers = Vec::new();
    while answers.len() < 2 {
        assert!(Instant::now() < deadline, "answered: {answers:?}");
        let mut batch = Batch::default();
        other.drain(&mut batch);
        for m in &batch.reliable {
            use prost::Message;
            if let Some(server_message::Kind::Error(e)) = proto::ServerMessage::decode(&m[..]).unwrap().kind {
                answers.push((e.request_id, e.code(), e.room));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(answers, [41, 42].map(|id| (id, ErrorCode::NotAMember, "r".to_string())));
    assert_eq!(pool.list_rooms(&RoomFilter::all(), "", 10, usize::MAX).0[0].members, 1);
}

/// An empty room's thread sleeps until the room expires, but a backend's call for
/// the room (who is in it, a user's removal) is answered at once.
#[test]
fn a_backend_call_for_an_empty_room_wakes_its_thread() {
    let (_gate, rx) = gate();
    let pool = SimPool::start(config(1, rx)).unwrap();
    let handle = pool.get_or_create("quiet", "relay").unwrap();
    // The thread takes the room, then sleeps until it would expire (60 s).
    std::thread::sleep(Duration::from_millis(100));
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    pool.send(
        &handle,
        Command::Roll {
            room: handle.key,
            reply,
        },
    )
    .unwrap();
    let roll = answer.recv_timeout(Duration::from_secs(2)).expect("answered at once");
    assert!(roll.members.is_empty() && roll.kept_seats.is_empty());
}

/// A pool of `threads` whose rooms checkpoint every `every_ticks` ticks (0: on
/// hand-off only), and what they checkpoint.
fn checkpointing(threads: usize, every_ticks: u32) -> (SimPool, crossbeam_channel::Receiver<Checkpoint>) {
    checkpointing_with(threads, every_ticks, |_| {})
}

/// [`checkpointing`] of the configuration `edit` leaves.
fn checkpointing_with(
    threads: usize,
    every_ticks: u32,
    edit: impl FnOnce(&mut PoolConfig),
) -> (SimPool, crossbeam_channel::Receiver<Checkpoint>) {
    let (_gate, rx) = gate();
    let (sink, checkpoints) = crossbeam_channel::unbounded();
    let mut config = config(threads, rx);
    config.checkpoints = Some(Checkpoints {
        every_ticks,
        seat_grace: Duration::from_secs(60),
        rewrite_after: Duration::from_secs(60),
        bytes_per_second: u64::MAX,
        sink: Arc::new(move |checkpoint| sink.send(checkpoint).unwrap()),
    });
    edit(&mut config);
    (SimPool::start(config).unwrap(), checkpoints)
}

/// A hand-off finishes what a room was told before its checkpoint (a member who
/// just joined has its avatar in it), and from then on the pool takes no event.
#[test]
fn a_hand_off_finishes_what_rooms_were_told_and_takes_no_more_events() {
    let (pool, checkpoints) = checkpointing(1, 0);
    let _member = join(&pool, "field", "arena", 7);
    assert!(!Rooms::handed_off(&pool));
    pool.hand_off();
    assert!(Rooms::handed_off(&pool));
    let checkpoint = next_checkpoint_of(&checkpoints, "field");
    assert_eq!(
        avatars(&checkpoint, 7),
        1,
        "the join was finished before the checkpoint"
    );
    let handle = pool.room("field").unwrap();
    let event = Command::Event {
        room: handle.key,
        member: 7,
        event: proto::SendEvent::default(),
    };
    assert!(pool.send(&handle, event).is_err(), "no event taken after the hand-off");
    // Nor a join, seated after the checkpoint and never answered (the client is
    // told UNAVAILABLE and joins where the relay sends it).
    let join = Command::Join {
        room: handle.key,
        room_id: handle.shared.id.clone(),
        member: 8,
        user_id: "u".into(),
        member_data: Bytes::new(),
        outbox: Arc::new(Outbox::new(OutboxLimits::default())),
        request_id: 2,
        join_seq: 1,
        reserved: false,
    };
    let refused = pool.send(&handle, join).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Unavailable);
}

/// A user's removal sent before a hand-off is done before the room's checkpoint
/// (its seat and avatar gone, its ban kept); after the hand-off, removals and closes
/// are refused like events, not taken and lost with the node.
#[test]
fn a_hand_off_finishes_a_removal_and_takes_none_after() {
    let (pool, checkpoints) = checkpointing(1, 0);
    let _member = join(&pool, "field", "arena", 7);
    ban_from_field(&pool, "u");
    pool.hand_off();
    let checkpoint = next_checkpoint_of(&checkpoints, "field");
    assert!(checkpoint.seats.is_empty(), "{:?}", checkpoint.seats);
    assert_eq!(avatars(&checkpoint, 7), 0);
    let banned: Vec<&str> = checkpoint.bans.iter().map(|b| &*b.user_id).collect();
    assert_eq!(banned, ["u"]);
    let unavailable = |taken| matches!(taken, Some(Err(PoolError::Unavailable(_))));
    assert!(unavailable(Rooms::remove_user(&pool, "field", "u", "", 0)));
    assert!(unavailable(Rooms::close(&pool, "field", ErrorCode::RoomClosed, "")));
}

/// A ban reaches the room's checkpoint at once, not at the next periodic one (an
/// empty room would take that only once it ticks again).
#[test]
fn a_ban_is_checkpointed_at_once() {
    let (pool, checkpoints) = checkpointing(1, 100_000);
    let _member = join(&pool, "field", "arena", 7);
    ban_from_field(&pool, "other");
    let checkpoint = next_checkpoint_of(&checkpoints, "field");
    let banned: Vec<&str> = checkpoint.bans.iter().map(|b| &*b.user_id).collect();
    assert_eq!(banned, ["other"]);
}

/// An event on its way to a thread as the node stops (checked against the
/// hand-off, not yet queued) is queued before the thread's `HandOff`, so it is in
/// the checkpoint: the hand-off waits for it. Queued after, it would be
/// acknowledged to its sender and never relayed.
#[test]
fn a_hand_off_waits_for_an_event_on_its_way() {
    let (pool, _checkpoints) = checkpointing(1, 0);
    let pool = Arc::new(pool);
    let _member = join(&pool, "field", "arena", 7);
    // What `SimPool::send` holds from its check to its send.
    let on_its_way = pool.workers[0].hand_off_gate.read();
    let stopping = std::thread::spawn({
        let pool = pool.clone();
        move || pool.hand_off()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !stopping.is_finished(),
        "the hand-off went ahead of an event on its way"
    );
    drop(on_its_way);
    assert_eq!(stopping.join().unwrap(), 1);
}

/// A node stopping hands its rooms off: each is checkpointed, then ticks no more,
/// so no input is applied (and acknowledged to its member) after its checkpoint:
/// the node that restores the room from it loses nothing its members were told.
#[test]
fn a_handed_off_room_stops_at_its_checkpoint() {
    let (pool, checkpoints) = checkpointing(2, 0);
    let outbox = join(&pool, "world", "arena", 7);
    wait_for_frames(&outbox, 3);
    assert_eq!(pool.hand_off(), 2, "both threads asked");
    let received: Vec<Checkpoint> = (0..3)
        .map(|_| checkpoints.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    let rooms: Vec<&str> = (received.iter())
        .filter_map(|c| match c {
            Checkpoint::Room(room) => Some(room.room.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(rooms, ["world"]);
    let flushed = received.iter().filter(|c| matches!(c, Checkpoint::Flushed));
    assert_eq!(flushed.count(), 2, "each thread says it is done");
    // That the room ticks no more is the shard's test of the same name.
}

/// Removes `user` from room "field" with a minute's ban, the room's thread taking it.
fn ban_from_field(pool: &SimPool, user: &str) {
    assert!(matches!(Rooms::remove_user(pool, "field", user, "", 60), Some(Ok(()))));
}

/// The next checkpoint of `room` the sink gets (within 5 s), skipping the others.
fn next_checkpoint_of(checkpoints: &crossbeam_channel::Receiver<Checkpoint>, room: &str) -> proto::RoomCheckpoint {
    loop {
        match checkpoints.recv_timeout(Duration::from_secs(5)).unwrap() {
            Checkpoint::Room(c) if c.room == room => break *c,
            _ => {}
        }
    }
}

/// The entities `member` owns in an arena room's checkpoint.
fn avatars(checkpoint: &proto::RoomCheckpoint, member: MemberId) -> usize {
    let schema = Arc::new(ArenaConfig::default().schema().unwrap());
    let mut mirror = crate::mirror::StateMirror::with_schema(schema);
    mirror
        .apply(&prost::Message::decode(&checkpoint.state[..]).unwrap())
        .unwrap();
    mirror.world().entities().filter(|e| e.owner() == member).count()
}

/// A checkpoint that comes due while the simulation has yet to hear of a leave (a
/// member its tick removed) waits for the next tick: written at once, it would
/// hold the leaver's avatar but not its seat, and the simulation of a room
/// restored from it would never hear of that leave.
#[test]
fn a_checkpoint_waits_for_the_simulation_to_hear_of_every_leave() {
    let arena = Box::new(Arena::new(ArenaConfig::default()));
    let mut room = Room::new(1, "field".into(), "arena".into(), RoomConfig::default(), arena);
    let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
    room.join(7, "u".into(), outbox, 1, 1).unwrap();
    let joined = room.tick(0).tick;
    let (sink, written) = crossbeam_channel::unbounded();
    let every_tick = Checkpoints {
        every_ticks: 1,
        seat_grace: Duration::from_secs(60),
        rewrite_after: Duration::from_secs(60),
        bytes_per_second: u64::MAX,
        sink: Arc::new(move |checkpoint| sink.send(checkpoint).unwrap()),
    };
    let mut periodic = PeriodicCheckpoints::default();
    // As a tick's removal leaves it: the member gone, its simulation not yet told.
    room.leave(7, 0);
    periodic.after_tick(&mut room, joined, Now::system(), &every_tick);
    assert!(
        written.is_empty(),
        "a checkpoint was written before the simulation heard of the leave"
    );
    let report = room.tick(0);
    periodic.after_tick(&mut room, report.tick, Now::system(), &every_tick);
    let Ok(Checkpoint::Room(checkpoint)) = written.try_recv() else {
        panic!("no checkpoint after the next tick");
    };
    assert_eq!(avatars(&checkpoint, 7), 0, "the leaver's avatar is in the checkpoint");
}

/// A room's periodic checkpoints are at least its checkpoint's size over
/// `bytes_per_second` apart: a room that changes every tick (the arena's moving
/// NPCs) but whose checkpoint takes longer than a tick at that rate waits.
#[test]
fn a_large_rooms_checkpoints_are_paced_by_their_size() {
    let arena = Box::new(Arena::new(ArenaConfig::default()));
    let mut room = Room::new(1, "field".into(), "arena".into(), RoomConfig::default(), arena);
    let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
    room.join(7, "u".into(), outbox, 1, 1).unwrap();
    let (sink, written) = crossbeam_channel::unbounded();
    let paced = Checkpoints {
        every_ticks: 1,
        seat_grace: Duration::from_secs(60),
        rewrite_after: Duration::from_secs(60),
        bytes_per_second: 1024,
        sink: Arc::new(move |checkpoint| sink.send(checkpoint).unwrap()),
    };
    let mut periodic = PeriodicCheckpoints::default();
    let start = Instant::now();
    let mut tick_at = |room: &mut Room, at: Instant| {
        let tick = room.tick(0).tick;
        let now = Now {
            instant: at,
            unix_us: 0,
        };
        periodic.after_tick(room, tick, now, &paced);
        match written.try_recv() {
            Ok(Checkpoint::Room(checkpoint)) => Some(checkpoint),
            _ => None,
        }
    };
    let first = tick_at(&mut room, start).expect("the first is written at once");
    let apart = Duration::from_secs_f64(prost::Message::encoded_len(&*first) as f64 / 1024.0);
    assert!(apart > Duration::from_millis(100), "{apart:?}");
    for n in 1..10 {
        assert!(
            tick_at(&mut room, start + apart * n / 10).is_none(),
            "written {n} tenths early"
        );
    }
    let second = tick_at(&mut room, start + apart).expect("written once its time came");
    assert!(second.tick > first.tick);
}

/// A checkpoint Redis did not take has the room's next one written even if
/// nothing changed ([`SimPool::checkpoint_again`]), not the tenth after it.
#[test]
fn a_checkpoint_asked_again_is_written_sooner_than_the_tenth_tick() {
    let (pool, checkpoints) = checkpointing(1, 1);
    let outbox = join(&pool, "quiet", "relay", 7);
    wait_for_frames(&outbox, 1);
    let next = || loop {
        match checkpoints.recv_timeout(Duration::from_secs(10)) {
            Ok(Checkpoint::Room(checkpoint)) => break checkpoint.tick,
            Ok(_) => {}
            Err(e) => panic!("no checkpoint: {e}"),
        }
    };
    // Unchanged, the room is written every tenth tick: asked again just after a
    // write, the next comes sooner. (A few tries: this thread may be descheduled
    // for the ten ticks between.)
    let gaps: Vec<u64> = (0..5)
        .map(|_| {
            while checkpoints.try_recv().is_ok() {}
            let written = next();
            pool.checkpoint_again("quiet");
            next() - written
        })
        .collect();
    assert!(gaps.iter().any(|&gap| gap < 5), "ticks between checkpoints: {gaps:?}");
}

#[test]
fn a_blocked_room_does_not_delay_a_room_on_another_thread() {
    let (held, rx) = gate();
    let pool = pool(2, rx);
    // Dropped before the pool, which waits for its threads, should an assertion fail.
    let held = held;
    let _blocked = join(&pool, "heavy", "blocking", 1);
    held.wait_stuck();
    // Least-loaded placement puts the second room on the other thread.
    let outbox = join(&pool, "light", "arena", 2);
    wait_for_frames(&outbox, 50);
    assert!(pool.metrics().ticks.get() >= 50);
}

/// New rooms go to the least busy thread (by tenths of its time), then to the one
/// with fewest rooms: a thread kept busy by a few large rooms does not take the next
/// ones as readily as an idle one with more.
#[test]
fn new_rooms_go_to_the_least_busy_thread() {
    assert_eq!(least_busy([(0, 3), (0, 2)].into_iter()), 1, "idle: by room count");
    assert_eq!(least_busy([(0, 2), (0, 2)].into_iter()), 0, "then the first");
    assert_eq!(least_busy([(350, 1), (50, 9)].into_iter()), 1, "the less busy");
    assert_eq!(least_busy([(350, 1), (320, 9)].into_iter()), 0, "as busy in tenths");
    assert_eq!(least_busy(std::iter::empty()), 0);
}

/// Sends member 1's inputs to `room`, whose thread is stuck in a step, until one is
/// refused; the refusal, once the 1,024 waiting commands of the test pool are in.
fn fill_until_refused(pool: &SimPool, room: &str) -> PoolError {
    let room = pool.room(room).unwrap();
    for seq in 1.. {
        let input = Command::Input {
            room: room.key,
            member: 1,
            seq,
            payload: input::Payload::Intent(Default::default()),
        };
        if let Err(e) = pool.send(&room, input) {
            assert_eq!(seq, 1025, "refused after {} commands", seq - 1);
            return e;
        }
    }
    unreachable!("more inputs than a u64 counts")
}

#[test]
fn a_thread_with_its_queue_full_answers_busy_then_recovers() {
    let (held, rx) = gate();
    let pool = pool(1, rx);
    let held = held;
    let _member = join(&pool, "heavy", "blocking", 1);
    held.wait_stuck();
    assert_eq!(fill_until_refused(&pool, "heavy"), PoolError::Busy);
    // Released, the thread works through the queue and takes commands again.
    drop(held);
    let room = pool.room("heavy").unwrap();
    let input = || Command::Input {
        room: room.key,
        member: 1,
        seq: u64::MAX,
        payload: input::Payload::Intent(Default::default()),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.send(&room, input()).is_err() {
        assert!(Instant::now() < deadline, "still busy");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Large payloads fill a stuck thread's queue by bytes long before its count
/// bound: 8 MiB events, at most 64 MiB of them wait.
#[test]
fn a_thread_with_too_many_payload_bytes_waiting_answers_busy() {
    let (held, rx) = gate();
    let pool = pool(1, rx);
    let held = held;
    let _member = join(&pool, "heavy", "blocking", 1);
    let room = pool.room("heavy").unwrap();
    let event = || Command::Event {
        room: room.key,
        member: crate::state::SERVER,
        event: SendEvent {
            payload: vec![0; 8 << 20].into(),
            ..Default::default()
        },
    };
    // Once the thread is stuck in the room's step, nothing is taken.
    held.wait_stuck();
    let taken = (0..20).take_while(|_| pool.send(&room, event()).is_ok()).count();
    assert_eq!(taken, 8, "events of 8 MiB queued");
}

#[test]
fn listings_page_in_id_order() {
    let (_gate, rx) = gate();
    let pool = pool(2, rx);
    for id in ["c", "a", "d", "b", "e"] {
        pool.get_or_create(id, "relay").unwrap();
    }
    let ids = |page: &[proto::RoomInfo]| page.iter().map(|r| r.room.clone()).collect::<Vec<_>>();
    let (first, next) = pool.list_rooms(&RoomFilter::all(), "", 2, usize::MAX);
    assert_eq!(
        (ids(&first), next),
        (vec!["a".to_string(), "b".into()], Some("b".into()))
    );
    let (rest, next) = pool.list_rooms(&RoomFilter::all(), "b", 10, usize::MAX);
    assert_eq!(
        (ids(&rest), next),
        (vec!["c".to_string(), "d".into(), "e".into()], None)
    );
    assert_eq!(pool.list_rooms(&RoomFilter::all(), "e", 10, usize::MAX), (vec![], None));
    // Past its bytes a page stops (one room past them: the session cuts it exact).
    let one = listing::listed_bytes(&first[0]);
    let (cut, next) = pool.list_rooms(&RoomFilter::all(), "", 10, one);
    assert_eq!((ids(&cut), next), (vec!["a".to_string(), "b".into()], Some("b".into())));
}

fn listed(metadata: &[(&str, &str)], private: bool) -> ListingState {
    ListingState {
        metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        private,
        ..ListingState::default()
    }
}

#[test]
fn listings_filter_by_type_metadata_and_openness_and_never_show_private_rooms() {
    let (_gate, rx) = gate();
    let pool = pool(1, rx);
    let ctf = listed(&[("mode", "ctf")], false);
    pool.open("a", "relay", "x", ctf.clone()).unwrap();
    pool.open("b", "arena", "x", ctf.clone()).unwrap();
    pool.open("hidden", "relay", "y", listed(&[("mode", "ctf")], true))
        .unwrap();
    pool.open("dm", "relay", "y", listed(&[("mode", "dm")], false)).unwrap();
    let locked = pool.open("locked", "relay", "z", ctf.clone()).unwrap();
    locked.shared.listing.update(|l| l.locked = true);
    // Every page, each looking at a few rooms.
    let ids = |filter: RoomFilter<'_>| {
        let (mut all, mut after) = (Vec::new(), String::new());
        loop {
            let (page, next) = pool.list_rooms(&filter, &after, 100, usize::MAX);
            all.extend(page.into_iter().map(|r| r.room));
            match next {
                Some(next) => after = next,
                None => return all,
            }
        }
    };
    assert_eq!(ids(RoomFilter::all()), ["a", "b", "dm", "locked"]);
    let relay_ctf = RoomFilter {
        room_type: "relay",
        metadata: &ctf.metadata,
        open_only: false,
    };
    assert_eq!(ids(relay_ctf), ["a", "locked"]);
    assert_eq!(
        ids(RoomFilter {
            open_only: true,
            ..relay_ctf
        }),
        ["a"]
    );
    let (page, _) = pool.list_rooms(&relay_ctf, "a", 1, usize::MAX);
    assert_eq!((page[0].metadata.clone(), page[0].locked), (ctf.metadata, true));
}

#[test]
fn quick_joins_fill_the_fullest_open_room_and_never_overbook_one() {
    let (_gate, rx) = gate();
    let pool = pool(1, rx);
    let ctf = listed(&[("mode", "ctf")], false);
    for (id, listing) in [
        ("a", ctf.clone()),
        ("b", ctf.clone()),
        ("dm", listed(&[("mode", "dm")], false)),
        ("hidden", listed(&[("mode", "ctf")], true)),
    ] {
        pool.open(id, "", id, listing).unwrap();
    }
    let b = pool.room("b").unwrap();
    join(&pool, "b", "", 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.shared.members.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the join was not handled");
        std::thread::sleep(Duration::from_millis(1));
    }
    let nothing = |_: &RoomShared| false;
    // The fullest first, then the other: every seat once, then none.
    let mut picked = Vec::new();
    while let Some(room) = pool.pick("", &ctf.metadata, &nothing) {
        picked.push(room.shared.id.to_string());
    }
    assert_eq!(picked.len(), 2 * 64 - 1);
    assert!(picked[..63].iter().all(|id| id == "b") && picked[63..].iter().all(|id| id == "a"));
    assert!(pool.pick("relay", &ctf.metadata, &nothing).is_none());
    // A reserved join handled gives its reservation back as a member.
    pool.send(
        &b,
        Command::Join {
            room: b.key,
            room_id: b.shared.id.clone(),
            member: 2,
            user_id: "u".into(),
            member_data: Bytes::new(),
            outbox: Arc::new(Outbox::new(OutboxLimits::default())),
            request_id: 1,
            join_seq: 1,
            reserved: true,
        },
    )
    .unwrap();
    // (The thread counts the member before it gives the reservation back.)
    while b.shared.reserved.load(Ordering::Relaxed) == 63 {
        assert!(Instant::now() < deadline, "the join was not handled");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(b.shared.reserved.load(Ordering::Relaxed), 62);
    assert_eq!(b.shared.members.load(Ordering::Relaxed), 2);
    // Skipped rooms (the session is in them, or its token forbids them) are not picked.
    b.shared.reserved.store(0, Ordering::Relaxed);
    let not_b = |room: &RoomShared| &*room.id == "b";
    assert!(pool.pick("", &ctf.metadata, &not_b).is_none());
}

/// A filtered page looks at so many rooms at most, and says where it stopped; a
/// quick join looks at as many of those that match.
#[test]
fn a_filtered_listing_or_a_quick_join_looks_at_so_many_rooms() {
    let (_gate, rx) = gate();
    let pool = pool(1, rx);
    let ctf = listed(&[("mode", "ctf")], false);
    let rare = RoomFilter {
        metadata: &ctf.metadata,
        ..RoomFilter::all()
    };
    // More rooms than one page looks at; the one that matches comes after them.
    let ids: Vec<String> = (0..=LIST_SCAN).map(|i| format!("r{i}")).collect();
    for id in &ids {
        pool.create_persistent(id, "relay", &Metadata::new()).unwrap();
    }
    pool.open("z", "relay", "x", ctf.clone()).unwrap();
    let (page, next) = pool.list_rooms(&rare, "", 10, usize::MAX);
    assert!(page.is_empty());
    assert_eq!(next.as_deref(), Some(ids[LIST_SCAN - 1].as_str()), "where it stopped");
    let (page, next) = pool.list_rooms(&rare, &ids[LIST_SCAN - 1], 10, usize::MAX);
    assert_eq!((page.len(), page[0].room.as_str(), next), (1, "z", None));
    // A quick join looks at that many of the rooms whose metadata matches: the
    // others, however many, hide none (nor once one changed to match).
    let nothing = |_: &RoomShared| false;
    let pick = || {
        let picked = pool.pick("relay", &ctf.metadata, &nothing)?;
        picked.shared.reserved.store(0, Ordering::Relaxed); // its seat given back
        Some(picked.shared.id.to_string())
    };
    let set_metadata = |id: &str, metadata: &Metadata| {
        let room = pool.room(id).unwrap();
        room.shared.listing.merge_metadata(metadata).unwrap();
    };
    for _ in 0..10 {
        assert_eq!(pick().as_deref(), Some("z"));
    }
    set_metadata("z", &listed(&[("mode", "race")], false).metadata);
    assert_eq!(pick(), None);
    set_metadata(&ids[2], &ctf.metadata);
    assert_eq!(pick(), Some(ids[2].clone()));
    // With more that match than it looks at, that many from a random one on: the
    // picks vary.
    for id in &ids {
        set_metadata(id, &ctf.metadata);
    }
    let picks: HashSet<Option<String>> = (0..100).map(|_| pick()).collect();
    assert!(picks.len() > 1, "{picks:?}");
}

/// Rooms a quick join could never pick (private, locked or full), however many
/// sort before an open one, take nothing of its scan; nor do rooms of other types.
#[test]
fn rooms_a_quick_join_cannot_pick_do_not_hide_one_it_can() {
    let (held, rx) = gate();
    let pool = pool(1, rx);
    // Dropped before the pool, which waits for its thread, should an assertion fail.
    let held = held;
    let ctf = listed(&[("mode", "ctf")], false);
    let mut full_rooms = Vec::new();
    for i in 0..=LIST_SCAN {
        let (private, locked, full) = (format!("a-private-{i}"), format!("b-locked-{i}"), format!("c-full-{i}"));
        pool.open(&private, "relay", &private, listed(&[("mode", "ctf")], true))
            .unwrap();
        let locked = pool.open(&locked, "relay", &locked, ctf.clone()).unwrap();
        locked.shared.listing.set_locked(true);
        full_rooms.push(pool.open(&full, "relay", &full, ctf.clone()).unwrap());
    }
    for i in 0..2 {
        pool.create_persistent(&format!("0-arena-{i}"), "arena", &ctf.metadata)
            .unwrap();
    }
    pool.open("z", "relay", "x", ctf.clone()).unwrap();
    // The rooms are made full only once the thread is stuck in a room's step (the
    // arenas' ticks stop): its passes over the rooms set their counts back to their
    // members, none.
    let _blocked = join(&pool, "stuck", "blocking", 1);
    held.wait_stuck();
    assert_eq!(fill_until_refused(&pool, "stuck"), PoolError::Busy);
    for full in &full_rooms {
        full.shared.members.store(full.shared.max_members, Ordering::Relaxed);
    }
    let nothing = |_: &RoomShared| false;
    for _ in 0..10 {
        let picked = pool.pick("relay", &ctf.metadata, &nothing);
        assert_eq!(picked.map(|r| r.shared.id.to_string()).as_deref(), Some("z"));
    }
}

/// Seats a restored room keeps for the members of its checkpoint count as taken:
/// a room whose kept seats fill it is not open.
#[test]
fn kept_seats_of_a_restored_room_count_as_taken_until_they_lapse() {
    let (_gate, rx) = gate();
    let mut config = config(1, rx);
    let grace = Duration::from_secs(2);
    config.checkpoints = Some(Checkpoints {
        every_ticks: 0,
        seat_grace: grace,
        rewrite_after: Duration::from_secs(60),
        bytes_per_second: u64::MAX,
        sink: Arc::new(|_| {}),
    });
    // Configured: an empty room that never closes.
    config.configured_rooms.insert("restored".into());
    let pool = SimPool::start(config).unwrap();
    let restored_at = Instant::now();
    let state = proto::StateFrame {
        room: "restored".into(),
        tick: 1,
        ..Default::default()
    };
    let seat = |member_id| proto::Seat {
        member_id,
        user_id: format!("u{member_id}"),
        last_input_seq: 0,
        member_data: Default::default(),
        ..Default::default()
    };
    let checkpoint = proto::RoomCheckpoint {
        room: "restored".into(),
        room_type: "relay".into(),
        tick: 1,
        state: prost::Message::encode_to_vec(&state).into(),
        seats: (1..=64).map(seat).collect(),
        ..Default::default()
    };
    let room = pool.restore(&checkpoint).unwrap().unwrap();
    assert_eq!(room.shared.occupied(), 64);
    assert!(pool.restore(&checkpoint).unwrap().is_none(), "open already");
    let nothing = |_: &RoomShared| false;
    assert!(
        pool.pick("relay", &Metadata::new(), &nothing).is_none(),
        "full of kept seats"
    );
    let open = RoomFilter {
        open_only: true,
        ..RoomFilter::all()
    };
    assert_eq!(pool.list_rooms(&open, "", 10, usize::MAX), (vec![], None));
    assert!(restored_at.elapsed() < grace, "checked within the grace");
    // Nobody came back: the empty room ticks until the seats lapse, then has room.
    let deadline = Instant::now() + grace + Duration::from_secs(5);
    while room.shared.occupied() > 0 {
        assert!(Instant::now() < deadline, "kept seats never lapsed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(pool.pick("relay", &Metadata::new(), &nothing).is_some());
}

/// Waits until `room` is closed (10 s at most).
fn wait_closed(pool: &SimPool, room: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.room(room).is_some() {
        assert!(Instant::now() < deadline, "the room was not closed");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The first `Left` waiting in `outbox`: (reason, message).
fn left_of(outbox: &Outbox) -> Option<(i32, String)> {
    last_frame_and_left(outbox).1
}

/// What a member of a closed room takes in two writes (its `Left` waits for the
/// room's last frame): the tick of the last state frame before the `Left`, and
/// the `Left`'s reason and message.
fn last_frame_and_left(outbox: &Outbox) -> (Option<Tick>, Option<(i32, String)>) {
    use prost::Message;
    let mut batch = Batch::default();
    let mut last = None;
    for _ in 0..2 {
        outbox.drain(&mut batch);
        last = batch.states.iter().map(|s| s.tick).max().or(last);
        let left = (batch.reliable.iter()).find_map(|m| match proto::ServerMessage::decode(&m[..]).unwrap().kind {
            Some(server_message::Kind::Left(l)) => Some((l.reason, l.message)),
            _ => None,
        });
        if left.is_some() {
            return (last, left);
        }
    }
    (last, None)
}

#[test]
fn a_panicking_simulation_closes_only_its_room() {
    let (_gate, rx) = gate();
    let pool = pool(1, rx);
    let doomed = join(&pool, "doomed", "panicking", 1);
    let healthy = join(&pool, "fine", "arena", 2);
    wait_closed(&pool, "doomed");
    let left = left_of(&doomed).map(|(reason, _)| reason);
    assert_eq!(
        left,
        Some(ErrorCode::RoomClosed as i32),
        "members are told the room closed"
    );
    // The same thread keeps ticking the healthy room.
    wait_for_frames(&healthy, 20);
    assert_eq!(pool.metrics().room_panics.get(), 1);
}

#[test]
fn a_simulation_ends_its_room_and_the_members_are_told_why() {
    let (_gate, rx) = gate();
    let pool = pool(1, rx);
    pool.open("final", "ending", "x", ListingState::default()).unwrap();
    let member = join(&pool, "final", "ending", 1);
    wait_closed(&pool, "final");
    let (last, left) = last_frame_and_left(&member);
    assert_eq!(last, Some(3), "the closing tick's state, before the Left");
    assert_eq!(left, Some((ErrorCode::RoomClosed as i32, "match over".to_string())));
    // Its creator's slot came back: two more rooms for "x".
    pool.open("a", "relay", "x", ListingState::default()).unwrap();
    pool.open("b", "relay", "x", ListingState::default()).unwrap();
    assert_eq!(pool.metrics().room_panics.get(), 0);
}

#[test]
fn a_simulation_that_panics_as_its_room_opens_refuses_that_join_only() {
    let (_gate, rx) = gate();
    let pool = pool(1, rx);
    for _ in 0..3 {
        // More than the creator's two rooms: each refusal gave its slot back.
        let refused = pool.open("bad", "broken", "x", ListingState::default()).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::RoomClosed, "{refused}");
    }
    assert_eq!(pool.metrics().room_panics.get(), 3);
    assert!(pool.room("bad").is_none());
    pool.open("b", "relay", "x", ListingState::default()).unwrap();
    wait_for_frames(&join(&pool, "fine", "arena", 2), 5);
}

#[test]
fn a_creator_has_so_many_rooms_open_and_gets_a_slot_back_when_one_closes() {
    let (_gate, rx) = gate();
    let pool = pool(1, rx);
    pool.open("doomed", "panicking", "x", ListingState::default()).unwrap();
    pool.open("b", "relay", "x", ListingState::default()).unwrap();
    let refused = pool.open("c", "relay", "x", ListingState::default()).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::LimitExceeded);
    assert!(refused.to_string().contains("2 rooms open"), "{refused}");
    // Joining a room that exists creates nothing; other creators are unaffected.
    pool.open("b", "relay", "x", ListingState::default()).unwrap();
    pool.open("d", "relay", "y", ListingState::default()).unwrap();
    // A member makes the panicking room tick, and it closes.
    let _member = join(&pool, "doomed", "panicking", 1);
    wait_closed(&pool, "doomed");
    pool.open("c", "relay", "x", ListingState::default()).unwrap();
}

/// A creator whose rooms close as soon as they open (a game closing rooms as they
/// empty) does not start again with a whole burst: its rate is remembered while
/// its bucket refills.
#[test]
fn a_creators_rate_outlives_its_rooms() {
    let (_gate, rx) = gate();
    let mut config = config(1, rx);
    config.creation = CreationLimits {
        max_open: 10,
        per_second: 0.001,
        burst: 2.0,
    };
    let pool = SimPool::start(config).unwrap();
    for _ in 0..2 {
        let key = pool.creators.take(&pool.config.creation, "x", Instant::now()).unwrap();
        pool.creators.release(&key);
    }
    let refused = pool
        .creators
        .take(&pool.config.creation, "x", Instant::now())
        .unwrap_err();
    assert!(refused.to_string().contains("too fast"), "{refused}");
}

/// With no rooms to create, a creator is refused without being remembered.
#[test]
fn no_creations_at_all_remember_no_creator() {
    let (_gate, rx) = gate();
    let mut config = config(1, rx);
    config.creation.max_open = 0;
    let pool = SimPool::start(config).unwrap();
    pool.create_persistent("lobby", "relay", &Metadata::new()).unwrap();
    let refused = pool.open("c", "relay", "x", ListingState::default()).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::LimitExceeded);
    assert!(refused.to_string().contains("create no rooms"), "{refused}");
    assert!(pool.creators.is_empty());
    pool.open("lobby", "relay", "x", ListingState::default()).unwrap();
}

/// A room the configuration keeps open carries its metadata: quick joins with
/// filters find it before anyone joined it.
#[test]
fn a_configured_rooms_metadata_is_matched_by_quick_joins() {
    let (_gate, rx) = gate();
    let pool = SimPool::start(config(1, rx)).unwrap();
    let canyon: Metadata = [("map".to_string(), "canyon".to_string())].into();
    pool.create_persistent("lobby", "relay", &canyon).unwrap();
    let picked = pool.pick("relay", &canyon, &|_| false).map(|h| h.shared.id.to_string());
    assert_eq!(picked.as_deref(), Some("lobby"));
    let desert: Metadata = [("map".to_string(), "desert".to_string())].into();
    assert!(pool.pick("relay", &desert, &|_| false).is_none());
}

/// A room's simulation is built outside the directory's lock: a slow factory holds
/// up no other join. Of two joins racing to open one id, the one that finishes
/// second joins the other's room and gives its creation slot back.
#[test]
fn a_room_is_built_outside_the_directory_lock() {
    let (_gate, rx) = gate();
    let mut config = config(1, rx);
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let (go, go_rx) = crossbeam_channel::bounded::<()>(1);
    let first = std::sync::atomic::AtomicBool::new(true);
    let slow = RoomType {
        config: RoomConfig::default(),
        factory: Arc::new(move || {
            if first.swap(false, Ordering::Relaxed) {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            }
            Box::new(Relay::new())
        }),
    };
    config.room_types.insert("slow".into(), slow);
    let pool = Arc::new(SimPool::start(config).unwrap());
    let opening = std::thread::spawn({
        let pool = pool.clone();
        move || pool.open("r", "slow", "x", ListingState::default())
    });
    started.recv().unwrap();
    assert!(
        pool.directory.try_lock().is_some(),
        "the directory is locked while a room is built"
    );
    pool.get_or_create("other", "relay").unwrap();
    let opened = pool.open("r", "slow", "y", ListingState::default()).unwrap();
    go.send(()).unwrap();
    let joined = opening.join().unwrap().unwrap();
    assert_eq!(joined.key, opened.key, "one room r");
    assert_eq!(pool.all_rooms().len(), 2);
    // Both of x's slots are free: the room x built was dropped.
    pool.open("x1", "relay", "x", ListingState::default()).unwrap();
    pool.open("x2", "relay", "x", ListingState::default()).unwrap();
}
