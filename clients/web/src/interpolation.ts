/**
 * Snapshot interpolation: other players' entities are drawn a little in the past,
 * between two authoritative ticks the client already holds, so their motion stays
 * smooth while state frames arrive with jitter, loss and reordering (Glenn Fiedler,
 * "Snapshot Interpolation"; Valve, "Source Multiplayer Networking", entity
 * interpolation). The local player's own entity is predicted instead
 * (`prediction.ts`).
 *
 * No clock is read here: every call takes the caller's local time in ms
 * (`performance.now()` in a browser), and the buffer maps the server's clock to it.
 */

import type { Entity } from "./world.js";

/** Named numbers of one entity at one tick, e.g. `{ x, y }`. */
export type Sample<F extends string = string> = Readonly<Record<F, number>>;

/** How an {@link InterpolationBuffer} renders; every field has a default. */
export interface InterpolationOptions {
  /**
   * How far behind the server's clock to render, in ms (default 100). It must cover
   * a tick interval plus the arrival jitter, and more to ride out lost frames: two to
   * three tick intervals is usual. For a delay of `n` ticks pass
   * `n * 1000 / joined.tickRate`.
   */
  readonly delayMs?: number;
  /**
   * How far past the newest snapshot to extrapolate, in ms (default 0: hold every
   * entity at its newest sample until a newer snapshot arrives).
   */
  readonly extrapolateMs?: number;
  /**
   * The largest tick gap interpolated across as one straight line (default 4: up to
   * three lost frames). Across a larger gap the entity holds its earlier sample until
   * the tick before the later one, then moves in that last tick: the server sends no
   * frame while a room is idle (docs/PROTOCOL.md, "Idle rooms"), so a long gap means
   * nothing moved until just before it ended.
   */
  readonly maxGapTicks?: number;
  /**
   * Most snapshots kept (default 64, at least 2). {@link InterpolationBuffer.sample}
   * already drops those the render time has passed; this bounds memory while nothing
   * samples (a hidden tab). At the bound the oldest snapshot is dropped.
   */
  readonly maxSnapshots?: number;
}

/**
 * The window of the clock offset estimate, in ms. The estimate is the minimum over
 * the current window and the one before (2 to 4 s of arrivals): long enough to hold
 * an idle room's one frame per second, short enough to follow a route change.
 */
export const CLOCK_WINDOW_MS = 2000;

/**
 * How fast the render clock follows a new offset estimate: at most this many ms per
 * ms of local time, so it runs between 0.95 and 1.05 times real speed while adjusting
 * and never backwards.
 */
export const CLOCK_SLEW = 0.05;

/**
 * An offset estimate farther than this (ms) from the one in use is taken at once:
 * forward, the render time jumps; backward, it stands still until it is due again.
 */
export const CLOCK_SNAP_MS = 1000;

/** One tick's samples. */
interface Snapshot<F extends string> {
  readonly tick: bigint;
  /** Server time in ms since the buffer's first snapshot. */
  readonly time: number;
  readonly entities: ReadonlyMap<bigint, Sample<F>>;
}

/**
 * The state of a room's entities as of a moment slightly in the past, interpolated
 * between the authoritative ticks around it.
 *
 * Feed it each state frame with {@link push} as it arrives and ask for the state to
 * draw with {@link sample} once per rendered frame. The entities present at the render
 * time are exactly those of the last tick at or before it: an entity appears at its
 * first tick (never interpolated from nothing) and disappears at the first tick
 * without it, until then held at its last sample. Numbers are interpolated linearly
 * towards the next tick for entities in both; a number present in only one of the two
 * takes the earlier tick's value.
 */
export class InterpolationBuffer<F extends string = string> {
  readonly delayMs: number;
  readonly extrapolateMs: number;
  readonly maxGapTicks: number;
  readonly maxSnapshots: number;
  /** Sorted by tick; server times are assumed to grow with ticks. */
  readonly #snapshots: Snapshot<F>[] = [];
  readonly #clock = new RenderClock();
  /** The server time (µs) of the first snapshot, which all times are relative to. */
  #base: bigint | undefined;

  /** Throws a `RangeError` for a negative or non-finite option, or `maxSnapshots < 2`. */
  constructor(options: InterpolationOptions = {}) {
    this.delayMs = option(options.delayMs, 100, 0);
    this.extrapolateMs = option(options.extrapolateMs, 0, 0);
    this.maxGapTicks = option(options.maxGapTicks, 4, 1);
    this.maxSnapshots = option(options.maxSnapshots, 64, 2);
  }

