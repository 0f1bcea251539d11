"""Pipelined GET /metrics on keep-alive connections: requests/s and relay CPU per request.
PORT (7681), CONNS (4), SECS (5), DEPTH (pipelined requests per write, 50), TR_PID. Loopback only."""
import os, socket, sys, time, threading
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from procstat import cpu_secs, rss_kib
PORT = int(os.environ.get("MPORT", os.environ.get("PORT", "7681"))); CONNS = int(os.environ.get("CONNS", "4"))
SECS = float(os.environ.get("SECS", "5")); DEPTH = int(os.environ.get("DEPTH", "50"))
PID = int(os.environ["TR_PID"]); TOKEN = os.environ.get("MTOKEN")
HOST = os.environ.get("HOST", "127.0.0.1"); assert HOST.startswith("127.")
PATH = os.environ.get("MPATH", "/metrics")
req = f"GET {PATH} HTTP/1.1\r\nHost: x\r\n" + (f"Authorization: Bearer {TOKEN}\r\n" if TOKEN else "") + "\r\n"
counts = [0] * CONNS
def worker(i):
    end = time.time() + SECS
    while time.time() < end:
        s = socket.create_connection((HOST, PORT)); s.settimeout(10)
        buf = b""
        try:
            while time.time() < end:
                s.sendall(req.encode() * DEPTH)
                got = 0
                while got < DEPTH:
                    d = s.recv(1 << 20)
                    if not d: raise ConnectionError
                    buf += d
                    # count complete responses by their status lines
                    while True:
                        h = buf.find(b"\r\n\r\n")
                        if h < 0: break
                        head = buf[:h].decode("latin1"); cl = 0
                        for line in head.split("\r\n"):
                            if line.lower().startswith("content-length:"): cl = int(line.split(":")[1])
                        if len(buf) < h + 4 + cl: break
                        buf = buf[h + 4 + cl:]; got += 1; counts[i] += 1
        except Exception as e:
            pass
        finally:
            s.close()
c0, r0, t0 = cpu_secs(PID), rss_kib(PID), time.time()
ts = [threading.Thread(target=worker, args=(i,)) for i in range(CONNS)]
[t.start() for t in ts]; [t.join() for t in ts]
c1, r1, t1 = cpu_secs(PID), rss_kib(PID), time.time()
n = sum(counts)
print(f"requests {n} in {t1-t0:.1f}s = {n/(t1-t0):.0f}/s; relay CPU {c1-c0:.2f}s ({(c1-c0)/(t1-t0)*100:.0f}%), "
      f"{(c1-c0)/max(n,1)*1e6:.0f} us/request; RSS {r0}->{r1} KiB")
