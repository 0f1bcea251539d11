/**
 * The connection's rules, against a scripted WebSocket and mocked timers: what it
 * sends on a new session and on a resume, when it reconnects and when it gives up,
 * numbered messages, requests. The browser tests run the same client against the
 * real relay.
 */

import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import { Client, PROTOCOL_VERSION, RequestError, type ClientEvents, type ClientOptions } from "../src/client.js";
import { TokenBucket, backoffDelay, DEFAULT_BACKOFF } from "../src/bucket.js";
import * as v1 from "../src/gen/tickrelay/v1/tickrelay_pb.js";

type ServerKind = MessageInitShape<typeof v1.ServerMessageSchema>["kind"];

/** A WebSocket the test plays the server of. */
class FakeSocket {
  static opened: FakeSocket[] = [];
  readonly CLOSED = 3;
  readyState = 1;
  binaryType = "blob";
  onmessage: ((e: { data: ArrayBuffer }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  readonly sent: v1.ClientMessage["kind"][] = [];
  /** The events sent, as (number, kind); number 0: not numbered. */
  readonly events: [bigint, string][] = [];
  closedWith: number | undefined;

  constructor(
    readonly url: URL,
    readonly protocols: string[],
  ) {
    FakeSocket.opened.push(this);
  }

  /** The size of each envelope sent, and when (the client's clock). */
  readonly sizes: number[] = [];
  readonly sentAt: number[] = [];

  send(data: Uint8Array): void {
    this.sizes.push(data.byteLength);
    this.sentAt.push(clock);
    const envelope = fromBinary(v1.ClientEnvelopeSchema, data);
    this.sent.push(...envelope.messages.map((m) => m.kind));
    let seq = envelope.firstEventSeq;
    for (const { kind } of envelope.messages) {
      if (kind.case !== "event") continue;
      this.events.push([seq, kind.value.kind]);
      if (seq !== 0n) seq++;
    }
  }

  /** Close codes `close` refused, as browsers do: all but 1000 and 3000–4999. */
  readonly refusedCodes: number[] = [];

  close(code?: number): void {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      this.refusedCodes.push(code);
      throw new DOMException(`close code ${code} is neither 1000 nor in 3000-4999`, "InvalidAccessError");
    }
    this.closedWith = code;
    this.readyState = 3;
  }

  /** The server sends one envelope. */
  receive(kinds: ServerKind[], firstSeq = 0n): void {
    const envelope = create(v1.ServerEnvelopeSchema, { messages: kinds.map((kind) => ({ kind })), firstSeq });
    this.onmessage?.({ data: toBinary(v1.ServerEnvelopeSchema, envelope).slice().buffer });
  }

  welcome(resumed = false, sessionId = 7n, eventsReceived = 0n): void {
    this.receive([{ case: "welcome", value: { sessionId, resumeToken: "resume-me", resumed, userId: "ada", eventsReceived } }]);
  }

  /** The server (or the network, with 1006) ends the connection. */
  end(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** What was sent, by kind, without pings. */
  kinds(): string[] {
    return this.sent.map((k) => k.case ?? "").filter((k) => k !== "ping");
  }
}

const last = () => FakeSocket.opened.at(-1)!;

function client(options: Partial<ClientOptions> = {}): { client: Client; events: string[] } {
  const c = new Client({
    url: "wss://relay.test/ws",
    WebSocket: FakeSocket as unknown as typeof WebSocket,
    backoff: { initialMs: 100, maxMs: 1000, maxAttempts: 3 },
    ...options,
  });
  const events: string[] = [];
  const names: (keyof ClientEvents)[] = ["connected", "disconnected", "reconnecting", "gaveUp", "messagesLost", "error"];
  for (const name of names) c.on(name, (e) => events.push(`${name} ${JSON.stringify(e, (_, v) => (typeof v === "bigint" ? `${v}` : v))}`));
  return { client: c, events };
}

/** The client's clock (`performance.now`), moved with the mocked timers by {@link advance}. */
let clock = 0;

function advance(ms: number): void {
  for (let step = 0; step < ms; step += 5) {
    clock += 5;
    mock.timers.tick(5);
  }
}

/**
 * A client in room "r" of a server announcing 10 messages a second with a burst of 4
 * (the client paces at 8 a second, a burst of 2: the join and the first ping take it).
 */
function joinedUnderTightLimits(): Client {
  const { client: c } = client();
  c.join("r", "arena");
  c.connect();
  last().receive([
    {
      case: "welcome",
      value: { sessionId: 1n, resumeToken: "t", limits: { messagesPerSecond: 10, messageBurst: 4, bytesPerSecond: 65536 } },
    },
  ]);
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  return c;
}

/** A client joining arena room "r", welcomed by its home connection (returned). */
function welcomedInArena(): { c: Client; home: FakeSocket; events: string[] } {
  const { client: c, events } = client();
  c.join("r", "arena");
  c.connect();
  const home = last();
  home.welcome();
  return { c, home, events };
}

/** A client welcomed and joined to room "r" of `roomType`, which then leaves it and joins it again. */
function leftAndJoinedAgain(roomType: string): Client {
  const { client: c } = client();
  c.join("r", roomType);
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", roomType } }], 1n);
  c.leave("r");
  c.join("r", roomType);
  advance(100);
  return c;
}

/** `home` redirects the join of room "r" to node B. */
function redirectToNodeB(home: FakeSocket): void {
  home.receive([{ case: "redirect", value: { requestId: 1n, room: "r", url: "wss://node-b.test/ws", seat: "t" } }], 1n);
}

beforeEach(() => {
  FakeSocket.opened = [];
  clock = 0;
  mock.method(performance, "now", () => clock);
  mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
});
afterEach(() => {
  mock.timers.reset();
  mock.restoreAll();
});

test("the token is offered as a subprotocol, and ws:// needs allowInsecure", () => {
  const { client: c } = client({ token: "jwt.token.here" });
  c.connect();
  assert.deepEqual(last().protocols, ["tickrelay.v1", "tickrelay.bearer.jwt.token.here"]);
  assert.throws(() => new Client({ url: "ws://relay.test/ws" }), TypeError);
  assert.doesNotThrow(() => new Client({ url: "ws://relay.test/ws", allowInsecure: true, WebSocket: FakeSocket as never }));
  assert.throws(() => new Client({ url: "wss://relay.test:7443", WebSocket: FakeSocket as never }), /has no path; .* wss:\/\/relay\.test:7443\/ws/);
  assert.throws(() => new Client({ url: "wss://relay.test?next=/ws", WebSocket: FakeSocket as never }), /has no path/);
  const fallbackUrls = ["wss://b.relay.test"];
  assert.throws(() => new Client({ url: "wss://relay.test/ws", fallbackUrls, WebSocket: FakeSocket as never }), /b\.relay\.test has no path/);
});

test("a new session joins every room; a resume joins only what it had not confirmed", () => {
  const { client: c } = client();
  c.join("a", "arena");
  c.connect();
  last().welcome();
  assert.deepEqual(last().kinds(), ["join"]);
  last().receive([{ case: "joined", value: { room: "a", roomType: "arena" } }], 1n);

  // The connection drops; meanwhile the application joins another room.
  last().end(1006);
  c.join("b", "relay");
  mock.timers.tick(1000);
  assert.equal(FakeSocket.opened.length, 2);
  assert.equal(last().url.searchParams.get("resume"), "resume-me");
  assert.equal(last().url.searchParams.get("received"), "1");
  last().welcome(true);
  assert.deepEqual(last().kinds(), ["join"], "only b: the resumed session is still in a");
  assert.equal((last().sent[0]!.value as v1.JoinRoom).room, "b");

  // A new session (the server no longer had ours): every room again.
  last().end(4504, "resume token unknown or expired");
  assert.equal(FakeSocket.opened.length, 3, "at once, without backoff");
  assert.equal(last().url.searchParams.get("resume"), null);
  last().welcome(false, 8n);
  assert.deepEqual(last().kinds(), ["join", "join"]);
});

test("a stored resume token continues an earlier page's session, and its rooms come back", () => {
  const { client: c, events } = client({ resumeToken: "earlier" });
  assert.equal(c.resumeToken, "earlier", "from the start: a page going before the welcome passes it on");
  c.connect();
  assert.equal(last().url.searchParams.get("resume"), "earlier");
  assert.equal(last().url.searchParams.get("received"), null, "what the earlier page received is not known");
  last().receive([{ case: "welcome", value: { sessionId: 7n, resumeToken: "earlier", resumed: true, userId: "ada" } }]);
  assert.equal(c.resumeToken, "earlier");
  assert.deepEqual(last().kinds(), [], "no room to join: the session is in them");
  // Every room the session is in says so again: it is this client's now, its inputs
  // numbered above the last one it applied. The session's messages are numbered far
  // beyond anything this client saw: no gap, nothing lost.
  c.leave("gone"); // a room of the session this client has not learnt of yet: asked all the same
  const leaveId = (last().sent.find((k) => k.case === "leave")!.value as v1.LeaveRoom).requestId;
  assert.ok(leaveId > (1n << 53n) + 1n, "request ids of its own, not where the earlier page's began");
  last().receive(
    [
      { case: "joined", value: { room: "r", roomType: "relay", memberId: 7n, lastInputSeq: 41n } },
      { case: "joined", value: { room: "gone", roomType: "relay", memberId: 7n } },
      // The answer to a join the earlier page made (its request id): a room of the session too.
      { case: "joined", value: { requestId: (1n << 53n) + 1n, room: "late", roomType: "relay", memberId: 7n } },
    ],
    100_000n,
  );
  assert.equal(c.sendInput("r", { case: "intent", value: new Uint8Array([1]) }), 42n);
  assert.equal(c.sendInput("late", { case: "intent", value: new Uint8Array([1]) }), 1n);
  assert.equal(c.sendInput("gone", { case: "intent", value: new Uint8Array([1]) }), undefined, "left, not taken");
  assert.ok(events.some((e) => e.startsWith("connected") && e.includes('"resumed":true')));
  assert.ok(!events.some((e) => e.startsWith("messagesLost")), events.join("\n"));
  assert.equal(c.stats.messagesLost, 0);
  // Its own numbering from here: the next resume says what it received.
  last().end(1006);
  mock.timers.tick(1000);
  assert.equal(last().url.searchParams.get("received"), "100002");
  // A token the relay no longer knows: a new session at once, this client's own.
  last().end(4504, "resume token unknown or expired");
  assert.equal(last().url.searchParams.get("resume"), null);
  last().receive([{ case: "welcome", value: { sessionId: 8n, resumeToken: "fresh", resumed: false } }]);
  assert.equal(c.resumeToken, "fresh");
  c.leave("never-joined");
  assert.deepEqual(last().kinds().filter((k) => k === "leave"), [], "no leave of a room it never joined");
});

test("a join the earlier page was still making, answered after this page's own join of the room, joins it", () => {
  const { client: c } = client({ resumeToken: "earlier" });
  const joined: bigint[] = [];
  c.on("joined", (j) => joined.push(j.requestId));
  c.join("match", "relay");
  c.connect();
  last().receive([{ case: "welcome", value: { sessionId: 7n, resumeToken: "earlier", resumed: true } }]);
  const own = (last().sent.find((k) => k.case === "join")!.value as v1.JoinRoom).requestId;
  last().receive(
    [
      { case: "error", value: { requestId: own, room: "match", code: v1.ErrorCode.ALREADY_MEMBER } },
      { case: "joined", value: { requestId: 5n, room: "match", roomType: "relay", memberId: 7n } },
    ],
    1n,
  );
  assert.deepEqual(joined, [5n]);
  assert.equal(c.sendInput("match", { case: "intent", value: new Uint8Array([1]) }), 1n, "inputs open");
});

test("member data goes with every join and quick join", () => {
  const memberData = new TextEncoder().encode("Ada");
  const { client: c } = client({ memberData });
  c.join("a", "tag");
  c.quickJoin("tag");
  c.connect();
  last().welcome();
  const sent = last().sent.filter((k) => k.case === "join" || k.case === "quickJoin");
  assert.equal(sent.length, 2);
  for (const k of sent) assert.deepEqual((k.value as v1.JoinRoom | v1.QuickJoin).memberData, memberData);
});

test("a refused join forgets its room; one the server asks to retry is kept", () => {
  const { client: c, events } = client();
  c.join("ghost", "nosuchtype");
  c.join("busy", "arena");
  c.connect();
  last().welcome();
  const joinOf = (room: string) =>
    last().sent.map((k) => k.value as v1.JoinRoom).find((j) => j.room === room)!.requestId;
  const refusal = (room: string, code: v1.ErrorCode, requestId = joinOf(room)) => ({
    case: "error" as const,
    value: { code, room, requestId, retryAfterMs: 100 },
  });
  // An error for another message about the room (a request while its join waits) is
  // not the join's answer.
  last().receive([refusal("ghost", v1.ErrorCode.NOT_A_MEMBER, 999n)], 1n);
  assert.equal(c.sendInput("ghost", { case: "intent", value: new Uint8Array([1]) }), 1n, "still joining");
  last().receive([refusal("ghost", v1.ErrorCode.UNKNOWN_ROOM_TYPE), refusal("busy", v1.ErrorCode.UNAVAILABLE)], 2n);
  assert.equal(events.filter((e) => e.startsWith("error")).length, 3, "every one reaches the application");
  assert.equal(c.sendInput("ghost", { case: "intent", value: new Uint8Array([1]) }), undefined);
  assert.equal(c.sendInput("busy", { case: "intent", value: new Uint8Array([1]) }), 1n, "kept for its retry");
  // A new session joins again only the room the server asked to retry.
  last().end(1006);
  mock.timers.tick(1000);
  assert.equal(FakeSocket.opened.length, 2);
  last().welcome(false, 8n);
  const joins = last().sent.filter((k) => k.case === "join").map((k) => (k.value as v1.JoinRoom).room);
  assert.deepEqual(joins, ["busy"]);
  // Leaving the forgotten room asks the server nothing it would refuse.
  c.leave("ghost");
  assert.ok(!last().kinds().includes("leave"));
});

test("connect after close starts a new session instead of resuming the closed one", async () => {
  const { client: c, events } = client();
  c.join("r", "arena");
  c.connect();
  last().welcome();
  const closed = c.close();
  last().end(1000);
  await closed;
  c.connect();
  assert.equal(FakeSocket.opened.length, 2);
  assert.equal(last().url.searchParams.get("resume"), null);
  last().welcome(false, 8n);
  assert.deepEqual(last().kinds(), ["join"]);
  assert.ok(!events.some((e) => e.startsWith("disconnected") && e.includes("4504")), events.join("\n"));
});

test("connect right after close (not awaited) connects once the close is done", async () => {
  const { client: c } = client();
  c.connect();
  last().welcome();
  const closed = c.close();
  c.connect();
  assert.equal(FakeSocket.opened.length, 1, "not while the close is under way");
  last().end(1000);
  await closed;
  await Promise.resolve();
  assert.equal(FakeSocket.opened.length, 2, "connected again");
  // A close after it wins.
  last().welcome(false, 8n);
  const closedAgain = c.close();
  c.connect();
  void c.close();
  last().end(1000);
  await closedAgain;
  await Promise.resolve();
  assert.equal(FakeSocket.opened.length, 2);
});

test("a text frame is ignored, and only a welcome ends the wait for one", () => {
  const { client: c, events } = client({ connectTimeoutMs: 1000 });
  c.connect();
  const first = last();
  first.onmessage?.({ data: "2000000000" as unknown as ArrayBuffer });
  assert.equal(first.closedWith, undefined, "ignored");
  // Messages that are no welcome do not hold the client connecting for good.
  for (let t = 0; t < 1200; t += 300) {
    first.receive([]);
    mock.timers.tick(300);
  }
  assert.ok(events.some((e) => e.startsWith("reconnecting")), events.join("\n"));
});

test("a failed TLS handshake (1015) is retried, as a lost connection is", () => {
  const { client: c, events } = client();
  c.connect();
  last().end(1015);
  assert.ok(events.some((e) => e.startsWith("disconnected") && e.includes('"willReconnect":true')), events.join("\n"));
  assert.ok(!events.some((e) => e.startsWith("gaveUp")), events.join("\n"));
  mock.timers.tick(1000);
  assert.equal(FakeSocket.opened.length, 2);
});

test("getToken is asked before every attempt: a token that expired (4500) is replaced, a failure is an attempt", async () => {
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  let asked = 0;
  const { client: c, events } = client({
    getToken: async () => {
      asked++;
      if (asked === 3) throw new Error("backend down");
      return `t${asked}`;
    },
  });
  c.connect();
  c.connect(); // a no-op while the token is on its way
  await settle();
  assert.equal(FakeSocket.opened.length, 1);
  assert.deepEqual(last().protocols, ["tickrelay.v1", "tickrelay.bearer.t1"]);
  last().welcome();
  last().end(4500, "token expired");
  mock.timers.tick(1000);
  await settle();
  assert.deepEqual(last().protocols, ["tickrelay.v1", "tickrelay.bearer.t2"]);
  assert.equal(last().url.searchParams.get("resume"), null, "a session closed with 4500 is over");
  last().end(1006);
  mock.timers.tick(1000); // the third answer fails: a failed attempt, retried
  await settle();
  assert.equal(FakeSocket.opened.length, 2);
  assert.ok(events.some((e) => e.startsWith("reconnecting") && e.includes("getToken failed: Error: backend down")), events.join("\n"));
  mock.timers.tick(1000);
  await settle();
  assert.deepEqual(last().protocols, ["tickrelay.v1", "tickrelay.bearer.t4"]);
});

test("getToken: failing after a stable connection goes through the backoff to gaveUp; close then connect asks again; a hung one times out", async () => {
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  let fail = false;
  let asked = 0;
  const { client: c, events } = client({
    connectTimeoutMs: 1000,
    getToken: () => {
      asked++;
      if (asked === 3) return new Promise<string>(() => {}); // never answers
      return fail ? Promise.reject(new Error("backend down")) : Promise.resolve("t");
    },
  });
  c.connect();
  await settle();
  last().welcome();
  advance(11_000); // a stable connection (10 s after its welcome)
  fail = true;
  last().end(1006);
  for (let i = 0; i < 10 && !events.some((e) => e.startsWith("gaveUp")); i++) {
    mock.timers.tick(1000);
    await settle();
  }
  assert.ok(events.some((e) => e.startsWith("gaveUp")), events.join("\n"));
  assert.equal(asked, 4, "the first, then three failed attempts (one of them hung)");
  assert.ok(events.some((e) => e.includes("no token within 1000 ms")), events.join("\n"));
  // close() while an ask is under way, then connect(): the new attempt is not lost.
  fail = false;
  asked = 10;
  c.connect();
  const closed = c.close();
  await closed;
  c.connect();
  await settle();
  assert.equal(last().readyState, 1);
  assert.equal(FakeSocket.opened.length, 2, "one new connection");
  await settle();
  assert.equal(FakeSocket.opened.length, 2, "the older ask's answer opened none");
});

test("inputs sent before an earlier page's seat is joined are numbered above what it applied", () => {
  const { client: c } = client({ resumeToken: "earlier" });
  c.join("r", "relay");
  c.connect();
  last().receive([{ case: "welcome", value: { sessionId: 7n, resumeToken: "earlier", resumed: true, userId: "ada" } }]);
  const intent = { case: "intent" as const, value: new Uint8Array([1]) };
  assert.deepEqual([c.sendInput("r", intent), c.sendInput("r", intent)], [1n, 2n]);
  const join = last().sent.find((k) => k.case === "join")!.value as v1.JoinRoom;
  // The seat applied 41 of the earlier page's: these two never left this page.
  last().receive([{ case: "joined", value: { requestId: join.requestId, room: "r", roomType: "relay", memberId: 7n, lastInputSeq: 41n } }], 1n);
  assert.equal(c.sendInput("r", intent), 44n);
  const seqs = last().sent.flatMap((k) => (k.case === "input" ? [k.value.seq] : []));
  assert.deepEqual(seqs, [42n, 43n, 44n]);
});

test("a room left and joined again numbers its inputs on", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  const joined = () => {
    const join = last().sent.filter((k) => k.case === "join").at(-1)!.value as v1.JoinRoom;
    last().receive([{ case: "joined", value: { requestId: join.requestId, room: "r", roomType: "relay", memberId: 7n } }]);
  };
  joined();
  const intent = { case: "intent" as const, value: new Uint8Array([1]) };
  for (let i = 0; i < 5; i++) c.sendInput("r", intent);
  c.leave("r");
  c.join("r", "relay");
  joined();
  // (A Predictor rewound at the join takes it: numbers only go up.)
  assert.equal(c.sendInput("r", intent), 6n);
});

test("a leave made offline goes out when the session resumes, even after a give-up; not after close", async () => {
  const { client: c, events } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  last().end(1006);
  c.leave("r");
  while (!events.some((e) => e.startsWith("gaveUp"))) {
    mock.timers.tick(1000);
    last().end(1006);
  }
  c.connect();
  last().welcome(true);
  assert.ok(last().kinds().includes("leave"), "the resumed session leaves the room");
  c.join("s", "relay");
  last().end(1006);
  c.leave("s");
  const closed = c.close();
  await closed;
  c.connect();
  last().welcome(false, 9n);
  assert.ok(!last().kinds().includes("leave"), "a new session was never in the room");
});

test("unacknowledged inputs are replayed after a reconnect, acknowledged ones are not", () => {
  const { client: c } = client();
  c.join("r", "arena");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  const seqs = [1, 2, 3].map(() => c.sendInput("r", { case: "intent", value: new Uint8Array([1, 0]) }));
  assert.deepEqual(seqs, [1n, 2n, 3n]);
  // A frame acknowledging input 2 (the mirror waits for a snapshot; the ack counts).
  last().receive([{ case: "state", value: { room: "r", tick: 5n, baselineTick: 4n, lastInputSeq: 2n } }]);
  last().end(1006);
  assert.equal(c.sendInput("r", { case: "intent", value: new Uint8Array([0, 1]) }), 4n, "numbered while offline");
  mock.timers.tick(1000);
  last().welcome(true);
  const inputs = last().sent.filter((k) => k.case === "input").map((k) => (k.value as v1.Input).seq);
  assert.deepEqual(inputs, [3n, 4n]);
});

test("do-not-reconnect close codes give up at once; others retry with backoff until the limit", () => {
  const first = client();
  first.client.connect();
  last().welcome();
  last().end(4002, "replaced by another connection: this session resumed there, or a newer session of the same user");
  mock.timers.tick(60_000);
  assert.equal(FakeSocket.opened.length, 1);
  assert.match(first.events.at(-1)!, /^gaveUp .*4002: replaced/);

  FakeSocket.opened = [];
  const second = client();
  second.client.connect();
  for (let attempt = 1; attempt <= 3; attempt++) {
    last().end(1006);
    mock.timers.tick(1000);
  }
  last().end(1006);
  assert.equal(FakeSocket.opened.length, 4, "the first try and three retries");
  assert.match(second.events.at(-1)!, /^gaveUp \{"attempts":4,/);
  assert.equal(second.events.filter((e) => e.startsWith("reconnecting")).length, 3);
});

test("numbered messages: repeats after a resume are skipped, gaps are reported", () => {
  const { client: c, events } = client();
  const presence: bigint[] = [];
  c.on("presence", (p) => presence.push(p.member!.memberId));
  c.connect();
  last().welcome();
  const p = (memberId: bigint): ServerKind => ({ case: "presence", value: { room: "r", member: { memberId } } });
  last().receive([p(1n), p(2n)], 1n);
  last().receive([p(2n), p(3n)], 2n); // 2 again (a resume), then 3
  last().receive([p(6n)], 6n); // 4 and 5 are gone
  assert.deepEqual(presence, [1n, 2n, 3n, 6n]);
  assert.ok(events.includes('messagesLost {"count":"2"}'), events.join("\n"));
});

test("requests are answered by correlation id; an Error rejects with a RequestError", async () => {
  const { client: c } = client();
  c.connect();
  last().welcome();
  const listed = c.request({ case: "listRooms", value: {} });
  const refused = c.request({ case: "resync", value: { room: "nowhere" } });
  const [list, resync] = last().sent.filter((k) => k.case === "request").map((k) => (k.value as v1.Request).requestId);
  last().receive(
    [
      { case: "error", value: { requestId: resync!, code: v1.ErrorCode.NOT_A_MEMBER, message: "not a member" } },
      { case: "response", value: { requestId: list!, kind: { case: "rooms", value: { rooms: [{ room: "x" }] } } } },
    ],
    1n,
  );
  assert.equal((await listed).kind.case, "rooms");
  await assert.rejects(refused, (e) => e instanceof RequestError && e.error?.code === v1.ErrorCode.NOT_A_MEMBER);
});

test("a request waits for the next connection until its timeout, and is then not sent; a closed client refuses at once", async () => {
  const { client: c } = client({ requestTimeoutMs: 1000 });
  c.connect();
  last().welcome();
  last().end(1006);
  const waiting = c.request({ case: "listRooms", value: {} });
  mock.timers.tick(1000);
  await assert.rejects(waiting, (e) => e instanceof RequestError && /no response within 1000 ms/.test(e.message));
  mock.timers.tick(1000);
  last().welcome(true);
  assert.ok(!last().kinds().includes("request"), "not sent once given up on");
  const closed = c.close();
  last().end(1000);
  await closed;
  await assert.rejects(c.request({ case: "listRooms", value: {} }), /client is closed/);
});

test("sends are paced to the announced limits, one envelope per flush", () => {
  const c = joinedUnderTightLimits();
  for (let i = 0; i < 10; i++) c.sendInput("r", { case: "intent", value: new Uint8Array([1, 1]) });
  // Burst 2 (half the server's 4): the join and the first ping took it; the rest waits.
  const inputs = () => last().sent.filter((k) => k.case === "input").length;
  assert.equal(inputs(), 0, "the join and the first ping took the burst");
  advance(500); // 8 messages a second (80 % of 10): 4 more
  assert.equal(inputs(), 4);
  advance(1000);
  assert.equal(inputs(), 10, "the rest within the next second");
});

test("a ping queued behind held-back inputs is stamped when it leaves; the backlog is visible", () => {
  const c = joinedUnderTightLimits();
  for (let i = 0; i < 30; i++) c.sendInput("r", { case: "intent", value: new Uint8Array([1, 1]) });
  assert.equal(c.queuedMessages, 30);
  // 8 messages a second: the ping of the 2 s interval waits behind the inputs left.
  advance(2000);
  assert.ok(c.queuedMessages > 10, `${c.queuedMessages} left`);
  advance(3000);
  assert.equal(c.queuedMessages, 0);
  const pings = last().sent.filter((k) => k.case === "ping").map((k) => k.value as v1.Ping);
  const sentAtMs = Number(pings[1]!.sentTimeUs) / 1000 - performance.timeOrigin;
  assert.ok(sentAtMs > 3000, `stamped at ${sentAtMs} ms, queued at 2000`);
  last().receive([{ case: "pong", value: { pingSentTimeUs: pings[1]!.sentTimeUs } }]);
  assert.ok(c.stats.rttMs! < 2000, `${c.stats.rttMs} ms: the time queued was counted in the round trip`);
});

test("behind a backlog longer than several ping intervals, one ping waits, not one per interval", () => {
  const c = joinedUnderTightLimits();
  for (let i = 0; i < 60; i++) c.sendInput("r", { case: "intent", value: new Uint8Array([1, 1]) });
  // 8 messages a second: the inputs take 7.5 s, over the pings of 2, 4 and 6 s.
  advance(6500);
  const pingsSent = () => last().sent.filter((k) => k.case === "ping").length;
  assert.equal(pingsSent(), 1, "only the first went");
  advance(1400);
  assert.equal(c.queuedMessages, 0);
  assert.equal(pingsSent(), 2, "the first, then one that waited for the backlog");
});

test("a Joined again does not queue the room's unacknowledged inputs again", () => {
  const c = joinedUnderTightLimits();
  c.sendInput("r", { case: "intent", value: new Uint8Array([1]) });
  const joined: ServerKind = { case: "joined", value: { room: "r", roomType: "arena" } };
  last().receive(Array.from({ length: 1000 }, () => joined), 2n);
  advance(3000);
  const inputs = last().sent.filter((k) => k.case === "input").length;
  assert.ok(inputs <= 3, `${inputs} inputs sent for one`);
});

test("full-jitter backoff doubles its ceiling up to the maximum; the bucket refills at its rate", () => {
  assert.equal(backoffDelay(DEFAULT_BACKOFF, 1, 0.999_999), 999.999);
  assert.equal(backoffDelay(DEFAULT_BACKOFF, 3, 0.5), 2000);
  assert.equal(backoffDelay(DEFAULT_BACKOFF, 10, 1), 30_000);
  assert.equal(backoffDelay(DEFAULT_BACKOFF, 2, 0), 0);
  const bucket = new TokenBucket(10, 2, 0);
  assert.ok(bucket.tryTake(2, 0));
  assert.ok(!bucket.tryTake(1, 50));
  assert.equal(bucket.waitFor(1, 50), 50);
  assert.ok(bucket.tryTake(1, 100));
  assert.equal(bucket.waitFor(5, 100), 200, "more than the burst waits for a full bucket");
});

test("a connection given up to reconnect is closed with 4000, so the server keeps the session", () => {
  const { client: c } = client({ quietTimeoutMs: 1000 });
  c.connect();
  last().welcome();
  mock.timers.tick(1000);
  assert.equal(FakeSocket.opened[0]!.closedWith, 4000, "not 1000 or a close without a code: both end the session");
});

test("envelopes stay within the server's message size, however much the pacers allow", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  const limits = { messagesPerSecond: 50, messageBurst: 100, bytesPerSecond: 65536, maxMessageBytes: 16384 };
  const welcome = (resumed: boolean) =>
    last().receive([{ case: "welcome", value: { sessionId: 1n, resumeToken: "t", resumed, limits } }]);
  welcome(false);
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  last().end(1006);
  // Buffered while offline: eight events of 3 KiB, 24 KiB in all, then sent at once.
  for (let i = 0; i < 8; i++) c.sendEvent("r", "big", new Uint8Array(3 * 1024).fill(i));
  advance(1000);
  welcome(true);
  advance(100);
  const events = last().sent.filter((k) => k.case === "event").length;
  assert.equal(events, 8, "every event sent");
  assert.ok(last().sizes.every((n) => n <= 16384), `envelopes of ${last().sizes.join(", ")} bytes`);
});

test("messages larger than a second's bytes are paced by their whole size", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  const limits = { messagesPerSecond: 50, messageBurst: 100, bytesPerSecond: 4000, byteBurst: 8192, maxMessageBytes: 8192 };
  last().receive([{ case: "welcome", value: { sessionId: 1n, resumeToken: "t", limits } }]);
  const start = clock;
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  for (let i = 0; i < 4; i++) c.sendEvent("r", "big", new Uint8Array(6000).fill(i));
  advance(7000);
  assert.equal(last().events.length, 4, "every event sent");
  // The server's byte bucket over what was sent: nothing refused (charged a second's
  // worth of bytes each, the fourth went out before the server had refilled enough).
  const server = new TokenBucket(4000, 8192, start);
  last().sizes.forEach((n, i) => {
    const at = last().sentAt[i]!;
    assert.ok(server.tryTake(n, at), `envelope ${i} of ${n} bytes at ${at} ms refused`);
  });
});

