"""Members that take little, in relay rooms of large snapshots. ROOMS rooms `PREFIX-N` are
filled by W writers each to ENT entities x NF fields of FB bytes (3.9 MB by default), one
toucher a room writes an int field every tick. VERIFY=1: a tickrelay-bots process (URL's
transport; VQUIC=1: QUIC) holds one verifying member (every checksum checked) in each
room for the whole run; in the burst phases it is stopped and continued (SIGSTOP STOP s /
SIGCONT RUN s) so it reads in bursts, and its end report says whether it ended in sync.
Phases (PHASES, PH s each; honest arena bots in rooms of their own in each):
  touch   : the touch only (the baseline)
  burst   : + SLOTS ws sessions in every room, each with a small receive buffer, reading in
            bursts: paused for a random STOP_MIN..STOP_MAX s (past the 32-tick window),
            then reading READ s; staggered
  quic    : + QSLOTS QUIC sessions (aioquic) in every room that read everything (stream and
            datagrams) and never acknowledge a state frame
  resume  : + RSLOTS ws sessions in every room that drop their connection and resume every
            RESUME_EVERY s, reading RESUME_READ s each time
  after   : the touch only again (do the verifiers recover)
Printed per phase: relay CPU, RSS (max), encoded MiB/s, full snapshots/s, overruns, blocked
write bytes, out KiB/s, closes by code; the attackers' bytes read and full snapshots taken;
the honest bots' summary. Loopback only; bounded by MAX_SECS (default 400)."""
import asyncio, os, random, signal, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib27 import *  # noqa

ROOMS = int(os.environ.get("ROOMS", "4"))
W = int(os.environ.get("W", "4"))
ENT = int(os.environ.get("ENT", "56"))
NF = int(os.environ.get("NF", "31"))
FB = int(os.environ.get("FB", "1024"))
PH = float(os.environ.get("PH", "20"))
PHASES = os.environ.get("PHASES", "touch,burst,quic,resume,after").split(",")
PREFIX = os.environ.get("PREFIX", "big")
SLOTS = int(os.environ.get("SLOTS", "8"))
QSLOTS = int(os.environ.get("QSLOTS", "4"))
RSLOTS = int(os.environ.get("RSLOTS", "8"))
STOP_MIN, STOP_MAX = float(os.environ.get("STOP_MIN", "1.3")), float(os.environ.get("STOP_MAX", "4.0"))
READ = float(os.environ.get("READ", "0.3"))
RCVBUF = int(os.environ.get("RCVBUF", "16384"))
RESUME_EVERY = float(os.environ.get("RESUME_EVERY", "1.1"))
RESUME_READ = float(os.environ.get("RESUME_READ", "0.2"))
VERIFY = os.environ.get("VERIFY", "1") == "1"
VQUIC = os.environ.get("VQUIC", "0") == "1"
STOP, RUN = float(os.environ.get("STOP", "2.5")), float(os.environ.get("RUN", "1.5"))
BOTS = os.environ.get("BOTS", "--rooms 2 --members 8 --room-type arena")
FILL_TIMEOUT = float(os.environ.get("FILL_TIMEOUT", "60"))
MAX = float(os.environ.get("MAX_SECS", "400"))
RATE = 56000
TB = int(os.environ.get("TB", "0"))  # with TB > 0 every writer touches TB bytes a tick, not only the first
rooms = [f"{PREFIX}-{r}" for r in range(ROOMS)]


async def open_join(s, rs, query="", **kw):
    if isinstance(s, QuicSession):
        await s.open(**kw)
    else:
        await s.open(query, **kw)
    msgs = [pb.ClientMessage(join=pb.JoinRoom(request_id=i + 1, room=r, room_type="relay")) for i, r in enumerate(rs)]
    await s.send(env(*msgs))
    t0 = time.time()
    while len(s.joined) < len(rs) and time.time() - t0 < 10 and not s.closed:
        await asyncio.sleep(0.02)
    return len(s.joined) == len(rs)


