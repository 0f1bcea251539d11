//! Criterion benches of the room engine.
//!
//! - `t1_tick/{64,512}_members`: target T1. One relay room, 1,024 entities (4 fields:
//!   x, y, hp, name), 25 % of them moving (x and y change) each tick. Timed: pushing
//!   the tick's inputs, then `Room::tick` (apply inputs, step, checksum, diff, encode,
//!   fan-out into every member's outbox). Not timed: draining the outboxes, which is
//!   the transport's work.
//! - `t1_encode/{delta,full}/{64,512}_members`: the encoding alone, for the same world.
//! - `t2_fanout/N`: handing one encoded tick to N member outboxes.
//! - `fanout_mode/{shared,naive}/64_members`: the T1 tick with the shared fan-out
//!   against the naive baseline (a full snapshot encoded per member per tick).
//! - `owner_only/{shared,hidden}/{64,512}_members`: the T1 tick with the kind
//!   declared, seen by every member, against seen by its owner only (each member's
//!   entities in its own part of the frame).
//! - `matrix/{relay,arena}/<M>m_<E>e_<P>pct`: the same timed tick for 16, 64 and 512
//!   members × 64, 1,024 and 8,192 entities × 5, 25 and 100 % of them changing per
//!   tick, on both simulations (short measurements: 54 workloads, less the arena
//!   with fewer entities than avatars). Relay: each member moves its share of the
//!   entities it owns with one input. Arena: that share of the avatars (by intent) and
//!   of the NPCs move.
//! - `codec/{decode,apply}/{delta,full}`: the client side of the T1 frames: prost
//!   decoding into `StateFrame`, and applying a decoded frame to a `StateMirror`.
//! - `quick_join/{pick,list_page}/{1000,10000}`: a quick join's pick and a filtered
//!   listing page among that many rooms on one node.
//! - `sight/{grid,pairs}/{64,400}_players`: a game's interest management by distance
//!   (each player sees the players within 100 of it on a 1,000 × 1,000 field, every
//!   player moving): [`Sight`]'s grid against showing or hiding every pair, as a
//!   simulation would without it. Timed: one tick's shows and hides.
//!
//! The same run prints target T3 (bytes of the full snapshot, the delta, and an idle
//! room, for a relay room without and with declared kinds and for an arena), target
//! T8 (bytes per changed entity on the side-by-side arena workload: one room of 200
//! or 400 members and 60 NPCs, everything moving, 20 Hz) and a bytes table for every
//! matrix workload. Run: `cargo bench --bench tick`;
//! one part: `cargo bench --bench tick -- matrix/relay`.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use tickrelay::config::Config;
use tickrelay::delta::{self, FrameMeta};
use tickrelay::engine::listing::{ListingState, Metadata};
use tickrelay::engine::outbox::{Batch, Keep, Outbox, OutboxLimits, PendingState};
use tickrelay::engine::room::{Room, RoomConfig, TickReport};
use tickrelay::engine::rooms::{RoomFilter, Rooms};
use tickrelay::engine::sim_pool::SimPool;
use tickrelay::engine::simulation::{Arena, ArenaConfig, EntityLimits, Relay, Sight, Simulation};
use tickrelay::mirror::StateMirror;
use tickrelay::proto::{Entity, EntityUpdate, EntityWrites, Field, StateFrame, input};
use tickrelay::state::{FieldSpec, FieldType, KindSchema, MemberId, Schema, Value, World};

/// Which simulation a workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sim {
    Relay,
    /// The relay with the workload's kind declared ([`relay_schema`]): packed blocks.
    DeclaredRelay,
    /// The same kind seen by its owner only: each member's own part encoded apart.
    HiddenRelay,
    Arena,
}

/// A workload: one room, its members, how many entities and how many change per tick.
#[derive(Debug, Clone, Copy)]
struct Shape {
    sim: Sim,
    members: u64,
    /// Entities in the world (arena: avatars included).
    entities: u64,
    /// Share of the entities that change per tick, in percent: 5, 25 or 100 (any
    /// divisor of 100 for the relay).
    changing_pct: u64,
    naive: bool,
    tick_rate: u32,
}

