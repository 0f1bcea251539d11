"""Two (or N) processes fighting over one resume token, in a tight loop.

Run (relay on TR_URL, pid in TR_PID): N=2 SECS=10 QUERY= python3 token_fight.py
A victim session joins room 'fight' (with an observer in it); N contenders then each
loop: resume the token (no `received` unless QUERY says), read the Welcome, and hold
the connection until another contender takes it (4002) or 0.2 s pass. Afterwards the
last holder closes with 1000; a fresh member joins 'fight' and reports the member
list, and the observer reports the presence messages it saw. Bounded: N+3 conns.
"""
import asyncio, os, sys, time, collections
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tr import *

N = int(os.environ.get("N", "2"))
SECS = float(os.environ.get("SECS", "10"))
QUERY = os.environ.get("QUERY", "")
HOLD = float(os.environ.get("HOLD", "0.2"))
st = collections.Counter()
lat = []


async def contender(token, stop, holders, k):
    while time.time() < stop:
        t0 = time.time()
        try:
            ws = await connect(f"resume={token}&client=c{k}" + (("&" + QUERY) if QUERY else ""))
            w = decode(await asyncio.wait_for(ws.recv(), 5)).messages[0]
        except websockets.ConnectionClosed as e:
            st[f"closed_at_open:{e.rcvd.code if e.rcvd else None}"] += 1
            continue
        except Exception as e:
            st[f"refused:{type(e).__name__}"] += 1
            await asyncio.sleep(0.05)
            continue
        lat.append(time.time() - t0)
        st["resumed" if w.welcome.resumed else "new_session"] += 1
        holders[k] = ws
        try:
            end = time.time() + HOLD
            while time.time() < end:
                d = await asyncio.wait_for(ws.recv(), end - time.time())
        except asyncio.TimeoutError:
            st["held_out"] += 1
        except websockets.ConnectionClosed:
            st[f"taken:{ws.close_code}"] += 1


async def main():
    pid = pid_of_relay()
    obs = await connect(); await obs.recv()
    await obs.send(env(join("fight", 1, "relay")))
    await recv_until(obs, lambda m: m.WhichOneof("kind") == "joined")
    v = await connect(); token = decode(await v.recv()).messages[0].welcome.resume_token
    await v.send(env(join("fight", 1, "relay")))
    await recv_until(v, lambda m: m.WhichOneof("kind") == "joined")
    await drain(obs, 0.5)
    v.transport.abort()
    holders = {}
    c0 = cpu_secs(pid); t0 = time.time()
    obs_task = asyncio.create_task(drain(obs, SECS + 3))
    await asyncio.gather(*[contender(token, t0 + SECS, holders, k) for k in range(N)])
    cpu = (cpu_secs(pid) - c0) / (time.time() - t0) * 100
    # the last holder still open closes normally (the session ends)
    for ws in holders.values():
        if ws.state == websockets.protocol.State.OPEN:
            await ws.close(1000)
            st["closed_1000"] += 1
    seen = await obs_task
    pres = collections.Counter(f"{m.presence.change}" for m in seen if m.WhichOneof("kind") == "presence")
    await asyncio.sleep(2)
    f = await connect(); await f.recv()
    await f.send(env(join("fight", 1, "relay")))
    j, _ = await recv_until(f, lambda m: m.WhichOneof("kind") == "joined")
    lat.sort()
    print(f"{dict(st)}  relay CPU {cpu:.0f}%  RSS {rss_kib(pid)} KiB")
    if lat:
        print(f"resume latency p50 {lat[len(lat)//2]*1000:.0f} ms, max {lat[-1]*1000:.0f} ms")
    print(f"observer presence changes: {dict(pres)}")
    print(f"fresh joiner sees members: {[(m.member_id, m.away) for m in j.joined.members] if j else None}")
    # does the token still resume after the 1000 close?
    try:
        ws = await connect(f"resume={token}")
        w = decode(await ws.recv()).messages[0]
        print("after close 1000, resume ->", w.WhichOneof("kind"), getattr(w.welcome, "resumed", None))
        await ws.close()
    except Exception as e:
        print("after close 1000, resume refused:", e)
    await f.close(); await obs.close()


asyncio.run(main())
