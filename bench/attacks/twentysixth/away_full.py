"""Round 26, attack A: a member whose connection dropped (waiting for its resume) costs the
room a full snapshot encoding every tick.

ROOMS relay rooms; W writers each fill a room with ENT entities of NF fields of FB bytes
(paced under the per-connection byte limit). AWAY sessions join every room (up to 16 each)
before the fill and read everything. Then phases of PH seconds each, while honest bots
(tickrelay-bots, BOTS args) play their own rooms:
  base   : nobody of the attacker writes (rooms idle)
  touch  : one writer per room writes one int field once a tick (30 inputs/s a room)
  away   : as touch, and the AWAY sessions drop their TCP connections without a close
           (their sessions wait for a resume for 20 s; they resume and drop again every
           RESUME_EVERY seconds to keep it going)
Printed per phase: relay CPU by thread, RSS, ticks, overruns, mean tick, bytes encoded,
full snapshots, the bots' frames/s and latency. Loopback only; stops by itself within 118 s
(MAX_SECS)."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib26 import *  # noqa

ROOMS = int(os.environ.get("ROOMS", "8"))
W = int(os.environ.get("W", "2"))
ENT = int(os.environ.get("ENT", "56"))
NF = int(os.environ.get("NF", "31"))
FB = int(os.environ.get("FB", "1024"))
AWAY = int(os.environ.get("AWAY", "1"))
PH = float(os.environ.get("PH", "15"))
PHASES = os.environ.get("PHASES", "base,touch,away").split(",")
PREFIX = os.environ.get("PREFIX", "af")
FILL_TIMEOUT = float(os.environ.get("FILL_TIMEOUT", "55"))
RATE = float(os.environ.get("RATE", "56000"))
RESUME_EVERY = float(os.environ.get("RESUME_EVERY", "15"))
# abort: drop the TCP connection (the session waits for a resume); stall: keep it open and
# stop reading (the relay's writes block; it closes the connection 4501 after 5 s, then
# the session waits for a resume as after abort)
AWAY_MODE = os.environ.get("AWAY_MODE", "abort")
RESUME_READ = float(os.environ.get("RESUME_READ", "0.5"))  # seconds a resumed connection reads before it drops
BOTS = os.environ.get("BOTS", "--rooms 2 --members 8 --room-type arena")
TOUCH_HZ = float(os.environ.get("TOUCH_HZ", "30"))
# ONE_THREAD=1: rooms are created alternately on the two simulation threads (the pool puts a
# new room on the thread with the fewest); only the even ones (thread 0) are filled, touched
# and joined by the away sessions, the odd ones keep one idle member: to see whether a loaded
# thread delays rooms on the other one.
ONE_THREAD = os.environ.get("ONE_THREAD", "0") == "1"
# STEER=K (with ONE_THREAD=1): after the attack's rooms, K pairs of rooms more (one on each
# thread, alternately); the ones on thread 0 are left at once and close when empty_room_ttl
# (30 s) runs out, during the fill. Thread 1 then holds K rooms more than thread 0, so the
# next K rooms anyone creates (the honest ones) go to thread 0, the loaded one.
STEER = int(os.environ.get("STEER", "0"))


class Writer(Conn):
    def __init__(self, room, idx):
        super().__init__(f"w{room}/{idx}")
        self.room, self.idx, self.base, self.seq = room, idx, (idx + 1) * 1000, 0

    async def send_input(self, writes):
        self.seq += 1
        return await self.send(env(pb.ClientMessage(input=pb.Input(room=self.room, seq=self.seq, writes=writes))))

    async def fill(self):
        big = b"x" * FB
        t0 = time.time()
        sent = 0
        per_msg = max(1, 15000 // (FB + 8))
        for i in range(ENT):
            eid = self.base + i
            rest = list(range(2, NF + 2))
            first, rest = rest[:per_msg], rest[per_msg:]
            fields = [pb.Field(id=1, int=0)] + [pb.Field(id=f, bytes=big) for f in first]
            sent += await self.send_input(pb.EntityWrites(create=[pb.Entity(id=eid, kind=7, fields=fields)]))
            while rest:
                chunk, rest = rest[:per_msg], rest[per_msg:]
                sent += await self.send_input(pb.EntityWrites(update=[pb.EntityUpdate(
                    id=eid, fields=[pb.Field(id=f, bytes=big) for f in chunk])]))
                ahead = sent / RATE - (time.time() - t0)
                await asyncio.sleep(max(ahead, 0.025))
            await asyncio.sleep(0.025)

    async def touch(self, secs):
        end = time.time() + secs
        nxt = time.time()
        v = 0
        room = self.room.encode()
        pre = [pb.EntityWrites(update=[pb.EntityUpdate(id=self.base, fields=[pb.Field(id=1, int=k)])]).SerializeToString()
               for k in (1, 2)]
        n = 0
        while time.time() < end:
            v += 1
            w = pre[v % 2]
            self.seq += 1
            inp = b"\x0a" + vi(len(room)) + room + b"\x10" + vi(self.seq) + b"\x1a" + vi(len(w)) + w
            msg = b"\x1a" + vi(len(inp)) + inp
            await self.ws.send(b"\x0a" + vi(len(msg)) + msg)
            n += 1
            nxt += 1 / TOUCH_HZ
            await asyncio.sleep(max(0, nxt - time.time()))
        return n


class Away:
    """A session in up to 16 rooms that drops its connection and resumes, again and again."""

    def __init__(self, rooms, i):
        self.rooms, self.i = rooms, i
        self.resumes = 0
        self.log = []

    async def start(self):
        self.c = await Conn(f"away{self.i}").open()
        ok = await self.c.join(self.rooms)
        self.token = self.c.welcome.resume_token
        return ok

    async def run(self, secs):
        end = time.time() + secs
        if AWAY_MODE == "stall":
            self.c.rt.cancel()
            self.c.ws.transport.pause_reading()
            # One full snapshot of every room (a Resync each, allowed once a second) fills
            # the socket's buffers at once: from then on its writes block.
            await self.c.send(env(*[pb.ClientMessage(request=pb.Request(request_id=100 + k, resync=pb.Resync(room=r)))
                                    for k, r in enumerate(self.rooms)]))
        else:
            self.c.abort()
        while time.time() < end:
            await asyncio.sleep(min(RESUME_EVERY, max(0, end - time.time())))
            if time.time() >= end:
                break
            # Resume (no `received`: nothing is sent again), read a little, drop again.
            try:
                c = await Conn(f"away{self.i}r").open(f"resume={self.token}")
                await asyncio.sleep(RESUME_READ)
                self.resumes += 1
                self.log.append((c.welcome.resumed if c.welcome else None, c.bytes_in))
                c.abort()
                self.c = c
            except Exception as ex:
                self.log.append(repr(ex)[:80])


HONEST = int(os.environ.get("HONEST", "0"))  # rooms of honest.py (one member each, its own join timed)


async def honest_run(tag):
    here = os.path.dirname(os.path.abspath(__file__))
    rooms = [f"hp-{PREFIX}-{tag}-{i}" for i in range(HONEST)]
    p = await asyncio.create_subprocess_exec(sys.executable, f"{here}/honest.py", str(PH - 3), *rooms,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                             env={**os.environ, "LOG": os.environ.get("LOG", "")})
    out, _ = await asyncio.wait_for(p.communicate(), PH + 30)
    return out.decode()


SAMPLE = float(os.environ.get("SAMPLE", "0"))  # seconds between progress samples (0: none)


async def sampler(tag, secs):
    if SAMPLE <= 0:
        return
    end = time.time() + secs
    m0, t0 = metrics(), time.time()
    while time.time() + SAMPLE <= end + 0.5:
        await asyncio.sleep(SAMPLE)
        m1, t1 = metrics(), time.time()
        d = lambda k: (m1.get(k, 0) - m0.get(k, 0)) / (t1 - t0)
        print(f"  [{tag} +{t1-end+secs:.0f}s] encoded {d('tickrelay_state_bytes_encoded_total')/2**20:.0f} MiB/s "
              f"full {d('tickrelay_full_snapshots_total'):.0f}/s overruns {d('tickrelay_tick_overruns_total'):.0f}/s "
              f"members {m1.get('tickrelay_members', 0):.0f} connections {m1.get('tickrelay_connections', 0):.0f} "
              f"rss {rss_mib():.0f} MiB", flush=True)
        m0, t0 = m1, t1


async def phase(tag, coro):
    asyncio.ensure_future(sampler(tag, PH))
    p = Phase(tag)
    bots = asyncio.ensure_future(run_bots(f"{PREFIX}_{tag}", PH, BOTS)) if BOTS else None
    hon = asyncio.ensure_future(honest_run(tag)) if HONEST else None
    res = await coro
    summary = await bots if bots else ""
    hsum = await hon if hon else ""
    p.end()
    if summary:
        print(f"[{tag}] bots: {summary}", flush=True)
    for line in hsum.splitlines():
        print(f"[{tag}] {line}", flush=True)
    return res


async def main():
    rooms = [f"{PREFIX}-{r}" for r in range(ROOMS)]
    writers = [Writer(r, i) for k, r in enumerate(rooms) for i in range(1 if ONE_THREAD and k % 2 else W)]
    if ONE_THREAD:
        for w in writers:
            w.light = int(w.room.rsplit("-", 1)[1]) % 2 == 1
    for w in writers:
        await w.open()
        assert await w.join([w.room]), (w.name, w.errors)
    heavy = [r for k, r in enumerate(rooms) if not (ONE_THREAD and k % 2)]
    aways = [Away(heavy[j:j + 16], i) for i in range(AWAY) for j in range(0, len(heavy), 16)]
    for a in aways:
        assert await a.start(), a.c.errors
    steer = []
    for k in range(0, 2 * STEER, 16):
        c = await Conn(f"steer{k}").open()
        names = [f"{PREFIX}-st-{j}" for j in range(k, min(2 * STEER, k + 16))]
        for n in names:  # one by one: each creation sees the counts the last one left
            assert await c.join([n]), c.errors
        await c.send(env(*[pb.ClientMessage(leave=pb.LeaveRoom(request_id=900 + j, room=n))
                           for j, n in enumerate(names) if int(n.rsplit("-", 1)[1]) % 2 == 0]))
        steer.append(c)
    print(f"{len(writers)} writers in {ROOMS} rooms, {len(aways)} away sessions; ENT={ENT} NF={NF} FB={FB}", flush=True)
    t0 = time.time()
    p = Phase("fill")
    try:
        await asyncio.wait_for(asyncio.gather(*(w.fill() for w in writers if not getattr(w, "light", False))), FILL_TIMEOUT)
    except asyncio.TimeoutError:
        print("fill timed out", flush=True)
    await asyncio.sleep(1.5)
    p.end()
    errs = [e for w in writers for e in w.errors]
    print(f"filled in {time.time()-t0:.1f}s, writer errors {len(errs)} {errs[:3]}", flush=True)
    touchers = [w for w in writers if w.idx == 0 and not getattr(w, "light", False)]
    for ph in PHASES:
        if ph == "base":
            await phase(ph, asyncio.sleep(PH))
        elif ph == "touch":
            await phase(ph, asyncio.gather(*(w.touch(PH) for w in touchers)))
        elif ph == "away":
            await phase(ph, asyncio.gather(*(w.touch(PH) for w in touchers), *(a.run(PH) for a in aways)))
    errs = [e for w in writers for e in w.errors]
    print(f"writer errors {len(errs)} {errs[:3]}; away resumes {[a.resumes for a in aways]} {[a.log[:2] for a in aways][:2]}",
          flush=True)
    for w in writers:
        await w.close()


if __name__ == "__main__":
    # Hard bound: MAX_SECS (118 s by default), whatever the settings.
    asyncio.run(asyncio.wait_for(main(), min(float(os.environ.get("MAX_SECS", "118")), FILL_TIMEOUT + 4 * PH + 60)))
