"""Functional abuse across nodes (needs 3 nodes, fresh). CASES (comma list, default all):
  odd      room ids with odd bytes (`*`, `{}`, `:`, `/`, `(`, `[`, `-`, `+`, unicode, RTL
           override, 128 bytes) created on node 1, joined through node 2 (Redirect, then the
           join on node 1 with the seat), listed from node 3 and paged with `after` = each id
  after    ListRooms `after` values that are special to ZRANGE BYLEX (`-`, `+`, `(`, `[`, a
           15 KB string)
  resume   a live session's resume token presented to another node while the session
           lives; then again to a third node
  ticket   a seat ticket used twice; used for another room; a ticket of room `a/b`
           presented for room `a` (seat `b/<ticket>`: the key `seat:a/b/<ticket>`)
Bounded: 60 s."""
import asyncio, collections, os, sys, time
from c6 import *

CASES = os.environ.get("CASES", "odd,after,resume,ticket").split(",")


async def welcome(ws):
    m, _ = await wait_for(ws, lambda m: m.WhichOneof("kind") == "welcome", 5)
    return m.welcome if m else None


async def answer(ws, timeout=5):
    m, seen = await wait_for(ws, lambda m: m.WhichOneof("kind") in ("joined", "redirect", "error", "response", "left"), timeout)
    return m


ODD = ["a*b", "{slot}room", "room:evil", "x/y", "(paren", "[brack", "-minus", "+plus", "back\\slash",
       "日本語ルーム", "\u202eevil-rtl", "zero\u200bwidth", "🙂" * 32, "m" * 128, "sp ace", "%41enc", "\"quote'"]


async def case_odd():
    res = {}
    a = await connect(0); await welcome(a)
    b = await connect(1); wb = await welcome(b)
    for i, r in enumerate(ODD):
        await a.send(env(join(r, i + 1)))
        ma = await answer(a)
        await b.send(env(join(r, 100 + i)))
        mb = await answer(b)
        row = [kind(ma) if ma else None, kind(mb) if mb else None]
        if mb is not None and mb.WhichOneof("kind") == "redirect":
            c = await connect(0, u=mb.redirect.url); await welcome(c)
            await c.send(env(join(r, 1, seat=mb.redirect.seat)))
            mc = await answer(c)
            row.append(kind(mc) if mc else None)
            if mc is not None and mc.WhichOneof("kind") == "joined":
                row.append("member=ticket's" if mc.joined.member_id == wb.session_id else "member=other")
            await c.close()
        res[r[:20]] = row
    await asyncio.sleep(2.5)  # a renewal
    l = await connect(2); await welcome(l)
    listed = []
    after = ""
    for page in range(10):
        await l.send(env(pb.ClientMessage(request=pb.Request(request_id=page + 1, list_rooms=pb.ListRooms(after=after, limit=7)))))
        m = await answer(l)
        if m is None or m.WhichOneof("kind") != "response":
            listed.append(("ERR", kind(m) if m else None)); break
        rl = m.response.rooms
        listed.extend(r.room for r in rl.rooms)
        if not rl.more:
            break
        after = rl.next_after
    missing = [r[:20] for r in ODD if r not in listed]
    pj("odd ids: owner join / join via node 2 / join with seat on owner", res)
    pj("listed via node 3 in pages of 7:", len(listed), "missing:", missing, "order ok:", listed == sorted(listed, key=lambda s: s.encode()))
    for c in (a, b, l):
        await c.close()


async def case_after():
    l = await connect(2); await welcome(l)
    out = {}
    for i, after in enumerate(["-", "+", "(", "[", "\U0010ffff", "(" * 15000]):
        await l.send(env(pb.ClientMessage(request=pb.Request(request_id=i + 1, list_rooms=pb.ListRooms(after=after, limit=5)))))
        m = await answer(l)
        out[after[:8] + ("..%d" % len(after) if len(after) > 8 else "")] = (kind(m), [r.room[:12] for r in m.response.rooms.rooms]) if m and m.WhichOneof("kind") == "response" else (kind(m) if m else None, m.error.message[:80] if m and m.WhichOneof("kind") == "error" else "")
    pj("ListRooms after=...", out)
    await l.close()


