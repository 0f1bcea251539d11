"""Finding check: must a full snapshot that came on the control stream be acknowledged?
PROTOCOL.md ("State frames as datagrams"): "Frames written on the control stream need no ack"
and the delta is against "the newest tick that member acknowledged (or that went on the stream)".

Relay room TAG-0: one filler (joined while the room was empty) creates FILL entities of
15 x 980 B (default 8: ~118 KB, so a full snapshot no longer fits a datagram); tickrelay-bots
(BOTS, QUIC) play in it. Then watcher A joins and acks state datagrams only (as PROTOCOL.md says);
watcher B joins and also acks state frames that came on the stream (as the Rust client does).
For SECS seconds: each watcher's frames/s, full snapshots (dgram+stream), stream bytes/s;
the relay's full-snapshot, superseded and bytes-out counters and CPU. N_A=k: k watchers of kind A."""
import asyncio, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib23 import *

FILL = int(os.environ.get("FILL", "8"))
RATE = int(os.environ.get("RATE", "0"))   # >0: watchers A read their stream at RATE bytes/s (lib23.RateRead)
GROW = os.environ.get("GROW", "0") == "1"   # watchers A join before the room is filled
NF = int(os.environ.get("NF", "1"))   # fillers, FILL entities each
SECS = float(os.environ.get("SECS", "10"))
BOTS = int(os.environ.get("BOTS", "4"))
N_A = int(os.environ.get("N_A", "1"))
N_B = int(os.environ.get("N_B", "1"))
TAG = os.environ.get("TAG", "sa")
ROOM = f"{TAG}-0"
BOTS_BIN = os.environ.get("BOTS_BIN", "/work/main/target/release/tickrelay-bots")


class W:
    def __init__(self, c, ack_stream):
        self.c, self.ack_stream = c, ack_stream
        self.frames = self.full_d = self.full_s = self.deltas = 0
        c.on_msg = self.on

    def on(self, m, via):
        if m.WhichOneof("kind") != "state":
            return
        f = m.state
        self.frames += 1
        if f.baseline_tick == 0:
            if via == "dgram":
                self.full_d += 1
            else:
                self.full_s += 1
        else:
            self.deltas += 1
        if via == "dgram" or self.ack_stream:
            self.c.send_dgram(env(ack(f.room, f.tick)))


async def joined_session(src, rate=0):
    if rate:
        c = await open_conn(src, cls=RateRead, max_stream_data=16384, max_data=1 << 30)
        c.send_hello()
        await asyncio.wait_for(c.welcome, 10)
        c.start_rate(rate)
    else:
        c = await session(src)
    got = asyncio.get_event_loop().create_future()
    c.on_msg = lambda m, via: (m.WhichOneof("kind") == "joined" and not got.done() and got.set_result(m.joined.member_id))
    c.send_env(join(ROOM, 1))
    mid = await asyncio.wait_for(got, 10)
    return c, mid


WS = {"frames": 0, "deltas": 0, "full": 0, "first": None, "on": False}


async def wss_watcher():
    import ssl, websockets
    ctx = ssl.create_default_context(cafile=CERT)
    async with websockets.connect(f"wss://127.0.0.1:{PORT}/ws", ssl=ctx, max_size=1 << 24) as ws:
        await ws.send(env(join(ROOM, 1)))
        t0 = time.time()
        async for msg in ws:
            e = pb.ServerEnvelope(); e.ParseFromString(msg)
            for m in e.messages:
                if m.WhichOneof("kind") == "state":
                    if WS["first"] is None:
                        WS["first"] = round(time.time() - t0, 2)
                    if WS["on"]:
                        WS["frames"] += 1
                        WS["deltas" if m.state.baseline_tick else "full"] += 1


