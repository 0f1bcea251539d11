"""One resume token fought over by WebSocket and QUIC connections at once, and a
session resumed over QUIC while it is still live over WebSocket (and back).

Run: N=4 SECS=10 HOLD=0.05 RECV=none python3 xfight.py   (RECV=none|0|last)
Starts its own relay (wss + QUIC on 127.0.0.1:$PORT, default 7661). A victim session
joins room 'fight' (an observer is in it); phase 1: the victim stays live on WS and a
QUIC resume takes it (expect the WS connection closed 4002, the QUIC one resumed),
then a WS resume takes it back from the live QUIC one (expect QUIC closed 4002).
Phase 2: N contenders, alternately WS and QUIC, resume the token in a loop, each
holding the session HOLD s. Afterwards the last holder closes with 1000; the observer
reports presence changes, a fresh joiner the member list, and a resume after the 1000
close must be 4504. Bounded: N+4 connections at a time, SECS seconds.
"""
import asyncio, collections, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib16 import *

PORT = int(os.environ.get("PORT", "7661"))
N = int(os.environ.get("N", "4"))
SECS = float(os.environ.get("SECS", "10"))
HOLD = float(os.environ.get("HOLD", "0.05"))
RECV = os.environ.get("RECV", "none")
st = collections.Counter()
lat = {"ws": [], "quic": []}


def recv_arg(last):
    return None if RECV == "none" else (0 if RECV == "0" else last)


async def ws_resume(token, k, last):
    r = recv_arg(last)
    q = f"resume={token}&client=c{k}" + ("" if r is None else f"&received={r}")
    ws = await ws_connect(PORT, q)
    w = decode(await asyncio.wait_for(ws.recv(), 5)).messages[0]
    return ws, w


async def contender(token, stop, k, holders, last):
    tr = "ws" if k % 2 == 0 else "quic"
    while time.time() < stop:
        t0 = time.time()
        if tr == "ws":
            try:
                ws, w = await ws_resume(token, k, last[0])
            except websockets.ConnectionClosed as e:
                st[f"ws_closed_at_open:{e.rcvd.code if e.rcvd else None}"] += 1; continue
            except Exception as e:
                st[f"ws_refused:{type(e).__name__}"] += 1; await asyncio.sleep(0.05); continue
            lat["ws"].append(time.time() - t0)
            st["ws_resumed" if w.welcome.resumed else "ws_new_session"] += 1
            holders[k] = ("ws", ws)
            try:
                end = time.time() + HOLD
                while time.time() < end:
                    d = decode(await asyncio.wait_for(ws.recv(), end - time.time()))
                    if d.first_seq:
                        last[0] = max(last[0], d.first_seq + sum(1 for m in d.messages if m.WhichOneof("kind") not in ("state", "welcome")) - 1)
                    for m in d.messages:
                        if m.WhichOneof("kind") == "joined":
                            st["ws_joined_msgs"] += 1
                st["ws_held_out"] += 1
            except asyncio.TimeoutError:
                st["ws_held_out"] += 1
            except websockets.ConnectionClosed:
                st[f"ws_taken:{ws.close_code}"] += 1
        else:
            try:
                q = await quic_open(PORT)
            except Exception as e:
                st[f"quic_refused:{type(e).__name__}"] += 1; await asyncio.sleep(0.05); continue
            q.hello(resume=token, received=recv_arg(last[0]), client_id=f"c{k}")
            w = await asyncio.wait_for(q.welcome, 5)
            if w is None:
                st[f"quic_closed_at_open:{q.closed[0]}"] += 1; quic_drop(q); continue
            lat["quic"].append(time.time() - t0)
            st["quic_resumed" if w.resumed else "quic_new_session"] += 1
            holders[k] = ("quic", q)
            await asyncio.sleep(HOLD)
            st["quic_joined_msgs"] += sum(1 for m in q.msgs if m.WhichOneof("kind") == "joined")
            if q.closed:
                st[f"quic_taken:{q.closed[0]}"] += 1
            else:
                st["quic_held_out"] += 1
                if holders.get(k, (None, None))[1] is q and time.time() < stop:
                    quic_drop(q)  # lost, as a crashed client's


