"""Arena (and tag: any game using `stick_intent`): dx = -128 moves faster than dx = +127.
One client in an arena room steers left at -128 for TICKS ticks, then right at +127 for
TICKS ticks; prints how far its avatar moved each way (from the state frames)."""
import asyncio, subprocess, sys, time, os
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # ../tr.py, ../procstat.py and ../gen
BIN = os.environ.get("TR_BIN", os.path.join(HERE, "..", "..", "..", "target", "release", "tickrelay"))
import tr
from tr import pb
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "eighth"))
from mirror import Mirror  # noqa: E402 (../eighth/mirror.py)
RP = 17553
TICKS = int(os.environ.get("TICKS", "30"))
relay = subprocess.Popen([BIN, "--insecure-plain", "--listen", f"127.0.0.1:{RP}"],
                         stdout=open(os.path.join(HERE, "relay_ia.out"), "w"), stderr=subprocess.STDOUT)
time.sleep(1)


async def main():
    ws = await tr.websockets.connect(f"ws://127.0.0.1:{RP}/ws", ping_interval=None, max_size=1 << 24)
    await ws.send(tr.env(tr.join("race", 1, "arena")))
    j, seen = await tr.recv_until(ws, lambda m: m.WhichOneof("kind") == "joined")
    me = j.joined.member_id
    mir = Mirror(j.joined.schema)
    seq = 0

    def mine():
        for eid, e in mir.ents.items():
            if e[0] == me and e[1] == 1:
                return e[2][1][1], e[2][2][1]
        return None

    async def run(dx, ticks):
        nonlocal seq
        got = 0
        start = None
        while got < ticks + 3:
            data = await asyncio.wait_for(ws.recv(), 5)
            for m in tr.decode(data).messages:
                if m.WhichOneof("kind") == "state":
                    mir.apply(m.state)
                    got += 1
                    if got == 3:
                        start = mine()  # intents already applied for a couple of ticks: measure from here
                    if got == ticks + 3:
                        end = mine()
                        return start, end
                    seq += 1
                    await ws.send(tr.env(tr.cm(input=pb.Input(room="race", seq=seq, intent=bytes([dx & 0xff, 0])))))
    for m in seen:
        if m.WhichOneof("kind") == "state":
            mir.apply(m.state)
    # stop first
    await run(0, 5)
    s, e = await run(-128, TICKS)
    left = s[0] - e[0]
    s2, e2 = await run(127, TICKS)
    right = e2[0] - s2[0]
    print(f"moved left at dx=-128: {left:.3f} units in {TICKS} ticks; right at dx=+127: {right:.3f} units; "
          f"ratio {left/right:.4f} (expected 1.0; 128/127 = {128/127:.4f})")
    await ws.close()

try:
    asyncio.run(main())
finally:
    relay.terminate(); relay.wait(10)
