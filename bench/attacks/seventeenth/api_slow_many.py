"""N concurrent API POSTs (TOKEN=good|bad|none) each sending all but the last byte of a 16 KiB body and stalling; relay RSS/CPU, and whether /healthz and a WS join from 127.0.0.2 still work."""
import asyncio, os, time, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common17 import stat, connect, env, join, decode
N, PORT, MODE = int(os.environ.get("N", "2000")), int(os.environ.get("PORT", "7543")), os.environ.get("TOKEN", "bad")
TOK = {"good": "attack17-api-token-0123456789abcdef", "bad": "wrong-token", "none": None}[MODE]
BODY = int(os.environ.get("BODY", "16384"))
codes = {}


async def one(i):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", PORT, local_addr=(f"127.0.1.{1 + i % 200}", 0))
        auth = f"Authorization: Bearer {TOK}\r\n" if TOK else ""
        w.write(f"POST /rooms/ev17/events?kind=k HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {BODY}\r\n\r\n".encode() + b"s" * (BODY - 1))
        await w.drain()
        line = await asyncio.wait_for(r.readline(), 20)
        c = line.decode().split(" ")[1] if line else "closed"
    except Exception as e:
        c = type(e).__name__
    codes[c] = codes.get(c, 0) + 1


async def probe():
    t0 = time.time()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", PORT, local_addr=("127.0.0.2", 0))
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); await w.drain()
        h = (await asyncio.wait_for(r.readline(), 5)).decode().strip()
        w.close()
    except Exception as e:
        h = repr(e)
    t1 = time.time()
    try:
        ws = await connect(url=f"ws://127.0.0.2:{PORT}/ws".replace("127.0.0.2", "127.0.0.1"))
        await ws.recv(); await ws.send(env(join("probe17", 1, "relay"))); await ws.recv(); await ws.close(); j = "ok"
    except Exception as e:
        j = repr(e)[:60]
    return f"healthz {h} in {t1-t0:.2f}s; ws join {j} in {time.time()-t1:.2f}s"


async def main():
    print("before", stat(), await probe(), flush=True)
    tasks = [asyncio.ensure_future(one(i)) for i in range(N)]
    for k in range(6):
        await asyncio.sleep(2)
        print(f"t={2*(k+1)}s relay(rssMiB,cpu,threads)={stat()} {await probe()}", flush=True)
    await asyncio.gather(*tasks)
    print("statuses", codes, "after", stat())

asyncio.run(main())
