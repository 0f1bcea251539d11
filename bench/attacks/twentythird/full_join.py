"""Check: is a QUIC join of a full relay room answered (ROOM_FULL, PROTOCOL.md "Joining a
room")? N members join room TAG-0 (64: the relay type's max_members), then one more
(NOREAD=1: with a 4 KiB receive window never raised). Prints what the last one receives."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib23 import *

N = int(os.environ.get("N", "64"))
TAG = os.environ.get("TAG", "fj")
NOREAD = os.environ.get("NOREAD", "0") == "1"


async def main():
    cs = []
    for i in range(N):
        c = await session(f"127.0.26.{i % 8 + 1}")
        def on(m, via, c=c):
            if m.WhichOneof("kind") == "state" and via == "dgram":
                c.send_dgram(env(ack(m.state.room, m.state.tick)))
        c.on_msg = on
        c.send_env(join(f"{TAG}-0", 1))
        cs.append(c)
    await asyncio.sleep(1)
    if NOREAD:
        x = await open_conn("127.0.26.9", cls=NoRead, max_stream_data=4096, max_data=65536)
        x.send_hello()
        await asyncio.wait_for(x.welcome, 5)
    else:
        x = await session("127.0.26.9")
    x.keep = 1000
    x.send_env(join(f"{TAG}-0", 7))
    await asyncio.sleep(5)
    print(f"[{TAG}] last member: stream bytes {x.stream_bytes}, frames {x.stream_frames}, closed {x.closed}")
    for t, m, via in x.msgs:
        k = m.WhichOneof("kind")
        print(f"   {via} {k} {getattr(m, k) if k in ('error', 'joined') else ''}".replace("\n", " ")[:200])
    for c in cs + [x]:
        c.app_close(1000)
    await asyncio.sleep(0.3)

asyncio.run(asyncio.wait_for(main(), 50))
