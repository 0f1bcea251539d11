import assert from "node:assert/strict";
import { test } from "node:test";

import { CLOCK_SLEW, CLOCK_WINDOW_MS, InterpolationBuffer, numericFields } from "../src/interpolation.js";
import { Schema } from "../src/schema.js";
import { World } from "../src/world.js";
import { prng } from "./vectors.js";

// A 20 Hz room: tick n is stamped n × 50 ms after T0 and, unless a test says
// otherwise, arrives LATENCY ms after local time n × 50. With the default delay the
// render time is then tick `t` at local time `nowFor(t)`.
const T0 = 1_700_000_000_000_000n;
const TICK_MS = 50;
const LATENCY = 20;
const DELAY = 100;

const serverTime = (tick: number) => T0 + BigInt(tick * TICK_MS * 1000);
const arrival = (tick: number, latency = LATENCY) => tick * TICK_MS + latency;
const nowFor = (tick: number) => tick * TICK_MS + LATENCY + DELAY;

type Xy = { x: number; y: number };

/** Entity 1 moves along x = 10 × tick, y = −4 × tick. */
const moving = (tick: number): [bigint, Xy] => [1n, { x: 10 * tick, y: -4 * tick }];

function push(
  buffer: InterpolationBuffer<"x" | "y">,
  tick: number,
  entities: Iterable<[bigint, Xy]> = [moving(tick)],
  latency = LATENCY,
): boolean {
  return buffer.push(BigInt(tick), serverTime(tick), arrival(tick, latency), entities);
}

function at(buffer: InterpolationBuffer<"x" | "y">, tick: number, id = 1n): Xy | undefined {
  return buffer.sample(nowFor(tick)).get(id);
}

test("renders between the two ticks around now − delay", () => {
  const buffer = new InterpolationBuffer<"x" | "y">();
  assert.equal(buffer.sample(0).size, 0, "nothing before the first push");
  for (const tick of [1, 2, 3]) assert.equal(push(buffer, tick), true);
  assert.deepEqual(at(buffer, 1.5), { x: 15, y: -6 });
  assert.deepEqual(at(buffer, 2), { x: 20, y: -8 });
  assert.deepEqual(at(buffer, 2.25), { x: 22.5, y: -9 });
  assert.equal(buffer.behindMs, 37.5);
});

test("before the render time reaches the first snapshot, that snapshot is shown", () => {
  const buffer = new InterpolationBuffer<"x" | "y">();
  push(buffer, 5);
  push(buffer, 6);
  assert.deepEqual(at(buffer, 3), { x: 50, y: -20 });
  assert.equal(push(buffer, 4), false, "older than a tick already shown");
  assert.deepEqual(at(buffer, 4), { x: 50, y: -20 });
  assert.deepEqual(at(buffer, 5.5), { x: 55, y: -22 });
});

test("a lost tick is interpolated across", () => {
  const buffer = new InterpolationBuffer<"x" | "y">();
  for (const tick of [1, 2, 4]) push(buffer, tick);
  assert.deepEqual(at(buffer, 2.5), { x: 25, y: -10 });
  assert.deepEqual(at(buffer, 3), { x: 30, y: -12 });
});

test("a reordered tick is inserted while the render time has not reached it", () => {
  // Tick 2 is off the line, so using it is visible.
  const buffer = new InterpolationBuffer<"x" | "y">();
  push(buffer, 1);
  push(buffer, 3);
  assert.equal(push(buffer, 2, [[1n, { x: 100, y: 0 }]], LATENCY + 60), true);
  assert.equal(buffer.bufferedTicks, 3);
  assert.deepEqual(at(buffer, 1.5), { x: 55, y: -2 });
  assert.deepEqual(at(buffer, 2), { x: 100, y: 0 });
  assert.deepEqual(at(buffer, 2.5), { x: 65, y: -6 });
});

