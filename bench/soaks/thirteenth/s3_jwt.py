#!/usr/bin/env python3
# Scenario 3: JWT across nodes. Nodes (ws://127.0.0.1:781N/ws, jwt.toml) must already run,
# started by s3_jwt.sh; this script kills/restarts node 3 itself through common.sh.
# Usage: D=/tmp/soak13/s3 RP=6482 python3 s3_jwt.py [TEST...]
import asyncio, os, sys, time, json, subprocess, signal
sys.path.insert(0, os.environ.get("SOAK", "/tmp/soak13") + "/gen")
import jwt, websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from tickrelay.v1 import tickrelay_pb2 as pb

HERE = os.path.dirname(os.path.abspath(__file__))
D = os.environ["D"]; RP = os.environ["RP"]; P = os.environ.get("P", "781")
SECRET = "soak13-only-secret"
def url(n): return f"ws://127.0.0.1:{P}{n}/ws"
T0 = time.time()
def out(*a):
    print(f"[{time.time()-T0:6.1f}s]", *a, flush=True)

def tok(sub, ttl=300, exp=None):
    now = int(time.time())
    return jwt.encode({"sub": sub, "exp": exp if exp else now + ttl, "iat": now}, SECRET, algorithm="HS256")

def env(*msgs):
    e = pb.ClientEnvelope()
    for m in msgs: e.messages.append(m)
    return e.SerializeToString()

class S:
    """One WebSocket session; records numbered seq, welcome, closes."""
    def __init__(s, name): s.name = name; s.ws = None; s.seq = 0; s.welcome = None; s.close = None; s.closed_at = None; s.kinds = []
    async def open(s, node, token, query="", subproto=False):
        hdr = {} if subproto else {"Authorization": "Bearer " + token}
        sp = ["tickrelay.v1", "tickrelay.bearer." + token] if subproto else None
        try:
            s.ws = await connect(url(node) + query, additional_headers=hdr, subprotocols=sp, open_timeout=10,
                                 max_size=2**22, ping_interval=None)
        except InvalidStatus as e:
            s.close = ("http", e.response.status_code, e.response.body.decode(errors="replace")[:120]); return False
        return True
    async def recv(s, timeout=5):
        try:
            data = await asyncio.wait_for(s.ws.recv(), timeout)
        except ConnectionClosed as e:
            if s.close is None:
                s.close = (e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None); s.closed_at = time.time()
            raise
        e = pb.ServerEnvelope(); e.ParseFromString(data)
        n = 0
        for m in e.messages:
            k = m.WhichOneof("kind"); s.kinds.append(k)
            if k not in ("state", "welcome"): n += 1
            if k == "welcome": s.welcome = m.welcome
        if e.first_seq and n: s.seq = e.first_seq + n - 1
        return e
    async def until(s, kind, timeout=8):
        t0 = time.time()
        while time.time() - t0 < timeout:
            e = await s.recv(max(0.1, timeout - (time.time() - t0)))
            for m in e.messages:
                if m.WhichOneof("kind") == kind: return getattr(m, kind)
                if m.WhichOneof("kind") == "error" and kind != "error": out(s.name, "error:", pb.ErrorCode.Name(m.error.code), m.error.message)
        raise TimeoutError(kind)
    async def drain_until_closed(s, timeout):
        t0 = time.time()
        try:
            while time.time() - t0 < timeout: await s.recv(timeout)
        except ConnectionClosed: return s.close
        except (TimeoutError, asyncio.TimeoutError): return None
    async def send(s, *msgs): await s.ws.send(env(*msgs))
    async def join(s, room, rtype="relay", rid=1):
        await s.send(pb.ClientMessage(join=pb.JoinRoom(request_id=rid, room=room, room_type=rtype)))
        while True:
            e = await s.recv(8)
            for m in e.messages:
                k = m.WhichOneof("kind")
                if k in ("joined", "redirect"): return k, getattr(m, k)
                if k == "error": return "error", (pb.ErrorCode.Name(m.error.code), m.error.message)
    async def inputs(s, room, first, n, eid):
        for k in range(first, first + n):
            w = pb.EntityWrites(); w.create.append(pb.Entity(id=eid + k, kind=7, fields=[pb.Field(id=1, int=k)]))
            if k > 1: w.remove.append(eid + k - 1)
            await s.send(pb.ClientMessage(input=pb.Input(room=room, seq=k, writes=w)))
            await asyncio.sleep(0.05)

def sh(cmd):
    # output to a file, not a pipe: the node's lingering subshell would hold a pipe open
    with open(f"{D}/sh.out", "a") as f:
        subprocess.run(["bash", "-c", f"source {HERE}/common.sh; {cmd}"], stdout=f, stderr=subprocess.STDOUT, env=os.environ)
    return (open(f"{D}/sh.out").read().strip().splitlines() or [""])[-1]
