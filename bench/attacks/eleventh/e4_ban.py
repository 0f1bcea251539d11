"""E4: bans across nodes: a ban issued through another node, a seat ticket taken before the
ban, a ban right before a SIGTERM hand-off, a banned user's quick join, an away member."""
import asyncio, subprocess, time, os, urllib.parse
import lib11 as L
from lib11 import pb

R = 'banroom-' + str(int(time.time()) % 100000)

async def main():
    al = await L.C('alice', 0).connect()
    print('alice', L.desc(await al.join(R, metadata={'mode': 'bantest'})))
    eve = await L.C('eve', 0).connect()
    print('eve', L.desc(await eve.join(R)))
    # a seat ticket for eve, taken before the ban, through n3
    eve3 = await L.C('eve', 2).connect()
    red = await eve3.join(R)
    print('eve via n3 before ban:', L.desc(red))
    # an away member: 'zed' joins then drops its TCP without a close
    zed = await L.C('zed', 0).connect()
    print('zed', L.desc(await zed.join(R)))
    zed.ws.transport.abort()
    await asyncio.sleep(0.2)
    # bans through n2
    for u in ('eve', 'zed'):
        print('ban', u, L.api(1, 'DELETE', '/rooms/%s/users/%s?ban_secs=600&reason=test' % (R, u))[:2])
    await asyncio.sleep(0.3)
    print('eve got', [L.desc(m) for m in eve.kinds('left')])
    # eve joins again through n1 directly, and through n2
    print('eve rejoin on n1:', L.desc(await eve.join(R)))
    e2 = await L.C('eve', 1).connect()
    r = await e2.join(R)
    print('eve join via n2:', L.desc(r))
    # the seat ticket from before the ban, on n1
    e1b = await L.C('eve', 0).connect()
    print('eve with pre-ban seat on n1:', L.desc(await e1b.join(R, seat=red.redirect.seat if red and red.WhichOneof('kind') == 'redirect' else '')))
    # zed resumes
    z2 = L.C('zed', 0)
    try:
        await z2.connect(resume=zed.welcome.resume_token, received=zed.last_seq)
        await asyncio.sleep(1.5)
        print('zed resumed:', z2.welcome.resumed, 'msgs', [L.desc(m) for _, m in z2.msgs if m.WhichOneof('kind') in ('left', 'joined', 'error')], 'state frames', len(z2.kinds('state')))
        print('zed input ->', await z2.inp(R, create=[z2.id * 1000 + 1]))
        await asyncio.sleep(0.3)
        print('zed errors', z2.errstr())
    except Exception as e:
        print('zed resume', e)
    # quick join by eve with the room's filters (give the renewal time to list bans)
    await asyncio.sleep(3)
    for node in (0, 1, 2):
        q = await L.C('eve', node).connect()
        r = await q.quick(room_type='relay', filters={'mode': 'bantest'})
        print('eve quick join via n%d:' % (node + 1), L.desc(r))
    # ban a new user 'mal' then SIGTERM n1 at once
    mal = await L.C('mal', 0).connect()
    print('mal', L.desc(await mal.join(R)))
    st = L.api(1, 'DELETE', '/rooms/%s/users/mal?ban_secs=600' % R)
    subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), 'node.sh'), '1', 'stop'])
    print('ban mal then stop n1:', st[:2])
    while not al.closed:
        await asyncio.sleep(0.01)
    ga = al.kinds('going_away')
    print('alice closed', al.closed, [m.going_away.url for m in ga])
    await asyncio.sleep(0.5)
    target = int(ga[0].going_away.url.split(':')[2][:4]) - 7811 if ga else 1
    a2 = L.C('alice', target)
    await a2.connect(resume=al.welcome.resume_token, received=0)
    print('alice continued', L.desc(await a2.join(R)))
    for u in ('mal', 'eve', 'zed'):
        c = await L.C(u, target).connect()
        print(u, 'joins restored room:', L.desc(await c.join(R)))
    st = L.api(target, 'GET', '/rooms/' + R)
    print('GET restored:', st[0], st[1][:600])

asyncio.run(main())
