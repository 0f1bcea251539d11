"""Presence burst: H honest members sit in a room reading everything; A attacker sessions
(one address, anonymous) each send one envelope-burst of J (JoinRoom, LeaveRoom) pairs
for that room. Each pair = 2 presence messages to every honest member, in about one tick.
Usage: H=5 A=11 J=50 python3 presence_kick.py   (TR_URL, TR_PID set)"""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tr import *

H = int(os.environ.get("H", "5")); A = int(os.environ.get("A", "11")); J = int(os.environ.get("J", "50"))
ROOM = os.environ.get("ROOM", "presroom")
PER_ENV = int(os.environ.get("PER_ENV", "2"))   # messages per envelope

async def reader(ws, st):
    try:
        async for d in ws:
            st["bytes"] += len(d)
            for m in decode(d).messages:
                k = m.WhichOneof("kind"); st[k] = st.get(k, 0) + 1
    except Exception as e:
        st["exc"] = type(e).__name__
    st["close"] = close_info(ws)

async def main():
    pid = pid_of_relay()
    hon = []
    for i in range(H):
        ws = await connect(); await ws.recv()
        await ws.send(env(join(ROOM, 1, "relay")))
        await recv_until(ws, lambda m: m.WhichOneof("kind") == "joined")
        st = {"bytes": 0}; hon.append((ws, st, asyncio.create_task(reader(ws, st))))
    atk = []
    for i in range(A):
        ws = await connect(); await ws.recv(); atk.append(ws)
    await asyncio.sleep(1.2)
    c0, t0 = cpu_secs(pid), time.time()
    msgs = []
    for j in range(J):
        msgs.append(join(ROOM, 2 * j + 1, "relay"))
        msgs.append(cm(leave=pb.LeaveRoom(request_id=2 * j + 2, room=ROOM)))
    envs = [env(*msgs[i:i + PER_ENV]) for i in range(0, len(msgs), PER_ENV)]
    async def burst(ws):
        for e in envs:
            await ws.send(e)
    await asyncio.gather(*[burst(ws) for ws in atk])
    astats = []
    for ws in atk:
        st = {"bytes": 0}; astats.append(st); asyncio.create_task(reader(ws, st))
    await asyncio.sleep(3)
    c1, t1 = cpu_secs(pid), time.time()
    for i, (ws, st, _) in enumerate(hon):
        print("honest", i, st)
    print("attacker 0:", astats[0])
    print(f"relay cpu {100*(c1-c0)/(t1-t0):.0f}%  rss {rss_kib(pid)} KiB")
    for ws in atk: await ws.close()
    for ws, _, _ in hon: await ws.close()

asyncio.run(asyncio.wait_for(main(), 50))
