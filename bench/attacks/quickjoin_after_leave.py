"""Honest flow: a player in room R (others there) leaves and at once asks QuickJoin for
'another game'. QuickJoin picks the fullest open room, which is R again (the session is
no longer in it, so it is not skipped), and the new rule refuses it with RATE_LIMITED
although other rooms of the type have free seats.  Bounded < 15 s."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tr
from tr import pb

async def main():
    others = []
    for i in range(3):   # R has 3 other members, S has 1: R is the fullest
        w = await tr.connect(); await w.send(tr.env(tr.join("R", 1))); others.append(w)
    s = await tr.connect(); await s.send(tr.env(tr.join("S", 1))); others.append(s)
    await asyncio.sleep(0.5)
    A = await tr.connect()
    await A.send(tr.env(tr.join("R", 1)))
    await tr.recv_until(A, lambda m: m.WhichOneof("kind") == "joined")
    await asyncio.sleep(0.3)
    await A.send(tr.env(pb.ClientMessage(leave=pb.LeaveRoom(request_id=2, room="R")),
                        pb.ClientMessage(quick_join=pb.QuickJoin(request_id=3, room_type="relay"))))
    msgs = await tr.drain(A, 0.5)
    for m in msgs:
        k = m.WhichOneof("kind")
        if k == "joined": print("QuickJoin ->", "Joined", m.joined.room)
        if k == "error": print("QuickJoin ->", "Error", m.error.code, m.error.message, "room", m.error.room, "retry", m.error.retry_after_ms)
    for w in others + [A]: w.transport.abort()

asyncio.run(asyncio.wait_for(main(), 15))