test("a reordered tick the render time has passed is ignored", () => {
  const buffer = new InterpolationBuffer<"x" | "y">();
  for (const tick of [1, 2, 4]) push(buffer, tick);
  assert.deepEqual(at(buffer, 3.5), { x: 35, y: -14 });
  assert.equal(push(buffer, 3, [[1n, { x: 1000, y: 0 }]], 100), false);
  assert.deepEqual(at(buffer, 3.5), { x: 35, y: -14 });
  assert.deepEqual(at(buffer, 3.75), { x: 37.5, y: -15 });
});

test("a duplicate tick is ignored", () => {
  const buffer = new InterpolationBuffer<"x" | "y">();
  push(buffer, 1);
  push(buffer, 2);
  assert.equal(push(buffer, 2, [[1n, { x: 1000, y: 0 }]]), false);
  assert.equal(buffer.bufferedTicks, 2);
  assert.deepEqual(at(buffer, 1.5), { x: 15, y: -6 });
});

test("entities appear at their first tick and disappear at the first tick without them", () => {
  const buffer = new InterpolationBuffer<"x" | "y">();
  const leaving: [bigint, Xy] = [3n, { x: -1, y: -1 }];
  push(buffer, 1, [moving(1), leaving]);
  push(buffer, 2, [moving(2), [3n, { x: -2, y: -2 }]]);
  push(buffer, 3, [moving(3), [2n, { x: 500, y: 500 }]]);
  push(buffer, 4, [moving(4), [2n, { x: 600, y: 400 }]]);

  const early = buffer.sample(nowFor(1.5));
  assert.deepEqual([...early.keys()], [1n, 3n]);
  assert.deepEqual(early.get(3n), { x: -1.5, y: -1.5 });

  const leavingNow = buffer.sample(nowFor(2.5));
  assert.deepEqual([...leavingNow.keys()], [1n, 3n]);
  assert.deepEqual(leavingNow.get(3n), { x: -2, y: -2 }, "held at its last sample, not faded to nothing");

  const arrived = buffer.sample(nowFor(3));
  assert.deepEqual([...arrived.keys()], [1n, 2n]);
  assert.deepEqual(arrived.get(2n), { x: 500, y: 500 }, "shown at its first sample, not grown from nothing");

  assert.deepEqual(buffer.sample(nowFor(3.5)).get(2n), { x: 550, y: 450 });
});

test("a number only one of two ticks has takes the earlier tick's value", () => {
  const buffer = new InterpolationBuffer();
  buffer.push(1n, serverTime(1), arrival(1), [[1n, { x: 0, hp: 10 }]]);
  buffer.push(2n, serverTime(2), arrival(2), [[1n, { x: 10, angle: 3 }]]);
  assert.deepEqual(buffer.sample(nowFor(1.5)).get(1n), { x: 5, hp: 10 });
  assert.deepEqual(buffer.sample(nowFor(2)).get(1n), { x: 10, angle: 3 });

  const extrapolating = new InterpolationBuffer({ extrapolateMs: 50 });
  extrapolating.push(1n, serverTime(1), arrival(1), [[1n, { x: 0, hp: 10 }]]);
  extrapolating.push(2n, serverTime(2), arrival(2), [[1n, { x: 10, angle: 3 }]]);
  assert.deepEqual(extrapolating.sample(nowFor(2.5)).get(1n), { x: 15, angle: 3 }, "past the newest: its numbers");
});

test("past the newest tick every entity holds its newest sample", () => {
  const buffer = new InterpolationBuffer<"x" | "y">();
  push(buffer, 1);
  push(buffer, 2);
  assert.deepEqual(at(buffer, 2.5), { x: 20, y: -8 });
  assert.equal(buffer.behindMs, -25);
  assert.deepEqual(at(buffer, 40), { x: 20, y: -8 });
  push(buffer, 41);
  assert.deepEqual(at(buffer, 41), { x: 410, y: -164 });
});

