"""Does a ping hold up the inputs behind it while the relay's write to us is blocked?
BIGN relay rooms of ~3.5 MB (bigroom.py). The victim (SO_RCVBUF 4 KiB) joins them and arena room
ps-TAG, and downloads their full snapshots at READ bytes/s (default 1 MB/s: ~3.6 s, under
the 5 s slow-consumer limit). At 0.6 s it sends PING (`msg`: a Ping message in its own
envelope, as the Rust client does; `ws`: a WebSocket ping frame; `none`), at 0.8 s an
intent the arena refuses (one byte: INVALID_INTENT), whose refusal is counted in
tickrelay_inputs_refused_total when the room applies it. Prints how long after sending
it the relay applied it, and when the snapshot download ended. Expected: applied at the
next tick (~33 ms) whatever came before it, as intents are without the ping."""
import os, sys, time, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *
from bigroom import Fillers
PING = os.environ.get("PING", "msg"); READ = float(os.environ.get("READ", "1000000"))
TAG = os.environ.get("TAG", str(os.getpid()))

def refused():
    return msum(metrics(), "tickrelay_inputs_refused_total")

def main():
    bigs = [f"psbig-{TAG}-{i}" for i in range(int(os.environ.get("BIGN", "1")))]; big = bigs[0]; arena = f"ps-{TAG}"
    f = Fillers(bigs, m=int(os.environ.get("M", "60")))
    v = Conn("127.0.22.95", rcvbuf=4096); v.recv_env()
    v.send(join(arena, 1, "arena")); v.wait_for("joined")
    time.sleep(0.3)
    tq = time.time() + 0.3
    while time.time() < tq and v.recv_frame(0.05) is not None: pass
    r0 = refused()
    done = {}
    def reader():
        t0 = time.time(); got = 0
        v.s.setblocking(False)
        while time.time() < t0 + 10:
            allow = READ * (time.time() - t0) - got
            if allow > 0:
                try:
                    d = v.s.recv(int(min(allow, 65536)) or 1); got += len(d); v.buf += d
                except BlockingIOError: pass
                while True:
                    fr = v._parse()
                    if fr is None: break
                    if fr[0] == 2:
                        e = pb.ServerEnvelope(); e.ParseFromString(fr[1])
                        for m in e.messages:
                            if m.WhichOneof("kind") == "state" and m.state.room in bigs and m.state.baseline_tick == 0:
                                done.setdefault(m.state.room, time.time())
                                if len([k for k in done if k in bigs]) == len(bigs): done.setdefault("snapshot", time.time())
                    if fr[0] == 8: done.setdefault("closed", (time.time(), fr[1][:2]))
            time.sleep(0.005)
    t_join = time.time()
    v.send(*[join(b, 2 + i, "relay") for i, b in enumerate(bigs)])
    th = threading.Thread(target=reader, daemon=True); th.start()
    time.sleep(0.6)
    if PING == "msg": v.send(cm(ping=pb.Ping(nonce=1)))
    elif PING == "ws": v.send_raw(frame(b"pp", 9))
    time.sleep(0.2)
    t_bad = time.time(); v.send(cm(input=pb.Input(room=arena, seq=1, intent=b"\x01")))
    applied = None
    while time.time() < t_bad + 9:
        if refused() > r0: applied = time.time(); break
        time.sleep(0.02)
    th.join(11)
    snap = done.get("snapshot")
    print(f"PING={PING}: bad intent applied {('%.0f ms' % ((applied - t_bad) * 1000)) if applied else 'never (9 s)'} after sending; "
          f"snapshot downloaded at {('%.2f s' % (snap - t_join)) if snap else 'never'} after the join; closed {done.get('closed')}")
    v.close(); f.close()

main()
