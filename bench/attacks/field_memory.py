"""Memory per accounted state byte: members fill relay rooms with the most entities and
fields the limits allow (64 entities x 32 bool fields each), the smallest values.
Usage: python3 field_memory.py [sessions] [rooms]"""
import asyncio, sys, time
from tr import *

S = int(sys.argv[1]) if len(sys.argv) > 1 else 20
R = int(sys.argv[2]) if len(sys.argv) > 2 else 16
U64 = (1 << 64) - 1


async def member(i, stats):
    ws = await connect(); await ws.recv()
    rooms = [f"fm-{r}" for r in range(R)]
    await ws.send(env(*[join(r, k + 1, "relay") for k, r in enumerate(rooms)]))
    seq = 0
    sent = 0
    for r in rooms:
        # 64 entities x 32 bool fields, in inputs of 8 entities (~ 1.4 KB each)
        for chunk in range(8):
            ents = [pb.Entity(id=(i << 40) | (chunk * 8 + e), kind=1,
                              fields=[pb.Field(id=f, bool=True) for f in range(32)]) for e in range(8)]
            seq += 1
            m = env(cm(input=pb.Input(room=r, seq=seq, writes=pb.EntityWrites(create=ents))))
            sent += len(m)
            await ws.send(m)
            await asyncio.sleep(len(m) / 60000)  # stay under 64 KiB/s
    stats["bytes"] = stats.get("bytes", 0) + sent
    return ws


stats_err = []
async def reader(ws, stop):
    while time.time() < stop:
        try:
            d = await asyncio.wait_for(ws.recv(), 0.5)
            for m in decode(d).messages:
                if m.WhichOneof("kind") == "error":
                    stats_err.append(m.error.code)
        except asyncio.TimeoutError:
            pass
        except Exception:
            return


async def main():
    pid = pid_of_relay()
    r0 = rss_kib(pid)
    stats = {}
    t0 = time.time()
    wss = await asyncio.gather(*[member(i, stats) for i in range(S)])
    stop = time.time() + 6
    rd = [asyncio.create_task(reader(w, stop)) for w in wss]
    await asyncio.sleep(2)
    r1 = rss_kib(pid)
    c0 = cpu_secs(pid); await asyncio.sleep(3); cpu = (cpu_secs(pid) - c0) / 3
    # Each refused input (LIMIT_EXCEEDED) carried 8 entities of 32 fields.
    fields = S * R * 64 * 32 - len(stats_err) * 8 * 32
    print("refused inputs", len(stats_err), "error codes", set(stats_err))
    print(f"{S} sessions x {R} rooms: {fields} bool fields accepted; client sent {stats['bytes']/1024:.0f} KiB in {time.time()-t0:.0f}s")
    print(f"relay RSS {r0/1024:.0f} -> {r1/1024:.0f} MiB (+{(r1-r0)/1024:.0f} MiB); CPU while idle {cpu*100:.0f}%")
    await asyncio.gather(*rd)
    for w in wss:
        await w.close()

asyncio.run(main())
