"""Stated limits, checked: RoomUpdated <= 4/s under 50 metadata changes/s, event kind 257 bytes, 65 targets in a 64-seat room, RATE_LIMITED errors <= 4/s, 101-message envelope."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common17 import pb, connect, env, cm, join, decode, event


async def sess():
    ws = await connect(); w = decode(await ws.recv()).messages[0].welcome; return ws, w.session_id


async def collect(ws, secs):
    out, end = [], time.time() + secs
    while time.time() < end:
        try:
            out += [(time.time(), m) for m in decode(await asyncio.wait_for(ws.recv(), end - time.time())).messages]
        except (asyncio.TimeoutError, Exception):
            break
    return out


def errs(ms):
    return [(pb.ErrorCode.Name(m.error.code), m.error.message[:60]) for _, m in ms if m.WhichOneof("kind") == "error"]


async def main():
    (o, oid), (b, bid) = await sess(), await sess()
    await o.send(env(join("lim17", 1, "relay"))); await collect(o, 0.3)
    await b.send(env(join("lim17", 1, "relay"))); await collect(b, 0.3)
    # owner changes metadata 40 times in 1 s; b counts RoomUpdated
    async def churn():
        for i in range(40):
            await o.send(env(cm(request=pb.Request(request_id=100 + i, update_room=pb.UpdateRoom(room="lim17", metadata={"n": str(i)})))))
            await asyncio.sleep(0.025)
    _, got = await asyncio.gather(churn(), collect(b, 2.0))
    ru = [t for t, m in got if m.WhichOneof("kind") == "room_updated"]
    print(f"40 metadata changes in 1 s -> b got {len(ru)} RoomUpdated in 2 s (promise: <= 4/s)")
    await o.send(env(event("lim17", "k" * 257, b"p")))
    print("event kind 257 B ->", errs(await collect(o, 0.5)))
    await o.send(env(event("lim17", "k", b"p", targets=list(range(1000, 1065)))))
    print("event with 65 targets ->", errs(await collect(o, 0.5)))
    e = pb.ClientEnvelope()
    for i in range(101):
        e.messages.append(cm(ping=pb.Ping(nonce=i)))
    await o.send(e.SerializeToString())
    print("envelope of 101 pings ->", errs(await collect(o, 0.5)))
    # over the message rate for 0.9 s: count RATE_LIMITED errors (promise: at most four a second)
    c, _ = await sess()
    t0 = time.time()
    async def flood():
        while time.time() - t0 < 0.9:
            await c.send(env(cm(ping=pb.Ping(nonce=1)))); await asyncio.sleep(0.002)
    _, got = await asyncio.gather(flood(), collect(c, 1.2))
    print("ping flood 0.9 s -> RATE_LIMITED errors:", sum(1 for x in errs(got) if x[0] == "ERROR_CODE_RATE_LIMITED"), "close", c.close_code)

asyncio.run(main())
