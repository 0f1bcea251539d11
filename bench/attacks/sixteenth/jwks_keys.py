"""JWK sets with unusual keys against the relay's token check (aws-lc-rs).

Run: COUNT=100 python3 jwks_keys.py
Writes out/set_odd.json: a real RSA-2048 key "A" plus RSA keys of 1024, 3072, 4096,
8192 and 16384 bits (random moduli: a public-key operation costs the same on any
modulus), exponents 1, 3, 2^32+1, a 2048-bit one and an even one, EC keys on
secp256k1, P-521 and an off-curve P-256 point, X25519, an `oct` key, malformed base64,
a missing `n`, and a key id listed 8 times. Starts a fake IdP (../fourteenth/fakeidp.py)
and the relay in JWT mode (plain ws://) on it, then for each odd key sends COUNT
upgrades with a token naming it (a random signature of the modulus' length) and
reports the status and the relay's CPU per upgrade; then the honest key A still works.
Then out/set_big.json (~1 MiB: ~2,400 RSA keys without `alg`, A last) with malformed,
kid-less, wrong-alg and forged tokens: the relay's CPU per refused upgrade.
"""
import os, sys, time, collections, base64, json
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, '..', 'fourteenth'), os.path.join(HERE, '..')]
from jwks_keys_lib import *
import procstat, up

def measure(relay, name, tok, count=COUNT):
    c0, sts, bodies = procstat.cpu_secs(relay.pid), collections.Counter(), set()
    t0 = time.time()
    for i in range(count):
        st, text = up.upgrade(RP, tok, src=f"127.0.1.{1 + i % 200}")
        sts[st] += 1
        if st != 101:
            bodies.add(text.split("\r\n\r\n", 1)[-1].strip()[:110])
    c = procstat.cpu_secs(relay.pid) - c0
    print(f"  {name:<28} {dict(sts)}  relay CPU {1000 * c / count:.3f} ms/upgrade  wall {1000*(time.time()-t0)/count:.1f} ms  {sorted(bodies)[:1]}", flush=True)


def run(tag, keys, tests):
    path = os.path.join(OUT, f"set_{tag}.json")
    json.dump({"keys": keys}, open(path, "w"))
    print(f"set {tag}: {len(keys)} keys, {os.path.getsize(path)} bytes", flush=True)
    idp = start_idp(tag, path, IDP, secs=300)
    relay = start_relay(tag, RP, *jwks_url(IDP))
    time.sleep(2)
    try:
        if relay.poll() is not None:
            print("  relay exited:", open(f"{OUT}/relay_{tag}.out").read()[-600:])
            return
        for name, tok, n in tests:
            measure(relay, name, tok, n)
        print(f"  relay RSS {procstat.rss_kib(relay.pid)} KiB, alive={relay.poll() is None}")
    finally:
        relay.terminate(); relay.wait(10); idp.terminate(); idp.wait(5)
        os.system(f"grep -i -E 'warn|error|panic' {OUT}/relay_{tag}.out | head -5")


tests = [("honest A", honest(), 20)]
for kid, k in odd.items():
    if k["kty"] == "RSA" and "n" in k and "!" not in k["n"]:
        bits = (len(base64.urlsafe_b64decode(k["n"] + "==")) * 8)
        tests.append((f"forged {kid}", forged(kid, siglen=bits // 8), COUNT))
    else:
        tests.append((f"forged {kid}", forged(kid, ALG.get(kid, "RS256"), SIGLEN.get(kid, 256)), 20))
tests.append(("forged dup (8 x 4096, one kid)", forged("dup", siglen=512), COUNT))
tests.append(("honest A again", honest(), 20))
run("odd", [keyA] + list(odd.values()) + dup, tests)

# a large set: ~1 MiB of RSA-2048 keys without alg (each verifies 6 algorithms), A last
n_big = int(os.environ.get("BIG", "2400"))
big = [{"kty": "RSA", "kid": f"x{i}", "n": keyA["n"], "e": "AQAB"} for i in range(n_big)] + [keyA]
tests_big = [
    ("honest A", honest(), 20),
    ("malformed 'a.b.c'", "a.b.c", COUNT),
    ("alg none, no kid", forged(None, header={"alg": "none"}), COUNT),
    ("ES512 no kid (no key)", forged(None, header={"alg": "ES512", "typ": "JWT"}, siglen=132), COUNT),
    ("forged kid x5", forged("x5"), COUNT),
    ("forged kid A", forged("A"), COUNT),
]
run("big", big, tests_big)
run("small", [keyA], [(n, t, c) for n, t, c in tests_big if "x5" not in n])
