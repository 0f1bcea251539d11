import asyncio, os, time
from lib18 import *
async def main():
    for mode in ["exact", "zero", "none"]:
        a = await C().open(); b = await C().open()
        room = "rh%d" % int(time.time()*1000)
        await a.join(room, 1); await b.join(room, 1)
        await asyncio.sleep(0.3)
        await b.send(cm(event=pb.SendEvent(room=room, kind="k", payload=b"before")))
        await asyncio.sleep(0.3)
        la = a.last_seq; a.abort(); await asyncio.sleep(0.5)
        for i in range(3): await b.send(cm(event=pb.SendEvent(room=room, kind="k", payload=b"away%d" % i)))
        await asyncio.sleep(0.5)
        q = "resume=%s" % a.welcome.resume_token + {"exact": "&received=%d" % la, "zero": "&received=0", "none": ""}[mode]
        a2 = await C().open(q)
        await asyncio.sleep(1.5)
        print(mode, "la", la, "resumed", a2.welcome.resumed, [(k, getattr(m, k).payload if k == "event" else "") for t, k, m in a2.msgs if k != "state"])
        await a2.close(); await b.close()
asyncio.run(main())
