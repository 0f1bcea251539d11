import assert from "node:assert/strict";
import { test } from "node:test";

import { fromBinary } from "@bufbuild/protobuf";

import { StateFrameSchema } from "../src/gen/tickrelay/v1/tickrelay_pb.js";
import { DesyncError, StateMirror } from "../src/mirror.js";
import { frames, schema, stateJson } from "./vectors.js";

test("every vector applied in order gives exactly its state and checksum", () => {
  assert.equal(frames.length, 5);
  const mirror = new StateMirror(schema);
  for (const { name, frame, checksum, stateAfter } of frames) {
    mirror.apply(frame);
    assert.deepEqual(stateJson(mirror.entities()), stateAfter, name);
    assert.equal(mirror.checksum(), checksum, name);
    assert.equal(mirror.tick, frame.tick);
  }
  assert.equal(mirror.checksumsVerified, 5);
  assert.ok(mirror.synced);
});

test("a frame corrupted in a value is caught by the checksum, and a full snapshot recovers", () => {
  const mirror = new StateMirror(schema);
  mirror.apply(frames[0]!.frame);
  // Frame 2's block changes ship 3's hp by zigzag 0x26 (-10); 0x22 makes it -9.
  const bytes = frames[1]!.bytes.slice();
  const at = Buffer.from(bytes).indexOf(Buffer.from([0x05, 0x0c, 0x26]));
  assert.ok(at > 0);
  bytes[at + 2] = 0x22;
  const corrupted = fromBinary(StateFrameSchema, bytes);
  assert.throws(
    () => mirror.apply(corrupted),
    (e) => e instanceof DesyncError && e.desync.type === "checksum" && e.desync.server === frames[1]!.checksum,
  );
  assert.equal(mirror.get(3n)?.get(3)?.value, 991n);
  assert.ok(!mirror.synced);
  // Deltas are refused until a full snapshot arrives.
  assert.throws(
    () => mirror.apply(frames[2]!.frame),
    (e) => e instanceof DesyncError && e.desync.type === "awaiting-snapshot",
  );
  mirror.apply(frames[0]!.frame);
  for (const { frame, stateAfter } of frames.slice(1)) {
    mirror.apply(frame);
    assert.deepEqual(stateJson(mirror.entities()), stateAfter);
  }
});

test("a frame corrupted in its packed block is a desync with the block's error as cause", () => {
  const mirror = new StateMirror(schema);
  mirror.apply(frames[0]!.frame);
  const frame = fromBinary(StateFrameSchema, frames[1]!.bytes);
  frame.packed[0] = frame.packed[0]!.subarray(0, -1); // blob's last byte missing
  assert.throws(
    () => mirror.apply(frame),
    (e) =>
      e instanceof DesyncError &&
      e.desync.type === "packed" &&
      e.desync.error.problem.type === "truncated" &&
      e.cause === e.desync.error,
  );
  assert.ok(!mirror.synced);
});
