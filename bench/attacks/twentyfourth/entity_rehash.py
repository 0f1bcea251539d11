"""Round 24, attack 1: entity re-hash amplification in relay rooms.

ROOMS rooms, W writer connections each. Each writer creates ENT entities of NF fields of FB
bytes (plus int field 1), paced under the per-connection byte limit (FILL phase).
Then phases (each PH seconds):
  idle   : nobody writes
  touch1 : each writer, once a tick, updates field 1 (int) of ONE of its entities
  touchall: each writer, once a tick, updates field 1 of EVERY one of its entities
The relay's CPU (from /proc), RSS, tick overruns and tick duration (from /metrics) are printed
per phase. MODE=small: entities hold only field 1 (the control: same inputs, tiny entities).
Loopback only. Bounded: stops by itself (FILL timeout + 3*PH)."""
import asyncio, os, sys, time, json, urllib.request
WORK = os.environ.get("WORK", "/tmp/h24")
sys.path.insert(0, f"{WORK}/gen")
from tickrelay.v1 import tickrelay_pb2 as pb
import websockets

PORT = int(os.environ.get("PORT", "7824"))
URL = f"ws://127.0.0.1:{PORT}/ws"
PID = int(os.environ.get("TR_PID") or open(f"{WORK}/relay.pid").read())
ROOMS = int(os.environ.get("ROOMS", "1")); W = int(os.environ.get("W", "4"))
ENT = int(os.environ.get("ENT", "16")); NF = int(os.environ.get("NF", "31")); FB = int(os.environ.get("FB", "1024"))
MODE = os.environ.get("MODE", "big"); PH = float(os.environ.get("PH", "10"))
PHASES = os.environ.get("PHASES", "idle,touch1,touchall").split(",")
PREFIX = os.environ.get("PREFIX", "rh")
FILL_TIMEOUT = float(os.environ.get("FILL_TIMEOUT", "60"))
RATE = float(os.environ.get("RATE", "56000"))  # bytes/s each writer sends while filling


