"""Honest session in its own process: pings every 100 ms for SECS, prints RTT stats.
  python3 pinger.py URL TOKEN SECS LABEL"""
import os, asyncio, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
BIN = os.environ.get("TR_BIN", os.path.join(HERE, "..", "..", "..", "target", "release", "tickrelay"))
import tr
from tr import pb
URL, TOK, SECS, LABEL = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]


async def main():
    hdr = {"Authorization": "Bearer " + TOK} if TOK != "-" else {}
    ws = await tr.websockets.connect(URL, additional_headers=hdr, max_size=1 << 24, ping_interval=None)
    out, n, until = [], 0, time.time() + SECS
    while time.time() < until:
        n += 1
        t = time.time()
        await ws.send(tr.env(tr.cm(ping=pb.Ping(nonce=n))))
        m, _ = await tr.recv_until(ws, lambda m: m.WhichOneof("kind") == "pong" and m.pong.nonce == n, 5)
        out.append((time.time() - t) * 1000 if m else 5000)
        await asyncio.sleep(0.1)
    out.sort()
    print(f"  honest ({LABEL}): ping RTT ms p50 {out[len(out)//2]:.1f} p90 {out[int(len(out)*.9)]:.1f} max {out[-1]:.1f} (n={len(out)}, timeouts {out.count(5000)})", flush=True)
    await ws.close()
asyncio.run(main())
