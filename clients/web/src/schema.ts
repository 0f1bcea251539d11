/**
 * Declared entity kinds (`Joined.schema`): which fields an entity of a kind may have
 * and of what type. Entities of declared kinds travel in packed blocks, which cannot
 * be decoded without the schema; floats are quantized to a grid that the server and
 * every client hold (and checksum) exactly. docs/PROTOCOL.md, "Declared kinds", is
 * the reference; this module follows `proto/src/state/schema.rs`.
 */

import {
  FieldType as WireFieldType,
  type FieldSchema as WireFieldSchema,
  type KindSchema as WireKindSchema,
} from "./gen/tickrelay/v1/tickrelay_pb.js";
import type { Value } from "./world.js";

/** Most fields a kind may declare: a packed block's field mask is 64 bits. */
export const MAX_FIELDS_PER_KIND = 64;

/** Most steps a float field may have (a 24-bit quantized value). */
export const MAX_FLOAT_STEPS = 2 ** 24;

/** Int fields need `max - min` below this, so a packed value and its flag fit 64 bits. */
const MAX_INT_SPAN = 1n << 62n;

/** A schema declaration that cannot be used. */
export class SchemaError extends Error {
  constructor(problem: string) {
    super(`invalid schema: ${problem}`);
    this.name = "SchemaError";
  }
}

/**
 * A float quantization: values are `float32(min + q × precision)` (computed in 64-bit
 * floating point, then rounded to 32 bits) for an integer `q` in `0..=steps`.
 */
export class Quantizer {
  /** The largest grid index. */
  readonly steps: number;
  readonly #inverse: number;

  /** Throws a {@link SchemaError} for a grid the protocol does not allow. */
  constructor(
    readonly min: number,
    readonly max: number,
    readonly precision: number,
  ) {
    if (!(Number.isFinite(min) && Number.isFinite(max) && min < max)) {
      throw new SchemaError("a float range needs finite min < max");
    }
    if (!(Number.isFinite(precision) && precision > 0)) {
      throw new SchemaError("a float precision must be positive");
    }
    // The grid ends at or just below `max` (the epsilon absorbs the rounding of
    // ranges such as 100 / 0.01).
    const steps = Math.floor((max - min) / precision + 1e-9);
    if (steps < 1 || steps > MAX_FLOAT_STEPS) {
      throw new SchemaError("a float range must hold 1 to 2^24 steps of its precision");
    }
    const magnitude = Math.max(Math.abs(min), Math.abs(max), Math.abs(min + steps * precision));
    if (precision < magnitude / 2 ** 20) {
      throw new SchemaError("a float precision must be at least 2^-20 of the largest magnitude in its range");
    }
    this.steps = steps;
    this.#inverse = 1 / precision;
  }

  /**
   * The grid index nearest to `v`, if `v` is at most half a step outside the grid
   * (undefined otherwise, and for NaN).
   */
  quantize(v: number): number | undefined {
    const steps = (v - this.min) * this.#inverse;
    if (!(steps >= -0.5 && steps <= this.steps + 0.5)) return undefined;
    // Math.round rounds halves up where Rust rounds them away from zero; the only
    // negative half allowed here is -0.5, which both clamp to 0.
    return Math.min(Math.max(Math.round(steps), 0), this.steps);
  }

  /** The float at grid index `q` (`q <= steps`). */
  value(q: number): number {
    return Math.fround(this.min + q * this.precision);
  }
}

/**
 * A declared field's type. `case` names the {@link Value} case it holds. Types read
 * with {@link Schema.fromProto} are validated; a hand-built one is trusted.
 */
export type FieldType =
  | { readonly case: "int"; readonly min: bigint; readonly max: bigint }
  | { readonly case: "float"; readonly quantizer: Quantizer }
  | { readonly case: "bool" }
  | { readonly case: "bytes"; readonly maxLen: number }
  | { readonly case: "string"; readonly maxLen: number };

/** Why a value does not fit its declared field. */
export type FieldProblem = "undeclared" | "wrong-type" | "out-of-range" | "too-long";

/** One declared field. */
export interface FieldSpec {
  readonly id: number;
  readonly name: string;
  readonly type: FieldType;
}

/** A declared kind: its fields sorted by id (bit `i` of a packed field mask is `fields[i]`). */
export class KindSchema {
  /** The declared fields, sorted by id. */
  readonly fields: readonly FieldSpec[];
  readonly #slots: Map<number, number>;

