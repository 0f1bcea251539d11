//! Criterion benches of the room engine.
//!
//! - `t1_tick/{64,512}_members`: target T1. One relay room, 1,024 entities (4 fields:
//!   x, y, hp, name), 25 % of them moving (x and y change) each tick. Timed: pushing
//!   the tick's inputs, then `Room::tick` (apply inputs, step, checksum, diff, encode,
//!   fan-out into every member's outbox). Not timed: draining the outboxes, which is
//!   the transport's work.
//! - `t1_encode/{delta,full}/{64,512}_members`: the encoding alone, for the same world.
//! - `t2_fanout/N`: handing one encoded tick to N member outboxes.
//!
//! The same run prints target T3: bytes of the full snapshot, the delta, and an idle
//! room. Run: `cargo bench --bench tick`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tickrelay::delta::{self, FrameMeta};
use tickrelay::outbox::{Batch, Outbox, OutboxLimits, PendingState};
use tickrelay::proto::{Entity, EntityUpdate, EntityWrites, Field, input};
use tickrelay::room::{Room, RoomConfig, TickReport};
use tickrelay::simulation::{EntityLimits, Relay};
use tickrelay::state::Value;

const ENTITIES: u64 = 1024;

struct Workload {
    room: Room,
    outboxes: Vec<Arc<Outbox>>,
    members: u64,
    seq: u64,
    tick: u64,
    batch: Batch,
}

impl Workload {
    /// A relay room with `members` members owning 1,024 entities between them.
    fn new(members: u64) -> Self {
        let config = RoomConfig {
            max_members: members as usize,
            limits: EntityLimits {
                max_entities_per_member: ENTITIES as usize,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut room = Room::new(1, "bench".into(), "relay".into(), config, Box::new(Relay::new()));
        let outboxes: Vec<_> = (0..members)
            .map(|m| {
                let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
                room.join(m + 1, format!("bot-{m}").into(), outbox.clone(), 1).unwrap();
                outbox
            })
            .collect();
        let mut w = Self {
            room,
            outboxes,
            members,
            seq: 0,
            tick: 0,
            batch: Batch::default(),
        };
        w.seq += 1;
        for m in 0..members {
            let create = w
                .owned(m)
                .map(|id| Entity {
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
            w.room.push_input(
                m + 1,
                w.seq,
                input::Payload::Writes(EntityWrites {
                    create,
                    ..Default::default()
                }),
            );
        }
        w.room.tick(0);
        w.drain();
        w
    }

    fn owned(&self, member: u64) -> impl Iterator<Item = u64> + use<> {
        let per_member = ENTITIES / self.members;
        (member * per_member..(member + 1) * per_member).map(|i| i + 1)
    }

    /// Each member sends one input moving its entities whose index is due this tick:
    /// a quarter of all entities, rotating. Building the inputs is the transport's
    /// decoding work, so it is not part of the timed tick.
    fn inputs(&mut self) -> Vec<(u64, u64, input::Payload)> {
        self.tick += 1;
        self.seq += 1;
        let mut inputs = Vec::new();
        for m in 0..self.members {
            let update: Vec<_> = self
                .owned(m)
                .filter(|id| (id + self.tick).is_multiple_of(4))
                .map(|id| EntityUpdate {
                    id,
                    fields: vec![float(1, (id + self.tick) as f32), float(2, self.tick as f32 * 0.5)],
                })
                .collect();
            if update.is_empty() {
                continue;
            }
            let writes = EntityWrites {
                update,
                ..Default::default()
            };
            inputs.push((m + 1, self.seq, input::Payload::Writes(writes)));
        }
        inputs
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
        let mut w = Workload::new(members);
        group.bench_function(BenchmarkId::from_parameter(format!("{members}_members")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let inputs = w.inputs();
                    let start = Instant::now();
                    let report = w.run(inputs);
                    total += start.elapsed();
                    assert_eq!(report.encodes, 1, "one encoding per tick for every member count");
                    w.drain();
                }
                total
            });
        });
    }
    group.finish();
}

fn t1_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("t1_encode");
    for members in [64u64, 512] {
        let mut w = Workload::new(members);
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
        group.throughput(criterion::Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    tick += 1;
                    let start = Instant::now();
                    for outbox in &outboxes {
                        let baseline = outbox.supersede_state(1);
                        let state = PendingState {
                            room: 1,
                            tick,
                            baseline: baseline.tick,
                            body: body.clone(),
                            last_input_seq: tick,
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

/// Target T3, printed as a table: criterion measures time, not bytes.
fn t3_bytes(_: &mut Criterion) {
    let mut w = Workload::new(64);
    let mut deltas = Vec::new();
    let mut full = 0;
    for _ in 0..64 {
        let report = w.step();
        deltas.push(report.delta_bytes);
        w.drain();
    }
    // A member that needs a full snapshot: one more body, the full state.
    w.room.resync(1, 1);
    let report = w.step();
    full = full.max(report.full_bytes);
    w.drain();
    deltas.sort_unstable();
    let median = deltas[deltas.len() / 2];

    // The same room idle for one second (30 ticks): only the once-a-second idle frame.
    let mut idle_frames = 0;
    let mut idle_bytes = 0;
    let mut wire = bytes::BytesMut::new();
    for _ in 0..30 {
        let report = w.room.tick(1);
        idle_frames += report.frames;
        w.outboxes[0].drain(&mut w.batch);
        wire.clear();
        tickrelay::frame::encode_batch(&w.batch, &mut wire);
        idle_bytes += wire.len();
        for outbox in &w.outboxes[1..] {
            outbox.drain(&mut w.batch);
        }
    }
    println!();
    println!("T3: bytes for the T1 workload (64 members, 1,024 entities, 25 % moving per tick)");
    println!("| frame | bytes |");
    println!("|---|---|");
    println!("| full snapshot | {full} |");
    println!("| delta (median of 64 ticks) | {median} |");
    println!("| delta / full | {:.1} % |", 100.0 * median as f64 / full as f64);
    println!(
        "| idle room, one member, one second (30 ticks) | {idle_bytes} bytes in {} frame(s) per member |",
        idle_frames / 64
    );
    println!();
}

criterion_group!(benches, t3_bytes, t1_tick, t1_encode, t2_fanout);
criterion_main!(benches);
