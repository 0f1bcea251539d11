#!/usr/bin/env python3
# s2f: a rolling restart (SIGTERM) some time after Redis restarted EMPTY. Client A (session begun before
# the Redis restart) is in a relay room on node 3 and owns entity 900; Redis is SIGKILLed and started empty;
# WAIT s later node 3 is SIGTERMed; A follows GoingAway with its resume token, rejoins the room and removes
# its own entity. Control: client N, whose session began AFTER the Redis restart, does the same.
# Usage: D=/tmp/soak13/s2f RP=6488 P=787 WAIT=20 python3 s2f_term_after_empty.py (starts/stops its own Redis+nodes)
import asyncio, os, ssl, subprocess, sys, time, signal
sys.path.insert(0, os.environ.get("SOAK", "/tmp/soak13") + "/gen")
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from tickrelay.v1 import tickrelay_pb2 as pb
HERE = os.path.dirname(os.path.abspath(__file__)); D = os.environ["D"]; RP = os.environ["RP"]; P = os.environ["P"]; WAIT = float(os.environ.get("WAIT", "20"))
os.makedirs(D, exist_ok=True); T0 = time.time()
def out(*a): print(f"[{time.time()-T0:6.1f}s]", *a, flush=True)
def sh(cmd):
    with open(f"{D}/sh.out", "a") as f:
        subprocess.run(["bash", "-c", f"source {HERE}/common.sh; {cmd}"], stdout=f, stderr=subprocess.STDOUT, env=os.environ, cwd=D)
    return (open(f"{D}/sh.out").read().strip().splitlines() or [""])[-1]
def pid(name): return int(open(f"{D}/pids/{name}.pid").read().split()[0])
def nid(i): return f"{i>>40}:{i&((1<<40)-1)}"
ctx = None
class C:
    def __init__(s, name): s.name = name; s.msgs = []; s.going = None; s.seq = 0
    async def open(s, url, q=""):
        s.ws = await connect(url + q, ssl=ctx, server_hostname="localhost", open_timeout=5, max_size=2**22)
        return await s.until("welcome")
    async def until(s, kinds, timeout=8):
        kinds = kinds.split(",")
        t0 = time.time()
        while time.time() - t0 < timeout:
            e = pb.ServerEnvelope(); e.ParseFromString(await asyncio.wait_for(s.ws.recv(), timeout))
            n = sum(1 for m in e.messages if m.WhichOneof("kind") not in ("state", "welcome"))
            if e.first_seq and n: s.seq = e.first_seq + n - 1
            for m in e.messages:
                k = m.WhichOneof("kind")
                if k == "going_away": s.going = m.going_away.url
                if k != "state": s.msgs.append((k, getattr(m, k)))
                if k in kinds: return getattr(m, k)
        raise TimeoutError(kinds)
    async def send(s, m): e = pb.ClientEnvelope(); e.messages.append(m); await s.ws.send(e.SerializeToString())
    async def join(s, room):
        await s.send(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=room, room_type="relay")))
        return await s.until("joined,error,redirect")
async def scenario(name, url3, room, eid):
    a = C(name); w = await a.open(url3); j = await a.join(room)
    await a.send(pb.ClientMessage(input=pb.Input(room=room, seq=1, writes=pb.EntityWrites(create=[pb.Entity(id=eid, kind=1, fields=[pb.Field(id=1, int=1)])]))))
    return a, w, j
async def follow(a, w, room, eid, fallback):
    try:
        while True: await a.until("nothing", 5)
    except ConnectionClosed as e: out(a.name, "closed", e.rcvd.code if e.rcvd else None, "GoingAway ->", a.going)
    except Exception as e: out(a.name, "no close?", repr(e))
    url = a.going or fallback
    b = C(a.name + "'")
    try:
        w2 = await b.open(url, f"?resume={w.resume_token}&received={a.seq}")
        out(b.name, "Welcome resumed=%s session %s (was %s) same=%s" % (w2.resumed, nid(w2.session_id), nid(w.session_id), w2.session_id == w.session_id))
    except ConnectionClosed as e:
        out(b.name, "resume refused:", e.rcvd.code, e.rcvd.reason); w2 = await b.open(url); out(b.name, "new session", nid(w2.session_id))
    j = await b.join(room)
    if isinstance(j, pb.Joined): out(b.name, "rejoined as member", nid(j.member_id), "last_input_seq", j.last_input_seq, "members", [nid(m.member_id) for m in j.members])
    else: out(b.name, "join answer", j)
    await b.send(pb.ClientMessage(input=pb.Input(room=room, seq=2, writes=pb.EntityWrites(remove=[eid]))))
    await asyncio.sleep(1.5)
    try:
        while True: await b.until("nothing", 0.5)
    except Exception: pass
    out(b.name, "remove own entity:", [(pb.ErrorCode.Name(v.code), v.message) for k, v in b.msgs if k == "error"] or "ok (no error)")
async def main():
    global ctx
    sh(f"start_redis {RP}")
    for n in (1, 2, 3): out(sh(f"start_node {n} {P}{n} {RP}"))
    ctx = ssl.create_default_context(cafile=f"{D}/tickrelay-dev-cert.pem")
    url3 = f"wss://127.0.0.1:{P}3/ws"
    A, wa, ja = await scenario("A", url3, "f-a", 900)
    out("A session", nid(wa.session_id), "in f-a as", nid(ja.member_id))
    await asyncio.sleep(2)
    os.kill(pid("redis"), signal.SIGKILL); out("SIGKILL redis"); await asyncio.sleep(5)
    sh(f"start_redis {RP}"); out("redis back EMPTY")
    await asyncio.sleep(8)
    N, wn, jn = await scenario("N", url3, "f-n", 901)
    out("N session", nid(wn.session_id), "(begun after the Redis restart) in f-n as", nid(jn.member_id))
    await asyncio.sleep(max(0, WAIT - 8))
    out("SIGTERM node3"); os.kill(pid("node3"), signal.SIGTERM)
    await asyncio.gather(follow(A, wa, "f-a", 900, f"wss://127.0.0.1:{P}1/ws"), follow(N, wn, "f-n", 901, f"wss://127.0.0.1:{P}1/ws"))
    for n in (1, 2): out(f"node{n} 'session continued' lines:", sh(f"grep -c 'session continued' {D}/node{n}.log"))
asyncio.run(main())
