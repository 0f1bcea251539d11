"""Round 25 helpers: asyncio WebSocket client (ws://, loopback only) over the `websockets` library."""
import asyncio, os, sys, time, random
sys.path.insert(0, os.environ.get("TR_GEN", "/tmp/h25/gen"))
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa
from websockets.asyncio.client import connect

PORT = int(os.environ.get("PORT", "7925"))


def lo(a):
    assert a.startswith("127."), a
    return a


def env(*msgs, fes=0):
    e = pb.ClientEnvelope(first_event_seq=fes)
    for m in msgs:
        e.messages.append(m)
    return e.SerializeToString()


def cm(**kw):
    return pb.ClientMessage(**kw)


def join(room, rid, room_type="relay", **kw):
    return cm(join=pb.JoinRoom(request_id=rid, room=room, room_type=room_type, **kw))


def leave(room, rid):
    return cm(leave=pb.LeaveRoom(request_id=rid, room=room))


class Client:
    def __init__(self):
        self.ws = None
        self.welcome = None
        self.last_seq = 0
        self.msgs = asyncio.Queue()
        self.closed = None
        self.kinds = {}
        self.task = None

    @classmethod
    async def open(cls, src="127.0.0.1", query="", headers=None, timeout=10):
        c = cls()
        q = ("?" + query) if query else ""
        c.ws = await asyncio.wait_for(connect(f"ws://127.0.0.1:{PORT}/ws{q}", local_addr=(lo(src), 0),
                                              max_size=16 << 20, ping_interval=None, open_timeout=timeout,
                                              additional_headers=headers, close_timeout=2), timeout)
        c.task = asyncio.ensure_future(c._read())
        return c

    async def _read(self):
        try:
            async for data in self.ws:
                if isinstance(data, str):
                    continue
                e = pb.ServerEnvelope()
                e.ParseFromString(data)
                n = 0
                for m in e.messages:
                    k = m.WhichOneof("kind")
                    self.kinds[k] = self.kinds.get(k, 0) + 1
                    if k not in ("state", "welcome", "ping", "pong"):
                        n += 1
                    if k == "welcome":
                        self.welcome = m.welcome
                    if k != "state":
                        self.msgs.put_nowait(m)
                if e.first_seq and n:
                    self.last_seq = e.first_seq + n - 1
        except Exception:
            pass
        finally:
            rc = self.ws.close_code if self.ws else None
            self.closed = (rc, self.ws.close_reason if self.ws else None)
            self.msgs.put_nowait(None)

    async def wait(self, pred, timeout=5.0):
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                return None
            try:
                m = await asyncio.wait_for(self.msgs.get(), left)
            except asyncio.TimeoutError:
                return None
            if m is None:
                self.msgs.put_nowait(None)
                return None
            if pred(m):
                return m

    async def wait_kind(self, kind, timeout=5.0, rid=None):
        def p(m):
            if m.WhichOneof("kind") != kind:
                return False
            if rid is None:
                return True
            return getattr(getattr(m, kind), "request_id", None) == rid
        return await self.wait(p, timeout)

    async def answer(self, rid, timeout=5.0):
        """joined / left / error / response / token_refreshed carrying request_id rid."""
        def p(m):
            k = m.WhichOneof("kind")
            return k in ("joined", "left", "error", "response", "token_refreshed") and getattr(m, k).request_id == rid
        return await self.wait(p, timeout)

    async def send(self, *msgs, fes=0):
        await self.ws.send(env(*msgs, fes=fes))

    async def welcome_(self, timeout=5.0):
        m = await self.wait_kind("welcome", timeout)
        return m.welcome if m is not None else None

    def drop(self):
        """Ends the TCP connection without a close frame (the server sees it lost)."""
        try:
            self.ws.transport.abort()
        except Exception:
            pass

    async def close(self, code=1000):
        try:
            await asyncio.wait_for(self.ws.close(code), 3)
        except Exception:
            self.drop()
        if self.task:
            self.task.cancel()
