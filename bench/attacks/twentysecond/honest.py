"""An honest arena member: joins ROOM, sends one numbered intent per tick (33 ms) and a
Ping every 200 ms for SECS, reads everything. Prints frames/s, frame-gap p50/p99/max,
ping RTT p50/p99, input ack lag (time from sending seq N to a frame with
last_input_seq >= N), the last seq sent vs. acknowledged, non-monotonic acks, errors,
and its close. Run in the background beside an attack (OUT=file for the summary line)."""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib22 import *

SECS = float(os.environ.get("SECS", "20")); ROOM = os.environ.get("ROOM", "r22")
SRC = os.environ.get("SRC", "127.0.22.1"); INPUTS = os.environ.get("INPUTS", "1") == "1"; TAG = os.environ.get("TAG", "honest")

def main():
    c = Conn(SRC)
    c.recv_env()
    c.send(join(ROOM, 1, os.environ.get("TYPE", "arena")))
    t0 = time.time(); end = t0 + SECS
    gaps, rtts, lags, errors = [], [], [], []
    sent_at = {}; seq = 0; acked = 0; backwards = 0; last = None; frames = 0
    next_in = time.time(); next_ping = time.time(); nonce = 0; pings = {}
    joined = False
    while time.time() < end:
        now = time.time()
        if joined and INPUTS and now >= next_in:
            seq += 1; sent_at[seq] = now; next_in += 1 / 30
            c.send(intent(ROOM, seq, 1, 1))
        if now >= next_ping:
            nonce += 1; pings[nonce] = now; next_ping += 0.2
            c.send(cm(ping=pb.Ping(nonce=nonce)))
        e = c.recv_env(timeout=0.01)
        if e is None:
            if c.closed or c.eof:
                break
            continue
        t = time.time()
        for m in e.messages:
            k = m.WhichOneof("kind")
            if k == "joined":
                joined = True; next_in = t
            elif k == "state":
                frames += 1
                if last: gaps.append(t - last)
                last = t
                a = m.state.last_input_seq
                if a < acked: backwards += 1
                for s_ in range(acked + 1, a + 1):
                    if s_ in sent_at: lags.append(t - sent_at.pop(s_))
                acked = max(acked, a)
            elif k == "pong" and m.pong.nonce in pings:
                rtts.append(t - pings.pop(m.pong.nonce))
            elif k == "error":
                errors.append((m.error.code, m.error.message[:60]))
    dur = time.time() - t0
    ms = lambda x: x * 1000
    line = (f"{TAG}: {frames} frames in {dur:.1f}s ({frames/dur:.1f}/s) gap p50 {ms(q(gaps,.5)):.0f} p99 {ms(q(gaps,.99)):.0f} "
            f"max {ms(q(gaps,1)):.0f} ms; rtt p50 {ms(q(rtts,.5)):.1f} p99 {ms(q(rtts,.99)):.1f} ms ({len(rtts)}); "
            f"input ack lag p50 {ms(q(lags,.5)):.0f} p99 {ms(q(lags,.99)):.0f} max {ms(q(lags,1)):.0f} ms; "
            f"sent {seq} acked {acked} backwards {backwards}; errors {errors[:3]} ({len(errors)}); closed {c.closed} eof {c.eof}")
    print(line, flush=True)
    if os.environ.get("OUT"):
        open(os.environ["OUT"], "a").write(line + "\n")
    c.close()

main()
