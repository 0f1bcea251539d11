import assert from "node:assert/strict";
import { test } from "node:test";

import { MAX_INPUT_SEQ, Predictor, type Smoothing } from "../src/prediction.js";
import { prng } from "./vectors.js";

type Xy = { readonly x: number; readonly y: number };
type Move = { readonly dx: number; readonly dy: number };

const ORIGIN: Xy = { x: 0, y: 0 };
const move = (s: Xy, i: Move): Xy => ({ x: s.x + i.dx, y: s.y + i.dy });
const right = (dx: number): Move => ({ dx, dy: 0 });

const smoothing: Smoothing<Xy> = {
  ms: 100,
  lerp: (a, b, t) => ({ x: a.x + (b.x - a.x) * t, y: a.y + (b.y - a.y) * t }),
  distance: (a, b) => Math.hypot(a.x - b.x, a.y - b.y),
};

test("inputs take effect at once", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move });
  p.input(1n, right(1));
  assert.deepEqual(p.predicted, { x: 1, y: 0 });
  p.input(2n, { dx: 0, dy: 2 });
  assert.deepEqual(p.predicted, { x: 1, y: 2 });
  assert.equal(p.pending, 2);
  assert.equal(p.render(0), p.predicted, "without smoothing the prediction is drawn");
});

test("reconciling with an acknowledged prefix gives the state of re-simulating every input", () => {
  // Order matters in this step, so a replay in the wrong order would show.
  const step = (s: Xy, i: Move): Xy => ({ x: s.x * 2 + i.dx, y: s.y - i.dy });
  const random = prng(11);
  const inputs = Array.from({ length: 20 }, () => ({ dx: Math.floor(random() * 7) - 3, dy: Math.floor(random() * 5) }));
  const simulate = (n: number) => inputs.slice(0, n).reduce(step, ORIGIN);

  for (let acked = 0; acked <= inputs.length; acked++) {
    const p = new Predictor({ initial: ORIGIN, apply: step });
    inputs.forEach((input, i) => p.input(BigInt(i + 1), input));
    assert.equal(p.authoritative(simulate(acked), BigInt(acked), 0), true);
    assert.deepEqual(p.predicted, simulate(inputs.length), `${acked} acknowledged`);
    assert.equal(p.pending, inputs.length - acked);
    assert.equal(p.acked, BigInt(acked));
  }

  // Interleaved: the server runs three inputs behind and sends a frame after each input.
  const p = new Predictor({ initial: ORIGIN, apply: step });
  inputs.forEach((input, i) => {
    p.input(BigInt(i + 1), input);
    const applied = Math.max(i + 1 - 3, 0);
    p.authoritative(simulate(applied), BigInt(applied), i);
    assert.deepEqual(p.predicted, simulate(i + 1));
  });
});

test("when the server disagrees, its state wins and the unacknowledged inputs are replayed on it", () => {
  // The server has a wall at x = 5 that the client does not know about.
  const p = new Predictor({ initial: ORIGIN, apply: move });
  for (let seq = 1n; seq <= 6n; seq++) p.input(seq, right(2));
  assert.deepEqual(p.predicted, { x: 12, y: 0 });
  p.authoritative({ x: 5, y: 0 }, 3n, 0);
  assert.deepEqual(p.predicted, { x: 11, y: 0 }, "server state + inputs 4 to 6");
  p.authoritative({ x: 5, y: 0 }, 6n, 0);
  assert.deepEqual(p.predicted, { x: 5, y: 0 });
  assert.equal(p.pending, 0);
});

test("an authoritative frame acknowledging less than one before is ignored", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move });
  for (let seq = 1n; seq <= 8n; seq++) p.input(seq, right(1));
  assert.equal(p.authoritative({ x: 5, y: 0 }, 5n, 0), true);
  assert.equal(p.authoritative({ x: 100, y: 0 }, 3n, 0), false);
  assert.deepEqual(p.predicted, { x: 8, y: 0 });
  assert.equal(p.acked, 5n);
  assert.equal(p.pending, 3);
  // The same acknowledgement in a newer frame is authoritative: something pushed us.
  assert.equal(p.authoritative({ x: 5, y: 10 }, 5n, 0), true);
  assert.deepEqual(p.predicted, { x: 8, y: 10 });
});

test("input sequence numbers must increase past every one recorded or acknowledged", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move });
  p.input(1n, right(1));
  assert.throws(() => p.input(1n, right(1)), RangeError);
  // A resumed session: the server reports inputs this predictor never saw.
  p.authoritative({ x: 40, y: 0 }, 10n, 0);
  assert.throws(() => p.input(7n, right(1)), RangeError);
  p.input(11n, right(1));
  assert.deepEqual(p.predicted, { x: 41, y: 0 });
});

