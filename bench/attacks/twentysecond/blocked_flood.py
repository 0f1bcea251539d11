"""Inputs (and optionally WebSocket pings) flooded while the relay's write to us is
blocked. The attacker (SO_RCVBUF 4 KiB, 127.0.22.50) joins the honest member's arena
room ROOM and BIGN relay rooms of ~3.5 MB (bigroom.py), so their full snapshots block the
relay's write, stops reading, and sends intents to ROOM at RATE/s for SECS (PINGS=N: also
N WebSocket pings a second; BAD=1: intents to a room it is not in, each answered with an
Error; TAIL=text|garbage|toobig|unmasked: one faulty frame first). Then (RESUME=1) it resumes with received=0 and reads: the arena snapshot's
last_input_seq against the highest seq it sent. Prints relay RSS/CPU peaks, when the
relay ended the connection, and the relay log's close line. Expected (PROTOCOL.md):
over the message limit for 1 s -> 1008; a write blocked 5 s -> 4501."""
import os, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *
from bigroom import Fillers

ROOM = os.environ.get("ROOM", "r22"); BIGN = int(os.environ.get("BIGN", "2"))
RATE = float(os.environ.get("RATE", "40")); SECS = float(os.environ.get("SECS", "12"))
PINGS = float(os.environ.get("PINGS", "0")); RESUME = os.environ.get("RESUME", "1") == "1"
BAD = os.environ.get("BAD", "0") == "1"; TAIL = os.environ.get("TAIL", ""); TAG = os.environ.get("TAG", str(os.getpid()))
LOG = os.environ.get("LOG", "/tmp/atk22/relay.log")

peak = {"rss": 0}
def monitor(stop):
    while not stop.is_set():
        peak["rss"] = max(peak["rss"], rss_mib()); time.sleep(0.2)

def main():
    bigs = [f"big-{TAG}-{i}" for i in range(BIGN)]
    fillers = Fillers(bigs, m=int(os.environ.get("M", "60"))) if BIGN else None
    stop = threading.Event(); threading.Thread(target=monitor, args=(stop,), daemon=True).start()
    cpu0, rss0 = cpu_s(), rss_mib()
    a = Conn("127.0.22.50", rcvbuf=4096)
    a.recv_env(); token = a.welcome.resume_token; sid = a.welcome.session_id
    a.send(join(ROOM, 1, "arena"), *[join(b, 2 + i, "relay") for i, b in enumerate(bigs)])
    time.sleep(0.3)
    if TAIL:
        # One faulty frame once the write is blocked (PROTOCOL.md: text 1003, not an
        # envelope 1007, over max_message_bytes 1009, unmasked 1002), then inputs at RATE.
        a.send(intent(ROOM, 1)); 
        bad = {"text": frame(b"hello", 1), "garbage": frame(b"\xff\xff\xff\xff", 2),
               "toobig": frame(b"\x00" * 20000, 2), "unmasked": frame(env(intent(ROOM, 2)), 2, mask=False)}[TAIL]
        a.send_raw(bad)
    t0 = time.time(); seq = 2 if TAIL else 0; failed = None; pings = 0
    nxt = t0; nping = t0
    target = "not-joined" if BAD else ROOM
    while time.time() < t0 + SECS:
        now = time.time()
        try:
            if now >= nxt:
                seq += 1; nxt += 1 / RATE
                a.send(intent(target, seq, 1, 0))
            if PINGS and now >= nping:
                nping += 1 / PINGS; pings += 1
                a.send_raw(frame(b"pp", 9))
        except OSError as ex:
            failed = (time.time() - t0, repr(ex)); break
        time.sleep(max(0.0, min(nxt, nping if PINGS else nxt) - time.time()))
    cpu1 = cpu_s()
    print(f"attacker session {sid}: sent {seq} intents, {pings} pings in {time.time()-t0:.1f}s; send failed: {failed}")
    time.sleep(1.5)
    lines = [l[11:].strip() for l in open(LOG) if f"session={sid} " in l and "closed" in l]
    print("relay log:", lines[-1][60:] if lines else "(no close line yet)")
    a.close()
    if RESUME:
        r = Conn("127.0.22.51", query=f"resume={token}&received=0")
        w = r.recv_env(5)
        got = None; t1 = time.time()
        while time.time() < t1 + 5 and got is None:
            e = r.recv_env(1)
            if e is None:
                if r.closed or r.eof: break
                continue
            for m in e.messages:
                if m.WhichOneof("kind") == "state" and m.state.room == ROOM and m.state.baseline_tick == 0:
                    got = m.state.last_input_seq
        print(f"resume: welcome resumed={w.messages[0].welcome.resumed if w else None} closed={r.closed}; "
              f"arena full snapshot last_input_seq={got} (highest sent {seq})")
        r.send_raw(frame(close_payload(1000), 8)); r.drain_close(2); r.close()
    stop.set()
    print(f"relay cpu {cpu1-cpu0:.2f}s during the flood; rss {rss0:.0f} -> peak {peak['rss']:.0f} -> {rss_mib():.0f} MiB")
    if fillers: fillers.close()

main()
