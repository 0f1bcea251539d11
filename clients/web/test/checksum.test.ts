import assert from "node:assert/strict";
import { test } from "node:test";

import { entityHash, stateChecksum } from "../src/checksum.js";
import { Schema } from "../src/schema.js";
import { World, type Value } from "../src/world.js";
import { prng } from "./vectors.js";

const entity = (id: bigint, owner: bigint, kind: number, fields: [number, Value][]) => ({
  id,
  owner,
  kind,
  fields: fields.map(([id, value]) => ({ id, value })),
});

test("known answers from docs/PROTOCOL.md", () => {
  assert.equal(entityHash(entity(0n, 0n, 0, [])), 0xe443fe8abfe9a4f7n);
  const fields: [number, Value][] = [
    [1, { case: "int", value: -5n }],
    [2, { case: "float", value: 1.5 }],
    [3, { case: "bool", value: true }],
    [4, { case: "string", value: "hello, world" }],
  ];
  assert.equal(entityHash(entity(42n, 7n, 3, fields)), 0xa9c3b24c7f56b61fn);
});

test("field ids of 2^24 and more: the top bits of the word of field id and type", () => {
  assert.equal(entityHash(entity(1n, 0n, 0, [[0xffffffff, { case: "int", value: 1n }]])), 0x3531d6ef3f08a717n);
  assert.equal(entityHash(entity(1n, 0n, 0, [[0x01000000, { case: "bool", value: true }]])), 0xab7e7ca153b1ceb2n);
});

test("every NaN hashes as the quiet NaN 0x7fc00000, as the relay stores it", () => {
  const nan = (value: number) => entityHash(entity(1n, 0n, 0, [[1, { case: "float", value }]]));
  const signalling = new DataView(new ArrayBuffer(4));
  signalling.setUint32(0, 0x7f800001);
  assert.equal(nan(NaN), 0xfcddd5dfa9f7ba04n);
  assert.equal(nan(signalling.getFloat32(0)), 0xfcddd5dfa9f7ba04n);
});

test("field type and byte boundaries matter", () => {
  const hash = (fields: [number, Value][]) => entityHash(entity(1n, 0n, 0, fields));
  assert.notEqual(hash([[1, { case: "int", value: 1n }]]), hash([[1, { case: "bool", value: true }]]));
  const text = (a: string, b: string) =>
    hash([
      [1, { case: "string", value: a }],
      [2, { case: "string", value: b }],
    ]);
  assert.notEqual(text("ab", "c"), text("a", "bc"));
  assert.notEqual(hash([[1, { case: "float", value: 0 }]]), hash([[1, { case: "float", value: -0 }]]));
});

test("the world's incremental checksum equals a recomputation after random edits", () => {
  const random = prng(7);
  const world = new World(Schema.EMPTY);
  const pick = (n: number) => Math.floor(random() * n);
  const value = (): Value => {
    switch (pick(5)) {
      case 0:
        return { case: "int", value: BigInt.asIntN(64, BigInt(pick(2 ** 31)) << BigInt(pick(40))) - 5n };
      case 1:
        return { case: "float", value: Math.fround(random() * 100 - 50) };
      case 2:
        return { case: "bool", value: random() < 0.5 };
      case 3:
        return { case: "bytes", value: Uint8Array.from({ length: pick(20) }, () => pick(256)) };
      default:
        return { case: "string", value: "é".repeat(pick(12)) };
    }
  };
  for (let step = 0; step < 2000; step++) {
    const id = BigInt(pick(30)) * 0x1_0000_0001n;
    const existing = world.get(id);
    const roll = pick(10);
    if (roll === 0) world.remove(id);
    else if (roll === 1 || existing === undefined) {
      world.replace(id, BigInt(pick(4)), pick(3), Array.from({ length: pick(5) }, () => [pick(8), value()] as const));
    } else world.set(existing, pick(8), value());
    if (step % 7 === 0) assert.equal(world.checksum(), stateChecksum(world.entities()), `step ${step}`);
  }
  world.clear();
  assert.equal(world.checksum(), 0n);
});