test("an error with no close after it (Node 20's WebSocket failing to connect) is a failed attempt, told so at once", () => {
  const { client: c, events } = client();
  c.connect();
  last().onerror?.();
  advance(5);
  assert.ok(events.some((e) => e.startsWith("reconnecting") && e.includes("the connection failed before the relay answered")), events.join("; "));
  advance(200);
  assert.equal(FakeSocket.opened.length, 2, "tried again after the backoff, not after connectTimeoutMs");
  // A browser's error and close in the same task: the close alone counts.
  last().onerror?.();
  last().end(1006);
  advance(5);
  assert.equal(events.filter((e) => e.startsWith("reconnecting")).length, 2, events.join("; "));
});

test("a message too big for any envelope is refused with an error, not sent", () => {
  const { client: c, events } = client();
  c.join("r", "relay");
  c.connect();
  const limits = { messagesPerSecond: 50, messageBurst: 100, bytesPerSecond: 65536, maxMessageBytes: 16384 };
  last().receive([{ case: "welcome", value: { sessionId: 1n, resumeToken: "t", limits } }]);
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  c.sendEvent("r", "huge", new Uint8Array(17 * 1024));
  c.sendEvent("r", "small", new Uint8Array([1]));
  assert.deepEqual(last().events.map(([, kind]) => kind), ["small"]);
  assert.ok(last().sizes.every((n) => n <= 16384));
  // An input too large is not numbered (nothing to predict with): refused at once.
  assert.equal(c.sendInput("r", { case: "intent", value: new Uint8Array(20000) }), undefined);
  assert.equal(c.sendInput("r", { case: "intent", value: new Uint8Array([1]) }), 1n);
  const refused = events.filter((e) => e.startsWith("error "));
  assert.equal(refused.length, 2, events.join("; "));
  assert.match(refused[0]!, /"code":12.*"room":"r"/);
  assert.match(refused[1]!, /"code":12.*"room":"r"/);
});

