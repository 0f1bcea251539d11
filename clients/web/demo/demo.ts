/**
 * The arena demo: served by the relay at `/demo/` (`tickrelay --demo`), it joins an
 * arena room over `wss://` on the page's own host, steers this client's avatar with
 * the keyboard (predicted, reconciled with the server's state), draws everyone else
 * interpolated, and shows the connection's health in a HUD.
 *
 * The page also exposes `window.tickrelay` (the library) and `window.demo` (this
 * page's client and a snapshot of its state) for the browser tests.
 */

import * as tickrelay from "../src/index.js";
import { Client, InterpolationBuffer, Predictor, numericFields, type StateMirror } from "../src/index.js";

/** Field ids and kinds of the arena room type (`src/engine/simulation/arena.rs`). */
const FIELD_X = 1;
const FIELD_Y = 2;
const KIND_AVATAR = 1;
const INTENT_MAX = 127;

const params = new URLSearchParams(location.search);
const room = params.get("room") ?? "demo";
const delayMs = Number(params.get("delay") ?? 100);
/** Units per second at full intent: the arena's `avatar_speed` (10 by default). */
const speed = Number(params.get("speed") ?? 10);
const secure = location.protocol === "https:";

// The relay that served this page, unless `?url=` names another.
const url = params.get("url") ?? `${secure ? "wss" : "ws"}://${location.host}/ws`;
/**
 * Where this tab keeps its session's resume token when it goes away, so that a reload
 * continues the session. Taken out at once: a tab duplicated later (browsers copy
 * `sessionStorage` into it) starts a session of its own instead of taking this one's.
 */
const RESUME_KEY = `tickrelay.resume ${url} ${room}`;
const stored = sessionStorage.getItem(RESUME_KEY) ?? undefined;
sessionStorage.removeItem(RESUME_KEY);

const client = new Client({
  url,
  token: params.get("token") ?? undefined,
  // The page came over plain HTTP from the relay itself (`--insecure-plain`).
  allowInsecure: !secure,
  // A reload of this tab within the relay's resume grace period (20 s) continues the
  // session: the same member, its avatar where it was.
  resumeToken: stored,
});

interface Position {
  x: number;
  y: number;
}
interface Intent {
  dx: number;
  dy: number;
}

let tickRate = 30;
let bounds = { width: 100, height: 100 };
let status = "connecting…";
let lastTick = 0n;
/** The last acknowledgement of our inputs the client believed (the `state` event's). */
let lastAck = 0n;
let members = 0;
let myEntity: bigint | undefined;
let predictor: Predictor<Position, Intent> | undefined;
let others = new InterpolationBuffer<"x" | "y">({ delayMs });
/** Kind and owner of every entity last seen, for drawing. */
const kinds = new Map<bigint, number>();

// One input's move, stopped at the walls. (The server moves an avatar at its last
// intent's velocity every tick and bounces it off a wall: held against one, it comes
// back a tick's move until the next input; each authoritative frame corrects that.)
const step = (s: Position, i: Intent): Position => {
  const dt = 1 / tickRate;
  const clamp = (v: number, max: number) => Math.min(Math.max(v, 0), max);
  return {
    x: clamp(s.x + ((i.dx * speed) / INTENT_MAX) * dt, bounds.width),
    y: clamp(s.y + ((i.dy * speed) / INTENT_MAX) * dt, bounds.height),
  };
};

const positionOf = (mirror: StateMirror, id: bigint): Position | undefined => {
  const entity = mirror.get(id);
  const x = entity?.get(FIELD_X);
  const y = entity?.get(FIELD_Y);
  return x?.case === "float" && y?.case === "float" ? { x: x.value, y: y.value } : undefined;
};

