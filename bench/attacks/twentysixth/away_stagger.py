"""Rerun against 957a6f9: the once-a-second rule is per member, so SLOTS away members a room,
each dropping its connection one tick (1/30 s) after the one before, make the room encode its
full snapshot at SLOTS different ticks of every second (up to every tick at 30).

As away_full.py (same Writer fill, same ROOMS/W/ENT/NF/FB/PH/SAMPLE/BOTS/HONEST/LOG), with
SLOTS (default 30) away sessions per 16 rooms instead of one; in the `away` phase slot k drops
its connections at k * STAGGER_MS (default 33.3 ms) after the phase starts. RESUME_EVERY /
RESUME_READ: as away_full.py, each slot keeping its own offset. MODE=abort (drop the
connection) or stall (stop reading, as AWAY_MODE=stall). PHASES: touch, away, away2... (as
away_rerun.py: later away phases keep the sessions away). Loopback only; bounded by MAX_SECS
(default 150 s)."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import away_full as af
import away_rerun as ar  # its sampler (simulation threads' CPU each second)
from away_full import *  # noqa

SLOTS = int(os.environ.get("SLOTS", "30"))
STAGGER = float(os.environ.get("STAGGER_MS", str(1000 / 30))) / 1000
MODE = os.environ.get("MODE", "abort")


async def slot_run(a, offset, secs, first):
    end = time.time() + secs
    if first:
        await asyncio.sleep(offset)
        if MODE == "stall":
            a.c.rt.cancel()
            a.c.ws.transport.pause_reading()
            await a.c.send(env(*[pb.ClientMessage(request=pb.Request(request_id=100 + k, resync=pb.Resync(room=r)))
                                 for k, r in enumerate(a.rooms)]))
        else:
            a.c.abort()
        a.next = time.time() + af.RESUME_EVERY
    # Each slot resumes every RESUME_EVERY s from its own drop, across phases (its offset kept).
    while True:
        await asyncio.sleep(max(0, min(a.next, end) - time.time()))
        if time.time() >= end - 0.001 and a.next > end:
            break
        a.next += af.RESUME_EVERY
        try:
            c = await Conn(f"away{a.i}r").open(f"resume={a.token}")
            await asyncio.sleep(af.RESUME_READ)
            a.resumes += 1
            a.log.append((c.welcome.resumed if c.welcome else None, c.bytes_in))
            c.abort()
            a.c = c
        except Exception as ex:
            a.log.append(repr(ex)[:80])


async def main():
    rooms = [f"{af.PREFIX}-{r}" for r in range(af.ROOMS)]
    # ONE_THREAD=1 / STEER=K: as away_full.py (only the even rooms, on thread 0, are filled
    # and joined by the slots; K steering rooms make the next K new rooms go to thread 0).
    writers = [af.Writer(r, i) for k, r in enumerate(rooms) for i in range(1 if af.ONE_THREAD and k % 2 else af.W)]
    for w in writers:
        w.light = af.ONE_THREAD and int(w.room.rsplit("-", 1)[1]) % 2 == 1
        await w.open()
        assert await w.join([w.room]), (w.name, w.errors)
    heavy = [r for k, r in enumerate(rooms) if not (af.ONE_THREAD and k % 2)]
    slots = []
    for s in range(SLOTS):
        group = [af.Away(heavy[j:j + 16], s * 100 + j) for j in range(0, len(heavy), 16)]
        for a in group:
            assert await a.start(), a.c.errors
        slots.append(group)
    steer = []
    for k in range(0, 2 * af.STEER, 16):
        c = await Conn(f"steer{k}").open()
        names = [f"{af.PREFIX}-st-{j}" for j in range(k, min(2 * af.STEER, k + 16))]
        for n in names:
            assert await c.join([n]), c.errors
        await c.send(env(*[pb.ClientMessage(leave=pb.LeaveRoom(request_id=900 + j, room=n))
                           for j, n in enumerate(names) if int(n.rsplit("-", 1)[1]) % 2 == 0]))
        steer.append(c)
    print(f"{len(writers)} writers in {af.ROOMS} rooms, {SLOTS} slots x {len(slots[0])} away sessions, "
          f"stagger {STAGGER*1000:.1f} ms, mode {MODE}", flush=True)
    t0 = time.time()
    p = Phase("fill")
    try:
        await asyncio.wait_for(asyncio.gather(*(w.fill() for w in writers if not w.light)), af.FILL_TIMEOUT)
    except asyncio.TimeoutError:
        print("fill timed out", flush=True)
    await asyncio.sleep(1.5)
    p.end()
    print(f"filled in {time.time()-t0:.1f}s", flush=True)
    touchers = [w for w in writers if w.idx == 0 and not w.light]
    for ph in af.PHASES:
        if ph == "touch":
            await af.phase(ph, asyncio.gather(*(w.touch(af.PH) for w in touchers)))
        elif ph.startswith("away"):
            first = ph == "away"
            await af.phase(ph, asyncio.gather(*(w.touch(af.PH) for w in touchers),
                                              *(slot_run(a, k * STAGGER, af.PH, first)
                                                for k, g in enumerate(slots) for a in g)))
    errs = [e for w in writers for e in w.errors]
    print(f"writer errors {len(errs)} {errs[:3]}; resumes {sum(a.resumes for g in slots for a in g)}", flush=True)
    for w in writers:
        await w.close()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), float(os.environ.get("MAX_SECS", "150"))))