async def main():
    relay = start_relay(PORT, tag="xfight")
    pid = relay.pid
    try:
        obs = await ws_connect(PORT); await obs.recv()
        await obs.send(env(join("fight", 1, "relay")))
        await ws_recv_until(obs, lambda m: m.WhichOneof("kind") == "joined")
        v = await ws_connect(PORT)
        vw = decode(await v.recv()).messages[0].welcome
        token = vw.resume_token
        await v.send(env(join("fight", 1, "relay", data=b"V" * 1024)))
        await ws_recv_until(v, lambda m: m.WhichOneof("kind") == "joined")
        await ws_recv_until(obs, lambda m: False, 0.5)
        # Phase 1: live WS taken by QUIC, then live QUIC taken by WS.
        t0 = time.time()
        q = await quic_open(PORT)
        q.hello(resume=token)
        w = await asyncio.wait_for(q.welcome, 5)
        j = await q.wait_for(lambda m: m.WhichOneof("kind") == "joined", 3)
        try:
            await asyncio.wait_for(v.recv(), 3)
            while True:
                await asyncio.wait_for(v.recv(), 3)
        except websockets.ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            pass
        print(f"phase1 QUIC takes live WS: welcome resumed={getattr(w, 'resumed', None)} sid_same={getattr(w, 'session_id', 0) == vw.session_id} "
              f"in {1000*(time.time()-t0):.0f} ms; WS closed {v.close_code} {v.close_reason!r}; QUIC got Joined: {j is not None}")
        t0 = time.time()
        ws, w2 = await ws_resume(token, 99, 0)
        await asyncio.sleep(0.5)
        print(f"phase1 WS takes live QUIC: resumed={w2.welcome.resumed} in {1000*(time.time()-t0):.0f} ms; QUIC closed {q.closed}")
        quic_drop(q)
        ws.transport.abort()
        # Phase 2: the fight.
        holders = {}
        last = [0]
        c0 = cpu_secs(pid); t0 = time.time()
        obs_task = asyncio.create_task(ws_recv_until(obs, lambda m: False, SECS + 3))
        await asyncio.gather(*[contender(token, t0 + SECS, k, holders, last) for k in range(N)])
        cpu = (cpu_secs(pid) - c0) / (time.time() - t0) * 100
        for tr, h in holders.values():
            if tr == "ws" and h.state == websockets.protocol.State.OPEN:
                await h.close(1000); st["final_close_1000_ws"] += 1
            elif tr == "quic" and not h.closed:
                h.close_app(1000); st["final_close_1000_quic"] += 1
                await asyncio.sleep(0.3)
        _, seen = await obs_task
        pres = collections.Counter(f"{m.presence.change}" for m in seen if m.WhichOneof("kind") == "presence")
        await asyncio.sleep(1.5)
        f = await ws_connect(PORT); await f.recv()
        await f.send(env(join("fight", 1, "relay")))
        jj, _ = await ws_recv_until(f, lambda m: m.WhichOneof("kind") == "joined")
        print(f"{dict(st)}  relay CPU {cpu:.0f}%  RSS {rss_kib(pid)} KiB")
        for tr, l in lat.items():
            l.sort()
            if l:
                print(f"{tr} resume latency n={len(l)} p50 {l[len(l)//2]*1000:.0f} ms max {l[-1]*1000:.0f} ms")
        print(f"observer presence changes: {dict(pres)} (1=JOINED 2=LEFT 3=AWAY 4=BACK)")
        print(f"fresh joiner sees members: {[(m.member_id, m.away) for m in jj.joined.members] if jj else None}; victim id {vw.session_id}")
        try:
            ws, w = await ws_resume(token, 7, 0)
            print("after close 1000, WS resume ->", w.WhichOneof("kind"), w.welcome.resumed)
        except websockets.ConnectionClosed as e:
            print("after close 1000, WS resume closed:", e.rcvd.code if e.rcvd else None)
        q = await quic_open(PORT); q.hello(resume=token)
        w = await asyncio.wait_for(q.welcome, 5)
        print("after close 1000, QUIC resume ->", "welcome" if w else f"closed {q.closed}")
        quic_drop(q)
    finally:
        stop(relay)


asyncio.run(main())
