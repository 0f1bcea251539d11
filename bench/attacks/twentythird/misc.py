"""Attacks 3-5, one CASE at a time (CASE=name; each ends within ~30 s):

  stopsending  STOP_SENDING on the control stream (the relay may no longer write it), then
               acks and Pings by datagram, while a second member sends events to the room
  fin          the client finishes its side of the control stream and says nothing more
               (no close), still acking datagrams
  dgram_msgs   messages that belong on the stream sent as datagrams: Ping, JoinRoom, Input,
               SendEvent; then 200 inputs/s by datagram (rate limit)
  hello_big    a Hello whose token is 32 KiB - 64 B, 32 KiB + 1 B and 40 KiB (anonymous relay)
  hello_twice  a second Hello after the Welcome
  migrate      joins from 127.0.27.2, then moves the connection to 127.0.27.3 (and later to a new
               port on .3); checks the state keeps coming and inputs are still applied
  xport        resume across transports: QUIC -> wss -> QUIC ... (ROUNDS times), an input every
               30 ms throughout; checks every input is acknowledged and numbered messages have no
               gap or repeat
Prints what happened and the relay's log lines for the sessions involved."""
import asyncio, os, ssl, sys, time, re
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib23 import *

CASE = os.environ.get("CASE", "stopsending")
TAG = os.environ.get("TAG", CASE)
ROOM = f"{TAG}-room"


def log_for(session_ids):
    out = []
    for l in open(LOG, errors="replace"):
        for s in session_ids:
            if f"session={s} " in l:
                out.append(re.sub(r"^\S+\s+", "", l.strip())[:220])
    return out


async def joined(c, room, rid=1):
    fut = asyncio.get_event_loop().create_future()
    prev = c.on_msg

    def on(m, via):
        k = m.WhichOneof("kind")
        if k == "joined" and m.joined.room == room and not fut.done():
            fut.set_result(m.joined.member_id)
        elif k == "error" and not fut.done():
            fut.set_result(m.error)
        if prev:
            prev(m, via)
    c.on_msg = on
    c.send_env(join(room, rid))
    r = await asyncio.wait_for(fut, 10)
    c.on_msg = prev
    return r


class Track:
    """Acks state datagrams, records ticks, last_input_seq, numbered messages."""
    def __init__(self, c):
        self.frames = 0
        self.last_tick = 0
        self.last_input = 0
        self.kinds = {}
        self.c = c
        self.errors = []
        self.pongs = 0
        c.on_msg = self.on

    def on(self, m, via):
        k = m.WhichOneof("kind")
        self.kinds[(k, via)] = self.kinds.get((k, via), 0) + 1
        if k == "state":
            self.frames += 1
            self.last_tick = max(self.last_tick, m.state.tick)
            self.last_input = max(self.last_input, m.state.last_input_seq)
            if via == "dgram":
                try:
                    self.c.send_dgram(env(ack(m.state.room, m.state.tick)))
                except Exception:
                    pass
        elif k == "error":
            self.errors.append((m.error.code, m.error.message[:60]))
        elif k == "pong":
            self.pongs += 1
        elif k == "ping":
            try:
                self.c.send_env(cm(pong=pb.Pong()))
            except Exception:
                pass


async def case_stopsending():
    a = await session("127.0.27.1")
    w = await a.welcome
    ta = Track(a)
    await joined(a, ROOM)
    b = await session("127.0.27.2")
    tb = Track(b)
    await joined(b, ROOM)
    await asyncio.sleep(1)
    a._quic.stop_stream(a.sid, 0)
    a.transmit()
    t0 = time.time()
    print(f"[{TAG}] STOP_SENDING sent on the control stream of session {w.session_id}")
    k = 0
    while time.time() - t0 < 25 and a.closed is None:
        await asyncio.sleep(0.05)
        k += 1
        b.send_env(cm(event=pb.SendEvent(room=ROOM, kind="e", payload=os.urandom(900))))   # ~18/s, 16 KB/s
        if k % 10 == 0:
            a.send_dgram(env(cm(ping=pb.Ping(nonce=k, sent_time_us=0))))
    print(f"[{TAG}] attacker after {time.time()-t0:.1f}s: closed {a.closed}; frames {ta.frames}; kinds {ta.kinds}")
    print(f"[{TAG}] other member: closed {b.closed}, frames {tb.frames}, errors {tb.errors[:3]}")
    b.app_close(1000); a.app_close(1000)
    await asyncio.sleep(0.3)
    return [w.session_id]