impl Shape {
    /// The T1 workload: a relay room with 1,024 entities, 25 % changing.
    fn t1(members: u64) -> Self {
        Self {
            sim: Sim::Relay,
            members,
            entities: 1024,
            changing_pct: 25,
            naive: false,
            tick_rate: 30,
        }
    }

    /// The side-by-side arena workload: one room, 60 NPCs and an avatar per member,
    /// everything moving, 20 Hz.
    fn side_by_side(members: u64) -> Self {
        Self {
            sim: Sim::Arena,
            members,
            entities: members + 60,
            changing_pct: 100,
            naive: false,
            tick_rate: 20,
        }
    }

    /// An arena has one avatar per member, so it needs at least that many entities.
    fn feasible(&self) -> bool {
        self.sim != Sim::Arena || self.entities >= self.members
    }

    fn name(&self) -> String {
        let sim = match self.sim {
            Sim::Relay => "relay",
            Sim::DeclaredRelay => "relay-declared",
            Sim::HiddenRelay => "relay-hidden",
            Sim::Arena => "arena",
        };
        format!("{sim}/{}m_{}e_{}pct", self.members, self.entities, self.changing_pct)
    }
}

struct Workload {
    shape: Shape,
    room: Room,
    outboxes: Vec<Arc<Outbox>>,
    /// Relay: the entities each member owns (entity `i` belongs to member
    /// `(i - 1) * members / entities`: contiguous blocks, or one entity for some
    /// members when there are fewer entities than members).
    owned: Vec<Vec<u64>>,
    seq: u64,
    tick: u64,
    batch: Batch,
}

impl Workload {
    fn new(shape: Shape) -> Self {
        let Shape { members, entities, .. } = shape;
        let config = RoomConfig {
            tick_rate: shape.tick_rate,
            naive_fanout: shape.naive,
            max_members: members as usize,
            limits: EntityLimits {
                max_entities_per_member: entities as usize,
                ..Default::default()
            },
            ..Default::default()
        };
        let sim: Box<dyn Simulation> = match shape.sim {
            Sim::Relay => Box::new(Relay::new()),
            Sim::DeclaredRelay => Box::new(Relay::with_schema(Arc::new(relay_schema()))),
            Sim::HiddenRelay => {
                let unit = relay_schema().kinds()[0].clone().seen_by_owner_only();
                Box::new(Relay::with_schema(Arc::new(Schema::new(vec![unit]).unwrap())))
            }
            Sim::Arena => Box::new(Arena::new(ArenaConfig {
                npcs: (entities - members) as u32,
                npc_moving_share: shape.changing_pct as f32 / 100.0,
                ..Default::default()
            })),
        };
        let mut room = Room::new(1, "bench".into(), "bench".into(), config, sim);
        let outboxes: Vec<_> = (0..members)
            .map(|m| {
                let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
                room.join(m + 1, format!("bot-{m}").into(), outbox.clone(), 1, 1)
                    .unwrap();
                outbox
            })
            .collect();
        let mut owned = vec![Vec::new(); members as usize];
        if shape.sim != Sim::Arena {
            for id in 1..=entities {
                owned[((id - 1) * members / entities) as usize].push(id);
            }
        }
        let mut w = Self {
            shape,
            room,
            outboxes,
            owned,
            seq: 1,
            tick: 0,
            batch: Batch::default(),
        };
        for (m, ids) in w.owned.iter().enumerate().filter(|(_, ids)| !ids.is_empty()) {
            let create = ids
                .iter()
                .map(|&id| Entity {
                    id,
                    owner: 0,
                    kind: 1,
                    fields: vec![
                        float(1, id as f32),
                        float(2, 0.0),
                        Field {
                            id: 3,
                            value: Some(Value::Int(100)),
                        },
                        Field {
                            id: 4,
                            value: Some(Value::String(format!("unit-{id}"))),
                        },
                    ],
                })
                .collect();
            let writes = EntityWrites {
                create,
                ..Default::default()
            };
            w.room
                .push_input(m as u64 + 1, w.seq, input::Payload::Writes(Box::new(writes)));
        }
        w.room.tick(0);
        w.drain();
        w
    }

