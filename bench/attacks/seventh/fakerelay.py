#!/usr/bin/env python3
"""A hostile tickrelay relay on loopback (plain ws://), for attacking the CLIENTS.

    python3 fakerelay.py --port 7601 --scenario NAME [--duration 40] [--arg K=V ...]

Listens on 127.0.0.1 only and stops by itself after --duration seconds (at most 60).
Serves /ws (WebSocket, subprotocol tickrelay.v1) and, for the browser demo, the files
of clients/web/demo/ over plain HTTP on the same port (so the demo page connects back
here with ws://). On exit prints one JSON line of what it saw: connections (with
their times and query strings) and the client messages by kind.

Scenarios: see SCENARIOS at the bottom (one coroutine per connection each).
"""

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa: E402

import websockets  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402
from websockets.datastructures import Headers  # noqa: E402
from websockets.http11 import Response  # noqa: E402

DEMO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "..", "clients", "web", "demo"))

ARGS = None
T0 = time.monotonic()
STATS = {
    "connections": 0,
    "conn_times": [],
    "queries": [],
    "client_msgs": {},
    "client_envelopes": 0,
    "client_bytes": 0,
    "notes": [],
}
MAX_SEQ = (1 << 64) - 1


def arg(name, default):
    v = ARGS.kv.get(name)
    if v is None:
        return default
    return type(default)(v) if not isinstance(default, bool) else v in ("1", "true", "yes")


def now_us():
    return int(time.time() * 1e6)


def env(*messages, first_seq=0):
    e = pb.ServerEnvelope(first_seq=first_seq)
    for m in messages:
        e.messages.append(m)
    return e.SerializeToString()


def welcome(session_id=1, resumed=False, **limits):
    lim = dict(
        max_message_bytes=16384,
        messages_per_second=50,
        message_burst=100,
        bytes_per_second=65536,
        byte_burst=131072,
    )
    lim.update(limits)
    return pb.ServerMessage(
        welcome=pb.Welcome(
            protocol_version=1,
            session_id=session_id,
            resume_token="rt-%d" % session_id,
            limits=pb.Limits(**lim),
            heartbeat_interval_ms=30000,
            heartbeat_timeout_ms=5000,
            resume_grace_ms=20000,
            server_time_us=now_us(),
            user_id="anonymous-%d" % session_id,
            resumed=resumed,
        )
    )


def kind_schema(kind=1, nfields=2):
    fields = []
    for i in range(nfields):
        fields.append(
            pb.FieldSchema(
                id=i + 1,
                name="f%d" % (i + 1),
                type=pb.FIELD_TYPE_FLOAT,
                float_min=0.0,
                float_max=100.0,
                precision=0.01,
            )
        )
    return pb.KindSchema(kind=kind, name="k%d" % kind, fields=fields)


def joined(room, request_id, member_id=1, last_input_seq=0, schema=None, tick_rate=30, members=None):
    j = pb.Joined(
        request_id=request_id,
        room=room,
        room_type="arena",
        member_id=member_id,
        tick_rate=tick_rate,
        max_members=64,
        last_input_seq=last_input_seq,
    )
    for m in members or [pb.MemberInfo(member_id=member_id, user_id="anonymous-%d" % member_id)]:
        j.members.append(m)
    for k in schema or []:
        j.schema.append(k)
    return pb.ServerMessage(joined=j)


def state(room, tick, baseline=0, checksum=None, added=(), packed=(), last_input_seq=0):
    f = pb.StateFrame(room=room, tick=tick, baseline_tick=baseline, server_time_us=now_us(), last_input_seq=last_input_seq)
    if checksum is not None:
        f.checksum = checksum
    for a in added:
        f.added.append(a)
    for p in packed:
        f.packed.append(p)
    return pb.ServerMessage(state=f)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# The SplitMix64 checksum of docs/PROTOCOL.md, for honest frames.
M64 = (1 << 64) - 1