test("extrapolation continues the last motion for at most extrapolateMs", () => {
  const buffer = new InterpolationBuffer<"x" | "y">({ extrapolateMs: 50 });
  push(buffer, 1);
  push(buffer, 2);
  assert.deepEqual(at(buffer, 2.5), { x: 25, y: -10 });
  assert.deepEqual(at(buffer, 3), { x: 30, y: -12 });
  assert.deepEqual(at(buffer, 5), { x: 30, y: -12 });
  // Across a gap larger than maxGapTicks the last motion is unknown: hold.
  push(buffer, 20);
  assert.deepEqual(at(buffer, 21), { x: 200, y: -80 });
});

test("across an idle gap an entity holds until the tick before the next sample", () => {
  // The server sends nothing while a room is idle: a 10-tick gap means the entity
  // stood still until tick 10 and moved in tick 11.
  const idle = new InterpolationBuffer<"x" | "y">();
  push(idle, 1);
  push(idle, 11);
  assert.deepEqual(at(idle, 5), { x: 10, y: -4 });
  assert.deepEqual(at(idle, 10), { x: 10, y: -4 });
  assert.deepEqual(at(idle, 10.5), { x: 60, y: -24 });
  assert.deepEqual(at(idle, 11), { x: 110, y: -44 });

  const lossy = new InterpolationBuffer<"x" | "y">({ maxGapTicks: 10 });
  push(lossy, 1);
  push(lossy, 11);
  assert.deepEqual(at(lossy, 6), { x: 60, y: -24 });
});

test("jittered, reordered and lost frames: the render clock runs at steady speed, never backwards", () => {
  // Entity 1's x is its tick's server time in ms, so the rendered x is the render time.
  const random = prng(7);
  const frames: { tick: number; arrival: number }[] = [];
  for (let tick = 1; tick <= 400; tick++) {
    // At most one loss in a row, so the next tick has always arrived by the render time.
    if (tick > 1 && random() < 0.1 && frames.at(-1)!.tick === tick - 1) continue;
    frames.push({ tick, arrival: tick * TICK_MS + 30 + random() * 70 });
  }
  frames.sort((a, b) => a.arrival - b.arrival);
  assert.ok(frames.some((f, i) => i > 0 && f.tick < frames[i - 1]!.tick), "some frames are reordered");

  const delayMs = 200;
  const buffer = new InterpolationBuffer<"x">({ delayMs });
  let next = 0;
  let previous: number | undefined;
  let steady = 0;
  let checked = 0;
  for (let now = frames[0]!.arrival; now < 400 * TICK_MS; now += 16) {
    for (; next < frames.length && frames[next]!.arrival <= now; next++) {
      const { tick, arrival } = frames[next]!;
      buffer.push(BigInt(tick), serverTime(tick), arrival, [[1n, { x: tick * TICK_MS }]]);
    }
    const render = buffer.sample(now).get(1n)!.x;
    if (previous !== undefined) {
      assert.ok(render >= previous, `monotonic at ${now}: ${previous} then ${render}`);
      if (now >= frames[0]!.arrival + 500) {
        // Past the startup hold: the clock only slews.
        assert.ok(render <= now - 30 - delayMs, `never ahead of the least possible delay at ${now}`);
        const step = render - previous;
        assert.ok(step >= 16 * (1 - CLOCK_SLEW) - 1e-9 && step <= 16 * (1 + CLOCK_SLEW) + 1e-9, `step ${step} at ${now}`);
        assert.ok(buffer.behindMs! > 0, `never starved at ${now}`);
        if (Math.abs(step - 16) < 1e-9) steady++;
        checked++;
      }
    }
    previous = render;
  }
  // The minimum ignores jitter: the render clock runs at exactly real speed almost always.
  assert.ok(checked > 1000 && steady >= 0.95 * checked, `${steady} of ${checked} steps at real speed`);
  assert.ok(buffer.bufferedTicks <= 8, `${buffer.bufferedTicks} ticks held`);
});

/** One sample of {@link renderRun}: local time, rendered x, render clock (as an x). */
type Rendered = [now: number, x: number, clock: number];

/**
 * Runs a 20 Hz room whose tick n arrives `latencyOf(n)` ms after local time n × 50
 * and samples every 10 ms until `endMs`. Entity 1's x is its tick's server time in ms,
 * so the rendered x is the render time unless the render is starved (then held at the
 * newest tick); the render clock itself is read from `behindMs`.
 */
