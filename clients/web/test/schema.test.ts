import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { FieldType, KindSchemaSchema } from "../src/gen/tickrelay/v1/tickrelay_pb.js";
import { admit, decode, KindSchema, Quantizer, Schema, SchemaError, type FieldType as Type } from "../src/schema.js";

const float = (min: number, max: number, precision: number): Type => ({
  case: "float",
  quantizer: new Quantizer(min, max, precision),
});

test("floats are snapped to the grid and checked against the range", () => {
  const type = float(0, 100, 0.01);
  assert.deepEqual(admit(type, { case: "float", value: Math.fround(12.34567) }), {
    value: { case: "float", value: Math.fround(12.35) },
    code: 1235n,
  });
  assert.deepEqual(decode(type, 1235n), { case: "float", value: Math.fround(12.35) });
  assert.deepEqual(admit(type, { case: "float", value: Math.fround(100.004) }), {
    value: { case: "float", value: 100 },
    code: 10000n,
  });
  assert.equal(admit(type, { case: "float", value: Math.fround(100.006) }), "out-of-range");
  assert.equal(admit(type, { case: "float", value: Math.fround(-0.006) }), "out-of-range");
  assert.equal(admit(type, { case: "float", value: NaN }), "out-of-range");
  assert.equal(admit(type, { case: "int", value: 1n }), "wrong-type");
  assert.equal(decode(type, 10001n), undefined);
});

test("every grid point of a float field survives a round trip through float32", () => {
  for (const [min, max, precision] of [
    [0, 100, 0.01],
    [-1000, 1000, 0.001],
    [-1, 1, 1 / 1024],
  ] as const) {
    const q = new Quantizer(min, max, precision);
    for (let code = 0; code <= q.steps; code++) {
      if (q.quantize(q.value(code)) !== code) assert.fail(`${min}..${max} by ${precision}: ${code}`);
    }
  }
});

test("ints, bools and lengths are checked", () => {
  const int: Type = { case: "int", min: -5n, max: 5n };
  assert.deepEqual(admit(int, { case: "int", value: -5n }), { value: { case: "int", value: -5n }, code: 0n });
  assert.equal(admit(int, { case: "int", value: 6n }), "out-of-range");
  assert.deepEqual(decode(int, 10n), { case: "int", value: 5n });
  assert.equal(decode(int, 11n), undefined);
  assert.deepEqual(admit({ case: "bool" }, { case: "bool", value: true }), { value: { case: "bool", value: true }, code: 1n });
  assert.equal(decode({ case: "bool" }, 2n), undefined);
  const text: Type = { case: "string", maxLen: 3 };
  assert.equal(admit(text, { case: "string", value: "abcd" }), "too-long");
  assert.equal(admit(text, { case: "string", value: "é€" }), "too-long"); // 5 bytes of UTF-8
  assert.equal(typeof admit(text, { case: "string", value: "abc" }), "object");
  assert.equal(admit(text, { case: "bytes", value: new Uint8Array([1]) }), "wrong-type");
});

test("unusable declarations are refused", () => {
  assert.throws(() => new Quantizer(0, 1, 0), SchemaError);
  assert.throws(() => new Quantizer(1, 0, 0.1), SchemaError);
  assert.throws(() => new Quantizer(0, 1e6, 1e-3), SchemaError, "finer than f32 holds");
  assert.throws(() => new Quantizer(0, 1e9, 1), SchemaError, "more than 2^24 steps");
  const field = (id: number) => ({ id, name: "f", type: { case: "bool" } as const });
  assert.throws(() => new KindSchema(1, "k", [field(1), field(1)]), SchemaError);
  assert.throws(() => new KindSchema(1, "k", Array.from({ length: 65 }, (_, i) => field(i))), SchemaError);
  assert.throws(() => new Schema([new KindSchema(1, "k", []), new KindSchema(1, "k", [])]), SchemaError);

  const wire = (fields: object[]) => [create(KindSchemaSchema, { kind: 1, fields })];
  assert.throws(() => Schema.fromProto(wire([{ id: 1, type: FieldType.INT, intMin: 5n, intMax: 4n }])), SchemaError);
  assert.throws(
    () => Schema.fromProto(wire([{ id: 1, type: FieldType.INT, intMin: -(2n ** 63n), intMax: 2n ** 63n - 1n }])),
    SchemaError,
  );
  assert.throws(() => Schema.fromProto(wire([{ id: 1, type: FieldType.UNSPECIFIED }])), SchemaError);
});

test("a wire schema sorts kinds and fields, and slots follow field ids", () => {
  const schema = Schema.fromProto([
    create(KindSchemaSchema, {
      kind: 2,
      name: "npc",
      fields: [
        { id: 2, name: "y", type: FieldType.FLOAT, floatMin: -10, floatMax: 10, precision: 0.5 },
        { id: 1, name: "x", type: FieldType.INT, intMin: -3n, intMax: 3n },
        { id: 7, name: "name", type: FieldType.STRING, maxLen: 16 },
      ],
    }),
    create(KindSchemaSchema, { kind: 1, name: "flag", fields: [{ id: 1, name: "up", type: FieldType.BOOL }] }),
  ]);
  assert.deepEqual(schema.kinds.map((k) => k.kind), [1, 2]);
  const npc = schema.kind(2)!;
  assert.deepEqual(npc.fields.map((f) => f.id), [1, 2, 7]);
  assert.equal(npc.slot(7), 2);
  assert.equal(npc.slot(3), undefined);
  assert.deepEqual(npc.fields[1]!.type, float(-10, 10, 0.5));
});
