/**
 * A room's entities as the client holds them, with the checksum kept up to date
 * incrementally (only the fields that changed since the last {@link World.checksum}
 * are hashed again). The client-side part of `proto/src/state/world.rs`: entities of a
 * declared kind take only declared fields with values that fit them, floats snapped
 * to their grid, and each such field keeps its code for relative packed values.
 */

import { fieldHash, headHash } from "./checksum.js";
import type { Field as WireField } from "./gen/tickrelay/v1/tickrelay_pb.js";
import { admit, type FieldProblem, type KindSchema, type Schema } from "./schema.js";

/**
 * A typed field value: the `Field.value` oneof of the wire schema. `int` is a
 * `bigint` (sint64), `float` a number holding a float32 value.
 */
export type Value = Exclude<WireField["value"], { case: undefined }>;

/** One field of an entity. */
export interface EntityField {
  readonly id: number;
  readonly value: Value;
}

/**
 * A field as stored: with its code when its kind is declared (0 otherwise), and its
 * {@link fieldHash} once the checksum has needed it (undefined since it changed).
 */
interface StoredField {
  readonly id: number;
  value: Value;
  code: bigint;
  hash: bigint | undefined;
}

/** An entity: id, owner (a member id; 0 = the server), kind and fields. */
export class Entity {
  /** @internal The kind's declaration, if declared. */
  readonly declared: KindSchema | undefined;
  /** @internal The fields, sorted by id. */
  readonly stored: StoredField[];
  /** @internal Cached `entityHash`; undefined while the entity is dirty. */
  hash: bigint | undefined = undefined;

  /** @internal */
  constructor(
    readonly id: bigint,
    readonly owner: bigint,
    readonly kind: number,
    declared: KindSchema | undefined,
    stored: StoredField[],
  ) {
    this.declared = declared;
    this.stored = stored;
  }

  /** The fields, sorted by id. */
  get fields(): readonly EntityField[] {
    return this.stored;
  }

  /** The value of one field. */
  get(field: number): Value | undefined {
    const i = this.position(field);
    return i >= 0 ? this.stored[i]!.value : undefined;
  }

  /** @internal The code of a declared field's value. */
  code(field: number): bigint | undefined {
    const i = this.position(field);
    return i >= 0 ? this.stored[i]!.code : undefined;
  }

  /** @internal The index of a field, or `-(insertion point) - 1` when absent. */
  position(field: number): number {
    let low = 0;
    let high = this.stored.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const id = this.stored[middle]!.id;
      if (id === field) return middle;
      if (id < field) low = middle + 1;
      else high = middle;
    }
    return -low - 1;
  }
}

/** A field whose value does not fit the kind's declaration. */
export interface FieldRefusal {
  readonly field: number;
  readonly problem: FieldProblem;
}

/** Adding an entity would take a world past its {@link World.maxEntities}; nothing was added. */
export class EntityLimitError extends Error {
  constructor(readonly limit: number) {
    super(`more than ${limit} entities`);
    this.name = "EntityLimitError";
  }
}

/** The entities of one room. */
export class World {
  readonly #entities = new Map<bigint, Entity>();
  /** Entities changed since the last checksum; their hashes are not in `#sum`. */
  readonly #dirty = new Set<Entity>();
  /** Wrapping sum of the hashes of the clean entities. */
  #sum = 0n;

  /**
   * `maxEntities` bounds what one frame can make the client allocate: a few bytes of a
   * packed block add an entity, so a message of a few MiB could add millions.
   */
  constructor(
    readonly schema: Schema,
    readonly maxEntities = Infinity,
  ) {}

  /** Number of entities. */
  get size(): number {
    return this.#entities.size;
  }

  /** One entity. */
  get(id: bigint): Entity | undefined {
    return this.#entities.get(id);
  }

  /** All entities, in no particular order. */
  entities(): IterableIterator<Entity> {
    return this.#entities.values();
  }

  /** The checksum of the whole state (docs/PROTOCOL.md, "State checksum"). */
  checksum(): bigint {
    for (const entity of this.#dirty) {
      let hash = headHash(entity.id, entity.owner, entity.kind);
      for (const f of entity.stored) {
        f.hash ??= fieldHash(entity.id, f.id, f.value);
        hash += f.hash;
      }
      entity.hash = BigInt.asUintN(64, hash);
      this.#sum = BigInt.asUintN(64, this.#sum + entity.hash);
    }
    this.#dirty.clear();
    return this.#sum;
  }

  /** Removes every entity (before a full snapshot). */
  clear(): void {
    this.#entities.clear();
    this.#dirty.clear();
    this.#sum = 0n;
  }

  /** Removes an entity; false if there was none. */
  remove(id: bigint): boolean {
    const entity = this.#entities.get(id);
    if (entity === undefined) return false;
    this.#entities.delete(id);
    if (entity.hash === undefined) this.#dirty.delete(entity);
    else this.#sum = BigInt.asUintN(64, this.#sum - entity.hash);
    return true;
  }

  /**
   * Creates an entity, replacing any with the same id. Of duplicate field ids the
   * last wins. Returns the first field (by id) that does not fit the schema, if any:
   * the entity is then absent. Throws an {@link EntityLimitError} if the world holds
   * `maxEntities` already and none with this id.
   */
  replace(
    id: bigint,
    owner: bigint,
    kind: number,
    fields: Iterable<readonly [number, Value]>,
  ): FieldRefusal | undefined {
    if (!this.remove(id) && this.#entities.size >= this.maxEntities) throw new EntityLimitError(this.maxEntities);
    const declared = this.schema.kind(kind);
    const stored: StoredField[] = [];
    for (const [field, value] of new Map(fields)) {
      stored.push({ id: field, value, code: 0n, hash: undefined });
    }
    stored.sort((a, b) => a.id - b.id);
    if (declared !== undefined) {
      for (const f of stored) {
        const admitted = admitTo(declared, f.id, f.value);
        if ("problem" in admitted) return admitted;
        f.value = admitted.value;
        f.code = admitted.code;
      }
    }
    const entity = new Entity(id, owner, kind, declared, stored);
    this.#entities.set(id, entity);
    this.#dirty.add(entity);
    return undefined;
  }

  /**
   * Sets one field of an entity of this world, creating the field if absent. Returns
   * why the value does not fit the kind's declaration, if it does not (nothing is
   * changed then).
   */
  set(entity: Entity, field: number, value: Value): FieldRefusal | undefined {
    let code = 0n;
    if (entity.declared !== undefined) {
      const admitted = admitTo(entity.declared, field, value);
      if ("problem" in admitted) return admitted;
      ({ value, code } = admitted);
    }
    const i = entity.position(field);
    if (i >= 0) {
      const f = entity.stored[i]!;
      f.value = value;
      f.code = code;
      f.hash = undefined;
    } else {
      entity.stored.splice(-i - 1, 0, { id: field, value, code, hash: undefined });
    }
    if (entity.hash !== undefined) {
      this.#sum = BigInt.asUintN(64, this.#sum - entity.hash);
      entity.hash = undefined;
      this.#dirty.add(entity);
    }
    return undefined;
  }
}

/** Checks a value against its declared field. */
function admitTo(declared: KindSchema, field: number, value: Value): { value: Value; code: bigint } | FieldRefusal {
  const slot = declared.slot(field);
  if (slot === undefined) return { field, problem: "undeclared" };
  const admitted = admit(declared.fields[slot]!.type, value);
  return typeof admitted === "string" ? { field, problem: admitted } : admitted;
}
