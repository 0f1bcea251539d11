"""Member data at its limit, and the room cap from many source addresses.

Run: S=640 ADDRS=214 DATA=1024 python3 rooms_md.py     (DATA=0: the same without data)
Starts its own relay (plain ws://, anonymous, 127.0.0.1:$PORT, default 7664).
1) Edges: JoinRoom and QuickJoin with member_data of 1024 and 1025 bytes; a second
   join of a room the session is in with other data.
2) S sessions from 127.0.3.1.. (S/ADDRS per address) each join 16 new relay rooms
   with DATA bytes of member data: how fast the room cap (max_rooms 10,000) is
   reached, RSS per room, what an honest client from 127.0.0.1 then gets for a new
   room and for a quick join.
3) CHURN s of every session leaving a room and joining a new one with DATA bytes,
   as fast as the limits allow: RSS before/after (a leak would grow).
Bounded: S+3 connections.
"""
import asyncio, collections, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib16 import *

PORT = int(os.environ.get("PORT", "7664"))
S = int(os.environ.get("S", "640")); ADDRS = int(os.environ.get("ADDRS", "214"))
DATA = int(os.environ.get("DATA", "1024")); CHURN = float(os.environ.get("CHURN", "15"))
codes = collections.Counter()


def kind(m):
    return m.WhichOneof("kind")


async def edges():
    ws = await ws_connect(PORT, plain=True); await ws.recv()
    out = []
    for n, msg in (("join 1024", join("e1", 1, "relay", data=b"a" * 1024)), ("join 1025", join("e2", 2, "relay", data=b"a" * 1025)),
                   ("quick 1024", cm(quick_join=pb.QuickJoin(request_id=3, room_type="relay", member_data=b"q" * 1024))),
                   ("quick 1025", cm(quick_join=pb.QuickJoin(request_id=4, room_type="relay", member_data=b"q" * 1025))),
                   ("rejoin e1 other data", join("e1", 5, "relay", data=b"b" * 10))):
        if n.startswith("rejoin"):
            await asyncio.sleep(1.1)
        await ws.send(env(msg))
        m, _ = await ws_recv_until(ws, lambda m: kind(m) in ("joined", "error"), 3)
        out.append(f"{n}: {kind(m) if m else None} {pb.ErrorCode.Name(m.error.code) + ' ' + m.error.message if m and kind(m) == 'error' else ''}")
    await ws.close()
    return out


async def member(i, rooms, ready):
    src = f"127.0.{3 + (i % ADDRS) // 250}.{1 + (i % ADDRS) % 250}"
    ws = await ws_connect(PORT, src=src, plain=True); await ws.recv()
    for half in (range(0, 8), range(8, 16)):  # 16 joins of 1 KiB: over one envelope's 16 KiB
        await ws.send(env(*[join(f"s{i}-r{k}", k + 1, "relay", data=b"d" * DATA) for k in half]))
    got = 0
    end = time.time() + 15
    while got < 16 and time.time() < end:
        m, _ = await ws_recv_until(ws, lambda m: kind(m) in ("joined", "error"), end - time.time())
        if m is None:
            break
        got += 1
        codes["joined" if kind(m) == "joined" else pb.ErrorCode.Name(m.error.code)] += 1
        if kind(m) == "joined":
            rooms.append(m.joined.room)
    return ws


async def churn(i, ws, mine, stop):
    n = 0
    rid = 100
    while time.time() < stop:
        if mine:
            r = mine.pop(0)
            rid += 1
            await ws.send(env(cm(leave=pb.LeaveRoom(request_id=rid, room=r))))
        rid += 1
        new = f"s{i}-c{n}"; n += 1
        await ws.send(env(join(new, rid, "relay", data=b"c" * DATA)))
        m, _ = await ws_recv_until(ws, lambda m: kind(m) in ("joined", "error") and (m.joined.room == new if kind(m) == "joined" else m.error.request_id == rid), 3)
        if m is not None and kind(m) == "joined":
            mine.append(new); codes["churn_joined"] += 1
        elif m is not None:
            codes["churn_" + pb.ErrorCode.Name(m.error.code)] += 1
            await asyncio.sleep(min(2.0, max(0.05, m.error.retry_after_ms / 1000)))
        await asyncio.sleep(0.05)


async def main():
    relay = start_relay(PORT, "--no-quic", tag="rooms_md", plain=True)
    pid = relay.pid
    try:
        for line in await edges():
            print("edge:", line)
        await asyncio.sleep(1)
        r0 = rss_kib(pid); c0 = cpu_secs(pid); t0 = time.time()
        rooms = []
        wss = []
        for base in range(0, S, 100):
            wss += await asyncio.gather(*[member(i, rooms, None) for i in range(base, min(S, base + 100))])
        dt = time.time() - t0
        r1 = rss_kib(pid)
        print(f"{S} sessions from {ADDRS} addresses, DATA={DATA}: {dict(codes)} in {dt:.1f}s; relay CPU {cpu_secs(pid)-c0:.1f}s; "
              f"RSS {r0} -> {r1} KiB ({(r1-r0)*1024/max(1,len(rooms)):.0f} B per room+seat)")
        h = await ws_connect(PORT, plain=True); await h.recv()
        await h.send(env(join("honest-new", 1, "relay")))
        m, _ = await ws_recv_until(h, lambda m: kind(m) in ("joined", "error"), 3)
        print("honest new room:", kind(m) if m else None, pb.ErrorCode.Name(m.error.code) + " " + m.error.message if m and kind(m) == "error" else "")
        await h.send(env(cm(quick_join=pb.QuickJoin(request_id=2, room_type="relay"))))
        m, _ = await ws_recv_until(h, lambda m: kind(m) in ("joined", "error"), 3)
        print("honest quick join:", kind(m) if m else None, m.joined.room if m and kind(m) == "joined" else (m.error.message if m else ""))
        await h.close()
        if CHURN:
            codes.clear()
            mine = collections.defaultdict(list)
            for r in rooms:
                mine[int(r.split("-")[0][1:])].append(r)
            c0 = cpu_secs(pid); t0 = time.time()
            await asyncio.gather(*[churn(i, ws, mine[i], t0 + CHURN) for i, ws in enumerate(wss)], return_exceptions=True)
            dt = time.time() - t0
            await asyncio.sleep(2)
            print(f"churn {dt:.0f}s: {dict(codes)}; relay CPU {100*(cpu_secs(pid)-c0)/dt:.0f}%; RSS {r1} -> {rss_kib(pid)} KiB")
        for ws in wss:
            ws.transport.abort()
    finally:
        stop(relay)


asyncio.run(main())