test("a full send queue refuses the inputs, events and requests handed to it, unnumbered; what fitted is sent, paced", async () => {
  const { client: c, events } = client({ sendQueueLimit: 4 });
  c.join("r", "relay");
  c.connect();
  const limits = { messagesPerSecond: 2, messageBurst: 2, bytesPerSecond: 65536, maxMessageBytes: 16384 };
  last().receive([{ case: "welcome", value: { sessionId: 1n, resumeToken: "t", limits } }]);
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  const seqs = [];
  for (let i = 0; i < 10; i++) seqs.push(c.sendInput("r", { case: "intent", value: new Uint8Array([i]) }));
  // The queue also holds what the client sends by itself (the first ping).
  const accepted = seqs.filter((seq) => seq !== undefined);
  assert.ok(accepted.length >= 2 && accepted.length < 4, `${accepted}`);
  assert.deepEqual(accepted, seqs.slice(0, accepted.length), "numbered only when queued, in order");
  assert.deepEqual(accepted, accepted.map((_, i) => BigInt(i + 1)));
  c.sendEvent("r", "refused", new Uint8Array([1]));
  await assert.rejects(c.request({ case: "listRooms", value: {} }), /sendQueueLimit/);
  const refused = events.filter((e) => e.startsWith("error "));
  assert.equal(refused.length, 10 - accepted.length + 2, events.join("; "));
  assert.ok(refused.every((e) => /"code":13/.test(e)), refused.join("; "));
  advance(5000);
  const sent = last().sent.filter((k) => k.case === "input").map((k) => k.value.seq);
  assert.deepEqual(sent, accepted);
  assert.deepEqual(last().events.map(([, kind]) => kind), [], "the refused event was not sent");
  const next = BigInt(accepted.length + 1);
  assert.equal(c.sendInput("r", { case: "intent", value: new Uint8Array([9]) }), next, "room again once the queue drained");
});

