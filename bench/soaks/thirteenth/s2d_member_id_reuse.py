#!/usr/bin/env python3
# s2d: after Redis restarts EMPTY, a node started again gets the node number of a node that died,
# and hands out its session (= member) ids again. Does a new client end up with the member id of
# a live member of a room on another node?
# Usage: D=/tmp/soak13/s2d RP=6487 P=786 python3 s2d_member_id_reuse.py   (starts and stops its own Redis and nodes)
import asyncio, os, ssl, subprocess, sys, time, signal
sys.path.insert(0, os.environ.get("SOAK", "/tmp/soak13") + "/gen")
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from tickrelay.v1 import tickrelay_pb2 as pb
HERE = os.path.dirname(os.path.abspath(__file__)); D = os.environ["D"]; RP = os.environ["RP"]; P = os.environ["P"]
os.makedirs(D, exist_ok=True)
T0 = time.time()
def out(*a): print(f"[{time.time()-T0:6.1f}s]", *a, flush=True)
def sh(cmd):
    with open(f"{D}/sh.out", "a") as f:
        subprocess.run(["bash", "-c", f"source {HERE}/common.sh; {cmd}"], stdout=f, stderr=subprocess.STDOUT, env=os.environ, cwd=D)
    return (open(f"{D}/sh.out").read().strip().splitlines() or [""])[-1]
def pid(name): return int(open(f"{D}/pids/{name}.pid").read().split()[0])
ctx = None
def nid(i): return f"{i>>40}:{i&((1<<40)-1)}"
class S:
    def __init__(s, name): s.name = name; s.msgs = []
    async def open(s, port, q=""):
        s.ws = await connect(f"wss://127.0.0.1:{port}/ws{q}", ssl=ctx, server_hostname="localhost", open_timeout=5, max_size=2**22)
        s.welcome = (await s.until("welcome"))
        return s.welcome.session_id
    async def until(s, kinds, timeout=6):
        kinds = kinds.split(",")
        t0 = time.time()
        while time.time() - t0 < timeout:
            e = pb.ServerEnvelope(); e.ParseFromString(await asyncio.wait_for(s.ws.recv(), timeout))
            for m in e.messages:
                k = m.WhichOneof("kind"); 
                if k != "state": s.msgs.append((k, getattr(m, k)))
                if k in kinds: return getattr(m, k) if len(kinds) == 1 else (k, getattr(m, k))
        raise TimeoutError(kinds)
    async def send(s, m): e = pb.ClientEnvelope(); e.messages.append(m); await s.ws.send(e.SerializeToString())
async def join_via(s_first, port_first, room, cid):
    """join through s_first; follow a redirect with the seat ticket on a second connection"""
    for attempt in range(30):
        await s_first.send(pb.ClientMessage(join=pb.JoinRoom(request_id=100 + attempt, room=room, room_type="relay")))
        k, m = await s_first.until("joined,redirect,error")
        if k == "joined": return s_first, m
        if k == "error":
            out(s_first.name, "join error", pb.ErrorCode.Name(m.code), m.message); await asyncio.sleep(1); continue
        port = m.url.split(":")[2].split("/")[0]
        s2 = S(s_first.name + "@" + port); await s2.open(port, f"?client={cid}")
        await s2.send(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=room, room_type="relay", seat=m.seat)))
        k2, m2 = await s2.until("joined,error")
        if k2 == "joined": return s2, m2
        out(s2.name, "seat join error", pb.ErrorCode.Name(m2.code), m2.message); await asyncio.sleep(1)
    raise RuntimeError("could not join")
