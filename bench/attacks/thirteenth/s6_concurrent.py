"""S6: concurrent random play (several members at once, so shows, hides, gives,
removes, hand-overs, leaves, rejoins and resumes land in the same ticks). Checks every
checksum (lib12's mirror), and that no member ever holds another's hidden entity
that nobody ever tried to show it (a leak). SECS (default 20), SEED, MEMBERS (5).
"""
import asyncio, os, random, time
from lib13 import *

SECS = float(os.environ.get('SECS', 20))
SEED = int(os.environ.get('SEED', 1))
N = int(os.environ.get('MEMBERS', 5))
ROOM = 's6-%d-%d' % (SEED, int(time.time()))
rng = random.Random(SEED)
HIDDEN = {1, 2, 3}
shows = set()          # (entity, member) any show ever sent
leaks = []
stats = {}


def note(k):
    stats[k] = stats.get(k, 0) + 1


def check_leaks(c):
    m = c.mirrors.get(ROOM)
    if not m or not m.synced:
        return
    for i, e in m.ents.items():
        if e[1] in HIDDEN and e[0] != c.id and (i, c.id) not in shows:
            leaks.append((c.name, i, e[0], e[1], m.tick))


async def play(c, cs, host):
    t0 = time.time()
    inroom = True
    while time.time() - t0 < SECS:
        await asyncio.sleep(rng.uniform(0.01, 0.06))
        if c.closed:
            continue
        check_leaks(c)
        m = c.mirrors.get(ROOM)
        if not inroom:
            if time.time() - c.left_at > 1.2:
                await c.join(ROOM); inroom = True; note('rejoin')
            continue
        if not m or not m.synced:
            continue
        ids = [x.id for x in cs if x is not c]
        mine = [i for i, e in m.ents.items() if e[0] == c.id or (e[0] == 0 and host[0] == c.id)]
        seen_room = [i for i, e in m.ents.items() if e[0] == 0]
        r = rng.random()
        w = {}
        if r < 0.15 and len(mine) < 30:
            i = rng.getrandbits(63) | 1
            k = rng.choice([1, 2, 2, 3, 4])
            ent = E(i, k) if k == 1 else E(i, k, f1=('int', rng.randrange(100))) if k in (2, 4) else E(i, 3, f1=('string', 'x' * rng.randrange(20)))
            if host[0] == c.id and rng.random() < 0.4:
                w['create_for_room'] = [ent]
                w['show'] = [pb.Viewer(id=i, member=rng.choice(ids + [c.id]))]
            else:
                w['create'] = [ent]
        elif r < 0.28 and mine:
            i = rng.choice(mine)
            if m.ents[i][1] in (2, 4): w['update'] = [U(i, f1=('int', rng.randrange(100)))]
            else: continue
        elif r < 0.50 and mine:
            w['show'] = [pb.Viewer(id=rng.choice(mine), member=rng.choice(ids + [c.id])) for _ in range(rng.randrange(1, 4))]
        elif r < 0.62 and mine:
            w['hide'] = [pb.Viewer(id=rng.choice(mine), member=rng.choice(ids)) for _ in range(rng.randrange(1, 4))]
        elif r < 0.70 and mine:
            w['give'] = [pb.Give(id=rng.choice(mine), to=(rng.choice(ids + [0, c.id]) if host[0] == c.id else host[0]))]
        elif r < 0.75 and mine:
            w['remove'] = [rng.choice(mine)]
        elif r < 0.78 and host[0] == c.id:
            to = rng.choice(ids)
            await c.send(pb.ClientMessage(request=pb.Request(request_id=0, update_room=pb.UpdateRoom(room=ROOM, owner=to))))
            note('handover sent')
            continue
        elif r < 0.80:
            await c.resync(ROOM); note('resync'); continue
        elif r < 0.82:
            tok, rec = c.token, c.last_seq
            await c.drop(); await asyncio.sleep(rng.uniform(0.02, 0.3))
            m.synced = False
            await c.connect(resume=tok, received=rec); note('resume'); continue
        elif r < 0.835:
            await c.leave(ROOM); inroom = False; c.left_at = time.time(); note('leave'); continue
        else:
            continue
        for v in w.get('show', []):
            shows.add((v.id, v.member))
        note('+'.join(sorted(w)))
        try:
            await c.write(ROOM, wait=False, **w)
        except Exception:
            pass


async def track_host(cs, host):
    """The room's owner as the members hear it (presence OWNER)."""
    while True:
        for c in cs:
            for t, msg in c.msgs[-50:]:
                k = msg.WhichOneof('kind')
                if k == 'presence' and msg.presence.change == pb.PRESENCE_CHANGE_OWNER:
                    host[0] = msg.presence.member.member_id
                elif k == 'joined' and msg.joined.room == ROOM:
                    pass
        await asyncio.sleep(0.02)


async def main():
    cs = []
    for k in range(N):
        c = await C('m%d' % k).connect(); await c.join(ROOM); cs.append(c)
    host = [cs[0].id]
    tr = asyncio.create_task(track_host(cs, host))
    await asyncio.gather(*(play(c, cs, host) for c in cs))
    await asyncio.sleep(1.5)
    for c in cs:
        check_leaks(c)
    tr.cancel()
    print('seed', SEED, sorted(stats.items()))
    bad = 0
    for c in cs:
        m = c.mirrors.get(ROOM)
        print('  %s checked=%d desyncs=%d errors=%s' % (c.name, m.checked if m else 0, len(c.desyncs),
              sorted({code(e) for e in c.errors})))
        for d in c.desyncs[:3]: print('    desync', d)
        bad += len(c.desyncs)
    for l in leaks[:10]: print('  LEAK', l)
    print('RESULT', 'OK' if not bad and not leaks else 'FAIL desyncs=%d leaks=%d' % (bad, len(leaks)))
    for c in cs: await c.close()

asyncio.run(asyncio.wait_for(main(), SECS + 60))
