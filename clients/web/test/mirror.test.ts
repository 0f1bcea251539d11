import assert from "node:assert/strict";
import { test } from "node:test";

import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import { StateFrameSchema, type Field, type StateFrame } from "../src/gen/tickrelay/v1/tickrelay_pb.js";
import { stateChecksum } from "../src/checksum.js";
import { DEFAULT_MAX_ENTITIES, DesyncError, StateMirror, type Desync } from "../src/mirror.js";
import { KindSchema, Schema } from "../src/schema.js";
import { frames, prng, schema, stateJson } from "./vectors.js";

function frame(init: MessageInitShape<typeof StateFrameSchema>): StateFrame {
  return create(StateFrameSchema, init);
}

function desync(type: Desync["type"]) {
  return (e: unknown) => e instanceof DesyncError && e.desync.type === type;
}

const [full, relative, removal, absolute] = frames.map((f) => f.frame) as [StateFrame, StateFrame, StateFrame, StateFrame];

test("an ordered delta must be against the mirror's tick", () => {
  const mirror = new StateMirror(schema);
  assert.throws(() => mirror.apply(relative), desync("awaiting-snapshot"));
  mirror.apply(full);
  assert.throws(() => mirror.apply(removal), (e) => {
    assert.ok(e instanceof DesyncError);
    assert.deepEqual(e.desync, { type: "baseline-mismatch", baseline: 2n, mirror: 1n });
    return true;
  });
  assert.ok(!mirror.synced);
  assert.throws(() => mirror.apply(relative), desync("awaiting-snapshot"));
});

test("unordered frames: late ones and ones ahead of their baseline are skipped", () => {
  const mirror = new StateMirror(schema);
  assert.equal(mirror.applyUnordered(relative), false, "no snapshot yet");
  assert.equal(mirror.applyUnordered(full), true);
  assert.equal(mirror.applyUnordered(full), false, "duplicate snapshot");
  assert.equal(mirror.applyUnordered(relative), true);
  assert.equal(mirror.applyUnordered(absolute), false, "baseline 3 not reached");
  assert.equal(mirror.applyUnordered(removal), true);
  assert.equal(mirror.applyUnordered(relative), false, "late");
  assert.equal(mirror.applyUnordered(absolute), true);
  assert.deepEqual(stateJson(mirror.entities()), frames[3]!.stateAfter);
  assert.equal(mirror.checksumsVerified, 4);
});

test("an absolute delta applies to any state at or after its baseline", () => {
  // Frame 4 is against tick 3; a mirror that already holds tick 4 skips a repeat, and
  // a later delta against tick 3 with the same absolute values reproduces tick 4.
  const mirror = new StateMirror(schema);
  for (const f of [full, relative, removal, absolute]) mirror.apply(f);
  const again = frame({ ...absolute, tick: 5n });
  assert.equal(mirror.applyUnordered(again), true);
  assert.deepEqual(stateJson(mirror.entities()), frames[3]!.stateAfter);
});

test("generic entities: removals of unknown ids are harmless; unknown changes and empty fields are desyncs", () => {
  const mirror = new StateMirror();
  mirror.apply(
    frame({
      tick: 1n,
      removed: [99n],
      added: [
        {
          id: 1n,
          owner: 2n,
          kind: 5,
          fields: [
            { id: 3, value: { case: "int", value: -(2n ** 63n) } },
            { id: 1, value: { case: "string", value: "a" } },
            { id: 3, value: { case: "bytes", value: new Uint8Array([1]) } }, // the last of a duplicate id wins
          ],
        },
      ],
    }),
  );
  const entity = mirror.get(1n)!;
  assert.deepEqual(entity.fields.map((f) => f.id), [1, 3]);
  assert.deepEqual(entity.get(3), { case: "bytes", value: new Uint8Array([1]) });

  mirror.apply(frame({ tick: 2n, baselineTick: 1n, changed: [{ id: 1n, fields: [{ id: 2, value: { case: "float", value: -0 } }] }] }));
  assert.deepEqual(entity.fields.map((f) => f.id), [1, 2, 3]);
  assert.ok(Object.is(entity.get(2)?.value, -0));

  assert.throws(() => mirror.apply(frame({ tick: 3n, baselineTick: 2n, changed: [{ id: 7n }] })), desync("unknown-entity"));
  mirror.apply(frame({ tick: 1n, added: [{ id: 1n }] }));
  assert.throws(
    () => mirror.apply(frame({ tick: 2n, baselineTick: 1n, changed: [{ id: 1n, fields: [{ id: 4 }] }] })),
    desync("empty-field"),
  );
  assert.throws(() => mirror.apply(frame({ tick: 1n, added: [{ id: 1n, fields: [{ id: 4 }] }] })), desync("empty-field"));
});

