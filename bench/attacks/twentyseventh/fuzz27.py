"""Mutation fuzzing over real sockets (ws://, wss:// or QUIC: TRANSPORT=ws|quic, TLS=1 for
wss and QUIC). CONNS sessions at a time; each opens (half of them join 1-3 rooms first,
the rest go straight on: messages in the wrong session state), then sends MSGS envelopes at
RATE a second: valid seed messages, seeds with mutated fields (extreme numbers, unknown
enums, long and control-character strings, repeated fields, messages for rooms not joined,
acks of ticks never sent, other sessions' resume tokens) or mutated bytes (bit flips,
truncation, inserted garbage, unknown and wrong-wire-type fields). Every BATCH seconds it
checks /healthz, RSS, the relay log for panics, /metrics closes by code. Honest bots
(BOTS args) play their own rooms for the whole run. Prints what came back: Error codes,
close codes and reasons; flags any close code outside PROTOCOL.md's table, any server
message that did not decode, and "silent" envelopes (no answer at all and no close) by
their seed kind for review. Bounded: SECS (default 120) + 60 s. Loopback only."""
import asyncio, os, random, sys, time, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib27 import *  # noqa

SECS = float(os.environ.get("SECS", "120"))
CONNS = int(os.environ.get("CONNS", "24"))
MSGS = int(os.environ.get("MSGS", "60"))
RATE = float(os.environ.get("RATE", "20"))
BATCH = float(os.environ.get("BATCH", "20"))
TRANSPORT = os.environ.get("TRANSPORT", "ws")
SEED = int(os.environ.get("SEED", str(int(time.time()))))
BOTS = os.environ.get("BOTS", "--rooms 2 --members 6 --room-type arena")
BOTS_RELAY = os.environ.get("BOTS_RELAY", "--rooms 1 --members 4 --room-type relay")
DOC_CLOSES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 4000, 4001, 4002, 4003, 4500, 4501, 4502,
              4503, 4504}
rnd = random.Random(SEED)
U64 = [0, 1, 2, 31, 32, 33, 127, 128, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1,
       2**63, 2**64 - 1]
I64 = [0, 1, -1, 2**31 - 1, -2**31, 2**53, -2**53, 2**63 - 1, -2**63]
ROOMS = ["fz-a", "fz-b", "fz-c", "honest-x", "", "a" * 128, "a" * 129, "x\x00y", "r\ny", "é" * 64, "lobby"]
TYPES = ["relay", "arena", "", "nope", "r" * 65, "relay\x01"]
tokens = []     # resume tokens other sessions got
stats = collections.Counter()
errors = collections.Counter()
closes = collections.Counter()
silent = collections.Counter()
odd = []
RID = 10**6
unanswered = collections.Counter()
asked = collections.Counter()
REQ_KINDS = ("join", "quick", "leave", "list", "resync", "update", "refresh")


def pick(xs):
    return rnd.choice(xs)


def rstr():
    r = rnd.random()
    if r < 0.5:
        return pick(ROOMS)
    if r < 0.7:
        return "".join(chr(rnd.randrange(0, 0x250)) for _ in range(rnd.randrange(0, 40)))
    if r < 0.85:
        return "k" * rnd.choice([255, 256, 257, 1024, 4000] + ([15000] if rnd.random() < 0.1 else []))
    return "\u202e\ufeff" * rnd.randrange(1, 50)


def rfield(i=None):
    f = pb.Field(id=i if i is not None else pick([0, 1, 2, 31, 32, 33, 2**32 - 1]))
    t = rnd.randrange(6)
    if t == 0:
        f.int = pick(I64)
    elif t == 1:
        f.float = pick([0.0, -0.0, 1e38, -1e38, float("inf"), float("nan"), 1e-45])
    elif t == 2:
        f.bool = True
    elif t == 3:
        f.bytes = b"\xff" * pick([0, 1, 1023, 1024, 1025])
    elif t == 4:
        f.string = rstr()
    # t == 5: a field without a value
    return f


def rentity():
    return pb.Entity(id=pick(U64 + [rnd.randrange(1, 10**6)]), owner=pick(U64), kind=pick([0, 1, 7, 2**32 - 1]),
                     fields=[rfield() for _ in range(pick([0, 1, 3, 33]))])