async def case_fin():
    WAIT = float(os.environ.get("WAIT", "10"))
    b = await session("127.0.27.2")          # a watcher in the same room: presence of the other
    tb = Track(b)
    pres = []
    prev = b.on_msg

    def on(m, via):
        if m.WhichOneof("kind") == "presence":
            pres.append((round(time.time() - t_fin, 2) if t_fin else None, str(m.presence).replace("\n", " ")[:120]))
        prev(m, via)
    b.on_msg = on
    t_fin = None
    await joined(b, ROOM)
    a = await session("127.0.27.1")
    w = await a.welcome
    ta = Track(a)
    await joined(a, ROOM)
    await asyncio.sleep(1)
    f0 = ta.frames
    a.send_raw(b"", end=True)
    t_fin = t0 = time.time()
    while time.time() - t0 < WAIT and a.closed is None:
        await asyncio.sleep(0.05)
    print(f"[{TAG}] after FIN: closed {a.closed} at {time.time()-t0:.2f}s; state frames after the FIN {ta.frames - f0}; "
          f"quic connection still open: {a._quic._state}")
    print(f"[{TAG}] watcher's presence messages (s after FIN, message): {pres}")
    # the session should be kept for a resume: try one
    r = await open_conn("127.0.27.1")
    r.send_hello(resume_token=w.resume_token, received_seq=0)
    rw = await asyncio.wait_for(r.welcome, 5)
    await asyncio.sleep(0.5)
    print(f"[{TAG}] resume {time.time()-t0:.1f}s after the FIN: {('resumed' if rw and rw.resumed else rw) if rw is not None else r.closed}; old connection now: {a.closed}")
    r.app_close(1000); b.app_close(1000)
    await asyncio.sleep(0.3)
    return [w.session_id]


async def case_ackonly():
    """Control for fin: a client that never writes its stream after the join (no Pong to the
    server's heartbeat Ping) but acks every state datagram, for WAIT seconds."""
    WAIT = float(os.environ.get("WAIT", "45"))
    a = await session("127.0.27.1")
    w = await a.welcome
    ta = Track(a)
    await joined(a, ROOM)
    ta.c = a
    orig = a.send_env
    a.send_env = lambda *m: None       # Track's Pong is not sent
    t0 = time.time()
    while time.time() - t0 < WAIT and a.closed is None:
        await asyncio.sleep(0.05)
    print(f"[{TAG}] ack-only client: closed {a.closed} at {time.time()-t0:.2f}s; frames {ta.frames}; pings received {ta.kinds.get(('ping','stream'),0)}")
    a.app_close(1000)
    await asyncio.sleep(0.3)
    return [w.session_id]


async def case_streams():
    """A unidirectional stream, then a second bidirectional one, then a reset of the control
    stream, each on a fresh session that joined a room."""
    out = []
    for what in ("uni", "bidi2", "reset"):
        a = await session("127.0.27.1")
        w = await a.welcome
        Track(a)
        await joined(a, ROOM)
        try:
            if what == "reset":
                a._quic.reset_stream(a.sid, 7)
            else:
                sid = a._quic.get_next_available_stream_id(is_unidirectional=(what == "uni"))
                a._quic.send_stream_data(sid, frame(env(cm(ping=pb.Ping(nonce=1)))) * 100)
            a.transmit()
        except Exception as e:
            print(f"[{TAG}] {what}: client refused locally: {type(e).__name__} {e}")
        t0 = time.time()
        while time.time() - t0 < 3 and a.closed is None:
            await asyncio.sleep(0.05)
        print(f"[{TAG}] {what}: closed {a.closed} after {time.time()-t0:.2f}s")
        if not a.closed:
            a.app_close(1000)
        out.append(w.session_id)
    await asyncio.sleep(0.3)
    return out


async def case_dgram_msgs():
    a = await session("127.0.27.1")
    w = await a.welcome
    ta = Track(a)
    mid = await joined(a, ROOM)
    a.send_env(cm(input=pb.Input(room=ROOM, seq=1, writes=pb.EntityWrites(create=[pb.Entity(id=mid * 10, kind=1, fields=[pb.Field(id=1, int=0)])]))))
    await asyncio.sleep(0.5)
    a.send_dgram(env(cm(ping=pb.Ping(nonce=1, sent_time_us=1))))
    a.send_dgram(env(join(f"{ROOM}-2", 99)))
    a.send_dgram(env(cm(input=pb.Input(room=ROOM, seq=2, writes=pb.EntityWrites(update=[pb.EntityUpdate(id=mid * 10, fields=[pb.Field(id=1, int=2)])])))))
    a.send_dgram(env(cm(event=pb.SendEvent(room=ROOM, kind="d", payload=b"x"))))
    await asyncio.sleep(1)
    print(f"[{TAG}] after one each by datagram: pongs {ta.pongs}, last_input_seq {ta.last_input}, kinds {ta.kinds}, errors {ta.errors}")
    t0 = time.time()
    seq = 2
    while time.time() - t0 < 5 and a.closed is None:
        await asyncio.sleep(0.005)
        seq += 1
        a.send_dgram(env(cm(input=pb.Input(room=ROOM, seq=seq, writes=pb.EntityWrites(update=[pb.EntityUpdate(id=mid * 10, fields=[pb.Field(id=1, int=seq)])])))))
    print(f"[{TAG}] {seq-2} inputs by datagram in {time.time()-t0:.1f}s ({(seq-2)/(time.time()-t0):.0f}/s): closed {a.closed}, last_input_seq {ta.last_input}, errors {ta.errors[:4]} ({len(ta.errors)})")
    a.app_close(1000)
    await asyncio.sleep(0.3)
    return [w.session_id]


