// A Colyseus 0.18 server with an "arena" room equivalent to tickrelay's example arena
// (src/engine/simulation/arena.rs), for bench/side_by_side.sh.
//
//   node server.mjs [--port 2567] [--tick-rate 20] [--npcs 60] [--quantized]
//
// The game, as in tickrelay's arena: a 100 x 100 field; `--npcs` server-owned NPCs
// wander at 4 units/s, turning about once every two seconds and bouncing off the
// walls; each client gets an avatar at the centre that moves at 10 units/s times its
// latest input (dx, dy in -127..127, divided by 127), also bouncing off the walls.
//
// What a Colyseus user would write, with these choices (each a fair one):
// - Positions are schema `float32` (tickrelay stores f32 too). Schema `number` would
//   spend an extra type byte and 8 bytes on non-integers; `--quantized` uses 0.18's
//   16-bit `t.quantized` over 0..100 instead (~0.0015 units per step).
// - One timer per room: the simulation callback steps the world and then calls
//   `broadcastPatch()` itself (`patchRate = null`), so the patch rate is the tick rate
//   and each patch leaves right after its tick, as tickrelay's frames do. (With the
//   default separate patch timer a patch would wait up to one tick for the timer.)
// - The root state carries `serverTime` (float64, µs since the Unix epoch, stamped at
//   the start of each tick), as each tickrelay frame carries its tick's
//   `server_time_us`: the bots measure tick-to-client latency from it. It adds about
//   9 bytes to every patch, as the time stamp does to tickrelay's frames.
// - Rooms are matched by a `room` option (`filterBy(["room"])`), so bots can ask for
//   "bots-0" … "bots-99" as tickrelay bots ask for room ids.
// - Plain `ws://` with @colyseus/ws-transport defaults (no per-message deflate).
import { Room, Server } from "@colyseus/core";
import { WebSocketTransport } from "@colyseus/ws-transport";
import { schema, t } from "@colyseus/schema";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";

const { values: args } = parseArgs({
    options: {
        port: { type: "string", default: "2567" },
        "tick-rate": { type: "string", default: "20" },
        npcs: { type: "string", default: "60" },
        quantized: { type: "boolean", default: false },
    },
});
const port = Number(args.port);
const tickRate = Number(args["tick-rate"]);
const npcCount = Number(args.npcs);

const WIDTH = 100;
const HEIGHT = 100;
const AVATAR_SPEED = 10;
const NPC_SPEED = 4;

const coordinate = args.quantized ? () => t.quantized({ min: 0, max: 100, bits: 16 }) : () => t.float32();
const Mover = schema({ x: coordinate(), y: coordinate() }, "Mover");
const ArenaState = schema(
    {
        serverTime: t.float64(),
        npcs: t.map(Mover),
        players: t.map(Mover),
    },
    "ArenaState",
);

/** Microseconds since the Unix epoch, sub-millisecond (the bots read the same clock). */
const unixMicros = () => (performance.timeOrigin + performance.now()) * 1000;

function heading(speed) {
    const angle = Math.random() * 2 * Math.PI;
    return [Math.cos(angle) * speed, Math.sin(angle) * speed];
}

/** Moves `m` by `dt` seconds, bouncing off the walls, and writes its schema. */
function advance(m, dt) {
    m.x += m.vx * dt;
    m.y += m.vy * dt;
    if (m.x < 0 || m.x > WIDTH) {
        m.vx = -m.vx;
        m.x = Math.min(Math.max(m.x, 0), WIDTH);
    }
    if (m.y < 0 || m.y > HEIGHT) {
        m.vy = -m.vy;
        m.y = Math.min(Math.max(m.y, 0), HEIGHT);
    }
    m.schema.x = m.x;
    m.schema.y = m.y;
}

class ArenaRoom extends Room {
    onCreate() {
        this.state = new ArenaState();
        this.npcs = [];
        this.avatars = new Map();
        for (let i = 0; i < npcCount; i++) {
            const [vx, vy] = heading(NPC_SPEED);
            const m = { x: Math.random() * WIDTH, y: Math.random() * HEIGHT, vx, vy, schema: new Mover() };
            m.schema.x = m.x;
            m.schema.y = m.y;
            this.state.npcs.set(String(i), m.schema);
            this.npcs.push(m);
        }
        this.onMessage("input", (client, input) => {
            const avatar = this.avatars.get(client.sessionId);
            if (!avatar || !input) return;
            const clamp = (v) => Math.max(-127, Math.min(127, Number(v) || 0));
            avatar.vx = (clamp(input.dx) * AVATAR_SPEED) / 127;
            avatar.vy = (clamp(input.dy) * AVATAR_SPEED) / 127;
        });
        const dt = 1 / tickRate;
        this.patchRate = null;
        this.setSimulationInterval(() => {
            this.state.serverTime = unixMicros();
            for (const npc of this.npcs) {
                // Turn now and then: about once every two seconds on average.
                if (Math.random() < dt / 2) [npc.vx, npc.vy] = heading(NPC_SPEED);
                advance(npc, dt);
            }
            for (const avatar of this.avatars.values()) advance(avatar, dt);
            this.broadcastPatch();
        }, 1000 / tickRate);
    }

    onJoin(client) {
        const m = { x: WIDTH / 2, y: HEIGHT / 2, vx: 0, vy: 0, schema: new Mover() };
        m.schema.x = m.x;
        m.schema.y = m.y;
        this.state.players.set(client.sessionId, m.schema);
        this.avatars.set(client.sessionId, m);
    }

    onLeave(client) {
        this.state.players.delete(client.sessionId);
        this.avatars.delete(client.sessionId);
    }
}

const server = new Server({ transport: new WebSocketTransport(), greet: false });
server.define("arena", ArenaRoom).filterBy(["room"]);
await server.listen(port, "127.0.0.1");
console.log(`colyseus arena: listening on ws://127.0.0.1:${port} (${tickRate} Hz, ${npcCount} NPCs, pid ${process.pid})`);
