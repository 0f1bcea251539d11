"""Lock race: an owner locks its room while 40 sessions (40 source addresses) quick-join it; does any quick join sent after the lock's answer land in the locked room?"""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common17 import pb, connect, env, cm, decode
N = int(os.environ.get("N", "40"))


async def sess(i):
    ws = await connect(local_addr=(f"127.0.3.{i + 1}", 0)); await ws.recv(); return ws


async def answer(ws, rid):
    while True:
        for m in decode(await ws.recv()).messages:
            k = m.WhichOneof("kind")
            if k in ("joined", "error", "response") and getattr(m, k).request_id == rid:
                return time.time(), m


async def main():
    o = await sess(200)
    await o.send(env(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"race": "2"}))))
    room = (await answer(o, 1))[1].joined.room
    js = [await sess(i) for i in range(N)]
    async def qj(j, i, delay):
        await asyncio.sleep(delay)
        t = time.time()
        await j.send(env(cm(quick_join=pb.QuickJoin(request_id=10 + i, room_type="relay", filters={"race": "2"}))))
        ta, m = await answer(j, 10 + i)
        return t, ta, m
    tl0 = time.time()
    await o.send(env(cm(request=pb.Request(request_id=8, update_room=pb.UpdateRoom(room=room, lock=pb.ROOM_LOCK_LOCKED)))))
    lock_task = asyncio.ensure_future(answer(o, 8))
    res = await asyncio.gather(*[qj(j, i, i * 0.002) for i, j in enumerate(js)])
    tl, lm = await lock_task
    print(f"lock sent t=0, answered at +{(tl-tl0)*1000:.1f} ms: {lm.WhichOneof('kind')} locked={lm.response.room.locked if lm.WhichOneof('kind')=='response' else '?'}")
    for t, ta, m in res:
        inroom = m.WhichOneof("kind") == "joined" and m.joined.room == room
        if inroom:
            print(f"  quick join sent +{(t-tl0)*1000:6.1f} ms ({'AFTER' if t > tl else 'before'} the lock's answer), joined the locked room at +{(ta-tl0)*1000:.1f} ms")
    print("answers:", {k: sum(1 for _, _, m in res if (m.WhichOneof('kind'), m.joined.room == room if m.WhichOneof('kind') == 'joined' else '') == k) for k in set((m.WhichOneof('kind'), m.joined.room == room if m.WhichOneof('kind') == 'joined' else '') for _, _, m in res)})

asyncio.run(main())