def seed_msg(room, joined):
    """One valid-ish ClientMessage; the kind name."""
    global RID
    RID += 1
    k = rnd.choice(["join", "quick", "leave", "writes", "intent", "event", "list", "resync", "update", "ping",
                    "pong", "ack", "refresh"])
    rid = pick(U64) if rnd.random() < 0.15 else RID
    if k == "join":
        m = pb.ClientMessage(join=pb.JoinRoom(request_id=rid, room=room, room_type=pick(TYPES)))
        if rnd.random() < 0.3:
            m.join.create.metadata.update({rstr()[:70]: rstr()[:300] for _ in range(rnd.randrange(1, 20))})
            m.join.create.private = rnd.random() < 0.5
        if rnd.random() < 0.2:
            m.join.member_data = b"d" * pick([0, 1024, 1025, 15000])
        if rnd.random() < 0.1:
            m.join.seat = rstr()
    elif k == "quick":
        m = pb.ClientMessage(quick_join=pb.QuickJoin(request_id=rid, room_type=pick(TYPES),
                                                     filters={rstr()[:64]: rstr()[:64] for _ in range(rnd.randrange(0, 40))},
                                                     exclude=[rstr() for _ in range(rnd.randrange(0, 200))],
                                                     local_only=rnd.random() < 0.5))
    elif k == "leave":
        m = pb.ClientMessage(leave=pb.LeaveRoom(request_id=rid, room=room))
    elif k == "writes":
        w = pb.EntityWrites()
        for _ in range(rnd.randrange(1, 4)):
            op = rnd.randrange(7)
            if op == 0:
                w.create.append(rentity())
            elif op == 1:
                w.update.append(pb.EntityUpdate(id=pick(U64), fields=[rfield() for _ in range(pick([1, 5, 40]))]))
            elif op == 2:
                w.remove.extend([pick(U64) for _ in range(pick([1, 10, 1000]))])
            elif op == 3:
                w.give.append(pb.Give(id=pick(U64), to=pick(U64)))
            elif op == 4:
                w.create_for_room.append(rentity())
            elif op == 5:
                w.show.append(pb.Viewer(id=pick(U64), member=pick(U64)))
            else:
                w.hide.append(pb.Viewer(id=pick(U64), member=pick(U64)))
        m = pb.ClientMessage(input=pb.Input(room=room, seq=pick(U64), writes=w))
    elif k == "intent":
        m = pb.ClientMessage(input=pb.Input(room=room, seq=pick(U64), intent=bytes(rnd.randrange(256) for _ in range(pick([0, 1, 2, 3, 500])))))
    elif k == "event":
        m = pb.ClientMessage(event=pb.SendEvent(room=room, kind=rstr()[:300], payload=b"p" * pick([0, 10, 16384, 15000]),
                                                targets=[pick(U64) for _ in range(pick([0, 1, 64, 65, 300]))]))
    elif k == "list":
        m = pb.ClientMessage(request=pb.Request(request_id=rid, list_rooms=pb.ListRooms(
            after=rstr(), limit=pick([0, 1, 500, 501, 2**32 - 1]), room_type=pick(TYPES),
            filters={rstr()[:64]: rstr()[:64] for _ in range(rnd.randrange(0, 30))}, open_only=rnd.random() < 0.5)))
    elif k == "resync":
        m = pb.ClientMessage(request=pb.Request(request_id=rid, resync=pb.Resync(room=room)))
    elif k == "update":
        m = pb.ClientMessage(request=pb.Request(request_id=rid, update_room=pb.UpdateRoom(
            room=room, metadata={rstr()[:64]: rstr()[:300] for _ in range(rnd.randrange(0, 20))},
            lock=pick([0, 1, 2, 3, 99, -1]), owner=pick(U64))))
    elif k == "ping":
        m = pb.ClientMessage(ping=pb.Ping(nonce=pick(U64), sent_time_us=pick(U64), received_seq=pick(U64)))
    elif k == "pong":
        m = pb.ClientMessage(pong=pb.Pong(nonce=pick(U64), ping_sent_time_us=pick(U64), time_us=pick(U64)))
    elif k == "ack":
        m = pb.ClientMessage(ack=pb.Ack(room=room, tick=pick(U64)))
    else:
        m = pb.ClientMessage(refresh_token=pb.RefreshToken(request_id=rid, token=pick(["", "a.b.c", "x" * 10000] + tokens[-3:])))
    return k, m


