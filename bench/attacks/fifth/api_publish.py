"""HTTP API (POST /rooms/{room}/events) with a valid token, from CONNS keep-alive
connections as fast as they can for SECS, 16 KiB bodies, into the honest client's room;
plus a wrong-token flood (MODE=badtoken). Target: http://127.0.0.1:PORT only."""
import http.client, os, threading, time, collections
PORT = int(os.environ.get("TR_PORT", "7645")); assert 7600 <= PORT <= 7700
TOKEN = os.environ.get("API_TOKEN", "attack5-api-token-0123456789abcdef")
MODE = os.environ.get("MODE", "publish"); CONNS = int(os.environ.get("CONNS", "4"))
SECS = float(os.environ.get("SECS", "10")); ROOM = os.environ.get("ROOM", "honest-arena")
SIZE = int(os.environ.get("SIZE", "16384"))
stats = collections.Counter(); lock = threading.Lock()

def worker():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
    body = b"x" * SIZE
    tok = TOKEN if MODE == "publish" else "wrong" + TOKEN[5:]
    end = time.time() + SECS
    while time.time() < end:
        try:
            c.request("POST", f"/rooms/{ROOM}/events?kind=spam", body=body, headers={"Authorization": "Bearer " + tok})
            r = c.getresponse(); r.read()
            with lock: stats[r.status] += 1
        except Exception as e:
            with lock: stats["exc:" + type(e).__name__] += 1
            c.close(); c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
    c.close()

ts = [threading.Thread(target=worker) for _ in range(CONNS)]
[t.start() for t in ts]; [t.join() for t in ts]
print(MODE, dict(stats), "per s:", round(sum(v for k, v in stats.items() if isinstance(k, int)) / SECS))
