"""QuickJoin that creates: create.metadata + filters merged. Over 16 entries together?
Same key with another value? Does the next quick join with the same filters find it?"""
import asyncio, time
from lib18 import *
T = int(time.time())
async def qj(filters, md, rid=1):
    c = await C().open()
    await c.send(cm(quick_join=pb.QuickJoin(request_id=rid, room_type="relay", filters=filters, create=pb.RoomOptions(metadata=md))))
    m = await c.wait(lambda k, m: k in ("joined", "error"))
    return c, m
async def main():
    cs = []
    # 1: 10 + 10 distinct entries
    f = {"f%d-%d" % (T, i): "x" for i in range(10)}; md = {"m%d" % i: "y" for i in range(10)}
    c, m = await qj(f, md); cs.append(c)
    k = m.WhichOneof("kind"); print("10+10:", k, (len(m.joined.metadata) if k == "joined" else m.error.message))
    if k == "joined":
        c2, m2 = await qj(f, {}); cs.append(c2); print("  same filters again ->", m2.joined.room == m.joined.room if m2.WhichOneof("kind") == "joined" else m2.error.message)
    # 2: conflicting key
    f = {"mode%d" % T: "ctf"}; md = {"mode%d" % T: "dm"}
    c, m = await qj(f, md); cs.append(c)
    print("conflict:", m.WhichOneof("kind"), dict(m.joined.metadata) if m.WhichOneof("kind") == "joined" else m.error.message)
    c2, m2 = await qj(f, {}); cs.append(c2)
    print("  same filters again -> same room?", m2.joined.room == m.joined.room if m2.WhichOneof("kind") == "joined" else m2.error.message)
    # 3: 16 filters with 256-byte values + 16 metadata
    f = {("g%d-%02d" % (T, i))[:64]: "v" * 256 for i in range(16)}
    c, m = await qj(f, {"z%d" % i: "w" * 256 for i in range(16)}); cs.append(c)
    print("16+16:", m.WhichOneof("kind"), len(m.joined.metadata) if m.WhichOneof("kind") == "joined" else m.error.message)
    if m.WhichOneof("kind") == "joined":
        c2, m2 = await qj(f, {}); cs.append(c2)
        print("  same filters again -> same room?", m2.joined.room == m.joined.room if m2.WhichOneof("kind") == "joined" else m2.error.message)
    # 4: filter with empty value
    c, m = await qj({"e%d" % T: ""}, {}); cs.append(c)
    print("empty-valued filter:", m.WhichOneof("kind"), dict(m.joined.metadata) if m.WhichOneof("kind") == "joined" else m.error.message)
    if m.WhichOneof("kind") == "joined":
        c2, m2 = await qj({"e%d" % T: ""}, {}); cs.append(c2)
        print("  same filters again -> same room?", m2.joined.room == m.joined.room if m2.WhichOneof("kind") == "joined" else m2.error.message)
    # 5: owner UpdateRoom with empty value removes key: then quick-join with that filter
asyncio.run(main())
