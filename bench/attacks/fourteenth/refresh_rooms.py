"""A session joined to room `match-1` with a token allowing `match-*` refreshes to a token
allowing only `lobby`. Does it stay in match-1 (state, inputs, events)? And can it join
match-2 after? HS256 relay on :17551."""
import asyncio, os, subprocess, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
BIN = os.environ.get("TR_BIN", os.path.join(HERE, "..", "..", "..", "target", "release", "tickrelay"))
import jwt as pyjwt
import tr
from tr import pb
SECRET = "s" * 40
RP = 17551
relay = subprocess.Popen([BIN, "--insecure-plain", "--listen", f"127.0.0.1:{RP}", "--auth", "jwt",
                          "--jwt-secret", SECRET], stdout=open(os.path.join(HERE, "relay_rr.out"), "w"), stderr=subprocess.STDOUT)
time.sleep(1)
tok = lambda rooms: pyjwt.encode({"sub": "u1", "exp": int(time.time()) + 3600, "rooms": rooms}, SECRET, algorithm="HS256")


async def main():
    URL = f"ws://127.0.0.1:{RP}/ws"
    ws = await tr.websockets.connect(URL, additional_headers={"Authorization": "Bearer " + tok(["match-*"])}, ping_interval=None)
    other = await tr.websockets.connect(URL, additional_headers={"Authorization": "Bearer " + pyjwt.encode({"sub": "u2", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")}, ping_interval=None)
    await ws.send(tr.env(tr.join("match-1", 1, "relay")))
    m, _ = await tr.recv_until(ws, lambda m: m.WhichOneof("kind") in ("joined", "error"))
    print("join match-1:", m.WhichOneof("kind"))
    await other.send(tr.env(tr.join("match-1", 1, "relay")))
    await tr.recv_until(other, lambda m: m.WhichOneof("kind") == "joined")
    await ws.send(tr.env(tr.cm(refresh_token=pb.RefreshToken(request_id=2, token=tok(["lobby"])))))
    m, _ = await tr.recv_until(ws, lambda m: m.WhichOneof("kind") in ("token_refreshed", "error"))
    print("refresh to rooms=[lobby]:", m.WhichOneof("kind"))
    await tr.drain(ws, 0.5)
    # still in match-1? send an event to the other member
    await ws.send(tr.env(tr.cm(event=pb.SendEvent(room="match-1", kind="chat", payload=b"still here"))))
    m, seen = await tr.recv_until(other, lambda m: m.WhichOneof("kind") == "event", 3)
    print("other member got u1's event after the refresh:", bool(m), m.event.payload if m else None)
    seen = await tr.drain(ws, 1.0)
    print("u1 still receives match-1 state frames:", sum(1 for x in seen if x.WhichOneof("kind") == "state"), tr.kinds(seen)[:5])
    await ws.send(tr.env(tr.join("match-2", 3, "relay")))
    m, _ = await tr.recv_until(ws, lambda m: m.WhichOneof("kind") in ("joined", "error") and (m.WhichOneof("kind") != "error" or m.error.request_id == 3))
    print("join match-2 after:", m.WhichOneof("kind"), m.error.message if m.WhichOneof("kind") == "error" else "")
    await ws.close(); await other.close()

try:
    asyncio.run(main())
finally:
    relay.terminate(); relay.wait(10)
