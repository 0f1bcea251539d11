"""Cluster quick joins that fit nothing read the directory 64 rooms a round trip up to
512 (8 ZRANGE + 512 HGETALL in Redis per search). ROOMS open rooms (1 member each, other
metadata) on n2; A addresses on n1 each send R quick joins/s that match nothing. Measures
Redis CPU, relay CPU, directory errors, and an honest pair's frames/s and ping RTT on n2."""
import asyncio, os, time, statistics, subprocess
from lib18 import *
N1 = "ws://127.0.0.1:7961/ws"; N2 = "ws://127.0.0.1:7962/ws"
ROOMS = int(os.environ.get("ROOMS", "600")); A = int(os.environ.get("A", "50")); R = float(os.environ.get("R", "10")); DUR = float(os.environ.get("DUR", "12"))
RPID = int(open("redis.pid").read()); P1 = int(open("n1.pid").read()); P2 = int(open("n2.pid").read())
async def conn(url, addr):
    c = C(); c.ws = await websockets.connect(url, ping_interval=None, max_size=1<<26, local_addr=(addr, 0), open_timeout=20)
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome; c._handle(s)
    c.task = asyncio.create_task(c._read()); return c
STATS = {}
async def flooder(c, stop, tag):
    rid = 1
    while time.time() < stop:
        await c.send(cm(quick_join=pb.QuickJoin(request_id=rid, room_type="relay", filters={"mode": "none-%s-%d" % (tag, rid)})))
        rid += 1
        for t, k, m in c.msgs:
            key = k if k != "error" else "err%d" % m.error.code
            STATS[key] = STATS.get(key, 0) + 1
            if k == "joined":
                await c.send(cm(leave=pb.LeaveRoom(request_id=1, room=m.joined.room)))
        c.msgs.clear()
        await asyncio.sleep(1 / R)
async def main():
    atk = []
    rooms = ["zz%04d" % i for i in range(ROOMS)]
    for s in range((ROOMS + 15) // 16):
        c = await conn(N2, "127.7.%d.%d" % (s // 4 + 1, s % 4 + 1))
        await c.send(*[cm(join=pb.JoinRoom(request_id=j + 1, room=r, room_type="relay", create=pb.RoomOptions(metadata={"mode": "other"}))) for j, r in enumerate(rooms[s * 16:(s + 1) * 16])])
        atk.append(c)
    HN = N1 if os.environ.get("HN") == "n1" else N2; h1 = await conn(HN, "127.0.0.1"); h2 = await conn(HN, "127.0.0.1")
    await h1.join("honest", 1); await h2.join("honest", 1)
    await h1.send(cm(input=pb.Input(room="honest", seq=1, writes=pb.EntityWrites(create=[pb.Entity(id=1, fields=[pb.Field(id=1, int=1)])]))))
    fl = [await conn(N1, "127.10.%d.%d" % (i // 200 + 1, i % 200 + 1)) for i in range(A)]
    await asyncio.sleep(3)
    stop = time.time() + DUR; t0 = time.time(); r0, c1, c2 = cpu_secs(RPID), cpu_secs(P1), cpu_secs(P2); f0 = h2.frames; rtts = []
    async def honest():
        s = 2
        while time.time() < stop:
            i = len(h1.msgs); t = time.time()
            await h1.send(cm(input=pb.Input(room="honest", seq=s, writes=pb.EntityWrites(update=[pb.EntityUpdate(id=1, fields=[pb.Field(id=1, int=s)])]))), cm(ping=pb.Ping(nonce=s)))
            m = await h1.wait(lambda k, m, s=s: k == "pong" and m.pong.nonce == s, 2, start=i)
            rtts.append((time.time() - t) * 1000 if m else 2000); s += 1
            await asyncio.sleep(0.05)
    await asyncio.gather(honest(), *[flooder(c, stop, i) for i, c in enumerate(fl)])
    el = time.time() - t0
    print("ROOMS=%d A=%d R=%.0f: redis CPU %.2f, n1 %.2f, n2 %.2f cores; honest frames/s %.1f, RTT p50 %.0f p99 %.0f max %.0f ms; closed %s %s" % (
        ROOMS, A, R, (cpu_secs(RPID) - r0) / el, (cpu_secs(P1) - c1) / el, (cpu_secs(P2) - c2) / el, (h2.frames - f0) / el,
        statistics.median(rtts), sorted(rtts)[int(len(rtts) * .99) - 1], max(rtts), h1.closed, h2.closed))
    print("flood answers:", STATS, "= %.0f/s" % (sum(STATS.values()) / el))
    left = [m.left for c in [h1, h2] + atk for m in c.of("left")]
    print("Left messages to members:", len(left), [(l.room, l.reason) for l in left[:3]])
    for c in fl + atk + [h1, h2]: await c.close()
asyncio.run(main())
