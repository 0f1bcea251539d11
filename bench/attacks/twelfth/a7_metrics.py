"""A7: /metrics (on the game's own listener, no token, by default) as a side channel on
another member's hidden state. On an otherwise quiet relay, A reads
tickrelay_state_frames_total and tickrelay_state_bytes_encoded_total around each of
V's hidden-only writes: a frame is encoded for V alone (its own part), so the
counters move exactly when V's hidden state changes, and the bytes encoded move by
about the size of what changed (a hidden string's length). Bounded: about 20 s.
"""
import asyncio, sys, time, urllib.request
from lib12 import *

ROOM = sys.argv[1] if len(sys.argv) > 1 else 'a7-%d' % int(time.time())
BASE = URL.replace('ws://', 'http://').rsplit('/ws', 1)[0]


def metrics():
    with urllib.request.urlopen(BASE + '/metrics', timeout=3) as r:
        out = {}
        for line in r.read().decode().splitlines():
            for k in ('tickrelay_state_frames_total', 'tickrelay_state_bytes_encoded_total'):
                if line.startswith(k + ' '):
                    out[k] = float(line.split()[1])
        return out


async def main():
    V = await C('V').connect(); await V.join(ROOM)
    A = await C('A').connect(); await A.join(ROOM)
    await V.write(ROOM, create=[E(1, 3, f1=('string', ''))])
    await asyncio.sleep(1)

    async def window(label, action):
        # read, act, read again 0.25 s later: A's own frames/bytes are known to A
        m0 = metrics(); a0 = (len(A.frames), sum(len(f.raw) for f in A.frames))
        if action: await action()
        await asyncio.sleep(0.25)
        m1 = metrics(); a1 = (len(A.frames), sum(len(f.raw) for f in A.frames))
        df = m1['tickrelay_state_frames_total'] - m0['tickrelay_state_frames_total'] - (a1[0] - a0[0])
        db = m1['tickrelay_state_bytes_encoded_total'] - m0['tickrelay_state_bytes_encoded_total']
        print('  %-40s frames not to A: %3d   bytes encoded: %6d' % (label, df, db))
        await asyncio.sleep(0.4)

    print('(room: V and A only; V writes hidden state only; A never receives a frame for it)')
    for L in (0, 0, 10, 0, 300, 0, 1000, 0, 700, 0):
        if L == 0:
            await window('idle', None)
        else:
            await window('V sets its hidden note to %d B' % L,
                         lambda L=L: V.write(ROOM, wait=False, update=[U(1, f1=('string', chr(96 + L % 26) * L))]))
    print('A leaks:', A.leaks(ROOM, [1]), 'desyncs:', A.desyncs, V.desyncs)
    for c in (A, V): await c.close()


asyncio.run(asyncio.wait_for(main(), 60))
