"""E5: three nodes race for new rooms: the same fresh room joined at once through n1, n2 and
n3 (private on one, metadata on another); then GET /rooms/ROOM on each node: how many
answer 200 (hold it locally)?"""
import asyncio, time, json, os
import lib11 as L

N = int(os.environ.get('N', '40'))

async def follow(c, r, room):
    if r is None or r.WhichOneof('kind') != 'redirect':
        return c, r
    node = int(r.redirect.url.split(':')[2][:4]) - 7811
    c2 = await L.C(c.name, node).connect()
    return c2, await c2.join(room, seat=r.redirect.seat)

async def main():
    cs = [await L.C('racer%d' % i, i).connect() for i in range(3)]
    split = 0; outcomes = {}
    tag = str(int(time.time()))
    for k in range(N):
        room = 'race-%s-%d' % (tag, k)
        opts = [dict(private=True), dict(metadata={'m': 'x'}), dict()]
        rs = await asyncio.gather(*[cs[i].join(room, **opts[i]) for i in range(3)])
        kinds = tuple(r.WhichOneof('kind') if r else None for r in rs)
        outcomes[kinds] = outcomes.get(kinds, 0) + 1
        fin = await asyncio.gather(*[follow(cs[i], rs[i], room) for i in range(3)])
        holders = []
        for i in range(3):
            st, body, _ = L.api(i, 'GET', '/rooms/' + room)
            if st == 200:
                holders.append((i + 1, len(json.loads(body)['members']), json.loads(body)['private']))
        if len(holders) != 1 or holders[0][1] != 3:
            split += 1
            print('room', room, 'answers', kinds, 'final', [L.desc(f[1]) for f in fin], 'holders', holders)
        for c2, r in fin:
            if c2 not in cs:
                await c2.close()
            else:
                await c2.leave(room)
    print('outcomes', outcomes, 'anomalies', split)

asyncio.run(main())
