"""Round 24, attack 2: slow readers in big relay rooms (a full snapshot re-encoded every tick).
Fills ROOMS rooms as a1.py does (W writers x ENT entities of NF x FB bytes), then phases:
  idle : nothing
  slow : in each room, S readers join over raw ws:// with a small receive buffer and read
         RATE bytes/s (RATE=0: never read); when one is closed, it joins again (AGAIN=1).
Prints relay CPU per thread group, full snapshots/s, encoded bytes/s, overruns, bots.
Loopback only; bounded in time."""
import asyncio, os, socket, base64, struct, time, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import entity_rehash as a1
from entity_rehash import *

S = int(os.environ.get("S", "1")); SRATE = int(os.environ.get("SRATE", "1000000")); AGAIN = os.environ.get("AGAIN", "1") == "1"
RCVBUF = int(os.environ.get("RCVBUF", "16384"))


def mframe(payload, opcode=2):
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    k = os.urandom(4)
    return head + k + bytes(b ^ k[i & 3] for i, b in enumerate(payload))


class Slow:
    def __init__(self, room):
        self.room = room
        self.joins = 0
        self.closes = 0
        self.bytes = 0

    async def once(self, end):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        s.setblocking(False)
        await asyncio.get_event_loop().sock_connect(s, ("127.0.0.1", PORT))
        r, w = await asyncio.open_connection(sock=s, limit=1 << 20)
        key = base64.b64encode(os.urandom(16)).decode()
        w.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        await r.readuntil(b"\r\n\r\n")
        w.write(mframe(env(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=self.room, room_type="relay")))))
        await w.drain()
        self.joins += 1
        t0 = time.time()
        got = 0
        try:
            while time.time() < end:
                if SRATE > 0:
                    d = await asyncio.wait_for(r.read(min(65536, max(1024, SRATE // 20))), end - time.time())
                    if not d:
                        break
                    got += len(d); self.bytes += len(d)
                    ahead = got / SRATE - (time.time() - t0)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                else:
                    await asyncio.sleep(0.2)
                    if r.at_eof():
                        break
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        closed = time.time() < end - 0.05
        self.closes += closed
        w.close()
        return closed

    async def run(self, secs):
        end = time.time() + secs
        while time.time() < end:
            closed = await self.once(end)
            if not (closed and AGAIN):
                break
            await asyncio.sleep(0.1)


K4501 = 'tickrelay_closes_total{code="4501"}'


async def main2():
    writers = [Writer(f"{PREFIX}-{r}", i) for r in range(ROOMS) for i in range(W)]
    await asyncio.gather(*(w.start() for w in writers))
    t0 = time.time()
    await measure("fill", asyncio.wait_for(asyncio.gather(*(w.fill() for w in writers)), FILL_TIMEOUT), False)
    await asyncio.sleep(1.5)
    print(f"filled {ROOMS} rooms in {time.time()-t0:.1f}s; errors {sum(len(w.errors) for w in writers)}", flush=True)
    for ph in PHASES:
        m0 = metrics()
        if ph == "idle":
            await measure(ph, asyncio.sleep(PH))
        elif ph == "touch1":
            await measure(ph, asyncio.gather(*(w.touch("touch1", PH) for w in writers)))
        else:
            slows = [Slow(f"{PREFIX}-{r}") for r in range(ROOMS) for _ in range(S)]
            extra = [w.touch("touch1", PH) for w in writers] if ph == "slowtouch" else []
            await measure(ph, asyncio.gather(*(x.run(PH) for x in slows), *extra))
            print(f"[{ph}] slow readers: joins {sum(x.joins for x in slows)} closes {sum(x.closes for x in slows)} "
                  f"read {sum(x.bytes for x in slows)/PH/1e6:.2f} MB/s total", flush=True)
        m1 = metrics()
        d = lambda k: (m1.get(k, 0) - m0.get(k, 0)) / PH
        print(f"[{ph}] full snapshots {d('tickrelay_full_snapshots_total'):.1f}/s superseded {d('tickrelay_frames_superseded_total'):.0f}/s "
              "closes 4501", d(K4501) * PH, flush=True)
    for w in writers:
        await w.ws.close()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main2(), FILL_TIMEOUT + 4 * PH + 30))
