"""Raw WebSocket upgrade attempts: returns (status, headers+body text)."""
import socket, base64, os

def upgrade(port, token=None, path="/ws", extra=b"", timeout=5, host="127.0.0.1", src=None):
    s = socket.create_connection((host, port), timeout=timeout, source_address=(src, 0) if src else None)
    key = base64.b64encode(os.urandom(16))
    req = (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n")
    if token:
        req += b"Authorization: Bearer " + token.encode() + b"\r\n"
    req += extra + b"\r\n"
    s.sendall(req)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            d = s.recv(65536)
            if not d:
                break
            data += d
        # read a little body if any
        s.settimeout(0.2)
        try:
            data += s.recv(65536)
        except Exception:
            pass
    finally:
        s.close()
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    try:
        st = int(line.split()[1])
    except Exception:
        st = 0
    return st, data.decode(errors="replace")
