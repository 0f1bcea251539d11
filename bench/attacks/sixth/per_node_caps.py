"""Per-address limits are per node: one source address (127.0.5.1) creates rooms on each of
the 3 nodes as fast as answered (join, wait, leave) for 5 s per node, then counts rooms
created per node and in the directory. Bounded: 40 s."""
import asyncio, collections, time
from c6 import *
RUN = int(time.time()) % 100000


async def fill(node):
    ws = await connect(node, src="127.0.5.1")
    c = collections.Counter()
    t0, k = time.time(), 0
    while time.time() - t0 < 5:
        k += 1
        room = "cap-%d-n%d-%d" % (RUN, node + 1, k)
        await ws.send(env(join(room, k)))
        m, _ = await wait_for(ws, lambda m: m.WhichOneof("kind") in ("joined", "error", "redirect"), 3)
        c[kind(m) if m else None] += 1
        if m is not None and m.WhichOneof("kind") == "joined":
            await ws.send(env(leave(room, k)))
    await ws.close()
    return dict(c)


async def main():
    res = await asyncio.gather(*[fill(i) for i in range(3)])
    for i, r in enumerate(res):
        pj("node%d from 127.0.0.5.1:" % (i + 1), r)
    pj("rooms of this address in the directory:", sum(1 for _ in range(1)) and count_keys("tickrelay:room:cap-%d-*" % RUN))

asyncio.run(asyncio.wait_for(main(), 40))