function renderRun(latencyOf: (tick: number) => number, endMs: number): Rendered[] {
  const frames = Array.from({ length: endMs / TICK_MS }, (_, i) => ({ tick: i + 1, arrival: arrival(i + 1, latencyOf(i + 1)) }));
  frames.sort((a, b) => a.arrival - b.arrival || a.tick - b.tick);
  const buffer = new InterpolationBuffer<"x">();
  const renders: Rendered[] = [];
  let next = 0;
  let newest = 0;
  for (let now = 0; now <= endMs; now += 10) {
    for (; next < frames.length && frames[next]!.arrival <= now; next++) {
      const { tick, arrival } = frames[next]!;
      if (buffer.push(BigInt(tick), serverTime(tick), arrival, [[1n, { x: tick * TICK_MS }]])) {
        newest = Math.max(newest, tick);
      }
    }
    if (newest === 0) continue;
    const x = buffer.sample(now).get(1n)!.x;
    renders.push([now, x, newest * TICK_MS - buffer.behindMs!]);
  }
  return renders;
}

/** The advance of the render clock per sample after the startup hold, with the local time. */
function clockSteps(renders: Rendered[]): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 2; i < renders.length; i++) {
    const [now, , clock] = renders[i]!;
    const previous = renders[i - 1]![2];
    if (previous > TICK_MS) out.push([now, clock - previous]);
  }
  return out;
}

test("a delay spike starves the render, which holds and then resumes without moving back", () => {
  // Ticks 40 to 49 all arrive at local time 2520.
  const renders = renderRun((tick) => (tick >= 40 && tick < 50 ? 20 + (50 - tick) * TICK_MS : 20), 100 * TICK_MS);
  for (let i = 1; i < renders.length; i++) assert.ok(renders[i]![1] >= renders[i - 1]![1], `moved back at ${renders[i]![0]}`);
  assert.ok(renders.filter(([, x]) => x === 39 * TICK_MS).length >= 25, "held at tick 39 meanwhile");
  // Late frames do not raise the offset estimate: the clock kept real speed throughout.
  for (const [now, step] of clockSteps(renders)) assert.ok(Math.abs(step - 10) < 1e-9, `step ${step} at ${now}`);
  assert.deepEqual(renders.at(-1)!.slice(0, 2), [5000, 5000 - 20 - DELAY]);
});

test("a slower path is followed at a bounded rate once the faster one leaves the window", () => {
  const end = 100 * TICK_MS + 3 * CLOCK_WINDOW_MS;
  const renders = renderRun((tick) => (tick < 100 ? 20 : 60), end);
  let slowed = 0;
  for (const [now, step] of clockSteps(renders)) {
    assert.ok(step >= 10 * (1 - CLOCK_SLEW) - 1e-9 && step <= 10 + 1e-9, `step ${step} at ${now}`);
    if (step < 10 - 1e-9) slowed++;
  }
  assert.equal(slowed, 80, "40 ms absorbed at 0.5 ms per 10 ms");
  assert.deepEqual(renders.at(-1)!.slice(0, 2), [end, end - 60 - DELAY]);
});

test("a path change beyond CLOCK_SNAP_MS is taken at once: forward by a jump, backward by standing still", () => {
  const end = 100 * TICK_MS + 3 * CLOCK_WINDOW_MS;
  const slower = renderRun((tick) => (tick < 100 ? 20 : 1520), end);
  const slowerSteps = clockSteps(slower);
  for (const [now, step] of slowerSteps) assert.ok(step >= 0 && step <= 10 + 1e-9, `step ${step} at ${now}`);
  const stood = slowerSteps.filter(([, step]) => step === 0).length;
  assert.ok(stood >= 149 && stood <= 150, `stood still for ${stood} samples, not moved back 1500 ms`);
  assert.deepEqual(slower.at(-1)!.slice(0, 2), [end, end - 1520 - DELAY]);

  const faster = renderRun((tick) => (tick < 100 ? 1520 : 20), end);
  const jumps = clockSteps(faster).filter(([, step]) => Math.abs(step - 10) > 1e-9);
  assert.equal(jumps.length, 1);
  assert.equal(jumps[0]![0], 100 * TICK_MS + 20);
  assert.ok(Math.abs(jumps[0]![1] - 1510) < 1e-9);
  assert.deepEqual(faster.at(-1)!.slice(0, 2), [end, end - 20 - DELAY]);
});

