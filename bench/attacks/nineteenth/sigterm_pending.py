"""SIGTERM n1 while events aimed at victim V pile past V's per-tick share (64 KiB).
Senders S1..S4 each burst numbered events to V (payload ~PAY bytes), wait for their
Pong.events_received, then n1 gets SIGTERM. All follow GoingAway, rejoin; check every
acknowledged event reaches V exactly once, in seq order; time n1's exit."""
import asyncio, os, signal, time, subprocess
from lib18 import *
N1 = "ws://127.0.0.1:7961/ws"
PID = int(open(os.environ.get("PIDF", "n1.pid")).read())
NS = int(os.environ.get("NS", "4")); PER = int(os.environ.get("PER", "8")); PAY = int(os.environ.get("PAY", "15000"))
ROOM = "pend%d" % int(time.time())
async def conn(url, addr, q=""):
    c = C(); c.ws = await websockets.connect(url + (("?" + q) if q else ""), ping_interval=None, max_size=1<<26, local_addr=(addr, 0))
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome; c._handle(s)
    c.task = asyncio.create_task(c._read()); return c
async def main():
    v = await conn(N1, "127.9.0.1")
    assert (await v.join(ROOM, 1)).WhichOneof("kind") == "joined"
    vid = v.welcome.session_id
    ss = []
    for i in range(NS):
        s = await conn(N1, "127.9.1.%d" % (i + 1)); assert (await s.join(ROOM, 1)).WhichOneof("kind") == "joined"; ss.append(s)
    await asyncio.sleep(0.3)
    # each sender: PER numbered events to V, then a ping
    for i, s in enumerate(ss):
        for k in range(PER):
            await s.send(cm(event=pb.SendEvent(room=ROOM, kind="e", payload=(b"%d:%d:" % (i, k)).ljust(PAY, b"x"), targets=[vid])), fes=k + 1)
    for s in ss: await s.send(cm(ping=pb.Ping(nonce=1)))
    acks = []
    for s in ss:
        m = await s.wait(lambda k, m: k == "pong", 2); acks.append(m.pong.events_received if m else None)
    errs = [(m.error.code, m.error.message) for s in ss for m in s.of("error")]
    t_stop = time.time(); os.kill(PID, signal.SIGTERM)
    got_before = len(v.events)
    print("acks", acks, "errors", errs[:3], "V had", got_before, "events at SIGTERM")
    # wait for going away on V
    ga = await v.wait(lambda k, m: k == "going_away", 8)
    print("V going_away after %.3fs: %s; closed %s" % (time.time() - t_stop, ga and ga.going_away.url, v.closed))
    await asyncio.sleep(0.5)
    n1_events = list(v.events)
    url = ga.going_away.url
    # everybody moves; V last (its seat waits)
    delay = float(os.environ.get("VDELAY", "0.5"))
    moved = []
    for i, s in enumerate(ss):
        s2 = await conn(url, "127.9.1.%d" % (i + 1), "resume=%s&received=%d" % (s.welcome.resume_token, s.last_seq))
        j = await s2.join(ROOM, 11); moved.append(s2)
    await asyncio.sleep(delay)
    v2 = await conn(url, "127.9.0.1", "resume=%s&received=%d" % (v.welcome.resume_token, v.last_seq))
    i0 = 0
    j = await v2.join(ROOM, 11)
    print("V rejoined:", j.WhichOneof("kind"), "sid", v2.welcome.session_id == vid, "resumed", v2.welcome.resumed)
    await asyncio.sleep(3)
    order = [k for t, k, m in v2.msgs]
    first_joined = order.index("joined") if "joined" in order else None
    first_event = order.index("event") if "event" in order else None
    print("V on n2: first joined at msg #", first_joined, "first event at msg #", first_event)
    allev = [(e.seq, e.payload[:8]) for t, e in n1_events] + [(e.seq, e.payload[:8]) for t, e in v2.events]
    seqs = [s for s, _ in allev]
    keys = [p.split(b":")[0] + b":" + p.split(b":")[1] for _, p in allev]
    print("V got %d on n1 + %d on n2 = %d, distinct %d, expected %d (acked %d)" % (len(n1_events), len(v2.events), len(allev), len(set(keys)), NS * PER, sum(a or 0 for a in acks)))
    print("seq ascending:", all(a < b for a, b in zip(seqs, seqs[1:])), "dups:", len(keys) - len(set(keys)))
    missing = [(i, k) for i in range(NS) for k in range(PER) if b"%d:%d" % (i, k) not in keys]
    print("missing:", missing[:20], len(missing))
    try:
        os.kill(PID, 0); print("n1 still alive at", round(time.time() - t_stop, 2))
    except OSError: print("n1 gone")
    for c in moved + [v2]: await c.close()
asyncio.run(main())
