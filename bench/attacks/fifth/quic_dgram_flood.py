"""QUIC datagram floods from CONNS sessions (default 1), each in an arena room, for SECS.
MODE:
  acks      datagrams of 100 Acks each (the most an envelope may hold), as fast as possible
  acks_paced  Ack-only datagrams kept just under the byte limit (~60 KiB/s per session)
  ackbogus  Acks for ticks never sent (huge, 0, future) and rooms not joined, as fast as possible
  pings     one valid Ping per datagram, as fast as possible (over the message limit)
  maxsize   max-size datagrams (~1,150 B): one Ping plus unknown-field padding
  empty     zero-length datagrams
  garbage   random bytes (expect 1007)
Reports datagrams sent, what came back, close code and time to close."""
import asyncio, os, sys, time, collections, random
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qc import *

MODE = os.environ.get("MODE", "acks")
SECS = float(os.environ.get("SECS", "10"))
CONNS = int(os.environ.get("CONNS", "1"))
NACK = int(os.environ.get("NACK", "60"))  # acks per datagram (a datagram must fit ~1,150 bytes)


def padded_ping(size):
    base = env(cm(ping=pb.Ping(nonce=1)))
    # unknown field 15 (length-delimited) in the envelope: skipped by decoders
    pad = size - len(base) - 4
    return base + bytes([15 << 3 | 2]) + varint(pad) + b"\x00" * pad


async def attacker(idx, report):
    cmgr = quic_connect()
    c = await asyncio.wait_for(cmgr.__aenter__(), 10)
    c.send_hello()
    await asyncio.wait_for(c.welcome, 10)
    room = f"flood-{idx}"
    c.send_env(cm(join=pb.JoinRoom(request_id=1, room=room, room_type="arena")))
    await asyncio.sleep(0.5)
    maxd = c._quic._remote_max_datagram_frame_size
    sent = sent_bytes = 0
    t0 = time.time()
    last_tick = [1]

    def on_msg(m, via):
        if m.WhichOneof("kind") == "state":
            last_tick[0] = m.state.tick
    c.on_msg = on_msg
    r = random.Random(idx)
    while time.time() - t0 < SECS and c.closed is None:
        if MODE == "acks":
            d = env(*[cm(ack=pb.Ack(room=room, tick=max(1, last_tick[0] - (i % 30)))) for i in range(NACK)])
            batch = 20
        elif MODE == "acks_paced":
            d = env(*[cm(ack=pb.Ack(room=room, tick=max(1, last_tick[0] - (i % 30)))) for i in range(60)])
            # ~ (len(d)) bytes each; 60 KiB/s
            batch = 1
        elif MODE == "ackbogus":
            d = env(*[cm(ack=pb.Ack(room=room if i % 2 else "nope-%d" % i,
                                     tick=r.choice([0, 2**63, 2**64 - 1, last_tick[0] + 1000, r.getrandbits(64)])))
                      for i in range(NACK)])
            batch = 20
        elif MODE == "pings":
            d = env(cm(ping=pb.Ping(nonce=sent)))
            batch = 50
        elif MODE == "maxsize":
            d = padded_ping(min(maxd or 1150, 1150))
            batch = 20
        elif MODE == "empty":
            d = b""
            batch = 50
        elif MODE == "garbage":
            d = bytes(r.getrandbits(8) for _ in range(200))
            batch = 20
        for _ in range(batch):
            if len(c._quic._datagrams_pending) > 200:
                break  # what aioquic's congestion control has not sent yet: do not count it
            c._quic.send_datagram_frame(d)
            sent += 1
            sent_bytes += len(d)
        c.transmit()
        if MODE == "acks_paced":
            await asyncio.sleep(len(d) / (60 * 1024))
        else:
            await asyncio.sleep(0)
    dur = time.time() - t0
    errs = collections.Counter()
    for _, m, _ in c.msgs:
        if m.WhichOneof("kind") == "error":
            errs[pb.ErrorCode.Name(m.error.code)] += 1
    report.append({"conn": idx, "sent_dgrams": sent, "dgram_bytes": len(d), "rate_per_s": round(sent / dur),
                   "kbytes_per_s": round(sent_bytes / dur / 1024), "close": c.closed,
                   "closed_after_s": round(c.closed_at - t0, 2) if c.closed_at else None,
                   "server_dgrams_in": c.datagrams, "errors": dict(errs),
                   "pongs": sum(1 for k in c.kinds() if k == "pong")})
    if c.closed is None:
        c.close(error_code=1000); c.transmit()


async def main():
    report = []
    res = await asyncio.gather(*[attacker(i, report) for i in range(CONNS)], return_exceptions=True)
    for r in report:
        print(r)
    for x in res:
        if isinstance(x, Exception):
            print("exc", repr(x)[:200])
    await asyncio.sleep(0.3)

if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), SECS + 25))
