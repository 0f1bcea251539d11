"""Does a resume hand a session a fresh rate-limit bucket? One member of room 'rb'
sends events as fast as it can for SECS; in MODE=resume it aborts and resumes its
session (same member, same rooms) whenever it has spent its burst; in MODE=plain it
keeps one connection. A second member counts the events relayed to it per second.

Run: MODE=resume SECS=10 KIB=1 python3 resume_burst.py   (then MODE=plain)
Starts its own relay (plain ws://, 127.0.0.1:$PORT, default 7665). Resumes rotate
over ADDRS source addresses (127.0.4.x) so the per-address handshake rate is not
what stops them. RX=30: 30 members receive. Bounded: RX+2 connections at a time, SECS seconds.
"""
import asyncio, collections, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib16 import *

PORT = int(os.environ.get("PORT", "7665"))
MODE = os.environ.get("MODE", "resume"); SECS = float(os.environ.get("SECS", "10"))
KIB = float(os.environ.get("KIB", "1")); ADDRS = int(os.environ.get("ADDRS", "8"))
PER = int(os.environ.get("PER", "100"))
RX = int(os.environ.get("RX", "1"))  # members receiving (one counts; the others read and drop)  # events sent per connection before resuming
st = collections.Counter()


async def main():
    relay = start_relay(PORT, "--no-quic", tag="resume_burst", plain=True)
    pid = relay.pid
    try:
        rx = await ws_connect(PORT, plain=True); await rx.recv()
        await rx.send(env(join("rb", 1, "relay")))
        await ws_recv_until(rx, lambda m: m.WhichOneof("kind") == "joined")
        others = []
        for _ in range(RX - 1):
            o = await ws_connect(PORT, plain=True); await o.recv()
            await o.send(env(join("rb", 1, "relay")))
            others.append(o)

        async def sink(o):
            n = 0
            while time.time() < t0 + SECS + 1:
                try:
                    n += len(await asyncio.wait_for(o.recv(), 0.5))
                except asyncio.TimeoutError:
                    continue
                except websockets.ConnectionClosed:
                    st[f"rx_closed_{o.close_code}"] += 1; break
            st["other_rx_bytes"] += n
        tx = await ws_connect(PORT, plain=True)
        token = decode(await tx.recv()).messages[0].welcome.resume_token
        await tx.send(env(join("rb", 1, "relay")))
        await ws_recv_until(tx, lambda m: m.WhichOneof("kind") == "joined")
        payload = b"e" * int(KIB * 1024)
        got = collections.Counter()
        t0 = time.time()

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
        sinks = [asyncio.create_task(sink(o)) for o in others]
        c0 = cpu_secs(pid)
        i = 0
        while time.time() < t0 + SECS:
            try:
                for _ in range(PER if MODE == "resume" else 10):
                    await tx.send(env(cm(event=pb.SendEvent(room="rb", kind="k", payload=payload))))
                    st["sent"] += 1
                if MODE != "resume":
                    try:
                        d = await asyncio.wait_for(tx.recv(), 0.001)
                        for m in decode(d).messages:
                            if m.WhichOneof("kind") == "error":
                                st[f"err_{pb.ErrorCode.Name(m.error.code)}"] += 1
                    except asyncio.TimeoutError:
                        pass
                    continue
                await asyncio.sleep(0.02)
                _, seen = await ws_recv_until(tx, lambda m: False, 0.01)
                for m in seen:
                    if m.WhichOneof("kind") == "error":
                        st[f"err_{pb.ErrorCode.Name(m.error.code)}"] += 1
                tx.transport.abort()
                i += 1
                tx = await ws_connect(PORT, f"resume={token}&received=0", src=f"127.0.4.{1 + i % ADDRS}", plain=True)
                w = decode(await tx.recv()).messages[0].welcome
                st["resumed" if w.resumed else "new_session"] += 1
            except websockets.ConnectionClosed as e:
                st[f"closed_{tx.close_code}"] += 1
                if MODE != "resume":
                    break
        dt = time.time() - t0
        cpu = (cpu_secs(pid) - c0) / dt * 100
        await rt
        await asyncio.gather(*sinks)
        per_sec = [got[k] for k in sorted(got)]
        print(f"MODE={MODE} {dt:.1f}s: {dict(st)}; events relayed to the other member {sum(got.values())} "
              f"({sum(got.values())/dt:.0f}/s, {sum(got.values())*KIB/dt:.0f} KiB/s; limit 50/s, 64 KiB/s); per second {per_sec}; relay CPU {cpu:.0f}%")
    finally:
        stop(relay)


asyncio.run(main())
