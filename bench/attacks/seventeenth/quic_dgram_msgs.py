"""QUIC datagrams carrying more than acks: acks of tick 2^64-1 / future ticks, inputs with bad seq, numbered events out of order, joins, and an event flood in datagrams."""
import asyncio, os, sys, time
sys.path.insert(0, os.environ.get("TR_LIB", "/tmp/attack17/lib"))
from qc import pb, quic_connect, env, cm, frame
from procstat import cpu_secs, rss_kib
PID = int(os.environ.get("TR_PID", "0"))
ROOM = "qd17"


def errs(c, since=0):
    return [(m.error.code, m.error.message[:60], m.error.request_id) for t, m, _ in c.msgs[since:] if m.WhichOneof("kind") == "error"]


async def main():
    async with quic_connect() as a, quic_connect() as b:
        for c in (a, b):
            c.send_hello()
            await asyncio.wait_for(c.welcome, 5)
            c.send_env(cm(join=pb.JoinRoom(request_id=1, room=ROOM, room_type="arena")))
        await asyncio.sleep(1)
        ticks = [m.state.tick for _, m, _ in a.msgs if m.WhichOneof("kind") == "state"]
        print("joined; a got", len(ticks), "frames, last tick", ticks[-1] if ticks else None)
        n = len(a.msgs)
        cases = [
            ("ack u64max", env(cm(ack=pb.Ack(room=ROOM, tick=2**64 - 1)))),
            ("ack future", env(cm(ack=pb.Ack(room=ROOM, tick=(ticks[-1] if ticks else 0) + 100000)))),
            ("input seq 2^53+5", env(cm(input=pb.Input(room=ROOM, seq=2**53 + 5, intent=b"\x7f\x00")))),
            ("input seq 0", env(cm(input=pb.Input(room=ROOM, seq=0, intent=b"\x7f\x00")))),
            ("input no payload", env(cm(input=pb.Input(room=ROOM, seq=3)))),
            ("join via dgram", env(cm(join=pb.JoinRoom(request_id=77, room="qd17b", room_type="relay")))),
        ]
        for name, d in cases:
            n = len(a.msgs)
            a.send_dgram(d)
            await asyncio.sleep(0.6)
            ks = [m.WhichOneof("kind") for _, m, _ in a.msgs[n:]]
            print(f"{name:18s} -> errors {errs(a, n)} kinds {sorted(set(ks))} closed={a.closed}")
        # numbered events in datagrams, sent 5,4,3,2,1 (one per datagram): which reach b?
        nb = len(b.msgs)
        for s in (5, 4, 3, 2, 1, 6):
            e = pb.ClientEnvelope(first_event_seq=s)
            e.messages.append(cm(event=pb.SendEvent(room=ROOM, kind="n", payload=str(s).encode())))
            a.send_dgram(e.SerializeToString())
        await asyncio.sleep(0.5)
        got = [m.event.payload.decode() for _, m, _ in b.msgs[nb:] if m.WhichOneof("kind") == "event"]
        print("numbered events 5,4,3,2,1,6 via datagrams -> b got", got)
        # event flood in datagrams: 400 events in 2 s (limit 50/s, burst 100)
        n, nb, c0 = len(a.msgs), len(b.msgs), cpu_secs(PID)
        for i in range(400):
            a.send_dgram(env(cm(event=pb.SendEvent(room=ROOM, kind="f", payload=b"y" * 600))))
            if i % 20 == 0:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)
        got = sum(1 for _, m, _ in b.msgs[nb:] if m.WhichOneof("kind") == "event")
        rl = sum(1 for e in errs(a, n) if e[0] == pb.ERROR_CODE_RATE_LIMITED)
        print(f"event flood via dgrams: 400 sent, b got {got}, a RATE_LIMITED errors {rl}, a closed={a.closed}, relay cpu {cpu_secs(PID)-c0:.2f}s rss {rss_kib(PID)//1024}MiB")
        nbs = len([1 for _, m, _ in b.msgs if m.WhichOneof("kind") == "state"])
        await asyncio.sleep(1)
        print("b still receives frames:", len([1 for _, m, _ in b.msgs if m.WhichOneof("kind") == "state"]) - nbs, "in 1 s; b closed", b.closed)

asyncio.run(main())