def nodepid(n): return int(open(f"{D}/pids/node{n}.pid").read().split()[0])
def kill_node(n, sig=signal.SIGKILL):
    out(f"kill {sig.name} node{n} pid {nodepid(n)}"); os.kill(nodepid(n), sig)
def start_node(n):
    out(sh(f"start_node {n} {P}{n} {RP} --config {HERE}/jwt.toml --public-url ws://127.0.0.1:{P}{n}/ws"))

async def alive(s, secs=2):
    try:
        await asyncio.wait_for(s.drain_until_closed(secs), secs + 1)
    except Exception: pass
    return s.close is None

R = {}
async def t_replace():
    """same user on node 1 then node 2 (no client id): the older must close 4002"""
    res = []
    for trial in range(3):
        u = f"alice{trial}"; t = tok(u)
        a = S("a"); await a.open(1, t); await a.until("welcome"); await a.join(f"rep-{trial}")
        await asyncio.sleep(0.5)
        b = S("b"); await b.open(2, t); await b.until("welcome")
        t1 = time.time(); c = await a.drain_until_closed(5); dt = time.time() - t1
        bal = await alive(b, 2)
        res.append({"old_close": c, "after_s": round(dt, 3), "new_alive": bal})
        try: await b.ws.close()
        except Exception: pass
    out("replace node1->node2:", res); R["replace"] = res
    # the same client id on both nodes: both stay
    u = "alice-cid"; t = tok(u)
    a = S("a"); await a.open(1, t, "?client=c0ffee"); await a.until("welcome")
    b = S("b"); await b.open(2, t, "?client=c0ffee"); await b.until("welcome")
    r = {"a_alive": await alive(a, 2), "b_alive": await alive(b, 1)}
    out("same client id on 2 nodes:", r); R["same_cid"] = r
    for x in (a, b):
        try: await x.ws.close()
        except Exception: pass
    # near-simultaneous: node1 and node2 within a few ms; exactly one should survive
    race = []
    for trial in range(10):
        u = f"racer{trial}"; t = tok(u)
        a = S("a"); b = S("b")
        await asyncio.gather(a.open(1, t), b.open(2, t))
        await asyncio.gather(a.until("welcome"), b.until("welcome"))
        ra, rb = await asyncio.gather(alive(a, 3), alive(b, 3))
        race.append((ra, rb, a.close, b.close))
        for x in (a, b):
            try: await x.ws.close()
            except Exception: pass
    both = sum(1 for r in race if r[0] and r[1]); none = sum(1 for r in race if not r[0] and not r[1])
    out(f"race 10 trials: both alive {both}, none alive {none}, details {race}"); R["race"] = {"both": both, "none": none, "detail": [str(r) for r in race]}

async def t_exp_live():
    """token exp passes during a live session (node 1): expect 4500 at exp; refresh keeps it"""
    exp = int(time.time()) + 8
    g = S("g"); await g.open(1, tok("gina", exp=exp)); await g.until("welcome"); await g.join("exp-live")
    c = await g.drain_until_closed(25)
    r = {"close": c, "closed_at_minus_exp_s": round(g.closed_at - exp, 2) if g.closed_at else None}
    # resume of the 4500-closed session with a fresh token
    s2 = S("g2"); ok = await s2.open(1, tok("gina"), f"?resume={g.welcome.resume_token}&received={g.seq}")
    if ok:
        try: w = await s2.until("welcome"); r["resume_after_4500"] = {"resumed": w.resumed, "same_id": w.session_id == g.welcome.session_id}
        except Exception as e: r["resume_after_4500"] = {"err": repr(e), "close": s2.close}
        try: await s2.ws.close()
        except Exception: pass
    else: r["resume_after_4500"] = s2.close
    # refresh in band before exp
    exp = int(time.time()) + 6
    h = S("h"); await h.open(1, tok("hank", exp=exp)); await h.until("welcome"); await h.join("exp-live")
    await asyncio.sleep(2)
    await h.send(pb.ClientMessage(refresh_token=pb.RefreshToken(request_id=9, token=tok("hank", 120))))
    tr = await h.until("token_refreshed")
    await h.send(pb.ClientMessage(refresh_token=pb.RefreshToken(request_id=10, token=tok("not-hank", 120))))
    e = await h.until("error")
    alive_past = await alive(h, max(1, exp + 8 - time.time()))
    r["refresh"] = {"expires_at": tr.expires_at_unix, "other_sub": pb.ErrorCode.Name(e.code), "alive_past_old_exp": alive_past}
    try: await h.ws.close()
    except Exception: pass
    out("exp during live session:", r); R["exp_live"] = r

