#!/usr/bin/env python3
"""Phase 2: short-lived relay rooms with entities + metadata, quick joins, listings, events,
and connections dropped in odd states. Bounded by DURATION seconds. Prints a JSON summary."""
import asyncio, base64, collections, json, os, random, socket, ssl, struct, sys, time
sys.path.insert(0, "/tmp/soak7/gen")
from tickrelay.v1 import tickrelay_pb2 as pb

HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "7710"))
TLS_PORT = int(os.environ.get("TLS_PORT", "7711"))
DURATION = float(os.environ.get("DURATION", "330"))
stats = collections.Counter()
errors = collections.Counter()
closes = collections.Counter()
END = time.time() + DURATION
RID = [1 << 53]
def rid():
    RID[0] += 1; return RID[0]

# ---------- minimal raw WebSocket client (so we control reading/closing exactly) ----------
class WS:
    def __init__(self, r, w): self.r, self.w = r, w; self.buf = b""; self.closed = None
    @classmethod
    async def open(cls, query="", rcvbuf=None, tls_ctx=None, port=None):
        port = port or PORT
        sock = socket.socket(); sock.setblocking(False)
        if rcvbuf: sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        r, w = await asyncio.open_connection(sock=sock, ssl=tls_ctx, server_hostname="localhost" if tls_ctx else None)
        key = base64.b64encode(os.urandom(16)).decode()
        path = "/ws" + ("?" + query if query else "")
        w.write((f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
        if b" 101 " not in head.split(b"\r\n")[0]:
            w.close(); raise RuntimeError("upgrade refused: " + head.split(b"\r\n")[0].decode())
        return cls(r, w)
    def send(self, data, opcode=2):
        if self.w.transport.is_closing(): raise ConnectionError("transport closed")
        n = len(data); hdr = bytes([0x80 | opcode])
        if n < 126: hdr += bytes([0x80 | n])
        elif n < 65536: hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
        else: hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.w.write(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
    def env(self, *msgs, first_event_seq=0):
        e = pb.ClientEnvelope(first_event_seq=first_event_seq)
        for m in msgs: e.messages.append(m)
        self.send(e.SerializeToString())
    async def recv(self, timeout=5.0):
        """Returns a ServerEnvelope, or None on close/timeout; answers pings."""
        while True:
            hdr = await asyncio.wait_for(self.r.readexactly(2), timeout)
            op, n = hdr[0] & 0x0F, hdr[1] & 0x7F
            if n == 126: n = struct.unpack(">H", await self.r.readexactly(2))[0]
            elif n == 127: n = struct.unpack(">Q", await self.r.readexactly(8))[0]
            data = await self.r.readexactly(n)
            if op == 9: self.send(data, 10); continue
            if op == 8:
                code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
                self.closed = code; closes[code] += 1
                try: self.send(data[:2], 8)
                except Exception: pass
                return None
            if op == 2:
                s = pb.ServerEnvelope(); s.ParseFromString(data); return s
    async def until(self, pred, timeout=5.0):
        end = time.time() + timeout; seen = []
        while time.time() < end:
            try: s = await self.recv(end - time.time())
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError): return None, seen
            if s is None: return None, seen
            for m in s.messages:
                seen.append(m)
                if m.WhichOneof("kind") == "error": errors[pb.ErrorCode.Name(m.error.code)] += 1
                if pred(m): return m, seen
        return None, seen
    async def close(self, code=1000):
        try:
            self.send(struct.pack(">H", code), 8)
            await self.until(lambda m: False, 1.5)
        except Exception: pass
        self.abort(graceful=True)
    def abort(self, graceful=False):
        try:
            sock = self.w.get_extra_info("socket")
            if not graceful and sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            self.w.transport.abort() if not graceful else self.w.close()
        except Exception: pass

def M(**kw): return pb.ClientMessage(**kw)
def is_kind(k): return lambda m: m.WhichOneof("kind") == k
def joined_or_err(m): return m.WhichOneof("kind") in ("joined", "error")

async def welcome(ws):
    m, _ = await ws.until(is_kind("welcome"), 5)
    if m is None: raise RuntimeError("no welcome")
    return m.welcome

def entity(i, owner_tag):
    return pb.Entity(id=i, kind=7, fields=[pb.Field(id=1, int=i), pb.Field(id=2, float=random.random() * 100),
                                         pb.Field(id=3, string=f"{owner_tag}-{i}"), pb.Field(id=4, bytes=os.urandom(random.randint(8, 200)))])

# ---------- workers ----------
async def room_creator(wid):
    """Creates short-lived relay rooms with entities and metadata, plays a bit, leaves in various ways."""
    n = 0
    while time.time() < END:
        n += 1; room = f"py-{wid}-{n}-{random.randint(0, 1 << 30)}"
        try:
            ws = await WS.open(f"client=py{wid}")
            w = await welcome(ws)
            meta = {"mode": random.choice(["ctf", "dm", "race"]), "owner": f"w{wid}", "pad": "x" * random.randint(0, 200)}
            ws.env(M(join=pb.JoinRoom(request_id=rid(), room=room, room_type="relay",
                                      create=pb.RoomOptions(metadata=meta, private=random.random() < 0.2))))
            m, _ = await ws.until(joined_or_err, 5)
            if m is None or m.WhichOneof("kind") != "joined":
                stats["creator_join_fail"] += 1; ws.abort(); await asyncio.sleep(1); continue
            stats["rooms_created"] += 1
            seq = 0; base = (w.session_id << 20)
            for k in range(random.randint(2, 6)):
                seq += 1
                ws.env(M(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(create=[entity(base + seq * 10 + j, wid) for j in range(5)]))))
                seq += 1
                ws.env(M(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(update=[pb.EntityUpdate(id=base + (seq - 1) * 10, fields=[pb.Field(id=1, int=seq)])]))))
                ws.env(M(event=pb.SendEvent(room=room, kind="chat", payload=os.urandom(64))), first_event_seq=seq)
                await ws.until(lambda m: False, 0.15)
            ws.env(M(request=pb.Request(request_id=rid(), update_room=pb.UpdateRoom(room=room, metadata={"round": str(n)}, lock=random.choice([0, 1, 2])))))
            await ws.until(is_kind("response"), 2)
            ws.env(M(ping=pb.Ping(nonce=1, sent_time_us=int(time.time() * 1e6), received_seq=0)))
            how = random.choice(["leave_close", "close1000", "close1001", "abort", "abort_noleave_resume", "eof"])
            stats["creator_end_" + how] += 1
            if how == "leave_close":
                ws.env(M(leave=pb.LeaveRoom(request_id=rid(), room=room))); await ws.until(is_kind("left"), 2); await ws.close(1000)
            elif how == "close1000": await ws.close(1000)
            elif how == "close1001": await ws.close(1001)
            elif how == "abort": ws.abort()
            elif how == "eof": ws.w.close()
            elif how == "abort_noleave_resume":
                ws.abort(); await asyncio.sleep(random.uniform(0.1, 3))
                ws2 = await WS.open(f"resume={w.resume_token}&received=0&client=py{wid}")
                w2 = await welcome(ws2); stats["resumed_ok" if w2.resumed else "resume_new_session"] += 1
                await ws2.until(is_kind("state"), 2)
                ws2.env(M(leave=pb.LeaveRoom(request_id=rid(), room=room))); await ws2.until(is_kind("left"), 2)
                await ws2.close(1000)
        except Exception as e:
            stats["creator_exc_" + type(e).__name__] += 1
        await asyncio.sleep(random.uniform(0.5, 1.5))

