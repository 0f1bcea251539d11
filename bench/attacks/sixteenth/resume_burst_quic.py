"""resume_burst.py over QUIC: the sender starts over QUIC and, whenever it has spent
its burst (PER events), drops the connection and resumes with a Hello (received_seq
0), from ADDRS source addresses in turn. A WebSocket member counts the events.

Run: SECS=10 KIB=1 python3 resume_burst_quic.py
Starts its own relay (wss + QUIC, 127.0.0.1:$PORT, default 7669). Bounded: 3
connections at a time, SECS seconds.
"""
import asyncio, collections, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib16 import *

PORT = int(os.environ.get("PORT", "7669"))
SECS = float(os.environ.get("SECS", "10")); KIB = float(os.environ.get("KIB", "1"))
ADDRS = int(os.environ.get("ADDRS", "8")); PER = int(os.environ.get("PER", "100"))
st = collections.Counter()


async def main():
    relay = start_relay(PORT, tag="resume_burst_quic")
    pid = relay.pid
    try:
        rx = await ws_connect(PORT); await rx.recv()
        await rx.send(env(join("rb", 1, "relay")))
        await ws_recv_until(rx, lambda m: m.WhichOneof("kind") == "joined")
        q = await quic_open(PORT); q.hello()
        token = (await asyncio.wait_for(q.welcome, 5)).resume_token
        q.send_env(join("rb", 1, "relay"))
        await q.wait_for(lambda m: m.WhichOneof("kind") == "joined", 3)
        payload = b"e" * int(KIB * 1024)
        got = collections.Counter(); t0 = time.time()

        async def receive():
            while time.time() < t0 + SECS + 1:
                try:
                    d = await asyncio.wait_for(rx.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                for m in decode(d).messages:
                    if m.WhichOneof("kind") == "event":
                        got[int(time.time() - t0)] += 1
                    elif m.WhichOneof("kind") == "presence":
                        st[f"rx_presence_{m.presence.change}"] += 1
        rt = asyncio.create_task(receive())
        c0 = cpu_secs(pid); i = 0
        while time.time() < t0 + SECS:
            for _ in range(PER):
                q.send_env(cm(event=pb.SendEvent(room="rb", kind="k", payload=payload)))
                st["sent"] += 1
            await asyncio.sleep(0.03)
            for m in q.msgs:
                if m.WhichOneof("kind") == "error":
                    st[f"err_{pb.ErrorCode.Name(m.error.code)}"] += 1
            if q.closed:
                st[f"closed_{q.closed[0]}"] += 1
            quic_drop(q); i += 1
            q = await quic_open(PORT, src=f"127.0.7.{1 + i % ADDRS}")
            q.hello(resume=token, received=0)
            w = await asyncio.wait_for(q.welcome, 5)
            st["resumed" if w is not None and w.resumed else f"not_resumed_{q.closed}"] += 1
        dt = time.time() - t0
        cpu = (cpu_secs(pid) - c0) / dt * 100
        await rt
        quic_drop(q)
        n = sum(got.values())
        print(f"QUIC resume loop {dt:.1f}s: {dict(st)}; events relayed to the other member {n} ({n/dt:.0f}/s, "
              f"{n*KIB/dt:.0f} KiB/s; limit 50/s, 64 KiB/s); per second {[got[k] for k in sorted(got)]}; relay CPU {cpu:.0f}%")
    finally:
        stop(relay)


asyncio.run(main())
