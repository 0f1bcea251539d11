"""The HTTP API in a cluster: POST /rooms/{room}/events on node 2 for a room held on node 1.
Checks: no token / a wrong token / the right one, a room open nowhere, a body over the limit,
odd room ids in the path; then (FLOOD=1) CONNS keep-alive connections each post BYTES-byte
events as fast as answered for SECS to the node-1 room, whose one member reads: answers,
events the member got, CPU of node 1, node 2 and Redis. Bounded: SECS + 25 s."""
import asyncio, collections, os, socket, time
from c6 import *

TOKEN = os.environ.get("API_TOKEN", "attack6-api-token-0123456789abcdef")
CONNS = int(os.environ.get("CONNS", "8"))
SECS = float(os.environ.get("SECS", "10"))
BYTES = int(os.environ.get("BYTES", "16000"))
PORT2 = NODE_PORTS[1]


async def post(reader, writer, path, body, token=TOKEN):
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    status = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    text = await reader.readexactly(length) if length else b""
    return int(status.split()[1]) if status else None, text.decode(errors="replace").strip()[:80]


async def one(path, body=b"x", token=TOKEN):
    r, w = await asyncio.open_connection("127.0.0.1", PORT2)
    try:
        return await post(r, w, path, body, token)
    finally:
        w.close()


async def main():
    member = await connect(0)
    await member.send(env(join("api-room", 1)))
    await recv_msgs(member, 1)
    out = {}
    out["no token"] = await one("/rooms/api-room/events?kind=k", token=None)
    out["wrong token"] = await one("/rooms/api-room/events?kind=k", token="nope")
    out["right token, room on node 1"] = await one("/rooms/api-room/events?kind=k")
    out["room open nowhere"] = await one("/rooms/nowhere/events?kind=k")
    out["body 16385 bytes"] = await one("/rooms/api-room/events?kind=k", body=b"x" * 16385)
    out["room id %2A%7B%7D%3A"] = await one("/rooms/%2A%7B%7D%3A/events?kind=k")
    out["kind 257 bytes"] = await one("/rooms/api-room/events?kind=" + "k" * 257)
    out["targets 3000 ids"] = await one("/rooms/api-room/events?kind=k&targets=" + ",".join(["1"] * 3000))
    for k, v in out.items():
        pj("%-28s" % k, v)
    got = await recv_msgs(member, 1)
    pj("member got:", dict(collections.Counter(kind(m) for m in got)))
    if os.environ.get("FLOOD") != "1":
        return
    stats = collections.Counter()
    ev = collections.Counter()
    stop = asyncio.Event()

    async def mread():
        try:
            async for data in member:
                for m in decode(data).messages:
                    ev[kind(m)] += 1
        except websockets.ConnectionClosed as e:
            ev["close:%s" % e.code] += 1
    mt = asyncio.create_task(mread())

    async def flooder():
        r, w = await asyncio.open_connection("127.0.0.1", PORT2)
        body = b"y" * BYTES
        while not stop.is_set():
            try:
                st, _ = await post(r, w, "/rooms/api-room/events?kind=flood", body)
            except Exception as e:
                stats["exc:" + type(e).__name__] += 1
                return
            stats[st] += 1
        w.close()
    s = Sampler()
    tasks = [asyncio.create_task(flooder()) for _ in range(CONNS)]
    await asyncio.sleep(SECS)
    rep = s.report()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(2)
    mt.cancel()
    pj("flood answers", dict(stats), "per s", round(sum(stats.values()) / SECS))
    pj("member (node 1) got", dict(ev))
    pj("during flood", rep)
    pj(metrics(0, ["tickrelay_events_published_total"]), metrics(1, ["tickrelay_events_published_total"]))

asyncio.run(asyncio.wait_for(main(), SECS + 25))
