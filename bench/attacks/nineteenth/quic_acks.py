"""Hostile QUIC acks: a member acks ticks it never got (future, 2^64-1, 0, far past, other
rooms) while an honest WebSocket member writes an entity every tick. Does the room survive,
do honest frames keep flowing, does the relay log a panic?"""
import asyncio, os, time
import lib18
from qc import *
URL = "wss://127.0.0.1:%d/ws" % PORT
ROOM = "qa%d" % int(time.time())
async def main():
    lib18.URL = URL
    h = await lib18.C().open(url=URL); j = await h.join(ROOM, 1)
    await h.send(lib18.cm(input=lib18.pb.Input(room=ROOM, seq=1, writes=lib18.pb.EntityWrites(create=[lib18.pb.Entity(id=1, fields=[lib18.pb.Field(id=1, int=1)])]))))
    cmgr = quic_connect(); c = await asyncio.wait_for(cmgr.__aenter__(), 15)
    c.send_hello(); w = await asyncio.wait_for(c.welcome, 10)
    c.send_env(cm(join=pb.JoinRoom(request_id=1, room=ROOM, room_type="relay")))
    await asyncio.sleep(0.5)
    seq = 2
    async def write(n):
        nonlocal seq
        for _ in range(n):
            await h.send(lib18.cm(input=lib18.pb.Input(room=ROOM, seq=seq, writes=lib18.pb.EntityWrites(update=[lib18.pb.EntityUpdate(id=1, fields=[lib18.pb.Field(id=1, int=seq)])]))))
            seq += 1; await asyncio.sleep(0.033)
    last = max([m.state.tick for _, m, _ in c.msgs if m.WhichOneof("kind") == "state"] or [1])
    for label, tick in [("future+1", last + 1), ("future+1000", last + 1000), ("max", (1 << 64) - 1), ("2^63", 1 << 63), ("zero", 0), ("one", 1), ("past-40", max(1, last - 40))]:
        f0 = h.frames; d0 = len(c.msgs)
        for k in range(30):
            c.send_dgram(env(cm(ack=pb.Ack(room=ROOM, tick=tick if label not in ("future+1",) else last + 1 + k))))
            c.send_env(cm(ack=pb.Ack(room=ROOM, tick=tick)), cm(ping=pb.Ping(nonce=k)))
        await write(15)
        st = [m.state for _, m, _ in c.msgs[d0:] if m.WhichOneof("kind") == "state"]
        last = max([s.tick for s in st] or [last])
        print("%-12s honest frames %d in 0.5 s; attacker frames %d (full %d, baselines %s), attacker closed %s, honest closed %s" % (
            label, h.frames - f0, len(st), sum(1 for s in st if s.baseline_tick == 0), sorted(set(s.baseline_tick for s in st))[:4], c.closed, h.closed))
    # acks for rooms not joined / enormous room name
    for k in range(50):
        c.send_dgram(env(cm(ack=pb.Ack(room="nosuch%d" % k, tick=5))))
    c.send_dgram(env(*[cm(ack=pb.Ack(room=ROOM, tick=(1 << 64) - 1 - i)) for i in range(500)]))
    await write(15)
    print("after junk acks: honest frames/s ok?", h.frames, "closed", c.closed, h.closed)
    await h.close()
asyncio.run(main())
