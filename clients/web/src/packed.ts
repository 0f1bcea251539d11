/**
 * Packed blocks: the compact encoding of entities whose kind the room's schema
 * declares, one block per kind in `StateFrame.packed` (docs/PROTOCOL.md, "Packed
 * blocks"; `proto/src/packed.rs`).
 *
 * ```text
 * block    = kind n_added n_changed added* changed*   (every number a varint)
 * added    = id-step owner mask value*                 (values absolute)
 * changed  = id-step mask value*                       (values absolute or relative)
 * value    = v                                         int, float, bool
 *          | length byte*                              bytes, string
 * ```
 *
 * A number travels as its code `c`, absolute (`v = 2c + 1`) or relative to the code
 * `b` the field has in the client's state (`v = 2·zigzag(c - b)`).
 */

import { decode, type FieldSpec, type FieldType, type KindSchema } from "./schema.js";
import type { Value, World } from "./world.js";

/** Why a packed block could not be applied. */
export type BlockProblem =
  /** The block ends in the middle of a number, a value or a list. */
  | { readonly type: "truncated" }
  /** Bytes after the last entry. */
  | { readonly type: "trailing" }
  /** The kind is not in the room's schema. */
  | { readonly type: "unknown-kind"; readonly kind: bigint }
  /** An id step of 0 after the first entry, or ids past 2^64. */
  | { readonly type: "order" }
  /** A mask bit for a field the kind does not declare. */
  | { readonly type: "mask"; readonly entity: bigint }
  /** A number outside its field's range, text that is not UTF-8, or too long a value. */
  | { readonly type: "value"; readonly entity: bigint; readonly field: number }
  /** A relative value for a field without a value to be relative to. */
  | { readonly type: "no-base"; readonly entity: bigint; readonly field: number }
  /** A change to an entity the state does not hold, or holds with another kind. */
  | { readonly type: "unknown-entity"; readonly entity: bigint };

/** A packed block that does not decode against the client's state: a desync. */
export class DecodeError extends Error {
  constructor(readonly problem: BlockProblem) {
    super(describe(problem));
    this.name = "DecodeError";
  }
}

function describe(p: BlockProblem): string {
  switch (p.type) {
    case "truncated":
      return "packed block truncated";
    case "trailing":
      return "bytes after the end of the packed block";
    case "unknown-kind":
      return `packed block of undeclared kind ${p.kind}`;
    case "order":
      return "entity ids of a packed block do not ascend";
    case "mask":
      return `field mask of entity ${p.entity} names an undeclared field`;
    case "value":
      return `field ${p.field} of entity ${p.entity} holds an invalid value`;
    case "no-base":
      return `field ${p.field} of entity ${p.entity} is relative to a value the mirror does not hold`;
    case "unknown-entity":
      return `packed block changes unknown entity ${p.entity}`;
  }
}

/**
 * Applies one packed block to `world` (whose schema must be the room's): its added
 * entities replace any with the same id, then its changes are set. Throws a
 * {@link DecodeError} for a block that is malformed or does not fit the state, or an
 * `EntityLimitError` for one that would take the world past its `maxEntities`, and
 * nothing else, whatever the bytes; the world may then be partly changed.
 */
export function applyBlock(world: World, block: Uint8Array): void {
  const r = new Reader(block);
  const kind = r.varint();
  const declared = kind <= 0xffffffffn ? world.schema.kind(Number(kind)) : undefined;
  if (declared === undefined) throw new DecodeError({ type: "unknown-kind", kind });
  const added = r.varint();
  const changed = r.varint();

  let id = 0n;
  for (let n = 0n; n < added; n++) {
    id = r.nextId(id, n);
    const owner = r.varint();
    const fields: [number, Value][] = [];
    for (const spec of r.maskedFields(declared, id)) {
      const read = r.value(spec.type);
      // An added entity has no earlier value to be relative to.
      if (read.form === "relative") throw new DecodeError({ type: "no-base", entity: id, field: spec.id });
      fields.push([spec.id, valueOf(read, spec, id, undefined)]);
    }
    const refused = world.replace(id, owner, declared.kind, fields);
    if (refused) throw new DecodeError({ type: "value", entity: id, field: refused.field });
  }

  id = 0n;
  for (let n = 0n; n < changed; n++) {
    id = r.nextId(id, n);
    const specs = r.maskedFields(declared, id);
    const entity = world.get(id);
    if (entity === undefined || entity.kind !== declared.kind) {
      throw new DecodeError({ type: "unknown-entity", entity: id });
    }
    for (const spec of specs) {
      const read = r.value(spec.type);
      let base: bigint | undefined;
      if (read.form === "relative") {
        base = entity.code(spec.id);
        if (base === undefined) throw new DecodeError({ type: "no-base", entity: id, field: spec.id });
      }
      const refused = world.set(entity, spec.id, valueOf(read, spec, id, base));
      if (refused) throw new DecodeError({ type: "value", entity: id, field: spec.id });
    }
  }
  if (!r.done) throw new DecodeError({ type: "trailing" });
}

