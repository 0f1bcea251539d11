#!/usr/bin/env python3
# s2e: do room listings recover after Redis restarts EMPTY? Holders keep 3 rooms open on node 1 and 1 on
# node 2; node 3 is asked ListRooms every second before and after Redis is SIGKILLed and started empty.
# Usage: D=/tmp/soak13/s2c RP=6485 P=784 python3 s2e_listing.py   (on a running 3-node cluster)
import asyncio, os, ssl, subprocess, sys, time, signal
sys.path.insert(0, os.environ.get("SOAK", "/tmp/soak13") + "/gen")
from websockets.asyncio.client import connect
from tickrelay.v1 import tickrelay_pb2 as pb
HERE = os.path.dirname(os.path.abspath(__file__)); D = os.environ["D"]; RP = os.environ["RP"]; P = os.environ["P"]
ctx = ssl.create_default_context(cafile=f"{D}/tickrelay-dev-cert.pem")
T0 = time.time()
def out(*a): print(f"[{time.time()-T0:6.1f}s]", *a, flush=True)
async def ws_open(port):
    return await connect(f"wss://127.0.0.1:{port}/ws", ssl=ctx, server_hostname="localhost", open_timeout=5, max_size=2**22)
async def recv_kind(ws, kind, timeout=5):
    t0 = time.time()
    while time.time() - t0 < timeout:
        e = pb.ServerEnvelope(); e.ParseFromString(await asyncio.wait_for(ws.recv(), timeout))
        for m in e.messages:
            if m.WhichOneof("kind") in kind.split(","): return m
async def holder(port, rooms):
    ws = await ws_open(port); await recv_kind(ws, "welcome")
    for i, r in enumerate(rooms):
        e = pb.ClientEnvelope(); e.messages.append(pb.ClientMessage(join=pb.JoinRoom(request_id=i + 1, room=r, room_type="relay"))); await ws.send(e.SerializeToString())
        m = await recv_kind(ws, "joined,redirect,error"); out("holder", port, r, m.WhichOneof("kind"))
    return ws
async def keep(ws):
    try:
        while True: await ws.recv()
    except Exception: pass
async def listing(ws, rid):
    e = pb.ClientEnvelope(); e.messages.append(pb.ClientMessage(request=pb.Request(request_id=rid, list_rooms=pb.ListRooms(limit=100)))); await ws.send(e.SerializeToString())
    m = await recv_kind(ws, "response,error")
    if m.WhichOneof("kind") == "error": return f"error {pb.ErrorCode.Name(m.error.code)} retry_after_ms={m.error.retry_after_ms}"
    return sorted(r.room for r in m.response.rooms.rooms if r.room.startswith("lst-"))
async def main():
    h1 = await holder(f"{P}1", ["lst-a", "lst-b", "lst-c"]); h2 = await holder(f"{P}2", ["lst-d"])
    tasks = [asyncio.create_task(keep(h)) for h in (h1, h2)]
    asker = await ws_open(f"{P}3"); await recv_kind(asker, "welcome")
    await asyncio.sleep(3)
    out("before:", await listing(asker, 1))
    rpid = int(open(f"{D}/pids/redis.pid").read()); os.kill(rpid, signal.SIGKILL); out("SIGKILL redis")
    for i in range(3): await asyncio.sleep(1); out("redis down:", await listing(asker, 10 + i))
    await asyncio.sleep(4)
    with open(f"{D}/sh.out", "a") as f:
        subprocess.run(["bash", "-c", f"source {HERE}/common.sh; start_redis {RP}"], stdout=f, stderr=subprocess.STDOUT, env=os.environ)
    out("redis back empty")
    for i in range(15):
        out("after:", await listing(asker, 100 + i)); await asyncio.sleep(1)
asyncio.run(main())
