"""Shared helpers for the twenty-sixth attack (noisy neighbours): relay /proc and /metrics
sampling, a minimal asyncio ws:// client, tickrelay-bots as the honest side.
Loopback only: every URL is checked to point at 127.0.0.1 or ::1."""
import asyncio, os, ssl, sys, time, json, urllib.request, subprocess

WORK = os.environ.get("WORK", "/tmp/a26")
sys.path.insert(0, f"{WORK}/gen")
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa: E402
import websockets  # noqa: E402

PORT = int(os.environ.get("PORT", "7926"))
HOST = "127.0.0.1"
URL = os.environ.get("URL", f"ws://{HOST}:{PORT}/ws")
MURL = os.environ.get("MURL", (f"https://{HOST}:{PORT}/metrics" if URL.startswith("wss") else f"http://{HOST}:{PORT}/metrics"))
CERT = os.environ.get("TR_CERT", f"{WORK}/tickrelay-dev-cert.pem")


def ssl_ctx():
    return ssl.create_default_context(cafile=CERT) if URL.startswith("wss") or MURL.startswith("https") else None
for u in (URL, MURL):
    assert "//127.0.0.1:" in u or "//[::1]:" in u, f"not loopback: {u}"
BOTS_BIN = os.environ.get("BOTS_BIN", "/tmp/atk26/target/release/tickrelay-bots")


def relay_pid():
    return int(os.environ.get("TR_PID") or open(f"{WORK}/relay.pid").read())


def cpu_s(pid=None):
    pid = pid or relay_pid()
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid=None):
    pid = pid or relay_pid()
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{t}/comm").read().strip()
            f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        key = name if "sim" in name else ("io" if "io" in name else "other")
        out[key] = out.get(key, 0) + (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def rss_mib(pid=None):
    pid = pid or relay_pid()
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1]) / 1024
    return 0