async def main():
    global ctx
    sh(f"start_redis {RP}")
    for n in (1, 2, 3): out(sh(f"start_node {n} {P}{n} {RP}"))
    ctx = ssl.create_default_context(cafile=f"{D}/tickrelay-dev-cert.pem")
    B = S("B"); await B.open(f"{P}1"); _, jb = await join_via(B, f"{P}1", "col", "b")
    out("B on node1 id", nid(B.welcome.session_id), "joined col as", nid(jb.member_id))
    A = S("A"); await A.open(f"{P}3", "?client=aaaa"); Aroom, ja = await join_via(A, f"{P}3", "col", "aaaa")
    out("A primary on node3 id", nid(A.welcome.session_id), "joined col via", Aroom.name, "as member", nid(ja.member_id), "members", [nid(x.member_id) for x in ja.members])
    # A owns an entity in col
    await Aroom.send(pb.ClientMessage(input=pb.Input(room="col", seq=1, writes=pb.EntityWrites(create=[pb.Entity(id=777, kind=1, fields=[pb.Field(id=1, int=1)])]))))
    await asyncio.sleep(1.5)
    os.kill(pid("node3"), signal.SIGKILL); out("SIGKILL node3")
    await asyncio.sleep(1)
    os.kill(pid("redis"), signal.SIGKILL); out("SIGKILL redis")
    await asyncio.sleep(8)
    out(sh(f"start_redis {RP}; echo redis back"))
    await asyncio.sleep(float(os.environ.get("NODE3_DELAY", "2")))  # rerun: 3 s (documented safe) or 0
    out(sh(f"start_node 3 {P}3 {RP}"))
    out("redis after node 3' start:", sh(f"echo starts=$(redis-cli -p {RP} get tickrelay:node-starts) in-use=$(redis-cli -p {RP} zrange tickrelay:numbers-in-use 0 -1 withscores | tr '\\n' ,) numbers=$(for k in $(redis-cli -p {RP} --scan --pattern 'tickrelay:node-number:*'); do echo -n ${{k##*:}},; done)"))
    out(sh(f"python3 {HERE}/sessid_probe.py {P}1 {P}2"))
    await asyncio.sleep(3)
    out("redis 3 s later:", sh(f"echo starts=$(redis-cli -p {RP} get tickrelay:node-starts) in-use=$(redis-cli -p {RP} zrange tickrelay:numbers-in-use 0 -1 withscores | tr '\\n' ,) numbers=$(for k in $(redis-cli -p {RP} --scan --pattern 'tickrelay:node-number:*'); do echo -n ${{k##*:}}=$(redis-cli -p {RP} get $k),; done)"))
    # new clients on node 3' until one gets A's id
    target = ja.member_id; C = None
    for i in range(200):
        c = S(f"C{i}"); sid = await c.open(f"{P}3", f"?client=cc{i}")
        if sid == target: C = c; break
        if sid >> 40 != target >> 40:
            live = {B.welcome.session_id >> 40, Aroom.welcome.session_id >> 40}
            out("node 3' uses another node number:", nid(sid), "- no reuse of A's id;", "SAME AS A LIVE NODE'S" if sid >> 40 in live else "not a live node's either", "(live numbers", sorted(live), ")"); break
        await c.ws.close()
    if not C: out("no reuse of", nid(target)); return
    out("new client", C.name, "on node 3' got session id", nid(C.welcome.session_id), "= A's member id; A still connected to col:", Aroom.ws.state.name)
    Croom, jc = await join_via(C, f"{P}3", "col", C.name)
    out("C joined col via", Croom.name, "as member", nid(jc.member_id), "members", [(nid(x.member_id), x.user_id) for x in jc.members])
    # control: B (another member) may not remove A's entity
    await B.send(pb.ClientMessage(input=pb.Input(room="col", seq=1, writes=pb.EntityWrites(remove=[777]))))
    await asyncio.sleep(0.5)
    # C removes A's entity 777 (seq 5: above A's seq 1 on the shared seat)
    await Croom.send(pb.ClientMessage(input=pb.Input(room="col", seq=5, writes=pb.EntityWrites(remove=[777]))))
    await asyncio.sleep(1)
    # A removes it too: ENTITY_NOT_FOUND means C's removal went through
    await Aroom.send(pb.ClientMessage(input=pb.Input(room="col", seq=6, writes=pb.EntityWrites(remove=[777]))))
    await asyncio.sleep(1)
    for x in (B, Aroom, Croom):
        try:
            while True: await x.until("nothing", 1)
        except (TimeoutError, asyncio.TimeoutError): pass
        except ConnectionClosed as e: out(x.name, "connection closed", e.rcvd)
        errs = [(pb.ErrorCode.Name(v.code), v.message) for k, v in x.msgs if k == "error"]
        out(x.name, "errors:", errs, "other:", [k for k, v in x.msgs if k not in ("error", "state")])
    # A's primary session (on the dead node 3, same node number as node 3') resumed on node 1
    q = f"?resume={A.welcome.resume_token}&received=0&client=aaaa"
    for attempt in range(3):
        t1 = time.time()
        try:
            R = S("A-resume"); sid = await R.open(f"{P}1", q)
            out("A's resume on node 1:", "Welcome resumed" if R.welcome.resumed else "Welcome (continued)", nid(sid)); break
        except ConnectionClosed as e: out(f"A's resume on node 1 (attempt {attempt}): closed", e.rcvd, f"after {time.time()-t1:.1f}s")
        except Exception as e: out("A's resume on node 1:", repr(e)); break
    # does entity 777 still exist? B gets a full snapshot via Resync-less check: use a fresh observer
    await asyncio.sleep(0.5)
asyncio.run(main())
