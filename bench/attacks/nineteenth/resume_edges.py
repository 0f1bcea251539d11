"""Resume edge cases: received= far above what was sent, negative, 2^64-1; Ping{received_seq}
above the last number sent; do messages that waited while away still arrive?  And inputs
with seq 2^53-1 / 2^53 / 2^64-1 / 0."""
import asyncio, os, time
from lib18 import *
async def main():
    for rq in ["received=999999999", "received=18446744073709551615", "received=-1", "received=0", "received=abc"]:
        a = await C().open(); b = await C().open()
        room = "rs%d" % int(time.time()*1000)
        await a.join(room, 1); await b.join(room, 1)
        await asyncio.sleep(0.2)
        await b.send(cm(event=pb.SendEvent(room=room, kind="k", payload=b"before")))
        await asyncio.sleep(0.3)
        la = a.last_seq; a.abort(); await asyncio.sleep(0.3)
        for i in range(3): await b.send(cm(event=pb.SendEvent(room=room, kind="k", payload=b"away%d" % i)))
        await asyncio.sleep(0.3)
        a2 = await C().open(rq.replace("received", "resume=%s&received" % a.welcome.resume_token))
        await asyncio.sleep(1.5)
        evs = [e.payload for t, e in a2.events]
        print("%-32s last_seq was %d -> resumed %s, events after resume %s, closed %s, first_seq seen %s" % (rq, la, a2.welcome.resumed, evs, a2.closed, a2.last_seq))
        # live: b sends again
        await b.send(cm(event=pb.SendEvent(room=room, kind="k", payload=b"live")))
        await asyncio.sleep(0.3)
        print("   live event reached:", [e.payload for t, e in a2.events][-1:])
        await a2.close(); await b.close()
    # Ping received_seq huge while connected, then away messages
    a = await C().open(); b = await C().open(); room = "pg%d" % int(time.time())
    await a.join(room, 1); await b.join(room, 1); await asyncio.sleep(0.2)
    await a.send(cm(ping=pb.Ping(nonce=1, received_seq=(1 << 64) - 1)))
    await asyncio.sleep(0.2)
    await b.send(cm(event=pb.SendEvent(room=room, kind="k", payload=b"after-huge-ping")))
    await asyncio.sleep(0.3)
    print("after Ping{received_seq=2^64-1}: got", [e.payload for t, e in a.events], "closed", a.closed)
    # inputs with extreme seqs
    for seq in [0, (1 << 53) - 1, 1 << 53, (1 << 64) - 1]:
        i = len(a.msgs)
        await a.send(cm(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(create=[pb.Entity(id=seq % 1000 + 5, fields=[pb.Field(id=1, int=1)])]))))
        await asyncio.sleep(0.2)
        errs = [(m.error.code, m.error.message[:60]) for t, k, m in a.msgs[i:] if k == "error"]
        lis = [m.state.last_input_seq for t, k, m in a.msgs[i:] if k == "state"]
        print("input seq", seq, "errors", errs, "last_input_seq", lis[-1:] if lis else None)
    await a.close(); await b.close()
asyncio.run(main())
