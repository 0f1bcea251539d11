"""QUIC helpers for tickrelay attack scripts (aioquic), plus /proc sampling.
Loopback only: the host is forced to 127.0.0.1."""
import asyncio, os, ssl, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from procstat import cpu_secs, rss_kib, threads  # noqa  (re-exported to mon.py)
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa
from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (StreamDataReceived, DatagramFrameReceived, ConnectionTerminated,
                                 HandshakeCompleted, StreamReset)

HOST = "127.0.0.1"
PORT = int(os.environ.get("TR_PORT", "7971"))
CERT = os.environ.get("TR_CERT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "tickrelay-dev-cert.pem"))
assert 7900 <= PORT <= 7999


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
        if i >= len(buf):
            return None, i
        b = buf[i]; i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def frame(b):
    return varint(len(b)) + b


def env(*msgs):
    e = pb.ClientEnvelope()
    for m in msgs:
        e.messages.append(m)
    return e.SerializeToString()


def cm(**kw):
    return pb.ClientMessage(**kw)


def config(**kw):
    c = QuicConfiguration(alpn_protocols=["tickrelay/1"], is_client=True,
                          max_datagram_frame_size=65536, idle_timeout=40, **kw)
    c.load_verify_locations(CERT)
    c.server_name = "localhost"
    return c


class Client(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sid = None
        self.buf = b""
        self.msgs = []          # (time, ServerMessage, via)
        self.datagrams = 0
        self.stream_frames = 0
        self.closed = None      # (error_code, reason)
        self.closed_at = None
        self.welcome = asyncio.get_event_loop().create_future()
        self.on_msg = None

    def quic_event_received(self, ev):
        if isinstance(ev, StreamDataReceived):
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
        t = time.time()
        for m in s.messages:
            k = m.WhichOneof("kind")
            if k == "welcome" and not self.welcome.done():
                self.welcome.set_result(m.welcome)
            if len(self.msgs) < 200000:
                self.msgs.append((t, m, via))
            if self.on_msg:
                self.on_msg(m, via)

    def open_control(self):
        self.sid = self._quic.get_next_available_stream_id()
        return self.sid

    def send_raw(self, data, end=False):
        if self.sid is None:
            self.open_control()
        self._quic.send_stream_data(self.sid, data, end_stream=end)
        self.transmit()

    def send_hello(self, token="", client_id=""):
        self.send_raw(frame(pb.Hello(token=token, client_id=client_id).SerializeToString()))

    def send_env(self, *msgs):
        self.send_raw(frame(env(*msgs)))

    def send_dgram(self, data):
        self._quic.send_datagram_frame(data)
        self.transmit()

    def kinds(self):
        return [m.WhichOneof("kind") for _, m, _ in self.msgs]


def quic_connect(**kw):
    """Async context manager: a QUIC connection to the relay."""
    return connect(HOST, PORT, configuration=config(**kw), create_protocol=Client,
                   wait_connected=True)
