"""A token without `kid` is checked with each key of the set: what one upgrade costs the
relay when the set holds N keys (SET=set_many_N.json; the real key last).
Sends COUNT upgrades (no kid, signed by a key NOT in the set -> every key tried), from one
address, sequentially; prints relay CPU per upgrade and the statuses."""
import os, subprocess, sys, time, collections, threading
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
import keys, up, procstat
from launch import start_idp, start_relay, jwks_url
SET = os.environ.get("SET", "set_many_1000.json")
COUNT = int(os.environ.get("COUNT", "100"))
PORT, RP, D = 18082, 17546, HERE
idp = start_idp("nk", SET, PORT)
relay = start_relay("nk", RP, *jwks_url(PORT))
time.sleep(1.5)
try:
    bad = keys.token(kid=None, key="B")
    good = keys.token(kid=None, key="A")
    withkid = keys.token(kid="A", key="A")
    forgedkid = keys.token(kid="A", key="B")
    for name, tok in (("forged, no kid", bad), ("honest key A, no kid", good), ("honest, kid A", withkid), ("forged, kid A", forgedkid)):
        c0, t0, sts = procstat.cpu_secs(relay.pid), time.time(), collections.Counter()
        for _ in range(COUNT):
            st, _ = up.upgrade(RP, tok); sts[st] += 1
        c = procstat.cpu_secs(relay.pid) - c0
        print(f"{SET}: {name}: {COUNT} upgrades, relay CPU {c:.2f} s = {1000*c/COUNT:.2f} ms each; statuses {dict(sts)}", flush=True)
finally:
    relay.terminate(); relay.wait(10); idp.terminate(); idp.wait(5)
