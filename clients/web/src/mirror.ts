/**
 * The client-side state mirror: applies a room's full and delta state frames and
 * verifies the server's checksum, so a client detects a desync instead of drifting
 * (docs/PROTOCOL.md, "State frames and deltas"; `proto/src/mirror.rs`).
 */

import type { Field as WireField, StateFrame } from "./gen/tickrelay/v1/tickrelay_pb.js";
import { applyBlock, DecodeError } from "./packed.js";
import { Schema, type FieldProblem } from "./schema.js";
import { EntityLimitError, World, type Entity, type Value } from "./world.js";

/** Most entities a mirror holds by default: a frame that would give it more is refused. */
export const DEFAULT_MAX_ENTITIES = 65_536;

/** Why a frame could not be applied. */
export type Desync =
  /** A delta against a baseline the mirror does not hold. */
  | { readonly type: "baseline-mismatch"; readonly baseline: bigint; readonly mirror: bigint }
  /** A delta arrived before any full snapshot, or after a desync. */
  | { readonly type: "awaiting-snapshot" }
  /** A delta changed an entity the mirror does not have. */
  | { readonly type: "unknown-entity"; readonly entity: bigint }
  /** A field without a value. */
  | { readonly type: "empty-field"; readonly entity: bigint; readonly field: number }
  /** A packed block could not be decoded. */
  | { readonly type: "packed"; readonly error: DecodeError }
  /** A value does not fit the room's schema. */
  | { readonly type: "field"; readonly entity: bigint; readonly field: number; readonly problem: FieldProblem }
  /** The frame would give the mirror more entities than its `maxEntities`. */
  | { readonly type: "entity-limit"; readonly limit: number }
  /** The state after applying the frame does not match the server's checksum. */
  | { readonly type: "checksum"; readonly tick: bigint; readonly server: bigint; readonly mirror: bigint };

/**
 * The mirror's state is wrong: it refuses deltas until a full snapshot arrives. Ask
 * for one with `Request{resync{room}}`.
 */
export class DesyncError extends Error {
  constructor(readonly desync: Desync) {
    super(describe(desync), desync.type === "packed" ? { cause: desync.error } : undefined);
    this.name = "DesyncError";
  }
}

function describe(d: Desync): string {
  const hex = (v: bigint) => `0x${v.toString(16).padStart(16, "0")}`;
  switch (d.type) {
    case "baseline-mismatch":
      return `delta against tick ${d.baseline} but the mirror is at tick ${d.mirror}`;
    case "awaiting-snapshot":
      return "waiting for a full snapshot";
    case "unknown-entity":
      return `delta changes unknown entity ${d.entity}`;
    case "empty-field":
      return `field ${d.field} of entity ${d.entity} has no value`;
    case "packed":
      return d.error.message;
    case "field":
      return `field ${d.field} of entity ${d.entity} does not fit its declaration (${d.problem})`;
    case "entity-limit":
      return `the frame would give the room more than ${d.limit} entities`;
    case "checksum":
      return `checksum mismatch at tick ${d.tick}: server ${hex(d.server)}, mirror ${hex(d.mirror)}`;
  }
}

/**
 * A room's state as a client sees it. Feed it every `StateFrame` of the room, in
 * arrival order, with {@link StateMirror.apply} (ordered transports: WebSocket) or
 * {@link StateMirror.applyUnordered} (QUIC datagrams). Both throw a
 * {@link DesyncError}, and nothing else, when the frame leaves the mirror out of sync.
 *
 * Ticks, entity ids, owners, `int` values and checksums are `bigint`s (u64 or i64 on
 * the wire); entity kinds and field ids are numbers (u32).
 */
export class StateMirror {
  readonly #world: World;
  #tick = 0n;
  #synced = false;
  #lastInputSeq = 0n;
  #checksumsVerified = 0;

  /**
   * An empty mirror of a room with this schema (`Schema.fromProto(joined.schema)`),
   * waiting for its first full snapshot. A frame that would give it more than
   * `maxEntities` entities is a desync (`entity-limit`): one message of a few MiB could
   * otherwise make it allocate hundreds of MiB.
   */
  constructor(schema: Schema = Schema.EMPTY, maxEntities = DEFAULT_MAX_ENTITIES) {
    this.#world = new World(schema, maxEntities);
  }

  /** The most entities this mirror holds. */
  get maxEntities(): number {
    return this.#world.maxEntities;
  }

  /** The room's declared kinds. */
  get schema(): Schema {
    return this.#world.schema;
  }

  /** The tick of the last frame applied (or that failed to apply). */
  get tick(): bigint {
    return this.#tick;
  }

