"""Event bound: A attackers keep a room's event queue at its bound with 16 KB events aimed at their own sink; an honest member's events (2/s) are delayed or refused."""
import asyncio, os, time
from common17 import pb, connect, env, join, decode, event, monitor, stat

A, SECS, ROOM = int(os.environ.get("A", "60")), float(os.environ.get("SECS", "30")), os.environ.get("ROOM", "ev17")
# SELF=1: the attackers name themselves as targets too.
HRATE = float(os.environ.get("HRATE", "2"))
PAY = int(os.environ.get("PAY", "16000"))
st = {"sink_bytes": 0, "busy_att": 0, "h_sent": 0, "h_busy": 0, "h_recv": 0, "delays": [], "closes": {}, "api_sent": 0, "api_recv": 0, "api_codes": {}}


async def sess():
    ws = await connect()
    w = decode(await ws.recv()).messages[0].welcome
    await ws.send(env(join(ROOM, 1, "relay")))
    while True:
        s = decode(await ws.recv())
        if any(m.WhichOneof("kind") == "joined" for m in s.messages):
            return ws, w.session_id


async def reader(ws, role):
    try:
        async for data in ws:
            s = decode(data)
            for m in s.messages:
                k = m.WhichOneof("kind")
                if role == "sink" and k == "event":
                    st["sink_bytes"] += len(m.event.payload)
                elif role == "h2" and k == "event" and m.event.kind == "honest":
                    st["h_recv"] += 1
                    st["delays"].append(time.time() - float(m.event.payload.decode()))
                elif role == "h2" and k == "event" and m.event.kind == "api":
                    st["api_recv"] += 1
                elif k == "error" and m.error.code == pb.ERROR_CODE_SERVER_BUSY:
                    st["busy_att" if role == "att" else "h_busy"] += 1
    except Exception as e:
        if not isinstance(e, __import__("websockets").ConnectionClosed):
            print("reader error", role, repr(e), flush=True)
    st["closes"][ws.close_code] = st["closes"].get(ws.close_code, 0) + 1


async def attacker(ws, me, sink, end):
    pay = b"x" * PAY
    # SELF=1: name the sender too, so each event goes somewhere at once.
    targets = [sink, me] if os.environ.get("SELF") == "1" else [sink]
    n = 0
    while time.time() < end:
        try:
            await ws.send(env(event(ROOM, "junk", pay, targets)))
        except Exception:
            return
        n += 1
        await asyncio.sleep(0 if n < 7 else 0.25)


async def honest(ws, h2, end):
    while time.time() < end:
        await ws.send(env(event(ROOM, "honest", str(time.time()).encode(), [h2])))
        st["h_sent"] += 1
        await asyncio.sleep(1 / HRATE)


async def api(end):
    import urllib.request
    tok, base = os.environ.get("API_TOKEN"), os.environ.get("TR_HTTP", "http://127.0.0.1:7543")
    while tok and time.time() < end:
        def post():
            r = urllib.request.Request(f"{base}/rooms/{ROOM}/events?kind=api", data=b"round", method="POST",
                                       headers={"Authorization": f"Bearer {tok}"})
            try:
                return urllib.request.urlopen(r, timeout=5).status
            except urllib.error.HTTPError as e:
                return e.code
        c = await asyncio.get_event_loop().run_in_executor(None, post)
        st["api_sent"] += 1
        st["api_codes"][c] = st["api_codes"].get(c, 0) + 1
        await asyncio.sleep(0.5)


async def main():
    sink_ws, sink = await sess()
    if not os.environ.get("HLAST"):
        (h_ws, h), (h2_ws, h2) = await sess(), await sess()
    atts = []
    for i in range(0, A, 20):
        atts += await asyncio.gather(*[sess() for _ in range(min(20, A - i))])
    if os.environ.get("HLAST"):
        (h_ws, h), (h2_ws, h2) = await sess(), await sess()
    print(f"joined: {A} attackers, sink {sink}, honest {h} -> {h2}; relay {stat()}", flush=True)
    for ws, role in [(sink_ws, "sink"), (h_ws, "h"), (h2_ws, "h2")] + [(w, "att") for w, _ in atts]:
        asyncio.ensure_future(reader(ws, role))
    end = time.time() + SECS
    ex = lambda: (f"sink={st['sink_bytes']>>20}MiB att_busy={st['busy_att']} h_sent={st['h_sent']} h_busy={st['h_busy']} "
                  f"h_recv={st['h_recv']} h_delay_last={st['delays'][-1] if st['delays'] else 0:.2f}s")
    await asyncio.gather(honest(h_ws, h2, end), api(end), monitor(SECS, "hol", 3, ex),
                         *[attacker(w, me, sink, end) for w, me in atts])
    d = sorted(st["delays"])
    print("RESULT", ex(), "delay p50/max", d[len(d)//2] if d else None, d[-1] if d else None, "closes", st["closes"], "api sent/recv", st["api_sent"], st["api_recv"], st["api_codes"])

asyncio.run(main())
