#!/usr/bin/env python3
"""Runs the fake relay with one scenario and the Rust bot fleet against it, samples the
bots' RSS and CPU from /proc, and prints what happened. Stops by itself (< 60 s).

    python3 run_bots.py SCENARIO [--bots-secs 20] [--members 1] [--port 7601]
                        [--limit-as-gb 8] [--arg K=V ...] [--bots-arg=--flag ...]

The bots run with --duration-secs BOTS_SECS; if they have not exited WATCH seconds
after that, they are reported as hung and killed (by their pid).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BOTS = os.path.normpath(os.path.join(HERE, "..", "..", "..", "target", "release", "tickrelay-bots"))
CLK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        with open("/proc/%d/stat" % pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        cpu = (int(parts[11]) + int(parts[12])) / CLK
        return rss, cpu
    except (FileNotFoundError, StopIteration, ProcessLookupError):
        return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("--port", type=int, default=7601)
    p.add_argument("--bots-secs", type=float, default=20)
    p.add_argument("--watch", type=float, default=8, help="seconds after the bots' end before calling them hung")
    p.add_argument("--members", type=int, default=1)
    p.add_argument("--input-rate", type=float, default=5)
    p.add_argument("--limit-as-gb", type=float, default=0, help="RLIMIT_AS for the bots (0: none)")
    p.add_argument("--arg", action="append", default=[])
    p.add_argument("--bots-arg", action="append", default=[])
    a = p.parse_args()
    total = a.bots_secs + a.watch + 2
    assert total <= 56, "must stop within 60 s"
    fake = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "fakerelay.py"), "--port", str(a.port), "--scenario", a.scenario,
         "--duration", str(total)] + sum((["--arg", x] for x in a.arg), []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)

    def limit():
        if a.limit_as_gb:
            import resource
            n = int(a.limit_as_gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (n, n))

    bots_cmd = [BOTS, "--url", "ws://127.0.0.1:%d/ws" % a.port, "--rooms", "1", "--members", str(a.members),
                "--duration-secs", str(a.bots_secs), "--ramp-up-secs", "0", "--input-rate", str(a.input_rate),
                "--progress-secs", "5"] + a.bots_arg
    t0 = time.monotonic()
    bots = subprocess.Popen(bots_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    samples = []
    max_rss = 0
    while bots.poll() is None and time.monotonic() - t0 < a.bots_secs + a.watch:
        s = proc_sample(bots.pid)
        if s:
            samples.append((round(time.monotonic() - t0, 1), s[0] // 1024, round(s[1], 2)))
            max_rss = max(max_rss, s[0])
        time.sleep(0.5)
    hung = bots.poll() is None
    if hung:
        last = proc_sample(bots.pid)
        os.kill(bots.pid, signal.SIGKILL)
    out, err = bots.communicate()
    fake.send_signal(signal.SIGTERM)
    try:
        fout, ferr = fake.communicate(timeout=12)
    except subprocess.TimeoutExpired:
        fake.kill()
        fout, ferr = fake.communicate()
    try:
        fstats = json.loads(fout.strip().splitlines()[-1])
    except Exception:
        fstats = {"raw": fout[-2000:], "err": ferr[-2000:]}
    ct = fstats.get("conn_times", [])
    fstats["conn_times"] = ct[:12] + (["..."] + ct[-5:] if len(ct) > 17 else ct[12:])
    summary = {
        "scenario": a.scenario,
        "args": a.arg,
        "bots_exit": None if hung else bots.returncode,
        "bots_hung": hung,
        "bots_wall_s": round(time.monotonic() - t0, 1),
        "bots_max_rss_mb": max_rss // 1024,
        "bots_cpu_s": samples[-1][2] if samples else None,
        "rss_timeline_mb": " ".join("%s:%s" % (t, r) for t, r, _ in samples[:: max(1, len(samples) // 12)]),
        "fake": fstats,
    }
    print(json.dumps(summary))
    print("--- bots stdout (tail) ---")
    print("\n".join(out.strip().splitlines()[-40:]))
    print("--- bots stderr (tail) ---")
    print("\n".join(err.strip().splitlines()[-12:]))


if __name__ == "__main__":
    main()
