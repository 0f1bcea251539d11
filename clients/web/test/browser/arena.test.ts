/**
 * The browser client in a real Chromium against the real relay: the demo page plays
 * (verified state, prediction, interpolation), a dropped connection resumes, and the
 * library's requests, events and errors work from a page.
 */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import type { Page } from "playwright-core";
import { launchChromium, startProxy, startRelay, type Relay } from "./relay.js";

/** Where the demo's screenshot is saved (a test artifact, not checked in). */
export const SCREENSHOT = "build/artifacts/demo.png";

/** Every test ends within a minute, or fails instead of hanging the suite. */
const LIMIT = { timeout: 60_000 };

type Snapshot = {
  status: string;
  sessionId: string | undefined;
  stats: { frames: number; checksumsVerified: number; desyncs: number; reconnects: number; resumes: number };
  tick: string;
  lastSeqSent: string;
  lastSeqApplied: string | undefined;
  predicted: { x: number; y: number } | undefined;
  authoritative: { x: number; y: number } | undefined;
  others: number;
  avatars: number;
};

let relay: Relay;
let chromium: Awaited<ReturnType<typeof launchChromium>>;

/** Relay rooms declare a card kind seen by its owner only (hidden state). */
const HIDDEN_CARDS = `
[[room_types.relay.kinds]]
kind = 2
name = "card"
owner_only = true
fields = [{ id = 1, name = "rank", type = "int", min = 1, max = 13 }]
`;

before(async () => {
  relay = await startRelay(HIDDEN_CARDS);
  chromium = await launchChromium();
});

after(async () => {
  await chromium?.close();
  await relay?.stop();
});

const snapshot = (page: Page): Promise<Snapshot> =>
  page.evaluate(() => (globalThis as unknown as { demo: { snapshot(): Snapshot } }).demo.snapshot());

/** Polls the page's snapshot until `done` holds (10 s at most). */
async function until(page: Page, what: string, done: (s: Snapshot) => boolean): Promise<Snapshot> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const s = await snapshot(page);
    if (done(s)) return s;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function openDemo(room: string, query = "", origin = relay.origin): Promise<Page> {
  const page = await chromium.context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${origin}/demo/?room=${room}${query}`);
  await until(page, "the demo syncs", (s) => s.stats.checksumsVerified >= 10 && s.predicted !== undefined);
  assert.deepEqual(errors, []);
  return page;
}

test("the demo page plays: verified state, a predicted avatar, everyone else interpolated", LIMIT, async (t) => {
  const page = await openDemo("play");
  const start = await snapshot(page);
  assert.equal(start.status, "connected");
  // The arena's 16 NPCs, interpolated; this page's own avatar is drawn predicted.
  await until(page, "NPCs interpolated", (s) => s.others === 16);

  await page.keyboard.down("ArrowRight");
  // Prediction moves the avatar before the server's frames do.
  const early = await until(page, "the prediction moves at once", (s) => s.predicted!.x > start.predicted!.x + 0.5);
  assert.ok(early.predicted!.x >= early.authoritative!.x, `${JSON.stringify(early)}`);
  await page.waitForTimeout(1000);
  await page.keyboard.up("ArrowRight");
  // The server moved it too (10 units per second), and prediction and server agree.
  const settled = await until(
    page,
    "prediction reconciled with the server",
    (s) => Math.abs(s.predicted!.x - s.authoritative!.x) < 0.05 && s.authoritative!.x > start.authoritative!.x + 5,
  );
  assert.ok(Math.abs(settled.predicted!.y - settled.authoritative!.y) < 0.05);

  // A second player in the room appears, interpolated, on the first page.
  const other = await openDemo("play");
  await until(page, "the other avatar appears", (s) => s.avatars === 2 && s.others === 17);
  mkdirSync("build/artifacts", { recursive: true });
  await page.screenshot({ path: SCREENSHOT });
  // What the demo receives, over three seconds (two players and 16 NPCs, 30 Hz).
  const [from, fromAt] = [await page.evaluate(() => (globalThis as any).demo.client.stats.bytesIn as number), Date.now()];
  await page.waitForTimeout(3000);
  const to = await page.evaluate(() => (globalThis as any).demo.client.stats.bytesIn as number);
  t.diagnostic(`the demo receives ${Math.round(((to - from) * 1000) / (Date.now() - fromAt))} bytes/s; screenshot ${SCREENSHOT}`);
  // A player who quits (closing its client: a page closed without it keeps its seat
  // for the resume grace period, for a reload) leaves at once.
  await other.evaluate(() => (globalThis as unknown as { demo: { client: { close(): Promise<void> } } }).demo.client.close());
  await other.close();
  await until(page, "the other avatar leaves", (s) => s.avatars === 1 && s.others === 16);
  const end = await until(page, "100 checksums verified", (s) => s.stats.checksumsVerified >= 100);
  assert.equal(end.stats.desyncs, 0);
  await page.close();
});

test("a connection the network cuts resumes without a desync; inputs in flight are replayed and acknowledged", LIMIT, async () => {
  const proxy = await startProxy(new URL(relay.origin));
  try {
    const page = await openDemo("cut", `&url=wss://127.0.0.1:${proxy.port}/ws`);
    const before = await snapshot(page);
    await page.keyboard.down("ArrowDown");
    await page.waitForTimeout(300);
    // Inputs in flight when the connection dies are replayed after the resume.
    proxy.cut();
    await until(page, "the session resumes", (s) => s.stats.resumes === 1 && s.status === "connected (resumed)");
    await page.waitForTimeout(300);
    await page.keyboard.up("ArrowDown");
    // The page sends an input every tick: every input sent until now is applied soon.
    const sent = BigInt((await snapshot(page)).lastSeqSent);
    const settled = await until(
      page,
      "every input applied, prediction agreeing with the server",
      (s) => BigInt(s.lastSeqApplied ?? 0) >= sent && Math.abs(s.predicted!.y - s.authoritative!.y) < 0.05,
    );
    assert.equal(settled.sessionId, before.sessionId, "the same member");
    assert.ok(settled.authoritative!.y > before.authoritative!.y + 3, JSON.stringify(settled));
    assert.equal(settled.stats.desyncs, 0);
    assert.equal(settled.avatars, 1, "the seat was kept, not taken twice");
    await page.close();
  } finally {
    await proxy.close();
  }
});

