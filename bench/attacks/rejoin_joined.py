"""A member of a room of H members re-sends JoinRoom for the room it is in, at the
rate limit; each is answered with a full Joined (the whole member list). Measures
attacker-received bytes per sent byte and relay CPU.  H=60 A=20 SECS=8 python3 rejoin_joined.py"""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tr import *
H = int(os.environ.get("H", "60")); A = int(os.environ.get("A", "20")); SECS = float(os.environ.get("SECS", "8"))
ROOM = os.environ.get("ROOM", "rj")
async def reader(ws, st):
    try:
        async for d in ws:
            st["bytes"] += len(d)
            for m in decode(d).messages:
                k = m.WhichOneof("kind"); st[k] = st.get(k, 0) + 1
    except Exception as e: st["exc"] = type(e).__name__
    st["close"] = close_info(ws)
async def main():
    pid = pid_of_relay(); socks = []
    for i in range(H):
        ws = await connect(); await ws.recv(); await ws.send(env(join(ROOM, 1, "relay")))
        st = {"bytes": 0}; socks.append((ws, st)); asyncio.create_task(reader(ws, st))
    await asyncio.sleep(1.5)
    atk = socks[:A]; b0 = sum(s["bytes"] for _, s in atk); c0, t0 = cpu_secs(pid), time.time(); sent = 0
    async def go(ws):
        nonlocal sent; j = 1
        while time.time() - t0 < SECS:
            j += 1; e = env(join(ROOM, j, "relay")); await ws.send(e); sent += len(e); await asyncio.sleep(0.021)
    await asyncio.gather(*[go(ws) for ws, _ in atk]); await asyncio.sleep(0.5)
    c1, t1 = cpu_secs(pid), time.time(); b1 = sum(s["bytes"] for _, s in atk)
    print(f"sent {sent} B, received {b1-b0} B ({(b1-b0)/max(sent,1):.0f}x), joined/attacker {atk[0][1].get('joined')}, relay cpu {100*(c1-c0)/(t1-t0):.0f}%, closes {[s.get('close') for _, s in socks if s.get('close')][:3]}")
    for ws, _ in socks: await ws.close()
asyncio.run(asyncio.wait_for(main(), 55))