  /** Throws a {@link SchemaError} for duplicate field ids or more than 64 fields. */
  constructor(
    readonly kind: number,
    readonly name: string,
    fields: readonly FieldSpec[],
  ) {
    this.fields = [...fields].sort((a, b) => a.id - b.id);
    this.#slots = new Map(this.fields.map((f, slot) => [f.id, slot]));
    if (this.#slots.size !== this.fields.length) throw new SchemaError("a kind declares a field id twice");
    if (this.fields.length > MAX_FIELDS_PER_KIND) throw new SchemaError("a kind declares at most 64 fields");
  }

  /** The position of a field in {@link KindSchema.fields} (its bit in a field mask). */
  slot(field: number): number | undefined {
    return this.#slots.get(field);
  }
}

/** The kinds a room type declares. Entities of other kinds are free-form. */
export class Schema {
  /** A schema that declares nothing (every entity travels field by field). */
  static readonly EMPTY = new Schema([]);

  /** The declared kinds, sorted by kind number. */
  readonly kinds: readonly KindSchema[];
  readonly #byKind: Map<number, KindSchema>;

  /** Throws a {@link SchemaError} when a kind is declared twice. */
  constructor(kinds: readonly KindSchema[]) {
    this.kinds = [...kinds].sort((a, b) => a.kind - b.kind);
    this.#byKind = new Map(this.kinds.map((k) => [k.kind, k]));
    if (this.#byKind.size !== this.kinds.length) throw new SchemaError("a kind is declared twice");
  }

  /** The declaration of a kind, if declared. */
  kind(kind: number): KindSchema | undefined {
    return this.#byKind.get(kind);
  }

  /** The schema of a `Joined.schema`. Throws a {@link SchemaError} for an unusable one. */
  static fromProto(kinds: readonly WireKindSchema[]): Schema {
    return new Schema(
      kinds.map(
        (k) =>
          new KindSchema(
            k.kind,
            k.name,
            k.fields.map((f) => ({ id: f.id, name: f.name, type: fieldType(f) })),
          ),
      ),
    );
  }
}

function fieldType(f: WireFieldSchema): FieldType {
  switch (f.type) {
    case WireFieldType.INT:
      if (f.intMin > f.intMax || f.intMax - f.intMin >= MAX_INT_SPAN) {
        throw new SchemaError("an int range needs min <= max and max - min < 2^62");
      }
      return { case: "int", min: f.intMin, max: f.intMax };
    case WireFieldType.FLOAT:
      return { case: "float", quantizer: new Quantizer(f.floatMin, f.floatMax, f.precision) };
    case WireFieldType.BOOL:
      return { case: "bool" };
    case WireFieldType.BYTES:
      return { case: "bytes", maxLen: f.maxLen };
    case WireFieldType.STRING:
      return { case: "string", maxLen: f.maxLen };
    default:
      throw new SchemaError("a field has no known type");
  }
}

/** A value as a declared field stores it, with its code (see {@link admit}). */
export interface Admitted {
  readonly value: Value;
  readonly code: bigint;
}

const utf8 = new TextEncoder();

/**
 * Checks `value` against its declared type. Returns the value to store (a float
 * snapped to its grid) and its code — the non-negative integer a packed block carries
 * for a number: `value - min` for an int, the grid index for a float, 0 or 1 for a
 * bool (0 for bytes and text) — or why it does not fit.
 */
export function admit(type: FieldType, value: Value): Admitted | FieldProblem {
  switch (value.case) {
    case "int":
      if (type.case !== "int") return "wrong-type";
      return value.value < type.min || value.value > type.max ? "out-of-range" : { value, code: value.value - type.min };
    case "float": {
      if (type.case !== "float") return "wrong-type";
      const q = type.quantizer.quantize(value.value);
      if (q === undefined) return "out-of-range";
      return { value: { case: "float", value: type.quantizer.value(q) }, code: BigInt(q) };
    }
    case "bool":
      if (type.case !== "bool") return "wrong-type";
      return { value, code: value.value ? 1n : 0n };
    case "bytes":
      if (type.case !== "bytes") return "wrong-type";
      return value.value.length > type.maxLen ? "too-long" : { value, code: 0n };
    case "string":
      if (type.case !== "string") return "wrong-type";
      return utf8.encode(value.value).length > type.maxLen ? "too-long" : { value, code: 0n };
  }
}

/** The value of a numeric code, if it is in range (undefined for bytes and text). */
export function decode(type: FieldType, code: bigint): Value | undefined {
  if (code < 0n) return undefined;
  switch (type.case) {
    case "int":
      return code <= type.max - type.min ? { case: "int", value: type.min + code } : undefined;
    case "float":
      return code <= type.quantizer.steps ? { case: "float", value: type.quantizer.value(Number(code)) } : undefined;
    case "bool":
      return code <= 1n ? { case: "bool", value: code === 1n } : undefined;
    default:
      return undefined;
  }
}