async def main():
    pid = relay_pid()
    ws = []
    if GROW:   # watchers join the empty room first; the room grows under them
        for i in range(N_A):
            ws.append((f"A (acks datagrams only, joined before the fill{', reads at %d B/s' % RATE if RATE else ''})", W((await joined_session(f"127.0.32.{2 + i}", RATE))[0], False)))
        await asyncio.sleep(1)
    fillers = []
    for j in range(NF):
        f, mid = await joined_session(f"127.0.34.{j + 1}")
        W(f, True)
        fillers.append(f)
        for e in range(FILL):
            ent = pb.Entity(id=mid * 1000 + e, kind=1, fields=[pb.Field(id=k + 1, bytes=os.urandom(980)) for k in range(15)])
            f.send_env(cm(input=pb.Input(room=ROOM, seq=e + 1, writes=pb.EntityWrites(create=[ent]))))
        await asyncio.sleep(0.2)
    bots = subprocess.Popen([BOTS_BIN, "--url", f"quic://127.0.0.1:{PORT}", "--cert", CERT, "--rooms", "1", "--members", str(BOTS),
                             "--room-type", "relay", "--room-prefix", TAG, "--duration-secs", str(int(SECS + 6)),
                             "--ramp-up-secs", "1", "--warm-up-secs", "3", "--progress-secs", "0"],
                            stdout=open(f"/tmp/atk23/bots_{TAG}.txt", "w"), stderr=subprocess.STDOUT)
    await asyncio.sleep(3)
    for i in range(0 if GROW else N_A):
        ws.append((f"A (acks datagrams only{', reads at %d B/s' % RATE if RATE else ''})", W((await joined_session(f"127.0.32.{2 + i}", RATE))[0], False)))
    for i in range(N_B):
        ws.append(("B (acks stream frames too)", W((await joined_session(f"127.0.33.{2 + i}"))[0], True)))
    wsw = None
    if os.environ.get("WSS", "1") == "1":
        wsw = asyncio.ensure_future(wss_watcher())
    await asyncio.sleep(1)
    for _, w in ws:
        w.f0, w.fd0, w.fs0, w.d0, w.sb0 = w.frames, w.full_d, w.full_s, w.deltas, w.c.stream_bytes
    if os.environ.get("RESUME", "0") == "1":   # watchers A resume on a new connection (same read rate)
        for name, w in ws:
            if name.startswith("A"):
                tok = (await w.c.welcome).resume_token
                if RATE:
                    c2 = await open_conn("127.0.32.99", cls=RateRead, max_stream_data=16384, max_data=1 << 30)
                else:
                    c2 = await open_conn("127.0.32.99")
                c2.send_hello(resume_token=tok)
                w2 = await asyncio.wait_for(c2.welcome, 10)
                if RATE:
                    c2.start_rate(RATE)
                print(f"[{TAG}]   resumed: {getattr(w2, 'resumed', w2)}")
                w.c = c2
                c2.on_msg = w.on
        await asyncio.sleep(1)
        for _, w in ws:
            w.f0, w.fd0, w.fs0, w.d0, w.sb0 = w.frames, w.full_d, w.full_s, w.deltas, w.c.stream_bytes
    if os.environ.get("RESYNC", "0") == "1":   # watchers A ask for a full snapshot now
        for name, w in ws:
            if name.startswith("A"):
                w.c.send_env(cm(request=pb.Request(request_id=(1 << 53) + 1, resync=pb.Resync(room=ROOM))))
    m0 = metrics()
    WS["on"] = True
    mon = Mon(pid).start()
    t0 = time.time()
    await asyncio.sleep(SECS)
    dt = time.time() - t0
    m1 = metrics()
    mon.stop()
    print(f"[{TAG}] room of ~{NF * FILL * 15 * 980 / 1000:.0f} KB, {SECS:.0f}s:")
    for name, w in ws:
        print(f"[{TAG}]   {name}: frames {(w.frames - w.f0)/dt:.1f}/s, deltas {w.deltas - w.d0}, full snapshots {w.full_d - w.fd0} dgram + {w.full_s - w.fs0} stream, "
              f"stream {(w.c.stream_bytes - w.sb0)/dt/1e3:.0f} KB/s, closed {w.c.closed}")
    for k in ("tickrelay_full_snapshots_total", "tickrelay_frames_superseded_total", "tickrelay_bytes_out_total", "tickrelay_state_bytes_encoded_total"):
        print(f"[{TAG}]   relay {k} +{m1.get(k, 0) - m0.get(k, 0):.0f} ({(m1.get(k, 0) - m0.get(k, 0))/dt:.0f}/s)")
    print(f"[{TAG}]   {mon.summary()}")
    if wsw:
        wsw.cancel()
        print(f"[{TAG}]   C (same kind of client over wss, Python websockets): frames {WS['frames']/dt:.1f}/s in the window, "
              f"deltas {WS['deltas']}, full snapshots {WS['full']} (first at {WS['first']}s after joining)")
    for _, w in ws:
        w.c.app_close(1000)
    for f in fillers:
        f.app_close(1000)
    bots.wait(timeout=30)
    print_bots(TAG)
    await asyncio.sleep(0.3)
    print(f"[{TAG}] panics in log: {panics()}")

asyncio.run(asyncio.wait_for(main(), 60))
