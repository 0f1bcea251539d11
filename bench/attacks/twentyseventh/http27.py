"""HTTP endpoints under mutation (plain http only: start the relay without TLS=1). N requests
with random methods, paths (the API's, percent-encoding edge cases, long and control
characters), query strings, headers (Authorization variants, Content-Length lies, chunked
bodies, duplicated headers) and bodies, each on its own connection with a 5 s bound. Counts
statuses; flags 500s, answers without a status line, connections left hanging, and checks
/healthz and the log for panics at the end. Loopback only; bounded."""
import os, random, socket, sys, time, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib27 import HOST, PORT, health, log_grep, rss_mib  # noqa

N = int(os.environ.get("N", "1500"))
TOKEN = os.environ.get("API_TOKEN", "atk27-api-token-0123456789")
rnd = random.Random(int(os.environ.get("SEED", "27")))
METHODS = ["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH", "get", "GET ", "CONNECT", "X" * 300]
ROOMS = ["fz-a", "lobby", "%2F", "%00", "%ff%fe", "a" * 128, "a" * 129, "%E2%80%AE", "..", "%", "%zz", "", "x/y",
         "honest-x-0"]
PATHS = ["/healthz", "/readyz", "/metrics", "/rooms", "/rooms/", "/rooms/{r}", "/rooms/{r}/events",
         "/rooms/{r}/users/{u}", "/rooms/{r}/users/", "/ws", "/demo/", "/demo/../../etc/passwd", "//rooms",
         "/rooms/{r}/events/extra", "*", "/" + "p" * 40000]
QS = ["", "kind=k", "kind=" + "k" * 257, "kind=%00", "kind=a&targets=1,2,3", "targets=" + ",".join(["18446744073709551615"] * 100) + "&kind=x",
      "limit=0", "limit=501", "limit=-1", "limit=99999999999999999999", "open_only=maybe", "after=%ff",
      "filter.=x", "filter." + "k" * 300 + "=v", "reason=" + "r" * 300, "ban_secs=2592001", "ban_secs=-5",
      "ban_secs=1e9", "reason=ok&ban_secs=10", "&&&", "a=%"]
AUTH = [None, f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer {TOKEN} ", "Bearer", "Basic xyz", f"Bearer {TOKEN[:-1]}",
        "Bearer " + "t" * 20000]


def req():
    m = rnd.choice(METHODS)
    path = rnd.choice(PATHS).replace("{r}", rnd.choice(ROOMS)).replace("{u}", rnd.choice(["u1", "%00", "u" * 300, "anonymous-1"]))
    q = rnd.choice(QS)
    target = path + ("?" + q if q else "")
    h = [f"Host: {HOST}:{PORT}"]
    a = rnd.choice(AUTH)
    if a:
        h.append(f"Authorization: {a}")
        if rnd.random() < 0.1:
            h.append(f"Authorization: {rnd.choice(AUTH[1:])}")
    body = b""
    r = rnd.random()
    if r < 0.3:
        body = os.urandom(rnd.choice([0, 1, 100, 16384, 16385, 70000]))
        cl = len(body) + rnd.choice([0, 0, 0, -1, 1, 1000])
        h.append(f"Content-Length: {max(cl, 0)}")
        if rnd.random() < 0.1:
            h.append("Content-Length: 5")
    elif r < 0.4:
        h.append("Transfer-Encoding: chunked")
        body = rnd.choice([b"5\r\nhello\r\n0\r\n\r\n", b"ffffffffffffffff\r\nx\r\n", b"zz\r\n", b"4000\r\n" + b"a" * 16384 + b"\r\n0\r\n\r\n"])
    if rnd.random() < 0.05:
        h.append("X-Big: " + "h" * 40000)
    if rnd.random() < 0.05:
        h.append("Bad Header Without Colon")
    ver = rnd.choice(["HTTP/1.1"] * 8 + ["HTTP/1.0", "HTTP/2.0", "HTTP/9", ""])
    head = f"{m} {target} {ver}\r\n" + "\r\n".join(h) + "\r\nConnection: close\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body, (m.strip()[:8], path.split("?")[0][:40])


def main():
    st = collections.Counter()
    flagged = []
    t0 = time.time()
    for i in range(N):
        data, what = req()
        s = socket.create_connection((HOST, PORT), timeout=5)
        try:
            s.sendall(data)
            resp = b""
            while len(resp) < 200000:
                c = s.recv(65536)
                if not c:
                    break
                resp += c
            line = resp.split(b"\r\n", 1)[0].decode(errors="replace")
            code = line.split(" ")[1] if line.startswith("HTTP/") else ("no-status" if resp else "closed-empty")
        except socket.timeout:
            code = "TIMEOUT"
        except (ConnectionResetError, BrokenPipeError):
            code = "reset"
        finally:
            s.close()
        st[code] += 1
        if code.startswith("5") and code != "503" or code in ("TIMEOUT", "no-status"):
            flagged.append((code, what, data[:160]))
        time.sleep(0.008)  # under the 200 handshakes a second an address may open
    print(f"{N} requests in {time.time()-t0:.1f}s: statuses {dict(st.most_common())}")
    print("flagged", flagged[:10])
    print(f"healthz {'ok' if health() else 'FAILED'} rss {rss_mib():.0f} MiB panics {log_grep(('panic', 'PANIC'))[:3]}")


if __name__ == "__main__":
    main()
