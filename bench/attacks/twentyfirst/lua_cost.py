"""Redis time of one OPEN_MATCHING (the Lua from src/cluster/redis_directory.rs, run with
EVAL so that the commandstats separate it from the nodes' EVALSHA) over entry sets of
size N built directly in Redis (db 9 of the Redis on 6421, flushed after): N rooms hold
entry A, N others entry B, every room holds E entries in all; filters = A, B plus K-2 of
the common entries. Prints usec per call for each K."""
import os, re, subprocess, hashlib, time
SRC = os.environ.get("SRC", "/work/main/src/cluster/redis_directory.rs")
N = int(os.environ.get("N", "2048")); E = int(os.environ.get("E", "16"))
src = open(SRC).read()
def raw(name):
    m = re.search(r'(?:const|static) ' + name + r'[^=]*=[^r]*r"(.*?)";', src, re.S) or re.search(name + r'.*?r"(.*?)"', src, re.S)
    return m.group(1)
lua = raw("NODE_START_LUA") + raw("OPEN_LUA") + re.search(r'static OPEN_MATCHING.*?r"(.*?)",\s*\)', src, re.S).group(1)
def dg(k, v): return hashlib.sha256(k.encode() + b"\0" + v.encode()).hexdigest()[:16]
R = ["redis-cli", "-p", "6421", "-n", "9"]
def cli(*a, inp=None): return subprocess.run(R + list(a), input=inp, capture_output=True, text=True).stdout
cli("flushdb")
common = [("c%d" % i, "1") for i in range(E - 2)]
lines = []
for side, (ka, kb) in enumerate([(("mode", "M"), ("map", "other")), (("mode", "other"), ("map", "P"))]):
    for i in range(N):
        rid = "zz-%d-%05d" % (side, i); ents = [ka, kb] + common
        d = " ".join(dg(k, v) for k, v in ents)
        lines.append("HSET p:room:%s node n2 entries \"%s\"" % (rid, d))
        for k, v in ents:
            lines.append("ZADD p:open-entry:%s:relay 1 %s" % (dg(k, v), rid))
        lines.append("ZADD p:open:relay 1 %s" % rid)
subprocess.run(R + ["--pipe"], input="\n".join(lines) + "\n", capture_output=True, text=True)
print("sizes: mode=M", cli("zcard", "p:open-entry:%s:relay" % dg("mode", "M")).strip(), "map=P", cli("zcard", "p:open-entry:%s:relay" % dg("map", "P")).strip())
for K in [2, 4, 8, 16]:
    filt = [("mode", "M"), ("map", "P")] + common[:K - 2]
    cli("config", "resetstat")
    for _ in range(10):
        out = cli("eval", lua, "1", "p:open:relay", "p:", "relay", "512", "2048", *[dg(k, v) for k, v in filt])
    st = [l for l in cli("info", "commandstats").splitlines() if l.startswith("cmdstat_eval:")]
    print("N=%d E=%d K=%d filters: found %d ids;" % (N, E, K, len(out.split())), st[0].split(",")[2] if st else st)
cli("flushdb")
