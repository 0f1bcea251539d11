"""S3: room close (HTTP API DELETE /rooms/{room}) racing resumes, leaves and joins.

For every member of every closed room checks: the Left comes once (ROOM_CLOSED, our
reason), no state frame of the room after its Left (WebSocket), no gap in the
message numbers, the session is not stuck (an input for the room is answered
NOT_A_MEMBER, or, when the client last heard Joined, frames keep coming), and the
last state frame before the Left carries the last write (when one was acknowledged).
ITER rounds (default 12) of each race.
"""
import asyncio, os, random, time
from lib13 import *

ITER = int(os.environ.get('ITER', 12))
rng = random.Random(int(os.environ.get('SEED', 7)))
problems = []
counts = {}


def bad(kind, detail):
    problems.append((kind, detail))
    print('  PROBLEM', kind, detail)


async def wait_left(c, room, n=1, timeout=3):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if len(c.lefts(room)) >= n: return True
        await asyncio.sleep(0.02)
    return False


def audit(c, room, expect_lefts=1, label=''):
    ls = c.lefts(room)
    closes = [x for x in ls if x[4].left.reason == pb.ERROR_CODE_ROOM_CLOSED]
    if len(ls) != expect_lefts:
        bad('left count', '%s %s %s: %d Left(s): %s' % (label, c.name, room, len(ls),
            [(x[1], x[4].left.reason, x[4].left.request_id) for x in ls]))
    sa = c.state_after_left(room)
    if sa:
        bad('state after Left', '%s %s %s: %s' % (label, c.name, room, sa[:3]))
    np = c.numbering_problems()
    if np:
        bad('numbering', '%s %s: %s' % (label, c.name, np[:5]))
    return closes


async def not_stuck(c, room, label):
    """After its Left: an input for the room is NOT_A_MEMBER."""
    seq = c.seq.get(room, 0) + 1; c.seq[room] = seq
    n = len(c.errors)
    await c.send(pb.ClientMessage(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(
        create=[E(rng.getrandbits(62), 4, f1=('int', 1))]))))
    await asyncio.sleep(0.3)
    es = [code(e) for e in c.errors[n:] if e.request_id == seq]
    if es != ['NOT_A_MEMBER']:
        # in the room? then frames should come
        fr = [f for f in c.frames if f.room == room and f.t > time.time() - 0.3]
        bad('stuck?', '%s %s %s: input answered %s, frames in last 0.3 s %d' % (label, c.name, room, es, len(fr)))


async def writer(c, room, stop):
    v = 0
    while not stop.is_set():
        v = (v + 1) % 1000
        try:
            await c.write(room, wait=False, update=[U(c.pub, f1=('int', v))])
        except Exception:
            return
        await asyncio.sleep(0.033)


async def setup(room, n=2):
    cs = []
    for i in range(n):
        c = await C('m%d' % i).connect(); await c.join(room)
        c.pub = rng.getrandbits(62)
        await c.write(room, create=[E(c.pub, 4, f1=('int', 0)), E(rng.getrandbits(62), 2, f1=('int', 1))])
        cs.append(c)
    return cs


async def race_plain(i):
    room = 'c-plain-%d-%d' % (i, int(time.time() * 1000))
    cs = await setup(room)
    stop = asyncio.Event()
    ws = [asyncio.create_task(writer(c, room, stop)) for c in cs]
    await asyncio.sleep(rng.uniform(0.1, 0.4))
    st, txt = await close_room(room)
    await asyncio.sleep(0.5); stop.set(); await asyncio.gather(*ws)
    for c in cs:
        await wait_left(c, room)
        cl = audit(c, room, 1, 'plain')
        if cl and cl[0][4].left.message != 'closed by attack13':
            bad('reason', cl[0][4].left.message)
        # a state frame before the Left
        idx = [k for k, x in enumerate(c.timeline) if x[0] == 'num' and x[2] == 'left' and x[3] == room]
        if idx and not any(x[0] == 'state' and x[1] == room for x in c.timeline[:idx[0]]):
            bad('no state before Left', c.name)
        await not_stuck(c, room, 'plain')
    for c in cs: await c.close()


async def race_resume(i):
    """A member drops its connection, the room closes, it resumes (at once or later)."""
    room = 'c-resume-%d-%d' % (i, int(time.time() * 1000))
    cs = await setup(room)
    a = cs[1]
    stop = asyncio.Event()
    ws = [asyncio.create_task(writer(cs[0], room, stop))]
    await asyncio.sleep(0.2)
    tok, rec = a.token, a.last_seq
    mode = i % 3
    if mode == 0:     # drop, close, resume at once
        await a.drop(); st, _ = await close_room(room)
    elif mode == 1:   # close and drop together, resume
        a.ws.transport.abort(); st, _ = await close_room(room); await asyncio.sleep(0.05)
    else:             # drop, close, resume 0.5 s later
        await a.drop(); st, _ = await close_room(room); await asyncio.sleep(0.5)
    a.mirrors[room].synced = False
    await a.connect(resume=tok, received=rec)
    await asyncio.sleep(0.6); stop.set(); await asyncio.gather(*ws)
    await wait_left(a, room)
    audit(a, room, 1, 'resume%d' % mode)
    audit(cs[0], room, 1, 'resume%d-other' % mode)
    await not_stuck(a, room, 'resume%d' % mode)
    for c in cs: await c.close()


