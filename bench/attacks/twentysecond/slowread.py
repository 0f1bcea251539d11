"""Slow readers in a busy relay room: the relay's writes to them are cut off part way
again and again (a frame begun by the flusher, finished by the loop). W writer sessions
(bigroom.Fillers with CHURN: each rewrites FB bytes of one field every CHURN_MS ms,
round robin) keep the room changing; S readers (SO_RCVBUF 4 KiB) read RATE bytes a second
each in random-size pieces for SECS and check the stream: every frame is a binary frame
holding a valid ServerEnvelope, state ticks increase, every delta's baseline_tick is a
tick that reader received (or 0, a full snapshot), and the numbered messages
(Pongs to a Ping message every PING_EVERY s) count on from first_seq without gaps. Expected: consistent streams, state
frames superseded (never queued), 4501 only for a write blocked 5 s. Run honest.py with
TYPE=relay INPUTS=0 ROOM=busy-TAG beside it."""
import os, sys, time, random, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *
from bigroom import Fillers

S = int(os.environ.get("S", "20")); RATE = float(os.environ.get("RATE", "8000"))
SECS = float(os.environ.get("SECS", "20")); TAG = os.environ.get("TAG", "a")
W = int(os.environ.get("W", "20")); PING_EVERY = float(os.environ.get("PING_EVERY", "0.5")); FB = int(os.environ.get("FB", "50"))
room = f"busy-{TAG}"

def main():
    f = Fillers([room], m=W, ents=1, fb=FB, churn=True, churn_ms=int(os.environ.get("CHURN_MS", "20")), churn_b=int(os.environ.get("CHURN_B", "1000")))
    m0 = metrics(); cpu0 = cpu_s()
    rs = []
    for i in range(S):
        c = Conn(f"127.0.25.{i % 4 + 1}", rcvbuf=4096); c.recv_env(); c.send(join(room, 1, "relay"))
        c.ticks = set(); c.last = 0; c.bad = []; c.frames = 0; c.full = 0; c.s.setblocking(False); c.got = 0.0; c.nseq = None; c.gaps = 0; c.pings = 0; c.pongs_got = 0
        rs.append(c)
    t0 = time.time()
    next_ping = t0
    while time.time() < t0 + SECS:
        ping_now = time.time() >= next_ping
        if ping_now: next_ping += PING_EVERY
        for c in rs:
            if c.eof or c.closed: continue
            if ping_now and PING_EVERY:
                c.pings += 1
                try:
                    c.s.setblocking(True); c.s.settimeout(0.05); c.send(cm(ping=pb.Ping(nonce=c.pings))); c.s.setblocking(False)
                except OSError:
                    c.s.setblocking(False)
            c.got += RATE * 0.05
            if c.got < 1: continue
            want = random.randint(1, max(1, int(c.got)))
            try:
                d = c.s.recv(want)
            except BlockingIOError:
                continue
            except OSError:
                c.eof = True; continue
            if not d: c.eof = True; continue
            c.got -= len(d); c.buf += d
            while True:
                fr = c._parse()
                if fr is None: break
                op, data = fr
                if op == 8:
                    c.closed = (int.from_bytes(data[:2], "big"), data[2:].decode("utf8", "replace")); break
                if op == 9:
                    c.s.setblocking(True); c.send_raw(frame(data, 10)); c.s.setblocking(False); continue
                if op != 2:
                    c.bad.append(f"opcode {op}"); continue
                e = pb.ServerEnvelope()
                try:
                    e.ParseFromString(data)
                except Exception as ex:
                    c.bad.append(f"undecodable {len(data)}B"); continue
                numbered = [m for m in e.messages if m.WhichOneof("kind") not in ("state", "welcome")]
                if numbered:
                    if c.nseq is not None and e.first_seq != c.nseq:
                        c.bad.append(f"first_seq {e.first_seq} expected {c.nseq}")
                    c.nseq = e.first_seq + len(numbered)
                c.pongs_got += sum(1 for m in numbered if m.WhichOneof("kind") == "pong")
                for m in e.messages:
                    if m.WhichOneof("kind") != "state" or m.state.room != room: continue
                    st = m.state; c.frames += 1
                    if st.tick <= c.last: c.bad.append(f"tick {st.tick} after {c.last}")
                    if st.baseline_tick == 0: c.full += 1
                    elif st.baseline_tick not in c.ticks: c.bad.append(f"baseline {st.baseline_tick} not received")
                    c.ticks.add(st.tick); c.last = st.tick
        time.sleep(0.05)
    cpu1 = cpu_s(); m1 = metrics()
    d = lambda k: m1.get(k, 0) - m0.get(k, 0)
    fr = sorted(c.frames for c in rs)
    print(f"{S} slow readers at {RATE:.0f} B/s for {SECS}s: frames min/median/max {fr[0]}/{fr[len(fr)//2]}/{fr[-1]} "
          f"(~{(fr[len(fr)//2])/SECS:.1f}/s); full snapshots {sum(c.full for c in rs)}; "
          f"stream faults {sum(len(c.bad) for c in rs)} {[b for c in rs for b in c.bad][:5]}; "
          f"pongs {sum(c.pongs_got for c in rs)}/{sum(c.pings for c in rs)} pings; "
          f"closed {[c.closed for c in rs if c.closed][:3]} ({sum(1 for c in rs if c.closed)}), eof {sum(1 for c in rs if c.eof)}")
    closes = {k.split('"')[1]: int(d(k)) for k in m1 if k.startswith("tickrelay_closes_total") and d(k)}
    print(f"relay {(cpu1-cpu0)/SECS:.2f} cores, rss {rss_mib():.0f} MiB; superseded +{d('tickrelay_frames_superseded_total'):.0f}; closes {closes}")
    for c in rs: c.close()
    f.close()

main()
