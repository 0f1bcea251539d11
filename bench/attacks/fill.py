"""Fills a relay room with big state using several well-behaved (rate-paced) members.
Returns the open filler sockets so the room stays alive.
Usage as a module: ws_list = await fill(room, conns=8, kib_per_conn=400)"""
import asyncio, time
from tr import *


async def fill_one(room, idx, kib, entity_base):
    ws = await connect()
    await ws.recv()  # welcome
    await ws.send(env(join(room, 1, "relay")))
    await recv_until(ws, lambda m: m.WhichOneof("kind") == "joined")
    seq = 0
    written = 0
    eid = entity_base
    # one entity per input: 14 fields x 1000 bytes ~ 14 KiB  (< 16 KiB message)
    while written < kib * 1024:
        e = pb.Entity(id=eid, kind=7)
        for f in range(1, 15):
            e.fields.append(pb.Field(id=f, bytes=bytes([f]) * 1000))
        seq += 1
        eid += 1
        await ws.send(env(cm(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(create=[e])))))
        written += 14 * 1000
        # pace to ~56 KiB/s (limit 64 KiB/s, burst 128 KiB)
        await asyncio.sleep(0.25)
        # keep reading so we are not a slow consumer
        try:
            while True:
                d = await asyncio.wait_for(ws.recv(), 0.001)
                for m in decode(d).messages:
                    if m.WhichOneof("kind") == "error":
                        print("filler", idx, "error", m.error.code, m.error.message)
        except asyncio.TimeoutError:
            pass
    return ws


async def keep_reading(ws):
    try:
        async for _ in ws:
            pass
    except Exception:
        pass


async def fill(room, conns=8, kib_per_conn=400):
    t = time.time()
    wss = await asyncio.gather(*[fill_one(room, i, kib_per_conn, 1_000_000 * (i + 1)) for i in range(conns)])
    readers = [asyncio.create_task(keep_reading(w)) for w in wss]
    print(f"filled {room}: {conns} x {kib_per_conn} KiB in {time.time()-t:.1f}s")
    return wss, readers
