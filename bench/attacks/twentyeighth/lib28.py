"""Twenty-eighth attack: checking clients that read slowly or not at all.

WsC: a ws:// client whose every state frame is applied to a spec-only mirror (the
eighth/twelfth rounds' `Mirror`, written from docs/PROTOCOL.md) and checked (baseline
equals the mirror's tick, every checksum). `pause()` stops reading at the socket
(asyncio pause_reading, with a small SO_RCVBUF), so the relay's writes block for real.
QC: the same over QUIC (aioquic), with PROTOCOL.md's unordered apply rule and an `Ack`
datagram for every frame applied; `pause()` stops raising flow-control windows and
drops datagrams (a client that stopped reading).
Loopback only."""
import asyncio, os, socket, ssl, struct, sys, time, subprocess, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.environ.get("WORK", "/tmp/a28")
sys.path.insert(0, f"{WORK}/gen")
sys.path.insert(0, os.path.join(HERE, "..", "eighth"))
sys.path.insert(0, os.path.join(HERE, "..", "twelfth"))
os.environ.setdefault("TR_GEN", f"{WORK}/gen")
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa: E402
import websockets  # noqa: E402
from mirror import Desync, varint as _varint, M  # noqa: E402
from lib12 import Mirror as _Mirror12, walk, raw_states  # noqa: E402

PORT = int(os.environ.get("PORT", "7781"))
HOST = "127.0.0.1"
TLS = os.environ.get("TLS", "0") == "1"
URL = f"{'wss' if TLS else 'ws'}://{HOST}:{PORT}/ws"
HURL = f"{'https' if TLS else 'http'}://{HOST}:{PORT}"
CERT = os.environ.get("TR_CERT", f"{WORK}/run/tickrelay-dev-cert.pem")
BOTS_BIN = os.environ.get("BOTS_BIN", "/tmp/atk28-target/release/tickrelay-bots")


def ssl_ctx():
    if not TLS:
        return None
    return ssl.create_default_context(cafile=CERT)


def relay_pid():
    return int(open(f"{WORK}/relay.pid").read())


