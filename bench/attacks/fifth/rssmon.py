"""RSS (MiB) of PID every 0.5 s for SECS. Usage: rssmon.py PID SECS"""
import sys, time
pid, secs = int(sys.argv[1]), float(sys.argv[2]); out = []; t0 = time.time()
while time.time() - t0 < secs:
    try:
        for l in open(f"/proc/{pid}/status"):
            if l.startswith("VmRSS"): out.append(int(l.split()[1]) // 1024)
    except FileNotFoundError:
        out.append("DEAD"); break
    time.sleep(0.5)
print("RSS MiB every 0.5 s:", out)
