"""Sustained presence amplification: H honest members read; A attacker sessions each cycle
JoinRoom+LeaveRoom at the message rate limit (50/s) for SECS. Reports relay CPU, bytes
delivered to honest members per attacker byte, closes.  H=60 A=4 SECS=10 python3 presence_sustained.py"""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tr import *
H = int(os.environ.get("H", "60")); A = int(os.environ.get("A", "4")); SECS = float(os.environ.get("SECS", "10"))
ROOM = os.environ.get("ROOM", "psus")

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
        st = {"bytes": 0}; hon.append((ws, st)); asyncio.create_task(reader(ws, st))
    atk = []
    for i in range(A):
        ws = await connect(); await ws.recv(); st = {"bytes": 0}
        asyncio.create_task(reader(ws, st)); atk.append((ws, st))
    await asyncio.sleep(2)
    b0 = sum(s["bytes"] for _, s in hon)
    c0, t0 = cpu_secs(pid), time.time()
    sent = 0
    async def cycle(ws):
        nonlocal sent
        j = 0
        while time.time() - t0 < SECS:
            j += 1
            e = env(join(ROOM, 2 * j, "relay"), cm(leave=pb.LeaveRoom(request_id=2 * j + 1, room=ROOM)))
            await ws.send(e); sent += len(e)
            await asyncio.sleep(0.042)
    await asyncio.gather(*[cycle(ws) for ws, _ in atk])
    await asyncio.sleep(0.5)
    c1, t1 = cpu_secs(pid), time.time()
    b1 = sum(s["bytes"] for _, s in hon)
    closes = [s.get("close") for _, s in hon if s.get("close")]
    print(f"attacker bytes {sent}  honest bytes {b1-b0}  ratio {(b1-b0)/max(sent,1):.0f}x  presence msgs/honest {hon[0][1].get('presence')}")
    print(f"relay cpu {100*(c1-c0)/(t1-t0):.0f}%  rss {rss_kib(pid)} KiB  honest closes {closes[:3]} n={len(closes)}  attacker closes {[s.get('close') for _, s in atk]}")
    for ws, _ in atk + hon: await ws.close()
asyncio.run(asyncio.wait_for(main(), 55))
