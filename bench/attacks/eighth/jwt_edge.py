"""JWT edge cases: odd exp/nbf/iat, huge rooms claims, unicode subs, in-band refresh.
Relay: TICKRELAY_JWT_SECRET=$S ./start.sh 7644 --auth jwt ; TR_URL=ws://127.0.0.1:7644/ws"""
import asyncio, os, sys, time, json, hmac, hashlib, base64
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/attacks: tr.py
from tr import *
S = os.environ["TICKRELAY_JWT_SECRET"].encode()
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def tok(claims, raw=None):
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(raw if raw is not None else json.dumps(claims).encode())
    sig = b64(hmac.new(S, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{sig}"
NOW = int(time.time())
async def try_connect(name, t, then=None):
    try:
        ws = await connect(url=URL, additional_headers={"Authorization": "Bearer " + t})
    except Exception as e:
        print(f"{name}: upgrade refused: {str(e)[:90]}")
        return
    w = decode(await ws.recv()).messages[0]
    res = ""
    if then:
        res = await then(ws)
    print(f"{name}: welcome session={w.welcome.session_id} {res}")
    await ws.close()
async def join_probe(room):
    async def f(ws):
        await ws.send(env(join(room, 7, "relay")))
        m, _ = await recv_until(ws, lambda m: m.WhichOneof("kind") in ("joined", "error"), 3)
        return f"join {room[:30]!r}: " + (m.WhichOneof("kind") + (f" {m.error.code} {m.error.message[:80]}" if m.WhichOneof("kind") == "error" else "") if m else "no answer")
    return f
async def refresh_probe(t2, label):
    async def f(ws):
        await ws.send(env(cm(refresh_token=pb.RefreshToken(request_id=2**64 - 1, token=t2))))
        m, _ = await recv_until(ws, lambda m: m.WhichOneof("kind") in ("token_refreshed", "error"), 3)
        if not m: return f"refresh {label}: no answer"
        k = m.WhichOneof("kind")
        if k == "error": return f"refresh {label}: error {m.error.code} {m.error.message[:70]} rid={m.error.request_id}"
        return f"refresh {label}: ok exp={m.token_refreshed.expires_at_unix} rid={m.token_refreshed.request_id}"
    return f
async def main():
    U64 = 2**64 - 1
    await try_connect("exp=u64max", tok({"sub": "a", "exp": U64}), await join_probe("r1"))
    await try_connect("exp=2^63", tok({"sub": "a", "exp": 2**63}))
    await try_connect("exp=2^64", tok({"sub": "a", "exp": 2**64}))
    await try_connect("exp=-1", tok({"sub": "a", "exp": -1}))
    await try_connect("exp=1e30 float", tok({"sub": "a", "exp": 1e30}))
    await try_connect("exp=now+100.5 float", tok({"sub": "a", "exp": NOW + 100.5}))
    await try_connect("nbf=u64max", tok({"sub": "a", "exp": NOW + 100, "nbf": U64}))
    await try_connect("iat=u64max", tok({"sub": "a", "exp": NOW + 100, "iat": U64}))
    await try_connect("sub=unicode RTL", tok({"sub": "\u202eadmin\u200b", "exp": NOW + 100}), await join_probe("r2"))
    await try_connect("sub=256 bytes of é", tok({"sub": "é" * 128, "exp": NOW + 100}))
    await try_connect("dup sub keys", None or tok(None, raw=b'{"sub":"a","sub":"b","exp":%d}' % (NOW + 100)))
    rooms = [f"room-{i}" for i in range(2500)] + ["ok*"]
    t = tok({"sub": "a", "exp": NOW + 100, "rooms": rooms})
    print("big rooms token len", len(t))
    await try_connect("rooms 2500", t, await join_probe("ok-1"))
    await try_connect("rooms ['*']", tok({"sub": "a", "exp": NOW + 100, "rooms": ["*"]}), await join_probe("anything"))
    await try_connect("rooms ['']", tok({"sub": "a", "exp": NOW + 100, "rooms": [""]}), await join_probe("anything"))
    await try_connect("rooms []", tok({"sub": "a", "exp": NOW + 100, "rooms": []}), await join_probe("anything"))
    await try_connect("rooms null", tok({"sub": "a", "exp": NOW + 100, "rooms": None}), await join_probe("anything"))
    await try_connect("rooms ['é*'] join é", tok({"sub": "a", "exp": NOW + 100, "rooms": ["\u00e9*"]}), await join_probe("\u00e9x"))
    base = tok({"sub": "a", "exp": NOW + 100})
    await try_connect("refresh other sub", base, await refresh_probe(tok({"sub": "b", "exp": NOW + 200}), "other sub"))
    await try_connect("refresh expired", base, await refresh_probe(tok({"sub": "a", "exp": NOW - 100}), "expired"))
    await try_connect("refresh shorter", base, await refresh_probe(tok({"sub": "a", "exp": NOW + 10}), "shorter"))
    await try_connect("refresh garbage", base, await refresh_probe("x" * 15000, "garbage"))
    await try_connect("refresh u64max", base, await refresh_probe(tok({"sub": "a", "exp": U64}), "u64max"))
    # narrower rooms on refresh, then join
    async def narrow(ws):
        r = await (await refresh_probe(tok({"sub": "a", "exp": NOW + 100, "rooms": ["only"]}), "narrow"))(ws)
        return r + " / " + await (await join_probe("other"))(ws)
    await try_connect("refresh narrows rooms", base, narrow)
asyncio.run(asyncio.wait_for(main(), 50))
