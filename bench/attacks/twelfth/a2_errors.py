"""A2: the answers to writes naming another member's hidden entity, against the
answers for an unused id (and, as a control, for another's public entity).

V creates hidden entities (kinds 1, 2, 3) and a public one (kind 4). A, first as a
plain member and then as the room's owner (V hands the room over), sends every kind
of write at each target, one per input, and the Error (code, message with the id
replaced by ID) is compared between "V's hidden id" and "unused id". Any difference
is a leak of existence beyond the documented ENTITY_EXISTS on create. Bounded: ~40 s.
"""
import asyncio, re, sys, time
from lib12 import *

ROOM = sys.argv[1] if len(sys.argv) > 1 else 'a2-%d' % int(time.time())


def norm(es, i):
    return [(c, re.sub(r'\b%d\b' % i, 'ID', m)) if not isinstance(c, str) or c != 'timeout' else c for (c, m) in
            [(x if isinstance(x, tuple) else (x, '')) for x in errs(es)]]


async def main():
    V = await C('V').connect(); await V.join(ROOM)        # V creates the room: owner
    A = await C('A').connect(); await A.join(ROOM)
    HID2, HID1, HID3, PUB, NONE = 7002, 7001, 7003, 7004, 7999
    s, e = await V.write(ROOM, create=[E(HID1, 1), E(HID2, 2, f1=('int', 5)),
                                       E(HID3, 3, f1=('string', 'queen'), f2=('float', 2.0), f3=('bool', False)),
                                       E(PUB, 4, f1=('int', 3))])
    print('V ids: me=%d A=%d, create errors %s' % (V.id, A.id, errs(e)))

    def cases(me_host):
        c = [
            ('update valid rank', lambda i: dict(update=[U(i, f1=('int', 9))])),
            ('update rank out of range', lambda i: dict(update=[U(i, f1=('int', 1000))])),
            ('update undeclared field 9', lambda i: dict(update=[U(i, f9=('string', 'z'))])),
            ('update wrong type (string in rank)', lambda i: dict(update=[U(i, f1=('string', 'z'))])),
            ('update a field with no value', lambda i: dict(update=[pb.EntityUpdate(id=i, fields=[pb.Field(id=1)])])),
            ('update 40 fields', lambda i: dict(update=[pb.EntityUpdate(id=i, fields=[pb.Field(id=k, int=1) for k in range(1, 41)])])),
            ('update a 2 KB bytes field', lambda i: dict(update=[U(i, f1=('bytes', b'x' * 2048))])),
            ('remove', lambda i: dict(remove=[i])),
            ('remove twice', lambda i: dict(remove=[i, i])),
            ('give to A', lambda i: dict(give=[pb.Give(id=i, to=A.id)])),
            ('give to V', lambda i: dict(give=[pb.Give(id=i, to=V.id)])),
            ('give to room (0)', lambda i: dict(give=[pb.Give(id=i, to=0)])),
            ('give to a non-member 999', lambda i: dict(give=[pb.Give(id=i, to=999)])),
            ('own create kind 4 + update id (bad v)', lambda i: dict(create=[E(8100, 4, f1=('int', 1))], update=[U(i, f1=('int', 5000))])),
            ('update id then remove own 8100', lambda i: dict(update=[U(i, f1=('int', 1))], remove=[8100])),
            ('create same id, kind 4', lambda i: dict(create=[E(i, 4, f1=('int', 1))])),
            ('create same id + update it with bad value', lambda i: dict(create=[E(i, 4, f1=('int', 1))], update=[U(i, f1=('int', 5000))])),
        ]
        if me_host:
            c.append(('create_for_room same id', lambda i: dict(create_for_room=[E(i, 2, f1=('int', 1))])))
        return c

    async def run(label, me_host):
        print('\n== A as %s ==' % label)
        diffs = 0
        for name, w in cases(me_host):
            row = {}
            for tname, tid in (('hidden2', HID2), ('hidden1', HID1), ('hidden3', HID3), ('unused', NONE), ('public', PUB)):
                s, e = await A.write(ROOM, **w(tid))
                row[tname] = norm(e, tid)
                # undo anything A created
                mine = [i for i, x in A.mirrors[ROOM].ents.items() if x[0] == A.id]
                if mine:
                    await A.write(ROOM, remove=mine)
                await asyncio.sleep(0.03)
            same = row['hidden2'] == row['unused'] == row['hidden1'] == row['hidden3']
            diffs += not same
            print('  %-42s %s  hidden=%s unused=%s public=%s' % (name, 'same' if same else 'DIFFERENT', row['hidden2'], row['unused'], row['public']))
            if not same:
                print('        hidden1=%s hidden3=%s' % (row['hidden1'], row['hidden3']))
        return diffs

    d1 = await run('plain member', False)
    r = await V.update_room(ROOM, owner=A.id)
    print('\nV hands the room to A:', r.WhichOneof('kind') if r else None)
    await asyncio.sleep(0.3)
    d2 = await run('room owner', True)
    # V's entities still intact, unchanged?
    ents = V.mirrors[ROOM].ents
    print('\nV still holds', {i: (e[0], e[1], e[2]) for i, e in ents.items()})
    print('A leaks:', A.leaks(ROOM, [HID1, HID2, HID3]))
    for c in (A, V):
        print('%s desyncs=%d checked=%d' % (c.name, len(c.desyncs), c.mirrors[ROOM].checked), c.desyncs[:3])
    print('rows differing: %d + %d' % (d1, d2))
    for c in (A, V): await c.close()


asyncio.run(asyncio.wait_for(main(), 120))
