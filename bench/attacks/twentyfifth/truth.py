"""Compares tickrelay_members / tickrelay_rooms with the HTTP API's room list (paged). Usage: truth.py PORT API [METRICS_PORT] [http|https]"""
import json, sys, ssl, urllib.request
port, api = int(sys.argv[1]), sys.argv[2]
mport = int(sys.argv[3]) if len(sys.argv) > 3 else port
scheme = sys.argv[4] if len(sys.argv) > 4 else "http"
ctx = ssl._create_unverified_context()
def get(url, auth=True):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api}"} if auth else {})
    return urllib.request.urlopen(req, timeout=5, context=ctx if url.startswith("https") else None).read().decode()
rooms = members = 0; after = None; kept = 0
while True:
    q = f"{scheme}://127.0.0.1:{port}/rooms?limit=500" + (f"&after={urllib.parse.quote(after)}" if after else "")
    page = json.loads(get(q))
    for r in page["rooms"]:
        rooms += 1; members += r["members"]
    after = page.get("next_after")
    if not after:
        break
m = {}
for l in get(f"http://127.0.0.1:{mport}/metrics", False).splitlines():
    if l and not l.startswith("#"):
        k, _, v = l.rpartition(" "); m[k] = v
print(f"api: rooms={rooms} members={members} | metrics: rooms={m.get('tickrelay_rooms')} members={m.get('tickrelay_members')} conns={m.get('tickrelay_connections')} parked={m.get('tickrelay_sessions_parked')}")
