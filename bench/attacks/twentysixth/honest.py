"""An honest client per room, reporting per room: frames/s, the largest gap between frames,
and the delay from the tick's server time stamp to its arrival (p50/p99/max; one machine,
one clock), and which simulation thread holds the room (from the relay's log, if LOG is set).

python3 honest.py SECS ROOM [ROOM ...]   (arena rooms; each gets one member sending an intent a tick)
Loopback only; bounded by SECS + 20 s."""
import asyncio, os, re, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib26 import *  # noqa

TYPE = os.environ.get("TYPE", "arena")
LOG = os.environ.get("LOG", "")
JOIN_TRIES = int(os.environ.get("JOIN_TRIES", "1"))


async def one(room, secs, out):
    t_join = time.time()
    c = Conn(room)
    await c.open()
    lat, arrivals = [], []
    joined = False
    errs = []

    async def reader():
        nonlocal joined
        try:
            async for data in c.ws:
                now = time.time()
                e = pb.ServerEnvelope()
                e.ParseFromString(data)
                for m in e.messages:
                    k = m.WhichOneof("kind")
                    if k == "state" and m.state.room == room:
                        arrivals.append(now)
                        if m.state.server_time_us:
                            lat.append(now * 1000 - m.state.server_time_us / 1000)
                    elif k == "joined":
                        joined = True
                    elif k == "error":
                        errs.append((m.error.code, m.error.message[:60]))
        except Exception as ex:
            errs.append(("closed", repr(ex)[:60]))

    c.rt.cancel()
    rt = asyncio.ensure_future(reader())
    await c.send(env(join_msg(room, 1, TYPE)))
    t0 = time.time()
    while not joined and time.time() - t0 < 5:
        await asyncio.sleep(0.005)
    join_ms = (time.time() - t0) * 1000
    seq = 0
    end = time.time() + secs
    nxt = time.time()
    arrivals.clear()
    lat.clear()
    start = time.time()
    while time.time() < end and joined:
        seq += 1
        await c.send(env(pb.ClientMessage(input=pb.Input(room=room, seq=seq, intent=bytes([127, (seq * 7) % 256])))))
        nxt += 1 / 30
        await asyncio.sleep(max(0, nxt - time.time()))
    dur = time.time() - start
    rt.cancel()
    await c.close()
    lat.sort()
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
    out[room] = dict(joined=joined, join_ms=join_ms, fps=len(arrivals) / max(dur, 1e-9),
                     p50=q(0.5), p99=q(0.99), max=lat[-1] if lat else float("nan"),
                     gap=max(gaps) * 1000 if gaps else float("nan"), errors=errs[:3])


def threads_of(rooms):
    if not LOG:
        return {}
    found = {}
    for line in open(LOG, errors="replace"):
        m = re.search(r"room created.*room=(\S+).*thread=(\d+)", line)
        if m and m.group(1) in rooms:
            found[m.group(1)] = int(m.group(2))
    return found


async def main():
    secs = float(sys.argv[1])
    rooms = sys.argv[2:]
    out = {}
    await asyncio.gather(*(one(r, secs, out) for r in rooms))
    th = threads_of(rooms)
    for r in rooms:
        o = out[r]
        print(f"honest {r} thread {th.get(r, '?')}: joined {o['joined']} in {o['join_ms']:.0f} ms, {o['fps']:.1f} frames/s, "
              f"delay p50 {o['p50']:.1f} p99 {o['p99']:.1f} max {o['max']:.1f} ms, largest gap {o['gap']:.0f} ms "
              f"errors {o['errors']}", flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), float(sys.argv[1]) + 20))