test("inputs continue above the seat's last input; implausible acknowledgements are ignored; request ids are above every input number", () => {
  const { client: c } = client();
  const acks: bigint[] = [];
  c.on("state", ({ lastInputSeq }) => acks.push(lastInputSeq));
  c.join("r", "arena");
  c.connect();
  last().welcome();
  const join = last().sent.find((k) => k.case === "join");
  assert.ok(join?.case === "join" && join.value.requestId > (1n << 53n) - 1n, "a join's id is above every input seq");
  // A resumed or restored seat that applied inputs up to 500: new ones go above (the
  // room would drop lower numbers as repeats).
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena", lastInputSeq: 500n } }], 1n);
  const input = () => c.sendInput("r", { case: "intent", value: new Uint8Array([1]) });
  assert.deepEqual([input(), input()], [501n, 502n], "numbered above the seat's last input");
  const frame = (tick: bigint, lastInputSeq: bigint): ServerKind => ({ case: "state", value: { room: "r", tick, lastInputSeq } });
  last().receive([frame(1n, 501n)]);
  // Above every number given, above any input number, or beyond 64 bits' worth: none.
  last().receive([frame(2n, 600n), frame(3n, 1n << 53n), frame(4n, (1n << 64n) - 1n)]);
  assert.deepEqual(acks, [501n, 501n, 501n, 501n], "the last believable acknowledgement stays");
  assert.equal(input(), 503n);
  // Input 502 was never acknowledged: replayed after a resume.
  last().end(1006);
  advance(1000);
  last().welcome(true);
  const replayed = last().sent.filter((k) => k.case === "input").map((k) => (k.value as v1.Input).seq);
  assert.deepEqual(replayed, [502n, 503n]);
  // A join's answer beyond any input number does not move the numbering either.
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena", lastInputSeq: 1n << 53n } }], 2n);
  assert.equal(input(), 504n);
});

test("messages the pacer had not sent yet go out after the reconnect", () => {
  const c = joinedUnderTightLimits();
  for (const kind of ["a", "b", "c"]) c.sendEvent("r", kind, new Uint8Array());
  c.leave("r");
  assert.deepEqual(last().kinds(), ["join"], "the burst went to the join and the ping");
  last().end(1006);
  advance(1000);
  last().welcome(true);
  advance(2000);
  assert.deepEqual(last().kinds(), ["event", "event", "event", "leave"]);
});

test("numbered events: what the session did not take goes out again with its number, what it took does not", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  for (const kind of ["a", "b", "c"]) c.sendEvent("r", kind, new Uint8Array());
  assert.deepEqual(last().events, [], "events wait for their room's join");
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  assert.deepEqual(last().events, [[1n, "a"], [2n, "b"], [3n, "c"]]);
  // The connection dies before a pong; the resumed session had taken only "a".
  last().end(1006);
  mock.timers.tick(1000);
  last().welcome(true, 7n, 1n);
  assert.deepEqual(last().events, [[2n, "b"], [3n, "c"]]);
  // A pong acknowledges all three; "d" is not acknowledged when the session is lost.
  last().receive([{ case: "pong", value: { eventsReceived: 3n } }], 2n);
  c.sendEvent("r", "d", new Uint8Array());
  last().end(4504, "resume token unknown or expired");
  last().welcome(false, 8n);
  assert.deepEqual(last().events, [], "a new session joins again first");
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  assert.deepEqual(last().events, [[1n, "d"]], "a new session numbers from 1 again");
});

test("a message of a kind this version does not know is numbered like the others", () => {
  const { client: c, events } = client();
  c.connect();
  last().welcome();
  last().receive([{ case: undefined }, { case: "presence", value: { room: "r", member: { memberId: 1n } } }], 1n);
  last().receive([{ case: "presence", value: { room: "r", member: { memberId: 2n } } }], 3n);
  assert.ok(!events.some((e) => e.startsWith("messagesLost")), events.join("\n"));
  void c;
});

test("a listener that throws does not stop the client", () => {
  // The error is rethrown from a timer of its own, which the mocked timers never run.
  const { client: c } = client();
  c.on("connected", () => {
    throw new Error("app bug");
  });
  c.join("r", "arena");
  c.connect();
  last().welcome();
  assert.deepEqual(last().kinds(), ["join"], "the join went out anyway");
});

test("a room joined again with other declared kinds gets a new mirror; the same kinds keep it", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  const ship = (max: bigint) => ({
    kind: 1,
    name: "ship",
    fields: [{ id: 1, name: "hp", type: v1.FieldType.INT, intMin: 0n, intMax: max }],
  });
  const requestId = (last().sent.find((k) => k.case === "join")!.value as v1.JoinRoom).requestId;
  const joined = (max: bigint): ServerKind => ({ case: "joined", value: { requestId, room: "r", schema: [ship(max)] } });
  const snapshot: ServerKind = { case: "state", value: { room: "r", tick: 1n, baselineTick: 0n } };
  last().receive([joined(100n)], 1n);
  last().receive([snapshot]);
  const first = c.mirror("r");
  assert.ok(first !== undefined);
  last().receive([joined(100n)], 2n);
  assert.equal(c.mirror("r"), first, "the same kinds: kept");
  last().receive([joined(200n)], 3n);
  assert.equal(c.mirror("r"), undefined, "other kinds (same count): a new mirror, waiting for its snapshot");
});

test("close() ends the requests still waiting, and connect() twice opens one socket", async () => {
  const { client: c } = client();
  c.connect();
  c.connect();
  assert.equal(FakeSocket.opened.length, 1);
  last().welcome();
  const pending = c.request({ case: "listRooms", value: {} });
  void c.close();
  await assert.rejects(pending, RequestError);
});

/** A client whose room "r" (arena) the home relay redirected to node-b (with `seat`); the node's socket is `last()`. */
function redirectedToNodeB(seat = ""): { c: Client; home: FakeSocket } {
  const { c, home } = welcomedInArena();
  home.receive([{ case: "redirect", value: { requestId: 1n, room: "r", url: "wss://node-b.test/ws", seat } }], 1n);
  return { c, home };
}

test("a redirected join is joined on the owning node; the room's sends follow it", () => {
  const { client: c } = client();
  const redirected: string[] = [];
  c.on("redirected", (r) => redirected.push(`${r.room} ${r.url}`));
  c.join("r", "arena", { metadata: { mode: "ctf" } });
  c.connect();
  const home = last();
  home.welcome();
  home.receive([{ case: "redirect", value: { requestId: 1n, room: "r", url: "wss://node-b.test/ws", seat: "ticket-1" } }], 1n);
  assert.deepEqual(redirected, ["r wss://node-b.test/ws"]);
  assert.equal(FakeSocket.opened.length, 2, "a connection to the owner");
  const node = last();
  assert.equal(node.url.host, "node-b.test");
  const clientId = home.url.searchParams.get("client");
  assert.match(clientId ?? "", /^[0-9a-f]{16}$/);
  assert.equal(node.url.searchParams.get("client"), clientId, "one client's sessions, wherever they are");
  node.welcome(false, 9n);
  assert.deepEqual(node.kinds(), ["join"]);
  assert.equal((node.sent[0]!.value as v1.JoinRoom).seat, "ticket-1", "the redirect's seat ticket goes with the join");
  assert.equal((node.sent[0]!.value as v1.JoinRoom).create?.metadata.mode, "ctf", "and the room's options");
  c.sendInput("r", { case: "intent", value: new Uint8Array([1]) });
  advance(100);
  assert.deepEqual(node.kinds(), ["join"], "inputs wait for this session's Joined");
  node.receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  c.sendEvent("r", "chat", new Uint8Array([2]));
  advance(100);
  assert.deepEqual(node.kinds(), ["join", "input", "event"]);
  assert.deepEqual(home.kinds(), ["join"], "nothing for r goes home any more");
});

test("a redirect from wss:// to ws:// is not followed, even with allowInsecure", () => {
  // (Schemes compared as URLs compare them: in any case.)
  for (const url of ["wss://relay.test/ws", "WSS://relay.test/ws"]) {
    FakeSocket.opened = [];
    const { client: c, events } = client({ url, allowInsecure: true });
    c.join("r", "arena");
    c.connect();
    last().welcome();
    last().receive([{ case: "redirect", value: { requestId: 1n, room: "r", url: "ws://node-b.test/ws", seat: "" } }], 1n);
    assert.equal(FakeSocket.opened.length, 1, `${url}: no connection to the plain URL`);
    assert.ok(events.some((e) => e.startsWith("error") && e.includes("not following")), events.join("\n"));
    c.close();
  }
});

test("an event sent while the room's node is down goes home with the room", () => {
  const { c, home } = redirectedToNodeB("t");
  last().welcome(false, 9n);
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  last().end(1006);
  c.sendEvent("r", "chat", new Uint8Array([1]));
  // The node does not come back (each attempt refused): its rooms go home.
  const homeJoins = () => home.kinds().filter((k) => k === "join").length;
  for (let i = 0; i < 40 && homeJoins() < 2; i++) {
    advance(100);
    if (last().url.host === "node-b.test" && last().readyState === 1) last().end(1006);
  }
  assert.equal(homeJoins(), 2, "home joins r again");
  home.receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 2n);
  advance(100);
  assert.ok(home.kinds().includes("event"), `the event follows: ${home.kinds()}`);
});

test("a room its node closed is joined at home again, not on that node", () => {
  const { c, home } = redirectedToNodeB("t");
  const node = last();
  node.welcome(false, 9n);
  node.receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  node.receive([{ case: "left", value: { room: "r", reason: v1.ErrorCode.ROOM_CLOSED, message: "match over" } }], 2n);
  node.end(1001);
  c.join("r", "arena");
  advance(100);
  assert.deepEqual(home.kinds(), ["join", "join"], "the join goes home");
});

test("a node that dies: its connection continues its session on a fallback, keeping the input numbering", () => {
  const { client: c, events } = client({ fallbackUrls: ["wss://relay-2.test/ws"] });
  c.join("r", "arena");
  c.connect();
  last().welcome(false, 7n);
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  assert.equal(c.sendInput("r", { case: "intent", value: new Uint8Array([1]) }), 1n);
  advance(100);
  // The node dies: the next attempt fails, the one after goes to the fallback with the resume token.
  last().end(1006);
  advance(1000);
  last().end(1006);
  advance(1000);
  assert.equal(last().url.host, "relay-2.test");
  assert.equal(last().url.searchParams.get("resume"), "resume-me");
  // The other node continues the session (same id, resumed: false): join again, then replay.
  last().welcome(false, 7n);
  assert.deepEqual(last().kinds(), ["join"], "inputs wait for the join");
  // The room is not open yet (the dead node's lease): UNAVAILABLE, then a retry.
  last().receive([{ case: "error", value: { code: v1.ErrorCode.UNAVAILABLE, room: "r", retryAfterMs: 1000 } }], 1n);
  advance(1000);
  assert.deepEqual(last().kinds(), ["join", "join"]);
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena", lastInputSeq: 0n } }], 2n);
  advance(100);
  assert.deepEqual(last().kinds(), ["join", "join", "input"], "the unacknowledged input, once joined");
  assert.equal(c.sendInput("r", { case: "intent", value: new Uint8Array([1]) }), 2n, "numbering goes on");
  assert.ok(!events.some((e) => e.startsWith("gaveUp")));
});

test("a node whose host stops answering: after the connect timeout the next attempt tries the fallback", () => {
  const { client: c } = client({ fallbackUrls: ["wss://relay-2.test/ws"] });
  c.connect();
  last().welcome(false, 7n);
  advance(100);
  last().end(1006);
  advance(1000);
  assert.equal(last().url.host, "relay.test", "tried again once");
  // That socket never opens (a SYN dropped): the connect timeout gives it up.
  advance(5000 + 1000);
  assert.equal(last().url.host, "relay-2.test");
  assert.equal(last().url.searchParams.get("resume"), "resume-me");
});

test("a stopping node that names another: the session continues there, then on the configured URLs", () => {
  const backoff = { initialMs: 100, maxMs: 1000, maxAttempts: 10 };
  const { client: c, events } = client({ fallbackUrls: ["wss://relay-3.test/ws"], backoff });
  c.join("r", "arena");
  c.connect();
  last().welcome(false, 7n);
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  // Ignored: another scheme.
  last().receive([{ case: "goingAway", value: { url: "ws://plain.test/ws" } }], 2n);
  last().end(1001);
  advance(1000);
  assert.equal(last().url.host, "relay.test");
  last().welcome(true, 7n);
  // Only the first of a connection counts.
  last().receive([{ case: "goingAway", value: { url: "wss://relay-2.test/ws" } }], 3n);
  last().receive([{ case: "goingAway", value: { url: "wss://relay-9.test/ws" } }], 4n);
  last().end(1001);
  const disconnected = events.filter((e) => e.startsWith("disconnected")).at(-1)!;
  assert.match(disconnected, /"url":"wss:\/\/relay\.test\/ws"/, "the connection that ended, not the next");
  advance(1000);
  assert.equal(last().url.host, "relay-2.test");
  assert.equal(last().url.searchParams.get("resume"), "resume-me");
  last().welcome(false, 7n);
  assert.deepEqual(last().kinds(), ["join"], "the room joined again there");
  // That node lost too: tried again, then, unreachable, the URL after the stopped node's.
  last().end(1006);
  advance(1000);
  assert.equal(last().url.host, "relay-2.test");
  last().end(1006);
  advance(2000);
  assert.equal(last().url.host, "relay-3.test");
});

