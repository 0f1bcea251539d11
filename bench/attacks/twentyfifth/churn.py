"""Mixed churn against a relay on loopback for SECS seconds (env), then stops. Counts operations.
Env: PORT, SECS, API (api token), IPS (source address pool size), TOKEN_CMD (jwt mode: shell cmd printing a token for sub $SUB)"""
import asyncio, os, random, time, json, urllib.request, subprocess
from lib25 import *

SECS = float(os.environ.get("SECS", "120"))
API = os.environ.get("API", "")
IPS = int(os.environ.get("IPS", "2000"))
JWT = os.environ.get("JWT", "")  # path of a file with tokens, one per line (user i)
TOKENS = open(JWT).read().split() if JWT else []
END = time.time() + SECS
ops = {}
errs = {}


def count(k, n=1):
    ops[k] = ops.get(k, 0) + n


def ip():
    i = random.randrange(IPS)
    return f"127.{1 + i // 60000}.{(i // 250) % 240}.{1 + i % 250}"


def hdr():
    if not TOKENS:
        return None
    return {"Authorization": "Bearer " + random.choice(TOKENS)}


async def opened(query=""):
    c = await Client.open(ip(), query, headers=hdr())
    w = await c.welcome_()
    if w is None:
        raise RuntimeError(f"no welcome {c.closed}")
    return c, w


def rid():
    return random.randrange(1, 1 << 40)


async def worker(name, fn):
    while time.time() < END:
        try:
            await fn()
        except Exception as e:
            k = f"{name}:{type(e).__name__}"
            errs[k] = errs.get(k, 0) + 1
            await asyncio.sleep(0.2)


async def joinleave():
    """join lobby + alobby + a churned room, event with targets, leave, rejoin, close normally"""
    c, w = await opened()
    room = f"jl-{random.randrange(40)}"
    for r, t in (("lobby", "relay"), ("alobby", "arena"), (room, "relay")):
        q = rid()
        await c.send(join(r, q, t, member_data=os.urandom(64)))
        a = await c.answer(q)
        count("join")
    me = w.session_id
    await c.send(cm(event=pb.SendEvent(room="lobby", kind="hi", payload=os.urandom(100), targets=[me, me + 1])))
    await c.send(cm(input=pb.Input(room="alobby", seq=1, intent=bytes([1, 255]))))
    # relay entity create in lobby (owned, removed at leave)
    await c.send(cm(input=pb.Input(room="lobby", seq=1, writes=pb.EntityWrites(create=[pb.Entity(id=me * 1000 + 1, kind=1, fields=[pb.Field(id=1, int=5)])]))))
    count("event")
    await asyncio.sleep(random.uniform(0.1, 0.6))
    for r in ("lobby", room):
        q = rid()
        await c.send(leave(r, q))
        await c.answer(q)
        count("leave")
    await asyncio.sleep(1.1)
    q = rid()
    await c.send(join("lobby", q))
    await c.answer(q)
    count("join")
    if random.random() < 0.5:
        await c.close()
        count("close_normal")
    else:
        await c.close(4000 + random.randrange(3))
        count("close_other")


async def dropresume():
    c, w = await opened(f"client=cid-{random.randrange(10**9)}")
    rooms = [f"dr-{random.randrange(20)}", "lobby"]
    for r in rooms:
        q = rid()
        await c.send(join(r, q))
        await c.answer(q)
        count("join")
    await asyncio.sleep(random.uniform(0.1, 1))
    c.drop()
    count("drop")
    x = random.random()
    if x < 0.5:
        await asyncio.sleep(random.uniform(0.05, 3))
        d = await Client.open(ip(), f"resume={w.resume_token}&received={c.last_seq}", headers=hdr())
        w2 = await d.welcome_()
        count("resume_ok" if w2 is not None and w2.resumed else "resume_fail")
        await asyncio.sleep(random.uniform(0.1, 0.5))
        if random.random() < 0.5:
            await d.close()
            count("close_normal")
        else:
            d.drop()
            count("drop_after_resume")
    elif x < 0.6:
        # resume twice at once (take-over / superseded race)
        qs = f"resume={w.resume_token}"
        ds = await asyncio.gather(*(Client.open(ip(), qs, headers=hdr()) for _ in range(2)), return_exceptions=True)
        await asyncio.sleep(0.5)
        for d in ds:
            if isinstance(d, Client):
                d.drop()
        count("resume_race")
    else:
        count("never_resumed")