async def case_resume():
    s1 = await connect(0); w1 = await welcome(s1)
    await s1.send(env(join("resume-room", 1)))
    j = await answer(s1)
    pj("s1 on node1: session", w1.session_id, "token", w1.resume_token[:8] + "...", kind(j), "member", j.joined.member_id if j.WhichOneof("kind") == "joined" else None)
    # present the live session's token to node 2
    s2 = await connect(1, "resume=%s&received=0" % w1.resume_token)
    w2 = await welcome(s2)
    pj("node2 with s1's token while s1 lives:", {"welcome": bool(w2), "session_id": w2.session_id if w2 else None,
                                                   "same_id": bool(w2) and w2.session_id == w1.session_id,
                                                   "resumed": w2.resumed if w2 else None,
                                                   "close": (s2.close_code, (s2.close_reason or "")[:60])})
    # is s1 still alive and in its room?
    await s1.send(env(pb.ClientMessage(ping=pb.Ping(nonce=7))))
    m, seen = await wait_for(s1, lambda m: m.WhichOneof("kind") == "pong", 3)
    pj("s1 still answers:", bool(m), "s1 saw:", dict(collections.Counter(kind(x) for x in seen)))
    if w2:
        # s2 (same member id) joins s1's room: redirect to node 1, then join with the seat
        await s2.send(env(join("resume-room", 2)))
        r = await answer(s2)
        pj("s2 joins s1's room:", kind(r) if r else None)
        if r is not None and r.WhichOneof("kind") == "redirect":
            s3 = await connect(0, u=r.redirect.url); await welcome(s3)
            await s3.send(env(join("resume-room", 3, seat=r.redirect.seat)))
            j3 = await answer(s3)
            pj("s3 (seat of s2) on node 1:", kind(j3) if j3 else None, "member", j3.joined.member_id if j3 and j3.WhichOneof("kind") == "joined" else None)
            seen = await recv_msgs(s1, 2)
            pj("s1 then saw:", dict(collections.Counter(kind(x) for x in seen)), [x.left.message[:80] for x in seen if x.WhichOneof("kind") == "left"])
            await s3.close()
    # the same token once more, at node 3
    s4 = await connect(2, "resume=%s&received=0" % w1.resume_token)
    w4 = await welcome(s4)
    try:
        await s4.recv()
    except websockets.ConnectionClosed as e:
        pj("node3 with the same token again: welcome", bool(w4), "close", e.code, e.reason[:60])
    except Exception as e:
        pj("node3:", bool(w4), repr(e)[:80])
    for c in (s1, s2, s4):
        try:
            await c.close()
        except Exception:
            pass


async def case_ticket():
    h = await connect(0); await welcome(h)
    await h.send(env(join("tk", 1), join("tk/x", 2), join("tk2", 3)))
    await recv_msgs(h, 1)
    b = await connect(1); wb = await welcome(b)
    async def ticket(room, rid):
        await b.send(env(join(room, rid)))
        m = await answer(b)
        return m.redirect.seat if m is not None and m.WhichOneof("kind") == "redirect" else None
    out = {}
    t = await ticket("tk", 10)
    for n in range(2):
        c = await connect(0); wc = await welcome(c)
        await c.send(env(join("tk", 1, seat=t)))
        m = await answer(c)
        out["use %d" % (n + 1)] = (kind(m), "ticket's member" if m.joined.member_id == wb.session_id else "own member") if m and m.WhichOneof("kind") == "joined" else (kind(m) if m else None)
    t2 = await ticket("tk", 11)
    c = await connect(0); await welcome(c)
    await c.send(env(join("tk2", 1, seat=t2)))
    m = await answer(c)
    out["ticket of tk used for tk2"] = (kind(m), "ticket's member" if m.joined.member_id == wb.session_id else "own member") if m and m.WhichOneof("kind") == "joined" else (kind(m) if m else None)
    t3 = await ticket("tk/x", 12)
    c = await connect(0); await welcome(c)
    await c.send(env(join("tk", 1, seat="x/" + t3)))
    m = await answer(c)
    out["ticket of tk/x presented for tk as x/<ticket>"] = (kind(m), "ticket's member" if m.joined.member_id == wb.session_id else "own member") if m and m.WhichOneof("kind") == "joined" else (kind(m) if m else None)
    # a garbage 15 KB seat string
    c = await connect(0); await welcome(c)
    await c.send(env(join("tk", 1, seat="z" * 15000)))
    m = await answer(c)
    out["15 KB seat string"] = kind(m) if m else None
    pj("tickets", out)


async def main():
    for c in CASES:
        await {"odd": case_odd, "after": case_after, "resume": case_resume, "ticket": case_ticket}[c]()

asyncio.run(asyncio.wait_for(main(), 60))
