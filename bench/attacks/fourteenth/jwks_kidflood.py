"""Tokens naming unknown key ids at a high rate, and a forged kid that should turn from 503
to 401 after two fetches. FLOOD=1: 1,100+ distinct kids between fetches (from 127.0.0.2..9 to
stay under the per-address handshake rate); FLOOD=0: only the forged kid.
Relay: jwks_refresh_secs=600 (so every fetch seen is one a token brought forward).
Runs SECS (default 75) seconds.
"""
import os, subprocess, sys, time, collections, uuid, threading
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
import keys, up, procstat
from launch import start_idp, start_relay, jwks_url

FLOOD = os.environ.get("FLOOD", "1") == "1"
SECS = int(os.environ.get("SECS", "75"))
RATE = float(os.environ.get("RATE", "5"))  # flood upgrades per second per thread (THREADS=16)
PORT, RP, D = 18081, 17545, HERE
idp = start_idp("kf", "set_A.json", PORT, SECS + 30)
relay = start_relay("kf", RP, *jwks_url(PORT))
time.sleep(1)
t0 = time.time()
fetch_times = []
forged = keys.token(kid="forged-kid", key="B")  # signed by B, which the set never holds
# pre-sign flood tokens: the relay never gets to the signature, any token with an unknown kid will do
import jwt as pyjwt
stop = False
import base64, json


def raw_token(kid):
    e = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()
    return e({"alg": "RS256", "typ": "JWT", "kid": kid}) + "." + e({"sub": "x", "exp": int(time.time()) + 3600}) + ".c2ln"
flood_status = collections.Counter()


def flood():
    i = 0
    while not stop:
        t = time.time()
        tok = raw_token(uuid.uuid4().hex)
        try:
            st, _ = up.upgrade(RP, tok, src=f"127.0.0.{2 + i % 8}")
        except Exception as e:
            st = "exc"
        flood_status[st] += 1
        i += 1
        time.sleep(max(0, 1 / RATE - (time.time() - t)))


th = []
if FLOOD:
    th = [threading.Thread(target=flood) for _ in range(int(os.environ.get("THREADS", "16")))]
    for t in th: t.start()
c0 = procstat.cpu_secs(relay.pid)
try:
    last = None
    while time.time() - t0 < SECS:
        st, body = up.upgrade(RP, forged)
        fetches = sum(1 for l in open(f"{D}/idp_kf.log") if " req GET" in l) - 1  # minus the start's
        if (st, fetches) != last:
            print(f"{time.time()-t0:5.1f}s forged kid -> {st} ({body.splitlines()[-1][:60] if body else ''}); fetches since start {fetches}", flush=True)
            last = (st, fetches)
        time.sleep(1)
finally:
    stop = True
    for t in th: t.join()
    cpu = procstat.cpu_secs(relay.pid) - c0
    relay.terminate(); relay.wait(10); idp.terminate(); idp.wait(5)
print(f"flood statuses {dict(flood_status)}; relay CPU {cpu:.1f} s over {SECS} s")
