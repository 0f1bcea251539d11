"""Room owners change their rooms' metadata with ever-new key names (16 set, the previous 16 removed, per
UpdateRoom; the room's metadata stays at 16 entries). Single node: Listing.changed_keys keeps every key name.
Env: PORT, SECS, N (sessions, each owning one room), RATE (UpdateRooms per second per session), KEYLEN."""
import asyncio, os, time, random
from lib25 import *
SECS = float(os.environ.get("SECS", "60")); N = int(os.environ.get("N", "4"))
RATE = float(os.environ.get("RATE", "40")); KEYLEN = int(os.environ.get("KEYLEN", "64"))
sent = 0; errors = {}

async def owner(i):
    global sent
    c = await Client.open(f"127.9.0.{i + 1}")
    await c.welcome_()
    room = f"meta-{i}-{random.randrange(10**9)}"
    await c.send(join(room, 1))
    j = await c.answer(1)
    assert j.WhichOneof("kind") == "joined" and j.joined.owner == j.joined.member_id, j
    prev = []
    n = 0; rq = 10; t0 = time.time(); end = t0 + SECS
    async def drain():
        while True:
            m = await c.msgs.get()
            if m is None: return
            if m.WhichOneof("kind") == "error":
                errors[m.error.code] = errors.get(m.error.code, 0) + 1
    dt = asyncio.ensure_future(drain())
    while time.time() < end:
        keys = [f"k{i}-{(n % 2) if os.environ.get('MODE') == 'same' else n}-{j}".ljust(KEYLEN, "x")[:KEYLEN] for j in range(16)]
        md = {k: "v" for k in keys}
        md.update({k: "" for k in prev})
        rq += 1
        await c.send(cm(request=pb.Request(request_id=rq, update_room=pb.UpdateRoom(room=room, metadata=md))))
        sent += 1; n += 1; prev = keys
        await asyncio.sleep(max(0, t0 + n / RATE - time.time()))
    await asyncio.sleep(0.5)
    dt.cancel()
    return c

async def main():
    cs = await asyncio.gather(*(owner(i) for i in range(N)))
    print(f"UpdateRooms sent {sent}, distinct keys {sent*16}, errors {errors}", flush=True)
    hold = float(os.environ.get("HOLD", "0"))
    if hold:
        await asyncio.sleep(hold)
    for c in cs:
        await c.close()
asyncio.run(main())