def mix(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def entity_hash(eid, owner, kind):
    h = 0x7469636B72656C61
    for w in (eid, owner, kind):
        h = mix(h ^ w)
    return h


class Conn:
    """One client connection: reads its envelopes in the background, remembers joins."""

    def __init__(self, ws):
        self.ws = ws
        self.joins = asyncio.Queue()
        self.seq = 0  # numbered server messages sent
        self.pings_in = 0
        self.inputs = []
        self.reader = asyncio.create_task(self.read())

    async def read(self):
        try:
            async for data in self.ws:
                if isinstance(data, str):
                    continue
                STATS["client_envelopes"] += 1
                STATS["client_bytes"] += len(data)
                e = pb.ClientEnvelope()
                try:
                    e.ParseFromString(data)
                except Exception:
                    STATS["notes"].append("undecodable client envelope")
                    continue
                for m in e.messages:
                    k = m.WhichOneof("kind")
                    STATS["client_msgs"][k] = STATS["client_msgs"].get(k, 0) + 1
                    if k == "join":
                        await self.joins.put(m.join)
                    elif k == "ping":
                        self.pings_in += 1
                    elif k == "input":
                        self.inputs.append(m.input.seq)
                        if len(STATS.setdefault("input_seqs", [])) < 6:
                            STATS["input_seqs"].append(m.input.seq)
        except websockets.ConnectionClosed:
            pass

    def numbered(self, n=1):
        first = self.seq + 1
        self.seq += n
        return first

    async def send(self, data):
        await self.ws.send(data)

    async def send_numbered(self, *msgs):
        await self.ws.send(env(*msgs, first_seq=self.numbered(len(msgs))))

    async def next_join(self, timeout=10):
        return await asyncio.wait_for(self.joins.get(), timeout)

    async def welcome_and_join(self, schema=None, **kw):
        await self.send(env(welcome(**kw)))
        j = await self.next_join()
        await self.send_numbered(joined(j.room, j.request_id, schema=schema))
        return j


SESSION = [0]


def new_session():
    SESSION[0] += 1
    return SESSION[0]


# --------------------------------------------------------------------------- scenarios


async def sc_accept_close(c):
    """Upgrade accepted, then closed at once with a reconnect-allowed code, no Welcome."""
    await c.ws.close(arg("code", 1011), "bye")


async def sc_accept_drop(c):
    """Upgrade accepted, then the TCP connection dropped without a close frame."""
    c.ws.transport.abort()


async def sc_welcome_close(c):
    """Welcome (a fresh session), then closed at once with 1011."""
    await c.send(env(welcome(session_id=new_session())))
    await asyncio.sleep(arg("hold", 0.0))
    await c.ws.close(arg("code", 1011), "internal error")


async def sc_close_code(c):
    """Welcome, join answered, then closed with --arg code=N (reason --arg reason=...)."""
    await c.welcome_and_join()
    await asyncio.sleep(0.2)
    await c.ws.close(arg("code", 4000), arg("reason", "scripted close"))


async def sc_resume_failed(c):
    """Every connection closed with 4504 (resume token unknown) straight away."""
    await c.ws.close(4504, "resume token unknown or expired")


async def sc_ping_flood(c):
    """Welcome, join, then envelopes of many application Pings, as fast as possible."""
    await c.welcome_and_join()
    per = arg("per_envelope", 20000)
    msgs = [pb.ServerMessage(ping=pb.Ping(nonce=i, sent_time_us=1)) for i in range(per)]
    rate = arg("envelopes_per_sec", 5.0)
    while True:
        await c.send_numbered(*msgs)
        await asyncio.sleep(1.0 / rate)


async def sc_big_snapshot(c):
    """Join answered with a schema (kind 1, no fields), then ONE full snapshot whose packed
    block adds N entities at 3 bytes each (id step 1, owner 0, mask 0). Sent as a
    fragmented WebSocket message (frames of 8 MiB), then idle empty deltas."""
    schema = [pb.KindSchema(kind=1, name="dot")]
    j = await c.welcome_and_join(schema=schema)
    n = arg("entities", 5_000_000)
    block = varint(1) + varint(n) + varint(0) + (b"\x01\x00\x00" * n)
    # StateFrame: room, tick 1, baseline 0, packed block (checksum left out).
    frame = state(j.room, 1, packed=[block])
    data = env(frame)
    STATS["notes"].append("snapshot bytes %d" % len(data))
    chunk = 8 << 20
    t = time.monotonic()
    await c.ws.send([data[i : i + chunk] for i in range(0, len(data), chunk)])
    STATS["notes"].append("sent in %.1fs" % (time.monotonic() - t))
    tick = 2
    while True:
        await asyncio.sleep(1)
        await c.send(env(state(j.room, tick, baseline=tick - 1)))
        tick += 1


async def sc_big_added(c):
    """Like big_snapshot, with N entities in StateFrame.added (protobuf), 2-6 bytes each."""
    j = await c.welcome_and_join()
    n = arg("entities", 2_000_000)
    # Hand-encode StateFrame.added entries: field 5, LEN, Entity{id}.
    parts = [b"\x0a" + varint(len(j.room.encode())) + j.room.encode(), b"\x10\x01"]
    for i in range(1, n + 1):
        ent = b"\x08" + varint(i)
        parts.append(b"\x2a" + varint(len(ent)) + ent)
    frame = b"".join(parts)
    sm = b"\x2a" + varint(len(frame)) + frame  # ServerMessage.state = 5
    data = b"\x0a" + varint(len(sm)) + sm  # ServerEnvelope.messages = 1
    STATS["notes"].append("snapshot bytes %d" % len(data))
    chunk = 8 << 20
    await c.ws.send([data[i : i + chunk] for i in range(0, len(data), chunk)])
    tick = 2
    while True:
        await asyncio.sleep(1)
        await c.send(env(state(j.room, tick, baseline=tick - 1)))
        tick += 1


async def sc_checksum_storm(c):
    """Join, then full snapshots with a wrong checksum, --arg rate per second."""
    j = await c.welcome_and_join()
    rate = arg("rate", 500.0)
    tick = 1
    e = pb.Entity(id=1, owner=0, kind=7)
    while True:
        await c.send(env(state(j.room, tick, checksum=12345, added=[e])))
        tick += 1
        await asyncio.sleep(1.0 / rate)


async def sc_seq_jump(c):
    """Join answered as message 1; then an Error numbered 2^63; then honest Presence
    and RoomEvents numbered 2, 3, 4, ... (a relay whose numbering glitched once)."""
    j = await c.welcome_and_join()
    await asyncio.sleep(0.5)
    err = pb.ServerMessage(error=pb.Error(code=pb.ERROR_CODE_SERVER_BUSY, message="glitch", room=j.room))
    await c.send(env(err, first_seq=arg("jump", 1 << 63)))
    n = 2
    tick = 1
    while True:
        ev = pb.ServerMessage(event=pb.RoomEvent(room=j.room, seq=n, sender=9, kind="chat", payload=b"hi"))
        await c.send(env(ev, first_seq=n))
        await c.send(env(state(j.room, tick, last_input_seq=max(c.inputs or [0]))))
        n += 1
        tick += 1
        await asyncio.sleep(0.2)


async def sc_going_away_flood(c):
    """Welcome, join, then envelopes of GoingAway messages each naming a new URL."""
    await c.welcome_and_join()
    per = arg("per_envelope", 20000)
    rate = arg("envelopes_per_sec", 5.0)
    port = arg("dead_port", 9)
    i = 0
    while True:
        msgs = []
        for _ in range(per):
            msgs.append(pb.ServerMessage(going_away=pb.GoingAway(url="ws://127.0.0.1:%d/ws?n=%d" % (port, i))))
            i += 1
        await c.send_numbered(*msgs)
        await asyncio.sleep(1.0 / rate)


async def sc_event_flood(c):
    """Welcome, join, a state frame a second, and Presence changes as fast as possible
    (--arg per_envelope); the application must keep reading events."""
    j = await c.welcome_and_join()
    per = arg("per_envelope", 500)
    msgs = [
        pb.ServerMessage(presence=pb.Presence(room=j.room, member=pb.MemberInfo(member_id=77, user_id="x"), change=1))
        for _ in range(per)
    ]
    tick = 1
    last = 0.0
    while True:
        await c.send_numbered(*msgs)
        if time.monotonic() - last > 0.5:
            last = time.monotonic()
            await c.send(env(state(j.room, tick, last_input_seq=max(c.inputs or [0]))))
            tick += 1
        await asyncio.sleep(arg("pause", 0.002))


async def sc_limits(c):
    """Welcome with --arg limit overrides (max_message_bytes=0 ...), then answers joins
    and sends an honest empty state frame a second acknowledging inputs."""
    lim = {}
    for k in ("max_message_bytes", "messages_per_second", "message_burst", "bytes_per_second", "byte_burst"):
        if k in ARGS.kv:
            lim[k] = int(ARGS.kv[k])
    await c.send(env(welcome(session_id=new_session(), **lim)))
    tick = 1
    room = None
    while True:
        try:
            j = await c.next_join(timeout=1.0)
            room = j.room
            await c.send_numbered(joined(j.room, j.request_id))
        except asyncio.TimeoutError:
            pass
        if room:
            await c.send(env(state(room, tick, checksum=0, last_input_seq=max(c.inputs or [0]))))
            tick += 1


async def sc_huge_ack(c):
    """Join answered with last_input_seq = --arg seq (default 2^64-1), then honest
    frames acknowledging what arrived."""
    j = await c.ws.send(env(welcome(session_id=new_session())))
    j = await c.next_join()
    await c.send_numbered(joined(j.room, j.request_id, last_input_seq=arg("seq", MAX_SEQ)))
    tick = 1
    while True:
        await c.send(env(state(j.room, tick, checksum=0, last_input_seq=max(c.inputs or [0]))))
        tick += 1
        await asyncio.sleep(0.1)


async def sc_redirect(c):
    """Answers every join with Redirect to --arg url (may be a format with {n})."""
    await c.send(env(welcome(session_id=new_session())))
    n = 0
    while True:
        j = await c.next_join(timeout=60)
        url = arg("url", "ws://127.0.0.1:9/ws").replace("{n}", str(n))
        n += 1
        STATS["notes"].append("redirect %s -> %s" % (j.room, url))
        await c.send_numbered(pb.ServerMessage(redirect=pb.Redirect(request_id=j.request_id, room=j.room, url=url, seat="s")))


async def sc_going_away(c):
    """Welcome, join, then one GoingAway to --arg url and close 1001."""
    await c.welcome_and_join()
    await asyncio.sleep(0.3)
    await c.send_numbered(pb.ServerMessage(going_away=pb.GoingAway(url=arg("url", "ws://127.0.0.1:9/ws"))))
    await c.ws.close(1001, "server shutting down")


async def sc_demo_strings(c):
    """For the browser demo: HTML in every string the page might show."""
    xss = '<img src=x onerror="window.__xss=1">'
    await c.send(env(welcome(session_id=new_session())))
    j = await c.next_join()
    await c.send_numbered(
        pb.ServerMessage(
            joined=pb.Joined(
                request_id=j.request_id,
                room=xss,
                room_type=xss,
                member_id=1,
                tick_rate=30,
                members=[pb.MemberInfo(member_id=1, user_id=xss)],
            )
        )
    )
    await c.send_numbered(pb.ServerMessage(error=pb.Error(code=1, message=xss, room=xss)))
    await asyncio.sleep(1)
    await c.ws.close(4000, xss[:100])


async def sc_demo_ack(c):
    """For the browser demo: an arena-like room whose frames acknowledge input
    2^53 (never sent) after a few seconds, or (--arg tick_rate) a Joined.tick_rate."""
    avatar = pb.KindSchema(
        kind=1,
        name="avatar",
        fields=[
            pb.FieldSchema(id=1, name="x", type=pb.FIELD_TYPE_FLOAT, float_min=0, float_max=100, precision=0.01),
            pb.FieldSchema(id=2, name="y", type=pb.FIELD_TYPE_FLOAT, float_min=0, float_max=100, precision=0.01),
        ],
    )
    sid = new_session()
    await c.send(env(welcome(session_id=sid)))
    j = await c.next_join()
    await c.send_numbered(joined(j.room, j.request_id, member_id=sid, schema=[avatar], tick_rate=arg("tick_rate", 30)))
    # Avatar id 5 owned by the member, at code (5000, 5000) = (50.0, 50.0).
    block = varint(1) + varint(1) + varint(0) + varint(5) + varint(sid) + varint(3) + varint(5000 * 2 + 1) * 2
    tick = 1
    start = time.monotonic()
    await c.send(env(state(j.room, tick, packed=[block])))
    after = arg("ack_after", 3.0)
    while True:
        await asyncio.sleep(1 / 30)
        tick += 1
        ack = max(c.inputs or [0])
        if time.monotonic() - start > after:
            ack = arg("ack", 1 << 53)
        await c.send(env(state(j.room, tick, baseline=tick - 1, last_input_seq=ack)))


SCENARIOS = {k[3:]: v for k, v in globals().items() if k.startswith("sc_")}


async def handler(ws):
    STATS["connections"] += 1
    STATS["conn_times"].append(round(time.monotonic() - T0, 3))
    if len(STATS["queries"]) < 20:
        STATS["queries"].append(ws.request.path)
    c = Conn(ws)
    try:
        await SCENARIOS[ARGS.scenario](c)
        await c.reader
    except (websockets.ConnectionClosed, asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        c.reader.cancel()


def http(connection, request):
    """Plain HTTP for the demo files; None lets /ws upgrade."""
    path = urllib.parse.urlsplit(request.path).path
    if path == "/ws":
        return None
    name = {"/demo/": "index.html", "/demo/index.html": "index.html", "/demo/demo.js": "demo.js"}.get(path)
    if name is None:
        return Response(404, "Not Found", Headers([("Content-Length", "0")]), b"")
    body = open(os.path.join(DEMO_DIR, name), "rb").read()
    ctype = "text/html; charset=utf-8" if name.endswith(".html") else "text/javascript"
    return Response(200, "OK", Headers([("Content-Type", ctype), ("Content-Length", str(len(body)))]), body)


async def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=7601)
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    p.add_argument("--duration", type=float, default=40.0)
    p.add_argument("--arg", action="append", default=[])
    ARGS = p.parse_args()
    ARGS.kv = dict(a.split("=", 1) for a in ARGS.arg)
    duration = min(ARGS.duration, 58.0)
    async with serve(
        handler,
        "127.0.0.1",
        ARGS.port,
        select_subprotocol=lambda conn, offered: "tickrelay.v1" if "tickrelay.v1" in offered else None,
        process_request=http,
        max_size=None,
        ping_interval=None,
        compression=None,
        write_limit=1 << 20,
    ):
        print("fakerelay: %s on 127.0.0.1:%d for %.0fs" % (ARGS.scenario, ARGS.port, duration), file=sys.stderr, flush=True)
        stop = asyncio.get_running_loop().create_future()
        import signal as _s
        asyncio.get_running_loop().add_signal_handler(_s.SIGTERM, lambda: stop.done() or stop.set_result(None))
        try:
            await asyncio.wait_for(stop, duration)
        except asyncio.TimeoutError:
            pass
        STATS["elapsed"] = round(time.monotonic() - T0, 1)
        print(json.dumps(STATS), flush=True)
        os._exit(0)
    STATS["elapsed"] = round(time.monotonic() - T0, 1)
    print(json.dumps(STATS))


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    except asyncio.TimeoutError:
        print(json.dumps(STATS))
