"""RFC 6455 framing edge cases, each on a fresh session in arena room ROOM (reading): a
close between the fragments of a message (allowed: expected the close echoed, 1000), a
ping between fragments (allowed: pong, message taken), a ping of 126 bytes, a fragmented
ping, RSV bits, a continuation with no message begun, a new binary frame inside a
fragmented message, an unknown opcode (each expected 1002 `protocol error: malformed
framing`), a 64-bit length with the top bit set (1002 or 1009)."""
import os, sys, struct
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *
ROOM = os.environ.get("ROOM", "r22")

def raw_frame(first_byte, payload, mask=True):
    f = frame(payload, 0)
    return bytes([first_byte]) + f[1:]

p = env(intent(ROOM, 1))
cases = {
    "close between fragments": frame(p[:3], 2, fin=False) + frame(close_payload(1000), 8),
    "ping between fragments": frame(p[:3], 2, fin=False) + frame(b"hi", 9) + frame(p[3:], 0),
    "ping of 126 bytes": frame(b"x" * 126, 9),
    "fragmented ping": frame(b"ab", 9, fin=False),
    "RSV1 set": raw_frame(0x80 | 0x40 | 2, p),
    "continuation first": frame(p, 0),
    "binary inside fragments": frame(p[:3], 2, fin=False) + frame(p, 2),
    "opcode 3": frame(b"", 3),
    "length 2^63": bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 63) + os.urandom(4),
}
for name, data in cases.items():
    c = Conn("127.0.22.81"); c.recv_env(); c.send(join(ROOM, 1, "arena")); c.wait_for("joined")
    c.send_raw(data)
    seen = []
    while True:
        f = c.recv_frame(2)
        if f is None: break
        if f[0] == 10: seen.append("pong")
        if f[0] == 8: break
    print(f"{name:>24}: relay answered {c.closed}, eof {c.eof}, {('pongs %d' % seen.count('pong')) if seen else ''}")
    c.close()
