"""Close frames a client may not send (RFC 6455 §7.4: 1005, 1006, 1015 and codes below
1000 or 1016-2999 must not appear in a close frame; a 1-byte close payload and a reason
that is not UTF-8 are protocol errors, §5.5.1/§7.1.6). For each: a fresh session in arena
room ROOM sends the close and reads the relay's answer. Expected: the relay answers such a
frame as malformed framing (1002 `protocol error: malformed framing`, PROTOCOL.md "Close
codes"), and in no case echoes a reserved code back."""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *
ROOM = os.environ.get("ROOM", "r22")
cases = [("1000", close_payload(1000)), ("empty", b""), ("1-byte", b"\x03"), ("999", close_payload(999)),
         ("1004", close_payload(1004)), ("1005", close_payload(1005)), ("1006", close_payload(1006)),
         ("1015", close_payload(1015)), ("1016", close_payload(1016)), ("2999", close_payload(2999)),
         ("3000", close_payload(3000)), ("4999", close_payload(4999)), ("5000", close_payload(5000)),
         ("65535", close_payload(65535)), ("1000+bad utf8", close_payload(1000, b"\xff\xfe")),
         ("1000+126B", close_payload(1000, b"x" * 123))]
for name, payload in cases:
    c = Conn("127.0.22.80"); c.recv_env(); sid = c.welcome.session_id
    c.send(join(ROOM, 1, "arena")); c.wait_for("joined")
    try:
        c.send_raw(frame(payload, 8))
    except Exception as ex:
        print(name, "send:", ex); continue
    got = c.drain_close(3)
    print(f"client close {name:>14}: relay answered {got}, eof {c.eof}")
    c.close()