async def stale():
    tok = os.urandom(16).hex()
    d = await Client.open(ip(), f"resume={tok}&received=3", headers=hdr())
    await asyncio.sleep(0.1)
    await d.close()
    count("stale_resume")
    await asyncio.sleep(0.05)


async def quickjoin():
    c, w = await opened()
    for i in range(3):
        q = rid()
        f = {"mode": f"m{random.randrange(500)}", "map": f"x{random.randrange(3)}"}
        await c.send(cm(quick_join=pb.QuickJoin(request_id=q, room_type="relay", filters=f, create=pb.RoomOptions(metadata=f))))
        a = await c.answer(q)
        count("quickjoin")
        if a is not None and a.WhichOneof("kind") == "joined":
            room = a.joined.room
            q2 = rid()
            await c.send(cm(request=pb.Request(request_id=q2, list_rooms=pb.ListRooms(filters={"map": f["map"]}))))
            await c.answer(q2)
            q3 = rid()
            await c.send(leave(room, q3))
            await c.answer(q3)
    await c.close()


async def hostmig():
    room = f"hm-{random.randrange(10**9)}"
    a, wa = await opened()
    b, wb = await opened()
    q = rid(); await a.send(join(room, q)); ja = await a.answer(q)
    q = rid(); await b.send(join(room, q)); jb = await b.answer(q)
    if ja is None or jb is None or ja.WhichOneof("kind") != "joined" or jb.WhichOneof("kind") != "joined":
        count("hm_fail"); a.drop(); b.drop(); return
    ma, mb = ja.joined.member_id, jb.joined.member_id
    hid = random.getrandbits(62)
    await a.send(cm(input=pb.Input(room=room, seq=1, writes=pb.EntityWrites(
        create_for_room=[pb.Entity(id=random.getrandbits(62), kind=1, fields=[pb.Field(id=1, int=1)])],
        create=[pb.Entity(id=hid, kind=2, fields=[pb.Field(id=1, int=7)])],
        show=[pb.Viewer(id=hid, member=mb)]))))
    await asyncio.sleep(0.2)
    await a.send(cm(input=pb.Input(room=room, seq=2, writes=pb.EntityWrites(hide=[pb.Viewer(id=hid, member=mb)], show=[pb.Viewer(id=hid, member=mb)]))))
    await b.send(cm(event=pb.SendEvent(room=room, kind="k", payload=b"x", targets=[ma])))
    await asyncio.sleep(0.2)
    if random.random() < 0.5:
        a.drop()   # owner lost: ownership passes after a second away
        await asyncio.sleep(1.5)
    else:
        q = rid(); await a.send(cm(request=pb.Request(request_id=q, update_room=pb.UpdateRoom(room=room, owner=mb, metadata={"k": "v"}))))
        await a.answer(q)
        await a.close()
    count("hostmig")
    await asyncio.sleep(0.3)
    await b.close()


def api(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=body, method=method,
                                 headers={"Authorization": f"Bearer {API}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read(); return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def apiw():
    loop = asyncio.get_running_loop()
    room = f"jl-{random.randrange(40)}"
    calls = [("GET", "/rooms?limit=50", None), ("GET", f"/rooms/lobby", None),
             ("POST", f"/rooms/lobby/events?kind=api&targets=1,2,3", os.urandom(200)),
             ("DELETE", f"/rooms/lobby/users/anonymous-{random.randrange(10**6)}?reason=x&ban_secs=5", None),
             ("DELETE", f"/rooms/{room}?reason=bye", None),
             ("POST", f"/rooms/{room}/events?kind=api", b"p")]
    for m, p, b in calls:
        st = await loop.run_in_executor(None, api, m, p, b)
        count(f"api_{m}_{st}")
    await asyncio.sleep(0.3)


async def main():
    tasks = []
    spec = [("joinleave", joinleave, 10), ("dropresume", dropresume, 6), ("stale", stale, 1),
            ("quickjoin", quickjoin, 2), ("hostmig", hostmig, 3)]
    if API:
        spec.append(("api", apiw, 1))
    for name, fn, n in spec:
        for _ in range(n):
            tasks.append(asyncio.ensure_future(worker(name, fn)))
    t0 = time.time()
    while time.time() < END:
        await asyncio.sleep(10)
        print(f"[churn {time.time()-t0:.0f}s] ops={json.dumps(ops, sort_keys=True)} errs={errs}", flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"[churn done] ops={json.dumps(ops, sort_keys=True)} total={sum(ops.values())} errs={errs}", flush=True)

asyncio.run(main())
