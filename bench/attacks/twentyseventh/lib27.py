"""Shared code for the twenty-seventh attack: ws/wss and QUIC (aioquic) transports with one
interface, relay sampling (/proc, /metrics, /healthz, log grep), a bots runner.
Loopback only: every address is checked to be 127.0.0.1."""
import asyncio, os, ssl, sys, time, urllib.request, subprocess

WORK = os.environ.get("WORK", "/tmp/a27")
sys.path.insert(0, f"{WORK}/gen")
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa: E402
import websockets  # noqa: E402

PORT = int(os.environ.get("PORT", "7927"))
HOST = "127.0.0.1"
TLS = os.environ.get("TLS", "0") == "1"
URL = os.environ.get("URL", f"{'wss' if TLS else 'ws'}://{HOST}:{PORT}/ws")
HURL = f"{'https' if TLS else 'http'}://{HOST}:{PORT}"
CERT = os.environ.get("TR_CERT", f"{WORK}/tickrelay-dev-cert.pem")
BOTS_BIN = os.environ.get("BOTS_BIN", f"{WORK}/tickrelay-bots")
assert "//127.0.0.1:" in URL and "//127.0.0.1:" in HURL


def ssl_ctx():
    return ssl.create_default_context(cafile=CERT) if TLS else None


def relay_pid():
    return int(os.environ.get("TR_PID") or open(f"{WORK}/relay.pid").read())


def cpu_s(pid=None):
    f = open(f"/proc/{pid or relay_pid()}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid=None):
    try:
        for l in open(f"/proc/{pid or relay_pid()}/status"):
            if l.startswith("VmRSS"):
                return int(l.split()[1]) / 1024
    except OSError:
        return -1
    return 0


def http_get(path, timeout=5, headers=None):
    req = urllib.request.Request(HURL + path, headers=headers or {})
    try:
        r = urllib.request.urlopen(req, timeout=timeout, context=ssl_ctx())
        return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:
        return None, repr(e).encode()


def metrics():
    out = {}
    st, body = http_get("/metrics")
    if st != 200:
        return out
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def health():
    st, body = http_get("/healthz", timeout=3)
    return st == 200 and body.strip() == b"ok"


def log_grep(words=("panic", "PANIC", "internal server error", "1011")):
    try:
        text = open(os.environ.get("LOG", f"{WORK}/relay.log"), errors="replace").read()
    except OSError:
        return []
    return [l[:300] for l in text.splitlines() if any(w in l for w in words)]


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


class Session:
    """One connection over ws/wss or QUIC; reads everything into counters unless paused."""

    def __init__(self, name=""):
        self.name = name
        self.errors = []          # (code, request_id, room, message)
        self.kinds = {}           # server message kind -> count
        self.bytes_in = 0
        self.frames = 0
        self.full = 0
        self.joined = {}
        self.welcome = None
        self.closed = None        # (code, reason)
        self.datagrams = 0
        self.last_tick = {}
        self.on_state = None
        self.answered = set()     # request ids answered (Joined, Left, Response, Error, TokenRefreshed, Redirect)

    def handle(self, data, datagram=False):
        self.bytes_in += len(data)
        e = pb.ServerEnvelope()
        try:
            e.ParseFromString(data)
        except Exception as ex:
            self.errors.append(("undecodable-server", 0, "", repr(ex)[:80]))
            return
        for m in e.messages:
            k = m.WhichOneof("kind")
            self.kinds[k] = self.kinds.get(k, 0) + 1
            if k in ("joined", "left", "response", "error", "token_refreshed", "redirect"):
                self.answered.add(getattr(m, k).request_id)
            if k == "state":
                self.frames += 1
                if m.state.baseline_tick == 0:
                    self.full += 1
                self.last_tick[m.state.room] = m.state.tick
                if self.on_state:
                    self.on_state(m.state, datagram)
            elif k == "welcome":
                self.welcome = m.welcome
            elif k == "joined":
                self.joined[m.joined.room] = m.joined
            elif k == "error":
                self.errors.append((m.error.code, m.error.request_id, m.error.room, m.error.message[:100]))


class WsSession(Session):
    async def open(self, query="", rcvbuf=None):
        u = URL + (("?" + query) if query else "")
        self.ws = await websockets.connect(u, max_size=None, compression=None, ping_interval=None,
                                           open_timeout=15, close_timeout=1, ssl=ssl_ctx() if TLS else None)
        if rcvbuf:
            import socket
            self.ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.rt = asyncio.ensure_future(self.reader())
        t0 = time.time()
        while self.welcome is None and self.closed is None and time.time() - t0 < 10:
            await asyncio.sleep(0.01)
        return self

    async def reader(self):
        try:
            async for data in self.ws:
                if isinstance(data, str):
                    self.errors.append(("text-from-server", 0, "", data[:80]))
                    continue
                self.handle(data)
        except Exception as ex:
            pass
        code = getattr(self.ws, "close_code", None)
        self.closed = (code, getattr(self.ws, "close_reason", "")) if code else (1006, "no close frame")

    async def send(self, data):
        if self.closed:
            return False
        try:
            await self.ws.send(data)
            return True
        except Exception:
            return False

    def pause(self):
        self.ws.transport.pause_reading()

    def resume_reading(self):
        self.ws.transport.resume_reading()

    def abort(self):
        self.ws.transport.abort()

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 2)
        except Exception:
            pass
        self.rt.cancel()


