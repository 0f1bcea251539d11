"""Round 26, attack B: rooms that cost CPU every tick with no input: arena rooms (the built-in
authoritative type, 16 NPCs moving every tick) held open by idle attacker sessions.

Creates up to ROOMS arena rooms (the creator limits: a burst of 60, then 2 a second; 1,000
open) with SEATS attacker members each (each session in up to 16 rooms), members that never
send an input. READ=0: the sessions never read (their socket buffers fill; state frames are
superseded), READ=1: they read and discard. Phases of PH seconds: `before` (no attacker),
then `during` once the rooms are up. Honest bots (BOTS) play their own rooms in each phase.
Loopback only; stops by itself within 118 s (MAX_SECS)."""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib26 import *  # noqa

ROOMS = int(os.environ.get("ROOMS", "300"))
SEATS = int(os.environ.get("SEATS", "1"))
PH = float(os.environ.get("PH", "15"))
CREATE_SECS = float(os.environ.get("CREATE_SECS", "60"))
READ = os.environ.get("READ", "1") == "1"
TYPE = os.environ.get("TYPE", "arena")
PREFIX = os.environ.get("PREFIX", "ar")
BOTS = os.environ.get("BOTS", "--rooms 2 --members 8 --room-type arena")
INTENT_HZ = float(os.environ.get("INTENT_HZ", "0"))


class Idle(Conn):
    want = None

    async def keepalive(self, secs):
        """READ=0: the relay pings after 30 s of silence and a client that does not read
        cannot answer; an application Ping every 20 s keeps the connection alive."""
        end = time.time() + secs
        n = 0
        while time.time() < end:
            await asyncio.sleep(min(20, max(0, end - time.time())))
            n += 1
            try:
                await self.send(env(pb.ClientMessage(ping=pb.Ping(nonce=n))))
            except Exception:
                return

    async def reader(self):
        if READ:
            return await super().reader()
        # Read the Welcome and the joins' answers only, then stop reading.
        try:
            while True:
                data = await self.ws.recv()
                self.bytes_in += len(data)
                e = pb.ServerEnvelope()
                e.ParseFromString(data)
                for m in e.messages:
                    k = m.WhichOneof("kind")
                    if k == "welcome":
                        self.welcome = m.welcome
                    elif k == "joined":
                        self.joined[m.joined.room] = m.joined
                    elif k == "error":
                        self.errors.append((m.error.code, m.error.room, m.error.message[:80]))
                if getattr(self, "stop_reading", False) or (self.want and all(r in self.joined for r in self.want)):
                    return
        except Exception as ex:
            self.errors.append(("closed", "", repr(ex)[:100]))


async def phase(tag, coro):
    p = Phase(tag)
    bots = asyncio.ensure_future(run_bots(f"{PREFIX}_{tag}", PH, BOTS)) if BOTS else None
    await coro
    summary = await bots if bots else ""
    p.end()
    if summary:
        print(f"[{tag}] bots: {summary}", flush=True)


async def intents(c, rooms, secs):
    end = time.time() + secs
    seq = 0
    nxt = time.time()
    while time.time() < end:
        seq += 1
        await c.send(env(*[pb.ClientMessage(input=pb.Input(room=r, seq=seq, intent=bytes([127, 0]))) for r in rooms]))
        nxt += 1 / INTENT_HZ
        await asyncio.sleep(max(0, nxt - time.time()))


async def main():
    await phase("before", asyncio.sleep(PH))
    t0 = time.time()
    sessions = []
    refused = 0
    created = []
    # First seats: one session per 16 rooms, rooms created one by one (the creator limits
    # answer LIMIT_EXCEEDED past the burst: wait and retry).
    cur = None
    r = 0
    while r < ROOMS and time.time() - t0 < CREATE_SECS:
        if cur is None or len(cur.joined) >= 16:
            cur = await Idle(f"s{len(sessions)}").open()
            sessions.append(cur)
        room = f"{PREFIX}-{r}"
        ok = await cur.join([room], TYPE, timeout=5)
        if ok:
            created.append(room)
            r += 1
        else:
            refused += 1
            cur.errors = [e for e in cur.errors if e[1] != room]
            await asyncio.sleep(0.25)
    # More seats: sessions of 16 rooms each, joined in one go.
    more = []
    for s in range(1, SEATS):
        for j in range(0, len(created), 16):
            more.append(created[j:j + 16])

    async def seat(rs):
        c = Idle("x")
        c.want = rs
        await c.open()
        await c.join(rs, TYPE, timeout=10)
        return c
    for j in range(0, len(more), 50):
        t1 = time.time()
        sessions += await asyncio.gather(*(seat(rs) for rs in more[j:j + 50]))
        if j % 200 == 0:
            print(f"  {len(sessions)} sessions, {sum(len(s.joined) for s in sessions)} seats; batch {time.time()-t1:.1f}s", flush=True)
    print(f"{len(created)} rooms, {sum(len(s.joined) for s in sessions)} seats, {len(sessions)} sessions in "
          f"{time.time()-t0:.1f}s (creation refusals {refused}); READ={READ}", flush=True)
    for s in sessions:
        s.stop_reading = True
    await asyncio.sleep(2)
    work = [asyncio.sleep(PH)] + ([] if READ else [s.keepalive(PH) for s in sessions])
    if INTENT_HZ > 0:
        work += [intents(s, list(s.joined), PH) for s in sessions]
    await phase("during", asyncio.gather(*work))
    closed = [s.closed for s in sessions if s.closed]
    errs = [e for s in sessions for e in s.errors]
    print(f"sessions closed {len(closed)} {closed[:3]}; errors {len(errs)} {errs[:3]}; bytes read "
          f"{sum(s.bytes_in for s in sessions)/1e6:.1f} MB", flush=True)
    # Non-reading sessions cannot finish a close handshake: drop them all at once.
    for s in sessions:
        s.abort()


if __name__ == "__main__":
    # Hard bound: MAX_SECS (118 s by default), whatever the settings.
    asyncio.run(asyncio.wait_for(main(), min(float(os.environ.get("MAX_SECS", "118")), CREATE_SECS + 3 * PH + 60)))
