"""Resume with crafted `received`: A (in a room with B) drops its TCP connection without a
close; B sends 5 numbered events, some while A's old connection still looks alive; A
resumes with received=VALUE. Counts the events A gets after the resume (expect all 5 that
it never read). TR_URL set; anonymous relay."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/attacks: tr.py
from tr import *
VALUES = ["", "0", "1", "18446744073709551615", "18446744073709551616", "-1", "1e3", "99999999999999999999999999", "abc", "3&received=0"]
async def run(val, idx):
    room = f"rr{idx}"
    a = await connect(); wa = decode(await a.recv()).messages[0].welcome
    await a.send(env(join(room, 1, "relay")))
    _, seen = await recv_until(a, lambda m: m.WhichOneof("kind") == "state", 3)
    b = await connect(); decode(await b.recv())
    await b.send(env(join(room, 1, "relay")))
    await recv_until(b, lambda m: m.WhichOneof("kind") == "joined", 3)
    _, s2 = await recv_until(a, lambda m: m.WhichOneof("kind") == "presence", 3)
    last = 0
    # A's numbered messages so far: Joined (1) + presence...
    a.transport.abort()   # no close frame
    for i in range(5):
        await b.send(env(cm(event=pb.SendEvent(room=room, kind=f"e{i}", payload=b"x"))))
        await asyncio.sleep(0.1)
    q = f"resume={wa.resume_token}" + (f"&received={val}" if val != "" else "")
    try:
        a2 = await connect(q)
    except Exception as e:
        print(f"received={val!r}: resume refused {e}"); return
    got = await drain(a2, 1.5)
    w = [m for m in got if m.WhichOneof("kind") == "welcome"]
    evs = [m.event.kind for m in got if m.WhichOneof("kind") == "event"]
    other = [m.WhichOneof("kind") for m in got if m.WhichOneof("kind") not in ("event", "state", "welcome")]
    print(f"received={val!r}: resumed={w[0].welcome.resumed if w else None} events={evs} other={other} close={close_info(a2)}")
    await a2.close(); await b.close()
async def main():
    for i, v in enumerate(VALUES):
        await run(v, i)
asyncio.run(asyncio.wait_for(main(), 55))