async def t_resume_after_exp():
    """resume (same node) after exp: plain upgrade -> 401?, tickrelay.v1 subprotocol -> 4000?"""
    r = {}
    exp = int(time.time()) + 6
    t = tok("ivan", exp=exp)
    i = S("i"); await i.open(1, t); await i.until("welcome"); await i.join("exp-res")
    await asyncio.sleep(1); i.ws.transport.abort()
    # within the leeway (exp < now < exp+5)
    await asyncio.sleep(max(0, exp + 2 - time.time()))
    q = f"?resume={i.welcome.resume_token}&received={i.seq}"
    a = S("a"); ok = await a.open(1, t, q)
    if ok:
        try:
            w = await a.until("welcome"); r["within_leeway"] = {"welcome_resumed": w.resumed}
            c = await a.drain_until_closed(8); r["within_leeway"]["then"] = c
            r["within_leeway"]["closed_after_exp_s"] = round(a.closed_at - exp, 2) if a.closed_at else None
        except Exception as e: r["within_leeway"] = {"err": repr(e), "close": a.close}
    else: r["within_leeway"] = a.close
    await asyncio.sleep(max(0, exp + 7 - time.time()))
    b = S("b"); ok = await b.open(1, t, q); r["past_leeway_plain"] = b.close if not ok else "ACCEPTED"
    c = S("c"); ok = await c.open(1, t, q, subproto=True)
    if ok:
        try: await c.until("welcome", 3); r["past_leeway_subprotocol"] = "WELCOME"
        except Exception: r["past_leeway_subprotocol"] = c.close
    else: r["past_leeway_subprotocol"] = c.close
    d = S("d"); ok = await d.open(1, tok("ivan"), q)
    if ok:
        try: w = await d.until("welcome"); r["fresh_token_resume"] = {"resumed": w.resumed}
        except Exception as e: r["fresh_token_resume"] = {"err": repr(e), "close": d.close}
        try: await d.ws.close()
        except Exception: pass
    out("resume after exp:", r); R["resume_after_exp"] = r

async def t_cross_node():
    """sessions on node 3; SIGKILL node 3; resume on node 1 with: own token (bob), another user's
    token (mallory with carol's resume token), an expired token (dave), own token that expires later (frank)"""
    r = {}
    ss = {}
    now = int(time.time())
    specs = {"bob": tok("bob"), "carol": tok("carol"), "dave": tok("dave", exp=now + 9), "frank": tok("frank", exp=now + 30)}
    for u, t in specs.items():
        s = S(u); await s.open(3, t); await s.until("welcome")
        k, j = await s.join(f"x-{u}")
        await s.inputs(f"x-{u}", 1, 5, 10000)
        ss[u] = s
    await asyncio.sleep(2.5)   # past a checkpoint
    for s in ss.values():
        try: await s.recv(0.5)
        except Exception: pass
    kill_node(3); tk = time.time()
    async def resume(u, token, node=1, limit=25):
        s0 = ss[u]; q = f"?resume={s0.welcome.resume_token}&received={s0.seq}"
        tries = []; t_start = time.time()
        while time.time() - t_start < limit:
            s = S(u + "'"); ok = await s.open(node, token, q)
            if not ok: tries.append(s.close); break
            try:
                w = await s.until("welcome", 6)
                res = {"after_kill_s": round(time.time() - tk, 1), "resumed": w.resumed, "same_session": w.session_id == s0.welcome.session_id,
                       "user_id": w.user_id, "tries": tries}
                k, j = await s.join(f"x-{u}")
                res["join"] = k; res["last_input_seq"] = getattr(j, "last_input_seq", None); res["member_is_session"] = getattr(j, "member_id", None) == s0.welcome.session_id
                return s, res
            except ConnectionClosed:
                tries.append(s.close[0] if s.close else None)
            except Exception as e:
                tries.append(repr(e)); 
            await asyncio.sleep(0.5)
        return None, {"tries": tries}
    (sb, r["bob_own_token"]), (sc, r["carol_resume_with_mallory_token"]) = await asyncio.gather(
        resume("bob", specs["bob"]), resume("carol", tok("mallory"), limit=8))
    await asyncio.sleep(max(0, now + 9 + 6 - time.time()))
    sd, r["dave_expired_token"] = await resume("dave", specs["dave"])
    sf, r["frank_token_exp_later"] = await resume("frank", specs["frank"])
    if sf:
        c = await sf.drain_until_closed(max(1, now + 30 + 10 - time.time()))
        r["frank_token_exp_later"]["then"] = c; r["frank_token_exp_later"]["closed_minus_exp_s"] = round(sf.closed_at - (now + 30), 2) if sf.closed_at else None
    out("cross-node resume:", json.dumps(r)); R["cross_node"] = r
    for s in (sb, sc, sd):
        if s:
            try: await s.ws.close()
            except Exception: pass
    start_node(3)

async def main():
    tests = sys.argv[1:] or ["replace", "exp_live", "resume_after_exp", "cross_node"]
    for t in tests:
        out("=== test", t)
        try: await globals()["t_" + t]()
        except Exception as e: out("test", t, "raised", repr(e)); R[t] = {"raised": repr(e)}
    json.dump(R, open(f"{D}/s3_results.json", "w"), indent=1, default=str)
asyncio.run(main())
