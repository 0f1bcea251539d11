"""Request-head size at the upgrade: README says 'request head about 32 KiB (431 beyond)'.
Sends one upgrade with a header of N bytes and prints the status line.
Usage: PORT=7644 python3 head_size.py"""
import socket, os, sys, time
PORT = int(os.environ.get("PORT", "7644"))
for n in [20000, 33000, 40000, 64000, 100000, 250000, 1000000]:
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    req = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           f"X-Pad: {'a' * n}\r\n\r\n").encode()
    t = time.time()
    try:
        s.sendall(req)
        data = s.recv(200)
        print(n, "->", data.split(b"\r\n")[0], f"{time.time()-t:.2f}s")
    except Exception as e:
        print(n, "->", repr(e)[:80])
    s.close()
# a token of N bytes in Authorization
for n in [30000, 42000, 60000, 120000]:
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    req = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           f"Authorization: Bearer {'a' * n}\r\n\r\n").encode()
    try:
        s.sendall(req); data = s.recv(200); print("auth", n, "->", data.split(b"\r\n")[0])
    except Exception as e:
        print("auth", n, "->", repr(e)[:80])
    s.close()
