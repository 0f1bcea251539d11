"""Attack 11 helpers: protobuf client over ws:// for a 3-node cluster (loopback only)."""
import asyncio, os, sys, time, json, hmac, hashlib, base64, subprocess, urllib.request, urllib.parse
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'gen'))
import websockets
from tickrelay.v1 import tickrelay_pb2 as pb

SECRET = b'attack11-secret-0123456789abcdef0123456789'
API_TOKEN = 'attack11-api-token-0123456789abcdef'
PORTS = [7811, 7812, 7813]


def url(i):
    return 'ws://127.0.0.1:%d/ws' % PORTS[i]


def http(i):
    return 'http://127.0.0.1:%d' % PORTS[i]


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b'=').decode()


def jwt(sub, ttl=3600, rooms=None, **extra):
    h = b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())
    now = int(time.time())
    c = {'sub': sub, 'exp': now + ttl, 'iat': now}
    if rooms is not None:
        c['rooms'] = rooms
    c.update(extra)
    p = b64(json.dumps(c).encode())
    s = b64(hmac.new(SECRET, (h + '.' + p).encode(), hashlib.sha256).digest())
    return h + '.' + p + '.' + s


def api(i, method, path, body=None, token=API_TOKEN, timeout=5, follow=False):
    req = urllib.request.Request(http(i) + path, data=body, method=method,
                                 headers={'Authorization': 'Bearer ' + token} if token else {})
    class NoRedir(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(NoRedir)
    try:
        with opener.open(req, timeout=timeout) as r:
            data = r.read().decode()
            return r.status, data, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors='replace'), dict(e.headers)


def metric(i, name, metrics_port=True):
    port = 7910 + i + 1 if metrics_port else PORTS[i]
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
        out = []
        for line in r.read().decode().splitlines():
            if line.startswith(name):
                out.append(line)
        return out


def pid(i):
    return int(open(os.environ.get('RUN', '/tmp/tickrelay-attack11') + '/node%d.pid' % (i + 1)).read())


def rss_kib(p):
    for line in open('/proc/%d/status' % p):
        if line.startswith('VmRSS'):
            return int(line.split()[1])


def cpu_secs(p):
    f = open('/proc/%d/stat' % p).read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')


def redis(*args):
    out = subprocess.run(['redis-cli', '-h', '127.0.0.1', '-p', '6411', *map(str, args)], capture_output=True, timeout=30)
    return out.stdout.decode(errors='replace').strip()


