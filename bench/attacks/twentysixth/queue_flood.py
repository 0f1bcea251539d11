"""Round 26, attack C: fill a simulation thread's command queue (65,536 commands,
`sim_queue_capacity`) with inputs that are each within the limits, so that honest joins and
inputs on that thread are answered SERVER_BUSY.

CONNS connections (at most ~3,000 in this process) join arena rooms (PER_ROOM to a room), each
with a full message bucket (burst 100). Every BURST_EVERY seconds (the bucket refills at 50 a
second: 100 every 2 s) all of them send, at the same moment, one envelope of BURST inputs
(2-byte intents; 100 inputs fit one tick's input_queue of 128). Meanwhile a prober opens a
connection and joins a fresh room every PROBE_MS milliseconds and counts the answers
(Joined, SERVER_BUSY, other), and a second prober member sends one input a tick in a room of
its own and counts SERVER_BUSY refusals. Honest bots (BOTS) measure frames and latency.
Loopback only; stops by itself within 118 s (MAX_SECS)."""
import asyncio, os, sys, time, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib26 import *  # noqa

CONNS = int(os.environ.get("CONNS", "2000"))
PER_ROOM = int(os.environ.get("PER_ROOM", "64"))
BURST = int(os.environ.get("BURST", "100"))
BURST_EVERY = float(os.environ.get("BURST_EVERY", "2.1"))
SECS = float(os.environ.get("SECS", "20"))
PROBE_MS = float(os.environ.get("PROBE_MS", "50"))
PREFIX = os.environ.get("PREFIX", "qf")
BOTS = os.environ.get("BOTS", "--rooms 2 --members 8 --room-type arena")
TYPE = os.environ.get("TYPE", "relay")
# dup: every input has seq 1 (after the first, each is a duplicate the room drops without an
# answer: no frame, no error; the rooms stay idle, so the flooders read one frame a second);
# new: increasing seq (applied: every flooder gets a frame a tick)
SEQ = os.environ.get("SEQ", "dup")


class Flooder(Conn):
    async def reader(self):
        # Read and discard (frames of its room, errors counted by code).
        self.codes = collections.Counter()
        try:
            async for data in self.ws:
                self.bytes_in += len(data)
                if self.welcome is None or len(self.joined) == 0 or len(data) < 200:
                    e = pb.ServerEnvelope()
                    e.ParseFromString(data)
                    for m in e.messages:
                        k = m.WhichOneof("kind")
                        if k == "welcome":
                            self.welcome = m.welcome
                        elif k == "joined":
                            self.joined[m.joined.room] = m.joined
                        elif k == "error":
                            self.codes[m.error.code] += 1
        except Exception as ex:
            self.errors.append(("closed", "", repr(ex)[:100]))


async def prober(secs, out):
    """Joins a fresh room every PROBE_MS ms, each on a new connection."""
    end = time.time() + secs
    i = 0
    while time.time() < end:
        i += 1
        t0 = time.time()
        try:
            c = await Conn("p").open()
            # Existing rooms (held open by a holder session): joins of them are not limited
            # by the creator limits, and each is a Join command on the room's thread.
            await c.send(env(join_msg(f"{PREFIX}-probe-{i % 8}", 1, TYPE)))
            while time.time() - t0 < 5 and not c.joined and not c.errors:
                await asyncio.sleep(0.002)
            if c.joined:
                out["joined"] += 1
                out["join_ms"].append((time.time() - t0) * 1000)
            elif c.errors:
                out[f"error {c.errors[0][0]}"] += 1
            else:
                out["no answer"] += 1
            asyncio.ensure_future(c.close())
        except Exception as ex:
            out[f"exc {type(ex).__name__}"] += 1
        await asyncio.sleep(max(0, PROBE_MS / 1000 - (time.time() - t0)))


async def main():
    room_of = lambda i: f"{PREFIX}-{i // PER_ROOM}"
    flooders = []
    t0 = time.time()
    for j in range(0, CONNS, 100):
        batch = [Flooder(f"f{i}") for i in range(j, min(CONNS, j + 100))]
        await asyncio.gather(*(f.open() for f in batch))
        flooders += batch
        await asyncio.sleep(0.5)  # the handshake rate: 200 a second per address
    await asyncio.gather(*(f.join([room_of(i)], TYPE, timeout=20) for i, f in enumerate(flooders)))
    joined = sum(1 for f in flooders if f.joined)
    print(f"{len(flooders)} flooders, {joined} joined {len(set(room_of(i) for i in range(CONNS)))} rooms in "
          f"{time.time()-t0:.1f}s", flush=True)
    holder = await Conn("holder").open()
    await holder.join([f"{PREFIX}-probe-{k}" for k in range(8)], TYPE)
    await asyncio.sleep(2.5)  # full buckets
    probe = collections.Counter()
    # The probe rooms are of the flooders' type.
    probe["join_ms"] = []
    p = Phase("flood")
    bots = asyncio.ensure_future(run_bots(f"{PREFIX}_flood", SECS, BOTS)) if BOTS else None
    pr = asyncio.ensure_future(prober(SECS, probe))
    end = time.time() + SECS
    seqs = [0] * len(flooders)
    cache = {}
    bursts = 0
    while time.time() < end:
        tb = time.time()
        sends = []
        for i, f in enumerate(flooders):
            if not f.joined:
                continue
            if i in cache:
                sends.append(f.ws.send(cache[i]))
                continue
            room = room_of(i).encode()
            parts = []
            for _ in range(BURST):
                if SEQ != "dup" or seqs[i] == 0:
                    seqs[i] += 1
                # writes: an empty EntityWrites (relay rooms); intent: 2 bytes (arena rooms)
                pay = b"\x1a\x00" if TYPE == "relay" else b"\x22\x02\x7f\x00"
                inp = b"\x0a" + vi(len(room)) + room + b"\x10" + vi(seqs[i]) + pay
                parts.append(b"\x1a" + vi(len(inp)) + inp)
            data = b"".join(b"\x0a" + vi(len(m)) + m for m in parts)
            if SEQ == "dup" and seqs[i] == 1 and bursts > 0:
                cache[i] = data
            sends.append(f.ws.send(data))
        await asyncio.gather(*sends, return_exceptions=True)
        bursts += 1
        await asyncio.sleep(max(0, BURST_EVERY - (time.time() - tb)))
    await pr
    summary = await bots if bots else ""
    p.end(f"bursts {bursts}")
    await holder.close()
    codes = collections.Counter()
    for f in flooders:
        codes.update(f.codes)
    jm = sorted(probe.pop("join_ms"))
    print(f"flooders' errors by code {dict(codes)}; closed {sum(1 for f in flooders if f.errors)}", flush=True)
    print(f"probe joins: {dict(probe)}; join ms p50 {jm[len(jm)//2] if jm else 0:.0f} max {jm[-1] if jm else 0:.0f}",
          flush=True)
    if summary:
        print(f"[flood] bots: {summary}", flush=True)
    await asyncio.gather(*(f.close() for f in flooders))


if __name__ == "__main__":
    # Hard bound: MAX_SECS (118 s by default), whatever the settings.
    asyncio.run(asyncio.wait_for(main(), min(float(os.environ.get("MAX_SECS", "118")), SECS + 90)))