test("joining a room again right after leaving it is retried when the relay allows it", () => {
  leftAndJoinedAgain("arena");
  assert.deepEqual(last().kinds(), ["join", "leave", "join"]);
  // Within a second of its last full snapshot: RATE_LIMITED, then a retry when told.
  last().receive([{ case: "error", value: { code: v1.ErrorCode.RATE_LIMITED, room: "r", retryAfterMs: 700 } }], 2n);
  advance(600);
  assert.deepEqual(last().kinds(), ["join", "leave", "join"]);
  advance(100);
  assert.deepEqual(last().kinds(), ["join", "leave", "join", "join"]);
});

test("a join already being answered (ALREADY_MEMBER while joining) is no error: the join's answer follows", () => {
  const { client: c, events } = client();
  const joined: string[] = [];
  c.on("joined", (j) => joined.push(j.room));
  c.join("r", "arena");
  c.connect();
  last().welcome();
  last().receive([{ case: "error", value: { code: v1.ErrorCode.ALREADY_MEMBER, room: "r" } }], 1n);
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 2n);
  assert.deepEqual(joined, ["r"]);
  assert.deepEqual(events.filter((e) => e.startsWith("error")), []);
  // In a room joined, it is an error like any other.
  last().receive([{ case: "error", value: { code: v1.ErrorCode.ALREADY_MEMBER, room: "r" } }], 3n);
  assert.equal(events.filter((e) => e.startsWith("error")).length, 1);
});

/**
 * A client in room "r" on relay.test (backoff up to 10 attempts) whose connection was
 * lost and which found relay.test gone: the next attempt goes to the first fallback.
 */
function failedOverFromRelay(fallbackUrls: string[]): Client {
  const { client: c } = client({ fallbackUrls, backoff: { initialMs: 100, maxMs: 1000, maxAttempts: 10 } });
  c.join("r", "arena");
  c.connect();
  last().welcome();
  last().end(1006);
  advance(1000);
  last().end(1006); // relay.test is gone
  advance(1000);
  return c;
}

test("a redirect to a node this client failed over from is retried, not followed", () => {
  failedOverFromRelay(["wss://relay-2.test/ws"]);
  const socket = last();
  socket.welcome(false, 7n);
  socket.receive([{ case: "redirect", value: { requestId: 2n, room: "r", url: "wss://relay.test/ws" } }], 1n);
  advance(600);
  assert.equal(FakeSocket.opened.length, 3, "no connection to the dead node");
  assert.deepEqual(socket.kinds(), ["join", "join"], "joined again where it is");
});

test("a node that answered try-again-later (1013) is no dead node: a redirect there is followed", () => {
  failedOverFromRelay(["wss://relay-2.test/ws", "wss://relay-3.test/ws"]);
  relay2SaysTryAgainLaterThenRelay3Redirects();
});

/**
 * relay-2 (connected to now) answers 1013; relay-3 continues the session and
 * redirects room "r" to relay-2, which the client follows.
 */
function relay2SaysTryAgainLaterThenRelay3Redirects(): void {
  assert.equal(last().url.host, "relay-2.test");
  last().end(1013, "try again later: the session is live on another node");
  advance(1000);
  const socket = last();
  assert.equal(socket.url.host, "relay-3.test");
  socket.welcome(false, 7n);
  socket.receive([{ case: "redirect", value: { requestId: 2n, room: "r", url: "wss://relay-2.test/ws" } }], 1n);
  assert.equal(last().url.host, "relay-2.test", "followed to the node that restored the room");
}

test("a resume refused (4504) before the welcome does not send the next reconnect to another URL", () => {
  failedOverFromRelay(["wss://relay-2.test/ws"]);
  last().end(4504, "resume token unknown or expired");
  assert.equal(last().url.host, "relay-2.test", "a new session at once, where it was");
  last().welcome();
  last().end(1006);
  advance(1000);
  assert.equal(last().url.host, "relay-2.test", "the URL that served it");
});

test("a node that failed to answer once and then answered 1013 is alive again: a redirect there is followed", () => {
  failedOverFromRelay(["wss://relay-2.test/ws", "wss://relay-3.test/ws"]);
  advance(5000 + 1000); // relay-2's socket never opens: the connect timeout marks it
  assert.equal(last().url.host, "relay-3.test");
  last().end(1006);
  advance(1000);
  assert.equal(last().url.host, "relay.test");
  last().end(1006);
  advance(1000);
  relay2SaysTryAgainLaterThenRelay3Redirects();
});

test("a node connection that never had a session gives its rooms back home", () => {
  const { home } = redirectedToNodeB();
  for (let attempt = 0; attempt <= 3; attempt++) {
    last().end(1006);
    advance(1000);
  }
  advance(100);
  assert.deepEqual(home.kinds(), ["join", "join"], "r joined again through home");
});

test("a node connection that comes back to a new session there gives its rooms back home, the node not waited out", () => {
  const { home } = redirectedToNodeB("ticket-1");
  const node = last();
  node.welcome(false, 9n);
  node.receive([{ case: "joined", value: { room: "r", roomType: "arena", memberId: 7n } }], 1n);
  node.end(1006);
  advance(1000);
  const again = last();
  assert.notEqual(again, node, "the node connection reconnected");
  again.welcome(false, 10n); // the node restarted: a new session, none of the seats
  assert.deepEqual(again.kinds(), [], "r is not joined there as session 10");
  assert.equal(again.closedWith, 1000);
  advance(100);
  assert.deepEqual(home.kinds(), ["join", "join"], "r joined again through home");
  // The node is alive: a redirect there is followed at once.
  home.receive([{ case: "redirect", value: { requestId: 2n, room: "r", url: "wss://node-b.test/ws", seat: "ticket-2" } }], 2n);
  assert.equal(last().url.host, "node-b.test");
  assert.notEqual(last(), again);
});

test("a redirect to a node whose rooms came back home is waited out, not followed; hops survive the trip home", () => {
  const { client: c, events } = client();
  c.join("r", "arena");
  c.connect();
  const home = last();
  home.welcome();
  let seq = 0n;
  const redirect = (url: string) => home.receive([{ case: "redirect", value: { requestId: 1n, room: "r", url } }], ++seq);
  const giveBack = () => {
    for (let attempt = 0; attempt <= 3; attempt++) {
      last().end(1006);
      advance(1000);
    }
    advance(100);
  };
  redirect("wss://node-b.test/ws");
  giveBack();
  const opened = FakeSocket.opened.length;
  // The directory still names b (its lease has not lapsed): home joins again later.
  redirect("wss://node-b.test/ws");
  assert.equal(FakeSocket.opened.length, opened, "b not followed again");
  advance(600);
  assert.deepEqual(home.kinds(), ["join", "join", "join"], "joined again through home");
  // New dead nodes, one after another: the count goes on across the trips home.
  for (const node of ["c", "d", "e"]) {
    redirect(`wss://node-${node}.test/ws`);
    giveBack();
  }
  redirect("wss://node-f.test/ws");
  assert.match(events.at(-1)!, /^error .*redirected 4 times in a row/);
});

test("redirects in a row are followed a bounded number of times", () => {
  const { client: c, events } = client();
  c.join("r", "arena");
  c.connect();
  last().welcome();
  // Each node sends it on to the next (nodes disagreeing for longer than a lease).
  for (let hop = 1; hop <= 5; hop++) {
    const socket = last();
    if (hop > 1) socket.welcome(false, BigInt(10 + hop));
    const url = `wss://node-${hop}.test/ws`;
    socket.receive([{ case: "redirect", value: { requestId: 1n, room: "r", url } }], 1n);
  }
  assert.equal(FakeSocket.opened.length, 5, "home and four nodes");
  assert.match(events.at(-1)!, /^error .*redirected 4 times in a row/);
});

test("a quick join's room becomes one of the client's: rejoined by id, with its creation options", () => {
  const { client: c } = client();
  c.connect();
  last().welcome();
  c.quickJoin("arena", { mode: "ctf" }, { metadata: { map: "dust" } });
  c.join("mine", "relay", { metadata: { mode: "dm" }, private: true });
  advance(100);
  assert.deepEqual(last().kinds(), ["quickJoin", "join"]);
  const quick = last().sent.find((k) => k?.case === "quickJoin")!.value as v1.QuickJoin;
  assert.deepEqual([quick.roomType, quick.filters, quick.create?.metadata], ["arena", { mode: "ctf" }, { map: "dust" }]);
  last().receive([{ case: "joined", value: { requestId: quick.requestId, room: "arena-1f", roomType: "arena" } }], 1n);
  c.sendInput("arena-1f", { case: "intent", value: new Uint8Array([1]) });
  advance(100);
  assert.equal(last().kinds().at(-1), "input", "the chosen room takes inputs");

  // A new session joins it again by id; the other room with its options.
  last().end(4504, "resume token unknown or expired");
  advance(1000); // this connection presented no resume token: through the backoff
  last().welcome(false, 8n);
  const joins = last().sent.filter((k) => k?.case === "join").map((k) => k!.value as v1.JoinRoom);
  assert.deepEqual(joins.map((j) => j.room).sort(), ["arena-1f", "mine"]);
  const mine = joins.find((j) => j.room === "mine")!;
  assert.deepEqual([mine.create?.metadata, mine.create?.private], [{ mode: "dm" }, true]);
});

test("a quick join refused for now is sent again after the wait, as a new one; one refused for good is not", () => {
  const { client: c } = client();
  c.connect();
  last().welcome();
  c.quickJoin("arena");
  c.quickJoin("bad");
  advance(100);
  const quicks = () => last().sent.flatMap((k) => (k?.case === "quickJoin" ? [k.value] : []));
  const [arena, bad] = quicks();
  const refuse = (requestId: bigint, code: v1.ErrorCode) =>
    last().receive([{ case: "error", value: { requestId, code, retryAfterMs: 300 } }]);
  refuse(arena!.requestId, v1.ErrorCode.RATE_LIMITED);
  refuse(bad!.requestId, v1.ErrorCode.BAD_REQUEST);
  advance(250);
  assert.equal(quicks().length, 2, "not before the wait");
  advance(100);
  const again = quicks().slice(2);
  assert.deepEqual(again.map((q) => q.roomType), ["arena"]);
  assert.notEqual(again[0]!.requestId, arena!.requestId, "a new id: the relay ignores an id it ran");
  last().receive([{ case: "joined", value: { requestId: again[0]!.requestId, room: "arena-1f", roomType: "arena" } }], 1n);
  advance(5000);
  assert.equal(quicks().length, 3, "answered: not sent again");
});

test("a quick join answered with a redirect is joined on the owning node", () => {
  const { client: c } = client();
  c.connect();
  const home = last();
  home.welcome();
  c.quickJoin("", { mode: "ctf" });
  advance(100);
  const { requestId } = home.sent.find((k) => k?.case === "quickJoin")!.value as v1.QuickJoin;
  home.receive([{ case: "redirect", value: { requestId, room: "room-9", url: "wss://node-b.test/ws", seat: "ticket-9" } }], 1n);
  const node = last();
  assert.equal(node.url.host, "node-b.test");
  node.welcome(false, 9n);
  const join = node.sent.find((k) => k?.case === "join")!.value as v1.JoinRoom;
  assert.deepEqual([join.room, join.seat], ["room-9", "ticket-9"]);
});

