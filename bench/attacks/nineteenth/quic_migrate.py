"""QUIC connection migration: a member in a room rebinds its UDP socket to a new source
address/port (NAT rebinding) N times; does its session keep receiving state datagrams and
answering pings? Then a hostile variant: migrate every 50 ms across 100 addresses while an
honest WebSocket member writes every tick; CPU and honest frames/s."""
import asyncio, os, time
import lib18
from qc import *
PID = int(open("q1.pid").read())
ROOM = "mig%d" % int(time.time())
async def rebind(c, addr):
    loop = asyncio.get_event_loop()
    old = c._transport
    import socket
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::ffff:" + addr, 0))
    await loop.create_datagram_endpoint(lambda: c, sock=sock)
    old.close()
async def main():
    h = await lib18.C().open(url="wss://127.0.0.1:%d/ws" % PORT); await h.join(ROOM, 1)
    await h.send(lib18.cm(input=lib18.pb.Input(room=ROOM, seq=1, writes=lib18.pb.EntityWrites(create=[lib18.pb.Entity(id=1, fields=[lib18.pb.Field(id=1, int=1)])]))))
    cmgr = quic_connect(); c = await asyncio.wait_for(cmgr.__aenter__(), 15)
    c.send_hello(); await asyncio.wait_for(c.welcome, 10)
    c.send_env(cm(join=pb.JoinRoom(request_id=1, room=ROOM, room_type="relay")))
    seq = 2
    async def write(secs):
        nonlocal seq
        end = time.time() + secs
        while time.time() < end:
            await h.send(lib18.cm(input=lib18.pb.Input(room=ROOM, seq=seq, writes=lib18.pb.EntityWrites(update=[lib18.pb.EntityUpdate(id=1, fields=[lib18.pb.Field(id=1, int=seq)])]))))
            seq += 1; await asyncio.sleep(0.033)
    await write(1)
    for i in range(5):
        d0 = c.datagrams; pongs0 = sum(1 for _, m, _ in c.msgs if m.WhichOneof("kind") == "pong")
        await rebind(c, "127.0.%d.%d" % (i + 2, i + 2))
        c.send_env(cm(ping=pb.Ping(nonce=i)))
        await write(1)
        pongs = sum(1 for _, m, _ in c.msgs if m.WhichOneof("kind") == "pong") - pongs0
        print("after rebind %d to 127.0.%d.%d: datagrams in 1 s %d, pong %d, closed %s" % (i, i + 2, i + 2, c.datagrams - d0, pongs, c.closed))
    # hostile: migrate every 20 ms over 100 addresses for 8 s
    c0 = cpu_secs(PID); f0 = h.frames; t0 = time.time(); d0 = c.datagrams
    async def hop():
        k = 0
        while time.time() - t0 < 8:
            await rebind(c, "127.20.%d.%d" % (k % 100 // 50 + 1, k % 50 + 1)); k += 1
            c.send_env(cm(ping=pb.Ping(nonce=1000 + k)))
            await asyncio.sleep(0.02)
        return k
    k, _ = await asyncio.gather(hop(), write(8))
    el = time.time() - t0
    print("hostile: %d migrations in %.1f s; relay CPU %.2f cores; honest frames/s %.1f; attacker datagrams/s %.1f; closed %s / %s" % (
        k, el, (cpu_secs(PID) - c0) / el, (h.frames - f0) / el, (c.datagrams - d0) / el, c.closed, h.closed))
    await h.close()
asyncio.run(main())