class Writer:
    def __init__(self, room, idx):
        self.room, self.idx, self.base, self.seq = room, idx, (idx + 1) * 1000, 0
        self.s = WsSession(f"w{room}/{idx}")

    async def inp(self, writes):
        self.seq += 1
        data = env(pb.ClientMessage(input=pb.Input(room=self.room, seq=self.seq, writes=writes)))
        await self.s.send(data)
        return len(data)

    async def fill(self):
        big = b"x" * FB
        per_msg = max(1, 15000 // (FB + 8))
        t0, sent = time.time(), 0
        for i in range(ENT // W):
            eid = self.base + i
            fids = list(range(2, NF + 2))
            first, rest = fids[:per_msg], fids[per_msg:]
            sent += await self.inp(pb.EntityWrites(create=[pb.Entity(id=eid, kind=7, fields=[pb.Field(id=1, int=0)] + [
                pb.Field(id=f, bytes=big) for f in first])]))
            while rest:
                chunk, rest = rest[:per_msg], rest[per_msg:]
                sent += await self.inp(pb.EntityWrites(update=[pb.EntityUpdate(id=eid, fields=[pb.Field(id=f, bytes=big) for f in chunk])]))
                await asyncio.sleep(max(sent / RATE - (time.time() - t0), 0.025))

    async def touch(self, secs):
        end, nxt, v = time.time() + secs, time.time(), 0
        while time.time() < end and not self.s.closed:
            v += 1
            fields = [pb.Field(id=1, int=v)]
            if TB:  # TB bytes of changes a tick per writer (all W writers touch): large deltas
                fields += [pb.Field(id=2 + (v + j) % (NF - 1), bytes=bytes([v % 251]) * min(TB - j * 1024, 1024))
                           for j in range((TB + 1023) // 1024)]
            await self.inp(pb.EntityWrites(update=[pb.EntityUpdate(id=self.base, fields=fields)]))
            nxt += 1 / 30
            await asyncio.sleep(max(0, nxt - time.time()))


class Sampler:
    def __init__(self, tag):
        self.tag, self.m0, self.c0, self.t0, self.rss = tag, metrics(), cpu_s(), time.time(), rss_mib()
        self.blocked = 0
        self.task = asyncio.ensure_future(self.loop())

    async def loop(self):
        while True:
            await asyncio.sleep(1)
            self.rss = max(self.rss, rss_mib())
            m = metrics()
            self.blocked = max(self.blocked, m.get("tickrelay_blocked_write_bytes", 0))

    def end(self, extra=""):
        self.task.cancel()
        m1, c1, t1 = metrics(), cpu_s(), time.time()
        dt = t1 - self.t0
        d = lambda k: m1.get(k, 0) - self.m0.get(k, 0)
        cl = {k.split('code="')[1].split('"')[0]: int(v - self.m0.get(k, 0)) for k, v in m1.items()
              if k.startswith("tickrelay_closes_total") and v - self.m0.get(k, 0) > 0}
        ticks = d("tickrelay_ticks_total")
        print(f"[{self.tag}] {dt:.0f}s cpu {100*(c1-self.c0)/dt:.0f}% rss max {self.rss:.0f} MiB now {rss_mib():.0f}; "
              f"encoded {d('tickrelay_state_bytes_encoded_total')/dt/2**20:.1f} MiB/s full {d('tickrelay_full_snapshots_total')/dt:.1f}/s "
              f"out {d('tickrelay_bytes_out_total')/dt/2**20:.1f} MiB/s superseded {d('tickrelay_frames_superseded_total')/dt:.0f}/s "
              f"overruns {d('tickrelay_tick_overruns_total'):.0f}/{ticks:.0f} dropped {d('tickrelay_ticks_dropped_total'):.0f} "
              f"blocked max {self.blocked/2**20:.1f} MiB resyncs {d('tickrelay_resyncs_total'):.0f} closes {cl} "
              f"members {m1.get('tickrelay_members')} conns {m1.get('tickrelay_connections')} {extra}", flush=True)


async def burst_reader(i, secs):
    s = WsSession(f"b{i}")
    if not await open_join(s, rooms, rcvbuf=RCVBUF):
        return ("join failed", s.errors[:2], s.closed)
    await asyncio.sleep(i * (1 / 30))  # staggered a tick apart
    end = time.time() + secs
    cycles = 0
    while time.time() < end and not s.closed:
        s.pause()
        await asyncio.sleep(random.uniform(STOP_MIN, STOP_MAX))
        s.resume_reading()
        await asyncio.sleep(READ)
        cycles += 1
    out = (cycles, s.bytes_in, s.full, s.frames, s.closed)
    await s.close()
    return out


async def quic_noack(i, secs):
    s = QuicSession(f"q{i}", ack=False)
    try:
        if not await open_join(s, rooms):
            return ("join failed", s.errors[:2], s.closed)
    except Exception as ex:
        return ("open failed", repr(ex)[:100])
    await asyncio.sleep(secs)
    out = (s.bytes_in, s.full, s.frames, s.datagrams, s.closed)
    await s.close()
    return out


async def resumer(i, secs):
    s = WsSession(f"r{i}")
    if not await open_join(s, rooms):
        return ("join failed", s.errors[:2])
    tok = s.welcome.resume_token
    await asyncio.sleep(i * (1 / 30))
    end = time.time() + secs
    n = got = full = 0
    codes = {}
    while time.time() < end:
        s.abort()
        await asyncio.sleep(RESUME_EVERY)
        s = WsSession(f"r{i}")
        try:
            await s.open(f"resume={tok}")
        except Exception as ex:
            codes[type(ex).__name__] = codes.get(type(ex).__name__, 0) + 1
            continue
        n += 1
        await asyncio.sleep(RESUME_READ)
        got += s.bytes_in
        full += s.full
        if s.closed:
            codes[s.closed[0]] = codes.get(s.closed[0], 0) + 1
    s.abort()
    return (n, got, full, codes)


async def cycle_proc(p, secs):
    end = time.time() + secs
    n = 0
    while time.time() < end and p.returncode is None:
        p.send_signal(signal.SIGSTOP)
        await asyncio.sleep(STOP)
        p.send_signal(signal.SIGCONT)
        await asyncio.sleep(RUN)
        n += 1
    return n


async def main():
    writers = [Writer(r, i) for r in rooms for i in range(W)]
    for w in writers:
        await w.s.open()
        await w.s.send(env(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=w.room, room_type="relay"))))
    await asyncio.sleep(1)
    assert all(w.room in w.s.joined for w in writers), [w.s.errors for w in writers][:3]
    t0 = time.time()
    p = Sampler("fill")
    try:
        await asyncio.wait_for(asyncio.gather(*(w.fill() for w in writers)), FILL_TIMEOUT)
    except asyncio.TimeoutError:
        print("fill timed out", flush=True)
    await asyncio.sleep(1.5)
    p.end()
    errs = [e for w in writers for e in w.s.errors]
    print(f"filled {ROOMS} rooms in {time.time()-t0:.1f}s; writer errors {len(errs)} {errs[:3]}", flush=True)
    vproc = None
    if VERIFY:
        vurl = f"quic://127.0.0.1:{PORT}" if VQUIC else URL
        vout = open(f"{WORK}/verifiers_{'quic' if VQUIC else 'ws'}.txt", "w")
        vproc = await asyncio.create_subprocess_exec(
            BOTS_BIN, "--url", vurl, "--room-prefix", PREFIX, "--rooms", str(ROOMS), "--members", "1",
            "--room-type", "relay", "--input-rate", "0", "--duration-secs", str(int(len(PHASES) * (PH + 8) + 10)),
            "--ramp-up-secs", "0", "--progress-secs", "5", "--verify-share", "1", stdout=vout,
            stderr=asyncio.subprocess.STDOUT, cwd=WORK)
        await asyncio.sleep(4)
    touchers = [w for w in writers if w.idx == 0 or TB]
    try:
        for ph in PHASES:
            p = Sampler(ph)
            bots = asyncio.ensure_future(run_bots(f"{PREFIX}_{ph}", PH, BOTS)) if BOTS else None
            jobs = [w.touch(PH) for w in touchers]
            extra = {}
            if ph == "burst":
                jobs += [burst_reader(i, PH - 2) for i in range(SLOTS)]
                if vproc:
                    jobs.append(cycle_proc(vproc, PH - 3))
            elif ph == "quic":
                jobs += [quic_noack(i, PH - 2) for i in range(QSLOTS)]
                if vproc:
                    jobs.append(cycle_proc(vproc, PH - 3))
            elif ph == "resume":
                jobs += [resumer(i, PH - 2) for i in range(RSLOTS)]
            res = await asyncio.gather(*jobs, return_exceptions=True)
            summ = await bots if bots else None
            p.end()
            out = [r for r in res if r is not None]
            if out:
                print(f"[{ph}] attackers: {out[:12]}", flush=True)
            if summ:
                print(f"[{ph}] honest bots: exit {summ[0]}; {summ[1]}", flush=True)
            print(f"[{ph}] healthz {'ok' if health() else 'FAILED'}; panics {log_grep(('panic','PANIC'))[:3]}", flush=True)
            await asyncio.sleep(2)
    finally:
        if vproc and vproc.returncode is None:
            vproc.send_signal(signal.SIGCONT)
            await asyncio.sleep(6)  # one more progress line after the last phase
            vproc.kill()
            await vproc.wait()
        for w in writers:
            await w.s.close()
    if vproc:
        lines = [l for l in open(vout.name).read().splitlines() if "t=" in l]
        print(f"verifiers (progress every 5 s; desyncs= is cumulative): first {lines[:1]} last {lines[-3:]}", flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), MAX))
