"""A close frame sent while the relay is writing a large snapshot to us. A relay room of
~3.5 MB (bigroom.py, M fillers); a watcher member in it reads everything and notes
presence. The attacker (SO_RCVBUF 4 KiB) joins the room, so its full snapshot's write
blocks; after DELAY s it sends a close frame with CODE (no reading meanwhile), and after
READ_AFTER s more it reads everything: the rest of the snapshot, then (expected,
PROTOCOL.md "Close codes") the relay's close echoing CODE, reason `normal closure` for
1000 or `closed by the client`. The watcher should see the attacker LEFT at once for
1000 (its session ends), AWAY after ~1 s and LEFT after the 20 s grace otherwise.
FAULT=text: a text frame instead of the close (expected: 1003, the session ended, the
watcher seeing LEFT). Also prints the relay log's close line and tickrelay_connection_ends_total."""
import os, sys, time, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *
from bigroom import Fillers

CODE = int(os.environ.get("CODE", "1000")); FAULT = os.environ.get("FAULT", ""); DELAY = float(os.environ.get("DELAY", "0.5"))
READ_AFTER = float(os.environ.get("READ_AFTER", "2")); WATCH = float(os.environ.get("WATCH", "6"))
LOG = os.environ.get("LOG", "/tmp/atk22/relay.log"); TAG = os.environ.get("TAG", str(os.getpid()))
room = f"bigc-{TAG}"

def ends():
    m = metrics(); return {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("tickrelay_connection_ends_total")}

def main():
    f = Fillers([room], m=int(os.environ.get("M", "60")))
    w = Conn("127.0.22.60"); w.recv_env(); w.send(join(room, 1, "relay")); w.wait_for("joined", 10)
    pres = []
    stop = threading.Event()
    def watch():
        while not stop.is_set():
            e = w.recv_env(0.1)
            if e:
                for m in e.messages:
                    if m.WhichOneof("kind") == "presence":
                        pres.append((time.time(), m.presence.member.member_id, pb.PresenceChange.Name(m.presence.change)))
    threading.Thread(target=watch, daemon=True).start()
    e0 = ends()
    a = Conn("127.0.22.61", rcvbuf=4096)
    a.recv_env(); sid = a.welcome.session_id
    a.send(join(room, 1, "relay"))
    time.sleep(DELAY)
    tc = time.time()
    a.send_raw(frame(b"hello", 1) if FAULT == "text" else frame(close_payload(CODE, b"bye"), 8))
    time.sleep(READ_AFTER)
    t1 = time.time(); n0 = a.bytes_in
    a.drain_close(8)
    t2 = time.time()
    # eof after the close?
    eof_at = None
    while time.time() < t2 + 2 and not a.eof:
        a._fill(0.2)
    if a.eof: eof_at = time.time() - tc
    print(f"{'FAULT text' if FAULT else 'CODE %d' % CODE}: read {(a.bytes_in-n0)/1e6:.2f} MB after the close; relay close frame {a.closed} "
          f"{'at %.2fs after our close' % (t2-tc) if a.closed else ''}; eof {eof_at and round(eof_at,2)}")
    time.sleep(max(0, WATCH - (time.time() - tc)))
    stop.set()
    mine = [(round(t - tc, 2), ch) for t, mid, ch in pres if mid == sid]
    print(f"watcher saw for member {sid}: {mine}")
    lines = [l[11:].strip() for l in open(LOG) if f"session={sid} " in l and "closed" in l]
    print("relay log:", lines[-1][60:] if lines else "(none)")
    e1 = ends(); print("connection ends +", {k: e1[k] - e0.get(k, 0) for k in e1 if e1[k] != e0.get(k, 0)})
    print(f"relay rss {rss_mib():.0f} MiB")
    a.close(); w.close(); f.close()

main()
