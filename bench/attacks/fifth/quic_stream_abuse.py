"""Control-stream abuse over QUIC, one connection per case (bounded ~12 s each).
Cases (CASES=comma list, default all):
  hugehello   Hello length prefix 2^40 (expect 1009 at once)
  hugeenv     after Welcome, an envelope prefix of 16 KiB + 1 (expect 1009)
  badvarint   11-byte varint as the Hello's length (expect 1002)
  hellobad    a Hello frame that is not a Hello (expect 1007)
  extrabidi   after Welcome, open 3 more bidirectional streams (limit 1) with data
  uni         after Welcome, open a unidirectional stream (limit 0)
  resetctl    after Welcome, reset the control stream (RESET_STREAM) and stop sending
  stopsend    after Welcome, STOP_SENDING on the control stream, then send Pings
  finctl      after Welcome, FIN the control stream
  partial     after Welcome, a 16,000-byte prefix, then 1 byte per second (slowloris)
  hellodata   datagrams flood before the Hello (then Hello; should still work)
"""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qc import *

ALL = "hugehello,hugeenv,badvarint,hellobad,extrabidi,uni,resetctl,stopsend,finctl,partial,hellodata"
CASES = os.environ.get("CASES", ALL).split(",")


async def wait_close(c, secs):
    end = time.time() + secs
    while time.time() < end and c.closed is None:
        await asyncio.sleep(0.05)


async def case(name):
    cmgr = quic_connect()
    c = await asyncio.wait_for(cmgr.__aenter__(), 10)
    t0 = time.time()
    note = ""
    q = c._quic
    if name == "hugehello":
        c.send_raw(varint(1 << 40) + b"x" * 100)
    elif name == "badvarint":
        c.send_raw(b"\xff" * 11 + b"\x01")
    elif name == "hellobad":
        c.send_raw(frame(b"\xff\xff\xff\xff"))
    elif name == "hellodata":
        for _ in range(3000):
            if len(q._datagrams_pending) < 200:
                q.send_datagram_frame(env(cm(ping=pb.Ping(nonce=1))))
            c.transmit()
            await asyncio.sleep(0)
        c.send_hello()
        try:
            w = await asyncio.wait_for(c.welcome, 5)
            note = f"welcome after datagram flood: {w is not None}"
        except asyncio.TimeoutError:
            note = "no welcome"
        c.send_env(cm(ping=pb.Ping(nonce=7)))
        await asyncio.sleep(1)
        note += f"; pongs {sum(1 for k in c.kinds() if k == 'pong')}"
    else:
        c.send_hello()
        w = await asyncio.wait_for(c.welcome, 5)
        t0 = time.time()
        if name == "hugeenv":
            c.send_raw(varint(16 * 1024 + 1) + b"\x00" * 1000)
        elif name == "extrabidi":
            q._remote_max_streams_bidi = 1000  # pretend the server allowed more
            for _ in range(3):
                sid = q.get_next_available_stream_id()
                q.send_stream_data(sid, frame(env(cm(ping=pb.Ping(nonce=3)))))
            c.transmit()
        elif name == "uni":
            q._remote_max_streams_uni = 1000
            sid = q.get_next_available_stream_id(is_unidirectional=True)
            q.send_stream_data(sid, b"hello")
            c.transmit()
        elif name == "resetctl":
            q.reset_stream(c.sid, 77)
            c.transmit()
        elif name == "stopsend":
            q.stop_stream(c.sid, 78)
            c.transmit()
            await asyncio.sleep(0.3)
            for i in range(5):
                try:
                    c.send_env(cm(ping=pb.Ping(nonce=i)))
                except Exception as e:
                    note = "client: " + repr(e)[:80]; break
                await asyncio.sleep(0.2)
        elif name == "finctl":
            c.send_raw(b"", end=True)
        elif name == "partial":
            c.send_raw(varint(16000))
            for i in range(int(os.environ.get("PARTIAL_SECS", "10"))):
                if c.closed:
                    break
                c.send_raw(b"\x00")
                await asyncio.sleep(1)
            note = f"still open after {round(time.time()-t0)} s of slowloris: {c.closed is None}"
    await wait_close(c, 6)
    dt = round((c.closed_at or time.time()) - t0, 2)
    print(f"{name:10s} close={c.closed} after {dt}s {note}", flush=True)
    if c.closed is None:
        c.close(error_code=1000); c.transmit()
        await asyncio.sleep(0.1)


async def main():
    for n in CASES:
        try:
            await asyncio.wait_for(case(n), float(os.environ.get("CASE_SECS", "25")))
        except Exception as e:
            print(f"{n:10s} exception {e!r}"[:200], flush=True)

asyncio.run(main())
