"""A node stopped (SIGTERM) while an honest sender sends numbered events and inputs:
is everything acknowledged (Pong.events_received, StateFrame.last_input_seq) still
there after the room moves? H1 sends, H2 listens; both follow GoingAway."""
import asyncio, os, signal, time
from lib18 import *
N1 = os.environ.get("N1", "ws://127.0.0.1:7861/ws"); N2 = os.environ.get("N2", "ws://127.0.0.1:7862/ws")
PID = int(open(os.environ.get("PIDF", "n1.pid")).read())
ROOM = os.environ.get("ROOM", "mv%d" % int(time.time()))
RATE = float(os.environ.get("RATE", "25"))
async def main():
    h1 = await C("h1").open(url=N1); h2 = await C("h2").open(url=N1)
    assert (await h1.join(ROOM, 1)).WhichOneof("kind") == "joined"
    assert (await h2.join(ROOM, 1)).WhichOneof("kind") == "joined"
    await h1.send(cm(input=pb.Input(room=ROOM, seq=1, writes=pb.EntityWrites(create=[pb.Entity(id=1, kind=0, fields=[pb.Field(id=1, int=1)])]))))
    ev_acked = 0; ev_sent = 0; in_seq = 1; in_acked = 0
    stop_at = time.time() + 3; stopped = False
    pending_ev = []  # payload numbers not acked
    session_evseq = 0
    t_end = time.time() + 14
    moved = False
    while time.time() < t_end:
        if not stopped and time.time() > stop_at:
            os.kill(PID, signal.SIGTERM); stopped = True; t_stop = time.time()
            print("SIGTERM sent; events sent", ev_sent, "acked", ev_acked, "inputs sent", in_seq, "acked", in_acked)
        if not moved and h1.closed is None and not h1.of("going_away"):
            ev_sent += 1; session_evseq += 1; in_seq += 1
            pending_ev.append(ev_sent)
            try:
                await h1.send(cm(event=pb.SendEvent(room=ROOM, kind="n", payload=str(ev_sent).encode())), fes=session_evseq)
                await h1.send(cm(input=pb.Input(room=ROOM, seq=in_seq, writes=pb.EntityWrites(update=[pb.EntityUpdate(id=1, fields=[pb.Field(id=1, int=in_seq)])]))),
                              cm(ping=pb.Ping(nonce=in_seq, received_seq=h1.last_seq)))
            except Exception as e:
                pass
        # acks
        for t, k, m in h1.msgs:
            if k == "pong": ev_acked = max(ev_acked, m.pong.events_received)
            if k == "state" and m.state.room == ROOM: in_acked = max(in_acked, m.state.last_input_seq)
        if not moved and (h1.of("going_away") or h1.closed) and stopped:
            ga = h1.of("going_away"); url = ga[0].going_away.url if ga else None
            print("h1 going_away", url, "closed", h1.closed, "acked events", ev_acked, "acked inputs", in_acked, "sent", ev_sent, in_seq)
            await asyncio.sleep(0.3)
            ga2 = h2.of("going_away"); url2 = ga2[0].going_away.url if ga2 else None
            print("h2 going_away", url2, h2.closed)
            if not url: break
            old1, old2 = h1, h2
            h1 = await C("h1b").open("resume=%s&received=%d" % (old1.welcome.resume_token, old1.last_seq), url=url)
            h2 = await C("h2b").open("resume=%s&received=%d" % (old2.welcome.resume_token, old2.last_seq), url=url2 or url)
            print("h1 welcome resumed", h1.welcome.resumed, "sid", h1.welcome.session_id, old1.welcome.session_id, "t", round(time.time()-t_stop, 3))
            j1 = await h1.join(ROOM, 11); j2 = await h2.join(ROOM, 11)
            print("rejoin", j1.WhichOneof("kind"), j1.joined.last_input_seq if j1.WhichOneof("kind")=="joined" else j1, j2.WhichOneof("kind"))
            # resend unacked events (all with payload > ev_acked), new numbering
            fes = 0
            for p in range(ev_acked + 1, ev_sent + 1):
                fes += 1
                await h1.send(cm(event=pb.SendEvent(room=ROOM, kind="n", payload=str(p).encode())), fes=fes)
            # resend inputs above joined last_input_seq
            L = j1.joined.last_input_seq
            print("inputs acked before stop", in_acked, "room says applied", L, "LOST" if L < in_acked else "ok")
            moved = True
            ev_h2_old = old2.events
            break
        await asyncio.sleep(1 / RATE)
    await asyncio.sleep(2.5)
    got = [int(e.payload) for t, e in ev_h2_old] + [int(e.payload) for t, e in h2.events]
    missing = [p for p in range(1, ev_acked + 1) if p not in got]
    print("h2 got", len(got), "distinct", len(set(got)), "max", max(got) if got else None, "acked", ev_acked, "missing acked:", missing[:20], len(missing))
    # snapshot value
    st = [m.state for t, k, m in h2.msgs if k == "state" and m.state.baseline_tick == 0]
    for s in st[:1]:
        print("h2 snapshot entity:", [(e.id, [(f.id, f.int) for f in e.fields]) for e in s.added])
    await h1.close(); await h2.close()
asyncio.run(main())