client.on("connected", ({ resumed }) => {
  status = resumed ? "connected (resumed)" : "connected";
});
client.on("joined", (joined) => {
  if (joined.room !== room) return;
  tickRate = joined.tickRate || 30;
  members = joined.members.length;
  const avatar = tickrelay.Schema.fromProto(joined.schema).kind(KIND_AVATAR);
  const range = (id: number) => avatar?.fields.find((f) => f.id === id)?.type;
  const [x, y] = [range(FIELD_X), range(FIELD_Y)];
  if (x?.case === "float" && y?.case === "float") bounds = { width: x.quantizer.max, height: y.quantizer.max };
  if (status.startsWith("refused")) status = "joined"; // a join retried, and taken
  // A new session is a new avatar: forget the old one.
  myEntity = undefined;
  predictor = undefined;
  others = new InterpolationBuffer({ delayMs });
});
client.on("presence", (p) => {
  if (p.room !== room) return;
  // AWAY and BACK (a member's connection lost, its seat held; then resumed) change no
  // count.
  if (p.change === tickrelay.v1.PresenceChange.JOINED) members += 1;
  if (p.change === tickrelay.v1.PresenceChange.LEFT) members -= 1;
});
client.on("left", (left) => {
  if (left.room !== room || left.reason === tickrelay.v1.ErrorCode.UNSPECIFIED) return;
  // The server removed us (the room closed, or the game removed this player): no more
  // inputs for it.
  status = `left ${left.room}: ${tickrelay.v1.ErrorCode[left.reason]}: ${left.message}`;
  predictor = undefined;
});
client.on("error", (error) => {
  // A refused join (the token's rooms, a room of another type, a full room) or
  // another refusal about this room: say so rather than show an empty arena. (Not
  // one to retry later, which the client does by itself: a reloaded page's join of
  // the room its session is in, say.)
  if (error.room !== room || error.retryAfterMs > 0) return;
  status = `refused: ${tickrelay.v1.ErrorCode[error.code]}: ${error.message}`;
});
client.on("disconnected", ({ code, willReconnect }) => {
  status = willReconnect ? `disconnected (${code}), reconnecting…` : `closed (${code})`;
});
client.on("reconnecting", ({ attempt, delayMs: wait }) => {
  status = `reconnecting: attempt ${attempt} in ${Math.round(wait)} ms`;
});
client.on("gaveUp", ({ reason }) => {
  status = `gave up: ${reason}`;
});
client.on("state", ({ room: from, tick, serverTimeUs, receivedMs, lastInputSeq, mirror }) => {
  if (from !== room) return;
  lastTick = tick;
  lastAck = lastInputSeq;
  const me = client.sessionId;
  if (myEntity === undefined || mirror.get(myEntity) === undefined) {
    myEntity = [...mirror.entities()].find((e) => e.kind === KIND_AVATAR && e.owner === me)?.id;
  }
  const mine = myEntity === undefined ? undefined : positionOf(mirror, myEntity);
  if (mine !== undefined) {
    if (predictor === undefined) {
      predictor = new Predictor<Position, Intent>({
        initial: mine,
        apply: step,
        smoothing: {
          ms: 100,
          lerp: (a, b, t) => ({ x: a.x + (b.x - a.x) * t, y: a.y + (b.y - a.y) * t }),
          distance: (a, b) => Math.hypot(a.x - b.x, a.y - b.y),
          snapDistance: 10,
        },
      });
    }
    predictor.authoritative(mine, lastInputSeq, performance.now());
  }
  kinds.clear();
  const rest = [...mirror.entities()].filter((e) => e.id !== myEntity);
  for (const e of rest) kinds.set(e.id, e.kind);
  others.push(tick, serverTimeUs, receivedMs, numericFields(rest, { x: FIELD_X, y: FIELD_Y }));
});

// -- input: one intent per tick, predicted at once -----------------------------------

const held = new Set<string>();
addEventListener("keydown", (e) => {
  if (e.key.startsWith("Arrow")) e.preventDefault();
  held.add(e.key.toLowerCase());
});
addEventListener("keyup", (e) => held.delete(e.key.toLowerCase()));
addEventListener("blur", () => held.clear());

