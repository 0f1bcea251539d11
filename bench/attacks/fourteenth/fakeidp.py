"""A fake identity provider on 127.0.0.1 serving a JWK set, in a mode read from a file
at every connection (so a test can switch it while the relay runs).

  python3 fakeidp.py PORT MODEFILE LOGFILE [MAXSECS]

Modes (the file's first line):
  ok FILE        200 with FILE's bytes (a JWK set)
  hang           read the request, never answer (socket kept open)
  trickle        200, Content-Length 100000, one byte a second
  huge           200, a valid-looking set of 3 MiB (chunked, fast)
  infinite       200, chunked, never-ending body, fast
  bigheaders     200 with 2 MiB of headers
  status500      500
  close          close at once
  refuse         (the listener stays, but every connection is closed before reading)
Each connection is logged: time, mode, open connections.
Stops by itself after MAXSECS (default 600).
"""
import asyncio, sys, time

PORT, MODEFILE, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
MAXSECS = float(sys.argv[4]) if len(sys.argv) > 4 else 600
open_conns = 0
t0 = time.time()


def log(msg):
    with open(LOG, "a") as f:
        f.write(f"{time.time() - t0:8.2f} {msg}\n")


async def handle(r, w):
    global open_conns
    open_conns += 1
    try:
        mode = open(MODEFILE).read().split("\n")[0].split()
    except Exception:
        mode = ["close"]
    log(f"conn mode={mode[0]} open={open_conns}")
    try:
        if mode[0] in ("close", "refuse"):
            return
        req = b""
        while b"\r\n\r\n" not in req:
            d = await r.read(4096)
            if not d:
                return
            req += d
        log("req " + req.split(b"\r\n")[0].decode(errors="replace") + " " +
            repr([l for l in req.split(b"\r\n") if l.lower().startswith((b"host", b"user-agent"))]))
        if mode[0] == "ok":
            body = open(mode[1], "rb").read()
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            await w.drain()
        elif mode[0] == "hang":
            await asyncio.sleep(MAXSECS)
        elif mode[0] == "trickle":
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            await w.drain()
            for _ in range(int(MAXSECS)):
                w.write(b" ")
                await w.drain()
                await asyncio.sleep(1)
        elif mode[0] in ("huge", "infinite"):
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b'{"keys":[' + b" " * 65000
            sent = 0
            while mode[0] == "infinite" or sent < 3 * 1024 * 1024:
                w.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                await w.drain()
                sent += len(chunk)
                chunk = b" " * 65000
            w.write(b"0\r\n\r\n")
            await w.drain()
        elif mode[0] == "bigheaders":
            w.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(2048):
                w.write(b"X-Pad-%d: " % i + b"a" * 1000 + b"\r\n")
                await w.drain()
            w.write(b"Content-Length: 2\r\n\r\n{}")
            await w.drain()
        elif mode[0] == "status500":
            w.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await w.drain()
    except Exception as e:
        log(f"conn error {e!r}")
    finally:
        open_conns -= 1
        log(f"conn end open={open_conns}")
        try:
            w.close()
        except Exception:
            pass


async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", PORT)
    log(f"listening {PORT}")
    async with srv:
        await asyncio.sleep(MAXSECS)
    log("stopped (MAXSECS)")

asyncio.run(main())
