"""Kid-less forged tokens at the per-address handshake rate (190/s) from ADDRS loopback
addresses for SECS seconds, against a relay whose JWK set holds SET's keys; an honest
client meanwhile upgrades with a proper token (kid A) every 0.25 s and times it.
Prints relay CPU (cores) and the honest upgrade time, before and during."""
import asyncio, os, subprocess, sys, time, collections, base64
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
import keys, procstat
from launch import start_idp, start_relay, jwks_url
SET = os.environ.get("SET", "set_many_8.json")
ADDRS = int(os.environ.get("ADDRS", "4"))
SECS = float(os.environ.get("SECS", "12"))
PER = float(os.environ.get("PER", "190"))
PORT, RP, D = 18083, 17547, HERE
idp = start_idp("nf", SET, PORT)
relay = start_relay("nf", RP, *jwks_url(PORT))
time.sleep(1.5)
bad = keys.token(kid=None, key="B")
good = keys.token(kid="A", key="A")


def req(tok):
    key = base64.b64encode(os.urandom(16))
    return (b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nAuthorization: Bearer " + tok.encode() + b"\r\n\r\n")


async def one(tok, src=None):
    r, w = await asyncio.open_connection("127.0.0.1", RP, local_addr=(src, 0) if src else None)
    w.write(req(tok)); await w.drain()
    line = await asyncio.wait_for(r.readline(), 10)
    w.close()
    return int(line.split()[1])


stats = collections.Counter()


async def attacker(src, until):
    n = 0
    t0 = time.time()
    pend = set()
    while time.time() < until:
        due = t0 + n / PER
        if due > time.time():
            await asyncio.sleep(due - time.time())
        n += 1
        async def go():
            try:
                stats[await one(bad, src)] += 1
            except Exception as e:
                stats[type(e).__name__] += 1
        t = asyncio.create_task(go()); pend.add(t); t.add_done_callback(pend.discard)
        if len(pend) > 300:
            await asyncio.sleep(0.01)
    await asyncio.gather(*pend, return_exceptions=True)


async def honest(until, out):
    while time.time() < until:
        t = time.time()
        try:
            st = await one(good)
        except Exception as e:
            st = type(e).__name__
        out.append(((time.time() - t) * 1000, st))
        await asyncio.sleep(0.25)


async def main():
    base = []
    c0, t0 = procstat.cpu_secs(relay.pid), time.time()
    await honest(time.time() + 3, base)
    print(f"quiet: relay {(procstat.cpu_secs(relay.pid)-c0)/(time.time()-t0):.2f} cores; honest upgrade ms "
          f"p50 {sorted(x for x,_ in base)[len(base)//2]:.1f} max {max(x for x,_ in base):.1f}")
    during = []
    until = time.time() + SECS
    c0, t0 = procstat.cpu_secs(relay.pid), time.time()
    hp = await asyncio.create_subprocess_exec(sys.executable, f"{D}/pinger.py", f"ws://127.0.0.1:{RP}/ws", keys.token(kid="A", key="A", sub="pinger"), str(SECS - 1), "in-session pings, separate process")
    await asyncio.gather(honest(until, during), *[attacker(f"127.0.0.{10+i}", until) for i in range(ADDRS)])
    await hp.wait()
    el = time.time() - t0
    ms = sorted(x for x, _ in during)
    print(f"flood ({ADDRS} addresses x {PER}/s, {SECS}s, {SET}): relay {(procstat.cpu_secs(relay.pid)-c0)/el:.2f} cores; "
          f"attack statuses {dict(stats)} ({sum(stats.values())/el:.0f}/s); honest upgrade ms p50 {ms[len(ms)//2]:.1f} "
          f"p90 {ms[int(len(ms)*0.9)]:.1f} max {ms[-1]:.1f}; honest statuses {collections.Counter(s for _, s in during)}")

try:
    asyncio.run(main())
finally:
    relay.terminate(); relay.wait(10); idp.terminate(); idp.wait(5)
