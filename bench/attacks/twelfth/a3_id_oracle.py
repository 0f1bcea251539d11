"""A3: the documented id oracle (ENTITY_EXISTS), used the way README/PROTOCOL advise
against: V numbers its hidden cards as the docs suggest, prefixed with its member id
((member_id << 32) | n, n = 1, 2, ...; the bots number theirs the same way). A knows
V's member id from presence, so it probes V's id range with creates: each input
creates up to 64 candidate ids and stops at the first that exists (ENTITY_EXISTS names
it); the next input removes what it created. A thus reads V's hand size and which
cards V plays, live. Bounded: about 20 s.
"""
import asyncio, sys, time
from lib12 import *

ROOM = sys.argv[1] if len(sys.argv) > 1 else 'a3-%d' % int(time.time())


async def main():
    V = await C('V').connect(); await V.join(ROOM)
    A = await C('A').connect(); await A.join(ROOM)
    base = V.id << 32
    hand = [base | n for n in (1, 2, 3, 5, 8, 13, 21)]
    await V.write(ROOM, create=[E(i, 2, f1=('int', n % 100)) for n, i in enumerate(hand)])
    print('V (member %d) holds hidden cards n=%s' % (V.id, [i & 0xffffffff for i in hand]))

    probes = [0]

    async def scan(lo, hi):
        """Ids in base|lo..base|hi that exist (each input: up to 64 creates)."""
        found = []
        n = lo
        while n <= hi:
            batch = [base | k for k in range(n, min(hi, n + 63) + 1)]
            probes[0] += 1
            s, e = await A.write(ROOM, create=[E(i, 1) for i in batch])
            made = [i for i in batch]
            hit = None
            for x in e:
                if not isinstance(x, str) and x.code == pb.ERROR_CODE_ENTITY_EXISTS:
                    hit = int(x.message.split()[1])
            if hit is not None:
                found.append(hit)
                made = [i for i in batch if i < hit]
                n = (hit & 0xffffffff) + 1
            else:
                n = batch[-1] - base + 1
            if made:
                probes[0] += 1
                await A.write(ROOM, remove=made)
        return found

    t0 = time.time()
    seen = await scan(1, 64)
    print('A scan 1..64: %s  (%d inputs, %.2f s)' % ([i & 0xffffffff for i in seen], probes[0], time.time() - t0))
    # V plays card 5 (removes it) and draws card 34: A watches
    await V.write(ROOM, remove=[base | 5], create=[E(base | 34, 2, f1=('int', 34))])
    t0 = time.time(); probes[0] = 0
    seen2 = await scan(1, 64)
    print('after V plays 5, draws 34: %s  (%d inputs, %.2f s)' % ([i & 0xffffffff for i in seen2], probes[0], time.time() - t0))
    # Control: V uses random 64-bit ids instead; A's scan of the prefix finds nothing
    import random
    rnd = [random.getrandbits(63) | (1 << 62) for _ in range(5)]
    await V.write(ROOM, create=[E(i, 1) for i in rnd])
    seen3 = await scan(1, 64)
    print('random ids: A finds %d of V\'s 5 random-id cards in the prefix scan (hidden count stays unknown)' % (len(set(seen3) & set(rnd))))
    print('A mirror holds of V: %s; A errors other than ENTITY_EXISTS: %s' % (
        [i for i, e in A.mirrors[ROOM].ents.items() if e[0] == V.id],
        [x for x in errs(A.errors) if x[0] != 'ERROR_CODE_ENTITY_EXISTS'][:3]))
    print('V desyncs=%d checked=%d; A desyncs=%d' % (len(V.desyncs), V.mirrors[ROOM].checked, len(A.desyncs)))
    for c in (A, V): await c.close()


asyncio.run(asyncio.wait_for(main(), 60))
