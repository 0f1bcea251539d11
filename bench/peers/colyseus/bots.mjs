// Bot driver for the Colyseus arena (server.mjs), for bench/side_by_side.sh: the
// counterpart of `tickrelay-bots`, built on the Colyseus JS SDK (@colyseus/sdk 0.18).
//
//   node bots.mjs --url ws://127.0.0.1:2567 --rooms 1 --members 200 --input-rate 20 \
//       --duration-secs 28 --ramp-up-secs 5 --warm-up-secs 8 [--processes 1] [--json FILE]
//
// Bot i joins room `bots-<i / members>` with `joinOrCreate("arena", { room })` (the
// server matches rooms by that option), bots connect evenly over the ramp-up, and each
// sends one input `{ dx, dy }` (random, -127..127) `--input-rate` times a second.
// After `--warm-up-secs` the bots start counting; at `--duration-secs` they stop, so
// the counts cover the steady window only. With `--processes N` the bots are spread
// over N processes of this script (bot i in process i % N) and their reports merged.
//
// What is counted, per bot, inside the window:
// - bytes: the payload bytes of every WebSocket message received (the length of the
//   message's data, read by wrapping the SDK connection's `onmessage` handler), which
//   is what tickrelay-bots count (WebSocket frame headers excluded on both sides).
// - frames: state patches received (messages whose protocol code is
//   ROOM_STATE_PATCH); one per tick per client when the server keeps up.
// - entity updates: for each patch, the entities (NPC or avatar `Mover` instances)
//   that the patch touched: a changed field, or added to or removed from a map. Counted
//   from the schema decoder's raw change list (`Decoder.triggerChanges`), so each
//   entity counts once per patch however many of its fields changed. This is what
//   tickrelay-bots count: entities in a frame's `added` + `changed` + `removed`.
//   The change list costs the decoder an object per changed field, so only a share of
//   the bots count (`--count-share`, default 0.1, spread over the seats like
//   tickrelay-bots' --verify-share); the report gives entity updates per frame of
//   those bots (`entity_frames` frames) and bytes per entity update as bytes per frame
//   (all bots) over that.
// - latency: tick to client. The server stamps its state's `serverTime` (µs since the
//   Unix epoch) at the start of each tick and patches right after the tick; a bot
//   takes its receipt time (same machine, same clock) minus that stamp after decoding
//   a patch. tickrelay-bots measure the same: a frame's `server_time_us` to arrival.
// - event-loop delay of the bot process (perf_hooks.monitorEventLoopDelay): when its
//   p99 nears the tick period the bots are the bottleneck (they read late, so the
//   latency includes their own lag, and the server may see back-pressure).
//
// Prints one JSON object on stdout (and to --json FILE).
import { Client, Protocol } from "@colyseus/sdk";
import { parseArgs } from "node:util";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const { values: args } = parseArgs({
    options: {
        url: { type: "string", default: "ws://127.0.0.1:2567" },
        rooms: { type: "string", default: "1" },
        members: { type: "string", default: "20" },
        "room-prefix": { type: "string", default: "bots" },
        "input-rate": { type: "string", default: "20" },
        "duration-secs": { type: "string", default: "30" },
        "ramp-up-secs": { type: "string", default: "5" },
        "warm-up-secs": { type: "string", default: "8" },
        "count-share": { type: "string", default: "0.1" },
        processes: { type: "string", default: "1" },
        worker: { type: "string" },
        json: { type: "string" },
    },
});
const rooms = Number(args.rooms);
const members = Number(args.members);
const inputRate = Number(args["input-rate"]);
const duration = Number(args["duration-secs"]) * 1000;
const rampUp = Number(args["ramp-up-secs"]) * 1000;
const warmUp = Number(args["warm-up-secs"]) * 1000;
const processes = Math.max(1, Number(args.processes));
const countShare = Math.min(Math.max(Number(args["count-share"]), 0), 1);
/** Whether the bot in seat `index` counts entity updates (a share of the seats, spread evenly). */
const counts = (index) => Math.floor((index + 1) * countShare) > Math.floor(index * countShare);
const total = rooms * members;

if (warmUp >= duration) {
    console.error("bots.mjs: --warm-up-secs must be shorter than --duration-secs");
    process.exit(2);
}

