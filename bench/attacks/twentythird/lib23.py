"""QUIC client helpers for the 23rd attack (aioquic), plus /proc and /metrics sampling.
Loopback only: the relay host is always 127.0.0.1, source addresses 127.0.0.0/8 only."""
import asyncio, os, socket, ssl, sys, time, urllib.request
GEN = os.environ.get("TR_GEN", "/tmp/atk23/gen")
sys.path.insert(0, GEN)
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StreamDataReceived, DatagramFrameReceived, ConnectionTerminated

HOST = "127.0.0.1"
PORT = int(os.environ.get("PORT", "7723"))
CERT = os.environ.get("TR_CERT", "/tmp/atk23/run/tickrelay-dev-cert.pem")
LOG = os.environ.get("LOG", "/tmp/atk23/relay.log")


def relay_pid():
    return int(os.environ.get("TR_PID") or open("/tmp/atk23/relay.pid").read().strip())


def cpu_secs(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0


def metrics():
    ctx = ssl.create_default_context(cafile=CERT)
    ctx.check_hostname = False
    out = {}
    try:
        body = urllib.request.urlopen(f"https://127.0.0.1:{PORT}/metrics", context=ctx, timeout=3).read().decode()
    except Exception:
        return out
    for line in body.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, i=0):
    shift = n = 0
    while True:
        if i >= len(buf) or shift > 63:
            return None, i
        b = buf[i]; i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def frame(b):
    return varint(len(b)) + b


def env(*msgs, **kw):
    e = pb.ClientEnvelope(**kw)
    for m in msgs:
        e.messages.append(m)
    return e.SerializeToString()


def cm(**kw):
    return pb.ClientMessage(**kw)


def join(room, rid, rtype="relay"):
    return cm(join=pb.JoinRoom(request_id=rid, room=room, room_type=rtype))


def ack(room, tick):
    return cm(ack=pb.Ack(room=room, tick=tick))


