"""QUIC connection/handshake flood from one address. N connections opened as fast as
aioquic can (CONC at once); MODE=nohello: complete the handshake and never open the
control stream (server should close 4502 after 10 s); MODE=slowhello: open the stream and
send the Hello one byte every 2 s (4502 at 10 s); MODE=hello: become idle sessions.
Holds them HOLD seconds, then reports outcome counts. Bounded: ~HOLD+20 s."""
import asyncio, os, sys, time, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qc import *

N = int(os.environ.get("N", "600"))
CONC = int(os.environ.get("CONC", "50"))
MODE = os.environ.get("MODE", "nohello")
HOLD = float(os.environ.get("HOLD", "14"))
results = collections.Counter()
closes = collections.Counter()
close_times = []
t0 = time.time()


async def one(i, sem):
    async with sem:
        try:
            cm_ = quic_connect()
            c = await asyncio.wait_for(cm_.__aenter__(), 8)
        except Exception as e:
            results["connect_failed:" + type(e).__name__] += 1
            return
    results["connected"] += 1
    start = time.time()
    try:
        if MODE == "hello":
            c.send_hello()
            try:
                await asyncio.wait_for(c.welcome, 8)
                results["welcome"] += 1
            except Exception:
                results["no_welcome"] += 1
        elif MODE == "slowhello":
            h = frame(pb.Hello(token="", client_id="x" * 20).SerializeToString())
            for b in h[:-1]:
                if c.closed:
                    break
                c.send_raw(bytes([b]))
                await asyncio.sleep(2)
        end = t0 + HOLD
        while time.time() < end and c.closed is None:
            await asyncio.sleep(0.2)
        if c.closed:
            closes[c.closed] += 1
            close_times.append(round(c.closed_at - start, 1))
        else:
            closes["still open"] += 1
    finally:
        try:
            c.close(error_code=1000)
            c.transmit()
        except Exception:
            pass


async def main():
    sem = asyncio.Semaphore(CONC)
    tasks = [asyncio.create_task(one(i, sem)) for i in range(N)]
    await asyncio.wait(tasks, timeout=HOLD + 15)
    print("after", round(time.time() - t0, 1), "s: results", dict(results))
    print("closes", {str(k): v for k, v in closes.items()})
    if close_times:
        close_times.sort()
        print("close after (s): min", close_times[0], "median", close_times[len(close_times)//2], "max", close_times[-1])
    await asyncio.sleep(0.5)

asyncio.run(asyncio.wait_for(main(), HOLD + 30))
