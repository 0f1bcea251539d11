#!/usr/bin/env python3
# probe_joins.py PORT ROOM:TYPE... : one anonymous wss session on PORT joins each room (type given);
# prints, per room, joined (opened/held on that node) or redirect URL or error. Needs D (dev cert).
import asyncio, ssl, sys, os, time
sys.path.insert(0, os.environ.get("SOAK", "/tmp/soak13") + "/gen")
from websockets.asyncio.client import connect
from tickrelay.v1 import tickrelay_pb2 as pb
ctx = ssl.create_default_context(cafile=os.path.join(os.environ["D"], "tickrelay-dev-cert.pem"))
async def main():
    port = sys.argv[1]; rooms = [a.split(":") for a in sys.argv[2:]]
    t0 = time.time()
    async with connect(f"wss://127.0.0.1:{port}/ws", ssl=ctx, server_hostname="localhost", open_timeout=5, max_size=2**22) as ws:
        env = pb.ClientEnvelope()
        for i, (room, rtype) in enumerate(rooms):
            env.messages.append(pb.ClientMessage(join=pb.JoinRoom(request_id=i + 1, room=room, room_type=rtype)))
        await ws.send(env.SerializeToString())
        res = {}
        while len(res) < len(rooms) and time.time() - t0 < 10:
            e = pb.ServerEnvelope(); e.ParseFromString(await asyncio.wait_for(ws.recv(), 10))
            for m in e.messages:
                k = m.WhichOneof("kind")
                if k == "joined": res[m.joined.room] = f"JOINED(members={len(m.joined.members)},last_input_seq={m.joined.last_input_seq})"
                elif k == "redirect": res[m.redirect.room] = "redirect->" + m.redirect.url.replace("wss://127.0.0.1:", "").replace("/ws", "")
                elif k == "error" and m.error.room: res[m.error.room] = "error " + pb.ErrorCode.Name(m.error.code)
        print(f"probe joins on {port} at +{time.time()-t0:.2f}s:", " ".join(f"{r}={v}" for r, v in sorted(res.items())), flush=True)
asyncio.run(main())
