"""Matchmaking edges: quick join whose filters + create.metadata exceed 16 entries together, 17 filters, 65 excludes, private rooms reached by filters/listing, and a lock racing 40 quick joins."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common17 import pb, connect, env, cm, join, decode


async def sess():
    ws = await connect(); await ws.recv(); return ws


async def ask(ws, msg, pred, t=3):
    await ws.send(env(msg))
    end = time.time() + t
    while time.time() < end:
        try:
            for m in decode(await asyncio.wait_for(ws.recv(), end - time.time())).messages:
                if pred(m):
                    return m
        except asyncio.TimeoutError:
            break
    return None


def ans(m):
    return m.WhichOneof("kind") in ("joined", "error", "response")


def short(m):
    if m is None:
        return "no answer"
    k = m.WhichOneof("kind")
    if k == "joined":
        return f"joined {m.joined.room} metadata entries={len(m.joined.metadata)}"
    if k == "error":
        return f"error {pb.ErrorCode.Name(m.error.code)} {m.error.message[:70]}"
    return str(m)[:120]


async def main():
    a = await sess()
    f16 = {f"f{i:02d}": "v" * 256 for i in range(16)}
    c16 = {f"c{i:02d}": "w" * 256 for i in range(16)}
    m = await ask(a, cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters=f16, create=pb.RoomOptions(metadata=c16))), ans)
    print("16 filters + 16 create entries ->", short(m))
    lst = await ask(a, cm(request=pb.Request(request_id=9, list_rooms=pb.ListRooms(room_type="relay"))), ans)
    if lst and lst.WhichOneof("kind") == "response":
        print("  listed:", [(r.room, len(r.metadata)) for r in lst.response.rooms.rooms])
    b = await sess()
    f17 = {f"g{i:02d}": "v" for i in range(17)}
    print("17 filters ->", short(await ask(b, cm(quick_join=pb.QuickJoin(request_id=2, room_type="relay", filters=f17)), ans)))
    print("65 excludes ->", short(await ask(b, cm(quick_join=pb.QuickJoin(request_id=3, room_type="relay", exclude=[f"x{i}" for i in range(65)])), ans)))
    print("filter key 65 bytes ->", short(await ask(b, cm(quick_join=pb.QuickJoin(request_id=4, room_type="relay", filters={"k" * 65: "v"})), ans)))
    # private room: created by id; can a quick join with its metadata, or a listing, find it?
    p = await sess()
    print("private create ->", short(await ask(p, join("secret-room", 1, "relay", create=pb.RoomOptions(metadata={"mode": "priv"}, private=True)), ans)))
    q = await sess()
    print("quick join mode=priv ->", short(await ask(q, cm(quick_join=pb.QuickJoin(request_id=5, room_type="relay", filters={"mode": "priv"})), ans)))
    lst = await ask(q, cm(request=pb.Request(request_id=6, list_rooms=pb.ListRooms(filters={"mode": "priv"}))), ans)
    print("list mode=priv ->", [r.room for r in lst.response.rooms.rooms] if lst and lst.WhichOneof("kind") == "response" else short(lst))
    # lock race: owner o creates room by quick join (filters race=1), 40 sessions quick-join while o locks
    o = await sess()
    m = await ask(o, cm(quick_join=pb.QuickJoin(request_id=7, room_type="relay", filters={"race": "1"})), ans)
    room = m.joined.room
    js = [await sess() for _ in range(40)]
    lock = cm(request=pb.Request(request_id=8, update_room=pb.UpdateRoom(room=room, lock=pb.ROOM_LOCK_LOCKED)))
    t_lock = asyncio.ensure_future(ask(o, lock, lambda m: m.WhichOneof("kind") in ("response", "error")))
    res = await asyncio.gather(*[ask(j, cm(quick_join=pb.QuickJoin(request_id=10 + i, room_type="relay", filters={"race": "1"})), ans) for i, j in enumerate(js)])
    lk = await t_lock
    into = sum(1 for r in res if r and r.WhichOneof("kind") == "joined" and r.joined.room == room)
    print(f"lock race: lock answered {short(lk)[:60]}; {into} of 40 quick joins landed in the locked room, others {len(set(r.joined.room for r in res if r and r.WhichOneof('kind')=='joined'))-(1 if into else 0)} new rooms")
    late = await sess()
    m = await ask(late, cm(quick_join=pb.QuickJoin(request_id=99, room_type="relay", filters={"race": "1"})), ans)
    print("quick join after lock answered ->", short(m), "(same room)" if m and m.WhichOneof("kind") == "joined" and m.joined.room == room else "")

asyncio.run(main())