class Client(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sid = None
        self.buf = b""
        self.keep = 0           # messages kept in self.msgs (0: none)
        self.msgs = []
        self.datagrams = 0
        self.stream_frames = 0
        self.stream_bytes = 0
        self.dgram_bytes = 0
        self.closed = None
        self.closed_at = None
        self.welcome = asyncio.get_event_loop().create_future()
        self.on_msg = None
        self.read_stream = True

    def quic_event_received(self, ev):
        if isinstance(ev, StreamDataReceived):
            self.stream_bytes += len(ev.data)
            if not self.read_stream:
                return
            self.buf += ev.data
            while True:
                n, i = read_varint(self.buf)
                if n is None or len(self.buf) < i + n:
                    break
                body, self.buf = self.buf[i:i + n], self.buf[i + n:]
                self.stream_frames += 1
                self._env(body, "stream")
        elif isinstance(ev, DatagramFrameReceived):
            self.datagrams += 1
            self.dgram_bytes += len(ev.data)
            self._env(ev.data, "dgram")
        elif isinstance(ev, ConnectionTerminated):
            if self.closed is None:
                self.closed = (ev.error_code, ev.reason_phrase)
                self.closed_at = time.time()
            if not self.welcome.done():
                self.welcome.set_result(None)

    def _env(self, body, via):
        s = pb.ServerEnvelope()
        try:
            s.ParseFromString(body)
        except Exception:
            return
        for m in s.messages:
            if m.WhichOneof("kind") == "welcome" and not self.welcome.done():
                self.welcome.set_result(m.welcome)
            if len(self.msgs) < self.keep:
                self.msgs.append((time.time(), m, via))
            if self.on_msg:
                self.on_msg(m, via)

    def send_raw(self, data, end=False):
        if self.sid is None:
            self.sid = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(self.sid, data, end_stream=end)
        self.transmit()

    def send_hello(self, token="", resume_token="", received_seq=0, client_id=""):
        self.send_raw(frame(pb.Hello(token=token, resume_token=resume_token, received_seq=received_seq,
                                     client_id=client_id).SerializeToString()))

    def send_env(self, *msgs):
        self.send_raw(frame(env(*msgs)))

    def send_dgram(self, data):
        self._quic.send_datagram_frame(data)
        self.transmit()

    def app_close(self, code=1000, reason="bye"):
        self._quic.close(error_code=code, reason_phrase=reason)
        self.transmit()


def config(**kw):
    c = QuicConfiguration(alpn_protocols=["tickrelay/1"], is_client=True,
                          max_datagram_frame_size=65536, idle_timeout=kw.pop("idle_timeout", 40), **kw)
    c.load_verify_locations(CERT)
    c.server_name = "localhost"
    return c


async def open_conn(src="127.0.0.1", cls=Client, timeout=10, **kw):
    """Connects from loopback address src to the relay; returns the protocol (call .close())."""
    assert src.startswith("127.")
    loop = asyncio.get_running_loop()
    conn = QuicConnection(configuration=config(**kw))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((src, 0))
    transport, proto = await loop.create_datagram_endpoint(lambda: cls(conn), sock=sock)
    proto.connect((HOST, PORT))
    await asyncio.wait_for(proto.wait_connected(), timeout)
    return proto


async def session(src="127.0.0.1", timeout=10, **kw):
    """Connect, Hello, wait for Welcome."""
    c = await open_conn(src, timeout=timeout, **kw)
    c.send_hello()
    w = await asyncio.wait_for(c.welcome, timeout)
    if w is None:
        raise RuntimeError(f"no welcome: {c.closed}")
    return c


def panics():
    try:
        return sum(1 for l in open(LOG, errors="replace") if "panicked" in l)
    except OSError:
        return -1


class Mon:
    """Samples relay CPU and RSS once a second (asyncio task)."""
    def __init__(self, pid=None):
        self.pid = pid or relay_pid()
        self.samples = []
        self.task = None

    async def _run(self):
        prev, pt = cpu_secs(self.pid), time.time()
        while True:
            await asyncio.sleep(1)
            c, t = cpu_secs(self.pid), time.time()
            self.samples.append(((c - prev) / (t - pt), rss_mib(self.pid)))
            prev, pt = c, t

    def start(self):
        self.task = asyncio.ensure_future(self._run())
        return self

    def stop(self):
        if self.task:
            self.task.cancel()

    def summary(self, skip=0):
        s = self.samples[skip:] or [(0, 0)]
        cpu = [a for a, _ in s]
        rss = [b for _, b in s]
        return f"relay cpu mean {100*sum(cpu)/len(cpu):.0f}% max {100*max(cpu):.0f}%, rss {min(rss):.0f}-{max(rss):.0f} MiB"


def print_bots(tag):
    """The interesting lines of a tickrelay-bots report written to /tmp/atk23/bots_TAG.txt."""
    try:
        lines = open(f"/tmp/atk23/bots_{tag}.txt").read().splitlines()
    except OSError as e:
        print(f"[{tag}] bots report unreadable: {e}")
        return
    want = ("state frames / s", "latency p50", "latency p99 ", "latency max", "desyncs", "inputs lost", "unexpected closes",
            "server errors", "input to its", "reconnects", "OK", "FAIL", "violat")
    out = []
    for l in lines:
        if any(w in l for w in want):
            out.append(l.strip("| ").replace(" | ", "="))
    print(f"[{tag}] bots: " + "; ".join(out), flush=True)


class NoRead(Client):
    """A client that never raises its flow-control windows (as one that never reads its
    stream would): open it with max_stream_data=WIN, max_data=... in open_conn."""
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._quic._write_stream_limits = lambda *a, **k: None
        self._quic._write_connection_limits = lambda *a, **k: None


class RateRead(Client):
    """A client whose control stream is read at RATE bytes/s (a path of that bandwidth, as flow
    control sees it): its stream window starts at WIN0 and grows by RATE/100 every 10 ms, never
    by aioquic's own doubling. Open with open_conn(..., cls=RateRead, max_stream_data=WIN0,
    max_data=1 << 30) and call start_rate(rate) after the Hello."""
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        from aioquic.quic.connection import QuicFrameType, MAX_STREAM_DATA_FRAME_CAPACITY
        q = self._quic

        def wsl(builder, space, stream):
            if stream.max_stream_data_local_sent != stream.max_stream_data_local:
                buf = builder.start_frame(QuicFrameType.MAX_STREAM_DATA, capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                                          handler=q._on_max_stream_data_delivery, handler_args=(stream,))
                buf.push_uint_var(stream.stream_id)
                buf.push_uint_var(stream.max_stream_data_local)
                stream.max_stream_data_local_sent = stream.max_stream_data_local
        q._write_stream_limits = wsl
        self.rate_task = None

    def start_rate(self, rate):
        async def run():
            while True:
                await asyncio.sleep(0.01)
                s = self._quic._streams.get(self.sid)
                if s is not None:
                    s.max_stream_data_local += int(rate / 100)
                    self.transmit()
        self.rate_task = asyncio.ensure_future(run())
