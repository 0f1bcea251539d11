"""E12: the metrics listener (n1, 127.0.0.1:7911) held by idle sockets from ADDRS addresses of
127.0.0.0/8 (PER each); an honest scraper from 127.0.0.1 then tries /metrics; 2nd phase: re-open
every second for 20 s (as an attacker would) and count the scraper's successes."""
import socket, time, os, urllib.request
ADDRS = int(os.environ.get('ADDRS', '64')); PER = int(os.environ.get('PER', '1'))

def open_all():
    socks = []
    for a in range(ADDRS):
        for _ in range(PER):
            s = socket.socket(); s.bind(('127.0.%d.%d' % (1 + a // 200, 2 + a % 200), 0))
            s.connect(('127.0.0.1', 7911)); socks.append(s)
    return socks

def scrape():
    t = time.time()
    try:
        n = len(urllib.request.urlopen('http://127.0.0.1:7911/metrics', timeout=3).read())
        return 'ok %d B %.0f ms' % (n, (time.time() - t) * 1000)
    except Exception as e:
        return 'FAIL %r %.0f ms' % (e, (time.time() - t) * 1000)

print('before:', scrape())
socks = open_all(); time.sleep(0.5)
print('held %d sockets; scrape: %s' % (len(socks), scrape()))
ok = fail = 0; t0 = time.time()
while time.time() - t0 < 20:
    r = scrape()
    ok += r.startswith('ok'); fail += not r.startswith('ok')
    # the attacker re-opens from the same addresses (newest per address survive)
    for s in socks: s.close()
    socks = open_all()
    time.sleep(0.5)
print('scrapes during 20 s of re-opening: ok=%d fail=%d' % (ok, fail))
for s in socks: s.close()
time.sleep(0.5)
print('after:', scrape())