    /// The inputs of the next tick, one per member. Relay: each member moves its
    /// entities whose id is due this tick (rotating, `changing_pct` % of all). Arena:
    /// the first `changing_pct` % of the members steer (reversing every two seconds,
    /// so avatars never pin against a wall), the others send a standstill intent.
    /// Building the inputs is the transport's decoding work, so it is not timed.
    fn inputs(&mut self) -> Vec<(u64, u64, input::Payload)> {
        self.tick += 1;
        self.seq += 1;
        let (tick, seq) = (self.tick, self.seq);
        match self.shape.sim {
            Sim::Relay | Sim::DeclaredRelay | Sim::HiddenRelay => {
                let period = 100 / self.shape.changing_pct;
                let mut inputs = Vec::new();
                for (m, ids) in self.owned.iter().enumerate() {
                    let update: Vec<_> = ids
                        .iter()
                        .filter(|&&id| (id + tick).is_multiple_of(period))
                        .map(|&id| EntityUpdate {
                            id,
                            fields: vec![float(1, (id + tick) as f32), float(2, tick as f32 * 0.5)],
                        })
                        .collect();
                    if update.is_empty() {
                        continue;
                    }
                    let writes = EntityWrites {
                        update,
                        ..Default::default()
                    };
                    inputs.push((m as u64 + 1, seq, input::Payload::Writes(Box::new(writes))));
                }
                inputs
            }
            Sim::Arena => {
                let moving = (self.shape.members * self.shape.changing_pct).div_ceil(100);
                let sign: i8 = if (tick / 60).is_multiple_of(2) { 1 } else { -1 };
                (0..self.shape.members)
                    .map(|m| {
                        let intent = if m < moving { [100 * sign, 60 * sign] } else { [0, 0] };
                        let intent = Bytes::copy_from_slice(&intent.map(|v| v as u8));
                        (m + 1, seq, input::Payload::Intent(intent))
                    })
                    .collect()
            }
        }
    }

    /// Pushes the inputs and runs the tick.
    fn run(&mut self, inputs: Vec<(u64, u64, input::Payload)>) -> TickReport {
        for (member, seq, payload) in inputs {
            self.room.push_input(member, seq, payload);
        }
        self.room.tick(1)
    }

    fn step(&mut self) -> TickReport {
        let inputs = self.inputs();
        self.run(inputs)
    }

    fn drain(&mut self) {
        for outbox in &self.outboxes {
            outbox.drain(&mut self.batch);
        }
    }

    /// Runs `iters` ticks and returns the time spent in the timed part (see the module
    /// documentation), checking that each tick encoded `encodes` bodies.
    fn timed_ticks(&mut self, iters: u64, encodes: u32) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let inputs = self.inputs();
            let start = Instant::now();
            let report = self.run(inputs);
            total += start.elapsed();
            assert_eq!(report.encodes, encodes, "{}: encodings per tick", self.shape.name());
            self.drain();
        }
        total
    }

    /// Bytes of this workload's frames: the median delta over `ticks` ticks, then the
    /// full snapshot (sent to a member that asked for a resync).
    fn frame_bytes(&mut self, ticks: usize) -> FrameBytes {
        let mut deltas: Vec<usize> = (0..ticks)
            .map(|_| {
                let report = self.step();
                self.drain();
                report.delta_bytes
            })
            .collect();
        deltas.sort_unstable();
        self.room.resync(1, 1);
        let full = self.step().full_bytes;
        self.drain();
        FrameBytes {
            full,
            delta: deltas[deltas.len() / 2],
        }
    }
}

/// Sizes of a workload's encoded frame bodies.
#[derive(Debug, Clone, Copy)]
struct FrameBytes {
    full: usize,
    delta: usize,
}