def cpu_s():
    f = open(f"/proc/{PID}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu():
    out = {}
    for t in os.listdir(f"/proc/{PID}/task"):
        try:
            name = open(f"/proc/{PID}/task/{t}/comm").read().strip()
            f = open(f"/proc/{PID}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        key = "sim" if "sim" in name else ("io" if "io" in name else "other")
        out[key] = out.get(key, 0) + (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def rss():
    for l in open(f"/proc/{PID}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1]) / 1024


def metrics():
    out = {}
    for line in urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5).read().decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def vi(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def env(*msgs):
    e = pb.ClientEnvelope()
    e.messages.extend(msgs)
    return e.SerializeToString()


class Writer:
    def __init__(self, room, idx):
        self.room, self.idx = room, idx
        self.base = (idx + 1) * 1000
        self.seq = 0
        self.errors = []
        self.bytes_in = 0
        self.frames = 0
        self.joined = asyncio.get_event_loop().create_future()

    async def reader(self):
        try:
            async for data in self.ws:
                self.bytes_in += len(data)
                if len(data) > 4096:
                    continue
                e = pb.ServerEnvelope(); e.ParseFromString(data)
                for m in e.messages:
                    k = m.WhichOneof("kind")
                    if k == "joined" and not self.joined.done():
                        self.joined.set_result(m.joined)
                    elif k == "state":
                        self.frames += 1
                    elif k == "error":
                        self.errors.append((m.error.code, m.error.message[:80]))
        except Exception as ex:
            self.errors.append(("closed", repr(ex)[:80]))

    async def send_input(self, writes):
        self.seq += 1
        data = env(pb.ClientMessage(input=pb.Input(room=self.room, seq=self.seq, writes=writes)))
        await self.ws.send(data)
        return len(data)

    async def start(self):
        self.ws = await websockets.connect(URL, max_size=None, compression=None, ping_interval=None,
                                           open_timeout=10)
        self.rt = asyncio.ensure_future(self.reader())
        await self.ws.send(env(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=self.room, room_type="relay"))))
        await asyncio.wait_for(self.joined, 10)

    async def fill(self):
        big = b"x" * FB
        t0 = time.time(); sent = 0
        per_msg = max(1, 15000 // (FB + 8))
        for i in range(ENT):
            eid = self.base + i
            fields = [pb.Field(id=1, int=0)]
            rest = [] if MODE == "small" else list(range(2, NF + 2))
            first, rest = rest[:per_msg], rest[per_msg:]
            fields += [pb.Field(id=f, bytes=big) for f in first]
            sent += await self.send_input(pb.EntityWrites(create=[pb.Entity(id=eid, kind=7, fields=fields)]))
            while rest:
                chunk, rest = rest[:per_msg], rest[per_msg:]
                sent += await self.send_input(pb.EntityWrites(update=[pb.EntityUpdate(
                    id=eid, fields=[pb.Field(id=f, bytes=big) for f in chunk])]))
                # pace: bytes and messages
                ahead = sent / RATE - (time.time() - t0)
                await asyncio.sleep(max(ahead, 0.025))
            await asyncio.sleep(0.025)

    async def touch(self, which, secs):
        end = time.time() + secs
        nxt = time.time(); v = 0; n = 0
        pre = {}
        room = self.room.encode()
        while time.time() < end:
            v += 1
            if which == "touch1":
                key = (v % ENT, v % 2)
                ids = [self.base + (v % ENT)]
            else:
                key = ("all", v % 2)
                ids = [self.base + i for i in range(ENT)]
            if key not in pre:
                pre[key] = pb.EntityWrites(update=[pb.EntityUpdate(id=i, fields=[pb.Field(id=1, int=1 + v % 2)]) for i in ids]).SerializeToString()
            w = pre[key]
            self.seq += 1
            inp = b"\x0a" + vi(len(room)) + room + b"\x10" + vi(self.seq) + b"\x1a" + vi(len(w)) + w
            msg = b"\x1a" + vi(len(inp)) + inp
            await self.ws.send(b"\x0a" + vi(len(msg)) + msg)
            n += 1
            nxt += 1 / 30
            await asyncio.sleep(max(0, nxt - time.time()))
        return n


BOTS = os.environ.get("BOTS", "")  # e.g. "--rooms 2 --members 8 --room-type arena"


def bots_summary(path):
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        return f"unreadable {e}"
    want = ("state frames / s", "latency p50", "latency p99 ", "latency max", "desyncs", "unexpected closes", "OK", "FAIL")
    return "; ".join(l.strip("| ").replace(" | ", "=") for l in lines if any(w in l for w in want))


async def measure(tag, coro, use_bots=True):
    m0, c0, t0, th0 = metrics(), cpu_s(), time.time(), thread_cpu()
    bots = None
    if BOTS and use_bots:
        out = open(f"{WORK}/bots_{PREFIX}_{tag}.txt", "w")
        bots = await asyncio.create_subprocess_exec(os.environ.get("BOTS_BIN", "target/release/tickrelay-bots"), "--url", URL, "--duration-secs", str(int(PH)),
            "--ramp-up-secs", "1", "--warm-up-secs", "2", "--progress-secs", "0", *([] if "--room-prefix" in BOTS else ["--room-prefix", f"hb{tag}"]), *BOTS.split(),
            stdout=out, stderr=asyncio.subprocess.STDOUT)
    res = await coro
    if bots:
        try:
            await asyncio.wait_for(bots.wait(), 15)
        except asyncio.TimeoutError:
            bots.kill()
    m1, c1, t1, th1 = metrics(), cpu_s(), time.time(), thread_cpu()
    ths = " ".join(f"{k} {100*(th1.get(k,0)-th0.get(k,0))/(t1-t0):.0f}%" for k in ("sim", "io", "other"))
    d = lambda k: m1.get(k, 0) - m0.get(k, 0)
    ticks = d("tickrelay_ticks_total")
    print(f"[{tag}] {t1-t0:.1f}s relay cpu {100*(c1-c0)/(t1-t0):.1f}% ({ths}) rss {rss():.0f} MiB; ticks {ticks:.0f} "
          f"overruns {d('tickrelay_tick_overruns_total'):.0f} dropped {d('tickrelay_ticks_dropped_total'):.0f} "
          f"mean tick {1000*d('tickrelay_tick_duration_seconds_sum')/max(ticks,1):.3f} ms; "
          f"bytes_in {d('tickrelay_bytes_in_total')/(t1-t0)/1024:.1f} KiB/s msgs_in {d('tickrelay_messages_in_total')/(t1-t0):.0f}/s "
          f"out {d('tickrelay_bytes_out_total')/(t1-t0)/1024:.0f} KiB/s encoded {d('tickrelay_state_bytes_encoded_total')/(t1-t0)/1024:.0f} KiB/s "
          f"refused {d('tickrelay_inputs_refused_total'):.0f}", flush=True)
    if bots:
        print(f"[{tag}] bots: {bots_summary(f'{WORK}/bots_{PREFIX}_{tag}.txt')}", flush=True)
    return res


async def main():
    writers = [Writer(f"{PREFIX}-{r}", i) for r in range(ROOMS) for i in range(W)]
    await asyncio.gather(*(w.start() for w in writers))
    print(f"{len(writers)} writers joined {ROOMS} rooms; mode {MODE} ENT={ENT} NF={NF} FB={FB}", flush=True)
    t0 = time.time()
    await measure("fill", asyncio.wait_for(asyncio.gather(*(w.fill() for w in writers)), FILL_TIMEOUT), False)
    await asyncio.sleep(1.5)
    errs = sum(len(w.errors) for w in writers)
    print(f"filled in {time.time()-t0:.1f}s, writer errors {errs} {[w.errors[:2] for w in writers if w.errors][:2]}", flush=True)
    for ph in PHASES:
        if ph == "idle":
            await measure(ph, asyncio.sleep(PH))
        else:
            await measure(ph, asyncio.gather(*(w.touch(ph, PH) for w in writers)))
    errs = [e for w in writers for e in w.errors]
    print(f"writer errors total {len(errs)} {errs[:3]}; frames per writer {[w.frames for w in writers][:8]}", flush=True)
    for w in writers:
        await w.ws.close()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), FILL_TIMEOUT + 4 * PH + 30))