def mutate_bytes(b):
    b = bytearray(b)
    op = rnd.randrange(8)
    if op == 0 and b:
        for _ in range(rnd.randrange(1, 4)):
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
    elif op == 1 and b:
        b = b[:rnd.randrange(len(b))]
    elif op == 2:
        i = rnd.randrange(len(b) + 1)
        b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 12)))
    elif op == 3:  # an unknown field at the envelope level, or in the first message
        b += vi((99 << 3) | 0) + vi(rnd.randrange(2**40))
    elif op == 4:  # a known field number with the wrong wire type
        b += vi((1 << 3) | pick([0, 1, 5]))+ b"\x01" * 8
    elif op == 5:  # the whole envelope repeated (messages concatenate)
        b = b * rnd.randrange(2, 6)
    elif op == 6:  # an overlong varint length
        b = b"\x0a" + b"\xff" * 10 + b"\x01" + b
    else:          # group wire types (deprecated) and field 0
        b += pick([b"\x0b\x0c", b"\x00\x00", b"\x0f", b"\x0c"])
    return bytes(b)


async def one_conn(i, deadline):
    s = session(TRANSPORT, f"f{i}")
    try:
        if TRANSPORT == "quic":
            tok = pick(tokens) if tokens and rnd.random() < 0.1 else ""
            await s.open(resume_token=tok)
        else:
            q = f"resume={pick(tokens)}" if tokens and rnd.random() < 0.1 else ""
            if rnd.random() < 0.05:
                q = pick(["resume=", "resume=zzzz", "received=-1", "received=99999999999999999999", "client=" + "c" * 65])
            await s.open(q)
    except Exception as ex:
        stats["open_failed"] += 1
        stats["open_failed:" + type(ex).__name__] += 1
        return
    if s.welcome is None:
        stats["no_welcome"] += 1
        closes[s.closed] += 1
        return
    if s.welcome.resumed:
        stats["resumed_other"] += 1
    else:
        tokens.append(s.welcome.resume_token)
    stats["sessions"] += 1
    my_rooms = []
    sent_rids = {}
    profile = "bytes" if rnd.random() < 0.3 else "fields"
    if rnd.random() < 0.5:
        my_rooms = rnd.sample(["fz-a", "fz-b", "fz-c"], rnd.randrange(1, 4))
        await s.send(env(*[pb.ClientMessage(join=pb.JoinRoom(request_id=100 + j, room=r, room_type="relay"))
                             for j, r in enumerate(my_rooms)]))
        await asyncio.sleep(0.2)
    for n in range(MSGS):
        if s.closed or time.time() > deadline:
            break
        room = pick(my_rooms) if my_rooms and rnd.random() < 0.6 else pick(ROOMS)
        before = (len(s.errors), sum(s.kinds.values()))
        mode = rnd.random()
        k, m = seed_msg(room, my_rooms)
        for _ in range(8):  # most envelopes within the size limit (1009 ends the session): 1 in 20 left over it
            if m.ByteSize() < 15000 or rnd.random() < 0.05:
                break
            k, m = seed_msg(room, my_rooms)
        if profile == "fields":
            mode = mode * 0.75
        if mode < 0.55:
            fes = pick([0, 0, 0, 1, 2**53 - 1, 2**53, 2**64 - 1])
            data = env(m, first_event_seq=fes)
            tag = "valid:" + k
            if k in REQ_KINDS and fes < 2**53:  # beyond: the envelope is refused whole, BAD_REQUEST with request_id 0
                rid = getattr(m, m.WhichOneof("kind")).request_id
                if rid > 10**6 and rid < 2**53:
                    sent_rids[rid] = k
        elif mode < 0.75:
            data = env(*[seed_msg(room, my_rooms)[1] for _ in range(pick([2, 3, 5, 101]))])
            if len(data) > 16000 and rnd.random() < 0.9:
                data = env(m, m, m) if m.ByteSize() < 5000 else env(m)
            tag = "multi"
        elif mode < 0.95:
            data = mutate_bytes(env(m))
            tag = "bytes:" + k
        else:
            data = pick([b"", b"\x0a\x00", b"\x0a\x02\x08\x00", b"\xff" * 20, b"\x0a" + vi(16385), b"x" * 16385])
            tag = "raw"
        if TRANSPORT == "quic" and rnd.random() < 0.1:
            s.send_datagram(data)  # may be too big for a datagram: aioquic then drops it
            tag = "dgram:" + tag
            if tag.startswith("dgram:valid"):
                sent_rids.pop(getattr(m, m.WhichOneof("kind")).request_id if k in REQ_KINDS else None, None)
        else:
            await s.send(data)
        stats["env:" + tag.split(":")[0]] += 1
        await asyncio.sleep(1 / RATE)
        after = (len(s.errors), sum(s.kinds.values()))
        if after == before and not s.closed and not tag.startswith("dgram"):
            silent[tag] += 1
    await asyncio.sleep(1.0)
    limited = any(e[0] in (12, 13) and e[1] == 0 for e in s.errors)  # an envelope refused whole: not attributable
    if limited:
        stats["conns_rate_limited"] += 1
    if not s.closed and not limited:
        for rid, k in sent_rids.items():
            asked[k] += 1
            if rid not in s.answered:
                unanswered[k] += 1
                if len(odd) < 60:
                    odd.append((s.name, "unanswered", k, rid))
    for e in s.errors:
        if isinstance(e[0], int):
            errors[pb.ErrorCode.Name(e[0]) if e[0] in pb.ErrorCode.values() else f"unknown-{e[0]}"] += 1
        else:
            odd.append((s.name, e))
    if s.closed:
        closes[s.closed] += 1
        if s.closed[0] not in DOC_CLOSES:
            odd.append((s.name, "close", s.closed))
    else:
        stats["open_at_end"] += 1
        if rnd.random() < 0.3:
            s.abort()  # some sessions wait for a resume
        else:
            await s.close()


