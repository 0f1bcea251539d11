"""Resume storm without `received`: every resume makes each of the session's rooms send
its whole `Joined` (member list) again, plus a full snapshot.

Run (relay on TR_URL, pid in TR_PID):
  H=40 ROOMS=16 A=4 SECS=15 python3 resume_joined_storm.py
H honest members each join ROOMS rooms; A attacker sessions join the same ROOMS rooms,
then for SECS abort their connection and resume with `?resume=TOKEN` (no received) as
fast as they can. Two probes (members of room r0) measure one-way event latency
(probe1 -> probe2) and Ping RTT, before and during the storm. Honest members count
the presence messages they receive. Bounded: H+A+2 connections, stops after SECS.
"""
import asyncio, os, sys, time, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tr import *

H = int(os.environ.get("H", "40"))
ROOMS = int(os.environ.get("ROOMS", "16"))
A = int(os.environ.get("A", "4"))
SECS = float(os.environ.get("SECS", "15"))
QUERY = os.environ.get("QUERY", "")  # e.g. "received=0" for the old behaviour
RN = [f"r{i}" for i in range(ROOMS)]
SUBLEN = int(os.environ.get("SUBLEN", "0"))  # >0: JWT mode (SECRET), subs this long
import base64, hashlib, hmac, json, itertools
_ids = itertools.count()


