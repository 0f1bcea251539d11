"""Every request answered exactly once, with its own request_id (and room), across
odd refusals; in cluster mode too (URL=...)."""
import asyncio, os, time
from lib18 import *
URLX = os.environ.get("URL", URL)
T = int(time.time()) % 100000
def J(rid, room, rt="relay", **kw): return cm(join=pb.JoinRoom(request_id=rid, room=room, room_type=rt, **kw))
def R(rid, **kw): return cm(request=pb.Request(request_id=rid, **kw))
async def main():
    a = await C().open(url=URLX); b = await C().open(url=URLX)
    own = "own%d" % T
    await a.join(own, 1)
    await asyncio.sleep(0.2)
    cases = {
        101: J(101, ""), 102: J(102, "x" * 129), 103: J(103, "bad\x01"), 104: J(104, "ut%d" % T, "nosuchtype"),
        105: J(105, own, "arena"), 106: J(106, "md%d" % T, member_data=b"x" * 1025),
        107: cm(leave=pb.LeaveRoom(request_id=107, room="never%d" % T)),
        108: R(108, resync=pb.Resync(room="never%d" % T)),
        109: R(109, update_room=pb.UpdateRoom(room=own, metadata={"a": "b"})),  # b not member
        110: cm(quick_join=pb.QuickJoin(request_id=110, filters={"": "x"})),
        111: cm(quick_join=pb.QuickJoin(request_id=111, exclude=["e%d" % i for i in range(65)])),
        112: cm(refresh_token=pb.RefreshToken(request_id=112, token="x")),
        113: R(113),  # request with no kind
        114: J(114, "mdx%d" % T, create=pb.RoomOptions(metadata={"k%d" % i: "v" for i in range(17)})),
        115: cm(quick_join=pb.QuickJoin(request_id=115, room_type="t" * 65)),
        116: R(116, update_room=pb.UpdateRoom(room="never%d" % T, lock=1)),
        117: R(117, list_rooms=pb.ListRooms(limit=100000, after="\x00")),
        118: J(118, own, seat="0" * 32),
    }
    for rid, m in cases.items():
        await b.send(m)
        await asyncio.sleep(0.05)
    # owner-side cases on a
    ca = {201: R(201, update_room=pb.UpdateRoom(room=own, lock=7)), 202: R(202, update_room=pb.UpdateRoom(room=own, owner=99999)),
          203: R(203, update_room=pb.UpdateRoom(room=own, metadata={"k": "v" * 257})), 204: J(204, own), 205: J(205, own),
          206: R(206, resync=pb.Resync(room=own)), 207: R(207, resync=pb.Resync(room=own))}
    for rid, m in ca.items(): await a.send(m)
    # 17 rooms
    for i in range(17): await b.send(J(300 + i, "many%d-%d" % (T, i)))
    await asyncio.sleep(3)
    for c, ids in ((b, list(cases) + list(range(300, 317))), (a, list(ca))):
        got = {}
        for t, k, m in c.msgs:
            if k in ("joined", "error", "response", "left", "redirect", "token_refreshed"):
                x = getattr(m, k); got.setdefault(x.request_id, []).append((k, getattr(x, "code", None), getattr(x, "room", ""), getattr(x, "message", "")[:60]))
        for rid in ids:
            print(rid, got.pop(rid, "NO ANSWER"))
        print("others:", got)
asyncio.run(main())
