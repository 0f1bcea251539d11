"""An honest member in its own arena room: frame gaps and ping round trips for SECS.
PORT, SECS (20), ROOM (honest-N). Prints p50/p99/max gap and RTT, and its close if any."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib20 import *
SECS = float(os.environ.get("SECS", "20")); ROOM = os.environ.get("ROOM", f"honest-{os.getpid()}")
async def main():
    c = await Raw("127.0.0.1").open()
    await c.recv_env()
    await c.send(join(ROOM, 1, "arena"))
    gaps, rtts, last, nonce, sent = [], [], None, 0, {}
    end = time.time() + SECS; nextping = time.time()
    while time.time() < end:
        if time.time() >= nextping:
            nonce += 1; sent[nonce] = time.time(); nextping += 0.2
            await c.send(cm(ping=pb.Ping(nonce=nonce)))
        s = await c.recv_env(timeout=0.2)
        if s is None:
            if c.closed: break
            continue
        t = time.time()
        for m in s.messages:
            k = m.WhichOneof("kind")
            if k == "state":
                if last: gaps.append(t - last)
                last = t
            elif k == "pong" and m.pong.nonce in sent:
                rtts.append(t - sent.pop(m.pong.nonce))
    q = lambda a, p: sorted(a)[min(len(a) - 1, int(p * len(a)))] * 1000 if a else float("nan")
    print(f"honest: frames {len(gaps)+1} gap p50 {q(gaps,.5):.0f} p99 {q(gaps,.99):.0f} max {q(gaps,1):.0f} ms; "
          f"rtt p50 {q(rtts,.5):.1f} p99 {q(rtts,.99):.1f} max {q(rtts,1):.1f} ms ({len(rtts)}); closed {c.closed}", flush=True)
asyncio.run(main())
