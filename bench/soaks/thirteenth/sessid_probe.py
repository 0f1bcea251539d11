#!/usr/bin/env python3
# sessid_probe.py PORT...: open 3 anonymous sessions on each node, print the session ids (node number = id >> 40)
import asyncio, ssl, sys, os
sys.path.insert(0, os.environ.get("SOAK", "/tmp/soak13") + "/gen")
from websockets.asyncio.client import connect
from tickrelay.v1 import tickrelay_pb2 as pb
ctx = ssl.create_default_context(cafile=os.path.join(os.environ["D"], "tickrelay-dev-cert.pem"))
async def one(port):
    ids = []
    for _ in range(3):
        try:
            async with connect(f"wss://127.0.0.1:{port}/ws", ssl=ctx, server_hostname="localhost", open_timeout=5) as ws:
                e = pb.ServerEnvelope(); e.ParseFromString(await asyncio.wait_for(ws.recv(), 5))
                w = e.messages[0].welcome; ids.append(f"{w.session_id>>40}:{w.session_id & ((1<<40)-1)}")
        except Exception as ex: ids.append(type(ex).__name__)
    return f"{port}: {ids}"
async def main():
    print("session ids (node#:n):", " ; ".join(await asyncio.gather(*[one(p) for p in sys.argv[1:]])), flush=True)
asyncio.run(main())