  /** Number of snapshots held. */
  get bufferedTicks(): number {
    return this.#snapshots.length;
  }

  /**
   * How far the last render time was behind the newest snapshot, in ms; negative
   * while rendering past it (frames late: a larger delay would help). Undefined until
   * something was sampled.
   */
  get behindMs(): number | undefined {
    const newest = this.#snapshots.at(-1);
    const render = this.#clock.last;
    return newest === undefined || render === -Infinity ? undefined : newest.time - render;
  }

  /**
   * Records the state of a tick: `serverTimeUs` is `StateFrame.server_time_us`,
   * `arrivalMs` the local time the frame arrived, `entities` the numbers to
   * interpolate of every entity that exists at that tick (the mirror's state after
   * applying the frame, e.g. through {@link numericFields}); they are copied.
   *
   * Returns false, storing nothing, for a tick already held, for one older than the
   * newest whose time the render clock has already passed, and for one older than
   * every tick held when `maxSnapshots` are held. An older tick with a later time
   * than the newest held (a room restored from a checkpoint numbers on from there)
   * starts the buffer again. Arrival times of all frames still
   * feed the clock estimate.
   */
  push(
    tick: bigint,
    serverTimeUs: bigint,
    arrivalMs: number,
    entities: Iterable<readonly [bigint, Sample<F>]>,
  ): boolean {
    this.#base ??= serverTimeUs;
    const time = Number(serverTimeUs - this.#base) / 1000;
    this.#clock.observe(arrivalMs, time);
    const snapshots = this.#snapshots;
    // An earlier tick at a later time: the room goes on from a checkpoint (its node
    // was lost) under its old numbers. A new timeline: what was held is dropped.
    const newest = snapshots.at(-1);
    if (newest !== undefined && tick < newest.tick && time > newest.time) snapshots.length = 0;
    // Search from the end: frames nearly always arrive in order.
    let i = snapshots.length;
    while (i > 0 && snapshots[i - 1]!.tick > tick) i--;
    if (i > 0 && snapshots[i - 1]!.tick === tick) return false;
    if (i < snapshots.length && time <= this.#clock.last) return false;
    if (i === 0 && snapshots.length >= this.maxSnapshots) return false;
    const copies = new Map<bigint, Sample<F>>();
    for (const [id, sample] of entities) copies.set(id, { ...sample });
    snapshots.splice(i, 0, { tick, time, entities: copies });
    if (snapshots.length > this.maxSnapshots) snapshots.shift();
    return true;
  }

  /**
   * The entities to draw at local time `nowMs`: their state at the render time,
   * `delayMs` behind the estimated server clock. New records every call. Empty until
   * the first {@link push}; until the render time reaches the oldest snapshot held
   * (just after joining), it is held there and that snapshot is shown.
   */
  sample(nowMs: number): Map<bigint, Record<F, number>> {
    const out = new Map<bigint, Record<F, number>>();
    const snapshots = this.#snapshots;
    if (snapshots.length === 0) return out;
    let render = this.#clock.at(nowMs, this.delayMs);
    let i = snapshots.length - 1;
    while (i >= 0 && snapshots[i]!.time > render) i--;
    if (i < 0) {
      // Hold the render time at the oldest snapshot until the clock reaches it, so
      // that an even older tick arriving now is late rather than shown after it.
      render = this.#clock.holdAt(snapshots[0]!.time);
      i = 0;
    }
    // The render time never goes back: keep the last snapshot at or before it, and
    // the one before that for extrapolation.
    if (i > 1) snapshots.splice(0, i - 1);
    const at = Math.min(i, 1);
    const from = snapshots[at]!;
    const to = snapshots[at + 1];
    if (to !== undefined) {
      const k = this.#progress(from, to, render);
      for (const [id, a] of from.entities) {
        const b = to.entities.get(id);
        out.set(id, b === undefined ? { ...a } : lerp(a, b, k));
      }
      return out;
    }
    // Past the newest snapshot: hold, or extrapolate from the two newest.
    const before = at > 0 ? snapshots[0]! : undefined;
    const extrapolate =
      before !== undefined &&
      this.extrapolateMs > 0 &&
      Number(from.tick - before.tick) <= this.maxGapTicks &&
      from.time > before.time;
    const k = extrapolate
      ? 1 + Math.min(render - from.time, this.extrapolateMs) / (from.time - before.time)
      : 1;
    for (const [id, a] of from.entities) {
      const p = extrapolate ? before.entities.get(id) : undefined;
      out.set(id, p === undefined ? { ...a } : lerp(p, a, k, a));
    }
    return out;
  }

  /** How far (0 to 1) the render time is from `a` to `b`, with the gap rule of `maxGapTicks`. */
  #progress(a: Snapshot<F>, b: Snapshot<F>, render: number): number {
    const gap = Number(b.tick - a.tick);
    const start = gap > this.maxGapTicks ? b.time - (b.time - a.time) / gap : a.time;
    if (!(b.time > start)) return 1;
    return Math.min(Math.max((render - start) / (b.time - start), 0), 1);
  }
}

/**
 * Maps local time to server time for rendering.
 *
 * A frame's `arrival − server time` is the clock offset plus that frame's one-way
 * delay; jitter only ever adds delay, so the minimum over recent frames is the most
 * stable estimate of `offset + least delay` (an average would move with every late
 * frame). The minimum is kept over two windows of {@link CLOCK_WINDOW_MS} so it can
 * rise again when the path gets slower. The render clock follows the estimate at a
 * bounded rate ({@link CLOCK_SLEW}) instead of jumping, and never goes backwards.
 */
class RenderClock {
  #windowStart = -Infinity;
  #windowMin = Infinity;
  #previousMin = Infinity;
  /** The offset in use (local ms − server ms); undefined until the first render. */
  #offset: number | undefined;
  #lastNow = -Infinity;
  /** The last render time returned, in server ms. */
  last = -Infinity;