test("generic values of a declared kind must fit the declaration, and floats are snapped", () => {
  const mirror = new StateMirror(schema);
  const ship = (fields: MessageInitShape<typeof StateFrameSchema>["added"]) => frame({ tick: 1n, added: fields });
  mirror.apply(ship([{ id: 1n, kind: 1, fields: [{ id: 1, value: { case: "float", value: 12.34567 } }] }]));
  assert.equal(mirror.get(1n)?.get(1)?.value, Math.fround(12.35));

  const refused = (fields: { id: number; value: Field["value"] }[], problem: string) =>
    assert.throws(
      () => mirror.apply(ship([{ id: 1n, kind: 1, fields }])),
      (e) => e instanceof DesyncError && e.desync.type === "field" && e.desync.problem === problem,
    );
  refused([{ id: 9, value: { case: "bool", value: true } }], "undeclared");
  refused([{ id: 1, value: { case: "int", value: 1n } }], "wrong-type");
  refused([{ id: 1, value: { case: "float", value: 100.006 } }], "out-of-range");
  refused([{ id: 1, value: { case: "float", value: NaN } }], "out-of-range");
  refused([{ id: 3, value: { case: "int", value: 1001n } }], "out-of-range");
  refused([{ id: 5, value: { case: "string", value: "é".repeat(9) } }], "too-long"); // 18 bytes > 16
  refused([{ id: 6, value: { case: "bytes", value: new Uint8Array(5) } }], "too-long");
});

test("a frame that would take the mirror past maxEntities is a desync, after at most that many entities", () => {
  const dots = new Schema([new KindSchema(1, "dot", [])]);
  // A packed block of 100,000 entities in 300 KB: kind 1, 100,000 added (a varint), 0 changed.
  const n = 100_000;
  const block = new Uint8Array([1, 0xa0, 0x8d, 0x06, 0, ...new Uint8Array(3 * n).map((_, i) => (i % 3 === 0 ? 1 : 0))]);
  const mirror = new StateMirror(dots, 1000);
  assert.equal(mirror.maxEntities, 1000);
  assert.throws(() => mirror.apply(frame({ tick: 1n, packed: [block] })), (e) => {
    assert.ok(e instanceof DesyncError);
    assert.deepEqual(e.desync, { type: "entity-limit", limit: 1000 });
    return true;
  });
  assert.ok(!mirror.synced);
  assert.ok(mirror.size <= 1000, `${mirror.size} entities`);
  // Generic entities count too, and replacing one (same id) adds none.
  const generic = (ids: number[]) => frame({ tick: 2n, added: ids.map((id) => ({ id: BigInt(id), kind: 9 })) });
  const small = new StateMirror(dots, 2);
  assert.throws(() => small.apply(generic([1, 2, 3])), desync("entity-limit"));
  small.apply(generic([1, 2, 2, 1]));
  assert.equal(small.size, 2);
  assert.equal(new StateMirror(dots).maxEntities, DEFAULT_MAX_ENTITIES);
});

test("the mirror keeps copies, not views into the frame's buffer", () => {
  const mirror = new StateMirror();
  const buffer = new Uint8Array([7, 8, 9]);
  mirror.apply(frame({ tick: 1n, added: [{ id: 1n, fields: [{ id: 1, value: { case: "bytes", value: buffer.subarray(1) } }] }] }));
  buffer.fill(0);
  assert.deepEqual(mirror.get(1n)?.get(1)?.value, new Uint8Array([8, 9]));
});

test("fuzz: mutated frames leave the mirror with a DesyncError or a consistent state", { timeout: 60_000 }, () => {
  const random = prng(42);
  const pick = (n: number) => Math.floor(random() * n);
  let [applied, desyncs] = [0, 0];
  for (let i = 0; i < 5_000; i++) {
    const mirror = new StateMirror(schema);
    mirror.apply(full);
    const source = frames[1 + pick(3)]!;
    const bytes = source.bytes.slice();
    for (let edits = 1 + pick(3); edits > 0; edits--) bytes[pick(bytes.length)] = pick(256);
    let mutated: StateFrame;
    try {
      mutated = fromBinary(StateFrameSchema, bytes);
    } catch {
      continue; // not a StateFrame at all: the envelope decoder's business
    }
    try {
      mirror.applyUnordered(mutated);
      applied++;
      // Whatever was accepted, the incremental checksum still describes the state.
      assert.equal(mirror.checksum(), stateChecksum(mirror.entities()));
    } catch (e) {
      if (!(e instanceof DesyncError)) throw e;
      assert.ok(!mirror.synced);
      desyncs++;
    }
  }
  assert.ok(applied > 100 && desyncs > 100, `applied ${applied}, desyncs ${desyncs}`);
});

test("a frame whose per-member part repeats packed and checksum decodes as one (owner-only kinds)", () => {
  // The relay sends a member's own entities of owner-only kinds after the shared
  // body: more `packed` blocks and the member's view's checksum, which replaces the
  // shared one (protobuf keeps the last of a field sent twice).
  assert.ok(full.packed.length >= 1 && full.checksum !== undefined);
  const [own, ...shared] = full.packed;
  const sharedBody = toBinary(StateFrameSchema, frame({ ...full, packed: shared, checksum: full.checksum! ^ 1n }));
  const ownPart = toBinary(StateFrameSchema, frame({ packed: [own!], checksum: full.checksum }));
  const wire = new Uint8Array([...sharedBody, ...ownPart]);
  const merged = fromBinary(StateFrameSchema, wire);
  assert.equal(merged.checksum, full.checksum);
  assert.equal(merged.packed.length, full.packed.length);
  const mirror = new StateMirror(schema);
  mirror.apply(merged);
  assert.equal(mirror.checksumsVerified, 1);
});
