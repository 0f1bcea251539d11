"""Creates ROOMS relay rooms with the largest metadata allowed (16 entries, 64-byte keys,
256-byte values) on node NODE (index, 0 = 7601), from sessions bound to 127.0.0.2.. (the
anonymous creator limit counts per address: 55 rooms each, within the burst of 60), each
joining with create.metadata and leaving at once: the nodes must run with
`empty_room_ttl_secs = 600` (rooms.toml) so the empty rooms stay. PRIVATE=1 makes them
private (never listed, but still in the `rooms` index). Bounded: 55 s."""
import asyncio, collections, os, time
from c6 import *

NODE = int(os.environ.get("NODE", "0"))
ROOMS = int(os.environ.get("ROOMS", "2000"))
PREFIX = os.environ.get("PREFIX", "lst")
PRIVATE = os.environ.get("PRIVATE", "0") == "1"
ADDR0 = int(os.environ.get("ADDR0", "2"))
PER_ADDR = 55


def key(i):
    return ("k%02d" % i).ljust(64, "x")


def meta(r):
    m = {key(i): ("v%02d" % i).ljust(256, "v") for i in range(15)}
    m[key(15)] = ("room%06d" % r).ljust(256, "u")
    return m


async def creator(addr, first, count, stats):
    ws = await connect(NODE, src="127.0.0.%d" % addr)

    async def reader():
        try:
            async for data in ws:
                for m in decode(data).messages:
                    stats[kind(m)] += 1
        except Exception:
            pass
    rt = asyncio.create_task(reader())
    for r in range(first, first + count):
        room = "%s-%06d" % (PREFIX, r)
        await ws.send(env(join(room, r + 1, metadata=meta(r), private=PRIVATE)))
        await asyncio.sleep(0.09)  # ~11 joins/s: 5.3 KB each, within 64 KiB/s
        await ws.send(env(leave(room, r + 1)))
    await asyncio.sleep(1)
    rt.cancel()
    await ws.close()


async def main():
    stats = collections.Counter()
    t0 = time.time()
    naddr = (ROOMS + PER_ADDR - 1) // PER_ADDR
    assert ADDR0 + naddr <= 254
    res = await asyncio.gather(*[creator(ADDR0 + a, a * PER_ADDR, min(PER_ADDR, ROOMS - a * PER_ADDR), stats)
                                 for a in range(naddr)], return_exceptions=True)
    pj("setup", round(time.time() - t0, 1), "s", dict(stats), [repr(x)[:80] for x in res if isinstance(x, Exception)][:3])
    pj({"rooms_index": redis("zcard", "tickrelay:rooms"), "open_relay": redis("zcard", "tickrelay:open:relay"),
        "redis_used_MiB": round(redis_mem() / 2**20, 1), "dbsize": redis("dbsize")})

asyncio.run(asyncio.wait_for(main(), 55))
