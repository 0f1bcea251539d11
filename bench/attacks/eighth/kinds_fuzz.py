"""Declared kinds at the edges (kinds.toml): a writer sets random edge values on declared
entities (ids 0 and 2^64-1, kind 0 and 2^32-1), two observers mirror every frame with a
spec-only decoder (mirror.py) and check each checksum.
Usage: SECS=15 python3 kinds_fuzz.py  (relay started with -c kinds.toml; TR_URL, TR_PID)"""
import asyncio, os, sys, time, random, struct
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/attacks: tr.py
from tr import *
import mirror

SECS = float(os.environ.get("SECS", "15"))
ROOM = os.environ.get("ROOM", "kf")
SEED = int(os.environ.get("SEED", "1"))
rnd = random.Random(SEED)
U64 = (1 << 64) - 1

def F(fid, **kw): return pb.Field(id=fid, **kw)

def rand_val(f):
    t = f.type
    if t == 1:
        lo, hi = f.int_min, f.int_max
        v = rnd.choice([lo, hi, lo + 1, hi - 1, rnd.randint(lo, hi), (lo + hi) // 2, hi + 1, lo - 1])
        v = max(-(1 << 63), min((1 << 63) - 1, v))
        return dict(int=v)
    if t == 2:
        lo, hi, p = f.float_min, f.float_max, f.precision
        v = rnd.choice([lo, hi, lo - 0.49 * p, hi + 0.49 * p, hi + 0.51 * p, rnd.uniform(lo, hi), -0.0, 0.0,
                        lo + rnd.randint(0, 50) * p + rnd.choice([0.5, 0.4999, 0.5001, 0]) * p, float("inf"), float("nan"), 3.4e38])
        return dict(float=v)
    if t == 3: return dict(bool=rnd.random() < 0.5)
    if t == 4: return dict(bytes=bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 1024, 1025, 7, 8, 9]))))
    if t == 5: return dict(string=rnd.choice(["", "a", "é", "\u0000"]))

async def member(name, stats, schema_out=None):
    ws = await connect()
    w = decode(await ws.recv()).messages[0].welcome
    await ws.send(env(join(ROOM, 1, "relay")))
    pending = []
    j = None
    while j is None:
        ms = list(decode(await asyncio.wait_for(ws.recv(), 5)).messages)
        for i, m in enumerate(ms):
            if m.WhichOneof("kind") == "error": print(name, "join failed", m); sys.exit(1)
            if m.WhichOneof("kind") == "joined":
                j = m; pending = ms[i + 1:]; break
    m = mirror.Mirror(j.joined.schema)
    stats.update(frames=0, desync=0, errors={}, packed_bytes=0)
    async def msgs():
        for x in pending:
            yield x
        async for d in ws:
            for msg in decode(d).messages:
                yield msg
    async def rd():
        try:
            async for msg in msgs():
                    k = msg.WhichOneof("kind")
                    if k == "state":
                        stats["frames"] += 1
                        stats["packed_bytes"] += sum(len(b) for b in msg.state.packed)
                        if m.tick == -1 and msg.state.baseline_tick != 0:
                            continue
                        try:
                            m.apply(msg.state)
                        except mirror.Desync as e:
                            stats["desync"] += 1
                            if stats["desync"] <= 3:
                                print(name, "DESYNC", e, "frame", msg.state.tick, "baseline", msg.state.baseline_tick)
                                stats.setdefault("bad", []).append(msg.state.SerializeToString().hex())
                            m.tick = -1
                            await ws.send(env(cm(request=pb.Request(request_id=(1 << 53) + stats["desync"], resync=pb.Resync(room=ROOM)))))
                    elif k == "error":
                        key = (msg.error.code, msg.error.message[:70])
                        stats["errors"][key] = stats["errors"].get(key, 0) + 1
        except Exception as e:
            stats["exc"] = repr(e)[:100]
        stats["close"] = close_info(ws)
    asyncio.create_task(rd())
    return ws, w.session_id, j.joined.schema

async def main():
    pid = pid_of_relay()
    ws_stats, o1s, o2s = {}, {}, {}
    ws, wid, schema = await member("writer", ws_stats)
    o1, _, _ = await member("obs1", o1s)
    kinds = {k.kind: sorted(k.fields, key=lambda f: f.id) for k in schema}
    print("schema kinds", {k: len(v) for k, v in kinds.items()})
    ids = [(0, 0), (U64, 4294967295), (1 << 63, 0), (2, 4294967295)]
    creates = [pb.Entity(id=i, kind=k, fields=[F(kinds[k][0].id, **rand_val_ok(kinds[k][0]))]) for i, k in ids]
    seq = 1
    await ws.send(env(cm(input=pb.Input(room=ROOM, seq=seq, writes=pb.EntityWrites(create=creates)))))
    await asyncio.sleep(0.3)
    c0, t0 = cpu_secs(pid), time.time()
    joined_late = False
    while time.time() - t0 < SECS:
        seq += 1
        i, k = rnd.choice(ids)
        fs = rnd.sample(kinds[k], rnd.randint(1, min(6, len(kinds[k]))))
        upd = pb.EntityUpdate(id=i, fields=[F(f.id, **rand_val(f)) for f in fs])
        await ws.send(env(cm(input=pb.Input(room=ROOM, seq=seq, writes=pb.EntityWrites(update=[upd])))))
        if not joined_late and time.time() - t0 > SECS / 2:
            joined_late = True
            await member("obs2", o2s)
        await asyncio.sleep(0.025)
    await asyncio.sleep(1.0)
    c1 = cpu_secs(pid)
    for n, s in (("writer", ws_stats), ("obs1", o1s), ("obs2", o2s)):
        e = s.get("errors", {})
        print(n, {k: v for k, v in s.items() if k not in ("bad", "errors")}, "errors by code:", {c: sum(v for (cc, _), v in e.items() if cc == c) for c in {c for c, _ in e}})
    print("inputs", seq, f"cpu {100*(c1-c0)/(time.time()-t0):.0f}% rss {rss_kib(pid)} KiB")
    bad = ws_stats.get("bad", []) + o1s.get("bad", [])
    if bad: open("kinds_bad_frames.txt", "w").write("\n".join(bad))

def rand_val_ok(f):
    if f.type == 1: return dict(int=f.int_min)
    if f.type == 2: return dict(float=f.float_min)
    if f.type == 3: return dict(bool=True)
    if f.type == 4: return dict(bytes=b"")
    return dict(string="")

asyncio.run(asyncio.wait_for(main(), 55))
