#!/usr/bin/env python3
# repro_already_member.py: a join that waits for the room directory, a dropped connection, a resume, and the
# join sent again on the resumed session (as tickrelay_client's `welcomed` does for every room whose Joined
# has not arrived) -> ALREADY_MEMBER, then the first join's own answer arrives. One node in cluster mode;
# Redis is frozen (SIGSTOP) for 1.5 s so that the claim is still in flight (DIRECTORY_TIMEOUT is 2 s).
# Usage: D=/tmp/soak14/am RP=6497 P=796 python3 repro_already_member.py   (starts/stops its own Redis + node)
import asyncio, os, ssl, subprocess, sys, time, signal
sys.path.insert(0, "/tmp/soak14/gen")
from websockets.asyncio.client import connect
from tickrelay.v1 import tickrelay_pb2 as pb
HERE = os.path.dirname(os.path.abspath(__file__)); D = os.environ["D"]; RP = os.environ["RP"]; P = os.environ["P"]
os.makedirs(D, exist_ok=True); T0 = time.time()
def out(*a): print(f"[{time.time()-T0:6.2f}s]", *a, flush=True)
def sh(cmd):
    with open(f"{D}/sh.out", "a") as f:
        subprocess.run(["bash", "-c", f"source {HERE}/common.sh; {cmd}"], stdout=f, stderr=subprocess.STDOUT, env=os.environ, cwd=D)
def pid(name): return int(open(f"{D}/pids/{name}.pid").read().split()[0])
async def recv_all(ws, secs):
    got = []; t0 = time.time()
    while time.time() - t0 < secs:
        try: raw = await asyncio.wait_for(ws.recv(), max(0.01, secs - (time.time() - t0)))
        except asyncio.TimeoutError: break
        e = pb.ServerEnvelope(); e.ParseFromString(raw)
        for m in e.messages:
            k = m.WhichOneof("kind")
            if k == "state": continue
            v = getattr(m, k)
            if k == "error": out("  <- error", pb.ErrorCode.Name(v.code), "request", v.request_id, "room", v.room, repr(v.message))
            elif k == "joined": out("  <- joined request", v.request_id, "room", v.room, "member", v.member_id)
            elif k == "welcome": out("  <- welcome resumed", v.resumed, "session", v.session_id)
            else: out("  <-", k)
            got.append((k, v))
    return got
async def send(ws, m): e = pb.ClientEnvelope(); e.messages.append(m); await ws.send(e.SerializeToString())
async def main():
    sh(f"start_redis {RP}"); sh(f"start_node 1 {P}1 {RP}")
    ctx = ssl.create_default_context(cafile=f"{D}/tickrelay-dev-cert.pem")
    url = f"wss://127.0.0.1:{P}1/ws"; room = "am-room"
    try:
        ws = await connect(url, ssl=ctx, server_hostname="localhost", open_timeout=5)
        w = [v for k, v in await recv_all(ws, 0.5) if k == "welcome"][0]
        os.kill(pid("redis"), signal.SIGSTOP); out("redis SIGSTOPped")
        out("-> join", room, "request 1 (the claim waits for the directory)")
        await send(ws, pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=room, room_type="relay")))
        await asyncio.sleep(0.2)
        ws.transport.abort(); out("connection dropped (no close frame)")
        ws2 = await connect(f"{url}?resume={w.resume_token}&received=0", ssl=ctx, server_hostname="localhost", open_timeout=5)
        got = await recv_all(ws2, 0.2)
        out("-> join", room, "request 2 (rejoin after the resume, as the Rust client does)")
        await send(ws2, pb.ClientMessage(join=pb.JoinRoom(request_id=2, room=room, room_type="relay")))
        got += await recv_all(ws2, 0.8)
        os.kill(pid("redis"), signal.SIGCONT); out("redis SIGCONTed")
        got += await recv_all(ws2, 3)
        am = [v for k, v in got if k == "error" and v.code == pb.ERROR_CODE_ALREADY_MEMBER]
        jn = [v for k, v in got if k == "joined"]
        out("RESULT:", "ALREADY_MEMBER" if am else "no ALREADY_MEMBER", "| joined answers:", [(j.request_id, j.member_id) for j in jn])
        await ws2.close()
    finally:
        try: os.kill(pid("redis"), signal.SIGCONT)
        except Exception: pass
        subprocess.run([f"{HERE}/stop_all.sh", D], stdout=subprocess.DEVNULL)
asyncio.run(main())
