"""E9: many closes of live rooms through the API (room on n1, 2 members with entities, DELETE via
VIA node); after each, does Redis keep the room's checkpoint/entry, and does a new join get the old state?"""
import asyncio, time, os
import lib11 as L

N = int(os.environ.get('N', '20')); VIA = int(os.environ.get('VIA', '1'))

async def main():
    bad = 0
    a = await L.C('alice', 0).connect()
    b = await L.C('bob', 0).connect()
    for k in range(N):
        R = 'cl-%d-%d' % (int(time.time()) % 100000, k)
        await a.join(R); await b.join(R)
        for s in range(1, 3):
            await a.inp(R, create=[a.id * 1000 + s], seq=s)
        await asyncio.sleep(float(os.environ.get('AGE', '0.3')))
        st = L.api(VIA, 'DELETE', '/rooms/%s' % R)
        await asyncio.sleep(1.0)
        ck, entry = L.redis('exists', 'tickrelay:checkpoint:' + R), L.redis('hget', 'tickrelay:room:' + R, 'node')
        c = await L.C('carol', 2).connect()
        r = await c.join(R)
        if r and r.WhichOneof('kind') == 'redirect':
            n = int(r.redirect.url.split(':')[2][:4]) - 7811
            await c.close()
            c = await L.C('carol', n).connect()
            r = await c.join(R, seat=r.redirect.seat)
        await asyncio.sleep(0.3)
        ents = sorted(c.entities.get(R, {}).keys())
        if ck != '0' or entry or ents:
            bad += 1
            print(k, R, 'DELETE', st[0], 'checkpoint', ck, 'entry', entry, 'carol:', L.desc(r), 'entities', ents)
        await c.leave(R); await c.close()
    print('resurrected %d of %d' % (bad, N))

asyncio.run(main())
