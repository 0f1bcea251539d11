/**
 * The tickrelay browser client.
 *
 * Layout:
 * - `v1` — the generated `tickrelay.v1` protobuf messages (`proto/tickrelay/v1/tickrelay.proto`);
 *   decode with `fromBinary(v1.ServerEnvelopeSchema, bytes)` from `@bufbuild/protobuf`.
 * - {@link StateMirror} — a room's state: applies state frames, verifies checksums,
 *   reports a {@link DesyncError} when the client must ask for a resync.
 * - {@link Schema} — the declared kinds of a room (`Joined.schema`), which packed
 *   blocks need.
 * - {@link entityHash}, {@link headHash}, {@link fieldHash}, {@link stateChecksum} — the
 *   protocol's state checksum.
 *
 * 64-bit integers of the protocol (ids, owners, ticks, sequence numbers, checksums,
 * `int` field values) are `bigint`s; 32-bit ones (kinds, field ids) are numbers.
 * docs/PROTOCOL.md in the repository is the wire reference.
 */

export * as v1 from "./gen/tickrelay/v1/tickrelay_pb.js";
export { entityHash, fieldHash, headHash, stateChecksum, type HashedEntity } from "./checksum.js";
export { StateMirror, DesyncError, DEFAULT_MAX_ENTITIES, type Desync } from "./mirror.js";
export { DecodeError, type BlockProblem } from "./packed.js";
export {
  Schema,
  KindSchema,
  Quantizer,
  SchemaError,
  MAX_FIELDS_PER_KIND,
  MAX_FLOAT_STEPS,
  type FieldSpec,
  type FieldType,
  type FieldProblem,
} from "./schema.js";
export type { Entity, EntityField, Value } from "./world.js";
export {
  Client,
  RequestError,
  reconnectAllowed,
  PROTOCOL,
  PROTOCOL_VERSION,
  BEARER_PREFIX,
  ENDED_MIRRORS_KEPT,
  type ClientOptions,
  type ClientEvents,
  type ClientStats,
  type InputPayload,
  type Writes,
  type RoomOptions,
} from "./client.js";
export { TokenBucket, DEFAULT_BACKOFF, backoffDelay, type Backoff } from "./bucket.js";
export {
  InterpolationBuffer,
  numericFields,
  CLOCK_WINDOW_MS,
  CLOCK_SLEW,
  CLOCK_SNAP_MS,
  type InterpolationOptions,
  type Sample,
} from "./interpolation.js";
export { Predictor, MAX_INPUT_SEQ, type PredictorOptions, type Smoothing } from "./prediction.js";
