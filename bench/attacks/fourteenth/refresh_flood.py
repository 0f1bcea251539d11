"""RefreshToken messages with tokens that make the relay verify signatures, at each
session's message rate (50/s), from S sessions of one legitimate user; an honest session
pings every 100 ms meanwhile.
CONF=jwks8: keys from a JWK set of 8 RSA keys (set_many_8.json), kid-less forged tokens
            (every key of the set tried);
CONF=rs256: one RS256 public key (pubA.pem), forged tokens (one verification each).
S (default 20) sessions, SECS (default 12) seconds.  Prints relay CPU and the honest RTT."""
import asyncio, os, subprocess, sys, time, collections
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
import keys, procstat
from launch import start_idp, start_relay, jwks_url
from pinger import ping_rtts
import tr
from tr import pb
CONF = os.environ.get("CONF", "jwks8")
S = int(os.environ.get("S", "20"))
SECS = float(os.environ.get("SECS", "12"))
MSG = os.environ.get("MSG", "refresh")
PER_ENV = int(os.environ.get("PER_ENV", "10"))
PORT, RP, D = 18084, 17548, HERE
idp = None
if CONF == "jwks8":
    idp = start_idp("rf", "set_many_8.json", PORT)
    args = jwks_url(PORT)
    bad = keys.token(kid=None, key="B")
else:
    args = ["--set", "auth.algorithm=RS256", "--set", f"auth.public_key={D}/pubA.pem"]
    bad = keys.token(kid="A", key="B")
relay = start_relay("rf", RP, *args)
time.sleep(1.5)
URL = f"ws://127.0.0.1:{RP}/ws"
good = keys.token(kid="A", key="A", sub="attacker")
hgood = keys.token(kid="A", key="A", sub="honest")
answers = collections.Counter()


async def attacker(i, until):
    ws = await tr.websockets.connect(URL, additional_headers={"Authorization": "Bearer " + good}, max_size=1 << 24, ping_interval=None)
    async def reader():
        try:
            async for data in ws:
                for m in tr.decode(data).messages:
                    k = m.WhichOneof("kind")
                    answers[k if k != "error" else f"error:{pb.ErrorCode.Name(m.error.code)}"] += 1
        except Exception:
            pass
    rt = asyncio.create_task(reader())
    rid = 1
    while time.time() < until:
        msgs = []
        for _ in range(PER_ENV):
            if MSG == "refresh":
                msgs.append(tr.cm(refresh_token=pb.RefreshToken(request_id=rid, token=bad)))
            else:  # control: a cheap message at the same rate and about the same size
                msgs.append(tr.cm(ping=pb.Ping(nonce=rid, sent_time_us=1)))
            rid += 1
        try:
            await ws.send(tr.env(*msgs))
        except Exception:
            answers[f"closed {ws.close_code}"] += 1
            break
        await asyncio.sleep(PER_ENV / 50)
    await ws.close(); rt.cancel()


async def honest(until, out):
    await ping_rtts(URL, hgood, until, out)


async def main():
    q = []
    await honest(time.time() + 2, q)
    q.sort()
    print(f"{CONF}: quiet honest ping RTT ms p50 {q[len(q)//2]:.2f} max {q[-1]:.2f}")
    until = time.time() + SECS
    c0, t0 = procstat.cpu_secs(relay.pid), time.time()
    out = []
    hp = await asyncio.create_subprocess_exec(sys.executable, f"{D}/pinger.py", URL, hgood, str(SECS - 1), "separate process")
    await asyncio.gather(honest(until, out), *[attacker(i, until) for i in range(S)])
    await hp.wait()
    el = time.time() - t0
    out.sort()
    print(f"{CONF} MSG={MSG}: {S} sessions x 50 msgs/s for {SECS}s: relay {(procstat.cpu_secs(relay.pid)-c0)/el:.2f} cores; "
          f"answers {dict(answers)} ({sum(answers.values())/el:.0f}/s); honest ping RTT ms p50 {out[len(out)//2]:.1f} "
          f"p90 {out[int(len(out)*.9)]:.1f} max {out[-1]:.1f} (n={len(out)})")

try:
    asyncio.run(main())
finally:
    relay.terminate(); relay.wait(10)
    if idp: idp.terminate(); idp.wait(5)
