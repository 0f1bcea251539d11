"""Churn of rooms with 16 metadata entries each, then an audit of the Redis index
(open:relay, open-entry:*:relay, open-entries:relay) against what the owners last set.
ROOMS rooms on each of the nodes in ON (comma-separated names, ports 8121+), 16 a session;
every STEP s each room does one of: UpdateRoom of 1-4 entries to values among VALS (or new
unique ones, UNIQUE=1), lock/unlock, a second member joins/leaves. A searcher on n1 quick
joins every 0.2 s with filters {mode: a|b, k01: a|b} and does not follow redirects (a local
join is left at once); each redirect's room is checked against the metadata its owner had
set at the time and up to 3 s before. KILL=n2 SIGKILLs that node at DUR/2. After the churn
the index is audited (AUDIT_AT seconds after the churn stopped, comma-separated)."""
import asyncio, os, time, random, signal, hashlib, subprocess
from lib18 import *
RUN = os.environ.get("RUN", "/tmp/attack21")
ROOMS = int(os.environ.get("ROOMS", "320")); ON = os.environ.get("ON", "n1,n2").split(","); STEP = float(os.environ.get("STEP", "0.5"))
DUR = float(os.environ.get("DUR", "20")); VALS = int(os.environ.get("VALS", "3")); UNIQUE = os.environ.get("UNIQUE") == "1"
KILL = os.environ.get("KILL", ""); AUDIT_AT = [float(x) for x in os.environ.get("AUDIT_AT", "3").split(",")]
T = int(time.time()) % 100000; rnd = random.Random(T)
URL = lambda n: "ws://127.0.0.1:%d/ws" % (8120 + int(n[1:]))
KEYS = ["mode"] + ["k%02d" % i for i in range(1, 15)] + ["x" * 64]
def dg(k, v): return hashlib.sha256(k.encode() + b"\0" + v.encode()).hexdigest()[:16]
def rcli(*a): return subprocess.run(["redis-cli", "-p", "6421", *a], capture_output=True, text=True).stdout
uniq = [0]; ERRS = {}
def val():
    if UNIQUE: uniq[0] += 1; return "u%d-%d" % (T, uniq[0])
    return "abcdefgh"[rnd.randrange(VALS)]
async def conn(url, addr):
    c = C(); c.ws = await websockets.connect(url, ping_interval=None, max_size=1<<26, local_addr=(addr, 0), open_timeout=20)
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome; c._handle(s)
    c.task = asyncio.create_task(c._read()); return c
class Room:
    def __init__(s, rid, node, owner, md): s.rid, s.node, s.owner, s.md, s.locked, s.guest_in = rid, node, owner, md, False, False; s.hist = [(time.time(), dict(md), False)]
