/**
 * The state checksum (docs/PROTOCOL.md, "State checksum"; `proto/src/state/checksum.rs`):
 * a wrapping 64-bit sum of per-entity hashes, each the wrapping sum of a hash of the
 * entity's id, owner and kind ({@link headHash}) and one hash per field
 * ({@link fieldHash}), each a chain of SplitMix64 finalizer rounds.
 *
 * The hash runs on two unsigned 32-bit halves rather than BigInt: it is computed for
 * every entity that changed in every frame, and the halves are several times faster.
 * Results are returned as exact `bigint`s, like `StateFrame.checksum`.
 */

import type { Value } from "./world.js";

/** What the hash reads from an entity; fields must be in ascending id order. */
export interface HashedEntity {
  readonly id: bigint;
  readonly owner: bigint;
  readonly kind: number;
  readonly fields: Iterable<{ readonly id: number; readonly value: Value }>;
}

/** Hash of one entity's state (the protocol's `entity_hash`): its head's plus its fields'. */
export function entityHash(entity: HashedEntity): bigint {
  let sum = headHash(entity.id, entity.owner, entity.kind);
  for (const { id, value } of entity.fields) sum = BigInt.asUintN(64, sum + fieldHash(entity.id, id, value));
  return sum;
}

/** The part of an entity's hash that is not its fields': its id, owner and kind. */
export function headHash(id: bigint, owner: bigint, kind: number): bigint {
  const h = new Hasher();
  h.bigWord(id);
  h.bigWord(owner);
  h.word(0, kind);
  return h.value();
}

/** The share of one field in the hash of entity `entity` (the protocol's `field_hash`). */
export function fieldHash(entity: bigint, field: number, value: Value): bigint {
  const h = new Hasher();
  h.bigWord(entity);
  // One word: the field id shifted left by 8, or'ed with the value's type number.
  h.word(field >>> 24, ((field << 8) | TYPE_NUMBERS[value.case]) >>> 0);
  switch (value.case) {
    case "int":
      h.bigWord(value.value);
      break;
    case "float":
      h.word(0, float32Bits(value.value));
      break;
    case "bool":
      h.word(0, value.value ? 1 : 0);
      break;
    case "bytes":
      h.bytes(value.value);
      break;
    case "string":
      h.bytes(utf8.encode(value.value));
      break;
  }
  return h.value();
}

/** The number of each value type in the hash. */
const TYPE_NUMBERS: Record<Value["case"], number> = { int: 1, float: 2, bool: 3, bytes: 4, string: 5 };

/** Checksum of a whole state: the wrapping sum of its entities' hashes (0 when empty). */
export function stateChecksum(entities: Iterable<HashedEntity>): bigint {
  let sum = 0n;
  for (const entity of entities) sum = BigInt.asUintN(64, sum + entityHash(entity));
  return sum;
}

const utf8 = new TextEncoder();
const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/**
 * The IEEE-754 bits of a float32; every NaN is 0x7fc00000, as the relay stores it (an
 * engine may keep or drop a NaN's payload).
 */
function float32Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7fc00000;
  f32[0] = v;
  return f32Bits[0]!;
}

/** The hash state `h`, as halves, and the operations of the protocol's pseudocode. */
class Hasher {
  hi = 0x7469636b; // the seed, "tickrela"
  lo = 0x72656c61;

  /** The hash as an exact `bigint`. */
  value(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  /** `h = mix(h ^ w)` for the word `w = hi·2^32 + lo`. */
  word(hi: number, lo: number): void {
    this.hi = (this.hi ^ hi) >>> 0;
    this.lo = (this.lo ^ lo) >>> 0;
    // The SplitMix64 finalizer.
    this.xorShiftRight(30);
    this.multiply(0xbf58476d, 0x1ce4e5b9);
    this.xorShiftRight(27);
    this.multiply(0x94d049bb, 0x133111eb);
    this.xorShiftRight(31);
  }

  /** A word from a bigint, as two's-complement u64 (so a negative int hashes as Rust's `v as u64`). */
  bigWord(w: bigint): void {
    if (w >= 0n && w <= 0xffffffffn) {
      this.word(0, Number(w)); // the common case, without allocating BigInts
    } else {
      const u = BigInt.asUintN(64, w);
      this.word(Number(u >> 32n), Number(u & 0xffffffffn));
    }
  }

  /** The length, then each 8-byte chunk zero-padded, read as a little-endian u64. */
  bytes(data: Uint8Array): void {
    this.word(0, data.length);
    for (let i = 0; i < data.length; i += 8) {
      this.word(littleEndian32(data, i + 4), littleEndian32(data, i));
    }
  }

  /** `h ^= h >> n`, for `0 < n < 32`. */
  private xorShiftRight(n: number): void {
    this.lo = (this.lo ^ ((this.lo >>> n) | (this.hi << (32 - n)))) >>> 0;
    this.hi = (this.hi ^ (this.hi >>> n)) >>> 0;
  }

  /** `h *= c` (wrapping) for `c = hi·2^32 + lo`. */
  private multiply(hi: number, lo: number): void {
    const high = mulHigh(this.lo, lo) + Math.imul(this.hi, lo) + Math.imul(this.lo, hi);
    this.lo = Math.imul(this.lo, lo) >>> 0;
    this.hi = high >>> 0;
  }
}

/** The high 32 bits of the 64-bit product of two unsigned 32-bit numbers. */
function mulHigh(a: number, b: number): number {
  const a1 = a >>> 16;
  const a0 = a & 0xffff;
  const b1 = b >>> 16;
  const b0 = b & 0xffff;
  // Every partial sum stays below 2^53, so the float arithmetic is exact.
  const middle = a1 * b0 + a0 * b1 + ((a0 * b0) >>> 16);
  return a1 * b1 + Math.floor(middle / 0x10000);
}

/** Four bytes from `offset` as a little-endian u32, zero past the end. */
function littleEndian32(data: Uint8Array, offset: number): number {
  let v = 0;
  for (let i = 3; i >= 0; i--) v = v * 256 + (data[offset + i] ?? 0);
  return v;
}
