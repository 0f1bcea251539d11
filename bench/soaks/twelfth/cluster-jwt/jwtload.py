#!/usr/bin/env python3
# Many short-lived JWT sessions, distinct subs, several source addresses.
import asyncio, random, sys, time, collections, json
sys.path.insert(0, "/tmp/soak8/gen")
import jwt, websockets
from websockets.asyncio.client import connect
from tickrelay.v1 import tickrelay_pb2 as pb

PORT = int(sys.argv[1]); SECRET = sys.argv[2]; N = int(sys.argv[3]); CONC = int(sys.argv[4]); OFF = int(sys.argv[5]) if len(sys.argv) > 5 else 0
URL = f"ws://127.0.0.1:{PORT}/ws"
stats = collections.Counter()
ROOMS = 40

def tok(sub, ttl=300):
    now = int(time.time())
    return jwt.encode({"sub": sub, "exp": now + ttl, "iat": now}, SECRET, algorithm="HS256")

def env(*msgs, first_event_seq=0):
    e = pb.ClientEnvelope(first_event_seq=first_event_seq)
    for m in msgs: e.messages.append(m)
    return e.SerializeToString()

class Sess:
    def __init__(s, ws): s.ws = ws; s.seq = 0; s.welcome = None; s.msgs = []
    async def recv(s, timeout=5):
        data = await asyncio.wait_for(s.ws.recv(), timeout)
        e = pb.ServerEnvelope(); e.ParseFromString(data)
        n = 0
        for m in e.messages:
            k = m.WhichOneof("kind")
            if k not in ("state", "welcome"): n += 1
            if k == "welcome": s.welcome = m.welcome
            if k == "error": stats["err_" + pb.ErrorCode.Name(m.error.code)] += 1
        if e.first_seq and n: s.seq = e.first_seq + n - 1
        return e
    async def until(s, kind, timeout=5):
        t0 = time.time()
        while time.time() - t0 < timeout:
            e = await s.recv(timeout)
            for m in e.messages:
                if m.WhichOneof("kind") == kind: return m
        raise TimeoutError(kind)

async def open_ws(sub, ip, extra=""):
    return await connect(URL + extra, additional_headers={"Authorization": "Bearer " + tok(sub)},
                         local_addr=(ip, 0), open_timeout=10, max_size=2**22, ping_interval=None)

async def one(i):
    sub = f"user-{i:06d}"; ip = f"127.0.0.{2 + i % 19}"
    room = f"jwt-{i % ROOMS}" ; rtype = "relay" if (i % ROOMS) < 30 else "arena"
    solo = (i % 5 == 0)
    if solo: room = f"solo-{sub}"; rtype = "relay"
    ws = await open_ws(sub, ip); s = Sess(ws)
    await s.until("welcome")
    await ws.send(env(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=room, room_type=rtype))))
    await s.until("joined")
    stats["joined"] += 1
    if solo:
        await ws.send(env(pb.ClientMessage(request=pb.Request(request_id=5, list_rooms=pb.ListRooms(limit=10)))))
        try: await s.until("response", 3); stats["listed"] += 1
        except Exception: stats["no_list"] += 1
    eid = (i + 1) * 1000
    for k in range(1, 4):
        if rtype == "relay":
            w = pb.EntityWrites()
            if k == 1:
                w.create.append(pb.Entity(id=eid, kind=7, fields=[pb.Field(id=1, int=k)]))
            else:
                w.create.append(pb.Entity(id=eid + k, kind=7, fields=[pb.Field(id=1, int=k)]))
                w.remove.append(eid + k - 1 if k > 2 else eid)
            inp = pb.Input(room=room, seq=k, writes=w)
        else:
            inp = pb.Input(room=room, seq=k, intent=bytes([random.randrange(256), random.randrange(256)]))
        await ws.send(env(pb.ClientMessage(input=inp)))
    await ws.send(env(pb.ClientMessage(event=pb.SendEvent(room=room, kind="chat", payload=b"hi" * 10)), first_event_seq=1))
    for _ in range(3):
        try: await s.recv(1)
        except Exception: break
    r = random.random()
    if r < 0.35:      # leave and close normally
        await ws.send(env(pb.ClientMessage(leave=pb.LeaveRoom(request_id=2, room=room))))
        try: await s.until("left", 3)
        except Exception: stats["no_left"] += 1
        await ws.close(); stats["leave_close"] += 1
    elif r < 0.60:    # drop (no close frame); seat held for the grace
        ws.transport.abort(); stats["drop"] += 1
    elif r < 0.85:    # drop, then resume from the same address, then leave
        rt = s.welcome.resume_token; received = s.seq
        ws.transport.abort()
        await asyncio.sleep(random.uniform(0.2, 2.0))
        ws2 = await open_ws(sub, ip, f"?resume={rt}&received={received}"); s2 = Sess(ws2)
        w = await s2.until("welcome")
        stats["resumed" if s2.welcome.resumed else "resume_not_resumed"] += 1
        await ws2.send(env(pb.ClientMessage(input=pb.Input(room=room, seq=10, intent=b"\x01\x01") if rtype == "arena" else
            pb.Input(room=room, seq=10, writes=pb.EntityWrites(create=[pb.Entity(id=eid + 50, kind=7, fields=[pb.Field(id=1, int=1)])])))))
        if random.random() < 0.5:
            await ws2.send(env(pb.ClientMessage(leave=pb.LeaveRoom(request_id=3, room=room))))
            try: await s2.until("left", 3)
            except Exception: stats["no_left2"] += 1
            await ws2.close(); stats["resume_leave_close"] += 1
        else:
            await ws2.close(); stats["resume_close_noleave"] += 1
    else:             # a second connection of the same user from another address: replace
        ws2 = await open_ws(sub, f"127.0.0.{2 + (i + 7) % 19}"); s2 = Sess(ws2)
        await s2.until("welcome")
        try:
            await asyncio.wait_for(ws.wait_closed(), 5)
            stats[f"old_closed_{ws.close_code}"] += 1
        except Exception:
            stats["old_not_closed"] += 1
        await ws2.send(env(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=room, room_type=rtype))))
        try: await s2.until("joined", 5); stats["replace_joined"] += 1
        except Exception: stats["replace_no_join"] += 1
        if random.random() < 0.5: await ws2.close(); stats["replace_close"] += 1
        else: ws2.transport.abort(); stats["replace_drop"] += 1

async def main():
    sem = asyncio.Semaphore(CONC); t0 = time.time()
    async def guarded(i):
        async with sem:
            try: await one(i)
            except Exception as e:
                stats["exc_" + type(e).__name__] += 1
                if stats["exc_" + type(e).__name__] <= 3: print(f"session {i}: {type(e).__name__}: {e}", flush=True)
    tasks = []
    for i in range(N):
        tasks.append(asyncio.create_task(guarded(i + OFF)))
        if i % 200 == 199:
            print(f"{time.time()-t0:.0f}s started {i+1}: {dict(stats)}", flush=True)
            await asyncio.sleep(0.5)
    await asyncio.gather(*tasks)
    print(f"done in {time.time()-t0:.0f}s: {json.dumps(dict(stats))}", flush=True)
asyncio.run(main())