  /** Records a frame that arrived at local `arrivalMs` stamped `serverMs`. */
  observe(arrivalMs: number, serverMs: number): void {
    const offset = arrivalMs - serverMs;
    const elapsed = arrivalMs - this.#windowStart;
    if (elapsed >= CLOCK_WINDOW_MS) {
      this.#previousMin = elapsed >= 2 * CLOCK_WINDOW_MS ? Infinity : this.#windowMin;
      this.#windowMin = offset;
      this.#windowStart = arrivalMs;
    } else {
      this.#windowMin = Math.min(this.#windowMin, offset);
    }
  }

  /** Raises the last render time to `time` (server ms); returns it. */
  holdAt(time: number): number {
    this.last = Math.max(this.last, time);
    return this.last;
  }

  /**
   * The server time to render at local time `now`, never less than the last one;
   * call after at least one `observe`.
   */
  at(now: number, delayMs: number): number {
    const target = Math.min(this.#windowMin, this.#previousMin);
    if (this.#offset === undefined || Math.abs(target - this.#offset) > CLOCK_SNAP_MS) {
      this.#offset = target;
    } else {
      const step = Math.max(now - this.#lastNow, 0) * CLOCK_SLEW;
      this.#offset += Math.min(Math.max(target - this.#offset, -step), step);
    }
    this.#lastNow = Math.max(this.#lastNow, now);
    this.last = Math.max(this.last, now - this.#offset - delayMs);
    return this.last;
  }
}

/**
 * The named numbers of the entities that have all of `fields` (name → field id) as
 * `int` or `float` values, for {@link InterpolationBuffer.push}; other entities are
 * skipped. Ints are converted with `Number`, exact up to 2^53.
 *
 * ```ts
 * buffer.push(frame.tick, frame.serverTimeUs, now, numericFields(mirror.entities(), { x: 1, y: 2 }));
 * ```
 */
export function* numericFields<F extends string>(
  entities: Iterable<Entity>,
  fields: Readonly<Record<F, number>>,
): Generator<[bigint, Record<F, number>], void, undefined> {
  const names = Object.keys(fields) as F[];
  next: for (const entity of entities) {
    const sample = {} as Record<F, number>;
    for (const name of names) {
      const value = entity.get(fields[name]);
      if (value?.case === "float") sample[name] = value.value;
      else if (value?.case === "int") sample[name] = Number(value.value);
      else continue next;
    }
    yield [entity.id, sample];
  }
}

/**
 * The numbers of `base` (`a` unless given), each `a + (b − a) × k` where both `a` and
 * `b` have it.
 */
function lerp<F extends string>(a: Sample<F>, b: Sample<F>, k: number, base: Sample<F> = a): Record<F, number> {
  const out = { ...base } as Record<F, number>;
  for (const name of Object.keys(base) as F[]) {
    const from = a[name];
    const to = b[name];
    if (typeof from === "number" && typeof to === "number") out[name] = from + (to - from) * k;
  }
  return out;
}

/** An option's value: its default when absent; a `RangeError` below `min` or not finite. */
function option(value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!(Number.isFinite(value) && value >= min)) {
    throw new RangeError(`expected a finite number of at least ${min}, got ${value}`);
  }
  return value;
}
