"""The relay's key fetching while it runs, against a fake IdP (fakeidp.py) on :18080.

Phases (relay with jwks_refresh_secs=REFRESH, default 2):
  ok A (6 s) -> hang (HANG s) -> trickle (TRICKLE s) -> ok A again (6 s) -> ok B (rotation)
Prints fetches per phase, the IdP's open connections (held by the relay), the relay's
open fds, and whether a token of key A still connects while the IdP misbehaves.
"""
import os, subprocess, sys, time, re, collections
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
import keys, up
from launch import start_idp, start_relay, jwks_url

REFRESH = int(os.environ.get("REFRESH", "2"))
HANG = int(os.environ.get("HANG", "45"))
TRICKLE = int(os.environ.get("TRICKLE", "30"))
PORT, RP = 18080, 17544
D = HERE
idp = start_idp("rt", "set_A.json", PORT, 200)
relay = start_relay("rt", RP, *jwks_url(PORT), "--set", f"auth.jwks_refresh_secs={REFRESH}")
t0 = time.time()


def fds():
    try:
        return len(os.listdir(f"/proc/{relay.pid}/fd"))
    except Exception:
        return -1


def conns_to_idp():
    out = subprocess.run(["ss", "-tnH", "state", "established", "dst", f"127.0.0.1:{PORT}"], capture_output=True, text=True).stdout
    return len([l for l in out.splitlines() if l.strip()])


def fetches():
    return sum(1 for l in open(f"{D}/idp_rt.log") if " req GET" in l)


def probe(kid="A", key="A"):
    try:
        st, _ = up.upgrade(RP, keys.token(kid=kid, key=key))
    except Exception as e:
        st = repr(e)
    return st


try:
    time.sleep(1)
    for name, mode, secs in (("ok A", "ok set_A.json", 6), ("hang", "hang", HANG), ("trickle", "trickle", TRICKLE),
                             ("ok A again", "ok set_A.json", 8), ("rotated to B", "ok set_B.json", 8)):
        open(f"{D}/mode_rt", "w").write(mode + "\n")
        f0, end = fetches(), time.time() + secs
        sts = collections.Counter()
        maxc = 0
        while time.time() < end:
            sts[probe()] += 1
            maxc = max(maxc, conns_to_idp())
            time.sleep(1)
        print(f"{time.time()-t0:6.1f}s phase {name:13s} {secs:3d}s: fetches {fetches()-f0:3d}, relay->idp conns now {conns_to_idp()} (max {maxc}), "
              f"relay fds {fds()}, token A upgrades {dict(sts)}, token B: {probe('B','B')}", flush=True)
finally:
    relay.terminate(); relay.wait(10)
    idp.terminate(); idp.wait(5)
print("relay log warnings:")
for l in open(f"{D}/relay_rt.out"):
    if "WARN" in l or "ERROR" in l:
        print("  ", l.strip()[:220])
