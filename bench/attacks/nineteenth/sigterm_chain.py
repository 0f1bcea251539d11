"""Events a stopping node hands over for a member (pending_events) live only in the next
node's memory: its periodic checkpoints omit them. n1 SIGTERM -> room moves to X; senders
rejoin on X, victim V waits WAIT s; KILL=1: X is SIGKILLed, V continues on the third node
Y after the lease. Does V still get the acknowledged events?"""
import asyncio, os, signal, time
from lib18 import *
NODES = {"n1": "ws://127.0.0.1:7961/ws", "n2": "ws://127.0.0.1:7962/ws", "n3": "ws://127.0.0.1:7963/ws"}
KILL = int(os.environ.get("KILL", "1")); WAIT = float(os.environ.get("WAIT", "2.5"))
NS, PER, PAY = 4, 8, 15000
ROOM = "chain%d" % int(time.time())
async def conn(url, addr, q=""):
    c = C(); c.ws = await websockets.connect(url + (("?" + q) if q else ""), ping_interval=None, max_size=1<<26, local_addr=(addr, 0))
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome; c._handle(s)
    c.task = asyncio.create_task(c._read()); return c
async def main():
    v = await conn(NODES["n1"], "127.9.0.1"); assert (await v.join(ROOM, 1)).WhichOneof("kind") == "joined"; vid = v.welcome.session_id
    ss = [await conn(NODES["n1"], "127.9.1.%d" % (i + 1)) for i in range(NS)]
    for s in ss: assert (await s.join(ROOM, 1)).WhichOneof("kind") == "joined"
    await asyncio.sleep(0.3)
    for i, s in enumerate(ss):
        for k in range(PER):
            await s.send(cm(event=pb.SendEvent(room=ROOM, kind="e", payload=(b"%d:%d:" % (i, k)).ljust(PAY, b"x"), targets=[vid])), fes=k + 1)
    for s in ss: await s.send(cm(ping=pb.Ping(nonce=1)))
    acks = [ (await s.wait(lambda k, m: k == "pong", 2)).pong.events_received for s in ss]
    os.kill(int(open("n1.pid").read()), signal.SIGTERM)
    ga = await v.wait(lambda k, m: k == "going_away", 8); url = ga.going_away.url
    await asyncio.sleep(0.3)
    on_n1 = [e.payload.split(b":")[0] + b":" + e.payload.split(b":")[1] for t, e in v.events]
    X = [n for n, u in NODES.items() if u == url][0]; Y = [n for n in ("n2", "n3") if n != X][0]
    print("acks", acks, "; V got %d on n1; room goes to %s" % (len(on_n1), X))
    moved = []
    for i, s in enumerate(ss):
        s2 = await conn(url, "127.9.1.%d" % (i + 1), "resume=%s&received=%d" % (s.welcome.resume_token, s.last_seq)); await s2.join(ROOM, 11); moved.append(s2)
    await asyncio.sleep(WAIT)
    target = url
    if KILL:
        sig = signal.SIGTERM if os.environ.get("SIG") == "term" else signal.SIGKILL
        os.kill(int(open(X + ".pid").read()), sig); print(sig.name, X, "after", WAIT, "s; V continues on", Y)
        await asyncio.sleep(7.5 if sig == signal.SIGKILL else 1.0); target = NODES[Y]
    v2 = await conn(target, "127.9.0.1", "resume=%s&received=%d" % (v.welcome.resume_token, v.last_seq))
    for attempt in range(10):
        j = await v2.join(ROOM, 11 + attempt)
        if j.WhichOneof("kind") == "joined": break
        print("  join:", j.WhichOneof("kind"), getattr(j, j.WhichOneof("kind")).message if j.WhichOneof("kind") == "error" else ""); await asyncio.sleep(1)
    print("V rejoined:", j.WhichOneof("kind"), "same member id", v2.welcome.session_id == vid)
    await asyncio.sleep(2.5)
    on_2 = [e.payload.split(b":")[0] + b":" + e.payload.split(b":")[1] for t, e in v2.events]
    allk = on_n1 + on_2
    missing = [b"%d:%d" % (i, k) for i in range(NS) for k in range(PER) if b"%d:%d" % (i, k) not in allk]
    print("V: %d on n1 + %d after = %d of %d acknowledged; dups %d; missing %d" % (len(on_n1), len(on_2), len(allk), sum(acks), len(allk) - len(set(allk)), len(missing)))
    for c in moved + [v2]: await c.close()
asyncio.run(main())
