"""Members whose views hold much hidden state, that stop taking frames: what the relay holds.

Relay started with own.toml (kind 9: owner-only, 31 bytes fields). ROOMS rooms; N sessions
each join every room. In every room each member creates one kind-9 entity of NF fields of
FB bytes (about 31 KB), then shows it to every other member (within the 64 KiB a second of
shows a member may make). Every member's view (its own part) is then N entities, about
N x 31 KB, while the room's shared snapshot is a few bytes.
Then MODE:
  away  : every attacker session drops its connection without a close (seats held for a
          resume, 20 s by default): the outbox of each keeps what the room queued for it
  stall : every attacker session stops reading (socket paused)
  read  : the control: every session keeps reading
RSS (VmRSS of the relay) is sampled each second for HOLD s, with CPU, /metrics' encoded bytes
and full snapshots. Honest tickrelay-bots (BOTS) run beside in rooms of their own."""
import asyncio, os, random, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib28 import *  # noqa

E = lambda k, d=None: os.environ.get(k, d)
ROOMS = int(E("ROOMS", "1")); N = int(E("N", "32")); NF = int(E("NF", "31")); FB = int(E("FB", "1000"))
MODE = E("MODE", "away"); HOLD = float(E("HOLD", "25")); KIND = int(E("KIND", "9"))
HONEST = E("HONEST", "1") == "1"
BOTS = E("BOTS", "--rooms 2 --members 4 --room-type relay")
PREFIX = E("PREFIX", "own%d" % (int(time.time()) % 100000))
rooms = [f"{PREFIX}-{r}" for r in range(ROOMS)]


async def main():
    t0 = time.time()
    cs = []
    for i in range(N):
        c = WsC(f"m{i}", rcvbuf=0)
        c.nocheck = True
        await c.open()
        c.join(*rooms)
        cs.append(c)
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)
    ids = {}
    mids = {}
    for c in cs:
        for r in rooms:
            if r not in c.joined:
                print("not joined", c.name, r, c.errors[:2]); return
            mids[(c.name, r)] = c.joined[r].member_id
    # create one big hidden entity per member per room
    per = max(1, 14000 // (FB + 8))
    for c in cs:
        for r in rooms:
            eid = random.getrandbits(62) + 1
            ids[(c.name, r)] = eid
            fids = list(range(1, NF + 1))
            c.write(r, create=[pb.Entity(id=eid, kind=KIND, fields=[pb.Field(id=f, bytes=bytes([f]) * FB) for f in fids[:per]])])
    await asyncio.sleep(0.4)
    for k in range(per, NF, per):
        for c in cs:
            for r in rooms:
                c.write(r, update=[pb.EntityUpdate(id=ids[(c.name, r)], fields=[
                    pb.Field(id=f, bytes=bytes([f]) * FB) for f in range(k + 1, min(NF, k + per) + 1)])])
        await asyncio.sleep(0.4)
    # shows: each member shows its entity to every other member, 2 a second per room
    others = {c.name: [o for o in cs if o is not c] for c in cs}
    pos = {c.name: 0 for c in cs}
    t_show = time.time()
    while KIND == 9 and any(pos[c.name] < len(others[c.name]) for c in cs) and time.time() - t_show < 60:
        for c in cs:
            p = pos[c.name]
            batch = others[c.name][p:p + 2]
            pos[c.name] = p + len(batch)
            for r in rooms:
                if batch:
                    c.write(r, show=[pb.Viewer(id=ids[(c.name, r)], member=mids[(o.name, r)]) for o in batch])
        await asyncio.sleep(1.02)
    await asyncio.sleep(1.5)
    errs = {}
    for c in cs:
        for e in c.errors:
            errs[e[0]] = errs.get(e[0], 0) + 1
    print(f"set up in {time.time() - t0:.0f}s: {N} members x {ROOMS} rooms, each member's view "
          f"~{N * NF * FB / 1e6:.2f} MB; errors {errs}; rss {rss_mib():.0f} MiB", flush=True)
    h = None
    if HONEST:
        # an honest member of the first room, with a small hidden entity of its own (so its
        # full snapshots have an own part), checking every frame; it asks for a resync
        # every 1.5 s during the hold and times each full snapshot
        h = WsC("honest", rcvbuf=0)
        await h.open()
        h.join(rooms[0])
        await asyncio.sleep(1.2)
        h.write(rooms[0], create=[pb.Entity(id=random.getrandbits(62) + 1, kind=KIND, fields=[pb.Field(id=1, bytes=b"h")])])
        await asyncio.sleep(0.5)
        print("honest synced", h.synced(rooms[0]), "full", h.full, h.errors[:2], flush=True)
    bots = start_bots("own_" + MODE, BOTS, HOLD + 3)
    samp = Sampler()
    m0 = metrics()
    tokens = {c.name: (c.welcome.resume_token, c.last_seq) for c in cs}
    if MODE in ("away", "cycle"):
        for c in cs:
            c.ws.transport.abort()

    async def cycle():
        # MODE=cycle: every CYCLE s each dropped session resumes and drops again at once
        # (its seats stay held: a new 20 s grace each time)
        while True:
            await asyncio.sleep(float(E("CYCLE", "15")))
            n = 0
            for c in cs:
                tok, seq = tokens[c.name]
                r = WsC(c.name + "r", rcvbuf=0)
                r.nocheck = True
                try:
                    await r.open(f"resume={tok}&received={seq}")
                    if r.welcome is not None:
                        tokens[c.name] = (r.welcome.resume_token or tok, seq)
                        n += 1
                    r.ws.transport.abort()
                except Exception:
                    pass
            print(f"  resumed and dropped again: {n} of {len(cs)}", flush=True)
    if MODE == "stall":
        for c in cs:
            c.pause()
    ct = asyncio.ensure_future(cycle()) if MODE == "cycle" else None
    series = []
    waits = []

    async def honest_resyncs():
        await asyncio.sleep(2)
        while True:
            f0, t = h.full, time.time()
            h.resync(rooms[0])
            while h.full == f0 and time.time() - t < 6:
                await asyncio.sleep(0.005)
            waits.append(round((time.time() - t) * 1000) if h.full > f0 else "none in 6 s")
            await asyncio.sleep(max(0, 1.1 - (time.time() - t)))
    ht = asyncio.ensure_future(honest_resyncs()) if h else None
    for s in range(int(HOLD)):
        await asyncio.sleep(1)
        m = metrics()
        series.append((s + 1, round(rss_mib()), round((m.get("tickrelay_state_bytes_encoded_total", 0) - m0.get("tickrelay_state_bytes_encoded_total", 0)) / 2**20, 1)))
    print("rss MiB / encoded MiB since start, per second:", series, flush=True)
    if ct:
        ct.cancel()
    samp.end("own_" + MODE)
    if h:
        ht.cancel()
        print(f"honest member: resync -> full snapshot ms: {waits}; frames {h.frames} desyncs {len(h.desyncs)} "
              f"{h.desyncs[:2]} errors {h.errors[:3]}", flush=True)
    bots.wait(timeout=30)
    print("bots:", bots_summary("own_" + MODE))
    print("panics:", log_panics())
    for c in cs:
        c.paused = False
        try:
            await c.close()
        except Exception:
            pass


asyncio.run(asyncio.wait_for(main(), 118))