async def case_hello_big():
    for n in (32 * 1024 - 64, 32 * 1024 + 1, 40 * 1024):
        a = await open_conn("127.0.27.1", max_stream_data=1 << 20)
        a.send_raw(frame(pb.Hello(token="x" * n).SerializeToString()))
        try:
            w = await asyncio.wait_for(a.welcome, 5)
        except asyncio.TimeoutError:
            w = "timeout"
        await asyncio.sleep(0.3)
        print(f"[{TAG}] token {n} B: welcome {'yes, session %d' % w.session_id if hasattr(w, 'session_id') else w}; closed {a.closed}")
        a.app_close(1000)
    return []


async def case_hello_twice():
    a = await session("127.0.27.1")
    w = await a.welcome
    a.send_raw(frame(pb.Hello(token="", resume_token=w.resume_token).SerializeToString()))
    await asyncio.sleep(1.5)
    print(f"[{TAG}] second Hello: closed {a.closed}")
    a.app_close(1000)
    return [w.session_id]


class Fwd(asyncio.DatagramProtocol):
    def __init__(self, target):
        self.t = target

    def datagram_received(self, data, addr):
        self.t.datagram_received(data, addr)


async def rebind(c, src):
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((src, 0))
    tr, _ = await loop.create_datagram_endpoint(lambda: Fwd(c), sock=sock)
    old = c._transport
    c._transport = tr
    c._quic.change_connection_id()
    c._quic.send_ping(1)
    c.transmit()
    return old, sock.getsockname()


async def case_migrate():
    a = await session("127.0.27.2")
    w = await a.welcome
    ta = Track(a)
    mid = await joined(a, ROOM)
    seq = [0]

    async def inputs():
        while True:
            await asyncio.sleep(1 / 30)
            seq[0] += 1
            if seq[0] == 1:
                wr = pb.EntityWrites(create=[pb.Entity(id=mid * 10, kind=1, fields=[pb.Field(id=1, int=0)])])
            else:
                wr = pb.EntityWrites(update=[pb.EntityUpdate(id=mid * 10, fields=[pb.Field(id=1, int=seq[0])])])
            try:
                a.send_env(cm(input=pb.Input(room=ROOM, seq=seq[0], writes=wr)))
            except Exception:
                return
    it = asyncio.ensure_future(inputs())
    olds = []
    for step, src in enumerate(("127.0.27.3", "127.0.27.3", "127.0.27.4")):
        await asyncio.sleep(3)
        f0, i0 = ta.frames, ta.last_input
        old, name = await rebind(a, src)
        olds.append(old)
        await asyncio.sleep(3)
        print(f"[{TAG}] moved to {name}: frames in 3 s after {ta.frames - f0}, inputs acknowledged {i0} -> {ta.last_input} (sent {seq[0]}), closed {a.closed}, peer seen {a._quic._network_paths[0].addr if a._quic._network_paths else None}")
        old.close()
    it.cancel()
    print(f"[{TAG}] kinds {ta.kinds}, errors {ta.errors[:3]}")
    a.app_close(1000)
    await asyncio.sleep(0.3)
    return [w.session_id]


