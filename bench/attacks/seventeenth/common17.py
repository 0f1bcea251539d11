"""Shared helpers for the seventeenth round (imports bench/attacks/tr.py; TR_PID for /proc)."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.environ.get("TR_LIB", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")))
from tr import pb, connect, env, cm, join, decode, cpu_secs, rss_kib  # noqa
from procstat import threads  # noqa

PID = int(os.environ.get("TR_PID", "0"))


def stat():
    return (rss_kib(PID) // 1024, cpu_secs(PID), threads(PID)) if PID else (0, 0, 0)


async def monitor(secs, tag="", every=2.0, extra=lambda: ""):
    t0, c0 = time.time(), stat()[1]
    last = c0
    while time.time() - t0 < secs:
        await asyncio.sleep(every)
        rss, cpu, th = stat()
        print(f"[{tag} t={time.time()-t0:4.1f}] rss={rss}MiB cpu%={(cpu-last)/every*100:5.1f} threads={th} {extra()}", flush=True)
        last = cpu


def event(room, kind, payload, targets=()):
    return cm(event=pb.SendEvent(room=room, kind=kind, payload=payload, targets=list(targets)))
