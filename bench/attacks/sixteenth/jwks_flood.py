"""Refused-token upgrades at the per-address handshake rate, against a small and a
large JWK set: the relay's CPU, and an honest client's upgrade time meanwhile.

Run: SET=big ADDRS=2 RATE=190 SECS=15 TOKEN=forged python3 jwks_flood.py
     (SET=small|big, from jwks_keys.py's out/set_*.json; TOKEN=forged|malformed)
Starts a fake IdP (../fourteenth/fakeidp.py) and the relay (plain ws://, JWT); ADDRS
source addresses 127.0.5.x each send RATE upgrades a second (below the 200/s
per-address rate) for SECS with a token naming key A with a random signature
(forged) or 'a.b.c' (malformed). An honest RS256 token upgrades every 0.2 s from
127.0.0.1. Bounded: SECS seconds, ADDRS*RATE*SECS upgrades.
"""
import asyncio, base64, collections, os, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]
import jwks_keys_lib as K
from lib16 import cpu_secs, rss_kib, lo

SET = os.environ.get("SET", "big"); ADDRS = int(os.environ.get("ADDRS", "2"))
RATE = float(os.environ.get("RATE", "190")); SECS = float(os.environ.get("SECS", "15"))
TOKEN = os.environ.get("TOKEN", "forged")
st = collections.Counter(); hon = []


def req(tok):
    return (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) +
            b"\r\nAuthorization: Bearer " + tok.encode() + b"\r\n\r\n")


async def upgrade(tok, src):
    r, w = await asyncio.open_connection("127.0.0.1", K.RP, local_addr=(lo(src), 0))
    try:
        w.write(req(tok))
        line = await asyncio.wait_for(r.readline(), 5)
        return line.split()[1].decode() if len(line.split()) > 1 else "?"
    finally:
        w.transport.abort()


async def flooder(a, tok, stop):
    src = f"127.0.5.{1 + a}"
    n = 0; t0 = time.time()
    pend = set()
    while time.time() < stop:
        due = t0 + n / RATE
        if due > time.time():
            await asyncio.sleep(due - time.time())
        n += 1
        async def one():
            try:
                st[await upgrade(tok, src)] += 1
            except Exception as e:
                st[type(e).__name__] += 1
        t = asyncio.create_task(one()); pend.add(t); t.add_done_callback(pend.discard)
    await asyncio.gather(*pend)


async def honest(stop):
    while time.time() < stop:
        t0 = time.time()
        try:
            code = await upgrade(K.honest(), "127.0.0.1")
            hon.append(((time.time() - t0) * 1000, code))
        except Exception as e:
            hon.append((5000, type(e).__name__))
        await asyncio.sleep(0.2)


async def main(relay):
    tok = K.forged("A") if TOKEN == "forged" else "a.b.c"
    stop = time.time() + SECS
    c0, t0 = cpu_secs(relay.pid), time.time()
    await asyncio.gather(honest(stop), *[flooder(a, tok, stop) for a in range(ADDRS)])
    dt = time.time() - t0
    cpu = (cpu_secs(relay.pid) - c0) / dt * 100
    lat = sorted(h[0] for h in hon)
    print(f"SET={SET} TOKEN={TOKEN} ADDRS={ADDRS} x {RATE}/s for {dt:.1f}s: statuses {dict(st)}; relay CPU {cpu:.0f}%; "
          f"honest upgrade p50 {lat[len(lat)//2]:.1f} ms p90 {lat[int(len(lat)*.9)]:.1f} ms max {lat[-1]:.0f} ms, "
          f"codes {dict(collections.Counter(h[1] for h in hon))}")


K.write_small_big(int(os.environ.get("BIG", "2400")))
idp = K.start_idp(SET, os.path.join(K.OUT, f"set_{SET}.json"), K.IDP)
relay = K.start_relay(SET + "_flood", K.RP, *K.jwks_url(K.IDP))
time.sleep(2)
try:
    asyncio.run(main(relay))
finally:
    relay.terminate(); relay.wait(10); idp.terminate(); idp.wait(5)
