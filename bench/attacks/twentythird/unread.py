"""Attack 2: QUIC clients that never read their control stream (no flow-control credit
beyond WIN bytes) in a large relay room.

FILLERS QUIC sessions fill relay room TAG-0 with ENTS entities of 15 x FB random bytes
each (default 24 x 4 x 15 x 980 B = 1.4 MB); tickrelay-bots (BOTS members, QUIC) play in
the same room. Then K attacker sessions (sources 127.0.25.x) with a receive window of WIN
bytes that is never raised join the room and never read. EVENTS=N: one filler sends N
events of EVB bytes per second to the room meanwhile. RESUME=1: an attacker closed with a
code it may resume after (45xx) resumes at once, still never reading. Prints per second relay
CPU and RSS, each attacker's close code and when it came (from its join), what the bots saw.
Ends within SECS + fill time."""
import asyncio, os, subprocess, sys, time, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib23 import *

FILLERS = int(os.environ.get("FILLERS", "24"))
ENTS = int(os.environ.get("ENTS", "4"))
FB = int(os.environ.get("FB", "980"))
K = int(os.environ.get("K", "100"))
WIN = int(os.environ.get("WIN", "4096"))
SECS = float(os.environ.get("SECS", "30"))
BOTS = int(os.environ.get("BOTS", "4"))
EVENTS = int(os.environ.get("EVENTS", "0"))
EVB = int(os.environ.get("EVB", "1000"))
RESUME = os.environ.get("RESUME", "0") == "1"
TAG = os.environ.get("TAG", "u")
ROOM = f"{TAG}-0"
BOTS_BIN = os.environ.get("BOTS_BIN", "/work/main/target/release/tickrelay-bots")


async def filler(i, sem, out):
    async with sem:
        c = await session(f"127.0.23.{i % 8 + 1}")
        got = asyncio.get_event_loop().create_future()
        c.on_msg = lambda m, via: (m.WhichOneof("kind") == "joined" and not got.done() and got.set_result(m.joined.member_id))
        c.send_env(join(ROOM, 1))
        mid = await asyncio.wait_for(got, 10)
        for e in range(ENTS):
            ent = pb.Entity(id=mid * 1000 + e, kind=1, fields=[pb.Field(id=f + 1, bytes=os.urandom(FB)) for f in range(15)])
            c.send_env(cm(input=pb.Input(room=ROOM, seq=e + 1, writes=pb.EntityWrites(create=[ent]))))

        def on(m, via):   # ack state datagrams (newest tick)
            if m.WhichOneof("kind") == "state" and via == "dgram":
                c.send_dgram(env(ack(m.state.room, m.state.tick)))
        c.on_msg = on
        out.append(c)


res = collections.Counter()
closes = []
alive = []   # (stream bytes, datagrams, datagram bytes) of attackers still open at the end


async def attacker(i, t_end):
    src = f"127.0.25.{i % 16 + 1}"
    token, received = "", 0
    while time.time() < t_end:
        try:
            c = await open_conn(src, cls=NoRead, max_stream_data=WIN, max_data=max(WIN, 65536))
        except Exception as e:
            res["connect failed: " + type(e).__name__] += 1
            await asyncio.sleep(0.5)
            continue
        c.send_hello(resume_token=token)
        try:
            w = await asyncio.wait_for(c.welcome, 10)
        except asyncio.TimeoutError:
            w = None
        if w is None:
            res[f"no welcome: {c.closed}"] += 1
            c.close()
            if not RESUME:
                return
            token = ""
            await asyncio.sleep(0.2)
            continue
        token = token or w.resume_token
        res["resumed" if w.resumed else "new session"] += 1
        t0 = time.time()
        if not w.resumed:
            c.send_env(join(ROOM, 1))
        while c.closed is None and time.time() < t_end:
            await asyncio.sleep(0.1)
        if not c.closed:
            alive.append((c.stream_bytes, c.datagrams, c.dgram_bytes))
        if c.closed:
            closes.append((c.closed[0], c.closed[1][:40], round(c.closed_at - t0, 1), c.stream_bytes))
        c.close()
        if not RESUME or (c.closed and not (4500 <= c.closed[0] <= 4999)):
            return


async def events(c):
    seq = 0
    while True:
        await asyncio.sleep(1 / EVENTS)
        seq += 1
        c._quic.send_stream_data(c.sid, frame(env(cm(event=pb.SendEvent(room=ROOM, kind="x", payload=os.urandom(EVB))),
                                                  first_event_seq=seq)))
        c.transmit()


async def main():
    pid = relay_pid()
    fillers = []
    t0 = time.time()
    sem = asyncio.Semaphore(8)
    await asyncio.gather(*[filler(i, sem, fillers) for i in range(FILLERS)])
    await asyncio.sleep(3)
    print(f"[{TAG}] filled {ROOM}: {FILLERS} x {ENTS} x 15 x {FB} B in {time.time()-t0:.1f}s, rss {rss_mib(pid):.0f} MiB", flush=True)
    bots = subprocess.Popen([BOTS_BIN, "--url", f"quic://127.0.0.1:{PORT}", "--cert", CERT, "--rooms", "1", "--members", str(BOTS),
                             "--room-type", "relay", "--room-prefix", TAG, "--duration-secs", str(int(SECS + 6)),
                             "--ramp-up-secs", "1", "--warm-up-secs", "3", "--progress-secs", "0"],
                            stdout=open(f"/tmp/atk23/bots_{TAG}.txt", "w"), stderr=subprocess.STDOUT)
    await asyncio.sleep(4)
    mon = Mon(pid).start()
    m0 = metrics()
    if EVENTS:
        asyncio.ensure_future(events(fillers[0]))
    t_end = time.time() + SECS
    await asyncio.gather(*[attacker(i, t_end) for i in range(K)])
    m1 = metrics()
    mon.stop()
    print(f"[{TAG}] {K} attackers (window {WIN} B, resume {RESUME}, events/s {EVENTS}): {dict(res)}")
    print(f"[{TAG}] attackers still open at the end: {len(alive)}; (stream bytes, datagrams, datagram bytes) of a few: {alive[:6]}")
    cc = collections.Counter((c, r) for c, r, _, _ in closes)
    print(f"[{TAG}] closes seen by attackers: {dict(cc)}")
    if closes:
        ts = sorted(t for _, _, t, _ in closes)
        print(f"[{TAG}] close after join (s): min {ts[0]} median {ts[len(ts)//2]} max {ts[-1]}; stream bytes each: max {max(b for *_, b in closes)}")
    print(f"[{TAG}] relay per second (cpu %, rss MiB): {[(round(100*a), round(b)) for a, b in mon.samples]}")
    print(f"[{TAG}] {mon.summary()}")
    for k in sorted(m1):
        if any(s in k for s in ("superseded", "closes_total", "blocked", "messages_lost", "slow")):
            d = m1[k] - m0.get(k, 0)
            if d:
                print(f"[{TAG}] metric {k} +{d:.0f}")
    print(f"[{TAG}] fillers closed: {[c.closed for c in fillers if c.closed][:5]}")
    bots.wait(timeout=30)
    print_bots(TAG)
    for c in fillers:
        c.app_close(1000)
    await asyncio.sleep(0.5)
    print(f"[{TAG}] panics in log: {panics()}")

asyncio.run(asyncio.wait_for(main(), 100))
