"""Attack 1: CPU amplification through acknowledgements (PROTOCOL.md "State frames as
datagrams": one encoding per distinct baseline per tick).

FILLERS QUIC sessions fill relay room ROOM with ENTS entities of FIELDS int fields each
(default 40 x 64 x 16 = 2,560 entities) and ack every state datagram's newest tick. Then
tickrelay-bots (BOTS members, over QUIC, in the same room: they write every tick, so the
room changes every tick, and they verify every checksum) run for PRE + SECS seconds.
After PRE seconds, ATT attacker sessions join the room and acknowledge, per MODE:
  latest  each frame's own tick (the control: one shared encoding)
  spread  attacker i acks tick T-1-(i % SPREAD) for each frame T (distinct baselines)
  old     tick T-40 (outside the 32-tick history window)
  future  tick T+1000 (never sent)
  none    nothing at all
  alt     alternately the frame's own tick and T-30 (does an older ack move the baseline back?)
ROOMS>1: every attacker joins that many rooms (ROOM-0 .. ROOM-(n-1)); only ROOM-0 is filled
unless FILL_ALL=1. Prints relay CPU per phase, what the attackers received, the bots' report.
Stops by itself within PRE + SECS + fill time (< 60 s)."""
import asyncio, json, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib23 import *

FILLERS = int(os.environ.get("FILLERS", "40"))
ENTS = int(os.environ.get("ENTS", "64"))
FIELDS = int(os.environ.get("FIELDS", "16"))
ATT = int(os.environ.get("ATT", "31"))
SPREAD = int(os.environ.get("SPREAD", "31"))
MODE = os.environ.get("MODE", "spread")
PRE = float(os.environ.get("PRE", "8"))
SECS = float(os.environ.get("SECS", "20"))
BOTS = int(os.environ.get("BOTS", "4"))
TAG = os.environ.get("TAG", MODE)
ROOMS = int(os.environ.get("ROOMS", "1"))
FILL_ALL = os.environ.get("FILL_ALL", "0") == "1"
BOTS_BIN = os.environ.get("BOTS_BIN", "/work/main/target/release/tickrelay-bots")
ROOM = f"{TAG}-0"
CHURN = int(os.environ.get("CHURN", "0"))   # >0: every filler updates CHURN rotating entities per tick (30 Hz)   # tickrelay-bots --room-prefix TAG --rooms 1 plays in TAG-0


class Stat:
    def __init__(self):
        self.frames = 0
        self.full = 0
        self.baselines = {}
        self.acks = 0


def acker(c, st, mode, i, fixed_rooms=None):
    def on(m, via):
        if m.WhichOneof("kind") != "state":
            return
        f = m.state
        st.frames += 1
        if f.baseline_tick == 0:
            st.full += 1
        else:
            d = f.tick - f.baseline_tick
            st.baselines[d] = st.baselines.get(d, 0) + 1
        if via != "dgram" or mode == "none":
            return
        st.n = getattr(st, "n", 0) + 1
        t = {"alt": f.tick if st.n % 2 else max(1, f.tick - 30), "latest": f.tick, "spread": max(1, f.tick - 1 - (i % SPREAD)), "old": max(1, f.tick - 40),
             "future": f.tick + 1000}[mode]
        try:
            c.send_dgram(env(ack(f.room, t)))
            st.acks += 1
        except Exception:
            pass
    c.on_msg = on


async def filler(i, room, sem, st, out):
    async with sem:
        c = await session(f"127.0.23.{i % 8 + 1}")
        mid = None
        got = asyncio.get_event_loop().create_future()

        def on(m, via):
            k = m.WhichOneof("kind")
            if k == "joined" and not got.done():
                got.set_result(m.joined.member_id)
            elif k == "error" and not got.done():
                got.set_result(m.error)
        c.on_msg = on
        c.send_env(join(room, 1))
        mid = await asyncio.wait_for(got, 10)
        if not isinstance(mid, int):
            raise RuntimeError(f"filler join: {mid}")
        ents = [pb.Entity(id=mid * 1000 + e, kind=1, fields=[pb.Field(id=f + 1, int=(mid * 7 + e * 13 + f) % 100000)
                                                             for f in range(FIELDS)]) for e in range(ENTS)]
        c.send_env(cm(input=pb.Input(room=room, seq=1, writes=pb.EntityWrites(create=ents))))
        acker(c, st, "latest", i)
        c.mid, c.room, c.seq = mid, room, 1
        out.append(c)


