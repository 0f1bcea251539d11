"""Samples the relay every INTERVAL s for SECS s: RSS, fds, threads, and /metrics gauges. Prints a line each sample
and writes CSV to OUT. Stops by itself. Usage: mon.py PID PORT SECS OUT [INTERVAL]"""
import os, sys, time, urllib.request
pid, port, secs, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
iv = float(sys.argv[5]) if len(sys.argv) > 5 else 3
KEYS = ["tickrelay_connections", "tickrelay_members", "tickrelay_rooms", "tickrelay_sessions_parked",
        "tickrelay_blocked_write_bytes", "tickrelay_connections_accepted_total", "tickrelay_resumes_total",
        "process_open_fds", "process_threads"]
def status():
    d = {}
    for l in open(f"/proc/{pid}/status"):
        k, _, v = l.partition(":")
        if k in ("VmRSS", "Threads", "RssAnon", "VmHWM"):
            d[k] = int(v.split()[0])
    d["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return d
def metrics():
    try:
        t = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    except Exception as e:
        return {}
    m = {}
    for l in t.splitlines():
        if l and not l.startswith("#"):
            k, _, v = l.rpartition(" ")
            try: m[k] = float(v)
            except ValueError: pass
    return m
t0 = time.time()
with open(out, "w") as f:
    f.write("t,rss_kb,anon_kb,hwm_kb,fds,threads," + ",".join(k.replace("tickrelay_", "") for k in KEYS) + "\n")
    while time.time() - t0 < secs:
        try:
            s = status()
        except FileNotFoundError:
            print("relay gone"); break
        m = metrics()
        row = [f"{time.time()-t0:.0f}", s["VmRSS"], s["RssAnon"], s["VmHWM"], s["fds"], s["Threads"]] + [int(m.get(k, -1)) for k in KEYS]
        f.write(",".join(map(str, row)) + "\n"); f.flush()
        print(" ".join(f"{h}={v}" for h, v in zip(["t","rss","anon","hwm","fds","thr","conn","mem","rooms","parked","blk","acc","res","pfds","pthr"], row)), flush=True)
        time.sleep(iv)
