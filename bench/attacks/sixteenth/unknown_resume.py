"""How long a resume of a made-up token takes to be refused (4504): N resumes one at a
time against a relay on $TR_URL (default ws://127.0.0.1:7551/ws, as
../fifteenth/start.sh starts it), then the median and the longest.

Run: PID=$(sh ../fifteenth/start.sh); N=50 python3 unknown_resume.py; kill $PID
"""
import asyncio, os, time
import websockets

URL = os.environ.get("TR_URL", "ws://127.0.0.1:7551/ws")
N = int(os.environ.get("N", "50"))
assert URL.startswith(("ws://127.", "wss://127.")), "loopback only"


async def main():
    took, codes = [], {}
    for _ in range(N):
        started = time.monotonic()
        async with websockets.connect(f"{URL}?resume=0.deadbeefdeadbeefdeadbeefdeadbeef") as ws:
            try:
                while True:
                    await ws.recv()
            except websockets.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
                codes[code] = codes.get(code, 0) + 1
        took.append((time.monotonic() - started) * 1000)
    took.sort()
    print(f"closes {codes}; p50 {took[len(took) // 2]:.1f} ms, max {took[-1]:.1f} ms")


asyncio.run(main())
