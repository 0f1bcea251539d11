import assert from "node:assert/strict";
import { test } from "node:test";

import { applyBlock, DecodeError, type BlockProblem } from "../src/packed.js";
import { KindSchema, Quantizer, Schema } from "../src/schema.js";
import { World } from "../src/world.js";
import { frames, prng, schema as shipSchema } from "./vectors.js";

/** The world of `proto/src/packed.rs`'s tests: dots 5 and 7 at tick 1. */
function dots(): World {
  const position = (id: number, name: string) => ({
    id,
    name,
    type: { case: "float", quantizer: new Quantizer(0, 100, 0.01) } as const,
  });
  const dot = new KindSchema(1, "dot", [
    position(1, "x"),
    position(2, "y"),
    { id: 3, name: "hp", type: { case: "int", min: 0n, max: 100n } },
    { id: 4, name: "tag", type: { case: "string", maxLen: 8 } },
  ]);
  const world = new World(new Schema([dot]));
  // kind 1, two added: 5 (owner 0, x = 10, y = 20) and 7 (owner 3, x = 50, hp = 100).
  applyBlock(world, new Uint8Array([1, 2, 0, 5, 0, 0b11, 0xd1, 0x0f, 0xa1, 0x1f, 2, 3, 0b101, 0x91, 0x4e, 0xc9, 0x01]));
  return world;
}

function problem(world: World, bytes: number[]): BlockProblem | undefined {
  try {
    applyBlock(world, new Uint8Array(bytes));
    return undefined;
  } catch (e) {
    assert.ok(e instanceof DecodeError, `not a DecodeError: ${e}`);
    return e.problem;
  }
}

test("a block of added entities decodes owners, masks and absolute values", () => {
  const world = dots();
  assert.equal(world.size, 2);
  const seven = world.get(7n)!;
  assert.equal(seven.owner, 3n);
  assert.deepEqual(seven.fields, [
    { id: 1, value: { case: "float", value: 50 }, code: 5000n, hash: undefined },
    { id: 3, value: { case: "int", value: 100n }, code: 100n, hash: undefined },
  ]);
  assert.deepEqual(world.get(5n)!.get(2), { case: "float", value: 20 });
});

test("a small move costs one byte, relative or two absolute", () => {
  for (const block of [
    [1, 0, 1, 7, 0b1, 12], // x +3 steps: zigzag 6, times 2
    [1, 0, 1, 7, 0b1, 0x97, 0x4e], // q = 5003: 2q + 1 = 10007
  ]) {
    const world = dots();
    applyBlock(world, new Uint8Array(block));
    assert.deepEqual(world.get(7n)!.get(1), { case: "float", value: Math.fround(50.03) });
  }
});

test("malformed blocks are typed errors (the cases of packed.rs)", () => {
  const at = (bytes: number[]) => problem(dots(), bytes);
  assert.deepEqual(at([]), { type: "truncated" });
  assert.deepEqual(at([2, 0, 0]), { type: "unknown-kind", kind: 2n });
  assert.deepEqual(at([1, 0, 0, 0]), { type: "trailing" });
  assert.deepEqual(at([1, 0, 2, 7, 1, 1, 0, 1, 1]), { type: "order" });
  assert.deepEqual(at([1, 0, 2, 7, 1, 1]), { type: "truncated" });
  assert.deepEqual(at([1, 0, 1, 7, 0b10000, 1]), { type: "mask", entity: 7n });
  assert.deepEqual(at([1, 0, 1, 9, 1, 1]), { type: "unknown-entity", entity: 9n });
  // x of entity 7 relative -6000 steps: below the range.
  assert.deepEqual(at([1, 0, 1, 7, 1, 0xbe, 0xbb, 0x01]), { type: "value", entity: 7n, field: 1 });
  // hp is absent on entity 5: nothing to be relative to.
  assert.deepEqual(at([1, 0, 1, 5, 0b100, 2]), { type: "no-base", entity: 5n, field: 3 });
  // An added entity's value must be absolute.
  assert.deepEqual(at([1, 1, 0, 9, 0, 1, 2]), { type: "no-base", entity: 9n, field: 1 });
  // Text that is not UTF-8, and text longer than declared.
  assert.deepEqual(at([1, 0, 1, 7, 0b1000, 2, 0xff, 0xfe]), { type: "value", entity: 7n, field: 4 });
  assert.deepEqual(at([1, 0, 1, 7, 0b1000, 9, ...Buffer.from("ninechars")]), { type: "value", entity: 7n, field: 4 });
});

