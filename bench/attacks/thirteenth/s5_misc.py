"""S5: three small checks.
 a) a hand-over and the new host's show to the old host in the same tick
 b) LeaveRoom sent after the room closed (before its Left was read)
 c) resume with received=0 after confirming everything (Ping.received_seq): metrics
"""
import asyncio, os, re, time, urllib.request
from lib13 import *

ROOM = 's5-%d' % int(time.time() * 1000)


def metric(name):
    txt = urllib.request.urlopen(API + '/metrics', timeout=5).read().decode()
    m = re.search(r'^%s(?:\{[^}]*\})? (\S+)$' % re.escape(name), txt, re.M)
    return float(m.group(1)) if m else None


async def a():
    H = await C('H').connect(); await H.join(ROOM)
    V = await C('V').connect(); await V.join(ROOM)
    R = 123456789012345
    await H.write(ROOM, create_for_room=[E(R, 2, f1=('int', 1))])
    res = []
    for k in range(6):
        # hand the room to V; V shows R to H at once, without waiting for presence OWNER
        host, other = (H, V) if k % 2 == 0 else (V, H)
        await asyncio.sleep(1.1)
        await host.send(pb.ClientMessage(request=pb.Request(request_id=900 + k, update_room=pb.UpdateRoom(room=ROOM, owner=other.id))))
        await asyncio.sleep(0.004)
        seq, e = await other.write(ROOM, show=[pb.Viewer(id=R, member=host.id)])
        await asyncio.sleep(0.3)
        res.append((k, 'accepted' if not e else [code(x) for x in e], 'old host sees R: %s' % (R in host.sees(ROOM))))
    for r in res: print('a)', *r)
    await H.close(); await V.close()


async def b():
    room = ROOM + '-b'
    H = await C('H').connect(); await H.join(room)
    A = await C('A').connect(); await A.join(room)
    A.pause = True                 # the Left stays unread in A's socket
    st, _ = await close_room(room)
    await asyncio.sleep(0.3)
    t = asyncio.create_task(A.leave(room))
    await asyncio.sleep(0.05)
    A.pause = False
    r = await t
    await asyncio.sleep(0.3)
    seen = [(x[1], x[2], code(x[4].error) if x[2] == 'error' else x[4].left.reason) for x in A.timeline
            if x[0] == 'num' and x[3] == room and x[2] in ('left', 'error')]
    print('b) close %s; then LeaveRoom answered: %s; messages for the room: %s' % (
        st, (r.WhichOneof('kind'), code(r.error) if r and r.WhichOneof('kind') == 'error' else '') if r else None, seen))
    await H.close(); await A.close()


async def c():
    room = ROOM + '-c'
    A = await C('A').connect(); await A.join(room)
    for i in range(30):
        await A.send(pb.ClientMessage(ping=pb.Ping(nonce=i)))
    await asyncio.sleep(0.5)
    lost0 = metric('tickrelay_messages_lost_total')
    for round_ in range(5):
        await A.send(pb.ClientMessage(ping=pb.Ping(nonce=1, received_seq=A.last_seq)))
        await asyncio.sleep(0.2)
        tok = A.token
        await A.drop()
        await A.connect(resume=tok, received=0)
        await asyncio.sleep(0.3)
    lost1 = metric('tickrelay_messages_lost_total')
    joined = len([x for x in A.timeline if x[0] == 'num' and x[2] == 'joined'])
    print('c) 5 resumes with received=0 after confirming: tickrelay_messages_lost_total %s -> %s; Joined received %d' % (lost0, lost1, joined))
    await A.close()


async def main():
    await a(); await b(); await c()

asyncio.run(asyncio.wait_for(main(), 60))
