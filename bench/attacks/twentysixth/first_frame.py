"""Rerun against 2c99bae: how long an honest new joiner of a large room waits for its first
state frame (the full snapshot), now that a room encodes at most 4 MiB of full snapshots a
second (a 3.9 MB room: one every ~25 ticks, shared by everyone needing one then).

ROOMS relay rooms filled by W writers each as away_full.py (ENT/NF/FB: 3.9 MB a room by
default); one writer per room touches a field every tick during the probes. Then, per room,
PROBES joiners, one every GAP s (plus a random 0-RJ s, RJ default 33 ms): each opens a fresh connection, joins,
reads until its first state frame, then closes. Printed: join -> Joined, and join -> first state
frame (ms), p50 / p90 / max. AWAY=1: first one member per room drops its connection (it then
needs a full snapshot all the time, as in the attack), so the joiners share the room's paced
full snapshots with it. Loopback only; bounded by MAX_SECS (default 150 s)."""
import asyncio, os, random, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import away_full as af
from away_full import *  # noqa

PROBES = int(os.environ.get("PROBES", "20"))
GAP = float(os.environ.get("GAP", "1.5"))
RJ = float(os.environ.get("RJ", str(1 / 30)))  # random extra wait before each probe, 0..RJ s
AWAY_N = int(os.environ.get("AWAY", "0"))


class Probe(Conn):
    async def reader(self):
        try:
            async for data in self.ws:
                now = time.time()
                self.bytes_in += len(data)
                if len(data) > 65536:
                    self.frames += 1
                    self.t_frame = getattr(self, "t_frame", None) or now
                    self.big = len(data)
                    continue
                e = pb.ServerEnvelope()
                e.ParseFromString(data)
                for m in e.messages:
                    k = m.WhichOneof("kind")
                    if k == "state":
                        self.frames += 1
                        self.t_frame = getattr(self, "t_frame", None) or now
                    elif k == "welcome":
                        self.welcome = m.welcome
                    elif k == "joined":
                        self.joined[m.joined.room] = m.joined
                        self.t_joined = now
                    elif k == "error":
                        self.errors.append((m.error.code, m.error.room, m.error.message[:80]))
        except Exception as ex:
            self.errors.append(("closed", "", repr(ex)[:100]))


async def probe(room, k, out):
    c = await Probe(f"p{room}/{k}").open()
    t0 = time.time()
    await c.send(env(join_msg(room, 1)))
    while getattr(c, "t_frame", None) is None and time.time() - t0 < 10:
        await asyncio.sleep(0.002)
    out.append(((getattr(c, "t_joined", t0 + 99) - t0) * 1000, (getattr(c, "t_frame", t0 + 99) - t0) * 1000,
                getattr(c, "big", 0), c.errors[:1]))
    await c.close()


async def prober(room, out, secs):
    end = time.time() + secs
    k = 0
    while k < PROBES and time.time() < end:
        await asyncio.sleep(GAP + random.random() * RJ)
        await probe(room, k, out)
        k += 1


def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]


async def main():
    rooms = [f"{af.PREFIX}-{r}" for r in range(af.ROOMS)]
    writers = [af.Writer(r, i) for r in rooms for i in range(af.W)]
    for w in writers:
        await w.open()
        assert await w.join([w.room]), (w.name, w.errors)
    aways = []
    for j in range(AWAY_N):
        a = Conn(f"away{j}")
        await a.open()
        assert await a.join(rooms)
        aways.append(a)
    t0 = time.time()
    try:
        await asyncio.wait_for(asyncio.gather(*(w.fill() for w in writers)), af.FILL_TIMEOUT)
    except asyncio.TimeoutError:
        print("fill timed out", flush=True)
    await asyncio.sleep(1.5)
    print(f"{len(writers)} writers filled {af.ROOMS} rooms in {time.time()-t0:.1f}s; away members {AWAY_N}", flush=True)
    for a in aways:
        a.abort()
    touchers = [w for w in writers if w.idx == 0]
    secs = PROBES * (GAP + 0.5) + 5
    outs = {r: [] for r in rooms}
    await asyncio.gather(*(w.touch(secs) for w in touchers),
                         asyncio.wait_for(asyncio.gather(*(prober(r, outs[r], secs - 2) for r in rooms)), secs))
    allj = [o[0] for v in outs.values() for o in v]
    allf = [o[1] for v in outs.values() for o in v]
    errs = [o[3] for v in outs.values() for o in v if o[3]]
    sizes = sorted({o[2] for v in outs.values() for o in v})
    print(f"probes {len(allf)} (snapshot {sizes[-1] if sizes else 0} B): join->Joined p50 {q(allj, .5):.0f} "
          f"p90 {q(allj, .9):.0f} max {max(allj):.0f} ms; join->first state frame p50 {q(allf, .5):.0f} "
          f"p90 {q(allf, .9):.0f} max {max(allf):.0f} ms; errors {errs[:3]}; load {loadavg()}", flush=True)
    print("first frame ms:", " ".join(f"{x:.0f}" for x in allf), flush=True)
    for w in writers:
        await w.close()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), float(os.environ.get("MAX_SECS", "150"))))
