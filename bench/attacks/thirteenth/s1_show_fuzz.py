"""S1: model-checked random play with shows, hides, gives, host hand-overs, leaves,
rejoins, resumes and resyncs (relay room of show.toml).

One operation at a time (one write per input, so a refused input changed nothing),
each followed by a short wait; a model of who owns and who is shown every entity is
kept from the operations the relay accepted, and after each step every synced mirror
is compared with what the model says that member may see (hidden kinds 1-3: own and
shown; kind 4: all). Every checksum is verified by the mirror (lib12).
SECS (default 25), SEED.
"""
import asyncio, os, random, time
from lib13 import *

SECS = float(os.environ.get('SECS', 25))
SEED = int(os.environ.get('SEED', 1))
N = int(os.environ.get('MEMBERS', 4))
ROOM = 's1-%d-%d' % (SEED, int(time.time()))
rng = random.Random(SEED)
HIDDEN = {1, 2, 3}


class Model:
    def __init__(self):
        self.ents = {}      # id -> [owner, kind, viewers]
        self.order = []     # members in join order
        self.host = 0

    def may_write(self, m, i):
        e = self.ents.get(i)
        return e is not None and (e[0] == m or (e[0] == 0 and self.host == m))

    def sees(self, m):
        return {i: e[0] for i, e in self.ents.items()
                if e[1] not in HIDDEN or e[0] == m or m in e[2]}

    def leave(self, m):
        self.order.remove(m)
        for i in [i for i, e in self.ents.items() if e[0] == m]:
            del self.ents[i]
        for e in self.ents.values():
            e[2].discard(m)
        if self.host == m:
            self.set_host(self.order[0] if self.order else 0)

    def set_host(self, h):
        old, self.host = self.host, h
        if old and old != h:
            for e in self.ents.values():
                if e[0] == 0:
                    e[2].discard(old)


