"""Room searches that make Redis (and the node) read thousands of directory entries per
request. Against a cluster holding ~2,000 rooms with the largest metadata (rooms_setup6.py).
ADDRS source addresses (127.0.1.1..) each open one session per node (NODES, default all)
and send, at RATE per second per session (the search limit is 10/s per address *per node*):
  MODE=list   ListRooms{filters {"z": "z"}}: matches nothing, so each request scans 2,000
              directory entries (10 pages of ZRANGE + 200 HGETALL) and answers an empty page
  MODE=quick  QuickJoin{room_type relay, filters {"z": "z"}}: reads the 256 fullest open
              rooms' entries, finds none, then creates a room (creator limits refuse most);
              a Joined room is left at once
Next to it, honest probes on the last node: a ListRooms{limit 10} and a join of a room held
on node 1 (answered Redirect) every 0.5 s, with their latency. Bounded: SECS + 20 s."""
import asyncio, collections, os, statistics, time
from c6 import *

MODE = os.environ.get("MODE", "list")
ADDRS = int(os.environ.get("ADDRS", "4"))
RATE = float(os.environ.get("RATE", "10"))
SECS = float(os.environ.get("SECS", "20"))
NODES = [int(x) for x in os.environ.get("NODES", ",".join(str(i) for i in range(len(NODE_PORTS)))).split(",")]
WATCH = ["tickrelay_directory_errors_total", "tickrelay_rooms_lost_total", "tickrelay_directory_up"]


def request(i):
    if MODE == "list":
        return pb.ClientMessage(request=pb.Request(request_id=i, list_rooms=pb.ListRooms(filters={"z": "z"})))
    return pb.ClientMessage(quick_join=pb.QuickJoin(request_id=i, room_type="relay", filters={"z": "z"}))


async def attacker(addr, node, stats, stop):
    ws = await connect(node, src="127.0.1.%d" % addr)
    inbytes = [0]

    async def reader():
        try:
            async for data in ws:
                inbytes[0] += len(data)
                for m in decode(data).messages:
                    stats[kind(m)] += 1
                    if m.WhichOneof("kind") == "joined":
                        await ws.send(env(leave(m.joined.room, 0)))
        except websockets.ConnectionClosed as e:
            stats["close:%s" % e.code] += 1
    rt = asyncio.create_task(reader())
    t0, i = time.time(), 0
    while not stop.is_set():
        i += 1
        try:
            await ws.send(env(request(i)))
        except Exception:
            break
        await asyncio.sleep(max(0, t0 + i / RATE - time.time()))
    stats["sent"] += i
    stats["in_KiB"] += inbytes[0] // 1024
    rt.cancel()
    try:
        await asyncio.wait_for(ws.close(), 2)
    except Exception:
        pass


async def prober(lat, stop, target_room):
    ws = await connect(NODE_PORTS.index(NODE_PORTS[-1]), src="127.0.2.1")
    i = 0
    while not stop.is_set():
        i += 1
        t = time.time()
        await ws.send(env(pb.ClientMessage(request=pb.Request(request_id=i, list_rooms=pb.ListRooms(limit=10)))))
        m, _ = await wait_for(ws, lambda m: m.WhichOneof("kind") in ("response", "error"), 10)
        lat["list" if m is not None and m.WhichOneof("kind") == "response" else "list_fail:" + (kind(m) if m else "timeout")].append(time.time() - t)
        t = time.time()
        await ws.send(env(join(target_room, 10_000 + i)))
        m, _ = await wait_for(ws, lambda m: m.WhichOneof("kind") in ("redirect", "error", "joined"), 10)
        lat["redirect" if m is not None and m.WhichOneof("kind") == "redirect" else "join_fail:" + (kind(m) if m else "timeout")].append(time.time() - t)
        await asyncio.sleep(0.5)
    await ws.close()


def summary(v):
    if not v:
        return None
    v = sorted(v)
    return {"n": len(v), "p50_ms": round(v[len(v) // 2] * 1000, 1), "p99_ms": round(v[int(len(v) * 0.99)] * 1000, 1),
            "max_ms": round(v[-1] * 1000, 1)}


async def main():
    stop = asyncio.Event()
    stats = collections.Counter()
    lat = collections.defaultdict(list)
    # a room on node 1 for the redirect probe
    holder = await connect(0, src="127.0.2.2")
    await holder.send(env(join("probe-target", 1)))
    await recv_msgs(holder, 1)
    before = [metrics(i, WATCH) for i in range(len(NODE_PORTS))]
    idle = Sampler(); await asyncio.sleep(3); pj("idle 3 s", idle.report())
    s = Sampler()
    p = asyncio.create_task(prober(lat, stop, "probe-target"))
    tasks = [asyncio.create_task(attacker(a + 1, n, stats, stop)) for a in range(ADDRS) for n in NODES]
    await asyncio.sleep(SECS)
    rep = s.report()
    stop.set()
    await asyncio.gather(*tasks, p, return_exceptions=True)
    after = [metrics(i, WATCH) for i in range(len(NODE_PORTS))]
    pj(MODE, "ADDRS", ADDRS, "NODES", NODES, "RATE", RATE, dict(stats))
    pj("during attack", rep)
    pj("searches answered/s", round((stats["response"] + stats["redirect"] + stats["joined"] + stats["error:LIMIT_EXCEEDED"]) / SECS, 1))
    pj("honest probes", {k: summary(v) for k, v in lat.items()})
    pj("node metrics before", before)
    pj("node metrics after", after)
    await holder.close()

asyncio.run(asyncio.wait_for(main(), SECS + 25))
