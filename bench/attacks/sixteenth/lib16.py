"""Shared helpers for the sixteenth round: a relay launcher (TLS, so QUIC is on), a
WebSocket client and a QUIC client that can bind any 127.x.y.z source address.
Loopback only: every address used here is asserted to be in 127.0.0.0/8."""
import asyncio, ipaddress, os, ssl, subprocess, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "gen"), os.path.join(HERE, "..")]
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa
from procstat import cpu_secs, rss_kib, threads  # noqa
import websockets
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StreamDataReceived, DatagramFrameReceived, ConnectionTerminated

BIN = os.environ.get("TR_BIN", os.path.join(HERE, "..", "..", "..", "target", "release", "tickrelay"))
OUT = os.path.join(HERE, "out")
os.makedirs(OUT, exist_ok=True)
CERT = os.path.join(OUT, "dev-cert.pem")


def lo(addr):
    assert ipaddress.ip_address(addr).is_loopback, addr
    return addr


def start_relay(port, *args, tag="relay", plain=False):
    """The relay on 127.0.0.1:port (wss + QUIC unless plain); its pid is .pid."""
    cmd = [BIN, "--listen", f"127.0.0.1:{port}", "--dev-cert-path", CERT]
    if plain:
        cmd.append("--insecure-plain")
    p = subprocess.Popen(cmd + list(args), stdout=open(f"{OUT}/{tag}.log", "w"), stderr=subprocess.STDOUT, cwd=OUT)
    for _ in range(100):
        time.sleep(0.1)
        try:
            import socket
            s = socket.create_connection(("127.0.0.1", port), timeout=0.2); s.close()
            return p
        except OSError:
            pass
    return p


def stop(p):
    if p and p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()


def env(*msgs, first_event_seq=0):
    e = pb.ClientEnvelope(first_event_seq=first_event_seq)
    for m in msgs:
        e.messages.append(m)
    return e.SerializeToString()


def cm(**kw):
    return pb.ClientMessage(**kw)


def join(room, rid=1, room_type="", data=b"", **kw):
    return cm(join=pb.JoinRoom(request_id=rid, room=room, room_type=room_type, member_data=data, **kw))


def decode(b):
    s = pb.ServerEnvelope(); s.ParseFromString(b); return s


def ssl_ctx():
    c = ssl.create_default_context(cafile=CERT)
    return c


async def ws_connect(port, query="", src="127.0.0.1", plain=False, headers=None):
    scheme = "ws" if plain else "wss"
    url = f"{scheme}://127.0.0.1:{port}/ws" + (("?" + query) if query else "")
    kw = {}
    if headers:
        kw["additional_headers"] = headers
    return await websockets.connect(url, ssl=None if plain else ssl_ctx(), max_size=64 << 20, open_timeout=10,
                                    ping_interval=None, local_addr=(lo(src), 0), **kw)


async def ws_recv_until(ws, pred, timeout=5.0):
    seen = []
    end = time.time() + timeout
    while time.time() < end:
        try:
            data = await asyncio.wait_for(ws.recv(), max(0.01, end - time.time()))
        except asyncio.TimeoutError:
            break
        for m in decode(data).messages:
            seen.append(m)
            if pred(m):
                return m, seen
    return None, seen


# ---------------------------------------------------------------- QUIC
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F; n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b); return bytes(out)


def read_varint(buf, i=0):
    shift = n = 0
    while True:
        if i >= len(buf):
            return None, i
        b = buf[i]; i += 1
        n |= (b & 0x7F) << shift; shift += 7
        if not b & 0x80:
            return n, i


class Q(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sid = None
        self.buf = b""
        self.msgs = []
        self.closed = None
        self.welcome = asyncio.get_event_loop().create_future()
        self.ev = asyncio.Event()
        self.bytes_in = 0

    def quic_event_received(self, ev):
        if isinstance(ev, StreamDataReceived):
            self.buf += ev.data
            self.bytes_in += len(ev.data)
            while True:
                n, i = read_varint(self.buf)
                if n is None or len(self.buf) < i + n:
                    break
                body, self.buf = self.buf[i:i + n], self.buf[i + n:]
                self._env(body)
        elif isinstance(ev, DatagramFrameReceived):
            self.bytes_in += len(ev.data)
            self._env(ev.data)
        elif isinstance(ev, ConnectionTerminated):
            if self.closed is None:
                self.closed = (ev.error_code, ev.reason_phrase)
            if not self.welcome.done():
                self.welcome.set_result(None)
            self.ev.set()

    def _env(self, body):
        s = pb.ServerEnvelope()
        try:
            s.ParseFromString(body)
        except Exception:
            return
        for m in s.messages:
            if m.WhichOneof("kind") == "welcome" and not self.welcome.done():
                self.welcome.set_result(m.welcome)
            if len(self.msgs) < 100000:
                self.msgs.append(m)
        self.ev.set()

    def send_raw(self, data, end=False):
        if self.sid is None:
            self.sid = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(self.sid, data, end_stream=end)
        self.transmit()

    def hello(self, token="", resume="", received=None, client_id=""):
        h = pb.Hello(token=token, resume_token=resume, client_id=client_id)
        if received is not None:
            h.received_seq = received
        b = h.SerializeToString()
        self.send_raw(varint(len(b)) + b)

    def send_env(self, *msgs):
        b = env(*msgs)
        self.send_raw(varint(len(b)) + b)

    def kinds(self):
        return [m.WhichOneof("kind") for m in self.msgs]

    async def wait_for(self, pred, timeout=5.0):
        end = time.time() + timeout
        i = 0
        while time.time() < end:
            while i < len(self.msgs):
                if pred(self.msgs[i]):
                    return self.msgs[i]
                i += 1
            if self.closed:
                return None
            self.ev.clear()
            try:
                await asyncio.wait_for(self.ev.wait(), max(0.01, end - time.time()))
            except asyncio.TimeoutError:
                break
        return None

    def close_app(self, code=1000, reason=""):
        self._quic.close(error_code=code, reason_phrase=reason)
        self.transmit()


async def quic_open(port, src="127.0.0.1", timeout=5.0):
    """A QUIC connection from source address `src` (handshake done), or raises."""
    cfg = QuicConfiguration(alpn_protocols=["tickrelay/1"], is_client=True, max_datagram_frame_size=65536,
                            idle_timeout=40)
    cfg.load_verify_locations(CERT)
    cfg.server_name = "localhost"
    loop = asyncio.get_event_loop()
    conn = QuicConnection(configuration=cfg)
    _, proto = await loop.create_datagram_endpoint(lambda: Q(conn), local_addr=(lo(src), 0))
    proto.connect(("127.0.0.1", port))
    try:
        await asyncio.wait_for(proto.wait_connected(), timeout)
    except BaseException:
        proto._transport.close()
        raise
    return proto


def quic_drop(q):
    """Drops the connection without a close (as a lost connection)."""
    try:
        q._transport.close()
    except Exception:
        pass
