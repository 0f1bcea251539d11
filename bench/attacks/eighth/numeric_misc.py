"""Numeric edges on one session: Ack over WebSocket with tick 2^64-1, Ping received_seq
2^64-1 then a resume with received=0 (what is still kept), Resync of a room not joined,
UpdateRoom by a non-owner, an input writing entity id 2^64-1. TR_URL set."""
import asyncio, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/attacks: tr.py
from tr import *
from envelope_mix import short
U64 = 2**64 - 1
async def main():
    a = await connect(); wa = decode(await a.recv()).messages[0].welcome
    await a.send(env(join("nm", 1, "relay")))
    await drain(a, 0.5)
    await a.send(env(cm(ack=pb.Ack(room="nm", tick=U64)), cm(ack=pb.Ack(room="zz", tick=0))))
    await a.send(env(cm(input=pb.Input(room="nm", seq=1, writes=pb.EntityWrites(create=[pb.Entity(id=U64, kind=U64 & 0xffffffff, fields=[pb.Field(id=0, float=float("nan"))])])))))
    got = await drain(a, 0.5)
    print("after ack/input:", [short(m) for m in got][-3:])
    await a.send(env(cm(request=pb.Request(request_id=5, resync=pb.Resync(room="not-joined"))),
                     cm(request=pb.Request(request_id=6, update_room=pb.UpdateRoom(room="nm", metadata={"a": "b"}))),
                     cm(ping=pb.Ping(nonce=U64, sent_time_us=U64, received_seq=U64))))
    got = await drain(a, 0.6)
    print("requests:", [short(m) for m in got if m.WhichOneof("kind") != "state"])
    a.transport.abort()
    a2 = await connect(f"resume={wa.resume_token}&received=0")
    got = await drain(a2, 1.2)
    print("resume after received_seq=u64max, received=0:", [short(m) for m in got if m.WhichOneof("kind") not in ("welcome",)][:6])
    await a2.send(env(cm(input=pb.Input(room="nm", seq=2, writes=pb.EntityWrites(update=[pb.EntityUpdate(id=U64, fields=[pb.Field(id=0, float=float("nan"))])])))))
    got = await drain(a2, 3.0)
    st = [m for m in got if m.WhichOneof("kind") == "state"]
    print("frames in 3 s after writing NaN again over NaN:", len(st), [short(m) for m in got if m.WhichOneof("kind") != "state"])
    await a2.close()
asyncio.run(asyncio.wait_for(main(), 40))