def machine_busy():
    """(busy jiffies, total jiffies) of the whole machine, from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def metrics():
    out = {}
    try:
        text = urllib.request.urlopen(MURL, timeout=5, context=ssl_ctx()).read().decode()
    except Exception:
        return out
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            try:
                out[k] = float(v)
            except ValueError:
                pass
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


def env(*msgs, **kw):
    e = pb.ClientEnvelope(**kw)
    e.messages.extend(msgs)
    return e.SerializeToString()


def join_msg(room, rid, room_type="relay", **kw):
    return pb.ClientMessage(join=pb.JoinRoom(request_id=rid, room=room, room_type=room_type, **kw))


async def connect(query=""):
    u = URL + (("?" + query) if query else "")
    return await websockets.connect(u, max_size=None, compression=None, ping_interval=None,
                                    open_timeout=15, close_timeout=1,
                                    ssl=ssl_ctx() if u.startswith("wss") else None)


class Conn:
    """A session that reads everything (counting), remembers its Welcome and Joined."""

    def __init__(self, name=""):
        self.name = name
        self.errors = []
        self.bytes_in = 0
        self.frames = 0
        self.full = 0
        self.joined = {}
        self.welcome = None
        self.closed = None
        self.waiters = []

    async def open(self, query=""):
        self.ws = await connect(query)
        self.rt = asyncio.ensure_future(self.reader())
        t0 = time.time()
        while self.welcome is None and time.time() - t0 < 10:
            await asyncio.sleep(0.01)
        return self

    async def reader(self):
        try:
            async for data in self.ws:
                self.bytes_in += len(data)
                if len(data) > 65536:  # a full snapshot of a big room: count it only
                    self.frames += 1
                    self.full += 1
                    continue
                e = pb.ServerEnvelope()
                e.ParseFromString(data)
                for m in e.messages:
                    k = m.WhichOneof("kind")
                    if k == "state":
                        self.frames += 1
                        if m.state.baseline_tick == 0:
                            self.full += 1
                    elif k == "welcome":
                        self.welcome = m.welcome
                    elif k == "joined":
                        self.joined[m.joined.room] = m.joined
                    elif k == "error":
                        self.errors.append((m.error.code, m.error.room, m.error.message[:80]))
        except Exception as ex:
            self.errors.append(("closed", "", repr(ex)[:100]))
        self.closed = (getattr(self.ws, "close_code", None), getattr(self.ws, "close_reason", None))

    async def send(self, data):
        await self.ws.send(data)
        return len(data)

    async def join(self, rooms, room_type="relay", timeout=15):
        msgs = [join_msg(r, i + 1, room_type) for i, r in enumerate(rooms)]
        for i in range(0, len(msgs), 16):
            await self.send(env(*msgs[i:i + 16]))
        t0 = time.time()
        while any(r not in self.joined for r in rooms) and time.time() - t0 < timeout:
            if self.errors and any(e[1] in rooms for e in self.errors):
                break
            await asyncio.sleep(0.02)
        return all(r in self.joined for r in rooms)

    def abort(self):
        """Drops the TCP connection without a close frame (the session waits for a resume)."""
        self.ws.transport.abort()

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 2)
        except Exception:
            pass


def bots_cmd(tag, secs, args, url=None):
    return [BOTS_BIN, "--url", url or URL, "--duration-secs", str(int(secs)), "--ramp-up-secs", "1",
            "--warm-up-secs", "2", "--progress-secs", "0", "--room-prefix", f"honest-{tag}", *args.split()]


def bots_summary(path):
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        return f"unreadable {e}"
    want = ("state frames / s", "latency p50", "latency p99 ", "latency max", "input to its acknowledging", "desyncs",
            "unexpected closes", "server errors", "never joined", "OK", "FAIL")
    return "; ".join(l.strip("| ").replace(" | ", "=") for l in lines if any(w in l for w in want))


class Phase:
    """Measures the relay over a phase: CPU by thread, RSS, ticks, overruns, tick time, bytes."""

    def __init__(self, tag):
        self.tag = tag
        self.m0, self.c0, self.t0, self.th0 = metrics(), cpu_s(), time.time(), thread_cpu()
        self.rss_max = rss_mib()
        self.mb0 = machine_busy()

    def sample(self):
        self.rss_max = max(self.rss_max, rss_mib())

    def end(self, extra=""):
        m1, c1, t1, th1 = metrics(), cpu_s(), time.time(), thread_cpu()
        dt = t1 - self.t0
        keys = sorted(set(th1) | set(self.th0))
        ths = " ".join(f"{k.replace('tickrelay-','')} {100*(th1.get(k,0)-self.th0.get(k,0))/dt:.0f}%" for k in keys)
        d = lambda k: m1.get(k, 0) - self.m0.get(k, 0)
        ticks = d("tickrelay_ticks_total")
        mb1 = machine_busy()
        ncpu = os.cpu_count()
        mach = f"machine busy {100*ncpu*(mb1[0]-self.mb0[0])/max(1,mb1[1]-self.mb0[1]):.0f}% of {ncpu*100}%, load {loadavg()}"
        line = (f"[{self.tag}] {dt:.1f}s relay cpu {100*(c1-self.c0)/dt:.1f}% ({ths}) rss {rss_mib():.0f} MiB "
                f"(max {max(self.rss_max, rss_mib()):.0f}); ticks {ticks:.0f} overruns {d('tickrelay_tick_overruns_total'):.0f} "
                f"dropped {d('tickrelay_ticks_dropped_total'):.0f} mean tick "
                f"{1000*d('tickrelay_tick_duration_seconds_sum')/max(ticks,1):.3f} ms; "
                f"in {d('tickrelay_bytes_in_total')/dt/1024:.1f} KiB/s msgs {d('tickrelay_messages_in_total')/dt:.0f}/s "
                f"out {d('tickrelay_bytes_out_total')/dt/1024:.0f} KiB/s encoded "
                f"{d('tickrelay_state_bytes_encoded_total')/dt/1024/1024:.1f} MiB/s full frames "
                f"{d('tickrelay_full_snapshots_total')/dt:.0f}/s superseded {d('tickrelay_frames_superseded_total')/dt:.0f}/s; {mach} {extra}")
        print(line, flush=True)
        return m1


async def run_bots(tag, secs, args, url=None):
    path = f"{WORK}/bots_{tag}.txt"
    out = open(path, "w")
    p = await asyncio.create_subprocess_exec(*bots_cmd(tag, secs, args, url), stdout=out,
                                             stderr=asyncio.subprocess.STDOUT, cwd=WORK)
    try:
        await asyncio.wait_for(p.wait(), secs + 20)
    except asyncio.TimeoutError:
        p.kill()
        await p.wait()
    return bots_summary(path)