test("a quick join refused ROOM_FULL is sent again at once without that room, the last time for a room of the node asked; the fourth refusal is the answer", () => {
  const { client: c, events } = client();
  c.connect();
  last().welcome();
  c.quickJoin("arena");
  const quicks = () => last().sent.flatMap((k) => (k?.case === "quickJoin" ? [k.value] : []));
  for (let refused = 1; refused <= 4; refused++) {
    advance(100);
    const quick = quicks().at(-1)!;
    last().receive([{ case: "error", value: { requestId: quick.requestId, code: v1.ErrorCode.ROOM_FULL, room: `full-${refused}` } }]);
  }
  advance(100);
  assert.deepEqual(
    quicks().map((q) => q.exclude),
    [[], ["full-1"], ["full-1", "full-2"], ["full-1", "full-2", "full-3"]],
  );
  assert.deepEqual(
    quicks().map((q) => q.localOnly),
    [false, false, false, true],
  );
  assert.equal(new Set(quicks().map((q) => q.requestId)).size, 4, "each under a new id");
  assert.deepEqual(
    events.filter((e) => e.startsWith("error")).map((e) => JSON.parse(e.slice("error ".length)).room),
    ["full-4"],
  );
});

test("a quick join redirected to a room whose node refuses it ROOM_FULL is sent again over home without that room", () => {
  const { client: c, events } = client();
  c.connect();
  const home = last();
  home.welcome();
  c.quickJoin("", { mode: "ctf" });
  advance(100);
  const first = home.sent.find((k) => k?.case === "quickJoin")!.value as v1.QuickJoin;
  home.receive([{ case: "redirect", value: { requestId: first.requestId, room: "room-9", url: "wss://node-b.test/ws", seat: "ticket-9" } }], 1n);
  const node = last();
  node.welcome(false, 9n);
  const join = node.sent.find((k) => k?.case === "join")!.value as v1.JoinRoom;
  node.receive([{ case: "error", value: { requestId: join.requestId, code: v1.ErrorCode.ROOM_FULL, room: "room-9" } }], 1n);
  advance(100);
  const quicks = home.sent.flatMap((k) => (k?.case === "quickJoin" ? [k.value] : []));
  assert.equal(quicks.length, 2);
  assert.deepEqual([quicks[1]!.exclude, quicks[1]!.filters], [["room-9"], { mode: "ctf" }]);
  const joined: string[] = [];
  c.on("joined", (j) => joined.push(j.room));
  home.receive([{ case: "joined", value: { requestId: quicks[1]!.requestId, room: "room-10" } }], 2n);
  assert.deepEqual(events.filter((e) => e.startsWith("error")), [], "the application saw no refusal");
  assert.deepEqual(joined, ["room-10"]);
});

// -- a hostile or broken relay (bench/attacks/seventh) ------------------------------------

/** The `reconnecting` events' attempt numbers. */
const attempts = (events: string[]): number[] =>
  events.filter((e) => e.startsWith("reconnecting")).map((e) => JSON.parse(e.slice("reconnecting ".length)).attempt);

test("a connection that ends within 10 s of its welcome is a failed attempt: the backoff grows, then gives up", () => {
  const { client: c, events } = client({ quietTimeoutMs: 60_000 });
  c.connect();
  // Welcomed, then closed at once, again and again (a relay that sheds after accepting).
  for (let i = 0; i < 3; i++) {
    last().welcome();
    advance(9_900);
    last().end(1011, "internal error");
    advance(1000);
  }
  last().welcome();
  last().end(1011, "internal error");
  assert.deepEqual(attempts(events), [1, 2, 3]);
  assert.match(events.at(-1)!, /^gaveUp \{"attempts":4,/);
  assert.equal(FakeSocket.opened.length, 4);
});

test("a connection that lasted 10 s after its welcome starts the backoff over", () => {
  const { client: c, events } = client({ quietTimeoutMs: 60_000 });
  c.connect();
  last().end(1006); // attempt 1
  advance(1000);
  last().welcome();
  advance(10_000);
  last().end(1006); // proved healthy: attempt 1 again
  advance(1000);
  last().end(1006); // never welcomed: attempt 2
  assert.deepEqual(attempts(events), [1, 1, 2]);
});

test("a connection on which a state frame was applied is no failed attempt, however short", () => {
  const { client: c, events } = client({ quietTimeoutMs: 60_000 });
  c.join("r", "arena");
  c.connect();
  // A rolling restart closing connection after connection, each of which played.
  for (let i = 0; i < 6; i++) {
    last().welcome();
    last().receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], BigInt(i + 1));
    last().receive([{ case: "state", value: { room: "r", tick: BigInt(i + 1) } }]);
    last().end(1001);
    advance(1000);
  }
  assert.deepEqual(attempts(events), [1, 1, 1, 1, 1, 1]);
  assert.ok(!events.some((e) => e.startsWith("gaveUp")), events.join("\n"));
});

