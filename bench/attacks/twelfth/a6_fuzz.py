"""A6: random play with hidden state, every mirror verified at every checksum.

Three members (H the host, V, A) play random writes for SECS seconds (default 20) in a
room of type TYPE (relay: a checksum every tick, history 32; sparse: a checksum every
5 ticks, history 4): hidden creates/updates/removes of kinds 1-3 (2 only in sparse),
gives to the host, the host dealing room cards (create_for_room) to anyone and giving
its own away, public writes (kind 4), Resync, drop + resume with the member's own
token. Checks: no desync (last checksum = mirror; first of two = shared view), no
frame ever carries a hidden entity of another owner (added, packed added), and at the
end every mirror equals the truth (what the owners were told) for what it may see.
"""
import asyncio, os, random, sys, time
from lib12 import *

TYPE = os.environ.get('TYPE', 'relay')
SECS = float(os.environ.get('SECS', 20))
SEED = int(os.environ.get('SEED', 1))
ROOM = 'a6-%s-%d-%d' % (TYPE, SEED, int(time.time()))
rng = random.Random(SEED)


async def main():
    H = await C('H').connect(); await H.join(ROOM, TYPE)
    V = await C('V').connect(); await V.join(ROOM, TYPE)
    A = await C('A').connect(); await A.join(ROOM, TYPE)
    cs = [H, V, A]
    kinds = [1, 2, 3] if TYPE == 'relay' else [1, 2]
    nid = [10000]
    hidden_ids = set()
    stats = {'ops': 0, 'refused': 0, 'resync': 0, 'resume': 0}

    def mine(c):
        return [i for i, e in c.mirrors[ROOM].ents.items() if e[0] == c.id]

    def hidden_ent(i, k):
        hidden_ids.add(i)
        if k == 1: return E(i, 1)
        if k == 2: return E(i, 2, f1=('int', rng.randrange(100)))
        return E(i, 3, f1=('string', 'n' * rng.randrange(40)), f2=('float', rng.uniform(-100, 100)), f3=('bool', rng.random() < .5))

    def upd(c, i):
        e = c.mirrors[ROOM].ents[i]
        if e[1] == 2: return U(i, f1=('int', rng.randrange(100)))
        if e[1] == 3: return U(i, f2=('float', rng.uniform(-100, 100)))
        if e[1] == 4: return U(i, f1=('int', rng.randrange(1000)))
        return None

    async def play(c):
        t0 = time.time()
        while time.time() - t0 < SECS:
            await asyncio.sleep(rng.uniform(0.02, 0.08))
            if c.closed or not c.mirrors[ROOM].synced:
                continue
            r = rng.random()
            own = mine(c)
            w = {}
            if r < 0.25 and len(own) < 40:
                nid[0] += 1
                w['create'] = [hidden_ent(nid[0], rng.choice(kinds)) if rng.random() < .8 else E(nid[0], 4, f1=('int', 1))]
            elif r < 0.5 and own:
                u = [x for x in (upd(c, i) for i in rng.sample(own, min(3, len(own)))) if x]
                if not u: continue
                w['update'] = u
            elif r < 0.6 and own:
                w['remove'] = [rng.choice(own)]
            elif r < 0.72 and own:
                host = H.id if c is not H else rng.choice([V.id, A.id, H.id])
                w['give'] = [pb.Give(id=rng.choice(own), to=host)]
            elif r < 0.8 and c is H:
                nid[0] += 1
                i = nid[0]
                w['create_for_room'] = [hidden_ent(i, rng.choice(kinds))]
                w['give'] = [pb.Give(id=i, to=rng.choice([V.id, A.id, H.id, 0]))]
            elif r < 0.84:
                stats['resync'] += 1
                await c.resync(ROOM)
                continue
            elif r < 0.86:
                stats['resume'] += 1
                tok, rec = c.token, c.last_seq
                await c.drop(); await asyncio.sleep(rng.uniform(0.05, 0.5))
                c.mirrors[ROOM].synced = False   # before: the snapshot may come with the Welcome
                await c.connect(resume=tok, received=rec)
                await c.wait_synced(ROOM)
                continue
            else:
                continue
            stats['ops'] += 1
            try:
                s, e = await c.write(ROOM, **w)
            except Exception as ex:
                continue
            if e: stats['refused'] += 1

    await asyncio.gather(*(play(c) for c in cs))
    await asyncio.sleep(1.5)
    for c in cs:   # a last full snapshot each, to compare with the truth
        await c.resync(ROOM)
    await asyncio.sleep(0.6)
    # truth: the union of what the owners hold of their own hidden entities + shared
    truth = {}
    for c in cs:
        for i, e in c.mirrors[ROOM].ents.items():
            if e[1] in (1, 2, 3) and e[0] == c.id:
                truth[i] = e
    print('type=%s seed=%d ops=%d refused=%d resyncs=%d resumes=%d hidden entities now=%d' % (
        TYPE, SEED, stats['ops'], stats['refused'], stats['resync'], stats['resume'], len(truth)))
    bad = 0
    for c in cs:
        lk = c.leaks(ROOM)
        # a removal of a hidden id this member never held (not even once) is a leak
        held = set()
        for f in c.frames:
            held |= {e.id for e in f.fr.added}
            for b in f.fr.packed:
                held |= {i for i, o in c.mirrors[ROOM].block_ids(b)[1]}
        lk += [('removed, never held', f.fr.tick, r) for f in c.frames for r in f.fr.removed
               if r in hidden_ids and r not in held]
        shared = {i: e for i, e in c.mirrors[ROOM].ents.items() if e[1] not in (1, 2, 3)}
        print('  %s frames=%d skipped=%d checked=%d desyncs=%d leaks=%d own hidden=%d shared=%d errors=%s' % (
            c.name, len(c.frames), c.mirrors[ROOM].skipped, c.mirrors[ROOM].checked, len(c.desyncs), len(lk),
            len([1 for e in c.mirrors[ROOM].ents.values() if e[1] in (1, 2, 3)]), len(shared),
            sorted(set(x[0] for x in errs(c.errors)))))
        for d in c.desyncs[:5]: print('     desync', d)
        for l in lk[:5]: print('     leak', l)
        bad += len(c.desyncs) + len(lk) + c.mirrors[ROOM].skipped
    # every member sees the same shared entities
    sh = [{i: (e[0], e[1], e[2]) for i, e in c.mirrors[ROOM].ents.items() if e[1] not in (1, 2, 3)} for c in cs]
    print('  shared views equal:', sh[0] == sh[1] == sh[2])
    print('RESULT', 'OK' if bad == 0 and sh[0] == sh[1] == sh[2] else 'FAIL')
    for c in cs: await c.close()


asyncio.run(asyncio.wait_for(main(), SECS + 40))
