"""Rerun of finding 1b against a4a1d3c (placement by load): away_full.py with phases that go
on with the away sessions' drops, so that honest rooms (bots and honest.py, a fresh tag a
phase) are created while the attacker's rooms already keep a thread busy.

PHASES: touch | away (the away sessions drop their connections) | away2, away3 ... (as away,
no new drop: the sessions stay away, resuming every RESUME_EVERY s with RESUME_READ s of
reading). SAMPLE=1 prints each second the simulation threads' CPU (/proc) beside the encoded
bytes, to see the load the pool places new rooms by. Everything else as away_full.py (same
environment variables). Loopback only; bounded by MAX_SECS (default 150 s)."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import away_full as af
from away_full import *  # noqa


async def stay_away(a, secs):
    """Away.run without the first drop: resume and drop again every RESUME_EVERY s."""
    end = time.time() + secs
    while time.time() < end:
        await asyncio.sleep(min(af.RESUME_EVERY, max(0, end - time.time())))
        if time.time() >= end:
            break
        try:
            c = await Conn(f"away{a.i}r").open(f"resume={a.token}")
            await asyncio.sleep(af.RESUME_READ)
            a.resumes += 1
            a.log.append((c.welcome.resumed if c.welcome else None, c.bytes_in))
            c.abort()
            a.c = c
        except Exception as ex:
            a.log.append(repr(ex)[:80])


async def sampler(tag, secs):
    if af.SAMPLE <= 0:
        return
    end = time.time() + secs
    m0, t0, th0 = metrics(), time.time(), thread_cpu()
    while time.time() + af.SAMPLE <= end + 0.5:
        await asyncio.sleep(af.SAMPLE)
        m1, t1, th1 = metrics(), time.time(), thread_cpu()
        d = lambda k: (m1.get(k, 0) - m0.get(k, 0)) / (t1 - t0)
        sims = " ".join(f"{k.replace('tickrelay-', '')} {100*(th1[k]-th0.get(k, 0))/(t1-t0):.0f}%"
                        for k in sorted(th1) if "sim" in k)
        print(f"  [{tag} +{t1-end+secs:.0f}s] {sims} encoded {d('tickrelay_state_bytes_encoded_total')/2**20:.0f} MiB/s "
              f"full {d('tickrelay_full_snapshots_total'):.0f}/s overruns {d('tickrelay_tick_overruns_total'):.0f}/s "
              f"rooms {m1.get('tickrelay_rooms', 0):.0f} load {loadavg()}", flush=True)
        m0, t0, th0 = m1, t1, th1


af.sampler = sampler  # af.phase looks it up in its module


async def main():
    rooms = [f"{af.PREFIX}-{r}" for r in range(af.ROOMS)]
    writers = [af.Writer(r, i) for k, r in enumerate(rooms) for i in range(1 if af.ONE_THREAD and k % 2 else af.W)]
    if af.ONE_THREAD:
        for w in writers:
            w.light = int(w.room.rsplit("-", 1)[1]) % 2 == 1
    for w in writers:
        await w.open()
        assert await w.join([w.room]), (w.name, w.errors)
    heavy = [r for k, r in enumerate(rooms) if not (af.ONE_THREAD and k % 2)]
    aways = [af.Away(heavy[j:j + 16], i) for i in range(af.AWAY) for j in range(0, len(heavy), 16)]
    for a in aways:
        assert await a.start(), a.c.errors
    steer = []
    for k in range(0, 2 * af.STEER, 16):
        c = await Conn(f"steer{k}").open()
        names = [f"{af.PREFIX}-st-{j}" for j in range(k, min(2 * af.STEER, k + 16))]
        for n in names:
            assert await c.join([n]), c.errors
        await c.send(env(*[pb.ClientMessage(leave=pb.LeaveRoom(request_id=900 + j, room=n))
                           for j, n in enumerate(names) if int(n.rsplit("-", 1)[1]) % 2 == 0]))
        steer.append(c)
    print(f"{len(writers)} writers in {af.ROOMS} rooms, {len(aways)} away sessions", flush=True)
    t0 = time.time()
    p = Phase("fill")
    try:
        await asyncio.wait_for(asyncio.gather(*(w.fill() for w in writers if not getattr(w, "light", False))),
                               af.FILL_TIMEOUT)
    except asyncio.TimeoutError:
        print("fill timed out", flush=True)
    await asyncio.sleep(1.5)
    p.end()
    print(f"filled in {time.time()-t0:.1f}s", flush=True)
    touchers = [w for w in writers if w.idx == 0 and not getattr(w, "light", False)]
    for ph in af.PHASES:
        if ph == "touch":
            await af.phase(ph, asyncio.gather(*(w.touch(af.PH) for w in touchers)))
        elif ph == "away":
            await af.phase(ph, asyncio.gather(*(w.touch(af.PH) for w in touchers), *(a.run(af.PH) for a in aways)))
        elif ph.startswith("away"):
            await af.phase(ph, asyncio.gather(*(w.touch(af.PH) for w in touchers), *(stay_away(a, af.PH) for a in aways)))
    errs = [e for w in writers for e in w.errors]
    print(f"writer errors {len(errs)} {errs[:3]}; away resumes {[a.resumes for a in aways]} {[a.log[:3] for a in aways][:2]}",
          flush=True)
    for w in writers:
        await w.close()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), float(os.environ.get("MAX_SECS", "150"))))
