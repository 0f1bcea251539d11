"""Per-thread CPU of a process over SECS: prints thread name and % of one core. Usage: threads.py PID SECS"""
import os, sys, time
pid, secs = int(sys.argv[1]), float(sys.argv[2])
def snap():
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            s = open(f"/proc/{pid}/task/{t}/stat").read()
            name = s[s.index("(") + 1:s.rindex(")")]
            f = s.rsplit(")", 1)[1].split()
            out[t] = (name, int(f[11]) + int(f[12]))
        except Exception:
            pass
    return out
a = snap(); time.sleep(secs); b = snap()
hz = os.sysconf("SC_CLK_TCK")
rows = sorted(((b[t][1] - a.get(t, (0, b[t][1]))[1]) / hz / secs * 100, b[t][0]) for t in b)
print("THREADS", [(n, round(c)) for c, n in rows[::-1] if c > 0.5])
