"""Attack 4b: resume storms over QUIC in a large relay room.

FILLERS QUIC sessions fill relay room TAG-0 with 1.4 MB (as unread.py); tickrelay-bots (QUIC)
play in it. S storm sessions join the room, then each resumes over a new QUIC connection every
EVERY seconds (without closing the one before: a take-over, 4002 for the old one) for SECS
seconds. READ=0: the storm connections never raise their 4 KiB receive window. XPORT=1: every
other resume goes over wss instead. Prints per second relay CPU and RSS, welcomes, close codes
the replaced connections got, stream bytes received, and the bots' report."""
import asyncio, os, ssl, subprocess, sys, time, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib23 import *

FILLERS = int(os.environ.get("FILLERS", "24"))
ENTS = int(os.environ.get("ENTS", "4"))
FB = int(os.environ.get("FB", "980"))
S = int(os.environ.get("S", "10"))
EVERY = float(os.environ.get("EVERY", "0.1"))
SECS = float(os.environ.get("SECS", "25"))
READ = os.environ.get("READ", "1") == "1"
XPORT = os.environ.get("XPORT", "0") == "1"
WSS_ONLY = os.environ.get("XPORT", "0") == "wss"   # every resume over wss (the control)
BOTS = int(os.environ.get("BOTS", "4"))
TAG = os.environ.get("TAG", "rs")
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

        c.full = c.frames = 0

        def on(m, via):
            if m.WhichOneof("kind") == "state":
                c.frames += 1
                c.full += m.state.baseline_tick == 0
                if via == "dgram":
                    c.send_dgram(env(ack(m.state.room, m.state.tick)))
        c.on_msg = on
        out.append(c)


stats = collections.Counter()
old_closes = collections.Counter()
conns = []


def acking(c):
    def on(m, via):
        k = m.WhichOneof("kind")
        if k == "state":
            stats["state frames"] += 1
            if m.state.baseline_tick == 0:
                stats["full snapshots"] += 1
            if via == "dgram":
                c.send_dgram(env(ack(m.state.room, m.state.tick)))
    c.on_msg = on


async def storm(i, t_end):
    src = f"127.0.29.{i % 16 + 1}"
    c = await session(src)
    acking(c)
    w = await c.welcome
    token = w.resume_token
    c.send_env(join(ROOM, 1))
    conns.append(c)
    ctx = ssl.create_default_context(cafile=CERT)
    import websockets
    n = 0
    wss = []
    while time.time() < t_end:
        await asyncio.sleep(EVERY)
        n += 1
        if (XPORT and n % 2 == 0) or WSS_ONLY:
            try:
                ws = await websockets.connect(f"wss://127.0.0.1:{PORT}/ws?resume={token}&received=0", ssl=ctx, max_size=1 << 24)
                wss.append(ws)
                stats["wss resumes"] += 1
            except Exception as e:
                stats["wss failed " + type(e).__name__] += 1
            continue
        try:
            if READ:
                c2 = await open_conn(src)
            else:
                c2 = await open_conn(src, cls=NoRead, max_stream_data=4096, max_data=65536)
        except Exception as e:
            stats["connect failed " + type(e).__name__] += 1
            continue
        acking(c2)
        c2.send_hello(resume_token=token, received_seq=0)
        conns.append(c2)
        try:
            w2 = await asyncio.wait_for(asyncio.shield(c2.welcome), 3)
            stats["welcome resumed" if w2 and w2.resumed else f"no welcome {c2.closed}"] += 1
        except asyncio.TimeoutError:
            stats["welcome timeout (window full?)"] += 1
    for ws in wss:
        try:
            ws.transport.abort()
        except Exception:
            pass


async def main():
    pid = relay_pid()
    fillers = []
    t0 = time.time()
    sem = asyncio.Semaphore(8)
    await asyncio.gather(*[filler(i, sem, fillers) for i in range(FILLERS)])
    await asyncio.sleep(3)
    print(f"[{TAG}] filled {ROOM}: {FILLERS} x {ENTS} x 15 x {FB} B in {time.time()-t0:.1f}s, rss {rss_mib(pid):.0f} MiB", flush=True)
    bots = subprocess.Popen([BOTS_BIN, "--url", f"quic://127.0.0.1:{PORT}", "--cert", CERT, "--rooms", "1", "--members", str(BOTS),
                             "--room-type", "relay", "--room-prefix", TAG, "--duration-secs", str(int(SECS + 8)),
                             "--ramp-up-secs", "1", "--warm-up-secs", "3", "--progress-secs", "0"],
                            stdout=open(f"/tmp/atk23/bots_{TAG}.txt", "w"), stderr=subprocess.STDOUT)
    await asyncio.sleep(4)
    mon = Mon(pid).start()
    m0 = metrics()
    for c in fillers:
        c.full0, c.frames0, c.sb0 = c.full, c.frames, c.stream_bytes
    t_end = time.time() + SECS
    await asyncio.gather(*[storm(i, t_end) for i in range(S)])
    await asyncio.sleep(2)
    m1 = metrics()
    mon.stop()
    for c in conns:
        if c.closed:
            old_closes[(c.closed[0], c.closed[1][:30])] += 1
    print(f"[{TAG}] {S} sessions resuming every {EVERY}s over QUIC{' and wss' if XPORT else ''} for {SECS}s, read={READ}: {dict(stats)}")
    print(f"[{TAG}] closes the QUIC connections got: {dict(old_closes)}; open: {sum(1 for c in conns if not c.closed)}")
    print(f"[{TAG}] stream bytes received by the storm connections: {sum(c.stream_bytes for c in conns)/1e6:.1f} MB")
    print(f"[{TAG}] relay per second (cpu %, rss MiB): {[(round(100*a), round(b)) for a, b in mon.samples]}")
    print(f"[{TAG}] {mon.summary()}")
    for k in sorted(m1):
        if any(s in k for s in ("superseded", "closes_total", "blocked", "messages_lost", "resum", "state_bytes", "full_snapshots", "bytes_out", "overruns", "ticks_dropped")):
            d = m1[k] - m0.get(k, 0)
            if d:
                print(f"[{TAG}] metric {k} +{d:.0f}")
    print(f"[{TAG}] fillers during the storm: frames {sum(c.frames - c.frames0 for c in fillers)}, full snapshots {sum(c.full - c.full0 for c in fillers)}, "
          f"stream bytes {sum(c.stream_bytes - c.sb0 for c in fillers)/1e6:.1f} MB")
    print(f"[{TAG}] fillers closed: {collections.Counter(c.closed for c in fillers if c.closed)} "
          f"(stream bytes each: min {min(c.stream_bytes for c in fillers)/1e6:.1f} MB)")
    bots.wait(timeout=30)
    print_bots(TAG)
    for c in fillers + conns:
        if not c.closed:
            c.app_close(1000)
    await asyncio.sleep(0.5)
    print(f"[{TAG}] relay rss after: {rss_mib(pid):.0f} MiB; panics in log: {panics()}")

asyncio.run(asyncio.wait_for(main(), 100))
