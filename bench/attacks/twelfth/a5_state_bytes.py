"""A5: the documented "bytes of room state" oracle, measured: how precisely a member
reads another's hidden state through LIMIT_EXCEEDED. Room type `tight`
(max_state_bytes 64 KiB, hidden kind 3 with a string `note`; public filler kind 5).

A fills the room with its own public fillers until a create is refused, then keeps one
probe entity and binary-searches the largest length its bytes field may take (each
probe one input: ~10 per reading). The bound is byte-exact, so each change V makes to
its hidden state (a note's length, a new card) moves A's reading by exactly its cost
(a field 80 + length, an entity 128). Bounded: about 30 s.
"""
import asyncio, sys, time
from lib12 import *

ROOM = sys.argv[1] if len(sys.argv) > 1 else 'a5-%d' % int(time.time())


async def main():
    V = await C('V').connect(); await V.join(ROOM, 'tight')
    A = await C('A').connect(); await A.join(ROOM, 'tight')
    await V.write(ROOM, create=[E(9001, 3, f1=('string', 'n' * 100))])
    # fill
    k = 0
    while True:
        k += 1
        s, e = await A.write(ROOM, create=[E(100 + k, 5, f1=('bytes', b'f' * 1024))])
        if e:
            print('filler %d refused: %s' % (k, errs(e)))
            break
    s, e = await A.write(ROOM, create=[E(99, 5, f1=('bytes', b''))])
    print('probe entity:', errs(e) or 'created')
    p = [0]
    n = [0]

    async def reading():
        lo, hi = 0, 1024
        while lo < hi:
            mid = (lo + hi + 1) // 2
            n[0] += 1
            s, e = await A.write(ROOM, update=[U(99, f1=('bytes', b'p' * mid))])
            if e:
                hi = mid - 1
            else:
                lo = mid
        # give the room back (else V's own writes would be refused)
        await A.write(ROOM, update=[U(99, f1=('bytes', b''))])
        return lo   # = bytes left for the probe field: max - everything else

    async def show(what):
        n[0] = 0; t0 = time.time()
        r = await reading()
        print('  %-44s A reads %4d  (%d inputs, %.2f s)' % (what, r, n[0], time.time() - t0))
        return r

    r0 = await show('start (V: one hidden card, note of 100 B)')
    print('    (V write errors so far: %s)' % errs(V.errors))
    await V.write(ROOM, update=[U(9001, f1=('string', 'n' * 337))])
    r1 = await show('V sets its hidden note to 337 B')
    await V.write(ROOM, create=[E(9002, 3)])
    r2 = await show('V creates a hidden card with no field')
    await V.write(ROOM, update=[U(9002, f1=('string', 'abc'))])
    r3 = await show('V writes a 3 B note on it')
    await V.write(ROOM, remove=[9001])
    r4 = await show('V removes the first card')
    print('deltas: %d (337-100=237), %d (entity 128), %d (80+3=83), %d (128+80+337=545)' % (
        r0 - r1, r1 - r2, r2 - r3, r4 - r3))
    print('V write errors: %s' % errs(V.errors))
    print('A desyncs=%d V desyncs=%d, A leaks %s' % (len(A.desyncs), len(V.desyncs), A.leaks(ROOM, [9001, 9002])))
    for c in (A, V): await c.close()


asyncio.run(asyncio.wait_for(main(), 60))
