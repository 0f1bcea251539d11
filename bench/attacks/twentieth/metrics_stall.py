"""Does a /metrics flood from one anonymous address stall other clients' state frames?
For each phase (idle, MPATH=/healthz control, /metrics with CONNS keep-alive connections,
DEPTH pipelined requests per write) an honest arena member (honest.py, its own process)
counts its frames for SECS s; the relay's tickrelay_frames_superseded_total and CPU are
read around it. PORT (7681), MPORT (/metrics port when apart: --metrics-listen), TR_PID, SECS (10), CONNS list ("1,4"), DEPTH (100)."""
import os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib20 import metric, cpu_secs, PORT
HERE = os.path.dirname(os.path.abspath(__file__)); PY = sys.executable
PID = int(os.environ["TR_PID"]); SECS = os.environ.get("SECS", "10")
MPORT = int(os.environ.get("MPORT", PORT))   # where /metrics is served (--metrics-listen)
def phase(name, path=None, conns=0):
    s0, c0 = metric(MPORT, "tickrelay_frames_superseded_total"), cpu_secs(PID)
    h = subprocess.Popen([PY, os.path.join(HERE, "honest.py")], env=dict(os.environ, SECS=SECS), stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    fl = None
    if path:
        fl = subprocess.Popen([PY, os.path.join(HERE, "metrics_pipe.py")], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, MPATH=path, CONNS=str(conns), SECS=str(float(SECS) - 1)))
    out = h.communicate(timeout=60)[0].strip()
    flood = fl.communicate(timeout=60)[0].strip() if fl else ""
    s1, c1 = metric(MPORT, "tickrelay_frames_superseded_total"), cpu_secs(PID)
    print(f"== {name}\n  {out}\n  superseded frames +{s1-s0:.0f}; relay CPU {c1-c0:.1f}s" + (f"\n  flood: {flood}" if flood else ""), flush=True)
phase("idle")
ns = [int(n) for n in os.environ.get("CONNS", "1,4").split(",")]
phase(f"/healthz x{max(ns)}", "/healthz", max(ns))
for n in ns:
    phase(f"/metrics x{n}", "/metrics", int(n))
