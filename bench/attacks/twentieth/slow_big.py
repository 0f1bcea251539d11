"""Slow readers of large rooms: M anonymous sessions (from loopback source addresses
127.0.21.1..ADDRS) each join ROOMS relay rooms and write ENTS entities of 15 x FB-byte fields
into each (reading meanwhile), so that each room holds about M x ENTS x 15 x FB bytes
(default 60 x 4 x 15 x 980 = 3.5 MB, under max_state_bytes). Then every session asks each
room for a full snapshot (Resync) and stops reading (socket receive buffer RCVBUF bytes):
the kernel takes the first ~4 MB of a connection, the relay holds the rest.
With LOOP=1 every session, once its connection ends (4501 after 5 s), resumes on a new
connection that does not read either, until SECS is up (the relay sends it the rooms'
full snapshots again, one a second at most).
Prints relay RSS/CPU every second, the peak, and 4501 closes from /metrics.
PORT (7681), TR_PID, ROOMS (2), M (60), ENTS (4), FB (980), RCVBUF (4096), SECS (20),
LOOP (0), ADDRS (2)."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib20 import *
ROOMS = int(os.environ.get("ROOMS", "2")); M = int(os.environ.get("M", "60"))
ENTS = int(os.environ.get("ENTS", "4")); FB = int(os.environ.get("FB", "980"))
RCVBUF = int(os.environ.get("RCVBUF", "4096")); ADDRS = int(os.environ.get("ADDRS", "2"))
SECS = float(os.environ.get("SECS", "20")); LOOP = os.environ.get("LOOP", "0") == "1"
PID = int(os.environ["TR_PID"]); TAG = os.environ.get("TAG", str(os.getpid()))
stats = {"resumes": 0, "refused": 0, "errors": 0}

async def member(i, ready, go):
    src = f"127.0.21.{i % ADDRS + 1}"
    c = Raw(src, rcvbuf=RCVBUF)
    await c.open()
    await c.recv_env()
    token = c.welcome.resume_token
    rooms = [f"big-{TAG}-{r}" for r in range(ROOMS)]
    mids = {}
    for r, room in enumerate(rooms):
        await c.send(join(room, r + 1, "relay"))
    while len(mids) < ROOMS:
        s = await c.recv_env(10)
        if s is None: raise RuntimeError(f"no Joined {c.closed}")
        for m in s.messages:
            if m.WhichOneof("kind") == "joined": mids[m.joined.room] = m.joined.member_id
            if m.WhichOneof("kind") == "error": raise RuntimeError(str(m.error))
    for room in rooms:
        for e in range(ENTS):
            ent = pb.Entity(id=mids[room] * 1000 + e, kind=1,
                            fields=[pb.Field(id=f + 1, bytes=os.urandom(FB)) for f in range(15)])
            await c.send(cm(input=pb.Input(room=room, seq=e + 1, writes=pb.EntityWrites(create=[ent]))))
    ready.append(1)
    while not go.is_set():
        s = await c.recv_env(0.2)
        if s:
            for m in s.messages:
                if m.WhichOneof("kind") == "error": stats["errors"] += 1
        if c.closed: break
    await c.send(*[cm(request=pb.Request(request_id=100 + r, resync=pb.Resync(room=room))) for r, room in enumerate(rooms)])
    end = time.time() + SECS
    while time.time() < end:
        if not LOOP:
            await asyncio.sleep(end - time.time()); break
        t0 = time.time()
        while time.time() < end and not c.r.at_eof() and time.time() - t0 < 8:
            await asyncio.sleep(0.25)
        if time.time() >= end: break
        c.abort()
        c = Raw(src, rcvbuf=RCVBUF)
        try:
            await c.open(f"resume={token}&received=0")
            ok = c.status == 101
        except Exception:
            ok = False
        if not ok:
            stats["refused"] += 1; await asyncio.sleep(0.5); continue
        stats["resumes"] += 1
    c.abort()

async def monitor(stop, out):
    t0 = time.time(); c0 = cpu_secs(PID); peak = 0
    while not stop.is_set():
        rss = rss_kib(PID); peak = max(peak, rss)
        print(f"t={time.time()-t0:5.1f}s relay RSS {rss/1024:7.1f} MiB CPU {cpu_secs(PID)-c0:6.2f}s", flush=True)
        await asyncio.sleep(1)
    out.append(peak)

async def main():
    ready, go, stop, peak = [], asyncio.Event(), asyncio.Event(), []
    c4501 = metric(PORT, 'tickrelay_closes_total{code="4501"}')
    mon = asyncio.create_task(monitor(stop, peak))
    tasks = [asyncio.create_task(member(i, ready, go)) for i in range(M)]
    t0 = time.time()
    while len(ready) < M and time.time() - t0 < 60:
        bad = [t.exception() for t in tasks if t.done() and t.exception()]
        if bad: print("a member failed:", bad[:2]); break
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)   # their writes relayed; the joins' snapshots over a second old
    print(f"{len(ready)} members wrote; errors {stats['errors']}; Resync x{ROOMS} and stop reading", flush=True)
    go.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    stop.set(); await mon
    n4501 = metric(PORT, 'tickrelay_closes_total{code="4501"}') - c4501
    print(f"peak RSS {peak[0]/1024:.1f} MiB; 4501 closes: {n4501:.0f}; {stats}", flush=True)

asyncio.run(main())