test("an acknowledgement above every possible input number is ignored and does not block later inputs", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move });
  for (let seq = 1n; seq <= 89n; seq++) p.input(seq, right(1));
  assert.equal(p.authoritative({ x: 0, y: 0 }, 1n << 53n, 0), false);
  assert.equal(p.acked, 0n);
  assert.doesNotThrow(() => p.input(90n, right(1)));
  assert.deepEqual(p.predicted, { x: 90, y: 0 });
  assert.equal(p.authoritative({ x: 80, y: 0 }, 80n, 0), true);
  assert.deepEqual(p.predicted, { x: 90, y: 0 });
  assert.equal(MAX_INPUT_SEQ, 2n ** 53n - 1n);
});

test("at most maxPending inputs are kept; an older acknowledgement then leaves the forgotten ones out", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move, maxPending: 4 });
  for (let seq = 1n; seq <= 10n; seq++) p.input(seq, right(1));
  assert.equal(p.pending, 4);
  assert.deepEqual(p.predicted, { x: 10, y: 0 }, "the prediction still has every input");
  p.authoritative({ x: 3, y: 0 }, 3n, 0);
  assert.deepEqual(p.predicted, { x: 7, y: 0 }, "inputs 4 to 6 were forgotten");
  p.authoritative({ x: 6, y: 0 }, 6n, 0);
  assert.deepEqual(p.predicted, { x: 10, y: 0 });
});

test("a correction fades out over smoothing.ms", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move, smoothing });
  p.input(1n, right(10));
  p.authoritative({ x: 2, y: 0 }, 1n, 1000);
  assert.deepEqual(p.predicted, { x: 2, y: 0 });
  assert.deepEqual(p.render(1000), { x: 10, y: 0 });
  assert.deepEqual(p.render(1050), { x: 6, y: 0 });
  assert.deepEqual(p.render(1075), { x: 4, y: 0 });
  assert.equal(p.render(1100), p.predicted);
  assert.equal(p.render(1060), p.predicted, "a finished fade does not come back");
});

test("the player's own motion shows at full speed during a fade", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move, smoothing });
  p.input(1n, right(10));
  p.authoritative({ x: 2, y: 0 }, 1n, 1000);
  p.input(2n, right(4));
  assert.deepEqual(p.predicted, { x: 6, y: 0 });
  assert.deepEqual(p.render(1050), { x: 10, y: 0 }, "prediction + half of the correction");
});

test("a correction during a fade starts from what is shown", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move, smoothing });
  p.input(1n, right(10));
  p.authoritative({ x: 2, y: 0 }, 1n, 1000);
  p.authoritative({ x: 0, y: 0 }, 1n, 1050);
  assert.deepEqual(p.render(1050), { x: 6, y: 0 });
  assert.deepEqual(p.render(1100), { x: 3, y: 0 });
  assert.deepEqual(p.render(1150), { x: 0, y: 0 });
});

test("a server that agrees does not start or restart a fade", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move, smoothing });
  p.input(1n, right(10));
  p.input(2n, right(1));
  p.authoritative({ x: 10, y: 0 }, 1n, 1000);
  assert.equal(p.render(1000), p.predicted);

  p.authoritative({ x: 2, y: 0 }, 1n, 1000);
  assert.deepEqual(p.render(1000), { x: 11, y: 0 });
  p.authoritative({ x: 2, y: 0 }, 1n, 1050);
  assert.deepEqual(p.render(1075), { x: 5, y: 0 }, "still the fade begun at 1000");
});

test("a correction farther than snapDistance snaps", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move, smoothing: { ...smoothing, snapDistance: 5 } });
  p.input(1n, right(10));
  p.authoritative({ x: 6, y: 0 }, 1n, 1000);
  assert.deepEqual(p.render(1050), { x: 8, y: 0 }, "4 away: faded");
  p.authoritative({ x: 50, y: 0 }, 1n, 1050);
  assert.equal(p.render(1050), p.predicted, "42 away: snapped");
});

test("options out of range are refused", () => {
  assert.throws(() => new Predictor({ initial: ORIGIN, apply: move, maxPending: 0 }), RangeError);
  assert.throws(() => new Predictor({ initial: ORIGIN, apply: move, smoothing: { ...smoothing, ms: -1 } }), RangeError);
});

test("rewound to a restored room's last input, frames acknowledging less than before are taken again", () => {
  const p = new Predictor({ initial: ORIGIN, apply: move });
  for (let seq = 1n; seq <= 8n; seq++) p.input(seq, right(1));
  assert.equal(p.authoritative({ x: 6, y: 0 }, 6n, 0), true);
  // The room, restored from a checkpoint, applied inputs up to 4 only.
  p.rewind(4n);
  assert.equal(p.acked, 4n);
  assert.equal(p.authoritative({ x: 4, y: 0 }, 4n, 0), true);
  assert.deepEqual(p.predicted, { x: 6, y: 0 }, "inputs 7 and 8 replayed on it");
  p.rewind(9n);
  assert.equal(p.acked, 4n, "never forward");
});
