/**
 * The connection: one WebSocket at a time to the relay, reconnecting with backoff and
 * resuming the session when the server kept it — the browser counterpart of the Rust
 * client's driver (`clients/rust/src/driver.rs`); docs/PROTOCOL.md is the reference.
 *
 * What it does for the application: joins (and rejoins after a new session), numbers
 * inputs per room and replays the unacknowledged ones after a reconnect, paces what it
 * sends below the limits the server announces, keeps a verified {@link StateMirror}
 * per room and asks for a full snapshot when one desyncs, correlates requests with
 * their responses, sends heartbeats (with the last numbered message received, so the
 * server can forget what it kept for a resume) and measures the round-trip time.
 *
 * In a cluster, a join the relay redirects to the node owning the room is joined
 * there, over a second connection (a client of its own, sharing this one's listeners
 * and stats) that every room living on that node shares; the room's inputs, events,
 * leave and mirror follow it; it joins with this client's member id (the redirect's
 * seat ticket). When this client's node stops it names a live node (`goingAway`),
 * which the client reconnects to; when it cannot be reached the client tries the fallback URLs:
 * its session continues there with its id (and its seats in rooms restored from their
 * checkpoints), and it joins its rooms again; a join answered `UNAVAILABLE` (or
 * `RATE_LIMITED`: joined again a moment after leaving) is tried again after `retryAfterMs`. A node connection whose node stops or cannot be reached
 * gives its rooms back to this client, which joins them again wherever they live now.
 */

import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import * as v1 from "./gen/tickrelay/v1/tickrelay_pb.js";
import { DEFAULT_BACKOFF, TokenBucket, backoffDelay, type Backoff } from "./bucket.js";
import { DEFAULT_MAX_ENTITIES, DesyncError, StateMirror } from "./mirror.js";
import { MAX_INPUT_SEQ } from "./prediction.js";
import { Schema } from "./schema.js";

/** The WebSocket subprotocol the server answers with. */
export const PROTOCOL = "tickrelay.v1";
/**
 * The protocol version this client speaks (`Welcome.protocolVersion`): 2 since the
 * state checksum hashes each field on its own.
 */
export const PROTOCOL_VERSION = 2;
/** The subprotocol prefix that carries a token (browsers cannot set headers). */
export const BEARER_PREFIX = "tickrelay.bearer.";
/** How many ended rooms' mirrors a client keeps readable (`Client.mirror`). */
export const ENDED_MIRRORS_KEPT = 4;

/** Client settings; only `url` is required. */
export interface ClientOptions {
  /** `wss://host:port/ws`; `ws://` only with {@link ClientOptions.allowInsecure}. */
  url: string;
  /**
   * Other nodes of the same cluster: when `url` cannot be reached, each attempt tries
   * the next of `url` and these in turn. A session resumed on another node continues
   * there with its session id (and its seats in the rooms restored there); the client
   * joins its rooms again by itself. With `url`, at most 16 are kept (the first).
   */
  fallbackUrls?: string[];
  /** A JWT (none in the relay's anonymous mode), offered as a subprotocol. */
  token?: string | undefined;
  /**
   * Asked for a token before every connection attempt (the first and each reconnect,
   * after a 4500 "token expired" close too); what it returns replaces `token`. Fetch
   * a fresh one from your backend here when tokens are short-lived. A rejection, or
   * no answer within `connectTimeoutMs`, counts as a failed attempt (the backoff, then
   * `gaveUp`).
   */
  getToken?: (() => string | Promise<string>) | undefined;
  /** Allow a `ws://` URL (behind a TLS-terminating proxy, or local development). */
  allowInsecure?: boolean;
  /**
   * A session to take over at the first connection: the {@link Client.resumeToken} of
   * an earlier page (reloaded) or process of this game, within the relay's resume
   * grace period (20 s by default) and, under JWT, with a token for the same user. The
   * session's rooms come back as `joined` (`requestId` 0, or the earlier page's own
   * for a join still being answered) and their full snapshots,
   * with the seats, member id and entities the earlier page had; inputs are numbered on
   * above the last one each room applied. Messages the earlier page may have received
   * and not handled are not sent again. A token the relay no longer knows is answered
   * 4504, and the client starts a new session at once (`connected` with `resumed`
   * false).
   */
  resumeToken?: string | undefined;
  /**
   * What this player tells the game of every room it joins (a display name, a chosen
   * character), sent with each join and quick join: at most 1,024 bytes (beyond, joins
   * are refused with `LIMIT_EXCEEDED`). A room's simulation reads it
   * (`ctx.members.data(member)`); other members are not sent it. Default: nothing.
   */
  memberData?: Uint8Array;
  /** Reconnection policy (default: {@link DEFAULT_BACKOFF}). */
  backoff?: Backoff;
  /** Events and requests kept while disconnected (default 1024; more are refused with a RATE_LIMITED `error`; leaves, quick joins and token refreshes are always kept; inputs wait for their replay instead). */
  bufferLimit?: number;
  /** Inputs kept per room until the server acknowledges them (default 1024). */
  unackedInputLimit?: number;
  /**
   * Messages waiting to be sent while connected, the server's announced rates pacing
   * them (default 1024). An input, event or request handed to a full queue is refused:
   * an `error` with `RATE_LIMITED` (`sendInput` returns undefined and the input is not
   * kept; a request rejects), so an application sending faster than the server takes
   * learns it instead of queueing without bound.
   */
  sendQueueLimit?: number;
  /** Application ping interval, ms (default 2000). */
  pingIntervalMs?: number;
  /** Reconnect when nothing arrived for this long, ms (default 10000). */
  quietTimeoutMs?: number;
  /**
   * When state frames stop for a second on a connection that was receiving them, the
   * client pings at once, and reconnects when nothing arrives within this, ms
   * (default 3000): a relay machine gone (no close from its kernel) is noticed in
   * about a second plus this, not `quietTimeoutMs`. A room that goes idle costs one ping.
   */
  stallTimeoutMs?: number;
  /** Give up on one connection attempt after this long, ms (default 5000). */
  connectTimeoutMs?: number;
  /**
   * A server message larger than this is not decoded: the connection is closed (1009)
   * and the client reconnects through the backoff (default 16 MiB).
   */
  maxMessageBytes?: number;
  /**
   * A state frame that would give a room's mirror more entities than this is not
   * applied: a desync of the room, reported as an `error` too (default 65,536).
   */
  maxEntitiesPerRoom?: number;
  /** How long {@link Client.request} waits, ms (default 5000). */
  requestTimeoutMs?: number;
  /** The WebSocket constructor (default: the global one). */
  WebSocket?: typeof WebSocket;
}

/** An input's payload: relay writes or authoritative intent bytes. */
export type InputPayload = MessageInitShape<typeof v1.InputSchema>["payload"];

/** A relay room's writes, as `sendInput(room, { case: "writes", value })` takes them. */
export type Writes = MessageInitShape<typeof v1.EntityWritesSchema>;

/** Everything a client reports, by event name. */
export interface ClientEvents {
  /** A connection is up (`resumed`: the server kept the session and its seats). */
  connected: { sessionId: bigint; userId: string; resumed: boolean };
  joined: v1.Joined;
  left: v1.Left;
  /** Cluster mode: the room lives on another node; the client joins it there by itself. */
  redirected: { room: string; url: string };
  /** A state frame was applied to the room's mirror. */
  state: {
    room: string;
    tick: bigint;
    full: boolean;
    serverTimeUs: bigint;
    /** Local arrival time (`performance.now()`). */
    receivedMs: number;
    /**
     * The last input of this client the server applied in the room (a number above
     * every input this client sent there is no acknowledgement: the one before stays).
     */
    lastInputSeq: bigint;
    mirror: StateMirror;
  };
  event: v1.RoomEvent;
  /**
   * A member joined or left, went away (its connection lost for a second, its seat
   * held) or came back, or became the room's owner (`OWNER`; the owner at joining is
   * `Joined.owner`). Treat a change you do not know as no change of membership.
   */
  presence: v1.Presence;
  /**
   * A room's metadata or lock changed (its owner's `UpdateRoom`, or its game), at most
   * four times a second (`roomListing` follows it).
   */
  roomUpdated: v1.RoomUpdated;
  /**
   * Something this client sent was refused; the session goes on. Also a state frame
   * over `maxEntitiesPerRoom`, not applied (`LIMIT_EXCEEDED`, with its room).
   */
  error: v1.Error;
  /**
   * Numbered messages the server no longer had when this client resumed. Each room then
   * sends its `joined` again (`requestId` 0): who is in it, who owns it and its metadata
   * and lock now (`roomOwner` and `roomListing` follow it). Lost events and responses
   * stay lost.
   */
  messagesLost: { count: bigint };
  /** A room's mirror went out of sync; a new one waits for the full snapshot asked for (at most once a second). */
  desync: { room: string; error: DesyncError };
  /**
   * A connection ended (1006: lost without a close): the client's own, or (`redirected`)
   * one it opened to another node of a cluster for rooms living there. `willReconnect`
   * false: for the client's own connection, `gaveUp` follows; for a redirected one,
   * its rooms are joined again through the client's own connection and play goes on.
   */
  disconnected: { code: number; reason: string; willReconnect: boolean; url: string; redirected: boolean };
  reconnecting: { attempt: number; delayMs: number; reason: string };
  /**
   * The client stopped: a do-not-reconnect close code (`attempts` 0), or too many
   * failed attempts (`attempts`: the failed connections in a row, the first included,
   * so `maxAttempts + 1`), or a URL that cannot be opened at all.
   */
  gaveUp: { attempts: number; reason: string };
}

/** Counters for a HUD or a test. */
export interface ClientStats {
  messagesIn: number;
  bytesIn: number;
  bytesOut: number;
  frames: number;
  checksumsVerified: number;
  desyncs: number;
  reconnects: number;
  resumes: number;
  messagesLost: number;
  /** Last measured round-trip time, ms (undefined before the first pong). */
  rttMs: number | undefined;
}

/** A `Request` answered with an `Error`, or not answered in time. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly error?: v1.Error,
  ) {
    super(message);
    this.name = "RequestError";
  }
}

/**
 * Close codes after which reconnecting makes sense (docs/PROTOCOL.md, "Close codes"),
 * 1015 among them: a browser's report of a failed TLS handshake, which the next
 * attempt, or the next URL, may get past.
 */
export function reconnectAllowed(code: number): boolean {
  return [1001, 1006, 1011, 1012, 1013, 1014, 1015].includes(code) || (code >= 4500 && code <= 4999);
}

/** `WebSocket.OPEN`. */
const OPEN = 1;

/** 4500: the token expired; the session is over. */
const TOKEN_EXPIRED = 4500;
/** 4504: the resume token is unknown or expired; start a new session. */
const RESUME_FAILED = 4504;
/** What the client closes with when it means to resume: not 1000, so the server keeps the session. */
const DROPPED = 4000;
/** 1001: the server is shutting down. */
const SHUTTING_DOWN = 1001;
/** 1002: what the client closes with when the server broke the protocol. */
const PROTOCOL_ERROR = 1002;
/** 1009: what the client closes with when a server message is over `maxMessageBytes`. */
const MESSAGE_TOO_BIG = 1009;
/**
 * A connection that lasted this long after its `Welcome` proved the server healthy:
 * when it ends, the backoff starts over. One that ends sooner, or never got a Welcome,
 * is a failed attempt (the backoff grows, and gives up after `maxAttempts` in a row),
 * so a relay that accepts and then closes at once is treated as one that is down.
 */
const STABLE_AFTER_MS = 10_000;

/** State frames that stopped for this long, on a connection receiving them, are a stall (see `stallTimeoutMs`). */
const STALL_AFTER_MS = 1000;
/**
 * A numbered message more than this far above the last one received is no gap a relay
 * makes (it keeps far fewer for a resume: `[session] outbox_max_messages`, 1,024 by
 * default): the connection and its session go.
 */
const MAX_MESSAGE_GAP = 65_536n;
/** The highest number an earlier page's session is taken to be at (as for inputs, 2^53). */
const MAX_FIRST_MESSAGE = 2n ** 53n;
/** Request ids count from here, above every input number (at most 2^53 - 1), as the Rust client's. */
const FIRST_REQUEST_ID = (1n << 53n) + 1n;
/** Most URLs kept: `url`, the fallback URLs and the nodes a `GoingAway` named. */
const MAX_URLS = 16;
/** A room asks for a full snapshot at most this often, whatever asks (as the server grants them). */
const RESYNC_EVERY_MS = 1000;
/** Characters of a close reason sent: at most 120 bytes of UTF-8, under the 123 a close frame carries. */
const CLOSE_REASON_CHARS = 40;
/** Redirects in a row for one room before the client stops following them. */
const MAX_HOPS = 4;
/** Rooms left whose input numbering is kept (beyond it, numbering in a room left long ago starts again). */
const MAX_ROOMS_NUMBERED = 1024;
/** Reconnection attempts to a node other than the client's own before its rooms go back. */
const NODE_ATTEMPTS = 3;

