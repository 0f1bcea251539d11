"""Resume storm over QUIC, `Hello` without `received_seq` (a "new process" resume:
every room sends its `Joined` again), from ADDRS source addresses.

Run: H=40 ROOMS=16 A=4 SECS=15 ADDRS=1 WAIT=0.0 python3 quic_storm.py
Starts its own relay (wss + QUIC, 127.0.0.1:$PORT, default 7662). H honest WebSocket
members join ROOMS relay rooms; A attacker sessions (started over QUIC) join the same
rooms, then for SECS each drops its connection (no close) and resumes over QUIC with
a Hello lacking received_seq, from 127.0.0.(2..ADDRS+1) in turn, waiting WAIT s for
Joined. A probe pair in r0 measures event latency and Ping RTT before/during.
Bounded: H+A+2 connections at a time.
"""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib16 import *

PORT = int(os.environ.get("PORT", "7662"))
H = int(os.environ.get("H", "40")); ROOMS = int(os.environ.get("ROOMS", "16"))
A = int(os.environ.get("A", "4")); SECS = float(os.environ.get("SECS", "15"))
ADDRS = int(os.environ.get("ADDRS", "1")); WAIT = float(os.environ.get("WAIT", "0.0"))
RECV = os.environ.get("RECV", "none")  # none, or a number for Hello.received_seq
RN = [f"r{i}" for i in range(ROOMS)]
st = {"resumes": 0, "refused": 0, "closed_at_open": {}, "joined": 0, "bytes": 0, "new_session": 0, "presence": 0}
phase = {"storm": False}


async def honest(stop):
    ws = await ws_connect(PORT); await ws.recv()
    await ws.send(env(*[join(r, i + 1, "relay") for i, r in enumerate(RN)]))
    while time.time() < stop:
        try:
            d = await asyncio.wait_for(ws.recv(), 0.5)
        except asyncio.TimeoutError:
            continue
        except websockets.ConnectionClosed:
            st.setdefault("honest_closed", []).append(ws.close_code); return
        if phase["storm"]:
            st["presence"] += sum(1 for m in decode(d).messages if m.WhichOneof("kind") == "presence")
    await ws.close()


async def attacker(k, stop, ready):
    q = await quic_open(PORT)
    q.hello()
    w = await asyncio.wait_for(q.welcome, 5)
    token = w.resume_token
    q.send_env(*[join(r, i + 1, "relay") for i, r in enumerate(RN)])
    await q.wait_for(lambda m: False, 2)
    # confirm what was received (so a later resume with a lower `received` misses some)
    q.send_env(cm(ping=pb.Ping(nonce=1, received_seq=10**6)))
    await asyncio.sleep(0.2)
    await ready.wait()
    i = 0
    while time.time() < stop:
        quic_drop(q)
        src = f"127.0.0.{2 + (i * A + k) % ADDRS}"; i += 1
        try:
            q = await quic_open(PORT, src=src, timeout=3)
        except Exception as e:
            st["refused"] += 1; await asyncio.sleep(0.02); continue
        q.hello(resume=token, received=None if RECV == "none" else int(RECV))
        w = await asyncio.wait_for(q.welcome, 5)
        if w is None:
            c = str(q.closed[0]); st["closed_at_open"][c] = st["closed_at_open"].get(c, 0) + 1; continue
        st["resumes"] += 1
        if not w.resumed:
            st["new_session"] += 1
        if WAIT:
            await asyncio.sleep(WAIT)
        st["joined"] += sum(1 for m in q.msgs if m.WhichOneof("kind") == "joined")
        st["joined_rid0"] = st.get("joined_rid0", 0) + sum(1 for m in q.msgs if m.WhichOneof("kind") == "joined" and m.joined.request_id == 0)
        st["full"] = st.get("full", 0) + sum(1 for m in q.msgs if m.WhichOneof("kind") == "state" and m.state.baseline_tick == 0)
        st["bytes"] += q.bytes_in
    quic_drop(q)


