"""Honest session in its own process: pings every 100 ms for SECS, prints RTT stats.
  python3 pinger.py URL TOKEN SECS LABEL
(`ping_rtts` is the same session inside another script's event loop.)"""
import os, asyncio, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
import tr
from tr import pb


async def ping_rtts(url, token, until, out):
    """Pings every 100 ms until `until` (time.time()), appending each RTT in ms to
    `out` (5000 for a ping unanswered within 5 s)."""
    hdr = {"Authorization": "Bearer " + token} if token != "-" else {}
    ws = await tr.websockets.connect(url, additional_headers=hdr, max_size=1 << 24, ping_interval=None)
    n = 0
    while time.time() < until:
        n += 1
        t = time.time()
        await ws.send(tr.env(tr.cm(ping=pb.Ping(nonce=n))))
        m, _ = await tr.recv_until(ws, lambda m: m.WhichOneof("kind") == "pong" and m.pong.nonce == n, 5)
        out.append((time.time() - t) * 1000 if m else 5000)
        await asyncio.sleep(0.1)
    await ws.close()


async def main(url, token, secs, label):
    out = []
    await ping_rtts(url, token, time.time() + secs, out)
    out.sort()
    print(f"  honest ({label}): ping RTT ms p50 {out[len(out)//2]:.1f} p90 {out[int(len(out)*.9)]:.1f} max {out[-1]:.1f} (n={len(out)}, timeouts {out.count(5000)})", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]))
