"""HTTP side probes on the relay port: keep-alive idle lifetime, body to non-API paths,
/metrics request rate and CPU. PORT env."""
import socket, time, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
PORT = int(os.environ.get("PORT", "7601")); PID = int(os.environ["TR_PID"])
def cpu():
    f = open(f"/proc/{PID}/stat").read().rsplit(")", 1)[1].split(); return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def req(s, r):
    s.sendall(r); s.settimeout(5); data = b""
    while b"\r\n\r\n" not in data: data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < n: body += s.recv(65536)
    return head.split(b"\r\n")[0], len(body)
# 1. idle keep-alive after one request
s = socket.create_connection(("127.0.0.1", PORT)); print("healthz", req(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
t = time.time(); s.settimeout(25)
try:
    r = s.recv(10); print(f"idle keep-alive closed after {time.time()-t:.1f}s recv={r!r}")
except socket.timeout: print("idle keep-alive still open after 25 s")
# 2. POST with a large body to /healthz, then reuse
s = socket.create_connection(("127.0.0.1", PORT))
body = b"x" * (8 << 20)
s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
try:
    s.sendall(body[:1 << 20]); print("POST /healthz:", s.recv(200).split(b"\r\n")[0])
except Exception as e: print("POST /healthz exc", e)
# 3. /metrics throughput on one keep-alive connection for 5 s
s = socket.create_connection(("127.0.0.1", PORT)); n = 0; c0 = cpu(); t0 = time.time(); size = 0
while time.time() - t0 < 5:
    _, size = req(s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); n += 1
dt = time.time() - t0; print(f"/metrics: {n/dt:.0f} req/s, body {size} B, relay cpu {100*(cpu()-c0)/dt:.0f}%, {1e6*(cpu()-c0)/n:.0f} us cpu/req")
# 4. huge query string / path tricks
s = socket.create_connection(("127.0.0.1", PORT))
print("long query:", req(s, b"GET /healthz?" + b"a" * 30000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")[0])
for p in [b"/demo/../metrics", b"//healthz", b"/healthz/", b"/demo/%2e%2e/metrics", b"http://x/healthz"]:
    s = socket.create_connection(("127.0.0.1", PORT)); print(p, req(s, b"GET " + p + b" HTTP/1.1\r\nHost: x\r\n\r\n")[0])