// --- latency histogram: buckets 1 % wide, mergeable across processes --------------
const GROWTH = Math.log(1.01);
const bucketOf = (us) => Math.max(0, Math.ceil(Math.log(Math.max(us, 1)) / GROWTH));
function quantile(histogram, q) {
    const entries = Object.entries(histogram)
        .map(([k, n]) => [Number(k), n])
        .sort((a, b) => a[0] - b[0]);
    const count = entries.reduce((sum, [, n]) => sum + n, 0);
    if (count === 0) return null;
    let seen = 0;
    for (const [bucket, n] of entries) {
        seen += n;
        if (seen >= q * count) return Math.exp(bucket * GROWTH) / 1000; // ms
    }
    return null;
}

const unixMicros = () => (performance.timeOrigin + performance.now()) * 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const JOIN_TIMEOUT_MS = 15_000;

// --- coordinator: spread the bots over worker processes and merge ------------------
if (args.worker === undefined && processes > 1) {
    const self = fileURLToPath(import.meta.url);
    const forwarded = process.argv.slice(2).filter((_, i, all) => all[i] !== "--json" && all[i - 1] !== "--json");
    const runs = [];
    for (let k = 0; k < processes; k++) {
        runs.push(
            new Promise((resolve, reject) => {
                // The SDK logs on stdout: a worker's goes to stderr, its report over IPC.
                const child = spawn(process.execPath, [self, ...forwarded, "--worker", String(k)], {
                    stdio: ["ignore", 2, 2, "ipc"],
                });
                let report;
                child.on("message", (message) => (report = message));
                child.on("error", reject);
                child.on("close", (code) => {
                    if (report) resolve(report);
                    else reject(new Error(`worker ${k} (exit ${code}) sent no report`));
                });
            }),
        );
    }
    finish(merge(await Promise.all(runs)));
} else {
    const worker = args.worker === undefined ? 0 : Number(args.worker);
    const report = await run(worker);
    if (args.worker !== undefined) {
        process.send(report, () => process.exit(0));
    } else {
        finish(merge([report]));
    }
}

/** Runs the bots of one process; returns its raw counts. */
async function run(worker) {
    const started = performance.now();
    const measureFrom = started + warmUp;
    const stopAt = started + duration;
    const client = new Client(args.url);
    const c = { ...zeroCounts(), join_errors: {}, latency: {}, room_ids: new Set() };
    // It times a repeating 10 ms timer: the delay is what exceeds the 10 ms.
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    const delayMs = (ns) => Math.max(0, ns / 1e6 - 10);
    const measuring = () => {
        const now = performance.now();
        return now >= measureFrom && now < stopAt;
    };
    const mine = [];
    for (let i = 0; i < total; i++) if (i % processes === worker) mine.push(i);
    const step = rampUp / Math.max(mine.length, 1);
    const bots = mine.map((index, n) => bot(index, started + step * n));
    await sleep(Math.max(0, measureFrom - performance.now()));
    loopDelay.enable();
    await Promise.all(bots);
    loopDelay.disable();
    return {
        ...c,
        room_ids: [...c.room_ids],
        seconds: (stopAt - measureFrom) / 1000,
        event_loop_delay_ms: {
            p50: delayMs(loopDelay.percentile(50)),
            p99: delayMs(loopDelay.percentile(99)),
            max: delayMs(loopDelay.max),
        },
    };

    async function bot(index, startAt) {
        await sleep(Math.max(0, startAt - performance.now()));
        c.bots++;
        let room, timer;
        try {
            const name = `${args["room-prefix"]}-${Math.floor(index / members)}`;
            const joining = client.joinOrCreate("arena", { room: name });
            joining.catch(() => {}); // a join that fails after the time-out is not an error
            const timeout = new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error(`no join within ${JOIN_TIMEOUT_MS} ms`)), JOIN_TIMEOUT_MS);
            });
            room = await Promise.race([joining, timeout]);
        } catch (e) {
            const reason = String(e?.message ?? e);
            c.join_errors[reason] = (c.join_errors[reason] ?? 0) + 1;
            return;
        } finally {
            clearTimeout(timer);
        }
        c.joined++;
        c.room_ids.add(room.roomId);
        let open = true;
        room.onLeave(() => {
            if (open) c.dropped++;
            open = false;
        });
        // Entities one patch touched (see the header): filled by the decoder.
        const touched = new Set();
        const counting = counts(index);
        const decoder = room.serializer.decoder;
        if (counting) decoder.triggerChanges = (changes) => {
            for (const change of changes) {
                if (change.field !== undefined) {
                    // A field of a Schema instance: an entity's, unless the root's.
                    if (change.ref !== decoder.state) touched.add(change.ref);
                } else {
                    // An entry of a map: an entity added, removed or replaced.
                    if (change.value && typeof change.value === "object") touched.add(change.value);
                    if (change.previousValue && typeof change.previousValue === "object") touched.add(change.previousValue);
                }
            }
        };
        const events = room.connection.events;
        const onmessage = events.onmessage;
        events.onmessage = (event) => {
            const data = event.data;
            const receivedUs = unixMicros(); // before decoding, as tickrelay-bots take it
            touched.clear();
            onmessage(event);
            if (!measuring()) return;
            c.bytes += data.byteLength;
            if ((new Uint8Array(data, 0, 1)[0] & 0x1f) !== Protocol.ROOM_STATE_PATCH) return;
            c.frames++;
            if (counting) {
                c.entity_frames++;
                c.entity_updates += touched.size;
            }
            const bucket = bucketOf(receivedUs - room.state.serverTime);
            c.latency[bucket] = (c.latency[bucket] ?? 0) + 1;
        };
        const inputs =
            inputRate > 0 &&
            setInterval(() => {
                const dx = Math.floor(Math.random() * 255) - 127;
                const dy = Math.floor(Math.random() * 255) - 127;
                room.send("input", { dx, dy });
                c.inputs_sent++;
            }, 1000 / inputRate);
        await sleep(Math.max(0, stopAt - performance.now()));
        if (inputs) clearInterval(inputs);
        events.onmessage = onmessage;
        open = false;
        // A connection the SDK is reconnecting may never confirm the leave.
        await Promise.race([room.leave(true).catch(() => {}), sleep(2000)]);
    }
}