def jq():
    """A JWT query for a fresh user whose sub is SUBLEN bytes (JWT mode), or ''."""
    if not SUBLEN:
        return ""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    sub = (f"u{next(_ids)}-" + "x" * SUBLEN)[:SUBLEN]
    h = b64(b'{"alg":"HS256","typ":"JWT"}')
    p = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}).encode())
    sig = b64(hmac.new(os.environ.get("SECRET", "s3cret").encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"token={h}.{p}.{sig}"
stats = {"resumes": 0, "refused": 0, "joined": 0, "joined_bytes": 0, "bytes": 0,
         "closes": {}, "presence": 0, "members_seen": []}
phase = {"storm": False}


async def join_all(ws):
    await ws.send(env(*[join(r, i + 1, "relay") for i, r in enumerate(RN)]))
    got = 0
    _, seen = await recv_until(ws, lambda m: False, 0.01)
    end = time.time() + 10
    while got < ROOMS and time.time() < end:
        m, _ = await recv_until(ws, lambda m: m.WhichOneof("kind") in ("joined", "response"), 5)
        if m is None:
            break
        got += 1


async def honest(stop):
    ws = await connect(jq())
    await ws.recv()
    await join_all(ws)
    while time.time() < stop:
        try:
            d = await asyncio.wait_for(ws.recv(), 0.5)
        except asyncio.TimeoutError:
            continue
        except websockets.ConnectionClosed:
            stats["closes"][f"honest:{ws.close_code}"] = stats["closes"].get(f"honest:{ws.close_code}", 0) + 1
            return
        if phase["storm"]:
            for m in decode(d).messages:
                if m.WhichOneof("kind") == "presence":
                    stats["presence"] += 1
    await ws.close()


async def attacker(stop, ready):
    jt = jq()
    ws = await connect(jt)
    token = decode(await ws.recv()).messages[0].welcome.resume_token
    await join_all(ws)
    await ready.wait()
    while time.time() < stop:
        ws.transport.abort()
        q = f"resume={token}" + (("&" + QUERY) if QUERY else "") + (("&" + jt) if jt else "")
        try:
            ws = await connect(q)
        except Exception as e:
            stats["refused"] += 1
            await asyncio.sleep(0.05)
            continue
        stats["resumes"] += 1
        await asyncio.sleep(float(os.environ.get("READ_DELAY", "0")))  # a slow new process
        n = 0
        end = time.time() + float(os.environ.get("WAIT", "0.5"))  # for its rooms' Joined
        while time.time() < end and n < ROOMS:
            try:
                d = await asyncio.wait_for(ws.recv(), max(0.001, end - time.time()))
            except asyncio.TimeoutError:
                break
            except websockets.ConnectionClosed:
                k = f"attacker:{ws.close_code}"
                stats["closes"][k] = stats["closes"].get(k, 0) + 1
                break
            stats["bytes"] += len(d)
            for m in decode(d).messages:
                if m.WhichOneof("kind") == "joined":
                    n += 1
                    stats["joined"] += 1
                    stats["joined_bytes"] += m.ByteSize()
                    if len(stats["members_seen"]) < 100000:
                        stats["members_seen"].append(len(m.joined.members))
                elif m.WhichOneof("kind") == "welcome" and not m.welcome.resumed:
                    stats["closes"]["not_resumed"] = stats["closes"].get("not_resumed", 0) + 1
    ws.transport.abort()


async def probes(stop, lat):
    a = await connect(jq()); await a.recv()
    b = await connect(jq()); await b.recv()
    for w in (a, b):
        await w.send(env(join("r0", 1, "relay")))
        await recv_until(w, lambda m: m.WhichOneof("kind") == "joined")
    i = 0
    while time.time() < stop:
        i += 1
        t0 = time.time()
        await a.send(env(cm(event=pb.SendEvent(room="r0", kind="t", payload=str(i).encode()))),
                     )
        await a.send(env(cm(ping=pb.Ping(nonce=i, sent_time_us=int(t0 * 1e6)))))
        got_ev = got_pong = None
        end = t0 + 3
        async def rb():
            m, _ = await recv_until(b, lambda m: m.WhichOneof("kind") == "event" and m.event.payload == str(i).encode(), 3)
            return time.time() if m else None
        async def ra():
            m, _ = await recv_until(a, lambda m: m.WhichOneof("kind") == "pong" and m.pong.nonce == i, 3)
            return time.time() if m else None
        tb, ta = await asyncio.gather(rb(), ra())
        key = "storm" if phase["storm"] else "before"
        lat[key]["ev"].append((tb - t0) * 1000 if tb else 3000)
        lat[key]["rtt"].append((ta - t0) * 1000 if ta else 3000)
        await asyncio.sleep(0.1)
    await a.close(); await b.close()


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


async def main():
    pid = pid_of_relay()
    t_start = time.time()
    stop = t_start + 8 + SECS + 3
    ready = asyncio.Event()
    lat = {"before": {"ev": [], "rtt": []}, "storm": {"ev": [], "rtt": []}}
    hs = []
    for k in range(H):
        hs.append(asyncio.create_task(honest(stop)))
        if k % 20 == 19:
            await asyncio.sleep(0.2)
    atk = [asyncio.create_task(attacker(t_start + 8 + SECS, ready)) for _ in range(A)]
    pr = asyncio.create_task(probes(stop - 1, lat))
    await asyncio.sleep(8 - (time.time() - t_start))
    c0 = cpu_secs(pid); r0 = rss_kib(pid)
    await asyncio.sleep(0.0)
    print(f"baseline: RSS {r0} KiB")
    phase["storm"] = True
    t0 = time.time(); ready.set()
    peak = r0
    while time.time() < t0 + SECS:
        await asyncio.sleep(0.5)
        peak = max(peak, rss_kib(pid))
    dt = time.time() - t0
    cpu = (cpu_secs(pid) - c0) / dt * 100
    phase["storm"] = False
    for r in await asyncio.gather(*atk, return_exceptions=True):
        if r is not None: print("attacker error:", repr(r)[:300])
    await asyncio.gather(pr, *hs, return_exceptions=True)
    await asyncio.sleep(2)
    ms = stats.pop("members_seen")
    print(f"storm {dt:.1f}s: relay CPU {cpu:.0f}%  RSS peak {peak} KiB, after {rss_kib(pid)} KiB")
    print(f"resumes {stats['resumes']} ({stats['resumes']/dt:.0f}/s) refused {stats['refused']} "
          f"Joined {stats['joined']} ({stats['joined_bytes']/1e6:.1f} MB, {stats['bytes']/1e6:.1f} MB total), "
          f"members per Joined min/max {min(ms) if ms else 0}/{max(ms) if ms else 0}")
    print(f"honest presence messages during storm: {stats['presence']}  closes: {stats['closes']}")
    for k in ("before", "storm"):
        e, r = lat[k]["ev"], lat[k]["rtt"]
        print(f"{k}: event p50 {pct(e,.5):.1f} p99 {pct(e,.99):.1f} max {max(e) if e else 0:.0f} ms; "
              f"ping p50 {pct(r,.5):.1f} p99 {pct(r,.99):.1f} ms (n={len(e)})")


asyncio.run(main())
