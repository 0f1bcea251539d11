"""E2: a node stopped with SIGTERM and started again at once under the same --node-id (a
systemd restart); its clients follow GoingAway to another node with their resume tokens.
MODE=control: no restart. MODE=mallory: another user presents alice's token first."""
import asyncio, subprocess, time, os, urllib.request
import lib11 as L

MODE = os.environ.get('MODE', 'restart')

def up(port):
    try:
        return urllib.request.urlopen('http://127.0.0.1:%d/readyz' % port, timeout=1).status == 200
    except Exception:
        return False

async def main():
    a = await L.C('alice', 0).connect()
    print('alice', L.desc(await a.join('e2room-' + MODE)))
    for s in range(1, 4):
        await a.inp('e2room-' + MODE, create=[a.id * 1000 + s])
    await asyncio.sleep(0.5)
    ta = a.welcome.resume_token
    oldpid = L.pid(0)
    subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), 'node.sh'), '1', 'stop'])
    t0 = time.time()
    while not a.closed:
        await asyncio.sleep(0.005)
    ga = [m.going_away.url for m in a.kinds('going_away')]
    print('alice closed', a.closed, 'going_away', ga)
    if MODE == 'restart':
        while os.path.exists('/proc/%d' % oldpid) and open('/proc/%d/stat' % oldpid).read().split()[2] != 'Z':
            await asyncio.sleep(0.01)
        print('old n1 exited after %.2fs' % (time.time() - t0))
        subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), 'node.sh'), '1', 'start'])
        while not up(7811):
            await asyncio.sleep(0.05)
        print('n1 ready again after %.2fs' % (time.time() - t0))
    if MODE == 'mallory':
        m = L.C('mallory', 1)
        try:
            await m.connect(resume=ta, received=0)
            print('MALLORY welcome', m.welcome)
        except Exception as e:
            print('mallory:', e)
    target = {'ws://127.0.0.1:7812/ws': 1, 'ws://127.0.0.1:7813/ws': 2}[ga[0]]
    for attempt in range(4):
        t1 = time.time()
        a2 = L.C('alice', target)
        try:
            await a2.connect(resume=ta, received=0)
            print('attempt %d: alice continued on node %d: same id %s resumed=%s (%.2fs)' % (
                attempt, target + 1, a2.welcome.session_id == a.id, a2.welcome.resumed, time.time() - t1))
            r = await a2.join('e2room-' + MODE)
            print('  rejoin', L.desc(r))
            if r and r.WhichOneof('kind') == 'redirect':
                a3 = L.C('alice', {'ws://127.0.0.1:7811/ws': 0, 'ws://127.0.0.1:7812/ws': 1, 'ws://127.0.0.1:7813/ws': 2}[r.redirect.url])
                await a3.connect()
                print('  after redirect', L.desc(await a3.join('e2room-' + MODE, seat=r.redirect.seat)))
            break
        except Exception as e:
            print('attempt %d on node %d: %s (%.2fs)' % (attempt, target + 1, e, time.time() - t1))
            await asyncio.sleep(1)

asyncio.run(main())
