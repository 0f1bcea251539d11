"""Capacity probe: how many connections one address may hold, how many rooms it may create."""
import asyncio, os, sys, json
os.environ.setdefault("DURATION", "1")
exec(open("/tmp/soak7/oddclient.py").read().replace("asyncio.run(main())", ""))
async def probe():
    conns = []
    async def one():
        try:
            ws = await WS.open(); await welcome(ws); return ws
        except Exception as e:
            return repr(e)[:80]
    res = await asyncio.gather(*[one() for _ in range(45)])
    conns = [r for r in res if isinstance(r, WS)]
    refused = [r for r in res if not isinstance(r, WS)]
    created, refusals = 0, collections.Counter()
    for i, ws in enumerate(conns[:11]):
        for j in range(15):
            ws.env(M(join=pb.JoinRoom(request_id=rid(), room=f"probe-{os.getpid()}-{i}-{j}", room_type="relay")))
            m, _ = await ws.until(joined_or_err, 5)
            if m is not None and m.WhichOneof("kind") == "joined": created += 1
            else: refusals[pb.ErrorCode.Name(m.error.code) if m is not None else "timeout"] += 1
    for ws in conns: await ws.close(1000)
    print(json.dumps({"connections_ok": len(conns), "refused": collections.Counter(refused), "rooms_created": created, "join_refusals": refusals}))
asyncio.run(probe())
