"""One refused join, then what others see of its room: an address whose creator burst is
spent (100 creations on node 2 from 127.0.4.200) joins ` phantom-probe`; node 3 lists rooms
and node 1 quick-joins the relay type (no other open room exists). Bounded: 40 s."""
import asyncio, collections, time
from c6 import *
RUN = int(time.time()) % 100000


async def main():
    a = await connect(1, src="127.0.4.200")
    c = collections.Counter()
    for k in range(100):
        await a.send(env(join("burn-%d-%d" % (RUN, k), k + 1)))
        m, _ = await wait_for(a, lambda m: m.WhichOneof("kind") in ("joined", "error"), 3)
        c[kind(m) if m else None] += 1
        if m is not None and m.WhichOneof("kind") == "joined":
            await a.send(env(leave(m.joined.room, 0)))
    pj("burning the creator budget:", dict(c))
    # (after the fixes) the budget refills at 2/s: try fresh ids until one is refused
    for k in range(20):
        PID = "%d-%d" % (RUN, k)
        await a.send(env(join(" phantom-probe-%s" % PID, 999)))
        m, _ = await wait_for(a, lambda m: m.WhichOneof("kind") in ("joined", "error"), 3)
        if m is None or m.WhichOneof("kind") != "joined":
            break
        await a.send(env(leave(m.joined.room, 0)))
    pj("probe attempts:", k + 1)
    pj("refused join:", kind(m), m.error.message[:90] if m.WhichOneof("kind") == "error" else "")
    pj("Redis: room key", redis("hgetall", "tickrelay:room: phantom-probe-%s" % PID).split("\n")[:2], "pttl", redis("pttl", "tickrelay:room: phantom-probe-%s" % PID),
       "in rooms:", redis("zscore", "tickrelay:rooms", " phantom-probe-%s" % PID), "in open:relay:", redis("zscore", "tickrelay:open:relay", " phantom-probe-%s" % PID))
    l = await connect(2)
    await l.send(env(pb.ClientMessage(request=pb.Request(request_id=1, list_rooms=pb.ListRooms(limit=3)))))
    m, _ = await wait_for(l, lambda m: m.WhichOneof("kind") == "response", 3)
    pj("node 3 lists:", [(r.room, r.members) for r in m.response.rooms.rooms])
    q = await connect(0)
    await q.send(env(pb.ClientMessage(quick_join=pb.QuickJoin(request_id=5, room_type="relay"))))
    m, _ = await wait_for(q, lambda m: m.WhichOneof("kind") in ("joined", "redirect", "error"), 3)
    pj("quick join on node 1:", kind(m), m.redirect.room if m.WhichOneof("kind") == "redirect" else (m.joined.room if m.WhichOneof("kind") == "joined" else ""))

asyncio.run(asyncio.wait_for(main(), 40))
