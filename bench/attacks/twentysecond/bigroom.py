"""Fills relay rooms with large state (as ../twentieth/slow_big.py did): M filler sessions
from ADDRS loopback addresses 127.0.23.x each create ENTS entities of 15 x FB random bytes
in each room (default 60 x 4 x 15 x 980 = 3.5 MB per room), then keep reading on a
background thread (so they are no slow consumers). CHURN=1: every filler also rewrites
one field of one of its entities every CHURN_MS ms, so the room sends a delta each tick."""
import os, sys, threading, time, select
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *


class Fillers:
    def __init__(self, rooms, m=60, ents=4, fb=980, addrs=4, churn=False, churn_ms=200, churn_b=64):
        self.conns, self.stop, self.errors = [], False, 0
        self.rooms, self.churn, self.churn_ms, self.churn_b = rooms, churn, churn_ms, churn_b
        t0 = time.time()
        for i in range(m):
            c = Conn(f"127.0.23.{i % addrs + 1}")
            c.recv_env()
            mids = {}
            for r, room in enumerate(rooms):
                c.send(join(room, r + 1, "relay"))
            end = time.time() + 10
            while len(mids) < len(rooms):
                e = c.recv_env(max(0.01, end - time.time()))
                if e is None:
                    raise RuntimeError(f"filler {i}: no Joined ({c.closed})")
                for m in e.messages:
                    if m.WhichOneof("kind") == "joined":
                        mids[m.joined.room] = m.joined.member_id
            c.mids, c.seq = mids, 0
            for room in rooms:
                for e in range(ents):
                    ent = pb.Entity(id=mids[room] * 1000 + e, kind=1,
                                    fields=[pb.Field(id=f + 1, bytes=os.urandom(fb)) for f in range(15)])
                    c.seq += 1
                    c.send(cm(input=pb.Input(room=room, seq=c.seq, writes=pb.EntityWrites(create=[ent]))))
            self.conns.append(c)
            self._drain_all(0)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        print(f"filled {rooms}: {len(self.conns)} x {ents} x 15 x {fb} B each in {time.time()-t0:.1f}s", flush=True)

    def _drain_all(self, timeout):
        live = [c for c in self.conns if not c.eof]
        if not live:
            return
        r, _, _ = select.select([c.s for c in live], [], [], timeout)
        for c in live:
            if c.s in r:
                c._fill(0)
                while True:
                    f = c._parse()
                    if f is None:
                        break
                    if f[0] == 9:
                        c.send_raw(frame(f[1], 10))
                    if f[0] == 8:
                        c.closed = True
                c.buf = c.buf[-(1 << 22):] if len(c.buf) > (1 << 22) else c.buf

    def _run(self):
        nxt = time.time()
        k = 0
        while not self.stop:
            self._drain_all(0.01)
            if self.churn and time.time() >= nxt:
                nxt += self.churn_ms / 1000
                c = self.conns[k % len(self.conns)]; k += 1
                for room in self.rooms:
                    c.seq += 1
                    try:
                        c.send(cm(input=pb.Input(room=room, seq=c.seq, writes=pb.EntityWrites(
                            update=[pb.EntityUpdate(id=c.mids[room] * 1000, fields=[pb.Field(id=k + 1, bytes=os.urandom(min(1000, self.churn_b))) for k in range(max(1, self.churn_b // 1000))])]))))
                    except OSError:
                        pass

    def close(self):
        self.stop = True
        self.thread.join(2)
        for c in self.conns:
            try:
                c.send_raw(frame(close_payload(1000), 8))
            except OSError:
                pass
            c.close()