test("close 4504: at once only after a resume the server refused; otherwise through the backoff", () => {
  const { client: c, events } = client();
  c.connect();
  // A relay that refuses every connection so (no token was presented): no tight loop.
  last().end(4504, "resume token unknown or expired");
  assert.equal(FakeSocket.opened.length, 1, "not at once");
  advance(1000);
  assert.equal(FakeSocket.opened.length, 2);
  last().welcome();
  last().end(1006);
  advance(1000);
  assert.equal(last().url.searchParams.get("resume"), "resume-me");
  last().end(4504, "resume token unknown or expired");
  assert.equal(FakeSocket.opened.length, 4, "a refused resume: a new session at once");
  assert.equal(last().url.searchParams.get("resume"), null);
  last().end(4504, "resume token unknown or expired");
  advance(1000);
  last().end(4504, "resume token unknown or expired");
  assert.deepEqual(attempts(events), [1, 2, 3], "every 4504 without a token counted, the refused resume not");
  assert.match(events.at(-1)!, /^gaveUp \{"attempts":4,/);
  assert.equal(FakeSocket.opened.length, 5);
});

test("a message over maxMessageBytes is not decoded: the connection is closed as 1009, a failed attempt", () => {
  const { client: c, events } = client({ maxMessageBytes: 1024 });
  const presence: string[] = [];
  c.on("presence", (p) => presence.push(p.member!.userId));
  c.connect();
  const socket = last();
  socket.welcome();
  socket.receive([{ case: "presence", value: { room: "r", member: { memberId: 1n, userId: "x".repeat(2000) } } }], 1n);
  assert.deepEqual(presence, [], "not decoded");
  assert.deepEqual(socket.refusedCodes, [1009], "1009 first (what a browser refuses to send)");
  assert.equal(socket.closedWith, 4000, "then 4000: the session is kept for the resume");
  assert.ok(events.some((e) => e.startsWith('disconnected {"code":1009')), events.join("\n"));
  assert.deepEqual(attempts(events), [1]);
  advance(1000);
  assert.equal(last().url.searchParams.get("resume"), "resume-me");
});

test("a state frame over maxEntitiesPerRoom is not applied: a desync of the room, an error, a resync", () => {
  const { client: c, events } = client({ maxEntitiesPerRoom: 3 });
  const desyncs: string[] = [];
  c.on("desync", ({ error }) => desyncs.push(error.desync.type));
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", schema: [{ kind: 1, name: "dot" }] } }], 1n);
  // Kind 1, n added, 0 changed, then n times: id step 1, owner 0, mask 0.
  const dots = (n: number) => new Uint8Array([1, n, 0, ...Array.from({ length: n }, () => [1, 0, 0]).flat()]);
  const snapshot = (tick: bigint, n: number): ServerKind => ({ case: "state", value: { room: "r", tick, packed: [dots(n)] } });
  last().receive([snapshot(1n, 4)]);
  assert.deepEqual(desyncs, ["entity-limit"]);
  assert.equal(c.mirror("r"), undefined, "dropped: a new mirror waits for a snapshot");
  assert.ok(events.some((e) => /^error .*"code":12,"message":"state frame of tick 1 not applied: .*more than 3 entities.*"room":"r"/.test(e)), events.join("\n"));
  const resyncs = () => last().sent.filter((k) => k.case === "request" && k.value.kind.case === "resync").length;
  assert.equal(resyncs(), 1);
  last().receive([snapshot(2n, 3)]);
  assert.equal(c.mirror("r")?.size, 3, "a snapshot within the limit is applied");
});

test("pings: at most one pong waits, the newest, and inputs are not held behind a flood of them", () => {
  const c = joinedUnderTightLimits();
  const pings: ServerKind[] = Array.from({ length: 500 }, (_, i) => ({ case: "ping", value: { nonce: BigInt(i + 1), sentTimeUs: 7n } }));
  last().receive(pings);
  c.sendInput("r", { case: "intent", value: new Uint8Array([1]) });
  last().receive(pings.slice(0, 100));
  advance(500);
  const pongs = last().sent.filter((k) => k.case === "pong").map((k) => (k.value as v1.Pong).nonce);
  assert.deepEqual(pongs, [100n], "one pong, answering the newest ping");
  assert.deepEqual(last().kinds(), ["join", "pong", "input"]);
});

test("resyncs are asked for at most once a second per room, whatever asks", () => {
  const { client: c } = client();
  const desyncs: string[] = [];
  c.on("desync", ({ error }) => desyncs.push(error.desync.type));
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r" } }], 1n);
  const resyncs = () => last().sent.filter((k) => k.case === "request" && k.value.kind.case === "resync").length;
  let tick = 0n;
  const badChecksum = (): ServerKind => ({ case: "state", value: { room: "r", tick: ++tick, checksum: 12345n } });
  const gap = (): ServerKind => ({ case: "state", value: { room: "r", tick: ++tick, baselineTick: 1n } });
  last().receive([{ case: "state", value: { room: "r", tick: ++tick } }]);
  for (let i = 0; i < 20; i++) last().receive([badChecksum()]);
  last().receive([{ case: "state", value: { room: "r", tick: ++tick } }, gap(), gap()]);
  advance(100);
  assert.equal(resyncs(), 1, "one for 20 bad checksums and a gap");
  assert.deepEqual(desyncs.slice(-2), ["checksum", "baseline-mismatch"]);
  advance(900);
  last().receive([badChecksum()]);
  advance(100);
  assert.equal(resyncs(), 2, "the next second, the next one");
});

test("GoingAway: only a connection's first is acted on; the URL list stays within 16", () => {
  const backoff = { initialMs: 10, maxMs: 10, maxAttempts: 100 };
  const fallbackUrls = Array.from({ length: 20 }, (_, i) => `wss://f${i + 1}.test/ws`);
  const { client: c } = client({ fallbackUrls, backoff });
  c.connect();
  last().welcome();
  // A flood naming ever new nodes.
  const flood: ServerKind[] = Array.from({ length: 200 }, (_, i) => ({ case: "goingAway", value: { url: `wss://node-${i}.test/ws` } }));
  last().receive(flood, 1n);
  last().end(1001);
  advance(20);
  // The URLs tried in turn: 16 in all, `url` and the first 15 fallbacks; the list being
  // full, the node named took the stopping node's place.
  const kept = fallbackUrls.slice(0, 15).map((u) => new URL(u).host);
  const tryAll = (): string[] => {
    const hosts = [last().url.host];
    for (let i = 0; i < 16; i++) {
      last().end(1006);
      advance(20);
      hosts.push(last().url.host);
    }
    return hosts;
  };
  assert.deepEqual(tryAll(), ["node-0.test", ...kept, "node-0.test"]);
  last().welcome(true);
  last().receive([{ case: "goingAway", value: { url: "wss://later.test/ws" } }], 201n);
  last().end(1001);
  advance(20);
  const hosts = tryAll();
  assert.deepEqual(hosts, ["later.test", ...kept, "later.test"]);
});

test("an earlier page's session whose first message number no session reaches: a new session", () => {
  const { client: c, events } = client({ resumeToken: "earlier" });
  const presence: bigint[] = [];
  c.on("presence", (p) => presence.push(p.member!.memberId));
  c.connect();
  last().receive([{ case: "welcome", value: { sessionId: 7n, resumeToken: "earlier", resumed: true } }]);
  last().receive([{ case: "presence", value: { room: "r", member: { memberId: 1n } } }], (1n << 53n) + 1n);
  assert.deepEqual(presence, [], "not taken");
  assert.deepEqual(last().refusedCodes, [1002]);
  assert.ok(events.some((e) => e.startsWith('disconnected {"code":1002') && e.includes("first of the session")), events.join("\n"));
  advance(1000);
  assert.equal(last().url.searchParams.get("resume"), null, "a new session");
});

test("a message number more than 65,536 above the last received: a new session, through the backoff", () => {
  const { client: c, events } = client();
  const presence: bigint[] = [];
  c.on("presence", (p) => presence.push(p.member!.memberId));
  c.connect();
  const socket = last();
  socket.welcome();
  const p = (memberId: bigint): ServerKind => ({ case: "presence", value: { room: "r", member: { memberId } } });
  socket.receive([p(1n)], 1n);
  socket.receive([p(2n)], 1025n); // 1,023 lost: a gap a server can make
  assert.ok(events.includes('messagesLost {"count":"1023"}'), events.join("\n"));
  socket.receive([p(3n), p(4n)], 1025n + 65_537n);
  assert.deepEqual(presence, [1n, 2n], "not taken");
  assert.deepEqual(socket.refusedCodes, [1002]);
  assert.equal(socket.closedWith, 1000, "no session left to keep");
  assert.ok(events.some((e) => e.startsWith('disconnected {"code":1002')), events.join("\n"));
  assert.deepEqual(attempts(events), [1]);
  advance(1000);
  assert.equal(last().url.searchParams.get("resume"), null, "a new session");
  last().welcome(false, 8n);
  last().receive([p(5n)], 1n);
  assert.deepEqual(presence, [1n, 2n, 5n], "numbered from 1 again");
});

test("welcome limits of 0 are not announced: the defaults stand; a tiny message size is taken as 1 KiB", () => {
  const { client: c, events } = client();
  c.join("r", "relay");
  c.connect();
  const limits = { maxMessageBytes: 10, messagesPerSecond: 0, messageBurst: 0, bytesPerSecond: 0, byteBurst: 0 };
  last().receive([{ case: "welcome", value: { sessionId: 1n, resumeToken: "t", limits } }]);
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  for (let i = 0; i < 20; i++) c.sendInput("r", { case: "intent", value: new Uint8Array([1]) });
  c.sendEvent("r", "chat", new Uint8Array(500));
  advance(100);
  assert.equal(last().kinds().filter((k) => k === "input").length, 20, "at the default rate");
  assert.deepEqual(last().events.map(([, kind]) => kind), ["chat"]);
  assert.ok(!events.some((e) => e.startsWith("error")), events.join("\n"));
});

test("a listener that closes the client while a message is handled leaves no timer behind", () => {
  const { client: c, events } = client({ quietTimeoutMs: 1000 });
  c.on("connected", () => void c.close());
  c.connect();
  last().welcome(); // the server does not answer the close
  advance(5000);
  assert.deepEqual(events.filter((e) => e.startsWith("disconnected")), [], events.join("\n"));
});

test("frames that stop are asked about at once: a silent relay is left within the stall timeout, an idle one kept", () => {
  const { client: c, events } = client({ quietTimeoutMs: 60_000, pingIntervalMs: 60_000, stallTimeoutMs: 500 });
  c.join("r", "arena");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  const frames = (from: number) => {
    for (let tick = from; tick < from + 20; tick++) {
      last().receive([{ case: "state", value: { room: "r", tick: BigInt(tick) } }]);
      advance(50);
    }
  };
  frames(1);
  const pings = () => last().sent.filter((k) => k.case === "ping").length;
  const before = pings();
  advance(1100);
  assert.equal(pings(), before + 1, "pinged a second after the last frame");
  advance(500);
  assert.match(events.filter((e) => e.startsWith("disconnected")).at(-1) ?? "", /state frames stopped/);

  // The next connection's room goes idle, but its relay answers the ping: kept.
  advance(1000);
  last().welcome(true);
  frames(21);
  advance(1100);
  last().receive([{ case: "pong", value: {} }]);
  const opened = FakeSocket.opened.length;
  advance(5000);
  assert.equal(FakeSocket.opened.length, opened, events.join("\n"));
  assert.equal(events.filter((e) => e.startsWith("disconnected")).length, 1, events.join("\n"));
});

test("a token refresh refused for now is sent again after the relay's wait; one refused for good is not", () => {
  const { client: c, events } = client();
  c.connect();
  last().welcome();
  c.setToken("new");
  advance(10);
  const refreshes = () => last().sent.filter((k) => k.case === "refreshToken").map((k) => k.value as v1.RefreshToken);
  const [first] = refreshes();
  assert.equal(first.token, "new");
  last().receive([{ case: "error", value: { code: v1.ErrorCode.UNAVAILABLE, requestId: first.requestId, retryAfterMs: 1500 } }], 1n);
  assert.ok(events.some((e) => e.startsWith("error")), "the refusal is reported");
  advance(1400);
  assert.equal(refreshes().length, 1);
  advance(200);
  const again = refreshes()[1];
  assert.equal(again?.token, "new");
  assert.notEqual(again.requestId, first.requestId);
  last().receive([{ case: "tokenRefreshed", value: { requestId: again.requestId } }], 2n);
  c.setToken("bad");
  advance(10);
  const bad = refreshes()[2];
  last().receive([{ case: "error", value: { code: v1.ErrorCode.FORBIDDEN, requestId: bad.requestId } }], 3n);
  advance(5000);
  assert.deepEqual(
    refreshes().map((r) => r.token),
    ["new", "new", "bad"],
  );
});

test("a refresh waiting to be sent again is dropped with its connection: the next one presents the token", () => {
  const { client: c } = client();
  c.connect();
  last().welcome();
  c.setToken("new");
  advance(10);
  const first = last().sent.find((k) => k.case === "refreshToken")?.value as v1.RefreshToken;
  last().receive([{ case: "error", value: { code: v1.ErrorCode.UNAVAILABLE, requestId: first.requestId, retryAfterMs: 1000 } }], 1n);
  const dropped = last();
  dropped.end(1006);
  advance(3000);
  assert.equal(dropped.sent.filter((k) => k.case === "refreshToken").length, 1);
  const next = last();
  assert.notEqual(next, dropped, "reconnected");
  assert.ok(next.protocols.some((p) => p.includes("new")), `the token in the subprotocols: ${next.protocols}`);
  assert.equal(next.sent.filter((k) => k.case === "refreshToken").length, 0);
});

test("roomOwner follows Joined.owner, then presence OWNER; undefined once left", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  assert.equal(c.roomOwner("r"), undefined, "not answered yet");
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay", memberId: 7n, owner: 3n } }], 1n);
  assert.equal(c.roomOwner("r"), 3n);
  last().receive([{ case: "presence", value: { room: "r", member: { memberId: 7n }, change: v1.PresenceChange.OWNER } }], 2n);
  assert.equal(c.roomOwner("r"), 7n);
  c.leave("r");
  assert.equal(c.roomOwner("r"), undefined);
});

test("roomListing follows Joined's metadata and lock, then RoomUpdated; undefined once left", () => {
  const { client: c } = client();
  const told: string[] = [];
  c.on("roomUpdated", (u) => told.push(u.room));
  c.join("r", "relay");
  c.connect();
  last().welcome();
  assert.equal(c.roomListing("r"), undefined, "not answered yet");
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay", memberId: 7n, metadata: { mode: "ctf" } } }], 1n);
  const listing = () => {
    const l = c.roomListing("r");
    return l && { room: l.room, metadata: { ...l.metadata }, locked: l.locked };
  };
  assert.deepEqual(listing(), { room: "r", metadata: { mode: "ctf" }, locked: false });
  last().receive([{ case: "roomUpdated", value: { room: "r", metadata: { mode: "dm" }, locked: true } }], 2n);
  assert.deepEqual(listing(), { room: "r", metadata: { mode: "dm" }, locked: true });
  c.roomListing("r")!.metadata["mode"] = "changed by the game";
  assert.deepEqual(listing(), { room: "r", metadata: { mode: "dm" }, locked: true }, "a copy");
  // Of a room this client is not in: told, kept nowhere.
  last().receive([{ case: "roomUpdated", value: { room: "other", metadata: { mode: "dm" } } }], 3n);
  assert.equal(c.roomListing("other"), undefined);
  assert.deepEqual(told, ["r", "other"]);
  c.leave("r");
  assert.equal(c.roomListing("r"), undefined);
});

test("a Joined sent again after a lossy resume tells the owner and listing and sends nothing again; a new session forgets them", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  const joinId = (last().sent.find((k) => k.case === "join")!.value as v1.JoinRoom).requestId;
  last().receive([{ case: "joined", value: { requestId: joinId, room: "r", roomType: "relay", memberId: 7n, owner: 3n } }], 1n);
  c.sendInput("r", { case: "intent", value: new Uint8Array([1]) });
  mock.timers.tick(100);
  const inputs = () => last().sent.filter((k) => k.case === "input").length;
  const before = inputs();
  assert.equal(before, 1);
  last().receive([{ case: "joined", value: { requestId: 0n, room: "r", roomType: "relay", memberId: 7n, owner: 9n, metadata: { mode: "b" } } }], 5n);
  mock.timers.tick(100);
  assert.equal(c.roomOwner("r"), 9n);
  assert.deepEqual({ ...c.roomListing("r")?.metadata }, { mode: "b" });
  assert.equal(inputs(), before, "the input is not sent again");
  last().end(1006);
  mock.timers.tick(1000);
  last().welcome(false);
  assert.equal(c.roomOwner("r"), undefined, "a new session's join is not answered yet");
  assert.equal(c.roomListing("r"), undefined);
});

test("a second Welcome on one connection drops it for a new session", () => {
  const { client: c } = client();
  c.connect();
  const first = last();
  first.welcome();
  first.welcome();
  // 1002 as a browser allows it: 1000, the session ended.
  assert.deepEqual([first.refusedCodes, first.closedWith], [[1002], 1000]);
  mock.timers.tick(1000);
  assert.notEqual(last(), first, "reconnected");
  assert.equal(last().url.searchParams.get("resume"), null, "as a new session");
});

test("a relay of another protocol version is left at once, and not tried again", () => {
  const { client: c, events } = client();
  c.connect();
  const first = last();
  first.receive([{ case: "welcome", value: { sessionId: 7n, resumeToken: "t", protocolVersion: PROTOCOL_VERSION - 1 } }]);
  assert.equal(first.closedWith, 1000);
  mock.timers.tick(5000);
  assert.equal(last(), first, "not reconnected");
  const gaveUp = events.filter((e) => e.startsWith("gaveUp"));
  assert.equal(gaveUp.length, 1, events.join("\n"));
  assert.ok(gaveUp[0]!.includes("protocol version 1"), gaveUp[0]);
});

test("a room left and joined again while offline is left, then joined", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { requestId: 1n, room: "r", roomType: "relay" } }], 1n);
  last().end(1006);
  c.leave("r");
  c.join("r", "relay");
  mock.timers.tick(1000);
  last().welcome(true);
  advance(100);
  assert.deepEqual(last().kinds(), ["leave", "join"]);
});

test("a join refused for now again and again waits once: one join each time, not one more per refusal", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  const joins = () => last().sent.filter((k) => k.case === "join") as { value: v1.JoinRoom }[];
  const refuse = () => {
    const requestId = joins().at(-1)!.value.requestId;
    last().receive([{ case: "error", value: { code: v1.ErrorCode.UNAVAILABLE, room: "r", requestId, retryAfterMs: 500 } }]);
  };
  refuse();
  refuse(); // the same refusal twice (a relay answering a join sent twice)
  advance(600);
  assert.equal(joins().length, 2, "one join again");
  refuse();
  advance(600);
  assert.equal(joins().length, 3);
  // Offline, the wait is dropped: the welcome joins the room.
  refuse();
  last().end(1006);
  mock.timers.tick(1000);
  last().welcome(false);
  advance(600);
  assert.equal(joins().length, 1, "the welcome's join only");
});

