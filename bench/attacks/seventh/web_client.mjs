// Drives the TypeScript client (clients/web/build/src) from Node against the fake relay.
//   node --experimental-websocket web_client.mjs PORT SECONDS
// Prints one JSON line: event counts, reconnects, give-ups, errors, memory. Stops by itself.
import { Client } from "../../../clients/web/build/src/index.js";

const [port, seconds] = [Number(process.argv[2] ?? 7701), Number(process.argv[3] ?? 15)];
const counts = {};
const notes = [];
let peakRss = 0;
let peakHeap = 0;
const client = new Client({ url: `ws://127.0.0.1:${port}/ws`, allowInsecure: true, WebSocket: globalThis.WebSocket, backoff: { initialMs: 250, maxMs: 5000, maxAttempts: 8 } });
for (const name of ["connected", "joined", "left", "redirected", "state", "event", "presence", "error", "messagesLost", "desync", "disconnected", "reconnecting", "gaveUp"]) {
  client.on(name, (e) => {
    counts[name] = (counts[name] ?? 0) + 1;
    if ((name === "gaveUp" || name === "error" || name === "disconnected") && notes.length < 8) notes.push(`${name}: ${JSON.stringify(e, (k, v) => (typeof v === "bigint" ? v.toString() : v)).slice(0, 160)}`);
  });
}
client.join("r", "arena");
client.connect();
const inputs = setInterval(() => client.sendInput("r", { case: "intent", value: new Uint8Array([1, 1]) }), 200);
const sample = setInterval(() => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakHeap = Math.max(peakHeap, m.heapUsed);
}, 250);
const t0 = performance.now();
setTimeout(async () => {
  clearInterval(inputs);
  clearInterval(sample);
  const cpu = process.cpuUsage();
  const closing = performance.now();
  await Promise.race([client.close(), new Promise((r) => setTimeout(r, 5000))]);
  console.log(JSON.stringify({ port, seconds, counts, stats: client.stats, peakRssMb: Math.round(peakRss / 2 ** 20), peakHeapMb: Math.round(peakHeap / 2 ** 20), cpuS: (cpu.user + cpu.system) / 1e6, closeMs: Math.round(performance.now() - closing), notes }));
  process.exit(0);
}, seconds * 1000);
