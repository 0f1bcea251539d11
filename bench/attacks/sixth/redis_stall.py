"""What a Redis stall or restart does to a room and what its owner acknowledged.
M (node 1) creates relay room `stall-<run>` with one entity and sets its int field 1 to
its input seq 10 times a second (each input acknowledged by StateFrame.last_input_seq).
After 3 s (several checkpoints), MODE:
  sleep    `redis-cli debug sleep SLEEP` (Redis answers nothing for SLEEP s; leases expire on
           its clock meanwhile)
  restart  `redis-cli shutdown nosave`, then a new empty Redis on the same port
Meanwhile J (a second client, on node 2) asks to join the room every 0.2 s, as any player
would. Reports: what J got (a Redirect to node 1 is right; Joined on node 2 means the room
now runs there), what M was told, and the field value / last_input_seq of the room J
joined against what M had acknowledged. Bounded: SLEEP + 30 s."""
import asyncio, collections, os, subprocess, time
from c6 import *

MODE = os.environ.get("MODE", "sleep")
SLEEP = int(os.environ.get("SLEEP", "10"))
ROOM = "stall-%d" % (int(time.time()) % 100000)
HERE_ = os.path.dirname(os.path.abspath(__file__))


def field1(entities):
    for e in entities:
        if e.id == 1:
            for f in e.fields:
                if f.id == 1:
                    return f.int
    return None


async def main():
    m = await connect(0)
    await m.send(env(join(ROOM, 1)))
    ent = pb.Entity(id=1, kind=3, fields=[pb.Field(id=1, int=0)])
    await m.send(env(pb.ClientMessage(input=pb.Input(room=ROOM, seq=1, writes=pb.EntityWrites(create=[ent])))))
    acked = [0]
    m_log = collections.Counter()
    m_left = []
    stop = asyncio.Event()

    async def m_reader():
        try:
            async for data in m:
                for x in decode(data).messages:
                    k = x.WhichOneof("kind")
                    if k == "state":
                        if x.state.room == ROOM:
                            acked[0] = max(acked[0], x.state.last_input_seq)
                    else:
                        m_log[kind(x)] += 1
                    if k == "left":
                        m_left.append((round(time.time() - t0, 1), pb.ErrorCode.Name(x.left.reason), x.left.message[:90]))
        except websockets.ConnectionClosed as e:
            m_log["close:%s" % e.code] += 1

    async def m_writer():
        seq = 1
        while not stop.is_set():
            seq += 1
            upd = pb.EntityUpdate(id=1, fields=[pb.Field(id=1, int=seq)])
            try:
                await m.send(env(pb.ClientMessage(input=pb.Input(room=ROOM, seq=seq, writes=pb.EntityWrites(update=[upd])))))
            except Exception:
                return
            await asyncio.sleep(0.1)

    t0 = time.time()
    rt = asyncio.create_task(m_reader()); wt = asyncio.create_task(m_writer())
    await asyncio.sleep(3)
    pj("before: M acknowledged seq", acked[0], "checkpoint key:", redis("exists", "tickrelay:checkpoint:" + ROOM), "owner:", redis("hget", "tickrelay:room:" + ROOM, "node"))
    if MODE == "sleep":
        stall = subprocess.Popen(["redis-cli", "-p", str(REDIS_PORT), "debug", "sleep", str(SLEEP)], stdout=subprocess.DEVNULL)
        await asyncio.sleep(0.5)
    else:
        redis("shutdown", "nosave")
        await asyncio.sleep(0.5)
        subprocess.run(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--enable-debug-command", "local",
                        "--daemonize", "yes", "--pidfile", os.path.join(HERE_, "redis.pid"),
                        "--logfile", os.path.join(HERE_, "out", "redis.log")], check=True)
        stall = None
    t_stall = time.time() - t0
    acked_at_stall = acked[0]
    # J joins through node 2 until it gets an answer that is not UNAVAILABLE / ALREADY_MEMBER
    j = await connect(1)
    got, tries, jlog = None, 0, collections.Counter()
    while time.time() - t0 < t_stall + SLEEP + 15:
        tries += 1
        await j.send(env(join(ROOM, 100 + tries)))
        a, _ = await wait_for(j, lambda x: x.WhichOneof("kind") in ("joined", "redirect", "error"), 3)
        if a is None:
            jlog["timeout"] += 1; continue
        jlog[kind(a)] += 1
        if a.WhichOneof("kind") in ("joined", "redirect"):
            got = (round(time.time() - t0, 1), a); break
        await asyncio.sleep(0.2)
    pj("stall at t=%.1f s, M acknowledged seq %d then" % (t_stall, acked_at_stall))
    pj("J's answers through node 2:", dict(jlog), "after", tries, "tries")
    if got and got[1].WhichOneof("kind") == "joined":
        snap, _ = await wait_for(j, lambda x: x.WhichOneof("kind") == "state" and x.state.baseline_tick == 0, 3)
        await asyncio.sleep(3)
        pj("J JOINED the room on node 2 at t=%s (a second copy)" % got[0],
           {"room field seen by J": field1(snap.state.added) if snap else None,
            "M acknowledged by now": acked[0]})
    elif got:
        pj("J redirected at t=%s to" % got[0], got[1].redirect.url)
        await asyncio.sleep(3)
    stop.set()
    pj("M was told:", dict(m_log), m_left)
    pj("owner in Redis now:", redis("hget", "tickrelay:room:" + ROOM, "node"),
       {i: metrics(i, ["tickrelay_rooms_lost_total", "tickrelay_rooms_restored_total", "tickrelay_directory_errors_total"]) for i in range(len(NODE_PORTS))})
    # M joins again (as the Left message tells it to) and learns what the room applied
    rt.cancel(); wt.cancel()
    await asyncio.sleep(0.1)
    if m_left:
        await m.send(env(join(ROOM, 500)))
        a, _ = await wait_for(m, lambda x: x.WhichOneof("kind") in ("joined", "redirect", "error"), 5)
        if a is not None and a.WhichOneof("kind") == "redirect":
            m2 = await connect(0, u=a.redirect.url)
            await m2.send(env(join(ROOM, 501, seat=a.redirect.seat)))
            a, seen = await wait_for(m2, lambda x: x.WhichOneof("kind") in ("joined", "error"), 5)
            snap, _ = await wait_for(m2, lambda x: x.WhichOneof("kind") == "state" and x.state.baseline_tick == 0, 3)
            pj("M rejoined through", a and kind(a), "last_input_seq", a.joined.last_input_seq if a and a.WhichOneof("kind") == "joined" else None,
               "field", field1(snap.state.added) if snap else None, "vs acknowledged", acked[0],
               "-> acknowledged inputs lost:", acked[0] - (a.joined.last_input_seq if a and a.WhichOneof("kind") == "joined" else 0))
            await m2.close()
        else:
            pj("M rejoin:", a and kind(a))
    rt.cancel(); wt.cancel()
    if stall:
        stall.wait(timeout=SLEEP + 5)
    await j.close(); await m.close()

asyncio.run(asyncio.wait_for(main(), SLEEP + 40))