async def churn(fillers):
    k = 0
    nxt = time.time()
    while True:
        nxt += 1 / 30
        await asyncio.sleep(max(0, nxt - time.time()))
        k += 1
        for c in fillers:
            c.seq += 1
            ups = [pb.EntityUpdate(id=c.mid * 1000 + (k * CHURN + j) % ENTS, fields=[pb.Field(id=1, int=k)]) for j in range(CHURN)]
            try:
                c.send_env(cm(input=pb.Input(room=c.room, seq=c.seq, writes=pb.EntityWrites(update=ups))))
            except Exception:
                pass


async def attacker(i, st, out):
    c = await session(f"127.0.24.{i % 8 + 1}")
    acker(c, st, MODE, i)
    for r in range(ROOMS):
        c.send_env(join(f"{TAG}-{r}", r + 1))
    out.append(c)


async def main():
    pid = relay_pid()
    fst, ast = Stat(), Stat()
    fillers, attackers = [], []
    t0 = time.time()
    sem = asyncio.Semaphore(10)
    rooms = [f"{TAG}-{r}" for r in range(ROOMS if FILL_ALL else 1)]
    await asyncio.gather(*[filler(i, rooms[i % len(rooms)], sem, fst, fillers) for i in range(FILLERS)])
    await asyncio.sleep(1.5)
    if CHURN:
        asyncio.ensure_future(churn(fillers))
    print(f"[{TAG}] filled {rooms}: {len(fillers)} x {ENTS} x {FIELDS} fields in {time.time()-t0:.1f}s, rss {rss_mib(pid):.0f} MiB", flush=True)
    bots = subprocess.Popen([BOTS_BIN, "--url", f"quic://127.0.0.1:{PORT}", "--cert", CERT, "--rooms", "1", "--members", str(BOTS),
                             "--room-type", "relay", "--room-prefix", TAG, "--duration-secs", str(int(PRE + SECS)),
                             "--ramp-up-secs", "1", "--warm-up-secs", "2", "--progress-secs", "0",
                             "--json", f"/tmp/atk23/bots_{TAG}.json"], stdout=open(f"/tmp/atk23/bots_{TAG}.txt", "w"), stderr=subprocess.STDOUT)
    mon = Mon(pid).start()
    await asyncio.sleep(PRE)
    pre_n = len(mon.samples)
    f0 = fst.frames
    ta = time.time()
    await asyncio.gather(*[attacker(i, ast, attackers) for i in range(ATT)])
    print(f"[{TAG}] {len(attackers)} attackers in {ROOMS} room(s) after {time.time()-ta:.1f}s, mode {MODE}", flush=True)
    m0 = metrics()
    await asyncio.sleep(SECS)
    m1 = metrics()
    mon.stop()
    pre = mon.samples[1:pre_n] or [(0, 0)]
    att = mon.samples[pre_n + 2:] or [(0, 0)]
    print(f"[{TAG}] relay cpu before attack mean {100*sum(a for a,_ in pre)/len(pre):.0f}%, "
          f"during attack mean {100*sum(a for a,_ in att)/len(att):.0f}% max {100*max(a for a,_ in att):.0f}%, "
          f"rss max {max(b for _,b in mon.samples):.0f} MiB", flush=True)
    print(f"[{TAG}] per-second cpu %: {[round(100*a) for a,_ in mon.samples]}")
    print(f"[{TAG}] attackers: frames {ast.frames} full {ast.full} acks {ast.acks} "
          f"stream bytes {sum(c.stream_bytes for c in attackers)} dgram bytes {sum(c.dgram_bytes for c in attackers)}; "
          f"tick-baseline distances seen (top): {sorted(ast.baselines.items(), key=lambda kv: -kv[1])[:12]}")
    print(f"[{TAG}] fillers: frames during attack {fst.frames - f0} ({(fst.frames - f0)/max(1,len(fillers))/(time.time()-ta):.1f}/s each) full {fst.full}")
    for k in sorted(m1):
        if any(s in k for s in ("superseded", "closes_total", "frames_sent", "state_bytes", "encod")):
            d = m1[k] - m0.get(k, 0)
            if d:
                print(f"[{TAG}] metric {k} +{d:.0f}")
    closed = [c.closed for c in fillers + attackers if c.closed]
    print(f"[{TAG}] closed during run: {closed[:5]} ({len(closed)})")
    bots.wait(timeout=30)
    print_bots(TAG)
    for c in fillers + attackers:
        try:
            c.app_close(1000)
        except Exception:
            pass
    await asyncio.sleep(0.5)
    print(f"[{TAG}] panics in log: {panics()}")

asyncio.run(asyncio.wait_for(main(), 90))