/** One value as read, before its field's type (and, if relative, its base) makes it a {@link Value}. */
type Read =
  | { readonly form: "bytes"; readonly bytes: Uint8Array }
  | { readonly form: "absolute"; readonly code: bigint }
  | { readonly form: "relative"; readonly delta: bigint };

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The value of `read` for field `spec` of `entity`, relative to `base` if relative. */
function valueOf(read: Read, spec: FieldSpec, entity: bigint, base: bigint | undefined): Value {
  let value: Value | undefined;
  switch (read.form) {
    case "bytes":
      value = spec.type.case === "string" ? utf8Text(read.bytes) : { case: "bytes", value: read.bytes };
      break;
    case "absolute":
      value = decode(spec.type, read.code);
      break;
    case "relative":
      value = base === undefined ? undefined : decode(spec.type, base + read.delta);
      break;
  }
  if (value === undefined) throw new DecodeError({ type: "value", entity, field: spec.id });
  return value;
}

function utf8Text(bytes: Uint8Array): Value | undefined {
  try {
    return { case: "string", value: strictUtf8.decode(bytes) };
  } catch {
    return undefined; // not UTF-8
  }
}

const U64_MAX = (1n << 64n) - 1n;

/** Reads a block front to back; every read past the end throws `truncated`. */
class Reader {
  #pos = 0;

  constructor(readonly data: Uint8Array) {}

  /** True when every byte was read. */
  get done(): boolean {
    return this.#pos === this.data.length;
  }

  /** An unsigned LEB128 varint of at most ten bytes, as a u64. */
  varint(): bigint {
    // Most numbers fit the first four bytes (28 bits): read those without BigInt.
    let low = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const byte = this.#byte();
      low += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return BigInt(low);
    }
    let value = BigInt(low);
    for (let shift = 28n; shift < 70n; shift += 7n) {
      const byte = this.#byte();
      value |= BigInt(byte & 0x7f) << shift;
      // Bits of a tenth byte past bit 63 are dropped, as Rust's `u64 << 63` does.
      if (byte < 0x80) return BigInt.asUintN(64, value);
    }
    throw new DecodeError({ type: "truncated" }); // more than ten bytes: not a varint
  }

  /** The id of entry `n` of a list, after `previous`. */
  nextId(previous: bigint, n: bigint): bigint {
    const step = this.varint();
    const id = previous + step;
    if ((n > 0n && step === 0n) || id > U64_MAX) throw new DecodeError({ type: "order" });
    return id;
  }

  /** A field mask: the declared fields it names, lowest bit first. */
  maskedFields(declared: KindSchema, entity: bigint): FieldSpec[] {
    const mask = this.varint();
    const count = declared.fields.length;
    if (count < 64 && mask >> BigInt(count) !== 0n) throw new DecodeError({ type: "mask", entity });
    const low = Number(mask & 0xffffffffn);
    const high = Number(mask >> 32n);
    const named: FieldSpec[] = [];
    for (let slot = 0; slot < count; slot++) {
      const bit = slot < 32 ? (low >>> slot) & 1 : (high >>> (slot - 32)) & 1;
      if (bit) named.push(declared.fields[slot]!);
    }
    return named;
  }

  /** One value of a field of type `type`. */
  value(type: FieldType): Read {
    if (type.case === "bytes" || type.case === "string") {
      const length = this.varint();
      if (length > BigInt(this.data.length - this.#pos)) throw new DecodeError({ type: "truncated" });
      const start = this.#pos;
      this.#pos += Number(length);
      // A copy: the state must not keep the whole frame alive, nor change with it.
      return { form: "bytes", bytes: this.data.slice(start, this.#pos) };
    }
    const v = this.varint();
    const z = v >> 1n;
    return v & 1n
      ? { form: "absolute", code: z }
      : { form: "relative", delta: z & 1n ? -(z >> 1n) - 1n : z >> 1n }; // un-zigzag
  }

  #byte(): number {
    if (this.#pos >= this.data.length) throw new DecodeError({ type: "truncated" });
    return this.data[this.#pos++]!;
  }
}