/** The counts one process keeps and the coordinator sums. */
function zeroCounts() {
    return { bots: 0, joined: 0, frames: 0, bytes: 0, entity_updates: 0, entity_frames: 0, inputs_sent: 0, dropped: 0 };
}

/** Sums the reports of the worker processes. */
function merge(reports) {
    const m = { ...zeroCounts(), seconds: 0 };
    const latency = {};
    const joinErrors = {};
    const roomIds = new Set();
    let loop = { p50: 0, p99: 0, max: 0 };
    for (const r of reports) {
        for (const k of Object.keys(m)) m[k] = k === "seconds" ? Math.max(m[k], r[k]) : m[k] + r[k];
        for (const [b, n] of Object.entries(r.latency)) latency[b] = (latency[b] ?? 0) + n;
        for (const [e, n] of Object.entries(r.join_errors)) joinErrors[e] = (joinErrors[e] ?? 0) + n;
        for (const id of r.room_ids) roomIds.add(id);
        // The worst process's figures: the fleet is as late as its slowest process.
        for (const k of Object.keys(loop)) loop[k] = Math.max(loop[k], r.event_loop_delay_ms[k]);
    }
    const perSecond = (n) => n / Math.max(m.seconds, 0.001);
    const bytesPerFrame = m.frames ? m.bytes / m.frames : null;
    const entitiesPerFrame = m.entity_frames ? m.entity_updates / m.entity_frames : null;
    return {
        server: "colyseus",
        ...m,
        rooms: roomIds.size,
        processes: reports.length,
        frames_per_s: perSecond(m.frames),
        bytes_per_frame: bytesPerFrame,
        entity_updates_per_frame: entitiesPerFrame,
        bytes_per_entity_update: entitiesPerFrame ? bytesPerFrame / entitiesPerFrame : null,
        latency_p50_ms: quantile(latency, 0.5),
        latency_p99_ms: quantile(latency, 0.99),
        latency_samples: Object.values(latency).reduce((a, b) => a + b, 0),
        event_loop_delay_ms: loop,
        join_errors: joinErrors,
    };
}

function finish(report) {
    const text = JSON.stringify(report, null, 2);
    if (args.json) writeFileSync(args.json, text + "\n");
    console.log(text);
    const ok = report.joined === total && report.rooms === rooms && report.dropped === 0;
    if (!ok) {
        console.error(
            `bots.mjs: ${report.joined} of ${total} bots joined, ${report.rooms} rooms (wanted ${rooms}), ` +
                `${report.dropped} dropped; join errors ${JSON.stringify(report.join_errors)}`,
        );
    }
    process.exit(ok ? 0 : 1);
}
