"""Samples a process's CPU (% of one core) and RSS every second for SECS. Usage: mon.py PID SECS"""
import sys, time, json, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qc import cpu_secs, rss_kib, threads
pid, secs = int(sys.argv[1]), float(sys.argv[2])
rows = []
c0, t0 = cpu_secs(pid), time.time()
last_c, last_t = c0, t0
while time.time() - t0 < secs:
    time.sleep(1)
    try:
        c, t = cpu_secs(pid), time.time()
    except FileNotFoundError:
        rows.append("DEAD"); break
    rows.append((round((c - last_c) / (t - last_t) * 100), rss_kib(pid) // 1024))
    last_c, last_t = c, t
print("MON cpu%/rssMiB per s:", json.dumps(rows), flush=True)
