"""Shared code for the twentieth round: a minimal raw WebSocket client (asyncio streams
on a socket whose receive buffer can be made small, so that "not reading" really stops
the relay's writes), protobuf helpers, /proc and /metrics readers. Loopback only."""
import asyncio, base64, os, socket, struct, sys, time, urllib.request
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))                      # procstat.py
sys.path.insert(0, os.environ.get("TR_GEN", os.path.join(HERE, "gen")))
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa
from procstat import cpu_secs, rss_kib  # noqa

PORT = int(os.environ.get("PORT", "7681"))
HOST = "127.0.0.1"


def lo(addr):
    assert addr.startswith("127."), addr
    return addr


def env(*msgs, fes=0):
    e = pb.ClientEnvelope(first_event_seq=fes)
    for m in msgs:
        e.messages.append(m)
    return e.SerializeToString()


def cm(**kw):
    return pb.ClientMessage(**kw)


def join(room, rid=1, room_type="relay", **kw):
    return cm(join=pb.JoinRoom(request_id=rid, room=room, room_type=room_type, **kw))


def ws_frame(payload, opcode=2):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    m = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + m


class Raw:
    """A raw WebSocket client. `rcvbuf`: SO_RCVBUF before connect (small: the relay's
    writes block as soon as this client stops reading)."""

    def __init__(self, src="127.0.0.1", rcvbuf=None, port=None):
        self.src, self.rcvbuf, self.port = lo(src), rcvbuf, port or PORT
        self.buf = b""
        self.closed = None
        self.welcome = None
        self.msgs = []
        self.bytes_in = 0

    async def open(self, query="", headers=""):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.bind((self.src, 0))
        s.setblocking(False)
        await asyncio.get_running_loop().sock_connect(s, (HOST, self.port))
        self.r, self.w = await asyncio.open_connection(sock=s, limit=1 << 16)
        key = base64.b64encode(os.urandom(16)).decode()
        q = ("?" + query) if query else ""
        self.w.write(f"GET /ws{q} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode())
        head = await asyncio.wait_for(self.r.readuntil(b"\r\n\r\n"), 10)
        self.status = int(head.split(b" ")[1])
        if self.status != 101:
            self.w.close()
            return self
        return self

    async def read_frame(self):
        """(opcode, payload) of the next whole message (no fragmentation from the relay)."""
        h = await self.r.readexactly(2)
        op, n = h[0] & 0x0F, h[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", await self.r.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await self.r.readexactly(8))[0]
        data = await self.r.readexactly(n)
        self.bytes_in += n + 2
        return op, data

    async def recv_env(self, timeout=5.0):
        """The next ServerEnvelope (answers pings), or None at close/timeout."""
        end = time.time() + timeout
        while True:
            # A wait that times out keeps the frame being read for the next call: one
            # cancelled half way would lose its header and garble every later read.
            if getattr(self, "_reading", None) is None:
                self._reading = asyncio.ensure_future(self.read_frame())
            done, _ = await asyncio.wait({self._reading}, timeout=max(0.001, end - time.time()))
            if not done:
                return None
            reading, self._reading = self._reading, None
            try:
                op, data = reading.result()
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if op == 8:
                self.closed = (struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None, data[2:].decode("utf8", "replace"))
                return None
            if op == 9:
                self.w.write(ws_frame(data, 10))
                continue
            if op == 2:
                s = pb.ServerEnvelope()
                s.ParseFromString(data)
                if self.welcome is None and s.messages and s.messages[0].WhichOneof("kind") == "welcome":
                    self.welcome = s.messages[0].welcome
                return s

    async def send(self, *msgs, fes=0):
        self.w.write(ws_frame(env(*msgs, fes=fes)))
        await self.w.drain()

    def abort(self):
        if getattr(self, "_reading", None) is not None:
            self._reading.cancel()
        try:
            self.w.transport.abort()
        except Exception:
            pass


def metric(port, name, host="127.0.0.1", token=None):
    """Sum of a metric's samples whose line starts with `name` on /metrics."""
    req = urllib.request.Request(f"http://{lo(host)}:{port}/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    text = urllib.request.urlopen(req, timeout=5).read().decode()
    tot = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            tot += float(line.rsplit(" ", 1)[1])
    return tot