/// The relay workload's kind declared: x and y on a 1/8 grid, hp, a short name.
fn relay_schema() -> Schema {
    let coordinate = |id, name| FieldSpec::new(id, name, FieldType::float(0.0, 100_000.0, 0.125).unwrap());
    let unit = KindSchema::new(
        1,
        "unit",
        vec![
            coordinate(1, "x"),
            coordinate(2, "y"),
            FieldSpec::new(3, "hp", FieldType::int(0, 1000).unwrap()),
            FieldSpec::new(4, "name", FieldType::String { max_len: 16 }),
        ],
    )
    .unwrap();
    Schema::new(vec![unit]).unwrap()
}

fn float(id: u32, v: f32) -> Field {
    Field {
        id,
        value: Some(Value::Float(v)),
    }
}

fn t1_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("t1_tick");
    for members in [64u64, 512] {
        let mut w = Workload::new(Shape::t1(members));
        group.bench_function(BenchmarkId::from_parameter(format!("{members}_members")), |b| {
            // One encoding per tick for every member count.
            b.iter_custom(|iters| w.timed_ticks(iters, 1))
        });
    }
    group.finish();
}

/// Issue 7's baseline: the T1 tick with the shared fan-out (one delta encoded per
/// tick) against the naive one (a full snapshot encoded per member per tick).
fn naive_vs_shared(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_mode");
    for (name, naive, encodes) in [("shared", false, 1), ("naive", true, 64)] {
        let mut w = Workload::new(Shape { naive, ..Shape::t1(64) });
        group.bench_function(BenchmarkId::new(name, "64_members"), |b| {
            b.iter_custom(|iters| w.timed_ticks(iters, encodes))
        });
    }
    group.finish();
}

/// The T1 tick with the kind declared, seen by everyone against seen by its owner
/// only (every member's own part encoded apart, its checksum on each frame).
fn owner_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("owner_only");
    for (name, sim) in [("shared", Sim::DeclaredRelay), ("hidden", Sim::HiddenRelay)] {
        for members in [64u64, 512] {
            let mut w = Workload::new(Shape {
                sim,
                ..Shape::t1(members)
            });
            group.bench_function(BenchmarkId::new(name, format!("{members}_members")), |b| {
                b.iter_custom(|iters| w.timed_ticks(iters, 1))
            });
        }
    }
    group.finish();
}

/// The tick for every workload of the matrix, then a bytes table for each.
fn matrix(c: &mut Criterion) {
    let mut group = c.benchmark_group("matrix");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(800));
    let rows = RefCell::new(Vec::new());
    for sim in [Sim::Relay, Sim::Arena] {
        for members in [16, 64, 512] {
            for entities in [64, 1024, 8192] {
                for changing_pct in [5, 25, 100] {
                    let shape = Shape {
                        sim,
                        members,
                        entities,
                        changing_pct,
                        naive: false,
                        tick_rate: 30,
                    };
                    if !shape.feasible() {
                        continue;
                    }
                    // Built on first use, so a filtered run skips the set-up.
                    let mut w = None;
                    group.bench_function(shape.name(), |b| {
                        let w = w.get_or_insert_with(|| {
                            let mut w = Workload::new(shape);
                            rows.borrow_mut().push((shape, w.frame_bytes(16)));
                            w
                        });
                        b.iter_custom(|iters| w.timed_ticks(iters, 1))
                    });
                }
            }
        }
    }
    group.finish();
    let rows = rows.into_inner();
    if rows.is_empty() {
        return;
    }
    println!();
    println!("Bytes per frame body for each matrix workload (median delta of 16 ticks; full snapshot)");
    println!("| workload | full snapshot | delta | delta / full |");
    println!("|---|---|---|---|");
    for (shape, bytes) in rows {
        println!(
            "| {} | {} | {} | {:.1} % |",
            shape.name(),
            bytes.full,
            bytes.delta,
            100.0 * bytes.delta as f64 / bytes.full as f64
        );
    }
    println!();
}