test("edge cases of numbers: ten-byte varints, ids past 2^64, huge counts", () => {
  const at = (bytes: number[]) => problem(dots(), bytes);
  const max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]; // 2^64 - 1
  assert.deepEqual(at([1, ...max, 0]), { type: "truncated" }, "a count of 2^64 - 1 runs out of bytes");
  assert.deepEqual(at([1, ...Array(11).fill(0x80), 0]), { type: "truncated" }, "eleven bytes are no varint");
  assert.deepEqual(at([1, 2, 0, ...max, 0, 0, 1, 0, 0]), { type: "order" }, "ids past 2^64");
  // A tenth byte's bits past bit 63 are dropped: kind 1 with a 0x7e tenth byte.
  assert.equal(at([0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7e, 0, 0]), undefined);
  // Strings keep a leading byte-order mark.
  const world = dots();
  applyBlock(world, new Uint8Array([1, 0, 1, 7, 0b1000, 4, 0xef, 0xbb, 0xbf, 0x61]));
  assert.deepEqual(world.get(7n)!.get(4), { case: "string", value: "\ufeffa" });
});

test("fuzz: thousands of random and mutated blocks throw only DecodeError", { timeout: 60_000 }, () => {
  const random = prng(0x7469636b);
  const pick = (n: number) => Math.floor(random() * n);
  const valid = [
    ...frames.flatMap((f) => f.frame.packed),
    new Uint8Array([1, 0, 1, 7, 0b1, 12]),
    new Uint8Array([1, 0, 2, 3, 5, 0x0c, 0x26, 7, 0x22, 0xbc, 0xb8, 2, 2, 1, 2]),
  ];
  const base = new World(shipSchema);
  applyBlock(base, frames[0]!.frame.packed[0]!);

  function mutate(block: Uint8Array): Uint8Array {
    const bytes = [...block];
    for (let edits = 1 + pick(3); edits > 0; edits--) {
      const at = pick(bytes.length + 1);
      switch (pick(6)) {
        case 0:
          bytes[at] = pick(256);
          break;
        case 1:
          bytes[at] = (bytes[at] ?? 0) ^ (1 << pick(8));
          break;
        case 2:
          bytes.splice(at, 0, pick(256));
          break;
        case 3:
          bytes.splice(at, 1);
          break;
        case 4:
          bytes.length = at;
          break;
        default:
          bytes.splice(at, 0, ...Array(1 + pick(12)).fill(0xff));
      }
    }
    return Uint8Array.from(bytes, (b) => b ?? 0);
  }

  const outcomes = new Map<string, number>();
  for (let i = 0; i < 20_000; i++) {
    let block: Uint8Array;
    if (i % 2 === 0) block = mutate(valid[pick(valid.length)]!);
    else {
      block = Uint8Array.from({ length: pick(64) }, () => pick(256));
      if (i % 4 === 1 && block.length > 0) block[0] = 1; // a declared kind: deeper paths
    }
    // Each block against a fresh copy of the state, and against one that keeps
    // whatever the earlier blocks did to it.
    const fresh = new World(shipSchema);
    applyBlock(fresh, frames[0]!.frame.packed[0]!);
    for (const world of [fresh, base]) {
      let outcome = "ok";
      try {
        applyBlock(world, block);
      } catch (e) {
        if (!(e instanceof DecodeError)) throw new Error(`block ${Buffer.from(block).toString("hex")}: ${e}`);
        outcome = e.problem.type;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
  }
  for (const outcome of ["ok", "truncated", "trailing", "unknown-kind", "order", "mask", "value", "no-base", "unknown-entity"]) {
    assert.ok(outcomes.has(outcome), `no block ended in ${outcome}: ${[...outcomes]}`);
  }
});