test("memory is bounded: passed ticks are dropped, and at most maxSnapshots are kept", () => {
  const sampled = new InterpolationBuffer<"x" | "y">();
  for (let tick = 1; tick <= 1000; tick++) {
    push(sampled, tick);
    sampled.sample(arrival(tick));
    assert.ok(sampled.bufferedTicks <= DELAY / TICK_MS + 3, `${sampled.bufferedTicks} at tick ${tick}`);
  }

  const unsampled = new InterpolationBuffer<"x" | "y">({ maxSnapshots: 8 });
  for (let tick = 10; tick < 100; tick++) push(unsampled, tick);
  assert.equal(unsampled.bufferedTicks, 8);
  assert.equal(push(unsampled, 5), false, "older than everything kept, at the bound");
  assert.equal(push(unsampled, 100), true);
  assert.equal(unsampled.bufferedTicks, 8);
  assert.deepEqual(unsampled.sample(0).get(1n), { x: 930, y: -372 }, "the oldest kept is tick 93");
});

test("pushed samples are copied", () => {
  const buffer = new InterpolationBuffer<"x">();
  const sample = { x: 1 };
  buffer.push(1n, serverTime(1), arrival(1), [[1n, sample]]);
  sample.x = 99;
  const first = buffer.sample(nowFor(1)).get(1n)!;
  assert.deepEqual(first, { x: 1 });
  first.x = 42;
  assert.deepEqual(buffer.sample(nowFor(1)).get(1n), { x: 1 });
});

test("numericFields takes the named int and float fields of the entities that have them all", () => {
  const world = new World(Schema.EMPTY);
  world.replace(1n, 0n, 1, [
    [1, { case: "float", value: 1.5 }],
    [2, { case: "int", value: -7n }],
    [3, { case: "string", value: "name" }],
  ]);
  world.replace(2n, 0n, 1, [[1, { case: "float", value: 2 }]]);
  world.replace(3n, 0n, 1, [
    [1, { case: "float", value: 3 }],
    [2, { case: "bool", value: true }],
  ]);
  assert.deepEqual([...numericFields(world.entities(), { x: 1, y: 2 })], [[1n, { x: 1.5, y: -7 }]]);
});

test("options out of range are refused", () => {
  assert.throws(() => new InterpolationBuffer({ delayMs: -1 }), RangeError);
  assert.throws(() => new InterpolationBuffer({ extrapolateMs: Number.NaN }), RangeError);
  assert.throws(() => new InterpolationBuffer({ maxGapTicks: 0 }), RangeError);
  assert.throws(() => new InterpolationBuffer({ maxSnapshots: 1 }), RangeError);
  const buffer = new InterpolationBuffer({ delayMs: 0 });
  assert.equal(buffer.delayMs, 0);
  assert.equal(buffer.behindMs, undefined);
});

test("a room restored from a checkpoint, on from an earlier tick at a later time, starts the buffer again", () => {
  const buffer = new InterpolationBuffer<"x" | "y">();
  for (const tick of [10, 11, 12]) push(buffer, tick);
  // The room's node died; restored elsewhere from tick 5, stamped after tick 12.
  const restored = (tick: number) =>
    buffer.push(BigInt(tick), serverTime(tick + 10), arrival(tick + 10), [[1n, { x: 1000 + tick, y: 0 }]]);
  assert.equal(restored(5), true);
  assert.equal(restored(6), true);
  assert.deepEqual(at(buffer, 16), { x: 1006, y: 0 }, "the restored timeline is shown");
});
