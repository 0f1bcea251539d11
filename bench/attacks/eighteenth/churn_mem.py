"""Memory over minutes under churn across a 2-node cluster: W workers loop
connect (random 127.x source) -> quick join / join pooled room (follow redirect with
seat) -> a few events+inputs -> leave/close/abort/resume. RSS of each node sampled."""
import asyncio, os, random, time, subprocess
from lib18 import *
NODES = ["ws://127.0.0.1:7861/ws", "ws://127.0.0.1:7862/ws"]
PIDS = [int(open(f).read()) for f in ("n1.pid", "n2.pid")]
W = int(os.environ.get("W", "24")); SECS = float(os.environ.get("SECS", "150")); POOL = int(os.environ.get("POOL", "200"))
stats = {"loops": 0, "err": 0, "redirect": 0, "joined": 0, "resumed": 0}
def src(): return ("127.%d.%d.%d" % (random.randint(1, 250), random.randint(0, 255), random.randint(1, 254)), 0)
async def conn(url, query=""):
    u = url + (("?" + query) if query else "")
    c = C()
    c.ws = await websockets.connect(u, max_size=64 << 20, open_timeout=5, ping_interval=None, close_timeout=1, local_addr=src())
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome
    c.task = asyncio.create_task(c._read()); return c
async def one(wid):
    url = random.choice(NODES)
    c = await conn(url, "client=w%d-%d" % (wid, random.randint(0, 1 << 30)))
    extra = []
    try:
        mode = random.random()
        if mode < 0.3:
            rid = random.randint(1, 1 << 40)
            await c.send(cm(quick_join=pb.QuickJoin(request_id=rid, room_type="relay", filters={"m": str(random.randint(0, 5))},
                                                   member_data=os.urandom(random.randint(0, 1024)))))
            r = await c.wait(lambda k, m: k in ("joined", "error", "redirect"), 3)
        else:
            room = "c-%d" % random.randint(0, POOL)
            r = await c.join(room, 3, create=pb.RoomOptions(metadata={"k%d" % i: "v" * 200 for i in range(random.randint(0, 16))}))
        if r is None: stats["err"] += 1; return
        k = r.WhichOneof("kind")
        if k == "redirect":
            stats["redirect"] += 1
            other = await conn(r.redirect.url, "client=x")
            extra.append(other)
            r2 = await other.join(r.redirect.room, 4, seat=r.redirect.seat)
            c2 = other; room = r.redirect.room
            if not r2 or r2.WhichOneof("kind") != "joined": stats["err"] += 1; return
        elif k == "joined":
            c2 = c; room = r.joined.room
        else:
            stats["err"] += 1; return
        stats["joined"] += 1
        for i in range(random.randint(1, 6)):
            await c2.send(cm(event=pb.SendEvent(room=room, kind="k", payload=os.urandom(random.randint(0, 2000)))),
                          cm(input=pb.Input(room=room, seq=i + 1, writes=pb.EntityWrites(create=[pb.Entity(id=random.randint(1, 1 << 60), fields=[pb.Field(id=1, bytes=os.urandom(100))])]))),
                          cm(request=pb.Request(request_id=50 + i, list_rooms=pb.ListRooms(limit=5))))
            await asyncio.sleep(random.random() * 0.3)
        end = random.random()
        if end < 0.3:
            c2.abort()
            if random.random() < 0.5:
                await asyncio.sleep(random.random())
                u = r.redirect.url if k == "redirect" else url
                rc = await conn(u, "resume=%s&received=%d" % (c2.welcome.resume_token, c2.last_seq))
                stats["resumed"] += rc.welcome.resumed
                await asyncio.sleep(random.random())
                if random.random() < 0.5: rc.abort()
                else: await rc.close()
        elif end < 0.6:
            await c2.send(cm(leave=pb.LeaveRoom(request_id=9, room=room))); await asyncio.sleep(0.05); await c2.close()
        else:
            await c2.close()
    finally:
        for x in [c] + extra:
            if x.closed is None: await x.close()
async def worker(wid, end):
    while time.time() < end:
        try:
            await asyncio.wait_for(one(wid), 15); stats["loops"] += 1
        except Exception as e:
            stats["err"] += 1
            await asyncio.sleep(0.2)
def sample(tag):
    r = [rss_kib(p) // 1024 for p in PIDS]; c = [round(cpu_secs(p), 1) for p in PIDS]
    info = subprocess.run(["redis-cli", "-p", "6391", "info", "memory"], capture_output=True, text=True).stdout
    rm = [l for l in info.splitlines() if l.startswith("used_memory_human")]
    ks = subprocess.run(["redis-cli", "-p", "6391", "dbsize"], capture_output=True, text=True).stdout.strip()
    print(f"{tag}: rss MiB {r} cpu {c} redis {rm} keys {ks} {stats}", flush=True)
async def main():
    sample("start")
    end = time.time() + SECS
    ws = [asyncio.create_task(worker(i, end)) for i in range(W)]
    while time.time() < end:
        await asyncio.sleep(15); sample("t+%d" % int(SECS - (end - time.time())))
    await asyncio.gather(*ws, return_exceptions=True)
    for i in range(5):
        await asyncio.sleep(15); sample("idle+%d" % ((i + 1) * 15))
asyncio.run(main())
