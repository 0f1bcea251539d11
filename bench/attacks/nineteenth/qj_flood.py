"""Quick-join flood against a node holding ~10,000 open rooms: A source addresses
(one creator each) send R quick joins a second each with a filter no room matches (every
search scans 2,000 rooms, then fails to create one: the node is at max_rooms). Honest
client H in its own room: ping RTT and state frames/s. Reports the relay's CPU."""
import asyncio, os, time, statistics
from lib18 import *
URL = os.environ.get("URL", "ws://127.0.0.1:7951/ws"); PID = int(open(os.environ.get("PIDF", "r1.pid")).read())
A = int(os.environ.get("A", "100")); R = float(os.environ.get("R", "10")); DUR = float(os.environ.get("DUR", "10"))
async def conn(addr):
    c = C(); c.ws = await websockets.connect(URL, ping_interval=None, max_size=1<<26, local_addr=(addr, 0), open_timeout=20)
    await c.ws.recv(); c.task = asyncio.create_task(c._read()); return c
STATS = {}
async def flooder(c, stop):
    rid = 1
    while time.time() < stop:
        if os.environ.get("MSG") == "ping":
            await c.send(cm(ping=pb.Ping(nonce=rid)))
        else:
            await c.send(cm(quick_join=pb.QuickJoin(request_id=rid, room_type="relay", filters={"mode": "nomatch-%d-%d" % (id(c), rid)})))
        rid += 1
        for t, k, m in c.msgs:
            key = k if k != "error" else "err%d" % m.error.code
            STATS[key] = STATS.get(key, 0) + 1
        c.msgs.clear()
        await asyncio.sleep(1 / R)
async def honest(h, stop, rtts):
    n = 0
    while time.time() < stop:
        n += 1; t = time.time()
        i = len(h.msgs)
        await h.send(cm(ping=pb.Ping(nonce=n)))
        m = await h.wait(lambda k, m: k == "pong" and m.pong.nonce == n, 2, start=i)
        rtts.append((time.time() - t) * 1000 if m else 2000)
        await asyncio.sleep(0.1)
async def main():
    ROLE = os.environ.get("ROLE", "both")
    h = await C().open(url=URL); await h.join("cfg09989", 1)
    global A
    if ROLE == "honest": A = 0
    await h.send(cm(input=pb.Input(room="cfg09989", seq=1, writes=pb.EntityWrites(create=[pb.Entity(id=1, fields=[pb.Field(id=1, int=1)])]))))
    fl = []
    if A:
        fl = await asyncio.gather(*[conn("127.8.%d.%d" % (i // 200 + 1, i % 200 + 1)) for i in range(A)])
    await asyncio.sleep(1)
    c0 = cpu_secs(PID); f0 = h.frames; t0 = time.time(); stop = t0 + DUR; rtts = []
    # honest keeps writing its entity each tick-ish so frames flow
    async def writer():
        s = 2
        while time.time() < stop:
            await h.send(cm(input=pb.Input(room="cfg09989", seq=s, writes=pb.EntityWrites(update=[pb.EntityUpdate(id=1, fields=[pb.Field(id=1, int=s)])]))))
            s += 1; await asyncio.sleep(0.04)
    if ROLE == "flood":
        c0 = cpu_secs(PID); t0 = time.time()
        await asyncio.gather(*[flooder(c, stop) for c in fl]); print("flood done", STATS, "relay CPU %.2f cores" % ((cpu_secs(PID) - c0) / (time.time() - t0))); return
    await asyncio.gather(honest(h, stop, rtts), writer(), *[flooder(c, stop) for c in fl])
    el = time.time() - t0
    cpu = (cpu_secs(PID) - c0) / el
    qj_err = {}
    print("A=%d R=%.0f: relay CPU %.2f cores, RSS %d MiB; honest RTT p50 %.1f p99 %.1f max %.1f ms; frames/s %.1f" % (
        A, R, cpu, rss_kib(PID) // 1024, statistics.median(rtts), sorted(rtts)[int(len(rtts) * .99) - 1], max(rtts), (h.frames - f0) / el))
    for c in fl: await c.close()
    await h.close()
asyncio.run(main())
