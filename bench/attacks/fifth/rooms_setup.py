"""Creates ROOMS relay rooms with the largest metadata allowed (16 entries, 64-byte keys,
256-byte values; k00..k14 the same in every room, k15 unique), from sessions bound to
loopback source addresses 127.0.0.2.. (the anonymous creator limit counts per address:
60 at once), each joining with create.metadata and leaving at once (rooms then stay
empty for empty_room_ttl_secs). Target: ws://127.0.0.1:PORT only. Bounded: 55 s."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa
import websockets

PORT = int(os.environ.get("TR_PORT", "7644")); assert 7600 <= PORT <= 7700
ROOMS = int(os.environ.get("ROOMS", "3000"))
PER_ADDR = 55


def key(i):
    return ("k%02d" % i).ljust(64, "x")


def meta(r):
    m = {key(i): ("v%02d" % i).ljust(256, "v") for i in range(15)}
    m[key(15)] = ("room%06d" % r).ljust(256, "u")
    return m


def env(*msgs):
    e = pb.ClientEnvelope()
    e.messages.extend(msgs)
    return e.SerializeToString()


async def creator(addr_idx, first, count, stats):
    ws = await websockets.connect(f"ws://127.0.0.1:{PORT}/ws", max_size=1 << 24, ping_interval=None,
                                  local_addr=(f"127.0.0.{addr_idx}", 0), open_timeout=10)
    async def reader():
        try:
            async for data in ws:
                s = pb.ServerEnvelope(); s.ParseFromString(data)
                for m in s.messages:
                    k = m.WhichOneof("kind")
                    stats[k] = stats.get(k, 0) + 1
                    if k == "error":
                        stats["err:" + m.error.message[:50]] = stats.get("err:" + m.error.message[:50], 0) + 1
        except Exception:
            pass
    rt = asyncio.create_task(reader())
    for r in range(first, first + count):
        room = "lst-%06d" % r
        j = pb.ClientMessage(join=pb.JoinRoom(request_id=r, room=room, room_type="relay",
                                              create=pb.RoomOptions(metadata=meta(r))))
        l = pb.ClientMessage(leave=pb.LeaveRoom(request_id=r, room=room))
        await ws.send(env(j))
        await asyncio.sleep(0.09)   # ~11 joins/s: within 64 KiB/s of 5.3 KB joins
        await ws.send(env(l))
    await asyncio.sleep(1)
    rt.cancel()
    await ws.close()


async def main():
    stats = {}
    t0 = time.time()
    tasks = []
    naddr = (ROOMS + PER_ADDR - 1) // PER_ADDR
    for a in range(naddr):
        n = min(PER_ADDR, ROOMS - a * PER_ADDR)
        tasks.append(creator(2 + a, a * PER_ADDR, n, stats))
    res = await asyncio.gather(*tasks, return_exceptions=True)
    print("setup", round(time.time() - t0, 1), "s", {k: v for k, v in stats.items()},
          [repr(x)[:80] for x in res if isinstance(x, Exception)][:3])

if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 55))
