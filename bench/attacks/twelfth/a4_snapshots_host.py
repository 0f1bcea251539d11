"""A4: full snapshots and host migration.

H0 creates the room and a deck of 20 hidden room-owned cards (create_for_room, kind 2),
deals cards 1-5 to V and 6-7 to A. Then A asks for every kind of full snapshot
(Resync, leave + join, drop + resume with its own token) and each is checked for
V's or the room's cards (ids, packed blocks, removed). V does the same and must see
exactly its own. Full-snapshot sizes are compared before and after the deal.
Then H0's connection drops (AWAY after 1 s): A, in the room longest, becomes owner,
gives itself the room's deck (documented as allowed) and tries to take V's cards.
H0 resumes: it is no longer owner. Every mirror verifies every checksum. ~30 s.
"""
import asyncio, sys, time
from lib12 import *

ROOM = sys.argv[1] if len(sys.argv) > 1 else 'a4-%d' % int(time.time())
DECK = list(range(1, 21))


def fulls(c, t0=0):
    return [f for f in c.frames if f.room == ROOM and f.fr.baseline_tick == 0 and f.t >= t0]


async def main():
    H0 = await C('H0').connect(); await H0.join(ROOM)
    A = await C('A').connect(); await A.join(ROOM)
    # Another member's hidden cards while A leaves and joins again: W (gone before V
    # joins, so that A stays the member here longest, for the host migration below)
    W = await C('W').connect(); await W.join(ROOM)
    await W.write(ROOM, create=[E(800 + i, 2, f1=('int', i)) for i in range(5)])
    await asyncio.sleep(1.05)
    r = await A.leave(ROOM); print('A leave:', r.WhichOneof('kind') if r else r)
    await asyncio.sleep(1.05)
    await A.join(ROOM)
    await asyncio.sleep(0.5)
    print('A after leave + join holds', sorted(A.mirrors[ROOM].ents), '; leaks of W:', A.leaks(ROOM, range(800, 805)))
    await W.close()
    V = await C('V').connect(); await V.join(ROOM)
    print('H0=%d A=%d V=%d' % (H0.id, A.id, V.id))
    await H0.write(ROOM, create=[E(900, 4, f1=('int', 1))])
    await asyncio.sleep(1.1)
    t = time.time(); await A.resync(ROOM); await asyncio.sleep(0.3)
    size_before = [len(f.raw) for f in fulls(A, t)]
    s, e = await H0.write(ROOM, create_for_room=[E(i, 2, f1=('int', i)) for i in DECK])
    print('deck', errs(e))
    s, e = await H0.write(ROOM, give=[pb.Give(id=i, to=V.id) for i in (1, 2, 3, 4, 5)] + [pb.Give(id=i, to=A.id) for i in (6, 7)])
    print('deal', errs(e))
    await asyncio.sleep(1.1)

    # A: every kind of full snapshot
    t = time.time()
    r = await A.resync(ROOM); await asyncio.sleep(0.3)
    size_after = [len(f.raw) for f in fulls(A, t)]
    print('A full snapshot bytes: before deal %s, after deal %s (A holds 2 cards of its own now)' % (size_before, size_after))
    tok, rec = A.token, A.last_seq
    await A.drop()
    await asyncio.sleep(0.3)
    await A.connect(resume=tok, received=rec)
    print('A resumed:', A.welcome.resumed, 'same id', A.welcome.session_id == A.id)
    await A.wait_synced(ROOM); await asyncio.sleep(1.2)

    # V: resync and resume, must hold exactly its 5 cards
    await V.resync(ROOM); await asyncio.sleep(0.4)
    v_after_resync = sorted(i for i, e in V.mirrors[ROOM].ents.items() if e[1] == 2)
    tok, rec = V.token, V.last_seq
    await V.drop(); await asyncio.sleep(0.3)
    V.mirrors[ROOM].synced = False
    await V.connect(resume=tok, received=rec)
    await V.wait_synced(ROOM); await asyncio.sleep(0.3)
    print('V after resync holds cards %s, after resume %s' % (v_after_resync, sorted(i for i, e in V.mirrors[ROOM].ents.items() if e[1] == 2)))

    # host migration: H0's connection is lost; A becomes owner after 1 s
    h_tok, h_rec = H0.token, H0.last_seq
    await H0.drop()
    owner = None
    for _ in range(40):
        await asyncio.sleep(0.1)
        for t_, m in A.msgs:
            if m.WhichOneof('kind') == 'presence' and m.presence.change == pb.PRESENCE_CHANGE_OWNER:
                owner = m.presence.member.member_id
        if owner: break
    print('owner after H0 dropped:', owner, '(A is %d)' % A.id)
    s, e = await A.write(ROOM, give=[pb.Give(id=i, to=A.id) for i in range(8, 21)])
    print('A (host) gives itself the room deck 8..20:', errs(e) or 'ok')
    s, e = await A.write(ROOM, give=[pb.Give(id=1, to=A.id)])
    print('A (host) takes V\'s card 1:', errs(e))
    s, e = await A.write(ROOM, update=[U(2, f1=('int', 99))])
    print('A (host) rewrites V\'s card 2:', errs(e))
    s, e = await A.write(ROOM, remove=[3])
    print('A (host) removes V\'s card 3:', errs(e))
    await asyncio.sleep(0.4)
    # H0 comes back
    H0.mirrors[ROOM].synced = False
    await H0.connect(resume=h_tok, received=h_rec)
    await H0.wait_synced(ROOM); await asyncio.sleep(0.5)
    print('A holds', sorted(A.mirrors[ROOM].ents), '\nV holds', sorted(V.mirrors[ROOM].ents), '\nH0 holds', sorted(H0.mirrors[ROOM].ents))
    print('A leaks of V\'s cards:', A.leaks(ROOM, [1, 2, 3, 4, 5])[:5])
    print('V leaks of the room deck / A\'s cards:', V.leaks(ROOM, list(range(6, 21)))[:5])
    print('H0 leaks:', H0.leaks(ROOM, [1, 2, 3, 4, 5, 6, 7])[:5])
    for c in (A, V, H0):
        print('%s desyncs=%d checked=%d errors=%s' % (c.name, len(c.desyncs), c.mirrors[ROOM].checked, errs(c.errors)[:4]))
        for d in c.desyncs[:4]: print('   ', d)
    for c in (A, V, H0): await c.close()


asyncio.run(asyncio.wait_for(main(), 60))
