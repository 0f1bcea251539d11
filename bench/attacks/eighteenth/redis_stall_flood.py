"""Redis stalls (SIGSTOP) for STALL s; meanwhile A attacker sessions on n1 send joins
of fresh rooms / ListRooms / QuickJoins at their rate limit (all need the directory).
Honest H in a room on n1: frames/s and ping RTT. n1 RSS/CPU. Then SIGCONT."""
import asyncio, os, random, signal, time, subprocess
from lib18 import *
N1 = "ws://127.0.0.1:7861/ws"; PID = int(open("n1.pid").read()); RPID = int(open("redis.pid").read())
A = int(os.environ.get("A", "60")); STALL = float(os.environ.get("STALL", "15")); MODE = os.environ.get("MODE", "join")
def src(i): return ("127.9.%d.%d" % (i // 200, i % 200 + 1), 0)
async def attacker(i, end, st):
    try:
        c = C(); c.ws = await websockets.connect(N1, max_size=1 << 24, ping_interval=None, local_addr=src(i), open_timeout=5)
        await c.ws.recv(); c.task = asyncio.create_task(c._read())
    except Exception as e:
        st["connfail"] += 1; return
    n = 0
    while time.time() < end and c.closed is None:
        msgs = []
        for j in range(20):
            n += 1
            if MODE == "join": msgs.append(cm(join=pb.JoinRoom(request_id=n, room="f%d-%d-%d" % (i, n, random.randint(0, 1 << 30)), room_type="relay")))
            elif MODE == "list": msgs.append(cm(request=pb.Request(request_id=n, list_rooms=pb.ListRooms(filters={"z": "z"}))))
            else: msgs.append(cm(quick_join=pb.QuickJoin(request_id=n, filters={"z": str(n)})))
        try: await c.send(*msgs)
        except Exception: break
        st["sent"] += len(msgs)
        await asyncio.sleep(0.45)
    st["closed"].append(c.closed)
    errs = {}
    for t, k, m in c.msgs:
        if k == "error": errs[m.error.code] = errs.get(m.error.code, 0) + 1
        else: errs[k] = errs.get(k, 0) + 1
    for k, v in errs.items(): st["answers"][k] = st["answers"].get(k, 0) + v
    await c.close()
async def main():
    room = "hon%d" % int(time.time())
    h = await C().open(url=N1); j = await h.join(room, 1); print("honest", j.WhichOneof("kind"))
    h2 = await C().open(url=N1); await h2.join(room, 1)
    st = {"sent": 0, "connfail": 0, "closed": [], "answers": {}}
    rtts = []; t0 = time.time()
    async def pinger(end):
        n = 0
        while time.time() < end:
            n += 1; i0 = len(h.msgs); s = time.time()
            await h.send(cm(ping=pb.Ping(nonce=n)), cm(input=pb.Input(room=room, seq=n + 1, writes=pb.EntityWrites(create=[pb.Entity(id=n, fields=[pb.Field(id=1, int=n)])]) if n < 60 else pb.EntityWrites(update=[pb.EntityUpdate(id=1, fields=[pb.Field(id=1, int=n)])]))))
            m = await h.wait(lambda k, m: k == "pong" and m.pong.nonce == n, 5, start=i0)
            rtts.append((time.time() - t0, (time.time() - s) * 1000 if m else None))
            await asyncio.sleep(0.2)
    def sample(tag):
        print(f"{tag} t={time.time()-t0:.1f} n1 rss {rss_kib(PID)//1024} MiB cpu {cpu_secs(PID):.1f} h frames {h.frames} h2 frames {h2.frames} sent {st['sent']}", flush=True)
    end = time.time() + STALL + 12
    pt = asyncio.create_task(pinger(end))
    sample("before")
    await asyncio.sleep(2)
    os.kill(RPID, signal.SIGSTOP); print("redis stopped", flush=True); tstop = time.time()
    atk = [asyncio.create_task(attacker(i, tstop + STALL + 3, st)) for i in range(A)]
    while time.time() < tstop + STALL:
        await asyncio.sleep(3); sample("stalled")
    os.kill(RPID, signal.SIGCONT); print("redis continued", flush=True)
    while time.time() < end:
        await asyncio.sleep(3); sample("after")
    await asyncio.gather(*atk); await pt
    print("answers", st["answers"], "closes", {str(x): st["closed"].count(x) for x in set(map(str, st["closed"]))})
    lat = [r for _, r in rtts if r is not None]; miss = sum(1 for _, r in rtts if r is None)
    lat.sort(); print("honest RTT ms p50 %.1f p99 %.1f max %.1f missing %d" % (lat[len(lat)//2], lat[int(len(lat)*.99)], lat[-1], miss))
    print("honest closed?", h.closed, h2.closed, "Left:", [m.left for m in h.of("left")][:2])
    slow = [(round(t, 1), round(r)) for t, r in rtts if r is None or r > 100]; print("slow pings", slow[:20])
asyncio.run(main())