async def main():
    model = Model()
    cs = []
    for k in range(N):
        c = await C('m%d' % k).connect(); await c.join(ROOM)
        cs.append(c); model.order.append(c.id)
    model.host = cs[0].id
    byid = {c.id: c for c in cs}
    inroom = {c.id: True for c in cs}
    left_at = {}
    stats = {}
    mism = []
    t0 = time.time()
    step = 0

    def note(k):
        stats[k] = stats.get(k, 0) + 1

    while time.time() - t0 < SECS:
        step += 1
        c = rng.choice(cs)
        me = c.id
        if not inroom[me]:
            if time.time() - left_at[me] > 1.2:
                r = await c.join(ROOM)
                if r and r.WhichOneof('kind') == 'joined':
                    inroom[me] = True; model.order.append(me)
                    if model.host == 0: model.host = me
                    note('rejoin')
            continue
        mine = [i for i in model.ents if model.may_write(me, i)]
        others = [x.id for x in cs if x.id != me and inroom[x.id]]
        r = rng.random()
        w = None
        if r < 0.18 and len([i for i, e in model.ents.items() if e[0] == me]) < 30:
            i = rng.getrandbits(63) | 1
            kind = rng.choice([1, 2, 2, 3, 4])
            ent = E(i, kind) if kind == 1 else E(i, kind, f1=('int', rng.randrange(100))) if kind in (2, 4) else \
                E(i, 3, f1=('string', 's' * rng.randrange(30)), f3=('bool', True))
            if me == model.host and rng.random() < 0.3:
                w = ('create_for_room', dict(create_for_room=[ent]), lambda i=i, k=kind: model.ents.__setitem__(i, [0, k, set()]))
            else:
                w = ('create', dict(create=[ent]), lambda i=i, k=kind: model.ents.__setitem__(i, [me, k, set()]))
        elif r < 0.30 and mine:
            i = rng.choice(mine)
            k = model.ents[i][1]
            if k in (2, 4):
                w = ('update', dict(update=[U(i, f1=('int', rng.randrange(100)))]), lambda: None)
            elif k == 3:
                w = ('update', dict(update=[U(i, f2=('float', rng.uniform(-99, 99)))]), lambda: None)
        elif r < 0.36 and mine:
            i = rng.choice(mine)
            w = ('remove', dict(remove=[i]), lambda i=i: model.ents.pop(i))
        elif r < 0.46 and mine:
            i = rng.choice(mine)
            if me == model.host:
                to = rng.choice(others + [0, me]) if others else 0
            else:
                to = model.host
            def g(i=i, to=to):
                e = model.ents[i]
                if e[0] != to:
                    e[0] = to; e[2] = set()
            w = ('give', dict(give=[pb.Give(id=i, to=to)]), g)
        elif r < 0.66 and mine:
            i = rng.choice(mine)
            to = rng.choice(others + [me]) if others else me
            def s(i=i, to=to):
                e = model.ents[i]
                if e[1] in HIDDEN and e[0] != to:
                    e[2].add(to)
            w = ('show', dict(show=[pb.Viewer(id=i, member=to)]), s)
        elif r < 0.76 and mine:
            shown = [(i, v) for i in mine for v in model.ents[i][2]]
            if shown:
                i, v = rng.choice(shown)
                w = ('hide', dict(hide=[pb.Viewer(id=i, member=v)]), lambda i=i, v=v: model.ents[i][2].discard(v))
        elif r < 0.80 and me == model.host and others:
            to = rng.choice(others)
            resp = await c.update_room(ROOM, owner=to)
            if resp and resp.WhichOneof('kind') == 'response':
                model.set_host(to); note('handover')
            else:
                note('handover refused %s' % (code(resp.error) if resp else None))
        elif r < 0.84:
            await c.resync(ROOM); note('resync')
        elif r < 0.88:
            tok, rec = c.token, c.last_seq
            await c.drop(); await asyncio.sleep(rng.uniform(0.02, 0.3))
            c.mirrors[ROOM].synced = False
            await c.connect(resume=tok, received=rec)
            note('resume')
        elif r < 0.91 and len([x for x in cs if inroom[x.id]]) > 2:
            resp = await c.leave(ROOM)
            if resp and resp.WhichOneof('kind') == 'left':
                inroom[me] = False; left_at[me] = time.time(); model.leave(me); note('leave')
        if w:
            name, writes, apply = w
            try:
                _, e = await c.write(ROOM, **writes)
            except Exception as ex:
                note('write exception'); continue
            if e:
                note('%s refused %s' % (name, [code(x) for x in e]))
            else:
                apply(); note(name)
        await asyncio.sleep(0.12)
        # compare
        for x in cs:
            if not inroom[x.id]:
                continue
            m = x.mirrors.get(ROOM)
            if not m or not m.synced:
                continue
            got = {i: e[0] for i, e in m.ents.items()}
            want = model.sees(x.id)
            if got != want:
                extra = {i: got[i] for i in got if i not in want}
                missing = {i: want[i] for i in want if i not in got}
                wrong = {i: (got[i], want[i]) for i in got if i in want and got[i] != want[i]}
                # a member may lag one op behind: compare again after a while
                await asyncio.sleep(0.5)
                got = {i: e[0] for i, e in m.ents.items()} if m.synced else None
                if got is not None and got != model.sees(x.id):
                    mism.append((step, x.name, extra, missing, wrong))
                    print('MISMATCH step %d %s (host %s, me %s): extra %s missing %s wrong owner %s' % (
                        step, x.name, model.host, x.id, extra, missing, wrong))
                    # resync the model to stop repeating: trust nothing, stop
                    break
        if len(mism) > 5:
            break
    print('seed', SEED, 'steps', step, sorted(stats.items()))
    for x in cs:
        print('  %s checked=%d desyncs=%d skipped=%d' % (x.name, x.mirrors[ROOM].checked if ROOM in x.mirrors else 0,
              len(x.desyncs), x.mirrors[ROOM].skipped if ROOM in x.mirrors else 0))
        for d in x.desyncs[:3]: print('     desync', d)
    print('RESULT', 'OK' if not mism and not any(x.desyncs for x in cs) else 'FAIL')
    for x in cs: await x.close()


asyncio.run(asyncio.wait_for(main(), SECS + 60))
