"""HTTP API body edges on raw sockets: trickled bodies, huge chunk sizes, endless chunk extensions, CL+TE, two CLs, pipelining, Expect: 100-continue over the limit."""
import os, socket, time, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "7543"))
TOK = os.environ.get("API_TOKEN", "attack17-api-token-0123456789abcdef")
ROOM = os.environ.get("ROOM", "ev17")
PID = int(os.environ.get("TR_PID", "0"))
H = f"POST /rooms/{ROOM}/events?kind=k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOK}\r\n"


def rss():
    return next(int(l.split()[1]) // 1024 for l in open(f"/proc/{PID}/status") if l.startswith("VmRSS")) if PID else 0


def sock():
    s = socket.create_connection((HOST, PORT), timeout=15)
    return s


def reply(s, t=12):
    s.settimeout(t)
    out = b""
    try:
        while b"\r\n\r\n" not in out:
            d = s.recv(4096)
            if not d:
                break
            out += d
        s.settimeout(0.3)
        out += s.recv(65536)
    except Exception:
        pass
    return out.split(b"\r\n")[0].decode(errors="replace") or "<no reply/closed>", out


def case(name, f):
    t0 = time.time()
    try:
        r = f()
    except Exception as e:
        r = f"exception {e!r}"
    print(f"{name:38s} -> {r}  ({time.time()-t0:.1f}s, rss {rss()}MiB)", flush=True)


def trickle():
    s = sock(); s.sendall((H + "Content-Length: 100\r\n\r\n").encode())
    t0 = time.time()
    try:
        for i in range(30):
            s.sendall(b"a"); time.sleep(1)
    except Exception as e:
        return f"send failed after {time.time()-t0:.0f}s: {reply(s,1)[0]}"
    return reply(s)[0]


def huge_chunk():
    s = sock(); s.sendall((H + "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nabc").encode()); return reply(s)[0]


def chunk_ext():
    s = sock(); s.sendall((H + "Transfer-Encoding: chunked\r\n\r\n1;").encode())
    sent = 0
    try:
        while sent < 64 << 20:
            s.sendall(b"e" * 65536); sent += 65536
    except Exception:
        pass
    return f"ext bytes accepted before close: {sent>>10} KiB; {reply(s,3)[0]}"


def many_chunks():
    s = sock(); s.sendall((H + "Transfer-Encoding: chunked\r\n\r\n").encode())
    sent = 0
    try:
        for _ in range(4000):
            s.sendall(b"1;" + b"x" * 2000 + b"\r\na\r\n"); sent += 2008
    except Exception:
        pass
    try:
        s.sendall(b"0\r\n\r\n")
    except Exception:
        pass
    return f"{sent>>10} KiB of 1-byte chunks w/ 2 KB ext; {reply(s,3)[0]}"


def cl_te():
    s = sock(); s.sendall((H + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").encode()); return reply(s)[0]


def two_cl():
    s = sock(); s.sendall((H + "Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc").encode()); return reply(s, 3)[0]


def pipelined():
    smuggled = f"DELETE /rooms/{ROOM} HTTP/1.1\r\nHost: x\r\n\r\n"
    body = f"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    s = sock(); s.sendall((H + f"Content-Length: {len(body)}\r\n\r\n{body}" + smuggled).encode())
    time.sleep(1); return " | ".join(l for l in reply(s, 3)[1].decode(errors="replace").split("\r\n") if l.startswith("HTTP/"))


def expect_big():
    s = sock(); s.sendall((H + "Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n").encode()); return reply(s, 3)[0]


def at_limit(n):
    def f():
        s = sock(); s.sendall((H + f"Content-Length: {n}\r\n\r\n").encode() + b"z" * n); return reply(s)[0]
    return f


def neg_cl():
    s = sock(); s.sendall((H + "Content-Length: -1\r\n\r\n").encode()); return reply(s, 3)[0]


for name, f in [("body 16384 (limit)", at_limit(16384)), ("body 16385", at_limit(16385)),
                ("negative Content-Length", neg_cl), ("chunk size 2^64-1", huge_chunk),
                ("chunk extension 64 MiB", chunk_ext), ("4000 chunks with 2 KB extensions", many_chunks),
                ("CL + TE chunked", cl_te), ("two Content-Lengths", two_cl),
                ("pipelined DELETE after body", pipelined), ("Expect 100-continue, CL 100 MB", expect_big),
                ("trickled body 1 B/s", trickle)]:
    case(name, f)
