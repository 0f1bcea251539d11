"""Framing attacks on one connection in the arena room ROOM (an honest.py beside it).
MODE:
  split    - N envelopes of one numbered intent each, every frame written in random
             1..CHUNK byte pieces (TCP_NODELAY, 1 ms apart): are all inputs acknowledged?
  frag     - each envelope split into FRAGS fragments (binary + continuations), a WebSocket
             ping between every two fragments, the bytes split as in `split`: inputs
             acknowledged, pongs answered, in order?
  mixenv   - envelopes holding an intent plus a non-input message (a Ping message, an Ack,
             a JoinRoom of the room it is in, a LeaveRoom of another room): inputs acknowledged?
  contflood- a binary frame without FIN, then empty continuation frames at RATE bytes/s for
             SECS: expected a throttled read, then close 1008 (PROTOCOL.md "Rate limits").
  pingflood- WebSocket pings at RATE/s while never reading (SO_RCVBUF 4 KiB): expected
             pongs dropped past ~1 KiB waiting, close 1008 once over the limit for 1 s.
Prints what it saw and the relay's CPU/RSS before and after."""
import os, random, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *

MODE = os.environ.get("MODE", "split"); ROOM = os.environ.get("ROOM", "r22")
N = int(os.environ.get("N", "150")); CHUNK = int(os.environ.get("CHUNK", "7"))
FRAGS = int(os.environ.get("FRAGS", "4")); RATE = float(os.environ.get("RATE", "300000"))
SECS = float(os.environ.get("SECS", "10")); SRC = os.environ.get("SRC", "127.0.22.9")
PACE = float(os.environ.get("PACE", "0.04"))


def dribble(c, data):
    i = 0
    while i < len(data):
        k = random.randint(1, CHUNK)
        c.send_raw(data[i:i + k]); i += k
        time.sleep(0.001)


def acks_until(c, want, timeout=5.0):
    """Reads until a state frame acknowledges `want`; returns (last ack, pongs, errors)."""
    end = time.time() + timeout; acked = 0; errs = []
    while time.time() < end and acked < want:
        e = c.recv_env(0.2)
        if e is None:
            if c.closed or c.eof: break
            continue
        for m in e.messages:
            k = m.WhichOneof("kind")
            if k == "state": acked = max(acked, m.state.last_input_seq)
            if k == "error": errs.append((m.error.code, m.error.message[:50]))
    return acked, errs


def main():
    cpu0, rss0 = cpu_s(), rss_mib()
    rcv = 4096 if MODE == "pingflood" else None
    c = Conn(SRC, rcvbuf=rcv)
    c.recv_env()
    c.send(join(ROOM, 1, "arena"))
    c.wait_for("joined")
    t0 = time.time()
    acked_track = 0; errs = []
    if MODE in ("split", "frag", "mixenv"):
        pongs_before = c.pongs
        for seq in range(1, N + 1):
            if MODE == "mixenv":
                extra = [cm(ping=pb.Ping(nonce=seq)), cm(ack=pb.Ack(room=ROOM, tick=1)),
                         join(ROOM, 1000 + seq, "arena"), cm(leave=pb.LeaveRoom(request_id=5000 + seq, room="nope"))][seq % 4]
                msgs = [intent(ROOM, seq), extra] if seq % 2 else [extra, intent(ROOM, seq)]
                c.send(*msgs)
            else:
                payload = env(intent(ROOM, seq))
                if MODE == "split":
                    dribble(c, frame(payload))
                else:
                    cut = sorted(random.sample(range(1, len(payload)), min(FRAGS - 1, len(payload) - 1)))
                    parts = [payload[a:b] for a, b in zip([0] + cut, cut + [len(payload)])]
                    data = b""
                    for i, p in enumerate(parts):
                        data += frame(p, 2 if i == 0 else 0, fin=(i == len(parts) - 1))
                        if i < len(parts) - 1:
                            data += frame(b"p%d" % i, 9)
                    dribble(c, data)
            # read what came meanwhile (pace one envelope per PACE s, under 50 msg/s)
            end = time.time() + PACE
            while time.time() < end:
                e = c.recv_env(max(0.0, end - time.time()))
                if e is None: break
                for m in e.messages:
                    k = m.WhichOneof("kind")
                    if k == "state": acked_track = max(acked_track, m.state.last_input_seq)
                    if k == "error": errs.append((m.error.code, m.error.message[:50]))
            if c.closed or c.eof: break
        acked, e2 = acks_until(c, N)
        errs += e2
        print(f"{MODE}: sent {N} inputs in {time.time()-t0:.1f}s; last acked {max(acked, acked_track)}; "
              f"server pongs {c.pongs - pongs_before}; errors {len(errs)} {sorted(set(errs))[:4]}; closed {c.closed} eof {c.eof}")
    elif MODE == "contflood":
        c.send_raw(frame(b"\x0a", 2, fin=False))
        one = frame(b"", 0, fin=False)
        sent = 0; end = t0 + SECS; batch = one * 200
        while time.time() < end and not c.eof and c.closed is None:
            try:
                c.send_raw(batch); sent += len(batch)
            except OSError:
                break
            # keep our receive side drained (we read: only our sending is abusive)
            while c.recv_frame(0) is not None and c.closed is None:
                pass
            lag = sent / RATE - (time.time() - t0)
            if lag > 0: time.sleep(lag)
        c.drain_close(3)
        print(f"contflood: sent {sent/1024:.0f} KiB in {time.time()-t0:.1f}s ({sent/1024/(time.time()-t0):.0f} KiB/s); closed {c.closed} eof {c.eof}")
    elif MODE == "pingflood":
        sent = 0; end = t0 + SECS
        while time.time() < end:
            try:
                c.send_raw(frame(b"x" * 16, 9)); sent += 1
            except OSError as ex:
                print(f"pingflood: send failed after {time.time()-t0:.2f}s: {ex!r}")
                break
            time.sleep(1 / RATE)
        c.s.settimeout(3)
        c.drain_close(4)
        print(f"pingflood: {sent} pings in {time.time()-t0:.1f}s; pongs read {c.pongs}; closed {c.closed} eof {c.eof}")
    print(f"relay cpu {cpu_s()-cpu0:.2f}s rss {rss0:.0f}->{rss_mib():.0f} MiB")
    c.close()

main()
