"""Distinct delta baselines over QUIC: CONNS members in one arena room, each acking an
old tick (member i acks the newest tick minus LAG*(i % 30)), so the room cannot share one
delta encoding between them; MODE=spread does that, MODE=latest acks the newest tick (the
honest pattern, for comparison). Bounded: SECS."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qc import *
CONNS = int(os.environ.get("CONNS", "40")); SECS = float(os.environ.get("SECS", "12"))
MODE = os.environ.get("MODE", "spread"); ROOM = os.environ.get("ROOM", "base-arena")


async def member(i, stats):
    cmgr = quic_connect()
    c = await asyncio.wait_for(cmgr.__aenter__(), 15)
    c.send_hello()
    await asyncio.wait_for(c.welcome, 10)
    def on_msg(m, via):
        if m.WhichOneof("kind") == "state":
            stats["frames"] += 1
            if m.state.baseline_tick == 0:
                stats["full"] += 1
            t = m.state.tick
            if MODE == "spread":
                t = max(1, t - (i % 30))
            if via == "dgram":
                c.send_dgram(env(cm(ack=pb.Ack(room=ROOM, tick=t))))
    c.on_msg = on_msg
    c.send_env(cm(join=pb.JoinRoom(request_id=1, room=ROOM, room_type="arena")))
    t0 = time.time()
    while time.time() - t0 < SECS and c.closed is None:
        await asyncio.sleep(1)
        c.send_env(cm(ping=pb.Ping(nonce=1)))
    stats["closed"] += c.closed is not None
    c.close(error_code=1000); c.transmit()


async def main():
    import collections
    stats = collections.Counter()
    r = await asyncio.gather(*[member(i, stats) for i in range(CONNS)], return_exceptions=True)
    print(MODE, dict(stats), [repr(x)[:80] for x in r if isinstance(x, Exception)][:3])
    await asyncio.sleep(0.3)
asyncio.run(asyncio.wait_for(main(), SECS + 30))
