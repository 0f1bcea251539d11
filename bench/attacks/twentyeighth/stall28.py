"""Members that read slowly, not at all, or every N ticks, each checked frame by frame.

One or more relay rooms `PREFIX-r` (ROOMS). In each, W writer sessions create ENT entities
of NF bytes fields of FB bytes (the room's size), then every tick each writer rewrites CH
bytes of one field and, every CHURN ticks, removes one of its entities and creates it again
under a new id (so deltas hold `removed` and `added`); GROW=1: every GROW_EVERY s one writer
adds, then removes, a big entity (GROW_BYTES), so the room's full snapshot crosses 16 KiB
up and down.
Checking members (lib28.WsC or QC with QUIC=1; every frame applied to a spec mirror and
checked: baseline equals the mirror's tick, checksums) in every room:
  EVERY   members pausing for NMIN..NMAX ticks, then reading READ s (QUIC: QEVERY of them)
  LATE    members that join at a random time during the run with their socket already
          paused, stay paused LATE_MIN..LATE_MAX s, then read; again and again (leave/join)
  RESYNC  share of EVERY members that send a Resync just before they read again
  NEVER   members that join and never read (until the end)
At the end every member reads for TAIL s; a member should then be synced at the room's
current tick. Honest tickrelay-bots (BOTS args) run beside, in rooms of their own.
Prints desyncs (per member, with the first messages), frames, full snapshots, catch-up,
relay CPU / RSS / encoded bytes / closes, and the bots' report."""
import asyncio, os, random, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib28 import *  # noqa

E = lambda k, d=None: os.environ.get(k, d)
ROOMS = int(E("ROOMS", "2")); W = int(E("W", "2")); ENT = int(E("ENT", "6")); NF = int(E("NF", "2"))
FB = int(E("FB", "1000")); CH = int(E("CH", "800")); CHURN = int(E("CHURN", "7"))
EVERY = int(E("EVERY", "6")); QEVERY = int(E("QEVERY", "0")); LATE = int(E("LATE", "3")); NEVER = int(E("NEVER", "1"))
NMIN, NMAX = int(E("NMIN", "3")), int(E("NMAX", "90")); READ = float(E("READ", "0.15"))
LATE_MIN, LATE_MAX = float(E("LATE_MIN", "0.5")), float(E("LATE_MAX", "3"))
RESYNC = float(E("RESYNC", "0.2")); SECS = float(E("SECS", "40")); TAIL = float(E("TAIL", "3"))
GROW = E("GROW", "0") == "1"; GROW_EVERY = float(E("GROW_EVERY", "1.5")); GROW_BYTES = int(E("GROW_BYTES", "12000"))
PREFIX = E("PREFIX", "s28x%d" % (int(time.time()) % 100000)); SEED = int(E("SEED", "1")); RCVBUF = int(E("RCVBUF", "4096"))
BOTS = E("BOTS", "--rooms 2 --members 4 --room-type relay")
QUIC = E("QUIC", "0") == "1"
random.seed(SEED)
rooms = [f"{PREFIX}-{r}" for r in range(ROOMS)]
TICK = 1 / 30


async def wait(cond, t=10):
    t0 = time.time()
    while not cond() and time.time() - t0 < t:
        await asyncio.sleep(0.02)
    return cond()


