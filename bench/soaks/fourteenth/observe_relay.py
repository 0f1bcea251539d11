#!/usr/bin/env python3
# observe_relay.py SECS INTERVAL PORT ROOM... : every INTERVAL s for SECS s, one fresh anonymous wss session
# on PORT joins each relay room (following a redirect once, with its seat ticket), reads Joined and the first
# full StateFrame, and prints one line per entity: bot index (id>>32), generation ((id>>24)&0xff), the bot's
# input count when it made it (id & 0xffffff), and the owner member id; then leaves. Output: $D/observe.log
import asyncio, ssl, sys, os, time
sys.path.insert(0, "/tmp/soak14/gen")
from websockets.asyncio.client import connect
from tickrelay.v1 import tickrelay_pb2 as pb
ctx = ssl.create_default_context(cafile=os.path.join(os.environ["D"], "tickrelay-dev-cert.pem"))
out = open(os.path.join(os.environ["D"], "observe.log"), "a")
def emit(s):
    out.write(s + "\n"); out.flush()
async def look(url, room, seat=""):
    async with connect(url, ssl=ctx, server_hostname="localhost", open_timeout=3, max_size=2**22) as ws:
        env = pb.ClientEnvelope()
        env.messages.append(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=room, room_type="relay", seat=seat)))
        await ws.send(env.SerializeToString())
        t0 = time.time(); joined = None
        while time.time() - t0 < 3:
            e = pb.ServerEnvelope(); e.ParseFromString(await asyncio.wait_for(ws.recv(), 3))
            for m in e.messages:
                k = m.WhichOneof("kind")
                if k == "redirect" and not seat:
                    return ("redirect", m.redirect.url, m.redirect.seat)
                if k == "error" and m.error.room == room:
                    return ("error", pb.ErrorCode.Name(m.error.code) + " " + m.error.message, None)
                if k == "joined":
                    joined = m.joined
                if k == "state" and joined is not None and m.state.room == room:
                    members = {mi.member_id: mi.user_id for mi in joined.members}
                    ents = sorted((en.id >> 32, (en.id >> 24) & 0xff, en.id & 0xffffff, en.owner) for en in m.state.added)
                    return ("ok", members, ents, joined.member_id)
        return ("timeout", None, None)
async def main():
    secs, iv, port = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]; rooms = sys.argv[4:]
    end = time.time() + secs
    while time.time() < end:
        ts = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time()*1000)%1000:03d}"
        for room in rooms:
            url = f"wss://127.0.0.1:{port}/ws"; node = port
            try:
                r = await look(url, room)
                if r[0] == "redirect":
                    node = r[1].replace("wss://127.0.0.1:", "").replace("/ws", "")
                    r = await look(r[1], room, r[2])
                if r[0] == "ok":
                    _, members, ents, me = r
                    emit(f"{ts} {room} node={node} members={len(members)-1} " + " ".join(
                        f"b{i}g{g}:sent={s},owner={o}({members.get(o,'?').replace('anonymous-','')})" for i, g, s, o in ents if o != me))
                else:
                    emit(f"{ts} {room} node={node} {r[0]} {r[1]}")
            except Exception as ex:
                emit(f"{ts} {room} node={node} exception {type(ex).__name__} {ex}")
        await asyncio.sleep(iv)
asyncio.run(main())
