"""The HTTP API with bad, huge and odd inputs; each request with the status the README
documents, mismatches marked. Relay on :17552, API token set, one relay room `r1` with two
anonymous members."""
import asyncio, os, subprocess, sys, time, http.client, json
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
BIN = os.environ.get("TR_BIN", os.path.join(HERE, "..", "..", "..", "target", "release", "tickrelay"))
import tr
from tr import pb
RP, TOK = 17552, "api-token-0123456789abcdef"
relay = subprocess.Popen([BIN, "--insecure-plain", "--listen", f"127.0.0.1:{RP}",
                          "--set", f"api.token={TOK}"], stdout=open(os.path.join(HERE, "relay_api.out"), "w"), stderr=subprocess.STDOUT)
time.sleep(1)


def call(method, path, body=None, token=TOK, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", RP, timeout=15)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


results = []


def check(name, method, path, expect, **kw):
    try:
        st, h, data = call(method, path, **kw)
    except Exception as e:
        st, h, data = repr(e), {}, b""
    ok = st in (expect if isinstance(expect, tuple) else (expect,))
    results.append(ok)
    print(f"{'ok ' if ok else 'BAD'} {name:55s} {method:6s} {st} (doc: {expect}) {data[:90]!r}")
    return st, h, data


async def main():
    URL = f"ws://127.0.0.1:{RP}/ws"
    a = await tr.websockets.connect(URL, ping_interval=None)
    b = await tr.websockets.connect(URL, ping_interval=None)
    for w in (a, b):
        await w.send(tr.env(tr.join("r1", 1, "relay")))
        await tr.recv_until(w, lambda m: m.WhichOneof("kind") == "joined")
    loop = asyncio.get_running_loop()
    run = lambda *x, **k: loop.run_in_executor(None, lambda: check(*x, **k))
    await run("publish, no token", "POST", "/rooms/r1/events?kind=x", 401, token=None, body=b"x")
    await run("publish, wrong token", "POST", "/rooms/r1/events?kind=x", 401, token="nope", body=b"x")
    await run("publish, no kind", "POST", "/rooms/r1/events", 400, body=b"x")
    await run("publish, kind 257 bytes", "POST", "/rooms/r1/events?kind=" + "k" * 257, 400, body=b"x")
    await run("publish, kind with control chars", "POST", "/rooms/r1/events?kind=%0a%1b%5b31m", (202, 400), body=b"x")
    await run("publish, body 16385 bytes", "POST", "/rooms/r1/events?kind=x", 413, body=b"x" * 16385)
    await run("publish, body 16384 bytes", "POST", "/rooms/r1/events?kind=x", 202, body=b"x" * 16384)
    await run("publish, targets=abc", "POST", "/rooms/r1/events?kind=x&targets=abc", 400, body=b"x")
    await run("publish, targets=2^64", "POST", "/rooms/r1/events?kind=x&targets=18446744073709551616", 400, body=b"x")
    await run("publish, targets=-1", "POST", "/rooms/r1/events?kind=x&targets=-1", 400, body=b"x")
    await run("publish, 4000 targets (dups)", "POST", "/rooms/r1/events?kind=x&targets=" + ",".join(["1"] * 4000), 202, body=b"x")
    await run("publish, no such room", "POST", "/rooms/nope/events?kind=x", 404, body=b"x")
    await run("publish, room %FF (not UTF-8)", "POST", "/rooms/%FF/events?kind=x", (400, 404), body=b"x")
    await run("publish, GET method", "GET", "/rooms/r1/events", 405)
    await run("HEAD /rooms", "HEAD", "/rooms", (200, 405))
    await run("list, limit=0", "GET", "/rooms?limit=0", 400)
    await run("list, limit=501", "GET", "/rooms?limit=501", 400)
    await run("list, limit=+5", "GET", "/rooms?limit=+5", 400)
    await run("list, open_only=yes", "GET", "/rooms?open_only=yes", 400)
    await run("list, 300 filters", "GET", "/rooms?" + "&".join(f"filter.k{i}=v" for i in range(300)), 400)
    await run("list, filter key 65 bytes", "GET", "/rooms?filter." + "k" * 65 + "=v", 400)
    await run("list, filter value with control", "GET", "/rooms?filter.k=%0a", 400)
    await run("list, empty filter key", "GET", "/rooms?filter.=v", 400)
    await run("list, after=huge", "GET", "/rooms?after=" + "z" * 20000, 200)
    await run("list, ok", "GET", "/rooms", 200)
    await run("describe r1", "GET", "/rooms/r1", 200)
    await run("describe, no such", "GET", "/rooms/none", 404)
    await run("remove, user 257 bytes", "DELETE", "/rooms/r1/users/" + "u" * 257, 400)
    await run("remove, user with control char", "DELETE", "/rooms/r1/users/a%0ab", 400)
    await run("remove, ban_secs=2592001", "DELETE", "/rooms/r1/users/x?ban_secs=2592001", 400)
    await run("remove, ban_secs=-1", "DELETE", "/rooms/r1/users/x?ban_secs=-1", 400)
    await run("remove, ban_secs=1e3", "DELETE", "/rooms/r1/users/x?ban_secs=1e3", 400)
    await run("remove, reason 257 bytes", "DELETE", "/rooms/r1/users/x?reason=" + "r" * 257, 400)
    await run("remove, ban 300 users (cap 256)", "DELETE", "/rooms/r1/users/x?ban_secs=60", 202)
    for i in range(300):
        call("DELETE", f"/rooms/r1/users/ban{i}?ban_secs={60 + i}")
    st, h, data = await run("describe r1 after 300 bans", "GET", "/rooms/r1", 200)
    try:
        d = json.loads(data)
        print("    describe keys:", list(d.keys()), "bans:", len(d.get("bans", [])))
    except Exception as e:
        print("    describe body not JSON:", e)
    await run("close, reason with control", "DELETE", "/rooms/r1?reason=%07", 400)
    await run("close, PUT", "PUT", "/rooms/r1", 405)
    await run("close r1", "DELETE", "/rooms/r1?reason=bye", 202)
    await run("close r1 again", "DELETE", "/rooms/r1", 404)
    m, _ = await tr.recv_until(a, lambda m: m.WhichOneof("kind") == "left", 3)
    print("member got Left:", bool(m), m.left.message if m else "")
    await a.close(); await b.close()

try:
    asyncio.run(main())
finally:
    relay.terminate(); relay.wait(10)
print(f"{results.count(True)} as documented, {results.count(False)} not")
