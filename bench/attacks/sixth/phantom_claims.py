"""Claims left in Redis by joins the node then refuses: a join of a room not open on the
node is claimed in Redis first (room:<id> hash, its id added to the `rooms` and
`open:relay` sorted sets), and only then does the node check the creator limits
(max_rooms_per_creator, room_creations_per_minute/burst) and max_rooms. CONNS sessions on
node NODE (source addresses 127.0.4.1..) each join fresh 128-byte room ids (starting with a
space, so they sort before ordinary ids) at RATE per second; a Joined room is left at once
(its creator budget: a burst of 60, then 2 a minute). Every 5 s: answers, ZCARD of the
indexes, Redis memory, and an honest ListRooms{limit 10} from node 3 (rooms it got, whether
`more` was set, latency). Bounded: SECS + 20 s."""
import asyncio, collections, os, time
from c6 import *

CONNS = int(os.environ.get("CONNS", "10"))
RATE = float(os.environ.get("RATE", "48"))
SECS = float(os.environ.get("SECS", "40"))
NODE = int(os.environ.get("NODE", "1"))


async def attacker(idx, stats, stop):
    ws = await connect(NODE, src="127.0.4.%d" % (1 + idx % 250))

    async def reader():
        try:
            async for data in ws:
                for m in decode(data).messages:
                    k = kind(m)
                    stats[k] += 1
                    if k == "joined":
                        await ws.send(env(leave(m.joined.room, 0)))
                    if k == "error:LIMIT_EXCEEDED":
                        stats["msg:" + m.error.message[:40]] += 1
        except websockets.ConnectionClosed as e:
            stats["close:%s" % e.code] += 1
    rt = asyncio.create_task(reader())
    t0, i = time.time(), 0
    while not stop.is_set():
        i += 1
        room = (" ph-%03d-%07d-" % (idx, i)).ljust(128, "p")
        try:
            await ws.send(env(join(room, i)))
        except Exception:
            break
        await asyncio.sleep(max(0, t0 + i / RATE - time.time()))
    stats["sent"] += i
    rt.cancel()
    try:
        await asyncio.wait_for(ws.close(), 2)
    except Exception:
        pass


async def honest_list(ws, rid):
    t = time.time()
    await ws.send(env(pb.ClientMessage(request=pb.Request(request_id=rid, list_rooms=pb.ListRooms(limit=10)))))
    m, _ = await wait_for(ws, lambda m: m.WhichOneof("kind") in ("response", "error"), 10)
    if m is None or m.WhichOneof("kind") != "response":
        return {"answer": kind(m) if m else "timeout"}
    return {"rooms": len(m.response.rooms.rooms), "more": m.response.rooms.more, "ms": round((time.time() - t) * 1000)}


async def main():
    # a few honest rooms with ordinary ids, held by a member on node 1
    h = await connect(0, src="127.0.2.3")
    await h.send(env(*[join("honest-%d" % i, i + 1) for i in range(5)]))
    await recv_msgs(h, 2.5)
    hl = await connect(2, src="127.0.2.4")
    pj("before", {"rooms": redis("zcard", "tickrelay:rooms"), "open:relay": redis("zcard", "tickrelay:open:relay"),
                  "redis_used_MiB": round(redis_mem() / 2**20, 1), "honest list": await honest_list(hl, 1)})
    stop = asyncio.Event()
    stats = collections.Counter()
    s = Sampler()
    tasks = [asyncio.create_task(attacker(i, stats, stop)) for i in range(CONNS)]
    t0 = time.time(); n = 1
    while time.time() - t0 < SECS:
        await asyncio.sleep(5)
        n += 1
        pj({"t": round(time.time() - t0), "sent": stats["sent"], "limit_exceeded": stats["error:LIMIT_EXCEEDED"],
            "joined": stats["joined"], "rooms_zset": redis("zcard", "tickrelay:rooms"),
            "open_relay_zset": redis("zcard", "tickrelay:open:relay"), "room_keys_live": count_keys("tickrelay:room:*"),
            "redis_used_MiB": round(redis_mem() / 2**20, 1), "honest list": await honest_list(hl, n)})
    rep = s.report()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    pj("stats", dict(stats))
    pj("during", rep)
    await asyncio.sleep(8)
    pj("8 s after the attack", {"rooms_zset": redis("zcard", "tickrelay:rooms"), "open_relay_zset": redis("zcard", "tickrelay:open:relay"),
                                "room_keys_live": count_keys("tickrelay:room:*"), "redis_used_MiB": round(redis_mem() / 2**20, 1),
                                "honest list": await honest_list(hl, 99)})
    await h.close(); await hl.close()

asyncio.run(asyncio.wait_for(main(), SECS + 25))
