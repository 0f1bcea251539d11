"""Relay create with the same field id repeated 32 times: World::spawn collects the 32
fields into a Vec (capacity 32 x 80 B), dedups to 1 and keeps the capacity; the room
counts state_cost of the deduped entity (128 + 81 = 209 B).  MODE=dup (32 copies of id 1)
or MODE=one (a single field): same counted bytes, compare RSS.
CONNS sessions, each in ROOMS rooms ("dupN"), 64 entities per room.  Bounded < 40 s."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tr
from tr import pb

MODE = os.environ.get("MODE", "dup")
CONNS = int(os.environ.get("CONNS", "16"))
ROOMS = int(os.environ.get("ROOMS", "16"))
PID = int(os.environ["TR_PID"])

def create_input(room, seq, base):
    w = pb.EntityWrites()
    for i in range(64):
        e = w.create.add(id=base + i, kind=1)
        for _ in range(32 if MODE == "dup" else 1):
            e.fields.add(id=1, bool=True)
    return pb.ClientMessage(input=pb.Input(room=room, seq=seq, writes=w))

async def one(c):
    ws = await tr.connect()
    await tr.drain(ws, 0.1)
    errs = 0
    for r in range(ROOMS):
        room = f"dup{r}"
        await ws.send(tr.env(tr.join(room, rid=r + 1)))
        await tr.recv_until(ws, lambda m: m.WhichOneof("kind") in ("joined", "error"), 5)
        # 64 entities x 32 fields = ~ 64*(2+32*4) bytes = 8.4 KB per input (byte budget 64 KiB/s)
        await ws.send(tr.env(create_input(room, 1, (c * 1000 + r) * 100)))
        await asyncio.sleep(0.14)
    msgs = await tr.drain(ws, 1.0)
    errs = [m.error.message for m in msgs if m.WhichOneof("kind") == "error"]
    return ws, errs

async def main():
    rss0 = tr.rss_kib(PID)
    conns = await asyncio.gather(*(one(c) for c in range(CONNS)))
    errs = sum(len(e) for _, e in conns)
    time.sleep(1)
    rss1 = tr.rss_kib(PID)
    ents = CONNS * ROOMS * 64
    counted = ents * (128 + 81)
    print(f"mode={MODE} entities={ents} errors={errs} {conns[0][1][:2]}")
    print(f"RSS {rss0} -> {rss1} KiB: +{rss1 - rss0} KiB; counted state {counted // 1024} KiB; "
          f"per entity {(rss1 - rss0) * 1024 / ents:.0f} B vs counted 209 B")
    for ws, _ in conns:
        ws.transport.abort()

asyncio.run(asyncio.wait_for(main(), 45))
