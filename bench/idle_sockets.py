#!/usr/bin/env python3
"""Idle-socket pressure on a running relay (loopback only): opens PER idle TCP
connections from each source address given (127.0.0.x), waits SECS, then reports how
many descriptors the relay holds, how many of the sockets it closed, how long
/healthz took, and its refusal and shedding counters.

usage: bench/idle_sockets.py PORT PER SECS ADDR [ADDR...]
example (issue 15, BENCHMARKS.md "Hardening"): a relay started with
  printf '[connections]\\nmax_unfinished_handshakes = 2000\\n' > shed.toml
  tickrelay --config shed.toml --listen 127.0.0.1:7613 --no-quic
then: bench/idle_sockets.py 7613 1000 4 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6
(raise `ulimit -n` for both first)."""

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request


def main() -> None:
    port, per, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    addrs = sys.argv[4:]
    assert all(a.startswith("127.") for a in addrs), "loopback addresses only"
    socks = []
    for addr in addrs:
        for _ in range(per):
            s = socket.socket()
            s.bind((addr, 0))
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
    time.sleep(secs)
    pid = subprocess.check_output(["pgrep", "-f", f"listen 127.0.0.1:{port}"]).split()[0].decode()
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    closed = 0
    for s in socks:
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    tls = ssl._create_unverified_context()
    started = time.time()
    body = urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=tls, timeout=10).read()
    healthz_ms = (time.time() - started) * 1000
    metrics = urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=tls, timeout=10).read().decode()
    counters = [
        line
        for line in metrics.splitlines()
        if line.startswith(("tickrelay_handshakes_shed_total", "tickrelay_sockets_refused_total"))
    ]
    print(
        f"{len(socks)} idle sockets from {len(addrs)} addresses; relay holds {fds} descriptors; "
        f"{closed} of them closed by the relay; /healthz {body!r} in {healthz_ms:.1f} ms; {counters}"
    )


if __name__ == "__main__":
    main()
