"""Numbered messages across take-overs. A victim session in arena room ROOM sends a Ping
message every 30 ms (each answered by a numbered Pong) and reads, keeping the last numbered
message it got. CYCLES times: it stops reading for STALL s (SO_RCVBUF 4 KiB; the relay keeps
writing, the flusher right after each tick), then resumes on a new connection with
received=<last>, while the old one is still open, and carries on there. Expected
(PROTOCOL.md "Resume"): the old connection is closed with 4002; on the new one the numbered
messages go on from last+1 without a gap (first_seq), every Ping gets exactly one Pong, and
the arena snapshot's last_input_seq covers every intent sent
before the stall. BIG=1: the victim is also in a relay room whose state changes by ~800 KB/s
(bigroom.Fillers with churn), so the old connection's write is blocked when it is taken over. Prints gaps, duplicate/missing pongs, old connections' ends."""
import os, sys, time, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *
ROOM = os.environ.get("ROOM", "r22"); CYCLES = int(os.environ.get("CYCLES", "15"))
STALL = float(os.environ.get("STALL", "0.5")); RUN = float(os.environ.get("RUN", "1.0"))

st = {"last": 0, "gaps": [], "pongs": {}, "acked": 0, "repeats": 0}

def consume(e):
    numbered = [m for m in e.messages if m.WhichOneof("kind") not in ("state", "welcome")]
    if numbered:
        first = e.first_seq
        if first > st["last"] + 1:
            st["gaps"].append((st["last"], first))
        for i, m in enumerate(numbered):
            s = first + i
            if s <= st["last"]:
                st["repeats"] += 1; continue
            st["last"] = s
            if m.WhichOneof("kind") == "pong":
                st["pongs"][m.pong.nonce] = st["pongs"].get(m.pong.nonce, 0) + 1
    for m in e.messages:
        if m.WhichOneof("kind") == "state" and m.state.room == ROOM:
            st["acked"] = max(st["acked"], m.state.last_input_seq)

def main():
    fl = None
    if os.environ.get("BIG") == "1":
        from bigroom import Fillers
        fl = Fillers(["tc-churn"], m=10, ents=1, fb=50, churn=True, churn_ms=10, churn_b=8000)
    c = Conn("127.0.22.90", rcvbuf=4096); w = c.recv_env(); tok = c.welcome.resume_token
    c.send(join(ROOM, 1, "arena"), *([join("tc-churn", 2, "relay")] if fl else []))
    nonce = 0; seq = 0; olds = []; sent_before_stall = []
    for cyc in range(CYCLES + 1):
        end = time.time() + RUN; nxt = time.time()
        while time.time() < end:
            if time.time() >= nxt:
                nxt += 0.05; nonce += 1; seq += 1
                c.send(cm(ping=pb.Ping(nonce=nonce)), intent(ROOM, seq))
            e = c.recv_env(0.005)
            if e: consume(e)
        if cyc == CYCLES: break
        # stall: keep sending (inputs and pings), read nothing
        end = time.time() + STALL
        while time.time() < end:
            nonce += 1; seq += 1
            try: c.send(cm(ping=pb.Ping(nonce=nonce)), intent(ROOM, seq))
            except OSError: break
            time.sleep(0.05)
        sent_before_stall.append(seq)
        olds.append(c)
        c = Conn("127.0.22.91", rcvbuf=4096, query=f"resume={tok}&received={st['last']}")
    # drain the last connection a while
    end = time.time() + 2
    while time.time() < end:
        e = c.recv_env(0.1)
        if e: consume(e)
    ends = {}
    def rd(o):
        o.drain_close(4); k = str(o.closed if o.closed else ("eof" if o.eof else "nothing")); ends[k] = ends.get(k, 0) + 1
    th = [threading.Thread(target=rd, args=(o,)) for o in olds]; [t.start() for t in th]; [t.join(6) for t in th]
    missing = [n for n in range(1, nonce + 1) if n not in st["pongs"]]
    dups = [n for n, k in st["pongs"].items() if k > 1]
    print(f"{CYCLES} take-overs (stall {STALL}s): last numbered {st['last']}, gaps {st['gaps'][:5]} ({len(st['gaps'])}), "
          f"repeats skipped {st['repeats']}; pings {nonce}: missing pongs {len(missing)} {missing[:8]}, duplicated {len(dups)}; "
          f"intents {seq}, last_input_seq {st['acked']}; old connections' ends {ends}")
    c.send_raw(frame(close_payload(1000), 8)); c.drain_close(2); c.close()
    for o in olds: o.close()
    if fl: fl.close()

main()
