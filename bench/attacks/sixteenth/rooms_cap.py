"""The room cap (max_rooms, 10,000) from many source addresses in anonymous mode
(room creation is limited per address: burst 60, 2 a minute... 120 a minute).

Run: S=660 ADDRS=220 DATA=1024 python3 rooms_cap.py
Starts its own relay (plain ws://, 127.0.0.1:$PORT, default 7668). S sessions from
127.0.3.1.. (S/ADDRS per address, 16 rooms each, 48 per address: under the burst)
send their 16 joins (DATA bytes of member data each) at once, then read; an honest
client from 127.0.0.1 tries to create a room every second. Reports when the cap
was reached, the relay's RSS and CPU, what the honest client got. Bounded: S+1
connections, about 30 s.
"""
import asyncio, collections, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib16 import *

PORT = int(os.environ.get("PORT", "7668"))
S = int(os.environ.get("S", "660")); ADDRS = int(os.environ.get("ADDRS", "220"))
DATA = int(os.environ.get("DATA", "1024")); SECS = float(os.environ.get("SECS", "25"))
codes = collections.Counter(); honest_log = []


async def member(i, stop):
    src = f"127.0.{3 + (i % ADDRS) // 250}.{1 + (i % ADDRS) % 250}"
    try:
        ws = await ws_connect(PORT, src=src, plain=True); await ws.recv()
        for half in (range(0, 8), range(8, 16)):
            await ws.send(env(*[join(f"s{i}-r{k}", k + 1, "relay", data=b"d" * DATA) for k in half]))
        while time.time() < stop:
            try:
                d = await asyncio.wait_for(ws.recv(), 1)
            except asyncio.TimeoutError:
                continue
            for m in decode(d).messages:
                k = m.WhichOneof("kind")
                if k == "joined":
                    codes["joined"] += 1
                elif k == "error":
                    codes[pb.ErrorCode.Name(m.error.code)] += 1
        return ws
    except Exception as e:
        codes[type(e).__name__] += 1


async def honest(t0, stop):
    ws = await ws_connect(PORT, plain=True); await ws.recv()
    n = 0
    while time.time() < stop:
        n += 1
        await ws.send(env(join(f"honest-{n}", n, "relay")))
        m, _ = await ws_recv_until(ws, lambda m: m.WhichOneof("kind") in ("joined", "error"), 2)
        r = "none" if m is None else ("joined" if m.WhichOneof("kind") == "joined" else pb.ErrorCode.Name(m.error.code))
        honest_log.append((round(time.time() - t0, 1), r))
        if m is not None and m.WhichOneof("kind") == "joined":
            await ws.send(env(cm(leave=pb.LeaveRoom(request_id=10**6 + n, room=f"honest-{n}"))))
        await asyncio.sleep(1)


async def main():
    relay = start_relay(PORT, "--no-quic", tag="rooms_cap", plain=True)
    pid = relay.pid
    try:
        r0 = rss_kib(pid); c0 = cpu_secs(pid); t0 = time.time(); stop_at = t0 + SECS
        h = asyncio.create_task(honest(t0, stop_at))
        tasks = []
        for i in range(S):
            tasks.append(asyncio.create_task(member(i, stop_at)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        peak = r0
        while time.time() < stop_at:
            await asyncio.sleep(1); peak = max(peak, rss_kib(pid))
        wss = await asyncio.gather(*tasks); await h
        print(f"{S} sessions from {ADDRS} addresses, member data {DATA} B: {dict(codes)}; relay CPU {cpu_secs(pid)-c0:.1f} s; RSS {r0} -> peak {peak} KiB")
        changes = [honest_log[0]] + [b for a, b in zip(honest_log, honest_log[1:]) if a[1] != b[1]]
        print(f"honest room creations (time s, answer), changes only: {changes}; last {honest_log[-1]}")
        for ws in wss:
            if ws:
                ws.transport.abort()
    finally:
        stop(relay)


asyncio.run(main())