test("close() then connect(): rooms that lived on another node are joined again", async () => {
  const { c, home } = welcomedInArena();
  redirectToNodeB(home);
  const node = last();
  node.welcome(false, 9n);
  node.receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  const closed = c.close();
  home.end(1000);
  node.end(1000);
  await closed;
  c.connect();
  last().welcome();
  assert.equal(last().url.host, "relay.test");
  assert.deepEqual(last().kinds(), ["join"]);
  assert.equal((last().sent[0]!.value as v1.JoinRoom).room, "r");
});

test("a Joined answering a join made before the room was left is not taken for the new join's", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  const joins = () => last().sent.filter((k) => k.case === "join").map((k) => (k.value as v1.JoinRoom).requestId);
  const [first] = joins();
  c.leave("r");
  c.join("r", "relay");
  advance(100);
  const second = joins().at(-1)!;
  assert.ok(second > first!);
  // The server answers the first join before the leave, then refuses the second for now.
  last().receive([{ case: "joined", value: { requestId: first!, room: "r", roomType: "relay", owner: 7n } }], 1n);
  assert.equal(c.roomOwner("r"), undefined, "not joined by that answer");
  last().receive([{ case: "error", value: { code: v1.ErrorCode.RATE_LIMITED, room: "r", requestId: second, retryAfterMs: 900 } }], 2n);
  advance(1000);
  assert.equal(joins().length, 3, "joined again once the wait is over");
});

test("giving up on home closes the connections to other nodes", async () => {
  const { c, home, events } = welcomedInArena();
  redirectToNodeB(home);
  const node = last();
  node.welcome(false, 9n);
  node.receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  home.end(4002, "replaced");
  assert.match(events.at(-1)!, /^gaveUp /);
  await Promise.resolve(); // (the close follows what the pacer held)
  assert.equal(node.closedWith, 1000, "the node connection was left open");
  void c.close();
});

test("a request about a room on another node goes to that node; others go home", () => {
  const { c, home } = welcomedInArena();
  redirectToNodeB(home);
  const node = last();
  node.welcome(false, 9n);
  node.receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  void c.request({ case: "updateRoom", value: { room: "r", metadata: { mode: "ctf" } } }).catch(() => {});
  void c.request({ case: "resync", value: { room: "r" } }).catch(() => {});
  void c.request({ case: "listRooms", value: {} }).catch(() => {});
  advance(100);
  const requests = (socket: FakeSocket) => socket.sent.filter((k) => k.case === "request").map((k) => (k.value as v1.Request).kind.case);
  assert.deepEqual(requests(node), ["updateRoom", "resync"]);
  assert.deepEqual(requests(home), ["listRooms"]);
  void c.close();
});

test("a join's wait does not outlive the room: left and joined again, one join goes out", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  const joins = () => last().sent.filter((k) => k.case === "join") as { value: v1.JoinRoom }[];
  const requestId = joins()[0]!.value.requestId;
  last().receive([{ case: "error", value: { code: v1.ErrorCode.UNAVAILABLE, room: "r", requestId, retryAfterMs: 500 } }]);
  c.leave("r");
  c.join("r", "relay");
  advance(100);
  assert.equal(joins().length, 2, "the new join");
  advance(1000);
  assert.equal(joins().length, 2, "and no other when the old wait is over");
});

test("what a closed client's socket still delivers is not acted on (a redirect opens nothing)", async () => {
  const { c, home } = welcomedInArena();
  const closed = c.close();
  redirectToNodeB(home);
  assert.equal(last(), home, "no node connection");
  home.end(1000);
  await closed;
});

test("a leave and a quick join the lost connection carried unanswered go again after the resume; NOT_A_MEMBER answers the leave", () => {
  const { client: c, events } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  c.leave("r");
  c.quickJoin("arena");
  advance(100);
  const sent = (socket: FakeSocket) =>
    socket.sent.flatMap((k) => (k.case === "leave" || k.case === "quickJoin" ? [`${k.case} ${k.value.requestId}`] : []));
  const first = sent(last());
  assert.equal(first.length, 2);
  last().end(1006);
  advance(1000);
  last().welcome(true);
  advance(100);
  assert.deepEqual(sent(last()), first, "the same leave and quick join, with their request ids");
  const leaveId = BigInt(first.find((s) => s.startsWith("leave"))!.split(" ")[1]!);
  last().receive([{ case: "error", value: { code: v1.ErrorCode.NOT_A_MEMBER, room: "r", requestId: leaveId } }], 2n);
  assert.deepEqual(events.filter((e) => e.startsWith("error")), [], "the leave's answer, not an error");
  // A new session runs the quick join again; it holds no seat to leave.
  last().end(1006);
  advance(1000);
  last().welcome(false, 9n);
  advance(100);
  assert.deepEqual(last().kinds(), ["quickJoin"]);
});

test("a left for a membership that ended while the room was left and joined again does not undo the join that waits", () => {
  const c = leftAndJoinedAgain("relay");
  const join = last().sent.filter((k) => k.case === "join").at(-1)!;
  last().receive([{ case: "left", value: { room: "r", reason: v1.ErrorCode.ROOM_CLOSED } }], 2n);
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay", requestId: join.value.requestId } }], 3n);
  assert.notEqual(c.sendInput("r", { case: "intent", value: new Uint8Array([1]) }), undefined, "the room is joined");
});

test("NOT_A_MEMBER for a joined room is told as its lost left, and the room is forgotten", () => {
  const { client: c } = client();
  const left: string[] = [];
  c.on("left", (l) => left.push(`${l.room} ${l.reason}`));
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  const seq = c.sendInput("r", { case: "intent", value: new Uint8Array([1]) })!;
  last().receive([{ case: "error", value: { code: v1.ErrorCode.NOT_A_MEMBER, room: "r", requestId: seq } }], 2n);
  assert.deepEqual(left, [`r ${v1.ErrorCode.NOT_A_MEMBER}`]);
  assert.equal(c.sendInput("r", { case: "intent", value: new Uint8Array([1]) }), undefined);
});

test("a join waiting to be retried is not sent again once a reconnect joined it", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "error", value: { code: v1.ErrorCode.UNAVAILABLE, room: "r", retryAfterMs: 2000 } }], 1n);
  last().end(1006);
  advance(1000);
  last().welcome();
  advance(3000);
  assert.deepEqual(last().kinds(), ["join"], "joined once by the new connection");
});

test("offline, events beyond bufferLimit are refused; a leave handed over before them still goes out", () => {
  const { client: c, events } = client({ bufferLimit: 4 });
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay" } }], 1n);
  last().end(1006);
  c.sendEvent("r", "before", new Uint8Array());
  c.leave("r");
  for (let i = 0; i < 10; i++) c.sendEvent("r", "flood", new Uint8Array());
  assert.ok(events.some((e) => e.startsWith("error") && e.includes("bufferLimit")), "refused, and said so");
  advance(1000);
  last().welcome(true);
  advance(100);
  assert.ok(last().kinds().includes("leave"));
  assert.equal(last().kinds().filter((k) => k === "event").length, 3, "the events that fitted");
});

test("a leave followed by a join of the room on the lost connection is not sent again: it would undo the join", () => {
  leftAndJoinedAgain("relay");
  assert.deepEqual(last().kinds(), ["join", "leave", "join"]);
  last().end(1006);
  advance(1000);
  last().welcome(true);
  advance(100);
  assert.deepEqual(last().kinds(), ["join"], "joined again, not left again");
});

test("close() sends what the pacer holds before the close frame, within a second", async () => {
  const c = joinedUnderTightLimits();
  for (let i = 0; i < 6; i++) c.sendInput("r", { case: "intent", value: new Uint8Array([i]) });
  const socket = last();
  const closed = c.close();
  assert.equal(socket.closedWith, undefined, "not closed while inputs wait");
  advance(1000);
  await Promise.resolve();
  assert.equal(socket.kinds().filter((k) => k === "input").length, 6, "every input went first");
  assert.equal(socket.closedWith, 1000);
  socket.end(1000);
  await closed;
});

test("a room the server closes stays readable as its last state until it is joined again", () => {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay", memberId: 7n } }], 1n);
  last().receive([{ case: "state", value: { room: "r", tick: 3n, added: [{ id: 7n }, { id: 8n }] } }]);
  last().receive([{ case: "left", value: { room: "r", reason: v1.ErrorCode.ROOM_CLOSED, message: "match over" } }], 2n);
  assert.equal(c.mirror("r")?.size, 2, "the room's last state, after its left");
  c.join("r", "relay");
  assert.equal(c.mirror("r")?.size, 2, "still, while the join waits for its answer (as the Rust client)");
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay", memberId: 9n } }], 3n);
  assert.equal(c.mirror("r"), undefined, "joined again: a new mirror, waiting for its snapshot");
});

/** A client whose room "r" held entity 7, resumed after a dropped connection (no snapshot yet). */
function resumedHoldingOneEntity(): Client {
  const { client: c } = client();
  c.join("r", "relay");
  c.connect();
  last().welcome();
  last().receive([{ case: "joined", value: { room: "r", roomType: "relay", memberId: 7n } }], 1n);
  last().receive([{ case: "state", value: { room: "r", tick: 3n, added: [{ id: 7n }] } }]);
  last().end(1006);
  mock.timers.tick(1000);
  last().welcome(true);
  return c;
}

test("after a reconnect a room reads as it was until the snapshot comes, and so if it closes first", () => {
  const c = resumedHoldingOneEntity();
  assert.equal(c.mirror("r")?.size, 1, "what it had, until the snapshot");
  last().receive([{ case: "left", value: { room: "r", reason: v1.ErrorCode.ROOM_CLOSED, message: "match over" } }], 2n);
  assert.equal(c.mirror("r")?.size, 1, "closed before the snapshot: what it had");
});

test("after a reconnect the snapshot replaces what the room read as", () => {
  const c = resumedHoldingOneEntity();
  last().receive([{ case: "state", value: { room: "r", tick: 9n, added: [{ id: 8n }, { id: 9n }] } }]);
  assert.equal(c.mirror("r")?.size, 2);
  assert.equal(c.mirror("r")?.tick, 9n);
});

test("a redirected room the server closes stays readable as its last state", () => {
  const { c } = redirectedToNodeB("t");
  const node = last();
  node.welcome(false, 9n);
  node.receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  node.receive([{ case: "state", value: { room: "r", tick: 3n, added: [{ id: 7n }, { id: 8n }] } }]);
  assert.equal(c.mirror("r")?.size, 2, "read through the home client while joined");
  node.receive([{ case: "left", value: { room: "r", reason: v1.ErrorCode.ROOM_CLOSED, message: "match over" } }], 2n);
  assert.equal(c.mirror("r")?.size, 2, "the room's last state, after its left (README: until it is joined again)");
});

test("a redirected room the server closed stays readable while a join of it waits", () => {
  const { c, home } = redirectedToNodeB("t");
  const node = last();
  node.welcome(false, 9n);
  node.receive([{ case: "joined", value: { room: "r", roomType: "arena" } }], 1n);
  node.receive([{ case: "state", value: { room: "r", tick: 3n, added: [{ id: 7n }, { id: 8n }] } }]);
  node.receive([{ case: "left", value: { room: "r", reason: v1.ErrorCode.ROOM_CLOSED, message: "match over" } }], 2n);
  assert.equal(c.mirror("r")?.size, 2, "the room's last state, after its left");
  c.join("r", "arena");
  assert.equal(c.mirror("r")?.size, 2, "while the join waits at home");
  // The home relay redirects the join to node B again: the join now waits there.
  home.receive([{ case: "redirect", value: { requestId: 2n, room: "r", url: "wss://node-b.test/ws", seat: "u" } }], 2n);
  assert.equal(c.mirror("r")?.size, 2, "still, while the join waits on node B (README: until it is joined again)");
});

test("dropConnection closes with 4000 (the session kept) and reports a lost connection (1006), not 4000's meaning", () => {
  const { client: c, events } = client();
  c.connect();
  const socket = last();
  socket.welcome();
  c.dropConnection();
  assert.equal(socket.closedWith, 4000);
  assert.ok(events.some((e) => e.startsWith('disconnected {"code":1006') && e.includes('"willReconnect":true')), events.join("\n"));
});