async def race_leave(i):
    """LeaveRoom and the close at the same moment."""
    room = 'c-leave-%d-%d' % (i, int(time.time() * 1000))
    cs = await setup(room)
    a = cs[1]
    await asyncio.sleep(rng.uniform(0.05, 0.2))
    off = rng.uniform(-0.01, 0.01)
    ct = asyncio.create_task(close_room(room))
    await asyncio.sleep(max(0, off))
    lt = asyncio.create_task(a.leave(room))
    r = await lt
    await ct
    await asyncio.sleep(0.4)
    ls = a.lefts(room)
    # one Left (the leave's or the close's); the leave answered by its Left or an Error
    audit(a, room, 1, 'leave')
    ans = r.WhichOneof('kind') if r else None
    if ans == 'error':
        counts['leave answered error %s' % code(r.error)] = counts.get('leave answered error %s' % code(r.error), 0) + 1
    else:
        counts['leave answered %s' % ans] = counts.get('leave answered %s' % ans, 0) + 1
    await not_stuck(a, room, 'leave')
    for c in cs: await c.close()


async def race_rejoin(i):
    """JoinRoom of the same room id at the moment it closes (member or not)."""
    room = 'c-rejoin-%d-%d' % (i, int(time.time() * 1000))
    cs = await setup(room)
    a = cs[1]
    await asyncio.sleep(1.1)
    ct = asyncio.create_task(close_room(room))
    await asyncio.sleep(rng.uniform(0, 0.01))
    jt = asyncio.create_task(a.req(lambda rid: pb.ClientMessage(join=pb.JoinRoom(request_id=rid, room=room, room_type='relay'))))
    r = await jt
    await ct
    await asyncio.sleep(1.0)
    # where does the client think it is? the last Joined/Left of the room
    last = [x for x in a.timeline if x[0] == 'num' and x[3] == room and x[2] in ('joined', 'left') and not x[5]]
    state = last[-1][2] if last else None
    k = 'rejoin: join answered %s, last %s' % (r.WhichOneof('kind') + ('/' + code(r.error) if r and r.WhichOneof('kind') == 'error' else '') if r else None, state)
    counts[k] = counts.get(k, 0) + 1
    np = a.numbering_problems()
    if np: bad('numbering', 'rejoin %s' % np[:4])
    if state == 'left':
        await not_stuck(a, room, 'rejoin')
    else:
        await asyncio.sleep(1.2)
        recent = [f for f in a.frames if f.room == room and f.t > time.time() - 1.2]
        if not recent:
            bad('in room but no frames', '%s %s' % (room, a.timeline[-6:]))
    for c in cs: await c.close()


async def race_newjoin(i):
    """A new member's join at the moment the room closes."""
    room = 'c-newjoin-%d-%d' % (i, int(time.time() * 1000))
    cs = await setup(room, 1)
    n = await C('new').connect()
    ct = asyncio.create_task(close_room(room))
    await asyncio.sleep(rng.uniform(0, 0.01))
    jt = asyncio.create_task(n.req(lambda rid: pb.ClientMessage(join=pb.JoinRoom(request_id=rid, room=room, room_type='relay'))))
    r = await jt
    await ct
    await asyncio.sleep(0.5)
    last = [x for x in n.timeline if x[0] == 'num' and x[3] == room and x[2] in ('joined', 'left', 'error') and not x[5]]
    seq = ' '.join(x[2] for x in last)
    counts['newjoin: ' + seq] = counts.get('newjoin: ' + seq, 0) + 1
    if n.numbering_problems(): bad('numbering', 'newjoin %s' % n.numbering_problems())
    if n.state_after_left(room): bad('state after Left', 'newjoin')
    if last and last[-1][2] == 'joined':
        await asyncio.sleep(1.2)
        if not [f for f in n.frames if f.room == room and f.t > time.time() - 1.2]:
            bad('in room but no frames', 'newjoin ' + seq)
    else:
        await not_stuck(n, room, 'newjoin')
    for c in cs + [n]: await c.close()


async def main():
    t0 = time.time()
    for name, f in [('plain', race_plain), ('resume', race_resume), ('leave', race_leave),
                    ('rejoin', race_rejoin), ('newjoin', race_newjoin)]:
        for i in range(ITER):
            try:
                await asyncio.wait_for(f(i), 20)
            except Exception as e:
                bad('exception', '%s %d %r' % (name, i, e))
        print('%s done (%.0f s)' % (name, time.time() - t0))
    print('outcomes:', counts)
    print('RESULT', 'OK' if not problems else 'FAIL %d problems' % len(problems))


asyncio.run(asyncio.wait_for(main(), 600))
