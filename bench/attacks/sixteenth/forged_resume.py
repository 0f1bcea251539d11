"""Made-up resume tokens from many addresses: each waits IN_TRANSIT_WAIT (250 ms,
polling the registry every 5 ms) before its 4504. What does a flood of them cost?

Run: ADDRS=10 RATE=190 SECS=12 TR=ws python3 forged_resume.py   (TR=quic: Hello)
Starts its own relay (wss + QUIC, 127.0.0.1:$PORT, default 7666). ADDRS source
addresses 127.0.6.x each open RATE connections a second (below the 200/s
per-address rate) resuming a random token, for SECS. An honest member pings every
0.1 s meanwhile (RTT), and 10 honest sessions in a room send events.
Bounded: SECS seconds, ADDRS*RATE*SECS connections (each closes within ~0.3 s).
"""
import asyncio, collections, os, sys, time, secrets
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib16 import *

PORT = int(os.environ.get("PORT", "7666"))
ADDRS = int(os.environ.get("ADDRS", "10")); RATE = float(os.environ.get("RATE", "190"))
SECS = float(os.environ.get("SECS", "12")); TR = os.environ.get("TR", "ws")
st = collections.Counter(); rtt = []; lat = []


async def one(src):
    t0 = time.time()
    tok = secrets.token_urlsafe(24)
    try:
        if TR == "ws":
            ws = await ws_connect(PORT, f"resume={tok}", src=src)
            try:
                await asyncio.wait_for(ws.recv(), 5)
                st["welcome?!"] += 1
            except websockets.ConnectionClosed:
                st[f"closed_{ws.close_code}"] += 1
        else:
            q = await quic_open(PORT, src=src)
            q.hello(resume=tok)
            await asyncio.wait_for(q.welcome, 5)
            st[f"closed_{q.closed[0] if q.closed else None}"] += 1
            quic_drop(q)
        lat.append(time.time() - t0)
    except Exception as e:
        st[type(e).__name__] += 1


async def flooder(a, stop):
    src = f"127.0.6.{1 + a}"
    n = 0; t0 = time.time(); pend = set()
    while time.time() < stop:
        due = t0 + n / RATE
        if due > time.time():
            await asyncio.sleep(due - time.time())
        n += 1
        t = asyncio.create_task(one(src)); pend.add(t); t.add_done_callback(pend.discard)
    await asyncio.gather(*pend)


async def pinger(stop):
    ws = await ws_connect(PORT); await ws.recv()
    i = 0
    while time.time() < stop:
        i += 1; t0 = time.time()
        await ws.send(env(cm(ping=pb.Ping(nonce=i))))
        m, _ = await ws_recv_until(ws, lambda m: m.WhichOneof("kind") == "pong" and m.pong.nonce == i, 3)
        rtt.append((time.time() - t0) * 1000 if m else 3000)
        await asyncio.sleep(0.1)
    await ws.close()


async def main():
    relay = start_relay(PORT, tag="forged_resume")
    pid = relay.pid
    try:
        stop_at = time.time() + SECS
        c0, t0 = cpu_secs(pid), time.time()
        await asyncio.gather(pinger(stop_at), *[flooder(a, stop_at) for a in range(ADDRS)])
        dt = time.time() - t0
        cpu = (cpu_secs(pid) - c0) / dt * 100
        lat.sort(); rtt.sort()
        print(f"TR={TR} {ADDRS} addresses x {RATE}/s, {dt:.1f}s: {dict(st)}; relay CPU {cpu:.0f}%, RSS {rss_kib(pid)} KiB; "
              f"time to close p50 {1000*lat[len(lat)//2]:.0f} ms max {1000*lat[-1]:.0f} ms; "
              f"honest ping p50 {rtt[len(rtt)//2]:.1f} p99 {rtt[int(len(rtt)*.99)]:.1f} max {rtt[-1]:.0f} ms")
    finally:
        stop(relay)


asyncio.run(main())
