"""Slow readers over QUIC: M sessions join one relay room each... (one room of M members),
write ENTS entities of 15 x FB bytes each (the room about M x ENTS x 15 x FB bytes), read
normally, then stop granting QUIC flow-control credit (aioquic's MAX_DATA / MAX_STREAM_DATA
updates switched off for that connection) and ask for a full snapshot (Resync). quinn and
the relay then hold the rest of the snapshot in the relay's memory (no kernel buffer takes
it, unlike TCP). LOOP=1: once closed (4501), resume with a Hello carrying the resume token,
stalled from the start, until SECS is up. Needs ../fifth/qc.py (PYTHONPATH) and a relay with
QUIC on TR_PORT (7600-7700), TR_CERT. Prints relay RSS every second and the 4501s.
TR_PID, M (60), ENTS (4), FB (980), SECS (20), LOOP (0), MPORT (the relay's plain /metrics port, optional)."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qc import *   # noqa  (../fifth/qc.py: HOST, PORT, config, Client, frame, env, cm, pb)
from procstat import rss_kib, cpu_secs
import aioquic.quic.connection as qconn
from aioquic.asyncio import connect as qconnect
M = int(os.environ.get("M", "60")); ENTS = int(os.environ.get("ENTS", "4")); FB = int(os.environ.get("FB", "980"))
SECS = float(os.environ.get("SECS", "20")); LOOP = os.environ.get("LOOP", "0") == "1"
PID = int(os.environ["TR_PID"]); TAG = os.environ.get("TAG", str(os.getpid()))
_wcl, _wsl = qconn.QuicConnection._write_connection_limits, qconn.QuicConnection._write_stream_limits
def wcl(self, *a, **k):
    if not getattr(self, "stall", False): return _wcl(self, *a, **k)
def wsl(self, *a, **k):
    if not getattr(self, "stall", False): return _wsl(self, *a, **k)
qconn.QuicConnection._write_connection_limits = wcl
qconn.QuicConnection._write_stream_limits = wsl
stats = {"closes": {}, "resumes": 0, "failed": 0}

async def session(i, ready, go):
    room = f"qbig-{TAG}"
    cfg = config(max_data=262144, max_stream_data=262144)
    async with connect(HOST, PORT, configuration=cfg, create_protocol=Client, wait_connected=True) as c:
        c.send_hello()
        w = await asyncio.wait_for(c.welcome, 10)
        token = w.resume_token
        c.send_env(cm(join=pb.JoinRoom(request_id=1, room=room, room_type="relay")))
        t0 = time.time(); mid = None
        while mid is None and time.time() - t0 < 10:
            for _, m, _ in c.msgs:
                if m.WhichOneof("kind") == "joined": mid = m.joined.member_id
            await asyncio.sleep(0.05)
        for e in range(ENTS):
            ent = pb.Entity(id=mid * 1000 + e, kind=1, fields=[pb.Field(id=f + 1, bytes=os.urandom(FB)) for f in range(15)])
            c.send_env(cm(input=pb.Input(room=room, seq=e + 1, writes=pb.EntityWrites(create=[ent]))))
        ready.append(1)
        await go.wait()
        c._quic.stall = True
        c.send_env(cm(request=pb.Request(request_id=9, resync=pb.Resync(room=room))))
        end = time.time() + SECS
        while c.closed is None and time.time() < end:
            await asyncio.sleep(0.25)
        if c.closed: stats["closes"][c.closed[0]] = stats["closes"].get(c.closed[0], 0) + 1
    while LOOP and time.time() < end:
        try:
            async with connect(HOST, PORT, configuration=config(max_data=65536, max_stream_data=65536),
                               create_protocol=Client, wait_connected=True) as c:
                c._quic.stall = True
                c.send_raw(frame(pb.Hello(resume_token=token, received_seq=0).SerializeToString()))
                stats["resumes"] += 1
                while c.closed is None and time.time() < end:
                    await asyncio.sleep(0.25)
                if c.closed: stats["closes"][c.closed[0]] = stats["closes"].get(c.closed[0], 0) + 1
        except Exception as e:
            stats["failed"] += 1; await asyncio.sleep(0.5)

async def main():
    ready, go = [], asyncio.Event()
    t0 = time.time(); c0 = cpu_secs(PID); peak = 0
    tasks = [asyncio.create_task(session(i, ready, go)) for i in range(M)]
    while len(ready) < M and time.time() - t0 < 60:
        bad = [t.exception() for t in tasks if t.done() and t.exception()]
        if bad: print("failed:", bad[:2]); break
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.5)
    print(f"{len(ready)} sessions wrote in {time.time()-t0:.1f}s; RSS {rss_kib(PID)/1024:.1f} MiB; stall + Resync", flush=True)
    go.set(); t1 = time.time()
    while not all(t.done() for t in tasks):
        rss = rss_kib(PID); peak = max(peak, rss)
        print(f"t={time.time()-t1:5.1f}s relay RSS {rss/1024:7.1f} MiB CPU {cpu_secs(PID)-c0:6.2f}s", flush=True)
        await asyncio.sleep(1)
    print(f"peak RSS {peak/1024:.1f} MiB; {stats}", flush=True)
asyncio.run(main())
