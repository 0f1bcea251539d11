"""Reconnect-and-flood over QUIC: WORKERS loops, each connects, sends its Hello, blasts
max-size Ping datagrams until the server closes it (1008), and connects again, for SECS.
Reports connections, close codes and refusals. Bounded: SECS + 15 s."""
import asyncio, os, sys, time, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qc import *
from quic_dgram_flood import padded_ping
WORKERS = int(os.environ.get("WORKERS", "10")); SECS = float(os.environ.get("SECS", "15"))
stats = collections.Counter()


async def worker(w):
    d = padded_ping(1150)
    t_end = time.time() + SECS
    while time.time() < t_end:
        try:
            cmgr = quic_connect()
            c = await asyncio.wait_for(cmgr.__aenter__(), 5)
        except Exception as e:
            stats["connect_fail:" + type(e).__name__] += 1
            await asyncio.sleep(0.05)
            continue
        stats["connected"] += 1
        c.send_hello()
        try:
            await asyncio.wait_for(c.welcome, 5)
        except Exception:
            stats["no_welcome"] += 1
        while c.closed is None and time.time() < t_end:
            for _ in range(20):
                if len(c._quic._datagrams_pending) < 100:
                    c._quic.send_datagram_frame(d)
                    stats["dgrams"] += 1
            c.transmit()
            await asyncio.sleep(0)
        stats["close:%s" % (c.closed,)] += 1
        if c.closed is None:
            c.close(error_code=1000); c.transmit()


async def main():
    await asyncio.gather(*[worker(i) for i in range(WORKERS)], return_exceptions=True)
    print(dict(stats))
if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), SECS + 15))
