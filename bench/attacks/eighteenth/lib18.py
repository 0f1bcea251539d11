import asyncio, os, sys, time, json
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # procstat.py
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from tickrelay.v1 import tickrelay_pb2 as pb
import websockets
from procstat import cpu_secs, rss_kib

URL = os.environ.get("TR_URL", "ws://127.0.0.1:7851/ws")

def env(*msgs, fes=0):
    e = pb.ClientEnvelope(first_event_seq=fes)
    for m in msgs: e.messages.append(m)
    return e.SerializeToString()
def cm(**kw): return pb.ClientMessage(**kw)

class C:
    """A client with a background reader; msgs: list of (t, first_seq_index, ServerMessage)."""
    def __init__(self, name=""):
        self.name = name; self.msgs = []; self.closed = None; self.last_seq = 0; self.frames = 0
        self.events = []
    async def open(self, query="", url=None):
        u = (url or URL) + (("?" + query) if query else "")
        kw = {}
        if u.startswith("wss"):
            import ssl; ctx = ssl.create_default_context(cafile=os.environ.get("TR_CERT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "tickrelay-dev-cert.pem"))); ctx.check_hostname = False; kw["ssl"] = ctx
        self.ws = await websockets.connect(u, max_size=64 << 20, open_timeout=10, ping_interval=None, close_timeout=2, **kw)
        s = pb.ServerEnvelope(); s.ParseFromString(await self.ws.recv())
        self.welcome = s.messages[0].welcome
        self._handle(s)
        self.task = asyncio.create_task(self._read())
        return self
    async def _read(self):
        try:
            async for data in self.ws:
                s = pb.ServerEnvelope(); s.ParseFromString(data)
                self._handle(s)
        except Exception as e:
            pass
        self.closed = (self.ws.close_code, self.ws.close_reason)
    def _handle(self, s):
        n = s.first_seq
        for m in s.messages:
            k = m.WhichOneof("kind")
            if k not in ("state", "welcome") and n:
                self.last_seq = n; n += 1
            if k == "state": self.frames += 1
            if k == "event": self.events.append((time.time(), m.event))
            if k != "welcome": self.msgs.append((time.time(), k, m))
    async def send(self, *msgs, fes=0):
        await self.ws.send(env(*msgs, fes=fes))
    async def wait(self, pred, timeout=5.0, start=0):
        end = time.time() + timeout
        while time.time() < end:
            for t, k, m in self.msgs[start:]:
                if pred(k, m): return m
            if self.closed: break
            await asyncio.sleep(0.01)
        return None
    def of(self, kind): return [m for t, k, m in self.msgs if k == kind]
    async def join(self, room, rid=1, room_type="relay", **kw):
        i = len(self.msgs)
        await self.send(cm(join=pb.JoinRoom(request_id=rid, room=room, room_type=room_type, **kw)))
        return await self.wait(lambda k, m: (k == "joined" and m.joined.request_id == rid) or (k in ("error","redirect") and getattr(m, k).request_id == rid), start=i)
    async def close(self, code=1000):
        try: await self.ws.close(code)
        except Exception: pass
    def abort(self):
        try: self.ws.transport.abort()
        except Exception: pass

async def honest_quick_join(url, mode):
    """A client on `url` quick-joined to a relay room with metadata mode=`mode` (created
    there when none is open): the client and its room."""
    host = await C().open(url=url)
    await host.send(cm(quick_join=pb.QuickJoin(request_id=1, room_type="relay", filters={"mode": mode})))
    m = await host.wait(lambda k, m: k in ("joined", "error", "redirect"))
    print("honest room:", m.joined.room, m.WhichOneof("kind"))
    return host, m.joined.room

def procinfo(pid):
    return cpu_secs(pid), rss_kib(pid)
