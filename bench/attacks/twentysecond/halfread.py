"""Many connections that read slowly or not at all, in busy arena rooms. N sessions from
ADDRS addresses 127.0.24.x (SO_RCVBUF RCVBUF) join arena rooms hr-TAG-0..ROOMS-1 (N/ROOMS
members each, max 64), each sending an intent every 1/INPUT_HZ s (staggered; 0: none), and
then read SLOW bytes a second each (0: never read). HOLD s. An honest.py should run in
hr-TAG-0 (ROOM=hr-TAG-0). Prints relay CPU (cores) and RSS every 2 s, and at the end the
closes by code, resumes/parked, blocked write bytes and superseded frames from /metrics."""
import os, sys, time, select, random
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *

N = int(os.environ.get("N", "1000")); ROOMS = int(os.environ.get("ROOMS", "20"))
ADDRS = int(os.environ.get("ADDRS", "8")); RCVBUF = int(os.environ.get("RCVBUF", "4096"))
SLOW = float(os.environ.get("SLOW", "0")); HOLD = float(os.environ.get("HOLD", "30"))
INPUT_HZ = float(os.environ.get("INPUT_HZ", "0")); TAG = os.environ.get("TAG", "a")

def main():
    m0 = metrics(); t0 = time.time()
    conns = []
    for i in range(N):
        try:
            c = Conn(f"127.0.24.{i % ADDRS + 1}", rcvbuf=RCVBUF, timeout=10)
        except OSError as ex:
            print("connect failed", i, ex); break
        c.room = f"hr-{TAG}-{i % ROOMS}"; c.seq = 0
        c.send(join(c.room, 1, "arena")); c.s.setblocking(False)
        conns.append(c)
    print(f"{len(conns)} connections up in {time.time()-t0:.1f}s; rss {rss_mib():.0f} MiB", flush=True)
    cpu_last, t_last = cpu_s(), time.time(); t1 = time.time(); nxt_print = t1 + 2
    budget = {id(c): 0.0 for c in conns}
    dead = set(); sent = 0
    nxt_in = {id(c): t1 + random.random() / max(INPUT_HZ, 1e-9) for c in conns} if INPUT_HZ else {}
    while time.time() < t1 + HOLD:
        now = time.time()
        for c in conns:
            if id(c) in dead: continue
            if INPUT_HZ and now >= nxt_in[id(c)]:
                nxt_in[id(c)] += 1 / INPUT_HZ; c.seq += 1
                try: c.s.send(frame(env(intent(c.room, c.seq)))); sent += 1
                except BlockingIOError: pass
                except OSError: dead.add(id(c))
            if SLOW:
                budget[id(c)] += SLOW * 0.1
                if budget[id(c)] >= 1:
                    try:
                        d = c.s.recv(int(budget[id(c)]))
                        budget[id(c)] -= len(d) if d else 0
                        if not d: dead.add(id(c))
                    except BlockingIOError: pass
                    except OSError: dead.add(id(c))
        if now >= nxt_print:
            cpu = cpu_s(); print(f"t={now-t1:4.0f}s relay {(cpu-cpu_last)/(now-t_last):.2f} cores rss {rss_mib():.0f} MiB dead {len(dead)}", flush=True)
            cpu_last, t_last = cpu, now; nxt_print += 2
        time.sleep(max(0, 0.1 - (time.time() - now)))
    m1 = metrics()
    d = lambda k: m1.get(k, 0) - m0.get(k, 0)
    closes = {k.split('"')[1]: int(d(k)) for k in m1 if k.startswith("tickrelay_closes_total") and d(k)}
    print(f"closes {closes}; resumes {d('tickrelay_resumes_total'):.0f}; parked now {m1.get('tickrelay_sessions_parked')}; "
          f"blocked_write_bytes {m1.get('tickrelay_blocked_write_bytes',0)/1e6:.1f} MB; superseded +{d('tickrelay_frames_superseded_total'):.0f}; "
          f"intents sent {sent}; connections {m1.get('tickrelay_connections')}")
    for c in conns: c.close()

main()