  /** True once a full snapshot was applied and no desync happened since. */
  get synced(): boolean {
    return this.#synced;
  }

  /** The last input sequence number the server reported applied. */
  get lastInputSeq(): bigint {
    return this.#lastInputSeq;
  }

  /** How many frames carried a checksum that matched. */
  get checksumsVerified(): number {
    return this.#checksumsVerified;
  }

  /** Number of entities. */
  get size(): number {
    return this.#world.size;
  }

  /** One entity: a live view, which later frames update (or replace, if re-added). */
  get(id: bigint): Entity | undefined {
    return this.#world.get(id);
  }

  /** All entities, in no particular order. */
  entities(): IterableIterator<Entity> {
    return this.#world.entities();
  }

  /** The checksum of the mirrored state (docs/PROTOCOL.md, "State checksum"). */
  checksum(): bigint {
    return this.#world.checksum();
  }

  /**
   * Applies one state frame from an ordered, reliable transport (WebSocket). A full
   * snapshot (baseline 0) is always accepted; a delta must be against the mirror's
   * current tick.
   */
  apply(frame: StateFrame): void {
    if (frame.baselineTick !== 0n) {
      if (!this.#synced) throw new DesyncError({ type: "awaiting-snapshot" });
      if (frame.baselineTick !== this.#tick) {
        this.#synced = false;
        throw new DesyncError({ type: "baseline-mismatch", baseline: frame.baselineTick, mirror: this.#tick });
      }
    }
    this.#applyChecked(frame);
  }

  /**
   * Applies one state frame from a transport that may lose and reorder frames (QUIC
   * datagrams), where deltas are against the last tick the client acknowledged.
   * Returns true when applied and false when skipped: a frame not newer than the
   * mirror (late or duplicated), or a delta the mirror cannot use yet (its baseline is
   * newer than the mirror, or no full snapshot arrived yet; the server repeats full
   * snapshots until one is acknowledged). Acknowledge a tick only when this returned
   * true.
   */
  applyUnordered(frame: StateFrame): boolean {
    const usable =
      frame.baselineTick === 0n
        ? !this.#synced || frame.tick > this.#tick
        : this.#synced && frame.baselineTick <= this.#tick && frame.tick > this.#tick;
    if (!usable) return false;
    this.#applyChecked(frame);
    return true;
  }

  #applyChecked(frame: StateFrame): void {
    try {
      this.#applyContents(frame);
    } catch (error) {
      this.#synced = false;
      if (error instanceof DecodeError) throw new DesyncError({ type: "packed", error });
      if (error instanceof EntityLimitError) throw new DesyncError({ type: "entity-limit", limit: error.limit });
      throw error;
    }
  }

  /** The apply order of docs/PROTOCOL.md: clear if full, removed, added, changed, packed. */
  #applyContents(frame: StateFrame): void {
    const world = this.#world;
    if (frame.baselineTick === 0n) world.clear();
    this.#tick = frame.tick;
    for (const id of frame.removed) {
      world.remove(id); // a removal of an unknown entity is harmless; the checksum still guards
    }
    for (const entity of frame.added) {
      const fields = entity.fields.map(({ id, value }) => [id, owned(value, entity.id, id)] as const);
      const refused = world.replace(entity.id, entity.owner, entity.kind, fields);
      if (refused) throw new DesyncError({ type: "field", entity: entity.id, ...refused });
    }
    for (const update of frame.changed) {
      const target = world.get(update.id);
      if (target === undefined) throw new DesyncError({ type: "unknown-entity", entity: update.id });
      for (const { id, value } of update.fields) {
        const refused = world.set(target, id, owned(value, update.id, id));
        if (refused) throw new DesyncError({ type: "field", entity: update.id, ...refused });
      }
    }
    for (const block of frame.packed) applyBlock(world, block);
    this.#synced = true;
    this.#lastInputSeq = frame.lastInputSeq;
    if (frame.checksum !== undefined) {
      const mirror = world.checksum();
      if (mirror !== frame.checksum) {
        throw new DesyncError({ type: "checksum", tick: frame.tick, server: frame.checksum, mirror });
      }
      this.#checksumsVerified++;
    }
  }
}

/**
 * A wire value the mirror can keep: a fresh object, its bytes copied (a decoded
 * `bytes` field is a view into the whole envelope's buffer).
 */
function owned(value: WireField["value"], entity: bigint, field: number): Value {
  if (value.case === undefined) throw new DesyncError({ type: "empty-field", entity, field });
  return value.case === "bytes" ? { case: "bytes", value: value.value.slice() } : { ...value };
}
