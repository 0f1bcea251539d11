"""Idle rooms that cost a full snapshot to Redis every second: CONNS sessions on node NODE
(index; default 0) each create a relay room `ckpt-<run>-<i>` and fill it with ENTS entities
of FIELDS bytes fields of 1,000 bytes (64 x 15 = ~0.96 MB: a checkpoint just under
`max_checkpoint_bytes`), paced to the 64 KiB/s byte limit, then send nothing for IDLE
seconds while reading their frames. Prints the node's and Redis's CPU, Redis's input
MB/s and memory during the idle phase. Run it against a node without --cluster
(NO_REDIS=1 NODE_PIDS=<pid> NODE_PORTS=<port>) for the single-node cost of the same rooms.
Bounded: about FILL_SECS + IDLE + 15 s."""
import asyncio, collections, os, time
from c6 import *

NODE = int(os.environ.get("NODE", "0"))
CONNS = int(os.environ.get("CONNS", "20"))
ENTS = int(os.environ.get("ENTS", "64"))
FIELDS = int(os.environ.get("FIELDS", "15"))
IDLE = float(os.environ.get("IDLE", "20"))
FILL_SECS = float(os.environ.get("FILL_SECS", "40"))
RUN = int(time.time()) % 100000
VALUE = b"\xab" * 1000


def create(room, seq, eid):
    ent = pb.Entity(id=eid, kind=7, fields=[pb.Field(id=f + 1, bytes=VALUE) for f in range(FIELDS)])
    return pb.ClientMessage(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(create=[ent])))


async def member(i, stats, filled, stop):
    ws = await connect(NODE, src="127.0.3.%d" % (1 + i % 250))
    room = "ckpt-%d-%d" % (RUN, i)
    await ws.send(env(join(room, 1)))

    async def reader():
        try:
            async for data in ws:
                stats["in_KiB"] += len(data) / 1024
                for m in decode(data).messages:
                    k = m.WhichOneof("kind")
                    if k != "state":
                        stats[kind(m)] += 1
        except websockets.ConnectionClosed as e:
            stats["close:%s" % e.code] += 1
    rt = asyncio.create_task(reader())
    await asyncio.sleep(0.5)
    t0 = time.time()
    sent_bytes = 0
    for e in range(ENTS):
        data = env(create(room, e + 1, e + 1))
        sent_bytes += len(data)
        # stay under 64 KiB/s after the 128 KiB burst
        await asyncio.sleep(max(0, t0 + (sent_bytes - 100_000) / 60_000 - time.time()))
        await ws.send(data)
    filled.append(time.time() - t0)
    await stop.wait()
    rt.cancel()
    await close_quietly(ws)


async def main():
    stats = collections.Counter()
    filled, stop = [], asyncio.Event()
    tasks = [asyncio.create_task(member(i, stats, filled, stop)) for i in range(CONNS)]
    t0 = time.time()
    while len(filled) < CONNS and time.time() - t0 < FILL_SECS:
        await asyncio.sleep(0.5)
    pj("filled", len(filled), "rooms in", round(time.time() - t0, 1), "s")
    await asyncio.sleep(3)
    s = Sampler()
    await asyncio.sleep(IDLE)
    rep = s.report()
    pj("idle phase (nothing sent)", rep)
    if os.environ.get("NO_REDIS") != "1":
        pj({"checkpoint_keys": count_keys("tickrelay:checkpoint:*"), "one": one_ttl("tickrelay:checkpoint:ckpt-*")})
        pj(metrics(NODE, ["tickrelay_checkpoints"]))
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    pj("stats", {k: round(v) for k, v in stats.items()})

asyncio.run(asyncio.wait_for(main(), FILL_SECS + IDLE + 20))