async def checker(deadline, rss0):
    t0 = time.time()
    m0 = metrics()
    while time.time() < deadline:
        await asyncio.sleep(min(BATCH, max(0.1, deadline - time.time())))
        m = metrics()
        ok = health()
        panics = log_grep(("panic", "PANIC"))
        cl = {k.split('code="')[1].split('"')[0]: v - m0.get(k, 0) for k, v in m.items()
              if k.startswith("tickrelay_closes_total") and v - m0.get(k, 0) > 0}
        print(f"  [+{time.time()-t0:.0f}s] healthz {'ok' if ok else 'FAILED'} rss {rss_mib():.0f} MiB (start {rss0:.0f}) "
              f"sessions {stats['sessions']} closes {dict(sorted(cl.items()))} conns {m.get('tickrelay_connections')} "
              f"members {m.get('tickrelay_members')} rooms {m.get('tickrelay_rooms')} panics-in-log {len(panics)}", flush=True)


async def main():
    deadline = time.time() + SECS
    rss0 = rss_mib()
    print(f"fuzz27 transport={TRANSPORT} url={URL} seed={SEED} conns={CONNS} msgs={MSGS} rate={RATE}", flush=True)
    bots = asyncio.ensure_future(run_bots(f"fz_{TRANSPORT}_{SEED}", SECS,
                                          BOTS, url=(f"quic://127.0.0.1:{PORT}" if TRANSPORT == "quic" else None))) if BOTS else None
    bots2 = asyncio.ensure_future(run_bots(f"fzr_{TRANSPORT}_{SEED}", SECS, BOTS_RELAY)) if BOTS_RELAY else None
    chk = asyncio.ensure_future(checker(deadline, rss0))

    async def lane(l):
        i = 0
        while time.time() < deadline - 1:
            i += 1
            try:
                await asyncio.wait_for(one_conn(l * 100000 + i, deadline), MSGS / RATE + 20)
            except asyncio.TimeoutError:
                stats["conn_timeout"] += 1
            except Exception as ex:
                stats["conn_exc:" + type(ex).__name__] += 1
                odd.append(("exc", repr(ex)[:200]))
    await asyncio.gather(*(lane(l) for l in range(CONNS)))
    await chk
    for b, name in ((bots, "arena bots"), (bots2, "relay bots")):
        if b:
            rc, summ = await b
            print(f"{name}: exit {rc}; {summ}", flush=True)
    print("stats", dict(stats), flush=True)
    print("errors", dict(errors.most_common()), flush=True)
    print("closes", {f"{k[0]} {k[1][:70]!r}" if k else "None": v for k, v in closes.most_common()}, flush=True)
    print("silent (no answer, no close) by seed", dict(silent.most_common(30)), flush=True)
    print("requests asked (sessions still open at the end) / unanswered:", dict(asked), dict(unanswered), flush=True)
    print("odd", odd[:25], flush=True)
    print(f"healthz {'ok' if health() else 'FAILED'} rss {rss_mib():.0f} MiB; panics in log: {log_grep(('panic','PANIC'))[:5]}",
          flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), SECS + 60))