/** How long each of them may take at most (a machine gone answers no handshake). */
const NODE_CONNECT_TIMEOUT_MS = 2000;
/** How long a URL this client lost counts as a dead node's: redirects there are retried, not followed. */
const UNREACHABLE_FOR_MS = 20_000;
/** How long a room redirected to a node this client failed over from waits before it is joined again. */
const STALE_REDIRECT_WAIT_MS = 500;
/**
 * Close codes a browser reports when the relay itself did not close the connection:
 * no close frame came (1006: the connection failed or was lost), a proxy found no
 * relay (1014), the TLS handshake failed (1015).
 */
const UNANSWERED_CLOSES = [1006, 1014, 1015];

/** How long a close waits for the pacer to let out what it holds (see `#sendQueued`). */
const CLOSE_SENDS_FOR_MS = 1000;
/** The server's default limits (docs/PROTOCOL.md, "Rate limits"), for those a welcome leaves at 0: not announced. */
const DEFAULT_LIMITS = { maxMessageBytes: 16 * 1024, messagesPerSecond: 50, messageBurst: 100, bytesPerSecond: 65_536 };
/** The smallest `max_message_bytes` believed: a smaller one would leave room for no message. */
const MIN_MESSAGE_BYTES = 1024;
/** A message's framing in an envelope beyond its own encoding (its key and length), at most. */
const MESSAGE_FRAMING = 8;
/** The bytes of messages an envelope may carry for a server whose message limit is `max`. */
const batchBytes = (max: number): number => max - Math.floor(max / 8);

/**
 * Paces bytes below the server's byte bucket: 80 % of its `rate`, with half its burst at
 * once (messages the network delivers bunched reach the server at once), but never less
 * than one envelope of `maxBatchBytes`, which the server admits whole (its burst is at
 * least its message size). A server older than `byte_burst` (0) is taken to have the
 * default burst, 128 KiB, or twice its rate if that is less.
 */
const bytePacer = (rate: number, byteBurst: number, maxBatchBytes: number): TokenBucket => {
  const burst = byteBurst > 0 ? byteBurst : Math.min(2 * rate, 131_072);
  return new TokenBucket(rate * 0.8, Math.max(burst / 2, maxBatchBytes), now());
};

/** How the client paces what it sends, from the server's limits. */
interface Pacing {
  messages: TokenBucket;
  bytes: TokenBucket;
  /** Most messages per envelope. */
  maxBatch: number;
  /** Most bytes of messages per envelope: the server's `maxMessageBytes` less an eighth. */
  maxBatchBytes: number;
}

/** A limit as announced, 0 meaning "not announced": then the server's default. */
const announced = (value: number | undefined, byDefault: number): number => (value !== undefined && value > 0 ? value : byDefault);

/**
 * The pacing for the limits a welcome announced (none: the server's defaults). A 0 is
 * a limit not announced, not a limit of nothing (which would mute the client); a
 * message size under {@link MIN_MESSAGE_BYTES} is taken as that.
 */
function pacing(limits: v1.Limits | undefined): Pacing {
  const maxMessageBytes = Math.max(MIN_MESSAGE_BYTES, announced(limits?.maxMessageBytes, DEFAULT_LIMITS.maxMessageBytes));
  const maxBatchBytes = batchBytes(maxMessageBytes);
  // 80 % of the rates with half the message burst: headroom for pings and for
  // messages the network delivers bunched together.
  const burst = Math.max(1, announced(limits?.messageBurst, DEFAULT_LIMITS.messageBurst) * 0.5);
  const rate = announced(limits?.messagesPerSecond, DEFAULT_LIMITS.messagesPerSecond);
  const bytesPerSecond = announced(limits?.bytesPerSecond, DEFAULT_LIMITS.bytesPerSecond);
  return {
    messages: new TokenBucket(rate * 0.8, burst, now()),
    bytes: bytePacer(bytesPerSecond, limits?.byteBurst ?? 0, maxBatchBytes),
    maxBatch: Math.floor(burst),
    maxBatchBytes,
  };
}

type Outgoing = MessageInitShape<typeof v1.ClientMessageSchema>["kind"];

/** What a room takes along when it moves to another of the client's connections. */
type Moving = Pick<RoomState, "nextSeq" | "unacked" | "sentUpto" | "heldEvents" | "seat" | "create" | "quick">;

/**
 * A quick join the application asked for, with the rooms that refused it ROOM_FULL so
 * far (filled, locked or changed between the relay's pick and the join): each try
 * leaves them out, the last (after QUICK_JOIN_FULL_TRIES refusals) asks for a room of
 * the node asked only (`localOnly`), and a refusal of that is the answer.
 */
interface QuickAsk {
  message: Outgoing & { case: "quickJoin" };
  fullRooms: string[];
}

/** How many times a quick join answered ROOM_FULL is sent again before the refusal is the answer. */
const QUICK_JOIN_FULL_TRIES = 3;

interface RoomState {
  roomType: string;
  /** Whether the current server session answered this room's join (`Joined`). */
  joined: boolean;
  nextSeq: bigint;
  /** The last input the server reported applied (see `acknowledge`). */
  ackedSeq: bigint;
  unacked: { seq: bigint; payload: InputPayload }[];
  /**
   * The highest input number that may have been sent (queued while the room was
   * joined, here or on the connection it came from): inputs above it waited for a
   * join's answer and never left the client (see `acknowledge`).
   */
  sentUpto: bigint;
  /** Events sent before the join was answered: they wait for `Joined` (a redirected join takes them along). */
  heldEvents: Outgoing[];
  /** From the room's `Joined`: frames cannot be decoded without it. */
  schema: Schema | undefined;
  /** The same as it came (to tell whether a new `Joined` changed it). */
  wireSchema: v1.KindSchema[];
  mirror: StateMirror | undefined;
  /** The mirror before a reconnect, read until `mirror` has the snapshot after it. */
  previous: StateMirror | undefined;
  resyncAskedMs: number;
  /** A redirect's seat ticket, presented in this room's next join (then dropped). */
  seat: string;
  /** The options of a join that creates the room. */
  create: RoomOptions | undefined;
  /** The request id of the last join sent: an `Error` carrying it refuses the join. */
  joinRequest: bigint;
  /**
   * The request id of this state's first join: a `joined` with a lower one answers a join
   * made before the room was left (and joined again), and is not this one's.
   */
  firstJoin: bigint;
  /** The room's owner as last told (`Joined.owner`, presence `OWNER`); undefined before the join's answer. */
  owner: bigint | undefined;
  /** The room's metadata and lock as last told (`Joined`, then `RoomUpdated`); undefined before the join's answer. */
  listing: v1.RoomUpdated | undefined;
  /** A join refused for now, sent again when this fires (see `#joinLater`). */
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** The quick join that picked the room on another node, until the join there is answered: a ROOM_FULL refusal sends it again (see `QuickAsk`). */
  quick: QuickAsk | undefined;
}

/** How a join creates a room: its metadata (listed, matched by quick joins) and privacy. */
export type RoomOptions = MessageInitShape<typeof v1.RoomOptionsSchema>;

/** What a `Joined` or `RoomUpdated` says of its room's listing, as a `RoomUpdated` of its own. */
function listingOf({ room, metadata, locked }: v1.Joined | v1.RoomUpdated): v1.RoomUpdated {
  return create(v1.RoomUpdatedSchema, { room, metadata: { ...metadata }, locked });
}

/** A room this client asked to join, not answered yet. */
function newRoom(roomType: string): RoomState {
  return {
    roomType,
    joined: false,
    nextSeq: 0n,
    ackedSeq: 0n,
    unacked: [],
    sentUpto: 0n,
    heldEvents: [],
    schema: undefined,
    wireSchema: [],
    mirror: undefined,
    previous: undefined,
    resyncAskedMs: -Infinity,
    owner: undefined,
    listing: undefined,
    seat: "",
    create: undefined,
    joinRequest: 0n,
    firstJoin: 0n,
    retryTimer: undefined,
    quick: undefined,
  };
}

type Listener<K extends keyof ClientEvents> = (event: ClientEvents[K]) => void;

/** The room an outgoing event is for ("" for other messages). */
const eventRoom = (message: Outgoing): string => (message?.case === "event" ? (message.value.room ?? "") : "");

const now = (): number => performance.now();
const unixMicros = (): bigint => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));

/**
 * A tickrelay client. Construct it, subscribe with {@link Client.on}, then
 * {@link Client.connect}. Every method may be called while disconnected: joins and
 * inputs are restored after the reconnect, other messages wait in a bounded buffer.
 */
export class Client {
  readonly stats: ClientStats;

