"""Attack 4c: does one member's QUIC resume storm make OTHER members of the room get full
snapshots? (found with resume_storm.py: fillers got only full snapshots during a storm)

Relay room TAG-0: tickrelay-bots (BOTS members, QUIC) play in it (its churn). W watcher
sessions (QUIC, from 127.0.30.x) join and ack per W_ACK (latest: every datagram's tick;
other: every other datagram; none). FILL=N: each watcher also creates N entities of 15 x 980 B
(a larger room: full snapshots then go on the stream). After PRE seconds one attacker session
(127.0.31.1), acking per A_ACK, resumes over QUIC every EVERY s (take-over) for SECS seconds
(A_ACK, READ=0 as in resume_storm.py). Prints, per phase, each watcher's frames/s and how many
were full snapshots, over datagram or stream, and the relay's full-snapshot counter."""
import asyncio, os, subprocess, sys, time, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib23 import *

W = int(os.environ.get("W", "3"))
W_ACK = os.environ.get("W_ACK", "latest")
A_ACK = os.environ.get("A_ACK", "latest")
FILL = int(os.environ.get("FILL", "0"))
EVERY = float(os.environ.get("EVERY", "0.2"))
PRE = float(os.environ.get("PRE", "6"))
SECS = float(os.environ.get("SECS", "12"))
BOTS = int(os.environ.get("BOTS", "4"))
TAG = os.environ.get("TAG", "rb")
STORM = os.environ.get("STORM", "quic")     # quic | wss | none
ROOM = f"{TAG}-0"
BOTS_BIN = os.environ.get("BOTS_BIN", "/work/main/target/release/tickrelay-bots")


def acker(c, mode, rec=None):
    c.n = 0

    def on(m, via):
        if m.WhichOneof("kind") != "state":
            return
        if rec is not None:
            rec[(time.time(), m.state.baseline_tick == 0, via)] = None
        if via != "dgram" or mode == "none":
            return
        c.n += 1
        if mode == "latest" or (mode == "other" and c.n % 2 == 0):
            c.send_dgram(env(ack(m.state.room, m.state.tick)))
    c.on_msg = on


async def watcher(i, recs):
    c = await session(f"127.0.30.{i + 1}")
    got = asyncio.get_event_loop().create_future()
    c.on_msg = lambda m, via: (m.WhichOneof("kind") == "joined" and not got.done() and got.set_result(m.joined.member_id))
    c.send_env(join(ROOM, 1))
    mid = await asyncio.wait_for(got, 10)
    for e in range(FILL):
        ent = pb.Entity(id=mid * 1000 + e, kind=1, fields=[pb.Field(id=f + 1, bytes=os.urandom(980)) for f in range(15)])
        c.send_env(cm(input=pb.Input(room=ROOM, seq=e + 1, writes=pb.EntityWrites(create=[ent]))))
    rec = {}
    recs.append(rec)
    acker(c, W_ACK, rec)
    return c


def phase(recs, t0, t1):
    out = []
    for rec in recs:
        ev = [k for k in rec if t0 <= k[0] < t1]
        full_d = sum(1 for _, f, v in ev if f and v == "dgram")
        full_s = sum(1 for _, f, v in ev if f and v == "stream")
        out.append(f"{len(ev)/(t1-t0):.1f}/s, full {full_d}+{full_s} (dgram+stream)")
    return out


async def main():
    pid = relay_pid()
    bots = subprocess.Popen([BOTS_BIN, "--url", f"quic://127.0.0.1:{PORT}", "--cert", CERT, "--rooms", "1", "--members", str(BOTS),
                             "--room-type", "relay", "--room-prefix", TAG, "--duration-secs", str(int(PRE + SECS + 4)),
                             "--ramp-up-secs", "1", "--warm-up-secs", "2", "--progress-secs", "0"],
                            stdout=open(f"/tmp/atk23/bots_{TAG}.txt", "w"), stderr=subprocess.STDOUT)
    await asyncio.sleep(2)
    recs = []
    ws = [await watcher(i, recs) for i in range(W)]
    mon = Mon(pid).start()
    await asyncio.sleep(2)
    m0 = metrics()
    t0 = time.time()
    await asyncio.sleep(PRE)
    m1 = metrics()
    t1 = time.time()
    a = await session("127.0.31.1")
    acker(a, A_ACK)
    token = (await a.welcome).resume_token
    a.send_env(join(ROOM, 1))
    conns = [a]
    n = 0
    import ssl, websockets
    ctx = ssl.create_default_context(cafile=CERT)
    wss = []
    while time.time() - t1 < SECS:
        await asyncio.sleep(EVERY)
        if STORM == "none":
            continue
        n += 1
        if STORM == "wss":
            wss.append(await websockets.connect(f"wss://127.0.0.1:{PORT}/ws?resume={token}&received=0", ssl=ctx, max_size=1 << 24))
            continue
        c2 = await open_conn("127.0.31.1")
        acker(c2, A_ACK)
        c2.send_hello(resume_token=token, received_seq=0)
        conns.append(c2)
    t2 = time.time()
    m2 = metrics()
    mon.stop()
    k = "tickrelay_full_snapshots_total"
    print(f"[{TAG}] watchers ack {W_ACK}, FILL {FILL}; attacker acks {A_ACK}, {n} resumes over {STORM} every {EVERY}s")
    print(f"[{TAG}] before the storm ({PRE:.0f}s): watchers {phase(recs, t0, t1)}; relay full snapshots +{m1.get(k,0)-m0.get(k,0):.0f}")
    print(f"[{TAG}] during the storm ({t2-t1:.0f}s): watchers {phase(recs, t1 + 0.5, t2)}; relay full snapshots +{m2.get(k,0)-m1.get(k,0):.0f}")
    print(f"[{TAG}] relay cpu per second: {[round(100*x) for x, _ in mon.samples]}")
    for w_ in wss:
        w_.transport.abort()
    for c in ws + conns:
        if not c.closed:
            c.app_close(1000)
    bots.wait(timeout=30)
    print_bots(TAG)
    await asyncio.sleep(0.3)
    print(f"[{TAG}] panics in log: {panics()}")

asyncio.run(asyncio.wait_for(main(), 80))
