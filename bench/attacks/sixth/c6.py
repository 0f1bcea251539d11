"""Shared helpers for the sixth round (cluster mode). Loopback only.

Nodes: ws://127.0.0.1:7601..7603/ws (NODE_PORTS), Redis on 127.0.0.1:6390 (REDIS_PORT).
Node pids come from the files node1.pid .. node3.pid in this directory (start.sh writes them).
"""
import asyncio, os, subprocess, sys, time, json, urllib.request
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))
sys.path.insert(0, os.path.dirname(HERE))  # bench/attacks: tr.py, procstat.py
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa
import websockets  # noqa
from procstat import cpu_secs, rss_kib  # noqa

REDIS_PORT = int(os.environ.get("REDIS_PORT", "6390"))
NODE_PORTS = [int(p) for p in os.environ.get("NODE_PORTS", "7601,7602,7603").split(",")]
for _p in NODE_PORTS + [REDIS_PORT]:
    assert 6300 <= _p <= 7700


def url(i):
    return f"ws://127.0.0.1:{NODE_PORTS[i]}/ws"


def node_pid(i):
    if os.environ.get("NODE_PIDS"):
        pids = os.environ["NODE_PIDS"].split(",")
        return int(pids[i]) if i < len(pids) else None
    try:
        return int(open(os.path.join(HERE, f"node{i + 1}.pid")).read())
    except Exception:
        return None


def redis(*args):
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(REDIS_PORT), *map(str, args)],
                         capture_output=True, timeout=30)
    return out.stdout.decode(errors="replace").strip()


def redis_info(section):
    d = {}
    for line in redis("info", section).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            d[k] = v.strip()
    return d


def redis_pid():
    return int(redis_info("server")["process_id"])


def redis_mem():
    return int(redis_info("memory")["used_memory"])


def redis_cpu():
    d = redis_info("cpu")
    return float(d["used_cpu_sys"]) + float(d["used_cpu_user"])


def redis_net():
    d = redis_info("stats")
    return int(d["total_net_input_bytes"]), int(d["total_net_output_bytes"]), int(d["total_commands_processed"])


def count_keys(pattern):
    n, cursor = 0, "0"
    while True:
        out = redis("--raw", "scan", cursor, "match", pattern, "count", "10000").splitlines()
        cursor, n = out[0], n + len(out) - 1
        if cursor == "0":
            return n


def metrics(i, names=None):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{NODE_PORTS[i]}/metrics", timeout=5).read().decode()
    except Exception as e:
        return {"error": repr(e)[:60]}
    d = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        k, v = line.rsplit(" ", 1)
        if names is None or any(k.startswith(n) for n in names):
            try:
                d[k] = float(v)
            except ValueError:
                pass
    return d


class Sampler:
    """CPU seconds of the nodes and of Redis, between two points."""
    def __init__(self):
        self.pids = {f"node{i + 1}": node_pid(i) for i in range(len(NODE_PORTS)) if node_pid(i)}
        self.redis = os.environ.get("NO_REDIS") != "1"
        if self.redis:
            self.pids["redis"] = redis_pid()
        self.t0 = time.time()
        self.c0 = {k: cpu_secs(p) for k, p in self.pids.items()}
        self.n0 = redis_net() if self.redis else None

    def report(self):
        dt = time.time() - self.t0
        out = {"secs": round(dt, 1)}
        for k, p in self.pids.items():
            try:
                out[k + "_cpu%"] = round((cpu_secs(p) - self.c0[k]) / dt * 100, 1)
                out[k + "_rssMiB"] = rss_kib(p) // 1024
            except FileNotFoundError:
                out[k] = "DEAD"
        if not self.redis:
            return out
        n1 = redis_net()
        out["redis_in_MB/s"] = round((n1[0] - self.n0[0]) / dt / 1e6, 2)
        out["redis_out_MB/s"] = round((n1[1] - self.n0[1]) / dt / 1e6, 2)
        out["redis_cmds/s"] = round((n1[2] - self.n0[2]) / dt)
        out["redis_used_MiB"] = round(redis_mem() / 2**20, 1)
        out["dbsize"] = int(redis("dbsize") or 0)
        return out


async def connect(i=0, query="", src="127.0.0.1", u=None):
    full = (u or url(i)) + (("?" + query) if query else "")
    return await websockets.connect(full, max_size=1 << 26, ping_interval=None, open_timeout=10,
                                    local_addr=(src, 0))


def env(*msgs, first_event_seq=0):
    e = pb.ClientEnvelope()
    e.messages.extend(msgs)
    if first_event_seq:
        e.first_event_seq = first_event_seq
    return e.SerializeToString()


def join(room, rid=1, room_type="relay", seat="", metadata=None, private=False):
    create = pb.RoomOptions(metadata=metadata or {}, private=private) if (metadata or private) else None
    j = pb.JoinRoom(request_id=rid, room=room, room_type=room_type, seat=seat)
    if create is not None:
        j.create.CopyFrom(create)
    return pb.ClientMessage(join=j)


def leave(room, rid=1):
    return pb.ClientMessage(leave=pb.LeaveRoom(request_id=rid, room=room))


def decode(data):
    s = pb.ServerEnvelope()
    s.ParseFromString(data)
    return s


async def recv_msgs(ws, timeout):
    """All messages that arrive within `timeout` s (stops early on close)."""
    out, end = [], time.time() + timeout
    while time.time() < end:
        try:
            data = await asyncio.wait_for(ws.recv(), max(0.01, end - time.time()))
        except asyncio.TimeoutError:
            break
        except websockets.ConnectionClosed:
            break
        out.extend(decode(data).messages)
    return out


async def wait_for(ws, pred, timeout=5.0):
    end = time.time() + timeout
    seen = []
    while time.time() < end:
        try:
            data = await asyncio.wait_for(ws.recv(), max(0.01, end - time.time()))
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            break
        for m in decode(data).messages:
            seen.append(m)
            if pred(m):
                return m, seen
    return None, seen


def kind(m):
    k = m.WhichOneof("kind")
    if k == "error":
        return "error:" + pb.ErrorCode.Name(m.error.code)
    return k


def pj(*a, **kw):
    print(*[json.dumps(x) if isinstance(x, (dict, list)) else x for x in a], **kw, flush=True)


def one_key(pattern):
    cursor = "0"
    for _ in range(1000):
        out = redis("--raw", "scan", cursor, "match", pattern, "count", "1000").splitlines()
        cursor = out[0]
        if len(out) > 1:
            return out[1]
        if cursor == "0":
            return None


def one_ttl(pattern):
    k = one_key(pattern)
    return (k[:60], redis("pttl", k), redis("memory", "usage", k)) if k else None


async def close_quietly(ws):
    """Closes `ws`, waiting at most 2 s, whatever happens."""
    try:
        await asyncio.wait_for(ws.close(), 2)
    except Exception:
        pass