# ---------------------------------------------------------------- QUIC (aioquic)
try:
    from aioquic.asyncio.client import connect as quic_connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic import events as qev
except ImportError:  # pragma: no cover
    quic_connect = None


def _read_varint(buf, i):
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


if quic_connect:
    class _Proto(QuicConnectionProtocol):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.sess = None
            self.buf = b""

        def quic_event_received(self, ev):
            s = self.sess
            if s is None:
                return
            if isinstance(ev, qev.StreamDataReceived):
                if s.paused:
                    s.held.append(ev.data)
                    return
                self.buf += ev.data
                self._drain()
            elif isinstance(ev, qev.DatagramFrameReceived):
                s.datagrams += 1
                if not s.paused:
                    s.handle(ev.data, datagram=True)
            elif isinstance(ev, qev.ConnectionTerminated):
                s.closed = (ev.error_code, ev.reason_phrase)

        def _drain(self):
            while True:
                n, i = _read_varint(self.buf, 0)
                if n is None or len(self.buf) - i < n:
                    return
                self.sess.handle(self.buf[i:i + n])
                self.buf = self.buf[i + n:]


class QuicSession(Session):
    """`ack=False`: never acknowledges a state frame (the point of some attacks)."""

    def __init__(self, name="", ack=False):
        super().__init__(name)
        self.ack = ack
        self.paused = False
        self.held = []

    async def open(self, resume_token="", received=None, timeout=15):
        cfg = QuicConfiguration(is_client=True, alpn_protocols=["tickrelay/1"], max_datagram_frame_size=65536,
                                idle_timeout=30.0, server_name="localhost")
        cfg.load_verify_locations(CERT)
        self._cm = quic_connect(HOST, PORT, configuration=cfg, create_protocol=_Proto, wait_connected=True)
        self.proto = await asyncio.wait_for(self._cm.__aenter__(), timeout)
        self.proto.sess = self
        self.sid = self.proto._quic.get_next_available_stream_id()
        hello = pb.Hello(resume_token=resume_token)
        if received is not None:
            hello.received_seq = received
        self._write(hello.SerializeToString())
        if self.ack:
            self.on_state = self._ack
        t0 = time.time()
        while self.welcome is None and self.closed is None and time.time() - t0 < 10:
            await asyncio.sleep(0.01)
        return self

    def _ack(self, st, datagram):
        self.send_datagram(env(pb.ClientMessage(ack=pb.Ack(room=st.room, tick=st.tick))))

    def _write(self, data, raw=False):
        self.proto._quic.send_stream_data(self.sid, data if raw else vi(len(data)) + data)
        self.proto.transmit()

    async def send(self, data):
        if self.closed:
            return False
        try:
            self._write(data)
            return True
        except Exception:
            return False

    def send_raw(self, data):
        try:
            self._write(data, raw=True)
        except Exception:
            pass

    def send_datagram(self, data):
        try:
            self.proto._quic.send_datagram_frame(data)
            self.proto.transmit()
        except Exception:
            pass

    def pause(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False
        held, self.held = self.held, []
        for d in held:
            self.proto.buf += d
        self.proto._drain()

    def abort(self):
        try:
            self.proto._transport.close()  # no CONNECTION_CLOSE: the relay sees silence
        except Exception:
            pass

    async def close(self):
        try:
            self.proto.close(error_code=1000, reason_phrase="bye")
            await asyncio.wait_for(self._cm.__aexit__(None, None, None), 2)
        except Exception:
            pass


def session(kind, name=""):
    return QuicSession(name) if kind == "quic" else WsSession(name)


def bots_cmd(tag, secs, args, url=None):
    return [BOTS_BIN, "--url", url or URL, "--duration-secs", str(int(secs)), "--ramp-up-secs", "1",
            "--warm-up-secs", "2", "--progress-secs", "0", "--room-prefix", f"honest-{tag}", *args.split()]


def bots_summary(path):
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        return f"unreadable {e}"
    want = ("state frames / s", "latency p50", "latency p99 ", "latency max", "input to its acknowledging", "desyncs",
            "unexpected closes", "server errors", "never joined", "OK", "FAIL", "violation", "lost inputs",
            "checksums")
    return "; ".join(l.strip("| ").replace(" | ", "=") for l in lines if any(w in l for w in want))


async def run_bots(tag, secs, args, url=None):
    path = f"{WORK}/bots_{tag}.txt"
    out = open(path, "w")
    p = await asyncio.create_subprocess_exec(*bots_cmd(tag, secs, args, url), stdout=out,
                                             stderr=asyncio.subprocess.STDOUT, cwd=WORK)
    try:
        await asyncio.wait_for(p.wait(), secs + 25)
    except asyncio.TimeoutError:
        p.kill()
        await p.wait()
    return p.returncode, bots_summary(path)
