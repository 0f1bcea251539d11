"""E8: DELETE /rooms/R for a room between nodes (its node just stopped): does the room come back
with its old state? Watches Redis's checkpoint key. WHERE=live: the same DELETE while the node lives."""
import asyncio, time, json, subprocess, os
import lib11 as L

WHERE = os.environ.get('WHERE', 'between')
R = 'cr-%s-%d' % (WHERE, int(time.time()) % 100000)

def ck():
    return 'checkpoint=%s claim=%s room=%s' % (L.redis('exists', 'tickrelay:checkpoint:' + R), L.redis('get', 'tickrelay:claim:' + R), L.redis('hget', 'tickrelay:room:' + R, 'node') or '-')

async def main():
    a = await L.C('alice', 0).connect()
    print(L.desc(await a.join(R)))
    if os.environ.get('MEMBERS') == '2':
        b = await L.C('bob', 0).connect()
        print(L.desc(await b.join(R)))
    for s in range(1, 4):
        await a.inp(R, create=[a.id * 1000 + s])
    await asyncio.sleep(float(os.environ.get('AGE', '1.5')))
    print('before:', ck())
    if WHERE == 'between':
        subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), 'node.sh'), '1', 'stop'])
        while not a.closed:
            await asyncio.sleep(0.005)
        if not os.environ.get('NOCK'):
            print('after stop:', ck())
    r = L.api(2, 'DELETE', '/rooms/%s?reason=match%%20over' % R)
    print('DELETE via n3:', r[:2])
    for i in range(6):
        await asyncio.sleep(0.5)
        print('  t+%.1fs %s GET=%s' % ((i + 1) * 0.5, ck(), L.api(1, 'GET', '/rooms/' + R)[0]))
    print('alice left msgs:', [L.desc(m) for m in a.kinds('left')])
    c = await L.C('carol', 1).connect()
    r = await c.join(R)
    print('carol joins via n2:', L.desc(r))
    if r and r.WhichOneof('kind') == 'redirect':
        n = int(r.redirect.url.split(':')[2][:4]) - 7811
        c = await L.C('carol', n).connect()
        r = await c.join(R, seat=r.redirect.seat)
        print('  then', L.desc(r))
    await asyncio.sleep(1)
    print('carol sees entities', sorted(c.entities.get(R, {}).keys()))
    st = L.api(1, 'GET', '/rooms/' + R, follow=True)
    print('GET', st[0], st[1][:400])

asyncio.run(main())
