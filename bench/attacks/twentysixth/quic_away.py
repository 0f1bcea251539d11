"""Rerun against 957a6f9, QUIC: the away member of finding 1 over QUIC instead of WebSocket.
lib26 speaks only ws/wss, so the QUIC members are a tickrelay-bots process
(`--url quic://127.0.0.1:PORT --room-prefix PREFIX --room-type relay --members 1
--input-rate 0`): one QUIC member in each of the ROOMS rooms that away_full.py's writers fill
(over wss; start the relay with TLS=1). Phases as away_full.py: `touch` (the QUIC members
read everything), then `away`: the QUIC process is stopped (SIGSTOP: it neither reads, nor
acknowledges, nor answers QUIC), so its connections stall until the relay gives up on them
and the sessions wait for a resume. `away2`... go on with it stopped. QUIC_SLOTS=K: K such
processes, each stopped K-th of a second (STAGGER_MS) after the one before. The stopped
processes are killed at the end. Loopback only; bounded by MAX_SECS (default 150 s)."""
import asyncio, os, signal, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import away_full as af
import away_rerun as ar  # noqa: F401  (its sampler)
from away_full import *  # noqa

QURL = os.environ.get("QURL", f"quic://127.0.0.1:{PORT}")
assert QURL.startswith("quic://127.0.0.1:") or QURL.startswith("quic://[::1]:")
SLOTS = int(os.environ.get("QUIC_SLOTS", "1"))
STAGGER = float(os.environ.get("STAGGER_MS", str(1000 / 30))) / 1000
MAX = float(os.environ.get("MAX_SECS", "150"))


async def main():
    rooms = [f"{af.PREFIX}-{r}" for r in range(af.ROOMS)]
    writers = [af.Writer(r, i) for r in rooms for i in range(af.W)]
    for w in writers:
        await w.open()
        assert await w.join([w.room]), (w.name, w.errors)
    qs = []
    for s in range(SLOTS):
        out = open(f"{WORK}/bots_quic_{s}.txt", "w")
        p = await asyncio.create_subprocess_exec(
            BOTS_BIN, "--url", QURL, "--room-prefix", af.PREFIX, "--rooms", str(af.ROOMS), "--members", "1",
            "--room-type", "relay", "--input-rate", "0", "--duration-secs", str(int(MAX)), "--ramp-up-secs", "0",
            "--progress-secs", "0", "--verify-share", "0", stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=WORK)
        qs.append(p)
    await asyncio.sleep(3)
    m = metrics()
    print(f"{len(writers)} writers in {af.ROOMS} rooms, {SLOTS} QUIC bots processes; members {m.get('tickrelay_members')} "
          f"connections {m.get('tickrelay_connections')}", flush=True)
    try:
        t0 = time.time()
        p = Phase("fill")
        try:
            await asyncio.wait_for(asyncio.gather(*(w.fill() for w in writers)), af.FILL_TIMEOUT)
        except asyncio.TimeoutError:
            print("fill timed out", flush=True)
        await asyncio.sleep(1.5)
        p.end()
        print(f"filled in {time.time()-t0:.1f}s", flush=True)
        touchers = [w for w in writers if w.idx == 0]

        async def stop_all():
            for k, q in enumerate(qs):
                await asyncio.sleep(STAGGER if k else 0)
                q.send_signal(signal.SIGSTOP)

        for ph in af.PHASES:
            if ph == "touch":
                await af.phase(ph, asyncio.gather(*(w.touch(af.PH) for w in touchers)))
            elif ph == "away":
                await af.phase(ph, asyncio.gather(*(w.touch(af.PH) for w in touchers), stop_all()))
            elif ph.startswith("away"):
                await af.phase(ph, asyncio.gather(*(w.touch(af.PH) for w in touchers)))
        m = metrics()
        print(f"members {m.get('tickrelay_members')} connections {m.get('tickrelay_connections')}", flush=True)
    finally:
        for q in qs:
            if q.returncode is None:
                q.kill()
                await q.wait()
    for w in writers:
        await w.close()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), MAX))
