"""Twelfth attack: a spec-only client for owner-only kinds (see README.md).

Every state frame is kept as its raw bytes and walked field by field (so a checksum
sent twice is seen as two), applied to a mirror written from docs/PROTOCOL.md
(packed blocks, apply rules, checksum), and checked: the LAST checksum must match the
mirror, and when a frame carries two, the FIRST must match the shared view (the
mirror without this member's owner-only entities).
"""
import asyncio, os, struct, sys, time
sys.path.insert(0, os.environ.get('TR_GEN', '/tmp/gen29'))
import websockets
from tickrelay.v1 import tickrelay_pb2 as pb

URL = os.environ.get('TR_URL', 'ws://127.0.0.1:7712/ws')
M = (1 << 64) - 1


# The eighth round's spec-only mirror (packed blocks, checksum), extended below.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'eighth'))
import mirror as eighth  # noqa: E402
from mirror import M, Desync, ehash, f32, varint  # noqa: E402,F401


# ---------------------------------------------------------------- raw protobuf walk
def walk(b):
    """Top-level fields of a protobuf message: [(field_no, wire_type, value)], value an
    int for varint/fixed, bytes for length-delimited."""
    out, i = [], 0
    while i < len(b):
        key, i = varint(b, i)
        no, wt = key >> 3, key & 7
        if wt == 0: v, i = varint(b, i)
        elif wt == 1: v = int.from_bytes(b[i:i + 8], 'little'); i += 8
        elif wt == 5: v = int.from_bytes(b[i:i + 4], 'little'); i += 4
        elif wt == 2:
            n, i = varint(b, i); v = b[i:i + n]; i += n
        else: raise ValueError('wire type %d' % wt)
        out.append((no, wt, v))
    return out


def raw_states(env_bytes):
    """Raw bytes of every StateFrame in a ServerEnvelope, in order."""
    res = []
    for no, wt, v in walk(env_bytes):
        if no == 1 and wt == 2:
            for no2, wt2, v2 in walk(v):
                if no2 == 5 and wt2 == 2:
                    res.append(v2)
    return res


# ---------------------------------------------------------------- mirror (PROTOCOL)
class Mirror(eighth.Mirror):
    """The eighth round's mirror, which also knows owner-only kinds, the member it
    mirrors for and whether it is in sync, and checks every checksum of a frame."""

    def __init__(self, schema, me):
        super().__init__(schema)
        self.owner_only = {k.kind for k in schema if k.owner_only}
        self.me = me
        self.synced = False
        self.checked = 0
        self.skipped = 0

    def checksum(self, shared_only=False):
        s = 0
        for i, e in self.ents.items():
            if shared_only and e[1] in self.owner_only:
                continue
            s += ehash(i, e[0], e[1], e[2])
        return s & M

    def apply(self, fr, checksums):
        """fr: parsed StateFrame; checksums: every checksum field in wire order."""
        if fr.baseline_tick == 0:
            self.ents = {}
            self.synced = True
        elif not self.synced:
            self.skipped += 1
            return "skipped (not synced)"
        elif fr.baseline_tick != self.tick:
            self.synced = False
            raise Desync("baseline %d != %d" % (fr.baseline_tick, self.tick))
        try:
            for r in fr.removed: self.ents.pop(r, None)
            for e in fr.added:
                self.ents[e.id] = [e.owner, e.kind, {f.id: self.fld(f) for f in e.fields}, {}]
            for u in fr.changed:
                if u.id not in self.ents: raise Desync("changed unknown %d" % u.id)
                for f in u.fields: self.ents[u.id][2][f.id] = self.fld(f)
            for blk in fr.packed:
                self.block(blk)
            self.tick = fr.tick
            if checksums:
                mine = self.checksum()
                if checksums[-1] != mine:
                    raise Desync("checksum mismatch at tick %d: last %x mirror %x (all %s)" % (
                        fr.tick, checksums[-1], mine, [hex(c) for c in checksums]))
                if len(checksums) > 1 and checksums[0] != self.checksum(shared_only=True):
                    raise Desync("first checksum is not the shared view's at tick %d" % fr.tick)
                if fr.checksum != checksums[-1]:
                    raise Desync("protobuf did not keep the last checksum")
                self.checked += 1
        except Desync:
            self.synced = False
            raise
        return 'ok'

    def values(self, b, i, fs, mask, ent, added):
        # A changed entity's codes of fields not sent since it was added whole
        # (recomputed from their values, for values relative to them).
        for f in fs if not added else ():
            if f.id in ent[2] and f.id not in ent[3] and self.ftype(f) in ("int", "float", "bool"):
                t, v = ent[2][f.id]
                ent[3][f.id] = (v - f.int_min) if t == "int" else (
                    round((v - f.float_min) / f.precision) if t == "float" else int(v))
        return super().values(b, i, fs, mask, ent, added)

    def block_ids(self, b):
        """(kind, [(id, owner)] added, [id] changed) of a packed block, decoded only
        for ids (values skipped by the declared types)."""
        i = 0
        kind, i = varint(b, i)
        fs = self.kinds.get(kind, [])
        na, i = varint(b, i); nc, i = varint(b, i)
        added, changed = [], []
        def skip(i, mask):
            for bit, f in enumerate(fs):
                if mask >> bit & 1:
                    n, i = varint(b, i)
                    if self.ftype(f) in ("bytes", "string"): i += n
            return i
        eid = 0
        for _ in range(na):
            st, i = varint(b, i); eid += st
            owner, i = varint(b, i); mask, i = varint(b, i)
            added.append((eid, owner)); i = skip(i, mask)
        eid = 0
        for _ in range(nc):
            st, i = varint(b, i); eid += st
            mask, i = varint(b, i)
            changed.append(eid); i = skip(i, mask)
        return kind, added, changed


