"""E7: API calls for a room between nodes (its node stopped, nobody rejoined yet): DELETE the
room (MODE=close), or ban a member (MODE=ban), or publish (MODE=event), through another node;
then the members come back through their GoingAway URL."""
import asyncio, time, json, subprocess, os
import lib11 as L
from lib11 import pb

MODE = os.environ.get('MODE', 'close')
R = 'ho-%s-%d' % (MODE, int(time.time()) % 100000)

async def main():
    a = await L.C('alice', 0).connect()
    b = await L.C('bob', 0).connect()
    print(L.desc(await a.join(R)), L.desc(await b.join(R)))
    for s in range(1, 4):
        await a.inp(R, create=[a.id * 1000 + s])
    await asyncio.sleep(0.5)
    subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), 'node.sh'), '1', 'stop'])
    while not (a.closed and b.closed):
        await asyncio.sleep(0.005)
    ga = a.kinds('going_away')[0].going_away.url
    tgt = int(ga.split(':')[2][:4]) - 7811
    other = 3 - tgt  # the live node that is not the GoingAway target (1 or 2)
    if MODE == 'close':
        r = L.api(other, 'DELETE', '/rooms/%s?reason=over' % R)
    elif MODE == 'ban':
        r = L.api(other, 'DELETE', '/rooms/%s/users/bob?ban_secs=600' % R)
    else:
        r = L.api(other, 'POST', '/rooms/%s/events?kind=between' % R, body=b'hello-between')
    print('API via n%d while between nodes: %s' % (other + 1, r[:2]))
    for i in range(4):
        await asyncio.sleep(0.25)
        print('  t+%.2f checkpoint=%s claim=%s room=%s' % ((i + 1) * 0.25, L.redis('exists', 'tickrelay:checkpoint:' + R), L.redis('get', 'tickrelay:claim:' + R), L.redis('hget', 'tickrelay:room:' + R, 'node') or '-'))
    await asyncio.sleep(0.5)
    st = L.api(other, 'GET', '/rooms/' + R)
    print('GET via n%d: %s %s' % (other + 1, st[0], st[1][:300]))
    for c, name in ((a, 'alice'), (b, 'bob')):
        c2 = L.C(name, tgt)
        await c2.connect(resume=c.welcome.resume_token, received=0)
        r = await c2.join(R)
        print(name, 'rejoins via n%d: %s' % (tgt + 1, L.desc(r)))
        if r and r.WhichOneof('kind') == 'redirect':
            n = int(r.redirect.url.split(':')[2][:4]) - 7811
            c3 = await L.C(name, n).connect()
            r = await c3.join(R, seat=r.redirect.seat)
            print('  then', L.desc(r))
            c2 = c3
        await asyncio.sleep(1.2)
        print('  %s sees entities %s, events %s, left %s' % (name, sorted(c2.entities.get(R, {}).keys()),
              [(m.event.kind, m.event.payload) for m in c2.kinds('event')], [L.desc(m) for m in c2.kinds('left')]))

asyncio.run(main())