async def probes(stop, lat):
    a = await ws_connect(PORT); await a.recv()
    b = await ws_connect(PORT); await b.recv()
    for w in (a, b):
        await w.send(env(join("r0", 1, "relay")))
        await ws_recv_until(w, lambda m: m.WhichOneof("kind") == "joined")
    i = 0
    while time.time() < stop:
        i += 1; t0 = time.time()
        await a.send(env(cm(event=pb.SendEvent(room="r0", kind="t", payload=str(i).encode()))))
        await a.send(env(cm(ping=pb.Ping(nonce=i, sent_time_us=int(t0 * 1e6)))))
        async def rb():
            m, _ = await ws_recv_until(b, lambda m: m.WhichOneof("kind") == "event" and m.event.payload == str(i).encode(), 3)
            return time.time() if m else None
        async def ra():
            m, _ = await ws_recv_until(a, lambda m: m.WhichOneof("kind") == "pong" and m.pong.nonce == i, 3)
            return time.time() if m else None
        tb, ta = await asyncio.gather(rb(), ra())
        key = "storm" if phase["storm"] else "before"
        lat[key]["ev"].append((tb - t0) * 1000 if tb else 3000)
        lat[key]["rtt"].append((ta - t0) * 1000 if ta else 3000)
        await asyncio.sleep(0.1)
    await a.close(); await b.close()


def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


async def main():
    relay = start_relay(PORT, tag="quic_storm")
    pid = relay.pid
    try:
        t_start = time.time(); stop_at = t_start + 6 + SECS + 2
        ready = asyncio.Event()
        lat = {"before": {"ev": [], "rtt": []}, "storm": {"ev": [], "rtt": []}}
        hs = []
        for k in range(H):
            hs.append(asyncio.create_task(honest(stop_at)))
            if k % 20 == 19:
                await asyncio.sleep(0.2)
        atk = [asyncio.create_task(attacker(k, t_start + 6 + SECS, ready)) for k in range(A)]
        pr = asyncio.create_task(probes(stop_at - 1, lat))
        await asyncio.sleep(max(0, 6 - (time.time() - t_start)))
        c0 = cpu_secs(pid); r0 = rss_kib(pid)
        phase["storm"] = True; t0 = time.time(); ready.set()
        peak = r0
        while time.time() < t0 + SECS:
            await asyncio.sleep(0.5); peak = max(peak, rss_kib(pid))
        dt = time.time() - t0
        cpu = (cpu_secs(pid) - c0) / dt * 100
        phase["storm"] = False
        for r in await asyncio.gather(*atk, return_exceptions=True):
            if r is not None: print("attacker error:", repr(r)[:300])
        await asyncio.gather(pr, *hs, return_exceptions=True)
        print(f"storm {dt:.1f}s from {ADDRS} addresses: relay CPU {cpu:.0f}%  RSS {r0} -> peak {peak} KiB")
        print(f"resumes {st['resumes']} ({st['resumes']/dt:.0f}/s), refused {st['refused']}, closed at open {st['closed_at_open']}, "
              f"not resumed {st['new_session']}; Joined received {st['joined']} (request_id 0: {st.get('joined_rid0')}), full snapshots {st.get('full')}, {st['bytes']/1e6:.1f} MB in; "
              f"honest presence msgs {st['presence']}, honest closes {st.get('honest_closed')}")
        for k in ("before", "storm"):
            e, r = lat[k]["ev"], lat[k]["rtt"]
            print(f"{k}: event p50 {pct(e,.5):.1f} p99 {pct(e,.99):.1f} max {max(e) if e else 0:.0f} ms; "
                  f"ping p50 {pct(r,.5):.1f} p99 {pct(r,.99):.1f} ms (n={len(e)})")
        os.system(f"grep -c 'resume refused' {OUT}/quic_storm.log")
    finally:
        stop(relay)


asyncio.run(main())