/** A JWT signed with HS256 (the relay's `[auth]` shared secret). */
function hs256(claims: object, secret: string): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const signed = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${signed}.${createHmac("sha256", secret).update(signed).digest("base64url")}`;
}

test("a refused origin, a bad token and a refused join reach the page typed", LIMIT, async () => {
  const strict = await startRelay('[auth]\nmode = "jwt"\n[origins]\nallowed = ["https://localhost:*"]\n', {
    TICKRELAY_JWT_SECRET: "a development secret of 32 bytes!",
  });
  try {
    const gaveUp = async (page: Page) => until(page, "the client gives up", (s) => s.status.startsWith("gave up"));
    const page = await chromium.context.newPage();
    await page.goto(`${strict.origin}/demo/?room=refused`);
    assert.match((await gaveUp(page)).status, /closed by the server with 4001: origin not allowed: https:\/\/127\.0\.0\.1:/);
    await page.goto(`${strict.origin.replace("127.0.0.1", "localhost")}/demo/?room=refused&token=not-a-jwt`);
    assert.match((await gaveUp(page)).status, /closed by the server with 4000: authentication failed/);
    // A token for other rooms: the join's refusal is shown, not an empty arena.
    const token = hs256({ sub: "ada", exp: Math.floor(Date.now() / 1000) + 600, rooms: ["demo*"] }, "a development secret of 32 bytes!");
    await page.goto(`${strict.origin.replace("127.0.0.1", "localhost")}/demo/?room=refused&token=${token}`);
    await until(page, "the join is refused", (s) => /^refused: FORBIDDEN: /.test(s.status));
    await page.close();
  } finally {
    await strict.stop();
  }
});

test("a dropped connection resumes the same session with nothing lost", LIMIT, async () => {
  const page = await openDemo("resume");
  const before = await snapshot(page);
  await page.evaluate(() => (globalThis as unknown as { demo: { client: { dropConnection(): void } } }).demo.client.dropConnection());
  const after = await until(page, "the session resumes", (s) => s.stats.resumes === 1 && s.status === "connected (resumed)");
  assert.equal(after.sessionId, before.sessionId, "the same member");
  const later = await until(page, "state flows again", (s) => s.stats.checksumsVerified > after.stats.checksumsVerified + 10);
  assert.equal(later.stats.desyncs, 0);
  assert.equal(later.avatars, 1, "the seat was kept, not taken twice");
  await page.close();
});

test("a reloaded page continues its session: the same member, its avatar where it was", LIMIT, async () => {
  const page = await openDemo("reload");
  await page.keyboard.down("ArrowRight");
  await page.waitForTimeout(500);
  await page.keyboard.up("ArrowRight");
  // Standing still: inputs sent after the key went up applied (the avatar keeps its
  // last intent's speed until the next input comes).
  await page.waitForTimeout(200);
  const sent = BigInt((await snapshot(page)).lastSeqSent);
  const before = await until(page, "the moves applied", (s) => BigInt(s.lastSeqApplied ?? 0) >= sent);
  await page.reload();
  const after = await until(page, "the reloaded page syncs", (s) => s.stats.checksumsVerified >= 10 && s.authoritative !== undefined);
  assert.equal(after.status, "connected (resumed)");
  assert.equal(after.sessionId, before.sessionId, "the same member");
  assert.equal(after.avatars, 1, "the seat was kept, not taken twice");
  assert.deepEqual(after.authoritative, before.authoritative, "the avatar where the earlier page left it");
  assert.ok(BigInt(after.lastSeqApplied ?? 0) >= BigInt(before.lastSeqApplied ?? 0), "inputs numbered on");
  assert.equal(after.stats.desyncs, 0);
  await page.close();
});

test("the library in a page: requests, events between clients, typed errors", LIMIT, async () => {
  const page = await chromium.context.newPage();
  await page.goto(`${relay.origin}/demo/?room=library`);
  const result = await page.evaluate(async () => {
    type Lib = typeof import("../../src/index.js");
    const { Client, RequestError } = (globalThis as unknown as { tickrelay: Lib }).tickrelay;
    const url = `wss://${location.host}/ws`;
    const next = <T>(client: InstanceType<Lib["Client"]>, event: "joined" | "event" | "error" | "connected") =>
      new Promise<T>((resolve) => {
        const off = client.on(event, (e) => (off(), resolve(e as T)));
      });
    const a = new Client({ url });
    const b = new Client({ url });
    const joinedA = next<{ room: string }>(a, "joined");
    const joinedB = next<{ room: string }>(b, "joined");
    a.join("chat", "relay");
    b.join("chat", "relay");
    a.connect();
    b.connect();
    await Promise.all([joinedA, joinedB]);
    const received = next<{ kind: string; payload: Uint8Array; sender: bigint }>(b, "event");
    a.sendEvent("chat", "hello", new TextEncoder().encode("hi from a"));
    const event = await received;
    const list = await a.request({ case: "listRooms", value: { limit: 10 } });
    const rooms = list.kind.case === "rooms" ? list.kind.value.rooms.map((r) => [r.room, r.members]) : [];
    const refused = next<{ code: number; room: string }>(a, "error");
    a.join("", "relay");
    const error = await refused;
    let resyncError = "";
    try {
      await a.request({ case: "resync", value: { room: "not-joined" } });
    } catch (e) {
      resyncError = e instanceof RequestError ? `RequestError ${e.error?.code}` : String(e);
    }
    const fromA = event.sender === a.sessionId; // (a closed client has no session)
    await Promise.all([a.close(), b.close()]);
    return {
      event: { kind: event.kind, text: new TextDecoder().decode(event.payload), fromA },
      rooms,
      error: { code: error.code, room: error.room },
      resyncError,
    };
  });
  assert.deepEqual(result.event, { kind: "hello", text: "hi from a", fromA: true });
  assert.ok(
    result.rooms.some(([room, members]) => room === "chat" && members === 2),
    JSON.stringify(result.rooms, (_, v) => (typeof v === "bigint" ? v.toString() : v)),
  );
  assert.deepEqual(result.error, { code: 1, room: "" }); // BAD_REQUEST
  assert.match(result.resyncError, /^RequestError \d+$/);
  await page.close();
});

