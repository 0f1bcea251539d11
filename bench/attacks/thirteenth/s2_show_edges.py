"""S2: shows and hides at their edges (relay room of show.toml).

Each check prints PASS/FAIL with what happened. Members: H (host), V, A, B.
"""
import asyncio, os, random, time
from lib13 import *

rng = random.Random(int(os.environ.get('SEED', 13)))
ROOM = 's2-%d' % int(time.time() * 1000)
results = []


def rid():
    return rng.getrandbits(63) | 1


def check(name, ok, detail=''):
    results.append((name, ok))
    print('%s %s %s' % ('PASS' if ok else 'FAIL', name, detail))


async def settle(t=0.25):
    await asyncio.sleep(t)


def holds(c, i):
    return i in c.sees(ROOM)


async def main():
    H = await C('H').connect(); await H.join(ROOM)
    V = await C('V').connect(); await V.join(ROOM)
    A = await C('A').connect(); await A.join(ROOM)
    B = await C('B').connect(); await B.join(ROOM)
    cs = [H, V, A, B]
    await settle(0.3)

    # S1 show, write by viewer, hide, answers after the hide vs an unused id
    X = rid()
    _, e = await V.write(ROOM, create=[E(X, 2, f1=('int', 7))]); check('S1 create', not e, errs(e))
    _, e = await V.show(ROOM, X, A.id); check('S1 show', not e, errs(e))
    await settle()
    check('S1 viewer sees', holds(A, X)); check('S1 others do not', not holds(B, X) and not holds(H, X))
    _, e = await A.write(ROOM, update=[U(X, f1=('int', 8))])
    check('S1 viewer write NOT_OWNER', [code(x) for x in e] == ['NOT_OWNER'], errs(e))
    _, e = await V.write(ROOM, update=[U(X, f1=('int', 9))]); await settle()
    check('S1 viewer gets change', holds(A, X) and A.sees(ROOM)[X][2].get(1) == ('int', 9), A.sees(ROOM).get(X))
    _, e = await V.hide(ROOM, X, A.id); await settle()
    check('S1 hidden again', not holds(A, X))
    unused = rid()
    for what, w in [('update', lambda i: dict(update=[U(i, f1=('int', 1))])), ('remove', lambda i: dict(remove=[i])),
                    ('give', lambda i: dict(give=[pb.Give(id=i, to=H.id)])),
                    ('show', lambda i: dict(show=[pb.Viewer(id=i, member=A.id)])),
                    ('hide', lambda i: dict(hide=[pb.Viewer(id=i, member=B.id)])),
                    ('show to non-member', lambda i: dict(show=[pb.Viewer(id=i, member=999999)]))]:
        _, e1 = await A.write(ROOM, **w(X)); _, e2 = await A.write(ROOM, **w(unused))
        n1 = [(code(x), x.message.replace(str(X), 'ID')) for x in e1]
        n2 = [(code(x), x.message.replace(str(unused), 'ID')) for x in e2]
        check('S1 after hide, %s: hidden id answered as unused id' % what, n1 == n2, '%s vs %s' % (n1, n2))

    # S2 shown, then given to the host: viewer loses it
    Y = rid()
    await V.write(ROOM, create=[E(Y, 2, f1=('int', 3))]); await V.show(ROOM, Y, A.id); await settle()
    check('S2 shown', holds(A, Y))
    _, e = await V.write(ROOM, give=[pb.Give(id=Y, to=H.id)]); await settle()
    check('S2 given to host: viewer lost it', not holds(A, Y) and holds(H, Y) and not holds(V, Y), errs(e))

    # S3 viewer leaves and joins again: sees nothing
    Z = rid()
    await V.write(ROOM, create=[E(Z, 2, f1=('int', 4))]); await V.show(ROOM, Z, A.id); await settle()
    check('S3 shown', holds(A, Z))
    await A.leave(ROOM); await asyncio.sleep(1.2)
    await A.join(ROOM); await settle(0.4)
    check('S3 rejoined viewer does not see it', not holds(A, Z), sorted(A.sees(ROOM)))

    # S4 viewer drops and resumes: still sees; hidden while away: gone after resume
    await V.show(ROOM, Z, A.id); await settle()
    check('S4 shown again', holds(A, Z))
    tok, rec = A.token, A.last_seq
    await A.drop(); await asyncio.sleep(0.3)
    A.mirrors[ROOM].synced = False
    await A.connect(resume=tok, received=rec); await A.wait_synced(ROOM); await asyncio.sleep(1.2)
    check('S4 resumed viewer still sees it', holds(A, Z))
    tok, rec = A.token, A.last_seq
    await A.drop(); await asyncio.sleep(0.2)
    await V.hide(ROOM, Z, A.id)
    A.mirrors[ROOM].synced = False
    await A.connect(resume=tok, received=rec); await asyncio.sleep(1.3); await A.wait_synced(ROOM)
    await settle()
    check('S4 hidden while away: gone after resume', not holds(A, Z))

    # S5 owner leaves: viewer loses it
    W = rid()
    B2 = await C('B2').connect(); await B2.join(ROOM)
    await B2.write(ROOM, create=[E(W, 2, f1=('int', 5))]); await B2.show(ROOM, W, A.id); await settle()
    check('S5 shown', holds(A, W))
    await B2.leave(ROOM); await settle(0.4)
    check('S5 owner left: viewer lost it', not holds(A, W))
    await B2.close()

    # S6 host hand-over with the room's entities shown
    R = rid()
    _, e = await H.write(ROOM, create_for_room=[E(R, 2, f1=('int', 6))]); check('S6 create_for_room', not e, errs(e))
    _, e = await H.write(ROOM, show=[pb.Viewer(id=R, member=H.id), pb.Viewer(id=R, member=A.id)])
    await settle(); check('S6 host and A see R', holds(H, R) and holds(A, R), errs(e))
    r = await H.update_room(ROOM, owner=B.id); await settle(0.4)
    check('S6 hand-over H->B answered', r is not None and r.WhichOneof('kind') == 'response', r)
    check('S6 old host H no longer sees R it showed itself', not holds(H, R))
    check('S6 A (shown by H) still sees R', holds(A, R))
    check('S6 new host B does not see R unshown', not holds(B, R))
    _, e = await B.write(ROOM, show=[pb.Viewer(id=R, member=B.id)]); await settle()
    check('S6 B shows R to itself', holds(B, R), errs(e))
    await asyncio.sleep(1.1)
    r = await B.update_room(ROOM, owner=A.id); await settle(0.4)
    check('S6 hand-over B->A answered', r is not None and r.WhichOneof('kind') == 'response', r)
    check('S6 B no longer sees R', not holds(B, R))
    check('S6 A (new host) still sees R (H showed it, not A itself)', holds(A, R))
    await asyncio.sleep(1.1)
    r = await A.update_room(ROOM, owner=H.id); await settle(0.4)
    check('S6 hand-over A->H answered', r is not None and r.WhichOneof('kind') == 'response', r)
    check('S6 A keeps R that H showed it while A was a guest (doc: only self-shows are hidden)', holds(A, R),
          'A holds R: %s' % holds(A, R))
    # the new host shows R to the old host in the hand-over tick
    await asyncio.sleep(1.1)
    _, e = await H.write(ROOM, show=[pb.Viewer(id=R, member=A.id)]); await settle()
    await asyncio.sleep(1.1)
    # H hands to V, and V at once shows R to H (same tick as the hand-over, likely)
    r = await H.update_room(ROOM, owner=V.id)
    _, e = await V.write(ROOM, show=[pb.Viewer(id=R, member=H.id)]); await settle(0.4)
    check('S6 new host V shows R to old host H right after the hand-over: H sees it', holds(H, R), errs(e))
    await asyncio.sleep(1.1)
    r = await V.update_room(ROOM, owner=H.id); await settle(0.3)

    # S7 shows: to a non-member, to 0, to self, of a public entity
    P = rid(); Q = rid()
    await V.write(ROOM, create=[E(P, 4, f1=('int', 1)), E(Q, 2, f1=('int', 1))])
    for name, v, expect in [('to non-member', pb.Viewer(id=Q, member=987654321), ['BAD_REQUEST']),
                            ('to 0', pb.Viewer(id=Q, member=0), ['BAD_REQUEST']),
                            ('to self', pb.Viewer(id=Q, member=V.id), []),
                            ('public entity', pb.Viewer(id=P, member=A.id), []),
                            ('twice', pb.Viewer(id=Q, member=A.id), [])]:
        _, e = await V.write(ROOM, show=[v] * (2 if name == 'twice' else 1))
        check('S7 show %s -> %s' % (name, expect), [code(x) for x in e] == expect, errs(e))
    _, e = await V.write(ROOM, hide=[pb.Viewer(id=Q, member=987654321)])
    check('S7 hide from non-member: no error', not e, errs(e))

    # S8 a show and a hide in one input (hides first): shown after it
    _, e = await V.write(ROOM, show=[pb.Viewer(id=Q, member=B.id)], hide=[pb.Viewer(id=Q, member=B.id)]); await settle()
    check('S8 hide+show in one input: shown', holds(B, Q), errs(e))
    # show in one input, hide in the next, same tick (no wait)
    await V.write(ROOM, wait=False, hide=[pb.Viewer(id=Q, member=B.id)])
    await V.write(ROOM, wait=False, show=[pb.Viewer(id=Q, member=B.id)])
    await V.write(ROOM, wait=False, hide=[pb.Viewer(id=Q, member=B.id)])
    await settle(0.4)
    check('S8 hide/show/hide quickly: hidden', not holds(B, Q))

    # S9 shows over 64 KiB a second: RATE_LIMITED with retry_after_ms
    big = [rid() for _ in range(60)]
    for i in range(0, 60, 10):
        _, e = await V.write(ROOM, create=[E(x, 3, f1=('string', 'n' * 1000)) for x in big[i:i + 10]])
        if e: print('   create', errs(e)); break
    await asyncio.sleep(1.1)
    n0 = len(V.errors)
    _, e = await V.write(ROOM, show=[pb.Viewer(id=x, member=A.id) for x in big])
    await settle(0.4)
    shown = sum(holds(A, x) for x in big)
    check('S9 60 shows of ~1.2 KB: some RATE_LIMITED', [code(x) for x in e] == ['RATE_LIMITED'] and 0 < shown < 60,
          'shown %d, errors %s retry %s' % (shown, errs(e), [x.retry_after_ms for x in e if not isinstance(x, str)]))

    # all mirrors in sync
    for c in cs:
        check('desyncs %s' % c.name, not c.desyncs, c.desyncs[:3])
    for c in cs: await c.close()
    print('RESULT %d/%d passed' % (sum(ok for _, ok in results), len(results)))


asyncio.run(asyncio.wait_for(main(), 90))