fn t1_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("t1_encode");
    for members in [64u64, 512] {
        let mut w = Workload::new(Shape::t1(members));
        w.step();
        let world = w.room.world();
        let baseline = world.tick() - 1;
        let meta = FrameMeta {
            room: "bench",
            server_time_us: 1,
            checksum: Some(world.checksum()),
        };
        let mut buf = Vec::with_capacity(64 * 1024);
        for (name, baseline) in [("delta", baseline), ("full", 0)] {
            buf.clear();
            delta::encode_state(world, baseline, meta, &mut buf);
            group.throughput(Throughput::Bytes(buf.len() as u64));
            group.bench_function(BenchmarkId::new(name, format!("{members}_members")), |b| {
                b.iter(|| {
                    buf.clear();
                    delta::encode_state(world, baseline, meta, &mut buf);
                    black_box(buf.len())
                })
            });
        }
    }
    group.finish();
}

fn t2_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("t2_fanout");
    let body = Bytes::from(vec![0u8; 6 * 1024]);
    for n in [100usize, 1_000, 10_000] {
        let outboxes: Vec<_> = (0..n).map(|_| Outbox::new(OutboxLimits::default())).collect();
        let mut batch = Batch::default();
        let mut tick = 0;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    tick += 1;
                    let start = Instant::now();
                    for outbox in &outboxes {
                        let baseline = outbox.supersede_state(1, Keep::Nothing).expect("nothing kept");
                        let state = PendingState {
                            room: 1,
                            tick,
                            baseline: baseline.tick,
                            body: body.clone(),
                            own: Bytes::new(),
                            last_input_seq: tick,
                            server_time_us: 0,
                            last: false,
                        };
                        black_box(outbox.push_state(state, baseline));
                    }
                    total += start.elapsed();
                    for outbox in &outboxes {
                        outbox.drain(&mut batch);
                    }
                }
                total
            });
        });
    }
    group.finish();
}

/// The client side of the T1 frames (`delta`, `full`) and of the side-by-side arena's
/// with 200 members (`arena-delta`, `arena-full`: declared kinds, packed blocks):
/// decoding (prost, into `StateFrame`) and applying a decoded frame to a `StateMirror`.
fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.measurement_time(Duration::from_secs(2));
    for (prefix, shape) in [("", Shape::t1(64)), ("arena-", Shape::side_by_side(200))] {
        codec_shape(&mut group, prefix, shape);
    }
    group.finish();
}

fn codec_shape(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    prefix: &str,
    shape: Shape,
) {
    let mut w = Workload::new(shape);
    w.step();
    let baseline = w.room.world().tick();
    // The mirror a client has at the baseline: the full snapshot of that tick.
    let mut at_baseline = StateMirror::with_schema(w.room.world().schema().clone());
    at_baseline
        .apply(&StateFrame::decode(wire_frame(&w, 0)).unwrap())
        .unwrap();
    w.step();
    for (kind, frame_baseline) in [("delta", baseline), ("full", 0)] {
        let name = format!("{prefix}{kind}");
        let wire = wire_frame(&w, frame_baseline);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(BenchmarkId::new("decode", &name), |b| {
            b.iter(|| StateFrame::decode(black_box(&wire[..])).unwrap())
        });
        let frame = StateFrame::decode(wire).unwrap();
        group.bench_function(BenchmarkId::new("apply", &name), |b| {
            b.iter_batched(
                || at_baseline.clone(),
                |mut mirror| {
                    mirror.apply(&frame).unwrap();
                    mirror
                },
                BatchSize::LargeInput,
            )
        });
    }
}

/// The `StateFrame` a member of `w`'s room receives for the current tick against
/// `baseline` (0: full snapshot): the shared body and the per-member part.
fn wire_frame(w: &Workload, baseline: u64) -> Bytes {
    let world = w.room.world();
    let meta = FrameMeta {
        room: "bench",
        server_time_us: 1,
        checksum: Some(world.checksum()),
    };
    let mut buf = BytesMut::new();
    delta::encode_state(world, baseline, meta, &mut buf);
    delta::encode_member_part(baseline, w.seq, &mut buf);
    buf.freeze()
}

