"""Honest client over wss (or ws): joins an arena room (state changes every tick, 30 Hz),
counts state frames per second and application Ping RTT (5 per second). Bounded: SECS.
Prints one JSON line at the end. Usage: python3 honest.py SECS [room] [url]"""
import asyncio, json, os, ssl, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa
import websockets

SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 20
ROOM = sys.argv[2] if len(sys.argv) > 2 else "honest-arena"
URL = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("TR_URL", "wss://127.0.0.1:7643/ws")
CERT = os.environ.get("TR_CERT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "tickrelay-dev-cert.pem"))
assert "127.0.0.1" in URL


async def main():
    ctx = ssl.create_default_context(cafile=CERT) if URL.startswith("wss") else None
    if ctx:
        ctx.check_hostname = False
    t0 = time.time()
    per_sec = {}
    rtts = []
    close = None
    try:
        ws = await asyncio.wait_for(websockets.connect(URL, ssl=ctx, max_size=1 << 26, ping_interval=None), 10)
    except Exception as e:
        print(json.dumps({"honest": "connect failed", "err": repr(e)[:200]})); return
    e = pb.ClientEnvelope(); e.messages.append(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=ROOM, room_type="arena")))
    await ws.send(e.SerializeToString())
    sent = {}

    async def pinger():
        n = 0
        while time.time() - t0 < SECS:
            n += 1
            sent[n] = time.time()
            p = pb.ClientEnvelope(); p.messages.append(pb.ClientMessage(ping=pb.Ping(nonce=n)))
            try:
                await ws.send(p.SerializeToString())
            except Exception:
                return
            await asyncio.sleep(0.2)
    pt = asyncio.create_task(pinger())
    end = t0 + SECS
    try:
        while time.time() < end:
            try:
                data = await asyncio.wait_for(ws.recv(), timeout=max(0.01, end - time.time()))
            except asyncio.TimeoutError:
                break
            s = pb.ServerEnvelope(); s.ParseFromString(data)
            now = time.time()
            for m in s.messages:
                k = m.WhichOneof("kind")
                if k == "state":
                    sec = int(now - t0)
                    per_sec[sec] = per_sec.get(sec, 0) + 1
                elif k == "pong" and m.pong.nonce in sent:
                    rtts.append((now - sent.pop(m.pong.nonce)) * 1000)
    except websockets.ConnectionClosed as ex:
        close = (ex.code, ex.reason)
    pt.cancel()
    try:
        await asyncio.wait_for(ws.close(), 2)
    except Exception:
        pass
    secs = [per_sec.get(i, 0) for i in range(1, int(SECS))]
    rtts.sort()
    out = {"honest_frames_per_sec": secs,
           "min_fps": min(secs) if secs else None,
           "mean_fps": round(sum(secs) / len(secs), 1) if secs else None,
           "rtt_ms_p50": round(rtts[len(rtts) // 2], 2) if rtts else None,
           "rtt_ms_p99": round(rtts[int(len(rtts) * 0.99)], 2) if rtts else None,
           "rtt_ms_max": round(rtts[-1], 2) if rtts else None,
           "pongs": len(rtts), "pings_unanswered": len(sent), "close": close}
    print("HONEST " + json.dumps(out), flush=True)

asyncio.run(main())
