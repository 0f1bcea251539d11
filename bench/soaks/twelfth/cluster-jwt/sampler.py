#!/usr/bin/env python3
# Every INTERVAL s: /proc stats of each pid listed in /tmp/soak8/pids/*.pid,
# gauges of each metrics URL in /tmp/soak8/metrics_urls, Redis stats. Long CSV.
import os, sys, time, subprocess, urllib.request, glob, collections
OUT = sys.argv[1]; INTERVAL = float(sys.argv[2]); REDIS_PORT = sys.argv[3] if len(sys.argv) > 3 else ""
f = open(OUT, "a", buffering=1)
if f.tell() == 0: f.write("ts,source,measure,value\n")
def real(pid):
    try:
        if open(f"/proc/{pid}/comm").read().strip() == "timeout":
            ch = open(f"/proc/{pid}/task/{pid}/children").read().split()
            if ch: return int(ch[0])
    except Exception: pass
    return pid
def proc(pid):
    pid = real(pid)
    d = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"): d["rss_kb"] = int(line.split()[1])
            if line.startswith("Threads:"): d["threads"] = int(line.split()[1])
        d["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except Exception: pass
    return d
def gauges(url):
    out = {}
    try:
        txt = urllib.request.urlopen(url, timeout=3).read().decode()
    except Exception as e:
        return {"scrape_failed": 1}
    types = {}
    for line in txt.splitlines():
        if line.startswith("# TYPE"):
            p = line.split(); types[p[2]] = p[3]
    for line in txt.splitlines():
        if not line or line.startswith("#"): continue
        name_lbl, _, val = line.rpartition(" ")
        base = name_lbl.split("{")[0]
        if types.get(base) == "gauge" or base in ("tickrelay_sessions_moved_total","tickrelay_rooms_restored_total") or base.startswith("tickrelay_closes_total") or base == "tickrelay_resumes_total":
            out[name_lbl.replace(",", ";")] = val
    return out
while True:
    ts = int(time.time())
    for pf in sorted(glob.glob("/tmp/soak8/pids/*.pid")):
        name = os.path.basename(pf)[:-4]
        try: pid = int(open(pf).read().split()[0])
        except Exception: continue
        for k, v in proc(pid).items(): f.write(f"{ts},{name},{k},{v}\n")
    if os.path.exists("/tmp/soak8/metrics_urls"):
        for line in open("/tmp/soak8/metrics_urls"):
            if not line.strip(): continue
            name, url = line.split()
            for k, v in gauges(url).items(): f.write(f"{ts},{name},{k},{v}\n")
    if REDIS_PORT:
        def rc(*a):
            return subprocess.run(["redis-cli", "-p", REDIS_PORT, *a], capture_output=True, text=True, timeout=10).stdout
        try:
            f.write(f"{ts},redis,dbsize,{rc('dbsize').strip()}\n")
            for line in rc("info", "memory").splitlines():
                if line.startswith("used_memory:"): f.write(f"{ts},redis,used_memory,{line.split(':')[1].strip()}\n")
            c = collections.Counter(k.split(":")[1] if ":" in k else k for k in rc("--scan", "--pattern", "tickrelay:*").split())
            for k, v in sorted(c.items()): f.write(f"{ts},redis,keys_{k},{v}\n")
        except Exception as e:
            f.write(f"{ts},redis,error,1\n")
    time.sleep(INTERVAL)
