"""S4: CPU of one input's declared-kind check (relay room with declared kinds).

MODE=quad: each input holds ~1,300 creates and ~2,000 updates of ids that do not
exist (each update's kind is looked up among the input's creates: creates x updates
comparisons). MODE=flat: inputs of the same size holding updates only. One connection
(or CONNS) paced at the byte rate (64 KiB/s: 4 inputs of 16 KiB a second) for SECS
seconds; the relay's CPU is read from /proc/$TR_PID/stat before and after.
"""
import asyncio, os, time
from lib13 import *

MODE = os.environ.get('MODE', 'quad')
SECS = float(os.environ.get('SECS', 10))
CONNS = int(os.environ.get('CONNS', 1))
PID = int(os.environ['TR_PID'])
ROOM = 's4-%s-%d' % (MODE, int(time.time()))
NC, NU, NF = int(os.environ.get('NC', 1100)), int(os.environ.get('NU', 1600)), int(os.environ.get('NF', 3150))


def cpu():
    f = open('/proc/%d/stat' % PID).read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')


def build(seq, base):
    if MODE == 'quad':
        creates = [pb.Entity(id=1 + k, kind=4) for k in range(NC)]
        updates = [pb.EntityUpdate(id=2000 + k) for k in range(NU)]
    else:
        creates = []
        updates = [pb.EntityUpdate(id=2000 + k) for k in range(NF)]
    inp = pb.Input(room=ROOM, seq=seq, writes=pb.EntityWrites(create=creates, update=updates))
    return pb.ClientEnvelope(messages=[pb.ClientMessage(input=inp)]).SerializeToString()


async def one(k, stats):
    c = await C('s4-%d' % k).connect(); await c.join(ROOM)
    seq = 0
    t0 = time.time()
    while time.time() - t0 < SECS:
        seq += 1
        data = build(seq, (k + 1) * 10 ** 9 + seq * 10000)
        if seq == 1: stats['bytes'] = len(data)
        await c.ws.send(data)
        stats['sent'] += 1
        await asyncio.sleep(len(data) / 60000)
    await asyncio.sleep(0.5)
    stats['errors'] += len(c.errors)
    stats['codes'] |= {code(e) for e in c.errors}
    stats['closed'] = stats['closed'] or c.closed
    await c.close()


async def main():
    stats = {'sent': 0, 'errors': 0, 'codes': set(), 'closed': None}
    c0 = cpu(); t0 = time.time()
    await asyncio.gather(*(one(k, stats) for k in range(CONNS)))
    used, wall = cpu() - c0, time.time() - t0
    print('mode=%s conns=%d inputs=%d of %d bytes: relay CPU %.2f s over %.1f s (%.1f ms per input) errors=%d %s closed=%s' % (
        MODE, CONNS, stats['sent'], stats.get('bytes', 0), used, wall, 1000 * used / max(1, stats['sent']),
        stats['errors'], sorted(stats['codes']), stats['closed']))


asyncio.run(asyncio.wait_for(main(), SECS + 30))
