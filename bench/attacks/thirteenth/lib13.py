"""Thirteenth attack: helpers on top of the twelfth round's spec-only client (lib12).

Adds a timeline of everything a connection received, in order (numbered messages
with their numbers, state frames with room and tick), the HTTP API's room close, and
shorthands for shows and hides. Targets 127.0.0.1 only.
"""
import asyncio, os, sys, time, urllib.request, urllib.error
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'bench', 'attacks', 'twelfth'))
os.environ.setdefault('TR_GEN', os.path.join(ROOT, 'bench', 'attacks', 'gen'))
import websockets  # noqa: E402
import lib12  # noqa: E402
from lib12 import pb, E, U, errs, raw_states, Desync  # noqa: E402,F401

PORT = int(os.environ.get('PORT', 7813))
lib12.URL = 'ws://127.0.0.1:%d/ws' % PORT
API = 'http://127.0.0.1:%d' % PORT
API_TOKEN = os.environ.get('API_TOKEN', 'attack13-api-token-0123456789abcdef')


def api(method, path, body=None):
    """One HTTP API call on the relay (loopback only): (status, text)."""
    req = urllib.request.Request(API + path, data=body, method=method,
                                 headers={'Authorization': 'Bearer ' + API_TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def close_room(room, reason='closed by attack13'):
    from urllib.parse import quote
    return await asyncio.get_event_loop().run_in_executor(
        None, api, 'DELETE', '/rooms/%s?reason=%s' % (quote(room, safe=''), quote(reason)))


class C(lib12.C):
    """lib12's client, also keeping a timeline of what arrived, in order:
    ('num', seq, kind, room, msg) for numbered messages (repeats included, marked),
    ('state', room, tick, baseline) for state frames, ('welcome', resumed)."""

    def __init__(self, name, url=None):
        super().__init__(name, url or lib12.URL)
        self.timeline = []
        self.all_seqs = []     # every number received, repeats included, in order

    def _noted(self, entry):
        self.timeline.append(entry)

    def _numbered(self, seq, kind, m, repeat):
        room = getattr(getattr(m, kind), 'room', '') if kind else ''
        self.all_seqs.append(seq)
        self.timeline.append(('num', seq, kind, room, m, repeat))

    async def show(self, room, id_, member, **kw):
        return await self.write(room, show=[pb.Viewer(id=id_, member=member)], **kw)

    async def hide(self, room, id_, member, **kw):
        return await self.write(room, hide=[pb.Viewer(id=id_, member=member)], **kw)

    def lefts(self, room):
        return [x for x in self.timeline if x[0] == 'num' and x[2] == 'left' and x[3] == room and not x[5]]

    def sees(self, room):
        m = self.mirrors.get(room)
        return dict(m.ents) if m else {}

    def numbering_problems(self):
        """Gaps or numbers going back (other than repeats after a resume)."""
        out, last = [], 0
        for x in self.timeline:
            if x[0] != 'num':
                continue
            s = x[1]
            if x[5]:
                continue
            if last and s != last + 1:
                out.append(('gap', last, s))
            last = s
        return out

    def state_after_left(self, room):
        """State frames of `room` after its Left with no Joined of it in between."""
        out, gone = [], False
        for x in self.timeline:
            if x[0] == 'num' and x[3] == room and not x[5]:
                if x[2] == 'left': gone = True
                elif x[2] == 'joined': gone = False
            elif x[0] == 'state' and x[1] == room and gone:
                out.append(x)
        return out


def code(e):
    return pb.ErrorCode.Name(e.code).replace('ERROR_CODE_', '') if not isinstance(e, str) else e