class Writer:
    def __init__(self, room, idx):
        self.room, self.idx = room, idx
        self.c = WsC(f"w{room}/{idx}", rcvbuf=0)
        self.c.nocheck = idx > 0  # one writer a room checks (the room's tick)
        self.ids = [(idx + 1) * 100000 + i for i in range(ENT // W)]
        self.nid = (idx + 1) * 100000 + 5000

    async def fill(self):
        per = max(1, 14000 // (FB + 8))
        t0, sent = time.time(), 0
        for eid in self.ids:
            fids = list(range(2, NF + 2))
            first, rest = fids[:per], fids[per:]
            self.c.write(self.room, create=[pb.Entity(id=eid, kind=7, fields=[pb.Field(id=1, int=0)] + [
                pb.Field(id=f, bytes=bytes([f]) * FB) for f in first])])
            sent += len(first) * FB + 50
            while rest:
                chunk, rest = rest[:per], rest[per:]
                await asyncio.sleep(max(sent / 50000 - (time.time() - t0), 0.034))
                self.c.write(self.room, update=[pb.EntityUpdate(id=eid, fields=[pb.Field(id=f, bytes=bytes([f]) * FB) for f in chunk])])
                sent += len(chunk) * FB + 50
            await asyncio.sleep(max(sent / 50000 - (time.time() - t0), 0.034))

    async def run(self, end):
        v = 0
        nxt = time.time()
        grown = False
        last_grow = time.time()
        while time.time() < end and not self.c.closed:
            v += 1
            eid = self.ids[v % len(self.ids)]
            w = dict(update=[pb.EntityUpdate(id=eid, fields=[pb.Field(id=1, int=v)] + (
                [pb.Field(id=2 + v % NF, bytes=bytes([v % 251]) * CH)] if CH else []))])
            if CHURN and v % CHURN == 0:
                old = self.ids.pop(0)
                self.nid += 1
                self.ids.append(self.nid)
                w["remove"] = [old]
                w["create"] = [pb.Entity(id=self.nid, kind=7, fields=[pb.Field(id=1, int=v), pb.Field(id=2, bytes=b"n" * min(FB, 200))])]
            if GROW and self.idx == 0 and time.time() - last_grow > GROW_EVERY:
                last_grow = time.time()
                if grown:
                    w.setdefault("remove", []).append(999999)
                else:
                    w.setdefault("create", []).append(pb.Entity(id=999999, kind=8, fields=[
                        pb.Field(id=f, bytes=b"g" * 1000) for f in range(1, GROW_BYTES // 1000 + 1)]))
                grown = not grown
            self.c.write(self.room, **w)
            nxt += TICK
            await asyncio.sleep(max(0, nxt - time.time()))


def mk(name):
    return QC(name) if QUIC else WsC(name, rcvbuf=RCVBUF)


async def every_member(i, end, stats):
    c = mk(f"every{i}")
    await c.open()
    c.join(*rooms)
    await wait(lambda: all(c.synced(r) for r in rooms), 10)
    cycles = 0
    while time.time() < end and not c.closed:
        c.pause()
        await asyncio.sleep(random.randint(NMIN, NMAX) * TICK)
        if random.random() < RESYNC:
            c.resync(random.choice(rooms))
        c.resume()
        await asyncio.sleep(READ)
        cycles += 1
    stats.append(c)
    return c


async def late_member(i, end, stats):
    cs = []
    while time.time() < end:
        c = mk(f"late{i}.{len(cs)}")
        await c.open()
        c.pause() if not QUIC else None
        c.join(*rooms)
        if QUIC:
            await asyncio.sleep(0.05)
            c.pause()
        await asyncio.sleep(random.uniform(LATE_MIN, LATE_MAX))
        c.resume()
        await asyncio.sleep(random.uniform(0.3, 1.0))
        cs.append(c)
        if time.time() < end - 3:
            # leave every room and close; the next one joins afresh
            await c.close()
    stats.extend(cs)
    return cs


async def never_member(i, stats):
    c = mk(f"never{i}")
    await c.open()
    c.join(*rooms)
    await asyncio.sleep(0.05)
    c.pause()
    stats.append(c)
    return c


async def main():
    t_start = time.time()
    writers = [Writer(r, i) for r in rooms for i in range(W)]
    for w in writers:
        await w.c.open()
        w.c.join(w.room)
    await wait(lambda: all(w.c.synced(w.room) for w in writers))
    await asyncio.gather(*[w.fill() for w in writers])
    await asyncio.sleep(0.5)
    sizes = {}
    for w in writers:
        m = w.c.mirrors[w.room]
        sizes[w.room] = (len(m.ents), sum(len(v[1]) if isinstance(v[1], bytes) else 8 for e in m.ents.values() for v in e[2].values()))
    print("writer errors:", sum(len(w.c.errors) for w in writers), [w.c.errors[:1] for w in writers][:2])
    print(f"rooms filled in {time.time() - t_start:.0f}s: {sizes}", flush=True)
    bots = start_bots("stall", BOTS, SECS + TAIL + 4)
    samp = Sampler()
    end = time.time() + SECS
    stats = []
    wt = [asyncio.ensure_future(w.run(end + TAIL)) for w in writers]
    tasks = [every_member(i, end, stats) for i in range(EVERY if not QUIC else QEVERY or EVERY)]
    tasks += [late_member(i, end, stats) for i in range(LATE)]
    nev = []
    for i in range(NEVER):
        nev.append(await never_member(i, stats))
    await asyncio.gather(*tasks)
    for c in stats:
        if c.paused:
            c.resume()
    await asyncio.sleep(TAIL)
    room_tick = {w.room: w.c.mirrors[w.room].tick for w in writers}
    samp.end("stall")
    for w in wt:
        w.cancel()
    bots.wait(timeout=30)
    print("bots:", bots_summary("stall"))
    tot_d = 0
    behind = []
    for c in stats + [w.c for w in writers]:
        s = c.summary()
        tot_d += s["desyncs"]
        lag = {r: room_tick[r] - c.mirrors[r].tick if r in c.mirrors and c.mirrors[r].synced else None for r in rooms if r in c.joined}
        bad = [] if c.closed else [r for r, l in lag.items() if l is None or l > 3]
        if s["desyncs"] or bad or (s["closed"] and s["closed"][0] not in (1000, None)):
            fl = c.frame_log[-3:]
            print(f"  {s['name']}: last frames {[(round(t - time.time(), 1), tk, b) for t, r, tk, b, d in fl]} paused {c.paused} frames {s['frames']} full {s['full']} desyncs {s['desyncs']} {s['first']} "
                  f"closed {s['closed']} errors {s['errors']} lag {lag} resyncs {s['resyncs']}", flush=True)
        if bad:
            behind.append(c.name)
    print(f"members checked: {len(stats) + len(writers)}; frames {sum(c.frames for c in stats)}, full "
          f"{sum(c.full for c in stats)}; desyncs total {tot_d}; not caught up after {TAIL}s: {len(behind)} {behind[:6]}")
    print("panics:", log_panics())
    for c in stats + [w.c for w in writers]:
        try:
            await c.close()
        except Exception:
            pass


asyncio.run(asyncio.wait_for(main(), 115))
