"""A8: does A's frame arrive later when V's hidden state is heavy to encode?

V (joined before A, so encoded first in each tick) holds 64 hidden kind-3 entities
with 1,000-byte notes. H writes a public entity 15 times a second so that A gets
frames. Phase 1: V idle. Phase 2: V rewrites all 64 notes each tick it can (its byte
rate allows ~64 KiB/s) and asks for a full snapshot (its own part ~64 KB) every
second. A's delay (arrival - server_time_us) is compared between phases. ~25 s.
A runs in a process of its own (ROLE=A, started by this script), so that the
Python work of V's mirror does not delay A's reads.
"""
import os, subprocess
import asyncio, statistics, sys, time
from lib12 import *

ROOM = sys.argv[1] if len(sys.argv) > 1 else 'a8-%d' % int(time.time())
PH = 8


async def role_a():
    A = await C('A').connect(); await A.join(ROOM)
    t0 = float(os.environ['T0'])
    while time.time() < t0 + 2 * PH + 0.5:
        await asyncio.sleep(0.1)
    t1 = t0 + PH; t2 = t1 + PH
    def delays(a, b):
        return [(f.t * 1e6 - f.fr.server_time_us) / 1000 for f in A.frames if a <= f.t < b]
    for name, (a, b) in (('V idle', (t0, t1)), ('V heavy hidden', (t1, t2))):
        d = delays(a, b)
        print('  %-16s A frames %3d  delay ms median %.2f p90 %.2f max %.2f' % (
            name, len(d), statistics.median(d), sorted(d)[int(.9 * len(d))], max(d)))
    print('  A leaks', A.leaks(ROOM)[:3], 'desyncs', A.desyncs[:2])
    await A.close()


async def main():
    if os.environ.get('ROLE') == 'A':
        return await role_a()
    H = await C('H').connect(); await H.join(ROOM)
    V = await C('V').connect(); await V.join(ROOM)
    await H.write(ROOM, create=[E(1, 4, f1=('int', 0))])
    for b in range(8):
        await V.write(ROOM, create=[E(100 + b * 8 + k, 3, f1=('string', 'x' * 1000)) for k in range(8)])
        await asyncio.sleep(0.15)
    stop = [False]

    async def h():
        k = 0
        while not stop[0]:
            k += 1
            await H.write(ROOM, wait=False, update=[U(1, f1=('int', k % 1000))])
            await asyncio.sleep(1 / 15)

    async def v_heavy(t_end):
        k = 0; last = 0
        while time.time() < t_end:
            k += 1
            i = 100 + k % 64
            await V.write(ROOM, wait=False, update=[U(i, f1=('string', chr(97 + k % 26) * 1000))])
            if time.time() - last > 1.05:
                last = time.time(); await V.send(pb.ClientMessage(request=pb.Request(request_id=(1 << 53) + k, resync=pb.Resync(room=ROOM))))
            await asyncio.sleep(1 / 40)

    ht = asyncio.create_task(h())
    t0 = time.time() + 1.5
    pa = subprocess.Popen([sys.executable, __file__, ROOM], env=dict(os.environ, ROLE='A', T0=str(t0)))
    await asyncio.sleep(t0 - time.time()); await asyncio.sleep(PH); t1 = time.time()
    await v_heavy(t1 + PH); t2 = time.time()
    stop[0] = True; await ht

    await asyncio.get_event_loop().run_in_executor(None, pa.wait)
    print('V frames in heavy phase:', len([f for f in V.frames if t1 <= f.t < t2]), 'V bytes in', V.bytes_in)
    print('desyncs', V.desyncs[:2], H.desyncs[:2])
    for c in (V, H): await c.close()


asyncio.run(asyncio.wait_for(main(), 60))
