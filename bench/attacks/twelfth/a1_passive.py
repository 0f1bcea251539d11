"""A1: what a member receives while another member's hidden entities change.

H (the room's owner, holds a hidden hand of its own), V (victim) and A (attacker, owns
nothing hidden) join one relay room. Phases of 3 s each: idle; V updates its hidden
entities every input; V creates and removes hidden cards; V gives hidden cards to H
(the host); H writes a public entity (control); V leaves. A's frames are counted per
phase (ticks, bytes, fields on the wire), every id they carry is checked against V's,
and each of A, H and V verifies its mirror (last checksum = its mirror; first of two
= shared view). Bounded: about 25 s.
"""
import asyncio, collections, sys, time
from lib12 import *

ROOM = sys.argv[1] if len(sys.argv) > 1 else 'a1-%d' % int(time.time())
PHASE = float(os.environ.get('PHASE', 3))


async def main():
    H = await C('H').connect(); await H.join(ROOM)
    V = await C('V').connect(); await V.join(ROOM)
    A = await C('A').connect(); await A.join(ROOM)
    print('ids H=%d V=%d A=%d' % (H.id, V.id, A.id))
    # H: a hidden hand of its own + one public entity
    await H.write(ROOM, create=[E(500, 2, f1=('int', 7)), E(501, 1), E(600, 4, f1=('int', 1))])
    # V: hidden entities of every hidden kind, ids it might use naively
    vids = list(range(1000, 1010)) + [2000, 2001, 3000]
    s, e = await V.write(ROOM, create=[E(i, 1) for i in range(1000, 1010)] +
                         [E(2000, 2, f1=('int', 5)), E(2001, 2, f1=('int', 50)),
                          E(3000, 3, f1=('string', 'ace of spades'), f2=('float', 1.5), f3=('bool', True))])
    print('V create', errs(e))
    await asyncio.sleep(1.2)
    marks = []

    async def phase(name, coro):
        t0 = time.time(); marks.append((name, t0))
        await coro
        while time.time() - t0 < PHASE:
            await asyncio.sleep(0.05)

    async def idle():
        await asyncio.sleep(PHASE)

    async def v_updates():
        t0 = time.time(); k = 0
        while time.time() - t0 < PHASE - 0.1:
            k += 1
            await V.write(ROOM, wait=False, update=[U(2000, f1=('int', k % 100)), U(3000, f1=('string', 'x' * (k % 50)), f2=('float', (k % 100) / 10))])
            await asyncio.sleep(1 / 25)

    async def v_churn():
        t0 = time.time(); k = 0
        while time.time() - t0 < PHASE - 0.1:
            k += 1
            await V.write(ROOM, wait=False, create=[E(5000 + k, 1)], remove=[5000 + k - 1] if k > 1 else [])
            vids.append(5000 + k)
            await asyncio.sleep(1 / 25)
        await V.write(ROOM, remove=[5000 + k])

    async def v_gives():
        for i in range(1000, 1005):
            s, e = await V.write(ROOM, give=[pb.Give(id=i, to=H.id)])
            if e: print('give', i, errs(e))
            await asyncio.sleep(0.3)

    async def h_public():
        t0 = time.time(); k = 0
        while time.time() - t0 < PHASE - 0.1:
            k += 1
            await H.write(ROOM, wait=False, update=[U(600, f1=('int', k % 1000))])
            await asyncio.sleep(1 / 10)

    async def v_leaves():
        await V.leave(ROOM)

    await phase('idle', idle())
    await phase('V updates hidden 25/s', v_updates())
    await phase('V creates+removes hidden 25/s', v_churn())
    await phase('V gives 5 hidden to host H', v_gives())
    await phase('idle 2', idle())
    await phase('H public writes 10/s (control)', h_public())
    await phase('V leaves (its hidden removed)', v_leaves())
    marks.append(('end', time.time()))

    print('\nA frames per phase (ticks, total bytes, max frame bytes, wire fields seen):')
    for (name, t0), (_, t1) in zip(marks, marks[1:]):
        fs = [f for f in A.frames if t0 <= f.t < t1]
        tags = collections.Counter(no for f in fs for no, _, _ in f.fields)
        print('  %-34s %3d frames %6d B  max %4d B  fields %s' % (
            name, len(fs), sum(len(f.raw) for f in fs), max([len(f.raw) for f in fs] or [0]), dict(sorted(tags.items()))))
        fsH = [f for f in H.frames if t0 <= f.t < t1]
        print('  %-34s H got %3d frames, %d with two checksums' % ('', len(fsH), sum(len(f.checksums) > 1 for f in fsH)))
    print('\nA leaks:', A.leaks(ROOM, vids)[:10])
    print('A mirror:', {i: e[:2] for i, e in A.mirrors[ROOM].ents.items()})
    print('H mirror:', sorted(H.mirrors[ROOM].ents))
    for c in (A, H, V):
        print('%s desyncs=%d checked=%d errors=%s' % (c.name, len(c.desyncs), c.mirrors[ROOM].checked, errs(c.errors)[:5]))
        for d in c.desyncs[:5]: print('   ', d)
    for c in (A, H, V): await c.close()


asyncio.run(asyncio.wait_for(main(), 60))