# ---------------------------------------------------------------- client
class Frame:
    __slots__ = ('t', 'raw', 'fr', 'fields', 'checksums', 'room', 'env_len')


class C:
    def __init__(self, name, url=None):
        self.name = name
        self.url = url or URL
        self.frames = []      # Frame
        self.msgs = []        # (t, ServerMessage) other than state
        self.errors = []
        self.mirrors = {}     # room -> Mirror
        self.schema = {}      # room -> schema
        self.desyncs = []
        self.last_seq = 0
        self.closed = None
        self.rid = 1 << 53
        self.seq = {}
        self.waiters = {}
        self.bytes_in = 0
        self.pause = False

    async def connect(self, resume=None, received=None, extra=''):
        url = self.url
        q = []
        if resume:
            q.append('resume=' + resume)
            if received is not None:
                q.append('received=%d' % received)
        if extra:
            q.append(extra)
        if q:
            url += '?' + '&'.join(q)
        self.welcome = None
        self.closed = None
        self.ws = await websockets.connect(url, max_size=None, open_timeout=5)
        self.task = asyncio.create_task(self._recv())
        t0 = time.time()
        while self.welcome is None:
            await asyncio.sleep(0.005)
            if self.closed:
                raise RuntimeError('%s closed %r' % (self.name, self.closed))
            if time.time() - t0 > 5:
                raise RuntimeError('no welcome')
        self.id = self.welcome.session_id
        self.token = self.welcome.resume_token
        return self

    async def _recv(self):
        try:
            async for data in self.ws:
                while self.pause:
                    await asyncio.sleep(0.01)
                self._envelope(time.time(), data)
        except websockets.ConnectionClosed as e:
            self.closed = (e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None)
        except Exception as e:
            import traceback; traceback.print_exc()
            self.closed = ('exc', repr(e))
        else:
            self.closed = ('eof', None)

    def _envelope(self, t, data):
        """Takes one envelope received at `t`: state frames into the mirrors, numbered
        messages once each (repeats after a resume are skipped)."""
        self.bytes_in += len(data)
        env = pb.ServerEnvelope(); env.ParseFromString(data)
        raws = raw_states(data)
        ri = 0; n = 0
        for m in env.messages:
            k = m.WhichOneof('kind')
            if k == 'state':
                self._noted(('state', m.state.room, m.state.tick, m.state.baseline_tick))
                self._state(t, raws[ri], m.state, len(data)); ri += 1
                continue
            if k == 'welcome':
                self._noted(('welcome', m.welcome.resumed))
            else:
                s = env.first_seq + n; n += 1
                repeat = s <= self.last_seq
                self._numbered(s, k, m, repeat)
                if repeat:
                    continue
                self.last_seq = s
            self.msgs.append((t, m))
            if k == 'welcome': self.welcome = m.welcome
            elif k == 'joined':
                self.schema[m.joined.room] = list(m.joined.schema)
                self.mirrors[m.joined.room] = Mirror(m.joined.schema, self.id)
            elif k == 'error': self.errors.append(m.error)
            rid = {'joined': lambda: m.joined.request_id, 'response': lambda: m.response.request_id,
                   'error': lambda: m.error.request_id, 'left': lambda: m.left.request_id}.get(k, lambda: 0)()
            fut = self.waiters.pop(rid, None) if rid else None
            if fut and not fut.done():
                fut.set_result(m)

    def _noted(self, entry):
        """A state frame or welcome as it arrived (kept by lib13's timeline)."""

    def _numbered(self, seq, kind, m, repeat):
        """A numbered message as it arrived, repeats included (kept by lib13)."""

    def _state(self, t, raw, st, env_len):
        f = Frame()
        f.t, f.raw, f.fr, f.room, f.env_len = t, raw, st, st.room, env_len
        f.fields = walk(raw)
        f.checksums = [v for no, wt, v in f.fields if no == 7]
        self.frames.append(f)
        m = self.mirrors.get(st.room)
        if m is None:
            return
        try:
            m.apply(st, f.checksums)
        except Desync as e:
            self.desyncs.append((st.room, st.tick, str(e)))

    async def send(self, *msgs):
        await self.ws.send(pb.ClientEnvelope(messages=list(msgs)).SerializeToString())

    async def req(self, build, timeout=3):
        self.rid += 1
        rid = self.rid
        fut = asyncio.get_event_loop().create_future()
        self.waiters[rid] = fut
        await self.send(build(rid))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self.waiters.pop(rid, None)
            return None

    async def join(self, room, room_type='relay'):
        r = await self.req(lambda rid: pb.ClientMessage(join=pb.JoinRoom(request_id=rid, room=room, room_type=room_type)))
        await self.wait_synced(room)
        return r

    async def wait_synced(self, room, timeout=3):
        t0 = time.time()
        while time.time() - t0 < timeout:
            m = self.mirrors.get(room)
            if m and m.synced and m.tick:
                return True
            await asyncio.sleep(0.01)
        return False

    async def leave(self, room):
        return await self.req(lambda rid: pb.ClientMessage(leave=pb.LeaveRoom(request_id=rid, room=room)))

    async def resync(self, room):
        return await self.req(lambda rid: pb.ClientMessage(request=pb.Request(request_id=rid, resync=pb.Resync(room=room))))

    async def list_rooms(self, **kw):
        return await self.req(lambda rid: pb.ClientMessage(request=pb.Request(request_id=rid, list_rooms=pb.ListRooms(**kw))))

    async def update_room(self, room, owner=0):
        return await self.req(lambda rid: pb.ClientMessage(request=pb.Request(
            request_id=rid, update_room=pb.UpdateRoom(room=room, owner=owner))))

    async def write(self, room, wait=True, **w):
        """One input of EntityWrites(**w); returns (seq, [errors for it])."""
        seq = self.seq.get(room, 0) + 1
        self.seq[room] = seq
        n = len(self.errors)
        await self.send(pb.ClientMessage(input=pb.Input(room=room, seq=seq, writes=pb.EntityWrites(**w))))
        if not wait:
            return seq, []
        t0 = time.time()
        while time.time() - t0 < 2:
            m = self.mirrors.get(room)
            errs = [e for e in self.errors[n:] if e.request_id == seq]
            if errs:
                return seq, errs
            if m and m.synced and self.last_input(room) >= seq:
                await asyncio.sleep(0.06)  # an Error comes in the same tick's envelope or the next
                return seq, [e for e in self.errors[n:] if e.request_id == seq]
            await asyncio.sleep(0.005)
        return seq, ['timeout']

    def last_input(self, room):
        fs = [f for f in self.frames if f.room == room]
        return fs[-1].fr.last_input_seq if fs else 0

    def hidden_kinds(self, room):
        return {k.kind for k in self.schema.get(room, []) if k.owner_only}

    def leaks(self, room, victim_ids=()):
        """What this member received of others' owner-only entities: entities in its
        mirror, ids in added/changed/removed/packed, across every frame."""
        hk = self.hidden_kinds(room)
        m = self.mirrors.get(room)
        out = []
        for i, e in (m.ents.items() if m else []):
            if e[1] in hk and e[0] != self.id:
                out.append(('mirror holds', i, e[0], e[1]))
        vs = set(victim_ids)
        for f in self.frames:
            if f.room != room: continue
            for e in f.fr.added:
                if e.id in vs or (e.kind in hk and e.owner != self.id):
                    out.append(('added', f.fr.tick, e.id, e.owner, e.kind))
            for u in f.fr.changed:
                if u.id in vs: out.append(('changed', f.fr.tick, u.id))
            for r in f.fr.removed:
                if r in vs: out.append(('removed', f.fr.tick, r))
            for b in f.fr.packed:
                kind, added, changed = m.block_ids(b) if m else (None, [], [])
                for (i, o) in added:
                    if i in vs or (kind in hk and o != self.id):
                        out.append(('packed added', f.fr.tick, kind, i, o))
                for i in changed:
                    if i in vs: out.append(('packed changed', f.fr.tick, kind, i))
        return out

    async def close(self, code=1000):
        try:
            await self.ws.close(code)
        except Exception:
            pass

    async def drop(self):
        """Lose the connection without a close frame (to resume)."""
        self.ws.transport.abort()
        await asyncio.sleep(0.05)


def E(i, kind, **fields):
    """An Entity: fields given as f1=('int', 5) etc."""
    fs = []
    for k, (t, v) in fields.items():
        fs.append(pb.Field(id=int(k[1:]), **{t: v}))
    return pb.Entity(id=i, kind=kind, fields=fs)


def U(i, **fields):
    fs = [pb.Field(id=int(k[1:]), **{t: v}) for k, (t, v) in fields.items()]
    return pb.EntityUpdate(id=i, fields=fs)


def errs(es):
    return [(pb.ErrorCode.Name(e.code), e.message) if not isinstance(e, str) else e for e in es]
