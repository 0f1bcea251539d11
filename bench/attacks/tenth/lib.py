"""A small protocol client for the tenth attack's scripts (see README.md)."""
import asyncio, os, sys, time, json, urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'gen'))
import websockets
from tickrelay.v1 import tickrelay_pb2 as pb  # generated: see ../eighth/README.md

# The relay: `../eighth/start.sh PORT --api-token TOKEN`, then TR_URL and TR_TOKEN.
URL = os.environ.get('TR_URL', 'ws://127.0.0.1:7645/ws')
API = URL.replace('ws://', 'http://').rsplit('/ws', 1)[0]
TOKEN = os.environ.get('TR_TOKEN', 'attack-api-token')


def api_get(path):
    req = urllib.request.Request(API + path, headers={'Authorization': 'Bearer ' + TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(name):
    with urllib.request.urlopen(API + '/metrics', timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + ' ') or line.startswith(name + '{'):
                return line


class C:
    def __init__(self, name):
        self.name = name
        self.msgs = []  # (time, ServerMessage)
        self.bytes = 0
        self.nmsgs = 0
        self.entities = {}  # room -> {id: owner}
        self.owner = {}  # room -> believed owner
        self.last_seq = 0
        self.errors = []
        self.presence = []
        self.closed = None
        self.seq = {}
        self.rid = 0
        self.waiters = {}

    async def connect(self, resume=None, received=None):
        url = URL
        if resume:
            url += '?resume=' + resume
            if received is not None:
                url += '&received=%d' % received
        self.ws = await websockets.connect(url, max_size=None)
        self.task = asyncio.create_task(self._recv())
        while not hasattr(self, 'welcome') or (resume and not self.welcome.resumed):
            await asyncio.sleep(0.01)
            if self.closed:
                raise RuntimeError('closed %r' % (self.closed,))
        self.id = self.welcome.session_id
        return self

    async def _recv(self):
        try:
            async for data in self.ws:
                self.bytes += len(data)
                env = pb.ServerEnvelope()
                env.ParseFromString(data)
                n = 0
                for m in env.messages:
                    self.nmsgs += 1
                    k = m.WhichOneof('kind')
                    if k not in ('state', 'welcome'):
                        s = env.first_seq + n
                        n += 1
                        if s <= self.last_seq:
                            continue
                        self.last_seq = s
                    self.msgs.append((time.time(), m))
                    if k == 'welcome':
                        self.welcome = m.welcome
                    elif k == 'joined':
                        self.owner[m.joined.room] = m.joined.owner
                    elif k == 'presence':
                        p = m.presence
                        self.presence.append((time.time(), p.room, p.member.member_id, p.change))
                        if p.change == pb.PRESENCE_CHANGE_OWNER:
                            self.owner[p.room] = p.member.member_id
                    elif k == 'state':
                        st = m.state
                        d = self.entities.setdefault(st.room, {})
                        if st.baseline_tick == 0:
                            d.clear()
                        for r in st.removed:
                            d.pop(r, None)
                        for e in st.added:
                            d[e.id] = e.owner
                    elif k == 'error':
                        self.errors.append(m.error)
                    elif k == 'response':
                        pass
                    rid = None
                    if k == 'joined': rid = m.joined.request_id
                    elif k == 'response': rid = m.response.request_id
                    elif k == 'error': rid = m.error.request_id
                    elif k == 'left': rid = m.left.request_id
                    if rid and rid in self.waiters and k != 'error' or (k == 'error' and rid in self.waiters and m.error.code != 0):
                        fut = self.waiters.pop(rid, None)
                        if fut and not fut.done():
                            fut.set_result(m)
        except websockets.ConnectionClosed as e:
            self.closed = (e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None)
        except Exception as e:
            self.closed = ('exc', repr(e))
        else:
            self.closed = ('eof', None)

    async def send(self, *msgs, first_event_seq=0):
        env = pb.ClientEnvelope(messages=list(msgs), first_event_seq=first_event_seq)
        await self.ws.send(env.SerializeToString())

    def next_rid(self):
        self.rid += 1
        return self.rid

    async def req(self, msg_builder, timeout=3):
        rid = self.next_rid()
        fut = asyncio.get_event_loop().create_future()
        self.waiters[rid] = fut
        await self.send(msg_builder(rid))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return None

    async def join(self, room, room_type=''):
        return await self.req(lambda rid: pb.ClientMessage(join=pb.JoinRoom(request_id=rid, room=room, room_type=room_type)))

    async def leave(self, room):
        return await self.req(lambda rid: pb.ClientMessage(leave=pb.LeaveRoom(request_id=rid, room=room)))

    async def update_room(self, room, owner=0, metadata=None, lock=0, wait=True):
        f = lambda rid: pb.ClientMessage(request=pb.Request(request_id=rid, update_room=pb.UpdateRoom(room=room, owner=owner, metadata=metadata or {}, lock=lock)))
        if wait:
            return await self.req(f)
        await self.send(f(self.next_rid()))

    def upd_msg(self, room, owner):
        return pb.ClientMessage(request=pb.Request(request_id=self.next_rid(), update_room=pb.UpdateRoom(room=room, owner=owner)))

    def input_msg(self, room, create=(), create_for_room=(), update=(), remove=(), give=(), seq=None):
        if seq is None:
            seq = self.seq.get(room, 0) + 1
        self.seq[room] = max(seq, self.seq.get(room, 0))
        w = pb.EntityWrites(
            create=[pb.Entity(id=i, kind=1, fields=[pb.Field(id=1, int=0)]) for i in create],
            create_for_room=[pb.Entity(id=i, kind=1, fields=[pb.Field(id=1, int=0)]) for i in create_for_room],
            update=[pb.EntityUpdate(id=i, fields=[pb.Field(id=1, int=v)]) for (i, v) in update],
            remove=list(remove),
            give=[pb.Give(id=i, to=t) for (i, t) in give])
        return pb.ClientMessage(input=pb.Input(room=room, seq=seq, writes=w))

    async def inp(self, room, **kw):
        m = self.input_msg(room, **kw)
        await self.send(m)
        return m.input.seq

    def errs_for(self, seq):
        return [e for e in self.errors if e.request_id == seq]

    def errstr(self, errs=None):
        errs = self.errors if errs is None else errs
        return [(pb.ErrorCode.Name(e.code), e.request_id, e.message[:80]) for e in errs]

    async def close(self, code=1000):
        try:
            await self.ws.close(code)
        except Exception:
            pass


# --- added for re-run: health, bytes_out, RATE_LIMITED accounting ---
def healthz():
    try:
        with urllib.request.urlopen(API + '/healthz', timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return repr(e)


def bytes_out():
    l = metric('tickrelay_bytes_out_total')
    return float(l.split()[-1]) if l else None


def rl_summary(*cs):
    rl = [e for c in cs for e in c.errors if e.code == pb.ERROR_CODE_RATE_LIMITED]
    other = [e for c in cs for e in c.errors if e.code != pb.ERROR_CODE_RATE_LIMITED]
    ra = sorted(set(e.retry_after_ms for e in rl))
    return 'RATE_LIMITED=%d (retry_after_ms distinct: %s; msg: %r) other_errors=%d %s' % (
        len(rl), ra[:6] + (['...', ra[-1]] if len(ra) > 6 else []), rl[0].message[:90] if rl else None,
        len(other), [(pb.ErrorCode.Name(e.code), e.message[:60]) for e in other[:3]])


# What the scripts share: a big entity (NF fields of 1,000 bytes), and a ping's round
# trip in ms on client x.
NF = 15


def big(i):
    return pb.Entity(id=i, kind=7, fields=[pb.Field(id=f, bytes=bytes([f]) * 1000) for f in range(1, NF + 1)])


async def rtt(x):
    t = time.time(); n = len(x.msgs)
    await x.send(pb.ClientMessage(ping=pb.Ping(nonce=1)))
    while not any(m.WhichOneof('kind') == 'pong' for _, m in x.msgs[n:]):
        await asyncio.sleep(0.001)
    return round((time.time() - t) * 1000, 1)
