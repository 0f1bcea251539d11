"""Round 22 helpers: a raw, blocking WebSocket client over a plain socket (ws://, loopback
only) with full control of framing (fragments, control frames between fragments, writes
split at any byte), protobuf helpers (TR_GEN: generated tickrelay_pb2), /proc and /metrics."""
import os, socket, struct, sys, time, base64, select, urllib.request
sys.path.insert(0, os.environ.get("TR_GEN", "/tmp/atk22/gen"))
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa

PORT = int(os.environ.get("PORT", "7722"))
HOST = "127.0.0.1"
PID = int(os.environ.get("TR_PID", "0"))


def lo(a):
    assert a.startswith("127."), a
    return a


def rss_mib(pid=None):
    for line in open(f"/proc/{pid or PID}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid=None):
    f = open(f"/proc/{pid or PID}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def metrics(port=None):
    t = urllib.request.urlopen(f"http://{HOST}:{port or PORT}/metrics", timeout=5).read().decode()
    out = {}
    for line in t.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def msum(m, prefix):
    return sum(v for k, v in m.items() if k.startswith(prefix))


def env(*msgs, fes=0):
    e = pb.ClientEnvelope(first_event_seq=fes)
    for m in msgs:
        e.messages.append(m)
    return e.SerializeToString()


def cm(**kw):
    return pb.ClientMessage(**kw)


def join(room, rid=1, room_type="arena", **kw):
    return cm(join=pb.JoinRoom(request_id=rid, room=room, room_type=room_type, **kw))


def intent(room, seq, dx=1, dy=0):
    return cm(input=pb.Input(room=room, seq=seq, intent=bytes([dx & 255, dy & 255])))


def frame(payload, opcode=2, fin=True, mask=True):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    k = os.urandom(4)
    return head + k + bytes(b ^ k[i & 3] for i, b in enumerate(payload))


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


class Conn:
    """Blocking raw client. rcvbuf: SO_RCVBUF (small: the relay's writes block once we
    stop reading). Parses server frames; answers nothing unless told (auto_pong)."""

    def __init__(self, src="127.0.0.1", rcvbuf=None, query="", port=None, timeout=10, nodelay=True):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if nodelay:
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.bind((lo(src), 0))
        self.s.settimeout(timeout)
        self.s.connect((HOST, port or PORT))
        key = base64.b64encode(os.urandom(16)).decode()
        q = ("?" + query) if query else ""
        self.s.sendall(f"GET /ws{q} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                raise ConnectionError("closed during upgrade")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])
        self.closed = None       # (code, reason) of the server's close frame
        self.eof = False
        self.welcome = None
        self.bytes_in = 0
        self.pongs = 0

    # --- sending
    def send_raw(self, data):
        self.s.sendall(data)

    def send(self, *msgs, fes=0):
        self.s.sendall(frame(env(*msgs, fes=fes)))

    # --- receiving
    def _fill(self, timeout):
        r, _, _ = select.select([self.s], [], [], max(0.0, timeout))
        if not r:
            return False
        try:
            d = self.s.recv(1 << 16)
        except (ConnectionError, OSError):
            d = b""
        if not d:
            self.eof = True
            return False
        self.bytes_in += len(d)
        self.buf += d
        return True

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        op, n, i = b[0] & 0x0F, b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, i = struct.unpack(">H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, i = struct.unpack(">Q", b[2:10])[0], 10
        if len(b) < i + n:
            return None
        self.buf = b[i + n:]
        return op, b[i:i + n]

    def recv_frame(self, timeout=5.0):
        """(opcode, payload) or None on timeout/eof."""
        end = time.time() + timeout
        while True:
            f = self._parse()
            if f is not None:
                op, data = f
                if op == 8:
                    self.closed = (struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None,
                                   data[2:].decode("utf8", "replace"))
                if op == 10:
                    self.pongs += 1
                return f
            if self.eof or not self._fill(end - time.time()):
                if self.eof or time.time() >= end:
                    return None

    def recv_env(self, timeout=5.0, auto_pong=True):
        """The next ServerEnvelope, or None (timeout / close / eof)."""
        end = time.time() + timeout
        while True:
            f = self.recv_frame(max(0.0, end - time.time()))
            if f is None:
                return None
            op, data = f
            if op == 8:
                return None
            if op == 9 and auto_pong:
                self.s.sendall(frame(data, 10))
                continue
            if op == 2:
                e = pb.ServerEnvelope()
                e.ParseFromString(data)
                if self.welcome is None and e.messages and e.messages[0].WhichOneof("kind") == "welcome":
                    self.welcome = e.messages[0].welcome
                return e

    def wait_for(self, kind, timeout=5.0):
        end = time.time() + timeout
        while time.time() < end:
            e = self.recv_env(end - time.time())
            if e is None:
                if self.closed or self.eof:
                    return None
                continue
            for m in e.messages:
                if m.WhichOneof("kind") == kind:
                    return m
        return None

    def drain_close(self, timeout=8.0):
        """Reads (dropping) until the server's close frame or eof; returns self.closed."""
        end = time.time() + timeout
        while time.time() < end and self.closed is None and not self.eof:
            self.recv_frame(end - time.time())
        return self.closed

    def close(self):
        try:
            self.s.close()
        except Exception:
            pass


def q(a, p):
    a = sorted(a)
    return a[min(len(a) - 1, int(p * len(a)))] if a else float("nan")
