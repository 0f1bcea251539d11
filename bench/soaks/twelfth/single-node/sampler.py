#!/usr/bin/env python3
"""Samples relay A (plain, 7710) and B (TLS+QUIC, 7711) every INTERVAL s into soak.csv."""
import os, ssl, subprocess, sys, time, urllib.request
INTERVAL = float(os.environ.get("INTERVAL", "30"))
OUT = "/tmp/soak7/soak.csv"
RELAYS = {
    "A": ("http://127.0.0.1:7710", None, 7710),
    "B": ("https://localhost:7711", ssl.create_default_context(cafile="/tmp/soak7/b/tickrelay-dev-cert.pem"), 7711),
}
GAUGES = ["tickrelay_connections", "tickrelay_members", "tickrelay_rooms", "tickrelay_sessions_parked",
          "tickrelay_connections_accepted_total", "tickrelay_resumes_total", "tickrelay_messages_replayed_total",
          'tickrelay_closes_total{code="1000"}', 'tickrelay_closes_total{code="1001"}',
          'tickrelay_closes_total{code="4501"}', 'tickrelay_closes_total{code="4502"}',
          'tickrelay_closes_total{code="4504"}', 'tickrelay_closes_total{code="4002"}',
          "tickrelay_room_panics_total", "tickrelay_tick_overruns_total", "tickrelay_handshakes_shed_total",
          "tickrelay_sockets_refused_total", "tickrelay_messages_rate_limited_total", "tickrelay_frames_superseded_total",
          "tickrelay_ticks_total"]
PROC = ["rss_kib", "hwm_kib", "fds", "threads", "tcp_estab", "tcp_closewait", "tcp_timewait", "tcp_other", "healthz"]
def pid_of(port):
    out = subprocess.run(["pgrep", "-f", f"^/work/main/target/release/tickrelay .*127.0.0.1:{port}"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None
def proc(pid):
    d = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, v = line.split(":", 1)
            if k == "VmRSS": d["rss_kib"] = int(v.split()[0])
            if k == "VmHWM": d["hwm_kib"] = int(v.split()[0])
            if k == "Threads": d["threads"] = int(v)
        d["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except Exception as e:
        pass
    return d
def tcp(port):
    out = subprocess.run(["ss", "-tanH", f"( sport = :{port} )"], capture_output=True, text=True).stdout
    c = {"tcp_estab": 0, "tcp_closewait": 0, "tcp_timewait": 0, "tcp_other": 0}
    for line in out.splitlines():
        st = line.split()[0]
        if st == "LISTEN": continue
        k = {"ESTAB": "tcp_estab", "CLOSE-WAIT": "tcp_closewait", "TIME-WAIT": "tcp_timewait"}.get(st, "tcp_other")
        c[k] += 1
    return c
def metrics(base, ctx):
    vals, health = {}, ""
    try:
        txt = urllib.request.urlopen(base + "/metrics", timeout=5, context=ctx).read().decode()
        for line in txt.splitlines():
            if line.startswith("#") or not line: continue
            k, _, v = line.rpartition(" ")
            vals[k] = v
    except Exception as e:
        vals["err"] = str(e)
    try:
        health = urllib.request.urlopen(base + "/healthz", timeout=5, context=ctx).read().decode().strip()
    except Exception as e:
        health = "ERR:" + type(e).__name__
    return vals, health
cols = ["ts", "elapsed_s", "phase", "relay", "pid"] + PROC + [g.replace('tickrelay_', '').replace('{code="', '_').replace('"}', '') for g in GAUGES]
new = not os.path.exists(OUT)
f = open(OUT, "a")
if new: f.write(",".join(cols) + "\n")
t0 = float(open("/tmp/soak7/t0").read()) if os.path.exists("/tmp/soak7/t0") else time.time()
while True:
    now = time.time()
    phase = open("/tmp/soak7/phase").read().strip() if os.path.exists("/tmp/soak7/phase") else "?"
    for name, (base, ctx, port) in RELAYS.items():
        pid = pid_of(port)
        p = proc(pid) if pid else {}
        p.update(tcp(port))
        m, h = metrics(base, ctx)
        p["healthz"] = h
        row = [time.strftime("%H:%M:%S", time.localtime(now)), f"{now - t0:.0f}", phase, name, str(pid)] + [str(p.get(k, "")) for k in PROC] + [m.get(g, "") for g in GAUGES]
        f.write(",".join(row) + "\n")
    f.flush()
    time.sleep(max(0, INTERVAL - (time.time() - now)))
