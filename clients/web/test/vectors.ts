/**
 * The shared test vectors, `proto/testdata/packed.json`: a schema and a chain of state
 * frames, each with the state and checksum a client must hold after applying it.
 */

import { readFileSync } from "node:fs";

import { fromBinary, fromJson, type JsonValue } from "@bufbuild/protobuf";

import { KindSchemaSchema, StateFrameSchema, type StateFrame } from "../src/gen/tickrelay/v1/tickrelay_pb.js";
import { Schema } from "../src/schema.js";
import type { Entity, Value } from "../src/world.js";

/** The package directory (tests run from build/test/). */
export const packageRoot = new URL("../../", import.meta.url);

/** One step of the chain. */
export interface VectorFrame {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly frame: StateFrame;
  readonly checksum: bigint;
  readonly stateAfter: unknown;
}

interface File {
  schema: JsonValue[];
  frames: { name: string; frame_hex: string; checksum: string; state_after: unknown }[];
}

const file = JSON.parse(
  readFileSync(new URL("../../proto/testdata/packed.json", packageRoot), "utf8"),
) as File;

/** The vectors' schema, read from its proto JSON form as `Joined.schema` would be. */
export const schema = Schema.fromProto(file.schema.map((k) => fromJson(KindSchemaSchema, k)));

export const frames: readonly VectorFrame[] = file.frames.map((f) => {
  const bytes = Uint8Array.from(Buffer.from(f.frame_hex, "hex"));
  return {
    name: f.name,
    bytes,
    frame: fromBinary(StateFrameSchema, bytes),
    checksum: BigInt(`0x${f.checksum}`),
    stateAfter: f.state_after,
  };
});

/** A state as the vectors list it: entities by id, each with its fields by id. */
export function stateJson(entities: Iterable<Entity>): unknown {
  return [...entities]
    .sort((a, b) => (a.id < b.id ? -1 : 1))
    .map((e) => ({
      fields: Object.fromEntries(e.fields.map((f) => [String(f.id), valueJson(f.value)])),
      id: Number(e.id),
      kind: e.kind,
      owner: Number(e.owner),
    }));
}

function valueJson(v: Value): unknown {
  switch (v.case) {
    case "int":
      return { int: Number(v.value) };
    case "bytes":
      return { bytes: Buffer.from(v.value).toString("hex") };
    default:
      return { [v.case]: v.value };
  }
}

/** A deterministic PRNG (mulberry32): floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}