async def quick_joiner(wid):
    """Quick joins (filters), lists rooms, events to the room, then leaves or drops."""
    while time.time() < END:
        try:
            ws = await WS.open()
            w = await welcome(ws)
            mode = random.choice(["qa", "qb"])
            ws.env(M(quick_join=pb.QuickJoin(request_id=rid(), room_type="relay", filters={"mode": mode}, create=pb.RoomOptions(metadata={"q": "1"}))))
            m, _ = await ws.until(joined_or_err, 5)
            if m is None or m.WhichOneof("kind") != "joined":
                stats["qj_fail"] += 1; ws.abort(); await asyncio.sleep(1); continue
            stats["quick_joined"] += 1; room = m.joined.room
            ws.env(M(request=pb.Request(request_id=rid(), list_rooms=pb.ListRooms(limit=50, room_type="relay", open_only=random.random() < 0.5))))
            r, _ = await ws.until(is_kind("response"), 3)
            if r is not None: stats["listed_rooms"] += len(r.response.rooms.rooms)
            for k in range(random.randint(1, 5)):
                ws.env(M(event=pb.SendEvent(room=room, kind="hi", payload=os.urandom(128))), first_event_seq=k + 1)
                ws.env(M(input=pb.Input(room=room, seq=k + 1, writes=pb.EntityWrites(create=[entity((w.session_id << 20) + k, wid)]))))
                await ws.until(lambda m: False, 0.2)
            how = random.choice(["leave_close", "close1000", "abort", "stay_abort"])
            stats["qj_end_" + how] += 1
            if how == "leave_close":
                ws.env(M(leave=pb.LeaveRoom(request_id=rid(), room=room))); await ws.until(is_kind("left"), 2); await ws.close()
            elif how == "close1000": await ws.close()
            elif how == "abort": ws.abort()
            else:
                await ws.until(lambda m: False, random.uniform(1, 4)); ws.abort()
        except Exception as e:
            stats["qj_exc_" + type(e).__name__] += 1
        await asyncio.sleep(random.uniform(0.3, 1.0))

