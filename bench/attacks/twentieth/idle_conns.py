"""Holds N idle WebSocket sessions (raw upgrades, nothing sent after) from ADDRS loopback
source addresses 127.0.20.1.. at the per-address handshake rate, for HOLD seconds.
PORT (7681), N (12000), ADDRS (8), RATE (per address per second, 180), HOLD (28)."""
import asyncio, os, time, base64
PORT = int(os.environ.get("PORT", "7681")); N = int(os.environ.get("N", "12000"))
ADDRS = int(os.environ.get("ADDRS", "8")); RATE = float(os.environ.get("RATE", "180"))
HOLD = float(os.environ.get("HOLD", "28"))
held = []; failed = {}
async def one(src):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", PORT, local_addr=(src, 0)), 10)
        key = base64.b64encode(os.urandom(16)).decode()
        w.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        line = await asyncio.wait_for(r.readline(), 10)
        if b" 101 " not in line:
            failed[line[:12]] = failed.get(line[:12], 0) + 1; w.close(); return
        held.append(w)
    except Exception as e:
        failed[type(e).__name__] = failed.get(type(e).__name__, 0) + 1
async def per_addr(i, n):
    src = f"127.0.20.{i+1}"
    tasks = []
    for k in range(n):
        tasks.append(asyncio.create_task(one(src)))
        await asyncio.sleep(1 / RATE)
    await asyncio.gather(*tasks)
async def main():
    t0 = time.time()
    per = N // ADDRS
    await asyncio.gather(*(per_addr(i, per) for i in range(ADDRS)))
    print(f"held {len(held)} after {time.time()-t0:.1f}s; failed {failed}", flush=True)
    await asyncio.sleep(max(0, HOLD - (time.time() - t0)))
    for w in held: w.close()
    print("released", flush=True)
asyncio.run(main())
