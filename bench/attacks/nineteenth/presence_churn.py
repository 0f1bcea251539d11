"""Presence churn: K attacker members of an honest room cycle MODE=rejoin (leave, join
again, every PERIOD s) or MODE=away (abort the connection, resume after 1.1 s) for DUR s.
Honest member H: presence messages/s, bytes/s received, frames/s, ping RTT; relay CPU."""
import asyncio, os, time, statistics
from lib18 import *
URL = "ws://127.0.0.1:7951/ws"; PID = int(open("r1.pid").read())
K = int(os.environ.get("K", "60")); MODE = os.environ.get("MODE", "rejoin"); DUR = float(os.environ.get("DUR", "10")); PERIOD = float(os.environ.get("PERIOD", "1.05"))
ROOM = "pc%d" % int(time.time())
async def conn(addr, q=""):
    c = C(); c.ws = await websockets.connect(URL + (("?" + q) if q else ""), ping_interval=None, max_size=1<<26, local_addr=(addr, 0))
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome; c._handle(s)
    c.task = asyncio.create_task(c._read()); return c
async def main():
    h = await conn("127.0.0.1"); await h.join(ROOM, 1)
    await h.send(cm(input=pb.Input(room=ROOM, seq=1, writes=pb.EntityWrites(create=[pb.Entity(id=1, fields=[pb.Field(id=1, bytes=b"x" * 1000)])]))))
    atk = [await conn("127.13.0.%d" % (i + 1)) for i in range(K)]
    for c in atk: await c.join(ROOM, 1)
    await asyncio.sleep(1.5)
    nbytes = [0]; orig = h._handle
    t0 = time.time(); stop = t0 + DUR; c0 = cpu_secs(PID); p0 = len(h.of("presence")); f0 = h.frames; rtts = []
    async def cycle(i):
        c = atk[i]; rid = 2
        await asyncio.sleep(i * PERIOD / K)
        while time.time() < stop:
            if MODE == "rejoin":
                await c.send(cm(leave=pb.LeaveRoom(request_id=rid, room=ROOM))); await asyncio.sleep(0.05)
                await c.send(cm(join=pb.JoinRoom(request_id=rid + 1, room=ROOM))); rid += 2
                await asyncio.sleep(PERIOD)
            else:
                tok, last = c.welcome.resume_token, c.last_seq
                c.abort(); await asyncio.sleep(1.1)
                c = await conn("127.13.0.%d" % (i + 1), "resume=%s&received=%d" % (tok, last)); atk[i] = c
                await asyncio.sleep(0.3)
    async def honest():
        n = 0
        while time.time() < stop:
            n += 1; i = len(h.msgs); t = time.time()
            await h.send(cm(ping=pb.Ping(nonce=n)))
            m = await h.wait(lambda k, m: k == "pong" and m.pong.nonce == n, 2, start=i)
            rtts.append((time.time() - t) * 1000 if m else 2000); await asyncio.sleep(0.1)
    await asyncio.gather(honest(), *[cycle(i) for i in range(K)])
    el = time.time() - t0
    pres = h.of("presence")[p0:]
    changes = {}
    for m in pres: changes[m.presence.change] = changes.get(m.presence.change, 0) + 1
    print("MODE=%s K=%d: honest presence %.1f/s %s, frames/s %.1f, RTT p50 %.0f max %.0f ms; relay CPU %.2f cores, RSS %d MiB; honest closed %s" % (
        MODE, K, len(pres) / el, changes, (h.frames - f0) / el, statistics.median(rtts), max(rtts), (cpu_secs(PID) - c0) / el, rss_kib(PID) // 1024, h.closed))
    for c in atk: await c.close()
    await h.close()
asyncio.run(main())