async def odd_dropper(wid):
    """Connections dropped in odd states."""
    cases = ["tcp_only", "half_head", "full_head_close", "upgrade_then_rst", "join_then_rst", "join_then_fin",
             "join_burst_rst", "tls_half", "tls_full_then_close", "wss_join_rst", "garbage_frame", "resume_bogus",
             "text_frame", "half_frame_rst"]
    while time.time() < END:
        case = random.choice(cases); stats["odd_" + case] += 1
        try:
            if case == "tcp_only":
                r, w = await asyncio.open_connection(HOST, random.choice([PORT, TLS_PORT])); await asyncio.sleep(random.uniform(0, 2)); w.close()
            elif case == "half_head":
                r, w = await asyncio.open_connection(HOST, PORT)
                w.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"); await asyncio.sleep(random.uniform(0, 3))
                if random.random() < 0.5:
                    w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.close()
            elif case == "full_head_close":
                r, w = await asyncio.open_connection(HOST, PORT)
                key = base64.b64encode(os.urandom(16)).decode()
                w.write(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
                w.close()  # before reading the 101
            elif case == "upgrade_then_rst":
                ws = await WS.open(); ws.abort()  # Welcome never read
            elif case in ("join_then_rst", "join_then_fin", "join_burst_rst"):
                ws = await WS.open()
                room = random.choice([f"odd-{wid}-{random.randint(0, 20)}", "p2-shared"])
                if case == "join_burst_rst":
                    ws.env(M(join=pb.JoinRoom(request_id=rid(), room=room, room_type="relay")),
                           M(input=pb.Input(room=room, seq=1, writes=pb.EntityWrites(create=[entity(99, wid)]))),
                           M(event=pb.SendEvent(room=room, kind="x", payload=b"y" * 500)),
                           M(request=pb.Request(request_id=rid(), list_rooms=pb.ListRooms())),
                           M(leave=pb.LeaveRoom(request_id=rid(), room=room)),
                           M(join=pb.JoinRoom(request_id=rid(), room=room, room_type="relay")))
                else:
                    ws.env(M(join=pb.JoinRoom(request_id=rid(), room=room, room_type="relay")))
                if case == "join_then_fin": ws.abort(graceful=True)
                else: ws.abort()
            elif case == "tls_half":
                r, w = await asyncio.open_connection(HOST, TLS_PORT)
                w.write(bytes.fromhex("16030100c8010000c40303") + os.urandom(40)); await asyncio.sleep(random.uniform(0, 2)); w.close()
            elif case == "tls_full_then_close":
                ctx = ssl.create_default_context(cafile="/tmp/soak7/b/tickrelay-dev-cert.pem")
                r, w = await asyncio.open_connection(HOST, TLS_PORT, ssl=ctx, server_hostname="localhost")
                w.write(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n"); await asyncio.sleep(random.uniform(0, 1)); w.transport.abort()
            elif case == "wss_join_rst":
                ctx = ssl.create_default_context(cafile="/tmp/soak7/b/tickrelay-dev-cert.pem")
                ws = await WS.open(tls_ctx=ctx, port=TLS_PORT)
                ws.env(M(join=pb.JoinRoom(request_id=rid(), room=f"oddtls-{random.randint(0, 5)}", room_type="relay")))
                await asyncio.sleep(random.uniform(0, 0.2)); ws.abort()
            elif case == "garbage_frame":
                ws = await WS.open(); await welcome(ws); ws.send(os.urandom(50)); await ws.until(lambda m: False, 1); ws.abort()
            elif case == "text_frame":
                ws = await WS.open(); ws.send(b"hello", 1); await ws.until(lambda m: False, 1); ws.abort()
            elif case == "resume_bogus":
                ws = await WS.open("resume=AAAAbogus&received=3"); await ws.until(lambda m: False, 1); ws.abort()
            elif case == "half_frame_rst":
                ws = await WS.open(); await welcome(ws)
                ws.w.write(bytes([0x82, 0x80 | 126, 0x10, 0x00]) + os.urandom(4) + os.urandom(100))  # promises 4096, sends 100
                await asyncio.sleep(random.uniform(0, 2)); ws.abort()
        except Exception as e:
            stats["odd_exc_" + type(e).__name__] += 1
        await asyncio.sleep(random.uniform(0.05, 0.3))

async def flood_room(wid):
    """Two talkers send events (~55 KB/s each, within their rate limits) into a room where four
    members never read (tiny rcvbuf): their reliable queues fill; at ~20 s two of them go away
    with a full queue (RST / FIN), the other two are left for the server (4501 expected)."""
    cycle = 0
    while time.time() < END - 50:
        cycle += 1; room = f"flood-{wid}-{cycle}"
        readers, talkers = [], []
        try:
            for t in range(2):
                talker = await WS.open(); await welcome(talker)
                talker.env(M(join=pb.JoinRoom(request_id=rid(), room=room, room_type="relay")))
                await talker.until(is_kind("joined"), 5); talkers.append(talker)
            for i in range(4):
                s = await WS.open(rcvbuf=4096); s.env(M(join=pb.JoinRoom(request_id=rid(), room=room, room_type="relay")))
                readers.append(s)  # never read again
            t0 = time.time(); t_end = t0 + 45; k = 0; aborted = False
            while time.time() < t_end:
                k += 1
                for t in talkers:
                    t.env(M(event=pb.SendEvent(room=room, kind="spam", payload=os.urandom(1800))), first_event_seq=k)
                await asyncio.gather(*[t.until(lambda m: False, 0.034) for t in talkers])
                if not aborted and time.time() - t0 > 20:
                    aborted = True; readers[0].abort(); readers[1].w.close(); stats["flood_abort_full"] += 2
            stats["flood_events"] += 2 * k
            for s in readers[2:]: s.abort()
            for t in talkers: await t.close()
        except Exception as e:
            stats["flood_exc_" + type(e).__name__] += 1
            for s in readers + talkers: s.abort()
        await asyncio.sleep(3)

async def main():
    tasks = [room_creator(i) for i in range(3)] + [quick_joiner(i) for i in range(2)] + \
            [odd_dropper(i) for i in range(3)] + [flood_room(0)]
    await asyncio.gather(*tasks)
    print(json.dumps({"stats": stats, "errors": errors, "closes_seen": closes}, indent=1, sort_keys=True))

asyncio.run(main())
