"""Quick-join seat reservations: attackers quick-join and drop the connection at once
(or leave at once), many times; does the room still admit honest quick joins, and
are member counts right? Room type relay with max_members=M (start relay with --set)."""
import asyncio, os, time
from lib18 import *
M = int(os.environ.get("M", "2")); N = int(os.environ.get("N", "200"))
async def main():
    host = await C("host").open()
    r = await host.join("qjroom", 1, create=pb.RoomOptions(metadata={"mode": "x"}))
    print("host joined", r.WhichOneof("kind") if r else None)
    # attackers: quick join then abort immediately
    opened = 0
    for i in range(N):
        a = await C().open()
        await a.send(cm(quick_join=pb.QuickJoin(request_id=7, room_type="relay", filters={"mode": "x"})))
        if i % 2: a.abort()
        else: await a.ws.close(1000)  # normal close -> leave
        opened += 1
        if i % 15 == 14: await asyncio.sleep(0.15)
    await asyncio.sleep(1.5)
    # list
    l = await C().open()
    await l.send(cm(request=pb.Request(request_id=9, list_rooms=pb.ListRooms(room_type="relay"))))
    resp = await l.wait(lambda k, m: k == "response")
    for ri in resp.response.rooms.rooms: print("listed", ri.room, ri.members, ri.max_members, dict(ri.metadata))
    # honest quick join
    h = await C("h").open()
    await h.send(cm(quick_join=pb.QuickJoin(request_id=5, room_type="relay", filters={"mode": "x"})))
    m = await h.wait(lambda k, m: k in ("joined", "error"))
    print("honest quick join ->", m)
    await asyncio.sleep(22)
    await l.send(cm(request=pb.Request(request_id=10, list_rooms=pb.ListRooms(room_type="relay"))))
    resp = await l.wait(lambda k, m: k == "response" and m.response.request_id == 10)
    for ri in resp.response.rooms.rooms: print("after grace listed", ri.room, ri.members, ri.max_members, dict(ri.metadata))
asyncio.run(main())