function intent(): Intent {
  const axis = (minus: string[], plus: string[]) =>
    (plus.some((k) => held.has(k)) ? INTENT_MAX : 0) - (minus.some((k) => held.has(k)) ? INTENT_MAX : 0);
  // Screen y grows downwards, as the arena's y does.
  return { dx: axis(["arrowleft", "a"], ["arrowright", "d"]), dy: axis(["arrowup", "w"], ["arrowdown", "s"]) };
}

let lastSeq = 0n;
function sendIntent(): void {
  setTimeout(sendIntent, 1000 / tickRate);
  if (predictor === undefined || !client.connected) return;
  const i = intent();
  const seq = client.sendInput(room, { case: "intent", value: new Uint8Array([i.dx & 0xff, i.dy & 0xff]) });
  if (seq !== undefined) {
    predictor.input(seq, i);
    lastSeq = seq;
  }
}
sendIntent();

// -- drawing ---------------------------------------------------------------------------

const canvas = document.getElementById("arena") as HTMLCanvasElement;
const context = canvas.getContext("2d")!;
const hud = (id: string, text: string) => {
  const element = document.getElementById(id);
  if (element !== null && element.textContent !== text) element.textContent = text;
};

function dot(p: Position, radius: number, colour: string): void {
  context.beginPath();
  context.arc((p.x / bounds.width) * canvas.width, (p.y / bounds.height) * canvas.height, radius, 0, 2 * Math.PI);
  context.fillStyle = colour;
  context.fill();
}

function draw(): void {
  const now = performance.now();
  context.clearRect(0, 0, canvas.width, canvas.height);
  for (const [id, p] of others.sample(now)) {
    dot(p, kinds.get(id) === KIND_AVATAR ? 7 : 4, kinds.get(id) === KIND_AVATAR ? "#ffb74d" : "#888");
  }
  if (predictor !== undefined) dot(predictor.render(now), 8, "#4fc3f7");
  requestAnimationFrame(draw);
}
requestAnimationFrame(draw);

let lastBytes = 0;
let lastAt = performance.now();
setInterval(() => {
  const now = performance.now();
  const s = client.stats;
  const rate = ((s.bytesIn - lastBytes) / (now - lastAt)) * 1000;
  [lastBytes, lastAt] = [s.bytesIn, now];
  hud("status", status);
  hud("room", room);
  hud("members", String(members));
  hud("tick", lastTick.toString());
  hud("rtt", s.rttMs === undefined ? "–" : `${s.rttMs.toFixed(1)} ms`);
  hud("bytes", `${(rate / 1024).toFixed(1)} KiB/s`);
  hud("checksums", String(s.checksumsVerified));
  hud("desyncs", String(s.desyncs));
  hud("reconnects", `${s.reconnects} / ${s.resumes}`);
  hud("delay", others.behindMs === undefined ? "–" : `${delayMs} ms (${others.behindMs.toFixed(0)} ms buffered)`);
}, 250);

document.getElementById("drop")?.addEventListener("click", () => client.dropConnection());
// Leaving the page does not close the client: the browser closes its connection with
// 1001, and the relay keeps the seat for the resume grace period, for a reload (a tab
// closed for good leaves the room when the grace period ends).
addEventListener("pagehide", () => {
  const token = client.resumeToken;
  if (token !== undefined) sessionStorage.setItem(RESUME_KEY, token);
});

/** What the browser tests read. */
function snapshot() {
  const mirror = client.mirror(room);
  return {
    status,
    sessionId: client.sessionId?.toString(),
    stats: { ...client.stats },
    tick: lastTick.toString(),
    lastSeqSent: lastSeq.toString(),
    lastSeqApplied: lastAck.toString(),
    predicted: predictor?.predicted,
    authoritative: mirror === undefined || myEntity === undefined ? undefined : positionOf(mirror, myEntity),
    others: others.sample(performance.now()).size,
    avatars: mirror === undefined ? 0 : [...mirror.entities()].filter((e) => e.kind === KIND_AVATAR).length,
  };
}

Object.assign(globalThis, { tickrelay, demo: { client, snapshot } });
// Joined once: the client joins again by itself after a reconnect that did not resume.
client.join(room, "arena");
client.connect();
