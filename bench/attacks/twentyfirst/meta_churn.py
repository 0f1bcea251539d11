"""Registry growth: ROOMS rooms on each node of ON, 16 metadata entries each; every PERIOD s
each owner sets 15 of them to new unique values (UpdateRoom), so each renewal (every 2 s)
lists the room under 15 new entry digests: open-entries:relay gains ~7.5 digests/s per room
until the once-a-minute sweep (30 s at most) forgets the emptied ones. Runs DUR s; run
monitor.sh beside it. Sessions ping every 10 s (heartbeat)."""
import asyncio, os, time
from lib18 import *
ROOMS = int(os.environ.get("ROOMS", "500")); ON = os.environ.get("ON", "n1,n2").split(","); PERIOD = float(os.environ.get("PERIOD", "1"))
DUR = float(os.environ.get("DUR", "240")); T = int(time.time()) % 100000
URL = lambda n: "ws://127.0.0.1:%d/ws" % (8120 + int(n[1:]))
KEYS = ["k%02d" % i for i in range(16)]
async def conn(url, addr):
    c = C(); c.ws = await websockets.connect(url, ping_interval=None, max_size=1<<26, local_addr=(addr, 0), open_timeout=20)
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome; c._handle(s)
    c.task = asyncio.create_task(c._read()); return c
async def main():
    owners = []
    for ni, n in enumerate(ON):
        for s in range((ROOMS + 15) // 16):
            c = await conn(URL(n), "127.50.%d.%d" % (ni + 1, s // 3 + 1))
            ids = ["mc%05d-%s-%04d" % (T, n, s * 16 + j) for j in range(min(16, ROOMS - s * 16))]
            await c.send(*[cm(join=pb.JoinRoom(request_id=j + 1, room=r, room_type="relay", create=pb.RoomOptions(metadata={k: "0" for k in KEYS}))) for j, r in enumerate(ids)])
            owners.append((c, ids))
    await asyncio.sleep(3)
    print("rooms: %d joined of %d" % (sum(len(c.of("joined")) for c, _ in owners), sum(len(i) for _, i in owners)), flush=True)
    stop = time.time() + DUR; n = [0]; errs = {}
    async def owner(c, ids, k):
        await asyncio.sleep(k % 50 * PERIOD / 50)
        last_ping = 0
        while time.time() < stop:
            n[0] += 1
            await c.send(*[cm(request=pb.Request(request_id=n[0] * 16 + j, update_room=pb.UpdateRoom(room=r, metadata={kk: "u%d-%d" % (n[0], j) for kk in KEYS[1:]}))) for j, r in enumerate(ids)])
            if time.time() - last_ping > 10: await c.send(cm(ping=pb.Ping(nonce=1))); last_ping = time.time()
            for _, kind, m in c.msgs:
                if kind == "error": errs[m.error.message[:50]] = errs.get(m.error.message[:50], 0) + 1
            c.msgs.clear()
            await asyncio.sleep(PERIOD)
    await asyncio.gather(*[owner(c, ids, k) for k, (c, ids) in enumerate(owners)])
    print("done; updates sent %d; errors %s" % (n[0] * 16, errs))
    for c, _ in owners: await c.close()
asyncio.run(main())
