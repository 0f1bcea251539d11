"""E6: listings and quick joins across nodes: a private room, a locked room, an open room
(all with metadata leak=TAG), before and after the private room's node hands it off."""
import asyncio, os, time, json, subprocess
import lib11 as L
from lib11 import pb

TAG = str(int(time.time()))

async def probe(label):
    seen = {}
    for node in range(3):
        try:
            c = await L.C('lister%d' % node, node).connect()
        except OSError:
            continue
        r = await c.list(filters={'leak': TAG})
        rooms = [(x.room, x.members, x.locked) for x in r.response.rooms.rooms] if r and r.WhichOneof('kind') == 'response' else L.desc(r)
        r2 = await c.list(filters={'leak': TAG}, open_only=True)
        rooms2 = [x.room for x in r2.response.rooms.rooms] if r2 and r2.WhichOneof('kind') == 'response' else L.desc(r2)
        st, body, _ = L.api(node, 'GET', '/rooms?filter.leak=' + TAG)
        api = [(x['room'], x['members'], x['locked']) for x in json.loads(body)['rooms']] if st == 200 else (st, body)
        print('%s n%d list=%s open_only=%s api=%s' % (label, node + 1, rooms, rooms2, api))
        await c.close()

async def main():
    p = await L.C('powner', 0).connect()
    print(L.desc(await p.join('priv-' + TAG, metadata={'leak': TAG}, private=True)))
    k = await L.C('kowner', 1).connect()
    print(L.desc(await k.join('lock-' + TAG, metadata={'leak': TAG})))
    print(L.desc(await k.update('lock-' + TAG, lock=pb.ROOM_LOCK_LOCKED)))
    # fill the private and locked rooms with a few members so they are the "fullest"
    extra = []
    for i in range(3):
        c = await L.C('filler%d' % i, 0).connect(); extra.append(c)
        print(L.desc(await c.join('priv-' + TAG)))
        c = await L.C('kfill%d' % i, 1).connect(); extra.append(c)
        print(L.desc(await c.join('lock-' + TAG)))
    await asyncio.sleep(2.5)  # a renewal
    await probe('before')
    for node in range(3):
        q = await L.C('quick%d' % node, node).connect()
        print('quick via n%d:' % (node + 1), L.desc(await q.quick(filters={'leak': TAG})))
    subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), 'node.sh'), '1', 'stop'])
    while not p.closed:
        await asyncio.sleep(0.01)
    url = p.kinds('going_away')[0].going_away.url
    target = int(url.split(':')[2][:4]) - 7811
    p2 = L.C('powner', target)
    await p2.connect(resume=p.welcome.resume_token, received=0)
    print('private owner back:', L.desc(await p2.join('priv-' + TAG)))
    await asyncio.sleep(2.5)
    await probe('after')
    for node in (1, 2):
        q = await L.C('quickb%d' % node, node).connect()
        print('quick via n%d:' % (node + 1), L.desc(await q.quick(filters={'leak': TAG})))
    st, body, _ = L.api(target, 'GET', '/rooms/priv-' + TAG)
    print('GET priv', st, body[:400])

asyncio.run(main())
