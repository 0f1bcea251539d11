"""Exhausting the clients' three re-quick-joins. K attacker rooms {mode: M} on n2, 2 members each
(fuller than the honest 1-member room H {mode: M} on n2), are locked except for a short window
around each of n2's renewals (every lease/3 = 2 s), found by polling ListRooms on n1: the
directory always lists them open, while a redirected join finds them locked (ROOM_FULL).
Honest clients on n1 quick-join {mode: M} as the Rust/browser clients do: follow the redirect
with the seat ticket, on ROOM_FULL quick-join again excluding the refused rooms, up to 3 times.
FLICKER=0: control (the attacker rooms stay unlocked). MODE=meta: the rooms stay unlocked and
their metadata flickers instead (mode matches only in the windows). LOCAL_LAST=1 (default): the
fourth try is sent `local_only`, as the clients do since the forty-third session (0: as before)."""
import asyncio, os, time
from lib18 import *
N1 = os.environ.get("N1", "ws://127.0.0.1:8121/ws"); N2 = os.environ.get("N2", "ws://127.0.0.1:8122/ws")
K = int(os.environ.get("K", "4")); HON = int(os.environ.get("HON", "20")); FLICKER = os.environ.get("FLICKER", "1") == "1"
A = float(os.environ.get("A", "0.12")); B = float(os.environ.get("B", "0.08")); P = float(os.environ.get("P", "2.0"))
T = int(time.time()) % 100000
async def conn(url, addr):
    c = C(); c.ws = await websockets.connect(url, ping_interval=None, max_size=1<<26, local_addr=(addr, 0), open_timeout=20)
    s = pb.ServerEnvelope(); s.ParseFromString(await c.ws.recv()); c.welcome = s.messages[0].welcome; c._handle(s)
    c.task = asyncio.create_task(c._read()); return c
async def main():
    mode = "fl%d" % T
    host = await conn(N2, "127.60.0.1")
    await host.send(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"mode": mode})))
    m = await host.wait(lambda k, m: k in ("joined", "error", "redirect")); H = m.joined.room
    ids = ["zz%05d-%02d" % (T, i) for i in range(K)]
    own = await conn(N2, "127.60.0.2"); guest = await conn(N2, "127.60.0.3")
    for r in ids:
        await own.join(r, 1, create=pb.RoomOptions(metadata={"mode": mode})); await guest.join(r, 1)
    pollers = [await conn(N1, "127.61.0.%d" % i) for i in range(1, 5)]
    rid = [10]
    MODE = os.environ.get("MODE", "lock")   # lock: the original; meta: flicker the metadata, rooms stay unlocked
    async def set_lock0(locked):
        for r in ids:
            rid[0] += 1; await own.send(cm(request=pb.Request(request_id=rid[0], update_room=pb.UpdateRoom(room=r, lock=pb.ROOM_LOCK_LOCKED if locked else pb.ROOM_LOCK_UNLOCKED))))
    async def set_meta(matching):
        for r in ids:
            rid[0] += 1; await own.send(cm(request=pb.Request(request_id=rid[0], update_room=pb.UpdateRoom(room=r, metadata={"mode": mode if matching else "x" + mode}))))
    calls = [0]
    async def set_lock(locked):
        calls[0] += 1
        if MODE == "lock" or calls[0] == 1:
            await set_lock0(locked)          # phase detection: a plain lock
        elif calls[0] == 2:
            await set_meta(True); await set_lock0(False)   # first window: unlocked from now on, metadata matching
        else:
            await set_meta(not locked)       # then only the metadata flickers
    listed = []   # (time, locked as the directory lists it)
    async def poll(stop):
        n = 0
        while time.time() < stop:
            c = pollers[n % len(pollers)]; n += 1; i = len(c.msgs); t = time.time()
            await c.send(cm(request=pb.Request(request_id=n, list_rooms=pb.ListRooms(after="zz%05d-" % T, limit=1, room_type="relay"))))
            m = await c.wait(lambda k, m, n=n: k == "response" and m.response.request_id == n, 2, start=i)
            if m and m.response.rooms.rooms: listed.append((t, m.response.rooms.rooms[0].locked))
            await asyncio.sleep(max(0, 0.03 - (time.time() - t)))
    def flip_after(t0, want):
        for t, lk in listed:
            if t >= t0 and lk == want: return t
    stop_all = time.time() + 10 + HON * 1.2 + 30
    poller = asyncio.create_task(poll(stop_all))
    await asyncio.sleep(3)
    phase = None
    if FLICKER:   # find n2's renewal phase: lock, see when the directory lists it locked
        t0 = time.time(); await set_lock(True)
        while phase is None and time.time() < t0 + 5:
            await asyncio.sleep(0.05); phase = flip_after(t0, True)
        print("renewal seen at +%.2fs after locking" % (phase - t0))
    state = {"locked": True, "windows": 0}
    async def flicker(stop):
        r = phase
        while time.time() < stop:
            r += P
            await asyncio.sleep(max(0, r - A - time.time())); await set_lock(False)
            await asyncio.sleep(max(0, r + B - time.time())); await set_lock(True); state["windows"] += 1
            # (no feedback: while this works the directory never lists them locked; the
            # renewals' interval, lease/3, keeps its phase)
    fl = asyncio.create_task(flicker(stop_all)) if FLICKER else None
    await asyncio.sleep(2.5)
    results = {}; lat = []; t_hon = time.time()
    for h in range(HON):
        c = await conn(N1, "127.62.%d.%d" % (h // 200 + 1, h % 200 + 1)); excl = []; t = time.time(); out = None
        for attempt in range(4):
            i = len(c.msgs)
            local = attempt == 3 and os.environ.get("LOCAL_LAST", "1") == "1"
            await c.send(cm(quick_join=pb.QuickJoin(request_id=attempt + 1, room_type="relay", filters={"mode": mode}, exclude=excl, local_only=local)))
            m = await c.wait(lambda k, m, a=attempt: k in ("joined", "error", "redirect") and getattr(m, k).request_id == a + 1, 6, start=i)
            k = m.WhichOneof("kind") if m else "timeout"
            if k != "redirect": out = k if k != "joined" else ("joined-new" if m.joined.room not in ids + [H] else "joined") + " (try %d)" % (attempt + 1); break
            r2 = await conn(m.redirect.url, "127.62.%d.%d" % (h // 200 + 1, h % 200 + 1))
            j = await r2.join(m.redirect.room, 1, seat=m.redirect.seat)
            jk = j.WhichOneof("kind") if j else "timeout"
            if jk == "joined":
                out = "H" if m.redirect.room == H else "attacker-room"; await r2.close(); break
            code = j.error.code if jk == "error" else None
            await r2.close()
            if code != pb.ERROR_CODE_ROOM_FULL: out = "join-%s-%s" % (jk, code); break
            excl.append(m.redirect.room); out = "ROOM_FULL x%d (to the application)" % (attempt + 1)
        lat.append(time.time() - t); results[out] = results.get(out, 0) + 1
        await c.close(); await asyncio.sleep(0.5)
    lk = [l for t, l in listed if t > t_hon]
    print("K=%d FLICKER=%d: directory listed the attacker rooms locked in %d of %d polls; %d windows" % (K, FLICKER, sum(lk), len(lk), state["windows"]))
    print("honest quick joins on n1 (%d): %s; mean %.2fs" % (HON, results, sum(lat) / len(lat)))
    poller.cancel(); fl and fl.cancel()
    for c in pollers + [host, own, guest]: await c.close()
asyncio.run(main())
