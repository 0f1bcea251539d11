"""E1: resume tokens across nodes after a SIGTERM hand-off: a stolen token under another
user's JWT, the same token on two nodes at once, and a forged token naming a live node."""
import asyncio, os, subprocess, time, sys
import lib11 as L
from lib11 import pb

async def main():
    a = await L.C('alice', 0).connect()
    b = await L.C('bob', 0).connect()
    print('alice', L.desc(await a.join('e1room')))
    print('bob', L.desc(await b.join('e1room')))
    for s in range(1, 6):
        await a.inp('e1room', create=[a.id * 1000 + s])
    await asyncio.sleep(0.3)
    ta, tb = a.welcome.resume_token, b.welcome.resume_token
    print('tokens', ta, tb)
    # E4 first: a forged token naming live node n1's number
    num = ta.split('.')[0]
    t0 = time.time()
    f = L.C('forger', 1)
    try:
        await f.connect(resume=num + '.00000000000000000000000000000000', received=0)
        print('forged: welcome', f.welcome.resumed, f.welcome.session_id)
    except Exception as e:
        print('forged token (live node number): %r after %.2fs' % (e, time.time() - t0))
    t0 = time.time()
    f = L.C('forger2', 1)
    try:
        await f.connect(resume='999999.00000000000000000000000000000000', received=0)
        print('forged2: welcome', f.welcome)
    except Exception as e:
        print('forged token (unknown number): %r after %.2fs' % (e, time.time() - t0))
    subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), 'node.sh'), '1', 'stop'])
    t0 = time.time()
    while not (a.closed and b.closed) and time.time() - t0 < 15:
        await asyncio.sleep(0.01)
    print('alice closed', a.closed, 'going_away', [L.desc(m) for m in a.kinds('going_away')], 'after %.2fs' % (time.time() - t0))
    print('bob closed', b.closed, [L.desc(m) for m in b.kinds('going_away')])
    # E1: mallory presents alice's token on n2
    m = L.C('mallory', 1)
    try:
        await m.connect(resume=ta, received=0)
        print('MALLORY GOT A WELCOME', m.welcome)
    except Exception as e:
        print('mallory with alice token:', e)
    # E2: bob's token to n2 and n3 at once
    b2, b3 = L.C('bob', 1), L.C('bob', 2)
    r = await asyncio.gather(b2.connect(resume=tb, received=0), b3.connect(resume=tb, received=0), return_exceptions=True)
    print('bob double spend:', [repr(x) if isinstance(x, Exception) else ('welcome', x.welcome.session_id, x.welcome.resumed) for x in r])
    # alice on n3 after mallory's try
    a3 = L.C('alice', 2)
    try:
        await a3.connect(resume=ta, received=0)
        print('alice on n3:', a3.welcome.session_id == a.id, a3.welcome.resumed)
        print('alice rejoin', L.desc(await a3.join('e1room')))
    except Exception as e:
        print('alice on n3 failed:', e)
    await asyncio.sleep(1)
    for c in (b2, b3, a3):
        if c.welcome and not c.closed:
            await c.close()

asyncio.run(main())