async def main():
    rooms = []; owners = {}; guests = {}
    for ni, n in enumerate(ON):
        for s in range((ROOMS + 15) // 16):
            c = await conn(URL(n), "127.40.%d.%d" % (ni + 1, s // 3 + 1)); g = await conn(URL(n), "127.41.%d.%d" % (ni + 1, s // 3 + 1))
            owners[(n, s)] = c; guests[(n, s)] = g
            batch = []
            for j in range(min(16, ROOMS - s * 16)):
                md = {k: val() for k in KEYS}; md["x" * 64] = "v" * 256
                r = Room("ch%05d-%s-%04d" % (T, n, s * 16 + j), n, (c, g), md); rooms.append(r)
                batch.append(cm(join=pb.JoinRoom(request_id=j + 1, room=r.rid, room_type="relay", create=pb.RoomOptions(metadata=md))))
            await c.send(*batch)
    await asyncio.sleep(3)
    print("rooms: %d on %s, joined %d; redis used_memory %s" % (len(rooms), ON, sum(len(c.of("joined")) for c in owners.values()), rcli("info", "memory").split("used_memory:")[1].split()[0]))
    stop = time.time() + DUR; killed = [None]; rid = [100]
    found = {"redirect": 0, "joined": 0, "error": 0, "wrong_now": 0, "wrong_3s": 0, "to_dead": 0}
    def md_at(r, t):
        cur = r.hist[0]
        for h in r.hist:
            if h[0] <= t: cur = h
        return cur
    async def churn(r):
        c, g = r.owner
        await asyncio.sleep(rnd.random() * STEP)
        while time.time() < stop:
            if killed[0] and r.node == killed[0]: return
            a = rnd.random(); rid[0] += 1
            if a < 0.6:
                ch = {k: val() for k in rnd.sample(KEYS[:-1], rnd.randint(1, 4))}
                r.md.update(ch)
                await c.send(cm(request=pb.Request(request_id=rid[0], update_room=pb.UpdateRoom(room=r.rid, metadata=ch))))
            elif a < 0.8:
                r.locked = not r.locked
                await c.send(cm(request=pb.Request(request_id=rid[0], update_room=pb.UpdateRoom(room=r.rid, lock=pb.ROOM_LOCK_LOCKED if r.locked else pb.ROOM_LOCK_UNLOCKED))))
            else:
                if r.guest_in: await g.send(cm(leave=pb.LeaveRoom(request_id=rid[0], room=r.rid)))
                else: await g.send(cm(join=pb.JoinRoom(request_id=rid[0], room=r.rid, room_type="relay")))
                r.guest_in = not r.guest_in
            r.hist.append((time.time(), dict(r.md), r.locked)); r.hist = r.hist[-40:]
            for cl in (c, g):
                for _, k, m in cl.msgs:
                    if k == "error": ERRS[m.error.message[:60]] = ERRS.get(m.error.message[:60], 0) + 1
                cl.msgs.clear()
            await asyncio.sleep(STEP)
    byid = {r.rid: r for r in rooms}
    async def searcher():
        s = await conn(URL("n1"), "127.42.0.1"); n = 0
        while time.time() < stop:
            await asyncio.sleep(0.2); n += 1
            f = {"mode": "ab"[n % 2], "k01": "ab"[n // 2 % 2]} if not UNIQUE else {"mode": rnd.choice([r.md["mode"] for r in rooms])}
            i = len(s.msgs); t = time.time()
            await s.send(cm(quick_join=pb.QuickJoin(request_id=n, room_type="relay", filters=f)))
            m = await s.wait(lambda k, m: k in ("joined", "error", "redirect") and getattr(m, k).request_id == n, 5, start=i)
            if not m: continue
            k = m.WhichOneof("kind"); found[k] += 1
            if k == "joined": await s.send(cm(leave=pb.LeaveRoom(request_id=10**6 + n, room=m.joined.room)))
            if k == "redirect" and m.redirect.room in byid:
                r = byid[m.redirect.room]
                if killed[0] == r.node: found["to_dead"] += 1
                fits = lambda md, lk: not lk and all(md.get(a) == b for a, b in f.items())
                _, md, lk = md_at(r, time.time())
                if not fits(md, lk):
                    found["wrong_now"] += 1
                    if not any(fits(h[1], h[2]) for h in [md_at(r, t - 3)] + [h for h in r.hist if h[0] >= t - 3]): found["wrong_3s"] += 1
        await s.close()
    async def killer():
        if not KILL: return
        await asyncio.sleep(DUR / 2)
        os.kill(int(open("%s/%s.pid" % (RUN, KILL)).read()), signal.SIGKILL); killed[0] = KILL; print("SIGKILL", KILL, "at", round(DUR / 2), "s")
    done = [False]
    async def keepalive():  # heartbeat: a session silent for 35 s is closed
        while not done[0]:
            for c in list(owners.values()) + list(guests.values()):
                if not c.closed:
                    try: await c.send(cm(ping=pb.Ping(nonce=1)))
                    except Exception: pass
            for _ in range(50):
                if done[0]: return
                await asyncio.sleep(0.2)
    ka = asyncio.create_task(keepalive())
    t0 = time.time()
    await asyncio.gather(searcher(), killer(), *[churn(r) for r in rooms])
    print("churn %.0fs done; searcher on n1: %s; owner/guest errors %s" % (time.time() - t0, found, ERRS))
    last = 0
    for at in AUDIT_AT:
        await asyncio.sleep(max(0, at - last)); last = at
        audit(rooms, killed[0], at)
    done[0] = True; await ka
    for c in list(owners.values()) + list(guests.values()): await c.close()
LUA = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "index_check.lua")).read()
def audit(rooms, dead, at):
    """One atomic read of the index (index_check.lua), then compared with the owners' records."""
    out = rcli("eval", LUA, "0", "tickrelay:", "relay").split("\n")
    head, rest = out[0], out[1:]
    opens = {rest[i]: (float(rest[i + 1]), rest[i + 2]) for i in range(0, len(rest) - 2, 3)}
    live = {r.rid: r for r in rooms if r.node != dead}
    dead_ids = sum(1 for x in opens if x.startswith("ch") and x not in live)
    not_listed = 0; listed_locked = 0; wrong_md = 0; wrong_score = 0
    for r in live.values():
        o = opens.get(r.rid)
        if r.locked:
            listed_locked += o is not None; continue
        if not o: not_listed += 1; continue
        if sorted(o[1].split()) != sorted(dg(k, v) for k, v in r.md.items()): wrong_md += 1
        if o[0] != 1 + r.guest_in: wrong_score += 1
    print("audit +%.0fs: %s | vs owners: dead-node ids in open %d, unlocked live rooms %d not listed %d, locked but listed %d, entries != metadata %d, score != members %d; used_memory %s" % (
        at, head, dead_ids, sum(1 for r in live.values() if not r.locked), not_listed, listed_locked, wrong_md, wrong_score,
        rcli("info", "memory").split("used_memory:")[1].split()[0]))
asyncio.run(main())
