"""Many source addresses against the connection caps: open WebSocket sessions (plain
ws://, raw sockets, upgrade then idle) from 127.0.2.1.. up to TOTAL, PER_ADDR per
address, in WORKERS processes (each under the 20,000 descriptor limit).

Run: TOTAL=21000 PER_ADDR=4000 WORKERS=3 HOLD=20 python3 addrs_conns.py
Starts its own relay (plain, 127.0.0.1:$PORT, default 7663). Reports how many
upgrades got 101 / 429 / 503 / reset, the relay's open descriptors, RSS and CPU, and
whether an honest client from 127.0.0.1 (WebSocket) gets in while they are held; the
relay's log lines about descriptors. Stops after HOLD s (under the 35 s heartbeat). WAVES=2: a first\nwave of TOTAL sessions is opened and dropped (parked for the 20 s grace) first.
"""
import asyncio, base64, multiprocessing as mp, os, sys, time, collections, socket
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib16 import start_relay, stop, cpu_secs, rss_kib, OUT, lo

PORT = int(os.environ.get("PORT", "7663"))
TOTAL = int(os.environ.get("TOTAL", "21000"))
PER_ADDR = int(os.environ.get("PER_ADDR", "4000"))
WORKERS = int(os.environ.get("WORKERS", "3"))
HOLD = float(os.environ.get("HOLD", "20"))
REQ = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
       b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.b64encode(b"0123456789abcdef") + b"\r\n\r\n")


WAVES = int(os.environ.get("WAVES", "1"))  # 2: a first wave opened and dropped (parked), then the held one
BLOCK = 10  # each wave its own 127.0.(2+10k).x block of addresses


def addr_of(i, wave=0):
    a = i // PER_ADDR
    return lo(f"127.0.{2 + BLOCK * wave + a // 250}.{1 + a % 250}")


async def one(i, held, st, wave):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", PORT, local_addr=(addr_of(i, wave), 0)), 10)
        w.write(REQ)
        line = await asyncio.wait_for(r.readline(), 10)
        code = line.split()[1].decode() if len(line.split()) > 1 else "?"
        st[code] += 1
        if code == "101":
            held.append(w)
        else:
            w.close()
    except Exception as e:
        st[type(e).__name__] += 1


async def worker_main(lo_i, hi_i, hold_until, q, wave):
    st = collections.Counter(); held = []
    sem = asyncio.Semaphore(200)
    async def lim(i):
        async with sem:
            await one(i, held, st, wave)
    await asyncio.gather(*[lim(i) for i in range(lo_i, hi_i)])
    q.put(("opened", dict(st)))
    while time.time() < hold_until:
        await asyncio.sleep(0.5)
    for w in held:
        w.transport.abort()


def worker(lo_i, hi_i, hold_until, q, wave=0):
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    asyncio.run(worker_main(lo_i, hi_i, hold_until, q, wave))


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def honest_try():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=3)
    try:
        s.sendall(REQ)
        return s.recv(200).split(b"\r\n")[0].decode()
    except Exception as e:
        return f"error {type(e).__name__}"
    finally:
        s.close()


def main():
    relay = start_relay(PORT, "--no-quic", tag="addrs_conns", plain=True)
    pid = relay.pid
    try:
        print(f"relay pid {pid}: fds {fds(pid)}, RSS {rss_kib(pid)} KiB, limit {open(f'/proc/{pid}/limits').read().split('Max open files')[1].split()[0:2]}")
        for wave in range(WAVES - 1):
            q = mp.Queue(); per = TOTAL // WORKERS
            ps = [mp.Process(target=worker, args=(k * per, (k + 1) * per, 0, q, wave + 1)) for k in range(WORKERS)]
            for p in ps: p.start()
            tot = collections.Counter()
            for _ in ps:
                tot.update(q.get(timeout=120)[1])
            for p in ps: p.join(30)
            time.sleep(2)
            print(f"wave {wave + 1} opened and dropped (parked for resume): {dict(tot)}; relay fds {fds(pid)}, RSS {rss_kib(pid)} KiB")
        c0, t0 = cpu_secs(pid), time.time()
        hold_until = time.time() + HOLD
        q = mp.Queue()
        per = TOTAL // WORKERS
        ps = [mp.Process(target=worker, args=(k * per, (k + 1) * per, hold_until, q)) for k in range(WORKERS)]
        for p in ps: p.start()
        tot = collections.Counter()
        for _ in ps:
            tag, st = q.get(timeout=HOLD + 60)
            tot.update(st)
        dt = time.time() - t0
        print(f"opened in {dt:.1f}s from {(TOTAL + PER_ADDR - 1)//PER_ADDR} addresses: {dict(tot)}")
        print(f"relay: fds {fds(pid)}, RSS {rss_kib(pid)} KiB, CPU {cpu_secs(pid) - c0:.1f} s")
        print("honest from 127.0.0.1:", honest_try())
        time.sleep(1)
        print("honest again:", honest_try())
        for p in ps: p.join(HOLD + 30)
        time.sleep(2)
        print(f"after: fds {fds(pid)}, RSS {rss_kib(pid)} KiB; honest: {honest_try()}")
        os.system(f"grep -i -E 'descriptor|warn' {OUT}/addrs_conns.log | sort | uniq -c | head -8")
    finally:
        stop(relay)


if __name__ == "__main__":
    main()
