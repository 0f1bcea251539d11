"""Shared helpers for tickrelay attack scripts (WebSocket client, protobuf, /proc)."""
import asyncio, os, ssl, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa  (generated: see README.md)
import websockets
from procstat import cpu_secs, rss_kib  # noqa  (re-exported to the scripts)

URL = os.environ.get("TR_URL", "ws://127.0.0.1:7543/ws")
CERT = os.environ.get("TR_CERT", "tickrelay-dev-cert.pem")


def ssl_ctx():
    if URL.startswith("wss"):
        c = ssl.create_default_context(cafile=CERT)
        return c
    return None


async def connect(query="", url=None, **kw):
    u = (url or URL) + (("?" + query) if query else "")
    ws = await websockets.connect(u, ssl=ssl_ctx() if u.startswith("wss") else None,
                                  max_size=64 * 1024 * 1024, open_timeout=10, ping_interval=None, **kw)
    return ws


def env(*msgs):
    e = pb.ClientEnvelope()
    for m in msgs:
        e.messages.append(m)
    return e.SerializeToString()


def cm(**kw):
    return pb.ClientMessage(**kw)


def join(room, rid=1, room_type="", **kw):
    return cm(join=pb.JoinRoom(request_id=rid, room=room, room_type=room_type, **kw))


def decode(data):
    s = pb.ServerEnvelope()
    s.ParseFromString(data)
    return s


async def recv_until(ws, pred, timeout=5.0):
    """Reads envelopes until pred(msg) is true for one message; returns (msg, all)."""
    seen = []
    end = time.time() + timeout
    while time.time() < end:
        try:
            data = await asyncio.wait_for(ws.recv(), timeout=max(0.01, end - time.time()))
        except asyncio.TimeoutError:
            break
        s = decode(data)
        for m in s.messages:
            seen.append(m)
            if pred(m):
                return m, seen
    return None, seen


async def drain(ws, secs):
    """Reads envelopes for `secs`; returns their messages."""
    _, seen = await recv_until(ws, lambda m: False, secs)
    return seen


def kinds(msgs):
    return [m.WhichOneof("kind") for m in msgs]


def pid_of_relay():
    """The relay's process id, from TR_PID (for its CPU and RSS in /proc)."""
    return int(os.environ["TR_PID"])


def close_info(ws):
    try:
        return ws.close_code, ws.close_reason
    except Exception:
        return None, None


async def member(room):
    """A session joined to relay room `room`: (websocket, its session id)."""
    ws = await connect()
    w = decode(await ws.recv()).messages[0].welcome
    await ws.send(env(join(room, 1, "relay")))
    await recv_until(ws, lambda m: m.WhichOneof("kind") == "joined")
    return ws, w.session_id