  readonly #options: Required<Omit<ClientOptions, "token" | "getToken" | "resumeToken">> & Pick<ClientOptions, "token" | "getToken">;
  readonly #listeners: Map<keyof ClientEvents, Set<Listener<never>>>;
  /** The client the application made (this one, or the one that opened this node's connection). */
  readonly #home: Client;
  /** Home only: connections to other nodes, by URL. */
  readonly #nodes = new Map<string, Client>();
  /** Home only: rooms that live on another node, with redirects followed in a row. */
  readonly #redirected = new Map<string, { node: Client }>();
  /**
   * Home only: redirects followed for a room since it was last joined, kept while its
   * rooms come back from a node that could not be reached, so that a relay naming one
   * unreachable node after another is not followed for ever.
   */
  readonly #hops = new Map<string, number>();
  /**
   * Home only: the last input number of each room left (at most
   * `MAX_ROOMS_NUMBERED`, the oldest forgotten first): joined again, wherever it
   * lives, a room numbers on, so that a seat that outlived the leave (a restored
   * room's) does not drop new inputs as ones it applied.
   */
  readonly #numbered = new Map<string, bigint>();
  /** Presented on every connection (home's is used): see `Hello.client_id`. */
  readonly #clientId = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
  /** Quick joins not answered yet, by request id: sent again at every welcome (a resumed session ignores one it took already, a new one runs it). */
  readonly #quickJoins = new Map<bigint, QuickAsk>();
  /** Quick joins refused for now (RATE_LIMITED, UNAVAILABLE), sent again (under new ids) when these fire. */
  readonly #quickJoinRetries = new Map<bigint, ReturnType<typeof setTimeout>>();
  /** Leaves not answered yet (their rooms, by request id): sent again after a resume (NOT_A_MEMBER then answers one the lost connection had delivered). */
  readonly #leaves = new Map<bigint, string>();
  /** Of those, the ones sent again at the last resume: NOT_A_MEMBER answers one even after the first one's `left` came with the resume. */
  #resentLeaves = new Set<bigint>();
  /**
   * The token refresh waiting for its answer (`setToken`), and the timer that sends
   * it again when the relay refused it for now (`UNAVAILABLE`).
   */
  #refresh: { requestId: bigint; token: string; timer?: ReturnType<typeof setTimeout> } | undefined;
  /** `url`, then the fallback URLs; the next attempt connects to `#urls[#current]`. */
  #urls: string[];
  #current = 0;
  /** URLs this client lost or could not reach, and when (`performance.now()`). */
  readonly #unreachable = new Map<string, number>();
  /** The attempt under way failed before a welcome: the next tries the next URL. */
  #failed = false;
  readonly #rooms = new Map<string, RoomState>();
  readonly #requests = new Map<bigint, { resolve: (r: v1.Response) => void; reject: (e: Error) => void }>();
  /** Non-input messages sent while disconnected, in order. */
  #buffer: Outgoing[] = [];
  /** Messages waiting for the pacers on the live connection. */
  #queue: Outgoing[] = [];
  /**
   * The mirrors of the last rooms the server closed or removed this client from, as
   * they were then (`mirror` reads them until the room is joined again), the oldest
   * first: at most `ENDED_MIRRORS_KEPT`.
   */
  readonly #endedRooms = new Map<string, StateMirror>();
  /** Inputs in `#queue` already encoded (to check their size): not encoded again. */
  readonly #encodedInputs = new WeakMap<NonNullable<Outgoing>, Uint8Array>();
  /**
   * Request ids (joins, leaves, requests) count from 2^53, above every input number:
   * the server answers a refused input with an `Error` whose `requestId` is the
   * input's `seq`, which must not be taken for a request's answer.
   */
  #nextRequest = FIRST_REQUEST_ID - 1n;
  /** The first request id this client gives (see `#issued`). */
  #firstRequest = FIRST_REQUEST_ID;
  /** The last session (id undefined: an earlier page's, `resumeToken`, until its welcome). */
  #session: { id: bigint | undefined; resumeToken: string } | undefined;
  /**
   * Home only: the client took over an earlier page's session (`resumeToken`), whose
   * rooms, requests and message numbers it learns from the relay (see `#tookResumedRoom`).
   */
  #inherited = false;
  /** The last numbered server message received in this session (undefined: an earlier page's session, numbered from its next message). */
  #received: bigint | undefined = 0n;
  /** The number of the last event sent in this session (`ClientEnvelope.firstEventSeq`). */
  #eventsSent = 0n;
  /**
   * Events sent and not yet acknowledged (`Pong.eventsReceived`), with their numbers:
   * sent again after a reconnect, as the connection that took them may have died
   * first. At most `bufferLimit`.
   */
  #eventsUnacked: { seq: bigint; event: Outgoing }[] = [];
  #connectedBefore = false;
  #socket: WebSocket | undefined;
  /**
   * The connection being made or up: whether it presented a resume token, when its
   * welcome came (`performance.now()`), whether a state frame was applied on it,
   * whether a `GoingAway` came on it.
   */
  /** The connection being made or served; `url` is its own (`goingAway` changes the next one's before it ends). */
  #link: { resuming: boolean; welcomedAt: number | undefined; played: boolean; goingAway: boolean; url: string } = {
    resuming: false,
    welcomedAt: undefined,
    played: false,
    goingAway: false,
    url: "",
  };
  /** The pong in `#queue`, if one waits: a newer ping replaces its contents (one pending pong at most). */
  #queuedPong: Extract<Outgoing, { case: "pong" }> | undefined;
  #welcomed = false;
  #stopped = false;
  /** The own connection's close under way (see `close`). */
  #closing: Promise<void> | undefined;
  /** `connect()` was called while it was. */
  #connectAfterClose = false;
  /** The `getToken` ask under way (0: none); an answer to an older one is dropped. */
  #asking = 0;
  #asks = 0;
  /** The timeout of the ask under way. */
  #askTimer: ReturnType<typeof setTimeout> | undefined;
  #attempt = 0;
  #pacing = pacing(undefined);
  #timers: {
    ping?: ReturnType<typeof setInterval>;
    quiet?: ReturnType<typeof setTimeout>;
    stall?: ReturnType<typeof setTimeout>;
    flush?: ReturnType<typeof setTimeout>;
    retry?: ReturnType<typeof setTimeout>;
  } = {};
  /** When this connection's last state frame, and its last message, arrived. */
  #frameAt: number | undefined;
  #lastInbound = 0;
  /** When a stall's ping went (see `#checkStall`). */
  #probedAt: number | undefined;
  #closed: (() => void) | undefined;

  constructor(options: ClientOptions, home?: Client) {
    this.#home = home ?? this;
    this.#listeners = home === undefined ? new Map() : home.#listeners;
    this.stats = home?.stats ?? {
      messagesIn: 0,
      bytesIn: 0,
      bytesOut: 0,
      frames: 0,
      checksumsVerified: 0,
      desyncs: 0,
      reconnects: 0,
      resumes: 0,
      messagesLost: 0,
      rttMs: undefined,
    };
    const url = new URL(options.url);
    if (url.protocol !== "wss:" && !(url.protocol === "ws:" && options.allowInsecure)) {
      throw new TypeError(`${options.url}: use a wss:// URL (ws:// needs allowInsecure)`);
    }
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (WebSocketImpl === undefined) throw new TypeError("no WebSocket implementation: pass options.WebSocket (Node 22 and browsers have one; Node 20 with --experimental-websocket)");
    this.#urls = [options.url, ...(options.fallbackUrls ?? [])].slice(0, MAX_URLS);
    for (const fallback of this.#urls.slice(1)) {
      if (new URL(fallback).protocol !== url.protocol) throw new TypeError(`${fallback}: a fallback URL must use the scheme of ${options.url}`);
    }
    for (const given of this.#urls) {
      if (!/^wss?:\/\/[^/?#]+\//i.test(given)) {
        const { protocol, host } = new URL(given);
        throw new TypeError(`${given} has no path; the relay's WebSocket endpoint is /ws, as in ${protocol}//${host}/ws`);
      }
    }
    this.#options = {
      url: options.url,
      fallbackUrls: options.fallbackUrls ?? [],
      token: options.token,
      getToken: options.getToken,
      allowInsecure: options.allowInsecure ?? false,
      backoff: options.backoff ?? DEFAULT_BACKOFF,
      bufferLimit: options.bufferLimit ?? 1024,
      unackedInputLimit: options.unackedInputLimit ?? 1024,
      sendQueueLimit: options.sendQueueLimit ?? 1024,
      pingIntervalMs: options.pingIntervalMs ?? 2000,
      quietTimeoutMs: options.quietTimeoutMs ?? 10_000,
      stallTimeoutMs: options.stallTimeoutMs ?? 3000,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
      requestTimeoutMs: options.requestTimeoutMs ?? 5000,
      maxMessageBytes: options.maxMessageBytes ?? 16 * 1024 * 1024,
      maxEntitiesPerRoom: options.maxEntitiesPerRoom ?? DEFAULT_MAX_ENTITIES,
      WebSocket: WebSocketImpl,
      memberData: options.memberData ?? new Uint8Array(),
    };
    if (home === undefined && options.resumeToken !== undefined) {
      this.#session = { id: undefined, resumeToken: options.resumeToken };
      this.#inherited = true;
      this.#received = undefined;
      // Request ids of its own: the session may still answer, or remember, the earlier
      // page's (quick joins are run once per id).
      this.#firstRequest = FIRST_REQUEST_ID + (BigInt(1 + Math.floor(Math.random() * 2 ** 32)) << 16n);
      this.#nextRequest = this.#firstRequest - 1n;
    }
  }

  /** Subscribes to one kind of event; returns the unsubscribe function. */
  on<K extends keyof ClientEvents>(type: K, listener: Listener<K>): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) this.#listeners.set(type, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  /** Starts connecting (and reconnecting until {@link Client.close} or giving up); a no-op while connecting or connected. */
  connect(): void {
    // Called while `close()` is under way: connects once the close is done (unless
    // `close()` comes again), rather than not at all.
    if (this.#stopped && this.#closing !== undefined) {
      this.#connectAfterClose = true;
      void this.#closing.then(() => {
        if (!this.#connectAfterClose) return;
        this.#connectAfterClose = false;
        this.connect();
      });
      return;
    }
    if (this.#socket !== undefined || this.#timers.retry !== undefined || (this.#asking !== 0 && !this.#stopped)) return;
    this.#stopped = false;
    this.#attempt = 0;
    this.#open();
  }

  /**
   * Messages waiting for the pacer (the server's announced limits), on this client's
   * connections together. It grows while the application sends faster than the server
   * takes (more than about one input per tick, say): each message then waits longer.
   */
  get queuedMessages(): number {
    let queued = this.#queue.length;
    for (const node of this.#nodes.values()) queued += node.queuedMessages;
    return queued;
  }

  /** Whether a connection is up and welcomed. */
  get connected(): boolean {
    return this.#welcomed;
  }

  /** The session id, which is also this client's member id in every room (undefined before the first `Welcome` and after `close()`). */
  get sessionId(): bigint | undefined {
    return this.#session?.id;
  }

  /**
   * The resume token of the client's session, once connected (it changes only when a
   * new session starts: `connected` with `resumed` false); given the `resumeToken`
   * option, that one from the start. Store it (in
   * `sessionStorage`, say) to continue the session after a page reload
   * ({@link ClientOptions.resumeToken}). A secret: in the relay's anonymous mode it
   * alone continues the session. Rooms on other nodes of a cluster (joins redirected
   * there) are sessions of their own, not continued by it.
   */
  get resumeToken(): string | undefined {
    return this.#session?.resumeToken;
  }

  /**
   * Joins a room, creating it with `roomType` (and `create`'s metadata and privacy,
   * with this client as its owner) if it does not exist. Answered with `joined`, or
   * with an `error` naming the room: UNAVAILABLE and RATE_LIMITED are retried by the
   * client itself; any other refusal forgets the room (the inputs and events that
   * waited for it are dropped, and `sendInput` returns undefined until it is joined
   * again).
   */
  join(room: string, roomType: string, create?: RoomOptions): void {
    const node = this.#redirected.get(room)?.node;
    if (node !== undefined) return node.join(room, roomType, create);
    const state = this.#rooms.get(room) ?? this.#newRoom(room, roomType);
    if (create !== undefined) state.create = create;
    this.#rooms.set(room, state);
    // A leave of the room before this join is not sent again after a resume: the
    // join follows it on the connection (arriving after it, or lost with it), and a
    // leave sent again would undo the join.
    for (const [requestId, left] of this.#leaves) if (left === room) this.#leaves.delete(requestId);
    // Offline, the welcome sends it (rooms not yet answered are joined again).
    if (this.#welcomed) this.#enqueue(this.#joinMessage(room, state));
  }

  /**
   * Joins the fullest open room of `roomType` (empty: the server's default) whose
   * metadata holds every entry of `filters`, or creates one holding `create`'s
   * metadata plus the filters. Answered with `joined` (its `room` is the room chosen,
   * from then on a room like any other) or `error`; in a cluster the room may live on
   * another node, which the client joins by itself (`redirected`). A room that
   * refuses the join ROOM_FULL (filled, locked or its metadata changed between the
   * pick and the join: across nodes the directory's view is up to a third of a lease
   * old) is left out and the quick join sent again by the client, up to three times,
   * the last for a room of the node asked only (`localOnly`: rooms elsewhere that keep
   * changing cannot refuse every try; a refusal of that is the answer); what was sent
   * to a room that refused so is dropped. One refused for now (RATE_LIMITED, UNAVAILABLE: the `error` event says
   * so) is sent again by the client after the wait the relay gave.
   */
  quickJoin(roomType: string, filters: Record<string, string> = {}, create?: RoomOptions): void {
    this.#quickJoin(roomType, filters, create, []);
  }

  /** Home only: sends a quick join, leaving out `fullRooms` (those that refused it) and the rooms this client is in on other nodes. */
  #quickJoin(roomType: string, filters: Record<string, string>, create: RoomOptions | undefined, fullRooms: string[]): void {
    const requestId = this.#requestId();
    const exclude = [...fullRooms.filter((r) => r !== ""), ...this.#redirected.keys()].slice(0, 64); // the relay's limit
    const memberData = this.#options.memberData;
    // The last try takes a room of the node asked (or a new one there): rooms elsewhere that keep changing cannot refuse every try.
    const localOnly = fullRooms.length >= QUICK_JOIN_FULL_TRIES;
    const message = { case: "quickJoin" as const, value: { requestId, roomType, filters, create, exclude, memberData, localOnly } };
    this.#quickJoins.set(requestId, { message, fullRooms });
    this.#send(message);
  }

  /** A quick join refused ROOM_FULL by `room`: sent again over home, leaving the room out, unless it was refused so QUICK_JOIN_FULL_TRIES times already (then false: the refusal is its answer). */
  #quickJoinAgain(quick: QuickAsk, room: string): boolean {
    if (quick.fullRooms.length >= QUICK_JOIN_FULL_TRIES) return false;
    const { roomType, filters, create } = quick.message.value;
    this.#home.#quickJoin(roomType ?? "", filters ?? {}, create, [...quick.fullRooms, room]);
    return true;
  }

  #joinMessage(room: string, state: RoomState): Outgoing {
    const { roomType, seat, create } = state;
    state.joinRequest = this.#requestId();
    if (state.firstJoin === 0n) state.firstJoin = state.joinRequest;
    return { case: "join", value: { requestId: state.joinRequest, room, roomType, seat, create, memberData: this.#options.memberData } };
  }

  /** Forgets a room the server removed this client from, or refused, and where it lived (a later join of it starts at home again). */
  #forget(room: string): void {
    clearTimeout(this.#rooms.get(room)?.retryTimer);
    this.#dropRoom(room);
    if (this.#home.#redirected.get(room)?.node === this) this.#home.#redirected.delete(room);
  }

  /** Stops the timers of quick joins waiting to be sent again. */
  #cancelQuickJoinRetries(): void {
    for (const timer of this.#quickJoinRetries.values()) clearTimeout(timer);
    this.#quickJoinRetries.clear();
  }

  /** A room's state as it starts, numbering inputs on from where it was left. */
  #newRoom(room: string, roomType: string): RoomState {
    const state = newRoom(roomType);
    state.nextSeq = this.#home.#numbered.get(room) ?? 0n;
    return state;
  }

  /** Forgets a room's state (its input numbering aside); whether there was one. */
  #dropRoom(room: string): boolean {
    const state = this.#rooms.get(room);
    if (state === undefined) return false;
    this.#rooms.delete(room);
    const numbered = this.#home.#numbered;
    numbered.delete(room); // the newest last
    numbered.set(room, state.nextSeq);
    if (numbered.size > MAX_ROOMS_NUMBERED) numbered.delete(numbered.keys().next().value!);
    return true;
  }

  /** The answer to a quick join names its room: from now on one of this client's. A redirect keeps the quick join with the room until the room's node answers the join (see `QuickAsk`). */
  #tookQuickJoin(requestId: bigint, room: string, redirected: boolean): void {
    const quick = this.#quickJoins.get(requestId);
    if (quick === undefined) return;
    this.#quickJoins.delete(requestId);
    if (!this.#rooms.has(room)) this.#rooms.set(room, this.#newRoom(room, quick.message.value.roomType ?? ""));
    if (redirected) this.#rooms.get(room)!.quick = quick;
  }

  /**
   * A `joined` this client did not ask for (sent again at a resume, `requestId` 0, or
   * answering a join the session made before) for a room it does not know and is not
   * leaving: the session was an earlier page's ({@link ClientOptions.resumeToken}),
   * and the room is one of this client's now.
   */
  #tookResumedRoom(joined: v1.Joined): void {
    const leaving = [...this.#leaves.values()].includes(joined.room);
    if (!this.#issued(joined.requestId) && !leaving && !this.#rooms.has(joined.room)) this.#rooms.set(joined.room, this.#newRoom(joined.room, joined.roomType));
  }

  /** Whether `requestId` is one this client gave. */
  #issued(requestId: bigint): boolean {
    return requestId >= this.#firstRequest && requestId <= this.#nextRequest;
  }

  /** Leaves a room and forgets its mirror and unacknowledged inputs (one this client is not in: nothing is sent). */
  leave(room: string): void {
    const node = this.#redirected.get(room)?.node;
    this.#hops.delete(room);
    if (node !== undefined) {
      this.#redirected.delete(room);
      return node.leave(room);
    }
    // A room this client is not in (never joined, or its join refused): nothing to
    // ask the server, which would only answer NOT_A_MEMBER. Unless the session is an
    // earlier page's: it may be in rooms this client has not learnt of yet (their
    // `joined` comes after the resume).
    clearTimeout(this.#rooms.get(room)?.retryTimer);
    if (!this.#dropRoom(room) && !this.#inherited) return;
    const requestId = this.#requestId();
    this.#leaves.set(requestId, room);
    this.#send({ case: "leave", value: { requestId, room } });
  }

  /**
   * Sends an input for the room's next tick; returns its sequence number (compare it
   * with the state event's `lastInputSeq`, or feed it to a `Predictor`). Kept until
   * acknowledged and replayed after a reconnect. Undefined if the room was not joined,
   * the send queue is full, or (connected) the input is larger than an envelope may
   * carry; each of the last two also emits an `error`. (Offline, an input too large
   * is refused when it would be sent: an `error` then, and it is not replayed.) A
   * client continuing an earlier page's session (`resumeToken`) cannot know how far
   * that page numbered: inputs it sends before the room's `joined` are sent numbered
   * above the seat's last applied input instead, in order (the numbers returned for
   * them are below those; `lastInputSeq` passes them once they are applied).
   */
  sendInput(room: string, payload: InputPayload): bigint | undefined {
    const node = this.#redirected.get(room)?.node;
    if (node !== undefined) return node.sendInput(room, payload);
    const state = this.#rooms.get(room);
    if (state === undefined || this.#refusedAsQueueFull(room, true)) return undefined;
    const input = { case: "input" as const, value: { room, seq: state.nextSeq + 1n, payload } };
    if (this.#welcomed) {
      // The server's limits are known: an input no envelope can carry is refused now.
      const intent = payload?.case === "intent" ? payload.value : undefined;
      const surely = intent instanceof Uint8Array && intent.byteLength + room.length * 3 < this.#pacing.maxBatchBytes / 2;
      if (!surely) {
        const encoded = encodeMessage(input);
        if (encoded.byteLength + MESSAGE_FRAMING > this.#pacing.maxBatchBytes) {
          this.#refuseTooBig(input, encoded.byteLength);
          return undefined;
        }
        this.#encodedInputs.set(input, encoded);
      }
    }
    const seq = ++state.nextSeq;
    if (state.unacked.length >= this.#options.unackedInputLimit) state.unacked.shift();
    state.unacked.push({ seq, payload });
    // Offline, or before this session's join is answered, inputs wait in `unacked`:
    // sent at the room's `Joined` (or replayed at the next welcome, when resumed).
    if (this.#welcomed && state.joined) {
      this.#enqueue(input);
      state.sentUpto = seq;
    }
    return seq;
  }

  /**
   * Sends a room event (empty `targets`: every member but this one). An event for a
   * room whose join is not answered yet waits for `joined` (and goes with a redirected
   * join to the room's node); it is kept until the session takes it and sent again
   * after a reconnect.
   */
  sendEvent(room: string, kind: string, payload: Uint8Array, targets: bigint[] = []): void {
    const node = this.#redirected.get(room)?.node;
    if (node !== undefined) return node.sendEvent(room, kind, payload, targets);
    if (this.#refusedAsQueueFull(room)) return;
    const event: Outgoing = { case: "event", value: { room, kind, payload, targets } };
    if (!this.#holdUntilJoined(event)) this.#send(event);
  }

  /** Keeps an event for a room whose join is not answered yet (sent at `joined`); false for any other message. */
  #holdUntilJoined(message: Outgoing): boolean {
    const state = this.#rooms.get(eventRoom(message));
    if (state === undefined || state.joined) return false;
    this.#hold(state, message);
    return true;
  }

  /** Keeps an event until its room's join is answered, the oldest dropped over `bufferLimit`. */
  #hold(state: RoomState, event: Outgoing): void {
    if (state.heldEvents.length >= this.#options.bufferLimit) state.heldEvents.shift();
    state.heldEvents.push(event);
  }

  /**
   * Sends a request (`listRooms`, `resync` or `updateRoom`) and waits for its response.
   * While the client is between connections the request waits for the next one; it
   * rejects after `requestTimeoutMs` (and is then not sent), and at once on a client
   * closed or given up. A refusal rejects with a `RequestError` holding the server's
   * `Error`, which the `error` event reports too (handle it in one place: the event
   * sees every refusal, the promise only its own).
   */
  request(kind: MessageInitShape<typeof v1.RequestSchema>["kind"]): Promise<v1.Response> {
    // About a room living on another node: only the session there is in it.
    const room = kind?.case === "updateRoom" || kind?.case === "resync" ? kind.value?.room : undefined;
    const node = room === undefined ? undefined : this.#redirected.get(room)?.node;
    if (node !== undefined) return node.request(kind);
    if (this.#stopped) return Promise.reject(new RequestError("not sent: the client is closed (connect() first)"));
    const full = this.#queueFullError("");
    if (full !== undefined) {
      this.#emit("error", full);
      return Promise.reject(new RequestError(full.message, full));
    }
    const requestId = this.#requestId();
    const message: Outgoing = { case: "request", value: { requestId, kind } };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#requests.delete(requestId);
        this.#unsend((m) => m === message); // not sent later: nobody waits for it
        reject(new RequestError(`no response within ${this.#options.requestTimeoutMs} ms`));
      }, this.#options.requestTimeoutMs);
      this.#requests.set(requestId, {
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.#send(message);
    });
  }

  /**
   * Replaces the session's token before it expires (answered with `TokenRefreshed`).
   * A refresh the relay refuses for now (`UNAVAILABLE`, with `retryAfterMs`: the token
   * is signed by a key of the identity provider's that the relay has not fetched yet;
   * or `RATE_LIMITED`: a user's sessions refresh 3 times at once, then once every 5 s)
   * is sent again after that wait (at least a second, at most five minutes), until it
   * is answered otherwise or `setToken` is called again; the `error` event still
   * reports each refusal.
   */
  setToken(token: string): void {
    for (const node of this.#nodes.values()) node.setToken(token);
    this.#options.token = token;
    this.#refreshToken(token);
  }

  #refreshToken(token: string): void {
    clearTimeout(this.#refresh?.timer);
    const requestId = this.#requestId();
    this.#refresh = { requestId, token };
    this.#send({ case: "refreshToken", value: { requestId, token } });
  }

  /**
   * The room's verified state, once its first full snapshot arrived. After a
   * reconnect, until the full snapshot that follows it arrives, the state the client
   * had before (a renderer does not go blank for a moment). A room the server closed,
   * or removed this client from (`left` with a reason), stays readable as it was
   * then, its last state (a closed room's last tick arrives before its `left`; a
   * client offline then keeps what it had), until it is joined again; the last
   * `ENDED_MIRRORS_KEPT` such rooms are kept.
   */
  mirror(room: string): StateMirror | undefined {
    const node = this.#redirected.get(room)?.node;
    if (node !== undefined) return node.mirror(room);
    const state = this.#rooms.get(room);
    // An ended room reads as it ended until a join of it is answered.
    const ended = state?.joined === true ? undefined : this.#home.#endedRooms.get(room);
    const mirror = ended ?? (state?.mirror?.synced ? state.mirror : state?.previous);
    return mirror?.synced ? mirror : undefined;
  }

  /**
   * The room's owner as last told (`Joined.owner`, then presence `OWNER`): the member
   * that changes its listing and, in a relay room, writes the room's own entities
   * (PROTOCOL.md, "Room ownership"). 0n: the room has none; undefined: not in the room
   * (or its join not answered yet).
   */
  roomOwner(room: string): bigint | undefined {
    const node = this.#redirected.get(room)?.node;
    if (node !== undefined) return node.roomOwner(room);
    return this.#rooms.get(room)?.owner;
  }

  /**
   * The room's metadata and whether it is locked, as last told (`Joined`, then
   * `roomUpdated`; a copy); undefined as for `roomOwner`.
   */
  roomListing(room: string): v1.RoomUpdated | undefined {
    const node = this.#redirected.get(room)?.node;
    if (node !== undefined) return node.roomListing(room);
    const listing = this.#rooms.get(room)?.listing;
    return listing && listingOf(listing);
  }

  /**
   * Drops the connection as a network failure would, and reconnects (resuming the
   * session): for tests and demos. A browser cannot end a WebSocket without a close
   * frame, so it closes with 4000, which (unlike 1000) keeps the session on the server;
   * `disconnected` reports 1006, as for a connection lost.
   */
  dropConnection(): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    this.#drop(socket, "connection dropped by the application");
  }

  /**
   * Closes the connection (1000: the server releases the session at once) and stops
   * reconnecting; resolves when the server answered the close (or after 2 s). Requests
   * waiting for an answer reject. A later `connect` starts a new session and joins the
   * rooms not left again.
   */
  close(): Promise<void> {
    const own = this.#closeOwn();
    return Promise.all([own, ...this.#closeNodes()]).then(() => undefined);
  }

  /**
   * Closes the connections to other nodes. Their rooms come home (not sent now: home
   * is closed or gave up), so that a later `connect` joins them again as well.
   */
  #closeNodes(): Promise<void>[] {
    const nodes = [...this.#nodes.values()];
    this.#nodes.clear();
    this.#redirected.clear();
    this.#hops.clear();
    for (const node of nodes) {
      for (const [room, state] of node.#rooms) this.#adopt(room, state.roomType, { ...state, seat: "" });
    }
    return nodes.map((node) => node.close());
  }

  #closeOwn(): Promise<void> {
    this.#stopped = true;
    this.#connectAfterClose = false;
    this.#clearTimers();
    this.#refresh = undefined;
    // The server ends the session at a 1000 close: a later `connect` starts a new one
    // (and a token asked for meanwhile is not used), where the leaves it had not sent
    // would only be refused.
    this.#session = undefined;
    this.#asking = 0;
    clearTimeout(this.#askTimer);
    this.#unsend((m) => m?.case === "leave" || m?.case === "quickJoin");
    this.#leaves.clear();
    this.#quickJoins.clear();
    this.#cancelQuickJoinRetries();
    this.#rejectRequests("client closed");
    const socket = this.#socket;
    if (socket === undefined || socket.readyState === socket.CLOSED) {
      this.#welcomed = false;
      return Promise.resolve();
    }
    const closing = this.#sendQueued().then(() => this.#closeSocket(socket));
    this.#closing = closing;
    void closing.then(() => {
      if (this.#closing === closing) this.#closing = undefined;
    });
    return closing;
  }

  /**
   * Sends what the pacer still holds before a close, for {@link CLOSE_SENDS_FOR_MS} at
   * most (the relay reads a connection's last messages before its close; what is left
   * then is dropped).
   */
  #sendQueued(): Promise<void> {
    const until = now() + CLOSE_SENDS_FOR_MS;
    const waiting = () => this.#welcomed && this.#queue.some((m) => m?.case !== "ping" && m?.case !== "pong");
    return new Promise((resolve) => {
      const step = (): void => {
        this.#flush();
        if (waiting() && now() < until) {
          setTimeout(step, 10);
          return;
        }
        clearTimeout(this.#timers.flush);
        this.#timers.flush = undefined;
        this.#welcomed = false;
        resolve();
      };
      step();
    });
  }

  /** Closes `socket` with 1000; resolves at the relay's answer, or after 2 s. */
  #closeSocket(socket: WebSocket): Promise<void> {
    if (socket.readyState === socket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      // A relay that does not answer the close: the socket is let go, so that a
      // later `connect` opens a new one.
      const timer = setTimeout(() => {
        if (this.#socket === socket) {
          socket.onclose = null;
          socket.onmessage = null;
          this.#socket = undefined;
        }
        resolve();
      }, 2000);
      this.#closed = () => (clearTimeout(timer), resolve());
      socket.close(1000, "client closed");
    });
  }

  // -- connection -------------------------------------------------------------------

  /** Opens a connection, with a token from `getToken` first when there is one. */
  #open(): void {
    // A new attempt: what the last connection did no longer counts (see `#retry`).
    this.#failed = false;
    this.#link = {
      resuming: this.#session !== undefined,
      welcomedAt: undefined,
      played: false,
      goingAway: false,
      url: this.#urls[this.#current]!,
    };
    const getToken = this.#options.getToken;
    if (getToken === undefined) return this.#openSocket();
    const ask = ++this.#asks;
    this.#asking = ask;
    // The application's own timeout (a redirect's connections have a shorter one).
    const timeoutMs = this.#home.#options.connectTimeoutMs;
    const late = new Promise<never>((_, reject) => {
      this.#askTimer = setTimeout(() => reject(new Error(`no token within ${timeoutMs} ms`)), timeoutMs);
    });
    const timer = this.#askTimer;
    // (Asked again by a later attempt, or the client closed meanwhile: dropped.)
    const current = (): boolean => {
      if (this.#asking !== ask) return false;
      this.#asking = 0;
      return true;
    };
    Promise.race([new Promise<string>((resolve) => resolve(getToken())), late]).then(
      (token) => {
        clearTimeout(timer);
        if (!current() || this.#stopped) return;
        this.#options.token = token;
        this.#openSocket();
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (current()) this.#retry(`getToken failed: ${String(error)}`);
      },
    );
  }

  #openSocket(): void {
    const url = new URL(this.#urls[this.#current]!);
    // The WebSocket constructor refuses a URL with a fragment (a relay's redirect or
    // `goingAway` may name one); it means nothing to a server anyway.
    url.hash = "";
    // The same on every connection (and node) of this client: the relay's `replace`
    // policy counts its sessions as one client's.
    url.searchParams.set("client", this.#home.#clientId);
    if (this.#session !== undefined) {
      url.searchParams.set("resume", this.#session.resumeToken);
      // An earlier page's session: what it received is not known here (the relay
      // then sends every room's `joined` again).
      if (this.#received !== undefined) url.searchParams.set("received", this.#received.toString());
    }
    this.#frameAt = undefined;
    this.#probedAt = undefined;
    const protocols = [PROTOCOL];
    if (this.#options.token !== undefined) protocols.push(BEARER_PREFIX + this.#options.token);
    let socket: WebSocket;
    try {
      socket = new this.#options.WebSocket(url, protocols);
    } catch (e) {
      // A failed attempt at that URL (a relay may have named it): the next tries the next.
      this.#failedAtCurrent();
      this.#retry(`cannot open ${url}: ${String(e)}`);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    this.#welcomed = false;
    const connectTimer = setTimeout(() => {
      if (!this.#welcomed && this.#socket === socket) {
        // A failed attempt, as a close before the welcome is: the next tries the next URL.
        this.#failedAtCurrent();
        this.#abandon(socket, "no welcome in time");
        this.#retry(`no welcome within ${this.#options.connectTimeoutMs} ms`);
      }
    }, this.#options.connectTimeoutMs);
    socket.onmessage = (event) => {
      // A text frame is none of the relay's (it sends binary only): ignored, as the
      // Rust client does, and not taken as a sign of life.
      if (typeof event.data === "string") return;
      const data = event.data as ArrayBuffer;
      if (data.byteLength > this.#options.maxMessageBytes) {
        const reason = `a message of ${data.byteLength} bytes, over maxMessageBytes (${this.#options.maxMessageBytes})`;
        this.#drop(socket, reason, MESSAGE_TOO_BIG, MESSAGE_TOO_BIG);
        return;
      }
      this.#inbound(new Uint8Array(data));
      // Only a welcome ends the wait for one: a relay sending anything else does not
      // hold the client "connecting" for good.
      if (this.#welcomed) clearTimeout(connectTimer);
      // Armed after the message is handled: the time this client spent on it is not
      // the server's silence. (Not if handling it ended the connection or the client.)
      if (this.#socket === socket && !this.#stopped) this.#armQuiet(socket);
    };
    socket.onclose = (event) => {
      clearTimeout(connectTimer);
      if (this.#socket !== socket) return;
      // A close the relay sent (1013 while the session's own node lives, say) comes
      // from a live node; 1006 (no close frame), 1014 and 1015 (a proxy or TLS
      // failing) from one not reached.
      if (!this.#welcomed) this.#failedAtCurrent(!UNANSWERED_CLOSES.includes(event.code));
      this.#detach(socket);
      this.#ended(event.code, event.reason);
    };
    socket.onerror = () => {
      // Browsers follow an error with a close, in the same task. Some runtimes (Node
      // 20's WebSocket, failing before it opens) do not: a failed attempt then, told
      // as such instead of waiting for the welcome's timeout.
      setTimeout(() => {
        if (this.#socket !== socket || this.#welcomed || this.#stopped) return;
        clearTimeout(connectTimer);
        this.#failedAtCurrent();
        this.#abandon(socket, "connection failed");
        this.#retry("the connection failed before the relay answered (not reachable, a certificate not trusted, or no WebSocket at that URL)");
      }, 0);
    };
  }

  /**
   * The URL connected to failed before a welcome: the next attempt tries the next one.
   * One that did not answer is marked unreachable: a redirect there soon after names
   * a node that died. One that answered (`answered`: it closed the connection itself,
   * as a live node does with 1013 while the session's own node lives) is not, nor
   * any longer.
   */
  #failedAtCurrent(answered = false): void {
    this.#failed = true;
    const url = this.#urls[this.#current]!;
    if (answered) this.#unreachable.delete(url);
    else this.#unreachable.set(url, now());
  }

  /**
   * Gives up on a connection to reconnect and resume: closes it with `code`, not 1000
   * (a close without a code, or 1000, would make the server end the session). A
   * WebSocket that refuses `code` — browsers allow a page only 1000 and 3000–4999, not
   * the 1002 or 1009 the Rust client sends for the same causes — gets 4000 instead, or
   * 1000 when there is no session left to resume (the server may end it at once).
   */
  #abandon(socket: WebSocket, reason: string, code = DROPPED): void {
    this.#detach(socket);
    const short = reason.slice(0, CLOSE_REASON_CHARS);
    try {
      socket.close(code, short);
    } catch {
      socket.close(this.#session === undefined ? 1000 : DROPPED, short);
    }
  }

  /** Which connection a `disconnected` event is about. */
  #connection(): { url: string; redirected: boolean } {
    return { url: this.#link.url, redirected: this.#home !== this };
  }

  /**
   * Ends a connection from this side (see {@link #abandon}) and reconnects through the
   * backoff, reported as closed with `reported` (1006: as if lost).
   */
  #drop(socket: WebSocket, reason: string, code = DROPPED, reported = 1006): void {
    this.#abandon(socket, reason, code);
    this.#emit("disconnected", { code: reported, reason, willReconnect: true, ...this.#connection() });
    this.#retry(reason);
  }

  /** Forgets a socket: its later events are ignored; what it had not sent waits for the next one. */
  #detach(socket: WebSocket): void {
    socket.onmessage = null;
    socket.onclose = null;
    if (this.#socket === socket) this.#socket = undefined;
    this.#welcomed = false;
    this.#clearTimers();
    // Joins and inputs come back from the rooms at the welcome, pings are fresh: the
    // rest (leaves, events, requests, token refreshes) goes first into the offline buffer.
    const unsent = this.#queue.filter((m) => !["join", "input", "ping", "pong"].includes(m?.case ?? ""));
    this.#queue = [];
    this.#queuedPong = undefined;
    // Not cut to `bufferLimit`: events and requests were admitted within the limits,
    // and the rest (leaves, quick joins, token refreshes) is never dropped.
    this.#buffer = [...unsent, ...this.#buffer];
  }

  #clearTimers(): void {
    clearInterval(this.#timers.ping);
    clearTimeout(this.#timers.quiet);
    clearTimeout(this.#timers.stall);
    clearTimeout(this.#timers.flush);
    clearTimeout(this.#timers.retry);
    this.#timers = {};
    // A connection's joins are sent again at its welcome.
    for (const state of this.#rooms.values()) {
      clearTimeout(state.retryTimer);
      state.retryTimer = undefined;
    }
    // A refresh waiting to be sent again: the next connection presents the token itself.
    if (this.#refresh?.timer !== undefined) {
      clearTimeout(this.#refresh.timer);
      this.#refresh = undefined;
    }
  }

  #armQuiet(socket: WebSocket): void {
    clearTimeout(this.#timers.quiet);
    this.#timers.quiet = setTimeout(() => this.#drop(socket, "server went quiet"), this.#options.quietTimeoutMs);
    this.#lastInbound = now();
    this.#probedAt = undefined; // whatever arrives answers a stall's ping
    if (this.#timers.stall === undefined) this.#checkStall(socket);
  }

  /**
   * Frames were arriving up to the last message: a second without anything is a
   * stall, asked about at once with a ping, and the connection is dropped when
   * nothing answers within `stallTimeoutMs`. One timer, moved on when it fires (not
   * at every message).
   */
  #checkStall(socket: WebSocket): void {
    this.#timers.stall = undefined;
    const last = this.#lastInbound;
    if (!this.#welcomed || this.#frameAt === undefined || last - this.#frameAt >= STALL_AFTER_MS) return;
    const t = now();
    const ms = this.#options.stallTimeoutMs;
    let next = last + STALL_AFTER_MS;
    if (this.#probedAt !== undefined) {
      if (t >= this.#probedAt + ms) {
        this.#drop(socket, `state frames stopped and a ping got no answer within ${ms} ms`);
        return;
      }
      next = this.#probedAt + ms;
    } else if (t >= next) {
      this.#probedAt = t;
      this.#ping();
      next = t + ms;
    }
    this.#timers.stall = setTimeout(() => this.#checkStall(socket), next - t);
  }

  #ended(code: number, reason: string): void {
    const closed = this.#closed;
    this.#closed = undefined;
    if (this.#stopped) {
      closed?.();
      return;
    }
    // A node other than home that stops hands its rooms back at once.
    const willReconnect = reconnectAllowed(code) && (this.#home === this || code !== SHUTTING_DOWN);
    this.#emit("disconnected", { code, reason, willReconnect, ...this.#connection() });
    if (!willReconnect) {
      this.#giveUp(0, `closed by the server with ${code}: ${reason}`);
      return;
    }
    // A session whose token expired is over: the next connection starts a new one.
    if (code === TOKEN_EXPIRED) this.#session = undefined;
    if (code === RESUME_FAILED) {
      this.#session = undefined;
      // The session this connection tried to resume is gone: a new one at once (and
      // the rooms joined again). A connection that presented no token learns nothing
      // new from a 4504: a failed attempt, through the backoff (a relay answering
      // every connection so is not reconnected to in a tight loop).
      if (this.#link.resuming) {
        this.#open();
        return;
      }
    }
    this.#retry(reason || `closed with ${code}`);
  }

  /**
   * Reconnects after the backoff's delay for the next attempt, or gives up after too
   * many. The attempts count from 1 again only after a connection that lasted
   * {@link STABLE_AFTER_MS} after its welcome.
   */
  #retry(reason: string): void {
    if (this.#stopped) return;
    const { welcomedAt, played } = this.#link;
    if (played || (welcomedAt !== undefined && now() - welcomedAt >= STABLE_AFTER_MS)) this.#attempt = 0;
    // After an attempt that failed, the next tries the next node: for a node this
    // client was redirected to, only to continue its session there.
    if (this.#failed) this.#current = (this.#current + 1) % this.#urls.length;
    this.#failed = false;
    this.#attempt++;
    const most = this.#home === this ? Infinity : NODE_ATTEMPTS;
    if (this.#attempt > Math.min(this.#options.backoff.maxAttempts, most)) {
      this.#giveUp(this.#attempt, reason);
      return;
    }
    const delayMs = backoffDelay(this.#options.backoff, this.#attempt, Math.random());
    this.#emit("reconnecting", { attempt: this.#attempt, delayMs, reason });
    this.#timers.retry = setTimeout(() => this.#open(), delayMs);
  }

  #rejectRequests(reason: string): void {
    for (const { reject } of this.#requests.values()) reject(new RequestError(reason));
    // Not sent later either: nobody waits for their answers.
    this.#unsend((m) => m?.case === "request" && this.#requests.has(m.value.requestId ?? 0n));
    this.#requests.clear();
  }

  /** Takes what `dropped` picks out of the offline buffer and the send queue. */
  #unsend(dropped: (message: Outgoing) => boolean): void {
    this.#buffer = this.#buffer.filter((m) => !dropped(m));
    this.#queue = this.#queue.filter((m) => !dropped(m));
  }

  #giveUp(attempts: number, reason: string): void {
    this.#stopped = true;
    this.#clearTimers();
    this.#rejectRequests(`client gave up: ${reason}`);
    if (this.#home === this) {
      // The connections to other nodes stop with it: their rooms could not come
      // home any more.
      void Promise.all(this.#closeNodes());
      this.#emit("gaveUp", { attempts, reason });
      return;
    }
    // The directory names this node until its leases lapse: home waits redirects
    // here out meanwhile, as for a node it failed over from itself.
    this.#roomsHome(true);
  }

  /**
   * A connection to another node than home: its rooms are joined again through home,
   * with the events this node may not have taken (at least once). `lost`: the node
   * could not be reached (home waits redirects there out for a while).
   */
  #roomsHome(lost: boolean): void {
    const home = this.#home;
    home.#nodes.delete(this.#options.url);
    if (lost) home.#unreachable.set(this.#options.url, now());
    // Events this node may not have taken go with their rooms (at least once), then
    // those not sent yet: waiting for the pacer, or sent while offline.
    const unsent = [...this.#queue, ...this.#buffer].filter((m) => m?.case === "event");
    for (const event of [...this.#eventsUnacked.map((u) => u.event), ...unsent]) {
      const state = this.#rooms.get(eventRoom(event));
      if (state !== undefined) this.#hold(state, event);
    }
    this.#eventsUnacked = [];
    this.#queue = this.#queue.filter((m) => m?.case !== "event");
    this.#buffer = [];
    for (const [room, state] of this.#rooms) {
      home.#redirected.delete(room);
      home.#adopt(room, state.roomType, { ...state, seat: "" });
    }
    this.#rooms.clear();
  }

  /**
   * Joins a room that moves here from another of the client's connections, with its
   * input numbering (a seat kept for the session continues it) and its inputs not
   * acknowledged yet (sent at its `Joined`).
   */
  #adopt(room: string, roomType: string, moved: Moving): void {
    // The ticket goes with the join (sent at once when connected, else at the welcome).
    const existing = this.#rooms.get(room) ?? this.#newRoom(room, roomType);
    if (moved.seat !== "") existing.seat = moved.seat;
    this.#rooms.set(room, existing);
    // With its options: the room may have to be created where it lands.
    this.join(room, roomType, moved.create);
    const state = this.#rooms.get(room);
    if (state === undefined) return;
    if (state.nextSeq < moved.nextSeq) state.nextSeq = moved.nextSeq;
    if (state.sentUpto < moved.sentUpto) state.sentUpto = moved.sentUpto;
    const newest = state.unacked.at(-1)?.seq ?? 0n;
    state.unacked.push(...moved.unacked.filter((u) => u.seq > newest));
    for (const event of moved.heldEvents) this.#hold(state, event);
    if (moved.quick !== undefined) state.quick = moved.quick;
  }

  /** Joins `room` again after `delayMs`, if it is still waiting for this session's join (one wait per room). */
  #joinLater(room: string, delayMs: number): void {
    const waiting = this.#rooms.get(room);
    if (waiting === undefined) return;
    clearTimeout(waiting.retryTimer);
    waiting.retryTimer = setTimeout(() => {
      waiting.retryTimer = undefined;
      // Not a room left (and perhaps joined again) since: that is another wait's.
      if (this.#rooms.get(room) !== waiting || waiting.joined || !this.#welcomed) return;
      this.#enqueue(this.#joinMessage(room, waiting));
    }, delayMs);
  }

  /** Home only: the relay said `room` lives at `url`; joins it there. */
  #follow(room: string, roomType: string, moved: Moving, url: string, requestId: bigint): void {
    const hops = (this.#hops.get(room) ?? 0) + 1;
    this.#redirected.delete(room);
    this.#hops.set(room, hops);
    // Not followed: the join is refused for good (not UNAVAILABLE, which is retried).
    const refuse = (code: v1.ErrorCode, message: string): void =>
      this.#emit("error", create(v1.ErrorSchema, { code, message, requestId, room }));
    if (hops > MAX_HOPS) {
      this.#hops.delete(room);
      return refuse(v1.ErrorCode.LIMIT_EXCEEDED, `redirected ${MAX_HOPS} times in a row; not following to ${url}`);
    }
    // A redirect keeps the transport's security: never from wss:// to ws://.
    if (scheme(this.#options.url) === "wss:" && scheme(url) !== "wss:") {
      this.#hops.delete(room);
      return refuse(v1.ErrorCode.FORBIDDEN, `not following a redirect from wss:// to ${url}`);
    }
    let node = this.#nodes.get(url);
    if (node === undefined || node.#stopped) {
      try {
        // Failing that node, its rooms come back here (no fallbacks of its own).
        // A node that does not answer a handshake in NODE_CONNECT_TIMEOUT_MS is gone.
        const connectTimeoutMs = Math.min(this.#options.connectTimeoutMs, NODE_CONNECT_TIMEOUT_MS);
        node = new Client({ ...this.#options, url, fallbackUrls: [], connectTimeoutMs }, this);
      } catch (e) {
        return refuse(v1.ErrorCode.FORBIDDEN, `cannot follow the redirect to ${url}: ${String(e)}`);
      }
      this.#nodes.set(url, node);
      node.connect();
    }
    this.#redirected.set(room, { node });
    this.#emit("redirected", { room, url });
    node.#adopt(room, roomType, moved);
  }

  // -- inbound ----------------------------------------------------------------------

  #inbound(bytes: Uint8Array): void {
    // Closed (or given up): what the closing socket still delivers (Node's `ws` does)
    // is not acted on, a redirect least of all (it would open a node connection).
    if (this.#stopped) return;
    this.stats.messagesIn++;
    this.stats.bytesIn += bytes.byteLength;
    const receivedMs = now();
    let envelope: v1.ServerEnvelope;
    try {
      envelope = fromBinary(v1.ServerEnvelopeSchema, bytes);
    } catch (e) {
      if (this.#socket !== undefined) this.#drop(this.#socket, `undecodable server message: ${String(e)}`);
      return;
    }
    // Every message but state frames and the welcome is numbered from `firstSeq`:
    // skip what a resume sent again, count what the server no longer had.
    let seq = envelope.firstSeq;
    const socket = this.#socket;
    for (const { kind } of envelope.messages) {
      // A listener closed the client (or this connection ended) at an earlier message:
      // the rest is not acted on.
      if (this.#stopped || this.#socket !== socket) return;
      // A kind this version does not know is numbered too (only frames and welcomes are not).
      if (seq !== 0n && kind.case !== "state" && kind.case !== "welcome") {
        const n = seq++;
        // An earlier page's session: its numbering goes on from here (from a number a
        // session reaches).
        const first = this.#received === undefined;
        this.#received ??= n > MAX_FIRST_MESSAGE ? 0n : n - 1n;
        if (n <= this.#received) continue;
        if (n - this.#received > MAX_MESSAGE_GAP) {
          // Not a gap a server makes: taken, every later message would be skipped as a
          // repeat, for the rest of the session. A new session instead.
          this.#session = undefined;
          const after = first ? "first of the session" : `after ${this.#received}`;
          const reason = `message number ${n} ${after}: more than the server keeps for a resume`;
          if (this.#socket !== undefined) this.#drop(this.#socket, reason, PROTOCOL_ERROR, PROTOCOL_ERROR);
          return;
        }
        const missing = n - this.#received - 1n;
        this.#received = n;
        if (missing > 0n) {
          this.stats.messagesLost += Number(missing);
          this.#emit("messagesLost", { count: missing });
        }
      }
      switch (kind.case) {
        case "welcome":
          if (this.#welcomed) {
            // Not something a relay does: each connection has one. A new session instead.
            this.#session = undefined;
            if (this.#socket !== undefined) this.#drop(this.#socket, "a second Welcome on one connection", PROTOCOL_ERROR, PROTOCOL_ERROR);
            return;
          }
          if (kind.value.protocolVersion !== 0 && kind.value.protocolVersion !== PROTOCOL_VERSION) {
            // Its checksums differ (every frame would be a desync): said once, not retried.
            const reason = `the relay speaks protocol version ${kind.value.protocolVersion}, this client version ${PROTOCOL_VERSION}: upgrade the older one`;
            if (this.#socket !== undefined) this.#abandon(this.#socket, reason, 1000);
            this.#giveUp(0, reason);
            return;
          }
          this.#welcome(kind.value);
          break;
        case "state":
          if (this.#welcomed) this.#state(kind.value, receivedMs);
          break;
        case "redirect": {
          const { room, url, requestId } = kind.value;
          this.#tookQuickJoin(requestId, room, true);
          const state = this.#rooms.get(room);
          if (state === undefined) break; // left meanwhile
          // A node this client lost lately (failed over from, or a node connection that
          // gave up; the directory names it until its leases lapse): the room stays, and
          // is joined again shortly.
          const lostAt = this.#unreachable.get(url) ?? this.#home.#unreachable.get(url);
          if (lostAt !== undefined && now() - lostAt < UNREACHABLE_FOR_MS) {
            this.#joinLater(room, STALE_REDIRECT_WAIT_MS);
            break;
          }
          this.#dropRoom(room);
          this.#home.#follow(room, state.roomType, { ...state, seat: kind.value.seat }, url, requestId);
          break;
        }
        case "joined": {
          // The answer to a join this client made before the room was left and joined
          // again (the server answers a join before a leave that follows it): that
          // membership ended. (An earlier page's join is answered once, and the session
          // is in the room then.)
          const { requestId: answered, room: joinedRoom } = kind.value;
          if (this.#issued(answered) && answered < (this.#rooms.get(joinedRoom)?.firstJoin ?? 0n)) break;
          this.#tookQuickJoin(kind.value.requestId, kind.value.room, false);
          const joinedState = this.#rooms.get(kind.value.room);
          if (joinedState !== undefined) joinedState.quick = undefined;
          this.#tookResumedRoom(kind.value);
          this.#home.#hops.delete(kind.value.room);
          this.#joinedRoom(kind.value);
          this.#emit("joined", kind.value);
          break;
        }
        case "left": {
          this.#leaves.delete(kind.value.requestId);
          // A reason: the server removed us (room closed); forget the room, and where
          // it lived (a later join of it starts at home again). Unless a join of the
          // room waits for its answer: this ended the membership before it.
          const joining = this.#rooms.get(kind.value.room)?.joined === false;
          if (kind.value.reason !== v1.ErrorCode.UNSPECIFIED && !joining) this.#roomEnded(kind.value.room);
          this.#emit("left", kind.value);
          break;
        }
        case "presence": {
          const { room, member, change } = kind.value;
          const state = this.#rooms.get(room);
          if (change === v1.PresenceChange.OWNER && state?.owner !== undefined && member !== undefined) {
            state.owner = member.memberId;
          }
          this.#emit("presence", kind.value);
          break;
        }
        case "roomUpdated": {
          const state = this.#rooms.get(kind.value.room);
          // A copy: a listener changing the event's does not change `roomListing`.
          if (state?.listing !== undefined) state.listing = listingOf(kind.value);
          this.#emit("roomUpdated", kind.value);
          break;
        }
        case "event":
          this.#emit("event", kind.value);
          break;
        case "response":
          this.#requests.get(kind.value.requestId)?.resolve(kind.value);
          this.#requests.delete(kind.value.requestId);
          break;
        case "error": {
          const { code, room, retryAfterMs, requestId } = kind.value;
          // Refused for now: the relay's node or directory is away, or the session asks
          // too often (it says when to ask again).
          const later = code === v1.ErrorCode.UNAVAILABLE || code === v1.ErrorCode.RATE_LIMITED;
          const retryWaitMs = Math.min(5000, Math.max(100, retryAfterMs));
          // A quick join refused so is sent again then, as a new one (the session
          // remembers the ids of those that ran, and one that ran before it found the
          // directory away would be ignored).
          const full = code === v1.ErrorCode.ROOM_FULL;
          const quick = this.#quickJoins.get(requestId);
          this.#quickJoins.delete(requestId);
          if (quick !== undefined && later) {
            const message = { ...quick.message, value: { ...quick.message.value, requestId: this.#requestId() } };
            const again = { ...quick, message };
            this.#quickJoins.set(message.value.requestId, again);
            const retry = () => {
              this.#quickJoinRetries.delete(message.value.requestId);
              if (this.#quickJoins.get(message.value.requestId) === again) this.#send(message);
            };
            this.#quickJoinRetries.set(message.value.requestId, setTimeout(retry, retryWaitMs));
          } else if (quick !== undefined && full && this.#quickJoinAgain(quick, room)) {
            break; // its pick filled before the join
          }
          const notAMember = kind.value.code === v1.ErrorCode.NOT_A_MEMBER;
          // A leave sent again after a resume that the lost connection had delivered: done.
          const leave = this.#leaves.delete(kind.value.requestId);
          if (notAMember && (leave || this.#resentLeaves.delete(kind.value.requestId))) break;
          // A room this client is in by its last `joined` that the relay says it is not
          // in: the relay removed it, and the `left` saying so was lost (messages lost
          // across a resume). Told as that `left` (the room's last state kept readable, as after one).
          const lostLeft = notAMember && this.#rooms.get(kind.value.room)?.joined === true;
          if (lostLeft && ![...this.#leaves.values()].includes(kind.value.room)) {
            this.#roomEnded(kind.value.room);
            const message = "the relay no longer has this member in the room (its left was lost)";
            this.#emit("left", create(v1.LeftSchema, { room: kind.value.room, reason: kind.value.code, message }));
          }
          const pending = this.#requests.get(kind.value.requestId);
          if (pending !== undefined) {
            this.#requests.delete(kind.value.requestId);
            pending.reject(new RequestError(kind.value.message, kind.value));
          }
          const refresh = this.#refresh;
          if (refresh?.requestId === kind.value.requestId) {
            // A key the relay does not hold yet, or refreshes too often: send it again when
            // told. Refused for good: not.
            if (code === v1.ErrorCode.UNAVAILABLE || code === v1.ErrorCode.RATE_LIMITED) {
              const wait = Math.min(300_000, Math.max(1000, retryAfterMs));
              clearTimeout(refresh.timer);
              refresh.timer = setTimeout(() => this.#refreshToken(refresh.token), wait);
            } else {
              this.#refresh = undefined;
            }
          }
          // The room's node died and its lease has not lapsed yet, or Redis is away; or
          // this member left the room a moment ago (one full snapshot per second).
          if (later && this.#rooms.get(room)?.joined === false) {
            this.#joinLater(room, retryWaitMs);
          }
          // A join sent again (after a resume) while the session's first one is still
          // being answered: that answer follows, nothing went wrong.
          if (code === v1.ErrorCode.ALREADY_MEMBER && this.#rooms.get(room)?.joined === false) break;
          // Any other refusal of a join (an unknown room type, a full room, a token
          // that does not allow it) is final: the room is forgotten with what waited
          // for it, and not joined again at the next connection.
          // (Not an error for another message about the room meanwhile.)
          const pendingJoin = this.#rooms.get(room);
          if (!later && pendingJoin?.joined === false && pendingJoin.joinRequest === kind.value.requestId) {
            this.#forget(room);
            // A room a quick join picked on another node, refused there.
            if (full && pendingJoin.quick !== undefined && this.#quickJoinAgain(pendingJoin.quick, room)) break;
          }
          this.#emit("error", kind.value);
          break;
        }
        case "pong":
          this.stats.rttMs = Math.max(0, Number(unixMicros() - kind.value.pingSentTimeUs) / 1000);
          this.#eventsAcknowledged(kind.value.eventsReceived);
          break;
        case "ping":
          this.#pong(kind.value);
          break;
        case "goingAway":
          this.#goingAway(kind.value.url);
          break;
        case "tokenRefreshed":
          if (this.#refresh?.requestId === kind.value.requestId) this.#refresh = undefined;
          break;
        case undefined:
          break;
      }
    }
  }

  /**
   * The node is stopping (a 1001 close follows) and names a live node of its cluster:
   * the home connection continues its session there. A connection to another node
   * gives its rooms back home at the close instead. A URL of another scheme is ignored,
   * and so is every `GoingAway` after a connection's first.
   */
  #goingAway(url: string): void {
    // Sent once, just before the close: more (a flood naming ever new nodes) would
    // only fill the URL list.
    if (this.#link.goingAway) return;
    this.#link.goingAway = true;
    if (this.#home !== this) return;
    try {
      if (new URL(url).protocol !== new URL(this.#urls[this.#current]!).protocol) return;
    } catch {
      return;
    }
    const known = this.#urls.indexOf(url);
    if (known >= 0) {
      this.#current = known;
    } else if (this.#urls.length < MAX_URLS) {
      // Just after the stopping node's URL: should it fail too, the next attempt tries
      // the URL that came after the stopping node's, not that node.
      this.#urls.splice(++this.#current, 0, url);
    } else {
      this.#urls[this.#current] = url; // the list is full: in the stopping node's place
    }
  }

  /** Answers a ping: a pong still waiting in the queue is replaced, so pings cannot pile pongs up ahead of inputs. */
  #pong(ping: v1.Ping): void {
    const value = { nonce: ping.nonce, pingSentTimeUs: ping.sentTimeUs, timeUs: unixMicros() };
    if (this.#queuedPong !== undefined) {
      this.#queuedPong.value = value;
      return;
    }
    this.#queuedPong = { case: "pong", value };
    this.#enqueue(this.#queuedPong);
  }

  /** A connection is up: restore rooms, replay inputs, flush the buffer, in that order. */
  #welcome(welcome: v1.Welcome): void {
    const resumed = welcome.resumed;
    // A node connection (a redirect) that reconnected to a new session there (the
    // node restarted, say) holds none of its seats, and would join again as that
    // session, not as home's member: its rooms go home, which joins them again as
    // the member that had the seats.
    if (!resumed && this.#home !== this && this.#connectedBefore && this.#rooms.size > 0) {
      this.#stopped = true;
      this.#clearTimers();
      this.#rejectRequests("the node's session is a new one");
      this.#unsend((m) => m?.case === "leave");
      if (this.#socket !== undefined) this.#abandon(this.#socket, "joining through the first connection again", 1000);
      this.#roomsHome(false);
      return;
    }
    if (this.#connectedBefore) {
      this.stats.reconnects++;
      if (resumed) this.stats.resumes++;
    }
    this.#connectedBefore = true;
    this.#link.welcomedAt = now();
    this.#unreachable.delete(this.#urls[this.#current]!);
    if (!resumed) {
      // A new session numbers from 1 again, and is this client's own.
      this.#received = 0n;
      this.#inherited = false;
    }
    // Events the session took are done with; the rest go out again, numbered on from
    // what it took (a new session took none: every one goes out again, as the old
    // session may have relayed it or not).
    this.#eventsAcknowledged(welcome.eventsReceived);
    this.#eventsSent = welcome.eventsReceived;
    const unacked = this.#eventsUnacked.map(({ event }) => event);
    this.#eventsUnacked = [];
    this.#session = { id: welcome.sessionId, resumeToken: welcome.resumeToken };
    const earlier = this.#pacing;
    this.#pacing = pacing(welcome.limits);
    if (resumed) {
      // The session's buckets on the server go on as they were: so do ours.
      this.#pacing.messages.noFullerThan(earlier.messages, now());
      this.#pacing.bytes.noFullerThan(earlier.bytes, now());
    }
    const out: Outgoing[] = [];
    // A new session is in no room: the leaves that waited are done with (sent, they
    // would only be answered NOT_A_MEMBER). A resumed one gets again those the lost
    // connection took but perhaps did not deliver; quick joins not answered go again
    // either way (with their request ids: a session runs one once).
    if (!resumed) {
      this.#buffer = this.#buffer.filter((m) => m?.case !== "leave");
      this.#leaves.clear();
    }
    const waiting = new Set(
      this.#buffer.flatMap((m) => (m?.case === "leave" || m?.case === "quickJoin" ? [m.value.requestId] : [])),
    );
    const leavesAgain = [...this.#leaves].filter(([requestId]) => !waiting.has(requestId));
    this.#resentLeaves = new Set(leavesAgain.map(([requestId]) => requestId));
    // (Those waiting to be sent again go now.)
    this.#cancelQuickJoinRetries();
    const quickJoinsAgain = [...this.#quickJoins.values()].map((q) => q.message).filter((m) => !waiting.has(m.value.requestId));
    this.#buffer.unshift(
      ...leavesAgain.map(([requestId, room]): Outgoing => ({ case: "leave", value: { requestId, room } })),
      ...quickJoinsAgain,
    );
    // A room left and joined again offline is joined after the leave (sent with what
    // waited offline): before it, the leave would undo the join.
    const leaving = new Set(this.#buffer.flatMap((m) => (m?.case === "leave" ? [m.value.room] : [])));
    const joinsAfter: Outgoing[] = [];
    for (const [room, state] of this.#rooms) {
      // Every mirror waits for a full snapshot (sent on join and on resume), and may
      // ask for one at once if it does not come; the state the client had is read
      // until it comes (see `mirror`).
      if (state.mirror?.synced) state.previous = state.mirror;
      state.mirror = state.schema === undefined ? undefined : this.#newMirror(state.schema);
      state.resyncAskedMs = -Infinity;
      if (!resumed) state.joined = false;
      if (!state.joined) {
        // Joined now: a retry that waited would join it a second time.
        clearTimeout(state.retryTimer);
        state.retryTimer = undefined;
        // Told again with the join's answer.
        state.owner = undefined;
        state.listing = undefined;
        (leaving.has(room) ? joinsAfter : out).push(this.#joinMessage(room, state));
      }
      if (state.joined) {
        for (const { seq, payload } of state.unacked) out.push({ case: "input", value: { room, seq, payload } });
        state.sentUpto = state.unacked.at(-1)?.seq ?? state.sentUpto;
      }
    }
    // Then what waited offline; events for rooms joined again wait for their `joined`
    // (the room may live on another node now).
    for (const message of [...unacked, ...this.#buffer]) if (!this.#holdUntilJoined(message)) out.push(message);
    out.push(...joinsAfter);
    this.#buffer = [];
    this.#welcomed = true;
    const socket = this.#socket;
    this.#timers.ping = setInterval(() => this.#ping(), this.#options.pingIntervalMs);
    this.#queue.push(...out);
    this.#ping(); // a round-trip time at once (and the first flush)
    if (this.#socket === socket) {
      this.#emit("connected", { sessionId: welcome.sessionId, userId: welcome.userId, resumed });
    }
  }

  /**
   * `#forget` for a room the server closed or removed this client from: its mirror is
   * kept among the last `ENDED_MIRRORS_KEPT` (see `mirror`), on the home client, which
   * the application reads (a room on another node too).
   */
  #roomEnded(room: string): void {
    const mirror = this.mirror(room);
    const ended = this.#home.#endedRooms;
    ended.delete(room);
    if (mirror !== undefined) {
      if (ended.size >= ENDED_MIRRORS_KEPT) ended.delete(ended.keys().next().value!);
      ended.set(room, mirror);
    }
    this.#forget(room);
  }

  /** A mirror that knows the room's kinds; one made at a welcome for the same kinds is kept. */
  #joinedRoom(joined: v1.Joined): void {
    this.#home.#endedRooms.delete(joined.room);
    const state = this.#rooms.get(joined.room);
    if (state === undefined) return; // left meanwhile
    if (state.joined && joined.requestId === 0n) {
      // Sent again after a resume that lost messages (who is in the room, who owns
      // it): the inputs went out again at the resume already.
      state.owner = joined.owner;
      state.listing = listingOf(joined);
      acknowledge(state, joined.lastInputSeq, false);
      return;
    }
    // A schema this client cannot use leaves the room without one: its packed frames
    // then fail to apply and are reported as desyncs.
    let schema: Schema;
    try {
      schema = Schema.fromProto(joined.schema);
    } catch {
      schema = Schema.EMPTY;
    }
    state.joined = true;
    state.owner = joined.owner;
    state.listing = listingOf(joined);
    state.seat = "";
    // The seat may have applied inputs already (a resume, or a seat restored from a
    // checkpoint on another node): those are done with, and new inputs are numbered
    // above them (the room would drop lower numbers as repeats).
    acknowledge(state, joined.lastInputSeq, true);
    // Inputs that waited for the join (the room drops what it applied already), once:
    // a `Joined` again (a join sent twice) does not queue them twice.
    const queuedHere = (m: Outgoing): boolean => m?.case === "input" && m.value.room === joined.room;
    this.#queue = this.#queue.filter((m) => !queuedHere(m));
    for (const { seq, payload } of state.unacked) this.#enqueue({ case: "input", value: { room: joined.room, seq, payload } });
    state.sentUpto = state.unacked.at(-1)?.seq ?? state.sentUpto;
    for (const event of state.heldEvents.splice(0)) this.#enqueue(event);
    const same = sameKinds(state.wireSchema, joined.schema);
    state.schema = schema;
    state.wireSchema = joined.schema;
    if (state.mirror === undefined || !same) state.mirror = this.#newMirror(schema);
  }

  #newMirror(schema: Schema): StateMirror {
    return new StateMirror(schema, this.#options.maxEntitiesPerRoom);
  }

  #state(frame: v1.StateFrame, receivedMs: number): void {
    this.#frameAt = now();
    const state = this.#rooms.get(frame.room);
    if (state === undefined || state.mirror === undefined) return; // left, or no Joined yet
    acknowledge(state, frame.lastInputSeq, false);
    const mirror = state.mirror;
    const verified = mirror.checksumsVerified;
    try {
      mirror.apply(frame);
    } catch (error) {
      if (!(error instanceof DesyncError)) throw error;
      // Awaiting a snapshot: the server sends one after a join or resume; asked
      // again if it is slow.
      this.#resync(frame.room, state);
      if (error.desync.type !== "awaiting-snapshot") this.#desynced(frame.room, state, mirror, error);
      return;
    }
    state.previous = undefined;
    this.stats.checksumsVerified += mirror.checksumsVerified - verified;
    this.stats.frames++;
    this.#link.played = true;
    this.#emit("state", {
      room: frame.room,
      tick: frame.tick,
      full: frame.baselineTick === 0n,
      serverTimeUs: frame.serverTimeUs,
      receivedMs,
      lastInputSeq: state.ackedSeq,
      mirror,
    });
  }

  /** The session took every event numbered up to `seq`. */
  #eventsAcknowledged(seq: bigint): void {
    const taken = this.#eventsUnacked.findIndex((e) => e.seq > seq);
    this.#eventsUnacked.splice(0, taken === -1 ? this.#eventsUnacked.length : taken);
  }

  /**
   * A room's mirror is wrong: a new one waits for the full snapshot (the old one may
   * hold thousands of entities of a frame over the limit), and the application is told.
   */
  #desynced(room: string, state: RoomState, mirror: StateMirror, error: DesyncError): void {
    this.stats.desyncs++;
    state.mirror = this.#newMirror(mirror.schema);
    this.#emit("desync", { room, error });
    if (error.desync.type === "entity-limit") {
      const message = `state frame of tick ${mirror.tick} not applied: ${error.message} (maxEntitiesPerRoom)`;
      this.#emit("error", create(v1.ErrorSchema, { code: v1.ErrorCode.LIMIT_EXCEEDED, message, room }));
    }
  }

  /**
   * Asks for a full snapshot, at most once a second per room whatever asks (a gap, a
   * checksum, a frame over the limit, a snapshot that is slow to come): the server
   * grants no more, and a stream of bad frames must not become a stream of requests.
   */
  #resync(room: string, state: RoomState): void {
    if (now() - state.resyncAskedMs < RESYNC_EVERY_MS) return;
    state.resyncAskedMs = now();
    this.#enqueue({ case: "request", value: { requestId: this.#requestId(), kind: { case: "resync", value: { room } } } });
  }

  // -- outbound ---------------------------------------------------------------------

  #requestId(): bigint {
    return ++this.#nextRequest;
  }

  /** Sends now if connected; otherwise keeps it (bounded) for the next connection. */
  #send(message: Outgoing): void {
    if (this.#welcomed) {
      this.#enqueue(message);
      return;
    }
    // Events and requests beyond `bufferLimit` were refused (see `#queueFullError`);
    // leaves, quick joins and token refreshes, a few per room, are never dropped.
    this.#buffer.push(message);
  }

  /** The error for an input, event or request handed to a full send queue (see `sendQueueLimit`); undefined while it has room. */
  #queueFullError(room: string, input = false): v1.Error | undefined {
    // Online, the send queue; offline, the buffer (inputs wait for their replay then,
    // within `unackedInputLimit`).
    if (!this.#welcomed && input) return undefined;
    const [waiting, limit, why] = this.#welcomed
      ? [this.#queue.length, this.#options.sendQueueLimit, "sendQueueLimit: the application sends faster than the server's limits allow"]
      : [this.#buffer.length, this.#options.bufferLimit, "bufferLimit: the client is offline"];
    if (waiting < limit) return undefined;
    const message = `not sent: ${waiting} messages already wait to be sent (${why})`;
    return create(v1.ErrorSchema, { code: v1.ErrorCode.RATE_LIMITED, message, room });
  }

  /** Reports an input or event for `room` handed to a full send queue; false while it has room. */
  #refusedAsQueueFull(room: string, input = false): boolean {
    const full = this.#queueFullError(room, input);
    if (full !== undefined) this.#emit("error", full);
    return full !== undefined;
  }

  /** Reports a message larger than an envelope may carry as an `error` with `LIMIT_EXCEEDED`. */
  #refuseTooBig(message: Outgoing, bytes: number): void {
    const value = message?.value as { room?: string; requestId?: bigint } | undefined;
    // An input's error carries its sequence number, as the relay's do.
    const requestId =
      message?.case === "input"
        ? (message.value.seq ?? 0n)
        : message?.case === "request" || message?.case === "join"
          ? (value?.requestId ?? 0n)
          : 0n;
    const room = message?.case === "request" ? "" : (value?.room ?? "");
    const text = `not sent: a message of ${bytes} bytes, over the ${this.#pacing.maxBatchBytes} an envelope may carry (seven eighths of the server's max_message_bytes)`;
    const error = create(v1.ErrorSchema, { code: v1.ErrorCode.LIMIT_EXCEEDED, message: text, requestId, room });
    if (message?.case === "input") {
      // Not kept for a replay either: it would be refused again.
      const state = this.#rooms.get(room);
      if (state !== undefined) state.unacked = state.unacked.filter(({ seq }) => seq !== message.value.seq);
    }
    const pending = requestId === 0n ? undefined : this.#requests.get(requestId);
    if (pending !== undefined) {
      this.#requests.delete(requestId);
      pending.reject(new RequestError(text, error));
    }
    this.#emit("error", error);
  }

  #enqueue(message: Outgoing): void {
    this.#queue.push(message);
    this.#flush();
  }

  /**
   * Queues a ping, unless one waits already: behind a backlog the pacer holds back,
   * pings would pile up (one per interval), each costing a message of the rate limit.
   * Stamped again as it is written (`#flush`), so the round-trip time does not count
   * the wait.
   */
  #ping(): void {
    if (this.#queue.some((m) => m?.case === "ping")) return this.#flush();
    this.#enqueue({ case: "ping", value: { sentTimeUs: unixMicros(), receivedSeq: this.#received ?? 0n } });
  }

  /** `message` encoded (an input, once: see `#encodedInputs`). */
  #encoded(message: Outgoing): Uint8Array {
    return (message && this.#encodedInputs.get(message)) ?? encodeMessage(message);
  }

  /** Sends what the pacers allow now as one envelope; schedules the rest. */
  #flush(): void {
    const socket = this.#socket;
    // (A socket the server is closing takes nothing more: the browser would only warn.)
    if (socket === undefined || socket.readyState !== OPEN || !this.#welcomed || this.#timers.flush !== undefined) return;
    const { messages: pacer, bytes: bytePacer, maxBatch, maxBatchBytes } = this.#pacing;
    const at = now();
    const parts: Uint8Array[] = [];
    const firstEventSeq = this.#eventsSent + 1n;
    // The head of the queue, encoded, when the pacers held it back.
    let held: Uint8Array | undefined;
    let size = 0;
    while (this.#queue.length > 0 && parts.length < maxBatch) {
      const head = this.#queue[0]!;
      // A ping measures the round trip from when it leaves, not from when it was
      // queued (behind inputs the pacer holds back).
      if (head.case === "ping") head.value = { ...head.value, sentTimeUs: unixMicros(), receivedSeq: this.#received ?? 0n };
      const part = this.#encoded(head);
      // The server closes a connection whose envelope exceeds its message size (1009,
      // after which the client gives up): a message too large for any envelope is
      // refused here instead.
      if (part.byteLength + MESSAGE_FRAMING > maxBatchBytes) {
        this.#refuseTooBig(this.#queue.shift()!, part.byteLength);
        continue;
      }
      if (size + part.byteLength + MESSAGE_FRAMING > maxBatchBytes) {
        held = part;
        break;
      }
      const cost = part.byteLength + MESSAGE_FRAMING;
      if (!pacer.tryTake(1, at)) {
        held = part;
        break;
      }
      if (!bytePacer.tryTake(cost, at)) {
        pacer.giveBack(1);
        held = part;
        break;
      }
      const message = this.#queue.shift();
      parts.push(part);
      size += part.byteLength + MESSAGE_FRAMING;
      if (message === this.#queuedPong) this.#queuedPong = undefined;
      if (message?.case === "event") {
        this.#eventsSent++;
        if (this.#eventsUnacked.length >= this.#options.bufferLimit) this.#eventsUnacked.shift();
        this.#eventsUnacked.push({ seq: this.#eventsSent, event: message });
      }
    }
    if (parts.length > 0) {
      const envelope = concatEnvelope(parts, this.#eventsSent >= firstEventSeq ? firstEventSeq : 0n);
      socket.send(envelope);
      this.stats.bytesOut += envelope.byteLength;
    }
    if (this.#queue.length > 0) {
      const next = (held ?? this.#encoded(this.#queue[0]!)).byteLength + MESSAGE_FRAMING;
      const waitMs = Math.max(pacer.waitFor(1, at), bytePacer.waitFor(next, at), 1);
      this.#timers.flush = setTimeout(() => {
        this.#timers.flush = undefined;
        this.#flush();
      }, waitMs);
    }
  }

  /** Calls the listeners; one that throws does not stop the client (its error is rethrown apart). */
  #emit<K extends keyof ClientEvents>(type: K, event: ClientEvents[K]): void {
    for (const listener of this.#listeners.get(type) ?? []) {
      try {
        (listener as Listener<K>)(event);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}

/**
 * The server applied the room's inputs up to `seq`: they need no replay. With
 * `renumber` (a join's answer) new inputs are numbered above it: a seat resumed by a
 * client that restarted, or restored from a checkpoint, may have applied more than
 * this client sent. A number above any an input may have (`MAX_INPUT_SEQ`), or a
 * frame's above every number this client gave, acknowledges nothing (no relay sends
 * one): ignored, so that it moves neither the numbering nor a `Predictor` fed from the
 * `state` event. (The same rules as the Rust client's.)
 */
function acknowledge(state: RoomState, seq: bigint, renumber: boolean): void {
  if (seq > MAX_INPUT_SEQ || (!renumber && seq > state.nextSeq)) return;
  if (renumber) renumberUnsentAbove(state, seq);
  if (renumber && state.nextSeq < seq) state.nextSeq = seq;
  state.ackedSeq = seq;
  while (state.unacked.length > 0 && state.unacked[0]!.seq <= seq) state.unacked.shift();
}

/**
 * Inputs that waited for the join and never left the client are not among those a
 * seat applied, whatever their numbers: numbered at or below `applied` (the seat is
 * an earlier page's, which numbered on before this one started), they are numbered on
 * above it, in order, instead of being taken as applied. (The numbers `sendInput`
 * returned for them are then below the new ones: `lastInputSeq` passes them once these
 * are applied.)
 */
function renumberUnsentAbove(state: RoomState, applied: bigint): void {
  const unsent = state.unacked.filter(({ seq }) => seq > state.sentUpto);
  if (!unsent.some(({ seq }) => seq <= applied)) return;
  let next = applied;
  for (const input of unsent) input.seq = ++next;
  if (state.nextSeq < next) state.nextSeq = next;
}

/** `url`'s scheme as `URL.protocol` gives it (lower case, with the colon); "" for no URL. */
function scheme(url: string): string {
  try {
    return new URL(url).protocol;
  } catch {
    return "";
  }
}

/** Whether two `Joined.schema` lists declare the same kinds (compared encoded). */
function sameKinds(a: v1.KindSchema[], b: v1.KindSchema[]): boolean {
  const encoded = (k: v1.KindSchema) => toBinary(v1.KindSchemaSchema, k).join(",");
  return a.length === b.length && a.every((kind, i) => encoded(kind) === encoded(b[i]!));
}

/** One `ClientMessage`, encoded. */
function encodeMessage(kind: Outgoing): Uint8Array {
  return toBinary(v1.ClientMessageSchema, create(v1.ClientMessageSchema, { kind }));
}

/**
 * A `ClientEnvelope` of already encoded messages: each is field 1 (`messages`), length
 * delimited, then `firstEventSeq` (field 2) unless 0 — the same bytes `toBinary`
 * gives, without encoding each message twice.
 */
function concatEnvelope(parts: Uint8Array[], firstEventSeq: bigint): Uint8Array<ArrayBuffer> {
  const seq: number[] = [];
  for (let n = firstEventSeq; n > 0n; n >>= 7n) seq.push(Number(n & 0x7fn) | (n >= 0x80n ? 0x80 : 0));
  let size = seq.length > 0 ? 1 + seq.length : 0;
  for (const part of parts) size += 1 + varintLength(part.byteLength) + part.byteLength;
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out[at++] = 0x0a; // field 1, wire type 2
    for (let n = part.byteLength; ; n >>>= 7) {
      if (n < 0x80) {
        out[at++] = n;
        break;
      }
      out[at++] = (n & 0x7f) | 0x80;
    }
    out.set(part, at);
    at += part.byteLength;
  }
  if (seq.length > 0) {
    out[at++] = 0x10; // field 2, wire type 0
    out.set(seq, at);
  }
  return out;
}

function varintLength(n: number): number {
  let length = 1;
  while (n >= 0x80) {
    n >>>= 7;
    length++;
  }
  return length;
}