/// Target T3, printed as a table: criterion measures time, not bytes.
fn t3_bytes(_: &mut Criterion) {
    println!();
    println!("T3: bytes for the T1 workload (64 members, 1,024 entities, 25 % moving per tick)");
    println!(
        "| room | full snapshot | delta (median of 64 ticks) | delta / full | idle room: bytes per member per second |"
    );
    println!("|---|---|---|---|---|");
    for sim in [Sim::Relay, Sim::DeclaredRelay, Sim::Arena] {
        let shape = Shape { sim, ..Shape::t1(64) };
        let mut w = Workload::new(shape);
        let FrameBytes { full, delta: median } = w.frame_bytes(64);
        // The same room idle for one second (30 ticks, no inputs): only the
        // once-a-second idle frame. An arena's NPCs keep moving; it never idles.
        let mut idle_bytes = 0;
        let mut wire = BytesMut::new();
        for _ in 0..30 {
            w.room.tick(1);
            w.outboxes[0].drain(&mut w.batch);
            wire.clear();
            tickrelay::engine::envelope::encode_batch(&w.batch, &mut wire);
            idle_bytes += wire.len();
            for outbox in &w.outboxes[1..] {
                outbox.drain(&mut w.batch);
            }
        }
        let idle = if sim == Sim::Arena {
            "— (NPCs move)".to_string()
        } else {
            idle_bytes.to_string()
        };
        println!(
            "| {} | {full} | {median} | {:.1} % | {idle} |",
            shape.name(),
            100.0 * median as f64 / full as f64
        );
    }
    println!();
}

/// Target T8, printed as a table: bytes per changed entity on the side-by-side arena
/// workload. Every entity changes every tick (x and y), so a delta body over the
/// number of entities is the cost of one changed entity, frame overhead included.
fn t8_bytes(_: &mut Criterion) {
    println!();
    println!("T8: bytes per changed entity, one arena room at 20 Hz, 60 NPCs + one avatar per member, all moving");
    println!(
        "| members | entities changed per tick | delta body (median of 64 ticks) | bytes per changed entity | full snapshot | bytes per entity (full) |"
    );
    println!("|---|---|---|---|---|---|");
    for members in [200, 400] {
        let shape = Shape::side_by_side(members);
        let mut w = Workload::new(shape);
        // Let every avatar start moving (the first tick after joining spawns them).
        w.step();
        w.drain();
        let FrameBytes { full, delta } = w.frame_bytes(64);
        let changed = shape.entities as f64;
        println!(
            "| {members} | {} | {delta} | {:.2} | {full} | {:.2} |",
            shape.entities,
            delta as f64 / changed,
            full as f64 / changed
        );
    }
    println!();
}

/// What matchmaking costs on one node: a quick join's pick (`SimPool::pick`: the
/// fullest open room whose metadata matches, a seat reserved) and a filtered listing
/// page, among 1,000 and 10,000 empty rooms of which a tenth match the filter. Both
/// look at every room under the pool's lock.
fn quick_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("quick_join");
    let ctf: Metadata = [("mode".to_string(), "ctf".to_string())].into();
    let dm: Metadata = [("mode".to_string(), "dm".to_string())].into();
    for rooms in [1_000, 10_000] {
        let config = Config {
            max_rooms: rooms,
            max_rooms_per_creator: rooms,
            room_creation_burst: rooms as f64,
            empty_room_ttl_secs: 3_600,
            ..Config::default()
        };
        let pool = SimPool::start(config.pool_config(&Default::default()).unwrap()).expect("simulation threads start");
        for i in 0..rooms {
            let metadata = if i % 10 == 0 { ctf.clone() } else { dm.clone() };
            let listing = ListingState {
                metadata,
                ..ListingState::default()
            };
            pool.open(&format!("room-{i:05}"), "", "bench", listing)
                .expect("room opens");
        }
        group.bench_function(BenchmarkId::new("pick", rooms), |b| {
            b.iter(|| {
                let room = pool.pick("", &ctf, &|_| false).expect("an open room matches");
                room.shared.reserved.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            })
        });
        let filter = RoomFilter {
            room_type: "",
            metadata: &ctf,
            open_only: true,
        };
        group.bench_function(BenchmarkId::new("list_page", rooms), |b| {
            b.iter(|| black_box(pool.list_rooms(&filter, "", 100, usize::MAX)))
        });
    }
    group.finish();
}