def cpu_s(pid=None):
    f = open(f"/proc/{pid or relay_pid()}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid=None):
    for l in open(f"/proc/{pid or relay_pid()}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1]) / 1024
    return 0


def metrics():
    out = {}
    try:
        body = urllib.request.urlopen(HURL + "/metrics", timeout=5, context=ssl_ctx()).read().decode()
    except Exception:
        return out
    for line in body.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def log_panics():
    try:
        t = open(f"{WORK}/relay.log", errors="replace").read()
    except OSError:
        return []
    return [l for l in t.splitlines() if "panick" in l][:5]


class Mirror(_Mirror12):
    """The twelfth round's checking mirror, with entity hashes cached (only entities a
    frame touches are hashed again), plus the unordered rule (QUIC)."""

    def __init__(self, schema, me):
        super().__init__(schema, me)
        self.hc = {}

    def checksum(self, shared_only=False):
        from mirror import ehash
        s = 0
        for i, e in self.ents.items():
            if shared_only and e[1] in self.owner_only:
                continue
            h = self.hc.get(i)
            if h is None:
                h = self.hc[i] = ehash(i, e[0], e[1], e[2])
            s += h
        return s & M

    def apply(self, fr, checksums):
        if fr.baseline_tick == 0:
            self.hc = {}
        else:
            for r in fr.removed:
                self.hc.pop(r, None)
            for e in fr.added:
                self.hc.pop(e.id, None)
            for u in fr.changed:
                self.hc.pop(u.id, None)
            for b in fr.packed:
                try:
                    _, added, changed = self.block_ids(b)
                except Exception:
                    self.hc = {}
                    continue
                for i, _o in added:
                    self.hc.pop(i, None)
                for i in changed:
                    self.hc.pop(i, None)
        try:
            return super().apply(fr, checksums)
        except Desync:
            self.hc = {}
            raise

    def apply_unordered(self, fr, checksums):
        if fr.baseline_tick != 0:
            if not self.synced:
                self.skipped += 1
                return "skip"
            if fr.tick <= self.tick or fr.baseline_tick > self.tick:
                self.skipped += 1
                return "skip"
        elif self.synced and fr.tick <= self.tick:
            self.skipped += 1
            return "skip"
        # a delta against any baseline <= our tick applies: reuse the ordered code with
        # the baseline taken as our tick
        if fr.baseline_tick != 0:
            saved = fr.baseline_tick
            fr.baseline_tick = self.tick
            try:
                return self.apply(fr, checksums)
            finally:
                fr.baseline_tick = saved
        return self.apply(fr, checksums)


class Checker:
    """Frame bookkeeping shared by WsC and QC."""

    def init_checker(self, name):
        self.name = name
        self.mirrors = {}
        self.desyncs = []
        self.errors = []
        self.closed = None
        self.welcome = None
        self.frames = 0
        self.full = 0
        self.bytes_in = 0
        self.last_seq = 0
        self.joined = {}
        self.applied_at = {}     # room -> time of last applied frame
        self.max_gap = {}        # room -> longest time between applied frames while reading
        self.rid = 1 << 40
        self.auto_resync = True
        self.resync_sent = 0
        self.frame_log = []      # (time, room, tick, baseline) last 200
        self.seq = {}
        self.nocheck = False

    def take_envelope(self, data, datagram=False):
        self.bytes_in += len(data)
        env = pb.ServerEnvelope()
        try:
            env.ParseFromString(data)
        except Exception as e:
            self.desyncs.append(("?", 0, "undecodable " + repr(e)[:60]))
            return
        raws = raw_states(data)
        ri = n = 0
        for m in env.messages:
            k = m.WhichOneof("kind")
            if k == "state":
                self.take_state(m.state, raws[ri], datagram)
                ri += 1
                continue
            if k != "welcome":
                s = env.first_seq + n
                n += 1
                if s <= self.last_seq:
                    continue
                self.last_seq = s
            if k == "welcome":
                self.welcome = m.welcome
            elif k == "joined":
                self.joined[m.joined.room] = m.joined
                self.mirrors[m.joined.room] = Mirror(m.joined.schema, self.welcome.session_id if self.welcome else 0)
            elif k == "error":
                self.errors.append((pb.ErrorCode.Name(m.error.code), m.error.request_id, m.error.room, m.error.message[:80]))
            elif k == "ping" and hasattr(self, "pong"):
                self.pong(m.ping)

    def take_state(self, st, raw, datagram):
        self.frames += 1
        if st.baseline_tick == 0:
            self.full += 1
        self.frame_log.append((time.time(), st.room, st.tick, st.baseline_tick, datagram))
        if len(self.frame_log) > 200:
            del self.frame_log[:100]
        m = self.mirrors.get(st.room)
        if m is None or self.nocheck:
            return
        checks = [v for no, wt, v in walk(raw) if no == 7]
        was = m.synced
        try:
            r = m.apply_unordered(st, checks) if self.unordered else m.apply(st, checks)
        except Desync as e:
            self.desyncs.append((st.room, st.tick, str(e)[:160]))
            r = "desync"
        now = time.time()
        if r == "ok":
            if st.room in self.applied_at:
                self.max_gap[st.room] = max(self.max_gap.get(st.room, 0), now - self.applied_at[st.room])
            self.applied_at[st.room] = now
            self.on_applied(st)
        if r == "desync" and self.auto_resync:
            self.resync(st.room)

    def on_applied(self, st):
        pass

    def next_rid(self):
        self.rid += 1
        return self.rid

    def resync(self, room):
        self.resync_sent += 1
        self.send_msgs(pb.ClientMessage(request=pb.Request(request_id=self.next_rid(), resync=pb.Resync(room=room))))

    def join(self, *rooms, room_type="relay"):
        self.send_msgs(*[pb.ClientMessage(join=pb.JoinRoom(request_id=self.next_rid(), room=r, room_type=room_type))
                         for r in rooms])

    def leave(self, room):
        self.send_msgs(pb.ClientMessage(leave=pb.LeaveRoom(request_id=self.next_rid(), room=room)))

    def write(self, room, **w):
        seq = self.seq.get(room, 0) + 1
        self.seq[room] = seq
        self.send_msgs(pb.ClientMessage(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(**w))))

    def synced(self, room):
        m = self.mirrors.get(room)
        return bool(m and m.synced and m.tick)

    def summary(self):
        return dict(name=self.name, frames=self.frames, full=self.full, bytes=self.bytes_in,
                    desyncs=len(self.desyncs), first=self.desyncs[:2], closed=self.closed,
                    errors=self.errors[:3], resyncs=self.resync_sent)


class WsC(Checker):
    unordered = False

    def __init__(self, name, rcvbuf=4096):
        self.init_checker(name)
        self.rcvbuf = rcvbuf
        self.paused = False
        self.outq = []

    async def open(self, query=""):
        self.ws = await websockets.connect(URL + (("?" + query) if query else ""), max_size=None, compression=None,
                                           ping_interval=None, open_timeout=10, close_timeout=1, ssl=ssl_ctx(),
                                           max_queue=4)
        sock = self.ws.transport.get_extra_info("socket")
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.task = asyncio.ensure_future(self._recv())
        self.wtask = asyncio.ensure_future(self._writer())
        t0 = time.time()
        while self.welcome is None and self.closed is None and time.time() - t0 < 10:
            await asyncio.sleep(0.01)
        return self

    async def _recv(self):
        try:
            async for data in self.ws:
                while self.paused:
                    await asyncio.sleep(0.005)
                self.take_envelope(data)
        except websockets.ConnectionClosed as e:
            self.closed = (e.rcvd.code if e.rcvd else 1006, e.rcvd.reason if e.rcvd else "")
        except Exception as e:
            self.closed = ("exc", repr(e)[:80])
        else:
            self.closed = (self.ws.close_code, self.ws.close_reason)

    def send_msgs(self, *msgs):
        self.outq.append(pb.ClientEnvelope(messages=list(msgs)).SerializeToString())

    async def _writer(self):
        while True:
            while self.outq:
                d = self.outq.pop(0)
                try:
                    await asyncio.wait_for(self.ws.send(d), 5)
                except Exception:
                    return
            await asyncio.sleep(0.005)

    def pong(self, ping):
        self.send_msgs(pb.ClientMessage(pong=pb.Pong(nonce=ping.nonce, sent_time_us=ping.sent_time_us)))

    def pause(self):
        # the consumer stops: websockets (max_queue=4) then stops reading the socket
        self.paused = True

    def resume(self):
        self.paused = False

    async def close(self):
        self.wtask.cancel()
        try:
            self.paused = False
            await asyncio.wait_for(self.ws.close(), 2)
        except Exception:
            pass
        self.task.cancel()


# ---------------------------------------------------------------- QUIC
try:
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.events import StreamDataReceived, DatagramFrameReceived, ConnectionTerminated
except ImportError:
    QuicConnectionProtocol = object


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


def read_vi(buf, i=0):
    n = s = 0
    while True:
        if i >= len(buf):
            return None, i
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << s
        s += 7
        if not b & 0x80:
            return n, i


class _QP(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.c = None
        self.buf = b""
        self._wsl = self._quic._write_stream_limits
        self._wcl = self._quic._write_connection_limits

    def quic_event_received(self, ev):
        c = self.c
        if c is None:
            return
        if isinstance(ev, StreamDataReceived):
            self.buf += ev.data
            while True:
                n, i = read_vi(self.buf)
                if n is None or len(self.buf) < i + n:
                    break
                body, self.buf = self.buf[i:i + n], self.buf[i + n:]
                c.take_envelope(body, False)
        elif isinstance(ev, DatagramFrameReceived):
            c.dgrams += 1
            if not c.paused and c.welcome is not None:
                c.take_envelope(ev.data, True)
        elif isinstance(ev, ConnectionTerminated):
            if c.closed is None:
                c.closed = (ev.error_code, ev.reason_phrase)


class QC(Checker):
    unordered = True

    def __init__(self, name, ack=True, win=64 * 1024):
        self.init_checker(name)
        self.ack = ack
        self.win = win
        self.paused = False
        self.dgrams = 0

    async def open(self, src="127.0.0.1", resume_token=""):
        loop = asyncio.get_running_loop()
        cfg = QuicConfiguration(alpn_protocols=["tickrelay/1"], is_client=True, max_datagram_frame_size=65536,
                                idle_timeout=40, max_stream_data=self.win, max_data=4 * self.win)
        cfg.load_verify_locations(CERT)
        cfg.server_name = "localhost"
        conn = QuicConnection(configuration=cfg)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((src, 0))
        transport, proto = await loop.create_datagram_endpoint(lambda: _QP(conn), sock=sock)
        proto.c = self
        self.p = proto
        proto.connect((HOST, PORT))
        await asyncio.wait_for(proto.wait_connected(), 10)
        self.sid = proto._quic.get_next_available_stream_id()
        self._raw(vi(0) if False else b"")
        h = pb.Hello(resume_token=resume_token).SerializeToString()
        self._raw(vi(len(h)) + h)
        t0 = time.time()
        while self.welcome is None and self.closed is None and time.time() - t0 < 10:
            await asyncio.sleep(0.01)
        return self

    def _raw(self, data):
        if not data:
            return
        try:
            self.p._quic.send_stream_data(self.sid, data)
            self.p.transmit()
        except Exception:
            pass

    def send_msgs(self, *msgs):
        d = pb.ClientEnvelope(messages=list(msgs)).SerializeToString()
        self._raw(vi(len(d)) + d)

    def pong(self, ping):
        self.send_msgs(pb.ClientMessage(pong=pb.Pong(nonce=ping.nonce, sent_time_us=ping.sent_time_us)))

    def on_applied(self, st):
        if self.ack:
            d = pb.ClientEnvelope(messages=[pb.ClientMessage(ack=pb.Ack(room=st.room, tick=st.tick))]).SerializeToString()
            try:
                self.p._quic.send_datagram_frame(d)
                self.p.transmit()
            except Exception:
                pass

    def pause(self):
        self.paused = True
        self.p._quic._write_stream_limits = lambda *a, **k: None
        self.p._quic._write_connection_limits = lambda *a, **k: None

    def resume(self):
        self.paused = False
        self.p._quic._write_stream_limits = self.p._wsl
        self.p._quic._write_connection_limits = self.p._wcl
        self.p.transmit()

    async def close(self):
        try:
            self.p._quic.close(error_code=1000, reason_phrase="bye")
            self.p.transmit()
            await asyncio.sleep(0.05)
            self.p._transport.close()
        except Exception:
            pass


def start_bots(tag, args, secs):
    """Honest verifying bots beside an attack; returns the Popen (report in WORK/bots_TAG.txt)."""
    url = os.environ.get("BOTS_URL", URL)
    cmd = [BOTS_BIN, "--url", url, "--duration-secs", f"{int(secs)}", "--ramp-up-secs", "1",
           "--progress-secs", "0"] + args.split()
    if TLS or url.startswith("quic") or url.startswith("wss"):
        cmd += ["--cert", CERT]
    out = open(f"{WORK}/bots_{tag}.txt", "w")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def bots_summary(tag):
    try:
        t = open(f"{WORK}/bots_{tag}.txt").read()
    except OSError:
        return "no report"
    keep = []
    for l in t.splitlines():
        ll = l.lower()
        if any(w in ll for w in ("desync", "frames/s", "inputs lost", "lost", "p99", "error", "reconnect", "exit", "checksum")):
            keep.append(l.strip())
    return " | ".join(keep[:14])


class Sampler:
    def __init__(self):
        self.pid = relay_pid()
        self.c0, self.t0, self.m0 = cpu_s(self.pid), time.time(), metrics()
        self.rss_max = self.rss0 = rss_mib(self.pid)
        self.rss_series = []
        self.task = asyncio.ensure_future(self.loop())

    async def loop(self):
        while True:
            await asyncio.sleep(1)
            r = rss_mib(self.pid)
            self.rss_max = max(self.rss_max, r)
            self.rss_series.append(round(r))

    def end(self, tag):
        self.task.cancel()
        m1, c1, t1 = metrics(), cpu_s(self.pid), time.time()
        dt = t1 - self.t0
        d = lambda k: m1.get(k, 0) - self.m0.get(k, 0)
        cl = {k.split('code="')[1].split('"')[0]: int(v - self.m0.get(k, 0)) for k, v in m1.items()
              if k.startswith("tickrelay_closes_total") and 'code="' in k and v - self.m0.get(k, 0) > 0}
        s = (f"[{tag}] {dt:.0f}s relay cpu {100 * (c1 - self.c0) / dt:.0f}% rss {self.rss0:.0f}->{rss_mib(self.pid):.0f} "
             f"(max {self.rss_max:.0f}) MiB; encoded {d('tickrelay_state_bytes_encoded_total') / dt / 2**20:.2f} MiB/s "
             f"full {d('tickrelay_full_snapshots_total') / dt:.1f}/s out {d('tickrelay_bytes_out_total') / dt / 2**20:.2f} MiB/s "
             f"superseded {d('tickrelay_frames_superseded_total') / dt:.0f}/s overruns {d('tickrelay_tick_overruns_total'):.0f} "
             f"resyncs {d('tickrelay_resyncs_total'):.0f} closes {cl}")
        print(s, flush=True)
        return s