async def case_xport():
    import websockets
    ROUNDS = int(os.environ.get("ROUNDS", "10"))
    ctx = ssl.create_default_context(cafile=CERT)
    st = {"seq": 0, "acked": 0, "last_num": 0, "gaps": 0, "repeats": 0, "resumed": 0, "token": None, "sid": None}

    def numbered(first_seq, msgs):
        n = first_seq
        for m in msgs:
            k = m.WhichOneof("kind")
            if k in ("state", "welcome") or first_seq == 0:
                continue
            if n <= st["last_num"]:
                st["repeats"] += 1
            elif n != st["last_num"] + 1 and st["last_num"]:
                st["gaps"] += 1
            st["last_num"] = max(st["last_num"], n)
            n += 1
        for m in msgs:
            if m.WhichOneof("kind") == "state":
                st["acked"] = max(st["acked"], m.state.last_input_seq)

    def input_msg(mid):
        st["seq"] += 1
        if st["seq"] == 1:
            wr = pb.EntityWrites(create=[pb.Entity(id=mid * 10, kind=1, fields=[pb.Field(id=1, int=0)])])
        else:
            wr = pb.EntityWrites(update=[pb.EntityUpdate(id=mid * 10, fields=[pb.Field(id=1, int=st["seq"])])])
        return cm(input=pb.Input(room=ROOM, seq=st["seq"], writes=wr))

    class NumClient(Client):
        def _env(self, body, via):
            s = pb.ServerEnvelope()
            try:
                s.ParseFromString(body)
            except Exception:
                return
            numbered(s.first_seq, s.messages)
            for m in s.messages:
                if m.WhichOneof("kind") == "welcome" and not self.welcome.done():
                    self.welcome.set_result(m.welcome)
                if m.WhichOneof("kind") == "state" and via == "dgram":
                    self.send_dgram(env(ack(m.state.room, m.state.tick)))

    mid = None
    sent_log = []
    for r in range(ROUNDS):
        if r % 2 == 0:   # QUIC
            c = await open_conn("127.0.27.5", cls=NumClient)
            c.send_hello(resume_token=st["token"] or "", received_seq=st["last_num"])
            w = await asyncio.wait_for(c.welcome, 5)
            if w is None:
                print(f"[{TAG}] round {r} quic: no welcome, {c.closed}"); break
            st["resumed"] += bool(w.resumed)
            if st["token"] is None:
                st["token"], st["sid"] = w.resume_token, w.session_id
                fut = asyncio.get_event_loop().create_future()
                old = c._env

                def on(m, via):
                    if m.WhichOneof("kind") == "joined" and not fut.done():
                        fut.set_result(m.joined.member_id)
                c.on_msg = on
                # NumClient._env doesn't call on_msg: wrap
                def env2(body, via, old=old):
                    old(body, via)
                    s = pb.ServerEnvelope(); s.ParseFromString(body)
                    for m in s.messages:
                        on(m, via)
                c._env = env2
                c.send_env(join(ROOM, 1))
                mid = await asyncio.wait_for(fut, 5)
            # resend inputs above acked, then one every 30 ms for 1 s
            await asyncio.sleep(0.3)
            for s_ in range(st["acked"] + 1, st["seq"] + 1):
                pass
            t0 = time.time()
            while time.time() - t0 < 1.0:
                c.send_env(input_msg(mid))
                await asyncio.sleep(0.03)
            await asyncio.sleep(0.2)
            # drop without a close: stop the transport
            c._transport.close()
        else:            # wss
            url = f"wss://127.0.0.1:{PORT}/ws?resume={st['token']}&received={st['last_num']}"
            async with websockets.connect(url, ssl=ctx, max_size=1 << 24) as ws:
                t0 = time.time()
                welcomed = False
                async def reader():
                    nonlocal welcomed
                    async for msg in ws:
                        s = pb.ServerEnvelope(); s.ParseFromString(msg)
                        numbered(s.first_seq, s.messages)
                        for m in s.messages:
                            if m.WhichOneof("kind") == "welcome":
                                welcomed = True
                                st["resumed"] += bool(m.welcome.resumed)
                rt = asyncio.ensure_future(reader())
                await asyncio.sleep(0.3)
                while time.time() - t0 < 1.3:
                    await ws.send(env(input_msg(mid)))
                    await asyncio.sleep(0.03)
                await asyncio.sleep(0.2)
                rt.cancel()
                ws.transport.abort()   # drop without a close
        await asyncio.sleep(0.3)
    # final: resume over QUIC and wait for the snapshot's last_input_seq
    c = await open_conn("127.0.27.5", cls=NumClient)
    c.send_hello(resume_token=st["token"], received_seq=st["last_num"])
    w = await asyncio.wait_for(c.welcome, 5)
    await asyncio.sleep(2.5)
    print(f"[{TAG}] {ROUNDS} rounds QUIC<->wss: resumed {st['resumed']} of {ROUNDS}; final welcome resumed={getattr(w, 'resumed', None)}; "
          f"inputs sent {st['seq']}, highest acknowledged {st['acked']}; numbered messages: last {st['last_num']}, gaps {st['gaps']}, repeats {st['repeats']}")
    c.app_close(1000)
    await asyncio.sleep(0.3)
    return [st["sid"]]


async def main():
    sids = await globals()["case_" + CASE]()
    await asyncio.sleep(0.5)
    for l in log_for(sids)[-12:]:
        print("   log:", l)
    print(f"[{TAG}] panics in log: {panics()}")

asyncio.run(asyncio.wait_for(main(), 60))