class C:
    def __init__(self, name='c', node=0, sub=None, token=None, u=None, quiet=False):
        self.name = name
        self.node = node
        self.u = u or url(node)
        self.token = token if token is not None else (jwt(sub or name) if sub is not False else None)
        self.msgs = []
        self.last_seq = 0
        self.errors = []
        self.closed = None
        self.seq = {}
        self.rid = 0
        self.waiters = {}
        self.welcome = None
        self.quiet = quiet
        self.entities = {}
        self.state_ticks = {}
        self.lis = {}
        self.dups = 0

    async def connect(self, resume=None, received=None, client=None, extra='', wait_welcome=True):
        q = []
        if self.token:
            q.append('token=' + self.token)
        if resume:
            q.append('resume=' + urllib.parse.quote(resume, safe=''))
            if received is not None:
                q.append('received=%d' % received)
        if client:
            q.append('client=' + client)
        u = self.u + ('?' + '&'.join(q) if q else '') + extra
        self.ws = await websockets.connect(u, max_size=None, ping_interval=None, open_timeout=10)
        self.task = asyncio.create_task(self._recv())
        if wait_welcome:
            t0 = time.time()
            while self.welcome is None:
                await asyncio.sleep(0.005)
                if self.closed:
                    raise RuntimeError('%s closed before welcome %r' % (self.name, self.closed))
                if time.time() - t0 > 10:
                    raise RuntimeError('no welcome')
            self.id = self.welcome.session_id
        return self

    async def _recv(self):
        try:
            async for data in self.ws:
                env = pb.ServerEnvelope()
                env.ParseFromString(data)
                n = 0
                for m in env.messages:
                    k = m.WhichOneof('kind')
                    if k not in ('state', 'welcome'):
                        s = env.first_seq + n
                        n += 1
                        if s <= self.last_seq:
                            self.dups += 1
                            continue
                        self.last_seq = s
                    self.msgs.append((time.time(), m))
                    if k == 'welcome':
                        self.welcome = m.welcome
                    elif k == 'error':
                        self.errors.append(m.error)
                    elif k == 'state':
                        st = m.state
                        self.lis[st.room] = st.last_input_seq
                        d = self.entities.setdefault(st.room, {})
                        if st.baseline_tick == 0:
                            d.clear()
                        for r in st.removed:
                            d.pop(r, None)
                        for e in st.added:
                            d[e.id] = e
                    rid = None
                    if k == 'joined': rid = m.joined.request_id
                    elif k == 'response': rid = m.response.request_id
                    elif k == 'error': rid = m.error.request_id
                    elif k == 'left': rid = m.left.request_id
                    elif k == 'redirect': rid = m.redirect.request_id
                    if rid and rid in self.waiters:
                        fut = self.waiters.pop(rid)
                        if not fut.done():
                            fut.set_result(m)
        except websockets.ConnectionClosed as e:
            self.closed = (e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None)
        except Exception as e:
            self.closed = ('exc', repr(e))
        else:
            self.closed = (self.ws.close_code, self.ws.close_reason)

    def kinds(self, kind):
        return [m for _, m in self.msgs if m.WhichOneof('kind') == kind]

    async def send(self, *msgs, first_event_seq=0):
        env = pb.ClientEnvelope(messages=list(msgs), first_event_seq=first_event_seq)
        await self.ws.send(env.SerializeToString())

    def next_rid(self):
        self.rid += 1
        return self.rid

    async def req(self, builder, timeout=5):
        rid = self.next_rid()
        fut = asyncio.get_event_loop().create_future()
        self.waiters[rid] = fut
        await self.send(builder(rid))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return None

    async def join(self, room, room_type='relay', seat='', metadata=None, private=False, timeout=5):
        def b(rid):
            j = pb.JoinRoom(request_id=rid, room=room, room_type=room_type, seat=seat)
            if metadata or private:
                j.create.CopyFrom(pb.RoomOptions(metadata=metadata or {}, private=private))
            return pb.ClientMessage(join=j)
        return await self.req(b, timeout)

    async def quick(self, room_type='relay', filters=None, metadata=None, exclude=(), timeout=5):
        def b(rid):
            q = pb.QuickJoin(request_id=rid, room_type=room_type, filters=filters or {}, exclude=list(exclude))
            if metadata:
                q.create.CopyFrom(pb.RoomOptions(metadata=metadata))
            return pb.ClientMessage(quick_join=q)
        return await self.req(b, timeout)

    async def list(self, after='', limit=0, room_type='', filters=None, open_only=False):
        return await self.req(lambda rid: pb.ClientMessage(request=pb.Request(request_id=rid, list_rooms=pb.ListRooms(
            after=after, limit=limit, room_type=room_type, filters=filters or {}, open_only=open_only))))

    async def update(self, room, metadata=None, lock=0, owner=0):
        return await self.req(lambda rid: pb.ClientMessage(request=pb.Request(request_id=rid, update_room=pb.UpdateRoom(
            room=room, metadata=metadata or {}, lock=lock, owner=owner))))

    async def leave(self, room):
        return await self.req(lambda rid: pb.ClientMessage(leave=pb.LeaveRoom(request_id=rid, room=room)))

    def input_msg(self, room, create=(), update=(), remove=(), seq=None):
        if seq is None:
            seq = self.seq.get(room, 0) + 1
        self.seq[room] = max(seq, self.seq.get(room, 0))
        w = pb.EntityWrites(
            create=[pb.Entity(id=i, kind=1, fields=[pb.Field(id=1, int=0)]) for i in create],
            update=[pb.EntityUpdate(id=i, fields=[pb.Field(id=1, int=v)]) for (i, v) in update],
            remove=list(remove))
        return pb.ClientMessage(input=pb.Input(room=room, seq=seq, writes=w))

    async def inp(self, room, **kw):
        m = self.input_msg(room, **kw)
        await self.send(m)
        return m.input.seq

    async def event(self, room, kind='k', payload=b'', targets=(), first_event_seq=0):
        await self.send(pb.ClientMessage(event=pb.SendEvent(room=room, kind=kind, payload=payload, targets=list(targets))),
                        first_event_seq=first_event_seq)

    async def ping(self, timeout=5):
        t = time.time(); n = len(self.msgs)
        nonce = int(t * 1e6)
        await self.send(pb.ClientMessage(ping=pb.Ping(nonce=nonce, received_seq=self.last_seq)))
        while not any(m.WhichOneof('kind') == 'pong' and m.pong.nonce == nonce for _, m in self.msgs[n:]):
            await asyncio.sleep(0.001)
            if time.time() - t > timeout:
                return None
        return round((time.time() - t) * 1000, 2)

    async def close(self, code=1000):
        try:
            await self.ws.close(code)
        except Exception:
            pass

    def errstr(self, errs=None):
        errs = self.errors if errs is None else errs
        return [(pb.ErrorCode.Name(e.code), e.request_id, e.room, e.message[:100]) for e in errs]


def desc(m):
    if m is None:
        return None
    k = m.WhichOneof('kind')
    v = getattr(m, k)
    if k == 'joined':
        return 'joined %s member=%d members=%d lis=%d owner=%d' % (v.room, v.member_id, len(v.members), v.last_input_seq, v.owner)
    if k == 'error':
        return 'error %s %s rid=%d retry=%d' % (pb.ErrorCode.Name(v.code), v.message[:120], v.request_id, v.retry_after_ms)
    if k == 'redirect':
        return 'redirect %s -> %s seat=%s' % (v.room, v.url, v.seat[:20] + '...')
    return '%s %s' % (k, str(v).replace('\n', ' ')[:200])
