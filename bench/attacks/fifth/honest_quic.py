"""Honest QUIC client: Hello, join an arena room (30 Hz), ack every state datagram, count
state frames/s and application Ping RTT (5/s). Bounded: SECS. Usage: honest_quic.py SECS [room]"""
import asyncio, json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qc import *

SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 20
ROOM = sys.argv[2] if len(sys.argv) > 2 else "honest-arena-q"


async def main():
    t0 = time.time()
    per_sec, rtts, sent = {}, [], {}
    try:
        cmgr = quic_connect()
        c = await asyncio.wait_for(cmgr.__aenter__(), 10)
    except Exception as e:
        print("HONESTQ " + json.dumps({"connect failed": repr(e)[:200]})); return
    c.send_hello()
    await asyncio.wait_for(c.welcome, 10)

    def on_msg(m, via):
        k = m.WhichOneof("kind")
        now = time.time()
        if k == "state":
            sec = int(now - t0)
            per_sec[sec] = per_sec.get(sec, 0) + 1
            if via == "dgram":
                c.send_dgram(env(cm(ack=pb.Ack(room=m.state.room, tick=m.state.tick))))
        elif k == "pong" and m.pong.nonce in sent:
            rtts.append((now - sent.pop(m.pong.nonce)) * 1000)
    c.on_msg = on_msg
    c.send_env(cm(join=pb.JoinRoom(request_id=1, room=ROOM, room_type="arena")))
    n = 0
    while time.time() - t0 < SECS and c.closed is None:
        n += 1
        sent[n] = time.time()
        c.send_env(cm(ping=pb.Ping(nonce=n)))
        await asyncio.sleep(0.2)
    secs = [per_sec.get(i, 0) for i in range(1, int(SECS))]
    rtts.sort()
    out = {"honestq_frames_per_sec": secs, "min_fps": min(secs) if secs else None,
           "mean_fps": round(sum(secs) / len(secs), 1) if secs else None,
           "rtt_ms_p50": round(rtts[len(rtts) // 2], 2) if rtts else None,
           "rtt_ms_p99": round(rtts[int(len(rtts) * 0.99)], 2) if rtts else None,
           "rtt_ms_max": round(rtts[-1], 2) if rtts else None,
           "pongs": len(rtts), "pings_unanswered": len(sent), "close": c.closed}
    print("HONESTQ " + json.dumps(out), flush=True)
    c.close(error_code=1000); c.transmit()
    await asyncio.sleep(0.2)

asyncio.run(asyncio.wait_for(main(), SECS + 20))
