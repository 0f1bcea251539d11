"""Resumes of one session, again and again, while its connection is blocked in a write.
A relay room of ~3.5 MB (bigroom.py). The attacker's first connection (SO_RCVBUF 4 KiB)
joins it and the arena room ROOM (an honest.py there), and stops reading. Then every
EVERY s for SECS a new connection resumes the session (received=0), sends one intent
(seq counting up) and does not read either (READERS=1: it reads). Finally one connection
that reads resumes it: Welcome resumed, and the arena snapshot's last_input_seq. Then every
storm connection is read to its end in parallel: the close codes they got (expected: 4002
`replaced ...` for each one taken over, PROTOCOL.md "Resume"). Prints relay RSS, CPU,
tickrelay_connections and tickrelay_blocked_write_bytes before and after."""
import os, sys, time, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *
from bigroom import Fillers

ROOM = os.environ.get("ROOM", "r22"); EVERY = float(os.environ.get("EVERY", "0.2"))
SECS = float(os.environ.get("SECS", "10")); READERS = os.environ.get("READERS", "0") == "1"
BIG = os.environ.get("BIG", "1") == "1"; TAG = os.environ.get("TAG", str(os.getpid()))

peak = {"rss": 0, "blocked": 0}
def monitor(stop):
    while not stop.is_set():
        peak["rss"] = max(peak["rss"], rss_mib())
        try: peak["blocked"] = max(peak["blocked"], msum(metrics(), "tickrelay_blocked_write_bytes"))
        except Exception: pass
        time.sleep(0.25)

def main():
    room = f"bigr-{TAG}"
    f = Fillers([room]) if BIG else None
    m0 = metrics(); cpu0 = cpu_s(); rss0 = rss_mib()
    stop = threading.Event(); threading.Thread(target=monitor, args=(stop,), daemon=True).start()
    a = Conn("127.0.22.70", rcvbuf=4096); a.recv_env(); tok = a.welcome.resume_token; sid = a.welcome.session_id
    a.send(join(ROOM, 1, "arena"), *([join(room, 2, "relay")] if BIG else []))
    seq = 1; a.send(intent(ROOM, seq))
    time.sleep(0.5)
    conns = [a]; t0 = time.time(); refused = 0
    while time.time() < t0 + SECS:
        try:
            c = Conn(f"127.0.22.{71 + len(conns) % 8}", rcvbuf=None if READERS else 4096,
                     query=f"resume={tok}&received=0", timeout=5)
            seq += 1; c.send(intent(ROOM, seq)); conns.append(c)
            if c.status != 101: refused += 1
        except OSError as ex:
            refused += 1
        if READERS:
            for c in conns[-3:]:
                while c.recv_frame(0) is not None: pass
        time.sleep(EVERY)
    time.sleep(1)
    fin = Conn("127.0.22.79", query=f"resume={tok}&received=0")
    w = fin.recv_env(6); got = None; te = time.time()
    while time.time() < te + 6 and got is None and not fin.closed:
        e = fin.recv_env(1)
        for m in (e.messages if e else []):
            if m.WhichOneof("kind") == "state" and m.state.room == ROOM and m.state.baseline_tick == 0:
                got = m.state.last_input_seq
    wk = w.messages[0].welcome if w and w.messages and w.messages[0].WhichOneof("kind") == "welcome" else None
    print(f"session {sid}: {len(conns)-1} storm resumes in {SECS}s (refused at upgrade {refused}); final resume: "
          f"resumed={wk.resumed if wk else None} closed={fin.closed}; arena last_input_seq={got} (highest sent {seq})")
    codes = {}
    def rd(c):
        c.s.settimeout(8); c.drain_close(8)
        k = c.closed if c.closed else ("eof" if c.eof else "nothing")
        codes[str(k)] = codes.get(str(k), 0) + 1
    th = [threading.Thread(target=rd, args=(c,)) for c in conns]
    [t.start() for t in th]; [t.join(12) for t in th]
    print("storm connections' ends:", codes)
    fin.send_raw(frame(close_payload(1000), 8)); fin.drain_close(2)
    for c in conns: c.close()
    fin.close()
    time.sleep(1.5)
    m1 = metrics(); stop.set()
    print(f"relay cpu {cpu_s()-cpu0:.1f}s; rss {rss0:.0f} -> peak {peak['rss']:.0f} -> {rss_mib():.0f} MiB; "
          f"blocked_write_bytes peak {peak['blocked']/1e6:.1f} MB now {msum(m1,'tickrelay_blocked_write_bytes')/1e6:.1f}; "
          f"connections {m0.get('tickrelay_connections')} -> {m1.get('tickrelay_connections')}; "
          f"resumes +{msum(m1,'tickrelay_resumes_total')-msum(m0,'tickrelay_resumes_total')}")
    if f: f.close()

main()