/// Reading the envelope almost every client message is (one arena input: room name,
/// seq, two intent bytes, as the bots send) in place: counted for the rate limiter,
/// then read.
fn input_read(c: &mut Criterion) {
    use tickrelay::proto::{ClientEnvelope, ClientMessage, Input, client_message, input};
    use tickrelay::session::inputs;
    let message = ClientMessage {
        kind: Some(client_message::Kind::Input(Input {
            room: "arena-0042".into(),
            seq: 12_345,
            payload: Some(input::Payload::Intent(Bytes::from_static(&[3, 250]))),
        })),
    };
    let one = ClientEnvelope {
        messages: vec![message],
        first_event_seq: 0,
    }
    .encode_to_vec();
    c.bench_function("input_read/one_arena_input", |b| {
        b.iter(|| {
            let bytes = black_box(&one[..]);
            let read = inputs::read(bytes).expect("an intent input");
            let seqs: u64 = (read.iter())
                .map(|item| match item {
                    inputs::Item::Input(i) => i.seq + i.room.len() as u64,
                    inputs::Item::Ack { tick, .. } => tick,
                })
                .sum();
            black_box((read.inputs(), seqs))
        })
    });
}

/// Interest management by distance: [`Sight`] against every pair.
fn sight(c: &mut Criterion) {
    const FIELD: f32 = 1000.0;
    const RADIUS: f32 = 100.0;
    let mut group = c.benchmark_group("sight");
    for players in [64u64, 400] {
        let int = FieldType::int(0, 1).unwrap();
        let kind = KindSchema::new(1, "player", vec![FieldSpec::new(1, "hp", int)]).unwrap();
        let schema = Arc::new(Schema::new(vec![kind.seen_by_owner_only()]).unwrap());
        // Player m owns entity m; spread by a fixed sequence, each with its heading.
        let mut world = World::with_schema(8, schema);
        let mut at: Vec<(MemberId, f32, f32)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        for m in 1..=players {
            world.spawn(m, m, 1, [(1, Value::Int(1))]).unwrap();
            at.push((m, next() * FIELD, next() * FIELD));
        }
        let headings: Vec<(f32, f32)> = (0..players).map(|_| (next() * 2.0 - 1.0, next() * 2.0 - 1.0)).collect();
        let step = |at: &mut Vec<(MemberId, f32, f32)>| {
            for ((_, x, y), (dx, dy)) in at.iter_mut().zip(&headings) {
                *x = (*x + dx * 5.0).rem_euclid(FIELD);
                *y = (*y + dy * 5.0).rem_euclid(FIELD);
            }
        };
        let mut sight = Sight::new(RADIUS);
        group.bench_function(BenchmarkId::new("grid", format!("{players}_players")), |b| {
            b.iter(|| {
                step(&mut at);
                black_box(sight.update(&mut world, at.iter().copied(), at.iter().copied()));
                world.finish_tick();
            })
        });
        group.bench_function(BenchmarkId::new("pairs", format!("{players}_players")), |b| {
            b.iter(|| {
                step(&mut at);
                for &(seen, x, y) in &at {
                    for &(viewer, vx, vy) in &at {
                        if viewer != seen {
                            let _ = match (vx - x).hypot(vy - y) <= RADIUS {
                                true => world.show(seen, viewer),
                                false => world.hide(seen, viewer),
                            };
                        }
                    }
                }
                world.finish_tick();
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    input_read,
    t3_bytes,
    t8_bytes,
    t1_tick,
    t1_encode,
    t2_fanout,
    naive_vs_shared,
    owner_only,
    codec,
    matrix,
    quick_join,
    sight
);
criterion_main!(benches);
