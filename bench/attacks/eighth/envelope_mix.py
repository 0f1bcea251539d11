"""Interleavings within one envelope, correlation ids, numbering edges, quick-join
filters/metadata edges. Prints every answer in order. Anonymous relay; TR_URL set."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/attacks: tr.py
from tr import *
def short(m):
    k = m.WhichOneof("kind")
    if k == "error": return f"error(code={m.error.code}, rid={m.error.request_id}, room={m.error.room[:20]!r}, {m.error.message[:90]!r})"
    if k == "joined": return f"joined(rid={m.joined.request_id}, room={m.joined.room[:40]!r}, lis={m.joined.last_input_seq})"
    if k == "left": return f"left(rid={m.left.request_id}, room={m.left.room!r}, reason={m.left.reason})"
    if k == "state": return f"state({m.state.room[:20]}, t={m.state.tick}, b={m.state.baseline_tick}, lis={m.state.last_input_seq}, +{len(m.state.added)})"
    if k == "response": return f"response(rid={m.response.request_id}, {str(m.response)[:150]!r})"
    if k == "pong": return f"pong(ev={m.pong.events_received}, nonce={m.pong.nonce})"
    return k
async def case(name, msgs, secs=1.2, ws=None, first_event_seq=0):
    own = ws is None
    if own:
        ws = await connect(); decode(await ws.recv())
    e = pb.ClientEnvelope(first_event_seq=first_event_seq)
    for m in msgs: e.messages.append(m)
    await ws.send(e.SerializeToString())
    got = await drain(ws, secs)
    print(f"== {name}: " + "; ".join(short(m) for m in got if m.WhichOneof("kind") != "state" or m.state.baseline_tick == 0))
    if own: await ws.close()
    return ws
def leave(room, rid): return cm(leave=pb.LeaveRoom(request_id=rid, room=room))
def inp(room, seq, eid):
    return cm(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(create=[pb.Entity(id=eid, kind=5)])))
def ev(room, kind="k"): return cm(event=pb.SendEvent(room=room, kind=kind, payload=b"p"))
def qj(rid, rt="relay", filters=None, meta=None, exclude=()):
    return cm(quick_join=pb.QuickJoin(request_id=rid, room_type=rt, filters=filters or {},
                                      create=pb.RoomOptions(metadata=meta or {}), exclude=list(exclude)))
async def main():
    U64 = 2**64 - 1
    if os.environ.get("SKIP"): return await qpart()
    await case("join,leave,join,input,leave same room", [join("mx", 1, "relay"), leave("mx", 2), join("mx", 3, "relay"), inp("mx", 1, 1), leave("mx", 4)])
    await case("join twice same env, same rid", [join("mx2", 9, "relay"), join("mx2", 9, "relay")])
    await case("17 joins then leave one, join one", [join(f"m17-{i}", i + 1, "relay") for i in range(17)] + [leave("m17-0", 100), join("m17-x", 101, "relay")], 1.5)
    await case("leave never joined; input not member", [leave("nope", U64), inp("nope", 1, 1)])
    await case("request ids u64max / 0 on joins", [join("rid-a", U64, "relay"), join("rid-b", 0, "relay")])
    ws = await case("input seqs: 2^53-1, 2^53, then 5", [join("seqr", 1, "relay"), inp("seqr", 2**53 - 1, 1), inp("seqr", 2**53, 2), inp("seqr", 5, 3)], 1.5)
    await ws.close()
    ws = await connect(); decode(await ws.recv())
    await case("events first_event_seq=2^53-1 (2 events)", [join("evr", 1, "relay"), ev("evr"), ev("evr"), cm(ping=pb.Ping(nonce=1))], 1.2, ws=ws, first_event_seq=2**53 - 1)
    await case("first_event_seq=2^53 -> BAD_REQUEST", [ev("evr"), cm(ping=pb.Ping(nonce=2))], 1.0, ws=ws, first_event_seq=2**53)
    await case("first_event_seq=U64 -> ?", [ev("evr"), cm(ping=pb.Ping(nonce=3))], 1.0, ws=ws, first_event_seq=U64)
    await ws.close()
    await qpart()
async def qpart():
    U64 = 2**64 - 1
    await case("qj filters+meta same key different value", [qj(1, filters={"mode": "b"}, meta={"mode": "a"})])
    await case("qj again filters mode=b (should find the room above if filters win)", [qj(2, filters={"mode": "b"})])
    await case("qj 16 meta + 16 filters distinct (32 entries)", [qj(3, filters={f"f{i}": "v" for i in range(16)}, meta={f"m{i}": "v" for i in range(16)})])
    await case("qj 17 filters", [qj(4, filters={f"f{i}": "v" for i in range(17)})])
    await case("qj empty key / 65-byte key / 257-byte value", [qj(5, filters={"": "v"}), qj(6, filters={"k" * 65: "v"}), qj(7, filters={"k": "v" * 257})])
    await case("qj empty-value filter", [qj(8, filters={"k": ""})])
    await case("qj control char in key/value", [qj(9, filters={"a\nb": "v"}), qj(10, filters={"a": "v\x00"})])
    await case("qj exclude 65 ids", [qj(11, exclude=[f"x{i}" for i in range(65)])])
    await case("qj exclude 1 id of 20 KB? (envelope limit) -> 4 KB", [qj(12, exclude=["x" * 4000])])
    await case("qj unknown type / empty type", [qj(13, rt="nosuch"), qj(14, rt="")])
    await case("qj + join same env + leave", [qj(15, filters={"z": "1"}), leave("", 16)])
    await case("list rooms limit huge, after 10KB", [cm(request=pb.Request(request_id=U64, list_rooms=pb.ListRooms(limit=2**32 - 1, after="z" * 10000)))])
asyncio.run(asyncio.wait_for(main(), 58))
