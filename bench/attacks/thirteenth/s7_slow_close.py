"""S7: a room closes while its member's writer is blocked (the member stopped reading),
and the member, reading again, joins the room's id again at once.

A has a small receive buffer and stops reading while H writes ~30 KB every tick in a
room of ~500 KB, so the relay's write to A blocks; the room is closed (HTTP API);
A sends JoinRoom of the same id, then some pings, then reads again. Checks what A
receives: the order of Joined / state frames / Left for the room id, and whether the
session is in a room the client was told it left. ITER rounds.
"""
import asyncio, os, socket, time
from lib13 import *
import websockets

ITER = int(os.environ.get('ITER', 6))
NENT = int(os.environ.get('NENT', 64))
PINGS = int(os.environ.get('PINGS', 60))


def superseded():
    import re, urllib.request
    t = urllib.request.urlopen(API + '/metrics', timeout=5).read().decode()
    m = re.search(r'^tickrelay_frames_superseded_total (\S+)$', t, re.M)
    return m.group(1) if m else None


async def connect_small(c):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(('127.0.0.1', PORT))
    s.setblocking(False)
    c.welcome = None; c.closed = None
    c.ws = await websockets.connect(c.url, sock=s, max_size=None, open_timeout=5, max_queue=1)
    c.task = asyncio.create_task(c._recv())
    while c.welcome is None:
        await asyncio.sleep(0.005)
    c.id = c.welcome.session_id; c.token = c.welcome.resume_token
    return c


async def round_(i):
    room = 's7-%d-%d' % (i, int(time.time() * 1000))
    H = await C('H').connect(); await H.join(room)
    big = [E(1000 + k, 9, **{'f%d' % f: ('bytes', os.urandom(1000)) for f in range(1, 31)}) for k in range(NENT)]
    for k in range(0, NENT, 8):
        await H.write(room, create=big[k:k + 8])
    A = await connect_small(C('A'))
    await A.join(room)
    stop = asyncio.Event()

    async def churn():
        n = 0
        while not stop.is_set():
            n += 1
            await H.write(room, wait=False, update=[U(1000 + n % NENT, f1=("bytes", os.urandom(1000)))])
            await asyncio.sleep(0.033)
    ct = asyncio.create_task(churn())
    A.pause = True
    for _ in range(int(os.environ.get('RESYNCS', 3))):
        await A.send(pb.ClientMessage(request=pb.Request(request_id=5, resync=pb.Resync(room=room))))
        await asyncio.sleep(1.05)
    sup0 = superseded()
    st, _ = await close_room(room)
    if os.environ.get('PRECREATE', '1') == '1':
        # another client opens the room id again at once: the new room ticks already
        B = await C('B').connect(); await B.join(room)
    await asyncio.sleep(0.2)
    A.rid += 1
    msgs = [pb.ClientMessage(join=pb.JoinRoom(request_id=A.rid, room=room, room_type='relay'))]
    await A.send(*msgs)
    for k in range(PINGS):
        await A.send(pb.ClientMessage(ping=pb.Ping(nonce=k)))
    await asyncio.sleep(0.1)
    A.pause = False
    await asyncio.sleep(2.5)
    stop.set(); await ct
    tl = [(x[2], x[1]) if x[0] == 'num' else ('STATE tick=%d base=%d' % (x[2], x[3]),) for x in A.timeline
          if (x[0] == 'num' and x[3] == room and x[2] in ('joined', 'left')) or (x[0] == 'state' and x[1] == room)]
    # collapse runs of states
    out = []
    for x in tl:
        if out and x[0].startswith('STATE') and out[-1][0].startswith('STATE'):
            out[-1] = (out[-1][0].split(' ..')[0] + ' .. ' + x[0],)
        else:
            out.append(x)
    last = [x for x in tl if x[0] in ('joined', 'left')]
    told = last[-1][0] if last else None
    # is the session in the room? an input tells
    seq = 10 ** 6 + i
    n = len(A.errors)
    await A.send(pb.ClientMessage(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(create=[E(777, 4)]))))
    await asyncio.sleep(0.4)
    es = [code(e) for e in A.errors[n:] if e.request_id == seq]
    recent = len([f for f in A.frames if f.room == room and f.t > time.time() - 1.0])
    server = 'NOT a member' if es == ['NOT_A_MEMBER'] else 'member (input %s, %d frames in the last second)' % (es or 'taken', recent)
    print('round %d: closed %s, A closed=%s, numbering %s, frames superseded before the close %s' % (i, st, A.closed, A.numbering_problems() or 'ok', sup0))
    print('   A received for %s: %s' % (room, out[-8:]))
    print('   A was last told: %s; relay: A is %s; state after Left: %d' % (told, server, len(A.state_after_left(room))))
    for c in (H, A): await c.close()
    return told, es


async def main():
    for i in range(ITER):
        try:
            await asyncio.wait_for(round_(i), 30)
        except Exception as e:
            print('round', i, 'exception', repr(e))

asyncio.run(asyncio.wait_for(main(), 300))
