"""Single node: with more than 2,000 open rooms a quick join scans 2,000 from a random one.
ATK open non-matching rooms (1 member each, created from ATK/60 addresses, 16 per session);
one honest open room matching filter mode=X with 1 member; H honest quick joins (each
closes after its answer, so the honest room stays at 1 member + ...). How many find it?"""
import asyncio, os, time
from lib18 import *
URL = "ws://127.0.0.1:7951/ws"; PID = int(open("r1.pid").read())
ATK = int(os.environ.get("ATK", "6000")); H = int(os.environ.get("H", "20"))
async def conn(addr):
    c = C(); c.ws = await websockets.connect(URL, ping_interval=None, max_size=1<<26, local_addr=(addr, 0), open_timeout=30)
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome; c._handle(s)
    c.task = asyncio.create_task(c._read()); return c
async def main():
    host = await conn("127.0.0.1")
    await host.send(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"mode": "X"})))
    m = await host.wait(lambda k, m: k in ("joined", "error")); hroom = m.joined.room
    atk = []; sess = (ATK + 15) // 16
    for s in range(sess):
        addr = "127.11.%d.%d" % ((s // 3) // 200 + 1, (s // 3) % 200 + 1)   # 3 sessions = 48 rooms per address (< burst 60)
        c = await conn(addr)
        await c.send(*[cm(join=pb.JoinRoom(request_id=j + 1, room="a%05d" % (s * 16 + j), room_type="relay", create=pb.RoomOptions(metadata={"mode": "other"}))) for j in range(16)])
        atk.append(c)
    await asyncio.sleep(2)
    print("attacker: %d rooms joined, errors %d; relay RSS %d MiB" % (sum(len(c.of("joined")) for c in atk), sum(len(c.of("error")) for c in atk), rss_kib(PID) // 1024))
    hits = 0; lat = []
    for i in range(H):
        h = await conn("127.12.0.%d" % (i + 1)); t = time.time()
        await h.send(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"mode": "X"})))
        m = await h.wait(lambda k, m: k in ("joined", "error")); lat.append((time.time() - t) * 1000)
        if m.WhichOneof("kind") == "joined" and m.joined.room == hroom: hits += 1
        await h.close(); await asyncio.sleep(1.1)   # leave/rejoin spacing
    print("ATK=%d: %d of %d honest quick joins found the matching room (%s); mean latency %.1f ms" % (ATK, hits, H, hroom, sum(lat) / len(lat)))
    for c in atk + [host]: await c.close()
asyncio.run(main())