test("hidden state in a page: each client's verified mirror holds its own card, never the other's", LIMIT, async () => {
  const page = await chromium.context.newPage();
  await page.goto(`${relay.origin}/demo/?room=library`);
  const result = await page.evaluate(async () => {
    type Lib = typeof import("../../src/index.js");
    const { Client } = (globalThis as unknown as { tickrelay: Lib }).tickrelay;
    const url = `wss://${location.host}/ws`;
    const clients = [new Client({ url }), new Client({ url })];
    // Random 64-bit ids, as PROTOCOL.md advises for hidden entities.
    const ids = clients.map(() => crypto.getRandomValues(new BigUint64Array(1))[0]! | 1n);
    const joined = clients.map(
      (c) => new Promise<void>((resolve) => {
        const off = c.on("joined", () => (off(), resolve()));
      }),
    );
    for (const c of clients) {
      c.join("table", "relay");
      c.connect();
    }
    await Promise.all(joined);
    clients.forEach((c, i) =>
      c.sendInput("table", {
        case: "writes",
        value: { create: [{ id: ids[i]!, kind: 2, fields: [{ id: 1, value: { case: "int", value: BigInt(i + 1) } }] }] },
      }),
    );
    const held = (c: InstanceType<Lib["Client"]>) => [...(c.mirror("table")?.entities() ?? [])].map((e) => e.id);
    const deadline = Date.now() + 10_000;
    while (!clients.every((c, i) => held(c).includes(ids[i]!) && (c.mirror("table")?.checksumsVerified ?? 0) >= 3)) {
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const result = clients.map((c, i) => ({
      own: held(c).includes(ids[i]!),
      other: held(c).includes(ids[1 - i]!),
      size: held(c).length,
      verified: c.mirror("table")?.checksumsVerified ?? 0,
      desyncs: c.stats.desyncs,
    }));
    await Promise.all(clients.map((c) => c.close()));
    return result;
  });
  for (const client of result) {
    assert.deepEqual({ ...client, verified: client.verified >= 3 }, { own: true, other: false, size: 1, verified: true, desyncs: 0 });
  }
  await page.close();
});
